//! The rule set bound to one bundle and cycle, and the per-line work of evaluation.

use super::bound::{BoundCondition, LineFacts, bind};
use super::{Fate, Kind, LedgerRow, OptionalIndex, Pools, reason};
use crate::calendar::Cycle;
use crate::load::Bundle;
use crate::model::{BillLine, CapabilityTag, DistributorLink, Order, PartnerIdx};
use crate::rules::{LeverKind, RuleSet};
use chrono::{DateTime, Duration, FixedOffset, NaiveDate, Offset, TimeZone, Utc};
use rayon::prelude::*;
use rust_decimal::Decimal;
use rustc_hash::FxHashMap as HashMap;
use std::collections::BTreeSet;
use std::ops::Range;

/// One `next_cycle` entry of a timing, bound: its condition and its cut-off instant this cycle.
struct BoundDeferral<'a> {
    reason: &'a str,
    when: Option<BoundCondition>,
    cutoff: Option<DateTime<Utc>>,
}

pub(super) struct Context<'a, 'o> {
    pub bundle: &'a Bundle,
    pub rules: &'a RuleSet,
    pub cycle: Cycle,
    exclusions: Vec<BoundCondition>,
    /// Per lever, per rule.
    lever_rules: Vec<Vec<BoundCondition>>,
    timings: Vec<Vec<BoundDeferral<'a>>>,
    /// Capability tags grouped by partner.
    tags: Vec<CapabilityTag>,
    tag_ranges: Vec<Range<usize>>,
    /// Links per reseller, by start date.
    links: HashMap<PartnerIdx, Vec<&'a DistributorLink>>,
    /// Orders sorted by id, for the few lookups a run makes (refunds, order-type conditions).
    orders: OrdersById<'o>,
    /// The zone's offset when it does not change anywhere near the cycle (most zones, most
    /// months): a trade date is then one addition instead of a time-zone lookup.
    fixed_offset: Option<FixedOffset>,
    /// Whether any condition reads the order type (else the order lookup is skipped).
    needs_order_type: bool,
    /// Every reason an outcome can give, `""` first: outcomes store an index into it.
    reasons: Vec<&'a str>,
    /// Every rule's rate, and its id per lever, per rule.
    rates: super::Rates,
    rule_rates: Vec<Vec<super::RateId>>,
}

/// The accepted orders sorted by id, for lookups by binary search. Built on its own so a run
/// can sort them while it groups the lines by partner.
pub struct OrdersById<'o>(Vec<&'o Order>);

impl<'o> OrdersById<'o> {
    pub fn new(orders: &'o [Order]) -> OrdersById<'o> {
        let mut sorted: Vec<&Order> = orders.iter().collect();
        sorted.par_sort_unstable_by(|a, b| a.order_id.cmp(&b.order_id));
        OrdersById(sorted)
    }

    /// The order of id `id`, if `orders.csv` has it.
    pub fn get(&self, id: &str) -> Option<&'o Order> {
        let orders = &self.0;
        orders
            .binary_search_by(|o| o.order_id.as_str().cmp(id))
            .ok()
            .map(|i| orders[i])
    }

    /// The order a refund claws back from: its `original_order_id`, else that of its order in
    /// `orders.csv`, else its own order.
    pub fn original_order<'s>(&'s self, line: &'s BillLine) -> Option<&'s str> {
        line.original_order_id.as_deref().or_else(|| {
            let own = line.order_id.as_deref()?;
            self.get(own)
                .and_then(|o| o.original_order_id.as_deref())
                .or(Some(own))
        })
    }

    /// The orders this cycle's refunds and negative lines claw back from (what the state is
    /// asked for: earlier cycles' pools of any other order cannot change this cycle).
    pub fn clawed_orders<'s>(&'s self, lines: &'s [BillLine]) -> BTreeSet<&'s str> {
        lines
            .iter()
            .filter(|l| l.is_negative())
            .filter_map(|l| self.original_order(l))
            .collect()
    }
}

impl<'a, 'o> Context<'a, 'o> {
    pub fn new(
        bundle: &'a Bundle,
        orders: OrdersById<'o>,
        rules: &'a RuleSet,
        cycle: Cycle,
    ) -> Context<'a, 'o> {
        let bind = |c: &crate::rules::Condition| bind(c, &bundle.codes, &bundle.partners);
        let exclusions = rules.exclusions.iter().map(|e| bind(&e.when)).collect();
        let lever_rules = rules
            .levers
            .iter()
            .map(|l| l.rules.iter().map(|r| bind(&r.when)).collect())
            .collect();
        let timings = rules
            .timings
            .iter()
            .map(|t| {
                t.next_cycle
                    .iter()
                    .map(|n| BoundDeferral {
                        reason: n.reason.as_str(),
                        when: n.when.as_ref().map(bind),
                        cutoff: n.cutoff.map(|(time, zone)| {
                            let local = cycle.last_day().and_time(time);
                            zone.from_local_datetime(&local)
                                .earliest()
                                .map(|t| t.with_timezone(&Utc))
                                .unwrap_or_else(|| local.and_utc())
                        }),
                    })
                    .collect()
            })
            .collect();
        let mut tags = bundle.capability_tags.clone();
        tags.sort_by_key(|t| t.partner);
        let mut tag_ranges = vec![0..0; bundle.partners.len()];
        let mut start = 0;
        while start < tags.len() {
            let partner = tags[start].partner;
            let end = start
                + tags[start..]
                    .iter()
                    .take_while(|t| t.partner == partner)
                    .count();
            tag_ranges[partner.0 as usize] = start..end;
            start = end;
        }
        let mut links: HashMap<PartnerIdx, Vec<&DistributorLink>> = HashMap::default();
        for link in &bundle.distributor_links {
            links.entry(link.reseller).or_default().push(link);
        }
        for list in links.values_mut() {
            list.sort_by_key(|l| l.valid_from);
        }
        let needs_order_type = rules
            .levers
            .iter()
            .flat_map(|l| &l.rules)
            .map(|r| &r.when)
            .chain(rules.exclusions.iter().map(|e| &e.when))
            .chain(
                rules
                    .timings
                    .iter()
                    .flat_map(|t| &t.next_cycle)
                    .filter_map(|n| n.when.as_ref()),
            )
            .any(|c| c.reads_order_type());
        // Every source of a reason: the engine's own codes, exclusions, deferrals.
        let mut reasons: Vec<&'a str> = vec![
            "",
            reason::NO_MATCHING_RULE,
            reason::ORDER_NEVER_EARNED,
            reason::NO_ORDER,
        ];
        reasons.extend(rules.exclusions.iter().map(|e| e.reason.as_str()));
        reasons.extend(
            rules
                .timings
                .iter()
                .flat_map(|t| &t.next_cycle)
                .map(|n| n.reason.as_str()),
        );
        let mut seen = std::collections::HashSet::new();
        reasons.retain(|r| seen.insert(*r));
        let mut rates = super::Rates::default();
        let rule_rates = rules
            .levers
            .iter()
            .map(|l| l.rules.iter().map(|r| rates.id(r.rate)).collect())
            .collect();
        Context {
            reasons,
            rates,
            rule_rates,
            bundle,
            rules,
            cycle,
            exclusions,
            lever_rules,
            timings,
            tags,
            tag_ranges,
            links,
            orders,
            fixed_offset: fixed_offset_near(rules.time_zone, cycle),
            needs_order_type,
        }
    }

    /// The rule set's rates, as [`LedgerRow::rate`] names them.
    pub fn rates(&self) -> &super::Rates {
        &self.rates
    }

    /// Every reason an outcome can give, in the order of [`Context::reason_id`].
    pub fn reasons(&self) -> &[&'a str] {
        &self.reasons
    }

    /// The index of a reason this context gave (every one is in `reasons`, built from the
    /// same sources; a miss is a bug, caught by the debug assertion and the tests).
    pub fn reason_id(&self, why: &str) -> u16 {
        let found = self
            .reasons
            .iter()
            .position(|r| std::ptr::eq(*r, why))
            .or_else(|| self.reasons.iter().position(|r| *r == why));
        debug_assert!(found.is_some(), "reason {why:?} not in the table");
        found.unwrap_or(0) as u16
    }

    /// The order with this id (ids are unique among accepted orders).
    fn order(&self, id: &str) -> Option<&'o Order> {
        self.orders.get(id)
    }

    fn trade_date(&self, line: &BillLine) -> NaiveDate {
        match self.fixed_offset {
            Some(offset) => line.trade_time.with_timezone(&offset).date_naive(),
            None => line
                .trade_time
                .with_timezone(&self.rules.time_zone)
                .date_naive(),
        }
    }

    fn in_programme(&self, partner: PartnerIdx, date: NaiveDate) -> bool {
        self.bundle.partners.at(partner).in_programme_on(date)
    }

    fn facts<'s>(&'s self, line: &'s BillLine) -> LineFacts<'s> {
        let trade_date = self.trade_date(line);
        LineFacts {
            line,
            partner: line.partner,
            trade_date,
            in_programme: self.in_programme(line.partner, trade_date),
            // Looked up only when some condition reads it.
            order_type: self
                .needs_order_type
                .then(|| line.order_id.as_deref().and_then(|o| self.order(o)))
                .flatten()
                .map(|o| o.order_type),
            tags: &self.tags[self.tag_ranges[line.partner.0 as usize].clone()],
        }
    }

    /// The credit cycle of a line under a timing, and the reason when it moves to the next one.
    fn credit(&self, timing: Option<usize>, facts: &LineFacts<'_>) -> (Cycle, Option<&'a str>) {
        let Some(t) = timing else {
            return (self.cycle, None);
        };
        for d in &self.timings[t] {
            let when = d.when.as_ref().is_none_or(|c| c.holds(facts));
            let after = d
                .cutoff
                .is_none_or(|cutoff| facts.line.trade_time >= cutoff);
            if when && after {
                return (self.cycle.next(), Some(d.reason));
            }
        }
        (self.cycle, None)
    }

    /// The timing of a lever, or of the first lever it stacks on.
    fn lever_timing(&self, lever: usize) -> Option<usize> {
        let l = &self.rules.levers[lever];
        l.credit.or_else(|| {
            l.stacks_on
                .iter()
                .find_map(|&s| self.rules.levers[s].credit)
        })
    }

    /// The first rule of a lever, by priority, that holds for the line on its trade date.
    fn first_rule(&self, lever: usize, facts: &LineFacts<'_>) -> Option<usize> {
        self.rules.levers[lever]
            .rules
            .iter()
            .zip(&self.lever_rules[lever])
            .position(|(rule, cond)| rule.in_window(facts.trade_date) && cond.holds(facts))
    }

    pub fn partner_rule_holds(&self, lever: usize, rule: usize, partner: PartnerIdx) -> bool {
        self.lever_rules[lever][rule].holds_for_partner(partner)
    }

    /// The first exclusion that holds, if any.
    fn exclusion(&self, facts: &LineFacts<'_>) -> Option<&'a crate::rules::Exclusion> {
        self.exclusions
            .iter()
            .zip(&self.rules.exclusions)
            .find(|(c, e)| e.in_window(facts.trade_date) && c.holds(facts))
            .map(|(_, e)| e)
    }

    /// The first exclusion that holds and stops clawbacks: programme membership, for one, gates
    /// earning but not clawback (SPEC §3), so a refund it matches is still clawed back.
    fn clawback_exclusion(&self, facts: &LineFacts<'_>) -> Option<&'a str> {
        self.exclusions
            .iter()
            .zip(&self.rules.exclusions)
            .find(|(c, e)| e.stops_clawback && e.in_window(facts.trade_date) && c.holds(facts))
            .map(|(_, e)| e.reason.as_str())
    }

    /// What line `i` adds to the total of tier lever `of`'s base although an exclusion that
    /// counts toward the tier excluded it: the base `of` would have earned on it, for its
    /// partner and currency (None when no such exclusion excluded it or `of` has no rule for it).
    pub fn excluded_tier_base(&self, i: u32, of: usize) -> Option<Decimal> {
        let line = &self.bundle.bill_lines[i as usize];
        let facts = self.facts(line);
        if !self.exclusion(&facts)?.counts_toward_tier {
            return None;
        }
        self.first_rule(of, &facts)?;
        Some(
            self.rules.levers[of]
                .base
                .as_ref()
                .map_or(Decimal::ZERO, |b| b.of(line)),
        )
    }

    /// The distributor linked to a reseller on a date, if it is in its programme then.
    fn distributor_on(&self, reseller: PartnerIdx, date: NaiveDate) -> Option<PartnerIdx> {
        let link = self
            .links
            .get(&reseller)?
            .iter()
            .find(|l| l.valid_from <= date && l.valid_to.is_none_or(|to| date <= to))?;
        self.in_programme(link.distributor, date)
            .then_some(link.distributor)
    }

    /// The row a lever's rule earns on line `i` for `partner`: the lever's base of the line at
    /// the rule's rate, rounded once.
    fn row(
        &self,
        i: u32,
        partner: PartnerIdx,
        lever: usize,
        rule: usize,
        kind: Kind,
        credit: Cycle,
    ) -> LedgerRow {
        let line = &self.bundle.bill_lines[i as usize];
        let lever_def = &self.rules.levers[lever];
        let base = lever_def
            .base
            .as_ref()
            .map_or(Decimal::ZERO, |b| b.of(line));
        let rate = lever_def.rules[rule].rate;
        let raw = rate.map_or(Decimal::ZERO, |r| r * base);
        LedgerRow {
            line: OptionalIndex::some(i),
            partner,
            lever: lever as u16,
            rule: super::RuleRef::rule(rule),
            kind,
            earned_cycle: self.cycle,
            credit_cycle: credit,
            base,
            rate: self.rule_rates[lever][rule],
            amount: self.rules.rounding.round(raw, line.currency),
            currency: line.currency,
            ref_id: OptionalIndex::NONE,
        }
    }

    /// Evaluates a line that is not a refund and not negative.
    pub fn positive_line(&self, i: u32, rows: &mut Vec<LedgerRow>) -> (Fate, &'a str, Range<u32>) {
        let line = &self.bundle.bill_lines[i as usize];
        let facts = self.facts(line);
        let start = rows.len() as u32;
        if let Some(exclusion) = self.exclusion(&facts) {
            return (Fate::Excluded, exclusion.reason.as_str(), start..start);
        }
        let levers = &self.rules.levers;
        // Base levers first: those that stack on nothing.
        let mut earned: Vec<(usize, Cycle, Option<&'a str>)> = Vec::new();
        for (li, lever) in levers.iter().enumerate() {
            if lever.kind != LeverKind::Line || !lever.stacks_on.is_empty() {
                continue;
            }
            if let Some(ri) = self.first_rule(li, &facts) {
                let (credit, why) = self.credit(lever.credit, &facts);
                rows.push(self.row(i, line.partner, li, ri, Kind::Earn, credit));
                earned.push((li, credit, why));
            }
        }
        // Stacked levers: only on a line that earned one they stack on, credited with it.
        for (li, lever) in levers.iter().enumerate() {
            if lever.kind != LeverKind::Line || lever.stacks_on.is_empty() {
                continue;
            }
            let Some(&(_, credit, why)) = lever
                .stacks_on
                .iter()
                .find_map(|s| earned.iter().find(|(e, _, _)| e == s))
            else {
                continue;
            };
            if let Some(ri) = self.first_rule(li, &facts) {
                rows.push(self.row(i, line.partner, li, ri, Kind::Earn, credit));
                earned.push((li, credit, why));
            }
        }
        // Overrides: for the distributor linked on the trade date, if it is in its programme.
        for (li, lever) in levers.iter().enumerate() {
            if lever.kind != LeverKind::Override {
                continue;
            }
            let Some(ri) = self.first_rule(li, &facts) else {
                continue;
            };
            let Some(distributor) = self.distributor_on(line.partner, facts.trade_date) else {
                continue;
            };
            let (credit, why) = self.credit(lever.credit, &facts);
            rows.push(self.row(i, distributor, li, ri, Kind::Override, credit));
            earned.push((li, credit, why));
        }
        let end = rows.len() as u32;
        if earned.is_empty() {
            return (Fate::Excluded, reason::NO_MATCHING_RULE, start..end);
        }
        if earned.iter().any(|(_, credit, _)| *credit == self.cycle) {
            (Fate::Earned, "", start..end)
        } else {
            (
                Fate::Deferred,
                earned.iter().find_map(|(_, _, why)| *why).unwrap_or(""),
                start..end,
            )
        }
    }

    /// What a refund or negative line will do, found without changing anything (so lines
    /// are planned in parallel): its fate if it claws nothing, else each pool of its original
    /// order in its currency with the line's base for that lever and the credit cycle.
    pub fn plan_negative(&self, i: u32, pools: &Pools<'a>) -> NegativePlan<'a> {
        let line = &self.bundle.bill_lines[i as usize];
        let facts = self.facts(line);
        if let Some(why) = self.clawback_exclusion(&facts) {
            return NegativePlan::NotEarned(why);
        }
        let Some(original) = self.orders.original_order(line) else {
            return NegativePlan::NotEarned(reason::NO_ORDER);
        };
        // The order's pools in its own currency, in (lever, recipient) order.
        let claws: Vec<(usize, Decimal, Cycle)> = pools
            .of_order(original)
            .into_iter()
            .filter_map(|p| {
                let pool = pools.get(p).filter(|p| p.currency() == line.currency)?;
                let lever = pool.lever() as usize;
                let base = self.rules.levers[lever]
                    .base
                    .as_ref()
                    .map_or(Decimal::ZERO, |b| b.of(line));
                let (credit, _) = self.credit(self.lever_timing(lever), &facts);
                Some((p, base, credit))
            })
            .collect();
        if claws.is_empty() {
            return NegativePlan::NotEarned(reason::ORDER_NEVER_EARNED);
        }
        NegativePlan::ClawBack(claws)
    }

    /// Carries out a plan, in (trade time, line id) order: each clawback at the pool's rate,
    /// never more than the pool still holds after the refunds before it.
    pub fn apply_negative(
        &self,
        i: u32,
        plan: NegativePlan<'a>,
        pools: &mut Pools<'a>,
        rows: &mut Vec<LedgerRow>,
        rates: &mut super::Rates,
    ) -> (Fate, &'a str) {
        let claws = match plan {
            NegativePlan::NotEarned(why) => return (Fate::RefundNotEarned, why),
            NegativePlan::ClawBack(claws) => claws,
        };
        for (p, base, credit) in claws {
            let Some(pool) = pools.get_mut(p) else {
                continue;
            };
            let (lever, recipient, currency) = (pool.lever(), pool.recipient(), pool.currency());
            let raw = self
                .rules
                .rounding
                .round(pool.rate.unwrap_or(Decimal::ZERO) * base, currency);
            let remaining = (pool.earned - pool.clawed).max(Decimal::ZERO);
            // A clawback is negative and never takes more than the pool still holds.
            let amount = self
                .rules
                .rounding
                .round(raw.max(-remaining).min(Decimal::ZERO), currency);
            pool.clawed -= amount;
            pool.clawed_now -= amount;
            rows.push(LedgerRow {
                line: OptionalIndex::some(i),
                partner: recipient,
                lever,
                rule: pool.rule,
                kind: Kind::Clawback,
                earned_cycle: self.cycle,
                credit_cycle: credit,
                base,
                rate: rates.id(pool.rate),
                amount,
                currency,
                ref_id: OptionalIndex::NONE,
            });
        }
        (Fate::ClawedBack, "")
    }
}

/// What a negative line does: nothing (and why), or claw back from these pools (pool, the
/// line's base for the pool's lever, credit cycle).
pub(super) enum NegativePlan<'a> {
    NotEarned(&'a str),
    ClawBack(Vec<(usize, Decimal, Cycle)>),
}

/// The zone's offset if it is the same at every hour from 40 days before the cycle to 40 days
/// after it.
fn fixed_offset_near(zone: chrono_tz::Tz, cycle: Cycle) -> Option<FixedOffset> {
    let start = cycle.first_day().and_hms_opt(0, 0, 0)?.and_utc() - Duration::days(40);
    let offset_at = |t: DateTime<Utc>| t.with_timezone(&zone).offset().fix();
    let first = offset_at(start);
    (0..(24 * 112))
        .all(|h| offset_at(start + Duration::hours(h)) == first)
        .then_some(first)
}
