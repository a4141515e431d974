//! `orders.csv` and `projects.csv`: the purchases behind yearly/monthly lines and refunds, and the
//! registered projects (项目报备) some of them belong to.

use super::cell::{Checked, Fault};
use super::table::{Row, Schema};
use super::{Partners, field_count_fault};
use crate::model::{Order, Project};
use crate::reject::RejectCode;
use strum::{IntoStaticStr, VariantNames};

#[derive(Debug, Clone, Copy, VariantNames, IntoStaticStr)]
#[strum(serialize_all = "snake_case")]
pub enum OrderColumn {
    OrderId,
    PartnerId,
    CustomerId,
    OrderType,
    CreatedAt,
    PaidAt,
    Amount,
    Currency,
    ProjectId,
    OriginalOrderId,
}

impl Schema for OrderColumn {
    const FILE: &'static str = "orders.csv";
    const FILE_REQUIRED: bool = false;
    const OPTIONAL: &'static [Self] = &[
        OrderColumn::PaidAt,
        OrderColumn::ProjectId,
        OrderColumn::OriginalOrderId,
    ];
    fn index(self) -> usize {
        self as usize
    }
}

pub(super) fn parse_order(row: &Row<'_, OrderColumn>, partners: &Partners) -> Checked<Order> {
    use OrderColumn as C;
    if !row.has_header_width() {
        return Err(field_count_fault(row));
    }
    let order_id = row.cell(C::OrderId).id()?;
    partners.known(row.cell(C::PartnerId))?;
    row.cell(C::CustomerId).id()?;
    let order_type = row
        .cell(C::OrderType)
        .code("new, renew, change, unsubscribe, downgrade")?;
    row.cell(C::CreatedAt).instant()?;
    row.cell(C::PaidAt).optional_instant()?;
    row.cell(C::Amount).decimal()?;
    row.cell(C::Currency).currency()?;
    row.cell(C::ProjectId).optional_id()?;
    Ok(Order {
        order_id,
        order_type,
        original_order_id: row.cell(C::OriginalOrderId).optional_id()?,
    })
}

#[derive(Debug, Clone, Copy, VariantNames, IntoStaticStr)]
#[strum(serialize_all = "snake_case")]
pub enum ProjectColumn {
    ProjectId,
    PartnerId,
    Market,
    RegisteredOn,
    BenefitAppliedOn,
    AnnualNewResourceAmount,
    Currency,
}

impl Schema for ProjectColumn {
    const FILE: &'static str = "projects.csv";
    const FILE_REQUIRED: bool = false;
    const OPTIONAL: &'static [Self] = &[ProjectColumn::BenefitAppliedOn];
    fn index(self) -> usize {
        self as usize
    }
}

pub(super) fn parse_project(row: &Row<'_, ProjectColumn>, partners: &Partners) -> Checked<Project> {
    use ProjectColumn as C;
    if !row.has_header_width() {
        return Err(field_count_fault(row));
    }
    let project_id = row.cell(C::ProjectId).id()?;
    let (partner, _) = partners.known(row.cell(C::PartnerId))?;
    let market = row.cell(C::Market).code("cn, intl")?;
    let registered_on = row.cell(C::RegisteredOn).date()?;
    let benefit_applied_on = row.cell(C::BenefitAppliedOn).optional_date()?;
    let amount_cell = row.cell(C::AnnualNewResourceAmount);
    let annual_new_resource_amount = amount_cell.decimal()?;
    if annual_new_resource_amount.is_sign_negative() && !annual_new_resource_amount.is_zero() {
        return Err(Fault::new(
            amount_cell,
            RejectCode::WrongSign,
            "must be 0 or more",
        ));
    }
    let currency = row.cell(C::Currency).currency()?;
    Ok(Project {
        project_id,
        partner,
        market,
        registered_on,
        benefit_applied_on,
        annual_new_resource_amount,
        currency,
    })
}
