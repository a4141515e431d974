//! `import huawei` from end to end: check the output, read every exporter, join `--master`,
//! write the bundle to a staging folder beside `--out`, validate it with the loader, rename it
//! into place, and write `import_report.json` beside it.

use super::huawei::{self, Imported, Line, LinkRow, OrderRow, VoucherRow};
use super::master::{self, Table};
use super::{HuaweiImport, ImportReport, Validation};
use crate::error::RunError;
use crate::load::is_valid_id;
use chrono::{DateTime, TimeZone, Utc};
use rust_decimal::Decimal;
use std::collections::HashSet;
use std::path::{Path, PathBuf};

const BILL_COLUMNS: [&str; 20] = [
    "line_id",
    "bill_cycle",
    "partner_id",
    "customer_id",
    "sales_mode",
    "market",
    "region",
    "service_type_code",
    "resource_type_code",
    "charge_mode",
    "bill_type",
    "trade_time",
    "order_id",
    "original_order_id",
    "official_amount",
    "discount_amount",
    "payable_amount",
    "coupon_amount",
    "settlement_amount",
    "currency",
];
const ORDER_COLUMNS: [&str; 10] = [
    "order_id",
    "partner_id",
    "customer_id",
    "order_type",
    "created_at",
    "paid_at",
    "amount",
    "currency",
    "project_id",
    "original_order_id",
];
const VOUCHER_COLUMNS: [&str; 11] = [
    "voucher_id",
    "partner_id",
    "voucher_type",
    "face_value",
    "opening_balance",
    "currency",
    "issued_at",
    "valid_from",
    "expires_at",
    "restricted_customer_id",
    "service_scope",
];
const LINK_COLUMNS: [&str; 4] = ["reseller_id", "distributor_id", "valid_from", "valid_to"];

/// Runs `import huawei`; returns the report and where it was written.
pub fn import_huawei(job: &HuaweiImport) -> Result<(ImportReport, PathBuf), RunError> {
    let parent = check_out(&job.out)?;
    let exporters = exporters(&job.from, job.exporter_id.as_deref())?;
    let mut imported = Imported::default();
    if let Some(m) = &job.master {
        if !m.is_dir() {
            return Err(RunError::Usage(format!(
                "--master {}: no such folder",
                m.display()
            )));
        }
        imported.settlements = master::settlements(m, &mut imported.report)?;
    }
    let g = bill_generation(job.cycle);
    for (exporter, dir, prefix) in &exporters {
        huawei::read_exporter(&mut imported, exporter, dir, prefix, job.cycle, g)?;
        imported.report.exporters.push(exporter.clone());
    }
    for line in std::mem::take(&mut imported.settlements).keys() {
        imported.report.for_person(
            "master/settlements.csv",
            line,
            "no bill line of that id was imported",
        );
    }
    let name = job
        .out
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("bundle");
    let stage = tempfile::Builder::new()
        .prefix(&format!(".{name}.import-"))
        .tempdir_in(&parent)
        .map_err(|e| {
            RunError::io(
                format!("{}: cannot create a staging folder", parent.display()),
                e,
            )
        })?;
    write_bundle(&mut imported, job.master.as_deref(), stage.path())?;
    validate(&mut imported.report, stage.path(), job)?;
    let staged = stage.keep();
    std::fs::rename(&staged, &job.out).map_err(|e| {
        let _ = std::fs::remove_dir_all(&staged);
        RunError::io(
            format!("{}: cannot move the bundle into place", job.out.display()),
            e,
        )
    })?;
    let mut report = imported.report;
    report.cycle = job.cycle.to_string();
    report.bundle = job.out.display().to_string();
    let path = parent.join("import_report.json");
    write_report(&report, &path)?;
    Ok((report, path))
}

/// `--out` must be new (or an empty folder) in an existing folder, and not a link.
fn check_out(out: &Path) -> Result<PathBuf, RunError> {
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !parent.is_dir() {
        return Err(RunError::Usage(format!(
            "--out {}: folder {} does not exist",
            out.display(),
            parent.display()
        )));
    }
    if let Ok(meta) = std::fs::symlink_metadata(out) {
        let empty = meta.is_dir()
            && std::fs::read_dir(out)
                .map(|mut d| d.next().is_none())
                .unwrap_or(false);
        if !empty {
            return Err(RunError::Usage(format!(
                "--out {}: already exists; import writes a new bundle: remove it or name another folder",
                out.display()
            )));
        }
    }
    Ok(parent)
}

/// The exporters: (partner id, folder, prefix of file names in messages).
fn exporters(
    from: &Path,
    exporter_id: Option<&str>,
) -> Result<Vec<(String, PathBuf, String)>, RunError> {
    if !from.is_dir() {
        return Err(RunError::Usage(format!(
            "--from {}: no such folder of responses",
            from.display()
        )));
    }
    if let Some(p) = exporter_id {
        if !is_valid_id(p) {
            return Err(RunError::Usage(format!(
                "--exporter-id {p:?}: not a partner id"
            )));
        }
        return Ok(vec![(p.to_string(), from.to_path_buf(), String::new())]);
    }
    let mut found = Vec::new();
    let entries = std::fs::read_dir(from).map_err(|e| RunError::io(from.display(), e))?;
    for e in entries.filter_map(Result::ok) {
        let name = e.file_name().to_string_lossy().into_owned();
        if e.path().is_dir() && is_valid_id(&name) {
            found.push((name.clone(), e.path(), format!("{name}/")));
        } else if e.path().is_dir() {
            return Err(RunError::Usage(format!(
                "--from {}: subfolder {name:?} is not named by a partner id: its responses would not be read; rename or remove it",
                from.display()
            )));
        } else if huawei::is_json_name(&name) {
            return Err(RunError::Usage(format!(
                "--from {}: {name} is not in an exporter's subfolder: give --exporter-id P for one exporter's files, or put each exporter's files in a folder named by its partner id",
                from.display()
            )));
        }
    }
    if found.is_empty() {
        return Err(RunError::Usage(format!(
            "--from {}: no exporter subfolders; give --exporter-id P when the responses are directly in it",
            from.display()
        )));
    }
    found.sort();
    Ok(found)
}

/// Bill generation: the first instant of the next cycle in Asia/Shanghai (the vendor's zone).
fn bill_generation(cycle: crate::calendar::Cycle) -> DateTime<Utc> {
    let midnight = cycle.next().first_day().and_time(chrono::NaiveTime::MIN);
    chrono_tz::Asia::Shanghai
        .from_local_datetime(&midnight)
        .earliest()
        .map_or_else(|| midnight.and_utc(), |t| t.with_timezone(&Utc))
}

/// An amount as the bundle holds it (never `-0`).
fn amount(d: Decimal) -> String {
    let mut d = d;
    if d.is_zero() {
        d.set_sign_positive(true);
    }
    d.to_string()
}

fn write(stage: &Path, file: &str, bytes: &[u8]) -> Result<(), RunError> {
    std::fs::write(stage.join(file), bytes).map_err(|e| RunError::io(format!("writing {file}"), e))
}

fn write_bundle(im: &mut Imported, master: Option<&Path>, stage: &Path) -> Result<(), RunError> {
    let tables = |file: &str| -> Result<Option<Table>, RunError> {
        master.map_or(Ok(None), |m| master::table(m, file))
    };
    let lines: Vec<Vec<(&str, String)>> = im.lines.iter().map(line_row).collect();
    put(im, stage, "bill_lines.csv", None, &BILL_COLUMNS, &lines)?;
    let orders: Vec<_> = im.orders.iter().map(order_row).collect();
    put(im, stage, "orders.csv", None, &ORDER_COLUMNS, &orders)?;
    for file in master::COPIED {
        match (master, tables(file)?) {
            (Some(m), Some(t)) => {
                im.report
                    .read(&format!("master/{file}"), t.records.len() as u64);
                std::fs::copy(m.join(file), stage.join(file))
                    .map_err(|e| RunError::io(format!("copying master/{file}"), e))?;
                im.report
                    .written
                    .insert(file.to_string(), t.records.len() as u64);
            }
            _ if file == "partners.csv" => {
                im.report.for_person("partners.csv", "*", "no API gives partner type, programme, region or join date: give --master with partners.csv; every line is rejected until then");
                put(
                    im,
                    stage,
                    file,
                    None,
                    &[
                        "partner_id",
                        "name",
                        "partner_type",
                        "business_region",
                        "market",
                        "programme",
                        "joined_on",
                        "exited_on",
                    ],
                    &[],
                )?;
            }
            _ => {}
        }
    }
    let vouchers = tables("vouchers.csv")?;
    let voucher_rows = join_vouchers(im, vouchers.as_ref());
    if vouchers.is_some() || !voucher_rows.is_empty() {
        put_vouchers(im, stage, vouchers.as_ref(), voucher_rows)?;
    }
    let links = tables("distributor_links.csv")?;
    let link_rows = join_links(im, links.as_ref());
    if links.is_some() || !link_rows.is_empty() {
        let rows: Vec<_> = link_rows.iter().map(link_row).collect();
        put(
            im,
            stage,
            "distributor_links.csv",
            links.as_ref(),
            &LINK_COLUMNS,
            &rows,
        )?;
    }
    Ok(())
}

fn put(
    im: &mut Imported,
    stage: &Path,
    file: &str,
    master: Option<&Table>,
    ours: &[&str],
    rows: &[Vec<(&str, String)>],
) -> Result<(), RunError> {
    if let Some(t) = master {
        im.report
            .read(&format!("master/{file}"), t.records.len() as u64);
    }
    let (bytes, n) = master::merged(master, ours, &mut |_, _| {}, rows)?;
    write(stage, file, &bytes)?;
    im.report.written.insert(file.to_string(), n);
    Ok(())
}

/// Vouchers with an opening from history replace the master row's opening; those without take
/// the master's row; a voucher in neither is for a person.
fn join_vouchers(im: &mut Imported, master: Option<&Table>) -> Vec<VoucherRow> {
    let in_master: HashSet<String> = master.map(|t| t.values("voucher_id")).unwrap_or_default();
    let mut appended = Vec::new();
    for v in std::mem::take(&mut im.vouchers) {
        match (
            v.opening_balance.is_some(),
            in_master.contains(&v.voucher_id),
        ) {
            (true, true) => {
                im.report
                    .default_applied("voucher opening rebuilt from its history, over --master's");
                appended.push(v);
            }
            (true, false) => {
                im.report
                    .default_applied("voucher opening rebuilt from its history");
                appended.push(v);
            }
            (false, true) => im
                .report
                .default_applied("voucher opening taken from --master's vouchers.csv"),
            (false, false) => {
                let (file, id) = (v.file.clone(), v.voucher_id.clone());
                im.report.for_person(&file, &id, "no history (ListPartnerCouponsRecord) and not in --master's vouchers.csv: its opening balance is unknown");
            }
        }
    }
    appended
}

fn put_vouchers(
    im: &mut Imported,
    stage: &Path,
    master: Option<&Table>,
    rows: Vec<VoucherRow>,
) -> Result<(), RunError> {
    let (id_col, opening_col) = master.map_or((None, None), |t| {
        (t.column("voucher_id"), t.column("opening_balance"))
    });
    let in_master: HashSet<String> = master.map(|t| t.values("voucher_id")).unwrap_or_default();
    let mut edit = |_: &Table, fields: &mut Vec<String>| {
        let Some(id) = id_col.and_then(|c| fields.get(c)).cloned() else {
            return;
        };
        if let (Some(v), Some(c)) = (rows.iter().find(|v| v.voucher_id == id), opening_col)
            && let (Some(o), Some(cell)) = (v.opening_balance, fields.get_mut(c))
        {
            *cell = amount(o);
        }
    };
    if let Some(t) = master {
        im.report
            .read("master/vouchers.csv", t.records.len() as u64);
    }
    let extra: Vec<_> = rows
        .iter()
        .filter(|v| !in_master.contains(&v.voucher_id))
        .map(voucher_row)
        .collect();
    let (bytes, n) = master::merged(master, &VOUCHER_COLUMNS, &mut edit, &extra)?;
    write(stage, "vouchers.csv", &bytes)?;
    im.report.written.insert("vouchers.csv".into(), n);
    Ok(())
}

/// A reseller the master links (with history) keeps the master's links; the API's link of a
/// reseller the master does not name is added.
fn join_links(im: &mut Imported, master: Option<&Table>) -> Vec<LinkRow> {
    let in_master: HashSet<String> = master.map(|t| t.values("reseller_id")).unwrap_or_default();
    let mut rows = Vec::new();
    for l in std::mem::take(&mut im.links) {
        if in_master.contains(&l.reseller_id) {
            im.report
                .default_applied("reseller's links taken from --master's distributor_links.csv");
        } else {
            rows.push(l);
        }
    }
    rows
}

fn line_row(l: &Line) -> Vec<(&'static str, String)> {
    vec![
        ("line_id", l.line_id.clone()),
        ("bill_cycle", l.bill_cycle.clone()),
        ("partner_id", l.partner_id.clone()),
        ("customer_id", l.customer_id.clone()),
        ("sales_mode", l.sales_mode.to_string()),
        ("market", "cn".to_string()),
        ("region", l.region.clone()),
        ("service_type_code", l.service_type_code.clone()),
        ("resource_type_code", l.resource_type_code.clone()),
        ("charge_mode", l.charge_mode.to_string()),
        ("bill_type", l.bill_type.to_string()),
        ("trade_time", l.trade_time.clone()),
        ("order_id", l.order_id.clone()),
        ("original_order_id", l.original_order_id.clone()),
        ("official_amount", amount(l.official_amount)),
        ("discount_amount", amount(l.discount_amount)),
        ("payable_amount", amount(l.payable_amount)),
        ("coupon_amount", amount(l.coupon_amount)),
        (
            "settlement_amount",
            l.settlement_amount.map(amount).unwrap_or_default(),
        ),
        ("currency", l.currency.clone()),
    ]
}

fn order_row(o: &OrderRow) -> Vec<(&'static str, String)> {
    vec![
        ("order_id", o.order_id.clone()),
        ("partner_id", o.partner_id.clone()),
        ("customer_id", o.customer_id.clone()),
        ("order_type", o.order_type.to_string()),
        ("created_at", o.created_at.clone()),
        ("paid_at", o.paid_at.clone()),
        ("amount", amount(o.amount)),
        ("currency", o.currency.clone()),
        ("original_order_id", o.original_order_id.clone()),
    ]
}

fn voucher_row(v: &VoucherRow) -> Vec<(&'static str, String)> {
    vec![
        ("voucher_id", v.voucher_id.clone()),
        ("partner_id", v.partner_id.clone()),
        ("voucher_type", v.voucher_type.to_string()),
        ("face_value", amount(v.face_value)),
        (
            "opening_balance",
            v.opening_balance.map(amount).unwrap_or_default(),
        ),
        ("currency", v.currency.clone()),
        ("issued_at", v.issued_at.clone()),
        ("valid_from", v.valid_from.clone()),
        ("expires_at", v.expires_at.clone()),
    ]
}

fn link_row(l: &LinkRow) -> Vec<(&'static str, String)> {
    vec![
        ("reseller_id", l.reseller_id.clone()),
        ("distributor_id", l.distributor_id.clone()),
        ("valid_from", l.valid_from.clone()),
    ]
}

/// The loader's verdict on the staged bundle: a structural fault stops the import (exit 3, no
/// bundle); rejected rows are listed for a person.
fn validate(report: &mut ImportReport, stage: &Path, job: &HuaweiImport) -> Result<(), RunError> {
    let bundle = crate::load::load_bundle(stage, job.cycle)?;
    report.validation = Validation {
        rejected_rows: bundle.rejects.len() as u64,
        first_rejects: bundle
            .rejects
            .iter()
            .take(20)
            .map(|r| r.to_string())
            .collect(),
    };
    Ok(())
}

fn write_report(report: &ImportReport, path: &Path) -> Result<(), RunError> {
    let mut bytes = serde_json::to_vec_pretty(report).map_err(|e| RunError::Io(e.to_string()))?;
    bytes.push(b'\n');
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp =
        tempfile::NamedTempFile::new_in(dir).map_err(|e| RunError::io(path.display(), e))?;
    std::io::Write::write_all(&mut tmp, &bytes).map_err(|e| RunError::io(path.display(), e))?;
    tmp.persist(path)
        .map_err(|e| RunError::io(path.display(), e.error))?;
    Ok(())
}
