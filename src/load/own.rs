//! The ownership pass (SPEC §8), checking only: the bundle's files read as a stream, every row
//! checked as [`super::load_bundle`] checks it, and the ids that must be unique in the two files
//! that grow with the month (`bill_lines.csv`, `orders.csv`) decided over the whole file through
//! spilled buckets: each accepted row's id and row number are written to one of `n` bucket files
//! by a hash of the id, then each bucket is read alone and the first accepted row keeps the id.
//! Memory is the windows being checked, one bucket, the small files (partners, links, tags,
//! projects, vouchers, balances) and the first rejects asked for: not the month's lines.
//! `validate` runs it; it gives the same counts and rejects as loading the bundle.

use super::table::Schema;
use super::{
    FileReport, Sizes, StructuralError, TaskResults, bill_lines, orders, stream_file_with,
};
use crate::calendar::Cycle;
use crate::model::Codes;
use crate::reject::{Reject, RejectCode};
use std::collections::BinaryHeap;
use std::path::Path;

/// What the ownership pass found: each file's counts (by file name), how many rows were
/// rejected, and the first rejects in (file, row, column) order.
#[derive(Debug)]
pub struct Ownership {
    pub files: Vec<FileReport>,
    pub rejected: u64,
    pub first_rejects: Vec<Reject>,
}

/// Checks the bundle in `dir` for `cycle` within `budget` bytes, its buckets in a temporary
/// folder under `spill` (removed when done, also after a failure), keeping the first `keep`
/// rejects.
pub fn check_bundle(
    dir: &Path,
    cycle: Cycle,
    budget: u64,
    spill: &Path,
    keep: usize,
) -> Result<Ownership, StructuralError> {
    check_bundle_with(dir, cycle, budget, spill, keep, Sizes::default())
}

fn check_bundle_with(
    dir: &Path,
    cycle: Cycle,
    budget: u64,
    spill: &Path,
    keep: usize,
    sizes: Sizes,
) -> Result<Ownership, StructuralError> {
    let spill = tempfile::Builder::new()
        .prefix(".incentives-spill-")
        .tempdir_in(spill)
        .map_err(|e| spill_error(spill, e))?;
    let mut rejects = FirstRejects::new(keep);
    let mut files = Vec::new();
    let mut small = Vec::new();
    let partners = super::read_partners(dir, &mut small, &mut files)?;
    let p = &partners;

    let spill_dir = spill.path();
    let lines = unique_ids::<bill_lines::Column, _, Codes>(
        dir,
        sizes,
        Buckets::new(spill_dir, "bill_lines", dir, budget)?,
        "line_id",
        &mut rejects,
        |row, codes| bill_lines::parse(row, cycle, p, codes).map(|line| line.line_id),
    )?;
    let orders = unique_ids::<orders::OrderColumn, _, ()>(
        dir,
        sizes,
        Buckets::new(spill_dir, "orders", dir, budget)?,
        "order_id",
        &mut rejects,
        |row, _| orders::parse_order(row, p).map(|o| o.order_id),
    )?;
    files.push(lines);
    files.push(orders);
    super::finish_small_files(super::read_small_files(dir, p)?, p, &mut small, &mut files);
    for r in small {
        rejects.push(r);
    }
    files.sort_by_key(|f| f.file);
    Ok(Ownership {
        files,
        rejected: rejects.count,
        first_rejects: rejects.into_sorted(),
    })
}

/// Streams the file of `S`, each row checked by `check` (its id, or the fault that rejects it),
/// the ids through `buckets`: the file's counts, its rejects into `rejects`.
fn unique_ids<S, P, L>(
    dir: &Path,
    sizes: Sizes,
    mut buckets: Buckets,
    column: &'static str,
    rejects: &mut FirstRejects,
    check: P,
) -> Result<FileReport, StructuralError>
where
    S: Schema,
    L: Default + Send,
    P: Fn(&super::table::Row<'_, S>, &mut L) -> super::cell::Checked<crate::model::Id> + Sync,
{
    let digest = stream_file_with::<S, _, _, L, _, _, _>(
        dir,
        sizes,
        |row, local| {
            check(row, local)
                .map(|id| (row.number, id))
                .map_err(|f| f.at(S::FILE, row.number))
        },
        &mut |_, _| {},
        &mut |tasks: &mut [TaskResults<_, _>], _| buckets.take(tasks, rejects),
    )?;
    buckets.finish::<S>(digest, column, rejects)
}

pub(super) fn spill_error(spill: &Path, e: std::io::Error) -> StructuralError {
    StructuralError::Io {
        file: "the spill folder",
        message: format!(
            "{}: {e}: pass --spill with a folder on a disk with room",
            spill.display()
        ),
    }
}

/// The first rejects in (file, row, column) order, and how many there were, in memory bounded
/// by how many are kept.
struct FirstRejects {
    keep: usize,
    /// The `keep` smallest so far, largest on top; ties in arrival order.
    heap: BinaryHeap<Ranked>,
    count: u64,
}

struct Ranked(Reject, u64);

impl Ranked {
    fn key(&self) -> (&str, u64, &str, u64) {
        (self.0.file, self.0.row, self.0.column, self.1)
    }
}

impl PartialEq for Ranked {
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key()
    }
}
impl Eq for Ranked {}
impl PartialOrd for Ranked {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Ranked {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.key().cmp(&other.key())
    }
}

impl FirstRejects {
    fn new(keep: usize) -> FirstRejects {
        FirstRejects {
            keep,
            heap: BinaryHeap::new(),
            count: 0,
        }
    }

    fn push(&mut self, reject: Reject) {
        self.heap.push(Ranked(reject, self.count));
        self.count += 1;
        if self.heap.len() > self.keep {
            self.heap.pop();
        }
    }

    fn into_sorted(self) -> Vec<Reject> {
        self.heap
            .into_sorted_vec()
            .into_iter()
            .map(|r| r.0)
            .collect()
    }
}

/// The accepted ids of one file, spilled by hash into `n` bucket files as `id \t row \n`
/// (ids are `[A-Za-z0-9._-]`: no tab, no line break), each bucket in file order.
pub(super) struct Buckets {
    files: crate::spill::BucketFiles,
    name: &'static str,
    /// Bytes of a bucket read whole and sorted; a larger one is streamed.
    bucket_limit: u64,
    kept: u64,
    failed: u64,
}

/// Bytes a bucket holds in memory before they are appended to its file, at most (all buckets'
/// together stay within an eighth of the budget).
const PENDING_BYTES: usize = 1 << 16;

impl Buckets {
    /// As many buckets as keep one bucket's ids, read back, within an eighth of the budget
    /// (an id and its row take about 64 bytes there; a record of the file about 100 on disk).
    pub(super) fn new(
        spill: &Path,
        name: &'static str,
        dir: &Path,
        budget: u64,
    ) -> Result<Buckets, StructuralError> {
        let bytes = std::fs::metadata(dir.join(format!("{name}.csv"))).map_or(0, |m| m.len());
        let per_bucket = (budget / 8).max(1);
        let n = ((bytes / 100 * 64).div_ceil(per_bucket)).clamp(1, 4096) as usize;
        let pending_limit = ((budget / 8) as usize / n).clamp(1 << 12, PENDING_BYTES);
        let files = crate::spill::BucketFiles::new(spill.join(name), n, pending_limit)
            .map_err(|e| spill_error(spill, e))?;
        Ok(Buckets {
            files,
            name,
            // Held as text (~25 bytes an entry) plus ~24 bytes an entry to sort: within an
            // eighth of the budget.
            bucket_limit: per_bucket / 2,
            kept: 0,
            failed: 0,
        })
    }

    /// One window's rows: the accepted ids into their buckets, the failures as rejects.
    fn take(
        &mut self,
        tasks: &mut [TaskResults<(u64, crate::model::Id), Reject>],
        rejects: &mut FirstRejects,
    ) -> Result<(), StructuralError> {
        for task in tasks.iter_mut() {
            for (row, id) in task.kept.drain(..) {
                self.add(row, &id)?;
            }
            for reject in task.failed.drain(..) {
                self.failed += 1;
                rejects.push(reject);
            }
        }
        Ok(())
    }

    /// An accepted row's id into its bucket.
    pub(super) fn add(&mut self, row: u64, id: &str) -> Result<(), StructuralError> {
        let b = self.files.bucket_of(id);
        let mut text = itoa::Buffer::new();
        let row = text.format(row).as_bytes();
        self.kept += 1;
        self.files
            .append(b, &[id.as_bytes(), b"\t", row, b"\n"])
            .map_err(|e| spill_error(self.files.folder(), e))
    }

    /// A row turned away by its own checks (counted in the file's report).
    pub(super) fn failed(&mut self) {
        self.failed += 1;
    }

    /// Each bucket read alone: a later row with an id an earlier accepted row has is rejected.
    fn finish<S: Schema>(
        self,
        digest: super::FileDigest,
        column: &'static str,
        rejects: &mut FirstRejects,
    ) -> Result<FileReport, StructuralError> {
        self.finish_with::<S>(digest, column, &mut |r| rejects.push(r))
    }

    /// [`Buckets::finish`] handing each duplicate's reject to `reject`.
    pub(super) fn finish_with<S: Schema>(
        mut self,
        digest: super::FileDigest,
        column: &'static str,
        rejects: &mut impl FnMut(Reject),
    ) -> Result<FileReport, StructuralError> {
        let mut duplicates = 0u64;
        for b in 0..self.files.len() {
            let pending = self.files.take_pending(b);
            let on_disk = self
                .files
                .file(b)
                .map_or(0, |f| std::fs::metadata(f).map_or(0, |m| m.len()));
            let mut reject = |id: &[u8], row: u64, first: u64| {
                duplicates += 1;
                rejects(Reject {
                    file: S::FILE,
                    row,
                    column,
                    value: String::from_utf8_lossy(id).into_owned(),
                    code: RejectCode::DuplicateId,
                    detail: format!("{column} already used on row {first}"),
                });
            };
            if on_disk + pending.len() as u64 <= self.bucket_limit {
                self.sorted_bucket(b, pending, &mut reject)?;
            } else {
                self.streamed_bucket(b, pending, &mut reject)?;
            }
            if let Some(f) = self.files.file(b) {
                let _ = std::fs::remove_file(f);
            }
        }
        debug_assert!(self.name == S::FILE.trim_end_matches(".csv"));
        Ok(FileReport {
            file: S::FILE,
            digest,
            accepted: self.kept - duplicates,
            rejected: self.failed + duplicates,
        })
    }

    /// A bucket of the expected size: read whole and sorted by id on every core (a stable sort
    /// keeps file order within each id); `reject(id, row, first row)` for each later row.
    fn sorted_bucket(
        &self,
        b: usize,
        pending: Vec<u8>,
        reject: &mut impl FnMut(&[u8], u64, u64),
    ) -> Result<(), StructuralError> {
        use rayon::prelude::*;
        let folder = self.files.folder();
        let mut text = if let Some(f) = self.files.file(b) {
            std::fs::read(f).map_err(|e| spill_error(folder, e))?
        } else {
            Vec::new()
        };
        text.extend_from_slice(&pending);
        let mut entries: Vec<(&[u8], u64)> = text
            .split(|&c| c == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| entry(l, folder))
            .collect::<Result<_, _>>()?;
        entries.par_sort_by(|a, b| a.0.cmp(b.0));
        for run in entries.chunk_by(|a, b| a.0 == b.0) {
            for (id, row) in &run[1..] {
                reject(id, *row, run[0].1);
            }
        }
        Ok(())
    }

    /// A bucket far larger than expected (most rows repeat a few ids: an export that repeats
    /// its rows): streamed in file order, holding only its distinct ids, so memory stays
    /// within the budget whatever the file repeats.
    fn streamed_bucket(
        &self,
        b: usize,
        pending: Vec<u8>,
        reject: &mut impl FnMut(&[u8], u64, u64),
    ) -> Result<(), StructuralError> {
        use std::io::BufRead;
        let mut first_of: rustc_hash::FxHashMap<Box<[u8]>, u64> = Default::default();
        let mut each = |line: &[u8]| -> Result<(), StructuralError> {
            let (id, row) = entry(line, self.files.folder())?;
            match first_of.get(id) {
                Some(&first) => reject(id, row, first),
                None => {
                    first_of.insert(id.into(), row);
                }
            }
            Ok(())
        };
        let folder = self.files.folder();
        if let Some(f) = self.files.file(b) {
            let file = std::fs::File::open(f).map_err(|e| spill_error(folder, e))?;
            for line in std::io::BufReader::with_capacity(1 << 20, file).split(b'\n') {
                each(&line.map_err(|e| spill_error(folder, e))?)?;
            }
        }
        for line in pending.split(|&c| c == b'\n').filter(|l| !l.is_empty()) {
            each(line)?;
        }
        Ok(())
    }
}

/// `id \t row` as written by [`Buckets::take`]; anything else means the spill folder was
/// changed under the run.
fn entry<'t>(line: &'t [u8], folder: &Path) -> Result<(&'t [u8], u64), StructuralError> {
    let tab = memchr::memchr(b'\t', line);
    tab.and_then(|t| {
        let row = std::str::from_utf8(&line[t + 1..]).ok()?.parse().ok()?;
        Some((&line[..t], row))
    })
    .ok_or_else(|| StructuralError::Io {
        file: "the spill folder",
        message: format!(
            "{}: a spilled bucket holds {:?}, not an id and a row: was the spill folder changed during the run?",
            folder.display(),
            String::from_utf8_lossy(line)
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fmt::Write as _;

    const PARTNERS: &str = "partner_id,name,partner_type,business_region,market,programme,joined_on,exited_on\n\
        SP1,Alpha,solution_provider,cn,cn,solution_provider,2024-01-01,\n\
        SP2,Beta,solution_provider,cn,cn,solution_provider,2024-01-01,\n";
    const LINES: &str = "line_id,bill_cycle,partner_id,customer_id,sales_mode,market,service_type_code,\
        charge_mode,bill_type,trade_time,order_id,official_amount,payable_amount,currency\n";
    const ORDERS: &str = "order_id,partner_id,customer_id,order_type,created_at,amount,currency\n";

    /// A bundle whose bill lines and orders repeat ids near and far apart (across windows and
    /// buckets), with bad rows among them, and a partner that does not exist.
    fn bundle() -> tempfile::TempDir {
        let mut lines = String::from(LINES);
        let mut orders = String::from(ORDERS);
        for i in 0..400 {
            // Ids repeat: L{i % 150}; some rows are bad (an amount, a partner unknown).
            let id = format!("L{}", i % 150);
            let payable = if i % 37 == 5 { "x" } else { "1.00" };
            let partner = if i % 53 == 7 {
                "NOPE"
            } else {
                ["SP1", "SP2"][i % 2]
            };
            writeln!(
                lines,
                "{id},2026-10,{partner},C{i},resale,cn,hws.service.type.ec2,on_demand,usage,\
                 2026-10-05T10:00:00Z,,1.00,{payable},CNY"
            )
            .unwrap();
            let order = format!("O{}", i % 170);
            let kind = if i % 41 == 3 { "lost" } else { "new" };
            writeln!(
                orders,
                "{order},SP1,C{i},{kind},2026-10-01T00:00:00Z,1.00,CNY"
            )
            .unwrap();
        }
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in [
            ("partners.csv", PARTNERS),
            ("bill_lines.csv", lines.as_str()),
            ("orders.csv", orders.as_str()),
        ] {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        dir
    }

    #[test]
    fn the_streaming_check_finds_what_loading_the_bundle_finds() {
        let dir = bundle();
        let cycle: Cycle = "2026-10".parse().unwrap();
        let loaded = super::super::load_bundle(dir.path(), cycle).unwrap();
        // Some of every kind, or the comparison proves little.
        let codes: Vec<RejectCode> = loaded.rejects.iter().map(|r| r.code).collect();
        assert!(codes.contains(&RejectCode::DuplicateId));
        assert!(loaded.rejects.iter().any(|r| r.file == "orders.csv"));
        assert!(loaded.rejects.len() > 250, "{}", loaded.rejects.len());
        let spill = tempfile::tempdir().unwrap();
        let sizes = Sizes {
            window: 2048,
            block: 300,
            ..Sizes::default()
        };
        // One bucket (a large budget) and as many as there can be (a budget of a byte).
        for budget in [u64::MAX / 2, 1] {
            let checked =
                check_bundle_with(dir.path(), cycle, budget, spill.path(), 10_000, sizes).unwrap();
            assert_eq!(checked.first_rejects, loaded.rejects, "budget {budget}");
            assert_eq!(checked.rejected, loaded.rejects.len() as u64);
            let counts = |files: &[FileReport]| {
                files
                    .iter()
                    .map(|f| (f.file, f.digest.rows_read, f.accepted, f.rejected))
                    .collect::<Vec<_>>()
            };
            assert_eq!(counts(&checked.files), counts(&loaded.files));
            // Only the first rejects are kept, in order; all are counted.
            let first =
                check_bundle_with(dir.path(), cycle, budget, spill.path(), 7, sizes).unwrap();
            assert_eq!(first.first_rejects, loaded.rejects[..7]);
            assert_eq!(first.rejected, loaded.rejects.len() as u64);
        }
        // The buckets are removed.
        assert_eq!(std::fs::read_dir(spill.path()).unwrap().count(), 0);
    }
}
