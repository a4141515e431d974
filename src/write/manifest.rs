//! `manifest.json`: what was read, what was written, the control totals, and how long it took.
//! Everything but the `timings` object is the same for the same inputs, whatever the machine.

use super::WrittenFile;
use crate::calendar::Cycle;
use crate::load::FileReport;
use crate::reconcile::BillLineTotals;
use serde::Serialize;
use std::collections::BTreeMap;

#[derive(Debug, Serialize)]
pub struct Manifest {
    pub engine: Engine,
    pub cycle: String,
    pub first_cycle: bool,
    pub ruleset: RulesetInfo,
    pub exit_code: u8,
    pub inputs: Vec<InputFile>,
    pub control_totals: ControlTotals,
    /// The other files of the published folder (the manifest cannot list its own hash).
    pub outputs: Vec<WrittenFile>,
    /// Control totals of the outputs, to tie them to each other and to the inputs.
    pub output_totals: crate::reconcile::OutputTotals,
    /// The SPEC §6 identities checked before publishing (a published run has no violation).
    pub identities: Identities,
    pub timings: Timings,
}

#[derive(Debug, Default, Serialize)]
pub struct Identities {
    pub explanation_rows: usize,
    pub checked: Vec<&'static str>,
    pub violations: usize,
}

#[derive(Debug, Serialize)]
pub struct RulesetInfo {
    pub name: String,
    pub hash: String,
    pub files: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct Engine {
    pub name: &'static str,
    pub version: &'static str,
}

#[derive(Debug, Serialize)]
pub struct InputFile {
    pub file: &'static str,
    pub present: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    pub rows_read: u64,
    pub accepted: u64,
    pub rejected: u64,
}

#[derive(Debug, Serialize)]
pub struct ControlTotals {
    pub bill_lines: BillLineTotals,
    pub rejects: usize,
}

/// What varies from run to run, kept apart so the rest compares byte for byte.
#[derive(Debug, Serialize)]
pub struct Timings {
    pub started_at: String,
    pub phases_ms: BTreeMap<&'static str, u128>,
    pub total_ms: u128,
}

impl Manifest {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        cycle: Cycle,
        first_cycle: bool,
        rules: &crate::rules::RuleSet,
        files: &[FileReport],
        totals: BillLineTotals,
        rejects: usize,
        outputs: Vec<WrittenFile>,
        timings: Timings,
    ) -> Manifest {
        Manifest {
            engine: Engine {
                name: env!("CARGO_PKG_NAME"),
                version: env!("CARGO_PKG_VERSION"),
            },
            cycle: cycle.to_string(),
            first_cycle,
            ruleset: RulesetInfo {
                name: rules.name.clone(),
                hash: rules.hash.clone(),
                files: rules.files.clone(),
            },
            exit_code: crate::error::exit::SUCCESS,
            inputs: files
                .iter()
                .map(|f| InputFile {
                    file: f.file,
                    present: f.digest.present,
                    sha256: f.digest.present.then(|| f.digest.sha256.clone()),
                    rows_read: f.digest.rows_read,
                    accepted: f.accepted,
                    rejected: f.rejected,
                })
                .collect(),
            control_totals: ControlTotals {
                bill_lines: totals,
                rejects,
            },
            outputs,
            output_totals: Default::default(),
            identities: Identities::default(),
            timings,
        }
    }

    pub fn to_json(&self) -> Result<Vec<u8>, super::error::WriteError> {
        let mut bytes = serde_json::to_vec_pretty(self)
            .map_err(|e| super::error::WriteError::Io(format!("manifest.json: {e}")))?;
        bytes.push(b'\n');
        Ok(bytes)
    }
}
