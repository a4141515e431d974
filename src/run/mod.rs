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
use crate::reject::Reject;
use crate::rules;
use crate::state::{CycleRecord, PendingPublication, StateStore};
use crate::write::{self, Manifest, Publication, Staging, Timings};
use crate::{balances, explain, subsidies, vouchers};
use rust_decimal::Decimal;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

mod partitions;
pub mod shard_args;
pub mod shards;

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
    /// Partitions the partners are processed in (1: the whole month at once).
    pub partitions: u32,
    /// Where partitions' tables wait for the merge (default: in `out`).
    pub spill: Option<PathBuf>,
    /// Bytes the run's peak memory stays within (SPEC §8).
    pub memory_budget: u64,
    /// `merge`: the parts folder whose shards' parts are merged instead of evaluating `input`.
    pub parts: Option<PathBuf>,
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
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
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
            Publication::Published => {
                state.published(p.cycle)?;
                write::uploaded(&p.out_root, &p.staged);
            }
            Publication::Pending => {
                let _lock = if p.cycle == config.cycle && p.out_root == out_root {
                    None
                } else {
                    Some(crate::state::lock::Lock::publisher(&p.out_root, p.cycle)?)
                };
                write::publish(&p.out_root, p.cycle, &p.staged)
                    .map_err(|e| publication_failed(&state.dir, &p.out_root, p.cycle, e.into()))?;
                state.published(p.cycle)?;
                write::uploaded(&p.out_root, &p.staged);
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

/// The phases of a run, each shown as it starts and ends (progress) and timed on its own for
/// the manifest: one helper records both, so the two never disagree.
struct Phases<'p> {
    progress: &'p dyn Progress,
    ms: BTreeMap<&'static str, u128>,
}

/// A phase under way.
struct Phase {
    name: &'static str,
    started: Instant,
    shown: bool,
}

impl<'p> Phases<'p> {
    fn new(progress: &'p dyn Progress) -> Phases<'p> {
        Phases {
            progress,
            ms: BTreeMap::new(),
        }
    }

    /// A phase shown to the person or the log, and timed.
    fn start(&self, name: &'static str) -> Phase {
        self.progress.start(name);
        Phase {
            name,
            started: Instant::now(),
            shown: true,
        }
    }

    /// A phase only timed (opening the rule set and the state: short, and before any output).
    fn start_quiet(&self, name: &'static str) -> Phase {
        Phase {
            name,
            started: Instant::now(),
            shown: false,
        }
    }

    fn finish(&mut self, phase: Phase, count: u64, unit: &'static str) {
        let elapsed = phase.started.elapsed();
        if phase.shown {
            self.progress.finish(phase.name, count, unit, elapsed);
        }
        self.ms.insert(phase.name, elapsed.as_millis());
    }
}

/// What opening a run gives: the rule set, the state (locked), what earlier cycles left, this
/// run's hold on `OUT/<cycle>`, and the later cycles a re-run makes stale.
struct Opened {
    rule_set: rules::RuleSet,
    prior: evaluate::Prior,
    state_tag: String,
    made_stale: Vec<String>,
    _publisher: crate::state::lock::Lock,
}

/// The rule set (checked first: a set that fails stops the run before anything else), the
/// state and its lock, the output folder (one publisher of `OUT/<cycle>`; what is there must be
/// ours), interrupted publications finished, killed runs' leftovers swept, the chain rules.
fn open(config: &RunConfig) -> Result<(Opened, StateStore), RunError> {
    let rule_set = rules::load_rules(&config.rules).map_err(RunError::Rules)?;
    for warning in &rule_set.warnings {
        crate::progress::note("warn", &format!("warning: {warning}"));
    }
    let state = StateStore::open(&config.state)?;
    let publisher = crate::state::lock::Lock::publisher(&config.out, config.cycle)?;
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
    // The pools of earlier cycles are read once the lines say which orders their refunds name.
    let prior = evaluate::Prior {
        pools: Vec::new(),
        carried: state.carried(config.cycle)?,
    };
    let opened = Opened {
        rule_set,
        prior,
        state_tag,
        made_stale,
        _publisher: publisher,
    };
    Ok((opened, state))
}

/// The bundle's lines grouped by partner while `orders` are sorted by id beside it, and the
/// earlier cycles' pools of the orders the refunds name read into `opened` (what evaluation
/// takes next, in `run` and `whatif` alike).
fn group_and_read_pools<'o>(
    config: &RunConfig,
    state: &StateStore,
    bundle: &mut Bundle,
    orders: &'o [crate::model::Order],
    opened: &mut Opened,
) -> Result<evaluate::OrdersById<'o>, RunError> {
    let (orders_by_id, ()) = rayon::join(
        || evaluate::OrdersById::new(orders),
        || bundle.group_lines_by_partner(),
    );
    opened.prior.pools = state.prior_pools(
        config.cycle,
        &orders_by_id.clawed_orders(&bundle.bill_lines),
    )?;
    Ok(orders_by_id)
}

/// The likeliest cron mistake: the right folder run as the wrong cycle. Publishing an empty
/// month would hide it, so it fails like a usage error.
fn refuse_wrong_cycle(config: &RunConfig, bundle: &Bundle) -> Result<(), RunError> {
    // The file's report: a partitioned run's bundle of master data holds no lines.
    let accepted = bundle
        .files
        .iter()
        .find(|f| f.file == "bill_lines.csv")
        .map_or(bundle.bill_lines.len(), |f| f.accepted as usize);
    let lines_read = accepted + bundle.rejected_lines.len();
    let all_wrong = bundle
        .rejected_lines
        .iter()
        .all(|l| l.reject.code == crate::reject::RejectCode::WrongCycle);
    if lines_read == 0 || accepted > 0 || !all_wrong {
        return Ok(());
    }
    let seen = bundle
        .rejected_lines
        .first()
        .map(|l| l.reject.value.clone())
        .unwrap_or_default();
    Err(RunError::Usage(format!(
        "every one of the {lines_read} bill lines in {} belongs to another cycle (the first says {seen:?}), not {}: check --cycle and --input",
        config.input.display(),
        config.cycle
    )))
}

/// After the load phase (the whole bundle, or the master data of a run in partitions): the rows
/// read, then what refuses a bundle before anything is evaluated.
fn loaded(
    config: &RunConfig,
    phases: &mut Phases<'_>,
    phase: Phase,
    bundle: &Bundle,
) -> Result<(), RunError> {
    let read: u64 = bundle.files.iter().map(|f| f.digest.rows_read).sum();
    phases.finish(phase, read, "rows");
    refuse_wrong_cycle(config, bundle)?;
    fault_point("loaded");
    check_stop("load")?;
    refuse_rejects(config, &bundle.rejects)
}

/// `--strict` after the balances: the rows rejected against the state, in (file, row, column)
/// order (the loader's were refused before evaluation).
fn refuse_later_rejects(config: &RunConfig, later: &[Reject]) -> Result<(), RunError> {
    if !config.strict || later.is_empty() {
        return Ok(());
    }
    refuse_rejects(config, &cycle_rejects(&Bundle::default(), later).1)
}

/// `--strict`: any reject fails the run before anything is written, the first ones listed.
fn refuse_rejects(config: &RunConfig, rejects: &[crate::reject::Reject]) -> Result<(), RunError> {
    if !config.strict || rejects.is_empty() {
        return Ok(());
    }
    for reject in rejects.iter().take(STRICT_REJECTS_SHOWN) {
        crate::progress::note("WARN", &format!("rejected: {reject}"));
    }
    if rejects.len() > STRICT_REJECTS_SHOWN {
        crate::progress::note(
            "WARN",
            &format!("… and {} more", rejects.len() - STRICT_REJECTS_SHOWN),
        );
    }
    Err(RunError::StrictRejects {
        count: rejects.len(),
    })
}

/// What the balance stages made: subsidy decisions, lots and withdrawals and expiry, vouchers,
/// and the rows rejected against the state.
struct Balanced {
    decisions: Vec<subsidies::SubsidyDecision>,
    settled: balances::BalanceOutcome,
    voucher_states: Vec<vouchers::VoucherState>,
    matched: vouchers::VoucherOutcome,
    /// Rows rejected against the state: a voucher's opening balance, an opening balance after
    /// the first cycle, an over-withdrawal.
    later_rejects: Vec<Reject>,
    /// Bill generation, and the instant the expiry report counts from.
    g: chrono::DateTime<chrono::Utc>,
    report_at: chrono::DateTime<chrono::Utc>,
}

/// What earlier cycles left to the balance stages: vouchers, and lots, carries, applications.
type PriorBalances = (
    Vec<crate::chain::StoredVoucher>,
    crate::chain::PriorBalances,
);

/// Subsidies, lots (withdrawals, expiry, lot M), vouchers; their rows join the journal, which
/// is then put in order once.
fn settle_balances(
    config: &RunConfig,
    rule_set: &rules::RuleSet,
    carried: &[evaluate::CarriedRow],
    (stored_vouchers, prior_balances): PriorBalances,
    bundle: &Bundle,
    evaluation: &mut evaluate::Evaluation<'_>,
) -> Balanced {
    let (voucher_states, voucher_rejects) =
        vouchers::cycle_vouchers(bundle, stored_vouchers, config.cycle);
    let g = vouchers::bill_generation(rule_set, config.cycle);
    // The expiry report counts its windows from G unless --as-of names another instant.
    let report_at = config.as_of.unwrap_or(g);
    let date_of =
        |t: chrono::DateTime<chrono::Utc>| t.with_timezone(&rule_set.time_zone).date_naive();
    let (decisions, subsidy_rows) = subsidies::decide(bundle, rule_set, config.cycle);
    let mut settled = balances::settle(
        bundle,
        rule_set,
        &balances::BalanceInputs {
            cycle: config.cycle,
            first_cycle: config.first_cycle,
            g_date: date_of(g),
            report_date: date_of(report_at),
            prior: &prior_balances,
            carried,
        },
        evaluation,
        &subsidy_rows,
    );
    // The journal gets the balance rows in the order they were made: subsidies, withdrawals,
    // expiry.
    evaluation.add_balance_rows(subsidy_rows, config.cycle);
    evaluation.add_balance_rows(std::mem::take(&mut settled.rows), config.cycle);
    let matched = vouchers::match_vouchers(bundle, rule_set, config.cycle, &voucher_states);
    evaluation.order_journal(bundle, rule_set);
    let mut later_rejects = voucher_rejects;
    later_rejects.append(&mut settled.rejects);
    Balanced {
        decisions,
        settled,
        voucher_states,
        matched,
        later_rejects,
        g,
        report_at,
    }
}

/// Every reject of the cycle (the loader's and those decided against the state), sorted by
/// file, row and column, and the file reports with the latter moved from accepted to rejected.
fn cycle_rejects(bundle: &Bundle, later: &[Reject]) -> (Vec<load::FileReport>, Vec<Reject>) {
    let files = load::with_later_rejects(&bundle.files, later);
    let mut rejects = bundle.rejects.clone();
    rejects.extend(later.iter().cloned());
    rejects.sort_by(|a, b| (a.file, a.row, a.column).cmp(&(b.file, b.row, b.column)));
    (files, rejects)
}

/// Where the run's temporary files go (partitions, the state rows waiting for the commit):
/// `--spill`, or beside the staging folder.
fn spill_root(config: &RunConfig, staging: &Staging) -> Result<PathBuf, RunError> {
    let root = config.spill.clone().unwrap_or_else(|| {
        staging
            .path()
            .parent()
            .map_or(config.out.clone(), PathBuf::from)
    });
    std::fs::create_dir_all(&root).map_err(|e| RunError::io(root.display(), e))?;
    Ok(root)
}

/// What the cycle changed in the pools, encoded (compressed) for the state, and the pools freed:
/// after the rows they are the largest thing evaluation leaves.
fn encode_pools(
    shelf: &Path,
    rule_set: &rules::RuleSet,
    bundle: &Bundle,
    evaluation: &mut evaluate::Evaluation<'_>,
) -> Result<crate::state::PoolRows, RunError> {
    let changed = evaluation.changed_pools_by_order(&bundle.partners);
    let pool_rows = crate::state::encode_pools(Some(shelf), changed.len(), |range| {
        changed[range]
            .iter()
            .map(|&i| evaluation.pool_delta(bundle, rule_set, i))
    })?;
    evaluation.free_pools();
    Ok(pool_rows)
}

/// SPEC §6 on the in-memory results, before anything is written: the explanations and the
/// identities (a violation is exit 4).
fn explain_cycle(
    config: &RunConfig,
    carried: &[evaluate::CarriedRow],
    bundle: &Bundle,
    evaluation: &evaluate::Evaluation<'_>,
    matched: &vouchers::VoucherOutcome,
) -> Result<Vec<explain::Explanation>, RunError> {
    let mut explanations = explain::explanations(bundle, evaluation, carried, config.cycle);
    // Test hook (debug builds only): break an identity to prove a violation stops the run.
    if cfg!(debug_assertions)
        && std::env::var_os("INCENTIVES_BREAK_IDENTITY").is_some()
        && let Some(e) = explanations.first_mut()
    {
        e.consumption += rust_decimal::Decimal::new(1, 2);
    }
    let violations = explain::check_identities(
        bundle,
        evaluation,
        carried,
        &explanations,
        matched,
        config.cycle,
    );
    if !violations.is_empty() {
        return Err(RunError::Reconciliation(violations));
    }
    Ok(explanations)
}

/// Every output table but the rejects into `staging`: the journal and statements on one side,
/// every other file on the other, two cores writing at once (each side also formats in
/// parallel). Returns the journal rows credited to later cycles, encoded for the state. In a
/// partition's folder ([`write::Format::Spill`]) the statements, the rows credited later and the
/// rejected lines are left to the merge.
#[allow(clippy::too_many_arguments)]
fn write_outputs(
    config: &RunConfig,
    rule_set: &rules::RuleSet,
    carried: &[evaluate::CarriedRow],
    staging: &Staging,
    bundle: &Bundle,
    evaluation: &evaluate::Evaluation<'_>,
    balanced: &Balanced,
    explanations: &[explain::Explanation],
) -> Result<crate::state::DeferredRows, RunError> {
    let whole = staging.format() != write::Format::Spill;
    let mut deferred = crate::state::DeferredRows::new(Some(&spill_root(config, staging)?));
    let (ledgers, others) = rayon::join(
        || {
            write::write_ledgers(
                staging,
                bundle,
                rule_set,
                evaluation,
                carried,
                config.cycle,
                &mut deferred,
            )
        },
        || -> Result<(), RunError> {
            write::write_outcomes(staging, bundle, rule_set, evaluation, whole)?;
            write::write_explanations(
                staging,
                rule_set,
                &config.cycle.to_string(),
                explanations,
                config.lang,
            )?;
            write::write_vouchers(
                staging,
                bundle,
                rule_set,
                &balanced.voucher_states,
                &balanced.matched,
            )?;
            write::write_expiry_report(
                staging,
                rule_set,
                &balanced.settled.report,
                &balanced.voucher_states,
                &balanced.matched,
                balanced.report_at,
            )?;
            write::write_subsidies(staging, bundle, rule_set, &balanced.decisions)?;
            Ok(())
        },
    );
    ledgers?;
    others?;
    Ok(deferred)
}

/// What a cycle's outputs add up to, from one evaluation or added up over the partitions: the
/// summary's and the manifest's totals, the state's record, what the cycle closes with.
#[derive(Default, serde::Serialize, serde::Deserialize)]
struct CycleTotals {
    summary: Summary,
    output: reconcile::OutputSums,
    lines: reconcile::BillLineTotals,
    ledger_rows: u64,
    closing: ClosingBalances,
    later_rejects: Vec<Reject>,
}

impl CycleTotals {
    fn of(
        config: &RunConfig,
        rule_set: &rules::RuleSet,
        carried: &[evaluate::CarriedRow],
        bundle: &Bundle,
        evaluation: &evaluate::Evaluation<'_>,
        balanced: Balanced,
        explanations: &[explain::Explanation],
    ) -> CycleTotals {
        let mut summary = Summary {
            pending_withdrawals: balanced.settled.pending.len(),
            explanation_rows: explanations.len(),
            ..Default::default()
        };
        add_totals(
            &mut summary,
            config.cycle,
            rule_set,
            evaluation,
            carried,
            &balanced.matched,
            bundle,
            &balanced.voucher_states,
        );
        CycleTotals {
            summary,
            output: reconcile::output_sums(bundle, evaluation, &balanced.matched, explanations),
            lines: reconcile::bill_line_totals(bundle),
            ledger_rows: evaluation.journal.len() as u64,
            closing: closing(&balanced),
            later_rejects: balanced.later_rejects,
        }
    }

    /// Adds a partition's totals (each partner, line and voucher is in one partition).
    fn add(&mut self, other: CycleTotals) {
        self.summary.add(other.summary);
        self.output.add(other.output);
        self.lines.add(other.lines);
        self.ledger_rows += other.ledger_rows;
        let closing = &mut self.closing;
        closing.vouchers.extend(other.closing.vouchers);
        closing.lots.extend(other.closing.lots);
        closing.carry.extend(other.closing.carry);
        closing.applied.extend(other.closing.applied);
        self.later_rejects.extend(other.later_rejects);
    }

    /// After the last [`CycleTotals::add`]: what was added in partition order, in the order one
    /// evaluation of the whole cycle gives.
    fn in_order(mut self) -> CycleTotals {
        let closing = &mut self.closing;
        closing
            .vouchers
            .sort_by(|a, b| a.0.voucher_id.cmp(&b.0.voucher_id));
        closing.lots.sort_by(|a, b| {
            (&a.partner_id, a.notified_on, &a.lot_id).cmp(&(
                &b.partner_id,
                b.notified_on,
                &b.lot_id,
            ))
        });
        closing.applied.sort();
        closing.applied.dedup();
        self
    }
}

/// What the cycle closes with for the next: a voucher that has expired and holds nothing more
/// is not carried on.
fn closing(balanced: &Balanced) -> ClosingBalances {
    ClosingBalances {
        vouchers: balanced
            .matched
            .balances
            .iter()
            .map(|b| (&balanced.voucher_states[b.voucher], b.closing))
            .filter(|(v, closing)| !(closing.is_zero() && v.voucher.expires_at <= balanced.g))
            .map(|(v, closing)| (v.voucher.clone(), v.partner_id.clone(), closing))
            .collect(),
        lots: balanced.settled.lots.clone(),
        carry: balanced.settled.carry.clone(),
        applied: balanced.settled.applied.clone(),
    }
}

/// What the evaluation of a cycle leaves once its tables are in the staging folder.
struct Written {
    totals: CycleTotals,
    /// The file reports with the rows rejected against the state.
    files: Vec<load::FileReport>,
    rejects: usize,
    deferred: crate::state::DeferredRows,
    pool_rows: crate::state::PoolRows,
}

/// `rejects.csv`: the loader's rejects and those decided against the state. Returns the file
/// reports with the latter moved from accepted to rejected, and the count.
fn write_rejects(
    staging: &Staging,
    bundle: &Bundle,
    later: &[Reject],
) -> Result<(Vec<load::FileReport>, usize), RunError> {
    let (files, rejects) = cycle_rejects(bundle, later);
    write::write_rejects(staging, &rejects)?;
    Ok((files, rejects.len()))
}

/// Evaluate, balances, explanations, written into the staging folder: the whole month at once.
fn run_whole(
    config: &RunConfig,
    opened: &mut Opened,
    state: &StateStore,
    mut bundle: Bundle,
    staging: &Staging,
    phases: &mut Phases<'_>,
) -> Result<Written, RunError> {
    let phase = phases.start("evaluate");
    // Grouping the lines is one thread's walk through memory; the orders are sorted beside it.
    // Nothing after evaluation reads the orders: they are freed as soon as it returns.
    let orders = std::mem::take(&mut bundle.orders);
    let orders_by_id = group_and_read_pools(config, state, &mut bundle, &orders, opened)?;
    let mut evaluation = evaluate::evaluate_with(
        &bundle,
        orders_by_id,
        &opened.rule_set,
        config.cycle,
        &opened.prior,
        evaluate::Journal::Later,
    );
    drop(orders);
    phases.finish(phase, bundle.bill_lines.len() as u64, "lines");
    warn_unusable_pools(config, evaluation.unusable_prior_pools());
    check_stop("evaluate")?;

    let phase = phases.start("balances");
    let carried = &opened.prior.carried;
    let prior = state.prior_balances(config.cycle)?;
    let balanced = settle_balances(
        config,
        &opened.rule_set,
        carried,
        prior,
        &bundle,
        &mut evaluation,
    );
    let count = balanced.voucher_states.len() + balanced.settled.lots.len();
    phases.finish(phase, count as u64, "vouchers and lots");
    check_stop("balances")?;
    refuse_later_rejects(config, &balanced.later_rejects)?;

    let phase = phases.start("reconcile");
    let shelf = spill_root(config, staging)?;
    let pool_rows = encode_pools(&shelf, &opened.rule_set, &bundle, &mut evaluation)?;
    let explanations = explain_cycle(config, carried, &bundle, &evaluation, &balanced.matched)?;
    phases.finish(phase, explanations.len() as u64, "explanations");
    fault_point("reconciled");
    check_stop("reconcile")?;

    let phase = phases.start("write");
    let rule_set = &opened.rule_set;
    let deferred = write_outputs(
        config,
        rule_set,
        carried,
        staging,
        &bundle,
        &evaluation,
        &balanced,
        &explanations,
    )?;
    let (files, rejects) = write_rejects(staging, &bundle, &balanced.later_rejects)?;
    check_stop("write")?;
    phases.finish(phase, staging.written().len() as u64, "files");
    let totals = CycleTotals::of(
        config,
        rule_set,
        carried,
        &bundle,
        &evaluation,
        balanced,
        &explanations,
    );
    Ok(Written {
        totals,
        files,
        rejects,
        deferred,
        pool_rows,
    })
}

fn warn_unusable_pools(config: &RunConfig, unusable: usize) {
    if unusable > 0 {
        crate::progress::note(
            "WARN",
            &format!(
                "warning: {unusable} pool(s) of what the orders refunded this cycle earned in earlier cycles name a lever no longer in the rule set or a partner missing from partners.csv: these refunds claw nothing back from them; restore the lever or the partner and re-run {} to claw them back",
                config.cycle
            ),
        );
    }
}

/// `--partitions N`, or as many partitions as `budget` needs for the size of the bundle's
/// `bill_lines.csv` (`partition::count_for`).
pub fn partitions_for(input: &Path, given: Option<std::num::NonZeroU32>, budget: u64) -> u32 {
    given.map_or_else(
        || {
            let lines = std::fs::metadata(input.join("bill_lines.csv")).map_or(0, |m| m.len());
            crate::partition::count_for(lines, budget)
        },
        |n| n.get(),
    )
}

/// `--threads N`: the worker threads of this process (default: one per core).
pub fn set_threads(n: Option<std::num::NonZeroUsize>) -> Result<(), RunError> {
    if let Some(n) = n {
        rayon::ThreadPoolBuilder::new()
            .num_threads(n.get())
            .build_global()
            .map_err(|e| RunError::Usage(format!("--threads {n}: {e}")))?;
    }
    Ok(())
}

pub fn run(config: &RunConfig, progress: &dyn Progress) -> Result<RunReport, RunError> {
    let started = Instant::now();
    let started_at = crate::calendar::format_instant(chrono::Utc::now());
    let mut phases = Phases::new(progress);
    catch_stop_signals();

    let phase = phases.start_quiet("open");
    let (mut opened, mut state) = open(config)?;
    phases.finish(phase, 0, "");
    check_stop("opening the state")?;

    let staging = Staging::begin(&config.out, config.cycle, config.format, &opened.state_tag)?;
    let (master, written) = if let Some(parts) = &config.parts {
        let (bundle, written) =
            shards::merge_shards(config, &opened, &state, &staging, &mut phases, parts)?;
        (Master::of(&bundle), written)
    } else if config.partitions > 1 {
        let (bundle, written) =
            partitions::run_partitioned(config, &opened, &state, &staging, &mut phases)?;
        (Master::of(&bundle), written)
    } else {
        let phase = phases.start("load");
        let bundle: Bundle = load::load_bundle(&config.input, config.cycle)?;
        loaded(config, &mut phases, phase, &bundle)?;
        // What the manifest and the state need of the bundle once it is evaluated.
        let master = Master::of(&bundle);
        let written = run_whole(config, &mut opened, &state, bundle, &staging, &mut phases)?;
        (master, written)
    };
    let Written {
        totals,
        files,
        rejects,
        deferred,
        pool_rows,
    } = written;
    let totals = totals.in_order();

    // The manifest, the summary and the state transaction are made while the outputs are
    // synced; the transaction is committed once they are.
    let state_rows = deferred.len() + pool_rows.len();
    let carried_in_rows = opened.prior.carried.len();
    let cycle_run = CycleRun {
        config,
        opened: &opened,
        state: &mut state,
        master: &master,
        files,
        rejects,
        started,
        started_at: &started_at,
        phases_ms: phases.ms.clone(),
    };
    let (staged, (summary, record, prepared)) = staging
        .into_staged_after(|staging| cycle_run.prepare(staging, totals, deferred, pool_rows))?;
    fault_point("staged");
    if let Err(e) = check_stop("staging") {
        // The prepared transaction is rolled back when dropped; the staged folder goes now.
        drop(prepared);
        let _ = std::fs::remove_dir_all(&staged);
        return Err(e);
    }
    let phase = phases.start("commit");
    let published = commit_and_publish(config, prepared, &staged)?;
    phases.finish(phase, state_rows, "state rows");
    fault_point("published");
    state.published(config.cycle)?;
    write::uploaded(&config.out, &staged);
    after_publication(config, &opened.made_stale, &published)?;

    Ok(RunReport {
        cycle: config.cycle,
        published,
        lines_read: record.lines_read,
        lines_accepted: record.lines_accepted,
        lines_rejected: record.lines_rejected,
        partners: master.partners,
        rejects,
        ledger_rows: record.ledger_rows as usize,
        carried_in_rows,
        ruleset_hash: opened.rule_set.hash.clone(),
        ruleset_name: opened.rule_set.name.clone(),
        summary,
        made_stale: opened.made_stale.clone(),
        elapsed_ms: started.elapsed().as_millis(),
    })
}

/// What the manifest and the state's record need of the bundle after evaluation has taken it:
/// the file reports (in a bundle of nothing else) and the number of partners.
struct Master {
    bundle: Bundle,
    partners: usize,
}

impl Master {
    fn of(bundle: &Bundle) -> Master {
        Master {
            bundle: Bundle {
                files: bundle.files.clone(),
                ..Default::default()
            },
            partners: bundle.partners.len(),
        }
    }
}

/// The commit point, then the publication: from the commit on the cycle is done, and is
/// published right after (a failure there leaves it pending, and says so).
fn commit_and_publish(
    config: &RunConfig,
    prepared: crate::state::PreparedCommit<'_>,
    staged: &Path,
) -> Result<PathBuf, RunError> {
    if let Err(e) = prepared.commit() {
        // Nothing was committed: the staged folder is not to be published.
        let _ = std::fs::remove_dir_all(staged);
        return Err(state_failed(&config.state, e.into()));
    }
    fault_point("committed");
    write::publish(&config.out, config.cycle, staged)
        .map_err(|e| publication_failed(&config.state, &config.out, config.cycle, e.into()))
}

/// What a published run still says: the later cycles it made stale, and a signal that came
/// after the commit point (the cycle is committed and published; exit 1 all the same).
fn after_publication(
    config: &RunConfig,
    made_stale: &[String],
    published: &Path,
) -> Result<(), RunError> {
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
    Ok(())
}

/// Everything a run made, for what is prepared while the outputs are synced: the manifest, the
/// summary, and the state's transaction.
struct CycleRun<'r> {
    config: &'r RunConfig,
    opened: &'r Opened,
    state: &'r mut StateStore,
    master: &'r Master,
    /// The file reports with the rows rejected against the state.
    files: Vec<load::FileReport>,
    rejects: usize,
    started: Instant,
    started_at: &'r str,
    phases_ms: BTreeMap<&'static str, u128>,
}

impl<'r> CycleRun<'r> {
    /// The manifest (written into the staging folder), the summary, the cycle's record and its
    /// prepared (not committed) state transaction.
    fn prepare(
        self,
        staging: &Staging,
        mut totals: CycleTotals,
        deferred: crate::state::DeferredRows,
        pool_rows: crate::state::PoolRows,
    ) -> Result<(Summary, CycleRecord, crate::state::PreparedCommit<'r>), RunError> {
        let written = staging.written();
        let outputs: Vec<String> = written.iter().map(|w| w.file.clone()).collect();
        let summary = self.summary(std::mem::take(&mut totals.summary), outputs);
        let record = self.record(&summary, totals.ledger_rows);
        let closing = std::mem::take(&mut totals.closing);
        self.manifest(staging, totals, summary.explanation_rows)?;
        let publication = PendingPublication {
            cycle: self.config.cycle,
            // The staging folder is kept where it is: this is the path `into_staged_after`
            // returns.
            staged: staging.path().to_path_buf(),
            out_root: write::absolute(&self.config.out),
        };
        let state_dir = &self.config.state;
        let prepared = self
            .state
            .prepare_commit(&record, deferred, pool_rows, &closing, &publication)
            .map_err(|e| state_failed(state_dir, e.into()))?;
        Ok((summary, record, prepared))
    }

    fn manifest(
        &self,
        staging: &Staging,
        totals: CycleTotals,
        explanation_rows: usize,
    ) -> Result<(), RunError> {
        let mut manifest = Manifest::new(
            self.config.cycle,
            self.config.first_cycle,
            &self.opened.rule_set,
            &self.files,
            totals.lines,
            self.rejects,
            staging.written(),
            Timings {
                started_at: self.started_at.to_string(),
                phases_ms: self.phases_ms.clone(),
                total_ms: self.started.elapsed().as_millis(),
            },
        );
        manifest.output_totals = totals.output.totals();
        manifest.identities = write::Identities {
            explanation_rows,
            checked: vec![
                "consumption = eligible_base + non_base + excluded + deferred_out_base + deferred_out_non_base",
                "refunds = clawback_base + refund_not_earned",
                "incentive = earned_now + carried_in + clawed_back + tier + cap + override = Σ ledger rows credited",
                "every input line once in line_outcomes.csv; Σ payable conserved",
                "vouchers: opening − deducted − expired = closing, never below zero, Σ deductions ≤ settlement",
            ],
            violations: 0,
        };
        Ok(staging.write_file("manifest.json", &manifest.to_json()?)?)
    }

    fn summary(&self, mut summary: Summary, outputs: Vec<String>) -> Summary {
        let rule_set = &self.opened.rule_set;
        summary.outputs = outputs;
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
        summary
    }

    fn record(&self, summary: &Summary, ledger_rows: u64) -> CycleRecord {
        let bundle = &self.master.bundle;
        let lines = bundle.files.iter().find(|f| f.file == "bill_lines.csv");
        CycleRecord {
            cycle: self.config.cycle.to_string(),
            run_at: self.started_at.to_string(),
            first_cycle: self.config.first_cycle,
            ruleset_hash: self.opened.rule_set.hash.clone(),
            input_hashes: input_hashes(bundle),
            lines_read: lines.map_or(0, |f| f.digest.rows_read),
            lines_accepted: lines.map_or(0, |f| f.accepted),
            lines_rejected: lines.map_or(0, |f| f.rejected),
            ledger_rows,
            credited: credited(summary),
            stale: false,
        }
    }
}

impl Summary {
    /// Adds a partition's figures.
    fn add(&mut self, other: Summary) {
        fn add_to<V: std::ops::AddAssign + Default>(
            to: &mut BTreeMap<String, V>,
            from: BTreeMap<String, V>,
        ) {
            for (k, v) in from {
                *to.entry(k).or_default() += v;
            }
        }
        for (currency, levers) in other.credited {
            add_to(self.credited.entry(currency).or_default(), levers);
        }
        add_to(&mut self.deferred, other.deferred);
        add_to(&mut self.vouchers_deducted, other.vouchers_deducted);
        add_to(&mut self.vouchers_expired, other.vouchers_expired);
        add_to(&mut self.incentive_expired, other.incentive_expired);
        for (currency, (sum, count)) in other.subsidies {
            let e = self.subsidies.entry(currency).or_default();
            e.0 += sum;
            e.1 += count;
        }
        for (currency, (sum, count)) in other.withdrawn {
            let e = self.withdrawn.entry(currency).or_default();
            e.0 += sum;
            e.1 += count;
        }
        self.pending_withdrawals += other.pending_withdrawals;
        self.explanation_rows += other.explanation_rows;
    }
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
    for row in evaluation.journal_rows() {
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

/// What `whatif` gets from [`evaluate_read_only`]: the sum of the ledger rows (every kind) per
/// (partner, lever, currency) under the rule set given, and each currency's places.
#[derive(Debug, Default)]
pub struct ReadOnlyTotals {
    pub totals: BTreeMap<(String, String, String), Decimal>,
    pub scales: BTreeMap<String, u32>,
    /// The cycle is stale in the state (an earlier cycle was re-run after it).
    pub stale: bool,
}

/// `whatif` (SPEC §10): closed cycle `config.cycle` evaluated again, read-only, on its inputs
/// (whose hashes must equal those the cycle ran on: exit 2 otherwise) under the rule set of
/// `config.rules`, against the cycle's prior state: the same phases as [`run`] up to the
/// balances (`open`'s rule set and prior, load, evaluate, `settle_balances`), and nothing
/// written: no staging folder, no state transaction, no publication, no lock in `OUT` (whatif
/// publishes nothing, and a publication swaps `OUT/<cycle>` whole, so a reader needs no lock).
/// Nothing takes the state's lock: the chain and the inputs are read and checked first, then the
/// prior state in one SQLite read transaction, where the cycle's record must be the same as
/// before, so a run that re-ran the cycle meanwhile is noticed (exit 1, run whatif again).
pub fn evaluate_read_only(config: &RunConfig) -> Result<ReadOnlyTotals, RunError> {
    let rule_set = rules::load_rules(&config.rules).map_err(RunError::Rules)?;
    let record = closed_cycle(config)?;
    let mut config = config.clone();
    config.first_cycle = record.first_cycle;
    if config.partitions > 1 {
        return partitions::evaluate_read_only(&config, &record, rule_set);
    }
    let config = &config;
    // The inputs, read and checked before the state is opened.
    let mut bundle: Bundle = load::load_bundle(&config.input, config.cycle)?;
    same_inputs(config, &record, &bundle)?;
    // Read without the lock, in one read transaction: whatif changes nothing and never waits
    // for a run, and a run that commits meanwhile is seen below.
    let state = StateStore::open_read_only(&config.state)?;
    unchanged(config, &state, &record)?;
    // `Opened` carries a run's hold on `OUT/<cycle>`; whatif publishes nothing, so its hold is
    // on a private folder of its own, never on `OUT`.
    let scratch = tempfile::tempdir().map_err(|e| RunError::io("a temporary folder", e))?;
    let prior = evaluate::Prior {
        pools: Vec::new(),
        carried: state.carried(config.cycle)?,
    };
    let mut opened = Opened {
        rule_set,
        prior,
        state_tag: write::state_tag(&config.state),
        made_stale: Vec::new(),
        _publisher: crate::state::lock::Lock::publisher(scratch.path(), config.cycle)?,
    };
    let orders = std::mem::take(&mut bundle.orders);
    let orders_by_id = group_and_read_pools(config, &state, &mut bundle, &orders, &mut opened)?;
    let mut evaluation = evaluate::evaluate_with(
        &bundle,
        orders_by_id,
        &opened.rule_set,
        config.cycle,
        &opened.prior,
        evaluate::Journal::Later,
    );
    drop(orders);
    let prior = state.prior_balances(config.cycle)?;
    let carried = &opened.prior.carried;
    settle_balances(
        config,
        &opened.rule_set,
        carried,
        prior,
        &bundle,
        &mut evaluation,
    );
    drop(state);
    let mut out = ReadOnlyTotals {
        stale: record.stale,
        ..Default::default()
    };
    out.add(&opened.rule_set, &bundle, &evaluation);
    Ok(out)
}

impl ReadOnlyTotals {
    /// Adds the ledger rows of the partners `bundle` owns (all of them, or a partition's).
    fn add(
        &mut self,
        rule_set: &rules::RuleSet,
        bundle: &Bundle,
        evaluation: &evaluate::Evaluation<'_>,
    ) {
        for row in &evaluation.rows {
            if !bundle.partners.owns(row.partner) {
                continue;
            }
            let key = (
                bundle.partners.at(row.partner).partner_id.to_string(),
                evaluation.lever_name(rule_set, row).to_string(),
                row.currency.to_string(),
            );
            *self.totals.entry(key).or_default() += row.amount;
            self.scales
                .entry(row.currency.to_string())
                .or_insert_with(|| rule_set.rounding.scale(row.currency));
        }
    }
}

/// The record of closed cycle `config.cycle` in the chain of `config.state` (usage errors when
/// there is no chain or the cycle has not run on it).
fn closed_cycle(config: &RunConfig) -> Result<crate::state::CycleRecord, RunError> {
    let Some(chain) = crate::state::read_chain(&config.state)? else {
        return Err(RunError::Usage(format!(
            "{}: no state.db: whatif re-runs a cycle of a chain; pass --state with the folder cycle {} was run with",
            config.state.display(),
            config.cycle
        )));
    };
    chain
        .into_iter()
        .map(|(record, _)| record)
        .find(|c| c.cycle == config.cycle.to_string())
        .ok_or_else(|| {
            RunError::Usage(format!(
                "cycle {} has not run on the state in {}: whatif compares a closed cycle with a proposal",
                config.cycle,
                config.state.display()
            ))
        })
}

/// Exit 2 unless `bundle`'s files are those the cycle ran on.
fn same_inputs(
    config: &RunConfig,
    record: &crate::state::CycleRecord,
    bundle: &Bundle,
) -> Result<(), RunError> {
    let ran_on: BTreeMap<String, String> =
        serde_json::from_str(&record.input_hashes).unwrap_or_default();
    let given: BTreeMap<String, String> =
        serde_json::from_str(&input_hashes(bundle)).unwrap_or_default();
    if ran_on == given {
        return Ok(());
    }
    let differ: Vec<String> = ran_on
        .keys()
        .chain(given.keys())
        .filter(|f| ran_on.get(*f) != given.get(*f))
        .cloned()
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    Err(RunError::Usage(format!(
        "{}: these are not the inputs cycle {} ran on ({} differ{}): pass --input with the bundle the cycle was run with",
        config.input.display(),
        config.cycle,
        differ.join(", "),
        if differ.len() == 1 { "s" } else { "" }
    )))
}

/// Exit 1 when the cycle was run again since its record was read.
fn unchanged(
    config: &RunConfig,
    state: &StateStore,
    record: &crate::state::CycleRecord,
) -> Result<(), RunError> {
    if state
        .chain()?
        .into_iter()
        .find(|c| c.cycle == record.cycle)
        .as_ref()
        == Some(record)
    {
        return Ok(());
    }
    Err(RunError::Io(format!(
        "{}: cycle {} was run again while whatif read its inputs; nothing was written: run whatif again",
        config.state.display(),
        config.cycle
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generate::{GenerateConfig, generate};
    use proptest::prelude::*;
    use std::path::Path;

    /// Every output file of `out`, by path, read (manifest.json without its timings).
    fn outputs(out: &Path) -> BTreeMap<String, Vec<u8>> {
        let mut files = BTreeMap::new();
        let mut stack = vec![out.to_path_buf()];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                let name = path.strip_prefix(out).unwrap().display().to_string();
                if name.starts_with('.') || name.contains("/.") {
                    continue;
                }
                if path.is_dir() {
                    stack.push(path);
                } else if name.ends_with("manifest.json") {
                    let mut m: serde_json::Value =
                        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
                    if let Some(o) = m.as_object_mut() {
                        o.remove("timings");
                    }
                    files.insert(name, m.to_string().into_bytes());
                } else {
                    files.insert(name, std::fs::read(&path).unwrap());
                }
            }
        }
        files
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4))]
        /// On random generated chains of two cycles, the production path (`run`, which checks
        /// the identities of SPEC §6 before it publishes, exit 4 otherwise): every cycle runs,
        /// and one thread or two give the same bytes in every output.
        #[test]
        fn identities_hold_and_threads_do_not_matter(seed in 1u64..1_000_000, lines in 200u64..1200) {
            let dir = tempfile::tempdir().unwrap();
            let first: Cycle = "2026-10".parse().unwrap();
            generate(&GenerateConfig {
                cycle: first,
                lines,
                seed,
                out: dir.path().join("in"),
                bad_rows_ppm: 5_000,
                partners: Some(6),
                cycles: 2,
                chain_start: first,
                chain_index: 0,
                customers: Some(40),
                top_share_ppm: 0,
            })
            .unwrap();
            let mut published = Vec::new();
            for threads in [1, 2] {
                let root = dir.path().join(format!("t{threads}"));
                let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
                for cycle in [first, first.next()] {
                    let config = RunConfig {
                        cycle,
                        input: dir.path().join("in").join(cycle.to_string()),
                        rules: Path::new(env!("CARGO_MANIFEST_DIR")).join("rules/reference"),
                        state: root.join("state"),
                        out: root.join("out"),
                        first_cycle: cycle == first,
                        strict: false,
                        as_of: None,
                        lang: explain::Lang::En,
                        format: write::Format::Csv,
                        partitions: 1,
                        spill: None,
                        memory_budget: crate::budget::MemoryBudget::DEFAULT.bytes(),
                        parts: None,
                    };
                    let report = pool.install(|| run(&config, &crate::progress::Silent));
                    prop_assert!(report.is_ok(), "{cycle}: {:?}", report.err().map(|e| e.to_string()));
                }
                published.push(outputs(&root.join("out")));
            }
            prop_assert!(!published[0].is_empty());
            prop_assert_eq!(&published[0], &published[1]);
        }
    }
}
