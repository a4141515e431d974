//! The ownership pass of a run in partitions (SPEC §8): the bundle's two large files streamed
//! once each through the loader's row checks, every accepted line written to its partner's
//! partition (`crate::partition`) in the spill folder, and what crosses partitions decided by
//! joins over spilled buckets, never over the whole month in memory:
//! - ids that must be unique (line and order ids): spilled by hash, each bucket read alone
//!   (`own.rs`), so the first accepted row keeps the id over the whole file;
//! - a reseller's line goes to its distributors' partitions as it is read (links are small);
//! - the orders negative lines claw back from: line and order references spilled by the hash
//!   of the order id; a first join resolves each negative line's clawed order (its
//!   `original_order_id`, else its order's, else its order), a second joins the clawed orders
//!   with their positive lines and the earlier cycles' pools: every negative line of a clawed
//!   order goes to each partition owning a recipient of its pools, every positive line of it to
//!   each partition owning one of its negative lines;
//! - each order goes to the partitions whose lines name it.
//!
//! A partition's files are the export's own records (its header, plus the line's row in the
//! export as a last column), read back by [`Split::partition`] through the same row checks:
//! a partition's bundle is what loading the whole bundle would give, restricted to its own
//! partners and the copies it needs.

use super::own::{Buckets, spill_error};
use super::table::{Row, Schema, Sizes, Table};
use super::{
    Bundle, FileReport, Partners, RejectedLine, StructuralError, TaskResults, bill_lines, orders,
    read_file_with, read_simple, stream_file_with, without_rows,
};
use crate::calendar::Cycle;
use crate::chain::PriorPool;
use crate::csv_field::push_csv_field;
use crate::model::{Codes, PartnerIdx};
use crate::partition::partition_of;
use crate::reject::Reject;
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};

/// A partition's files' last column: the line's row in `bill_lines.csv`.
const SOURCE_ROW: &str = "__incentives_source_row";

/// The bundle split into partitions on disk, and what is kept whole: the master data, the
/// loader's rejects and file reports, the rejected lines, the earlier cycles' pools of the
/// orders clawed back this cycle.
pub struct Split {
    /// The spill folder of the ownership pass (none when reopened from a split's folder).
    spill: Option<tempfile::TempDir>,
    /// Where the partitions' folders are.
    root: PathBuf,
    cycle: Cycle,
    count: u32,
    /// Partners, links, tags, codes of nothing, vouchers, projects, balances, withdrawals, every
    /// reject of the loader and the file reports: a bundle without lines or orders.
    pub master: Bundle,
    /// Duplicate lines' rejects, by row.
    line_duplicates: Vec<Reject>,
    /// Earlier cycles' pools of the orders this cycle's negative lines claw back from.
    pub prior_pools: Vec<PriorPool>,
}

/// One accepted line as pass 1 routes it.
struct LineOut {
    row: u64,
    line_id: crate::model::Id,
    /// The partitions holding the line: its own first, then its distributors'.
    holders: Vec<u32>,
    /// Its reference, formatted: (to the clawed orders' buckets, key, record).
    reference: Option<(bool, Box<str>, String)>,
    raw: String,
}

/// One accepted order as pass 2 routes it.
struct OrderOut {
    row: u64,
    order_id: crate::model::Id,
    original_order_id: Option<crate::model::Id>,
    raw: String,
}

/// The earlier cycles' pools of some orders (what the state holds), asked per bucket.
pub type PriorPoolsOf<'s> =
    dyn FnMut(&BTreeSet<&str>) -> Result<Vec<PriorPool>, StructuralError> + 's;

/// Splits the bundle in `dir` into `count` partitions, within `budget` bytes, spilling to a
/// temporary folder under `spill` named `name` and a random suffix. The partitions' folders go
/// to `into` when given (a split's folder, SPEC §9), else into the spill folder.
pub fn split_bundle(
    dir: &Path,
    cycle: Cycle,
    (count, budget): (u32, u64),
    (spill, name): (&Path, &str),
    into: Option<&Path>,
    prior_pools_of: &mut PriorPoolsOf<'_>,
) -> Result<Split, StructuralError> {
    let spill = tempfile::Builder::new()
        .prefix(name)
        .tempdir_in(spill)
        .map_err(|e| spill_error(spill, e))?;
    let root = spill.path().to_path_buf();
    let parts_root = into.map_or_else(|| root.clone(), Path::to_path_buf);
    let mut rejects = Vec::new();
    let mut files = Vec::new();
    let partners = super::read_partners(dir, &mut rejects, &mut files)?;
    let small = super::finish_small_files(
        super::read_small_files(dir, &partners)?,
        &partners,
        &mut rejects,
        &mut files,
    );
    let of_partner: Vec<u32> = partners
        .iter()
        .map(|(_, p)| partition_of(&p.partner_id, count))
        .collect();
    let mut distributors: BTreeMap<PartnerIdx, BTreeSet<u32>> = BTreeMap::new();
    for link in &small.links {
        distributors
            .entry(link.reseller)
            .or_default()
            .insert(of_partner[link.distributor.0 as usize]);
    }
    let mut parts = PartitionFiles::create(&parts_root, count, dir)?;
    let mut refs = RecordBuckets::new(&root, "refs", dir, budget)?;
    let mut claws = RecordBuckets::new(&root, "claws", dir, budget)?;

    // The two large files, each streamed once, side by side (each checks its windows on every
    // core); orders' references in buckets of their own, read with the lines' in the joins.
    let mut order_refs = RecordBuckets::new(&root, "order-refs", dir, budget)?;
    let route = Route {
        cycle,
        partners: &partners,
        of_partner: &of_partner,
        distributors: &distributors,
    };
    let (lines, orders) = rayon::join(
        || {
            lines_pass(
                dir, &root, budget, &route, &mut parts, &mut refs, &mut claws,
            )
        },
        || orders_pass(dir, &root, budget, &partners, &mut order_refs),
    );
    let (lines_report, mut line_duplicates, mut rejected) = lines?;
    let (orders_report, mut order_duplicates, order_rejects) = orders?;
    line_duplicates.sort_by_key(|r| r.row);
    order_duplicates.sort_by_key(|r| r.row);
    let dropped_lines: Vec<u64> = line_duplicates.iter().map(|r| r.row).collect();
    let dropped_orders: Vec<u64> = order_duplicates.iter().map(|r| r.row).collect();

    // The joins: clawed orders, their copies, then each order to the partitions naming it.
    let refs = (refs, order_refs);
    resolve_claws(&refs, &mut claws, &dropped_lines, &dropped_orders)?;
    let (copies, prior_pools) = claw_copies(&claws, &dropped_lines, count, prior_pools_of)?;
    parts.copy_lines(&copies, count)?;
    deliver_orders(&refs, &mut parts, &copies, &dropped_lines, &dropped_orders)?;
    parts.finish()?;
    // The joins' buckets are read: they leave the disk before the partitions are evaluated
    // (at 100M lines they hold about half the size of bill_lines.csv).
    let (refs, order_refs) = refs;
    for buckets in [refs, claws, order_refs] {
        buckets.remove()?;
    }

    rejects.extend(rejected.iter().map(|l| l.reject.clone()));
    rejects.extend(line_duplicates.iter().cloned());
    rejects.extend(order_rejects);
    rejects.extend(order_duplicates);
    rejects.sort_by(|a, b| (a.file, a.row, a.column).cmp(&(b.file, b.row, b.column)));
    files.push(lines_report);
    files.push(orders_report);
    files.sort_by_key(|f| f.file);
    rejected.sort_by_key(RejectedLine::source_row);
    Ok(Split {
        spill: Some(spill),
        root: parts_root,
        cycle,
        count,
        master: super::master_bundle(partners, small, rejected, (rejects, files)),
        line_duplicates,
        prior_pools,
    })
}

/// What pass 1 routes a line by.
struct Route<'r> {
    cycle: Cycle,
    partners: &'r Partners,
    of_partner: &'r [u32],
    distributors: &'r BTreeMap<PartnerIdx, BTreeSet<u32>>,
}

/// What a pass over one file leaves: its report, its duplicates' rejects, its other rejects.
type Pass<R> = Result<(FileReport, Vec<Reject>, Vec<R>), StructuralError>;

/// Pass 1: every line checked; the accepted ones written to the partitions holding them, their
/// ids to the duplicate buckets, their references to the join buckets.
fn lines_pass(
    dir: &Path,
    root: &Path,
    budget: u64,
    route: &Route<'_>,
    parts: &mut PartitionFiles,
    refs: &mut RecordBuckets,
    claws: &mut RecordBuckets,
) -> Pass<RejectedLine> {
    let mut line_ids = Buckets::new(root, "bill_lines", dir, budget)?;
    let mut rejected: Vec<RejectedLine> = Vec::new();
    let digest = stream_file_with::<bill_lines::Column, _, _, Codes, _, _, _>(
        dir,
        Sizes::default(),
        // Everything but the writing is done here, on every core.
        |row, codes| {
            bill_lines::parse(row, route.cycle, route.partners, codes)
                .map(|line| {
                    let own = route.of_partner[line.partner.0 as usize];
                    let mut holders = vec![own];
                    let dists = route.distributors.get(&line.partner).into_iter().flatten();
                    holders.extend(dists.filter(|&&d| d != own));
                    LineOut {
                        row: row.number,
                        raw: raw_record(row, Some(row.number)),
                        reference: reference(&line, row.number, &holders),
                        holders,
                        line_id: line.line_id,
                    }
                })
                .map_err(|f| Box::new(RejectedLine::from_row(row, f)))
        },
        &mut |_, _| {},
        &mut |tasks: &mut [TaskResults<LineOut, Box<RejectedLine>>], _| {
            for task in tasks.iter_mut() {
                for line in task.kept.drain(..) {
                    line_ids.add(line.row, &line.line_id)?;
                    for &k in &line.holders {
                        parts.line(k, &line.raw)?;
                    }
                    match &line.reference {
                        Some((false, key, record)) => refs.push_formatted(key, record)?,
                        Some((true, key, record)) => claws.push_formatted(key, record)?,
                        None => {}
                    }
                }
                for r in task.failed.drain(..) {
                    line_ids.failed();
                    rejected.push(*r);
                }
            }
            Ok(())
        },
    )?;
    refs.flush_all()?;
    let mut duplicates = Vec::new();
    let report = line_ids
        .finish_with::<bill_lines::Column>(digest, "line_id", &mut |r| duplicates.push(r))?;
    Ok((report, duplicates, rejected))
}

/// Pass 2: every order checked; the accepted ones' ids to the duplicate buckets, the orders
/// themselves (their records as written) to the join buckets.
fn orders_pass(
    dir: &Path,
    root: &Path,
    budget: u64,
    partners: &Partners,
    refs: &mut RecordBuckets,
) -> Pass<Reject> {
    let mut order_ids = Buckets::new(root, "orders", dir, budget)?;
    let mut rejects = Vec::new();
    let digest = stream_file_with::<orders::OrderColumn, _, _, (), _, _, _>(
        dir,
        Sizes::default(),
        |row, _| {
            orders::parse_order(row, partners)
                .map(|o| OrderOut {
                    row: row.number,
                    raw: raw_record(row, None),
                    order_id: o.order_id,
                    original_order_id: o.original_order_id,
                })
                .map_err(|f| f.at(orders::OrderColumn::FILE, row.number))
        },
        &mut |_, _| {},
        &mut |tasks: &mut [TaskResults<OrderOut, Reject>], _| {
            for task in tasks.iter_mut() {
                for o in task.kept.drain(..) {
                    order_ids.add(o.row, &o.order_id)?;
                    let orig = o.original_order_id.as_deref().unwrap_or("");
                    let row = o.row.to_string();
                    refs.push(&o.order_id, &["O", &o.order_id, &row, orig, &o.raw])?;
                }
                for r in task.failed.drain(..) {
                    order_ids.failed();
                    rejects.push(r);
                }
            }
            Ok(())
        },
    )?;
    refs.flush_all()?;
    let mut duplicates = Vec::new();
    let report = order_ids
        .finish_with::<orders::OrderColumn>(digest, "order_id", &mut |r| duplicates.push(r))?;
    Ok((report, duplicates, rejects))
}

/// A record's fields as the export wrote them (quoted where RFC 4180 needs it), with the row
/// as a last field when given, and a line break.
fn raw_record<S: Schema>(row: &Row<'_, S>, source_row: Option<u64>) -> String {
    let mut out = String::new();
    for (i, field) in row.fields().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_csv_field(&mut out, field);
    }
    if let Some(n) = source_row {
        out.push(',');
        out.push_str(itoa::Buffer::new().format(n));
    }
    out.push('\n');
    out
}

/// A line's references: by its order (for the order's delivery and a negative line's clawed
/// order), or, for a negative line naming only an original order, straight to that order.
fn reference(
    line: &crate::model::BillLine,
    row: u64,
    holders: &[u32],
) -> Option<(bool, Box<str>, String)> {
    let row = row.to_string();
    let mut text = String::new();
    for (i, k) in holders.iter().enumerate() {
        if i > 0 {
            text.push(';');
        }
        text.push_str(itoa::Buffer::new().format(*k));
    }
    let holders = text;
    let orig = line.original_order_id.as_deref().unwrap_or("");
    let neg = if line.is_negative() { "1" } else { "0" };
    match line.order_id.as_deref() {
        Some(order) => Some((
            false,
            order.into(),
            csv_line(["L", order, &row, neg, &holders, orig].into_iter()),
        )),
        None if line.is_negative() && !orig.is_empty() => Some((
            true,
            orig.into(),
            csv_line(["N", orig, &row, &holders].into_iter()),
        )),
        None => None,
    }
}

/// Join 1, per bucket of order ids: each negative line's clawed order (its original order, else
/// its order's, else its order) and each positive line with an order, into the clawed orders'
/// buckets.
fn resolve_claws(
    refs: &(RecordBuckets, RecordBuckets),
    claws: &mut RecordBuckets,
    dropped_lines: &[u64],
    dropped_orders: &[u64],
) -> Result<(), StructuralError> {
    let one = |b: usize| -> Result<Vec<(String, String)>, StructuralError> {
        let records = RecordBuckets::read_pair(refs, b)?;
        let mut out = Vec::new();
        for group in by_order(&records) {
            let order = group
                .iter()
                .find(|r| is(r, "O") && !dropped(dropped_orders, r));
            for r in group
                .iter()
                .filter(|r| is(r, "L") && !dropped(dropped_lines, r))
            {
                let (id, row, holders) = (&r[1], &r[2], &r[4]);
                let (kind, clawed) = if &r[3] == "1" {
                    let clawed = [&r[5], order.map_or("", |o| &o[3]), id]
                        .into_iter()
                        .find(|c| !c.is_empty())
                        .unwrap_or(id);
                    ("N", clawed)
                } else {
                    ("P", id)
                };
                let record = csv_line([kind, clawed, row, holders].into_iter());
                out.push((clawed.to_string(), record));
            }
        }
        Ok(out)
    };
    for_buckets(refs.0.len(), one, |out| {
        for (key, record) in out {
            claws.push_formatted(&key, &record)?;
        }
        Ok(())
    })?;
    claws.flush_all()
}

/// Buckets `0..n` handled by `one` on every core, a few at a time (so as many are held as there
/// are threads), their results taken by `take` in bucket order.
fn for_buckets<T: Send>(
    n: usize,
    one: impl Fn(usize) -> Result<T, StructuralError> + Sync,
    mut take: impl FnMut(T) -> Result<(), StructuralError>,
) -> Result<(), StructuralError> {
    use rayon::prelude::*;
    let at_once = rayon::current_num_threads().max(1);
    let buckets: Vec<usize> = (0..n).collect();
    for window in buckets.chunks(at_once) {
        let results: Vec<Result<T, StructuralError>> = window.par_iter().map(|&b| one(b)).collect();
        for r in results {
            take(r?)?;
        }
    }
    Ok(())
}

/// Lines copied to partitions other than theirs, as (row, partition) sorted, and the earlier
/// cycles' pools of the clawed orders.
type ClawCopies = (Vec<(u64, u32)>, Vec<PriorPool>);

/// Join 2, per bucket of clawed orders: for each order some negative line claws back from, the
/// copies its lines need (negative lines to every partition owning a recipient of its pools or
/// one of its negative lines; positive lines to every partition owning a negative line), and
/// the earlier cycles' pools of those orders. Copies as (row, partition), sorted.
fn claw_copies(
    claws: &RecordBuckets,
    dropped_lines: &[u64],
    count: u32,
    prior_pools_of: &mut PriorPoolsOf<'_>,
) -> Result<ClawCopies, StructuralError> {
    let mut copies = Vec::new();
    let mut prior_pools = Vec::new();
    // Buckets read and sorted on every core; the state asked one bucket at a time.
    let take = |records: Vec<csv::StringRecord>| -> Result<(), StructuralError> {
        let groups: Vec<&[csv::StringRecord]> = by_order(&records)
            .into_iter()
            .filter(|g| g.iter().any(|r| is(r, "N") && !dropped(dropped_lines, r)))
            .collect();
        let wanted: BTreeSet<&str> = groups.iter().map(|g| &g[0][1]).collect();
        let pools = prior_pools_of(&wanted)?;
        let mut earlier: BTreeMap<&str, BTreeSet<u32>> = BTreeMap::new();
        for p in &pools {
            earlier
                .entry(p.order_id.as_str())
                .or_default()
                .insert(partition_of(&p.recipient, count));
        }
        for group in groups {
            let live = || group.iter().filter(|r| !dropped(dropped_lines, r));
            let owners: BTreeSet<u32> = live().filter(|r| is(r, "N")).map(own).collect();
            let mut targets: BTreeSet<u32> = owners.clone();
            for r in live().filter(|r| is(r, "P")) {
                targets.extend(holders(r));
            }
            targets.extend(earlier.get(&group[0][1]).into_iter().flatten());
            for r in live() {
                let row = r[2].parse().unwrap_or(0);
                let has = holders(r);
                let to = if is(r, "N") { &targets } else { &owners };
                copies.extend(to.difference(&has).map(|&k| (row, k)));
            }
        }
        prior_pools.extend(pools);
        Ok(())
    };
    for_buckets(claws.len(), |b| claws.read(b), take)?;
    copies.sort_unstable();
    copies.dedup();
    Ok((copies, prior_pools))
}

/// Join 3, per bucket of order ids: each order to the partitions holding a line that names it.
fn deliver_orders(
    refs: &(RecordBuckets, RecordBuckets),
    parts: &mut PartitionFiles,
    copies: &[(u64, u32)],
    dropped_lines: &[u64],
    dropped_orders: &[u64],
) -> Result<(), StructuralError> {
    let one = |b: usize| -> Result<Vec<(u32, String)>, StructuralError> {
        let records = RecordBuckets::read_pair(refs, b)?;
        let mut out = Vec::new();
        for group in by_order(&records) {
            let Some(order) = group
                .iter()
                .find(|r| is(r, "O") && !dropped(dropped_orders, r))
            else {
                continue;
            };
            let mut to: BTreeSet<u32> = BTreeSet::new();
            for r in group
                .iter()
                .filter(|r| is(r, "L") && !dropped(dropped_lines, r))
            {
                to.extend(holders(r));
                let row: u64 = r[2].parse().unwrap_or(0);
                let at = copies.partition_point(|c| c.0 < row);
                to.extend(copies[at..].iter().take_while(|c| c.0 == row).map(|c| c.1));
            }
            for k in to {
                out.push((k, order[4].to_string()));
            }
        }
        Ok(out)
    };
    for_buckets(refs.0.len(), one, |out| {
        for (k, order) in out {
            parts.order(k, &order)?;
        }
        Ok(())
    })
}

fn is(record: &csv::StringRecord, kind: &str) -> bool {
    record.get(0) == Some(kind)
}

/// Whether a reference's row (field 2) is of a row turned away as a duplicate.
fn dropped(rows: &[u64], record: &csv::StringRecord) -> bool {
    record
        .get(2)
        .and_then(|r| r.parse().ok())
        .is_some_and(|row| rows.binary_search(&row).is_ok())
}

/// The partitions holding a line's record (field 3 of an `N`/`P` claw, 4 of an `L` reference).
fn holders(record: &csv::StringRecord) -> BTreeSet<u32> {
    let field = if is(record, "L") { 4 } else { 3 };
    record
        .get(field)
        .unwrap_or("")
        .split(';')
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// The partition owning a line (the first of its holders).
fn own(record: &csv::StringRecord) -> u32 {
    let field = if is(record, "L") { 4 } else { 3 };
    record
        .get(field)
        .and_then(|h| h.split(';').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or(0)
}

/// Records grouped by order id (field 1), each group in row order.
fn by_order(records: &[csv::StringRecord]) -> Vec<&[csv::StringRecord]> {
    let mut groups = Vec::new();
    let mut start = 0;
    for i in 1..=records.len() {
        if i == records.len() || records[i].get(1) != records[start].get(1) {
            if i > start {
                groups.push(&records[start..i]);
            }
            start = i;
        }
    }
    groups
}

/// Records (CSV lines) spilled by the hash of a key into bucket files, each bucket read alone.
struct RecordBuckets {
    files: crate::spill::BucketFiles,
}

/// Bytes a bucket holds before they are appended to its file.
const BUCKET_PENDING: usize = 1 << 16;

impl RecordBuckets {
    /// As many buckets as keep one, read back as records (~200 bytes a line of the export),
    /// within a quarter of the budget.
    fn new(
        spill: &Path,
        name: &str,
        dir: &Path,
        budget: u64,
    ) -> Result<RecordBuckets, StructuralError> {
        let bytes = std::fs::metadata(dir.join("bill_lines.csv")).map_or(0, |m| m.len());
        let n = ((bytes / 100 * 200).div_ceil((budget / 4).max(1))).clamp(1, 4096) as usize;
        let files = crate::spill::BucketFiles::new(spill.join(name), n, BUCKET_PENDING)
            .map_err(|e| spill_error(spill, e))?;
        Ok(RecordBuckets { files })
    }

    fn len(&self) -> usize {
        self.files.len()
    }

    /// Removes the buckets' folder.
    fn remove(self) -> Result<(), StructuralError> {
        let folder = self.files.folder();
        std::fs::remove_dir_all(folder).map_err(|e| spill_error(folder, e))
    }

    fn push(&mut self, key: &str, fields: &[&str]) -> Result<(), StructuralError> {
        self.push_formatted(key, &csv_line(fields.iter().copied()))
    }

    /// A record already formatted as a CSV line.
    fn push_formatted(&mut self, key: &str, record: &str) -> Result<(), StructuralError> {
        let b = self.files.bucket_of(key);
        self.files
            .append(b, &[record.as_bytes()])
            .map_err(|e| spill_error(self.files.folder(), e))
    }

    fn flush_all(&mut self) -> Result<(), StructuralError> {
        self.files
            .flush_all()
            .map_err(|e| spill_error(self.files.folder(), e))
    }

    /// Bucket `b` of two sets of the same size (the lines' and the orders' references),
    /// sorted as one.
    fn read_pair(
        pair: &(RecordBuckets, RecordBuckets),
        b: usize,
    ) -> Result<Vec<csv::StringRecord>, StructuralError> {
        debug_assert_eq!(pair.0.len(), pair.1.len());
        let mut records = pair.0.unsorted(b)?;
        records.append(&mut pair.1.unsorted(b)?);
        Ok(sorted(records))
    }

    /// Bucket `b`'s records sorted by key (field 1), then row (field 2), once every bucket
    /// is flushed ([`RecordBuckets::flush_all`]).
    fn read(&self, b: usize) -> Result<Vec<csv::StringRecord>, StructuralError> {
        Ok(sorted(self.unsorted(b)?))
    }

    fn unsorted(&self, b: usize) -> Result<Vec<csv::StringRecord>, StructuralError> {
        let Some(path) = self.files.file(b) else {
            return Ok(Vec::new());
        };
        let io = |e: csv::Error| spill_error(self.files.folder(), std::io::Error::other(e));
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .from_path(&path)
            .map_err(io)?;
        reader.records().collect::<Result<_, _>>().map_err(io)
    }
}

/// Records sorted by key (field 1), then row (field 2).
fn sorted(mut records: Vec<csv::StringRecord>) -> Vec<csv::StringRecord> {
    records.sort_by_cached_key(|r| {
        let row = r.get(2).and_then(|v| v.parse::<u64>().ok());
        (r.get(1).unwrap_or("").to_string(), row)
    });
    records
}

/// Each partition's files: `part-K/own/bill_lines.csv` (its partners' lines and the resale
/// lines of resellers linked to them), `part-K/copies/bill_lines.csv` (lines of clawed
/// orders), `part-K/orders/orders.csv`.
struct PartitionFiles {
    root: PathBuf,
    lines: Vec<std::io::BufWriter<std::fs::File>>,
    orders: Vec<std::io::BufWriter<std::fs::File>>,
    line_header: String,
    partner_field: usize,
}

impl PartitionFiles {
    fn create(root: &Path, count: u32, dir: &Path) -> Result<PartitionFiles, StructuralError> {
        let line_names = header::<bill_lines::Column>(dir)?;
        let order_names = header::<orders::OrderColumn>(dir)?;
        let partner_field = line_names
            .iter()
            .position(|n| n == "partner_id")
            .unwrap_or(0);
        let line_header = csv_line(line_names.iter().map(String::as_str).chain([SOURCE_ROW]));
        let order_header = csv_line(order_names.iter().map(String::as_str));
        let mut files = PartitionFiles {
            root: root.to_path_buf(),
            lines: Vec::new(),
            orders: Vec::new(),
            line_header,
            partner_field,
        };
        for k in 0..count {
            let lines = files.open(k, "own", "bill_lines.csv")?;
            let mut orders = files.open(k, "orders", "orders.csv")?;
            orders
                .write_all(order_header.as_bytes())
                .map_err(|e| spill_error(root, e))?;
            files.lines.push(lines);
            files.orders.push(orders);
        }
        Ok(files)
    }

    fn open(
        &self,
        k: u32,
        folder: &str,
        file: &str,
    ) -> Result<std::io::BufWriter<std::fs::File>, StructuralError> {
        let dir = partition_dir(&self.root, k).join(folder);
        std::fs::create_dir_all(&dir).map_err(|e| spill_error(&self.root, e))?;
        let f = std::fs::File::create(dir.join(file)).map_err(|e| spill_error(&self.root, e))?;
        let mut w = std::io::BufWriter::with_capacity(1 << 16, f);
        if file == "bill_lines.csv" {
            w.write_all(self.line_header.as_bytes())
                .map_err(|e| spill_error(&self.root, e))?;
        }
        Ok(w)
    }

    fn line(&mut self, k: u32, raw: &str) -> Result<(), StructuralError> {
        self.lines[k as usize]
            .write_all(raw.as_bytes())
            .map_err(|e| spill_error(&self.root, e))
    }

    fn order(&mut self, k: u32, raw: &str) -> Result<(), StructuralError> {
        self.orders[k as usize]
            .write_all(raw.as_bytes())
            .map_err(|e| spill_error(&self.root, e))
    }

    /// The clawed orders' lines copied from their own partition's file to the partitions that
    /// need them.
    fn copy_lines(&mut self, copies: &[(u64, u32)], count: u32) -> Result<(), StructuralError> {
        for w in &mut self.lines {
            w.flush().map_err(|e| spill_error(&self.root, e))?;
        }
        let mut out: Vec<_> = (0..count)
            .map(|k| self.open(k, "copies", "bill_lines.csv"))
            .collect::<Result<_, _>>()?;
        // A bill line never holds a line break (the loader rejects one in quotes), so each
        // record is one line of text ending in its row: only the copied ones are parsed.
        let io = |e: std::io::Error| spill_error(&self.root, e);
        for k in 0..count {
            let path = partition_dir(&self.root, k).join("own/bill_lines.csv");
            let file = std::fs::File::open(&path).map_err(io)?;
            let reader = std::io::BufReader::with_capacity(1 << 20, file);
            let mut lines = std::io::BufRead::split(reader, b'\n');
            let _header = lines.next();
            for line in lines {
                let line = line.map_err(io)?;
                let row: u64 = line
                    .rsplit(|&c| c == b',')
                    .next()
                    .and_then(|r| std::str::from_utf8(r).ok())
                    .and_then(|r| r.parse().ok())
                    .unwrap_or(0);
                let at = copies.partition_point(|c| c.0 < row);
                let targets: Vec<u32> = copies[at..]
                    .iter()
                    .take_while(|c| c.0 == row)
                    .map(|c| c.1)
                    .collect();
                if targets.is_empty() {
                    continue;
                }
                // The line's own partition holds the original; the others, resale copies.
                let mut reader = csv::ReaderBuilder::new()
                    .has_headers(false)
                    .from_reader(&line[..]);
                let mut record = csv::StringRecord::new();
                let _ = reader.read_record(&mut record);
                if partition_of(record.get(self.partner_field).unwrap_or(""), count) != k {
                    continue;
                }
                for t in targets {
                    let w = &mut out[t as usize];
                    w.write_all(&line).map_err(io)?;
                    w.write_all(b"\n").map_err(io)?;
                }
            }
        }
        for mut w in out {
            w.flush().map_err(|e| spill_error(&self.root, e))?;
        }
        Ok(())
    }

    fn finish(mut self) -> Result<(), StructuralError> {
        for w in self.lines.iter_mut().chain(self.orders.iter_mut()) {
            w.flush().map_err(|e| spill_error(&self.root, e))?;
        }
        Ok(())
    }
}

fn partition_dir(root: &Path, k: u32) -> PathBuf {
    root.join(format!("part-{:04}", k + 1))
}

fn csv_line<'a>(fields: impl Iterator<Item = &'a str>) -> String {
    let mut out = String::new();
    for (i, f) in fields.enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_csv_field(&mut out, f);
    }
    out.push('\n');
    out
}

/// A file's header names as the loader reads them (without a byte-order mark).
fn header<S: Schema>(dir: &Path) -> Result<Vec<String>, StructuralError> {
    Ok(match Table::<S>::open(dir, Sizes::default())? {
        Some(table) => table
            .source
            .header()
            .iter()
            .enumerate()
            .map(|(i, h)| {
                let h = if i == 0 {
                    h.trim_start_matches('\u{feff}')
                } else {
                    h
                };
                h.trim().to_string()
            })
            .collect(),
        None => Vec::new(),
    })
}

impl Split {
    pub fn count(&self) -> u32 {
        self.count
    }

    /// The spill folder (removed with the split), or the split's folder when reopened.
    pub fn path(&self) -> &Path {
        self.spill.as_ref().map_or(&self.root, |s| s.path())
    }

    /// Removes partition `k`'s files once its bundle is read, when the split is this run's own
    /// (a split reopened for a shard stays whole, for retries): a month's partitions then never
    /// sit on the disk beside all of the month's spilled tables.
    pub fn release(&self, k: u32) -> Result<(), StructuralError> {
        if self.spill.is_none() {
            return Ok(());
        }
        let dir = partition_dir(&self.root, k);
        std::fs::remove_dir_all(&dir).map_err(|e| spill_error(&dir, e))
    }

    /// Partition `k`'s bundle: every partner, link, tag (it owns its own partners'), its
    /// partners' lines and the copies it needs (in row order), the orders they name, its
    /// partners' vouchers, projects, balances, withdrawals, rejected and duplicate lines. The
    /// loader's rejects are in [`Split::master`], not here.
    pub fn partition(&self, k: u32) -> Result<Bundle, StructuralError> {
        let master = &self.master;
        let owned: Vec<bool> = master
            .partners
            .iter()
            .map(|(_, p)| partition_of(&p.partner_id, self.count) == k)
            .collect();
        let own = |p: PartnerIdx| owned[p.0 as usize];
        let root = partition_dir(&self.root, k);
        let mut codes = Codes::default();
        let mut lines = Vec::new();
        for folder in ["own", "copies"] {
            let read = read_file_with::<bill_lines::Column, _, _, Codes, _, _>(
                &root.join(folder),
                Sizes::default(),
                |row, task_codes| {
                    let number = row.last_field().and_then(|n| n.parse().ok()).unwrap_or(0);
                    bill_lines::parse(
                        &row.renumbered(number),
                        self.cycle,
                        &master.partners,
                        task_codes,
                    )
                    .map_err(|f| f.at(bill_lines::Column::FILE, number))
                },
                &mut |task_codes, lines| bill_lines::renumber(&mut codes, &task_codes, lines),
            )?;
            debug_assert!(read.failed.is_empty(), "a line checked once fails again");
            lines.extend(read.rows);
        }
        lines.sort_by_key(|l| l.source_row);
        lines.dedup_by_key(|l| l.source_row);
        let mut rejected_lines: Vec<RejectedLine> = master
            .rejected_lines
            .iter()
            .filter(|r| partition_of(&r.partner_id, self.count) == k)
            .cloned()
            .collect();
        let mut bill_lines = Vec::with_capacity(lines.len());
        for line in lines {
            let row = u64::from(line.source_row);
            match self.line_duplicates.binary_search_by_key(&row, |r| r.row) {
                Ok(i) if own(line.partner) => rejected_lines.push(RejectedLine::from_line(
                    &line,
                    &master.partners,
                    self.line_duplicates[i].clone(),
                )),
                Ok(_) => {}
                Err(_) => bill_lines.push(line),
            }
        }
        rejected_lines.sort_by_key(RejectedLine::source_row);
        let orders = read_simple::<orders::OrderColumn, _, _>(&root.join("orders"), |r| {
            orders::parse_order(r, &master.partners)
        })?;
        Ok(Bundle {
            partners: master.partners.owning(owned.clone()),
            codes,
            bill_lines,
            rejected_lines,
            orders: without_rows(orders.rows),
            vouchers: master
                .vouchers
                .iter()
                .filter(|v| own(v.partner))
                .cloned()
                .collect(),
            distributor_links: master.distributor_links.clone(),
            capability_tags: master.capability_tags.clone(),
            projects: master
                .projects
                .iter()
                .filter(|p| own(p.partner))
                .cloned()
                .collect(),
            opening_balances: master
                .opening_balances
                .iter()
                .filter(|b| own(b.partner))
                .cloned()
                .collect(),
            withdrawals: master
                .withdrawals
                .iter()
                .filter(|w| own(w.partner))
                .cloned()
                .collect(),
            rejects: Vec::new(),
            files: master.files.clone(),
        })
    }
}

/// What a split's folder records beside its partitions' files (`split.json`), for the steps
/// that reopen it in other processes (SPEC §9): everything [`Split`] keeps whole but the
/// master data, which is read again from the input files copied beside it (`input/`).
#[derive(serde::Serialize, serde::Deserialize)]
pub struct SplitRecord {
    pub cycle: Cycle,
    pub count: u32,
    pub rejects: Vec<Reject>,
    pub files: Vec<FileReport>,
    pub rejected_lines: Vec<RejectedLine>,
    pub line_duplicates: Vec<Reject>,
    pub prior_pools: Vec<PriorPool>,
}

const RECORD: &str = "split.json";
const MASTER_INPUT: &str = "input";

/// The bundle's files other than the lines and orders: the master data a shard reads again.
fn master_files() -> [&'static str; 7] {
    use super::{balances, orders as o, partners as p};
    [
        <p::PartnerColumn as Schema>::FILE,
        <balances::VoucherColumn as Schema>::FILE,
        <p::LinkColumn as Schema>::FILE,
        <p::TagColumn as Schema>::FILE,
        <o::ProjectColumn as Schema>::FILE,
        <balances::OpeningBalanceColumn as Schema>::FILE,
        <balances::WithdrawalColumn as Schema>::FILE,
    ]
}

impl Split {
    /// Writes what reopening needs into the partitions' folder: `split.json` and the master
    /// data's input files as exported (byte for byte).
    pub fn save(&self, input: &Path) -> Result<(), StructuralError> {
        let io = |e: std::io::Error| spill_error(&self.root, e);
        let copies = self.root.join(MASTER_INPUT);
        std::fs::create_dir_all(&copies).map_err(io)?;
        for file in master_files() {
            let from = input.join(file);
            if from.is_file() {
                std::fs::copy(&from, copies.join(file)).map_err(io)?;
            }
        }
        let master = &self.master;
        let record = SplitRecord {
            cycle: self.cycle,
            count: self.count,
            rejects: master.rejects.clone(),
            files: master.files.clone(),
            rejected_lines: master.rejected_lines.clone(),
            line_duplicates: self.line_duplicates.clone(),
            prior_pools: self.prior_pools.clone(),
        };
        let json = serde_json::to_vec(&record).map_err(|e| spill_error(&self.root, e.into()))?;
        std::fs::write(self.root.join(RECORD), json).map_err(io)
    }

    /// A split saved in `root` by [`Split::save`], reopened: its master data read again from
    /// the copied input files (the same rows are accepted), the rest from `split.json`.
    pub fn reopen(root: &Path) -> Result<Split, StructuralError> {
        let path = root.join(RECORD);
        let unreadable = |e: &dyn std::fmt::Display| StructuralError::Io {
            file: "split.json",
            message: format!(
                "{}: {e}: run split again into a new --parts",
                path.display()
            ),
        };
        let bytes = std::fs::read(&path).map_err(|e| unreadable(&e))?;
        let record: SplitRecord = serde_json::from_slice(&bytes).map_err(|e| unreadable(&e))?;
        let copies = root.join(MASTER_INPUT);
        let (mut rejects, mut files) = (Vec::new(), Vec::new());
        let partners = super::read_partners(&copies, &mut rejects, &mut files)?;
        let small = super::finish_small_files(
            super::read_small_files(&copies, &partners)?,
            &partners,
            &mut rejects,
            &mut files,
        );
        Ok(Split {
            spill: None,
            root: root.to_path_buf(),
            cycle: record.cycle,
            count: record.count,
            master: super::master_bundle(
                partners,
                small,
                record.rejected_lines,
                (record.rejects, record.files),
            ),
            line_duplicates: record.line_duplicates,
            prior_pools: record.prior_pools,
        })
    }

    pub fn cycle(&self) -> Cycle {
        self.cycle
    }
}
