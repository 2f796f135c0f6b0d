//! Architecture Invariant: vigild's top-level modules (`cli`, `daemon`, `service`,
//! `drivers`, `guard`, `ledger`, ...) import each other without a cycle, so each part can
//! be read, tested and changed from the ones below it.
//!
//! This test reads every source file, collects its `crate::MODULE` references (in `use`
//! lines, grouped `use crate::{a, b}` lists and inline paths), builds the graph of
//! top-level modules and fails on any strongly connected component of more than one
//! module, naming the modules and one reference for each edge inside it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Top-level module → (imported top-level module → one place it is imported).
type Graph = BTreeMap<String, BTreeMap<String, String>>;

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src dir") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file belongs to: `src/ledger/handle.rs` → `ledger`,
/// `src/exit.rs` → `exit`; `None` for the crate roots.
fn top_module(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).ok()?;
    let first = rel.components().next()?.as_os_str().to_str()?;
    match first {
        "lib.rs" | "main.rs" => None,
        f => Some(f.trim_end_matches(".rs").to_owned()),
    }
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// The top-level modules a line of code refers to through `crate::`.
fn referenced(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = line;
    while let Some(i) = rest.find("crate::") {
        let preceded_by_ident = rest[..i].chars().next_back().is_some_and(is_ident);
        rest = &rest[i + "crate::".len()..];
        if preceded_by_ident {
            continue; // e.g. `vigil_crate::`: not ours
        }
        if let Some(group) = rest.strip_prefix('{') {
            // `use crate::{a, b::c, d::{e, f}}`: the first segment of each top-level item.
            let mut depth = 0usize;
            let mut item = String::new();
            for c in group.chars() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        out.extend(first_segment(&item));
                        item.clear();
                        continue;
                    }
                    _ => {}
                }
                if depth == 0 {
                    item.push(c);
                }
            }
            out.extend(first_segment(&item));
        } else {
            out.extend(first_segment(rest));
        }
    }
    out
}

fn first_segment(path: &str) -> Option<String> {
    let name: String = path
        .trim_start()
        .chars()
        .take_while(|c| is_ident(*c))
        .collect();
    (!name.is_empty() && name != "self").then_some(name)
}

fn graph(src: &Path) -> Graph {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    files.sort();
    let mut graph = Graph::new();
    for file in files {
        let Some(from) = top_module(src, &file) else {
            continue;
        };
        let text = std::fs::read_to_string(&file).expect("read source");
        graph.entry(from.clone()).or_default();
        // A multi-line `use crate::{...}` is joined into one logical statement.
        let mut statement = String::new();
        let mut statement_line = 0;
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            if statement.is_empty() {
                statement_line = n + 1;
            }
            statement.push_str(code);
            let open = statement.matches('{').count() > statement.matches('}').count();
            if statement.trim_start().starts_with("use ") && open {
                continue;
            }
            for to in referenced(&statement) {
                if to != from {
                    graph
                        .get_mut(&from)
                        .expect("inserted")
                        .entry(to)
                        .or_insert_with(|| {
                            format!(
                                "{}:{statement_line}",
                                file.strip_prefix(src).unwrap_or(&file).display()
                            )
                        });
                }
            }
            statement.clear();
        }
    }
    graph
}

/// Tarjan's strongly connected components.
fn components(graph: &Graph) -> Vec<Vec<String>> {
    struct State<'g> {
        graph: &'g Graph,
        index: BTreeMap<&'g str, usize>,
        low: BTreeMap<&'g str, usize>,
        stack: Vec<&'g str>,
        on_stack: BTreeSet<&'g str>,
        next: usize,
        out: Vec<Vec<String>>,
    }
    fn visit<'g>(s: &mut State<'g>, v: &'g str) {
        s.index.insert(v, s.next);
        s.low.insert(v, s.next);
        s.next += 1;
        s.stack.push(v);
        s.on_stack.insert(v);
        let edges: Vec<&'g str> = s
            .graph
            .get(v)
            .map(|e| e.keys().map(String::as_str).collect())
            .unwrap_or_default();
        for w in edges {
            if !s.index.contains_key(w) {
                visit(s, w);
                let low = s.low[v].min(s.low[w]);
                s.low.insert(v, low);
            } else if s.on_stack.contains(w) {
                let low = s.low[v].min(s.index[w]);
                s.low.insert(v, low);
            }
        }
        if s.low[v] == s.index[v] {
            let mut component = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack.remove(w);
                component.push(w.to_owned());
                if w == v {
                    break;
                }
            }
            component.sort();
            s.out.push(component);
        }
    }
    let mut s = State {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        next: 0,
        out: Vec::new(),
    };
    for v in graph.keys() {
        if !s.index.contains_key(v.as_str()) {
            visit(&mut s, v);
        }
    }
    s.out
}

#[test]
fn vigild_modules_import_each_other_without_a_cycle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let graph = graph(&src);
    assert!(
        graph.len() >= 8,
        "expected vigild's top-level modules, found {:?}",
        graph.keys().collect::<Vec<_>>()
    );
    let cycles: Vec<String> = components(&graph)
        .into_iter()
        .filter(|c| c.len() > 1)
        .map(|c| {
            let edges: Vec<String> = c
                .iter()
                .flat_map(|from| {
                    graph[from]
                        .iter()
                        .filter(|(to, _)| c.contains(to))
                        .map(move |(to, at)| format!("  {from} -> {to} (at {at})"))
                })
                .collect();
            format!("cycle between {}:\n{}", c.join(", "), edges.join("\n"))
        })
        .collect();
    assert!(cycles.is_empty(), "{}", cycles.join("\n\n"));
}

#[test]
fn the_checker_sees_grouped_imports_and_inline_paths() {
    assert_eq!(
        referenced("use crate::{ledger, guard::{self, Action}, drivers::Driver};"),
        vec!["ledger", "guard", "drivers"]
    );
    assert_eq!(
        referenced("let x = crate::platform::clock::now(); vigil_crate::x"),
        vec!["platform"]
    );
    let mut g = Graph::new();
    g.entry("a".into())
        .or_default()
        .insert("b".into(), "a.rs:1".into());
    g.entry("b".into())
        .or_default()
        .insert("a".into(), "b.rs:1".into());
    g.entry("c".into())
        .or_default()
        .insert("a".into(), "c.rs:1".into());
    let cycles: Vec<_> = components(&g).into_iter().filter(|c| c.len() > 1).collect();
    assert_eq!(cycles, vec![vec!["a".to_owned(), "b".to_owned()]]);
}
