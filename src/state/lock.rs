//! The state lock: an exclusive `flock` on `STATE/lock`, held for the whole run. The operating
//! system releases it when its holder dies, so a killed run never blocks the next one; the file
//! records who holds it, for the message a second run prints.

use crate::error::RunError;
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

pub struct StateLock {
    file: File,
}

/// Whether a process with this pid is running (Linux: its /proc entry exists).
fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

impl StateLock {
    /// Takes the lock or fails with exit 5 naming the holder. A note about a holder that died
    /// without releasing the file (it cannot hold the lock: the OS dropped it) goes to stderr.
    pub fn acquire(dir: &Path) -> Result<StateLock, RunError> {
        let path = dir.join("lock");
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| RunError::io(path.display(), e))?;
        let mut holder = String::new();
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let _ = file.read_to_string(&mut holder);
                return Err(RunError::Locked(format!(
                    "{}: another run holds the state lock ({}); wait for it to finish",
                    path.display(),
                    holder.trim()
                )));
            }
            Err(TryLockError::Error(e)) => return Err(RunError::io(path.display(), e)),
        }
        let _ = file.read_to_string(&mut holder);
        if let Some(pid) = holder
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.parse::<u32>().ok())
            && pid != std::process::id()
            && !alive(pid)
        {
            crate::progress::note(
                "WARN",
                &format!(
                    "note: {} named a run that is gone ({}); its lock died with it and is cleared",
                    path.display(),
                    holder.trim()
                ),
            );
        }
        let me = format!(
            "pid {} started {}\n",
            std::process::id(),
            crate::calendar::format_instant(chrono::Utc::now())
        );
        file.set_len(0)
            .and_then(|_| file.seek(SeekFrom::Start(0)))
            .and_then(|_| file.write_all(me.as_bytes()))
            .and_then(|_| file.sync_all())
            .map_err(|e| RunError::io(path.display(), e))?;
        Ok(StateLock { file })
    }
}

impl Drop for StateLock {
    fn drop(&mut self) {
        // A clean exit leaves no holder behind; the lock itself is released with the file.
        let _ = self.file.set_len(0);
    }
}
