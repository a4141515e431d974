//! Partitions (SPEC §8): the month split by partner so that a run holds one partition's lines,
//! rows and outputs at a time, whatever the month's size.
//!
//! A partner's partition is a fixed function of its id, the same on every machine and release:
//! the FNV-1a hash (64 bits) of the id's UTF-8 bytes, modulo [`BUCKETS`], gives its bucket;
//! bucket `b` of `P` partitions is partition `b·P / BUCKETS` (contiguous runs of buckets). A
//! partition owns its partners' lines, vouchers, projects, balances and rejected lines, and
//! writes every output row of theirs. What crosses partitions travels as copies of lines
//! ([`Routing`]), each evaluated again where it is needed and its rows kept only by the owner of
//! their partner (`ARCHITECTURE.md` lists the flows):
//! - a reseller's line goes to the partition of every distributor linked to the reseller (the
//!   override it earns, and the distributor's cap, statement, explanation row and pools);
//! - for an order that a negative line claws back from, every negative line of the order goes
//!   to each partition owning a recipient of the order's pools (this cycle's lines' partners and
//!   their distributors, and the earlier cycles' recipients), and every positive line of the order
//!   to each partition owning one of its negative lines (whose fate depends on all the pools).
//!
//! A line's fate, its rows for a partner and a pool's clawbacks depend only on the line, the
//! master data and the order's pools, so each copy gives what the owner's own run gives.

use crate::chain::{CarriedRow, PriorBalances, PriorPool, StoredVoucher};
use crate::evaluate::OrdersById;
use crate::load::Bundle;
use crate::model::PartnerIdx;
use std::collections::{BTreeMap, BTreeSet};

/// Buckets of partner ids: partitions and shards are runs of buckets.
pub const BUCKETS: u32 = 4096;

/// The bucket of a partner id.
pub fn bucket(partner_id: &str) -> u32 {
    (crate::fnv::fnv1a(partner_id.as_bytes()) % u64::from(BUCKETS)) as u32
}

/// The partition (0-based, of `count`) that owns a partner id.
pub fn partition_of(partner_id: &str, count: u32) -> u32 {
    debug_assert!(count >= 1);
    (u64::from(bucket(partner_id)) * u64::from(count.max(1)) / u64::from(BUCKETS)) as u32
}

/// Which accepted lines each partition evaluates besides its own (by index in the bundle).
#[derive(Debug, Default)]
pub struct Routing {
    count: u32,
    /// The partition of each partner (by index).
    of_partner: Vec<u32>,
    /// Per partition, the other partitions' lines it evaluates, ascending.
    copies: Vec<Vec<u32>>,
}

impl Routing {
    /// The copies `bundle`'s lines need over `count` partitions, given the orders and the
    /// earlier cycles' pools of the orders its negative lines claw back from.
    pub fn new(
        bundle: &Bundle,
        orders: &OrdersById<'_>,
        prior_pools: &[PriorPool],
        count: u32,
    ) -> Routing {
        let of_partner: Vec<u32> = bundle
            .partners
            .iter()
            .map(|(_, p)| partition_of(&p.partner_id, count))
            .collect();
        let part = |p: PartnerIdx| of_partner[p.0 as usize];
        // A reseller's distributors' partitions (every link: which one holds on the trade date
        // is decided where the line is evaluated).
        let mut distributors: BTreeMap<PartnerIdx, BTreeSet<u32>> = BTreeMap::new();
        for link in &bundle.distributor_links {
            distributors
                .entry(link.reseller)
                .or_default()
                .insert(part(link.distributor));
        }
        let mut copies: Vec<BTreeSet<u32>> = vec![BTreeSet::new(); count as usize];
        let lines = &bundle.bill_lines;
        for (i, line) in lines.iter().enumerate() {
            for &d in distributors.get(&line.partner).into_iter().flatten() {
                copies[d as usize].insert(i as u32);
            }
        }
        // The orders negative lines claw back from: their negative lines and the partitions
        // owning those; then their positive lines and the partitions owning a recipient.
        let mut clawed: BTreeMap<&str, Clawed> = BTreeMap::new();
        for (i, line) in lines.iter().enumerate() {
            if line.is_negative()
                && let Some(order) = orders.original_order(line)
            {
                let c = clawed.entry(order).or_default();
                c.negatives.push(i as u32);
                c.owners.insert(part(line.partner));
            }
        }
        for (i, line) in lines.iter().enumerate() {
            if line.is_negative() {
                continue;
            }
            if let Some(c) = line.order_id.as_deref().and_then(|o| clawed.get_mut(o)) {
                c.positives.push(i as u32);
                c.recipients.insert(part(line.partner));
                c.recipients
                    .extend(distributors.get(&line.partner).into_iter().flatten());
            }
        }
        for pool in prior_pools {
            if let Some(c) = clawed.get_mut(pool.order_id.as_str()) {
                c.recipients.insert(partition_of(&pool.recipient, count));
            }
        }
        for c in clawed.values() {
            for &k in c.recipients.union(&c.owners) {
                copies[k as usize].extend(&c.negatives);
            }
            for &k in &c.owners {
                copies[k as usize].extend(&c.positives);
            }
        }
        let copies = copies
            .into_iter()
            .enumerate()
            .map(|(k, set)| {
                set.into_iter()
                    .filter(|&i| part(lines[i as usize].partner) != k as u32)
                    .collect()
            })
            .collect();
        Routing {
            count,
            of_partner,
            copies,
        }
    }

    pub fn count(&self) -> u32 {
        self.count
    }

    /// Partition `k`'s bundle: every partner, link, tag and code (it owns its own partners';
    /// see [`crate::load::Partners::owns`]), its partners' lines and the copies routed to it in
    /// the bundle's order, the orders they name, its partners' vouchers, projects, opening
    /// balances, withdrawals and rejected lines. The loader's rejects are not repeated here.
    pub fn bundle(&self, bundle: &Bundle, k: u32) -> Bundle {
        let owned: Vec<bool> = self.of_partner.iter().map(|&p| p == k).collect();
        let own = |p: PartnerIdx| owned[p.0 as usize];
        let copies = &self.copies[k as usize];
        let mut next_copy = copies.iter().peekable();
        let mut bill_lines = Vec::new();
        for (i, line) in bundle.bill_lines.iter().enumerate() {
            let copied = next_copy.next_if(|&&c| c as usize == i).is_some();
            if copied || own(line.partner) {
                bill_lines.push(line.clone());
            }
        }
        let named: BTreeSet<&str> = bill_lines
            .iter()
            .filter_map(|l: &crate::model::BillLine| l.order_id.as_deref())
            .collect();
        Bundle {
            partners: bundle.partners.owning(owned.clone()),
            codes: bundle.codes.clone(),
            rejected_lines: bundle
                .rejected_lines
                .iter()
                .filter(|r| partition_of(&r.partner_id, self.count) == k)
                .cloned()
                .collect(),
            orders: bundle
                .orders
                .iter()
                .filter(|o| named.contains(o.order_id.as_str()))
                .cloned()
                .collect(),
            bill_lines,
            vouchers: bundle
                .vouchers
                .iter()
                .filter(|v| own(v.partner))
                .cloned()
                .collect(),
            distributor_links: bundle.distributor_links.clone(),
            capability_tags: bundle.capability_tags.clone(),
            projects: bundle
                .projects
                .iter()
                .filter(|p| own(p.partner))
                .cloned()
                .collect(),
            opening_balances: bundle
                .opening_balances
                .iter()
                .filter(|b| own(b.partner))
                .cloned()
                .collect(),
            withdrawals: bundle
                .withdrawals
                .iter()
                .filter(|w| own(w.partner))
                .cloned()
                .collect(),
            rejects: Vec::new(),
            files: bundle.files.clone(),
        }
    }

    /// Whether partition `k` owns a partner id (one not in `partners.csv` too).
    pub fn owns(&self, k: u32, partner_id: &str) -> bool {
        partition_of(partner_id, self.count) == k
    }

    /// The rows earlier cycles credited to this cycle of partition `k`'s partners.
    pub fn carried(&self, k: u32, carried: &[CarriedRow]) -> Vec<CarriedRow> {
        carried
            .iter()
            .filter(|c| self.owns(k, &c.partner_id))
            .cloned()
            .collect()
    }

    /// Partition `k`'s partners' vouchers and balances from the state (applications applied
    /// earlier are ids, kept whole).
    pub fn prior_balances(
        &self,
        k: u32,
        vouchers: &[StoredVoucher],
        prior: &PriorBalances,
    ) -> (Vec<StoredVoucher>, PriorBalances) {
        let vouchers = vouchers
            .iter()
            .filter(|v| self.owns(k, &v.partner_id))
            .cloned()
            .collect();
        let balances = PriorBalances {
            lots: prior
                .lots
                .iter()
                .filter(|l| self.owns(k, &l.partner_id))
                .cloned()
                .collect(),
            carry: prior
                .carry
                .iter()
                .filter(|((p, _), _)| self.owns(k, p))
                .map(|(key, v)| (key.clone(), *v))
                .collect(),
            applied: prior.applied.clone(),
        };
        (vouchers, balances)
    }
}

/// An order some negative line claws back from.
#[derive(Debug, Default)]
struct Clawed {
    negatives: Vec<u32>,
    positives: Vec<u32>,
    /// Partitions owning a negative line of the order.
    owners: BTreeSet<u32>,
    /// Partitions owning a recipient of the order's pools.
    recipients: BTreeSet<u32>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partner_keeps_its_partition_and_partitions_are_runs_of_buckets() {
        // FNV-1a 64 of "P1": 0x08328707b4ec5a8c... any fixed value works; what matters is that
        // one partition is the whole range and that more partitions split the buckets in order.
        for id in ["P1", "P2", "reseller-77", "分销商"] {
            assert_eq!(partition_of(id, 1), 0);
            let b = bucket(id);
            assert!(b < BUCKETS);
            assert_eq!(partition_of(id, BUCKETS), b);
            assert_eq!(partition_of(id, 2), u32::from(b >= BUCKETS / 2));
        }
    }
}
