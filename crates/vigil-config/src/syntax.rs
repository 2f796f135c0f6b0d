//! Every TOML error of one file, found with bounded work per error.
//!
//! `toml`'s recoverable parse builds an error object (a formatted message and a shared
//! copy of the input) for every error, so a 10 MB file with millions of errors took
//! seconds before anything was printed. This module reads the file with the same lexer,
//! grammar and decoders (`toml_parser`, which `toml` is built on) and walks the events the
//! way `toml`'s table builder does (`toml::de::parser::document`, `inline_table`, `array`,
//! `key`, `value`), keeping only what decides errors: which keys exist and whether each
//! table is implicit, dotted or inline. Errors go to a [`Collector`], which counts them all
//! and keeps the first ones by position.
//!
//! It must not decide whether a file is valid: `toml` parses first and builds the tree that
//! is validated; this walk only reads files `toml` rejected, to say why. A test checks it
//! against `toml`'s recoverable parse error for error, and `crate::parse_file` falls back
//! to that parse should the walk find nothing.

use std::borrow::Cow;
use std::collections::HashMap;
use std::collections::hash_map::Entry;

use toml_parser::decoder::ScalarKind;
use toml_parser::parser::{Event, EventKind, RecursionGuard, ValidateWhitespace};
use toml_parser::{ErrorSink, ParseError, Source, Span};

use crate::error::Collector;

/// `toml`'s limit on nesting and on the parts of a dotted key.
const LIMIT: u32 = 80;

/// A problem found, at a byte offset of the file.
pub(crate) enum Problem {
    /// An error as `toml` reports it (lexer, grammar, decoders, duplicates).
    Toml(ParseError),
    /// A key with more dotted parts than `toml` accepts (`toml` reports it without a
    /// position; this is the key's first part).
    TooManyParts { parts: usize },
}

/// Reads `src` as `toml` would: every error counted, the first `cap` by position kept.
pub(crate) fn check(src: &str, cap: usize) -> Collector<(usize, Problem)> {
    let source = Source::new(src);
    let tokens = source.lex().into_vec();
    let mut events: Vec<Event> = Vec::with_capacity(tokens.len());
    let mut sink = Sink {
        problems: Collector::new(cap),
        echo: false,
    };
    {
        let mut receiver = ValidateWhitespace::new(&mut events, source);
        let mut receiver = RecursionGuard::new(&mut receiver, LIMIT);
        let mut errors = |e: ParseError| sink.push(e);
        toml_parser::parser::parse_document(&tokens, &mut receiver, &mut errors);
    }
    drop(tokens);
    let mut walk = Walk {
        source,
        input: Input {
            events: &events,
            at: 0,
        },
        tables: Vec::new(),
        sink,
    };
    walk.document();
    walk.sink.problems
}

struct Sink {
    problems: Collector<(usize, Problem)>,
    /// Inside a table header's section that redefines a table: `toml` merges it into the
    /// first definition, so its keys would be reported again as duplicates ("echoes").
    echo: bool,
}

impl Sink {
    fn push(&mut self, e: ParseError) {
        let offset = e.unexpected().map_or(0, |s| s.start());
        if self.problems.wants(offset) {
            self.problems.push(offset, (offset, Problem::Toml(e)));
        } else {
            self.problems.count();
        }
    }

    /// A key of the section's own level that is already set.
    fn duplicate(&mut self, span: Span) {
        if !self.echo {
            self.push(duplicate_key(span));
        }
    }
}

/// Decoders report to the sink.
struct DecodeSink<'a>(&'a mut Sink);

impl ErrorSink for DecodeSink<'_> {
    fn report_error(&mut self, error: ParseError) {
        self.0.push(error);
    }
}

struct Input<'e> {
    events: &'e [Event],
    at: usize,
}

impl<'e> Input<'e> {
    fn next_token(&mut self) -> Option<&'e Event> {
        let e = self.events.get(self.at)?;
        self.at += 1;
        Some(e)
    }

    fn get(&self, i: usize) -> Option<&'e Event> {
        self.events.get(self.at + i)
    }
}

type TableId = usize;

/// What a key holds, as far as errors care.
enum Node {
    Table(TableId),
    /// An array made by `[[header]]`s, with its last table.
    ArrayOfTables(TableId),
    /// Any other value; its type name for "cannot extend value of type ...".
    Value(&'static str),
}

#[derive(Default)]
struct Table<'i> {
    entries: HashMap<Cow<'i, str>, Node>,
    implicit: bool,
    dotted: bool,
    inline: bool,
}

/// A key as decoded, with its span.
struct Key<'i> {
    name: Cow<'i, str>,
    span: Span,
}

struct Header<'i> {
    path: Vec<Key<'i>>,
    key: Option<Key<'i>>,
    is_array: bool,
    /// A standard header that redefines a table (already reported by `start_table`).
    redefines: bool,
}

struct Walk<'i, 'e> {
    source: Source<'i>,
    input: Input<'e>,
    tables: Vec<Table<'i>>,
    sink: Sink,
}

fn duplicate_key(span: Span) -> ParseError {
    ParseError::new("duplicate key").with_unexpected(span)
}

fn cannot_extend(what: &str, span: Span) -> ParseError {
    ParseError::new(format!(
        "cannot extend value of type {what} with a dotted key"
    ))
    .with_unexpected(span)
}

impl<'i, 'e> Walk<'i, 'e> {
    fn new_table(&mut self, table: Table<'i>) -> TableId {
        self.tables.push(table);
        self.tables.len() - 1
    }

    /// `id` comes from [`Walk::new_table`].
    fn table(&mut self, id: TableId) -> &mut Table<'i> {
        &mut self.tables[id]
    }

    /// Sets `name` in `table`; `false` when it is already set.
    fn insert(&mut self, table: TableId, name: Cow<'i, str>, value: Node) -> bool {
        match self.table(table).entries.entry(name) {
            Entry::Vacant(e) => {
                e.insert(value);
                true
            }
            Entry::Occupied(_) => false,
        }
    }

    /// `toml::de::parser::document::document`.
    fn document(&mut self) {
        let mut root: Option<TableId> = None;
        let mut current = self.new_table(Table::default());
        let mut header: Option<Header<'i>> = None;
        while let Some(event) = self.input.next_token() {
            match event.kind() {
                EventKind::InlineTableOpen
                | EventKind::InlineTableClose
                | EventKind::ArrayOpen
                | EventKind::ArrayClose
                | EventKind::Scalar
                | EventKind::ValueSep
                | EventKind::Error
                | EventKind::KeySep
                | EventKind::KeyValSep
                | EventKind::StdTableClose
                | EventKind::ArrayTableClose => continue,
                EventKind::StdTableOpen | EventKind::ArrayTableOpen => {
                    self.finish_table(&mut root, current, header.take());
                    let mut next = self.on_table(event);
                    current = self.start_table(root, &mut next);
                    header = Some(next);
                }
                EventKind::SimpleKey => {
                    let (path, key) = self.on_key(event);
                    let Some(key) = key else {
                        break;
                    };
                    let Some(next) = self.input.next_token() else {
                        break;
                    };
                    let keyval = if next.kind() == EventKind::Whitespace {
                        let Some(next) = self.input.next_token() else {
                            break;
                        };
                        next
                    } else {
                        next
                    };
                    if keyval.kind() != EventKind::KeyValSep {
                        break;
                    }
                    if self
                        .input
                        .get(0)
                        .is_some_and(|e| e.kind() == EventKind::Whitespace)
                    {
                        let _ = self.input.next_token();
                    }
                    let value = self.value();
                    self.capture_key_value(current, path, key, value);
                }
                EventKind::Whitespace | EventKind::Comment | EventKind::Newline => {}
            }
        }
        self.finish_table(&mut root, current, header.take());
    }

    /// `State::capture_key_value`.
    fn capture_key_value(
        &mut self,
        current: TableId,
        path: Vec<Key<'i>>,
        key: Key<'i>,
        value: Node,
    ) {
        let dotted = !path.is_empty();
        let Some(parent) = self.descend(current, &path, dotted, true) else {
            return;
        };
        if dotted && !self.table(parent).implicit {
            self.sink.duplicate(key.span);
            return;
        }
        if !self.insert(parent, key.name, value) {
            self.sink.duplicate(key.span);
        }
    }

    /// `State::finish_table`: the section that ends goes into the tree.
    fn finish_table(
        &mut self,
        root: &mut Option<TableId>,
        current: TableId,
        header: Option<Header<'i>>,
    ) {
        let Some(header) = header else {
            *root = Some(current);
            return;
        };
        let Some(key) = header.key else {
            return;
        };
        let Some(root) = *root else {
            return;
        };
        // A standard header's path was descended (and its errors reported) when the
        // section started; `toml` reports them twice, identically.
        let report = header.is_array;
        let Some(parent) = self.descend(root, &header.path, false, report) else {
            return;
        };
        if header.is_array {
            match self.table(parent).entries.get_mut(&key.name) {
                None => {
                    self.table(parent)
                        .entries
                        .insert(key.name, Node::ArrayOfTables(current));
                }
                Some(Node::ArrayOfTables(last)) => *last = current,
                Some(_) => self.sink.push(duplicate_key(key.span)),
            }
        } else if !header.redefines {
            self.table(parent)
                .entries
                .insert(key.name, Node::Table(current));
        }
    }

    /// `State::start_table`: the table a new section's keys go into.
    fn start_table(&mut self, root: Option<TableId>, header: &mut Header<'i>) -> TableId {
        self.sink.echo = false;
        let mut current = None;
        if let (false, Some(root), Some(key)) = (header.is_array, root, &header.key)
            && let Some(parent) = self.descend(root, &header.path, false, true)
        {
            let existing = match self.table(parent).entries.get(&key.name) {
                Some(Node::Table(t)) => Some(Some(*t)),
                Some(_) => Some(None),
                None => None,
            };
            match existing {
                Some(Some(t)) if self.tables[t].implicit && !self.tables[t].dotted => {
                    current = Some(t);
                }
                Some(old) => {
                    self.sink.push(duplicate_key(key.span));
                    // `toml` merges this section into the old table: its keys would
                    // only echo this error.
                    header.redefines = old.is_some();
                    self.sink.echo = old.is_some();
                    current = old;
                }
                None => {}
            }
        }
        let current = current.unwrap_or_else(|| self.new_table(Table::default()));
        let table = self.table(current);
        table.implicit = false;
        table.dotted = false;
        current
    }

    /// `document::descend_path`. `report`: whether errors are reported.
    fn descend(
        &mut self,
        mut table: TableId,
        path: &[Key<'i>],
        dotted: bool,
        report: bool,
    ) -> Option<TableId> {
        for key in path {
            let child = match self.table(table).entries.get(&key.name) {
                None => None,
                Some(Node::Table(t)) => Some(Ok(*t)),
                Some(Node::ArrayOfTables(last)) => Some(Ok(*last)),
                Some(Node::Value(what)) => Some(Err(*what)),
            };
            table = match child {
                None => {
                    let id = self.new_table(Table {
                        implicit: true,
                        dotted,
                        ..Table::default()
                    });
                    self.table(table)
                        .entries
                        .insert(key.name.clone(), Node::Table(id));
                    id
                }
                Some(Ok(t)) => {
                    let is_aot = matches!(
                        self.table(table).entries.get(&key.name),
                        Some(Node::ArrayOfTables(_))
                    );
                    let child = self.table(t);
                    if !is_aot {
                        if child.inline {
                            if report {
                                self.sink.push(cannot_extend("inline table", key.span));
                            }
                            return None;
                        }
                        if dotted && child.implicit {
                            child.dotted = true;
                        }
                        if dotted && !child.implicit {
                            // Only dotted keys (a section's own keys) get here.
                            if report {
                                self.sink.duplicate(key.span);
                            }
                            return None;
                        }
                    }
                    t
                }
                Some(Err(what)) => {
                    if report {
                        self.sink.push(cannot_extend(what, key.span));
                    }
                    return None;
                }
            };
        }
        Some(table)
    }

    /// `document::on_table`.
    fn on_table(&mut self, open: &Event) -> Header<'i> {
        let is_array = open.kind() == EventKind::ArrayTableOpen;
        let mut path = None;
        let mut key = None;
        while let Some(event) = self.input.next_token() {
            match event.kind() {
                EventKind::ArrayTableClose | EventKind::StdTableClose => break,
                EventKind::SimpleKey => {
                    let (p, k) = self.on_key(event);
                    path = Some(p);
                    key = k;
                }
                _ => {}
            }
        }
        Header {
            path: path.unwrap_or_default(),
            key,
            is_array,
            redefines: false,
        }
    }

    /// `key::on_key`: a dotted key's parts before the last, and the last.
    fn on_key(&mut self, first: &Event) -> (Vec<Key<'i>>, Option<Key<'i>>) {
        let mut path = Vec::new();
        let mut last: Option<Key<'i>> = None;
        let mut current = Some(*first);
        let mut close = |walk: &mut Self, current: &mut Option<Event>| {
            if let Some(event) = current.take() {
                let key = walk.decode_key(&event);
                if let Some(prev) = last.replace(key) {
                    path.push(prev);
                }
            }
        };
        if self.more_key() {
            while let Some(event) = self.input.next_token() {
                match event.kind() {
                    EventKind::SimpleKey => {
                        current = Some(*event);
                        if !self.more_key() {
                            break;
                        }
                    }
                    EventKind::KeySep => close(self, &mut current),
                    _ => {}
                }
            }
        }
        close(self, &mut current);
        if LIMIT as usize <= path.len() {
            let parts = path.len() + 1;
            let offset = path.first().map_or(0, |k| k.span.start());
            if self.sink.problems.wants(offset) {
                let problem = (offset, Problem::TooManyParts { parts });
                self.sink.problems.push(offset, problem);
            } else {
                self.sink.problems.count();
            }
            return (Vec::new(), None);
        }
        (path, last)
    }

    fn more_key(&self) -> bool {
        let first = self.input.get(0).map(Event::kind);
        let second = self.input.get(1).map(Event::kind);
        first == Some(EventKind::KeySep)
            || (first == Some(EventKind::Whitespace) && second == Some(EventKind::KeySep))
    }

    fn decode_key(&mut self, event: &Event) -> Key<'i> {
        let mut name = Cow::Borrowed("");
        if let Some(raw) = self.source.get(event) {
            raw.decode_key(&mut name, &mut DecodeSink(&mut self.sink));
        }
        Key {
            name,
            span: event.span(),
        }
    }

    /// `value::value`.
    fn value(&mut self) -> Node {
        if let Some(event) = self.input.next_token() {
            match event.kind() {
                EventKind::InlineTableOpen => return self.on_inline_table(),
                EventKind::ArrayOpen => return self.on_array(),
                EventKind::Scalar => return self.on_scalar(event),
                _ => {}
            }
        }
        Node::Value("integer")
    }

    /// `value::on_scalar`.
    fn on_scalar(&mut self, event: &Event) -> Node {
        let mut decoded = Cow::Borrowed("");
        let Some(raw) = self.source.get(event) else {
            return Node::Value("string");
        };
        let kind = raw.decode_scalar(&mut decoded, &mut DecodeSink(&mut self.sink));
        Node::Value(match kind {
            ScalarKind::String => "string",
            ScalarKind::Boolean(_) => "boolean",
            ScalarKind::DateTime => {
                if let Err(err) = decoded.parse::<toml::value::Datetime>() {
                    let e = ParseError::new(err.to_string()).with_unexpected(event.span());
                    self.sink.push(e);
                }
                "datetime"
            }
            ScalarKind::Float => "float",
            ScalarKind::Integer(_) => "integer",
        })
    }

    /// `array::on_array` (its items only matter for the errors inside them).
    fn on_array(&mut self) -> Node {
        while let Some(event) = self.input.next_token() {
            match event.kind() {
                EventKind::StdTableOpen
                | EventKind::ArrayTableOpen
                | EventKind::InlineTableClose
                | EventKind::SimpleKey
                | EventKind::KeySep
                | EventKind::KeyValSep
                | EventKind::StdTableClose
                | EventKind::ArrayTableClose
                | EventKind::ArrayClose => break,
                EventKind::InlineTableOpen => {
                    self.on_inline_table();
                }
                EventKind::ArrayOpen => {
                    self.on_array();
                }
                EventKind::Scalar => {
                    self.on_scalar(event);
                }
                EventKind::Error
                | EventKind::ValueSep
                | EventKind::Whitespace
                | EventKind::Comment
                | EventKind::Newline => {}
            }
        }
        Node::Value("array")
    }

    /// `inline_table::on_inline_table`.
    fn on_inline_table(&mut self) -> Node {
        let result = self.new_table(Table {
            inline: true,
            ..Table::default()
        });
        let mut current_key: Option<(Vec<Key<'i>>, Key<'i>)> = None;
        let mut current_value: Option<Node> = None;
        while let Some(event) = self.input.next_token() {
            match event.kind() {
                EventKind::StdTableOpen
                | EventKind::ArrayTableOpen
                | EventKind::StdTableClose
                | EventKind::ArrayClose
                | EventKind::ArrayTableClose
                | EventKind::KeySep => break,
                EventKind::SimpleKey => {
                    let (path, key) = self.on_key(event);
                    if let Some(key) = key {
                        current_key = Some((path, key));
                    }
                }
                EventKind::InlineTableOpen => current_value = Some(self.on_inline_table()),
                EventKind::ArrayOpen => current_value = Some(self.on_array()),
                EventKind::Scalar => current_value = Some(self.on_scalar(event)),
                EventKind::ValueSep => {
                    self.finish_inline_value(result, current_key.take(), current_value.take());
                }
                EventKind::InlineTableClose => {
                    self.finish_inline_value(result, current_key.take(), current_value.take());
                    break;
                }
                EventKind::Error
                | EventKind::KeyValSep
                | EventKind::Whitespace
                | EventKind::Comment
                | EventKind::Newline => {}
            }
        }
        Node::Table(result)
    }

    /// `inline_table::State::finish_value`.
    fn finish_inline_value(
        &mut self,
        result: TableId,
        key: Option<(Vec<Key<'i>>, Key<'i>)>,
        value: Option<Node>,
    ) {
        let (Some((path, key)), Some(value)) = (key, value) else {
            return;
        };
        let Some(table) = self.descend_inline(result, &path) else {
            return;
        };
        if self.table(table).dotted == path.is_empty() {
            self.sink.push(duplicate_key(key.span));
            return;
        }
        if !self.insert(table, key.name, value) {
            self.sink.push(duplicate_key(key.span));
        }
    }

    /// `inline_table::descend_path` (always dotted).
    fn descend_inline(&mut self, mut table: TableId, path: &[Key<'i>]) -> Option<TableId> {
        for key in path {
            let child = match self.table(table).entries.get(&key.name) {
                None => None,
                Some(Node::Table(t)) => Some(Ok(*t)),
                Some(Node::ArrayOfTables(_)) => Some(Err("array")),
                Some(Node::Value(what)) => Some(Err(*what)),
            };
            table = match child {
                None => {
                    let id = self.new_table(Table {
                        implicit: true,
                        dotted: true,
                        inline: true,
                        ..Table::default()
                    });
                    self.table(table)
                        .entries
                        .insert(key.name.clone(), Node::Table(id));
                    id
                }
                Some(Ok(t)) => {
                    if !self.table(t).implicit {
                        self.sink.push(duplicate_key(key.span));
                        return None;
                    }
                    t
                }
                Some(Err(what)) => {
                    self.sink.push(cannot_extend(what, key.span));
                    return None;
                }
            };
        }
        Some(table)
    }
}

/// The message `toml` gives a parse error (`toml::de::Error::new`), on one line.
pub(crate) fn toml_message(e: &ParseError) -> String {
    let mut message = e.description().to_owned();
    if let Some(expected) = e.expected() {
        message.push_str(", expected ");
        if expected.is_empty() {
            message.push_str("nothing");
        }
        for (i, expected) in expected.iter().enumerate() {
            if i != 0 {
                message.push_str(", ");
            }
            match expected {
                toml_parser::Expected::Literal(desc) => message.push_str(&render_literal(desc)),
                toml_parser::Expected::Description(desc) => message.push_str(desc),
                _ => message.push_str("etc"),
            }
        }
    }
    message
}

fn render_literal(literal: &str) -> String {
    match literal {
        "\n" => "newline".to_owned(),
        "`" => "'`'".to_owned(),
        s if s.chars().all(|c| c.is_ascii_control()) => format!("`{}`", s.escape_debug()),
        s => format!("`{s}`"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small deterministic PRNG (xorshift64*), so failures reproduce.
    struct Rng(u64);

    impl Rng {
        fn below(&mut self, n: usize) -> usize {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n.max(1) as u64) as usize
        }
    }

    /// Lines that define, extend and redefine tables every way TOML allows and forbids.
    const LINES: &[&str] = &[
        "[a]",
        "[a.b]",
        "[a.b.c]",
        "[b]",
        "[[a]]",
        "[[a.b]]",
        "[[c]]",
        "[c.d]",
        "[ a . b ]",
        "[\"a\".b]",
        "a = 1",
        "b = 1",
        "c = \"x\"",
        "a.b = 1",
        "b.c = 2",
        "b.c.d = true",
        "d = {}",
        "d = { x = 1, y.z = 2 }",
        "e = { x = 1, x = 2 }",
        "e = { x.y = 1, x = 2 }",
        "e = { x = {}, x.y = 1 }",
        "f = [1, { a = 1, a = 2 }]",
        "g = [[1], [2]]",
        "d.x = 1",
        "g.h = 1",
        "h = 1979-05-27T07:32:00Z",
        "h = 1979-13-27",
        "i = 0x_1",
        "j = \"\\q\"",
        "k = ",
        "= 1",
        "l = [1,,2]",
        "m = { , }",
        "[",
        "[a",
        "# comment",
        "",
        "n = 'unterminated",
        "o = \"\"\"multi\nline\"\"\"",
    ];

    type Errors = Vec<(usize, String)>;

    /// `toml`'s errors and the check's, each as sorted `(offset, message)` with echoes of
    /// duplicate tables dropped the way `crate::without_echoes` drops them.
    fn both(src: &str) -> (Errors, Errors) {
        let pos = crate::error::Positions::new(src);
        let (_, toml_errors) = toml::de::DeTable::parse_recoverable(src);
        let theirs: Vec<_> = toml_errors
            .iter()
            .filter(|e| e.span().is_some())
            .map(|e| {
                let span = e.span().unwrap_or(0..0);
                (span, e.message().replace('\n', "; "))
            })
            .collect();
        let (kept, total) = check(src, usize::MAX).finish();
        assert_eq!(kept.len(), total);
        let ours: Vec<_> = kept
            .into_iter()
            .filter_map(|(offset, p)| match p {
                Problem::Toml(e) => {
                    let span = e
                        .unexpected()
                        .map_or(offset..offset, |s| s.start()..s.end());
                    Some((span, toml_message(&e).replace('\n', "; ")))
                }
                Problem::TooManyParts { .. } => None,
            })
            .collect();
        let norm = |v: Vec<(std::ops::Range<usize>, String)>| {
            let mut v: Vec<(usize, String)> = crate::without_echoes(v, &pos)
                .into_iter()
                .map(|(s, m)| (s.start, m))
                .collect();
            v.sort();
            v.dedup();
            v
        };
        (norm(theirs), norm(ours))
    }

    #[test]
    fn finds_exactly_the_errors_toml_finds() {
        let mut rng = Rng(0x7031_u64 << 20 | 0xBEEF);
        let (mut valid, mut duplicates, mut extends) = (0, 0, 0);
        for _ in 0..6000 {
            let n = 1 + rng.below(9);
            let src: Vec<&str> = (0..n).map(|_| LINES[rng.below(LINES.len())]).collect();
            let src = src.join("\n");
            let (theirs, ours) = both(&src);
            assert_eq!(ours, theirs, "--- source:\n{src}");
            valid += usize::from(theirs.is_empty());
            duplicates += usize::from(theirs.iter().any(|(_, m)| m == "duplicate key"));
            extends += usize::from(theirs.iter().any(|(_, m)| m.starts_with("cannot extend")));
        }
        // The lines must exercise every kind of conflict, and valid files too.
        assert!(
            valid > 300 && duplicates > 1000 && extends > 300,
            "valid {valid}, duplicates {duplicates}, cannot extend {extends}"
        );
    }

    #[test]
    fn finds_exactly_the_errors_toml_finds_in_mutated_examples() {
        let example = crate::COMPLETE_EXAMPLE;
        let mut rng = Rng(0x5EED_u64);
        for _ in 0..400 {
            let mut s = example.to_owned();
            for _ in 0..1 + rng.below(4) {
                let mut at = rng.below(s.len() + 1);
                while !s.is_char_boundary(at) {
                    at -= 1;
                }
                match rng.below(3) {
                    0 => {
                        let mut end = (at + 1 + rng.below(8)).min(s.len());
                        while !s.is_char_boundary(end) {
                            end -= 1;
                        }
                        s.replace_range(at..end, "");
                    }
                    1 => s.insert_str(at, LINES[rng.below(LINES.len())]),
                    _ => s.insert_str(at, &format!("\n{}\n", LINES[rng.below(LINES.len())])),
                }
            }
            let (theirs, ours) = both(&s);
            assert_eq!(ours, theirs, "--- source:\n{s}");
        }
    }

    #[test]
    fn a_key_with_too_many_parts_is_located() {
        let src = format!("x = 1\n\n[{}]\n", vec!["a"; 99].join("."));
        let (kept, _) = check(&src, 10).finish();
        assert!(
            matches!(kept.as_slice(), [(8, Problem::TooManyParts { parts: 99 })]),
            "{:?}",
            kept.iter().map(|(o, _)| o).collect::<Vec<_>>()
        );
    }
}
