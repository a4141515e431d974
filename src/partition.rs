//! Partitions (SPEC §8): the month split by partner so that a run holds one partition's lines,
//! rows and outputs at a time, whatever the month's size.
//!
//! A partner's partition is a fixed function of its id, the same on every machine and release:
//! the FNV-1a hash (64 bits) of the id's UTF-8 bytes, modulo [`BUCKETS`], gives its bucket;
//! bucket `b` of `P` partitions is partition `b·P / BUCKETS` (contiguous runs of buckets). A
//! partition owns its partners' lines, vouchers, projects, balances and rejected lines, and
//! writes every output row of theirs. What crosses partitions travels as copies of lines
//! (`load::split`), each evaluated again where it is needed and its rows kept only by the owner of
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

use crate::chain::{CarriedRow, PriorBalances, StoredVoucher};

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

/// Bytes of `bill_lines.csv` a line takes, about (the generator's mix: 240).
const FILE_BYTES_PER_LINE: u64 = 240;

/// Bytes a line of a partition holds at the run's peak: the line, its rows and outcome, its
/// share of the pools, explanations and output buffers (measured: `BENCHMARKS.md`).
const PEAK_BYTES_PER_LINE: u64 = 450;

/// Partitions a run needs for a `bill_lines.csv` of `file_bytes` within `budget` bytes: one
/// partition's lines within a third of the budget (the rest: windows, buckets, master data, the
/// allocator's slack). 1 when the month fits whole.
pub fn count_for(file_bytes: u64, budget: u64) -> u32 {
    let lines = file_bytes / FILE_BYTES_PER_LINE;
    let per_partition = (budget / 3 / PEAK_BYTES_PER_LINE).max(1);
    lines.div_ceil(per_partition).clamp(1, u64::from(BUCKETS)) as u32
}

/// The rows earlier cycles credited to this cycle of partition `k`'s partners (of `count`).
pub fn carried(k: u32, count: u32, carried: &[CarriedRow]) -> Vec<CarriedRow> {
    carried
        .iter()
        .filter(|c| partition_of(&c.partner_id, count) == k)
        .cloned()
        .collect()
}

/// Partition `k`'s partners' vouchers and balances from the state (applications applied
/// earlier are ids, kept whole).
pub fn prior_balances(
    k: u32,
    count: u32,
    vouchers: &[StoredVoucher],
    prior: &PriorBalances,
) -> (Vec<StoredVoucher>, PriorBalances) {
    let owns = |partner_id: &str| partition_of(partner_id, count) == k;
    let vouchers = vouchers
        .iter()
        .filter(|v| owns(&v.partner_id))
        .cloned()
        .collect();
    let balances = PriorBalances {
        lots: prior
            .lots
            .iter()
            .filter(|l| owns(&l.partner_id))
            .cloned()
            .collect(),
        carry: prior
            .carry
            .iter()
            .filter(|((p, _), _)| owns(p))
            .map(|(key, v)| (key.clone(), *v))
            .collect(),
        applied: prior.applied.clone(),
    };
    (vouchers, balances)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_decides_the_partition_count_from_the_file_size() {
        const GIB: u64 = 1 << 30;
        // Nothing, or a month that fits: one partition (the whole month at once).
        assert_eq!(count_for(0, GIB), 1);
        assert_eq!(count_for(240 * 100_000, 2 * GIB), 1);
        // 10M lines of 240 bytes within 1GiB: a third of it is 357,913,941 bytes, 795,364
        // lines of 450 bytes; 10,000,000 / 795,364 = 12.6, so 13 partitions.
        assert_eq!(count_for(2_400_000_000, GIB), 13);
        // Within 2GiB: 1,590,728 lines a partition, 6.3, so 7.
        assert_eq!(count_for(2_400_000_000, 2 * GIB), 7);
        // Never more partitions than buckets.
        assert_eq!(count_for(u64::MAX, 256 << 20), BUCKETS);
    }

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
