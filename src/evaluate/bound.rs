//! Rule conditions bound to one bundle: every test on a code, an enum or a partner attribute
//! becomes a table lookup, so matching ten million lines costs no string comparison. Beside
//! evaluation (and voucher matching), which are the stages that hold a bundle; the rule set
//! itself (`rules/`) knows nothing of bundles.

use crate::load::Partners;
use crate::model::{BillLine, CapabilityTag, Codes, OrderType, PartnerIdx};
use crate::rules::condition::{
    BILL_TYPES, CHARGE_MODES, Field, MARKETS, ORDER_TYPES, SALES_MODES, TextTest,
};
use crate::rules::{AmountField, Condition};
use chrono::NaiveDate;
use rust_decimal::Decimal;

/// Binds a condition to a bundle's codes and partners.
pub fn bind(condition: &Condition, codes: &Codes, partners: &Partners) -> BoundCondition {
    let code_table = |field: Field| -> Option<Vec<bool>> {
        let tests: Vec<&TextTest> = condition
            .tests
            .iter()
            .filter(|(f, _)| *f == field)
            .map(|(_, t)| t)
            .collect();
        (!tests.is_empty()).then(|| {
            (0..codes.len() as u32)
                .map(|i| {
                    tests
                        .iter()
                        .all(|t| t.holds(codes.name(crate::model::Code(i))))
                })
                .collect()
        })
    };
    let word_table = |field: Field, words: &[&str]| -> Option<Vec<bool>> {
        let tests: Vec<&TextTest> = condition
            .tests
            .iter()
            .filter(|(f, _)| *f == field)
            .map(|(_, t)| t)
            .collect();
        (!tests.is_empty()).then(|| {
            words
                .iter()
                .map(|w| tests.iter().all(|t| t.holds(w)))
                .collect()
        })
    };
    let partner_fields = [
        Field::PartnerId,
        Field::PartnerType,
        Field::Programme,
        Field::PartnerMarket,
    ];
    let partner = condition
        .tests
        .iter()
        .any(|(f, _)| partner_fields.contains(f))
        .then(|| {
            partners
                .iter()
                .map(|(_, p)| {
                    condition.tests.iter().all(|(f, t)| match f {
                        Field::PartnerId => t.holds(&p.partner_id),
                        Field::PartnerType => t.holds(p.partner_type.as_str()),
                        Field::Programme => t.holds(p.programme.as_str()),
                        Field::PartnerMarket => t.holds(p.market.as_str()),
                        _ => true,
                    })
                })
                .collect()
        });
    let line_test = |field: Field| {
        condition
            .tests
            .iter()
            .filter(|(f, _)| *f == field)
            .map(|(_, t)| t.clone())
            .collect::<Vec<_>>()
    };
    BoundCondition {
        region: code_table(Field::Region),
        service: code_table(Field::ServiceTypeCode),
        resource: code_table(Field::ResourceTypeCode),
        sales_mode: word_table(Field::SalesMode, SALES_MODES),
        market: word_table(Field::Market, MARKETS),
        charge_mode: word_table(Field::ChargeMode, CHARGE_MODES),
        bill_type: word_table(Field::BillType, BILL_TYPES),
        order_type: word_table(Field::OrderType, ORDER_TYPES),
        currency: line_test(Field::Currency),
        customer: line_test(Field::CustomerId),
        partner,
        partner_in_programme: condition.partner_in_programme,
        partner_tags: condition.partner_tags.clone(),
        ranges: condition.ranges.clone(),
    }
}

/// What a condition may ask of a line beyond the line itself.
pub struct LineFacts<'a> {
    pub line: &'a BillLine,
    /// The partner whose conditions are tested (the line's own).
    pub partner: PartnerIdx,
    /// The trade date in the rule set's time zone.
    pub trade_date: NaiveDate,
    pub in_programme: bool,
    pub order_type: Option<OrderType>,
    /// The partner's capability tags (any period).
    pub tags: &'a [CapabilityTag],
}

/// A condition bound to one bundle.
#[derive(Debug, Clone)]
pub struct BoundCondition {
    region: Option<Vec<bool>>,
    service: Option<Vec<bool>>,
    resource: Option<Vec<bool>>,
    sales_mode: Option<Vec<bool>>,
    market: Option<Vec<bool>>,
    charge_mode: Option<Vec<bool>>,
    bill_type: Option<Vec<bool>>,
    order_type: Option<Vec<bool>>,
    currency: Vec<TextTest>,
    customer: Vec<TextTest>,
    partner: Option<Vec<bool>>,
    partner_in_programme: Option<bool>,
    partner_tags: Option<Vec<String>>,
    ranges: Vec<(AmountField, Option<Decimal>, Option<Decimal>)>,
}

fn table_allows(table: &Option<Vec<bool>>, index: usize) -> bool {
    table
        .as_ref()
        .is_none_or(|t| t.get(index).copied().unwrap_or(false))
}

impl BoundCondition {
    /// For partner-level rows (tiers): only the partner tests apply.
    pub fn holds_for_partner(&self, partner: PartnerIdx) -> bool {
        table_allows(&self.partner, partner.0 as usize)
    }

    pub fn holds(&self, facts: &LineFacts<'_>) -> bool {
        let line = facts.line;
        table_allows(&self.region, line.region.0 as usize)
            && table_allows(&self.service, line.service_type_code.0 as usize)
            && table_allows(&self.resource, line.resource_type_code.0 as usize)
            && table_allows(&self.sales_mode, line.sales_mode as usize)
            && table_allows(&self.market, line.market as usize)
            && table_allows(&self.charge_mode, line.charge_mode as usize)
            && table_allows(&self.bill_type, line.bill_type as usize)
            && table_allows(&self.partner, facts.partner.0 as usize)
            && self.order_type.as_ref().is_none_or(|t| {
                facts
                    .order_type
                    .is_some_and(|o| t.get(o as usize).copied().unwrap_or(false))
            })
            && self
                .currency
                .iter()
                .all(|t| t.holds(line.currency.as_str()))
            && self.customer.iter().all(|t| t.holds(&line.customer_id))
            && self
                .partner_in_programme
                .is_none_or(|want| want == facts.in_programme)
            && self.partner_tags.as_ref().is_none_or(|wanted| {
                facts.tags.iter().any(|t| {
                    wanted.contains(&t.tag)
                        && t.valid_from <= facts.trade_date
                        && t.valid_to.is_none_or(|to| facts.trade_date <= to)
                })
            })
            && self.ranges.iter().all(|(field, min, max)| {
                let value = field.of(line);
                min.is_none_or(|m| value >= m) && max.is_none_or(|m| value <= m)
            })
    }
}
