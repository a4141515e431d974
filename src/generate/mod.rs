//! `incentives generate`: realistic synthetic cycle bundles at any size, for demos, tests and
//! benchmarks (SPEC §7). Deterministic per seed whatever the thread count: every line, order and
//! master-data row is a pure function of (seed, what it is, its index). Bill lines and orders are
//! streamed to disk in batches, so ten million lines never sit in memory.

mod lines;
mod world;

use crate::calendar::Cycle;
use crate::error::RunError;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::fs;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use world::World;

/// Lines generated per parallel task, and tasks per batch written in order.
const CHUNK_LINES: u64 = 8 * 1024;
const CHUNKS_PER_BATCH: u64 = 32;

/// Parts per million, so that which rows are made bad never depends on float rounding per row.
const PPM: u64 = 1_000_000;

const TAG_BAD: u64 = 10;

/// What `generate` records beside a bundle, and what `--previous` reads to make the next cycle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GeneratorRecord {
    pub seed: u64,
    pub cycle: String,
    pub lines: u64,
    pub partners: usize,
    pub customers: u64,
    pub bad_rows_ppm: u64,
    /// The chain's first cycle, and this cycle's position in the chain (0 = first).
    pub chain_start: String,
    pub chain_index: u32,
    /// Millionths of the lines that go to the largest partner (`--top-share`); 0: none, and the
    /// record is written as before.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub top_share_ppm: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// A generation request, resolved from the command line.
#[derive(Debug, Clone)]
pub struct GenerateConfig {
    pub cycle: Cycle,
    pub lines: u64,
    pub seed: u64,
    pub out: PathBuf,
    pub bad_rows_ppm: u64,
    pub partners: Option<usize>,
    /// Cycles to write (each in `out/<cycle>/` when more than one).
    pub cycles: u32,
    pub chain_start: Cycle,
    pub chain_index: u32,
    pub customers: Option<u64>,
    /// Millionths of the lines that go to the largest partner (0: none).
    pub top_share_ppm: u64,
}

impl GenerateConfig {
    /// The request for the cycle after the bundle in `previous` (its `generator.json`).
    pub fn after(previous: &Path) -> Result<GeneratorRecord, RunError> {
        let path = previous.join("generator.json");
        let text = fs::read_to_string(&path).map_err(|e| RunError::Usage(format!(
            "--previous {}: cannot read generator.json ({e}); give a folder written by `incentives generate`",
            previous.display()
        )))?;
        serde_json::from_str(&text).map_err(|e| {
            RunError::Usage(format!("{}: not a generator record: {e}", path.display()))
        })
    }
}

/// Writes the bundle(s); returns the folders written.
pub fn generate(config: &GenerateConfig) -> Result<Vec<PathBuf>, RunError> {
    let partners = config
        .partners
        .unwrap_or((config.lines / 2_000).max(8) as usize);
    let customers = config
        .customers
        .unwrap_or((config.lines / 20).max(partners as u64));
    let world = World::new(config.seed, partners, customers, config.chain_start)
        .with_top_share(config.top_share_ppm);
    let mut written = Vec::new();
    let mut cycle = config.cycle;
    for k in 0..config.cycles {
        let dir = if config.cycles > 1 {
            config.out.join(cycle.to_string())
        } else {
            config.out.clone()
        };
        let record = GeneratorRecord {
            seed: config.seed,
            cycle: cycle.to_string(),
            lines: config.lines,
            partners: world.partners.len(),
            customers: world.customers,
            bad_rows_ppm: config.bad_rows_ppm,
            chain_start: config.chain_start.to_string(),
            chain_index: config.chain_index + k,
            top_share_ppm: config.top_share_ppm,
        };
        write_cycle(&world, &record, cycle, &dir)?;
        written.push(dir);
        cycle = cycle.next();
    }
    Ok(written)
}

fn write_cycle(
    world: &World,
    record: &GeneratorRecord,
    cycle: Cycle,
    dir: &Path,
) -> Result<(), RunError> {
    let io = |path: &Path, e: std::io::Error| RunError::io(path.display(), e);
    fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
    let put = |name: &str, text: &str| {
        fs::write(dir.join(name), text).map_err(|e| io(&dir.join(name), e))
    };
    let k = record.chain_index;
    put("partners.csv", &world.partners_csv())?;
    put("distributor_links.csv", &world.links_csv())?;
    put("capability_tags.csv", &world.tags_csv())?;
    put("projects.csv", &world.projects_csv())?;
    put("vouchers.csv", &world.vouchers_csv(cycle, k))?;
    put("withdrawals.csv", &world.withdrawals_csv(cycle, k))?;
    let opening = dir.join("opening_balances.csv");
    if k == 0 {
        put("opening_balances.csv", &world.opening_balances_csv())?;
    } else if opening.exists() {
        fs::remove_file(&opening).map_err(|e| io(&opening, e))?;
    }

    let bills_path = dir.join("bill_lines.csv");
    let orders_path = dir.join("orders.csv");
    let create = |p: &Path| {
        fs::File::create(p)
            .map(|f| BufWriter::with_capacity(1 << 22, f))
            .map_err(|e| io(p, e))
    };
    let mut bills = create(&bills_path)?;
    let mut orders = create(&orders_path)?;
    bills.write_all(b"line_id,bill_cycle,partner_id,customer_id,sales_mode,market,region,service_type_code,resource_type_code,charge_mode,bill_type,trade_time,order_id,original_order_id,official_amount,discount_amount,payable_amount,coupon_amount,settlement_amount,currency\n").map_err(|e| io(&bills_path, e))?;
    orders.write_all(b"order_id,partner_id,customer_id,order_type,created_at,paid_at,amount,currency,project_id,original_order_id\n").map_err(|e| io(&orders_path, e))?;
    let mut planted = Vec::new();
    let cycle_key = u64::from(cycle.year() as u32) * 12 + u64::from(cycle.month());
    let batch_lines = CHUNK_LINES * CHUNKS_PER_BATCH;
    let mut batch_start = 0;
    while batch_start < record.lines {
        let batch_end = (batch_start + batch_lines).min(record.lines);
        let chunks: Vec<(String, String, Vec<lines::PlantedReject>)> = (batch_start..batch_end)
            .step_by(CHUNK_LINES as usize)
            .collect::<Vec<_>>()
            .into_par_iter()
            .map(|start| {
                let mut b = String::with_capacity(CHUNK_LINES as usize * 260);
                let mut o = String::with_capacity(CHUNK_LINES as usize * 60);
                let mut bad = Vec::new();
                for index in start..(start + CHUNK_LINES).min(batch_end) {
                    let line = lines::line(world, cycle, k, index);
                    let kind = (record.bad_rows_ppm > 0)
                        .then(|| {
                            use rand::Rng;
                            let mut rng = world::rng_for(world.seed, TAG_BAD, cycle_key, index);
                            (rng.random_range(0..PPM) < record.bad_rows_ppm)
                                .then(|| rng.random_range(0..5u32))
                        })
                        .flatten();
                    if let Some(p) = lines::write_line(world, &line, kind, &mut b, &mut o) {
                        bad.push(p);
                    }
                }
                (b, o, bad)
            })
            .collect();
        for (b, o, bad) in chunks {
            bills
                .write_all(b.as_bytes())
                .map_err(|e| io(&bills_path, e))?;
            orders
                .write_all(o.as_bytes())
                .map_err(|e| io(&orders_path, e))?;
            planted.extend(bad);
        }
        batch_start = batch_end;
    }
    bills.flush().map_err(|e| io(&bills_path, e))?;
    orders.flush().map_err(|e| io(&orders_path, e))?;

    let expected = dir.join("expected_rejects.csv");
    if record.bad_rows_ppm > 0 {
        let mut text = String::from("file,row,column,value,code\n");
        for p in &planted {
            text.push_str(&format!(
                "bill_lines.csv,{},{},{},{}\n",
                p.row, p.column, p.value, p.code
            ));
        }
        put("expected_rejects.csv", &text)?;
    } else if expected.exists() {
        fs::remove_file(&expected).map_err(|e| io(&expected, e))?;
    }
    let json = serde_json::to_string_pretty(record).map_err(|e| RunError::Io(e.to_string()))?;
    put("generator.json", &(json + "\n"))
}
