//! Stage 1: load and validate a cycle bundle (SPEC §2, Appendix A).
//!
//! Every file is streamed through [`table::Table`] in chunks; each chunk's records are checked in
//! parallel (rayon) and kept in file order, so results never depend on the thread count. A record
//! either becomes a typed row or a [`Reject`] naming file, row, column, value and reason. Faults in
//! a file's shape (missing file or column, not UTF-8) stop the run instead ([`StructuralError`]).

mod balances;
mod bill_lines;
mod cell;
mod orders;
mod partners;
mod table;

pub use bill_lines::RejectedLine;
pub use cell::is_valid_id;
pub use table::FileDigest;

use crate::calendar::Cycle;
use crate::error::StructuralError;
use crate::model::{
    BillLine, CapabilityTag, DistributorLink, Id, OpeningBalance, Order, Partner, Project, Voucher,
    Withdrawal,
};
use crate::reject::{Reject, RejectCode};
use cell::{Checked, Fault};
use rayon::prelude::*;
use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::path::Path;
use table::{Cell, Row, Schema, Table};

/// Records read and checked together; large enough to keep both cores busy, small enough to
/// bound memory to a few megabytes of raw text.
const CHUNK_ROWS: usize = 32 * 1024;

/// Everything a cycle's run reads, validated.
#[derive(Debug, Default)]
pub struct Bundle {
    pub partners: Partners,
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

/// One input file's line in the manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileReport {
    pub file: &'static str,
    pub digest: FileDigest,
    pub accepted: u64,
    pub rejected: u64,
}

/// The accepted partners, by id.
#[derive(Debug, Default)]
pub struct Partners {
    list: Vec<Partner>,
    index: HashMap<Id, usize>,
}

impl Partners {
    fn new(list: Vec<Partner>) -> Partners {
        let index = list
            .iter()
            .enumerate()
            .map(|(i, p)| (p.partner_id.clone(), i))
            .collect();
        Partners { list, index }
    }

    pub fn get(&self, partner_id: &str) -> Option<&Partner> {
        self.index.get(partner_id).map(|&i| &self.list[i])
    }

    pub fn iter(&self) -> impl Iterator<Item = &Partner> {
        self.list.iter()
    }

    pub fn len(&self) -> usize {
        self.list.len()
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// The partner a cell names, which must be an id of an accepted row of `partners.csv`.
    fn known(&self, cell: Cell<'_>) -> Checked<&Partner> {
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

/// What reading one file gave: kept rows with their record numbers, failures, and the digest.
struct Read<T, E> {
    rows: Vec<(u64, T)>,
    failed: Vec<E>,
    digest: FileDigest,
}

/// Streams `dir/<S::FILE>` and checks its records in parallel chunks, keeping file order.
fn read_file<S, T, E, F>(dir: &Path, check: F) -> Result<Read<T, E>, StructuralError>
where
    S: Schema,
    T: Send,
    E: Send,
    F: Fn(&Row<'_, S>) -> Result<T, E> + Sync,
{
    let mut read = Read {
        rows: Vec::new(),
        failed: Vec::new(),
        digest: FileDigest::default(),
    };
    let Some(mut table) = Table::<S>::open(dir)? else {
        return Ok(read);
    };
    let mut chunk = Vec::with_capacity(CHUNK_ROWS);
    while table.read_chunk(CHUNK_ROWS, &mut chunk)? {
        let checked: Vec<(u64, Result<T, E>)> = chunk
            .par_iter()
            .map(|(number, record)| (*number, check(&table.row(*number, record))))
            .collect();
        for (number, result) in checked {
            match result {
                Ok(row) => read.rows.push((number, row)),
                Err(e) => read.failed.push(e),
            }
        }
    }
    read.digest = table.finish()?;
    Ok(read)
}

/// Reads an ordinary (not bill-line) file: failures are rejects at once.
fn read_simple<S, T, F>(dir: &Path, check: F) -> Result<Read<T, Reject>, StructuralError>
where
    S: Schema,
    T: Send,
    F: Fn(&Row<'_, S>) -> Checked<T> + Sync,
{
    read_file::<S, T, Reject, _>(dir, |row| check(row).map_err(|f| f.at(S::FILE, row.number)))
}

/// When an id repeats, the first accepted row keeps it and later rows are rejected.
fn reject_duplicates<T>(
    file: &'static str,
    column: &'static str,
    rows: Vec<(u64, T)>,
    id_of: impl Fn(&T) -> &Id,
    mut reject: impl FnMut(u64, &T, Reject),
) -> Vec<(u64, T)> {
    let mut first_row: HashMap<Id, u64> = HashMap::with_capacity(rows.len());
    let mut kept = Vec::with_capacity(rows.len());
    for (number, row) in rows {
        match first_row.entry(id_of(&row).clone()) {
            Entry::Occupied(first) => {
                let r = Reject {
                    file,
                    row: number,
                    column,
                    value: first.key().to_string(),
                    code: RejectCode::DuplicateId,
                    detail: format!("{column} already used on row {}", first.get()),
                };
                reject(number, &row, r);
            }
            Entry::Vacant(slot) => {
                slot.insert(number);
                kept.push((number, row));
            }
        }
    }
    kept
}

/// The column holding a file's unique id, and how to get it from a row.
type UniqueId<T> = (&'static str, fn(&T) -> &Id);

/// A file whose rows are all ordinary records with a unique id column.
fn finish_simple<S: Schema, T>(
    read: Read<T, Reject>,
    unique: Option<UniqueId<T>>,
    rejects: &mut Vec<Reject>,
    files: &mut Vec<FileReport>,
) -> Vec<(u64, T)> {
    let mut own = read.failed;
    let rows = match unique {
        Some((column, id_of)) => {
            reject_duplicates(S::FILE, column, read.rows, id_of, |_, _, r| own.push(r))
        }
        None => read.rows,
    };
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

/// Loads and validates the bundle in `dir` for `cycle`.
pub fn load_bundle(dir: &Path, cycle: Cycle) -> Result<Bundle, StructuralError> {
    let mut rejects = Vec::new();
    let mut files = Vec::new();

    // Partners first: every other file is checked against the accepted ones.
    let read = read_simple::<partners::PartnerColumn, _, _>(dir, partners::parse_partner)?;
    let partner_rows = finish_simple::<partners::PartnerColumn, _>(
        read,
        Some(("partner_id", |p: &Partner| &p.partner_id)),
        &mut rejects,
        &mut files,
    );
    let partners = Partners::new(without_rows(partner_rows));
    let p = &partners;

    // The bill lines (by far the largest file) are read while the small files are read beside them.
    let (lines, others) = rayon::join(
        || {
            read_file::<bill_lines::Column, _, _, _>(dir, |row| {
                bill_lines::parse(row, cycle, p)
                    .map_err(|f| Box::new(RejectedLine::from_row(row, f)))
            })
        },
        || -> Result<_, StructuralError> {
            Ok((
                read_simple::<orders::OrderColumn, _, _>(dir, |r| orders::parse_order(r, p))?,
                read_simple::<balances::VoucherColumn, _, _>(dir, |r| {
                    balances::parse_voucher(r, p)
                })?,
                read_simple::<partners::LinkColumn, _, _>(dir, |r| partners::parse_link(r, p))?,
                read_simple::<partners::TagColumn, _, _>(dir, |r| partners::parse_tag(r, p))?,
                read_simple::<orders::ProjectColumn, _, _>(dir, |r| orders::parse_project(r, p))?,
                read_simple::<balances::OpeningBalanceColumn, _, _>(dir, |r| {
                    balances::parse_opening_balance(r, p)
                })?,
                read_simple::<balances::WithdrawalColumn, _, _>(dir, |r| {
                    balances::parse_withdrawal(r, p)
                })?,
            ))
        },
    );
    let lines = lines?;
    let (orders, vouchers, links, tags, projects, opening, withdrawals) = others?;

    let mut rejected_lines: Vec<RejectedLine> = lines.failed.into_iter().map(|b| *b).collect();
    let line_rows = reject_duplicates(
        bill_lines::Column::FILE,
        "line_id",
        lines.rows,
        |l: &BillLine| &l.line_id,
        |_, line, r| rejected_lines.push(RejectedLine::from_line(line, r)),
    );
    rejected_lines.sort_by_key(RejectedLine::source_row);
    files.push(report::<bill_lines::Column>(
        lines.digest,
        line_rows.len(),
        rejected_lines.len(),
    ));
    rejects.extend(rejected_lines.iter().map(|l| l.reject.clone()));

    let orders = finish_simple::<orders::OrderColumn, _>(
        orders,
        Some(("order_id", |o: &Order| &o.order_id)),
        &mut rejects,
        &mut files,
    );
    let vouchers = finish_simple::<balances::VoucherColumn, _>(
        vouchers,
        Some(("voucher_id", |v: &Voucher| &v.voucher_id)),
        &mut rejects,
        &mut files,
    );
    let links = {
        let mut own = links.failed;
        let kept = partners::reject_overlapping_links(links.rows, &mut own);
        files.push(report::<partners::LinkColumn>(
            links.digest,
            kept.len(),
            own.len(),
        ));
        rejects.extend(own);
        kept
    };
    let tags = finish_simple::<partners::TagColumn, _>(tags, None, &mut rejects, &mut files);
    let projects = finish_simple::<orders::ProjectColumn, _>(
        projects,
        Some(("project_id", |p: &Project| &p.project_id)),
        &mut rejects,
        &mut files,
    );
    let opening = finish_simple::<balances::OpeningBalanceColumn, _>(
        opening,
        Some(("lot_id", |o: &OpeningBalance| &o.lot_id)),
        &mut rejects,
        &mut files,
    );
    let withdrawals = finish_simple::<balances::WithdrawalColumn, _>(
        withdrawals,
        Some(("application_id", |w: &Withdrawal| &w.application_id)),
        &mut rejects,
        &mut files,
    );

    rejects.sort_by(|a, b| (a.file, a.row, a.column).cmp(&(b.file, b.row, b.column)));
    files.sort_by_key(|f| f.file);
    Ok(Bundle {
        partners,
        bill_lines: without_rows(line_rows),
        rejected_lines,
        orders: without_rows(orders),
        vouchers: without_rows(vouchers),
        distributor_links: without_rows(links),
        capability_tags: without_rows(tags),
        projects: without_rows(projects),
        opening_balances: without_rows(opening),
        withdrawals: without_rows(withdrawals),
        rejects,
        files,
    })
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
    fn order_and_row_numbers_survive_chunking() {
        // More records than one chunk, with a bad one on each side of the chunk boundary.
        let n = CHUNK_ROWS + 10;
        let mut lines = String::from(HEADER);
        for i in 0..n {
            let payable = if i == CHUNK_ROWS - 1 || i == CHUNK_ROWS {
                "x"
            } else {
                "1.00"
            };
            writeln!(
                lines,
                "L{i},2026-10,SP1,C1,resale,cn,hws.service.type.ec2,on_demand,usage,\
                 2026-10-05T10:00:00Z,,1.00,{payable},CNY"
            )
            .unwrap();
        }
        let dir = bundle(&[("partners.csv", PARTNERS), ("bill_lines.csv", &lines)]);
        let b = load_bundle(dir.path(), cycle()).unwrap();
        assert_eq!(b.bill_lines.len(), n - 2);
        // Record i is row i + 2 (the header is row 1).
        assert!(
            b.bill_lines
                .windows(2)
                .all(|w| w[0].source_row < w[1].source_row)
        );
        assert_eq!(b.bill_lines[0].source_row, 2);
        assert_eq!(b.bill_lines.last().unwrap().source_row, n as u64 + 1);
        let rows: Vec<u64> = b.rejects.iter().map(|r| r.row).collect();
        assert_eq!(rows, vec![CHUNK_ROWS as u64 + 1, CHUNK_ROWS as u64 + 2]);
    }

    #[test]
    fn rows_are_records_not_lines() {
        // A quoted field spanning two lines: the next record is still row 3.
        let lines = format!(
            "{HEADER}L1,2026-10,SP1,C1,resale,cn,\"hws.service\ntype\",on_demand,usage,2026-10-05T10:00:00Z,,1,1,CNY\n\
             L2,2026-10,SP1,C1,resale,cn,hws.service.type.ec2,on_demand,usage,2026-10-05T10:00:00Z,,1,oops,CNY\n"
        );
        let dir = bundle(&[("partners.csv", PARTNERS), ("bill_lines.csv", &lines)]);
        let b = load_bundle(dir.path(), cycle()).unwrap();
        assert_eq!(b.rejects.len(), 1);
        assert_eq!(
            (b.rejects[0].row, b.rejects[0].column),
            (3, "payable_amount")
        );
        assert_eq!(b.rejects[0].value, "oops");
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
}
