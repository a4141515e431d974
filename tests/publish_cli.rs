//! Nothing outside the engine wedges a chain (SPEC §4): outputs lost before publication, a
//! publication that fails after the commit, a full state, two states publishing into one
//! `--out`, leftovers of killed runs, signals, planted links and foreign folders. Faults are
//! injected with the debug builds' hooks (`INCENTIVES_FAIL_AT`, `INCENTIVES_PAUSE_AT`,
//! `INCENTIVES_ABORT_AT`) or by a second process the test controls; nothing depends on timing.

mod common;

use common::{Outcome, fixture, incentives, run};
use std::fs;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

struct Chain {
    _tmp: tempfile::TempDir,
    out: PathBuf,
    state: PathBuf,
}

impl Chain {
    fn new() -> Chain {
        let tmp = tempfile::tempdir().unwrap();
        Chain {
            out: tmp.path().join("out"),
            state: tmp.path().join("state"),
            _tmp: tmp,
        }
    }

    /// A second state publishing into the same `--out`.
    fn beside(&self, name: &str) -> Chain {
        let tmp = tempfile::tempdir().unwrap();
        Chain {
            out: self.out.clone(),
            state: tmp.path().join(name),
            _tmp: tmp,
        }
    }

    fn args(&self, cycle: &str, input: &str, first: bool) -> Vec<std::ffi::OsString> {
        let mut args: Vec<std::ffi::OsString> = vec![
            "run".into(),
            "--cycle".into(),
            cycle.into(),
            "--input".into(),
            fixture("chain").join(input).into(),
            "--out".into(),
            self.out.clone().into(),
            "--state".into(),
            self.state.clone().into(),
        ];
        if first {
            args.push("--first-cycle".into());
        }
        args
    }

    fn run_env(&self, cycle: &str, input: &str, first: bool, env: &[(&str, &str)]) -> Outcome {
        let mut cmd = incentives();
        cmd.args(self.args(cycle, input, first));
        for (k, v) in env {
            cmd.env(k, v);
        }
        run(&mut cmd)
    }

    fn ok(&self, cycle: &str, input: &str, first: bool) {
        let o = self.run_env(cycle, input, first, &[]);
        assert_eq!(o.status, 0, "{cycle}: {}", o.stderr);
    }

    /// A run paused at `phase` (debug hook), its stderr read up to the pause.
    fn paused(&self, cycle: &str, input: &str, first: bool, phase: &str) -> Child {
        let mut child = Command::new(assert_cmd::cargo::cargo_bin("incentives"))
            .env_clear()
            .env("INCENTIVES_PAUSE_AT", phase)
            .args(self.args(cycle, input, first))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        wait_for_pause(&mut child);
        child
    }

    fn status(&self, extra: &[&str]) -> Outcome {
        let mut cmd = incentives();
        cmd.args(["status", "--state"]).arg(&self.state).args(extra);
        run(&mut cmd)
    }

    /// Hidden entries of `--out` whose name starts with `prefix`.
    fn hidden(&self, prefix: &str) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(&self.out)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(prefix))
            .collect();
        names.sort();
        names
    }

    fn published(&self, cycle: &str) -> Option<String> {
        fs::read_link(self.out.join(cycle))
            .ok()
            .map(|t| t.to_string_lossy().into_owned())
    }

    fn ledger(&self, cycle: &str) -> String {
        fs::read_to_string(self.out.join(cycle).join("ledger.csv")).unwrap()
    }
}

/// Reads the child's stderr until it says it paused, then keeps draining it in the background
/// (so the child never blocks on a full pipe) and returns what follows on a channel.
fn wait_for_pause(child: &mut Child) {
    use std::io::{BufRead, BufReader};
    let stderr = child.stderr.take().unwrap();
    let mut reader = BufReader::new(stderr);
    let mut line = String::new();
    while reader.read_line(&mut line).unwrap() > 0 {
        if line.contains("paused at") {
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                let mut rest = String::new();
                let _ = std::io::Read::read_to_string(&mut reader, &mut rest);
                let _ = tx.send(rest);
            });
            REST.with(|r| *r.borrow_mut() = Some(rx));
            return;
        }
        line.clear();
    }
    panic!("the child ended without pausing");
}

thread_local! {
    static REST: std::cell::RefCell<Option<std::sync::mpsc::Receiver<String>>> =
        const { std::cell::RefCell::new(None) };
}

/// What the last paused child wrote to stderr after its pause, once it has ended.
fn rest_of_stderr() -> String {
    REST.with(|r| r.borrow_mut().take())
        .map(|rx| rx.recv().unwrap_or_default())
        .unwrap_or_default()
}

fn kill(child: &mut Child) {
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn outputs_lost_before_publication_are_unpublished_and_a_rerun_repairs_them() {
    let c = Chain::new();
    c.ok("2026-09", "2026-09", true);
    c.ok("2026-10", "2026-10", false);
    // Killed right after its commit, then its staged folder deleted (as by a cleaner or a
    // full disk): committed, nothing to publish.
    let o = c.run_env(
        "2026-11",
        "2026-11",
        false,
        &[("INCENTIVES_ABORT_AT", "committed")],
    );
    assert_ne!(o.status, 0);
    let staged = c.hidden(".2026-11.run-");
    assert_eq!(staged.len(), 1, "{staged:?}");
    fs::remove_dir_all(c.out.join(&staged[0])).unwrap();

    let s = c.status(&[]);
    assert_eq!(s.status, 0, "{}", s.stderr);
    assert!(s.stdout.contains("2026-11  unpublished"), "{}", s.stdout);
    assert!(s.stdout.contains("2026-10  ok"), "{}", s.stdout);
    assert!(
        s.stdout
            .contains("Repair: incentives run --cycle 2026-11 --input"),
        "{}",
        s.stdout
    );
    // The next run says so too, with the same command, and is not stopped by it.
    let o = c.run_env("2026-12", "2026-11", false, &[]);
    assert!(o.stderr.contains("2026-11 is committed"), "{}", o.stderr);
    assert!(o.stderr.contains("UNPUBLISHED"), "{}", o.stderr);
    assert!(
        o.stderr.contains("Repair: incentives run --cycle 2026-11"),
        "{}",
        o.stderr
    );
    assert!(
        o.stderr.contains("belongs to another cycle"),
        "{}",
        o.stderr
    );
    // Re-running the cycle repairs it.
    let o = c.run_env("2026-11", "2026-11", false, &[]);
    assert_eq!(o.status, 0, "{}", o.stderr);
    assert!(
        o.stderr.contains("this run makes them again"),
        "{}",
        o.stderr
    );
    let s = c.status(&[]);
    assert!(s.stdout.contains("2026-11  ok"), "{}", s.stdout);
    assert!(!s.stdout.contains("unpublished"), "{}", s.stdout);
    assert!(c.ledger("2026-11").contains(",C1,"));
}

#[test]
fn a_publication_that_fails_after_the_commit_is_pending_until_the_next_run() {
    let c = Chain::new();
    c.ok("2026-09", "2026-09", true);
    let o = c.run_env(
        "2026-10",
        "2026-10",
        false,
        &[("INCENTIVES_FAIL_AT", "publish")],
    );
    assert_eq!(o.status, 1, "{}", o.stderr);
    assert!(
        o.stderr.contains("cycle 2026-10 is committed in the state"),
        "{}",
        o.stderr
    );
    assert!(o.stderr.contains("publication is pending"), "{}", o.stderr);
    assert!(o.stderr.contains("No space left on device"), "{}", o.stderr);
    assert!(c.published("2026-10").is_none());
    assert!(c.hidden(".2026-10.link-").is_empty());
    let s = c.status(&[]);
    assert!(s.stdout.contains("2026-10  pending"), "{}", s.stdout);
    assert!(s.stdout.contains("publication pending"), "{}", s.stdout);
    // The chain goes on: the next run publishes 10 first.
    let o = c.run_env("2026-11", "2026-11", false, &[]);
    assert_eq!(o.status, 0, "{}", o.stderr);
    assert!(
        o.stderr.contains("finished publishing 2026-10"),
        "{}",
        o.stderr
    );
    assert!(c.ledger("2026-10").contains(",B1,"));
    let s = c.status(&[]);
    assert!(!s.stdout.contains("pending"), "{}", s.stdout);
}

#[test]
fn a_full_state_commits_nothing_removes_its_staging_and_names_the_state() {
    let c = Chain::new();
    c.ok("2026-09", "2026-09", true);
    let before = c.published("2026-09");
    let o = c.run_env(
        "2026-10",
        "2026-10",
        false,
        &[("INCENTIVES_FAIL_AT", "state")],
    );
    assert_eq!(o.status, 1, "{}", o.stderr);
    let db = c.state.join("state.db");
    assert!(
        o.stderr
            .contains(&format!("{}: the state could not be written", db.display())),
        "{}",
        o.stderr
    );
    assert!(o.stderr.contains("full"), "{}", o.stderr);
    assert!(o.stderr.contains("nothing was committed"), "{}", o.stderr);
    assert!(c.hidden(".2026-10.run-").is_empty());
    assert!(c.published("2026-10").is_none());
    assert_eq!(c.published("2026-09"), before);
    let s = c.status(&[]);
    assert!(!s.stdout.contains("2026-10"), "{}", s.stdout);
    c.ok("2026-10", "2026-10", false);
}

#[test]
fn two_states_in_one_out_keep_each_others_staging_and_one_publisher_per_cycle() {
    let a = Chain::new();
    let b = a.beside("state-b");
    // A is writing 09 (its staging folder exists, its owner alive).
    let mut holder = a.paused("2026-09", "2026-09", true, "staged");
    let a_staging = a.hidden(".2026-09.run-");
    assert_eq!(a_staging.len(), 1);
    // B may not publish 2026-09 at the same time: exit 5 naming the lock, nothing changed.
    let o = b.run_env("2026-09", "2026-09", true, &[]);
    assert_eq!(o.status, 5, "{}", o.stderr);
    assert!(o.stderr.contains(".2026-09.lock"), "{}", o.stderr);
    assert!(
        o.stderr.contains(&format!("pid {}", holder.id())),
        "{}",
        o.stderr
    );
    // B runs another cycle into the same --out: A's staging folder is left alone.
    b.ok("2026-10", "2026-10", true);
    assert_eq!(a.hidden(".2026-09.run-"), a_staging);
    // A is killed before its commit: B still leaves A's leftover (another state's) ...
    kill(&mut holder);
    b.ok("2026-10", "2026-10", true);
    assert_eq!(a.hidden(".2026-09.run-"), a_staging);
    // ... and A's next run removes it, with a link a killed run left.
    std::os::unix::fs::symlink(".2026-09.run-x", a.out.join(".2026-09.link-4194304-1")).unwrap();
    let o = a.run_env("2026-09", "2026-09", true, &[]);
    assert_eq!(o.status, 0, "{}", o.stderr);
    assert!(
        o.stderr.contains("removed what killed runs left"),
        "{}",
        o.stderr
    );
    let left = a.hidden(".2026-09.run-");
    assert_eq!(left.len(), 1, "{left:?}");
    assert_ne!(left, a_staging);
    assert_eq!(a.published("2026-09").as_deref(), Some(left[0].as_str()));
    assert!(a.hidden(".2026-09.link-").is_empty());
    // B's published cycle is untouched by A's sweep.
    assert!(b.published("2026-10").is_some());
    assert!(b.out.join("2026-10/manifest.json").exists());
}

#[test]
fn a_half_deleted_folder_of_a_killed_run_is_removed_by_the_next_run() {
    let c = Chain::new();
    c.ok("2026-09", "2026-09", true);
    let first = c.published("2026-09").unwrap();
    // Killed after publishing the re-run, before the replaced folder was removed: that folder,
    // half-deleted as by a kill inside `rm -r`, is what is left.
    let o = c.run_env(
        "2026-09",
        "2026-09",
        true,
        &[("INCENTIVES_ABORT_AT", "published")],
    );
    assert_ne!(o.status, 0);
    let now = c.published("2026-09").unwrap();
    assert_ne!(now, first);
    let old = c.out.join(&first);
    if old.exists() {
        fs::remove_file(old.join("ledger.csv")).unwrap();
    } else {
        fs::create_dir_all(old.join("ledgers")).unwrap();
    }
    c.ok("2026-10", "2026-10", false);
    assert_eq!(c.hidden(".2026-09.run-"), vec![now.clone()]);
    assert_eq!(c.published("2026-09"), Some(now));
}

fn signal(child: &mut Child, signal: i32) -> (i32, String) {
    // SAFETY: kill(2) on the pid of a child this test spawned and has not yet waited for.
    assert_eq!(unsafe { libc::kill(child.id() as i32, signal) }, 0);
    let status = child.wait().unwrap();
    (status.code().unwrap_or(-1), rest_of_stderr())
}

#[test]
fn sigterm_or_sigint_before_the_commit_point_stops_cleanly_and_changes_nothing() {
    for (phase, sig, name) in [
        ("loaded", libc::SIGTERM, "SIGTERM"),
        ("reconciled", libc::SIGINT, "SIGINT"),
        ("staged", libc::SIGTERM, "SIGTERM"),
    ] {
        let c = Chain::new();
        c.ok("2026-09", "2026-09", true);
        c.ok("2026-10", "2026-10", false);
        let status_before = c.status(&[]).stdout;
        let mut child = c.paused("2026-11", "2026-11", false, phase);
        let (code, stderr) = signal(&mut child, sig);
        assert_eq!(code, 1, "{phase}: {stderr}");
        assert!(
            stderr.contains(&format!("stopped by {name} before the commit point")),
            "{phase}: {stderr}"
        );
        assert!(stderr.contains("nothing was committed"), "{stderr}");
        // Staging removed, nothing published, the state as it was, the lock released.
        assert!(c.hidden(".2026-11.run-").is_empty(), "{phase}");
        assert!(c.published("2026-11").is_none(), "{phase}");
        assert_eq!(c.status(&[]).stdout, status_before, "{phase}");
        assert_eq!(fs::read_to_string(c.state.join("lock")).unwrap(), "");
        let o = c.run_env("2026-11", "2026-11", false, &[]);
        assert_eq!(o.status, 0, "{phase}: {}", o.stderr);
        assert!(!o.stderr.contains("is gone"), "{phase}: {}", o.stderr);
    }
}

#[test]
fn sigterm_after_the_commit_point_finishes_the_publication_and_says_so() {
    let c = Chain::new();
    c.ok("2026-09", "2026-09", true);
    let mut child = c.paused("2026-10", "2026-10", false, "committed");
    let (code, stderr) = signal(&mut child, libc::SIGTERM);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("stopped by SIGTERM after the commit point"),
        "{stderr}"
    );
    assert!(stderr.contains("publication finished"), "{stderr}");
    assert!(c.published("2026-10").is_some());
    let s = c.status(&[]);
    assert!(s.stdout.contains("2026-10  ok"), "{}", s.stdout);
    assert_eq!(c.hidden(".2026-10.run-").len(), 1);
}

#[test]
fn a_folder_file_or_link_at_out_cycle_that_incentives_did_not_create_is_refused_and_kept() {
    for kind in ["folder", "file", "link"] {
        let c = Chain::new();
        c.ok("2026-09", "2026-09", true);
        let target = c.out.join("2026-10");
        let elsewhere = c.out.join("elsewhere");
        fs::create_dir_all(&elsewhere).unwrap();
        match kind {
            "folder" => {
                fs::create_dir(&target).unwrap();
                fs::write(target.join("mine.txt"), "mine").unwrap();
            }
            "file" => fs::write(&target, "mine").unwrap(),
            _ => std::os::unix::fs::symlink(&elsewhere, &target).unwrap(),
        }
        let o = c.run_env("2026-10", "2026-10", false, &[]);
        assert_eq!(o.status, 2, "{kind}: {}", o.stderr);
        assert!(
            o.stderr.contains("incentives did not create"),
            "{}",
            o.stderr
        );
        assert!(o.stderr.contains("left as it is"), "{}", o.stderr);
        // Refused before the inputs are read: nothing committed, nothing staged, nothing moved.
        assert!(!o.stderr.contains("phase=\"load\""), "{}", o.stderr);
        assert!(!c.status(&[]).stdout.contains("2026-10"));
        assert!(c.hidden(".2026-10.run-").is_empty());
        match kind {
            "folder" => assert_eq!(fs::read_to_string(target.join("mine.txt")).unwrap(), "mine"),
            "file" => assert_eq!(fs::read_to_string(&target).unwrap(), "mine"),
            _ => assert_eq!(fs::read_link(&target).unwrap(), elsewhere),
        }
        assert!(fs::read_dir(&elsewhere).unwrap().next().is_none());
    }
}

#[test]
fn a_link_planted_where_a_lock_is_created_is_not_followed() {
    for lock in ["state", "out"] {
        let c = Chain::new();
        fs::create_dir_all(&c.state).unwrap();
        fs::create_dir_all(&c.out).unwrap();
        let victim = c.out.parent().unwrap().join("victim");
        fs::write(&victim, "keep").unwrap();
        let at = if lock == "state" {
            c.state.join("lock")
        } else {
            c.out.join(".2026-09.lock")
        };
        std::os::unix::fs::symlink(&victim, &at).unwrap();
        let o = c.run_env("2026-09", "2026-09", true, &[]);
        assert_eq!(o.status, 2, "{lock}: {}", o.stderr);
        assert!(
            o.stderr
                .contains(&format!("{}: is a symbolic link", at.display())),
            "{}",
            o.stderr
        );
        assert_eq!(fs::read_to_string(&victim).unwrap(), "keep");
        assert!(fs::symlink_metadata(&at).unwrap().file_type().is_symlink());
    }
}

#[test]
fn an_outside_flock_holder_of_the_lock_is_exit_5_naming_the_lock_file() {
    let c = Chain::new();
    c.ok("2026-09", "2026-09", true);
    let path = c.state.join("lock");
    // This test process is the outside holder (as `flock state/lock sleep 60` would be).
    let file = fs::OpenOptions::new().write(true).open(&path).unwrap();
    file.lock().unwrap();
    let o = c.run_env("2026-10", "2026-10", false, &[]);
    assert_eq!(o.status, 5, "{}", o.stderr);
    assert!(
        o.stderr.contains(&format!(
            "{}: a process outside incentives holds the state lock",
            path.display()
        )),
        "{}",
        o.stderr
    );
    assert!(o.stderr.contains("fuser"), "{}", o.stderr);
    file.unlock().unwrap();
    c.ok("2026-10", "2026-10", false);
}

#[test]
fn report_refuses_a_planted_link_and_a_file_it_did_not_write() {
    let c = Chain::new();
    c.ok("2026-09", "2026-09", true);
    let report = |output: &std::path::Path| {
        let mut cmd = incentives();
        cmd.args(["report", "--cycle", "2026-09", "--out"])
            .arg(&c.out)
            .arg("--output")
            .arg(output);
        run(&mut cmd)
    };
    let dir = c.out.parent().unwrap();
    let victim = dir.join("victim.txt");
    fs::write(&victim, "keep").unwrap();
    let link = dir.join("linked.html");
    std::os::unix::fs::symlink(&victim, &link).unwrap();
    let o = report(&link);
    assert_eq!(o.status, 2, "{}", o.stderr);
    assert!(o.stderr.contains("is a symbolic link"), "{}", o.stderr);
    assert_eq!(fs::read_to_string(&victim).unwrap(), "keep");
    let o = report(&victim);
    assert_eq!(o.status, 2, "{}", o.stderr);
    assert!(
        o.stderr.contains("not a report incentives wrote"),
        "{}",
        o.stderr
    );
    assert_eq!(fs::read_to_string(&victim).unwrap(), "keep");
    // A report of ours is replaced.
    let page = dir.join("page.html");
    assert_eq!(report(&page).status, 0);
    let o = report(&page);
    assert_eq!(o.status, 0, "{}", o.stderr);
    assert!(fs::read_to_string(&page).unwrap().contains("2026-09"));
}

#[test]
fn a_rerun_names_the_cycles_it_made_stale_and_readers_warn_on_them() {
    let c = Chain::new();
    c.ok("2026-09", "2026-09", true);
    c.ok("2026-10", "2026-10", false);
    c.ok("2026-11", "2026-11", false);
    let o = c.run_env("2026-10", "2026-10-corrected", false, &[]);
    assert_eq!(o.status, 0, "{}", o.stderr);
    assert!(
        o.stderr
            .contains("re-running 2026-10 made later cycles stale: 2026-11"),
        "{}",
        o.stderr
    );
    assert!(o.stdout.contains("made stale      2026-11"), "{}", o.stdout);
    let mut json = incentives();
    json.args(c.args("2026-09", "2026-09", true))
        .args(["--log-format", "json"]);
    let j = run(&mut json);
    assert_eq!(j.status, 0, "{}", j.stderr);
    let summary = j
        .stderr
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|v| v["event"] == "summary")
        .unwrap();
    assert_eq!(
        summary["made_stale"],
        serde_json::json!(["2026-10", "2026-11"])
    );

    let reader = |cmd: &str, cycle: &str, state: &std::path::Path| {
        let mut r = incentives();
        r.args([cmd, "--cycle", cycle, "--out"])
            .arg(&c.out)
            .arg("--state")
            .arg(state);
        if cmd == "explain" {
            r.args(["--partner", "SP1"]);
        } else {
            r.arg("--output").arg(c.out.join(format!("{cycle}.html")));
        }
        run(&mut r)
    };
    for cmd in ["explain", "report"] {
        let o = reader(cmd, "2026-11", &c.state);
        assert_eq!(o.status, 0, "{cmd}: {}", o.stderr);
        assert!(
            o.stderr.contains("warning: cycle 2026-11 is STALE"),
            "{cmd}: {}",
            o.stderr
        );
        let o = reader(cmd, "2026-09", &c.state);
        assert_eq!(o.status, 0, "{cmd}: {}", o.stderr);
        assert!(o.stderr.is_empty(), "{cmd}: {}", o.stderr);
        // No state to ask: said once, and the answer follows.
        let o = reader(cmd, "2026-09", &c.out.join("no-state-here"));
        assert_eq!(o.status, 0, "{cmd}: {}", o.stderr);
        assert_eq!(o.stderr.matches("no state in").count(), 1, "{}", o.stderr);
    }
}

#[test]
fn status_json_and_text_show_each_cycles_state_run_time_with_zone_and_totals() {
    let c = Chain::new();
    c.ok("2026-09", "2026-09", true);
    c.ok("2026-10", "2026-10", false);
    let o = c.run_env(
        "2026-11",
        "2026-11",
        false,
        &[("INCENTIVES_FAIL_AT", "publish")],
    );
    assert_eq!(o.status, 1);
    let doc = |c: &Chain| -> serde_json::Value {
        let o = c.status(&["--json"]);
        assert_eq!(o.status, 0, "{}", o.stderr);
        assert_eq!(o.stdout.lines().count(), 1, "{}", o.stdout);
        serde_json::from_str(&o.stdout).unwrap()
    };
    let d = doc(&c);
    let cycles = d["cycles"].as_array().unwrap();
    assert_eq!(cycles.len(), 3);
    assert_eq!(cycles[0]["state"], "ok");
    assert_eq!(cycles[0]["credited"], serde_json::json!({"CNY": "830.00"}));
    assert_eq!(cycles[0]["ruleset_hash"].as_str().unwrap().len(), 64);
    assert!(cycles[0]["run_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(cycles[2]["state"], "pending");
    assert_eq!(cycles[2]["credited"], serde_json::json!({"CNY": "-470.00"}));
    // Lost before publication: unpublished, with the command that repairs it.
    let staged = cycles[2]["staged"].as_str().unwrap();
    fs::remove_dir_all(staged).unwrap();
    let d = doc(&c);
    assert_eq!(d["cycles"][2]["state"], "unpublished");
    assert!(
        d["cycles"][2]["repair"]
            .as_str()
            .unwrap()
            .starts_with("incentives run --cycle 2026-11 --input")
    );
    // A re-run of 10 makes 11 stale (and publishes it again).
    c.ok("2026-10", "2026-10", false);
    assert_eq!(doc(&c)["cycles"][2]["state"], "unpublished");
    c.ok("2026-11", "2026-11", false);
    c.ok("2026-10", "2026-10", false);
    assert_eq!(doc(&c)["cycles"][2]["state"], "STALE");

    // The text: run time with its zone (the tests' TZ is America/Los_Angeles), words, and the
    // totals as a right-aligned figure per currency.
    let text = c.status(&[]).stdout;
    let row = text.lines().find(|l| l.starts_with("2026-09")).unwrap();
    assert!(
        row.contains(" -08:00 ") || row.contains(" -07:00 "),
        "{text}"
    );
    assert!(row.starts_with("2026-09  ok "), "{text}");
    assert!(row.ends_with("  830.00"), "{text}");
    assert!(text.contains("2026-11  STALE "), "{text}");
    let header = text.lines().next().unwrap();
    assert_eq!(header.len(), row.len(), "{text}");
}

#[test]
fn the_summary_shows_amounts_at_the_currency_scale_in_aligned_columns() {
    let c = Chain::new();
    c.ok("2026-09", "2026-09", true);
    let o = c.run_env("2026-10", "2026-10", false, &[]);
    assert_eq!(o.status, 0, "{}", o.stderr);
    let lines: Vec<&str> = o.stdout.lines().collect();
    let start = lines
        .iter()
        .position(|l| l.trim_start().starts_with("per currency"))
        .unwrap_or_else(|| panic!("{}", o.stdout));
    let table: Vec<&str> = lines[start..]
        .iter()
        .take_while(|l| !l.contains("withdrawals pending"))
        .copied()
        .collect();
    assert!(table.len() > 5, "{}", o.stdout);
    // Every row as long as the header: the figures are right-aligned under the currency.
    for l in &table {
        assert_eq!(l.chars().count(), table[0].chars().count(), "{}", o.stdout);
    }
    assert!(table[0].ends_with("CNY"), "{}", o.stdout);
    let credited = table[1];
    assert!(
        credited.contains("incentive credited to 2026-10"),
        "{}",
        o.stdout
    );
    assert!(credited.ends_with(" 190.00"), "{}", o.stdout);
    assert!(
        table
            .iter()
            .any(|l| l.contains("vouchers deducted") && l.ends_with(" 1000.00")),
        "{}",
        o.stdout
    );
}
