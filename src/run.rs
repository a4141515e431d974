//! `incentives run`: one cycle's month-end, stage after stage. Data flows one way:
//! load → (rules, evaluation, vouchers, balances, subsidies: later stages) → reconcile → write.

use crate::calendar::Cycle;
use crate::error::RunError;
use crate::load::{self, Bundle};
use crate::reconcile;
use crate::write::{self, Manifest, Staging, Timings};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

/// A run's configuration, resolved and checked from the command line.
#[derive(Debug, Clone)]
pub struct RunConfig {
    pub cycle: Cycle,
    pub input: PathBuf,
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
    pub elapsed_ms: u128,
}

/// Most rejects listed on stderr when `--strict` refuses a bundle; all are counted.
const STRICT_REJECTS_SHOWN: usize = 50;

pub fn run(config: &RunConfig) -> Result<RunReport, RunError> {
    let started = Instant::now();
    let started_at = crate::calendar::format_instant(chrono::Utc::now());
    let mut phases = BTreeMap::new();

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

    let write_started = Instant::now();
    let totals = reconcile::bill_line_totals(&bundle);
    let mut staging = Staging::begin(&config.out, config.cycle)?;
    write::write_rejects(&mut staging, &bundle.rejects)?;
    phases.insert("write", write_started.elapsed().as_millis());
    let manifest = Manifest::new(
        config.cycle,
        config.first_cycle,
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
        elapsed_ms: started.elapsed().as_millis(),
    })
}
