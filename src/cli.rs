//! The command line: clap structures, resolved once into typed configuration (`RunConfig`).
//! The pipeline never sees a string from the command line.

use crate::calendar::Cycle;
use crate::error::{RunError, exit};
use crate::generate::{self, GenerateConfig};
use crate::run::{self, RunConfig, RunReport};
use clap::{Args, Parser, Subcommand};
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::process::ExitCode;

/// Month-end partner incentives: ledgers, voucher deductions, expiry reports and explanations
/// from a cycle's exports of bill lines, orders, vouchers and partner data.
///
/// Exit codes: 0 success · 2 bad usage or rules · 3 input rejected · 4 reconciliation failed ·
/// 5 another run holds the state lock · 1 anything else.
#[derive(Debug, Parser)]
#[command(name = "incentives", version, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,

    /// No progress, no summary: only errors (on stderr) and the exit code.
    #[arg(long, short, global = true)]
    pub quiet: bool,

    /// Format of the log lines written when stdout is not a terminal (cron, pipes).
    #[arg(long, value_enum, global = true, default_value = "text")]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// `… INFO phase finished phase="load" count=58 unit="rows" ms=3`
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run month-end for one bill cycle.
    ///
    /// Checks the rule set, loads and validates every file of the cycle's bundle (SPEC
    /// Appendix A), evaluates incentives, writes ledger.csv, ledgers/<partner>.csv,
    /// line_outcomes.csv, rejects.csv and manifest.json to a staging folder and publishes it
    /// atomically as OUT/<cycle>. A failed run leaves the previous result for that cycle untouched.
    Run(RunArgs),

    /// The ownership pass of a month run as shards (SPEC §9): duplicates and rejects decided
    /// over the whole bundle, each shard's lines, orders and slice of the prior state written
    /// to PARTS/split. Reads the state without its lock and never writes it.
    Split(crate::run::shard_args::SplitArgs),

    /// Seal shard K's part for the merge, once it is run (what crosses shards travels in the
    /// split: this checks the part is whole and of this split).
    Fold(crate::run::shard_args::FoldArgs),

    /// Merge every shard's sealed part into OUT/<cycle>: the same bytes a one-machine run
    /// writes; the state committed once, the cycle published atomically.
    Merge(crate::run::shard_args::MergeArgs),

    /// Write a realistic synthetic cycle bundle (all nine files), deterministic per seed.
    ///
    /// About LINES/2,000 partners (most solution providers; distributors with linked resellers)
    /// and LINES/20 customers; every bill type and charge mode, refunds of earlier orders,
    /// excluded and promoted services, CNY and USD, vouchers, tags, projects near the subsidy
    /// thresholds, withdrawals in every status, partners that left their programme. Streams to
    /// disk: ten million lines take a few hundred megabytes of memory at most.
    Generate(GenerateArgs),

    /// Load and validate a cycle's exports without running month-end: every rejected row with
    /// file, row, column, value and reason; nothing is written. Exit 3 with --strict if any.
    Validate(ValidateArgs),

    /// Check a rule set: every problem with file, line and column (exit 2), or its hash and a
    /// one-screen summary of levers and rules.
    Check(CheckArgs),

    /// List the chain of cycles in a state folder: when each ran, rule-set hash, input hashes,
    /// row counts, totals credited, and which cycles are stale.
    Status(StatusArgs),

    /// Explain a partner's incentive from a published cycle: the waterfall from consumption to
    /// incentive, the lines behind each step (largest first), or one line's whole story.
    Explain(ExplainArgs),

    /// Write a self-contained HTML report of a published cycle: totals per lever and currency,
    /// top partners, and each partner's waterfall from consumption to incentive as an SVG chart
    /// beside its explanation.
    Report(ReportArgs),

    /// Run polars SQL over a published cycle's tables by name (ledger, line_outcomes,
    /// explanations, voucher_deductions, voucher_balances, expiry_report, subsidies, rejects,
    /// statements): a table on the terminal, or a .csv / .parquet file with --output.
    Query(crate::analyst::query::QueryArgs),

    /// What a proposed rule set would have paid in a closed cycle: the cycle re-run read-only on
    /// its own inputs against its prior state, one row per partner × lever × currency (paid,
    /// proposed, difference) in --write, the largest movers on the terminal.
    Whatif(crate::analyst::whatif::WhatifArgs),

    /// Import the vendor's exports: `import huawei` (API responses → a cycle bundle) and
    /// `import huawei-policy` (incentive policies → a rule file of exclusions). SPEC §11.
    Import(crate::import::args::ImportArgs),

    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },

    /// Print a man page (roff): `incentives man > incentives.1`, `incentives man run >
    /// incentives-run.1`; or write every page, one per subcommand, with --dir.
    Man(ManArgs),
}

#[derive(Debug, Args)]
pub struct ManArgs {
    /// The subcommand whose page to print (incentives-<SUBCOMMAND>(1)); default: incentives(1).
    #[arg(value_name = "SUBCOMMAND")]
    pub subcommand: Option<String>,
    /// Write incentives.1 and incentives-<subcommand>.1 for every subcommand into this folder.
    #[arg(long, value_name = "DIR", conflicts_with = "subcommand")]
    pub dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// The output folder the cycle was published to.
    #[arg(long, value_name = "DIR", default_value = "out")]
    pub out: PathBuf,
    /// The state folder of the chain: a stale cycle (or one whose publication is pending or
    /// lost) is warned about before the answer.
    #[arg(long, value_name = "DIR", default_value = "state")]
    pub state: PathBuf,
    #[arg(long, value_name = "YYYY-MM")]
    pub cycle: Cycle,
    /// Only this partner's page (default file OUT/<cycle>-report-<ID>.html).
    #[arg(long, value_name = "ID")]
    pub partner: Option<String>,
    /// Where to write the page (default OUT/<cycle>-report.html, beside the cycle's folder);
    /// the pages of the partners it lists are written beside it.
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// The page's language.
    #[arg(long, value_enum, default_value_t = crate::explain::Lang::En)]
    pub lang: crate::explain::Lang,
    /// The bundle the cycle ran on: partner names from its partners.csv.
    #[arg(long, value_name = "DIR")]
    pub input: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// The output folder the cycle was published to (its OUT).
    #[arg(long, value_name = "DIR", default_value = "out")]
    pub out: PathBuf,
    /// The state folder of the chain: a stale cycle (or one whose publication is pending or
    /// lost) is warned about before the answer.
    #[arg(long, value_name = "DIR", default_value = "state")]
    pub state: PathBuf,
    #[arg(long, value_name = "YYYY-MM")]
    pub cycle: Cycle,
    #[arg(long, value_name = "ID")]
    pub partner: String,
    #[arg(long, value_name = "ID")]
    pub customer: Option<String>,
    /// One line's whole story: rules matched, base, rate, rounding, credit cycle, vouchers.
    #[arg(long, value_name = "ID")]
    pub line: Option<String>,
    /// Lines listed per step.
    #[arg(long, value_name = "N", default_value_t = 10)]
    pub limit: usize,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[arg(long, value_name = "DIR", default_value = "state")]
    pub state: PathBuf,
    /// One JSON document: each cycle with its state, run time, totals per currency as decimal
    /// strings, the full rule-set hash.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ValidateArgs {
    #[arg(long, value_name = "YYYY-MM")]
    pub cycle: Cycle,
    #[arg(long, value_name = "DIR")]
    pub input: PathBuf,
    /// Exit 3 if any row is rejected.
    #[arg(long)]
    pub strict: bool,
    /// Rejects listed (all are counted).
    #[arg(long, value_name = "N", default_value_t = 20)]
    pub limit: usize,
    /// Peak memory to stay within, in binary units (e.g. 512MiB, 1GiB); at least 256MiB. The
    /// ids that must be unique are decided through buckets spilled to disk, not held in memory.
    #[arg(long, value_name = "SIZE", default_value_t = crate::budget::MemoryBudget::DEFAULT)]
    pub memory_budget: crate::budget::MemoryBudget,
    /// Folder for the spilled buckets (a temporary folder in it, removed after).
    #[arg(long, value_name = "DIR", default_value_os_t = std::env::temp_dir())]
    pub spill: PathBuf,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Rule set folder (every *.toml in it).
    #[arg(long, value_name = "DIR", default_value = "rules/reference")]
    pub rules: PathBuf,
}

#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// Bill cycle of the (first) bundle; not needed with --previous.
    #[arg(long, value_name = "YYYY-MM", required_unless_present = "previous")]
    pub cycle: Option<Cycle>,

    /// Number of bill lines per cycle (default with --previous: the previous bundle's).
    #[arg(long, value_name = "N", required_unless_present = "previous")]
    pub lines: Option<u64>,

    /// Seed: the same seed and options give the same bytes.
    #[arg(long, value_name = "S", default_value_t = 1)]
    pub seed: u64,

    /// Folder to write the bundle into (with --cycles K > 1, one subfolder per cycle).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,

    /// Share of bill lines to make bad, 0 to 1 (e.g. 0.001); the rows planted and the reject each
    /// must get are written to DIR/expected_rejects.csv.
    #[arg(long, value_name = "RATE", default_value = "0")]
    pub bad_rows: rust_decimal::Decimal,

    /// Number of partners (default LINES/2,000, at least 8).
    #[arg(long, value_name = "P")]
    pub partners: Option<usize>,

    /// Write a chain of K consecutive cycles (later ones refund orders of earlier ones).
    #[arg(
        long,
        value_name = "K",
        default_value_t = 1,
        conflicts_with = "previous"
    )]
    pub cycles: u32,

    /// Generate the cycle after the bundle in this folder (same seed and partners).
    #[arg(long, value_name = "DIR")]
    pub previous: Option<PathBuf>,

    /// Share of the lines, 0 to 1, that go to the largest partner (a solution provider with
    /// vouchers and tiers), e.g. 0.25; the others as without it (a few partners much busier
    /// than the rest). With --previous: the previous bundle's.
    #[arg(long, value_name = "F", conflicts_with = "previous")]
    pub top_share: Option<rust_decimal::Decimal>,
}

impl GenerateArgs {
    pub fn resolve(self) -> Result<GenerateConfig, RunError> {
        use rust_decimal::prelude::ToPrimitive;
        if self.bad_rows < rust_decimal::Decimal::ZERO || self.bad_rows > rust_decimal::Decimal::ONE
        {
            return Err(RunError::Usage(format!(
                "--bad-rows {}: a share between 0 and 1",
                self.bad_rows
            )));
        }
        let bad_rows_ppm = (self.bad_rows * rust_decimal::Decimal::from(1_000_000))
            .round()
            .to_u64()
            .unwrap_or(0);
        let top = self.top_share.unwrap_or_default();
        if top < rust_decimal::Decimal::ZERO || top > rust_decimal::Decimal::ONE {
            return Err(RunError::Usage(format!(
                "--top-share {top}: a share between 0 and 1, e.g. 0.25"
            )));
        }
        let mut top_share_ppm = (top * rust_decimal::Decimal::from(1_000_000))
            .round()
            .to_u64()
            .unwrap_or(0);
        let previous = self
            .previous
            .as_deref()
            .map(GenerateConfig::after)
            .transpose()?;
        let (cycle, chain_start, chain_index, seed, partners, customers, lines) = match previous {
            Some(p) => {
                let parse = |s: &str| {
                    s.parse::<Cycle>()
                        .map_err(|e| RunError::Usage(format!("generator.json: {e}")))
                };
                (
                    {
                        top_share_ppm = p.top_share_ppm;
                        parse(&p.cycle)?.next()
                    },
                    parse(&p.chain_start)?,
                    p.chain_index + 1,
                    p.seed,
                    Some(p.partners),
                    Some(p.customers),
                    self.lines.unwrap_or(p.lines),
                )
            }
            None => {
                let cycle = self
                    .cycle
                    .ok_or_else(|| RunError::Usage("--cycle is required".into()))?;
                let lines = self
                    .lines
                    .ok_or_else(|| RunError::Usage("--lines is required".into()))?;
                (cycle, cycle, 0, self.seed, self.partners, None, lines)
            }
        };
        if self.cycles == 0 {
            return Err(RunError::Usage("--cycles must be at least 1".into()));
        }
        Ok(GenerateConfig {
            cycle,
            lines,
            seed,
            out: self.out,
            bad_rows_ppm,
            partners,
            cycles: self.cycles,
            chain_start,
            chain_index,
            customers,
            top_share_ppm,
        })
    }
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Bill cycle (账期) to run, YYYY-MM; every bill line must belong to it.
    #[arg(long, value_name = "YYYY-MM", required_unless_present = "shard")]
    pub cycle: Option<Cycle>,

    /// Folder holding the cycle's exports (bill_lines.csv, partners.csv, and the optional files).
    #[arg(
        long,
        value_name = "DIR",
        required_unless_present = "shard",
        conflicts_with = "shard"
    )]
    pub input: Option<PathBuf>,

    /// Rule set folder (every *.toml in it); a set that fails `incentives check` stops the run.
    #[arg(long, value_name = "DIR", default_value = "rules/reference")]
    pub rules: PathBuf,

    /// State folder: state.db carries each cycle into the next (created if missing).
    #[arg(long, value_name = "DIR", default_value = "state")]
    pub state: PathBuf,

    /// Accepted for scripts written for file locks: the state lock is an OS lock that dies with
    /// its holder, so a killed run's lock never needs breaking (the next run says it was cleared).
    #[arg(long)]
    pub break_lock: bool,

    /// Where results go: OUT/<cycle>/ is (re)placed atomically.
    #[arg(long, value_name = "DIR", default_value = "out")]
    pub out: PathBuf,

    /// This cycle starts the chain: allowed only when the state holds no earlier cycle.
    #[arg(long)]
    pub first_cycle: bool,

    /// Fail (exit 3) on any rejected row, before anything is written.
    #[arg(long)]
    pub strict: bool,

    /// Count the expiry report's windows from this instant (ISO 8601 with an offset) instead of
    /// bill generation (the first instant of the next cycle in the rule set's time zone).
    #[arg(long, value_name = "TS", value_parser = crate::calendar::parse_as_of)]
    pub as_of: Option<chrono::DateTime<chrono::Utc>>,

    /// Language of the explanation paragraphs in explanations.csv.
    #[arg(long, value_enum, default_value = "en")]
    pub lang: crate::explain::Lang,

    /// Output format: every output table as CSV, or as Parquet (same columns; amounts as exact
    /// DECIMAL(38,8)). manifest.json stays JSON.
    #[arg(long, value_enum, default_value = "csv")]
    pub format: crate::write::Format,

    /// Worker threads (default: one per core). Outputs are identical whatever the count.
    #[arg(long, value_name = "N")]
    pub threads: Option<NonZeroUsize>,

    /// Process the partners in N partitions, one at a time (default: as many as
    /// --memory-budget needs for the size of bill_lines.csv; 1 is the whole month at once).
    /// Outputs are identical whatever the count.
    #[arg(long, value_name = "N")]
    pub partitions: Option<std::num::NonZeroU32>,

    /// Folder for the partitions' files before they are merged (a temporary folder in it,
    /// removed after; default: beside the staging folder, in --out).
    #[arg(long, value_name = "DIR")]
    pub spill: Option<PathBuf>,

    /// Peak memory to stay within, in binary units (e.g. 512MiB, 1GiB); at least 256MiB. Sizes
    /// the spilled buckets of a run in partitions.
    #[arg(long, value_name = "SIZE", default_value_t = crate::budget::MemoryBudget::DEFAULT)]
    pub memory_budget: crate::budget::MemoryBudget,

    /// Run shard K of N of a split in --parts (SPEC §9): its part is published in --parts as
    /// shard-000K; the cycle, inputs and prior state are the split's.
    #[arg(long, value_name = "K/N", requires = "parts")]
    pub shard: Option<crate::run::shards::Shard>,

    /// Parts folder of `split`, the shards, `fold` and `merge`.
    #[arg(long, value_name = "DIR", requires = "shard")]
    pub parts: Option<PathBuf>,
}

impl RunArgs {
    /// Checks what clap cannot and turns the arguments into a run's configuration.
    pub fn resolve(self) -> Result<RunConfig, RunError> {
        run::set_threads(self.threads)?;
        let (Some(cycle), Some(input)) = (self.cycle, self.input.clone()) else {
            // `run --shard K/N --parts DIR`: the cycle, inputs and prior state are the split's
            // (`--cycle`, when given, must be its cycle).
            let parts = self
                .parts
                .clone()
                .ok_or_else(|| RunError::Usage("--shard needs --parts".into()))?;
            let cycle = self.cycle.unwrap_or(Cycle::FIRST);
            return Ok(self.config(cycle, parts.join("split"), 1, Some(parts)));
        };
        RunError::check_input(&input)?;
        RunError::check_folder("--out", &self.out, "OUT/<cycle> is published in it")?;
        RunError::check_folder("--state", &self.state, "it holds state.db and the lock")?;
        let partitions = run::partitions_for(&input, self.partitions, self.memory_budget.bytes());
        Ok(self.config(cycle, input, partitions, None))
    }

    fn config(
        self,
        cycle: Cycle,
        input: PathBuf,
        partitions: u32,
        parts: Option<PathBuf>,
    ) -> RunConfig {
        RunConfig {
            cycle,
            input,
            rules: self.rules,
            state: self.state,
            out: self.out,
            first_cycle: self.first_cycle,
            strict: self.strict,
            as_of: self.as_of,
            lang: self.lang,
            format: self.format,
            partitions,
            spill: self.spill,
            memory_budget: self.memory_budget.bytes(),
            parts,
        }
    }
}

/// Parses the command line, runs the command, and turns the outcome into an exit code.
pub fn main() -> ExitCode {
    let started = std::time::Instant::now();
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // A usage error under --log-format json is a JSON line too (help and version are not
        // errors: they print as they are).
        Err(e) if e.use_stderr() && wants_json(&argv) => {
            crate::progress::set_json(true);
            crate::progress::event(
                "ERROR",
                "error",
                serde_json::json!({ "message": e.render().to_string().trim_end(), "exit_code": exit::USAGE }),
            );
            finish(exit::USAGE, started, false);
            return ExitCode::from(exit::USAGE);
        }
        Err(e) => e.exit(),
    };
    let output = Output::set_up(&cli);
    if output.json && !cli.quiet {
        crate::progress::event(
            "INFO",
            "start",
            serde_json::json!({
                "command": cli.command.name(),
                "cycle": cli.command.cycle().map(|c| c.to_string()),
                "arguments": argv,
                "version": env!("CARGO_PKG_VERSION"),
            }),
        );
    }
    let quiet = cli.quiet;
    let code = match dispatch(cli.command, &output) {
        Ok(()) => exit::SUCCESS,
        Err(e) => output.error(&e),
    };
    finish(code, started, quiet);
    ExitCode::from(code)
}

/// How a command reports: quietly, as JSON lines, on a terminal (colours, progress bars) or as
/// plain log lines (cron).
struct Output {
    quiet: bool,
    json: bool,
    colour: bool,
    progress: Box<dyn crate::progress::Progress>,
}

impl Output {
    /// Sets up the log lines and the progress display the command line asks for.
    fn set_up(cli: &Cli) -> Output {
        use std::io::IsTerminal;
        let json = cli.log_format == LogFormat::Json;
        crate::progress::set_json(json);
        let terminal = std::io::stdout().is_terminal() && std::io::stderr().is_terminal();
        let colour = terminal && !json && std::env::var_os("NO_COLOR").is_none();
        if !cli.quiet && (!terminal || json) {
            let builder = tracing_subscriber::fmt()
                .with_writer(std::io::stderr)
                .with_target(false)
                .with_ansi(false);
            match cli.log_format {
                LogFormat::Json => builder.json().init(),
                LogFormat::Text => builder.init(),
            }
        }
        let progress: Box<dyn crate::progress::Progress> = if cli.quiet {
            Box::new(crate::progress::Silent)
        } else if terminal && !json {
            Box::new(crate::progress::Bars::new())
        } else {
            Box::new(crate::progress::Logs)
        };
        Output {
            quiet: cli.quiet,
            json,
            colour,
            progress,
        }
    }

    /// Says what stopped the command, and gives its exit code. A message may quote an input's
    /// header or a command-line value: control characters are escaped. A closed stderr leaves
    /// the exit code to say it.
    fn error(&self, e: &RunError) -> u8 {
        let message = crate::error::printable(&e.to_string()).into_owned();
        if self.json {
            crate::progress::event(
                "ERROR",
                "error",
                serde_json::json!({ "message": message, "exit_code": e.exit_code() }),
            );
        } else {
            use std::io::Write as _;
            let _ = writeln!(std::io::stderr(), "error: {message}");
        }
        e.exit_code()
    }

    /// A finished run's summary: a screen, or JSON events (the rejects counted apart).
    fn run_summary(&self, report: &run::RunReport) {
        if self.quiet {
        } else if self.json {
            if report.rejects > 0 {
                crate::progress::event(
                    "WARN",
                    "rejects",
                    serde_json::json!({
                        "count": report.rejects,
                        "file": report.published.join("rejects.csv").display().to_string(),
                    }),
                );
            }
            crate::progress::event("INFO", "summary", summary_json(report));
        } else {
            out(&summary(report, self.colour));
        }
    }
}

/// Runs one subcommand.
fn dispatch(command: Command, output: &Output) -> Result<(), RunError> {
    use clap::CommandFactory;
    let quiet = output.quiet;
    match command {
        Command::Run(mut args) => match (args.shard, args.cycle) {
            (Some(shard), args_cycle) => args
                .resolve()
                .and_then(|config| run::shard_args::run_shard(&config, shard, args_cycle))
                .map(|text| quiet_or(quiet, &text)),
            (None, _) => {
                let _fetched = match args.input.as_mut() {
                    Some(input) => fetch_input(input, args.spill.as_deref())?,
                    None => None,
                };
                stage_remote_out(&mut args.out, &args.state)?;
                args.resolve()
                    .and_then(|config| run::run(&config, output.progress.as_ref()))
                    .map(|report| output.run_summary(&report))
            }
        },
        Command::Split(args) => run::shard_args::split(args).map(|text| quiet_or(quiet, &text)),
        Command::Fold(args) => run::shard_args::fold(args).map(|text| quiet_or(quiet, &text)),
        Command::Merge(mut args) => {
            stage_remote_out(&mut args.out, &args.state)?;
            run::shard_args::merge(args)
                .and_then(|(config, _fetched)| run::run(&config, output.progress.as_ref()))
                .map(|report| output.run_summary(&report))
        }
        Command::Generate(args) => args.resolve().and_then(|config| {
            for dir in generate::generate(&config)? {
                if !quiet {
                    out(&format!("wrote {}\n", dir.display()));
                }
            }
            Ok(())
        }),
        Command::Validate(mut args) => {
            let _fetched = fetch_input(&mut args.input, Some(&args.spill))?;
            validate(&args, quiet)
        }
        Command::Check(args) => crate::rules::load_rules(&args.rules)
            .map(|set| {
                for warning in &set.warnings {
                    crate::progress::note("warn", &format!("warning: {warning}"));
                }
                if !quiet {
                    out(&crate::rules::summary(&set));
                }
            })
            .map_err(RunError::Rules),
        Command::Status(args) if args.json => {
            crate::status::status_json(&args.state).map(|doc| out(&format!("{doc}\n")))
        }
        Command::Status(args) => {
            crate::status::status(&args.state).map(|text| out(&crate::error::printable(&text)))
        }
        Command::Explain(mut args) => {
            let _fetched = fetch_published(&mut args.out, args.cycle)?;
            crate::analyst::explain::warn_on_standing(&args.state, &args.out, args.cycle);
            crate::analyst::cycle::PublishedCycle::open(&args.out, args.cycle)
                .and_then(|cycle| {
                    crate::analyst::explain::render(
                        &cycle,
                        &args.partner,
                        args.customer.as_deref(),
                        args.line.as_deref(),
                        args.limit,
                    )
                })
                .map(|text| out(&text))
        }
        Command::Report(mut args) => {
            if args.output.is_none() && crate::store::is_remote(&args.out) {
                // The published cycle is fetched into a temporary folder: the page goes here.
                args.output = Some(PathBuf::from(match &args.partner {
                    Some(p) => format!("{}-report-{p}.html", args.cycle),
                    None => format!("{}-report.html", args.cycle),
                }));
            }
            let _fetched = fetch_published(&mut args.out, args.cycle)?;
            crate::analyst::explain::warn_on_standing(&args.state, &args.out, args.cycle);
            let output = args.output.clone().unwrap_or_else(|| {
                args.out.join(match &args.partner {
                    Some(p) => format!("{}-report-{p}.html", args.cycle),
                    None => format!("{}-report.html", args.cycle),
                })
            });
            crate::analyst::cycle::PublishedCycle::open(&args.out, args.cycle)
                .and_then(|cycle| {
                    crate::report::write_report(
                        &cycle,
                        args.partner.as_deref(),
                        args.lang,
                        args.input.as_deref(),
                        &output,
                    )
                })
                .map(|written| {
                    if !quiet {
                        out(&format!(
                            "wrote {}{}\n",
                            output.display(),
                            match written.len() {
                                0 | 1 => String::new(),
                                n => format!(" and {} partner pages beside it", n - 1),
                            }
                        ));
                    }
                })
        }
        Command::Query(mut args) => {
            let _fetched = fetch_published(&mut args.out, args.cycle)?;
            crate::analyst::query::main(&args).map(|text| quiet_or(quiet, &text))
        }
        Command::Whatif(args) => crate::analyst::whatif::main(args).map(|text| {
            if !quiet {
                out(&text)
            }
        }),
        Command::Import(args) => crate::import::args::run(args, quiet),
        Command::Completions { shell } => {
            // Into memory first: clap_complete panics on a failed write (a closed pipe).
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "incentives", &mut script);
            out_bytes(&script);
            Ok(())
        }
        Command::Man(args) => man(&args, quiet),
    }
}

/// Whether the command line asks for JSON logs (read before clap has accepted it).
fn wants_json(argv: &[String]) -> bool {
    argv.iter().any(|a| a == "--log-format=json")
        || argv
            .windows(2)
            .any(|w| w[0] == "--log-format" && w[1] == "json")
}

/// The last JSON line: the exit code and the time taken.
fn finish(code: u8, started: std::time::Instant, quiet: bool) {
    if crate::progress::json() && !quiet {
        crate::progress::event(
            if code == exit::SUCCESS {
                "INFO"
            } else {
                "ERROR"
            },
            "finish",
            serde_json::json!({
                "exit_code": code,
                "elapsed_ms": started.elapsed().as_millis() as u64,
            }),
        );
    }
}

impl Command {
    /// The subcommand's name, as typed.
    fn name(&self) -> &'static str {
        match self {
            Command::Run(_) => "run",
            Command::Split(_) => "split",
            Command::Fold(_) => "fold",
            Command::Merge(_) => "merge",
            Command::Generate(_) => "generate",
            Command::Validate(_) => "validate",
            Command::Check(_) => "check",
            Command::Status(_) => "status",
            Command::Explain(_) => "explain",
            Command::Report(_) => "report",
            Command::Query(_) => "query",
            Command::Whatif(_) => "whatif",
            Command::Import(_) => "import",
            Command::Completions { .. } => "completions",
            Command::Man(_) => "man",
        }
    }

    /// The bill cycle the command works on, if it names one.
    fn cycle(&self) -> Option<Cycle> {
        match self {
            Command::Run(a) => a.cycle,
            Command::Split(a) => Some(a.cycle),
            Command::Merge(a) => Some(a.cycle),
            Command::Generate(a) => a.cycle,
            Command::Validate(a) => Some(a.cycle),
            Command::Explain(a) => Some(a.cycle),
            Command::Report(a) => Some(a.cycle),
            Command::Query(a) => Some(a.cycle),
            Command::Whatif(a) => Some(a.cycle),
            _ => None,
        }
    }
}

/// The run's summary as one JSON object's members (amounts as exact decimal strings).
fn summary_json(report: &RunReport) -> serde_json::Value {
    use std::collections::BTreeMap;
    let money = |m: &BTreeMap<String, rust_decimal::Decimal>| -> BTreeMap<String, String> {
        m.iter().map(|(c, a)| (c.clone(), a.to_string())).collect()
    };
    let counted = |m: &BTreeMap<String, (rust_decimal::Decimal, u64)>| -> serde_json::Value {
        m.iter()
            .map(|(c, (a, n))| {
                (
                    c.clone(),
                    serde_json::json!({ "amount": a.to_string(), "count": n }),
                )
            })
            .collect::<serde_json::Map<_, _>>()
            .into()
    };
    let s = &report.summary;
    let credited: BTreeMap<&String, BTreeMap<String, String>> = s
        .credited
        .iter()
        .map(|(c, levers)| (c, money(levers)))
        .collect();
    serde_json::json!({
        "cycle": report.cycle.to_string(),
        "lines_read": report.lines_read,
        "lines_accepted": report.lines_accepted,
        "lines_rejected": report.lines_rejected,
        "rejects": report.rejects,
        "partners": report.partners,
        "ruleset": report.ruleset_name,
        "ruleset_hash": report.ruleset_hash,
        "ledger_rows": report.ledger_rows,
        "carried_in_rows": report.carried_in_rows,
        "credited": credited,
        "credited_next_cycle": money(&s.deferred),
        "vouchers_deducted": money(&s.vouchers_deducted),
        "vouchers_expired": money(&s.vouchers_expired),
        "incentive_expired": money(&s.incentive_expired),
        "subsidies": counted(&s.subsidies),
        "withdrawals": counted(&s.withdrawn),
        "pending_withdrawals": s.pending_withdrawals,
        "explanation_rows": s.explanation_rows,
        "made_stale": report.made_stale,
        "outputs": report.published.display().to_string(),
        "elapsed_ms": report.elapsed_ms as u64,
    })
}

/// Writes `text` to stdout. A closed pipe (`| head`) ends the output quietly: the reader has
/// what it wanted, and the exit code stays the command's.
/// `--input s3://…`: the bundle fetched into a local folder (removed with the guard).
fn fetch_input(
    input: &mut PathBuf,
    spill: Option<&std::path::Path>,
) -> Result<Option<tempfile::TempDir>, RunError> {
    let (local, guard) =
        crate::store::fetch_input(input, spill).map_err(|e| RunError::Io(e.to_string()))?;
    *input = local;
    Ok(guard)
}

/// `--out s3://…` for `run` and `merge`: outputs are staged in the state's folder for it, and
/// uploaded when published.
fn stage_remote_out(out: &mut PathBuf, state: &std::path::Path) -> Result<(), RunError> {
    if crate::store::is_remote(out) {
        *out = crate::store::staging_root(state, out).map_err(|e| RunError::Io(e.to_string()))?;
    }
    Ok(())
}

/// `--out s3://…` for the readers: the cycle's current publication fetched into a local folder.
fn fetch_published(out: &mut PathBuf, cycle: Cycle) -> Result<Option<tempfile::TempDir>, RunError> {
    let (local, guard) =
        crate::store::fetch_published(out, cycle).map_err(|e| RunError::Io(e.to_string()))?;
    *out = local;
    Ok(guard)
}

fn quiet_or(quiet: bool, text: &str) {
    if !quiet {
        out(text);
    }
}

fn out(text: &str) {
    if crate::progress::json() {
        // Under --log-format json every line is a JSON object, output included.
        let mut lines = String::new();
        for line in text.lines() {
            lines.push_str(&crate::progress::event_line(
                "INFO",
                "output",
                serde_json::json!({ "line": line }),
            ));
            lines.push('\n');
        }
        return out_bytes(lines.as_bytes());
    }
    out_bytes(text.as_bytes());
}

fn out_bytes(bytes: &[u8]) {
    use std::io::Write as _;
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(bytes).and_then(|()| stdout.flush());
}

/// `incentives man`: one page on stdout, or every page (one per subcommand) into a folder.
fn man(args: &ManArgs, quiet: bool) -> Result<(), RunError> {
    use clap::CommandFactory;
    // Built, the subcommands are named `incentives-run` (the page) and `incentives run` (the
    // synopsis), and carry the global options.
    let mut cli = Cli::command().disable_help_subcommand(true);
    cli.build();
    let page = |cmd: &clap::Command| -> Result<Vec<u8>, RunError> {
        let mut roff = Vec::new();
        clap_mangen::Man::new(cmd.clone())
            .source(format!("incentives {}", env!("CARGO_PKG_VERSION")))
            .render(&mut roff)
            .map_err(|e| RunError::Io(format!("man page: {e}")))?;
        Ok(roff)
    };
    if let Some(dir) = &args.dir {
        std::fs::create_dir_all(dir).map_err(|e| RunError::io(dir.display(), e))?;
        let mut written = String::new();
        for cmd in std::iter::once(&cli).chain(cli.get_subcommands()) {
            let name = cmd.get_display_name().unwrap_or(cmd.get_name());
            let path = dir.join(format!("{name}.1"));
            std::fs::write(&path, page(cmd)?).map_err(|e| RunError::io(path.display(), e))?;
            written.push_str(&format!("wrote {}\n", path.display()));
        }
        if !quiet {
            out(&written);
        }
        return Ok(());
    }
    let cmd = match &args.subcommand {
        None => &cli,
        Some(name) => cli.find_subcommand(name).ok_or_else(|| {
            let names: Vec<&str> = cli.get_subcommands().map(|c| c.get_name()).collect();
            RunError::Usage(format!(
                "man {}: no such subcommand; one of: {}",
                crate::error::printable(name),
                names.join(", ")
            ))
        })?,
    };
    out_bytes(&page(cmd)?);
    Ok(())
}

/// `incentives validate`: the loader alone.
fn validate(args: &ValidateArgs, quiet: bool) -> Result<(), RunError> {
    RunError::check_input(&args.input)?;
    let started = std::time::Instant::now();
    let checked = crate::load::check_bundle(
        &args.input,
        args.cycle,
        args.memory_budget.bytes(),
        &args.spill,
        args.limit,
    )?;
    if !quiet {
        use std::fmt::Write as _;
        let mut text = String::new();
        for f in &checked.files {
            if f.digest.present {
                let _ = writeln!(
                    text,
                    "{:<24} {:>10} read {:>10} accepted {:>8} rejected",
                    f.file, f.digest.rows_read, f.accepted, f.rejected
                );
            }
        }
        for r in &checked.first_rejects {
            let _ = writeln!(
                text,
                "rejected: {}",
                crate::error::printable(&r.to_string())
            );
        }
        if checked.rejected > args.limit as u64 {
            let _ = writeln!(text, "… and {} more", checked.rejected - args.limit as u64);
        }
        let _ = writeln!(
            text,
            "validated {} in {} ms",
            args.input.display(),
            started.elapsed().as_millis()
        );
        out(&text);
    }
    if args.strict && checked.rejected > 0 {
        return Err(RunError::StrictRejects {
            count: checked.rejected as usize,
        });
    }
    Ok(())
}

/// The one-screen summary at the end of `run`.
pub fn summary(report: &RunReport, colour: bool) -> String {
    use std::fmt::Write as _;
    let b = |t: &str| {
        if colour {
            format!("\u{1b}[1m{t}\u{1b}[0m")
        } else {
            t.to_string()
        }
    };
    let s = &report.summary;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{}",
        b(&format!("incentives: cycle {} done", report.cycle))
    );
    let _ = writeln!(
        out,
        "  bill lines      {} read, {} accepted, {} rejected; {} rejected rows in all",
        report.lines_read, report.lines_accepted, report.lines_rejected, report.rejects
    );
    let _ = writeln!(out, "  partners        {}", report.partners);
    let _ = writeln!(
        out,
        "  rule set        {} {}",
        report.ruleset_name,
        crate::rules::short_hash(&report.ruleset_hash)
    );
    let _ = writeln!(
        out,
        "  ledger          {} rows, {} carried in",
        report.ledger_rows, report.carried_in_rows
    );
    out.push_str(&money_table(report, &b));
    let _ = writeln!(
        out,
        "  identities (SPEC §6)   hold on all {} explanation rows",
        s.explanation_rows
    );
    if !report.made_stale.is_empty() {
        let _ = writeln!(
            out,
            "  made stale      {} (re-run them in order)",
            report.made_stale.join(", ")
        );
    }
    let _ = writeln!(
        out,
        "  outputs         {} ({} files)",
        report.published.display(),
        s.outputs.len()
    );
    if report.rejects > 0 {
        let _ = writeln!(
            out,
            "  rejects         {}",
            report.published.join("rejects.csv").display()
        );
    }
    let _ = writeln!(out, "  time            {} ms", report.elapsed_ms);
    out
}

/// The summary's figures per currency as a table: one column per currency, amounts at the
/// currency's scale, right-aligned so the decimal points line up.
fn money_table(report: &RunReport, bold: &dyn Fn(&str) -> String) -> String {
    use rust_decimal::Decimal;
    use std::collections::{BTreeMap, BTreeSet};
    use std::fmt::Write as _;
    let s = &report.summary;
    let currencies: BTreeSet<&String> = s
        .credited
        .keys()
        .chain(s.deferred.keys())
        .chain(s.vouchers_deducted.keys())
        .chain(s.vouchers_expired.keys())
        .chain(s.incentive_expired.keys())
        .chain(s.subsidies.keys())
        .chain(s.withdrawn.keys())
        .collect();
    if currencies.is_empty() {
        return "  amounts         none\n".to_string();
    }
    let amount = |c: &String, a: Decimal| {
        crate::money::format_amount(a, s.scales.get(c).copied().unwrap_or(2))
    };
    let row = |m: &BTreeMap<String, Decimal>| -> Vec<String> {
        currencies
            .iter()
            .map(|c| amount(c, m.get(*c).copied().unwrap_or_default()))
            .collect()
    };
    let mut rows: Vec<(String, Vec<String>)> = Vec::new();
    let totals: BTreeMap<String, Decimal> = s
        .credited
        .iter()
        .map(|(c, levers)| (c.clone(), levers.values().copied().sum()))
        .collect();
    rows.push((
        format!("incentive credited to {}", report.cycle),
        row(&totals),
    ));
    let levers: BTreeSet<&String> = s.credited.values().flat_map(|l| l.keys()).collect();
    for lever in levers {
        let m: BTreeMap<String, Decimal> = s
            .credited
            .iter()
            .filter_map(|(c, l)| l.get(lever).map(|a| (c.clone(), *a)))
            .collect();
        rows.push((format!("  {lever}"), row(&m)));
    }
    rows.push(("credited next cycle".into(), row(&s.deferred)));
    rows.push(("vouchers deducted".into(), row(&s.vouchers_deducted)));
    rows.push(("vouchers expired".into(), row(&s.vouchers_expired)));
    rows.push(("incentive expired".into(), row(&s.incentive_expired)));
    let split = |m: &BTreeMap<String, (Decimal, u64)>| {
        let amounts: BTreeMap<String, Decimal> =
            m.iter().map(|(c, (a, _))| (c.clone(), *a)).collect();
        let counts: Vec<String> = currencies
            .iter()
            .map(|c| m.get(*c).map_or(0, |(_, n)| *n).to_string())
            .collect();
        (row(&amounts), counts)
    };
    let (amounts, counts) = split(&s.subsidies);
    rows.push(("subsidies granted".into(), amounts));
    rows.push(("  count".into(), counts));
    let (amounts, counts) = split(&s.withdrawn);
    rows.push(("withdrawals applied".into(), amounts));
    rows.push(("  count".into(), counts));
    let label = rows
        .iter()
        .map(|(l, _)| l.chars().count())
        .max()
        .unwrap_or(0);
    let widths: Vec<usize> = currencies
        .iter()
        .enumerate()
        .map(|(i, c)| {
            rows.iter()
                .map(|(_, cells)| cells[i].len())
                .chain([c.len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    let _ = write!(out, "  {}", bold(&format!("{:<label$}", "per currency")));
    for (c, w) in currencies.iter().zip(&widths) {
        let _ = write!(out, "  {}", bold(&format!("{c:>w$}")));
    }
    out.push('\n');
    for (l, cells) in &rows {
        let _ = write!(out, "  {l:<label$}");
        for (cell, w) in cells.iter().zip(&widths) {
            let _ = write!(out, "  {cell:>w$}");
        }
        out.push('\n');
    }
    let _ = writeln!(out, "  withdrawals pending    {}", s.pending_withdrawals);
    out
}
