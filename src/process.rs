//! This process and others: who a process is (pid and start time, so a reused pid is not
//! mistaken for a dead holder), whether it still runs, and the faults a debug build injects. A
//! leaf: the locks (`state/`) and the staging folders (`write/`) both use it.

/// When process `pid` started, in clock ticks since boot (field 22 of `/proc/<pid>/stat`): with
/// the pid, it names one process, even after the pid is reused. `None` if no such process.
pub fn process_start(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces: count after its end.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// This process's (pid, start time).
pub fn me() -> (u32, u64) {
    let pid = std::process::id();
    (pid, process_start(pid).unwrap_or(0))
}

/// Whether the process (pid, start) is running: the pid exists and started at that time.
pub fn alive(pid: u32, start: u64) -> bool {
    process_start(pid) == Some(start)
}

/// Debug builds only: `INCENTIVES_FAIL_AT=<point>` makes that step fail as a full disk would.
pub fn injected_failure(point: &str) -> Option<std::io::Error> {
    (cfg!(debug_assertions) && std::env::var("INCENTIVES_FAIL_AT").is_ok_and(|p| p == point))
        .then(|| std::io::Error::from_raw_os_error(libc::ENOSPC))
}
