//! Conditions on a bill line, its partner and its order. A [`Condition`] is compiled from the
//! rule files; bound to a bundle ([`BoundCondition`]) every test on a code, an enum or a partner
//! attribute becomes a table lookup, so matching ten million lines costs no string comparison.

use super::AmountField;
use super::format::{Conditions, TextCondition};
use crate::load::Partners;
use crate::model::{BillLine, CapabilityTag, Codes, OrderType, PartnerIdx};
use chrono::NaiveDate;
use rust_decimal::Decimal;

/// The words of each closed vocabulary, in the enums' declaration order (so `value as usize`
/// indexes them; a test below keeps the two in step).
const SALES_MODES: &[&str] = &["resale", "referral"];
const MARKETS: &[&str] = &["cn", "intl"];
const CHARGE_MODES: &[&str] = &["yearly_monthly", "on_demand", "reserved", "savings_plan"];
const BILL_TYPES: &[&str] = &["new", "renew", "change", "usage", "refund", "adjustment"];
const PARTNER_TYPES: &[&str] = &["solution_provider", "distributor", "reseller"];
const PROGRAMMES: &[&str] = &["solution_provider", "distribution"];
const ORDER_TYPES: &[&str] = &["new", "renew", "change", "unsubscribe", "downgrade"];

/// A text test: in a set (if given), not in another, starting with a prefix (if given), and not
/// starting with any excluded prefix.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TextTest {
    pub any_of: Option<Vec<String>>,
    pub not_in: Vec<String>,
    pub prefix: Vec<String>,
    pub not_prefix: Vec<String>,
}

impl TextTest {
    pub fn holds(&self, text: &str) -> bool {
        self.any_of
            .as_ref()
            .is_none_or(|set| set.iter().any(|s| s == text))
            && !self.not_in.iter().any(|s| s == text)
            && (self.prefix.is_empty() || self.prefix.iter().any(|p| text.starts_with(p.as_str())))
            && !self.not_prefix.iter().any(|p| text.starts_with(p.as_str()))
    }

    /// The words the test names (to check them against a vocabulary).
    pub fn words(&self) -> impl Iterator<Item = &String> {
        self.any_of.iter().flatten().chain(&self.not_in)
    }

    pub(super) fn from_format(c: &TextCondition) -> TextTest {
        match c {
            TextCondition::AnyOf(set) => TextTest {
                any_of: Some(set.clone()),
                ..Default::default()
            },
            TextCondition::Table(t) => TextTest {
                any_of: t.any_of.clone(),
                not_in: t.not_in.clone().unwrap_or_default(),
                prefix: t.prefix.clone().unwrap_or_default(),
                not_prefix: t.not_prefix.clone().unwrap_or_default(),
            },
        }
    }
}

/// The fields a text test can look at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    SalesMode,
    Market,
    Region,
    ServiceTypeCode,
    ResourceTypeCode,
    ChargeMode,
    BillType,
    Currency,
    CustomerId,
    PartnerId,
    PartnerType,
    Programme,
    PartnerMarket,
    OrderType,
}

impl Field {
    pub fn name(self) -> &'static str {
        match self {
            Field::SalesMode => "sales_mode",
            Field::Market => "market",
            Field::Region => "region",
            Field::ServiceTypeCode => "service_type_code",
            Field::ResourceTypeCode => "resource_type_code",
            Field::ChargeMode => "charge_mode",
            Field::BillType => "bill_type",
            Field::Currency => "currency",
            Field::CustomerId => "customer_id",
            Field::PartnerId => "partner_id",
            Field::PartnerType => "partner_type",
            Field::Programme => "programme",
            Field::PartnerMarket => "partner_market",
            Field::OrderType => "order_type",
        }
    }

    /// The words a field can hold, where the field is a closed vocabulary.
    pub fn vocabulary(self) -> Option<&'static [&'static str]> {
        match self {
            Field::SalesMode => Some(SALES_MODES),
            Field::Market | Field::PartnerMarket => Some(MARKETS),
            Field::ChargeMode => Some(CHARGE_MODES),
            Field::BillType => Some(BILL_TYPES),
            Field::PartnerType => Some(PARTNER_TYPES),
            Field::Programme => Some(PROGRAMMES),
            Field::OrderType => Some(ORDER_TYPES),
            _ => None,
        }
    }
}

/// A compiled condition: every part must hold.
#[derive(Debug, Clone, Default)]
pub struct Condition {
    pub tests: Vec<(Field, TextTest)>,
    pub partner_in_programme: Option<bool>,
    pub partner_tags: Option<Vec<String>>,
    /// Inclusive bounds on amounts of the line.
    pub ranges: Vec<(AmountField, Option<Decimal>, Option<Decimal>)>,
}

impl Condition {
    /// The text tests of a `when` table (amount bounds are parsed by the checker).
    pub(super) fn text_tests(c: &Conditions) -> Vec<(Field, TextTest)> {
        let fields: [(Field, &Option<TextCondition>); 14] = [
            (Field::SalesMode, &c.sales_mode),
            (Field::Market, &c.market),
            (Field::Region, &c.region),
            (Field::ServiceTypeCode, &c.service_type_code),
            (Field::ResourceTypeCode, &c.resource_type_code),
            (Field::ChargeMode, &c.charge_mode),
            (Field::BillType, &c.bill_type),
            (Field::Currency, &c.currency),
            (Field::CustomerId, &c.customer_id),
            (Field::PartnerId, &c.partner_id),
            (Field::PartnerType, &c.partner_type),
            (Field::Programme, &c.programme),
            (Field::PartnerMarket, &c.partner_market),
            (Field::OrderType, &c.order_type),
        ];
        fields
            .into_iter()
            .filter_map(|(f, c)| c.as_ref().map(|c| (f, TextTest::from_format(c))))
            .collect()
    }

    pub fn reads_order_type(&self) -> bool {
        self.tests.iter().any(|(f, _)| *f == Field::OrderType)
    }

    pub fn is_empty(&self) -> bool {
        self.tests.is_empty()
            && self.partner_in_programme.is_none()
            && self.partner_tags.is_none()
            && self.ranges.is_empty()
    }

    /// Binds the condition to a bundle's codes and partners.
    pub fn bind(&self, codes: &Codes, partners: &Partners) -> BoundCondition {
        let code_table = |field: Field| -> Option<Vec<bool>> {
            let tests: Vec<&TextTest> = self
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
            let tests: Vec<&TextTest> = self
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
        let partner = self
            .tests
            .iter()
            .any(|(f, _)| partner_fields.contains(f))
            .then(|| {
                partners
                    .iter()
                    .map(|(_, p)| {
                        self.tests.iter().all(|(f, t)| match f {
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
            self.tests
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
            partner_in_programme: self.partner_in_programme,
            partner_tags: self.partner_tags.clone(),
            ranges: self.ranges.clone(),
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{BillType, ChargeMode, Market, PartnerType, Programme, SalesMode};

    #[test]
    fn vocabularies_follow_declaration_order() {
        let check = |words: &[&str], names: Vec<(usize, &str)>| {
            for (i, name) in names {
                assert_eq!(words[i], name);
            }
        };
        check(
            SALES_MODES,
            vec![
                (SalesMode::Resale as usize, "resale"),
                (SalesMode::Referral as usize, "referral"),
            ],
        );
        check(
            MARKETS,
            vec![
                (Market::Cn as usize, Market::Cn.as_str()),
                (Market::Intl as usize, Market::Intl.as_str()),
            ],
        );
        for m in [
            ChargeMode::YearlyMonthly,
            ChargeMode::OnDemand,
            ChargeMode::Reserved,
            ChargeMode::SavingsPlan,
        ] {
            assert_eq!(CHARGE_MODES[m as usize], m.as_str());
        }
        for b in [
            BillType::New,
            BillType::Renew,
            BillType::Change,
            BillType::Usage,
            BillType::Refund,
            BillType::Adjustment,
        ] {
            assert_eq!(BILL_TYPES[b as usize], b.as_str());
        }
        for p in [
            PartnerType::SolutionProvider,
            PartnerType::Distributor,
            PartnerType::Reseller,
        ] {
            assert_eq!(PARTNER_TYPES[p as usize], p.as_str());
        }
        for p in [Programme::SolutionProvider, Programme::Distribution] {
            assert_eq!(PROGRAMMES[p as usize], p.as_str());
        }
        for o in [
            OrderType::New,
            OrderType::Renew,
            OrderType::Change,
            OrderType::Unsubscribe,
            OrderType::Downgrade,
        ] {
            assert_eq!(ORDER_TYPES[o as usize], o.as_str());
        }
    }

    #[test]
    fn text_tests_combine_sets_and_prefixes() {
        let t = TextTest {
            any_of: None,
            not_in: vec!["hws.service.type.marketplace".into()],
            prefix: vec!["hws.service.type.".into()],
            not_prefix: vec!["hws.service.type.domain".into()],
        };
        assert!(t.holds("hws.service.type.ec2"));
        assert!(!t.holds("hws.service.type.marketplace"));
        assert!(!t.holds("hws.service.type.domain.name"));
        assert!(!t.holds("other.ec2"));
    }
}
