//! Log output (SPEC §7): one line per event on stderr.
//!
//! Human: `[2025-02-14T10:30:00Z] LEVEL service check: message` (UTC). JSON: one object per
//! line with `ts`, `level`, `service`, `check`, `event`, `message` and every other field
//! (the numbers behind a verdict). One small `tracing` layer renders both, so the two
//! formats can never disagree on what was logged.

use std::io::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::{Context, SubscriberExt as _};
use tracing_subscriber::util::SubscriberInitExt as _;
use vigil_config::model::{LogFormat, LogLevel};
use vigil_core::Timestamp;
use vigil_core::event::Field as EventField;

use crate::observe::bus::Published;

use crate::platform::clock;

/// The most verbose level written (set once by [`init`]); events below it are skipped
/// before they are rendered.
static MAX_LEVEL: AtomicU8 = AtomicU8::new(LEVEL_INFO);
const LEVEL_ERROR: u8 = 1;
const LEVEL_WARN: u8 = 2;
const LEVEL_INFO: u8 = 3;
const LEVEL_DEBUG: u8 = 4;
const LEVEL_TRACE: u8 = 5;

/// The format every line is written in (set once by [`init`]).
static JSON: AtomicBool = AtomicBool::new(false);

/// Installs the global logger. Safe to call once per process.
pub fn init(format: LogFormat, level: LogLevel) {
    let (filter, max) = match level {
        LogLevel::Error => (LevelFilter::ERROR, LEVEL_ERROR),
        LogLevel::Warn => (LevelFilter::WARN, LEVEL_WARN),
        LogLevel::Info => (LevelFilter::INFO, LEVEL_INFO),
        LogLevel::Debug => (LevelFilter::DEBUG, LEVEL_DEBUG),
        LogLevel::Trace => (LevelFilter::TRACE, LEVEL_TRACE),
    };
    MAX_LEVEL.store(max, Ordering::Relaxed);
    JSON.store(format == LogFormat::Json, Ordering::Relaxed);
    let _ = tracing_subscriber::registry()
        .with(LineLayer { format }.with_filter(filter))
        .try_init();
}

/// Writes one published event as a line (the event bus's log subscriber).
pub fn event(p: &Published<'_>) {
    let (level, rank) = match p.event.level() {
        vigil_core::event::Level::Error => ("ERROR", LEVEL_ERROR),
        vigil_core::event::Level::Warn => ("WARN", LEVEL_WARN),
        vigil_core::event::Level::Info => ("INFO", LEVEL_INFO),
        vigil_core::event::Level::Debug => ("DEBUG", LEVEL_DEBUG),
    };
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
    let format = if JSON.load(Ordering::Relaxed) {
        LogFormat::Json
    } else {
        LogFormat::Human
    };
    write_line(format, p.at, level, fields);
}

struct LineLayer {
    format: LogFormat,
}

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
        let level = level_name(event.metadata().level());
        write_line(self.format, clock::now(), level, fields);
    }
}

/// Renders and writes one line, in one `write(2)`.
fn write_line(format: LogFormat, ts: Timestamp, level: &str, fields: Fields) {
    let line = match format {
        LogFormat::Human => {
            let mut line = format!("[{ts}] {level} ");
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
