//! A run in partitions (SPEC §8, `--partitions N`): the partners processed a partition at a
//! time, each partition's bundle made by [`crate::partition::Routing`] (its partners' lines and
//! the copies that cross partitions), evaluated, balanced and explained as a whole month is,
//! its tables written to a folder of its own in the spill folder; then every table merged into
//! the staging folder in SPEC Appendix B order (entry ids numbered and statements written as
//! the journal passes), the pool changes merged into the state's order, and the totals added
//! up. The outputs are the same bytes whatever the number of partitions.

use super::{
    CycleTotals, Opened, Phases, RunConfig, Written, check_stop, explain_cycle, fault_point,
    loaded, refuse_later_rejects, settle_balances, warn_unusable_pools, write_outputs,
    write_rejects,
};
use crate::error::RunError;
use crate::evaluate::{self, OrdersById};
use crate::load::Bundle;
use crate::partition;
use crate::state::{DeferredRows, PoolRows, StateStore};
use crate::write::{self, Staging};
use std::path::PathBuf;

/// What the partitions (or shards) leave for the merge: their tables' folders, their spilled
/// pool changes, their rejected lines (whose outcomes are written in the merge), their totals.
#[derive(Default)]
pub(super) struct Parts {
    pub(super) dirs: Vec<PathBuf>,
    pub(super) pools: Vec<PathBuf>,
    pub(super) rejected_lines: Vec<crate::load::RejectedLine>,
    pub(super) totals: CycleTotals,
    pub(super) unusable: usize,
}

impl Parts {
    /// Adds a partition's results; returns its folder (removed when dropped, after the merge).
    pub(super) fn add(&mut self, part: Partition) -> Staging {
        self.unusable = self.unusable.max(part.unusable);
        self.dirs.push(part.folder.path().to_path_buf());
        self.pools.push(part.pools);
        self.rejected_lines.extend(part.rejected_lines);
        self.totals.add(part.totals);
        part.folder
    }
}

/// The ownership pass (`load::split`), each partition evaluated in turn, the merge. Returns
/// the bundle of master data the manifest needs, and what was written.
pub(super) fn run_partitioned(
    config: &RunConfig,
    opened: &Opened,
    state: &StateStore,
    staging: &Staging,
    phases: &mut Phases<'_>,
) -> Result<(Bundle, Written), RunError> {
    let spill_root = super::spill_root(config, staging)?;

    let phase = phases.start("load");
    let mut pools_of =
        |wanted: &std::collections::BTreeSet<&str>| prior_pools(Some(state), config.cycle, wanted);
    // Named as a staging folder is (`write::sweep`): a killed run's is removed by the next run
    // of the same state that finds it in --out.
    let (pid, start) = crate::process::me();
    let name = format!(
        ".{}.run-{pid}-{start}-{}-spill",
        config.cycle, opened.state_tag
    );
    let mut split = crate::load::split::split_bundle(
        &config.input,
        config.cycle,
        (config.partitions, config.memory_budget),
        (&spill_root, &name),
        None,
        &mut pools_of,
    )?;
    loaded(config, phases, phase, &split.master)?;
    // Every partition evaluates against the same earlier pools: lent to each in turn.
    let mut prior_pools = std::mem::take(&mut split.prior_pools);

    let phase = phases.start("evaluate");
    let prior_balances = state.prior_balances(config.cycle)?;
    let mut parts = Parts::default();
    let mut folders = Vec::new();
    let mut lines = 0;
    for k in 0..split.count() {
        let sub = split.partition(k)?;
        split.release(k)?;
        lines += sub.owned_lines().count();
        let prior = Earlier {
            rule_set: &opened.rule_set,
            carried: &opened.prior.carried,
            pools: &mut prior_pools,
            balances: &prior_balances,
        };
        let folder = Staging::partition(split.path(), k)?;
        let part = evaluate_partition(config, sub, k, prior, folder)?;
        folders.push(parts.add(part));
        check_stop("evaluate")?;
    }
    phases.finish(phase, lines as u64, "lines");
    let written = merge_parts(config, opened, staging, phases, &split.master, parts)?;
    drop(folders);
    let master = std::mem::take(&mut split.master);
    drop(split);
    Ok((master, written))
}

/// The earlier cycles' pools of the orders `wanted` (none without a state), as the ownership
/// pass asks for them: its errors are the loader's.
pub(super) fn prior_pools(
    state: Option<&StateStore>,
    cycle: crate::calendar::Cycle,
    wanted: &std::collections::BTreeSet<&str>,
) -> Result<Vec<crate::chain::PriorPool>, crate::load::StructuralError> {
    let Some(state) = state else {
        return Ok(Vec::new());
    };
    state
        .prior_pools(cycle, wanted)
        .map_err(|e| crate::load::StructuralError::Io {
            file: "state.db",
            message: e.to_string(),
        })
}

/// `whatif` on a cycle too large for its budget: the ownership pass, then each partition
/// evaluated and balanced in turn, its owned partners' ledger rows added up; nothing written
/// but the spill folder (removed after). The state is read in one read transaction, without
/// its lock; the inputs must be those the cycle ran on.
pub(super) fn evaluate_read_only(
    config: &RunConfig,
    record: &crate::state::CycleRecord,
    rule_set: crate::rules::RuleSet,
) -> Result<super::ReadOnlyTotals, RunError> {
    let state = StateStore::open_read_only(&config.state)?;
    let spill_root = config.spill.clone().unwrap_or_else(std::env::temp_dir);
    std::fs::create_dir_all(&spill_root).map_err(|e| RunError::io(spill_root.display(), e))?;
    let mut pools_of =
        |wanted: &std::collections::BTreeSet<&str>| prior_pools(Some(&state), config.cycle, wanted);
    let mut split = crate::load::split::split_bundle(
        &config.input,
        config.cycle,
        (config.partitions, config.memory_budget),
        (&spill_root, &format!(".{}.whatif-spill", config.cycle)),
        None,
        &mut pools_of,
    )?;
    super::same_inputs(config, record, &split.master)?;
    super::unchanged(config, &state, record)?;
    let carried = state.carried(config.cycle)?;
    let prior_balances = state.prior_balances(config.cycle)?;
    let mut prior_pools = std::mem::take(&mut split.prior_pools);
    let mut out = super::ReadOnlyTotals {
        stale: record.stale,
        ..Default::default()
    };
    for k in 0..split.count() {
        let mut sub = split.partition(k)?;
        split.release(k)?;
        sub.group_lines_by_partner();
        let orders = std::mem::take(&mut sub.orders);
        let prior = evaluate::Prior {
            pools: std::mem::take(&mut prior_pools),
            carried: partition::carried(k, config.partitions, &carried),
        };
        let (evaluation, _) = evaluate_and_settle(
            config,
            k,
            (&sub, orders),
            &rule_set,
            &prior,
            &prior_balances,
        );
        out.add(&rule_set, &sub, &evaluation);
        drop(evaluation);
        prior_pools = prior.pools;
        check_stop("evaluate")?;
    }
    Ok(out)
}

/// What the partitions or shards left, merged into the staging folder: the warnings and
/// refusals over the whole cycle, every table, `rejects.csv`.
pub(super) fn merge_parts(
    config: &RunConfig,
    opened: &Opened,
    staging: &Staging,
    phases: &mut Phases<'_>,
    master: &Bundle,
    parts: Parts,
) -> Result<Written, RunError> {
    warn_unusable_pools(config, parts.unusable);
    refuse_later_rejects(config, &parts.totals.later_rejects)?;
    fault_point("reconciled");

    let phase = phases.start("write");
    let (deferred, pool_rows) = merge(config, opened, staging, &parts)?;
    let (files, rejects) = write_rejects(staging, master, &parts.totals.later_rejects)?;
    check_merged(staging, master, &parts.totals)?;
    check_stop("write")?;
    phases.finish(phase, staging.written().len() as u64, "files");
    Ok(Written {
        totals: parts.totals,
        files,
        rejects,
        deferred,
        pool_rows,
    })
}

/// SPEC §6 where the partitions (or shards) meet: every bill line read has exactly one row in
/// the merged `line_outcomes` and one fate in the added-up totals; a line lost or doubled
/// between partitions fails the run (exit 4) before anything is committed.
fn check_merged(staging: &Staging, master: &Bundle, totals: &CycleTotals) -> Result<(), RunError> {
    let read = master
        .files
        .iter()
        .find(|f| f.file == "bill_lines.csv")
        .map_or(0, |f| f.digest.rows_read);
    let written = staging
        .written()
        .iter()
        .find(|w| w.file.starts_with("line_outcomes."))
        .and_then(|w| w.rows)
        .unwrap_or(0);
    let violations = lines_once(read, written, totals.output.outcomes());
    if violations.is_empty() {
        Ok(())
    } else {
        Err(RunError::Reconciliation(violations))
    }
}

/// The violations of "every input line once in line_outcomes" over the merged cycle.
fn lines_once(read: u64, written: u64, fates: u64) -> Vec<crate::error::Violation> {
    let violation = |identity: &str, actual: u64| crate::error::Violation {
        key: "bill_lines.csv".into(),
        identity: identity.into(),
        expected: read.into(),
        actual: actual.into(),
    };
    let mut found = Vec::new();
    if written != read {
        found.push(violation(
            "lines read = rows of the merged line_outcomes",
            written,
        ));
    }
    if fates != read {
        found.push(violation(
            "lines read = fates added up over the parts",
            fates,
        ));
    }
    found
}

/// One partition's results: its totals, its tables' folder, its spilled pool changes, its
/// rejected lines.
pub(super) struct Partition {
    pub(super) totals: CycleTotals,
    pub(super) folder: Staging,
    pub(super) pools: PathBuf,
    pub(super) unusable: usize,
    pub(super) rejected_lines: Vec<crate::load::RejectedLine>,
}

/// What a partition evaluates against: the rule set, the rows carried in (those of every
/// partner or of the partition's own), the earlier pools (lent to each partition in turn) and
/// the vouchers and balances earlier cycles closed with.
pub(super) struct Earlier<'e> {
    pub(super) rule_set: &'e crate::rules::RuleSet,
    pub(super) carried: &'e [crate::chain::CarriedRow],
    pub(super) pools: &'e mut Vec<crate::chain::PriorPool>,
    pub(super) balances: &'e super::PriorBalances,
}

/// Partition `k` of `config.partitions` evaluated, balanced, explained; its tables written to
/// `folder` ([`write::Format::Spill`]) and its pool changes beside them.
pub(super) fn evaluate_partition(
    config: &RunConfig,
    mut sub: Bundle,
    k: u32,
    earlier: Earlier<'_>,
    folder: Staging,
) -> Result<Partition, RunError> {
    let Earlier {
        rule_set,
        carried,
        pools: prior_pools,
        balances: prior_balances,
    } = earlier;
    sub.group_lines_by_partner();
    let orders = std::mem::take(&mut sub.orders);
    let prior = evaluate::Prior {
        pools: std::mem::take(prior_pools),
        carried: partition::carried(k, config.partitions, carried),
    };
    let (mut evaluation, balanced) =
        evaluate_and_settle(config, k, (&sub, orders), rule_set, &prior, prior_balances);
    let unusable = evaluation.unusable_prior_pools();

    let pools = folder.path().join(crate::spill::POOLS);
    let changed = evaluation.changed_pools_by_order(&sub.partners);
    crate::state::spill_pools(
        &pools,
        changed.iter().map(|&i| {
            (
                evaluation.pool_ranks(i),
                evaluation.pool_delta(&sub, rule_set, i),
            )
        }),
    )?;
    drop(changed);
    evaluation.free_pools();
    let explanations = explain_cycle(config, &prior.carried, &sub, &evaluation, &balanced.matched)?;
    write_outputs(
        config,
        rule_set,
        &prior.carried,
        &folder,
        &sub,
        &evaluation,
        &balanced,
        &explanations,
    )?;
    let totals = CycleTotals::of(
        config,
        rule_set,
        &prior.carried,
        &sub,
        &evaluation,
        balanced,
        &explanations,
    );
    drop(evaluation);
    *prior_pools = prior.pools;
    Ok(Partition {
        totals,
        folder,
        pools,
        unusable,
        rejected_lines: std::mem::take(&mut sub.rejected_lines),
    })
}

/// Partition `k`'s bundle (its lines grouped by partner, its `orders` taken out of it)
/// evaluated against `prior` (the earlier pools lent to it, its partners' carried rows) and
/// balanced against what earlier cycles closed with; the orders are freed once evaluated.
fn evaluate_and_settle<'a>(
    config: &RunConfig,
    k: u32,
    (sub, orders): (&'a Bundle, Vec<crate::model::Order>),
    rule_set: &'a crate::rules::RuleSet,
    prior: &'a evaluate::Prior,
    balances: &super::PriorBalances,
) -> (evaluate::Evaluation<'a>, super::Balanced) {
    let mut evaluation = evaluate::evaluate_with(
        sub,
        OrdersById::new(&orders),
        rule_set,
        config.cycle,
        prior,
        evaluate::Journal::Later,
    );
    drop(orders);
    let prior_k = partition::prior_balances(k, config.partitions, &balances.0, &balances.1);
    let balanced = settle_balances(
        config,
        rule_set,
        &prior.carried,
        prior_k,
        sub,
        &mut evaluation,
    );
    (evaluation, balanced)
}

/// Every table merged from the partitions' folders into the staging folder, and the pool
/// changes into the state's parts. The rejected lines' outcomes are made here, once.
fn merge(
    config: &RunConfig,
    opened: &Opened,
    staging: &Staging,
    parts: &Parts,
) -> Result<(DeferredRows, PoolRows), RunError> {
    let dirs = &parts.dirs;
    let rule_set = &opened.rule_set;
    // The state's rows wait for the commit on shelves in the spill folder.
    let shelf = super::spill_root(config, staging)?;
    // The journal and statements on one side, every other table and the pools on the other.
    let (deferred, others) = rayon::join(
        || -> Result<DeferredRows, RunError> {
            let mut deferred = DeferredRows::new(Some(&shelf));
            write::merge_ledgers(
                staging,
                dirs,
                rule_set,
                &opened.prior.carried,
                config.cycle,
                &mut deferred,
            )?;
            Ok(deferred)
        },
        || -> Result<PoolRows, RunError> {
            merge_others(staging, dirs, &parts.rejected_lines)?;
            Ok(crate::state::merge_pools(
                Some(&shelf),
                parts.pools.clone(),
            )?)
        },
    );
    let (deferred, pool_rows) = (deferred?, others?);
    Ok((deferred, pool_rows))
}

/// Every table but the journal and statements, merged; the rejected lines' outcomes made here.
fn merge_others(
    staging: &Staging,
    dirs: &[PathBuf],
    rejected_lines: &[crate::load::RejectedLine],
) -> Result<(), RunError> {
    use write::merge::{KeyPart::Count, KeyPart::Text, merge_table};
    let mut rejected: Vec<&crate::load::RejectedLine> = rejected_lines.iter().collect();
    rejected.sort_by(|a, b| {
        (a.line_id.as_str(), a.source_row()).cmp(&(b.line_id.as_str(), b.source_row()))
    });
    let rejected = rejected.into_iter().map(|r| {
        use crate::spill::KeyValue;
        let key = vec![
            KeyValue::Text(r.line_id.clone()),
            KeyValue::Count(r.source_row()),
        ];
        (key, write::rejected_outcome(r).to_vec())
    });
    merge_table(
        staging,
        dirs,
        "line_outcomes",
        write::OUTCOME_COLUMNS,
        &[Text(0), Count(12)],
        rejected,
    )?;
    let tables: [(&str, &'static [write::Column], write::merge::Order); 5] = [
        ("explanations", write::EXPLANATION_COLUMNS, &[Text(1)]),
        ("voucher_deductions", write::DEDUCTION_COLUMNS, &[Text(2)]),
        ("voucher_balances", write::BALANCE_COLUMNS, &[Text(0)]),
        ("expiry_report", write::EXPIRY_COLUMNS, &[Text(0)]),
        ("subsidies", write::SUBSIDY_COLUMNS, &[Text(0)]),
    ];
    for (name, columns, order) in tables {
        merge_table(staging, dirs, name, columns, order, std::iter::empty())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::lines_once;

    #[test]
    fn a_line_lost_or_doubled_between_parts_is_a_violation() {
        // 10 lines read: 10 outcome rows and 10 fates hold; 9 rows (a line lost in the merge)
        // or 11 fates (a line counted by two shards) each break the identity once.
        assert!(lines_once(10, 10, 10).is_empty());
        let lost = lines_once(10, 9, 10);
        assert_eq!(lost.len(), 1);
        assert_eq!(lost[0].actual, 9.into());
        let doubled = lines_once(10, 10, 11);
        assert_eq!(doubled.len(), 1);
        assert_eq!(doubled[0].expected, 10.into());
        assert_eq!(lines_once(10, 9, 11).len(), 2);
    }
}
