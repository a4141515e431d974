//! The command lines of SPEC §9's steps: `split`, `fold`, `merge` (and `run --shard`, whose
//! options are `run`'s).

use super::RunConfig;
use super::shards::{self, Shard, SplitConfig};
use crate::calendar::Cycle;
use crate::error::RunError;
use clap::Args;
use std::num::{NonZeroU32, NonZeroUsize};

use std::path::{Path, PathBuf};

#[derive(Debug, Args)]
pub struct SplitArgs {
    /// Bill cycle (账期) to split, YYYY-MM.
    #[arg(long, value_name = "YYYY-MM")]
    pub cycle: Cycle,

    /// Folder holding the cycle's exports.
    #[arg(long, value_name = "DIR")]
    pub input: PathBuf,

    /// State folder: read (one read transaction, no lock), never written.
    #[arg(long, value_name = "DIR", default_value = "state")]
    pub state: PathBuf,

    /// Number of shards; a partner's shard is a fixed function of its id (ARCHITECTURE.md).
    #[arg(long, value_name = "N")]
    pub shards: NonZeroU32,

    /// Parts folder: the split is published in it as split/.
    #[arg(long, value_name = "DIR")]
    pub parts: PathBuf,

    /// This cycle starts the chain (as `run --first-cycle`; give it to merge too).
    #[arg(long)]
    pub first_cycle: bool,

    /// Folder for the ownership pass's spilled buckets (default: the parts folder).
    #[arg(long, value_name = "DIR")]
    pub spill: Option<PathBuf>,

    /// Peak memory to stay within, in binary units; at least 256MiB.
    #[arg(long, value_name = "SIZE", default_value_t = crate::budget::MemoryBudget::DEFAULT)]
    pub memory_budget: crate::budget::MemoryBudget,

    /// Worker threads (default: one per core).
    #[arg(long, value_name = "N")]
    pub threads: Option<NonZeroUsize>,
}

#[derive(Debug, Args)]
pub struct FoldArgs {
    /// The shard whose part is folded and sealed, K of N (1 ≤ K ≤ N).
    #[arg(long, value_name = "K/N")]
    pub shard: Shard,

    /// Parts folder the split and the shards' runs published into.
    #[arg(long, value_name = "DIR")]
    pub parts: PathBuf,
}

#[derive(Debug, Args)]
pub struct MergeArgs {
    /// Bill cycle (账期) the parts are of, YYYY-MM.
    #[arg(long, value_name = "YYYY-MM")]
    pub cycle: Cycle,

    /// Parts folder holding the split and every shard's sealed part.
    #[arg(long, value_name = "DIR")]
    pub parts: PathBuf,

    /// Rule set folder: the shards' (its hash must be theirs).
    #[arg(long, value_name = "DIR", default_value = "rules/reference")]
    pub rules: PathBuf,

    /// State folder: the cycle is committed here, once.
    #[arg(long, value_name = "DIR", default_value = "state")]
    pub state: PathBuf,

    /// Where results go: OUT/<cycle>/ is (re)placed atomically.
    #[arg(long, value_name = "DIR", default_value = "out")]
    pub out: PathBuf,

    /// This cycle starts the chain (given to split too).
    #[arg(long)]
    pub first_cycle: bool,

    /// Fail (exit 3) on any rejected row, before anything is written.
    #[arg(long)]
    pub strict: bool,

    /// As `run --as-of` (the shards' own).
    #[arg(long, value_name = "TS", value_parser = crate::calendar::parse_as_of)]
    pub as_of: Option<chrono::DateTime<chrono::Utc>>,

    /// As `run --lang` (the shards' own).
    #[arg(long, value_enum, default_value = "en")]
    pub lang: crate::explain::Lang,

    /// As `run --format` (the shards' own).
    #[arg(long, value_enum, default_value = "csv")]
    pub format: crate::write::Format,

    /// Worker threads (default: one per core).
    #[arg(long, value_name = "N")]
    pub threads: Option<NonZeroUsize>,

    /// Peak memory to stay within, in binary units; at least 256MiB.
    #[arg(long, value_name = "SIZE", default_value_t = crate::budget::MemoryBudget::DEFAULT)]
    pub memory_budget: crate::budget::MemoryBudget,
}

/// `incentives split`: the words for the terminal.
pub fn split(args: SplitArgs) -> Result<String, RunError> {
    let remote = RemoteParts::open(&args.parts, args.spill.as_deref())?;
    if let Some(r) = &remote
        && r.done("split")?
    {
        return Ok(already_split(&args.parts));
    }
    let (input, _fetched) =
        crate::store::fetch_input(&args.input, args.spill.as_deref()).map_err(store_error)?;
    RunError::check_input(&input)?;
    let parts = remote
        .as_ref()
        .map_or_else(|| args.parts.clone(), |r| r.path().to_path_buf());
    RunError::check_folder("--parts", &parts, "the split is published in it")?;
    super::set_threads(args.threads)?;
    let config = SplitConfig {
        cycle: args.cycle,
        input,
        state: args.state,
        parts,
        shards: args.shards.get(),
        first_cycle: args.first_cycle,
        memory_budget: args.memory_budget.bytes(),
        spill: args.spill,
    };
    let mut published = shards::split(&config)?;
    if let Some(r) = &remote {
        published = published && r.publish("split")?;
    }
    Ok(if published {
        format!(
            "split {} into {} shards in {}\n",
            config.cycle,
            config.shards,
            args.parts.display()
        )
    } else {
        already_split(&args.parts)
    })
}

fn already_split(parts: &Path) -> String {
    format!(
        "{} already holds a split: this attempt changed nothing\n",
        parts.display()
    )
}

/// `incentives fold`: the words for the terminal.
pub fn fold(args: FoldArgs) -> Result<String, RunError> {
    let k = args.shard.k;
    let remote = RemoteParts::open(&args.parts, None)?;
    let published = match &remote {
        Some(r) if r.done(&shards::fold_step(k))? => false,
        Some(r) => {
            r.fetch("split", "split.json")?;
            r.fetch(&shards::shard_step(k), "part.json")?;
            shards::fold(args.shard, r.path())? && r.publish(&shards::fold_step(k))?
        }
        None => shards::fold(args.shard, &args.parts)?,
    };
    Ok(if published {
        format!("sealed shard {}/{}\n", args.shard.k, args.shard.n)
    } else {
        format!(
            "shard {}/{} was already sealed: this attempt changed nothing\n",
            args.shard.k, args.shard.n
        )
    })
}

/// `incentives merge`: the run's configuration (and, with `--parts s3://…`, the local copy of
/// the parts, to keep while it runs).
pub fn merge(mut args: MergeArgs) -> Result<(RunConfig, Option<tempfile::TempDir>), RunError> {
    RunError::check_folder("--out", &args.out, "OUT/<cycle> is published in it")?;
    RunError::check_folder("--state", &args.state, "it holds state.db and the lock")?;
    let remote = RemoteParts::open(&args.parts, None)?;
    if let Some(r) = &remote {
        fetch_for_merge(r)?;
        args.parts = r.path().to_path_buf();
    }
    if !args.parts.is_dir() {
        return Err(RunError::Io(format!(
            "--parts {}: no such folder yet: run split, the shards and their folds first",
            args.parts.display()
        )));
    }
    super::set_threads(args.threads)?;
    let config = RunConfig {
        cycle: args.cycle,
        input: args.parts.join("split").join("input"),
        rules: args.rules,
        state: args.state,
        out: args.out,
        first_cycle: args.first_cycle,
        strict: args.strict,
        as_of: args.as_of,
        lang: args.lang,
        format: args.format,
        partitions: 1,
        spill: None,
        memory_budget: args.memory_budget.bytes(),
        parts: Some(args.parts),
    };
    Ok((config, remote.map(|r| r.local)))
}

/// What a merge reads: the split's record and master data, every shard's part and seal.
fn fetch_for_merge(r: &RemoteParts) -> Result<(), RunError> {
    #[derive(serde::Deserialize)]
    struct Count {
        count: u32,
    }
    r.fetch("split", "split.json")?;
    r.fetch("split", "input")?;
    let record = r.path().join("split").join("split.json");
    if !record.is_file() {
        return Ok(()); // the merge says the split is missing
    }
    let (Count { count }, _) = crate::load::read_json(&record).map_err(RunError::Io)?;
    for k in 1..=count {
        r.fetch(&shards::shard_step(k), "")?;
        r.fetch(&shards::fold_step(k), "seal.json")?;
    }
    Ok(())
}

/// `incentives run --shard K/N --parts DIR`: the words for the terminal.
pub fn run_shard(
    config: &RunConfig,
    shard: Shard,
    cycle: Option<Cycle>,
) -> Result<String, RunError> {
    let parts = config.parts.as_deref().unwrap_or(std::path::Path::new("."));
    let step = shards::shard_step(shard.k);
    let published = match RemoteParts::open(parts, config.spill.as_deref())? {
        Some(r) if r.done(&step)? => false,
        Some(r) => {
            r.fetch("split", "split.json")?;
            r.fetch("split", "input")?;
            r.fetch("split", &format!("part-{:04}", shard.k))?;
            shards::run_shard(config, shard, r.path(), cycle)? && r.publish(&step)?
        }
        None => shards::run_shard(config, shard, parts, cycle)?,
    };
    Ok(if published {
        format!(
            "ran shard {}/{} into {}\n",
            shard.k,
            shard.n,
            parts.display()
        )
    } else {
        format!(
            "shard {}/{} was already run: this attempt changed nothing\n",
            shard.k, shard.n
        )
    })
}

/// `--parts s3://…`: a step works in a local parts folder (removed after) holding what it reads,
/// fetched first; what it publishes is uploaded after (`store::steps`).
struct RemoteParts {
    remote: crate::store::Remote,
    local: tempfile::TempDir,
}

impl RemoteParts {
    fn open(parts: &Path, spill: Option<&Path>) -> Result<Option<RemoteParts>, RunError> {
        if !crate::store::is_remote(parts) {
            return Ok(None);
        }
        let remote = crate::store::Remote::open(parts).map_err(store_error)?;
        let base = spill.map_or_else(std::env::temp_dir, Path::to_path_buf);
        let local = tempfile::Builder::new()
            .prefix(".incentives-parts-")
            .tempdir_in(&base)
            .map_err(|e| RunError::io(base.display(), e))?;
        Ok(Some(RemoteParts { remote, local }))
    }

    fn path(&self) -> &Path {
        self.local.path()
    }

    fn done(&self, step: &str) -> Result<bool, RunError> {
        Ok(crate::store::steps::done(&self.remote, step)
            .map_err(store_error)?
            .is_some())
    }

    fn fetch(&self, step: &str, sub: &str) -> Result<(), RunError> {
        let to = self.path().join(step).join(sub);
        crate::store::steps::fetch(&self.remote, step, sub, &to).map_err(store_error)
    }

    /// Uploads the step's local folder; false when another attempt had published it.
    fn publish(&self, step: &str) -> Result<bool, RunError> {
        let attempt = self
            .path()
            .file_name()
            .map(|n| n.to_string_lossy().trim_start_matches('.').to_string())
            .unwrap_or_default();
        crate::store::steps::publish(&self.remote, step, &self.path().join(step), &attempt)
            .map_err(store_error)
    }
}

fn store_error(e: crate::store::StoreError) -> RunError {
    RunError::Io(e.to_string())
}
