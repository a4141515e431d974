//! The journal's order (SPEC Appendix B): each partner's rows sorted on their own by the
//! statement keys, partners in id order, so nothing depends on the thread count.

use super::{Evaluation, Kind};
use crate::calendar::Cycle;
use crate::load::Bundle;
use crate::rules::RuleSet;
use rayon::prelude::*;

impl Evaluation<'_> {
    /// Puts the rows in journal order: SPEC Appendix B's keys (partner, credit cycle, customer,
    /// line, lever, kind, ref, currency), then generation order. Each partner's rows are sorted
    /// on their own, in parallel, and partners follow in id order.
    pub fn order_journal(&mut self, bundle: &Bundle, rules: &RuleSet) {
        // Lever names, kinds and ref ids ranked once, so the sort compares small integers
        // where it can and strings (customer, line) only within a partner.
        let subsidy_lever = rules
            .subsidy
            .as_ref()
            .map_or("project_subsidy", |s| s.lever.as_str());
        let mut lever_names: Vec<&str> = rules.levers.iter().map(|l| l.name.as_str()).collect();
        lever_names.extend([subsidy_lever, "withdrawal", "expiry"]);
        lever_names.sort_unstable();
        lever_names.dedup();
        let mut kinds: Vec<&str> = [
            Kind::Earn,
            Kind::Clawback,
            Kind::Tier,
            Kind::Cap,
            Kind::Override,
            Kind::Subsidy,
            Kind::Expiry,
            Kind::Withdrawal,
        ]
        .map(Kind::as_str)
        .to_vec();
        kinds.sort_unstable();
        let mut ref_order: Vec<u32> = (0..self.refs.len() as u32).collect();
        ref_order.sort_by(|&a, &b| self.refs[a as usize].cmp(&self.refs[b as usize]));
        let ref_rank = ranks(&ref_order, 1);
        let rank_in = |list: &[&str], name: &str| list.binary_search(&name).unwrap_or(0) as u8;
        let this = &*self;
        let partners = bundle.partners.len();
        let by_partner = crate::group::Grouped::new(partners, this.rows.len(), |i| {
            Some(this.rows[i].partner.0 as usize)
        });
        let partner_order = bundle.partners.in_id_order();
        let lines = &bundle.bill_lines;
        let sorted: Vec<Vec<u32>> = partner_order
            .par_iter()
            .map(|&p| {
                // (credit cycle, customer, line id, source row, lever, kind, ref, currency), row.
                let mut keyed: Vec<(JournalKey<'_>, u32)> = by_partner
                    .of(p)
                    .iter()
                    .map(|&i| {
                        let row = &this.rows[i as usize];
                        let line = row.line.get().map(|l| &lines[l as usize]);
                        (
                            (
                                row.credit_cycle,
                                line.map_or("*", |l| l.customer_id.as_str()),
                                line.map_or("", |l| l.line_id.as_str()),
                                line.map_or(0, |l| l.source_row),
                                rank_in(&lever_names, this.lever_name(rules, row)),
                                rank_in(&kinds, row.kind.as_str()),
                                row.ref_id.get().map_or(0, |r| ref_rank[r as usize]),
                                row.currency.code(),
                            ),
                            i,
                        )
                    })
                    .collect();
                keyed.sort_unstable();
                keyed.into_iter().map(|(_, i)| i).collect()
            })
            .collect();
        self.journal = sorted.concat();
    }
}

/// A row's journal sort key within its partner: credit cycle, customer, line id (and source
/// row), lever, kind, ref, currency, each as a value, a rank or a small integer.
type JournalKey<'a> = (Cycle, &'a str, &'a str, u32, u8, u8, u32, [u8; 3]);

/// The rank of each item, given the items in sorted order.
fn ranks(sorted: &[u32], first: u32) -> Vec<u32> {
    let mut rank = vec![0; sorted.len()];
    for (r, &item) in sorted.iter().enumerate() {
        rank[item as usize] = r as u32 + first;
    }
    rank
}
