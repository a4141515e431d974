//! The vendor's responses (BSS v2, `domain/huawei-fields.md`) and how each record maps to a row
//! of Appendix A. Only the fields used are declared; every other field is ignored.

use super::json::{self, Raw};
use super::{ImportReport, Refusal, Split, SplitPart, Stop};
use crate::calendar::Cycle;
use crate::load::is_valid_id;
use chrono::{DateTime, Utc};
use rust_decimal::{Decimal, RoundingStrategy};
use serde::Deserialize;
use std::collections::{BTreeMap, HashSet};
use std::path::Path;

// ---------------------------------------------------------------- response shapes

#[derive(Debug, Deserialize)]
struct BillPage {
    total_count: Raw,
    currency: Raw,
    fee_records: Option<Vec<FeeRecord>>,
}

#[derive(Debug, Deserialize)]
struct FeeRecord {
    id: Raw,
    bill_cycle: Raw,
    customer_id: Raw,
    association_type: Raw,
    service_type_code: Raw,
    resource_type_code: Raw,
    region_code: Raw,
    charging_mode: Raw,
    trade_time: Raw,
    trade_id: Raw,
    bill_detail_type: Raw,
    official_amount: Raw,
    official_discount_amount: Raw,
    payment_amount: Raw,
    coupon_amount: Raw,
    flexipurchase_coupon_amount: Raw,
    stored_value_card_amount: Raw,
    partner_id: Raw,
}

#[derive(Debug, Deserialize)]
struct RefundPage {
    total_count: Raw,
    refund_infos: Option<Vec<RefundInfo>>,
}

#[derive(Debug, Deserialize)]
struct RefundInfo {
    id: Raw,
    amount: Raw,
    base_order_id: Raw,
    measure_id: Raw,
}

#[derive(Debug, Deserialize)]
struct OrderPage {
    total_count: Raw,
    order_infos: Option<Vec<OrderInfo>>,
}

#[derive(Debug, Deserialize)]
struct OrderInfo {
    order_id: Raw,
    customer_id: Raw,
    order_type: Raw,
    create_time: Raw,
    payment_time: Raw,
    status: Raw,
    amount_after_discount: Raw,
    currency: Raw,
    measure_id: Raw,
}

#[derive(Debug, Deserialize)]
struct CouponPage {
    count: Raw,
    user_coupons: Option<Vec<Coupon>>,
}

#[derive(Debug, Deserialize)]
struct Coupon {
    coupon_id: Raw,
    coupon_type: Raw,
    customer_id: Raw,
    face_value: Raw,
    valid_time: Raw,
    expire_time: Raw,
    create_time: Raw,
    currency: Raw,
    status: Raw,
    measure_id: Raw,
    use_limits: Raw,
}

#[derive(Debug, Deserialize)]
struct CouponRecordPage {
    total_count: Raw,
    records: Option<Vec<CouponRecord>>,
}

#[derive(Debug, Deserialize)]
struct CouponRecord {
    id: Raw,
    coupon_id: Raw,
    operation_amount: Raw,
    operation_time: Raw,
    operation_type: Raw,
    result: Raw,
}

#[derive(Debug, Deserialize)]
struct IndirectPartnerPage {
    count: Raw,
    indirect_partners: Option<Vec<IndirectPartner>>,
}

#[derive(Debug, Deserialize)]
struct IndirectPartner {
    indirect_partner_id: Raw,
    associated_on: Raw,
}

// ---------------------------------------------------------------- rows of the bundle

/// A `bill_lines.csv` row.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    pub line_id: String,
    pub bill_cycle: String,
    pub partner_id: String,
    pub customer_id: String,
    pub sales_mode: &'static str,
    pub region: String,
    pub service_type_code: String,
    pub resource_type_code: String,
    pub charge_mode: &'static str,
    pub bill_type: &'static str,
    pub trade_time: String,
    pub order_id: String,
    pub original_order_id: String,
    pub official_amount: Decimal,
    pub discount_amount: Decimal,
    pub payable_amount: Decimal,
    pub coupon_amount: Decimal,
    pub settlement_amount: Option<Decimal>,
    pub currency: String,
}

/// An `orders.csv` row.
#[derive(Debug, Clone, PartialEq)]
pub struct OrderRow {
    pub order_id: String,
    pub partner_id: String,
    pub customer_id: String,
    pub order_type: &'static str,
    pub created_at: String,
    pub paid_at: String,
    pub amount: Decimal,
    pub currency: String,
    pub original_order_id: String,
}

/// A `vouchers.csv` row; `opening_balance` is `None` until history or `--master` gives it.
#[derive(Debug, Clone, PartialEq)]
pub struct VoucherRow {
    pub voucher_id: String,
    pub partner_id: String,
    pub voucher_type: &'static str,
    pub face_value: Decimal,
    pub opening_balance: Option<Decimal>,
    pub currency: String,
    pub issued_at: String,
    pub valid_from: String,
    pub expires_at: String,
    /// Where it was read, for the report.
    pub file: String,
}

/// A `distributor_links.csv` row from ListIndirectPartners.
#[derive(Debug, Clone, PartialEq)]
pub struct LinkRow {
    pub reseller_id: String,
    pub distributor_id: String,
    pub valid_from: String,
}

/// Everything read from the exporters' responses.
#[derive(Debug, Default)]
pub struct Imported {
    pub lines: Vec<Line>,
    pub orders: Vec<OrderRow>,
    pub vouchers: Vec<VoucherRow>,
    pub links: Vec<LinkRow>,
    pub report: ImportReport,
    /// `--master`'s settlements by line id, taken as their lines are read.
    pub settlements: BTreeMap<String, Decimal>,
    line_ids: HashSet<String>,
    /// Unsubscribe orders whose refund detail a line asked for.
    refunds_used: HashSet<String>,
    /// Unsubscribe orders whose refund detail split a line, and that line's id.
    refunds_split_by: BTreeMap<String, String>,
    order_ids: HashSet<String>,
    voucher_ids: HashSet<String>,
}

// ---------------------------------------------------------------- codes

/// A vendor code's fate: mapped, a code the field page marks as having no counterpart, or
/// unknown (the import stops).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mapped {
    To(&'static str),
    NoCounterpart(&'static str),
    Unknown,
}

fn bill_type(code: &str) -> Mapped {
    Mapped::To(match code {
        "1" => "new",
        "2" | "8" | "18" | "103" => "renew",
        "3" => "change",
        "5" | "14" | "23" => "usage",
        "4" | "20" | "24" => "refund",
        "9" | "16" | "25" | "13" => "adjustment",
        _ => return Mapped::Unknown,
    })
}

fn charge_mode(code: &str) -> Mapped {
    Mapped::To(match code {
        "1" => "yearly_monthly",
        "3" => "on_demand",
        "10" => "reserved",
        "11" => "savings_plan",
        _ => return Mapped::Unknown,
    })
}

fn sales_mode(code: &str) -> Mapped {
    Mapped::To(match code {
        "1" => "referral",
        "2" => "resale",
        _ => return Mapped::Unknown,
    })
}

fn order_type(code: &str) -> Mapped {
    Mapped::To(match code {
        "1" => "new",
        "2" => "renew",
        "3" | "10" | "11" => "change",
        "4" => "unsubscribe",
        "13" => return Mapped::NoCounterpart("order type 13 (trial) has no counterpart"),
        "14" => {
            return Mapped::NoCounterpart("order type 14 (trial → commercial) has no counterpart");
        }
        "15" => return Mapped::NoCounterpart("order type 15 (fee adjustment) has no counterpart"),
        _ => return Mapped::Unknown,
    })
}

fn voucher_type(code: &str) -> Mapped {
    match code {
        "1" => Mapped::To("cash_voucher"),
        "4" => Mapped::To("flexipurchase_coupon"),
        "2" => Mapped::NoCounterpart("a discount coupon (type 2) has no money balance to deduct"),
        "3" => Mapped::NoCounterpart("a product coupon (type 3) has no money balance to deduct"),
        _ => Mapped::Unknown,
    }
}

/// Reads a code and maps it: `Ok(Ok(word))`, or `Ok(Err(why))` for a code without
/// counterpart; an unknown code stops the import.
fn mapped(
    raw: &Raw,
    field: &str,
    map: fn(&str) -> Mapped,
) -> Result<Result<&'static str, &'static str>, Refusal> {
    let code = json::required(raw, field)?;
    match map(&code) {
        Mapped::To(w) => Ok(Ok(w)),
        Mapped::NoCounterpart(why) => Ok(Err(why)),
        Mapped::Unknown => Err(Refusal::value(
            field,
            &code,
            "a code domain/huawei-fields.md does not list (unpublished codes stop the import)",
        )),
    }
}

/// A code that must map to a word (no code of the field is without counterpart).
fn word(raw: &Raw, field: &str, map: fn(&str) -> Mapped) -> Result<&'static str, Refusal> {
    mapped(raw, field, map)?.map_err(|why| Refusal::value(field, "", why))
}

fn id(raw: &Raw, field: &str) -> Result<String, Refusal> {
    let text = json::required(raw, field)?;
    if is_valid_id(&text) {
        Ok(text)
    } else {
        Err(Refusal::value(
            field,
            &text,
            "not an id of the form [A-Za-z0-9][A-Za-z0-9._-]{0,63}",
        ))
    }
}

fn instant_text(t: DateTime<Utc>) -> String {
    crate::calendar::format_instant(t)
}

// ---------------------------------------------------------------- one exporter's folder

/// The responses of one exporter, by API, each with its file name for messages.
#[derive(Default)]
struct Files {
    bills: Vec<(String, BillPage)>,
    refunds: BTreeMap<String, (String, RefundPage)>,
    orders: Vec<(String, OrderPage)>,
    coupons: Vec<(String, CouponPage)>,
    coupon_records: Vec<(String, CouponRecordPage)>,
    indirect_partners: Vec<(String, IndirectPartnerPage)>,
    /// Read and counted only: (source, file, records).
    counted: Vec<(&'static str, String, u64)>,
}

fn parse<T: for<'de> Deserialize<'de>>(path: &Path, label: &str) -> Result<T, Stop> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Refusal::value("file", "", &format!("cannot read: {e}")).at(label, "*"))?;
    // A UTF-8 byte-order mark, as some tools save JSON, is not part of the response.
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    json::check_body(text).map_err(|r| r.at(label, "*"))?;
    serde_json::from_str(text).map_err(|e| {
        Refusal::value("response", "", &format!("not a response of this API: {e}")).at(label, "*")
    })
}

/// Records in the top-level arrays of a response we only count.
fn count_records(path: &Path, label: &str) -> Result<u64, Stop> {
    let fields: BTreeMap<String, Raw> = parse(path, label)?;
    let arrays = fields.values().flatten();
    Ok(arrays
        .filter_map(|raw| serde_json::from_str::<Vec<serde::de::IgnoredAny>>(raw.get()).ok())
        .map(|items| items.len() as u64)
        .sum())
}

/// A response file: `.json` in any case (`.JSON` is not left out unread).
pub fn is_json_name(name: &str) -> bool {
    name.len() > 5
        && name.is_char_boundary(name.len() - 5)
        && name[name.len() - 5..].eq_ignore_ascii_case(".json")
}

fn read_files(dir: &Path, prefix: &str) -> Result<Files, Stop> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map_err(|e| {
            Refusal::value("folder", "", &format!("cannot read: {e}"))
                .at(&dir.display().to_string(), "*")
        })?
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_file())
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| is_json_name(n))
        .collect();
    names.sort();
    if names.is_empty() {
        return Err(Refusal::value(
            "folder",
            &dir.display().to_string(),
            "no response (*.json) in the exporter's folder: nothing to import",
        )
        .at(&format!("{prefix}*.json"), "*"));
    }
    let mut files = Files::default();
    for name in names {
        let path = dir.join(&name);
        let label = format!("{prefix}{name}");
        if let Some(order) = name
            .strip_prefix("ShowRefundOrderDetails_")
            .and_then(|s| s.get(..s.len().checked_sub(5)?))
        {
            let page = parse(&path, &label)?;
            files.refunds.insert(order.to_string(), (label, page));
        } else if name.starts_with("ListSubCustomerBillDetail") {
            files.bills.push((label.clone(), parse(&path, &label)?));
        } else if name.starts_with("ListCustomerOrders") {
            files.orders.push((label.clone(), parse(&path, &label)?));
        } else if name.starts_with("ListSubCustomerCoupons") {
            files.coupons.push((label.clone(), parse(&path, &label)?));
        } else if name.starts_with("ListPartnerCouponsRecord") {
            files
                .coupon_records
                .push((label.clone(), parse(&path, &label)?));
        } else if name.starts_with("ListIndirectPartners") {
            files
                .indirect_partners
                .push((label.clone(), parse(&path, &label)?));
        } else if name.starts_with("ListSubCustomers") {
            let n = count_records(&path, &label)?;
            files.counted.push(("ListSubCustomers", label, n));
        } else if name.starts_with("ListIssuedPartnerCoupons") {
            let n = count_records(&path, &label)?;
            files.counted.push(("ListIssuedPartnerCoupons", label, n));
        } else {
            return Err(Refusal::value(
                "file name",
                &name,
                "not named after an API the importer reads (SPEC §11): rename or remove it",
            )
            .at(&label, "*"));
        }
    }
    Ok(files)
}

/// Reads one exporter's folder into `into`.
pub fn read_exporter(
    into: &mut Imported,
    exporter: &str,
    dir: &Path,
    prefix: &str,
    cycle: Cycle,
    bill_generation: DateTime<Utc>,
) -> Result<(), Stop> {
    let files = read_files(dir, prefix)?;
    for (source, file, n) in &files.counted {
        into.report.read(source, *n);
        if *source == "ListIssuedPartnerCoupons" && *n > 0 {
            into.report.for_person(
                file,
                "*",
                format!("{n} coupon(s) the partner issued to its customers: customer coupons, never vouchers (already in bill lines' coupon_amount)"),
            );
        }
    }
    let refunds = refund_details(into, &files)?;
    bill_lines(into, exporter, &files, &refunds, cycle)?;
    for (order, (file, _)) in &refunds {
        if !into.refunds_used.contains(order) {
            into.report.for_person(
                file,
                "*",
                format!(
                    "no refund line (bill type 4) of order {order} was read: the detail is not used"
                ),
            );
        }
    }
    orders(into, exporter, &files, &refunds)?;
    let history = coupon_history(into, &files, bill_generation)?;
    vouchers(into, exporter, &files, &history)?;
    links(into, exporter, &files)?;
    Ok(())
}

/// Records read must equal the stated total, per group of pages (SPEC §11).
fn check_complete(
    groups: BTreeMap<String, Vec<(String, Option<u64>, u64)>>,
    what: &str,
) -> Result<(), Stop> {
    for (key, pages) in groups {
        let Some((first_file, _, _)) = pages.first() else {
            continue;
        };
        let totals: HashSet<Option<u64>> = pages.iter().map(|(_, t, _)| *t).collect();
        let read: u64 = pages.iter().map(|(_, _, n)| n).sum();
        let files: Vec<&str> = pages.iter().map(|(f, _, _)| f.as_str()).collect();
        if totals.len() > 1 {
            return Err(Refusal::value(
                "total_count",
                &format!("{totals:?}"),
                &format!(
                    "pages of {what} {key} disagree on the total ({})",
                    files.join(", ")
                ),
            )
            .at(first_file, "*"));
        }
        if let Some(Some(total)) = totals.into_iter().next()
            && total != read
        {
            return Err(Refusal::value(
                "total_count",
                &total.to_string(),
                &format!(
                    "{read} record(s) read for {what} {key} in {}: a page is missing or doubled",
                    files.join(", ")
                ),
            )
            .at(first_file, "*"));
        }
    }
    Ok(())
}

/// Pages of an API that may be asked for one customer (or coupon) or for all: grouped by the one
/// customer a page holds, an all-customers query whose last page happens to hold one customer
/// would look incomplete. So the pages are complete when, taken as one query, they agree on a
/// total they add up to; else each group must add up to its own.
fn check_complete_per_query(
    groups: BTreeMap<String, Vec<(String, Option<u64>, u64)>>,
    what: &str,
) -> Result<(), Stop> {
    let pages: Vec<_> = groups.values().flatten().collect();
    let totals: HashSet<Option<u64>> = pages.iter().map(|(_, t, _)| *t).collect();
    let read: u64 = pages.iter().map(|(_, _, n)| n).sum();
    if totals.len() == 1 && totals.contains(&Some(read)) {
        return Ok(());
    }
    check_complete(groups, what)
}

fn total(raw: &Raw, file: &str) -> Result<Option<u64>, Stop> {
    match json::code(raw) {
        None => Ok(None),
        Some(t) => t
            .parse::<u64>()
            .map(Some)
            .map_err(|_| Refusal::value("total_count", &t, "not a count").at(file, "*")),
    }
}

// ---------------------------------------------------------------- refunds

/// A refund detail: its file and its entries (base order, amount), after the unit check.
type RefundDetail = (String, Vec<(Option<String>, Decimal)>);
/// The refund details, by the unsubscribe order they were asked for.
type RefundEntries = BTreeMap<String, RefundDetail>;

fn refund_details(into: &mut Imported, files: &Files) -> Result<RefundEntries, Stop> {
    let mut out = RefundEntries::new();
    for (order, (file, page)) in &files.refunds {
        let infos = page.refund_infos.as_deref().unwrap_or_default();
        into.report
            .read("ShowRefundOrderDetails", infos.len() as u64);
        let mut groups = BTreeMap::new();
        groups.insert(
            format!("order {order}"),
            vec![(
                file.clone(),
                total(&page.total_count, file)?,
                infos.len() as u64,
            )],
        );
        check_complete(groups, "refund detail of")?;
        let mut entries = Vec::new();
        let mut seen = HashSet::new();
        for (i, info) in infos.iter().enumerate() {
            let record = format!(
                "refund_infos[{i}] (id {:?})",
                json::code(&info.id).unwrap_or_default()
            );
            let at = |r: Refusal| r.at(file, &record);
            json::yuan(&info.measure_id, "measure_id").map_err(at)?;
            if let Some(rid) = json::code(&info.id)
                && !seen.insert(rid)
            {
                into.report
                    .for_person(file, &record, "record id seen twice: counted once");
                continue;
            }
            let amount = json::required_amount(&info.amount, "amount").map_err(at)?;
            entries.push((json::code(&info.base_order_id), amount));
        }
        out.insert(order.clone(), (file.clone(), entries));
    }
    Ok(out)
}

/// Splits a refund line into one line per negative entry (SPEC §11): ids `<line_id>-<k>`, k from
/// 1 in `base_order_id` order; the payable of each part is its entry's amount; official,
/// discount, coupon and settlement amounts shared in proportion, rounded to 8 places
/// (half away from zero), the remainder on the last part. The caller has checked that the
/// negative entries sum to the line's payable.
pub fn split_refund(line: &Line, mut negatives: Vec<(String, Decimal)>) -> Vec<Line> {
    negatives.sort_by(|a, b| a.0.cmp(&b.0));
    let payable = line.payable_amount;
    let n = negatives.len();
    let mut given = [Decimal::ZERO; 4];
    let whole = [
        line.official_amount,
        line.discount_amount,
        line.coupon_amount,
        line.settlement_amount.unwrap_or(Decimal::ZERO),
    ];
    negatives
        .into_iter()
        .enumerate()
        .map(|(k, (base, amount))| {
            let mut share = [Decimal::ZERO; 4];
            for (j, s) in share.iter_mut().enumerate() {
                *s = if k + 1 == n {
                    whole[j] - given[j]
                } else {
                    (whole[j] * amount / payable)
                        .round_dp_with_strategy(8, RoundingStrategy::MidpointAwayFromZero)
                };
                given[j] += *s;
            }
            Line {
                line_id: format!("{}-{}", line.line_id, k + 1),
                original_order_id: base,
                payable_amount: amount,
                official_amount: share[0],
                discount_amount: share[1],
                coupon_amount: share[2],
                settlement_amount: line.settlement_amount.map(|_| share[3]),
                ..line.clone()
            }
        })
        .collect()
}

/// Splits a type-4 refund by its detail, or says why a person must decide it.
fn split_by_detail(
    line: &Line,
    detail: Option<&RefundDetail>,
    report: &mut ImportReport,
) -> Result<Vec<Line>, String> {
    let Some((file, entries)) = detail else {
        return Err(format!(
            "refund with no ShowRefundOrderDetails_{}.json: its original order is unknown",
            line.order_id
        ));
    };
    for (base, amount) in entries.iter().filter(|(_, a)| *a > Decimal::ZERO) {
        report.for_person(
            file,
            &format!("base order {}", base.as_deref().unwrap_or("?")),
            format!("a positive entry of {amount} (consumed amount or unsubscribe fee) is a charge, not a refund of line {}", line.line_id),
        );
    }
    let mut negatives = Vec::new();
    for (base, amount) in entries.iter().filter(|(_, a)| *a < Decimal::ZERO) {
        match base {
            Some(b) if is_valid_id(b) => negatives.push((b.clone(), *amount)),
            _ => {
                return Err(format!(
                    "{file}: a negative entry without a usable base_order_id"
                ));
            }
        }
    }
    let sum: Decimal = negatives.iter().map(|(_, a)| *a).sum();
    if negatives.is_empty() || sum != line.payable_amount {
        return Err(format!(
            "{file}: the negative entries sum to {sum}, the line's payable is {}",
            line.payable_amount
        ));
    }
    Ok(split_refund(line, negatives))
}

// ---------------------------------------------------------------- bill lines

fn bill_lines(
    into: &mut Imported,
    exporter: &str,
    files: &Files,
    refunds: &RefundEntries,
    cycle: Cycle,
) -> Result<(), Stop> {
    let mut groups: BTreeMap<String, Vec<(String, Option<u64>, u64)>> = BTreeMap::new();
    for (file, page) in &files.bills {
        let records = page.fee_records.as_deref().unwrap_or_default();
        into.report
            .read("ListSubCustomerBillDetail", records.len() as u64);
        let keys: HashSet<(Option<String>, Option<String>)> = records
            .iter()
            .map(|r| (json::code(&r.customer_id), json::code(&r.bill_cycle)))
            .collect();
        if keys.len() > 1 {
            return Err(Refusal::value(
                "customer_id",
                "",
                "one page holds several customers or cycles: its completeness cannot be checked",
            )
            .at(file, "*"));
        }
        let stated = total(&page.total_count, file)?;
        match keys.into_iter().next() {
            Some((c, m)) => {
                let key = format!(
                    "customer {} cycle {}",
                    c.unwrap_or_default(),
                    m.unwrap_or_default()
                );
                groups
                    .entry(key)
                    .or_default()
                    .push((file.clone(), stated, records.len() as u64));
            }
            // A page with no record cannot say whose it is: with records stated, some are missing.
            None if stated.is_some_and(|t| t > 0) => {
                return Err(Refusal::value(
                    "total_count",
                    &stated.unwrap_or_default().to_string(),
                    "a page with no fee_records: its customer and cycle are unknown, so the records it stands for cannot be found (export the pages that hold them, or remove a page past the end)",
                )
                .at(file, "*"));
            }
            None => {}
        }
        let currency = json::required(&page.currency, "currency")
            .and_then(|c| match crate::model::Currency::parse(&c) {
                Some(_) => Ok(c),
                None => Err(Refusal::value("currency", &c, "not an ISO 4217 code")),
            })
            .map_err(|r| r.at(file, "*"))?;
        for (i, record) in records.iter().enumerate() {
            let name = format!(
                "fee_records[{i}] (id {:?})",
                json::code(&record.id).unwrap_or_default()
            );
            let at = |r: Refusal| r.at(file, &name);
            let (mut line, code, defaults) =
                bill_line(record, exporter, &currency, cycle).map_err(at)?;
            for what in defaults {
                into.report.default_applied(what);
            }
            if !into.line_ids.insert(line.line_id.clone()) {
                into.report.for_person(
                    file,
                    &name,
                    "line id seen twice: the later record is not written",
                );
                continue;
            }
            line.settlement_amount = into.settlements.remove(&line.line_id);
            if line.bill_type == "refund" {
                refund_line(into, line, &code, refunds, file, &name);
            } else {
                into.lines.push(line);
            }
        }
    }
    check_complete(groups, "bill details of")
}

fn refund_line(
    into: &mut Imported,
    line: Line,
    code: &str,
    refunds: &RefundEntries,
    file: &str,
    name: &str,
) {
    if code != "4" {
        into.report.for_person(
            file,
            name,
            format!("refund of bill type {code}: no documented link to its original order"),
        );
        return;
    }
    into.refunds_used.insert(line.order_id.clone());
    if let Some(earlier) = into.refunds_split_by.get(&line.order_id) {
        // Splitting it again would claw the same base orders back twice.
        let why = format!(
            "a second refund line of unsubscribe order {}: its refund detail already split line {earlier}",
            line.order_id
        );
        into.report.for_person(file, name, why);
        return;
    }
    match split_by_detail(&line, refunds.get(&line.order_id), &mut into.report) {
        Ok(parts) if parts.iter().any(|p| into.line_ids.contains(&p.line_id)) => {
            into.report.for_person(
                file,
                name,
                "a part's id <line_id>-<k> is the id of another line: the split is not written",
            );
        }
        Ok(parts) => {
            into.line_ids
                .extend(parts.iter().map(|p| p.line_id.clone()));
            into.refunds_split_by
                .insert(line.order_id.clone(), line.line_id.clone());
            into.report.refunds_split.push(Split {
                line_id: line.line_id.clone(),
                parts: parts
                    .iter()
                    .map(|p| SplitPart {
                        line_id: p.line_id.clone(),
                        original_order_id: p.original_order_id.clone(),
                        payable_amount: p.payable_amount.to_string(),
                    })
                    .collect(),
            });
            into.lines.extend(parts);
        }
        Err(why) => into.report.for_person(file, name, why),
    }
}

/// One fee record as a line (refunds not yet split), with its `bill_detail_type` code and the
/// defaults applied to it.
fn bill_line(
    r: &FeeRecord,
    exporter: &str,
    currency: &str,
    cycle: Cycle,
) -> Result<(Line, String, Vec<&'static str>), Refusal> {
    let line_id = id(&r.id, "id")?;
    let bill_cycle = json::required(&r.bill_cycle, "bill_cycle")?;
    if bill_cycle != cycle.to_string() {
        return Err(Refusal::value(
            "bill_cycle",
            &bill_cycle,
            &format!("not the cycle imported ({cycle})"),
        ));
    }
    let code = json::required(&r.bill_detail_type, "bill_detail_type")?;
    let bill_type = word(&r.bill_detail_type, "bill_detail_type", bill_type)?;
    let charge_mode = word(&r.charging_mode, "charging_mode", charge_mode)?;
    let payable = json::required_amount(&r.payment_amount, "payment_amount")?;
    if bill_type == "refund" && payable >= Decimal::ZERO {
        return Err(Refusal::value(
            "payment_amount",
            &payable.to_string(),
            "a refund that is not below zero",
        ));
    }
    let needs_order = charge_mode != "on_demand" || bill_type == "refund";
    let is_order = matches!(code.as_str(), "1" | "2" | "3" | "4" | "8");
    let order_id = match json::code(&r.trade_id) {
        Some(t) if needs_order || is_order => t,
        None if needs_order => {
            return Err(Refusal::value(
                "trade_id",
                "",
                "missing: the line needs an order",
            ));
        }
        _ => String::new(),
    };
    let mut defaults = Vec::new();
    if needs_order && !is_order {
        defaults.push("trade_id (a transaction id) used as the line's order");
    }
    let partner_id = match json::code(&r.partner_id) {
        Some(_) => id(&r.partner_id, "partner_id")?,
        None => {
            defaults.push("partner_id blank: the exporter's");
            exporter.to_string()
        }
    };
    let line = Line {
        line_id,
        bill_cycle,
        partner_id,
        customer_id: id(&r.customer_id, "customer_id")?,
        sales_mode: word(&r.association_type, "association_type", sales_mode)?,
        region: json::code(&r.region_code).unwrap_or_default(),
        service_type_code: json::required(&r.service_type_code, "service_type_code")?,
        resource_type_code: json::code(&r.resource_type_code).unwrap_or_default(),
        charge_mode,
        bill_type,
        trade_time: instant_text(json::required_instant(&r.trade_time, "trade_time")?),
        order_id,
        original_order_id: String::new(),
        official_amount: json::required_amount(&r.official_amount, "official_amount")?,
        discount_amount: json::amount_or_zero(
            &r.official_discount_amount,
            "official_discount_amount",
        )?,
        payable_amount: payable,
        coupon_amount: json::amount_or_zero(&r.coupon_amount, "coupon_amount")?
            + json::amount_or_zero(
                &r.flexipurchase_coupon_amount,
                "flexipurchase_coupon_amount",
            )?,
        settlement_amount: None,
        currency: currency.to_string(),
    };
    // A policy decision the contract leaves open: card-paid consumption stays in the base.
    if !json::amount_or_zero(&r.stored_value_card_amount, "stored_value_card_amount")?.is_zero() {
        defaults.push("stored_value_card_amount not a customer coupon: kept in the base");
    }
    Ok((line, code, defaults))
}

// ---------------------------------------------------------------- orders

fn orders(
    into: &mut Imported,
    exporter: &str,
    files: &Files,
    refunds: &RefundEntries,
) -> Result<(), Stop> {
    let partner_of: BTreeMap<&str, &str> = into
        .lines
        .iter()
        .filter(|l| !l.order_id.is_empty())
        .map(|l| (l.order_id.as_str(), l.partner_id.as_str()))
        .collect();
    let mut rows = Vec::new();
    let mut groups: BTreeMap<String, Vec<(String, Option<u64>, u64)>> = BTreeMap::new();
    for (file, page) in &files.orders {
        let infos = page.order_infos.as_deref().unwrap_or_default();
        into.report.read("ListCustomerOrders", infos.len() as u64);
        let customers: HashSet<Option<String>> =
            infos.iter().map(|o| json::code(&o.customer_id)).collect();
        let key = match (customers.len(), customers.iter().next()) {
            (1, Some(Some(c))) => format!("customer {c}"),
            _ => "all customers".to_string(),
        };
        groups.entry(key).or_default().push((
            file.clone(),
            total(&page.total_count, file)?,
            infos.len() as u64,
        ));
        for (i, info) in infos.iter().enumerate() {
            let name = format!(
                "order_infos[{i}] (order_id {:?})",
                json::code(&info.order_id).unwrap_or_default()
            );
            let at = |r: Refusal| r.at(file, &name);
            let order_type = match mapped(&info.order_type, "order_type", order_type).map_err(at)? {
                Ok(w) => w,
                Err(why) => {
                    into.report.for_person(file, &name, why);
                    continue;
                }
            };
            let row = order_row(info, order_type, exporter, &partner_of, refunds).map_err(at)?;
            if !into.order_ids.insert(row.order_id.clone()) {
                into.report.for_person(
                    file,
                    &name,
                    "order id seen twice: the later record is not written",
                );
                continue;
            }
            rows.push(row);
        }
    }
    into.orders.extend(rows);
    check_complete_per_query(groups, "orders of")
}

fn order_row(
    info: &OrderInfo,
    order_type: &'static str,
    exporter: &str,
    partner_of: &BTreeMap<&str, &str>,
    refunds: &RefundEntries,
) -> Result<OrderRow, Refusal> {
    json::yuan(&info.measure_id, "measure_id")?;
    let order_id = id(&info.order_id, "order_id")?;
    // An unsubscribe of exactly one base order names it; several are named on the split lines.
    let bases: HashSet<&str> = refunds
        .get(&order_id)
        .map(|(_, e)| {
            e.iter()
                .filter(|(_, a)| *a < Decimal::ZERO)
                .filter_map(|(b, _)| b.as_deref())
                .collect()
        })
        .unwrap_or_default();
    let original = match (order_type, bases.len()) {
        ("unsubscribe", 1) => bases.into_iter().next().unwrap_or_default().to_string(),
        _ => String::new(),
    };
    // huawei-fields.md lists 5 (completed) and 6 (awaiting payment); another status (a
    // cancelled order, say) is not known to be paid or not, so it stops the import.
    let unpaid = match json::code(&info.status).as_deref() {
        None | Some("5") => false,
        Some("6") => true,
        Some(other) => {
            return Err(Refusal::value(
                "status",
                other,
                "an order status domain/huawei-fields.md does not list (5 completed, 6 awaiting payment)",
            ));
        }
    };
    Ok(OrderRow {
        partner_id: partner_of
            .get(order_id.as_str())
            .map_or(exporter, |p| p)
            .to_string(),
        customer_id: id(&info.customer_id, "customer_id")?,
        order_type,
        created_at: instant_text(json::required_instant(&info.create_time, "create_time")?),
        paid_at: match json::instant(&info.payment_time, "payment_time")? {
            Some(t) if !unpaid => instant_text(t),
            _ => String::new(),
        },
        amount: json::required_amount(&info.amount_after_discount, "amount_after_discount")?,
        currency: json::required(&info.currency, "currency")?,
        original_order_id: original,
        order_id,
    })
}

// ---------------------------------------------------------------- partner vouchers

/// Per coupon: the opening rebuilt from its history, or why a person must decide it.
type History = BTreeMap<String, Result<Decimal, String>>;

/// Rebuilds each coupon's balance at bill generation G from ListPartnerCouponsRecord: issue (1)
/// and refund reversal (6) add, reclaims (2, 3, 4, 5, 7, 8) take away, operations at or after G
/// and failed ones (`result` not 0) are left out; a reseller transfer (9) has no documented
/// direction, so that coupon is left for a person.
fn coupon_history(into: &mut Imported, files: &Files, g: DateTime<Utc>) -> Result<History, Stop> {
    let mut history = History::new();
    let mut seen = HashSet::new();
    let mut issued = HashSet::new();
    let mut groups: BTreeMap<String, Vec<(String, Option<u64>, u64)>> = BTreeMap::new();
    for (file, page) in &files.coupon_records {
        let records = page.records.as_deref().unwrap_or_default();
        into.report
            .read("ListPartnerCouponsRecord", records.len() as u64);
        let coupons: HashSet<Option<String>> =
            records.iter().map(|r| json::code(&r.coupon_id)).collect();
        let key = match (coupons.len(), coupons.iter().next()) {
            (1, Some(Some(c))) => format!("coupon {c}"),
            _ => "all coupons".to_string(),
        };
        groups.entry(key).or_default().push((
            file.clone(),
            total(&page.total_count, file)?,
            records.len() as u64,
        ));
        for (i, r) in records.iter().enumerate() {
            let name = format!(
                "records[{i}] (id {:?})",
                json::code(&r.id).unwrap_or_default()
            );
            let at = |e: Refusal| e.at(file, &name);
            if let Some(rid) = json::code(&r.id)
                && !seen.insert(rid)
            {
                into.report
                    .for_person(file, &name, "record id seen twice: counted once");
                continue;
            }
            let coupon = json::required(&r.coupon_id, "coupon_id").map_err(at)?;
            let op = json::required(&r.operation_type, "operation_type").map_err(at)?;
            let amount =
                json::required_amount(&r.operation_amount, "operation_amount").map_err(at)?;
            let when = json::required_instant(&r.operation_time, "operation_time").map_err(at)?;
            let sign = match op.as_str() {
                "1" | "6" => Decimal::ONE,
                "2" | "3" | "4" | "5" | "7" | "8" => Decimal::NEGATIVE_ONE,
                "9" => Decimal::ZERO,
                _ => {
                    return Err(at(Refusal::value(
                        "operation_type",
                        &op,
                        "a code domain/huawei-fields.md does not list",
                    )));
                }
            };
            let entry = history.entry(coupon).or_insert(Ok(Decimal::ZERO));
            if json::code(&r.result).is_some_and(|res| res != "0") {
                into.report
                    .default_applied("failed voucher operations left out of the opening");
            } else if when >= g {
                into.report.default_applied(
                    "voucher operations after bill generation left out of the opening",
                );
            } else if sign.is_zero() {
                *entry = Err(format!(
                    "{file}: {name}: a reseller transfer (9) has no documented direction"
                ));
            } else if amount < Decimal::ZERO {
                // The operation type gives the direction; a signed amount would reverse it.
                *entry = Err(format!(
                    "{file}: {name}: operation_amount {amount} is negative: its direction is unclear"
                ));
            } else if let Ok(balance) = entry {
                if op == "1" {
                    issued.insert(coupon_of(&r.coupon_id));
                }
                *balance += sign * amount;
            }
        }
    }
    check_complete_per_query(groups, "voucher history of")?;
    for (coupon, opening) in history.iter_mut() {
        if opening.is_ok() && !issued.contains(coupon) {
            *opening = Err(
                "its history has no issue (1) before bill generation: the history is incomplete"
                    .to_string(),
            );
        }
    }
    Ok(history)
}

fn coupon_of(raw: &Raw) -> String {
    json::code(raw).unwrap_or_default()
}

fn vouchers(
    into: &mut Imported,
    exporter: &str,
    files: &Files,
    history: &History,
) -> Result<(), Stop> {
    let mut groups: BTreeMap<String, Vec<(String, Option<u64>, u64)>> = BTreeMap::new();
    let mut listed = HashSet::new();
    for (file, page) in &files.coupons {
        let coupons = page.user_coupons.as_deref().unwrap_or_default();
        into.report
            .read("ListSubCustomerCoupons", coupons.len() as u64);
        groups.entry("of the exporter".into()).or_default().push((
            file.clone(),
            total(&page.count, file)?,
            coupons.len() as u64,
        ));
        for (i, c) in coupons.iter().enumerate() {
            let name = format!(
                "user_coupons[{i}] (coupon_id {:?})",
                json::code(&c.coupon_id).unwrap_or_default()
            );
            let at = |r: Refusal| r.at(file, &name);
            let row = match voucher(c, exporter, file).map_err(at)? {
                Ok(row) => row,
                Err(why) => {
                    into.report.for_person(file, &name, why);
                    continue;
                }
            };
            listed.insert(row.voucher_id.clone());
            if !into.voucher_ids.insert(row.voucher_id.clone()) {
                into.report.for_person(
                    file,
                    &name,
                    "coupon id seen twice: the later record is not written",
                );
                continue;
            }
            let opening = history.get(&row.voucher_id);
            match opening {
                Some(Err(why)) => into.report.for_person(file, &name, why.clone()),
                Some(Ok(o)) if *o < Decimal::ZERO || *o > row.face_value => into.report.for_person(
                    file,
                    &name,
                    format!(
                        "its history gives an opening of {o}, outside 0..{}",
                        row.face_value
                    ),
                ),
                Some(Ok(o)) => into.vouchers.push(VoucherRow {
                    opening_balance: Some(*o),
                    ..row
                }),
                // `--master` may still give the opening (master.rs).
                None => into.vouchers.push(row),
            }
        }
    }
    for coupon in history.keys().filter(|c| !listed.contains(*c)) {
        into.report.for_person(
            "ListPartnerCouponsRecord",
            coupon,
            "history of a coupon no ListSubCustomerCoupons response lists",
        );
    }
    check_complete(groups, "coupons")
}

/// A partner's own coupon as a voucher row, or why a person must decide it.
fn voucher(c: &Coupon, exporter: &str, file: &str) -> Result<Result<VoucherRow, String>, Refusal> {
    json::yuan(&c.measure_id, "measure_id")?;
    let voucher_id = id(&c.coupon_id, "coupon_id")?;
    let voucher_type = match mapped(&c.coupon_type, "coupon_type", voucher_type)? {
        Ok(w) => w,
        Err(why) => return Ok(Err(why.to_string())),
    };
    let status = json::required(&c.status, "status")?;
    if !matches!(status.as_str(), "1" | "2" | "3" | "4" | "5") {
        return Err(Refusal::value(
            "status",
            &status,
            "a code domain/huawei-fields.md does not list",
        ));
    }
    if let Some(holder) = json::code(&c.customer_id)
        && holder != exporter
    {
        return Ok(Err(format!(
            "a coupon of customer {holder}: customer coupons never become vouchers"
        )));
    }
    let limits = json::text(&c.use_limits).unwrap_or_default();
    if !matches!(limits.trim(), "" | "[]") {
        return Ok(Err("use_limits the importer cannot read (limit_key is undocumented): scope and customer restriction need a person".into()));
    }
    Ok(Ok(VoucherRow {
        voucher_id,
        partner_id: exporter.to_string(),
        voucher_type,
        face_value: json::required_amount(&c.face_value, "face_value")?,
        opening_balance: None,
        currency: json::required(&c.currency, "currency")?,
        issued_at: instant_text(json::required_instant(&c.create_time, "create_time")?),
        valid_from: instant_text(json::required_instant(&c.valid_time, "valid_time")?),
        expires_at: instant_text(json::required_instant(&c.expire_time, "expire_time")?),
        file: file.to_string(),
    }))
}

// ---------------------------------------------------------------- resellers

fn links(into: &mut Imported, exporter: &str, files: &Files) -> Result<(), Stop> {
    let mut groups: BTreeMap<String, Vec<(String, Option<u64>, u64)>> = BTreeMap::new();
    let mut seen = HashSet::new();
    for (file, page) in &files.indirect_partners {
        let partners = page.indirect_partners.as_deref().unwrap_or_default();
        into.report
            .read("ListIndirectPartners", partners.len() as u64);
        groups.entry("of the exporter".into()).or_default().push((
            file.clone(),
            total(&page.count, file)?,
            partners.len() as u64,
        ));
        for (i, p) in partners.iter().enumerate() {
            let name = format!("indirect_partners[{i}]");
            let at = |r: Refusal| r.at(file, &name);
            let reseller = id(&p.indirect_partner_id, "indirect_partner_id").map_err(at)?;
            let since = json::required_instant(&p.associated_on, "associated_on").map_err(at)?;
            if !seen.insert(reseller.clone()) {
                into.report.for_person(
                    file,
                    &name,
                    "reseller seen twice: the later record is not written",
                );
                continue;
            }
            into.links.push(LinkRow {
                reseller_id: reseller,
                distributor_id: exporter.to_string(),
                valid_from: json::shanghai_date(since).to_string(),
            });
        }
    }
    check_complete(groups, "resellers")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    fn refund() -> Line {
        Line {
            line_id: "L9".into(),
            bill_cycle: "2026-10".into(),
            partner_id: "SP1".into(),
            customer_id: "C1".into(),
            sales_mode: "resale",
            region: String::new(),
            service_type_code: "hws.service.type.ebs".into(),
            resource_type_code: String::new(),
            charge_mode: "yearly_monthly",
            bill_type: "refund",
            trade_time: "2026-10-20T02:00:00Z".into(),
            order_id: "U1".into(),
            original_order_id: String::new(),
            official_amount: d("-400.00"),
            discount_amount: d("-100.00"),
            payable_amount: d("-300.00"),
            coupon_amount: d("-100.00"),
            settlement_amount: None,
            currency: "CNY".into(),
        }
    }

    #[test]
    fn a_refund_of_two_base_orders_is_split_in_proportion() {
        // Entries −100 (B2) and −200 (B1) of a −300 line: parts in base-order order, B1 first.
        // B1 is 200/300 = 2/3 of the line: coupon −100 × 2/3 = −66.666666666… → −66.66666667;
        // official −400 × 2/3 → −266.66666667; discount −100 × 2/3 → −66.66666667.
        // B2, the last part, takes the remainder: coupon −100 − (−66.66666667) = −33.33333333,
        // official −133.33333333, discount −33.33333333.
        let parts = split_refund(
            &refund(),
            vec![("B2".into(), d("-100")), ("B1".into(), d("-200"))],
        );
        let got: Vec<_> = parts
            .iter()
            .map(|p| {
                (
                    p.line_id.as_str(),
                    p.original_order_id.as_str(),
                    p.payable_amount.to_string(),
                    p.coupon_amount.to_string(),
                    p.official_amount.to_string(),
                    p.discount_amount.to_string(),
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                (
                    "L9-1",
                    "B1",
                    "-200".into(),
                    "-66.66666667".into(),
                    "-266.66666667".into(),
                    "-66.66666667".into()
                ),
                (
                    "L9-2",
                    "B2",
                    "-100".into(),
                    "-33.33333333".into(),
                    "-133.33333333".into(),
                    "-33.33333333".into()
                ),
            ]
        );
    }

    #[test]
    fn the_remainder_of_a_three_way_split_is_on_the_last_part() {
        // −100.00 in thirds −33.33, −33.33, −33.34; coupon −0.01, official −100.00, no discount.
        // Coupon: −0.01 × 33.33 / 100 = −0.003333 exactly, twice; the last part takes
        // −0.01 − 2 × (−0.003333) = −0.003334. Official: −33.33, −33.33, then −33.34.
        let mut line = refund();
        (line.payable_amount, line.official_amount) = (d("-100.00"), d("-100.00"));
        (line.coupon_amount, line.discount_amount) = (d("-0.01"), d("0"));
        let parts = split_refund(
            &line,
            vec![
                ("B3".into(), d("-33.34")),
                ("B1".into(), d("-33.33")),
                ("B2".into(), d("-33.33")),
            ],
        );
        let coupons: Vec<String> = parts.iter().map(|p| p.coupon_amount.to_string()).collect();
        assert_eq!(coupons, ["-0.003333", "-0.003333", "-0.003334"]);
        let officials: Vec<String> = parts
            .iter()
            .map(|p| p.official_amount.to_string())
            .collect();
        assert_eq!(officials, ["-33.33", "-33.33", "-33.34"]);
        let sum = |f: fn(&Line) -> Decimal| parts.iter().map(f).sum::<Decimal>();
        assert_eq!(sum(|p| p.coupon_amount), d("-0.01"));
        assert_eq!(sum(|p| p.payable_amount), d("-100.00"));
        assert_eq!(sum(|p| p.discount_amount), Decimal::ZERO);

        // A share of exactly half the 8th place rounds away from zero: −0.00000001 in halves is
        // −0.000000005 → −0.00000001 on the first part, and the last part takes the remainder, 0.
        line.coupon_amount = d("-0.00000001");
        let parts = split_refund(
            &line,
            vec![("B1".into(), d("-50.00")), ("B2".into(), d("-50.00"))],
        );
        assert_eq!(parts[0].coupon_amount, d("-0.00000001"));
        assert!(parts[1].coupon_amount.is_zero());
    }

    #[test]
    fn refund_detail_that_does_not_add_up_is_for_a_person() {
        // −100 + −150 = −250, but the line refunds −300: not splittable.
        let detail = (
            "ShowRefundOrderDetails_U1.json".to_string(),
            vec![
                (Some("B1".into()), d("-100")),
                (Some("B2".into()), d("-150")),
                (Some("B3".into()), d("5")),
            ],
        );
        let mut report = ImportReport::default();
        let why = split_by_detail(&refund(), Some(&detail), &mut report).unwrap_err();
        assert!(why.contains("sum to -250"), "{why}");
        // The positive entry (a fee of 5) is reported on its own.
        assert_eq!(report.for_person.len(), 1);
    }

    fn history(records: &str) -> History {
        let page: CouponRecordPage =
            serde_json::from_str(&format!(r#"{{"records": [{records}]}}"#)).unwrap();
        let files = Files {
            coupon_records: vec![("h.json".into(), page)],
            ..Files::default()
        };
        // Bill generation of 2026-10: 2026-11-01T00:00:00+08:00.
        let g = crate::calendar::parse_instant("2026-10-31T16:00:00Z").unwrap();
        coupon_history(&mut Imported::default(), &files, g).unwrap()
    }

    #[test]
    fn a_voucher_opening_is_rebuilt_from_its_history() {
        // Issued 500.00, reclaimed 100.00, a refund reversal of 20.00 back; a failed reclaim of
        // 50.00 and a reclaim of 30.00 at bill generation are left out:
        // 500.00 − 100.00 + 20.00 = 420.00.
        let h = history(
            r#"{"id": "H1", "coupon_id": "V1", "operation_type": "1", "operation_amount": 500.00, "operation_time": "2026-08-01T00:00:00Z", "result": "0"},
               {"id": "H2", "coupon_id": "V1", "operation_type": "2", "operation_amount": "100.00", "operation_time": "2026-09-15T00:00:00Z", "result": "0"},
               {"id": "H3", "coupon_id": "V1", "operation_type": "6", "operation_amount": 20, "operation_time": "2026-10-02T00:00:00Z"},
               {"id": "H4", "coupon_id": "V1", "operation_type": "2", "operation_amount": 50, "operation_time": "2026-10-03T00:00:00Z", "result": "CBC.1"},
               {"id": "H5", "coupon_id": "V1", "operation_type": "4", "operation_amount": 30, "operation_time": "2026-10-31T16:00:00Z", "result": "0"}"#,
        );
        assert_eq!(h["V1"], Ok(d("420.00")));
    }

    #[test]
    fn a_history_without_its_issue_or_with_a_signed_amount_is_for_a_person() {
        // V8: only a reclaim (its issue is outside the history exported): 0 − 100 would be an
        // opening of −100; V9: a reclaim written −100 would add 100 back (500 + 100 = 600).
        // V10: issued at 15:59:59Z on the month's last day, one second before bill generation
        // (00:00 on 1 November in Shanghai): counted, 300.
        let h = history(
            r#"{"id": "H1", "coupon_id": "V8", "operation_type": "2", "operation_amount": 100, "operation_time": "2026-09-01T00:00:00Z"},
               {"id": "H2", "coupon_id": "V9", "operation_type": "1", "operation_amount": 500, "operation_time": "2026-08-01T00:00:00Z"},
               {"id": "H3", "coupon_id": "V9", "operation_type": "2", "operation_amount": -100, "operation_time": "2026-09-01T00:00:00Z"},
               {"id": "H4", "coupon_id": "V10", "operation_type": "1", "operation_amount": 300, "operation_time": "2026-10-31T15:59:59Z"}"#,
        );
        assert!(h["V8"].as_ref().is_err_and(|why| why.contains("no issue")));
        assert!(h["V9"].as_ref().is_err_and(|why| why.contains("negative")));
        assert_eq!(h["V10"], Ok(d("300")));
    }

    #[test]
    fn a_reseller_transfer_leaves_the_voucher_for_a_person() {
        let h = history(
            r#"{"id": "H1", "coupon_id": "V7", "operation_type": "1", "operation_amount": 100, "operation_time": "2026-08-01T00:00:00Z"},
               {"id": "H2", "coupon_id": "V7", "operation_type": "9", "operation_amount": 40, "operation_time": "2026-09-01T00:00:00Z"}"#,
        );
        assert!(h["V7"].as_ref().is_err_and(|why| why.contains("transfer")));
    }

    #[test]
    fn codes_map_as_the_field_page_says() {
        assert_eq!(bill_type("103"), Mapped::To("renew"));
        assert_eq!(bill_type("13"), Mapped::To("adjustment"));
        for unpublished in ["12", "100", "101", "102", "7"] {
            assert_eq!(bill_type(unpublished), Mapped::Unknown);
        }
        // Every code of the page's bill-type table, as it lists them.
        for (codes, word) in [
            (&["1"][..], "new"),
            (&["2", "8", "18", "103"][..], "renew"),
            (&["3"][..], "change"),
            (&["5", "14", "23"][..], "usage"),
            (&["4", "20", "24"][..], "refund"),
            (&["9", "16", "25", "13"][..], "adjustment"),
        ] {
            for code in codes {
                assert_eq!(bill_type(code), Mapped::To(word), "bill type {code}");
            }
        }
        for (code, word) in [
            ("1", "new"),
            ("2", "renew"),
            ("3", "change"),
            ("4", "unsubscribe"),
            ("10", "change"),
            ("11", "change"),
        ] {
            assert_eq!(order_type(code), Mapped::To(word), "order type {code}");
        }
        for none in ["13", "14", "15"] {
            assert!(
                matches!(order_type(none), Mapped::NoCounterpart(_)),
                "{none}"
            );
        }
        assert_eq!(order_type("12"), Mapped::Unknown);
        for (code, word) in [
            ("1", "yearly_monthly"),
            ("3", "on_demand"),
            ("10", "reserved"),
            ("11", "savings_plan"),
        ] {
            assert_eq!(charge_mode(code), Mapped::To(word), "charging mode {code}");
        }
        assert_eq!(charge_mode("2"), Mapped::Unknown);
        assert_eq!(sales_mode("1"), Mapped::To("referral"));
        assert_eq!(sales_mode("2"), Mapped::To("resale"));
        assert_eq!(sales_mode("3"), Mapped::Unknown);
        assert_eq!(voucher_type("1"), Mapped::To("cash_voucher"));
        assert_eq!(voucher_type("4"), Mapped::To("flexipurchase_coupon"));
        assert!(matches!(voucher_type("2"), Mapped::NoCounterpart(_)));
        assert_eq!(voucher_type("5"), Mapped::Unknown);
    }
}
