//! Partner-level rows: a tier lever's row on a partner's cycle total, and a cap's row holding a
//! lever's net credited total to its cap. Made after every line and refund of the cycle.

use super::context::Context;
use super::{CarriedRow, Fate, Kind, LedgerRow, OptionalIndex, Outcome, RateId, RuleRef};
use crate::model::{Currency, PartnerIdx};
use crate::rules::LeverKind;
use rayon::prelude::*;
use rust_decimal::Decimal;
use std::collections::BTreeMap;

/// Σ of amounts per key, for tiers and caps.
fn sum_by<K: Ord>(items: impl Iterator<Item = (K, Decimal)>) -> BTreeMap<K, Decimal> {
    let mut sums = BTreeMap::new();
    for (k, v) in items {
        *sums.entry(k).or_insert(Decimal::ZERO) += v;
    }
    sums
}

impl<'a> Context<'a, '_> {
    /// Tier rows: one per partner and currency on the gross base of the lever it is on, plus
    /// the base of lines excluded by an exclusion that counts toward the tier.
    pub(super) fn tiers(&self, rows: &mut Vec<LedgerRow>, outcomes: &[Outcome]) {
        let lines = &self.bundle.bill_lines;
        let any_counts = self.rules.exclusions.iter().any(|e| e.counts_toward_tier);
        for (li, lever) in self.rules.levers.iter().enumerate() {
            let (LeverKind::Tier, Some(of)) = (lever.kind, lever.total_of) else {
                continue;
            };
            let excluded: Vec<((PartnerIdx, Currency), Decimal)> = if any_counts {
                (0..lines.len() as u32)
                    .into_par_iter()
                    .filter(|&i| {
                        outcomes[i as usize].fate == Fate::Excluded
                            && !lines[i as usize].is_negative()
                    })
                    .filter_map(|i| {
                        let line = &lines[i as usize];
                        let base = self.excluded_tier_base(i, of)?;
                        Some(((line.partner, line.currency), base))
                    })
                    .collect()
            } else {
                Vec::new()
            };
            let totals = sum_by(
                rows.iter()
                    .filter(|r| {
                        r.lever as usize == of && r.kind == Kind::Earn && r.line.get().is_some()
                    })
                    .map(|r| ((r.partner, r.currency), r.base))
                    .chain(excluded),
            );
            for ((partner, currency), total) in totals {
                let Some((ri, rule)) = lever
                    .rules
                    .iter()
                    .enumerate()
                    .find(|(ri, _)| self.partner_rule_holds(li, *ri, partner))
                else {
                    continue;
                };
                let Some(raw) = rule.tiers.as_ref().and_then(|t| t.amount(total, currency)) else {
                    continue;
                };
                let amount = self.rules.rounding.round(raw, currency);
                if amount.is_zero() {
                    continue;
                }
                rows.push(LedgerRow {
                    line: OptionalIndex::NONE,
                    partner,
                    lever: li as u16,
                    rule: RuleRef::rule(ri),
                    kind: Kind::Tier,
                    earned_cycle: self.cycle,
                    credit_cycle: self.cycle,
                    base: total,
                    rate: RateId::NONE,
                    amount,
                    currency,
                    ref_id: OptionalIndex::NONE,
                });
            }
        }
    }

    /// Cap rows: a lever's net credited total this cycle, per partner and currency, held to
    /// its cap by one negative row.
    pub(super) fn caps(&self, rows: &mut Vec<LedgerRow>, carried: &[CarriedRow]) {
        for (li, lever) in self.rules.levers.iter().enumerate() {
            if lever.cap.is_empty() {
                continue;
            }
            let carried_in = carried
                .iter()
                .filter(|c| c.lever == lever.name)
                .filter(|c| {
                    matches!(
                        c.kind,
                        Kind::Earn | Kind::Clawback | Kind::Override | Kind::Tier
                    )
                })
                .filter_map(|c| {
                    let (partner, _) = self.bundle.partners.get(&c.partner_id)?;
                    Some(((partner, c.currency), c.amount))
                });
            let nets = sum_by(
                carried_in.chain(
                    rows.iter()
                        .filter(|r| r.lever as usize == li && r.credit_cycle == self.cycle)
                        .filter(|r| {
                            matches!(
                                r.kind,
                                Kind::Earn | Kind::Clawback | Kind::Override | Kind::Tier
                            )
                        })
                        .map(|r| ((r.partner, r.currency), r.amount)),
                ),
            );
            for ((partner, currency), net) in nets {
                let Some(&cap) = lever.cap.get(&currency) else {
                    continue;
                };
                if net > cap {
                    rows.push(LedgerRow {
                        line: OptionalIndex::NONE,
                        partner,
                        lever: li as u16,
                        rule: RuleRef::CAP,
                        kind: Kind::Cap,
                        earned_cycle: self.cycle,
                        credit_cycle: self.cycle,
                        base: net,
                        rate: RateId::NONE,
                        amount: self.rules.rounding.round(cap - net, currency),
                        currency,
                        ref_id: OptionalIndex::NONE,
                    });
                }
            }
        }
    }
}
