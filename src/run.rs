//! `incentives run`: one cycle's month-end, stage after stage. Data flows one way:
//! rules → state (what earlier cycles left) → load → evaluate → (vouchers, balances, subsidies:
//! later stages) → reconcile → write (staged) → state commit → publish.

use crate::calendar::Cycle;
use crate::chain::ClosingBalances;
use crate::error::RunError;
use crate::evaluate::{self, Kind};
use crate::load::{self, Bundle};
use crate::progress::Progress;
use crate::reconcile;
use crate::rules;
use crate::state::{CycleRecord, PendingPublication, StateStore};
use crate::write::{self, Manifest, Publication, Staging, Timings};
use crate::{balances, explain, subsidies, vouchers};
use rust_decimal::Decimal;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// A run's configuration, resolved and checked from the command line.
#[derive(Debug, Clone)]
pub struct RunConfig {
    pub cycle: Cycle,
    pub input: PathBuf,
    pub rules: PathBuf,
    pub state: PathBuf,
    pub out: PathBuf,
    pub first_cycle: bool,
    pub strict: bool,
    /// The instant the expiry report counts from (default: bill generation).
    pub as_of: Option<chrono::DateTime<chrono::Utc>>,
    /// Language of the explanation paragraphs.
    pub lang: explain::Lang,
    /// CSV or Parquet outputs.
    pub format: write::Format,
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
    pub carried_in_rows: usize,
    pub ruleset_hash: String,
    pub ruleset_name: String,
    pub summary: Summary,
    /// Later cycles of the chain this run made stale (a re-run of an earlier cycle).
    pub made_stale: Vec<String>,
    pub elapsed_ms: u128,
}

/// The figures of the one-screen summary at the end of a run, per currency.
#[derive(Debug, Default)]
pub struct Summary {
    /// Incentive credited to the cycle (this run's rows and carried in), per lever.
    pub credited: BTreeMap<String, BTreeMap<String, Decimal>>,
    /// Incentive earned now and credited next cycle.
    pub deferred: BTreeMap<String, Decimal>,
    pub vouchers_deducted: BTreeMap<String, Decimal>,
    pub vouchers_expired: BTreeMap<String, Decimal>,
    pub incentive_expired: BTreeMap<String, Decimal>,
    /// Σ and count of granted subsidies.
    pub subsidies: BTreeMap<String, (Decimal, u64)>,
    /// Σ and count of withdrawals applied.
    pub withdrawn: BTreeMap<String, (Decimal, u64)>,
    pub pending_withdrawals: usize,
    /// Places of each currency's amounts (the rule set's rounding scale).
    pub scales: BTreeMap<String, u32>,
    pub explanation_rows: usize,
    pub outputs: Vec<String>,
}

/// Most rejects listed on stderr when `--strict` refuses a bundle; all are counted.
const STRICT_REJECTS_SHOWN: usize = 50;

/// The signal (SIGTERM or SIGINT) that asked the run to stop; 0 while none has. Set by the
/// handler, read between phases: a signal never interrupts a write half-way.
static STOP: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);

extern "C" fn on_stop_signal(signal: libc::c_int) {
    // Only an atomic store: async-signal-safe.
    STOP.store(signal, std::sync::atomic::Ordering::SeqCst);
}

/// Makes SIGTERM and SIGINT stop the run at the next phase boundary instead of killing it where
/// it stands (libc's `sigaction`: libc is a dependency already, no new crate).
fn catch_stop_signals() {
    // SAFETY: the handler only stores into an atomic; the struct is fully initialised (zeroed,
    // then an empty mask and the handler set) before it is passed.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = on_stop_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
        action.sa_flags = libc::SA_RESTART;
        libc::sigemptyset(&mut action.sa_mask);
        libc::sigaction(libc::SIGTERM, &action, std::ptr::null_mut());
        libc::sigaction(libc::SIGINT, &action, std::ptr::null_mut());
    }
}

/// The name of the signal that asked the run to stop, if one did.
fn stop_signal() -> Option<&'static str> {
    match STOP.load(std::sync::atomic::Ordering::SeqCst) {
        0 => None,
        libc::SIGINT => Some("SIGINT"),
        _ => Some("SIGTERM"),
    }
}

/// Before the commit point: a signal received stops the run here (exit 1). Whatever was staged
/// is dropped by the caller's clean-up (the staging folder), and the lock with the state store.
fn check_stop(phase: &str) -> Result<(), RunError> {
    match stop_signal() {
        None => Ok(()),
        Some(signal) => Err(RunError::Io(format!(
            "stopped by {signal} before the commit point (after {phase}): nothing was committed and nothing published; the staging folder was removed and the state lock released: run the same command again"
        ))),
    }
}

/// Test hook for crash safety: in debug builds only, `INCENTIVES_ABORT_AT=<phase>` aborts the
/// process at that phase (no clean-up runs, as in a crash) and `INCENTIVES_PAUSE_AT=<phase>`
/// stops there for a minute (or until SIGTERM or SIGINT) so a test can kill or signal it.
/// Release builds ignore both.
fn fault_point(phase: &str) {
    if !cfg!(debug_assertions) {
        return;
    }
    if std::env::var("INCENTIVES_ABORT_AT").is_ok_and(|p| p == phase) {
        std::process::abort();
    }
    if std::env::var("INCENTIVES_PAUSE_AT").is_ok_and(|p| p == phase) {
        crate::progress::note("INFO", &format!("paused at {phase}"));
        for _ in 0..3000 {
            if stop_signal().is_some() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}

/// What a run does first with publications its state holds (committed, not yet published):
/// finishes those whose staged folder is there (a crash or a failed publication interrupted
/// them), clears those already published, and names those whose staged folder was lost
/// (unpublished) with the command that repairs them. `publisher` is this run's lock on
/// `OUT/<cycle>`; another cycle's (or another `--out`'s) is taken while it is published.
fn finish_publications(state: &StateStore, config: &RunConfig) -> Result<(), RunError> {
    let out_root = write::absolute(&config.out);
    let chain = state.chain()?;
    for p in state.pending_publications()? {
        match write::publication(&p.out_root, p.cycle, &p.staged) {
            Publication::Published => state.published(p.cycle)?,
            Publication::Pending => {
                let _lock = if p.cycle == config.cycle && p.out_root == out_root {
                    None
                } else {
                    Some(crate::state::lock::Lock::publisher(&p.out_root, p.cycle)?)
                };
                write::publish(&p.out_root, p.cycle, &p.staged)
                    .map_err(|e| publication_failed(&state.dir, &p.out_root, p.cycle, e))?;
                state.published(p.cycle)?;
                crate::progress::note(
                    "WARN",
                    &format!(
                        "note: finished publishing {} to {} (a run was interrupted after its commit)",
                        p.cycle,
                        p.out_root.join(p.cycle.to_string()).display()
                    ),
                );
            }
            Publication::Lost if p.cycle == config.cycle => crate::progress::note(
                "WARN",
                &format!(
                    "note: cycle {} was committed but its outputs were lost before publication ({} is gone); this run makes them again",
                    p.cycle,
                    p.staged.display()
                ),
            ),
            Publication::Lost => {
                let first = chain
                    .iter()
                    .any(|c| c.cycle == p.cycle.to_string() && c.first_cycle);
                crate::progress::note(
                    "WARN",
                    &format!(
                        "warning: cycle {} is committed in {} but UNPUBLISHED: its staged outputs ({}) were lost before publication. Repair: {}",
                        p.cycle,
                        state.dir.join("state.db").display(),
                        p.staged.display(),
                        crate::state::repair_command(p.cycle, first, &state.dir, &p.out_root)
                    ),
                );
            }
        }
    }
    Ok(())
}

/// The error of a publication that failed after its cycle was committed: the state is committed
/// and the publication pending, and what to do (exit 1; 2 or 5 when what stopped it was a
/// foreign file at `OUT/<cycle>` or another publisher).
fn publication_failed(state_dir: &Path, out_root: &Path, cycle: Cycle, e: RunError) -> RunError {
    let message = format!(
        "cycle {cycle} is committed in the state ({}), but publishing it to {} failed: {e}. The publication is pending: `incentives status --state {}` shows it; the next run on this state finishes it once the cause is fixed",
        state_dir.join("state.db").display(),
        out_root.join(cycle.to_string()).display(),
        state_dir.display()
    );
    match e {
        RunError::Usage(_) => RunError::Usage(message),
        RunError::Locked(_) => RunError::Locked(message),
        _ => RunError::Io(message),
    }
}

/// An error writing the state, before its commit: nothing was committed; the path is named.
fn state_failed(state_dir: &Path, e: RunError) -> RunError {
    match e {
        RunError::Io(message) => RunError::Io(format!(
            "{}: the state could not be written ({message}); nothing was committed and nothing published (the staged outputs were removed): free space on the file system of {} (or fix what the message says) and run again",
            state_dir.join("state.db").display(),
            state_dir.display()
        )),
        other => other,
    }
}

pub fn run(config: &RunConfig, progress: &dyn Progress) -> Result<RunReport, RunError> {
    let started = Instant::now();
    let started_at = crate::calendar::format_instant(chrono::Utc::now());
    let mut phases = BTreeMap::new();
    catch_stop_signals();

    // A rule set that fails its check stops the run before anything else.
    let rule_set = rules::load_rules(&config.rules).map_err(RunError::Rules)?;
    for warning in &rule_set.warnings {
        crate::progress::note("warn", &format!("warning: {warning}"));
    }
    let mut state = StateStore::open(&config.state)?;
    // One publisher of OUT/<cycle> at a time, whatever its state; what is there must be ours.
    let _publisher = crate::state::lock::Lock::publisher(&config.out, config.cycle)?;
    write::check_target(&config.out, config.cycle)?;
    finish_publications(&state, config)?;
    let state_tag = write::state_tag(&config.state);
    let pending: Vec<PathBuf> = state
        .pending_publications()?
        .into_iter()
        .map(|p| p.staged)
        .collect();
    let swept = write::sweep(&config.out, &state_tag, &pending);
    if !swept.is_empty() {
        crate::progress::note(
            "INFO",
            &format!(
                "note: removed what killed runs left in {}: {}",
                config.out.display(),
                swept.join(", ")
            ),
        );
    }
    state.check_chain(config.cycle, config.first_cycle)?;
    // A re-run of M makes every later cycle of the chain stale (at its commit).
    let made_stale: Vec<String> = state
        .chain()?
        .into_iter()
        .map(|c| c.cycle)
        .filter(|c| *c > config.cycle.to_string())
        .collect();
    let prior = state.prior(config.cycle)?;
    check_stop("opening the state")?;

    progress.start("load");
    let load_started = Instant::now();
    let mut bundle: Bundle = load::load_bundle(&config.input, config.cycle)?;
    let read: u64 = bundle.files.iter().map(|f| f.digest.rows_read).sum();
    progress.finish("load", read, "rows", load_started.elapsed());
    // The likeliest cron mistake: the right folder run as the wrong cycle. Publishing an empty
    // month would hide it, so it fails like a structural error.
    let lines_read = bundle.bill_lines.len() + bundle.rejected_lines.len();
    if lines_read > 0
        && bundle.bill_lines.is_empty()
        && bundle
            .rejected_lines
            .iter()
            .all(|l| l.reject.code == crate::reject::RejectCode::WrongCycle)
    {
        let seen = bundle
            .rejected_lines
            .first()
            .map(|l| l.reject.value.clone())
            .unwrap_or_default();
        return Err(RunError::Usage(format!(
            "every one of the {lines_read} bill lines in {} belongs to another cycle (the first says {seen:?}), not {}: check --cycle and --input",
            config.input.display(),
            config.cycle
        )));
    }
    phases.insert("load", started.elapsed().as_millis());
    fault_point("loaded");
    check_stop("load")?;

    if config.strict && !bundle.rejects.is_empty() {
        for reject in bundle.rejects.iter().take(STRICT_REJECTS_SHOWN) {
            crate::progress::note("WARN", &format!("rejected: {reject}"));
        }
        if bundle.rejects.len() > STRICT_REJECTS_SHOWN {
            crate::progress::note(
                "WARN",
                &format!("… and {} more", bundle.rejects.len() - STRICT_REJECTS_SHOWN),
            );
        }
        return Err(RunError::StrictRejects {
            count: bundle.rejects.len(),
        });
    }

    progress.start("evaluate");
    let evaluate_started = Instant::now();
    // Grouping the lines is one thread's walk through memory; the orders are sorted beside it.
    let orders = std::mem::take(&mut bundle.orders);
    let (orders_by_id, ()) = rayon::join(
        || evaluate::OrdersById::new(&orders),
        || bundle.group_lines_by_partner(),
    );
    let mut evaluation = evaluate::evaluate_with(
        &bundle,
        orders_by_id,
        &rule_set,
        config.cycle,
        &prior,
        evaluate::Journal::Later,
    );
    drop(orders);
    progress.finish(
        "evaluate",
        bundle.bill_lines.len() as u64,
        "lines",
        evaluate_started.elapsed(),
    );
    phases.insert("evaluate", evaluate_started.elapsed().as_millis());
    check_stop("evaluate")?;

    // Balances: subsidies, lots and withdrawals and expiry, vouchers.
    progress.start("balances");
    let balances_started = Instant::now();
    let (stored_vouchers, prior_balances) = state.prior_balances(config.cycle)?;
    let (voucher_states, voucher_rejects) =
        vouchers::cycle_vouchers(&bundle, stored_vouchers, config.cycle);
    let g = vouchers::bill_generation(&rule_set, config.cycle);
    let g_date = g.with_timezone(&rule_set.time_zone).date_naive();
    // The expiry report counts its windows from G unless --as-of names another instant.
    let report_at = config.as_of.unwrap_or(g);
    let report_date = report_at.with_timezone(&rule_set.time_zone).date_naive();
    let (decisions, subsidy_rows) = subsidies::decide(&bundle, &rule_set, config.cycle);
    let mut settled = balances::settle(
        &bundle,
        &rule_set,
        &balances::BalanceInputs {
            cycle: config.cycle,
            first_cycle: config.first_cycle,
            g_date,
            report_date,
            prior: &prior_balances,
            carried: &prior.carried,
        },
        &evaluation,
        &subsidy_rows,
    );
    // The journal gets the balance rows in the order they were made: subsidies, withdrawals,
    // expiry.
    evaluation.add_balance_rows(subsidy_rows, config.cycle);
    evaluation.add_balance_rows(std::mem::take(&mut settled.rows), config.cycle);
    let matched = vouchers::match_vouchers(&bundle, &rule_set, config.cycle, &voucher_states);
    evaluation.order_journal(&bundle, &rule_set);
    let files = load::with_later_rejects(
        &bundle.files,
        voucher_rejects.iter().chain(&settled.rejects),
    );
    let mut rejects = bundle.rejects.clone();
    rejects.extend(voucher_rejects);
    rejects.extend(settled.rejects.iter().cloned());
    rejects.sort_by(|a, b| (a.file, a.row, a.column).cmp(&(b.file, b.row, b.column)));
    progress.finish(
        "balances",
        voucher_states.len() as u64 + settled.lots.len() as u64,
        "vouchers and lots",
        balances_started.elapsed(),
    );
    phases.insert("balances", balances_started.elapsed().as_millis());
    check_stop("balances")?;
    if config.strict && !rejects.is_empty() {
        for reject in rejects.iter().take(STRICT_REJECTS_SHOWN) {
            crate::progress::note("WARN", &format!("rejected: {reject}"));
        }
        return Err(RunError::StrictRejects {
            count: rejects.len(),
        });
    }

    // SPEC §6, on the in-memory results, before anything is published.
    progress.start("reconcile");
    let reconcile_started = Instant::now();
    // The state's pool rows are encoded (compressed) first and the pools freed: after the rows
    // they are the largest thing evaluation leaves.
    let pool_rows = crate::state::encode_pools(evaluation.pool_count(), |range| {
        evaluation.pool_deltas_in(&bundle, &rule_set, range)
    })?;
    evaluation.free_pools();
    let mut explanations =
        explain::explanations(&bundle, &evaluation, &prior.carried, config.cycle);
    // Test hook (debug builds only): break an identity to prove a violation stops the run.
    if cfg!(debug_assertions)
        && std::env::var_os("INCENTIVES_BREAK_IDENTITY").is_some()
        && let Some(e) = explanations.first_mut()
    {
        e.consumption += rust_decimal::Decimal::new(1, 2);
    }
    let violations = explain::check_identities(
        &bundle,
        &evaluation,
        &prior.carried,
        &explanations,
        &matched,
        config.cycle,
    );
    if !violations.is_empty() {
        return Err(RunError::Reconciliation(violations));
    }
    progress.finish(
        "reconcile",
        explanations.len() as u64,
        "explanations",
        reconcile_started.elapsed(),
    );
    fault_point("reconciled");
    check_stop("reconcile")?;

    progress.start("write");
    let write_started = Instant::now();
    let totals = reconcile::bill_line_totals(&bundle);
    let staging = Staging::begin(&config.out, config.cycle, config.format, &state_tag)?;
    // The journal and statements on one side, every other file on the other: two cores write
    // at once (each side also formats in parallel).
    let (deferred, others) = rayon::join(
        || {
            let mut deferred = crate::state::DeferredRows::default();
            write::write_ledgers(
                &staging,
                &bundle,
                &rule_set,
                &evaluation,
                &prior.carried,
                config.cycle,
                &mut deferred,
            )
            .map(|()| deferred)
        },
        || -> Result<(), RunError> {
            write::write_outcomes(&staging, &bundle, &rule_set, &evaluation)?;
            write::write_explanations(
                &staging,
                &rule_set,
                &config.cycle.to_string(),
                &explanations,
                config.lang,
            )?;
            write::write_rejects(&staging, &rejects)?;
            write::write_vouchers(&staging, &bundle, &rule_set, &voucher_states, &matched)?;
            write::write_expiry_report(
                &staging,
                &rule_set,
                &settled.report,
                &voucher_states,
                &matched,
                report_at,
            )?;
            write::write_subsidies(&staging, &bundle, &rule_set, &decisions)
        },
    );
    let deferred = deferred?;
    others?;
    check_stop("write")?;
    progress.finish(
        "write",
        staging.written().len() as u64,
        "files",
        write_started.elapsed(),
    );
    phases.insert("write", write_started.elapsed().as_millis());
    // The manifest, the summary and the state transaction are made while the outputs are
    // synced; the transaction is committed once they are.
    let state_rows = deferred.len() + pool_rows.len();
    let (staged, (summary, record, prepared)) = staging.into_staged_after(|staging| {
        let written = staging.written();
        let manifest_outputs: Vec<String> = written.iter().map(|w| w.file.clone()).collect();
        let mut manifest = Manifest::new(
            config.cycle,
            config.first_cycle,
            &rule_set,
            &files,
            totals,
            rejects.len(),
            written,
            Timings {
                started_at: started_at.clone(),
                phases_ms: phases,
                total_ms: started.elapsed().as_millis(),
            },
        );
        manifest.output_totals =
            reconcile::output_totals(&bundle, &evaluation, &matched, &explanations);
        manifest.identities = write::Identities {
            explanation_rows: explanations.len(),
            checked: vec![
                "consumption = eligible_base + non_base + excluded + deferred_out_base + deferred_out_non_base",
                "refunds = clawback_base + refund_not_earned",
                "incentive = earned_now + carried_in + clawed_back + tier + cap + override = Σ ledger rows credited",
                "every input line once in line_outcomes.csv; Σ payable conserved",
                "vouchers: opening − deducted − expired = closing, never below zero, Σ deductions ≤ settlement",
            ],
            violations: 0,
        };
        staging.write_file("manifest.json", &manifest.to_json()?)?;

        let mut summary = Summary {
            pending_withdrawals: settled.pending.len(),
            explanation_rows: explanations.len(),
            outputs: manifest_outputs,
            ..Default::default()
        };
        add_totals(
            &mut summary,
            config.cycle,
            &rule_set,
            &evaluation,
            &prior.carried,
            &matched,
            &bundle,
            &voucher_states,
        );
        let currencies: Vec<String> = summary
            .credited
            .keys()
            .chain(summary.deferred.keys())
            .chain(summary.vouchers_deducted.keys())
            .chain(summary.vouchers_expired.keys())
            .chain(summary.incentive_expired.keys())
            .chain(summary.subsidies.keys())
            .chain(summary.withdrawn.keys())
            .cloned()
            .collect();
        for c in currencies {
            if let Some(code) = crate::model::Currency::parse(&c) {
                summary.scales.insert(c, rule_set.rounding.scale(code));
            }
        }
        let lines = bundle.files.iter().find(|f| f.file == "bill_lines.csv");
        let record = CycleRecord {
            cycle: config.cycle.to_string(),
            run_at: started_at,
            first_cycle: config.first_cycle,
            ruleset_hash: rule_set.hash.clone(),
            input_hashes: input_hashes(&bundle),
            lines_read: lines.map_or(0, |f| f.digest.rows_read),
            lines_accepted: lines.map_or(0, |f| f.accepted),
            lines_rejected: lines.map_or(0, |f| f.rejected),
            ledger_rows: evaluation.rows.len() as u64,
            credited: credited(&summary),
            stale: false,
        };
        let publication = PendingPublication {
            cycle: config.cycle,
            // The staging folder is kept where it is: this is the path `into_staged_after`
            // returns.
            staged: staging.path().to_path_buf(),
            out_root: write::absolute(&config.out),
        };
        let closing = ClosingBalances {
            // A voucher that has expired and holds nothing more is not carried on.
            vouchers: matched
                .balances
                .iter()
                .map(|b| (&voucher_states[b.voucher], b.closing))
                .filter(|(v, closing)| !(closing.is_zero() && v.voucher.expires_at <= g))
                .map(|(v, closing)| (v.voucher.clone(), v.partner_id.clone(), closing))
                .collect(),
            lots: settled.lots,
            carry: settled.carry,
            applied: settled.applied,
        };
        let prepared = state
            .prepare_commit(&record, deferred, pool_rows, &closing, &publication)
            .map_err(|e| state_failed(&config.state, e))?;
        Ok((summary, record, prepared))
    })?;
    fault_point("staged");
    if let Err(e) = check_stop("staging") {
        // The prepared transaction is rolled back when dropped; the staged folder goes now.
        drop(prepared);
        let _ = std::fs::remove_dir_all(&staged);
        return Err(e);
    }
    // The commit point: from here on the cycle is done, and is published right after.
    progress.start("commit");
    let commit_started = Instant::now();
    if let Err(e) = prepared.commit() {
        // Nothing was committed: the staged folder is not to be published.
        let _ = std::fs::remove_dir_all(&staged);
        return Err(state_failed(&config.state, e));
    }
    fault_point("committed");
    let published = write::publish(&config.out, config.cycle, &staged)
        .map_err(|e| publication_failed(&config.state, &config.out, config.cycle, e))?;
    progress.finish("commit", state_rows, "state rows", commit_started.elapsed());
    fault_point("published");
    state.published(config.cycle)?;
    if !made_stale.is_empty() {
        crate::progress::note(
            "WARN",
            &format!(
                "warning: re-running {} made later cycles stale: {}; re-run them in order, starting with {}",
                config.cycle,
                made_stale.join(", "),
                made_stale[0]
            ),
        );
    }
    if let Some(signal) = stop_signal() {
        return Err(RunError::Io(format!(
            "stopped by {signal} after the commit point: cycle {} is committed in {} and its publication finished ({}); nothing is pending",
            config.cycle,
            config.state.join("state.db").display(),
            published.display()
        )));
    }

    Ok(RunReport {
        cycle: config.cycle,
        published,
        lines_read: record.lines_read,
        lines_accepted: record.lines_accepted,
        lines_rejected: record.lines_rejected,
        partners: bundle.partners.len(),
        rejects: rejects.len(),
        ledger_rows: evaluation.rows.len(),
        carried_in_rows: prior.carried.len(),
        ruleset_hash: rule_set.hash.clone(),
        ruleset_name: rule_set.name.clone(),
        summary,
        made_stale,
        elapsed_ms: started.elapsed().as_millis(),
    })
}

/// The summary's totals per currency (and lever): incentive credited to the cycle (this run's
/// rows and those carried in), deferred, expired, subsidies, withdrawals, vouchers deducted and
/// expired.
#[allow(clippy::too_many_arguments)]
fn add_totals(
    summary: &mut Summary,
    cycle: Cycle,
    rule_set: &rules::RuleSet,
    evaluation: &evaluate::Evaluation<'_>,
    carried: &[evaluate::CarriedRow],
    matched: &vouchers::VoucherOutcome,
    bundle: &Bundle,
    voucher_states: &[vouchers::VoucherState],
) {
    for row in &evaluation.rows {
        let currency = row.currency.to_string();
        let add = |m: &mut BTreeMap<String, Decimal>| {
            *m.entry(currency.clone()).or_default() += row.amount
        };
        match row.kind {
            k if k.is_incentive() && row.credit_cycle == cycle => {
                *summary
                    .credited
                    .entry(currency.clone())
                    .or_default()
                    .entry(evaluation.lever_name(rule_set, row).to_string())
                    .or_default() += row.amount;
            }
            k if k.is_incentive() => add(&mut summary.deferred),
            Kind::Expiry => add(&mut summary.incentive_expired),
            Kind::Subsidy => {
                let e = summary.subsidies.entry(currency.clone()).or_default();
                e.0 += row.amount;
                e.1 += 1;
            }
            Kind::Withdrawal => {
                let e = summary.withdrawn.entry(currency.clone()).or_default();
                e.0 -= row.amount;
                e.1 += 1;
            }
            _ => {}
        }
    }
    for c in carried {
        *summary
            .credited
            .entry(c.currency.to_string())
            .or_default()
            .entry(c.lever.clone())
            .or_default() += c.amount;
    }
    for d in &matched.deductions {
        *summary
            .vouchers_deducted
            .entry(bundle.bill_lines[d.line as usize].currency.to_string())
            .or_default() += d.amount;
    }
    for b in &matched.balances {
        if !b.expired.is_zero() {
            *summary
                .vouchers_expired
                .entry(voucher_states[b.voucher].voucher.currency.to_string())
                .or_default() += b.expired;
        }
    }
}

/// `{"bill_lines.csv": "<sha256>", ...}` for the files present.
fn input_hashes(bundle: &Bundle) -> String {
    let map: BTreeMap<&str, &str> = bundle
        .files
        .iter()
        .filter(|f| f.digest.present)
        .map(|f| (f.file, f.digest.sha256.as_str()))
        .collect();
    serde_json::to_string(&map).unwrap_or_default()
}

/// Σ incentive credited to the cycle per currency (this run's rows and those carried in), as
/// `{"CNY": "123.45"}`: the summary's per-lever figures added up.
fn credited(summary: &Summary) -> String {
    let text: BTreeMap<&str, String> = summary
        .credited
        .iter()
        .map(|(currency, levers)| {
            (
                currency.as_str(),
                levers.values().copied().sum::<Decimal>().to_string(),
            )
        })
        .collect();
    serde_json::to_string(&text).unwrap_or_default()
}
