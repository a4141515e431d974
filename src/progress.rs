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
