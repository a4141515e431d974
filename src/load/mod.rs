//! Stage 1: load and validate a cycle bundle (SPEC §2, Appendix A).
//!
//! Every file is streamed through [`table::Table`] in windows of whole records; each window is
//! tokenized and its records checked in parallel (rayon) and kept in file order, so results never depend on the thread count. A record
//! either becomes a typed row or a [`Reject`] naming file, row, column, value and reason. Faults in
//! a file's shape (missing file or column, not UTF-8) stop the run instead ([`StructuralError`]).

mod balances;
mod bill_lines;
mod cell;
mod error;
mod orders;
mod own;
mod partners;
pub mod split;
mod table;

pub use bill_lines::RejectedLine;
pub use cell::is_valid_id;
pub use own::{Ownership, check_bundle};
pub use table::FileDigest;

use crate::calendar::Cycle;
use crate::model::{
    BillLine, CapabilityTag, Codes, DistributorLink, Id, OpeningBalance, Order, Partner,
    PartnerIdx, Project, Voucher, Withdrawal,
};
use crate::reject::{Reject, RejectCode};
use cell::{Checked, Fault};
use csv::StringRecord;
pub use error::StructuralError;
use rayon::prelude::*;
use rustc_hash::FxHashMap;
use std::path::Path;
use table::{Cell, Row, Schema, Sizes, Table, Window};

/// Records one task checks in a row (with its own scratch state, e.g. a code table).
const TASK_ROWS: usize = 256;

/// Everything a cycle's run reads, validated.
#[derive(Debug, Default)]
pub struct Bundle {
    pub partners: Partners,
    /// Regions, service and resource type codes of the bill lines.
    pub codes: Codes,
    pub bill_lines: Vec<BillLine>,
    pub rejected_lines: Vec<RejectedLine>,
    pub orders: Vec<Order>,
    pub vouchers: Vec<Voucher>,
    pub distributor_links: Vec<DistributorLink>,
    pub capability_tags: Vec<CapabilityTag>,
    pub projects: Vec<Project>,
    pub opening_balances: Vec<OpeningBalance>,
    pub withdrawals: Vec<Withdrawal>,
    /// Every rejected row of every file (bill lines included), sorted by file, row, column.
    pub rejects: Vec<Reject>,
    /// Per input file, by file name: what was read and how much was kept.
    pub files: Vec<FileReport>,
}

impl Bundle {
    /// The accepted lines whose outputs this bundle writes: all of them, but in a partition's
    /// bundle, where lines of other partitions' partners come to earn or claw back for its own.
    pub fn owned_lines(&self) -> impl Iterator<Item = &BillLine> {
        self.bill_lines
            .iter()
            .filter(|l| self.partners.owns(l.partner))
    }

    /// Puts the accepted bill lines in partner order (file order within a partner), in place.
    /// Every stage after loading works partner by partner: with each partner's lines side by
    /// side in memory, those passes read memory in order instead of jumping across it (at ten
    /// million lines, a cache and TLB miss per line per pass). Nothing depends on the lines'
    /// positions: outputs are sorted by their own keys, and rows keep their generation order.
    pub fn group_lines_by_partner(&mut self) {
        let lines = &mut self.bill_lines;
        let partners = self.partners.len();
        // Where each line goes: a counting sort by partner, stable.
        let mut next = vec![0u32; partners + 1];
        for l in lines.iter() {
            next[l.partner.0 as usize + 1] += 1;
        }
        for p in 0..partners {
            next[p + 1] += next[p];
        }
        let mut dest: Vec<u32> = lines
            .iter()
            .map(|l| {
                let slot = &mut next[l.partner.0 as usize];
                *slot += 1;
                *slot - 1
            })
            .collect();
        // Apply the permutation by following its cycles: each swap puts one line in place.
        for i in 0..lines.len() {
            while dest[i] as usize != i {
                let d = dest[i] as usize;
                lines.swap(i, d);
                dest.swap(i, d);
            }
        }
    }
}

/// One input file's line in the manifest.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FileReport {
    pub file: &'static str,
    pub digest: FileDigest,
    pub accepted: u64,
    pub rejected: u64,
}

/// A [`FileReport`] as read back from a split's record (its name interned).
#[derive(serde::Deserialize)]
struct FileRecord {
    file: String,
    digest: FileDigest,
    accepted: u64,
    rejected: u64,
}

impl<'de> serde::Deserialize<'de> for FileReport {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<FileReport, D::Error> {
        let r = FileRecord::deserialize(d)?;
        Ok(FileReport {
            file: crate::serial::intern(&r.file),
            digest: r.digest,
            accepted: r.accepted,
            rejected: r.rejected,
        })
    }
}

/// The file reports with the rows rejected after loading (against the state: an opening
/// balance after the first cycle, a voucher's opening balance, an over-withdrawal) moved from
/// accepted to rejected, so that rows read = accepted + rejected for every file (SPEC §2).
pub fn with_later_rejects<'a>(
    files: &[FileReport],
    rejects: impl IntoIterator<Item = &'a Reject>,
) -> Vec<FileReport> {
    let mut files = files.to_vec();
    // A row counts once, whatever number of later faults it has.
    let rows: std::collections::BTreeSet<(&str, u64)> =
        rejects.into_iter().map(|r| (r.file, r.row)).collect();
    for (file, _) in rows {
        if let Some(f) = files.iter_mut().find(|f| f.file == file) {
            f.accepted = f.accepted.saturating_sub(1);
            f.rejected += 1;
        }
    }
    files
}

/// The accepted partners, by id.
#[derive(Debug, Default, Clone)]
pub struct Partners {
    list: Vec<Partner>,
    index: FxHashMap<Id, PartnerIdx>,
    /// In a partition's bundle (`partition.rs`), the partners it owns: every partner is known
    /// (a line's distributor may be another partition's), but only these have outputs here.
    owned: Option<Vec<bool>>,
}

impl Partners {
    /// Partner indices in partner-id order: the order of every output sorted by partner. In a
    /// partition's bundle, only the partners it owns: what is written per partner (journal,
    /// explanations, identities) follows this list.
    pub fn in_id_order(&self) -> Vec<u32> {
        let mut order: Vec<u32> = (0..self.list.len() as u32)
            .filter(|&p| self.owns(PartnerIdx(p)))
            .collect();
        order.sort_by(|&a, &b| {
            self.list[a as usize]
                .partner_id
                .cmp(&self.list[b as usize].partner_id)
        });
        order
    }

    fn new(list: Vec<Partner>) -> Partners {
        let index = list
            .iter()
            .enumerate()
            .map(|(i, p)| (p.partner_id.clone(), PartnerIdx(i as u32)))
            .collect();
        Partners {
            list,
            index,
            owned: None,
        }
    }

    /// Whether this bundle's outputs hold `partner`'s rows: always, but in a partition's bundle.
    pub fn owns(&self, partner: PartnerIdx) -> bool {
        self.owned
            .as_ref()
            .is_none_or(|o| o.get(partner.0 as usize).copied().unwrap_or(false))
    }

    /// The same partners, of which this partition owns those `owned` says (by index).
    pub fn owning(&self, owned: Vec<bool>) -> Partners {
        debug_assert_eq!(owned.len(), self.list.len());
        Partners {
            owned: Some(owned),
            ..self.clone()
        }
    }

    pub fn get(&self, partner_id: &str) -> Option<(PartnerIdx, &Partner)> {
        self.index
            .get(partner_id)
            .map(|&i| (i, &self.list[i.0 as usize]))
    }

    /// The partner an index names. Indices come only from this table, so they are in range.
    pub fn at(&self, partner: PartnerIdx) -> &Partner {
        &self.list[partner.0 as usize]
    }

    pub fn iter(&self) -> impl Iterator<Item = (PartnerIdx, &Partner)> {
        self.list
            .iter()
            .enumerate()
            .map(|(i, p)| (PartnerIdx(i as u32), p))
    }

    pub fn len(&self) -> usize {
        self.list.len()
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// The partner a cell names, which must be an id of an accepted row of `partners.csv`.
    fn known(&self, cell: Cell<'_>) -> Checked<(PartnerIdx, &Partner)> {
        let id = cell.id()?;
        self.get(&id).ok_or_else(|| {
            Fault::new(
                cell,
                RejectCode::UnknownPartner,
                format!("partner {id} is missing from partners.csv or was rejected there"),
            )
        })
    }
}

fn field_count_fault<S: Schema>(row: &Row<'_, S>) -> Fault {
    Fault {
        column: "*",
        value: String::new(),
        code: RejectCode::FieldCount,
        detail: format!(
            "{} fields; the header has {}",
            row.field_count(),
            row.header_width()
        ),
    }
}

/// What reading one file gave: kept rows in file order, failures, and the digest.
struct Read<T, E> {
    rows: Vec<T>,
    failed: Vec<E>,
    digest: FileDigest,
}

/// Streams `dir/<S::FILE>` in windows of whole records: each window is tokenized in parallel
/// blocks and its records checked in parallel tasks of [`TASK_ROWS`] while the next window is
/// read. Each task has its own scratch state `L`; `merge` folds a task's state into the file's,
/// in file order, and may rewrite the task's rows (so the outcome never depends on how tasks
/// were scheduled).
fn read_file<S, T, E, L, P, M>(
    dir: &Path,
    check: P,
    mut merge: M,
) -> Result<Read<T, E>, StructuralError>
where
    S: Schema,
    T: Send,
    E: Send,
    L: Default + Send,
    P: Fn(&Row<'_, S>, &mut L) -> Result<T, E> + Sync,
    M: FnMut(L, &mut [T]) + Send,
{
    read_file_with(dir, Sizes::default(), check, &mut merge)
}

fn read_file_with<S, T, E, L, P, M>(
    dir: &Path,
    sizes: Sizes,
    check: P,
    merge: &mut M,
) -> Result<Read<T, E>, StructuralError>
where
    S: Schema,
    T: Send,
    E: Send,
    L: Default + Send,
    P: Fn(&Row<'_, S>, &mut L) -> Result<T, E> + Sync,
    M: FnMut(L, &mut [T]) + Send,
{
    let mut rows: Vec<T> = Vec::new();
    let mut failed: Vec<E> = Vec::new();
    let digest = stream_file_with(
        dir,
        sizes,
        check,
        merge,
        &mut |tasks: &mut [TaskResults<T, E>], expected: usize| {
            if rows.is_empty() {
                rows.reserve(expected);
            }
            for t in tasks.iter_mut() {
                failed.append(&mut t.failed);
            }
            append_in_parallel(&mut rows, tasks);
            Ok(())
        },
    )?;
    Ok(Read {
        rows,
        failed,
        digest,
    })
}

/// [`read_file_with`] handing each window's results to `sink` (with the number of records
/// the file is expected to hold, for a first reservation) instead of keeping them: what the
/// ownership pass streams through its spilled buckets. The sink must empty the tasks.
fn stream_file_with<S, T, E, L, P, M, K>(
    dir: &Path,
    sizes: Sizes,
    check: P,
    merge: &mut M,
    sink: &mut K,
) -> Result<FileDigest, StructuralError>
where
    S: Schema,
    T: Send,
    E: Send,
    L: Default + Send,
    P: Fn(&Row<'_, S>, &mut L) -> Result<T, E> + Sync,
    M: FnMut(L, &mut [T]) + Send,
    K: FnMut(&mut [TaskResults<T, E>], usize) -> Result<(), StructuralError> + Send,
{
    let Some(Table { layout, mut source }) = Table::<S>::open(dir, sizes)? else {
        return Ok(FileDigest::default());
    };
    let (mut current, mut next) = (Window::default(), Window::default());
    let mut more = source.read_window(&mut current)?;
    // Record 1 is the header.
    let mut last_row = 1;
    let (file, header) = (S::FILE, source.header().to_vec());
    // One result buffer per task, kept from window to window: allocated once, not freed by
    // the merging thread and faulted in again by a worker for every window.
    let mut buffers: Vec<TaskResults<T, E>> = Vec::new();
    while more {
        let check_window = |window: &mut Window,
                            buffers: &mut Vec<TaskResults<T, E>>,
                            last_row: u64|
         -> Result<_, StructuralError> {
            let last_row = window.tokenize(file, &header, last_row)?;
            let tasks: Vec<&[(u64, StringRecord)]> = window
                .chunks()
                .iter()
                .flat_map(|chunk| chunk.records().chunks(TASK_ROWS))
                .collect();
            buffers.resize_with(buffers.len().max(tasks.len()), TaskResults::default);
            let locals: Vec<L> = tasks
                .par_iter()
                .zip(buffers.par_iter_mut())
                .map(|(task, results)| {
                    let mut local = L::default();
                    for (number, record) in task.iter() {
                        match check(&layout.row(*number, record), &mut local) {
                            Ok(row) => results.kept.push(row),
                            Err(e) => results.failed.push(e),
                        }
                    }
                    local
                })
                .collect();
            Ok((last_row, locals))
        };
        let (checked, read_next) = rayon::join(
            || check_window(&mut current, &mut buffers, last_row),
            || source.read_window(&mut next),
        );
        let (window_last, locals) = checked?;
        // Record 1 is the header: `window_last - 1` records so far.
        if window_last - 1 > sizes.max_records {
            return Err(StructuralError::TooManyRecords {
                file,
                max: sizes.max_records,
            });
        }
        let rows = window_last - 1;
        let remaining = source.estimated_remaining(rows, current.end());
        let expected = rows as usize + remaining + remaining / 64;
        last_row = window_last;
        let tasks = &mut buffers[..locals.len()];
        for (local, results) in locals.into_iter().zip(tasks.iter_mut()) {
            merge(local, &mut results.kept);
        }
        sink(tasks, expected)?;
        debug_assert!(
            tasks
                .iter()
                .all(|t| t.kept.is_empty() && t.failed.is_empty())
        );
        more = read_next?;
        std::mem::swap(&mut current, &mut next);
    }
    source.finish(last_row - 1)
}

/// What one task of [`read_file`] kept and turned away.
struct TaskResults<T, E> {
    kept: Vec<T>,
    failed: Vec<E>,
}

impl<T, E> Default for TaskResults<T, E> {
    fn default() -> Self {
        TaskResults {
            kept: Vec::new(),
            failed: Vec::new(),
        }
    }
}

/// Moves every task's kept rows, in task order, to the end of `rows`, each task's by a job of
/// its own: the fresh pages of `rows` (1.9 GB of bill lines at ten million) are then first
/// touched on every core instead of on the merging thread alone.
fn append_in_parallel<T: Send, E: Send>(rows: &mut Vec<T>, tasks: &mut [TaskResults<T, E>]) {
    let total: usize = tasks.iter().map(|t| t.kept.len()).sum();
    rows.reserve(total);
    let mut spare = &mut rows.spare_capacity_mut()[..total];
    let mut slots = Vec::with_capacity(tasks.len());
    for task in tasks.iter() {
        let (head, tail) = std::mem::take(&mut spare).split_at_mut(task.kept.len());
        slots.push(head);
        spare = tail;
    }
    slots
        .into_par_iter()
        .zip(tasks.par_iter_mut())
        .for_each(|(slots, task)| {
            for (slot, row) in slots.iter_mut().zip(task.kept.drain(..)) {
                slot.write(row);
            }
        });
    // SAFETY: the `total` slots after the old length were each written just above: the slots
    // were split into runs of exactly each task's length, and each task drained into its run.
    // (Had a job panicked, the length would stay and the moved rows leak, never be read.)
    unsafe { rows.set_len(rows.len() + total) };
}

/// Reads an ordinary (not bill-line) file: each row keeps its record number, failures are
/// rejects at once.
fn read_simple<S, T, F>(dir: &Path, check: F) -> Result<Read<(u64, T), Reject>, StructuralError>
where
    S: Schema,
    T: Send,
    F: Fn(&Row<'_, S>) -> Checked<T> + Sync,
{
    read_file::<S, _, _, (), _, _>(
        dir,
        |row, _| {
            check(row)
                .map(|t| (row.number, t))
                .map_err(|f| f.at(S::FILE, row.number))
        },
        |_, _| {},
    )
}

/// When an id repeats, the first accepted row keeps it and later rows are rejected. Ids are
/// hashed and sorted (in parallel), not inserted one by one into a map: ten million line ids
/// take a few hundred milliseconds and 16 bytes each. Returns (duplicate, first) positions,
/// in file order of the duplicates.
fn find_duplicates<T: Sync>(rows: &[T], id_of: impl Fn(&T) -> &str + Sync) -> Vec<(usize, usize)> {
    use std::hash::BuildHasher;
    let hasher = rustc_hash::FxBuildHasher;
    let mut keyed: Vec<(u64, u32)> = rows
        .par_iter()
        .enumerate()
        .map(|(i, row)| (hasher.hash_one(id_of(row)), i as u32))
        .collect();
    keyed.par_sort_unstable();
    let mut duplicates = Vec::new();
    let mut run_start = 0;
    while run_start < keyed.len() {
        let mut run_end = run_start + 1;
        while run_end < keyed.len() && keyed[run_end].0 == keyed[run_start].0 {
            run_end += 1;
        }
        // Equal hashes: compare the ids themselves; positions in a run are ascending.
        let run = &keyed[run_start..run_end];
        for (k, &(_, later)) in run.iter().enumerate().skip(1) {
            let later_id = id_of(&rows[later as usize]);
            if let Some(&(_, first)) = run[..k]
                .iter()
                .find(|(_, f)| id_of(&rows[*f as usize]) == later_id)
            {
                duplicates.push((later as usize, first as usize));
            }
        }
        run_start = run_end;
    }
    duplicates.sort_unstable();
    duplicates
}

/// Removes the rows at `positions` (ascending), keeping the order of the rest.
fn remove_positions<T>(rows: &mut Vec<T>, positions: &[usize]) {
    let mut next = positions.iter().peekable();
    let mut index = 0;
    rows.retain(|_| {
        let drop = next.peek() == Some(&&index);
        if drop {
            next.next();
        }
        index += 1;
        !drop
    });
}

/// The column holding a file's unique id, and how to get it from a row.
type UniqueId<T> = (&'static str, fn(&T) -> &Id);

/// A file whose rows are ordinary records, maybe with a unique id column.
fn finish_simple<S: Schema, T: Sync>(
    read: Read<(u64, T), Reject>,
    unique: Option<UniqueId<T>>,
    rejects: &mut Vec<Reject>,
    files: &mut Vec<FileReport>,
) -> Vec<(u64, T)> {
    let mut own = read.failed;
    let mut rows = read.rows;
    if let Some((column, id_of)) = unique {
        let duplicates = find_duplicates(&rows, |(_, t)| id_of(t).as_str());
        for &(later, first) in &duplicates {
            own.push(Reject {
                file: S::FILE,
                row: rows[later].0,
                column,
                value: id_of(&rows[later].1).to_string(),
                code: RejectCode::DuplicateId,
                detail: format!("{column} already used on row {}", rows[first].0),
            });
        }
        let positions: Vec<usize> = duplicates.iter().map(|(later, _)| *later).collect();
        remove_positions(&mut rows, &positions);
    }
    files.push(report::<S>(read.digest, rows.len(), own.len()));
    rejects.extend(own);
    rows
}

fn report<S: Schema>(digest: FileDigest, accepted: usize, rejected: usize) -> FileReport {
    FileReport {
        file: S::FILE,
        digest,
        accepted: accepted as u64,
        rejected: rejected as u64,
    }
}

fn without_rows<T>(rows: Vec<(u64, T)>) -> Vec<T> {
    rows.into_iter().map(|(_, t)| t).collect()
}

/// The files that grow with partners and customers, not with the month's lines, as read.
struct SmallReads {
    vouchers: Read<(u64, Voucher), Reject>,
    links: Read<(u64, DistributorLink), Reject>,
    tags: Read<(u64, CapabilityTag), Reject>,
    projects: Read<(u64, Project), Reject>,
    opening: Read<(u64, OpeningBalance), Reject>,
    withdrawals: Read<(u64, Withdrawal), Reject>,
}

/// Their accepted rows.
struct SmallRows {
    vouchers: Vec<Voucher>,
    links: Vec<DistributorLink>,
    tags: Vec<CapabilityTag>,
    projects: Vec<Project>,
    opening: Vec<OpeningBalance>,
    withdrawals: Vec<Withdrawal>,
}

fn read_small_files(dir: &Path, p: &Partners) -> Result<SmallReads, StructuralError> {
    Ok(SmallReads {
        vouchers: read_simple::<balances::VoucherColumn, _, _>(dir, |r| {
            balances::parse_voucher(r, p)
        })?,
        links: read_simple::<partners::LinkColumn, _, _>(dir, |r| partners::parse_link(r, p))?,
        tags: read_simple::<partners::TagColumn, _, _>(dir, |r| partners::parse_tag(r, p))?,
        projects: read_simple::<orders::ProjectColumn, _, _>(dir, |r| orders::parse_project(r, p))?,
        opening: read_simple::<balances::OpeningBalanceColumn, _, _>(dir, |r| {
            balances::parse_opening_balance(r, p)
        })?,
        withdrawals: read_simple::<balances::WithdrawalColumn, _, _>(dir, |r| {
            balances::parse_withdrawal(r, p)
        })?,
    })
}

/// Their ids that must be unique (the first accepted row keeps one), overlapping links, and
/// each file's counts.
fn finish_small_files(
    read: SmallReads,
    p: &Partners,
    rejects: &mut Vec<Reject>,
    files: &mut Vec<FileReport>,
) -> SmallRows {
    let vouchers = finish_simple::<balances::VoucherColumn, _>(
        read.vouchers,
        Some(("voucher_id", |v: &Voucher| &v.voucher_id)),
        rejects,
        files,
    );
    let links = {
        let mut own = read.links.failed;
        let kept = partners::reject_overlapping_links(read.links.rows, p, &mut own);
        files.push(report::<partners::LinkColumn>(
            read.links.digest,
            kept.len(),
            own.len(),
        ));
        rejects.extend(own);
        kept
    };
    let tags = finish_simple::<partners::TagColumn, _>(read.tags, None, rejects, files);
    let projects = finish_simple::<orders::ProjectColumn, _>(
        read.projects,
        Some(("project_id", |p: &Project| &p.project_id)),
        rejects,
        files,
    );
    let opening = finish_simple::<balances::OpeningBalanceColumn, _>(
        read.opening,
        Some(("lot_id", |o: &OpeningBalance| &o.lot_id)),
        rejects,
        files,
    );
    let withdrawals = finish_simple::<balances::WithdrawalColumn, _>(
        read.withdrawals,
        Some(("application_id", |w: &Withdrawal| &w.application_id)),
        rejects,
        files,
    );
    SmallRows {
        vouchers: without_rows(vouchers),
        links: without_rows(links),
        tags: without_rows(tags),
        projects: without_rows(projects),
        opening: without_rows(opening),
        withdrawals: without_rows(withdrawals),
    }
}

/// `partners.csv`, read first: every other file is checked against its accepted rows.
fn read_partners(
    dir: &Path,
    rejects: &mut Vec<Reject>,
    files: &mut Vec<FileReport>,
) -> Result<Partners, StructuralError> {
    let read = read_simple::<partners::PartnerColumn, _, _>(dir, partners::parse_partner)?;
    let rows = finish_simple::<partners::PartnerColumn, _>(
        read,
        Some(("partner_id", |p: &Partner| &p.partner_id)),
        rejects,
        files,
    );
    Ok(Partners::new(without_rows(rows)))
}

/// Loads and validates the bundle in `dir` for `cycle`.
pub fn load_bundle(dir: &Path, cycle: Cycle) -> Result<Bundle, StructuralError> {
    let mut rejects = Vec::new();
    let mut files = Vec::new();

    // Partners first: every other file is checked against the accepted ones.
    let partners = read_partners(dir, &mut rejects, &mut files)?;
    let p = &partners;
    let mut codes = Codes::default();

    // The bill lines (by far the largest file) are read while the small files are read beside them.
    let (lines, others) = rayon::join(
        || {
            read_file::<bill_lines::Column, _, _, Codes, _, _>(
                dir,
                |row, task_codes| {
                    bill_lines::parse(row, cycle, p, task_codes)
                        .map_err(|f| Box::new(RejectedLine::from_row(row, f)))
                },
                |task_codes, lines| bill_lines::renumber(&mut codes, &task_codes, lines),
            )
        },
        || -> Result<_, StructuralError> {
            Ok((
                read_simple::<orders::OrderColumn, _, _>(dir, |r| orders::parse_order(r, p))?,
                read_small_files(dir, p)?,
            ))
        },
    );
    let lines = lines?;
    let (orders, small) = others?;

    let mut rejected_lines: Vec<RejectedLine> = lines.failed.into_iter().map(|b| *b).collect();
    let mut bill_lines = lines.rows;
    let duplicates = find_duplicates(&bill_lines, |l: &BillLine| l.line_id.as_str());
    for &(later, first) in &duplicates {
        let line = &bill_lines[later];
        let reject = Reject {
            file: bill_lines::Column::FILE,
            row: u64::from(line.source_row),
            column: "line_id",
            value: line.line_id.to_string(),
            code: RejectCode::DuplicateId,
            detail: format!(
                "line_id already used on row {}",
                bill_lines[first].source_row
            ),
        };
        rejected_lines.push(RejectedLine::from_line(line, &partners, reject));
    }
    let positions: Vec<usize> = duplicates.iter().map(|(later, _)| *later).collect();
    remove_positions(&mut bill_lines, &positions);
    bill_lines.shrink_to_fit();
    rejected_lines.sort_by_key(RejectedLine::source_row);
    files.push(report::<bill_lines::Column>(
        lines.digest,
        bill_lines.len(),
        rejected_lines.len(),
    ));
    rejects.extend(rejected_lines.iter().map(|l| l.reject.clone()));

    let orders = finish_simple::<orders::OrderColumn, _>(
        orders,
        Some(("order_id", |o: &Order| &o.order_id)),
        &mut rejects,
        &mut files,
    );
    let small = finish_small_files(small, &partners, &mut rejects, &mut files);

    rejects.sort_by(|a, b| (a.file, a.row, a.column).cmp(&(b.file, b.row, b.column)));
    files.sort_by_key(|f| f.file);
    Ok(Bundle {
        codes,
        bill_lines,
        orders: without_rows(orders),
        ..master_bundle(partners, small, rejected_lines, (rejects, files))
    })
}

/// A bundle of the master data alone (no lines, no orders): what a split keeps whole.
fn master_bundle(
    partners: Partners,
    small: SmallRows,
    rejected_lines: Vec<RejectedLine>,
    (rejects, files): (Vec<Reject>, Vec<FileReport>),
) -> Bundle {
    Bundle {
        partners,
        rejected_lines,
        vouchers: small.vouchers,
        distributor_links: small.links,
        capability_tags: small.tags,
        projects: small.projects,
        opening_balances: small.opening,
        withdrawals: small.withdrawals,
        rejects,
        files,
        ..Default::default()
    }
}

/// A step's record in a parts folder (SPEC §9), and its bytes; the error names the file.
pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<(T, Vec<u8>), String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let value = serde_json::from_slice(&bytes).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok((value, bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fmt::Write as _;

    const PARTNERS: &str = "partner_id,name,partner_type,business_region,market,programme,joined_on,exited_on\n\
        SP1,Alpha,solution_provider,cn,cn,solution_provider,2024-01-01,\n";
    const HEADER: &str = "line_id,bill_cycle,partner_id,customer_id,sales_mode,market,service_type_code,\
        charge_mode,bill_type,trade_time,order_id,official_amount,payable_amount,currency\n";

    fn bundle(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        dir
    }

    fn cycle() -> Cycle {
        "2026-10".parse().unwrap()
    }

    #[test]
    fn order_and_row_numbers_survive_windows_and_blocks() {
        // 300 records of ~100 bytes through windows of 2 KiB cut into blocks of 300 bytes: many
        // windows and blocks, with bad records wherever they fall. Record i is row i + 2 (the
        // header is row 1), and every record comes back once, in file order.
        let n = 300;
        let bad = |i: usize| i % 7 == 3 || i == n - 1;
        let mut lines = String::from(HEADER);
        for i in 0..n {
            let payable = if bad(i) { "x" } else { "1.00" };
            writeln!(
                lines,
                "L{i},2026-10,SP1,C1,resale,cn,hws.service.type.ec2,on_demand,usage,\
                 2026-10-05T10:00:00Z,,1.00,{payable},CNY"
            )
            .unwrap();
        }
        let dir = bundle(&[("bill_lines.csv", &lines)]);
        let sizes = Sizes {
            window: 2048,
            block: 300,
            ..Sizes::default()
        };
        let mut tasks = 0;
        let read = read_file_with::<bill_lines::Column, _, _, (), _, _>(
            dir.path(),
            sizes,
            |row, _| {
                let id = row.cell(bill_lines::Column::LineId).text.to_string();
                match row.cell(bill_lines::Column::PayableAmount).decimal() {
                    Ok(_) => Ok((row.number, id)),
                    Err(_) => Err(row.number),
                }
            },
            &mut |_, _| tasks += 1,
        )
        .unwrap();
        let expected_ok: Vec<(u64, String)> = (0..n)
            .filter(|&i| !bad(i))
            .map(|i| (i as u64 + 2, format!("L{i}")))
            .collect();
        let expected_failed: Vec<u64> = (0..n).filter(|&i| bad(i)).map(|i| i as u64 + 2).collect();
        assert_eq!(read.rows, expected_ok);
        assert_eq!(read.failed, expected_failed);
        assert_eq!(read.digest.rows_read, n as u64);
        assert!(tasks > 1, "the records were checked in several tasks");
        use sha2::Digest;
        assert_eq!(
            read.digest.sha256,
            hex::encode(sha2::Sha256::digest(&lines))
        );
    }

    #[test]
    fn a_file_of_more_records_than_rows_can_be_numbered_is_refused_whole() {
        // Rows are numbered and indexed in 32 bits; the limit lowered to 5 records here: a file
        // of 6 is a structural error naming the file, not rows numbered past the limit.
        let mut lines = String::from(HEADER);
        for i in 0..6 {
            writeln!(
                lines,
                "L{i},2026-10,SP1,C1,resale,cn,hws.service.type.ec2,on_demand,usage,\
                 2026-10-05T10:00:00Z,,1.00,1.00,CNY"
            )
            .unwrap();
        }
        let dir = bundle(&[("bill_lines.csv", &lines)]);
        let read = |max_records| {
            read_file_with::<bill_lines::Column, _, _, (), _, _>(
                dir.path(),
                Sizes {
                    max_records,
                    ..Sizes::default()
                },
                |row, _| Ok::<u64, ()>(row.number),
                &mut |_, _| {},
            )
        };
        assert_eq!(read(6).map(|r| r.rows.len()).ok(), Some(6));
        match read(5) {
            Err(StructuralError::TooManyRecords { file, max }) => {
                assert_eq!((file, max), ("bill_lines.csv", 5))
            }
            other => panic!("expected TooManyRecords, got {:?}", other.map(|r| r.rows)),
        }
    }

    #[test]
    fn rows_are_records_not_lines() {
        // A partner's name spanning two lines (the one column that may): the next record is
        // still row 3.
        let partners = "partner_id,name,partner_type,business_region,market,programme,joined_on,exited_on\n\
            SP1,\"Alpha\nTrading Co\",solution_provider,cn,cn,solution_provider,2024-01-01,\n\
            SP2,Beta,solution_provider,cn,cn,solution_provider,2024-01-01,oops\n";
        let dir = bundle(&[("partners.csv", partners), ("bill_lines.csv", HEADER)]);
        let b = load_bundle(dir.path(), cycle()).unwrap();
        assert_eq!(b.partners.len(), 1);
        assert_eq!(b.partners.at(PartnerIdx(0)).name, "Alpha\nTrading Co");
        assert_eq!(b.rejects.len(), 1);
        assert_eq!((b.rejects[0].row, b.rejects[0].column), (3, "exited_on"));
    }

    fn line(i: usize) -> String {
        format!(
            "L{i},2026-10,SP1,C1,resale,cn,hws.service.type.ec2,on_demand,usage,2026-10-05T10:00:00Z,,1,1,CNY\n"
        )
    }

    /// The stray quote a bundle's load stops at: (file, line, column, lines swallowed).
    fn stray(files: &[(&str, &str)], sizes: Sizes) -> (&'static str, u64, String, u64, String) {
        let dir = bundle(files);
        let result = match files.iter().any(|(f, _)| *f == "partners.csv") {
            true => load_bundle(dir.path(), cycle()).map(|_| ()),
            false => read_file_with::<bill_lines::Column, _, _, (), _, _>(
                dir.path(),
                sizes,
                |row, _| Ok::<u64, ()>(row.number),
                &mut |_, _| {},
            )
            .map(|_| ()),
        };
        match result {
            Err(StructuralError::StrayQuote {
                file,
                line,
                column,
                lines,
                detail,
            }) => (file, line, column, lines, detail),
            other => panic!("expected a stray quote, got {other:?}"),
        }
    }

    #[test]
    fn a_stray_quote_in_bill_lines_stops_the_load_naming_where_it_opened() {
        // A `"` before row 442's customer_id in a 2,000-line file: it opens a field that runs to
        // the end, 1,559 lines (442 to 2000). Windows of 4 KiB: found far from the first one.
        let quoted_at = |rows: &[usize]| {
            let mut lines = String::from(HEADER);
            for i in 2..=2000 {
                let text = line(i);
                if rows.contains(&i) {
                    lines.push_str(&text.replace("SP1,C1", "SP1,\"C1"));
                } else {
                    lines.push_str(&text);
                }
            }
            lines
        };
        let lines = quoted_at(&[442]);
        let small = Sizes {
            window: 4096,
            block: 512,
            ..Sizes::default()
        };
        for sizes in [small, Sizes::default()] {
            let (file, at, column, swallowed, detail) = stray(&[("bill_lines.csv", &lines)], sizes);
            assert_eq!(
                (file, at, column.as_str(), swallowed),
                ("bill_lines.csv", 442, "customer_id", 1559)
            );
            assert!(detail.contains("end of the file (line 2000)"), "{detail}");
        }
        // Closed again further down (a quote at the start of row 450's customer_id): still
        // stray, 9 lines.
        let closed = quoted_at(&[442, 450]);
        let (_, at, _, swallowed, detail) = stray(&[("bill_lines.csv", &closed)], small);
        assert_eq!((at, swallowed), (442, 9));
        assert!(detail.contains("runs on to line 450"), "{detail}");
        // A quote still open at the end, on the last line, with no line break after it.
        let open = format!("{HEADER}{}L3,2026-10,SP1,C1,resale,cn,\"hws", line(2));
        let (_, at, column, swallowed, _) = stray(&[("bill_lines.csv", &open)], small);
        assert_eq!(
            (at, column.as_str(), swallowed),
            (3, "service_type_code", 1)
        );
    }

    #[test]
    fn a_name_that_swallowed_whole_partner_records_is_a_stray_quote() {
        let header =
            "partner_id,name,partner_type,business_region,market,programme,joined_on,exited_on\n";
        let row = |id: &str, name: &str| {
            format!("{id},{name},solution_provider,cn,cn,solution_provider,2024-01-01,\n")
        };
        // SP2's name opens a quote that SP5's quoted name closes: SP3, SP4 and SP5's lines are
        // each a whole partner record.
        let partners = format!(
            "{header}{}{}{}{}{}",
            row("SP1", "Alpha"),
            row("SP2", "\"Beta"),
            row("SP3", "Gamma"),
            row("SP4", "Delta"),
            row("SP5", "\"Epsilon, Ltd\""),
        );
        let (file, at, column, swallowed, detail) = stray(
            &[("partners.csv", &partners), ("bill_lines.csv", HEADER)],
            Sizes::default(),
        );
        assert_eq!(
            (file, at, column.as_str(), swallowed),
            ("partners.csv", 3, "name", 4)
        );
        assert!(
            detail
                .contains("the 3 lines after the first would each be a whole partners.csv record"),
            "{detail}"
        );
        // Never closed: open at the end of the file.
        let partners = format!("{header}{}{}", row("SP1", "\"Alpha"), row("SP2", "Beta"));
        let (_, at, _, swallowed, _) = stray(
            &[("partners.csv", &partners), ("bill_lines.csv", HEADER)],
            Sizes::default(),
        );
        assert_eq!((at, swallowed), (2, 2));
    }

    #[test]
    fn columns_match_by_name_in_any_order_and_extras_are_ignored() {
        let lines = "currency,payable_amount,official_amount,order_id,trade_time,bill_type,charge_mode,\
            service_type_code,market,sales_mode,customer_id,partner_id,bill_cycle,line_id,vendor_note\n\
            USD,12.30,12.30,,2026-10-05T10:00:00Z,usage,on_demand,hws.service.type.ec2,intl,referral,C1,SP1,2026-10,L1,hello\n";
        let dir = bundle(&[("partners.csv", PARTNERS), ("bill_lines.csv", lines)]);
        let b = load_bundle(dir.path(), cycle()).unwrap();
        assert!(b.rejects.is_empty(), "{:?}", b.rejects);
        let line = &b.bill_lines[0];
        assert_eq!(line.payable_amount.to_string(), "12.30");
        assert_eq!(line.currency.as_str(), "USD");
        // Blank optional amounts take their defaults: coupon 0, settlement = payable.
        assert!(line.coupon_amount.is_zero());
        assert_eq!(line.settlement_amount, line.payable_amount);
    }

    #[test]
    fn rejected_lines_keep_what_was_readable_for_the_control_totals() {
        let lines = format!(
            "{HEADER}L1,2026-10,NOPE,C1,resale,cn,hws.service.type.ec2,on_demand,usage,2026-10-05T10:00:00Z,,1,7.25,CNY\n\
             L2,2026-10,SP1,C1,resale,cn,hws.service.type.ec2,on_demand,usage,2026-10-05T10:00:00Z,,1,x,CNY\n"
        );
        let dir = bundle(&[("partners.csv", PARTNERS), ("bill_lines.csv", &lines)]);
        let b = load_bundle(dir.path(), cycle()).unwrap();
        assert_eq!(b.rejected_lines.len(), 2);
        assert_eq!(
            b.rejected_lines[0].payable_amount,
            Some("7.25".parse().unwrap())
        );
        assert_eq!(b.rejected_lines[1].payable_amount, None);
        let totals = crate::reconcile::bill_line_totals(&b);
        assert_eq!(totals.rejected["CNY"].payable_amount.to_string(), "7.25");
        assert_eq!(totals.rejected_without_amount, 1);
    }

    #[test]
    fn optional_files_may_be_absent_required_ones_may_not() {
        let dir = bundle(&[("partners.csv", PARTNERS), ("bill_lines.csv", HEADER)]);
        let b = load_bundle(dir.path(), cycle()).unwrap();
        assert!(
            b.files
                .iter()
                .any(|f| f.file == "vouchers.csv" && !f.digest.present)
        );
        let dir = bundle(&[("bill_lines.csv", HEADER)]);
        assert!(matches!(
            load_bundle(dir.path(), cycle()),
            Err(StructuralError::MissingFile {
                file: "partners.csv",
                ..
            })
        ));
    }

    #[test]
    fn lines_grouped_by_partner_keep_file_order_within_each() {
        // Partners SP1 (index 0) and SP4 (index 3) interleaved: L1 SP4, L2 SP1, L3 SP4, L4 SP1,
        // L5 SP1. Grouped: SP1's L2, L4, L5 (rows 3, 5, 6), then SP4's L1, L3 (rows 2, 4).
        let mut lines = crate::testkit::LINE_HEADER.to_string();
        for (id, partner) in [
            ("L1", "SP4"),
            ("L2", "SP1"),
            ("L3", "SP4"),
            ("L4", "SP1"),
            ("L5", "SP1"),
        ] {
            let market = if partner == "SP4" { "intl" } else { "cn" };
            let _ = writeln!(
                lines,
                "{id},2026-10,{partner},C1,resale,{market},hws.service.type.ec2,on_demand,usage,2026-10-05T10:00:00+08:00,,1.00,1.00,1.00,CNY"
            );
        }
        let mut b = crate::testkit::bundle(&[("bill_lines.csv", &lines)]);
        b.group_lines_by_partner();
        let order: Vec<(&str, u32)> = b
            .bill_lines
            .iter()
            .map(|l| (l.line_id.as_str(), l.source_row))
            .collect();
        assert_eq!(
            order,
            vec![("L2", 3), ("L4", 5), ("L5", 6), ("L1", 2), ("L3", 4)]
        );
    }
}
