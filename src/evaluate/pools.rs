//! What each order earned, per (order, lever, recipient, currency): the pools refunds claw
//! back from. Earlier cycles' pools come from the state; this cycle's earn and override rows
//! are added recipient by recipient, in parallel; an index by order id finds a refund's pools.

use super::{
    Evaluation, ExternalRules, Kind, LedgerRow, PARTNERS_PER_WINDOW, PoolDelta, Prior, Rates,
    RuleRef,
};
use crate::calendar::Cycle;
use crate::load::Bundle;
use crate::model::{Currency, PartnerIdx};
use crate::rules::RuleSet;
use rayon::prelude::*;
use rust_decimal::Decimal;

/// Which pool a row belongs to: (order, lever, recipient, currency), with the order id's hash
/// first so that sorting and searching compare integers, and strings only on a tie.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct PoolKey<'a> {
    hash: u64,
    order: &'a str,
    lever: u16,
    partner: PartnerIdx,
    currency: Currency,
}

/// A fixed hash of an order id, FNV-1a: the same in every run and release, as it orders the
/// state's pool rows.
fn order_hash(order: &str) -> u64 {
    crate::fnv::fnv1a(order.as_bytes())
}

/// One pool of what an order earned: per (order, lever, recipient, currency).
#[derive(Debug, Clone)]
pub(crate) struct Pool<'a> {
    key: PoolKey<'a>,
    pub(crate) earned: Decimal,
    pub(crate) clawed: Decimal,
    /// The earliest earn or override row by (earned cycle, line id): its rate and rule apply.
    first: (Cycle, &'a str),
    pub(crate) rate: Option<Decimal>,
    pub(crate) rule: RuleRef,
    earned_now: Decimal,
    pub(crate) clawed_now: Decimal,
    /// This cycle's earliest row of the pool (index into the rows), or [`NO_ROW`].
    first_now: u32,
}

/// No row of this cycle.
pub(super) const NO_ROW: u32 = u32::MAX;

/// Every pool, recipient by recipient (partner index order, each by key), and an index of them
/// sorted by key: what a refund's original order earned is one range of the index.
#[derive(Debug)]
pub(crate) struct Pools<'a> {
    pub(super) pools: Vec<Pool<'a>>,
    /// (order-id hash, pool) sorted by the pools' keys.
    pub(super) index: Vec<(u64, u32)>,
    /// Earlier cycles' pools this cycle cannot use: their lever is gone from the rule set or
    /// their recipient from `partners.csv` (a refund of their order claws nothing from them).
    pub(super) unusable: usize,
}

impl<'a> Pools<'a> {
    /// The pools of `order`, in (lever, recipient, currency) order.
    pub(crate) fn of_order(&self, order: &str) -> Vec<usize> {
        let hash = order_hash(order);
        // The hash decides nearly every step of the search; a pool (a random place in a large
        // vector) is read only where hashes are equal.
        let order_of = |i: u32| self.pools[i as usize].key.order;
        let start = self
            .index
            .partition_point(|&(h, i)| h < hash || (h == hash && order_of(i) < order));
        self.index[start..]
            .iter()
            .take_while(|&&(h, i)| h == hash && order_of(i) == order)
            .map(|&(_, i)| i as usize)
            .collect()
    }

    pub(crate) fn get_mut(&mut self, i: usize) -> Option<&mut Pool<'a>> {
        self.pools.get_mut(i)
    }

    pub(crate) fn get(&self, i: usize) -> Option<&Pool<'a>> {
        self.pools.get(i)
    }
}

impl Pool<'_> {
    pub(crate) fn lever(&self) -> u16 {
        self.key.lever
    }
    pub(crate) fn recipient(&self) -> PartnerIdx {
        self.key.partner
    }
    pub(crate) fn currency(&self) -> Currency {
        self.key.currency
    }
}

/// What each order earned, per (lever, recipient, currency): earlier cycles' pools from the
/// state, then this cycle's earn and override rows. Every row of a pool has the pool's
/// recipient, so pools are built recipient by recipient (a window of partners in parallel,
/// each from its own rows), then indexed by key for the refunds.
pub(super) fn build_pools<'a>(
    bundle: &'a Bundle,
    rules: &'a RuleSet,
    prior: &'a Prior,
    rows: &[LedgerRow],
    rates: &Rates,
    external_rules: &mut ExternalRules,
) -> Pools<'a> {
    let lines = &bundle.bill_lines;
    let partners = bundle.partners.len();
    let (mut prior_of, prior_count) =
        prior_pools_by_recipient(bundle, rules, prior, external_rules);
    let unusable = prior.pools.len() - prior_count;

    // This cycle's earn and override rows with an order, by recipient.
    let order_of = |i: u32| {
        let row = &rows[i as usize];
        match (row.line.get(), row.kind) {
            (Some(l), Kind::Earn | Kind::Override) => lines[l as usize].order_id.as_deref(),
            _ => None,
        }
    };
    let earning = crate::group::Grouped::new(partners, rows.len(), |i| {
        order_of(i as u32).map(|_| rows[i].partner.0 as usize)
    });
    let first_key = |i: u32| {
        let row = &rows[i as usize];
        let line = row
            .line
            .get()
            .map_or("", |l| lines[l as usize].line_id.as_str());
        (row.earned_cycle, line)
    };
    let one_recipient = |p: u32, prior: Vec<Pool<'a>>| -> Vec<Pool<'a>> {
        // (key, first-row key, row), sorted: each run of equal keys is one pool, its first
        // element the pool's earliest row of this cycle.
        let items: Vec<(PoolKey<'a>, (Cycle, &'a str), u32)> = earning
            .of(p)
            .iter()
            .filter_map(|&i| {
                let order = order_of(i)?;
                let row = &rows[i as usize];
                Some((
                    PoolKey {
                        hash: order_hash(order),
                        order,
                        lever: row.lever,
                        partner: row.partner,
                        currency: row.currency,
                    },
                    first_key(i),
                    i,
                ))
            })
            .collect();
        merge_recipient(items, prior, rows, rates)
    };
    let mut pools: Vec<Pool<'a>> = Vec::with_capacity(
        prior_count
            + (0..partners as u32)
                .map(|p| earning.of(p).len())
                .sum::<usize>(),
    );
    let recipients: Vec<u32> = (0..partners as u32).collect();
    for window in recipients.chunks(PARTNERS_PER_WINDOW) {
        let priors: Vec<Vec<Pool<'a>>> = window
            .iter()
            .map(|&p| std::mem::take(&mut prior_of[p as usize]))
            .collect();
        let built: Vec<Vec<Pool<'a>>> = window
            .par_iter()
            .zip(priors)
            .map(|(&p, prior)| one_recipient(p, prior))
            .collect();
        for b in built {
            pools.extend(b);
        }
    }
    let mut index: Vec<(u64, u32)> = pools
        .iter()
        .enumerate()
        .map(|(i, p)| (p.key.hash, i as u32))
        .collect();
    index.par_sort_unstable_by(|a, b| {
        a.0.cmp(&b.0)
            .then_with(|| pools[a.1 as usize].key.cmp(&pools[b.1 as usize].key))
    });
    Pools {
        pools,
        index,
        unusable,
    }
}

/// Earlier cycles' pools, by recipient (partner index), and how many there are. A pool's rule
/// is today's rule of that id if the lever still has it, else the earlier id, kept once.
fn prior_pools_by_recipient<'a>(
    bundle: &'a Bundle,
    rules: &'a RuleSet,
    prior: &'a Prior,
    external_rules: &mut ExternalRules,
) -> (Vec<Vec<Pool<'a>>>, usize) {
    let partners = bundle.partners.len();
    let mut prior_of: Vec<Vec<Pool<'a>>> = vec![Vec::new(); partners];
    let mut prior_count = 0;
    for p in &prior.pools {
        let (Some(lever), Some((partner, _))) = (
            rules.lever_index(&p.lever),
            bundle.partners.get(&p.recipient),
        ) else {
            // Counted by the caller: a refund of this order cannot claw this pool back.
            continue;
        };
        let currency = p.currency;
        let rule = match rules.levers[lever]
            .rules
            .iter()
            .position(|r| r.id == p.rule_id)
        {
            Some(r) => RuleRef::rule(r),
            None => external_rules.add(&p.rule_id),
        };
        prior_count += 1;
        prior_of[partner.0 as usize].push(Pool {
            key: PoolKey {
                hash: order_hash(&p.order_id),
                order: p.order_id.as_str(),
                lever: lever as u16,
                partner,
                currency,
            },
            earned: p.earned,
            clawed: p.clawed,
            first: (p.first_cycle, p.first_line.as_str()),
            rate: p.rate,
            rule,
            earned_now: Decimal::ZERO,
            clawed_now: Decimal::ZERO,
            first_now: NO_ROW,
        });
    }

    (prior_of, prior_count)
}

/// One recipient's pools: this cycle's rows `items` (pool key, first-row key, row), one run of
/// equal keys a pool whose first element is its earliest row of this cycle, merged with its
/// earlier cycles' pools `prior` by key.
fn merge_recipient<'a>(
    mut items: Vec<(PoolKey<'a>, (Cycle, &'a str), u32)>,
    mut prior: Vec<Pool<'a>>,
    rows: &[LedgerRow],
    rates: &Rates,
) -> Vec<Pool<'a>> {
    items.sort_unstable();
    prior.sort_unstable_by_key(|pool| pool.key);
    let mut out: Vec<Pool<'a>> = Vec::with_capacity(prior.len() + items.len());
    let mut prior = prior.into_iter().peekable();
    let mut k = 0;
    while k < items.len() {
        let (key, first, earliest) = items[k];
        let mut earned = Decimal::ZERO;
        while k < items.len() && items[k].0 == key {
            earned += rows[items[k].2 as usize].amount;
            k += 1;
        }
        while let Some(old) = prior.next_if(|old| old.key < key) {
            out.push(old);
        }
        let row = &rows[earliest as usize];
        // A pool of both keeps the earlier cycles' sums and the earliest first row.
        let mut pool = match prior.next_if(|old| old.key == key) {
            Some(mut old) => {
                old.earned += earned;
                if first < old.first {
                    old.first = first;
                    old.rate = rates.get(row.rate);
                    old.rule = row.rule;
                }
                old
            }
            None => Pool {
                key,
                earned,
                clawed: Decimal::ZERO,
                first,
                rate: rates.get(row.rate),
                rule: row.rule,
                earned_now: Decimal::ZERO,
                clawed_now: Decimal::ZERO,
                first_now: NO_ROW,
            },
        };
        pool.earned_now = earned;
        pool.first_now = earliest;
        out.push(pool);
    }
    out.extend(prior);
    out
}

impl<'a> Evaluation<'a> {
    /// Earlier cycles' pools this cycle could not use (see [`Pools::unusable`]).
    pub fn unusable_prior_pools(&self) -> usize {
        self.pools.unusable
    }

    /// The pools this cycle changed, as indices for [`Evaluation::pool_delta`], in the order
    /// the state stores them: by the FNV-1a hash of the order id, then the order id (then the
    /// lever, recipient and currency), so a later cycle finds an order's pools by key. The
    /// refunds' index is in that order already: nothing is sorted again.
    /// In a partition's evaluation, only the pools of recipients it owns.
    pub fn changed_pools_by_order(&self, partners: &crate::load::Partners) -> Vec<u32> {
        let pools = &self.pools.pools;
        self.pools
            .index
            .iter()
            .map(|&(_, i)| i)
            .filter(|&i| {
                let p = &pools[i as usize];
                (!p.earned_now.is_zero() || !p.clawed_now.is_zero() || p.first_now != NO_ROW)
                    && partners.owns(p.key.partner)
            })
            .collect()
    }

    /// What this cycle added to pool `i` (of [`Evaluation::changed_pools_by_order`]), by name,
    /// for the state store.
    pub fn pool_delta(&self, bundle: &'a Bundle, rules: &'a RuleSet, i: u32) -> PoolDelta<'_> {
        let p = &self.pools.pools[i as usize];
        let lever = &rules.levers[p.key.lever as usize];
        let first = (p.first_now != NO_ROW).then(|| {
            let row = &self.rows[p.first_now as usize];
            let line = row
                .line
                .get()
                .map_or("", |l| bundle.bill_lines[l as usize].line_id.as_str());
            let id = self.rule_id(rules, row);
            (row.earned_cycle, line, self.rate(row), id)
        });
        PoolDelta {
            order_id: p.key.order,
            lever: lever.name.as_str(),
            recipient: bundle.partners.at(p.key.partner).partner_id.as_str(),
            currency: p.key.currency,
            earned: p.earned_now,
            clawed: p.clawed_now,
            first,
        }
    }

    /// The lever's rank in the rule set and the recipient's in `partners.csv` of pool `i`: with
    /// its order id, what orders the state's pool rows after the hash.
    pub fn pool_ranks(&self, i: u32) -> (u16, u32) {
        let key = &self.pools.pools[i as usize].key;
        (key.lever, key.partner.0)
    }

    /// Frees the pools once refunds are matched and [`Evaluation::pool_delta`]s were taken.
    pub fn free_pools(&mut self) {
        self.pools = Pools {
            pools: Vec::new(),
            index: Vec::new(),
            unusable: self.pools.unusable,
        };
    }
}
