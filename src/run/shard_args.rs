//! The command lines of SPEC §9's steps: `split`, `fold`, `merge` (and `run --shard`, whose
//! options are `run`'s).

use super::RunConfig;
use super::shards::{self, Shard, SplitConfig};
use crate::calendar::Cycle;
use crate::error::RunError;
use clap::Args;
use std::num::{NonZeroU32, NonZeroUsize};

use std::path::PathBuf;

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
    #[arg(long, value_name = "TS", value_parser = crate::cli::parse_as_of)]
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

fn threads(n: Option<NonZeroUsize>) -> Result<(), RunError> {
    if let Some(n) = n {
        rayon::ThreadPoolBuilder::new()
            .num_threads(n.get())
            .build_global()
            .map_err(|e| RunError::Usage(format!("--threads {n}: {e}")))?;
    }
    Ok(())
}

/// `incentives split`: the words for the terminal.
pub fn split(args: SplitArgs) -> Result<String, RunError> {
    crate::cli::check_input(&args.input)?;
    RunError::check_folder("--parts", &args.parts, "the split is published in it")?;
    threads(args.threads)?;
    let config = SplitConfig {
        cycle: args.cycle,
        input: args.input,
        state: args.state,
        parts: args.parts,
        shards: args.shards.get(),
        first_cycle: args.first_cycle,
        memory_budget: args.memory_budget.bytes(),
        spill: args.spill,
    };
    let published = shards::split(&config)?;
    Ok(if published {
        format!(
            "split {} into {} shards in {}\n",
            config.cycle,
            config.shards,
            config.parts.display()
        )
    } else {
        format!(
            "{} already holds a split: this attempt changed nothing\n",
            config.parts.display()
        )
    })
}

/// `incentives fold`: the words for the terminal.
pub fn fold(args: FoldArgs) -> Result<String, RunError> {
    let published = shards::fold(args.shard, &args.parts)?;
    Ok(if published {
        format!("sealed shard {}/{}\n", args.shard.k, args.shard.n)
    } else {
        format!(
            "shard {}/{} was already sealed: this attempt changed nothing\n",
            args.shard.k, args.shard.n
        )
    })
}

/// `incentives merge`: a run's report, as `run` prints it.
pub fn merge(args: MergeArgs) -> Result<RunConfig, RunError> {
    RunError::check_folder("--out", &args.out, "OUT/<cycle> is published in it")?;
    RunError::check_folder("--state", &args.state, "it holds state.db and the lock")?;
    if !args.parts.is_dir() {
        return Err(RunError::Io(format!(
            "--parts {}: no such folder yet: run split, the shards and their folds first",
            args.parts.display()
        )));
    }
    threads(args.threads)?;
    Ok(RunConfig {
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
    })
}

/// `incentives run --shard K/N --parts DIR`: the words for the terminal.
pub fn run_shard(
    config: &RunConfig,
    shard: Shard,
    cycle: Option<Cycle>,
) -> Result<String, RunError> {
    let parts = config.parts.as_deref().unwrap_or(std::path::Path::new("."));
    let published = shards::run_shard(config, shard, parts, cycle)?;
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
