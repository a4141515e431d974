//! Stage: reconcile and explain (SPEC §5, §6, seed 18). One explanation per partner × customer ×
//! currency of the cycle, walking from the customer's consumption to the incentive credited,
//! with the identities of SPEC §6 checked on the figures before anything is published.

mod paragraph;

pub use paragraph::{Lang, ReasonWords, paragraph, reason_words_of};

use crate::calendar::Cycle;
use crate::evaluate::{CarriedRow, Evaluation, Fate, Kind};
use crate::group::Grouped;
use crate::load::Bundle;
use crate::model::{Currency, PartnerIdx};
use crate::vouchers::VoucherOutcome;
use rayon::prelude::*;
use rust_decimal::Decimal;
use rustc_hash::FxHashMap;
use std::collections::BTreeMap;

/// One row of `explanations.csv` (customer `*` for partner-level rows: tiers, caps).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Explanation {
    pub partner_id: String,
    pub customer_id: String,
    pub currency: Currency,
    pub consumption: Decimal,
    pub refunds: Decimal,
    pub eligible_base: Decimal,
    pub non_base: Decimal,
    pub excluded: Decimal,
    pub excluded_by_reason: BTreeMap<String, Decimal>,
    pub deferred_out_base: Decimal,
    pub deferred_out_non_base: Decimal,
    pub deferred_out_incentive: Decimal,
    pub clawback_base: Decimal,
    pub refund_not_earned: Decimal,
    pub earned_now: Decimal,
    pub carried_in: Decimal,
    pub clawed_back: Decimal,
    pub tier: Decimal,
    pub cap: Decimal,
    pub override_: Decimal,
    pub incentive: Decimal,
    pub rejected_lines: u64,
    /// What the paragraph says beyond the columns.
    pub notes: Notes,
}

/// What a paragraph says beyond the figures of its row (not columns of `explanations.csv`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Notes {
    /// Payable of the lines credited next cycle, by the timing rule's reason (`on_demand`,
    /// `after_cutoff`, …).
    pub deferred_by_reason: BTreeMap<String, Decimal>,
    /// Lines paid entirely with customer coupons (they earn nothing).
    pub coupon_only_lines: u64,
    /// The resellers whose lines earned this (distributor's) row an override or its clawback.
    pub override_resellers: std::collections::BTreeSet<String>,
}

/// The amount columns of `explanations.csv`, in their order (`excluded_by_reason` follows
/// `excluded`); [`Explanation::amounts`] gives the values in the same order.
pub const AMOUNT_COLUMNS: [&str; 17] = [
    "consumption",
    "refunds",
    "eligible_base",
    "non_base",
    "excluded",
    "deferred_out_base",
    "deferred_out_non_base",
    "deferred_out_incentive",
    "clawback_base",
    "refund_not_earned",
    "earned_now",
    "carried_in",
    "clawed_back",
    "tier",
    "cap",
    "override",
    "incentive",
];

impl Explanation {
    /// The figures of [`AMOUNT_COLUMNS`], in that order.
    pub fn amounts(&self) -> [Decimal; 17] {
        [
            self.consumption,
            self.refunds,
            self.eligible_base,
            self.non_base,
            self.excluded,
            self.deferred_out_base,
            self.deferred_out_non_base,
            self.deferred_out_incentive,
            self.clawback_base,
            self.refund_not_earned,
            self.earned_now,
            self.carried_in,
            self.clawed_back,
            self.tier,
            self.cap,
            self.override_,
            self.incentive,
        ]
    }

    fn new(partner_id: String, customer_id: String, currency: Currency) -> Explanation {
        let z = Decimal::ZERO;
        Explanation {
            partner_id,
            customer_id,
            currency,
            consumption: z,
            refunds: z,
            eligible_base: z,
            non_base: z,
            excluded: z,
            excluded_by_reason: BTreeMap::new(),
            deferred_out_base: z,
            deferred_out_non_base: z,
            deferred_out_incentive: z,
            clawback_base: z,
            refund_not_earned: z,
            earned_now: z,
            carried_in: z,
            clawed_back: z,
            tier: z,
            cap: z,
            override_: z,
            incentive: z,
            rejected_lines: 0,
            notes: Notes::default(),
        }
    }
}

/// A key borrowed from the bundle while summing (no allocation per line).
type BorrowedKey<'a> = (&'a str, &'a str, Currency);

/// A partner's own lines and the incentive rows credited to it (overrides sit with the
/// distributor), as indices, partners in partner-id order: the unit of parallel work.
struct ByPartner {
    /// Partner indices in partner-id order.
    order: Vec<u32>,
    lines: Grouped,
    rows: Grouped,
}

impl ByPartner {
    fn new(bundle: &Bundle, evaluation: &Evaluation<'_>) -> ByPartner {
        let partners = bundle.partners.len();
        let order = bundle.partners.in_id_order();
        let lines = Grouped::new(partners, bundle.bill_lines.len(), |i| {
            Some(bundle.bill_lines[i].partner.0 as usize)
        });
        let rows = Grouped::new(partners, evaluation.rows.len(), |i| {
            let row = &evaluation.rows[i];
            row.kind.is_incentive().then_some(row.partner.0 as usize)
        });
        ByPartner { order, lines, rows }
    }
}

/// One partner's explanations, sorted by customer and currency.
fn partner_explanations(
    bundle: &Bundle,
    evaluation: &Evaluation<'_>,
    carried: &[&CarriedRow],
    cycle: Cycle,
    partner: u32,
    by: &ByPartner,
) -> Vec<Explanation> {
    let partner_id = bundle.partners.at(PartnerIdx(partner)).partner_id.as_str();
    let mut map: FxHashMap<(&str, Currency), Explanation> = FxHashMap::default();
    for &i in by.lines.of(partner) {
        let line = &bundle.bill_lines[i as usize];
        let e = slot(
            &mut map,
            partner_id,
            line.customer_id.as_str(),
            line.currency,
        );
        add_line(e, line, evaluation, i);
    }
    for &r in by.rows.of(partner) {
        let row = &evaluation.rows[r as usize];
        let line = row.line.get().map(|l| &bundle.bill_lines[l as usize]);
        let customer = line.map_or("*", |l| l.customer_id.as_str());
        let e = slot(&mut map, partner_id, customer, row.currency);
        if let Some(l) = line
            && matches!(row.kind, Kind::Override | Kind::Clawback)
            && l.partner.0 != partner
        {
            e.notes
                .override_resellers
                .insert(bundle.partners.at(l.partner).partner_id.to_string());
        }
        add_row(e, row, cycle);
    }
    for c in carried {
        if let Some(currency) = Some(c.currency) {
            slot(&mut map, partner_id, c.customer_id.as_str(), currency).carried_in += c.amount;
        }
    }
    let mut out: Vec<((&str, Currency), Explanation)> = map.into_iter().collect();
    out.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    out.into_iter().map(|(_, e)| e).collect()
}

/// The explanation of (customer, currency) in a partner's map, created empty when new.
fn slot<'a, 'm>(
    map: &'m mut FxHashMap<(&'a str, Currency), Explanation>,
    partner_id: &str,
    customer: &'a str,
    currency: Currency,
) -> &'m mut Explanation {
    map.entry((customer, currency))
        .or_insert_with(|| Explanation::new(partner_id.to_string(), customer.to_string(), currency))
}

/// A line's figures in its own partner's explanation.
fn add_line(
    e: &mut Explanation,
    line: &crate::model::BillLine,
    evaluation: &Evaluation<'_>,
    i: u32,
) {
    let outcome = &evaluation.outcomes[i as usize];
    let payable = line.payable_amount;
    if line.is_negative() {
        e.refunds += payable;
        match outcome.fate {
            Fate::ClawedBack => e.clawback_base += payable,
            _ => e.refund_not_earned += payable,
        }
        return;
    }
    e.consumption += payable;
    let base = evaluation.line_base(line, outcome).unwrap_or(Decimal::ZERO);
    match outcome.fate {
        Fate::Earned => {
            e.eligible_base += base;
            e.non_base += payable - base;
            if line.coupon_amount == payable && !payable.is_zero() {
                e.notes.coupon_only_lines += 1;
            }
        }
        Fate::Deferred => {
            e.deferred_out_base += base;
            e.deferred_out_non_base += payable - base;
            let reason = evaluation.reason(outcome);
            *e.notes
                .deferred_by_reason
                .entry(reason.to_string())
                .or_default() += payable;
        }
        _ => {
            e.excluded += payable;
            let reason = evaluation.reason(outcome);
            match e.excluded_by_reason.get_mut(reason) {
                Some(sum) => *sum += payable,
                None => {
                    e.excluded_by_reason.insert(reason.to_string(), payable);
                }
            }
        }
    }
}

/// An incentive row's amount in its recipient's explanation.
fn add_row(e: &mut Explanation, row: &crate::evaluate::LedgerRow, cycle: Cycle) {
    if row.credit_cycle > cycle {
        e.deferred_out_incentive += row.amount;
        return;
    }
    match row.kind {
        Kind::Earn => e.earned_now += row.amount,
        Kind::Clawback => e.clawed_back += row.amount,
        Kind::Tier => e.tier += row.amount,
        Kind::Cap => e.cap += row.amount,
        Kind::Override => e.override_ += row.amount,
        _ => {}
    }
}

/// Builds the cycle's explanations from the lines, their outcomes, the journal and the carried
/// rows: each partner's in parallel, partners in partner-id order, so the result is sorted by
/// (partner, customer, currency) whatever the thread count.
pub fn explanations(
    bundle: &Bundle,
    evaluation: &Evaluation<'_>,
    carried: &[CarriedRow],
    cycle: Cycle,
) -> Vec<Explanation> {
    let by = ByPartner::new(bundle, evaluation);
    // Carried rows by partner; those of a partner no longer in partners.csv still get a row.
    let (carried_of, orphans) = carried_by_partner(bundle, carried);
    let parts: Vec<Vec<Explanation>> = by
        .order
        .par_iter()
        .map(|&p| partner_explanations(bundle, evaluation, &carried_of[p as usize], cycle, p, &by))
        .collect();
    let mut out: Vec<Explanation> = parts.into_iter().flatten().collect();
    if !orphans.is_empty() {
        let mut extra: BTreeMap<(&str, &str, Currency), Explanation> = BTreeMap::new();
        for c in orphans {
            if let Some(currency) = Some(c.currency) {
                extra
                    .entry((c.partner_id.as_str(), c.customer_id.as_str(), currency))
                    .or_insert_with(|| {
                        Explanation::new(c.partner_id.clone(), c.customer_id.clone(), currency)
                    })
                    .carried_in += c.amount;
            }
        }
        out.extend(extra.into_values());
        out.sort_by(|a, b| key_of(a).cmp(&key_of(b)));
    }
    // Rejected lines are counted where their partner, customer and currency have a row.
    for r in &bundle.rejected_lines {
        if let Some(currency) = Currency::parse(&r.currency)
            && let Ok(at) = out.binary_search_by(|e| {
                key_of(e).cmp(&(r.partner_id.as_str(), r.customer_id.as_str(), currency))
            })
        {
            out[at].rejected_lines += 1;
        }
    }
    for e in &mut out {
        e.incentive = e.earned_now + e.carried_in + e.clawed_back + e.tier + e.cap + e.override_;
    }
    out
}

/// Carried rows by partner index, and those of partners not in this cycle's partners.csv.
type CarriedByPartner<'c> = (Vec<Vec<&'c CarriedRow>>, Vec<&'c CarriedRow>);

fn carried_by_partner<'c>(bundle: &Bundle, carried: &'c [CarriedRow]) -> CarriedByPartner<'c> {
    let mut of: Vec<Vec<&CarriedRow>> = vec![Vec::new(); bundle.partners.len()];
    let mut orphans = Vec::new();
    for c in carried {
        match bundle.partners.get(&c.partner_id) {
            Some((p, _)) => of[p.0 as usize].push(c),
            None => orphans.push(c),
        }
    }
    (of, orphans)
}

fn key_of(e: &Explanation) -> BorrowedKey<'_> {
    (e.partner_id.as_str(), e.customer_id.as_str(), e.currency)
}

pub use crate::error::Violation;

/// A partner's explanations against what its rows credit to the cycle (`credited`, per
/// customer and currency): the identities of each explanation, its agreement with the journal,
/// and every credited key explained. Keys are formatted only for a violation.
fn agree<'a>(
    partner_id: &str,
    own: &[&'a Explanation],
    mut credited: FxHashMap<(&'a str, Currency), Decimal>,
) -> Vec<Violation> {
    let mut v = Vec::new();
    let mut push =
        |key: &dyn Fn() -> String, identity: &str, expected: Decimal, actual: Decimal| {
            if expected != actual {
                v.push(Violation {
                    key: key(),
                    identity: identity.to_string(),
                    expected,
                    actual,
                });
            }
        };
    for e in own {
        let key = || format!("{}/{}/{}", e.partner_id, e.customer_id, e.currency);
        push(
            &key,
            "consumption = eligible_base + non_base + excluded + deferred_out_base + deferred_out_non_base",
            e.consumption,
            e.eligible_base
                + e.non_base
                + e.excluded
                + e.deferred_out_base
                + e.deferred_out_non_base,
        );
        push(
            &key,
            "excluded = Σ excluded_by_reason",
            e.excluded,
            e.excluded_by_reason.values().copied().sum(),
        );
        push(
            &key,
            "refunds = clawback_base + refund_not_earned",
            e.refunds,
            e.clawback_base + e.refund_not_earned,
        );
        push(
            &key,
            "incentive = earned_now + carried_in + clawed_back + tier + cap + override",
            e.incentive,
            e.earned_now + e.carried_in + e.clawed_back + e.tier + e.cap + e.override_,
        );
        let journal = credited
            .remove(&(e.customer_id.as_str(), e.currency))
            .unwrap_or_default();
        push(
            &key,
            "incentive = Σ ledger rows credited to the cycle",
            journal,
            e.incentive,
        );
    }
    let mut unexplained: Vec<_> = credited.into_iter().collect();
    unexplained.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    for ((c, cur), amount) in unexplained {
        push(
            &|| format!("{partner_id}/{c}/{cur}"),
            "ledger rows credited to the cycle have an explanation",
            Decimal::ZERO,
            amount,
        );
    }
    v
}

/// Checks SPEC §6 on the in-memory results: every explanation's three identities and its
/// agreement with the journal; every line once; payable conserved; voucher identities.
pub fn check_identities(
    bundle: &Bundle,
    evaluation: &Evaluation<'_>,
    carried: &[CarriedRow],
    explanations: &[Explanation],
    vouchers: &VoucherOutcome,
    cycle: Cycle,
) -> Vec<Violation> {
    // What the journal and the carried rows credit to the cycle, per key, summed again here
    // independently of `explanations` (per partner, in parallel), then compared.
    let partners = bundle.partners.len();
    let credited_rows = Grouped::new(partners, evaluation.rows.len(), |i| {
        let row = &evaluation.rows[i];
        (row.kind.is_incentive() && row.credit_cycle == cycle).then_some(row.partner.0 as usize)
    });
    let (carried_of, orphans) = carried_by_partner(bundle, carried);
    let mut explained_of: FxHashMap<&str, Vec<&Explanation>> = FxHashMap::default();
    for e in explanations {
        explained_of
            .entry(e.partner_id.as_str())
            .or_default()
            .push(e);
    }
    let order = bundle.partners.in_id_order();
    let per_partner: Vec<Vec<Violation>> = order
        .par_iter()
        .map(|&p| {
            let partner_id = bundle.partners.at(PartnerIdx(p)).partner_id.as_str();
            let mut credited: FxHashMap<(&str, Currency), Decimal> = FxHashMap::default();
            for &r in credited_rows.of(p) {
                let row = &evaluation.rows[r as usize];
                let customer = row
                    .line
                    .get()
                    .map_or("*", |l| bundle.bill_lines[l as usize].customer_id.as_str());
                *credited.entry((customer, row.currency)).or_default() += row.amount;
            }
            for c in &carried_of[p as usize] {
                if let Some(currency) = Some(c.currency) {
                    *credited
                        .entry((c.customer_id.as_str(), currency))
                        .or_default() += c.amount;
                }
            }
            let own = explained_of
                .get(partner_id)
                .map_or(&[][..], |v| v.as_slice());
            agree(partner_id, own, credited)
        })
        .collect();
    let mut v: Vec<Violation> = per_partner.into_iter().flatten().collect();
    // Explanations and carried rows of partners no longer in partners.csv.
    let mut stray: BTreeMap<&str, FxHashMap<(&str, Currency), Decimal>> = BTreeMap::new();
    for c in orphans {
        if let Some(currency) = Some(c.currency) {
            *stray
                .entry(c.partner_id.as_str())
                .or_default()
                .entry((c.customer_id.as_str(), currency))
                .or_default() += c.amount;
        }
    }
    for partner_id in explained_of.keys() {
        if bundle.partners.get(partner_id).is_none() {
            stray.entry(partner_id).or_default();
        }
    }
    for (partner_id, credited) in stray {
        let own = explained_of
            .get(partner_id)
            .map_or(&[][..], |v| v.as_slice());
        v.extend(agree(partner_id, own, credited));
    }
    let mut push = |key: String, identity: &str, expected: Decimal, actual: Decimal| {
        if expected != actual {
            v.push(Violation {
                key,
                identity: identity.to_string(),
                expected,
                actual,
            });
        }
    };
    push(
        "bill_lines.csv".into(),
        "every accepted line has exactly one outcome",
        Decimal::from(bundle.bill_lines.len() as u64),
        Decimal::from(evaluation.outcomes.len() as u64),
    );
    let explained: Decimal = explanations.iter().map(|e| e.consumption + e.refunds).sum();
    let parsed: Decimal = bundle.owned_lines().map(|l| l.payable_amount).sum();
    push(
        "bill_lines.csv".into(),
        "Σ payable of the explained lines = Σ payable of the accepted lines",
        parsed,
        explained,
    );
    let mut per_line: BTreeMap<u32, Decimal> = BTreeMap::new();
    for d in &vouchers.deductions {
        *per_line.entry(d.line).or_default() += d.amount;
        if d.balance_after < Decimal::ZERO {
            push(
                format!("voucher #{}", d.voucher),
                "no voucher below zero",
                Decimal::ZERO,
                d.balance_after,
            );
        }
    }
    for (line, total) in per_line {
        let l = &bundle.bill_lines[line as usize];
        if total > l.settlement_amount {
            push(
                format!("line {}", l.line_id),
                "Σ deductions on a line ≤ its settlement amount",
                l.settlement_amount,
                total,
            );
        }
    }
    for b in &vouchers.balances {
        let key = format!("voucher #{}", b.voucher);
        push(
            key.clone(),
            "opening − deducted − expired = closing",
            b.opening - b.deducted - b.expired,
            b.closing,
        );
        if b.closing < Decimal::ZERO {
            push(key, "no voucher below zero", Decimal::ZERO, b.closing);
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evaluate::{Prior, evaluate};
    use crate::testkit::{bundle, cycle, reference};

    fn consistent() -> (Bundle, crate::rules::RuleSet) {
        let lines = "line_id,bill_cycle,partner_id,customer_id,sales_mode,market,service_type_code,charge_mode,bill_type,trade_time,order_id,official_amount,payable_amount,settlement_amount,currency
L1,2026-10,SP1,C1,resale,cn,hws.service.type.ec2,yearly_monthly,new,2026-10-05T10:00:00+08:00,O1,1000.00,1000.00,1000.00,CNY
L2,2026-10,SP1,C1,resale,cn,hws.service.type.ec2,yearly_monthly,refund,2026-10-06T10:00:00+08:00,O1,-100.00,-100.00,-100.00,CNY
";
        (bundle(&[("bill_lines.csv", lines)]), reference())
    }

    /// The reference set plus a base lever on the settlement amount, credited in the bill
    /// cycle, in a file named `file` (its name places it before or after the reference levers).
    fn with_settlement_lever(file: &str) -> (tempfile::TempDir, crate::rules::RuleSet) {
        let dir = tempfile::tempdir().unwrap();
        let reference = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("rules/reference");
        for entry in std::fs::read_dir(reference).unwrap() {
            let path = entry.unwrap().path();
            std::fs::copy(&path, dir.path().join(path.file_name().unwrap())).unwrap();
        }
        let bonus = r#"
[[lever]]
name = "settlement_bonus"
kind = "line"
base = "settlement_amount"

[[rule]]
id = "settlement_bonus.resale"
lever = "settlement_bonus"
priority = 10
rate = "0.01"
when = { sales_mode = ["resale"] }
"#;
        std::fs::write(dir.path().join(file), bonus).unwrap();
        let rules = crate::rules::load_rules(dir.path()).unwrap();
        (dir, rules)
    }

    #[test]
    fn identities_hold_when_levers_apply_different_bases() {
        let lines = "line_id,bill_cycle,partner_id,customer_id,sales_mode,market,service_type_code,charge_mode,bill_type,trade_time,order_id,official_amount,payable_amount,coupon_amount,settlement_amount,currency
L1,2026-10,SP1,C1,resale,cn,hws.service.type.ec2,yearly_monthly,new,2026-10-05T10:00:00+08:00,O1,1000.00,1000.00,100.00,1200.00,CNY
L2,2026-10,SP1,C1,resale,cn,hws.service.type.ec2,on_demand,usage,2026-10-06T10:00:00+08:00,,500.00,500.00,50.00,300.00,CNY
";
        let b = bundle(&[("bill_lines.csv", lines)]);
        let mut seen = Vec::new();
        let prior = Prior::default();
        for file in ["a_bonus.toml", "zz_bonus.toml"] {
            let (_dir, rules) = with_settlement_lever(file);
            let e = evaluate(&b, &rules, cycle(), &prior);
            let rows = explanations(&b, &e, &[], cycle());
            let vouchers = VoucherOutcome::default();
            assert_eq!(
                check_identities(&b, &e, &[], &rows, &vouchers, cycle()),
                vec![]
            );
            let r = &rows[0];
            // L1: resale_base on 1,000 − 100 = 900 (72.00), the bonus on settlement 1,200
            // (12.00): the largest base, held to the payable, is 1,000: eligible 1,000, non-base 0.
            // L2 (on demand): resale_base on 450 deferred (22.50), the bonus on 300 now (3.00):
            // the line earned; its base is 450: eligible 450, non-base 50.
            // consumption 1,500.00 = 1,450.00 + 50.00; earned now 12.00 + 3.00 + 72.00 = 87.00.
            let figures = (
                r.consumption.to_string(),
                r.eligible_base.to_string(),
                r.non_base.to_string(),
                r.deferred_out_base.to_string(),
                r.earned_now.to_string(),
                r.deferred_out_incentive.to_string(),
            );
            assert_eq!(
                figures,
                (
                    "1500.00".into(),
                    "1450.00".into(),
                    "50.00".into(),
                    "0".into(),
                    "87.00".into(),
                    "22.50".into()
                ),
                "{file}"
            );
            seen.push(figures);
        }
        assert_eq!(seen[0], seen[1], "the order of the levers changes nothing");
    }

    #[test]
    fn the_checker_names_every_broken_identity_with_expected_actual_and_difference() {
        let (b, rules) = consistent();
        let prior = Prior::default();
        let e = evaluate(&b, &rules, cycle(), &prior);
        let mut rows = explanations(&b, &e, &[], cycle());
        let vouchers = VoucherOutcome::default();
        assert_eq!(
            check_identities(&b, &e, &[], &rows, &vouchers, cycle()),
            vec![]
        );
        // Consumption 1000.00 = eligible 1000.00; refunds −100.00 = clawback base −100.00;
        // incentive 80.00 − 8.00 = 72.00. Break each in turn.
        rows[0].consumption += Decimal::new(1, 2);
        rows[0].refunds -= Decimal::new(5, 0);
        rows[0].incentive = Decimal::new(7300, 2);
        let v = check_identities(&b, &e, &[], &rows, &vouchers, cycle());
        let text: Vec<String> = v.iter().map(|x| x.to_string()).collect();
        assert_eq!(text.len(), 5, "{text:#?}");
        assert!(text[0].starts_with("SP1/C1/CNY: consumption = eligible_base"));
        assert!(
            text[0].ends_with("expected 1000.01, actual 1000.00, difference -0.01"),
            "{}",
            text[0]
        );
        assert!(text[1].contains("refunds = clawback_base + refund_not_earned: expected -105.00, actual -100.00, difference 5.00"), "{}", text[1]);
        assert!(text[2].contains("incentive = earned_now"), "{}", text[2]);
        assert!(
            text[3].contains(
                "Σ ledger rows credited to the cycle: expected 72.00, actual 73.00, difference 1.00"
            ),
            "{}",
            text[3]
        );
        // A missing row: its ledger rows have no explanation.
        let v = check_identities(&b, &e, &[], &[], &vouchers, cycle());
        assert!(v.iter().any(|x| x.identity.contains("have an explanation")));
        // A voucher that does not add up.
        let broken = VoucherOutcome {
            deductions: vec![],
            balances: vec![crate::vouchers::VoucherBalance {
                voucher: 0,
                opening: Decimal::new(100, 0),
                deducted: Decimal::new(30, 0),
                expired: Decimal::ZERO,
                closing: Decimal::new(80, 0),
            }],
        };
        let v = check_identities(&b, &e, &[], &rows_ok(&b, &e), &broken, cycle());
        assert_eq!(v.len(), 1);
        assert!(
            v[0].to_string()
                .contains("opening − deducted − expired = closing: expected 70, actual 80")
        );
    }

    fn rows_ok(b: &Bundle, e: &Evaluation<'_>) -> Vec<Explanation> {
        explanations(b, e, &[], cycle())
    }
}
