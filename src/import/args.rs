//! `incentives import …`: the clap structures and how each runs (kept here so that `cli.rs`
//! holds one variant and one match arm for them).

use super::HuaweiImport;
use super::policy::PolicyImport;
use crate::calendar::Cycle;
use crate::error::RunError;
use clap::{Args, Subcommand};
use std::path::PathBuf;

#[derive(Debug, Args)]
pub struct ImportArgs {
    #[command(subcommand)]
    pub source: ImportSource,
}

#[derive(Debug, Subcommand)]
pub enum ImportSource {
    /// Turn saved responses of the vendor's BSS v2 partner APIs (Chinese site) into a cycle
    /// bundle, with import_report.json beside it: records read per source, rows written,
    /// refunds split per base order, defaults applied, and what a person must decide. A response
    /// that cannot be imported is exit 3 and leaves no bundle.
    Huawei(HuaweiArgs),
    /// Turn ListIncentiveDiscountPolicies responses into a rule file of exclusions for a month.
    HuaweiPolicy(HuaweiPolicyArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Site {
    /// The Chinese site (its BSS v2 partner APIs).
    Cn,
    /// The international site: it has none of these APIs (exit 2).
    Intl,
}

#[derive(Debug, Args)]
pub struct HuaweiArgs {
    /// Bill cycle (账期) of the responses, YYYY-MM.
    #[arg(long, value_name = "YYYY-MM")]
    pub cycle: Cycle,
    /// Folder of saved responses, one JSON body a file named after its API; with several
    /// exporters, one subfolder per exporter named by its partner id.
    #[arg(long, value_name = "DIR")]
    pub from: PathBuf,
    /// The bundle folder to create (it must not exist, or be empty).
    #[arg(long, value_name = "BUNDLE")]
    pub out: PathBuf,
    /// The exporting partner, when the responses are directly in --from.
    #[arg(long, value_name = "P")]
    pub exporter_id: Option<String>,
    /// The partner centre's own exports in Appendix A's columns (partners.csv, …, settlements.csv).
    #[arg(long, value_name = "DIR")]
    pub master: Option<PathBuf>,
    /// The vendor site the responses come from.
    #[arg(long, value_enum, default_value = "cn")]
    pub market: Site,
}

#[derive(Debug, Args)]
pub struct HuaweiPolicyArgs {
    /// The month the policies were asked for (`time=YYYY-MM`).
    #[arg(long, value_name = "YYYY-MM")]
    pub month: Cycle,
    /// ListIncentiveDiscountPolicies responses (the pages of one query).
    #[arg(value_name = "FILE", required = true)]
    pub files: Vec<PathBuf>,
    /// The rule file to write (it must not exist).
    #[arg(long, value_name = "RULES.toml")]
    pub out: PathBuf,
}

/// Runs `incentives import …`.
pub fn run(args: ImportArgs, quiet: bool) -> Result<(), RunError> {
    match args.source {
        ImportSource::Huawei(a) => {
            if a.market == Site::Intl {
                return Err(RunError::Usage(
                    "--market intl: the international site has none of the BSS v2 partner APIs this import reads (SPEC §11); build an intl bundle from the partner centre's exports".into(),
                ));
            }
            let job = HuaweiImport {
                cycle: a.cycle,
                from: a.from,
                out: a.out,
                exporter_id: a.exporter_id,
                master: a.master,
            };
            let (report, path) = super::import_huawei(&job)?;
            if !quiet {
                print!("{}", report.summary(&path));
            }
            Ok(())
        }
        ImportSource::HuaweiPolicy(a) => {
            let job = PolicyImport {
                month: a.month,
                files: a.files,
                out: a.out,
            };
            let summary = super::policy::import_policy(&job)?;
            if !quiet {
                print!("{summary}");
            }
            Ok(())
        }
    }
}
