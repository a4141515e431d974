//! Micro-benchmarks of the loader's and writer's hot paths (divan). Run: `cargo bench --bench hot_paths`.
//! Whole-run figures against DuckDB come from `benches/anchor.sh`.

use incentives::calendar::{Cycle, parse_instant};
use incentives::csv_field::push_csv_field;
use incentives::generate::{GenerateConfig, generate};
use incentives::load::load_bundle;
use incentives::money::parse_decimal;
use std::hint::black_box;

fn main() {
    divan::main();
}

#[divan::bench(args = ["0", "1005.70", "-1200.00", "0.12345678", "999999999999.99999999"])]
fn decimal(text: &str) -> bool {
    parse_decimal(black_box(text), 8).is_ok()
}

#[divan::bench(args = ["2026-10-31T16:05:00Z", "2026-11-01T00:05:00+08:00"])]
fn instant(text: &str) -> bool {
    parse_instant(black_box(text)).is_some()
}

/// One CSV field appended, as the writer does for every text cell: a line id, a rule-set hash, an
/// explanation's paragraph (none needs quotes), and one that does.
#[divan::bench(args = [
    "L202610000078901",
    "2c363887e5f83a39210e46d2f9a8ea30e5c21b61c6e31594a1882c982c4329dc",
    "In cycle 2026-10, customer C00000000 of P00000 consumed 16127417.33661725 CNY and was refunded -995634.86709668. 16127417.33661725 earned nothing (adjustment 86127.1099535; domain_registration 538209.19565109). Incentive credited this cycle: 0.00 = 0.00 earned now + 0.00 carried in + 0.00 clawed back.",
    "Partner 1, \"Co.\" Ltd",
])]
fn csv_field(bencher: divan::Bencher, field: &str) {
    let mut out = String::with_capacity(1024);
    bencher.bench_local(|| {
        out.clear();
        push_csv_field(&mut out, black_box(field));
        out.len()
    });
}

/// Loading and validating a generated bundle of 50,000 lines (all nine files).
#[divan::bench(sample_count = 10)]
fn load_50k_lines(bencher: divan::Bencher) {
    let dir = tempfile::tempdir().expect("temp dir");
    let cycle: Cycle = "2026-10".parse().expect("cycle");
    let config = GenerateConfig {
        cycle,
        lines: 50_000,
        seed: 1,
        out: dir.path().to_path_buf(),
        bad_rows_ppm: 0,
        partners: None,
        cycles: 1,
        chain_start: cycle,
        chain_index: 0,
        customers: None,
        top_share_ppm: 0,
    };
    generate(&config).expect("bundle generated");
    bencher.bench(|| {
        load_bundle(black_box(dir.path()), cycle)
            .expect("bundle loads")
            .bill_lines
            .len()
    });
}
