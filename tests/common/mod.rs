//! Helpers for end-to-end tests: run the real binary in a clean environment and render what it
//! did (status, stdout, stderr, files written) as one text for a snapshot, with what varies
//! from run to run (temporary paths, timings) filtered out. Amounts are never filtered.

#![allow(dead_code)]

use assert_cmd::Command;
use std::path::{Path, PathBuf};

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn fixture(name: &str) -> PathBuf {
    repo().join("fixtures").join(name)
}

/// The binary with an empty environment and a fixed time zone, so neither `TZ` nor the locale
/// can change a figure.
pub fn incentives() -> Command {
    let mut cmd = Command::cargo_bin("incentives").expect("binary built by cargo");
    cmd.env_clear()
        .env("TZ", "America/Los_Angeles")
        .env("LANG", "C");
    cmd
}

pub struct Outcome {
    pub status: i32,
    pub stdout: String,
    pub stderr: String,
}

pub fn run(cmd: &mut Command) -> Outcome {
    let output = cmd.output().expect("binary runs");
    Outcome {
        status: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Replaces what varies between runs: the temporary folder, the repository path, timings.
pub fn filter(text: &str, tmp: &Path) -> String {
    let mut out = text.replace(&tmp.display().to_string(), "[TMP]");
    out = out.replace(&repo().display().to_string(), "[REPO]");
    let mut result = String::with_capacity(out.len());
    // Phase log lines carry timestamps; tests/ux_cli.rs checks them on their own.
    for line in out.lines().filter(|l| !l.contains(" INFO phase finished")) {
        result.push_str(&mask_ms(line));
        result.push('\n');
    }
    result
}

fn mask_ms(line: &str) -> String {
    // "  time            12 ms" → "  time            [TIME] ms"
    if line.trim_start().starts_with("time ") && line.ends_with(" ms") {
        let head = &line[..line.find("time").unwrap_or(0) + 4];
        return format!("{head} [TIME] ms");
    }
    // "in 12 ms" → "in [TIME] ms"
    match line.find(" in ").zip(line.rfind(" ms")) {
        Some((a, b)) if a + 4 <= b && line[a + 4..b].chars().all(|c| c.is_ascii_digit()) => {
            format!("{} in [TIME] ms{}", &line[..a], &line[b + 3..])
        }
        _ => line.to_string(),
    }
}

impl Outcome {
    pub fn render(&self, tmp: &Path) -> String {
        format!(
            "status: {}\n--- stdout\n{}--- stderr\n{}",
            self.status,
            filter(&self.stdout, tmp),
            filter(&self.stderr, tmp)
        )
    }
}

/// The manifest without its `timings` object, the only part that may differ between runs.
pub fn manifest_without_timings(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).expect("manifest written");
    let mut value: serde_json::Value = serde_json::from_str(&text).expect("manifest is JSON");
    value
        .as_object_mut()
        .expect("manifest is an object")
        .remove("timings");
    value
}

/// A CSV file's rows, each by column name.
pub fn csv_rows(path: &Path) -> Vec<std::collections::BTreeMap<String, String>> {
    let mut reader =
        csv::Reader::from_path(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let headers = reader.headers().unwrap().clone();
    reader
        .records()
        .map(|r| {
            headers
                .iter()
                .zip(r.unwrap().iter())
                .map(|(h, v)| (h.to_string(), v.to_string()))
                .collect()
        })
        .collect()
}

/// `incentives run --first-cycle --cycle 2026-10` on `input`, publishing to `out` with its state
/// in `out/.state`, plus `extra` arguments.
pub fn run_first_cycle(input: &Path, out: &Path, extra: &[&str]) -> Outcome {
    let mut cmd = incentives();
    cmd.args(["run", "--first-cycle", "--cycle", "2026-10", "--input"])
        .arg(input)
        .arg("--out")
        .arg(out)
        .arg("--state")
        .arg(out.join(".state"))
        .args(extra);
    run(&mut cmd)
}

/// The demo month (`fixtures/demo/2026-10`) run as a first cycle into `out`.
pub fn run_demo(out: &Path, extra: &[&str]) -> Outcome {
    run_first_cycle(&fixture("demo/2026-10"), out, extra)
}
