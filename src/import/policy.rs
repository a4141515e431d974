//! `import huawei-policy`: ListIncentiveDiscountPolicies responses → a rule file of
//! `[[exclusion]]` sections for one month (SPEC §11).
//!
//! Policy "2" (no performance credit, no rebate) excludes the service from every lever and from
//! the growth tier's base; "13" (performance credit, no rebate) from every lever while its base
//! still counts toward the tier; neither stops the clawback of earlier earnings. "1" (specific
//! product) is listed as comments for a person to price; "0" is the ordinary case.

use super::json::{self, Raw};
use super::{Refusal, Stop};
use crate::calendar::Cycle;
use crate::error::RunError;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Debug, Deserialize)]
struct PolicyPage {
    total_count: Raw,
    policies: Option<Vec<Policy>>,
}

#[derive(Debug, Deserialize)]
struct Policy {
    service_type_code: Raw,
    service_type_name: Raw,
    incentive_policy: Raw,
}

/// What `import huawei-policy` is asked to do.
#[derive(Debug, Clone)]
pub struct PolicyImport {
    pub month: Cycle,
    pub files: Vec<PathBuf>,
    pub out: PathBuf,
}

/// The month's services by policy code: service type code → name.
pub type Policies = BTreeMap<String, BTreeMap<String, String>>;

/// Reads the responses: every code listed, pages complete, a service never under two policies.
pub fn read(files: &[PathBuf]) -> Result<Policies, Stop> {
    let mut policies = Policies::new();
    let mut seen: BTreeMap<String, (String, String)> = BTreeMap::new();
    let (mut totals, mut read) = (BTreeMap::new(), 0u64);
    for path in files {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|e| Refusal::value("file", "", &format!("cannot read: {e}")).at(&file, "*"))?;
        let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
        json::check_body(text).map_err(|r| r.at(&file, "*"))?;
        let page: PolicyPage = serde_json::from_str(text).map_err(|e| {
            Refusal::value(
                "response",
                "",
                &format!("not a ListIncentiveDiscountPolicies response: {e}"),
            )
            .at(&file, "*")
        })?;
        let list = page.policies.unwrap_or_default();
        read += list.len() as u64;
        if let Some(t) = json::code(&page.total_count) {
            totals.insert(t, file.clone());
        }
        for (i, p) in list.iter().enumerate() {
            let record = format!("policies[{i}]");
            let at = |r: Refusal| r.at(&file, &record);
            let service = json::required(&p.service_type_code, "service_type_code").map_err(at)?;
            if !crate::load::is_valid_id(&service) {
                return Err(at(Refusal::value(
                    "service_type_code",
                    &service,
                    "not a service type code of the form [A-Za-z0-9][A-Za-z0-9._-]{0,63}",
                )));
            }
            let code = json::required(&p.incentive_policy, "incentive_policy").map_err(at)?;
            if !matches!(code.as_str(), "0" | "1" | "2" | "13") {
                return Err(at(Refusal::value(
                    "incentive_policy",
                    &code,
                    "a code domain/huawei-fields.md does not list",
                )));
            }
            if let Some((earlier, where_)) = seen.get(&service)
                && *earlier != code
            {
                return Err(at(Refusal::value(
                    "incentive_policy",
                    &code,
                    &format!(
                        "{service} is under policy {earlier} in {where_}: one service, two policies"
                    ),
                )));
            }
            seen.insert(service.clone(), (code.clone(), file.clone()));
            let name = json::code(&p.service_type_name).unwrap_or_default();
            policies.entry(code).or_default().insert(service, name);
        }
    }
    check_total(&totals, read)?;
    Ok(policies)
}

fn check_total(totals: &BTreeMap<String, String>, read: u64) -> Result<(), Stop> {
    let mut all = totals.iter();
    match (all.next(), all.next()) {
        (Some((_, a)), Some((_, _))) => {
            Err(Refusal::value("total_count", "", "pages disagree on the total").at(a, "*"))
        }
        (Some((t, file)), None) if t.parse::<u64>().ok() != Some(read) => Err(Refusal::value(
            "total_count",
            t,
            &format!("{read} policies read in all files: a page is missing or doubled"),
        )
        .at(file, "*")),
        _ => Ok(()),
    }
}

/// Text for a `#` comment: a line break or other control character would end the comment and
/// let the vendor's text become rules, so each is a space.
fn comment_text(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// A TOML string literal.
fn quoted(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

/// One exclusion section for the services under a policy.
fn exclusion(month: Cycle, code: &str, services: &BTreeMap<String, String>) -> String {
    let (reason, words, counts) = match code {
        "2" => (
            "no_performance_no_rebate",
            "no performance credit and no rebate (无业绩无返点): earns no incentive on any lever and does not count toward the growth tier",
            false,
        ),
        _ => (
            "performance_no_rebate",
            "performance credit but no rebate (有业绩无返点): earns no incentive on any lever but counts toward the growth tier",
            true,
        ),
    };
    let names: Vec<String> = services
        .iter()
        .map(|(c, n)| {
            if n.is_empty() {
                c.clone()
            } else {
                format!("{n} ({c})")
            }
        })
        .collect();
    let codes: Vec<String> = services.keys().map(|c| quoted(c)).collect();
    format!(
        "[[exclusion]]\nid = {}\nreason = {}\nexplanation = {}\nwhen = {{ service_type_code = [{}] }}\nwindow = {{ from = \"{}\", to = \"{}\" }}\nstops_clawback = false\ncounts_toward_tier = {counts}\n\n",
        quoted(&format!(
            "huawei_policy_{code}.{}",
            month.to_string().replace('-', "_")
        )),
        quoted(reason),
        quoted(&format!(
            "vendor policy {code} in {month}, {words}: {}",
            names.join(", ")
        )),
        codes.join(", "),
        month.first_day(),
        month.last_day(),
    )
}

/// The rule file's text.
pub fn rules_text(month: Cycle, files: &[PathBuf], policies: &Policies) -> String {
    let mut out = format!(
        "# Generated by `incentives import huawei-policy --month {month}` from ListIncentiveDiscountPolicies\n\
         # responses ({}).\n\
         # These exclusions hold for lines traded in {month} (their `window`, trade dates in the rule\n\
         # set's time zone, Asia/Shanghai in the reference set).\n\
         # Neither policy stops the clawback of earlier earnings (stops_clawback = false).\n\n",
        files
            .iter()
            .map(|f| f
                .file_name()
                .map_or_else(String::new, |n| comment_text(&n.to_string_lossy())))
            .collect::<Vec<_>>()
            .join(", ")
    );
    for code in ["2", "13"] {
        if let Some(services) = policies.get(code) {
            out.push_str(&exclusion(month, code, services));
        }
    }
    if let Some(specific) = policies.get("1") {
        out.push_str("# Specific products (policy 1): their incentive is priced case by case; a person must write\n# their rules:\n");
        for (c, n) in specific {
            out.push_str(&format!("#   {c}  {}\n", comment_text(n)));
        }
    }
    out
}

/// Runs `import huawei-policy`; returns the summary for the terminal.
pub fn import_policy(job: &PolicyImport) -> Result<String, RunError> {
    if job.out.symlink_metadata().is_ok() {
        return Err(RunError::Usage(format!(
            "--out {}: already exists; remove it or name another file",
            job.out.display()
        )));
    }
    let dir = match job.out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    for f in &job.files {
        if !f.is_file() {
            return Err(RunError::Usage(format!("{}: no such file", f.display())));
        }
    }
    let policies = read(&job.files)?;
    let text = rules_text(job.month, &job.files, &policies);
    write_new(&dir, &job.out, text.as_bytes())?;
    let n = |c: &str| policies.get(c).map_or(0, BTreeMap::len);
    Ok(format!(
        "import huawei-policy: month {}\n  policy 2  (no performance, no rebate)   {:>5} service(s) excluded, not in the tier's base\n  policy 13 (performance, no rebate)      {:>5} service(s) excluded, in the tier's base\n  policy 1  (specific products)           {:>5} listed as comments for a person to price\n  policy 0                                {:>5}\n  wrote {}\n",
        job.month,
        n("2"),
        n("13"),
        n("1"),
        n("0"),
        job.out.display()
    ))
}

fn write_new(dir: &Path, out: &Path, bytes: &[u8]) -> Result<(), RunError> {
    let mut tmp =
        tempfile::NamedTempFile::new_in(dir).map_err(|e| RunError::io(out.display(), e))?;
    std::io::Write::write_all(&mut tmp, bytes).map_err(|e| RunError::io(out.display(), e))?;
    tmp.persist_noclobber(out)
        .map_err(|e| RunError::io(out.display(), e.error))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_product_name_cannot_write_rules() {
        // A name with line breaks stays inside its comment: the file holds no section at all.
        let mut p = Policies::new();
        p.entry("1".into()).or_default().insert(
            "hws.service.type.x".into(),
            "X\n[[exclusion]]\nid = \"evil\"\r\nwhen = {}".into(),
        );
        let text = rules_text(Cycle::new(2026, 10).unwrap(), &[], &p);
        assert!(
            text.contains("#   hws.service.type.x  X [[exclusion]] id = \"evil\"  when = {}\n")
        );
        let parsed: toml::Table = toml::from_str(&text).unwrap();
        assert!(parsed.is_empty(), "{text}");
    }

    #[test]
    fn policies_2_and_13_become_exclusions_and_1_comments() {
        let mut p = Policies::new();
        p.entry("2".into())
            .or_default()
            .insert("hws.service.type.marketplace2".into(), "云市场".into());
        p.entry("13".into())
            .or_default()
            .insert("hws.service.type.cdn".into(), "CDN".into());
        p.entry("1".into())
            .or_default()
            .insert("hws.service.type.modelarts".into(), "ModelArts".into());
        let month = Cycle::new(2026, 10).unwrap();
        let text = rules_text(month, &[], &p);
        assert!(text.contains("id = \"huawei_policy_2.2026_10\""));
        assert!(text.contains("counts_toward_tier = false"));
        assert!(text.contains("counts_toward_tier = true"));
        assert_eq!(text.matches("\nstops_clawback = false\n").count(), 2);
        assert!(text.contains("#   hws.service.type.modelarts  ModelArts"));
        // The sections parse as TOML.
        let parsed: toml::Table = toml::from_str(&text).unwrap();
        assert_eq!(parsed["exclusion"].as_array().unwrap().len(), 2);
    }
}
