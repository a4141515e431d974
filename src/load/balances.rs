//! `vouchers.csv`, `opening_balances.csv`, `withdrawals.csv`: the balances a partner holds and the
//! applications that draw on them.

use super::cell::{Checked, Fault};
use super::table::{Row, Schema};
use super::{Partners, field_count_fault};
use crate::model::{OpeningBalance, PartnerType, Voucher, Withdrawal};
use crate::reject::RejectCode;
use compact_str::CompactString;
use rust_decimal::Decimal;
use strum::{IntoStaticStr, VariantNames};

/// Withdrawals and notified lots are whole cents (SPEC §3, "Balances and withdrawals").
const CENTS: u32 = 2;

#[derive(Debug, Clone, Copy, VariantNames, IntoStaticStr)]
#[strum(serialize_all = "snake_case")]
pub enum VoucherColumn {
    VoucherId,
    PartnerId,
    VoucherType,
    FaceValue,
    OpeningBalance,
    Currency,
    IssuedAt,
    ValidFrom,
    ExpiresAt,
    RestrictedCustomerId,
    ServiceScope,
}

impl Schema for VoucherColumn {
    const FILE: &'static str = "vouchers.csv";
    const FILE_REQUIRED: bool = false;
    const OPTIONAL: &'static [Self] = &[
        VoucherColumn::RestrictedCustomerId,
        VoucherColumn::ServiceScope,
    ];
    fn index(self) -> usize {
        self as usize
    }
}

fn positive(cell: super::table::Cell<'_>, value: Decimal) -> Checked<Decimal> {
    if value > Decimal::ZERO {
        Ok(value)
    } else {
        Err(Fault::new(
            cell,
            RejectCode::NotPositive,
            format!("{} must be > 0", cell.column),
        ))
    }
}

pub(super) fn parse_voucher(row: &Row<'_, VoucherColumn>, partners: &Partners) -> Checked<Voucher> {
    use VoucherColumn as C;
    if !row.has_header_width() {
        return Err(field_count_fault(row));
    }
    let voucher_id = row.cell(C::VoucherId).id()?;
    let owner_cell = row.cell(C::PartnerId);
    let (partner, owner) = partners.known(owner_cell)?;
    if !matches!(
        owner.partner_type,
        PartnerType::SolutionProvider | PartnerType::Reseller
    ) {
        return Err(Fault::new(
            owner_cell,
            RejectCode::VoucherOwnerInvalid,
            format!(
                "{} is a {}; vouchers are issued to solution providers and resellers only",
                owner.partner_id, owner.partner_type
            ),
        ));
    }
    let voucher_type = row.cell(C::VoucherType).text()?.to_string();
    let face_cell = row.cell(C::FaceValue);
    let face_value = positive(face_cell, face_cell.decimal()?)?;
    let balance_cell = row.cell(C::OpeningBalance);
    let opening_balance = balance_cell.decimal()?;
    if opening_balance.is_sign_negative() && !opening_balance.is_zero()
        || opening_balance > face_value
    {
        return Err(Fault::new(
            balance_cell,
            RejectCode::BalanceOutOfRange,
            format!("opening_balance must be between 0 and the face value {face_value}"),
        ));
    }
    let currency = row.cell(C::Currency).currency()?;
    let issued_at = row.cell(C::IssuedAt).instant()?;
    let valid_from = row.cell(C::ValidFrom).instant()?;
    let expires_cell = row.cell(C::ExpiresAt);
    let expires_at = expires_cell.instant()?;
    if expires_at <= valid_from {
        return Err(Fault::new(
            expires_cell,
            RejectCode::WindowReversed,
            "expires_at must be after valid_from",
        ));
    }
    let restricted_customer_id = row.cell(C::RestrictedCustomerId).optional_id()?;
    let scope_cell = row.cell(C::ServiceScope);
    let service_scope: Vec<CompactString> = if scope_cell.is_blank() {
        Vec::new()
    } else {
        scope_cell
            .text
            .split(';')
            .map(CompactString::from)
            .collect()
    };
    if service_scope.iter().any(|s| s.is_empty()) {
        return Err(Fault::new(
            scope_cell,
            RejectCode::BadServiceScope,
            "service_scope is service_type_codes separated by ';', none blank",
        ));
    }
    Ok(Voucher {
        source_row: row.number,
        voucher_id,
        partner,
        voucher_type,
        face_value,
        opening_balance,
        currency,
        issued_at,
        valid_from,
        expires_at,
        restricted_customer_id,
        service_scope,
    })
}

#[derive(Debug, Clone, Copy, VariantNames, IntoStaticStr)]
#[strum(serialize_all = "snake_case")]
pub enum OpeningBalanceColumn {
    PartnerId,
    LotId,
    NotifiedOn,
    Currency,
    Balance,
}

impl Schema for OpeningBalanceColumn {
    const FILE: &'static str = "opening_balances.csv";
    const FILE_REQUIRED: bool = false;
    const OPTIONAL: &'static [Self] = &[];
    fn index(self) -> usize {
        self as usize
    }
}

pub(super) fn parse_opening_balance(
    row: &Row<'_, OpeningBalanceColumn>,
    partners: &Partners,
) -> Checked<OpeningBalance> {
    use OpeningBalanceColumn as C;
    if !row.has_header_width() {
        return Err(field_count_fault(row));
    }
    let (partner, _) = partners.known(row.cell(C::PartnerId))?;
    let lot_id = row.cell(C::LotId).id()?;
    let notified_on = row.cell(C::NotifiedOn).date()?;
    let currency = row.cell(C::Currency).currency()?;
    let balance_cell = row.cell(C::Balance);
    let balance = positive(balance_cell, balance_cell.decimal_places(CENTS)?)?;
    Ok(OpeningBalance {
        source_row: row.number,
        partner,
        lot_id,
        notified_on,
        currency,
        balance,
    })
}

#[derive(Debug, Clone, Copy, VariantNames, IntoStaticStr)]
#[strum(serialize_all = "snake_case")]
pub enum WithdrawalColumn {
    ApplicationId,
    PartnerId,
    Amount,
    Currency,
    SubmittedAt,
    Status,
    DecidedAt,
}

impl Schema for WithdrawalColumn {
    const FILE: &'static str = "withdrawals.csv";
    const FILE_REQUIRED: bool = false;
    const OPTIONAL: &'static [Self] = &[WithdrawalColumn::DecidedAt];
    fn index(self) -> usize {
        self as usize
    }
}

pub(super) fn parse_withdrawal(
    row: &Row<'_, WithdrawalColumn>,
    partners: &Partners,
) -> Checked<Withdrawal> {
    use WithdrawalColumn as C;
    if !row.has_header_width() {
        return Err(field_count_fault(row));
    }
    let application_id = row.cell(C::ApplicationId).id()?;
    let (partner, _) = partners.known(row.cell(C::PartnerId))?;
    let amount_cell = row.cell(C::Amount);
    let amount = positive(amount_cell, amount_cell.decimal_places(CENTS)?)?;
    Ok(Withdrawal {
        source_row: row.number,
        application_id,
        partner,
        amount,
        currency: row.cell(C::Currency).currency()?,
        submitted_at: row.cell(C::SubmittedAt).instant()?,
        status: row
            .cell(C::Status)
            .code("submitted, approved, rejected, revoked, paid")?,
        decided_at: row.cell(C::DecidedAt).optional_instant()?,
    })
}
