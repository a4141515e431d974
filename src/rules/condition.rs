//! Conditions on a bill line, its partner and its order. A [`Condition`] is compiled from the
//! rule files; bound to a bundle ([`BoundCondition`]) every test on a code, an enum or a partner
//! attribute becomes a table lookup, so matching ten million lines costs no string comparison.

use super::AmountField;
use super::format::{Conditions, TextCondition};
use rust_decimal::Decimal;

/// The words of each closed vocabulary, in the enums' declaration order (so `value as usize`
/// indexes them; a test below keeps the two in step).
pub(crate) const SALES_MODES: &[&str] = &["resale", "referral"];
pub(crate) const MARKETS: &[&str] = &["cn", "intl"];
pub(crate) const CHARGE_MODES: &[&str] =
    &["yearly_monthly", "on_demand", "reserved", "savings_plan"];
pub(crate) const BILL_TYPES: &[&str] = &["new", "renew", "change", "usage", "refund", "adjustment"];
pub(crate) const PARTNER_TYPES: &[&str] = &["solution_provider", "distributor", "reseller"];
pub(crate) const PROGRAMMES: &[&str] = &["solution_provider", "distribution"];
pub(crate) const ORDER_TYPES: &[&str] = &["new", "renew", "change", "unsubscribe", "downgrade"];

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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{
        BillType, ChargeMode, Market, OrderType, PartnerType, Programme, SalesMode,
    };

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
