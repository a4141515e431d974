//! What each order earned, stored by key so a cycle reads only what its refunds name (SPEC §8:
//! neither memory nor time grows with the chain's history).
//!
//! Each cycle's changes to the pools (what an (order, lever, recipient, currency) pool earned and
//! had clawed back in that cycle, and its earliest row of the cycle) are stored by the FNV-1a
//! hash of the order id (`crate::fnv`), then the order id, in parts of [`POOL_PART_ROWS`] rows
//! (`pool_parts`: one SQLite row per part, compressed CSV as in `bulk.rs`, with the part's first
//! and last hash). A later cycle asks for the orders its refunds and negative lines claw back
//! from: only the parts whose hash range holds one of theirs are read (at most one part per
//! order and cycle), and only those orders' rows kept.

use super::bulk;
use super::error::StateError;
use super::{currency_of, cycle, dec, sql};
use crate::calendar::Cycle;
use crate::chain::{PoolDelta, PriorPool};
use crate::fnv::fnv1a;
use rusqlite::{Connection, Transaction, params};
use rust_decimal::Decimal;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Rows per stored part: small enough that a refund of one order reads little, large enough
/// that the part index stays a few thousand rows a year at a million lines a month.
pub const POOL_PART_ROWS: usize = 4096;

/// Columns of a stored pool part: one pool's change in the cycle that wrote it.
pub(super) const POOL_COLUMNS: &[&str] = &[
    "order_id",
    "lever",
    "recipient_id",
    "currency",
    "earned",
    "clawed",
    "first_cycle",
    "first_line_id",
    "first_rate",
    "first_rule_id",
];

/// One stored part: its rows, compressed, and the range of order-id hashes it holds.
struct PoolPart {
    part: bulk::Part,
    first_hash: u64,
    last_hash: u64,
}

/// What the cycle changed in the pools of what orders earned, encoded for the commit (made while
/// the outputs are written, before the lines are freed): each part shelved as it is made, with
/// the range of order-id hashes it holds.
pub struct PoolRows {
    parts: Vec<(bulk::Shelved, u64, u64)>,
    shelf: bulk::Shelf,
}

impl PoolRows {
    /// No rows yet; their parts will be shelved in `dir` (the run's spill folder).
    fn new(dir: Option<&Path>) -> PoolRows {
        PoolRows {
            parts: Vec::new(),
            shelf: bulk::Shelf::new(dir),
        }
    }

    /// Adds the next part, in key order.
    fn push(&mut self, p: PoolPart) -> Result<(), StateError> {
        debug_assert!(
            self.parts
                .last()
                .is_none_or(|&(_, _, last)| last <= p.first_hash)
        );
        let at = self.shelf.put(&p.part)?;
        self.parts.push((at, p.first_hash, p.last_hash));
        Ok(())
    }

    pub fn len(&self) -> u64 {
        self.parts.iter().map(|(at, _, _)| at.rows).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.parts.is_empty()
    }
}

/// Builds one part from records in key order.
struct PartBuilder {
    enc: bulk::PartsEncoder,
    first_hash: Option<u64>,
    last_hash: u64,
    rows: u64,
}

impl PartBuilder {
    fn new() -> PartBuilder {
        PartBuilder {
            enc: bulk::PartsEncoder::new(POOL_COLUMNS),
            first_hash: None,
            last_hash: 0,
            rows: 0,
        }
    }

    fn push(&mut self, record: [&str; 10]) -> Result<(), StateError> {
        let hash = fnv1a(record[0].as_bytes());
        debug_assert!(self.rows == 0 || self.last_hash <= hash);
        self.first_hash.get_or_insert(hash);
        self.last_hash = hash;
        self.rows += 1;
        self.enc.row(record)
    }

    fn finish(self) -> Result<Option<PoolPart>, StateError> {
        let parts = self.enc.finish()?;
        debug_assert!(
            parts.len() <= 1,
            "a pool part holds at most POOL_PART_ROWS rows"
        );
        Ok(parts
            .into_iter()
            .next()
            .zip(self.first_hash)
            .map(|(part, first_hash)| PoolPart {
                part,
                first_hash,
                last_hash: self.last_hash,
            }))
    }
}

/// Encodes `count` pool changes given by `deltas(range)` in key order (see the module), a part
/// per [`POOL_PART_ROWS`] of them, parts in parallel and kept in order: the parts depend on the
/// changes only, not on the thread count.
pub fn encode_pools<'a, I>(
    dir: Option<&Path>,
    count: usize,
    deltas: impl Fn(std::ops::Range<usize>) -> I + Sync,
) -> Result<PoolRows, StateError>
where
    I: Iterator<Item = PoolDelta<'a>>,
{
    use rayon::prelude::*;
    let slices: Vec<std::ops::Range<usize>> = (0..count.div_ceil(POOL_PART_ROWS))
        .map(|k| k * POOL_PART_ROWS..((k + 1) * POOL_PART_ROWS).min(count))
        .collect();
    let parts: Vec<Result<Option<PoolPart>, StateError>> = slices
        .into_par_iter()
        .map(|r| encode_part(deltas(r)))
        .collect();
    let mut all = PoolRows::new(dir);
    for part in parts {
        if let Some(part) = part? {
            all.push(part)?;
        }
    }
    Ok(all)
}

fn encode_part<'a>(
    pools: impl Iterator<Item = PoolDelta<'a>>,
) -> Result<Option<PoolPart>, StateError> {
    let mut part = PartBuilder::new();
    let mut text = DeltaText::default();
    for p in pools {
        part.push(text.record(&p))?;
    }
    part.finish()
}

/// A pool change's stored columns as text, in buffers reused from row to row.
#[derive(Default)]
struct DeltaText {
    earned: String,
    clawed: String,
    first_cycle: String,
    first_rate: String,
}

impl DeltaText {
    fn record<'s>(&'s mut self, p: &'s PoolDelta<'_>) -> [&'s str; 10] {
        use std::fmt::Write as _;
        self.earned.clear();
        let _ = write!(self.earned, "{}", p.earned);
        self.clawed.clear();
        let _ = write!(self.clawed, "{}", p.clawed);
        self.first_cycle.clear();
        self.first_rate.clear();
        let (fl, frule) = match &p.first {
            Some((c, l, r, rule)) => {
                let _ = write!(self.first_cycle, "{c}");
                if let Some(r) = r {
                    let _ = write!(self.first_rate, "{r}");
                }
                (*l, rule.as_ref())
            }
            None => ("", ""),
        };
        [
            p.order_id,
            p.lever,
            p.recipient,
            p.currency.as_str(),
            &self.earned,
            &self.clawed,
            &self.first_cycle,
            fl,
            &self.first_rate,
            frule,
        ]
    }
}

/// Columns of a partition's spilled pool changes: the key the state's order needs (order-id
/// hash as 16 hex digits, the lever's and the recipient's ranks in the rule set and
/// `partners.csv`), then the stored columns.
const SPILL_KEY: &[&str] = &["hash", "lever_rank", "recipient_rank"];

/// Writes a partition's pool changes (in the state's order, with their lever's and recipient's
/// ranks) to `path`, for [`merge_pools`].
pub fn spill_pools<'a>(
    path: &std::path::Path,
    deltas: impl Iterator<Item = ((u16, u32), PoolDelta<'a>)>,
) -> Result<(), StateError> {
    let io = |e: csv::Error| StateError::Io(format!("{}: {e}", path.display()));
    let file = std::fs::File::create(path)
        .map_err(|e| StateError::Io(format!("{}: {e}", path.display())))?;
    let mut w = csv::Writer::from_writer(crate::spill::writer(file));
    let header: Vec<&str> = SPILL_KEY.iter().chain(POOL_COLUMNS).copied().collect();
    w.write_record(&header).map_err(io)?;
    let mut text = DeltaText::default();
    for ((lever, recipient), p) in deltas {
        let hash = format!("{:016x}", fnv1a(p.order_id.as_bytes()));
        let (lever, recipient) = (lever.to_string(), recipient.to_string());
        let record = text.record(&p);
        w.write_record([hash.as_str(), &lever, &recipient].iter().chain(&record))
            .map_err(io)?;
    }
    let spill = w.into_inner().map_err(|e| io(e.into_error().into()))?;
    crate::spill::finish(spill).map_err(|e| StateError::Io(format!("{}: {e}", path.display())))
}

/// The partitions' spilled pool changes merged into the state's parts: by order-id hash, order
/// id, lever, recipient and currency, as one evaluation of the whole cycle orders them.
pub fn merge_pools(
    dir: Option<&Path>,
    paths: Vec<std::path::PathBuf>,
) -> Result<PoolRows, StateError> {
    use crate::spill::KeyPart::{Count, Text};
    const ORDER: crate::spill::Order = &[Text(0), Text(3), Count(1), Count(2), Text(6)];
    let mut merge = crate::spill::Merge::open(paths, ORDER).map_err(StateError::Io)?;
    let mut all = PoolRows::new(dir);
    let mut part = PartBuilder::new();
    while let Some(r) = merge.next_record().map_err(StateError::Io)? {
        let field = |i: usize| r.get(SPILL_KEY.len() + i).unwrap_or("");
        part.push(std::array::from_fn(field))?;
        if part.rows as usize == POOL_PART_ROWS {
            let full = std::mem::replace(&mut part, PartBuilder::new());
            if let Some(p) = full.finish()? {
                all.push(p)?;
            }
        }
    }
    if let Some(p) = part.finish()? {
        all.push(p)?;
    }
    Ok(all)
}

/// Stores cycle `m`'s parts (its earlier parts deleted by the caller's transaction).
pub(super) fn store(tx: &Transaction<'_>, m: &str, pools: PoolRows) -> Result<(), StateError> {
    let mut insert = tx
        .prepare(
            "INSERT INTO pool_parts (cycle, part, first_hash, last_hash, rows, data)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )
        .map_err(sql)?;
    for (n, (at, first_hash, last_hash)) in pools.parts.iter().enumerate() {
        insert
            .execute(params![
                m,
                n as i64,
                // SQLite integers are signed: the hash's 64 bits as they are.
                *first_hash as i64,
                *last_hash as i64,
                at.rows as i64,
                pools.shelf.take(at)?
            ])
            .map_err(sql)?;
    }
    Ok(())
}

/// What cycles before `m` left in the pools of the orders `wanted`, summed over those cycles:
/// only the parts whose order-id range holds one of them are read.
pub(super) fn prior_pools(
    conn: &Connection,
    m: Cycle,
    wanted: &BTreeSet<&str>,
) -> Result<Vec<PriorPool>, StateError> {
    Ok(read_pools(conn, m, wanted)?.0)
}

/// [`prior_pools`], and how many parts were read.
fn read_pools(
    conn: &Connection,
    m: Cycle,
    wanted: &BTreeSet<&str>,
) -> Result<(Vec<PriorPool>, usize), StateError> {
    let mut pools: BTreeMap<(String, String, String, String), PriorPool> = BTreeMap::new();
    if wanted.is_empty() {
        return Ok((Vec::new(), 0));
    }
    let mut hashes: Vec<u64> = wanted.iter().map(|o| fnv1a(o.as_bytes())).collect();
    hashes.sort_unstable();
    let mut index = conn
        .prepare(
            "SELECT cycle, part, first_hash, last_hash FROM pool_parts
             WHERE cycle < ?1 ORDER BY cycle, part",
        )
        .map_err(sql)?;
    let mut needed: Vec<(String, i64)> = Vec::new();
    let mut rows = index.query(params![m.to_string()]).map_err(sql)?;
    while let Some(r) = rows.next().map_err(sql)? {
        let first = r.get::<_, i64>(2).map_err(sql)? as u64;
        let last = r.get::<_, i64>(3).map_err(sql)? as u64;
        let at = hashes.partition_point(|&h| h < first);
        if hashes.get(at).is_some_and(|&h| h <= last) {
            needed.push((r.get(0).map_err(sql)?, r.get(1).map_err(sql)?));
        }
    }
    let mut read = conn
        .prepare("SELECT data FROM pool_parts WHERE cycle = ?1 AND part = ?2")
        .map_err(sql)?;
    let parts = needed.len();
    for (c, part) in needed {
        let data: Vec<u8> = read
            .query_row(params![c, part], |r| r.get(0))
            .map_err(sql)?;
        bulk::decode_part(&data, POOL_COLUMNS, |r| {
            if wanted.contains(&r[0]) {
                add_pool_row(&mut pools, r, m)?;
            }
            Ok(())
        })?;
    }
    Ok((pools.into_values().collect(), parts))
}

/// Adds one stored row to its pool: sums earned and clawed, keeps the earliest first row.
fn add_pool_row(
    pools: &mut BTreeMap<(String, String, String, String), PriorPool>,
    r: &csv::StringRecord,
    m: Cycle,
) -> Result<(), StateError> {
    let text = |i: usize| r[i].to_string();
    let earned = dec(&r[4])?;
    let clawed = dec(&r[5])?;
    let first = if r[6].is_empty() {
        None
    } else {
        Some((cycle(&r[6])?, text(7)))
    };
    let rate = (!r[8].is_empty()).then(|| dec(&r[8])).transpose()?;
    let rule = text(9);
    let currency = currency_of(&r[3])?;
    let pool = pools
        .entry((text(0), text(1), text(2), text(3)))
        .or_insert_with(|| PriorPool {
            order_id: text(0),
            lever: text(1),
            recipient: text(2),
            currency,
            earned: Decimal::ZERO,
            clawed: Decimal::ZERO,
            first_cycle: first.as_ref().map_or(m, |f| f.0),
            first_line: first.as_ref().map_or_else(String::new, |f| f.1.clone()),
            rate,
            rule_id: rule.clone(),
        });
    pool.earned += earned;
    pool.clawed += clawed;
    if let Some((c, line)) = first
        && (pool.first_line.is_empty()
            || (c, line.as_str()) < (pool.first_cycle, pool.first_line.as_str()))
    {
        pool.first_cycle = c;
        pool.first_line = line;
        pool.rate = rate;
        pool.rule_id = rule;
    }
    Ok(())
}

/// Schema 2 kept each cycle's pool changes in `cycle_rows` (`order_earnings`) in the run's pool
/// order: each cycle's rows are sorted by key into `pool_parts`, inside the caller's transaction.
pub(super) fn migrate_from_v2(tx: &Transaction<'_>) -> Result<(), StateError> {
    let cycles: Vec<String> = {
        let mut stmt = tx
            .prepare(
                "SELECT DISTINCT cycle FROM cycle_rows WHERE name = 'order_earnings' ORDER BY cycle",
            )
            .map_err(sql)?;
        let rows = stmt.query_map([], |r| r.get(0)).map_err(sql)?;
        rows.collect::<Result<_, _>>().map_err(sql)?
    };
    for c in cycles {
        // One record per pool row, its fields in one buffer (a cycle's rows are held once here).
        let mut records: Vec<csv::StringRecord> = Vec::new();
        {
            let mut stmt = tx
                .prepare(
                    "SELECT data FROM cycle_rows WHERE name = 'order_earnings' AND cycle = ?1
                     ORDER BY credit_cycle, part",
                )
                .map_err(sql)?;
            let mut rows = stmt.query(params![c]).map_err(sql)?;
            while let Some(r) = rows.next().map_err(sql)? {
                let data: Vec<u8> = r.get(0).map_err(sql)?;
                bulk::decode_part(&data, POOL_COLUMNS, |rec| {
                    records.push(rec.clone());
                    Ok(())
                })?;
            }
        }
        fn key(r: &csv::StringRecord) -> (u64, [&str; 4]) {
            (fnv1a(r[0].as_bytes()), [&r[0], &r[1], &r[2], &r[3]])
        }
        records.sort_by(|a, b| key(a).cmp(&key(b)));
        let mut parts = PoolRows::new(None);
        for chunk in records.chunks(POOL_PART_ROWS) {
            let mut part = PartBuilder::new();
            for rec in chunk {
                let f = |i: usize| &rec[i];
                part.push([f(0), f(1), f(2), f(3), f(4), f(5), f(6), f(7), f(8), f(9)])?;
            }
            if let Some(p) = part.finish()? {
                parts.push(p)?;
            }
        }
        store(tx, &c, parts)?;
    }
    tx.execute("DELETE FROM cycle_rows WHERE name = 'order_earnings'", [])
        .map_err(sql)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Currency;
    use std::borrow::Cow;

    fn conn() -> Connection {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(super::super::SCHEMA).unwrap();
        conn
    }

    fn cy(s: &str) -> Cycle {
        s.parse().unwrap()
    }

    fn delta<'a>(
        order: &'a str,
        earned: &str,
        clawed: &str,
        first: Option<&'a str>,
    ) -> PoolDelta<'a> {
        PoolDelta {
            order_id: order,
            lever: "resale",
            recipient: "P1",
            currency: Currency::parse("CNY").unwrap(),
            earned: earned.parse().unwrap(),
            clawed: clawed.parse().unwrap(),
            first: first.map(|l| {
                (
                    cy("2026-09"),
                    l,
                    Some("0.05".parse().unwrap()),
                    Cow::Borrowed("r1"),
                )
            }),
        }
    }

    /// Cycle `m` stores `deltas` (already in key order) as the commit does.
    fn commit(conn: &mut Connection, m: &str, deltas: &[PoolDelta<'_>]) {
        let rows = encode_pools(None, deltas.len(), |r| deltas[r].iter().cloned()).unwrap();
        let tx = conn.transaction().unwrap();
        store(&tx, m, rows).unwrap();
        tx.commit().unwrap();
    }

    #[test]
    fn a_cycle_reads_only_the_parts_that_hold_the_orders_its_refunds_name() {
        let mut c = conn();
        // 2026-09: 10,000 orders earned 1.00 each: 3 parts (4,096 + 4,096 + 1,808), in hash order.
        let mut ids: Vec<String> = (0..10_000).map(|i| format!("O{i:05}")).collect();
        ids.sort_by_key(|o| fnv1a(o.as_bytes()));
        let sept: Vec<PoolDelta<'_>> = ids
            .iter()
            .map(|o| delta(o, "1.00", "0", Some("L1")))
            .collect();
        commit(&mut c, "2026-09", &sept);
        // 2026-10: O05000 clawed back 0.40 of it.
        commit(&mut c, "2026-10", &[delta("O05000", "0", "0.40", None)]);
        let parts: i64 = c
            .query_row("SELECT COUNT(*) FROM pool_parts", [], |r| r.get(0))
            .unwrap();
        assert_eq!(parts, 4);
        let wanted: BTreeSet<&str> = ["O05000"].into_iter().collect();
        let (pools, read) = read_pools(&c, cy("2026-11"), &wanted).unwrap();
        // One part of each cycle: the one whose hash range holds O05000's.
        assert_eq!(read, 2);
        assert_eq!(pools.len(), 1);
        let p = &pools[0];
        assert_eq!(p.order_id, "O05000");
        // 1.00 earned in 2026-09; 0.40 clawed in 2026-10.
        assert_eq!(
            (p.earned.to_string(), p.clawed.to_string()),
            ("1.00".into(), "0.40".into())
        );
        assert_eq!(
            (p.first_cycle, p.first_line.as_str(), p.rule_id.as_str()),
            (cy("2026-09"), "L1", "r1")
        );
        // Run as 2026-10, the cycle's own rows are not prior: 0.40 not yet clawed.
        let (pools, _) = read_pools(&c, cy("2026-10"), &wanted).unwrap();
        assert_eq!(pools[0].clawed, Decimal::ZERO);
        // An order never stored: at most one part a cycle read, nothing found.
        let none: BTreeSet<&str> = ["X-not-stored"].into_iter().collect();
        let (pools, read) = read_pools(&c, cy("2026-11"), &none).unwrap();
        assert!(pools.is_empty() && read <= 2, "{read}");
        // Nothing named, nothing read.
        assert_eq!(
            read_pools(&c, cy("2026-11"), &BTreeSet::new()).unwrap().1,
            0
        );
    }

    #[test]
    fn a_schema_2_state_is_migrated_into_parts_by_key() {
        let mut c = conn();
        // Schema 2: rows in the run's (hash) order, one part per cycle in cycle_rows.
        let mut enc = bulk::PartsEncoder::new(POOL_COLUMNS);
        for o in ["O3", "O1", "O2"] {
            enc.row([
                o, "resale", "P1", "CNY", "2.50", "0", "2026-09", "L", "0.05", "r1",
            ])
            .unwrap();
        }
        let part = enc.finish().unwrap().remove(0);
        c.execute(
            "INSERT INTO cycle_rows (cycle, name, credit_cycle, part, rows, data)
             VALUES ('2026-09', 'order_earnings', '', 0, 3, ?1)",
            params![part.data],
        )
        .unwrap();
        let tx = c.transaction().unwrap();
        migrate_from_v2(&tx).unwrap();
        tx.commit().unwrap();
        let left: i64 = c
            .query_row("SELECT COUNT(*) FROM cycle_rows", [], |r| r.get(0))
            .unwrap();
        assert_eq!(left, 0);
        let (first, last): (i64, i64) = c
            .query_row("SELECT first_hash, last_hash FROM pool_parts", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .unwrap();
        let mut hashes: Vec<u64> = ["O1", "O2", "O3"].map(|o| fnv1a(o.as_bytes())).to_vec();
        hashes.sort_unstable();
        assert_eq!((first as u64, last as u64), (hashes[0], hashes[2]));
        let wanted: BTreeSet<&str> = ["O2"].into_iter().collect();
        let pools = prior_pools(&c, cy("2026-10"), &wanted).unwrap();
        assert_eq!(pools.len(), 1);
        assert_eq!(pools[0].earned.to_string(), "2.50");
    }
}
