//! Last stage: write the cycle's outputs into a staging folder, then publish them atomically.
//!
//! `--out DIR/<cycle>` is a symbolic link to a hidden folder `DIR/.<cycle>.run-XXXXXX`. A run
//! writes a fresh hidden folder, syncs it, and swaps the link with one `rename(2)`: a reader sees the
//! previous complete folder or the new complete one, never a partial or missing one. A run that
//! fails drops its staging folder and leaves the published one untouched.

mod balances;
mod explanations;
mod ledger;
mod manifest;
mod table;
mod writeback;

pub use crate::chain::LEDGER_COLUMNS;
pub use balances::{write_expiry_report, write_subsidies, write_vouchers};
pub use explanations::write_explanations;
pub use ledger::{write_ledgers, write_outcomes};
pub use manifest::{Identities, Manifest, Timings};
pub use table::{Batch, Encoded, Format, Out, Table};

use crate::calendar::Cycle;
use crate::error::RunError;
use crate::reject::Reject;
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::fs;
use std::path::{Path, PathBuf};

/// What the manifest records of a written file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WrittenFile {
    pub file: String,
    /// Data rows (CSV header not counted); none for JSON.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rows: Option<u64>,
    pub sha256: String,
}

/// A cycle's outputs being written.
pub struct Staging {
    dir: tempfile::TempDir,
    format: Format,
    /// Filled by writers that may run on several threads.
    written: std::sync::Mutex<Vec<WrittenFile>>,
}

impl Staging {
    /// Creates `out_root` if needed and a fresh hidden staging folder inside it (same file system,
    /// so the publishing rename is atomic).
    pub fn begin(out_root: &Path, cycle: Cycle, format: Format) -> Result<Staging, RunError> {
        fs::create_dir_all(out_root).map_err(|e| RunError::io(out_root.display(), e))?;
        let dir = tempfile::Builder::new()
            .prefix(&format!(".{cycle}.run-"))
            .tempdir_in(out_root)
            .map_err(|e| RunError::io(out_root.display(), e))?;
        Ok(Staging {
            dir,
            format,
            written: Default::default(),
        })
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn format(&self) -> Format {
        self.format
    }

    /// Opens an output table in the run's format (`name` without extension; it may contain
    /// one folder level, e.g. `ledgers/P1`).
    pub fn table(&self, name: &str, columns: &[&str]) -> Result<Table, RunError> {
        Table::create(self.dir.path(), name, columns, self.format)
    }

    /// Finishes (syncs) an output table and records it.
    pub fn finish(&self, table: Table) -> Result<(), RunError> {
        let written = table.finish()?;
        self.record(written);
        Ok(())
    }

    fn record(&self, written: WrittenFile) {
        match self.written.lock() {
            Ok(mut files) => files.push(written),
            Err(poisoned) => poisoned.into_inner().push(written),
        }
    }

    /// Writes a small file whole (the manifest).
    pub fn write_file(&self, name: &str, bytes: &[u8]) -> Result<(), RunError> {
        let path = self.dir.path().join(name);
        fs::write(&path, bytes).map_err(|e| RunError::io(path.display(), e))?;
        self.record(WrittenFile {
            file: name.to_string(),
            rows: None,
            sha256: hex::encode(Sha256::digest(bytes)),
        });
        Ok(())
    }

    /// The files written so far, sorted by name.
    pub fn written(&self) -> Vec<WrittenFile> {
        let mut files = match self.written.lock() {
            Ok(files) => files.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        };
        files.sort_by(|a, b| a.file.cmp(&b.file));
        files
    }

    /// Finishes the staged folder (every file and the folders synced, kept on disk) and
    /// returns its path, ready for the state commit and then [`publish`]. The files written so
    /// far are synced while `last` runs on this thread (at 10M lines the device is still
    /// writing for seconds, and the manifest can be computed meanwhile); what `last` writes
    /// (the manifest) is synced after it.
    pub fn into_staged_after<T>(
        self,
        last: impl FnOnce(&Staging) -> Result<T, RunError>,
    ) -> Result<(PathBuf, T), RunError> {
        let paths = |files: &[WrittenFile]| -> Vec<PathBuf> {
            files
                .iter()
                .map(|w| self.dir.path().join(&w.file))
                .collect()
        };
        let before = self.written();
        let (synced, value) = std::thread::scope(|scope| {
            let syncing = scope.spawn(|| sync_all(&paths(&before)));
            let value = last(&self);
            let synced = syncing
                .join()
                .unwrap_or_else(|_| Err(RunError::Io("syncing outputs: a thread panicked".into())));
            (synced, value)
        });
        synced?;
        let value = value?;
        let after: Vec<WrittenFile> = self
            .written()
            .into_iter()
            // Both lists are sorted by name.
            .filter(|w| before.binary_search_by(|b| b.file.cmp(&w.file)).is_err())
            .collect();
        sync_all(&paths(&after))?;
        let staged = self.dir.keep();
        sync_dir(&staged.join("ledgers"))
            .or_else(|e| {
                if e.kind() == std::io::ErrorKind::NotFound {
                    Ok(())
                } else {
                    Err(e)
                }
            })
            .and_then(|_| sync_dir(&staged))
            .map_err(|e| RunError::io(staged.display(), e))?;
        Ok((staged, value))
    }
}

/// fsync of every file, on a few threads at once: most of the data is written back already,
/// and what remains is waited for together rather than file after file.
fn sync_all(files: &[PathBuf]) -> Result<(), RunError> {
    const SYNC_THREADS: usize = 8;
    let per_thread = files.len().div_ceil(SYNC_THREADS).max(1);
    std::thread::scope(|scope| {
        let handles: Vec<_> = files
            .chunks(per_thread)
            .map(|chunk| {
                scope.spawn(move || {
                    for path in chunk {
                        fs::File::open(path)
                            .and_then(|f| f.sync_all())
                            .map_err(|e| RunError::io(path.display(), e))?;
                    }
                    Ok::<(), RunError>(())
                })
            })
            .collect();
        for h in handles {
            h.join()
                .map_err(|_| RunError::Io("syncing outputs: a thread panicked".into()))??;
        }
        Ok(())
    })
}

/// Makes `staged` (a hidden folder of `out_root`) the cycle's published result with one rename
/// of the `OUT/<cycle>` link, then removes the folder it replaced. Publishing a folder that is
/// already the published one does nothing; so a publication interrupted by a crash can be
/// finished by running this again.
pub fn publish(out_root: &Path, cycle: Cycle, staged: &Path) -> Result<PathBuf, RunError> {
    let io = |what: &Path, e| RunError::io(what.display(), e);
    let target_name = staged
        .file_name()
        .map(|n| n.to_os_string())
        .ok_or_else(|| RunError::Io(format!("{}: staging folder has no name", staged.display())))?;
    let published = out_root.join(cycle.to_string());
    let previous = previous_target(&published, out_root, cycle).map_err(|e| io(&published, e))?;
    if previous.as_deref().and_then(|p| p.file_name()) == Some(target_name.as_os_str()) {
        return Ok(published);
    }
    if !staged.is_dir() {
        return Err(RunError::Io(format!(
            "{}: the staged results to publish are missing",
            staged.display()
        )));
    }
    // A real folder left by something else cannot be swapped atomically: move it aside first.
    if published.is_dir() && !is_symlink(&published) {
        let aside = out_root.join(format!(".{cycle}.replaced-{}", std::process::id()));
        fs::rename(&published, &aside).map_err(|e| io(&published, e))?;
    }
    let link = out_root.join(format!(".{cycle}.link-{}", std::process::id()));
    let _ = fs::remove_file(&link);
    std::os::unix::fs::symlink(&target_name, &link).map_err(|e| io(&link, e))?;
    fs::rename(&link, &published).map_err(|e| io(&published, e))?;
    sync_dir(out_root).map_err(|e| io(out_root, e))?;
    // The old result is no longer reachable; remove it (a failure here loses nothing).
    if let Some(old) = previous {
        let _ = fs::remove_dir_all(old);
    }
    Ok(published)
}

/// Removes staging folders of `cycle` that runs killed before their commit left behind: every
/// `.<cycle>.run-*` folder that is neither published nor in `keep`. Called with the state lock
/// held, so no other run is writing one.
pub fn sweep(out_root: &Path, cycle: Cycle, keep: &[PathBuf]) {
    let Ok(entries) = fs::read_dir(out_root) else {
        return;
    };
    let published = previous_target(&out_root.join(cycle.to_string()), out_root, cycle)
        .ok()
        .flatten();
    let prefix = format!(".{cycle}.run-");
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with(&prefix)
            && published.as_deref() != Some(path.as_path())
            && !keep.iter().any(|k| k.file_name() == path.file_name())
        {
            let _ = fs::remove_dir_all(&path);
        }
    }
}

fn is_symlink(path: &Path) -> bool {
    fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink())
}

/// The hidden folder the published link points at, if it is one of ours.
fn previous_target(
    published: &Path,
    out_root: &Path,
    cycle: Cycle,
) -> std::io::Result<Option<PathBuf>> {
    if !is_symlink(published) {
        return Ok(None);
    }
    let target = fs::read_link(published)?;
    let ours = target.components().count() == 1
        && target
            .to_string_lossy()
            .starts_with(&format!(".{cycle}.run-"));
    Ok(ours.then(|| out_root.join(target)))
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    fs::File::open(dir)?.sync_all()
}

/// `rejects.csv` (SPEC Appendix B), rows already sorted by file, row, column.
pub fn write_rejects(staging: &Staging, rejects: &[Reject]) -> Result<(), RunError> {
    let mut out = staging.table("rejects", &["file", "row", "column", "value", "reason"])?;
    for r in rejects {
        let row = r.row.to_string();
        let reason = r.reason();
        out.row(&[
            Out::Text(r.file),
            Out::Number(&row),
            Out::Text(r.column),
            Out::Text(&r.value),
            Out::Text(&reason),
        ])?;
    }
    staging.finish(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_written_last_is_staged_and_a_failure_there_leaves_nothing() {
        let out = tempfile::tempdir().unwrap();
        let cycle: Cycle = "2026-10".parse().unwrap();
        let staging = Staging::begin(out.path(), cycle, Format::Csv).unwrap();
        staging.write_file("early.txt", b"early").unwrap();
        let (staged, seen) = staging
            .into_staged_after(|s| {
                let seen = s.written().len();
                s.write_file("manifest.json", b"{}")?;
                Ok(seen)
            })
            .unwrap();
        // The closure saw the files written before it; both files are in the staged folder.
        assert_eq!(seen, 1);
        assert_eq!(fs::read(staged.join("early.txt")).unwrap(), b"early");
        assert_eq!(fs::read(staged.join("manifest.json")).unwrap(), b"{}");

        // A failing last step: the error comes back and the staging folder is removed.
        let staging = Staging::begin(out.path(), cycle, Format::Csv).unwrap();
        let folder = staging.path().to_path_buf();
        staging.write_file("early.txt", b"early").unwrap();
        let failed = staging.into_staged_after(|_| -> Result<(), RunError> {
            Err(RunError::Io("manifest failed".into()))
        });
        assert!(failed.is_err());
        assert!(!folder.exists());
    }
}
