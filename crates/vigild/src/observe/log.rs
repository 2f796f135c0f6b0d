//! Log output (SPEC §7): one record per event, on stderr or in the journal.
//!
//! Human: `[2025-02-14T10:30:00Z] LEVEL service check: message` (UTC). JSON: one object per
//! line with `ts`, `level`, `service`, `check`, `event`, `message` and every other field
//! (the numbers behind a verdict). One small `tracing` layer renders both, so the two
//! formats can never disagree on what was logged.
//!
//! When systemd connected stderr to the journal (`JOURNAL_STREAM`), each record is a
//! journal entry instead (`observe::journal`): `MESSAGE` without the timestamp and level
//! (journald has both), `PRIORITY` from the level, `SYSLOG_IDENTIFIER=vigil` and the
//! fields as `VIGIL_SERVICE`, `VIGIL_CHECK`, `VIGIL_EVENT`, `VIGIL_<NAME>`. An exec
//! service's captured output goes in under the service's own identifier ([`output`]).
//! An entry journald does not take at once is written to stderr with its `<N>` priority
//! prefix, so the journal still gets it, at the right priority.

use std::io::Write as _;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU8, Ordering};

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::{Context, SubscriberExt as _};
use tracing_subscriber::util::SubscriberInitExt as _;
use vigil_config::model::{LogFormat, LogLevel};
use vigil_core::event::Field as EventField;
use vigil_core::{ServiceName, Timestamp};

use crate::observe::bus::Published;
use crate::observe::journal::{self, Entry, Journal};
use crate::platform::clock;

/// The most verbose level written (set once by [`init`]); events below it are skipped
/// before they are rendered.
static MAX_LEVEL: AtomicU8 = AtomicU8::new(LEVEL_INFO);
const LEVEL_ERROR: u8 = 1;
const LEVEL_WARN: u8 = 2;
const LEVEL_INFO: u8 = 3;
const LEVEL_DEBUG: u8 = 4;
const LEVEL_TRACE: u8 = 5;

/// Where records go (set once by [`init`]; stderr in the human format until then).
static SINK: OnceLock<Sink> = OnceLock::new();

enum Sink {
    Stderr(LogFormat),
    /// Stderr is the journal: entries to journald's socket (`None`: no socket could be
    /// made, so every record takes the `<N>`-prefixed stderr line).
    Journal(Option<Journal>),
}

fn sink() -> &'static Sink {
    // Not `get_or_init`: a record written before `init` must not fix the sink for good.
    static BEFORE_INIT: Sink = Sink::Stderr(LogFormat::Human);
    SINK.get().unwrap_or(&BEFORE_INIT)
}

/// Which stream of a supervised service a captured line came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// Installs the global logger. Safe to call once per process. Under journald (stderr is
/// the journal stream) `format` does not apply: records are journal entries.
pub fn init(format: LogFormat, level: LogLevel) {
    let (filter, max) = match level {
        LogLevel::Error => (LevelFilter::ERROR, LEVEL_ERROR),
        LogLevel::Warn => (LevelFilter::WARN, LEVEL_WARN),
        LogLevel::Info => (LevelFilter::INFO, LEVEL_INFO),
        LogLevel::Debug => (LevelFilter::DEBUG, LEVEL_DEBUG),
        LogLevel::Trace => (LevelFilter::TRACE, LEVEL_TRACE),
    };
    MAX_LEVEL.store(max, Ordering::Relaxed);
    let _ = SINK.set(if journal::stderr_is_journal() {
        Sink::Journal(Journal::open(journal::SOCKET).ok())
    } else {
        Sink::Stderr(format)
    });
    let _ = tracing_subscriber::registry()
        .with(LineLayer.with_filter(filter))
        .try_init();
}

/// Writes one published event as a line (the event bus's log subscriber).
pub fn event(p: &Published<'_>) {
    let level = match p.event.level() {
        vigil_core::event::Level::Error => Level::ERROR,
        vigil_core::event::Level::Warn => Level::WARN,
        vigil_core::event::Level::Info => Level::INFO,
        vigil_core::event::Level::Debug => Level::DEBUG,
    };
    let rank = rank(&level);
    if rank > MAX_LEVEL.load(Ordering::Relaxed) {
        return;
    }
    let mut fields = Fields {
        message: p.event.message(p.at),
        service: Some(p.service.to_string()),
        check: p.event.check().map(str::to_owned),
        event: Some(p.event.name().to_owned()),
        error: None,
        rest: Map::new(),
    };
    for (name, value) in p.event.fields() {
        let value = match value {
            EventField::U64(n) => Value::from(n),
            EventField::I64(n) => Value::from(n),
            EventField::Bool(b) => Value::Bool(b),
            EventField::Str(s) => Value::String(s),
        };
        fields.rest.insert(name.to_owned(), value);
    }
    write_record(p.at, &level, fields, None);
}

/// Writes a line a supervised service printed on `stream` (when its output goes into
/// Vigil's log). In the journal it is the service's own entry: `SYSLOG_IDENTIFIER` is the
/// service (`journalctl -t NAME`), stderr at priority warning and stdout at info;
/// elsewhere an info line of Vigil's with the service's name.
pub fn output(service: &ServiceName, stream: Stream, text: &str) {
    let (priority, rank) = match stream {
        Stream::Stdout => (journal::INFO, LEVEL_INFO),
        Stream::Stderr => (journal::WARNING, LEVEL_WARN),
    };
    match sink() {
        Sink::Journal(socket) => {
            if rank > MAX_LEVEL.load(Ordering::Relaxed) {
                return;
            }
            let mut entry = Entry::new();
            entry
                .field("MESSAGE", text)
                .field("PRIORITY", [b'0' + priority])
                .field("SYSLOG_IDENTIFIER", service.as_str())
                .field("VIGIL_SERVICE", service.as_str())
                .field("VIGIL_STREAM", stream.as_str());
            send_or_stderr(socket.as_ref(), &entry, priority, || {
                format!("{service}: {text}")
            });
        }
        Sink::Stderr(_) => {
            tracing::info!(service = %service, event = "output", stream = stream.as_str(), "{text}");
        }
    }
}

struct LineLayer;

#[derive(Default)]
struct Fields {
    message: String,
    service: Option<String>,
    check: Option<String>,
    event: Option<String>,
    error: Option<String>,
    rest: Map<String, Value>,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field.name(), Value::String(value.to_owned()));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field.name(), Value::from(value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field.name(), Value::from(value));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field.name(), Value::Bool(value));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(field.name(), Value::from(value));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.put(field.name(), Value::String(format!("{value:?}")));
    }
}

impl Fields {
    fn put(&mut self, name: &str, value: Value) {
        let as_text = || match &value {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        match name {
            "message" => self.message = as_text(),
            "service" => self.service = Some(as_text()),
            "check" => self.check = Some(as_text()),
            "event" => self.event = Some(as_text()),
            "error" => self.error = Some(as_text()),
            _ => {
                self.rest.insert(name.to_owned(), value);
            }
        }
    }
}

fn rank(level: &Level) -> u8 {
    match *level {
        Level::ERROR => LEVEL_ERROR,
        Level::WARN => LEVEL_WARN,
        Level::INFO => LEVEL_INFO,
        Level::DEBUG => LEVEL_DEBUG,
        Level::TRACE => LEVEL_TRACE,
    }
}

/// The syslog priority journald files a record of this level under.
fn priority(level: &Level) -> u8 {
    match *level {
        Level::ERROR => journal::ERR,
        Level::WARN => journal::WARNING,
        Level::INFO => journal::INFO,
        Level::DEBUG | Level::TRACE => journal::DEBUG,
    }
}

fn level_name(level: &Level) -> &'static str {
    match *level {
        Level::ERROR => "ERROR",
        Level::WARN => "WARN",
        Level::INFO => "INFO",
        Level::DEBUG => "DEBUG",
        Level::TRACE => "TRACE",
    }
}

impl<S: Subscriber> Layer<S> for LineLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let meta = event.metadata();
        let code = meta.file().zip(meta.line());
        write_record(clock::now(), meta.level(), fields, code);
    }
}

/// Writes one record where [`init`] said: a line on stderr, or a journal entry.
fn write_record(ts: Timestamp, level: &Level, fields: Fields, code: Option<(&str, u32)>) {
    match sink() {
        Sink::Stderr(format) => write_line(*format, ts, level_name(level), fields),
        Sink::Journal(socket) => {
            let priority = priority(level);
            let entry = journal_entry(priority, &fields, code);
            send_or_stderr(socket.as_ref(), &entry, priority, || message(&fields));
        }
    }
}

/// What a human line says after its timestamp and level: `service check: message: error`.
fn message(fields: &Fields) -> String {
    let mut line = String::with_capacity(fields.message.len() + 32);
    match (&fields.service, &fields.check) {
        (Some(s), Some(c)) => line.push_str(&format!("{s} {c}: ")),
        (Some(s), None) => line.push_str(&format!("{s}: ")),
        (None, Some(c)) => line.push_str(&format!("{c}: ")),
        (None, None) => {}
    }
    line.push_str(&fields.message);
    if let Some(error) = &fields.error {
        line.push_str(": ");
        line.push_str(error);
    }
    line
}

/// A record as a journal entry of Vigil's (`SYSLOG_IDENTIFIER=vigil`).
fn journal_entry(priority: u8, fields: &Fields, code: Option<(&str, u32)>) -> Entry {
    let mut entry = Entry::new();
    entry
        .field("MESSAGE", message(fields))
        .field("PRIORITY", [b'0' + priority])
        .field("SYSLOG_IDENTIFIER", "vigil");
    let named = [
        ("VIGIL_SERVICE", &fields.service),
        ("VIGIL_CHECK", &fields.check),
        ("VIGIL_EVENT", &fields.event),
        ("VIGIL_ERROR", &fields.error),
    ];
    for (name, value) in named {
        if let Some(value) = value {
            entry.field(name, value);
        }
    }
    for (name, value) in &fields.rest {
        let name = journal::vigil_field(name);
        match value {
            Value::String(s) => entry.field(&name, s),
            Value::Null => continue,
            other => entry.field(&name, other.to_string()),
        };
    }
    if let Some((file, line)) = code {
        entry
            .field("CODE_FILE", file)
            .field("CODE_LINE", line.to_string());
    }
    entry
}

/// Sends an entry to journald; if it cannot go (no journald, its queue full), writes the
/// `line` to stderr, the journal stream, each line behind the `<N>` prefix journald reads
/// as the priority (sd-daemon(3)).
fn send_or_stderr(
    socket: Option<&Journal>,
    entry: &Entry,
    priority: u8,
    line: impl FnOnce() -> String,
) {
    if socket.is_some_and(|j| j.send(entry).is_ok()) {
        return;
    }
    let mut out = String::new();
    for l in line().split('\n') {
        out.push('<');
        out.push(char::from(b'0' + priority));
        out.push('>');
        out.push_str(l);
        out.push('\n');
    }
    let _ = std::io::stderr().lock().write_all(out.as_bytes());
}

/// Renders and writes one line, in one `write(2)`.
fn write_line(format: LogFormat, ts: Timestamp, level: &str, fields: Fields) {
    let line = match format {
        LogFormat::Human => format!("[{ts}] {level} {}", message(&fields)),
        LogFormat::Json => {
            let mut obj = Map::new();
            obj.insert("ts".into(), Value::String(ts.to_string()));
            obj.insert("level".into(), Value::String(level.to_ascii_lowercase()));
            obj.insert(
                "service".into(),
                fields.service.map_or(Value::Null, Value::String),
            );
            obj.insert(
                "check".into(),
                fields.check.map_or(Value::Null, Value::String),
            );
            obj.insert(
                "event".into(),
                fields.event.map_or(Value::Null, Value::String),
            );
            obj.insert("message".into(), Value::String(fields.message));
            if let Some(error) = fields.error {
                obj.insert("error".into(), Value::String(error));
            }
            for (k, v) in fields.rest {
                obj.entry(k).or_insert(v);
            }
            Value::Object(obj).to_string()
        }
    };
    // One write per line (stderr is unbuffered: `writeln!` would make two).
    let mut line = line;
    line.push('\n');
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_journal_record_has_its_priority_and_fields_and_no_timestamp() {
        let mut fields = Fields {
            message: "Health check FAIL (1/3): timeout".to_owned(),
            service: Some("web".to_owned()),
            check: Some("health".to_owned()),
            event: Some("check_run".to_owned()),
            ..Fields::default()
        };
        fields.rest.insert(
            "reason".to_owned(),
            Value::String("line one\nline two".to_owned()),
        );
        fields.rest.insert("wait_ms".to_owned(), Value::from(1500));
        let entry = journal_entry(journal::WARNING, &fields, Some(("src/x.rs", 7)));
        let mut want = b"MESSAGE=web health: Health check FAIL (1/3): timeout\n\
            PRIORITY=4\nSYSLOG_IDENTIFIER=vigil\n\
            VIGIL_SERVICE=web\nVIGIL_CHECK=health\nVIGIL_EVENT=check_run\n\
            VIGIL_REASON\n"
            .to_vec();
        want.extend_from_slice(&17u64.to_le_bytes());
        want.extend_from_slice(
            b"line one\nline two\nVIGIL_WAIT_MS=1500\nCODE_FILE=src/x.rs\nCODE_LINE=7\n",
        );
        assert_eq!(
            String::from_utf8_lossy(entry.as_bytes()),
            String::from_utf8_lossy(&want)
        );
    }

    #[test]
    fn the_human_line_is_unchanged() {
        let fields = Fields {
            message: "Restart FAILED: exit code 1".to_owned(),
            service: Some("web".to_owned()),
            error: Some("boom".to_owned()),
            ..Fields::default()
        };
        assert_eq!(message(&fields), "web: Restart FAILED: exit code 1: boom");
    }
}
