//! `incentives run`: one cycle's month-end, stage after stage. Data flows one way:
//! rules → load → evaluate → (vouchers, balances, subsidies: later stages) → reconcile → write.

use crate::calendar::Cycle;
use crate::error::RunError;
use crate::evaluate;
use crate::load::{self, Bundle};
use crate::reconcile;
use crate::rules;
use crate::write::{self, Manifest, Staging, Timings};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

/// A run's configuration, resolved and checked from the command line.
#[derive(Debug, Clone)]
pub struct RunConfig {
    pub cycle: Cycle,
    pub input: PathBuf,
    pub rules: PathBuf,
    pub out: PathBuf,
    pub first_cycle: bool,
    pub strict: bool,
}

/// What a finished run reports to the person or cron job that started it.
#[derive(Debug)]
pub struct RunReport {
    pub cycle: Cycle,
    pub published: PathBuf,
    pub lines_read: u64,
    pub lines_accepted: u64,
    pub lines_rejected: u64,
    pub partners: usize,
    pub rejects: usize,
    pub ledger_rows: usize,
    pub ruleset_hash: String,
    pub elapsed_ms: u128,
}

/// Most rejects listed on stderr when `--strict` refuses a bundle; all are counted.
const STRICT_REJECTS_SHOWN: usize = 50;

pub fn run(config: &RunConfig) -> Result<RunReport, RunError> {
    let started = Instant::now();
    let started_at = crate::calendar::format_instant(chrono::Utc::now());
    let mut phases = BTreeMap::new();

    // A rule set that fails its check stops the run before any input is read.
    let rule_set = rules::load_rules(&config.rules).map_err(RunError::Rules)?;
    let bundle: Bundle = load::load_bundle(&config.input, config.cycle)?;
    phases.insert("load", started.elapsed().as_millis());

    if config.strict && !bundle.rejects.is_empty() {
        for reject in bundle.rejects.iter().take(STRICT_REJECTS_SHOWN) {
            eprintln!("rejected: {reject}");
        }
        if bundle.rejects.len() > STRICT_REJECTS_SHOWN {
            eprintln!("… and {} more", bundle.rejects.len() - STRICT_REJECTS_SHOWN);
        }
        return Err(RunError::StrictRejects {
            count: bundle.rejects.len(),
        });
    }

    let evaluate_started = Instant::now();
    let evaluation = evaluate::evaluate(&bundle, &rule_set, config.cycle);
    phases.insert("evaluate", evaluate_started.elapsed().as_millis());

    let write_started = Instant::now();
    let totals = reconcile::bill_line_totals(&bundle);
    let mut staging = Staging::begin(&config.out, config.cycle)?;
    write::write_rejects(&mut staging, &bundle.rejects)?;
    write::write_ledgers(&mut staging, &bundle, &rule_set, &evaluation)?;
    write::write_outcomes(&mut staging, &bundle, &rule_set, &evaluation)?;
    phases.insert("write", write_started.elapsed().as_millis());
    let manifest = Manifest::new(
        config.cycle,
        config.first_cycle,
        &rule_set,
        &bundle.files,
        totals,
        bundle.rejects.len(),
        staging.written(),
        Timings {
            started_at,
            phases_ms: phases,
            total_ms: started.elapsed().as_millis(),
        },
    );
    staging.write_file("manifest.json", &manifest.to_json()?)?;
    let published = staging.publish()?;

    let lines = bundle.files.iter().find(|f| f.file == "bill_lines.csv");
    Ok(RunReport {
        cycle: config.cycle,
        published,
        lines_read: lines.map_or(0, |f| f.digest.rows_read),
        lines_accepted: lines.map_or(0, |f| f.accepted),
        lines_rejected: lines.map_or(0, |f| f.rejected),
        partners: bundle.partners.len(),
        rejects: bundle.rejects.len(),
        ledger_rows: evaluation.rows.len(),
        ruleset_hash: rule_set.hash.clone(),
        elapsed_ms: started.elapsed().as_millis(),
    })
}
