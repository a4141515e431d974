//! `incentives status`: the chain as the state holds it, with where each cycle's publication
//! stands on disk (ok, STALE, pending, unpublished). A reader beside the pipeline: it opens the
//! state read-only (no lock) and looks at the output folders.

use crate::error::RunError;
use crate::state::{CycleRecord, PendingPublication, repair_command};
use std::collections::BTreeMap;
use std::path::Path;

/// A cycle of the chain as `status` (and the readers of a cycle's outputs) see it.
#[derive(Debug, Clone)]
pub struct CycleStatus {
    pub record: CycleRecord,
    /// A publication recorded for the cycle (committed, not yet published) and where it stands.
    pub publication: Option<(PendingPublication, crate::write::Publication)>,
}

impl CycleStatus {
    /// `unpublished`, `pending`, `STALE` or `ok`, the first that applies.
    pub fn word(&self) -> &'static str {
        use crate::write::Publication as P;
        match &self.publication {
            Some((_, P::Lost)) => "unpublished",
            Some((_, P::Pending)) => "pending",
            _ if self.record.stale => "STALE",
            _ => "ok",
        }
    }

    /// Σ credited per currency, from the stored JSON object.
    pub fn credited(&self) -> BTreeMap<String, String> {
        serde_json::from_str(&self.record.credited).unwrap_or_default()
    }
}

/// The chain in the state folder `dir` with where each publication stands, read without the
/// lock. `Ok(None)` when there is no state.db there.
pub fn read_chain(dir: &Path) -> Result<Option<Vec<CycleStatus>>, RunError> {
    let Some(chain) = crate::state::read_chain(dir)? else {
        return Ok(None);
    };
    Ok(Some(
        chain
            .into_iter()
            .map(|(record, publication)| {
                let publication = publication.map(|p| {
                    let standing = crate::write::publication(&p.out_root, p.cycle, &p.staged);
                    (p, standing)
                });
                CycleStatus {
                    record,
                    publication: publication
                        .filter(|(_, s)| *s != crate::write::Publication::Published),
                }
            })
            .collect(),
    ))
}

/// A stored run time (UTC) shown in the machine's zone with its offset,
/// `2026-10-01 09:30:00 +08:00`; as stored if it does not parse.
pub fn run_time(run_at: &str) -> String {
    crate::calendar::parse_instant(run_at)
        .map(|t| {
            t.with_timezone(&chrono::Local)
                .format("%Y-%m-%d %H:%M:%S %:z")
                .to_string()
        })
        .unwrap_or_else(|| run_at.to_string())
}

fn no_state(dir: &Path) -> RunError {
    RunError::Usage(format!(
        "{}: no state here (no cycle has been run with --state {})",
        dir.join("state.db").display(),
        dir.display()
    ))
}

/// `incentives status`: the chain as a table: each cycle's state (ok, STALE, pending,
/// unpublished), run time with its zone, counts, and Σ credited per currency in aligned
/// columns; then the full hashes, and what to do about any cycle that is not ok.
pub fn status(dir: &Path) -> Result<String, RunError> {
    use std::fmt::Write as _;
    let chain = read_chain(dir)?.ok_or_else(|| no_state(dir))?;
    let credited: Vec<BTreeMap<String, String>> = chain.iter().map(|c| c.credited()).collect();
    let currencies: std::collections::BTreeSet<&String> =
        credited.iter().flat_map(|m| m.keys()).collect();
    let widths: Vec<usize> = currencies
        .iter()
        .map(|c| {
            credited
                .iter()
                .filter_map(|m| m.get(*c).map(|a| a.len()))
                .chain([c.len() + 9])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let runs: Vec<String> = chain.iter().map(|c| run_time(&c.record.run_at)).collect();
    let run_width = runs.iter().map(|r| r.len()).max().unwrap_or(0).max(6);
    let mut out = String::new();
    let _ = write!(
        out,
        "{:<8} {:<11} {:<run_width$} {:<16} {:>10} {:>10} {:>9} {:>11}",
        "cycle", "state", "run at", "rule set", "lines", "accepted", "rejected", "ledger rows"
    );
    for (c, w) in currencies.iter().zip(&widths) {
        let _ = write!(out, "  {:>w$}", format!("credited {c}"));
    }
    out.push('\n');
    for ((c, run), amounts) in chain.iter().zip(&runs).zip(&credited) {
        let r = &c.record;
        let _ = write!(
            out,
            "{:<8} {:<11} {:<run_width$} {:<16} {:>10} {:>10} {:>9} {:>11}",
            r.cycle,
            c.word(),
            run,
            crate::rules::short_hash(&r.ruleset_hash),
            r.lines_read,
            r.lines_accepted,
            r.lines_rejected,
            r.ledger_rows,
        );
        for (currency, w) in currencies.iter().zip(&widths) {
            let _ = write!(
                out,
                "  {:>w$}",
                amounts.get(*currency).map_or("", |a| a.as_str())
            );
        }
        out.push('\n');
    }
    for c in &chain {
        let _ = writeln!(
            out,
            "rule set {}: {}",
            c.record.cycle, c.record.ruleset_hash
        );
        let _ = writeln!(out, "inputs {}: {}", c.record.cycle, c.record.input_hashes);
    }
    for c in &chain {
        if let Some((p, standing)) = &c.publication {
            let published = p.out_root.join(&c.record.cycle);
            match standing {
                crate::write::Publication::Lost => {
                    let _ = writeln!(
                        out,
                        "{} is UNPUBLISHED: committed, but its staged outputs ({}) were lost before publication to {}. Repair: {}",
                        c.record.cycle,
                        p.staged.display(),
                        published.display(),
                        repair_command(p.cycle, c.record.first_cycle, dir, &p.out_root)
                    );
                }
                _ => {
                    let _ = writeln!(
                        out,
                        "{}: publication pending: committed, staged in {}, not yet published to {}; the next run on this state publishes it",
                        c.record.cycle,
                        p.staged.display(),
                        published.display()
                    );
                }
            }
        }
    }
    if chain.iter().any(|c| c.record.stale) {
        let _ = writeln!(
            out,
            "STALE cycles were run before an earlier cycle was re-run: re-run them in order."
        );
    }
    Ok(out)
}

/// `incentives status --json`: one JSON document, the chain with each cycle's state (`ok`,
/// `STALE`, `pending`, `unpublished`), run time (UTC, as stored, and in the machine's zone),
/// totals credited per currency as decimal strings, the full rule-set hash.
pub fn status_json(dir: &Path) -> Result<String, RunError> {
    let chain = read_chain(dir)?.ok_or_else(|| no_state(dir))?;
    let cycles: Vec<serde_json::Value> = chain
        .iter()
        .map(|c| {
            let r = &c.record;
            let inputs: serde_json::Value =
                serde_json::from_str(&r.input_hashes).unwrap_or(serde_json::Value::Null);
            let (publication, staged, repair) = match &c.publication {
                Some((p, crate::write::Publication::Lost)) => (
                    "unpublished",
                    Some(p.staged.display().to_string()),
                    Some(repair_command(p.cycle, r.first_cycle, dir, &p.out_root)),
                ),
                Some((p, _)) => ("pending", Some(p.staged.display().to_string()), None),
                None => ("published", None, None),
            };
            serde_json::json!({
                "cycle": r.cycle,
                "state": c.word(),
                "stale": r.stale,
                "publication": publication,
                "staged": staged,
                "repair": repair,
                "run_at": r.run_at,
                "run_at_local": run_time(&r.run_at),
                "first_cycle": r.first_cycle,
                "ruleset_hash": r.ruleset_hash,
                "input_hashes": inputs,
                "lines_read": r.lines_read,
                "lines_accepted": r.lines_accepted,
                "lines_rejected": r.lines_rejected,
                "ledger_rows": r.ledger_rows,
                "credited": c.credited(),
            })
        })
        .collect();
    Ok(serde_json::json!({
        "state": dir.display().to_string(),
        "cycles": cycles,
    })
    .to_string())
}
