//! Locks held by the operating system: an exclusive `flock` on `STATE/lock` (one run per state)
//! and on `OUT/.<cycle>.lock` (one publisher per published cycle), held for the whole run. The
//! operating system releases a lock when its holder dies, so a killed run never blocks the next
//! one; the file records who holds it (pid and start time), for the message a second run prints.
//! A lock file is opened without following a symbolic link planted in its place.

use super::error::StateError;
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// A held lock; released when dropped (or when the process dies).
pub struct Lock {
    file: File,
}

/// Kept under its old name: the state's lock.
pub type StateLock = Lock;

pub use crate::process::{alive, me, process_start};

/// Who a lock file says holds it: `pid P started T ticks S`.
struct Holder {
    pid: u32,
    start: Option<u64>,
    text: String,
}

fn holder(text: &str) -> Option<Holder> {
    let words: Vec<&str> = text.split_whitespace().collect();
    if words.first() != Some(&"pid") {
        return None;
    }
    let pid = words.get(1)?.parse().ok()?;
    let start = words
        .iter()
        .position(|w| *w == "ticks")
        .and_then(|i| words.get(i + 1))
        .and_then(|t| t.parse().ok());
    let shown = words
        .iter()
        .position(|w| *w == "ticks")
        .map_or(words.len(), |i| i);
    Some(Holder {
        pid,
        start,
        text: words[..shown].join(" "),
    })
}

impl Holder {
    /// Whether the process named is still running (an older lock file has no start time).
    fn running(&self) -> bool {
        match self.start {
            Some(start) => alive(self.pid, start),
            None => process_start(self.pid).is_some(),
        }
    }
}

/// Opens `path` for a lock without following a symbolic link; a link, a folder or an error is
/// named with what to do.
pub fn open_nofollow(path: &Path) -> Result<File, StateError> {
    OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .mode(0o644)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| {
            let meta = std::fs::symlink_metadata(path).ok();
            if meta.as_ref().is_some_and(|m| m.file_type().is_symlink()) {
                StateError::Usage(format!(
                    "{}: is a symbolic link, where incentives creates its lock file; it is not followed: remove the link (rm {}) and run again",
                    path.display(),
                    path.display()
                ))
            } else if meta.as_ref().is_some_and(|m| m.is_dir()) {
                StateError::Usage(format!(
                    "{}: is a folder, where incentives keeps its lock file: move it away and run again",
                    path.display()
                ))
            } else {
                StateError::io(path.display(), e)
            }
        })
}

impl Lock {
    /// Takes the state lock `STATE/lock` or fails with exit 5 naming the holder.
    pub fn acquire(dir: &Path) -> Result<Lock, StateError> {
        Lock::take(&dir.join("lock"), "the state lock", "the state")
    }

    /// Takes `OUT/.<cycle>.lock`: one publisher of `OUT/<cycle>` at a time, whatever its state.
    pub fn publisher(out_root: &Path, cycle: crate::calendar::Cycle) -> Result<Lock, StateError> {
        std::fs::create_dir_all(out_root).map_err(|e| StateError::io(out_root.display(), e))?;
        let published = out_root.join(cycle.to_string());
        Lock::take(
            &out_root.join(format!(".{cycle}.lock")),
            &format!("the lock on publishing {}", published.display()),
            &published.display().to_string(),
        )
    }

    /// Takes the lock at `path` or fails with exit 5: naming the run that holds it, or saying
    /// that a process outside incentives does. A note about a holder that died without clearing
    /// the file (it cannot hold the lock: the OS dropped it) goes to stderr.
    fn take(path: &Path, what: &str, guarded: &str) -> Result<Lock, StateError> {
        let mut file = open_nofollow(path)?;
        let mut text = String::new();
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let _ = file.read_to_string(&mut text);
                return Err(busy(path, what, guarded, &text));
            }
            Err(TryLockError::Error(e)) => return Err(StateError::io(path.display(), e)),
        }
        let _ = file.read_to_string(&mut text);
        if let Some(h) = holder(&text)
            && h.pid != std::process::id()
            && !h.running()
        {
            crate::progress::note(
                "WARN",
                &format!(
                    "note: {} named a run that is gone ({}); its lock died with it and is cleared",
                    path.display(),
                    h.text
                ),
            );
        }
        let (pid, start) = me();
        let line = format!(
            "pid {pid} started {} ticks {start}\n",
            crate::calendar::format_instant(chrono::Utc::now())
        );
        file.set_len(0)
            .and_then(|_| file.seek(SeekFrom::Start(0)))
            .and_then(|_| file.write_all(line.as_bytes()))
            .and_then(|_| file.sync_all())
            .map_err(|e| StateError::io(path.display(), e))?;
        Ok(Lock { file })
    }
}

/// The exit-5 message for a lock held by someone else.
fn busy(path: &Path, what: &str, guarded: &str, text: &str) -> StateError {
    let shown = path.display();
    match holder(text).filter(Holder::running) {
        Some(h) => StateError::Locked(format!(
            "{shown}: another incentives run holds {what} ({}); wait for it to finish and run again",
            h.text
        )),
        // Nothing recorded, or a run that is gone: the flock is someone else's.
        None => StateError::Locked(format!(
            "{shown}: a process outside incentives holds {what} (an flock on this file, not an incentives run); \
             find it with `fuser -v {shown}` (or `lsof {shown}`), let it finish or stop it, then run again; \
             nothing in {guarded} was changed"
        )),
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        // A clean exit leaves no holder behind; the lock itself is released with the file.
        let _ = self.file.set_len(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_a_wrong_start_time_is_not() {
        let (pid, start) = me();
        assert!(start > 0);
        assert!(alive(pid, start));
        assert!(!alive(pid, start + 1));
        let h = holder("pid 12 started 2026-01-01T00:00:00Z ticks 99\n").unwrap();
        assert_eq!((h.pid, h.start), (12, Some(99)));
        assert_eq!(h.text, "pid 12 started 2026-01-01T00:00:00Z");
        assert!(holder("").is_none());
    }

    #[test]
    fn a_planted_link_is_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("target");
        std::fs::write(&target, "keep").unwrap();
        std::os::unix::fs::symlink(&target, dir.path().join("lock")).unwrap();
        let e = Lock::acquire(dir.path()).err().unwrap();
        assert!(e.to_string().contains("symbolic link"), "{e}");
        assert_eq!(crate::error::RunError::from(e).exit_code(), 2);
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep");
    }
}
