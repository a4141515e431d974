//! Last stage: write the cycle's outputs into a staging folder, then publish them atomically.
//!
//! `--out DIR/<cycle>` is a symbolic link to a hidden folder
//! `DIR/.<cycle>.run-<pid>-<start>-<state>-XXXXXX`, named after the run that made it (its pid
//! and start time, and a tag of its state folder). A run writes a fresh hidden folder, syncs
//! it, and swaps the link with one `rename(2)`: a reader sees the previous complete folder or
//! the new complete one, never a partial or missing one. A run that fails drops its staging
//! folder and leaves the published one untouched. Leftovers are removed only by a run of the
//! same state and only when their owner is dead; a folder, file or link at `OUT/<cycle>` that
//! incentives did not create is refused, never replaced.

mod balances;
mod error;
mod explanations;
mod ledger;
mod manifest;
pub mod merge;
mod table;
mod writeback;

pub use crate::chain::LEDGER_COLUMNS;
pub use balances::{BALANCE_COLUMNS, DEDUCTION_COLUMNS, EXPIRY_COLUMNS, SUBSIDY_COLUMNS};
pub use balances::{write_expiry_report, write_subsidies, write_vouchers};
pub use explanations::COLUMNS as EXPLANATION_COLUMNS;
pub use explanations::write_explanations;
pub use ledger::{OUTCOME_COLUMNS, merge_ledgers, rejected_outcome, write_ledgers, write_outcomes};
pub use manifest::{Identities, Manifest, Timings};
pub use table::{Batch, Column, ColumnType, Encoded, Format, Out, Table};

use crate::calendar::Cycle;
use crate::reject::Reject;
pub use error::WriteError;
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
    /// so the publishing rename is atomic), named after this run and its state (`state_tag`).
    /// `mkdir` never follows a link planted at the name.
    pub fn begin(
        out_root: &Path,
        cycle: Cycle,
        format: Format,
        state_tag: &str,
    ) -> Result<Staging, WriteError> {
        fs::create_dir_all(out_root).map_err(|e| WriteError::io(out_root.display(), e))?;
        let out_root = absolute(out_root);
        let (pid, start) = crate::process::me();
        let dir = tempfile::Builder::new()
            .prefix(&format!(".{cycle}.run-{pid}-{start}-{state_tag}-"))
            .tempdir_in(&out_root)
            .map_err(|e| WriteError::io(out_root.display(), e))?;
        Ok(Staging {
            dir,
            format,
            written: Default::default(),
        })
    }

    /// Partition `k`'s folder for its tables before the merge ([`Format::Spill`]), in the run's
    /// spill folder; removed when dropped.
    pub fn partition(spill: &Path, k: u32) -> Result<Staging, WriteError> {
        let dir = tempfile::Builder::new()
            .prefix(&format!("partition-{:04}-", k + 1))
            .tempdir_in(spill)
            .map_err(|e| WriteError::io(spill.display(), e))?;
        Ok(Staging {
            dir,
            format: Format::Spill,
            written: Default::default(),
        })
    }

    /// A step's folder in a parts folder (SPEC §9: a split, a shard's part), hidden under a
    /// fresh name in `parts` until [`Staging::keep_as`] publishes it; removed if dropped.
    pub fn step(parts: &Path, name: &str) -> Result<Staging, WriteError> {
        fs::create_dir_all(parts).map_err(|e| WriteError::io(parts.display(), e))?;
        let (pid, start) = crate::process::me();
        let dir = tempfile::Builder::new()
            .prefix(&format!(".{name}.tmp-{pid}-{start}-"))
            .tempdir_in(parts)
            .map_err(|e| WriteError::io(parts.display(), e))?;
        Ok(Staging {
            dir,
            format: Format::Spill,
            written: Default::default(),
        })
    }

    /// Publishes a step's folder as `dest` by one rename. The first attempt to publish wins: when
    /// `dest` is already there (a duplicate or late attempt, byte for byte the same), this one
    /// is removed and `false` returned.
    pub fn keep_as(self, dest: &Path) -> Result<bool, WriteError> {
        let path = self.dir.keep();
        match fs::rename(&path, dest) {
            Ok(()) => Ok(true),
            Err(_) if dest.is_dir() => {
                let _ = fs::remove_dir_all(&path);
                Ok(false)
            }
            Err(e) => {
                let _ = fs::remove_dir_all(&path);
                Err(WriteError::io(dest.display(), e))
            }
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn format(&self) -> Format {
        self.format
    }

    /// Opens an output table in the run's format (`name` without extension; it may contain
    /// one folder level, e.g. `ledgers/P1`).
    pub fn table(&self, name: &str, columns: &'static [Column]) -> Result<Table, WriteError> {
        Table::create(self.dir.path(), name, columns, self.format)
    }

    /// Finishes (syncs) an output table and records it.
    pub fn finish(&self, table: Table) -> Result<(), WriteError> {
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
    pub fn write_file(&self, name: &str, bytes: &[u8]) -> Result<(), WriteError> {
        let path = self.dir.path().join(name);
        fs::write(&path, bytes).map_err(|e| WriteError::io(path.display(), e))?;
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
    pub fn into_staged_after<T, E: From<WriteError>>(
        self,
        last: impl FnOnce(&Staging) -> Result<T, E>,
    ) -> Result<(PathBuf, T), E> {
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
            let synced = syncing.join().unwrap_or_else(|_| {
                Err(WriteError::Io("syncing outputs: a thread panicked".into()))
            });
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
            .map_err(|e| WriteError::io(staged.display(), e))?;
        Ok((staged, value))
    }
}

/// fsync of every file, on a few threads at once: most of the data is written back already,
/// and what remains is waited for together rather than file after file.
fn sync_all(files: &[PathBuf]) -> Result<(), WriteError> {
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
                            .map_err(|e| WriteError::io(path.display(), e))?;
                    }
                    Ok::<(), WriteError>(())
                })
            })
            .collect();
        for h in handles {
            h.join()
                .map_err(|_| WriteError::Io("syncing outputs: a thread panicked".into()))??;
        }
        Ok(())
    })
}

/// `path` made absolute (against the current folder), without resolving links.
pub fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

/// The tag of a state folder in the names of its runs' staging folders: the first 12 hex digits
/// of the SHA-256 of its canonical path. A run sweeps only leftovers carrying its own tag.
pub fn state_tag(state_dir: &Path) -> String {
    let path = fs::canonicalize(state_dir).unwrap_or_else(|_| absolute(state_dir));
    let digest = Sha256::digest(path.as_os_str().as_encoded_bytes());
    hex::encode(digest)[..12].to_string()
}

/// The run a staging folder's name says made it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Owner {
    pid: u32,
    start: u64,
    tag: String,
}

/// `.<cycle>.run-<pid>-<start>-<tag>-XXXXXX` → the cycle and, for names of this release, the
/// owner (an older release named its folders `.<cycle>.run-XXXXXX`).
fn parse_run_name(name: &str) -> Option<(&str, Option<Owner>)> {
    let rest = name.strip_prefix('.')?;
    let (cycle, rest) = rest.split_once(".run-")?;
    let parts: Vec<&str> = rest.split('-').collect();
    let owner = match parts.as_slice() {
        [pid, start, tag, _random] => Some(Owner {
            pid: pid.parse().ok()?,
            start: start.parse().ok()?,
            tag: tag.to_string(),
        }),
        _ => None,
    };
    Some((cycle, owner))
}

/// Where a committed cycle's outputs stand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Publication {
    /// `OUT/<cycle>` is the staged folder.
    Published,
    /// The staged folder is there, not yet published.
    Pending,
    /// The staged folder is gone and was never published (deleted, a full disk): only a re-run
    /// of the cycle makes its outputs again.
    Lost,
}

/// A staged folder published to object storage, once the state records it: removed (nothing
/// reads it locally).
pub fn uploaded(out_root: &Path, staged: &Path) {
    if crate::store::remote_of(out_root).is_some() {
        let _ = fs::remove_dir_all(staged);
    }
}

/// Where the staged folder `staged` of `cycle`, committed in a state, stands.
pub fn publication(out_root: &Path, cycle: Cycle, staged: &Path) -> Publication {
    if crate::store::remote_of(out_root).is_some() {
        // Staged for object storage: published once the current marker names it (the staged
        // folder is removed only after the state says so).
        return if staged.is_dir() {
            Publication::Pending
        } else if crate::store::is_published(out_root, cycle, staged).unwrap_or(false) {
            Publication::Published
        } else {
            Publication::Lost
        };
    }
    let published = previous_target(&out_root.join(cycle.to_string()), out_root, cycle)
        .ok()
        .flatten();
    if published.as_deref().and_then(|p| p.file_name()) == staged.file_name() {
        Publication::Published
    } else if staged.is_dir() {
        Publication::Pending
    } else {
        Publication::Lost
    }
}

/// Checks `OUT/<cycle>` before a run reads its inputs: nothing there, or a link to a folder of
/// ours. A folder, a file or a link incentives did not create is refused (exit 2) and left as
/// it is. Returns the folder published now.
pub fn check_target(out_root: &Path, cycle: Cycle) -> Result<Option<PathBuf>, WriteError> {
    let published = out_root.join(cycle.to_string());
    let shown = published.display();
    let meta = match fs::symlink_metadata(&published) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(WriteError::io(shown, e)),
    };
    if meta.file_type().is_symlink() {
        return match previous_target(&published, out_root, cycle) {
            Ok(Some(target)) => Ok(Some(target)),
            Ok(None) => Err(WriteError::Usage(format!(
                "{shown}: is a symbolic link that incentives did not create (it points at {}); it is not followed and is left as it is: remove it (rm {shown}) or pass another --out, and run again",
                fs::read_link(&published)
                    .map(|t| t.display().to_string())
                    .unwrap_or_default()
            ))),
            Err(e) => Err(WriteError::io(shown, e)),
        };
    }
    let what = if meta.is_dir() { "a folder" } else { "a file" };
    Err(WriteError::Usage(format!(
        "{shown}: is {what} that incentives did not create (a published cycle is a link to a hidden .{cycle}.run-* folder); it is left as it is: move it away (mv {shown} {shown}.old) or pass another --out, and run again"
    )))
}

pub use crate::process::injected_failure;

/// Makes `staged` (a hidden folder of `out_root`) the cycle's published result with one rename
/// of the `OUT/<cycle>` link, then removes the folder it replaced. Publishing a folder that is
/// already the published one does nothing; so a publication interrupted by a crash can be
/// finished by running this again. The caller holds the cycle's publisher lock.
pub fn publish(out_root: &Path, cycle: Cycle, staged: &Path) -> Result<PathBuf, WriteError> {
    if crate::store::remote_of(out_root).is_some() {
        return crate::store::publish_staged(out_root, cycle, staged)
            .map(PathBuf::from)
            .map_err(|e| WriteError::Io(e.to_string()));
    }
    let io = |what: &Path, e| WriteError::io(what.display(), e);
    let target_name = staged
        .file_name()
        .map(|n| n.to_os_string())
        .ok_or_else(|| {
            WriteError::Io(format!("{}: staging folder has no name", staged.display()))
        })?;
    let published = out_root.join(cycle.to_string());
    let previous = check_target(out_root, cycle)?;
    if previous.as_deref().and_then(|p| p.file_name()) == Some(target_name.as_os_str()) {
        return Ok(published);
    }
    if !staged.is_dir() {
        return Err(WriteError::Io(format!(
            "{}: the staged results to publish are missing",
            staged.display()
        )));
    }
    let (pid, start) = crate::process::me();
    let link = out_root.join(format!(".{cycle}.link-{pid}-{start}"));
    // A link of ours left by an earlier attempt of this very process; never another's.
    let _ = fs::remove_file(&link);
    std::os::unix::fs::symlink(&target_name, &link).map_err(|e| io(&link, e))?;
    if let Some(e) = injected_failure("publish") {
        let _ = fs::remove_file(&link);
        return Err(io(&published, e));
    }
    fs::rename(&link, &published).map_err(|e| {
        let _ = fs::remove_file(&link);
        io(&published, e)
    })?;
    sync_dir(out_root).map_err(|e| io(out_root, e))?;
    // The old result is no longer reachable; remove it (a failure here loses nothing: what is
    // left is swept by the next run).
    if let Some(old) = previous {
        let _ = fs::remove_dir_all(old);
    }
    Ok(published)
}

/// Removes what killed runs of this state left in `out_root`, for every cycle: staging folders
/// (`.<cycle>.run-*`, whole or half-deleted) that carry `state_tag`, whose owner is dead, that
/// no `OUT/<cycle>` link points at and that are not in `pending` (committed, to be published);
/// folders of an older release's naming that nothing points at and nothing is pending for; and
/// `.<cycle>.link-*` links whose owner is dead. Another state's folders, and any folder whose
/// owner is alive, are left alone. Returns the names removed.
pub fn sweep(out_root: &Path, state_tag: &str, pending: &[PathBuf]) -> Vec<String> {
    let Ok(entries) = fs::read_dir(out_root) else {
        return Vec::new();
    };
    let entries: Vec<fs::DirEntry> = entries.flatten().collect();
    // Every folder a published cycle's link points at.
    let published: Vec<std::ffi::OsString> = entries
        .iter()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_symlink()))
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .filter_map(|e| fs::read_link(e.path()).ok())
        .map(|t| t.into_os_string())
        .collect();
    let mut removed = Vec::new();
    for entry in &entries {
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        if let Some((_, owner)) = parse_run_name(&name) {
            let dead = match &owner {
                Some(o) => o.tag == state_tag && !crate::process::alive(o.pid, o.start),
                None => true,
            };
            let linked = published.iter().any(|p| *p == entry.file_name());
            let kept = pending.iter().any(|k| k.file_name() == path.file_name());
            if dead
                && !linked
                && !kept
                && entry.file_type().is_ok_and(|t| t.is_dir())
                && fs::remove_dir_all(&path).is_ok()
            {
                removed.push(name);
            }
        } else if let Some((_, owner)) = name
            .strip_prefix('.')
            .and_then(|rest| rest.split_once(".link-"))
        {
            let mut words = owner.split('-').map(|w| w.parse::<u64>().ok());
            let dead = match (words.next().flatten(), words.next().flatten()) {
                (Some(pid), Some(start)) => !crate::process::alive(pid as u32, start),
                (Some(pid), None) => crate::process::process_start(pid as u32).is_none(),
                _ => false,
            };
            if dead
                && entry.file_type().is_ok_and(|t| t.is_symlink())
                && fs::remove_file(&path).is_ok()
            {
                removed.push(name);
            }
        }
    }
    removed
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

/// The columns of `rejects` (SPEC Appendix B).
/// Every table a cycle publishes, by the name its file has, with its declared columns (the
/// partner statements are the ledger's columns).
pub const PUBLISHED_TABLES: &[(&str, &[Column])] = &[
    ("ledger", ledger::LEDGER),
    ("line_outcomes", ledger::OUTCOME_COLUMNS),
    ("explanations", explanations::COLUMNS),
    ("voucher_deductions", balances::DEDUCTION_COLUMNS),
    ("voucher_balances", balances::BALANCE_COLUMNS),
    ("expiry_report", balances::EXPIRY_COLUMNS),
    ("subsidies", balances::SUBSIDY_COLUMNS),
    ("rejects", REJECT_COLUMNS),
];

pub const REJECT_COLUMNS: &[Column] = &[
    Column::text("file"),
    Column::count("row"),
    Column::text("column"),
    Column::unique("value"),
    Column::text("reason"),
];

/// `rejects.csv` (SPEC Appendix B), rows already sorted by file, row, column.
pub fn write_rejects(staging: &Staging, rejects: &[Reject]) -> Result<(), WriteError> {
    let mut out = staging.table("rejects", REJECT_COLUMNS)?;
    for r in rejects {
        let reason = r.reason();
        out.row(&[
            Out::Text(r.file),
            Out::Count(r.row),
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
        let staging = Staging::begin(out.path(), cycle, Format::Csv, "tag").unwrap();
        staging.write_file("early.txt", b"early").unwrap();
        let (staged, seen) = staging
            .into_staged_after(|s| {
                let seen = s.written().len();
                s.write_file("manifest.json", b"{}")?;
                Ok::<_, WriteError>(seen)
            })
            .unwrap();
        // The closure saw the files written before it; both files are in the staged folder.
        assert_eq!(seen, 1);
        assert_eq!(fs::read(staged.join("early.txt")).unwrap(), b"early");
        assert_eq!(fs::read(staged.join("manifest.json")).unwrap(), b"{}");

        // A failing last step: the error comes back and the staging folder is removed.
        let staging = Staging::begin(out.path(), cycle, Format::Csv, "tag").unwrap();
        let folder = staging.path().to_path_buf();
        staging.write_file("early.txt", b"early").unwrap();
        let failed = staging.into_staged_after(|_| -> Result<(), WriteError> {
            Err(WriteError::Io("manifest failed".into()))
        });
        assert!(failed.is_err());
        assert!(!folder.exists());
    }
}
