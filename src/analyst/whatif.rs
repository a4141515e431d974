//! `incentives whatif` (SPEC §10): what a proposed rule set would have paid in a closed cycle.
//! The cycle is evaluated again on its own inputs against its prior state, read-only
//! (`run::evaluate_read_only`); `paid` is read from the ledger its run published (through
//! polars), `proposed` is the same sum under the proposal, per partner × lever × currency.

use super::cycle::{PublishedCycle, decimals, texts};
use crate::error::RunError;
use crate::money::format_amount;
use crate::run::RunConfig;
use polars::prelude::*;
use rust_decimal::Decimal;
use std::collections::BTreeMap;
use std::path::Path;

/// The header of the file whatif writes (also how it knows a file of its own to replace).
pub const HEADER: &str = "partner_id,lever,currency,paid,proposed,difference";

/// Movers listed on the terminal.
const MOVERS: usize = 10;

/// One row of the comparison.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub partner_id: String,
    pub lever: String,
    pub currency: String,
    pub paid: Decimal,
    pub proposed: Decimal,
}

impl Row {
    pub fn difference(&self) -> Decimal {
        self.proposed - self.paid
    }
}

/// Σ amount of the published ledger per (partner, lever, currency): what the cycle's run wrote.
fn paid(cycle: &PublishedCycle) -> Result<BTreeMap<(String, String, String), Decimal>, RunError> {
    let lf = cycle
        .scan("ledger")?
        .group_by([col("partner_id"), col("lever"), col("currency")])
        .agg([col("amount").sum()]);
    let df = cycle.collect(lf)?;
    let (p, l, c) = (
        texts(&df, "partner_id")?,
        texts(&df, "lever")?,
        texts(&df, "currency")?,
    );
    let amounts = decimals(&df, "amount")?;
    Ok(p.into_iter()
        .zip(l)
        .zip(c)
        .zip(amounts)
        .map(|(((p, l), c), a)| ((p, l, c), a))
        .collect())
}

/// Runs whatif: writes `write_to` and returns the terminal's summary.
pub fn whatif(config: &RunConfig, write_to: &Path) -> Result<String, RunError> {
    check_target(write_to)?;
    // Stale, pending or unpublished: said once, as explain and report say it.
    // (No state at all is an error of its own, below.)
    if config.state.join("state.db").is_file() {
        crate::analyst::explain::warn_on_standing(&config.state, &config.out, config.cycle);
    }
    let published = PublishedCycle::open(&config.out, config.cycle)?;
    let proposal = crate::run::evaluate_read_only(config)?;
    let paid = paid(&published)?;
    let mut rows: BTreeMap<(String, String, String), Row> = BTreeMap::new();
    for (source, is_paid) in [(&paid, true), (&proposal.totals, false)] {
        for ((p, l, c), amount) in source {
            let row = rows
                .entry((p.clone(), l.clone(), c.clone()))
                .or_insert(Row {
                    partner_id: p.clone(),
                    lever: l.clone(),
                    currency: c.clone(),
                    paid: Decimal::ZERO,
                    proposed: Decimal::ZERO,
                });
            if is_paid {
                row.paid += amount;
            } else {
                row.proposed += amount;
            }
        }
    }
    let scale = |c: &str| {
        proposal
            .scales
            .get(c)
            .copied()
            .unwrap_or_else(|| published.scale(c))
    };
    let mut csv = String::from(HEADER);
    csv.push('\n');
    for r in rows.values() {
        let s = scale(&r.currency);
        let fields = [
            r.partner_id.clone(),
            r.lever.clone(),
            r.currency.clone(),
            format_amount(r.paid, s),
            format_amount(r.proposed, s),
            format_amount(r.difference(), s),
        ];
        for (i, f) in fields.iter().enumerate() {
            if i > 0 {
                csv.push(',');
            }
            crate::csv_field::push_csv_field(&mut csv, f);
        }
        csv.push('\n');
    }
    write_replacing_own(write_to, csv.as_bytes())?;
    Ok(summary(config, write_to, rows.values(), &scale))
}

/// Per currency: paid, proposed, difference; then the largest movers.
fn summary<'r>(
    config: &RunConfig,
    write_to: &Path,
    rows: impl Iterator<Item = &'r Row> + Clone,
    scale: &dyn Fn(&str) -> u32,
) -> String {
    use std::fmt::Write as _;
    let mut totals: BTreeMap<&str, (Decimal, Decimal)> = BTreeMap::new();
    for r in rows.clone() {
        let t = totals.entry(r.currency.as_str()).or_default();
        t.0 += r.paid;
        t.1 += r.proposed;
    }
    let g = |d: Decimal, c: &str| super::grouped(d, scale(c));
    let mut table: Vec<[String; 6]> = vec![[
        "partner".into(),
        "lever".into(),
        "currency".into(),
        "paid".into(),
        "proposed".into(),
        "difference".into(),
    ]];
    for (c, (paid, proposed)) in &totals {
        table.push([
            "all partners".into(),
            "all levers".into(),
            c.to_string(),
            g(*paid, c),
            g(*proposed, c),
            g(*proposed - *paid, c),
        ]);
    }
    let mut movers: Vec<&Row> = rows.filter(|r| !r.difference().is_zero()).collect();
    movers.sort_by(|a, b| {
        b.difference().abs().cmp(&a.difference().abs()).then(
            (&a.partner_id, &a.lever, &a.currency).cmp(&(&b.partner_id, &b.lever, &b.currency)),
        )
    });
    let moved = movers.len();
    for r in movers.iter().take(MOVERS) {
        table.push([
            r.partner_id.clone(),
            r.lever.clone(),
            r.currency.clone(),
            g(r.paid, &r.currency),
            g(r.proposed, &r.currency),
            g(r.difference(), &r.currency),
        ]);
    }
    let widths: Vec<usize> = (0..6)
        .map(|i| {
            table
                .iter()
                .map(|r| r[i].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "whatif {}: the rules in {} against what the cycle paid (read-only: nothing committed or published)",
        config.cycle,
        config.rules.display()
    );
    for (n, r) in table.iter().enumerate() {
        let mut line = String::from(" ");
        for (i, cell) in r.iter().enumerate() {
            let w = widths[i];
            if i < 3 {
                let _ = write!(line, " {cell:<w$}");
            } else {
                let _ = write!(line, " {cell:>w$}");
            }
        }
        let _ = writeln!(out, "{}", line.trim_end());
        if n == totals.len() {
            let _ = writeln!(
                out,
                "  largest movers ({} of {moved} partner × lever × currency rows that move):",
                moved.min(MOVERS)
            );
        }
    }
    let _ = writeln!(out, "  wrote {}", write_to.display());
    out
}

/// `--write` must be a `.csv` file that is not a link and, if it exists, one whatif wrote.
fn check_target(path: &Path) -> Result<(), RunError> {
    use std::io::Read as _;
    let shown = path.display();
    if path.extension().and_then(|e| e.to_str()) != Some("csv") {
        return Err(RunError::Usage(format!(
            "{shown}: --write takes a .csv file"
        )));
    }
    super::cycle::folder_of(path, "--write")?;
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => Err(RunError::Usage(format!(
            "{shown}: is a symbolic link; it is not written through: remove it or pass another --write"
        ))),
        Ok(m) if m.is_dir() => Err(RunError::Usage(format!(
            "{shown}: is a folder, where --write names a file"
        ))),
        Ok(_) => {
            let mut head = vec![0u8; HEADER.len()];
            let ours = std::fs::File::open(path)
                .and_then(|mut f| f.read_exact(&mut head))
                .is_ok()
                && head == HEADER.as_bytes();
            if ours {
                Ok(())
            } else {
                Err(RunError::Usage(format!(
                    "{shown}: exists and is not a file whatif wrote; it is left as it is: move it away or pass another --write"
                )))
            }
        }
        Err(_) => Ok(()),
    }
}

/// Writes through a file beside `path`, renamed over it (checked by [`check_target`] first).
fn write_replacing_own(path: &Path, bytes: &[u8]) -> Result<(), RunError> {
    use std::io::Write as _;
    check_target(path)?;
    let parent = super::cycle::folder_of(path, "--write")?;
    let mut file = tempfile::Builder::new()
        .prefix(".whatif-")
        .tempfile_in(parent)
        .map_err(|e| RunError::io(parent.display(), e))?;
    file.write_all(bytes)
        .map_err(|e| RunError::io(path.display(), e))?;
    file.persist(path)
        .map_err(|e| RunError::io(path.display(), e.error))?;
    Ok(())
}

/// `incentives whatif`'s arguments.
#[derive(Debug, clap::Args)]
pub struct WhatifArgs {
    /// The closed cycle to re-run.
    #[arg(long, value_name = "YYYY-MM")]
    pub cycle: crate::calendar::Cycle,
    /// The bundle the cycle ran on (its files' hashes must equal those the cycle ran on).
    #[arg(long, value_name = "DIR")]
    pub input: std::path::PathBuf,
    /// The proposed rule set.
    #[arg(long, value_name = "DIR")]
    pub rules: std::path::PathBuf,
    /// The chain's state (read, never changed).
    #[arg(long, value_name = "DIR", default_value = "state")]
    pub state: std::path::PathBuf,
    /// The output folder the cycle was published to (what it paid is read from its ledger).
    #[arg(long, value_name = "DIR", default_value = "out")]
    pub out: std::path::PathBuf,
    /// Where to write the comparison (a .csv file).
    #[arg(long, value_name = "FILE.csv")]
    pub write: std::path::PathBuf,
    /// Peak memory to stay within, in binary units (e.g. 512MiB, 1GiB); at least 256MiB. A
    /// cycle too large for it is evaluated in partitions, as `run` does.
    #[arg(long, value_name = "SIZE", default_value_t = crate::budget::MemoryBudget::DEFAULT)]
    pub memory_budget: crate::budget::MemoryBudget,
    /// Evaluate the partners in N partitions, one at a time (default: as many as
    /// --memory-budget needs). The comparison is the same whatever the count.
    #[arg(long, value_name = "N")]
    pub partitions: Option<std::num::NonZeroU32>,
    /// Folder for the partitions' files (a temporary folder in it, removed after; default:
    /// the system's temporary folder).
    #[arg(long, value_name = "DIR")]
    pub spill: Option<std::path::PathBuf>,
}

/// Runs `incentives whatif`: the text for the terminal.
pub fn main(args: WhatifArgs) -> Result<String, RunError> {
    let budget = args.memory_budget.bytes();
    let partitions = crate::run::partitions_for(&args.input, args.partitions, budget);
    let config = RunConfig {
        cycle: args.cycle,
        input: args.input,
        rules: args.rules,
        state: args.state,
        out: args.out,
        first_cycle: false,
        strict: false,
        as_of: None,
        lang: crate::explain::Lang::En,
        format: crate::write::Format::Csv,
        partitions,
        spill: args.spill,
        memory_budget: budget,
        parts: None,
    };
    whatif(&config, &args.write)
}
