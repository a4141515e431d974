//! The command line: clap structures, resolved once into typed configuration (`RunConfig`).
//! The pipeline never sees a string from the command line.

use crate::calendar::Cycle;
use crate::error::{RunError, exit};
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
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run month-end for one bill cycle.
    ///
    /// Loads and validates every file of the cycle's bundle (SPEC Appendix A), writes rejects.csv and
    /// manifest.json to a staging folder and publishes it atomically as OUT/<cycle>. A failed run
    /// leaves the previous result for that cycle untouched.
    Run(RunArgs),
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Bill cycle (账期) to run, YYYY-MM; every bill line must belong to it.
    #[arg(long, value_name = "YYYY-MM")]
    pub cycle: Cycle,

    /// Folder holding the cycle's exports (bill_lines.csv, partners.csv, and the optional files).
    #[arg(long, value_name = "DIR")]
    pub input: PathBuf,

    /// Rule set folder. Read by the rules stage, which this release does not have yet.
    #[arg(long, value_name = "DIR", default_value = "rules/reference")]
    pub rules: PathBuf,

    /// State folder. Read and written by the state store, which this release does not have yet.
    #[arg(long, value_name = "DIR", default_value = "state")]
    pub state: PathBuf,

    /// Where results go: OUT/<cycle>/ is (re)placed atomically.
    #[arg(long, value_name = "DIR", default_value = "out")]
    pub out: PathBuf,

    /// This is the first cycle of the chain: no earlier cycle's state is expected.
    #[arg(long)]
    pub first_cycle: bool,

    /// Fail (exit 3) on any rejected row, before anything is written.
    #[arg(long)]
    pub strict: bool,

    /// Worker threads (default: one per core). Outputs are identical whatever the count.
    #[arg(long, value_name = "N")]
    pub threads: Option<NonZeroUsize>,
}

impl RunArgs {
    /// Checks what clap cannot and turns the arguments into a run's configuration.
    pub fn resolve(self) -> Result<RunConfig, RunError> {
        if !self.input.is_dir() {
            return Err(RunError::Usage(format!(
                "--input {}: no such folder; it must hold the cycle's CSV exports",
                self.input.display()
            )));
        }
        if let Some(n) = self.threads {
            rayon::ThreadPoolBuilder::new()
                .num_threads(n.get())
                .build_global()
                .map_err(|e| RunError::Usage(format!("--threads {n}: {e}")))?;
        }
        Ok(RunConfig {
            cycle: self.cycle,
            input: self.input,
            out: self.out,
            first_cycle: self.first_cycle,
            strict: self.strict,
        })
    }
}

/// Parses the command line, runs the command, and turns the outcome into an exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => args
            .resolve()
            .and_then(|config| run::run(&config))
            .map(print_report),
    };
    match result {
        Ok(()) => ExitCode::from(exit::SUCCESS),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

fn print_report(report: RunReport) {
    println!(
        "cycle {}: {} bill lines read, {} accepted, {} rejected; {} partners",
        report.cycle,
        report.lines_read,
        report.lines_accepted,
        report.lines_rejected,
        report.partners
    );
    if report.rejects > 0 {
        eprintln!(
            "warning: {} input row(s) rejected; see {}",
            report.rejects,
            report.published.join("rejects.csv").display()
        );
    }
    println!(
        "published {} in {} ms",
        report.published.display(),
        report.elapsed_ms
    );
}
