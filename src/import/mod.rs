//! `incentives import huawei` and `incentives import huawei-policy` (SPEC §11): the vendor's BSS v2
//! partner API responses turned into a cycle bundle of Appendix A, or into a rule file.
//!
//! - `json.rs`: exact amounts and codes from the JSON text;
//! - `huawei.rs`: the responses' shapes and how each record maps (bill lines, refunds split per
//!   base order, orders, partner vouchers and their history, resellers' links);
//! - `master.rs`: the partner centre's own exports (`--master`), copied or joined;
//! - `bundle.rs`: the CSV files written to a staging folder, validated by the loader, renamed;
//! - `policy.rs`: ListIncentiveDiscountPolicies → `[[exclusion]]` sections.
//!
//! A value that cannot be imported stops everything ([`Stop`], exit 3) before any file is
//! published; a record that a person must decide is listed in the report and not written.

pub mod args;
mod bundle;
mod huawei;
pub mod json;
mod master;
pub mod policy;

pub use bundle::import_huawei;

use crate::calendar::Cycle;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// What `import huawei` is asked to do.
#[derive(Debug, Clone)]
pub struct HuaweiImport {
    pub cycle: Cycle,
    pub from: PathBuf,
    pub out: PathBuf,
    /// The one exporter whose files are directly in `from`; `None`: one subfolder per exporter.
    pub exporter_id: Option<String>,
    pub master: Option<PathBuf>,
}

/// Why one value cannot be imported; the file and record are added where they are known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub field: String,
    pub value: String,
    pub why: String,
}

impl Refusal {
    pub fn value(field: &str, value: &str, why: &str) -> Refusal {
        Refusal {
            field: field.to_string(),
            value: value.to_string(),
            why: why.to_string(),
        }
    }

    /// The refusal, at a record of a file.
    pub fn at(self, file: &str, record: &str) -> Stop {
        Stop {
            file: file.to_string(),
            record: record.to_string(),
            refusal: self,
        }
    }
}

/// A response that cannot be imported: exit 3, naming file, record and value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stop {
    pub file: String,
    pub record: String,
    pub refusal: Refusal,
}

impl std::fmt::Display for Stop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let r = &self.refusal;
        write!(
            f,
            "{}: {}: {} = {:?}: {}; nothing was written",
            self.file, self.record, r.field, r.value, r.why
        )
    }
}

impl From<Stop> for crate::error::RunError {
    fn from(stop: Stop) -> Self {
        crate::error::RunError::VendorResponse(stop.to_string())
    }
}

/// A record the importer did not write because a person must decide it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ForPerson {
    pub file: String,
    pub record: String,
    pub reason: String,
}

/// A refund line split per base order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Split {
    pub line_id: String,
    pub parts: Vec<SplitPart>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SplitPart {
    pub line_id: String,
    pub original_order_id: String,
    pub payable_amount: String,
}

/// `import_report.json` and the terminal summary.
#[derive(Debug, Default, Serialize)]
pub struct ImportReport {
    pub cycle: String,
    pub bundle: String,
    pub exporters: Vec<String>,
    /// Records read, per source (`ListSubCustomerBillDetail`, …, `master/partners.csv`).
    pub read: BTreeMap<String, u64>,
    /// Rows written, per bundle file.
    pub written: BTreeMap<String, u64>,
    pub refunds_split: Vec<Split>,
    /// Defaults applied, with how many records each concerned.
    pub defaults: BTreeMap<String, u64>,
    /// Records not written: a person must decide them.
    pub for_person: Vec<ForPerson>,
    /// What `incentives validate` says of the bundle written.
    pub validation: Validation,
}

#[derive(Debug, Default, Serialize)]
pub struct Validation {
    pub rejected_rows: u64,
    /// The first rejects (every one is in `incentives validate`'s output).
    pub first_rejects: Vec<String>,
}

impl ImportReport {
    pub fn read(&mut self, source: &str, n: u64) {
        *self.read.entry(source.to_string()).or_default() += n;
    }

    pub fn default_applied(&mut self, what: &str) {
        *self.defaults.entry(what.to_string()).or_default() += 1;
    }

    pub fn for_person(&mut self, file: &str, record: &str, reason: impl Into<String>) {
        self.for_person.push(ForPerson {
            file: file.to_string(),
            record: record.to_string(),
            reason: reason.into(),
        });
    }

    /// The terminal summary: one screen, columns aligned.
    pub fn summary(&self, report_path: &std::path::Path) -> String {
        use std::fmt::Write as _;
        let mut out = String::new();
        let _ = writeln!(out, "import huawei: cycle {} → {}", self.cycle, self.bundle);
        let _ = writeln!(out, "  exporters        {}", self.exporters.join(", "));
        let _ = writeln!(out, "  records read");
        for (source, n) in &self.read {
            let _ = writeln!(out, "    {source:<32} {n:>8}");
        }
        let _ = writeln!(out, "  rows written");
        for (file, n) in &self.written {
            let _ = writeln!(out, "    {file:<32} {n:>8}");
        }
        let parts: usize = self.refunds_split.iter().map(|s| s.parts.len()).sum();
        let _ = writeln!(
            out,
            "  refunds split    {} line(s) into {parts} part(s)",
            self.refunds_split.len()
        );
        for (what, n) in &self.defaults {
            let _ = writeln!(out, "  default          {what} ({n})");
        }
        let _ = writeln!(
            out,
            "  for a person     {} record(s) not written",
            self.for_person.len()
        );
        for p in self.for_person.iter().take(20) {
            let _ = writeln!(out, "    {}: {}: {}", p.file, p.record, p.reason);
        }
        if self.for_person.len() > 20 {
            let _ = writeln!(out, "    … and {} more", self.for_person.len() - 20);
        }
        let _ = writeln!(
            out,
            "  validation       {} row(s) rejected by the loader",
            self.validation.rejected_rows
        );
        for r in &self.validation.first_rejects {
            let _ = writeln!(out, "    {r}");
        }
        let _ = writeln!(out, "  report           {}", report_path.display());
        out
    }
}
