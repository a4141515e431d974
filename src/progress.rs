//! How a run shows it is alive: progress bars on a terminal, one `tracing` log line per phase
//! otherwise (cron, `| cat`, log shippers with `--log-format json`), nothing with `--quiet`.
//! Errors go to stderr whatever the mode.

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use std::sync::Mutex;
use std::time::Duration;

/// What the pipeline tells about its phases.
pub trait Progress: Sync {
    fn start(&self, phase: &'static str);
    fn finish(&self, phase: &'static str, count: u64, unit: &'static str, elapsed: Duration);
}

/// Reports nothing (library use, tests, `--quiet`).
pub struct Silent;

impl Progress for Silent {
    fn start(&self, _: &'static str) {}
    fn finish(&self, _: &'static str, _: u64, _: &'static str, _: Duration) {}
}

fn rate(count: u64, unit: &str, elapsed: Duration) -> String {
    let ms = elapsed.as_millis().max(1);
    format!("{} {unit}/s", u128::from(count) * 1000 / ms)
}

/// A spinner per phase on the terminal, left behind as a line with counts and rate.
pub struct Bars {
    multi: MultiProgress,
    current: Mutex<Option<ProgressBar>>,
}

impl Bars {
    pub fn new() -> Bars {
        Bars {
            multi: MultiProgress::new(),
            current: Mutex::new(None),
        }
    }
}

impl Default for Bars {
    fn default() -> Self {
        Bars::new()
    }
}

impl Progress for Bars {
    fn start(&self, phase: &'static str) {
        // Each phase gets its own line, left in place when it finishes.
        let bar = self.multi.add(ProgressBar::new_spinner());
        bar.set_style(
            ProgressStyle::with_template("{spinner} {msg} {elapsed}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar.set_message(phase);
        bar.enable_steady_tick(Duration::from_millis(100));
        if let Ok(mut current) = self.current.lock() {
            *current = Some(bar);
        }
    }

    fn finish(&self, phase: &'static str, count: u64, unit: &'static str, elapsed: Duration) {
        if let Ok(mut current) = self.current.lock()
            && let Some(bar) = current.take()
        {
            bar.set_style(
                ProgressStyle::with_template("✓ {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            bar.finish_with_message(format!(
                "{phase:<9} {count} {unit} in {} ms ({})",
                elapsed.as_millis(),
                rate(count, unit, elapsed)
            ));
        }
    }
}

/// One log line per finished phase, through `tracing` (text or JSON, set up by the CLI).
pub struct Logs;

impl Progress for Logs {
    fn start(&self, _: &'static str) {}

    fn finish(&self, phase: &'static str, count: u64, unit: &'static str, elapsed: Duration) {
        tracing::info!(
            phase,
            count,
            unit,
            ms = elapsed.as_millis() as u64,
            "phase finished"
        );
    }
}

/// Whether every line written to stdout and stderr is a JSON object (`--log-format json`).
static JSON: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

pub fn set_json(on: bool) {
    JSON.store(on, std::sync::atomic::Ordering::Relaxed);
}

pub fn json() -> bool {
    JSON.load(std::sync::atomic::Ordering::Relaxed)
}

/// One JSON log line (no newline): `timestamp`, `level`, `event`, then `fields`' members.
pub fn event_line(level: &str, event: &str, fields: serde_json::Value) -> String {
    let mut object = serde_json::Map::new();
    object.insert(
        "timestamp".into(),
        chrono::Utc::now()
            .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
            .into(),
    );
    object.insert("level".into(), level.into());
    object.insert("event".into(), event.into());
    if let serde_json::Value::Object(fields) = fields {
        object.extend(fields);
    }
    serde_json::Value::Object(object).to_string()
}

/// Writes one JSON event to stderr (a closed stderr is ignored: the exit code tells).
pub fn event(level: &str, event: &str, fields: serde_json::Value) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr(), "{}", event_line(level, event, fields));
}

/// A line for the operator on stderr (a note, a rejected row, a warning): as it is, or as a JSON
/// event with the text as `message` under `--log-format json`.
pub fn note(level: &str, text: &str) {
    use std::io::Write as _;
    let text = crate::error::printable(text);
    if json() {
        event(level, "message", serde_json::json!({ "message": text }));
    } else {
        let _ = writeln!(std::io::stderr(), "{text}");
    }
}
