//! `bill_lines.csv`: the cycle's charges, the big file. Parsed in parallel chunks.

use super::cell::{Checked, Fault};
use super::table::{Row, Schema};
use super::{Partners, field_count_fault};
use crate::calendar::Cycle;
use crate::model::{BillLine, BillType, ChargeMode, Code, Codes, Id};
use crate::money::parse_decimal;
use crate::reject::{Reject, RejectCode};
use rust_decimal::Decimal;
use strum::{IntoStaticStr, VariantNames};

#[derive(Debug, Clone, Copy, VariantNames, IntoStaticStr)]
#[strum(serialize_all = "snake_case")]
pub enum Column {
    LineId,
    BillCycle,
    PartnerId,
    CustomerId,
    SalesMode,
    Market,
    Region,
    ServiceTypeCode,
    ResourceTypeCode,
    ChargeMode,
    BillType,
    TradeTime,
    OrderId,
    OriginalOrderId,
    OfficialAmount,
    DiscountAmount,
    PayableAmount,
    CouponAmount,
    SettlementAmount,
    Currency,
}

impl Schema for Column {
    const FILE: &'static str = "bill_lines.csv";
    const FILE_REQUIRED: bool = true;
    const OPTIONAL: &'static [Self] = &[
        Column::Region,
        Column::ResourceTypeCode,
        Column::OrderId,
        Column::OriginalOrderId,
        Column::DiscountAmount,
        Column::CouponAmount,
        Column::SettlementAmount,
    ];
    fn index(self) -> usize {
        self as usize
    }
}

/// A bill line that was rejected, with what could be read of it: it still gets its
/// `line_outcomes.csv` row (fate `rejected`) and counts in the control totals.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RejectedLine {
    pub reject: Reject,
    pub line_id: String,
    pub partner_id: String,
    pub customer_id: String,
    pub bill_type: String,
    /// The payable amount, when it parsed.
    pub payable_amount: Option<Decimal>,
    /// The payable cell as written.
    pub payable_text: String,
    pub currency: String,
}

impl RejectedLine {
    pub fn source_row(&self) -> u64 {
        self.reject.row
    }

    /// The payable amount as written (a rejected line's cell may not be a number).
    pub fn raw_payable(&self) -> &str {
        &self.payable_text
    }

    pub(super) fn from_row(row: &Row<'_, Column>, fault: Fault) -> RejectedLine {
        RejectedLine {
            reject: fault.at(Column::FILE, row.number),
            line_id: row.cell(Column::LineId).text.to_string(),
            partner_id: row.cell(Column::PartnerId).text.to_string(),
            customer_id: row.cell(Column::CustomerId).text.to_string(),
            bill_type: row.cell(Column::BillType).text.to_string(),
            payable_amount: parse_decimal(row.cell(Column::PayableAmount).text, 8).ok(),
            payable_text: row.cell(Column::PayableAmount).text.to_string(),
            currency: row.cell(Column::Currency).text.to_string(),
        }
    }

    /// A line that parsed but was turned away afterwards (e.g. a duplicate id).
    pub(super) fn from_line(line: &BillLine, partners: &Partners, reject: Reject) -> RejectedLine {
        RejectedLine {
            reject,
            line_id: line.line_id.to_string(),
            partner_id: partners.at(line.partner).partner_id.to_string(),
            customer_id: line.customer_id.to_string(),
            bill_type: line.bill_type.as_str().to_string(),
            payable_amount: Some(line.payable_amount),
            payable_text: line.payable_amount.to_string(),
            currency: line.currency.to_string(),
        }
    }
}

/// Checks one record in the column order of SPEC Appendix A; the first fault rejects it. Codes are
/// interned in `codes`, the task's own table, renumbered into the bundle's by [`renumber`].
pub(super) fn parse(
    row: &Row<'_, Column>,
    cycle: Cycle,
    partners: &Partners,
    codes: &mut Codes,
) -> Checked<BillLine> {
    use Column as C;
    if !row.has_header_width() {
        return Err(field_count_fault(row));
    }
    let line_id = row.cell(C::LineId).id()?;
    let cycle_cell = row.cell(C::BillCycle);
    let bill_cycle = cycle_cell.text()?;
    if bill_cycle.parse::<Cycle>().ok() != Some(cycle) {
        return Err(Fault::new(
            cycle_cell,
            RejectCode::WrongCycle,
            format!("the line is not of the cycle being run, {cycle}"),
        ));
    }
    let (partner, _) = partners.known(row.cell(C::PartnerId))?;
    let customer_id = row.cell(C::CustomerId).id()?;
    let sales_mode = row.cell(C::SalesMode).code("resale, referral")?;
    let market = row.cell(C::Market).code("cn, intl")?;
    let region = codes.intern(row.cell(C::Region).text);
    let service_type_code = codes.intern(row.cell(C::ServiceTypeCode).text()?);
    let resource_type_code = codes.intern(row.cell(C::ResourceTypeCode).text);
    let charge_mode: ChargeMode = row
        .cell(C::ChargeMode)
        .code("yearly_monthly, on_demand, reserved, savings_plan (or BSS codes 1, 3, 10, 11)")?;
    let bill_type: BillType = row
        .cell(C::BillType)
        .code("new, renew, change, usage, refund, adjustment (or BSS bill_detail_type codes)")?;
    let trade_time = row.cell(C::TradeTime).instant()?;
    let order_cell = row.cell(C::OrderId);
    let order_id: Option<Id> = order_cell.optional_id()?;
    if order_id.is_none() && (charge_mode != ChargeMode::OnDemand || bill_type == BillType::Refund)
    {
        return Err(Fault::new(
            order_cell,
            RejectCode::MissingValue,
            "order_id is required unless the line is on-demand and not a refund",
        ));
    }
    let original_order_id = row
        .cell(C::OriginalOrderId)
        .optional_id()?
        .map(|id| Box::from(id.as_str()));
    row.cell(C::OfficialAmount).decimal()?;
    row.cell(C::DiscountAmount).decimal_or(Decimal::ZERO)?;
    let payable_cell = row.cell(C::PayableAmount);
    let payable_amount = payable_cell.decimal()?;
    match bill_type {
        BillType::Refund if !payable_amount.is_sign_negative() || payable_amount.is_zero() => {
            return Err(Fault::new(
                payable_cell,
                RejectCode::WrongSign,
                "a refund's payable_amount must be below zero",
            ));
        }
        BillType::Refund | BillType::Adjustment => {}
        _ if payable_amount.is_sign_negative() && !payable_amount.is_zero() => {
            return Err(Fault::new(
                payable_cell,
                RejectCode::WrongSign,
                format!(
                    "payable_amount is below zero on a {} line; only refunds and adjustments may be",
                    bill_type
                ),
            ));
        }
        _ => {}
    }
    let coupon_cell = row.cell(C::CouponAmount);
    let coupon_amount = coupon_cell.decimal_or(Decimal::ZERO)?;
    let same_sign = coupon_amount.is_zero()
        || coupon_amount.is_sign_negative() == payable_amount.is_sign_negative();
    if !same_sign || coupon_amount.abs() > payable_amount.abs() {
        return Err(Fault::new(
            coupon_cell,
            RejectCode::CouponExceedsPayable,
            format!(
                "coupon_amount must have the sign of payable_amount {payable_amount} and not exceed it"
            ),
        ));
    }
    let settlement_amount = row.cell(C::SettlementAmount).decimal_or(payable_amount)?;
    let currency = row.cell(C::Currency).currency()?;
    Ok(BillLine {
        // Within 32 bits: the loader stops at a file of more records.
        source_row: u32::try_from(row.number).unwrap_or(u32::MAX),
        line_id,
        partner,
        customer_id,
        sales_mode,
        market,
        region,
        service_type_code,
        resource_type_code,
        charge_mode,
        bill_type,
        trade_time,
        order_id,
        original_order_id,
        payable_amount,
        coupon_amount,
        settlement_amount,
        currency,
    })
}

/// Moves codes interned in a task's own table into the bundle's table, in the task's order of
/// first appearance, and rewrites the task's lines to the bundle's numbers.
pub(super) fn renumber(bundle_codes: &mut Codes, task_codes: &Codes, lines: &mut [BillLine]) {
    let map: Vec<Code> = (0..task_codes.len() as u32)
        .map(|i| bundle_codes.intern(task_codes.name(Code(i))))
        .collect();
    let to_bundle = |c: Code| map.get(c.0 as usize).copied().unwrap_or(c);
    for line in lines {
        line.region = to_bundle(line.region);
        line.service_type_code = to_bundle(line.service_type_code);
        line.resource_type_code = to_bundle(line.resource_type_code);
    }
}
