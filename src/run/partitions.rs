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

/// What the partitions leave for the merge: their folders (removed when dropped), their
/// spilled pool changes, and their rejected lines (whose outcomes are written in the merge).
struct Parts {
    folders: Vec<Staging>,
    pools: Vec<PathBuf>,
    rejected_lines: Vec<crate::load::RejectedLine>,
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
    let spill_root = config.spill.clone().unwrap_or_else(|| {
        staging
            .path()
            .parent()
            .map_or(config.out.clone(), PathBuf::from)
    });
    std::fs::create_dir_all(&spill_root).map_err(|e| RunError::io(spill_root.display(), e))?;

    let phase = phases.start("load");
    let mut pools_of = |wanted: &std::collections::BTreeSet<&str>| {
        state
            .prior_pools(config.cycle, wanted)
            .map_err(|e| crate::load::StructuralError::Io {
                file: "state.db",
                message: e.to_string(),
            })
    };
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
        config.partitions,
        config.memory_budget,
        (&spill_root, &name),
        &mut pools_of,
    )?;
    loaded(config, phases, phase, &split.master)?;
    // Every partition evaluates against the same earlier pools: lent to each in turn.
    let mut prior_pools = std::mem::take(&mut split.prior_pools);

    let phase = phases.start("evaluate");
    let prior_balances = state.prior_balances(config.cycle)?;
    let mut totals = CycleTotals::default();
    let mut parts = Parts {
        folders: Vec::new(),
        pools: Vec::new(),
        rejected_lines: Vec::new(),
    };
    let mut unusable = 0;
    let mut lines = 0;
    for k in 0..split.count() {
        let sub = split.partition(k)?;
        lines += sub.owned_lines().count();
        let prior = (&mut prior_pools, &prior_balances);
        let part = evaluate_partition(config, opened, sub, k, prior, split.path())?;
        unusable = unusable.max(part.unusable);
        parts.folders.push(part.folder);
        parts.pools.push(part.pools);
        parts.rejected_lines.extend(part.rejected_lines);
        totals.add(part.totals);
        check_stop("evaluate")?;
    }
    phases.finish(phase, lines as u64, "lines");
    warn_unusable_pools(config, unusable);
    refuse_later_rejects(config, &totals.later_rejects)?;
    fault_point("reconciled");

    let phase = phases.start("write");
    let (deferred, pool_rows) = merge(config, opened, staging, &parts)?;
    let (files, rejects) = write_rejects(staging, &split.master, &totals.later_rejects)?;
    check_stop("write")?;
    phases.finish(phase, staging.written().len() as u64, "files");
    drop(parts);
    let master = std::mem::take(&mut split.master);
    drop(split);
    let written = Written {
        totals,
        files,
        rejects,
        deferred,
        pool_rows,
    };
    Ok((master, written))
}

/// One partition's results: its totals, its tables' folder, its spilled pool changes, its
/// rejected lines.
struct Partition {
    totals: CycleTotals,
    folder: Staging,
    pools: PathBuf,
    unusable: usize,
    rejected_lines: Vec<crate::load::RejectedLine>,
}

fn evaluate_partition(
    config: &RunConfig,
    opened: &Opened,
    mut sub: Bundle,
    k: u32,
    (prior_pools, prior_balances): (&mut Vec<crate::chain::PriorPool>, &super::PriorBalances),
    spill: &std::path::Path,
) -> Result<Partition, RunError> {
    let rule_set = &opened.rule_set;
    let count = config.partitions;
    sub.group_lines_by_partner();
    let orders = std::mem::take(&mut sub.orders);
    let prior = evaluate::Prior {
        pools: std::mem::take(prior_pools),
        carried: partition::carried(k, count, &opened.prior.carried),
    };
    let mut evaluation = evaluate::evaluate_with(
        &sub,
        OrdersById::new(&orders),
        rule_set,
        config.cycle,
        &prior,
        evaluate::Journal::Later,
    );
    drop(orders);
    let unusable = evaluation.unusable_prior_pools();
    let prior_k = partition::prior_balances(k, count, &prior_balances.0, &prior_balances.1);
    let balanced = settle_balances(
        config,
        rule_set,
        &prior.carried,
        prior_k,
        &sub,
        &mut evaluation,
    );

    let folder = Staging::partition(spill, k)?;
    let pools = folder.path().join("pools.csv");
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

/// Every table merged from the partitions' folders into the staging folder, and the pool
/// changes into the state's parts. The rejected lines' outcomes are made here, once.
fn merge(
    config: &RunConfig,
    opened: &Opened,
    staging: &Staging,
    parts: &Parts,
) -> Result<(DeferredRows, PoolRows), RunError> {
    let dirs: Vec<PathBuf> = parts
        .folders
        .iter()
        .map(|f| f.path().to_path_buf())
        .collect();
    let rule_set = &opened.rule_set;
    // The journal and statements on one side, every other table and the pools on the other.
    let (deferred, others) = rayon::join(
        || -> Result<DeferredRows, RunError> {
            let mut deferred = DeferredRows::default();
            write::merge_ledgers(
                staging,
                &dirs,
                rule_set,
                &opened.prior.carried,
                config.cycle,
                &mut deferred,
            )?;
            Ok(deferred)
        },
        || -> Result<PoolRows, RunError> {
            merge_others(staging, &dirs, &parts.rejected_lines)?;
            Ok(crate::state::merge_pools(parts.pools.clone())?)
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
