//! A month beyond one machine (SPEC §9): the steps of a run in partitions, each a command over
//! files in a parts folder, so that an existing engine (Spark, a Kubernetes Indexed Job,
//! Airflow) runs them as tasks and retries them:
//!
//! ```text
//! PARTS/split/                  split: the ownership pass over the whole bundle
//!         split.json            rejects, file reports, rejected and duplicate lines, pools
//!         input/                the master data's input files, byte for byte
//!         part-000K/            shard K's lines (own/, copies/), orders/, slice.json
//! PARTS/shard-000K/             run --shard K/N: shard K's tables (spill CSV), pools.csv.sz,
//!                               part.json (its totals, settings, rejected lines)
//! PARTS/fold-000K/seal.json     fold --shard K/N: shard K's part sealed for the merge
//! ```
//!
//! What crosses shards travels forward in `split` (copies of the input rows a shard needs:
//! ARCHITECTURE.md lists the flows), so a shard's part owes no other shard a row; `fold` checks
//! that the part is whole and made from the same split, and seals it (the digest of
//! `part.json`), and `merge` takes sealed parts only. Each step builds its folder under a hidden
//! name and publishes it by one rename; the first attempt to publish wins, so a duplicate or late
//! attempt (byte for byte the same) changes nothing.

use super::partitions::{Earlier, Parts, evaluate_partition, merge_parts};
use super::{Opened, Phases, RunConfig, Written, loaded};
use crate::calendar::Cycle;
use crate::error::RunError;
use crate::load::Bundle;
use crate::load::split::Split;
use crate::state::{Slice, StateStore};
use crate::write::Staging;
use std::path::{Path, PathBuf};

/// One of N shards, numbered from 1 (`--shard K/N`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub k: u32,
    pub n: u32,
}

impl std::str::FromStr for Shard {
    type Err = String;
    fn from_str(text: &str) -> Result<Shard, String> {
        let bad = || format!("{text:?}: a shard is K/N with 1 ≤ K ≤ N, e.g. 2/5");
        let (k, n) = text.split_once('/').ok_or_else(bad)?;
        let (k, n): (u32, u32) = (k.parse().map_err(|_| bad())?, n.parse().map_err(|_| bad())?);
        if k == 0 || k > n {
            return Err(bad());
        }
        Ok(Shard { k, n })
    }
}

const SPLIT: &str = "split";

fn split_dir(parts: &Path) -> PathBuf {
    parts.join(SPLIT)
}

/// Shard K's part's folder name in the parts folder.
pub fn shard_step(k: u32) -> String {
    format!("shard-{k:04}")
}

/// Shard K's seal's folder name in the parts folder.
pub fn fold_step(k: u32) -> String {
    format!("fold-{k:04}")
}

fn shard_dir(parts: &Path, k: u32) -> PathBuf {
    parts.join(shard_step(k))
}

fn fold_dir(parts: &Path, k: u32) -> PathBuf {
    parts.join(fold_step(k))
}

fn slice_file(parts: &Path, k: u32) -> PathBuf {
    split_dir(parts)
        .join(format!("part-{k:04}"))
        .join("slice.json")
}

/// A step's input that is not there yet: exit 1, which an engine retries (SPEC §9).
fn missing(what: &str, path: &Path, step: &str) -> RunError {
    RunError::Io(format!(
        "{}: missing {what}: run {step} first (or wait for it), then this step again",
        path.display()
    ))
}

/// What a split's command line gives.
pub struct SplitConfig {
    pub cycle: Cycle,
    pub input: PathBuf,
    pub state: PathBuf,
    pub parts: PathBuf,
    pub shards: u32,
    pub first_cycle: bool,
    pub memory_budget: u64,
    pub spill: Option<PathBuf>,
}

/// `incentives split`: the ownership pass over the whole bundle into `PARTS/split`, with each
/// shard's slice of the prior state. Reads `state.db` in one read transaction, takes no lock
/// and writes nothing there. Returns whether this attempt published the split (false: an
/// earlier attempt had).
pub fn split(config: &SplitConfig) -> Result<bool, RunError> {
    if split_dir(&config.parts).join("split.json").is_file() {
        return Ok(false);
    }
    let state = if config.state.join("state.db").exists() {
        let state = StateStore::open_read_only(&config.state)?;
        state.check_chain(config.cycle, config.first_cycle)?;
        Some(state)
    } else if config.first_cycle {
        None
    } else {
        return Err(RunError::Usage(format!(
            "cycle {} needs cycle {} in the state ({}), and there is no state.db: run {} first, or pass --first-cycle if {} starts the chain",
            config.cycle,
            config.cycle.previous(),
            config.state.display(),
            config.cycle.previous(),
            config.cycle
        )));
    };
    let folder = Staging::step(&config.parts, SPLIT)?;
    let spill = config.spill.clone().unwrap_or_else(|| config.parts.clone());
    let mut pools_of = |wanted: &std::collections::BTreeSet<&str>| {
        super::partitions::prior_pools(state.as_ref(), config.cycle, wanted)
    };
    let split = crate::load::split::split_bundle(
        &config.input,
        config.cycle,
        (config.shards, config.memory_budget),
        (&spill, ".split-spill"),
        Some(folder.path()),
        &mut pools_of,
    )?;
    split.save(&config.input)?;
    write_slices(config, state.as_ref(), folder.path())?;
    drop(split);
    Ok(folder.keep_as(&split_dir(&config.parts))?)
}

/// Each shard's slice of the prior state, beside its lines.
fn write_slices(
    config: &SplitConfig,
    state: Option<&StateStore>,
    folder: &Path,
) -> Result<(), RunError> {
    let (version, carried, (vouchers, balances)) = match state {
        Some(state) => (
            state.version()?,
            state.carried(config.cycle)?,
            state.prior_balances(config.cycle)?,
        ),
        None => (StateStore::empty_version(), Vec::new(), Default::default()),
    };
    let n = config.shards;
    for k in 0..n {
        let (vouchers, balances) = crate::partition::prior_balances(k, n, &vouchers, &balances);
        let slice = Slice {
            state_version: version.clone(),
            first_cycle: config.first_cycle,
            carried: crate::partition::carried(k, n, &carried),
            vouchers,
            balances,
        };
        let path = folder.join(format!("part-{:04}", k + 1)).join("slice.json");
        crate::state::write_slice(&path, &slice)?;
    }
    Ok(())
}

/// What a shard's part records besides its tables: what it was made from and with (the merge
/// refuses parts that differ), and its results.
#[derive(serde::Serialize, serde::Deserialize)]
struct ShardPart {
    cycle: Cycle,
    shard: u32,
    shards: u32,
    settings: Settings,
    totals: super::CycleTotals,
    unusable: usize,
    rejected_lines: Vec<crate::load::RejectedLine>,
}

/// What changes a part's bytes besides the inputs: every part and the merge must agree.
#[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
struct Settings {
    state_version: String,
    first_cycle: bool,
    ruleset_hash: String,
    format: String,
    lang: String,
    as_of: Option<chrono::DateTime<chrono::Utc>>,
}

impl Settings {
    fn of(config: &RunConfig, ruleset_hash: &str, state_version: String) -> Settings {
        Settings {
            state_version,
            first_cycle: config.first_cycle,
            ruleset_hash: ruleset_hash.to_string(),
            format: format!("{:?}", config.format),
            lang: format!("{:?}", config.lang),
            as_of: config.as_of,
        }
    }
}

/// `incentives run --shard K/N --parts DIR`: shard K evaluated from the split alone (its lines,
/// orders and slice of the state), its tables and results published as `PARTS/shard-000K`.
/// Returns whether this attempt published the part.
pub fn run_shard(
    config: &RunConfig,
    shard: Shard,
    parts: &Path,
    cycle: Option<Cycle>,
) -> Result<bool, RunError> {
    let record = split_dir(parts).join("split.json");
    if !record.is_file() {
        return Err(missing("split", &record, "split"));
    }
    if shard_dir(parts, shard.k).join("part.json").is_file() {
        return Ok(false);
    }
    let rule_set = crate::rules::load_rules(&config.rules).map_err(RunError::Rules)?;
    let mut split = Split::reopen(&split_dir(parts))?;
    refuse_other_count(&split, shard)?;
    if let Some(cycle) = cycle.filter(|c| *c != split.cycle()) {
        return Err(RunError::Usage(format!(
            "--cycle {cycle}: the split in {} is of cycle {}",
            parts.display(),
            split.cycle()
        )));
    }
    let slice = crate::state::read_slice(&slice_file(parts, shard.k))?;
    let config = RunConfig {
        cycle: split.cycle(),
        first_cycle: slice.first_cycle,
        partitions: shard.n,
        ..config.clone()
    };
    let k = shard.k - 1;
    let sub = split.partition(k)?;
    let mut pools = std::mem::take(&mut split.prior_pools);
    let balances = (slice.vouchers, slice.balances);
    let earlier = Earlier {
        rule_set: &rule_set,
        carried: &slice.carried,
        pools: &mut pools,
        balances: &balances,
    };
    let folder = Staging::step(parts, &format!("shard-{:04}", shard.k))?;
    let part = evaluate_partition(&config, sub, k, earlier, folder)?;
    let record = ShardPart {
        cycle: config.cycle,
        shard: shard.k,
        shards: shard.n,
        settings: Settings::of(&config, &rule_set.hash, slice.state_version),
        totals: part.totals,
        unusable: part.unusable,
        rejected_lines: part.rejected_lines,
    };
    let json = serde_json::to_vec(&record).map_err(|e| RunError::Io(e.to_string()))?;
    part.folder.write_file("part.json", &json)?;
    Ok(part.folder.keep_as(&shard_dir(parts, shard.k))?)
}

fn refuse_other_count(split: &Split, shard: Shard) -> Result<(), RunError> {
    if split.count() != shard.n {
        return Err(RunError::Usage(format!(
            "--shard {}/{}: the split in --parts has {} shards; give --shard K/{}",
            shard.k,
            shard.n,
            split.count(),
            split.count()
        )));
    }
    Ok(())
}

fn read_part(parts: &Path, k: u32) -> Result<(ShardPart, Vec<u8>), RunError> {
    let path = shard_dir(parts, k).join("part.json");
    if !path.is_file() {
        return Err(missing(
            &format!("shard {k}'s part"),
            &path,
            &format!("run --shard {k}/N"),
        ));
    }
    crate::load::read_json(&path).map_err(|e| {
        RunError::Io(format!(
            "{e}: remove {} and run its shard again",
            shard_dir(parts, k).display()
        ))
    })
}

/// The seal `fold` writes: the digest of the part it checked.
#[derive(serde::Serialize, serde::Deserialize)]
struct Seal {
    shard: u32,
    shards: u32,
    part_sha256: String,
}

fn digest(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// `incentives fold --shard K/N --parts DIR`: what the other shards owe K folded into its part.
/// Nothing crosses shards after `split` (it sends each shard the rows it needs), so this checks
/// that K's part is whole and of this split, and seals it for the merge. Returns whether this
/// attempt published the seal.
pub fn fold(shard: Shard, parts: &Path) -> Result<bool, RunError> {
    let record = split_dir(parts).join("split.json");
    if !record.is_file() {
        return Err(missing("split", &record, "split"));
    }
    let (part, bytes) = read_part(parts, shard.k)?;
    if part.shards != shard.n || part.shard != shard.k {
        return Err(RunError::Usage(format!(
            "--shard {}/{}: the part in {} is shard {}/{}",
            shard.k,
            shard.n,
            shard_dir(parts, shard.k).display(),
            part.shard,
            part.shards
        )));
    }
    let seal = Seal {
        shard: shard.k,
        shards: shard.n,
        part_sha256: digest(&bytes),
    };
    let json = serde_json::to_vec(&seal).map_err(|e| RunError::Io(e.to_string()))?;
    let folder = Staging::step(parts, &format!("fold-{:04}", shard.k))?;
    folder.write_file("seal.json", &json)?;
    Ok(folder.keep_as(&fold_dir(parts, shard.k))?)
}

/// `incentives merge`: the sealed parts of every shard merged into the staging folder, as a run
/// in partitions merges its partitions. Returns the master data the manifest needs and what was
/// written; the caller commits the state once and publishes.
pub(super) fn merge_shards(
    config: &RunConfig,
    opened: &Opened,
    state: &StateStore,
    staging: &Staging,
    phases: &mut Phases<'_>,
    parts: &Path,
) -> Result<(Bundle, Written), RunError> {
    let phase = phases.start("load");
    let record = split_dir(parts).join("split.json");
    if !record.is_file() {
        return Err(missing("split", &record, "split"));
    }
    let mut split = Split::reopen(&split_dir(parts))?;
    if split.cycle() != config.cycle {
        return Err(RunError::Usage(format!(
            "--cycle {}: the split in {} is of cycle {}",
            config.cycle,
            parts.display(),
            split.cycle()
        )));
    }
    loaded(config, phases, phase, &split.master)?;
    let n = split.count();
    let version = state.version()?;
    let expected = Settings::of(config, &opened.rule_set.hash, version);
    let mut merged = Parts::default();
    for k in 1..=n {
        let (part, bytes) = read_part(parts, k)?;
        check_seal(parts, Shard { k, n }, &bytes)?;
        refuse_other_settings(&expected, &part.settings, k)?;
        merged.dirs.push(shard_dir(parts, k));
        merged
            .pools
            .push(shard_dir(parts, k).join(crate::spill::POOLS));
        merged.rejected_lines.extend(part.rejected_lines);
        merged.unusable = merged.unusable.max(part.unusable);
        merged.totals.add(part.totals);
    }
    let master = std::mem::take(&mut split.master);
    let written = merge_parts(config, opened, staging, phases, &master, merged)?;
    Ok((master, written))
}

fn check_seal(parts: &Path, shard: Shard, part: &[u8]) -> Result<(), RunError> {
    let path = fold_dir(parts, shard.k).join("seal.json");
    if !path.is_file() {
        return Err(missing(
            &format!("shard {}'s seal", shard.k),
            &path,
            &format!("fold --shard {}/{}", shard.k, shard.n),
        ));
    }
    let (seal, _): (Seal, _) = crate::load::read_json(&path)
        .map_err(|e| RunError::Io(format!("{e}: remove its folder and fold again")))?;
    if seal.part_sha256 != digest(part) || seal.shards != shard.n {
        return Err(RunError::Usage(format!(
            "{}: shard {}'s part changed after it was folded: split, run and fold into a new --parts",
            path.display(),
            shard.k
        )));
    }
    Ok(())
}

fn refuse_other_settings(expected: &Settings, part: &Settings, k: u32) -> Result<(), RunError> {
    if expected == part {
        return Ok(());
    }
    let what = if expected.state_version != part.state_version {
        "was split from another state version (a cycle was committed since): split again into a new --parts"
    } else if expected.ruleset_hash != part.ruleset_hash {
        "was made with another rule set: give merge the shards' --rules, or run the shards again"
    } else {
        "was made with other --format, --lang, --as-of or --first-cycle: give merge the shards' options"
    };
    Err(RunError::Usage(format!("shard {k}'s part {what}")))
}
