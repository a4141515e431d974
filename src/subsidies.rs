//! Stage: project subsidies (seeds 4, 5). Every project gets a decision; a project applied for
//! in the cycle is granted when its partner is in its programme on the application date, the
//! annual new-resource amount reaches its market's threshold in that market's currency, and the
//! partner holds a qualifying capability tag on the application date (not at registration).

use crate::calendar::Cycle;
use crate::evaluate::{BalanceRow, Kind, RuleRef};
use crate::load::Bundle;
use crate::model::{CapabilityTag, PartnerIdx};
use crate::rules::RuleSet;
use rust_decimal::Decimal;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Granted,
    Denied,
    NotApplied,
    DecidedEarlier,
}

impl Decision {
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Granted => "granted",
            Decision::Denied => "denied",
            Decision::NotApplied => "not_applied",
            Decision::DecidedEarlier => "decided_earlier",
        }
    }
}

/// One row of `subsidies.csv`.
#[derive(Debug, Clone, PartialEq)]
pub struct SubsidyDecision {
    pub project: usize,
    pub decision: Decision,
    /// Reason code, then words naming the threshold, the tag or its absence.
    pub reason: String,
    pub qualifying_tag: String,
    pub amount: Decimal,
}

fn holds_tag_on(
    tags: &[CapabilityTag],
    partner: PartnerIdx,
    tag: &str,
    date: chrono::NaiveDate,
) -> bool {
    tags.iter().any(|t| {
        t.partner == partner
            && t.tag == tag
            && t.valid_from <= date
            && t.valid_to.is_none_or(|to| date <= to)
    })
}

/// Decides every project and adds a `subsidy` ledger row for each one granted.
pub fn decide(
    bundle: &Bundle,
    rules: &RuleSet,
    cycle: Cycle,
) -> (Vec<SubsidyDecision>, Vec<BalanceRow>) {
    let Some(policy) = &rules.subsidy else {
        return (Vec::new(), Vec::new());
    };
    let mut rows = Vec::new();
    let mut decisions = Vec::with_capacity(bundle.projects.len());
    let (first, last) = (cycle.first_day(), cycle.last_day());
    for (i, project) in bundle.projects.iter().enumerate() {
        let partner = bundle.partners.at(project.partner);
        let deny = |reason: String| (Decision::Denied, reason, String::new(), Decimal::ZERO);
        let (decision, reason, tag, amount) = match project.benefit_applied_on {
            None => (
                Decision::NotApplied,
                "benefit_not_applied: the benefit has not been applied for".to_string(),
                String::new(),
                Decimal::ZERO,
            ),
            Some(d) if d > last => (
                Decision::NotApplied,
                format!("applied_after_cycle: applied on {d}, after cycle {cycle}"),
                String::new(),
                Decimal::ZERO,
            ),
            Some(d) if d < first => (
                Decision::DecidedEarlier,
                format!(
                    "applied_before_cycle: applied on {d}, decided by the run of that cycle (never paid twice)"
                ),
                String::new(),
                Decimal::ZERO,
            ),
            Some(d) => {
                let in_programme = partner.in_programme_on(d);
                let threshold = policy.thresholds.get(&project.market);
                let tag = policy
                    .qualifying_tags
                    .iter()
                    .find(|t| holds_tag_on(&bundle.capability_tags, project.partner, t, d));
                match (in_programme, threshold, tag) {
                    (false, _, _) => deny(format!(
                        "not_in_programme: {} was not in its programme on {d}",
                        partner.partner_id
                    )),
                    (_, None, _) => deny(format!(
                        "no_threshold: the rules set no threshold for market {}",
                        project.market
                    )),
                    (_, Some((currency, _)), _) if *currency != project.currency => deny(format!(
                        "currency_not_market: a {} project is assessed in {currency}, not {}",
                        project.market, project.currency
                    )),
                    (_, Some((currency, min)), _) if project.annual_new_resource_amount < *min => {
                        deny(format!(
                            "below_threshold: {} {currency} a year is below the threshold of {min} {currency}",
                            project.annual_new_resource_amount
                        ))
                    }
                    (_, _, None) => deny(format!(
                        "no_qualifying_tag_on_application_date: {} held none of {} on {d}",
                        partner.partner_id,
                        policy.qualifying_tags.join(", ")
                    )),
                    (_, Some((currency, min)), Some(tag)) => {
                        let raw = rules
                            .rounding
                            .round(policy.rate * project.annual_new_resource_amount, *currency);
                        let amount = policy.cap.get(currency).map_or(raw, |cap| raw.min(*cap));
                        (
                            Decision::Granted,
                            format!(
                                "{tag}: held {tag} on {d}; {} {currency} a year reaches the threshold of {min} {currency}",
                                project.annual_new_resource_amount
                            ),
                            tag.clone(),
                            amount,
                        )
                    }
                }
            }
        };
        if decision == Decision::Granted {
            rows.push(BalanceRow {
                partner: project.partner,
                kind: Kind::Subsidy,
                rule: RuleRef::SUBSIDY,
                base: project.annual_new_resource_amount,
                rate: Some(policy.rate),
                amount,
                currency: project.currency,
                reference: project.project_id.to_string(),
            });
        }
        decisions.push(SubsidyDecision {
            project: i,
            decision,
            reason,
            qualifying_tag: tag,
            amount,
        });
    }
    decisions.sort_by(|a, b| {
        bundle.projects[a.project]
            .project_id
            .cmp(&bundle.projects[b.project].project_id)
    });
    (decisions, rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::{bundle, cycle, reference};

    const PROJECTS: &str = "project_id,partner_id,market,registered_on,benefit_applied_on,annual_new_resource_amount,currency\n";
    const TAGS: &str = "partner_id,tag,valid_from,valid_to\n";

    /// (project, decision, amount, qualifying tag).
    type Decided = (String, &'static str, String, String);

    /// The decision of each project, and the subsidy rows' amounts.
    fn decide_all(projects: &str, tags: &str) -> (Vec<Decided>, Vec<String>) {
        let b = bundle(&[
            ("projects.csv", &format!("{PROJECTS}{projects}")),
            ("capability_tags.csv", &format!("{TAGS}{tags}")),
        ]);
        let rules = reference();
        let (decisions, rows) = decide(&b, &rules, cycle());
        let rows = rows
            .iter()
            .filter(|r| r.kind == Kind::Subsidy)
            .map(|r| r.amount.to_string())
            .collect();
        let out = decisions
            .iter()
            .map(|d| {
                (
                    b.projects[d.project].project_id.to_string(),
                    d.decision.as_str(),
                    d.amount.to_string(),
                    d.qualifying_tag.clone(),
                )
            })
            .collect();
        (out, rows)
    }

    #[test]
    fn thresholds_tags_on_the_application_date_and_caps() {
        let projects = "\
P1,SP1,cn,2026-05-01,2026-10-20,1000000.00,CNY
P2,SP1,cn,2026-05-01,2026-10-20,999999.99,CNY
P3,SP1,cn,2026-05-01,2026-10-08,1500000.00,CNY
P4,SP1,cn,2026-05-01,2026-10-25,3000000.00,CNY
P5,SP4,intl,2026-05-01,2026-10-20,125000.00,USD
P6,SP4,intl,2026-05-01,2026-10-20,400000.00,USD
P7,SP4,intl,2026-05-01,2026-10-20,400000.00,CNY
P8,SP1,cn,2026-05-01,2026-09-30,2000000.00,CNY
P9,SP1,cn,2026-05-01,2026-11-01,2000000.00,CNY
PA,SP1,cn,2026-05-01,,2000000.00,CNY
PB,SP2,cn,2025-05-01,2026-10-20,2000000.00,CNY
";
        // SP1 gains `migration` on 10-15: after registering in May, before applying on 10-20
        // (P1) but after applying on 10-08 (P3); `iot` does not qualify.
        let tags = "SP1,migration,2026-10-15,\nSP1,iot,2024-01-01,\nSP4,big_data,2026-01-01,\nSP2,sap,2020-01-01,\n";
        let (d, rows) = decide_all(projects, tags);
        let got: Vec<(&str, &str, &str, &str)> = d
            .iter()
            .map(|x| (x.0.as_str(), x.1, x.2.as_str(), x.3.as_str()))
            .collect();
        assert_eq!(
            got,
            vec![
                // Exactly at the threshold passes: 5 % of 1,000,000.00 = 50,000.00.
                ("P1", "granted", "50000.00", "migration"),
                // One cent below: denied.
                ("P2", "denied", "0", ""),
                // Applied on 10-08, before the tag was gained: denied.
                ("P3", "denied", "0", ""),
                // 5 % of 3,000,000 = 150,000 → capped at 100,000.00 CNY.
                ("P4", "granted", "100000", "migration"),
                // Overseas: 125,000 USD passes; 5 % = 6,250.00.
                ("P5", "granted", "6250.00", "big_data"),
                // 5 % of 400,000 = 20,000 → capped at 12,500 USD.
                ("P6", "granted", "12500", "big_data"),
                // An intl project in CNY is not in its market's currency.
                ("P7", "denied", "0", ""),
                // Applied before the cycle: decided then, never paid twice.
                ("P8", "decided_earlier", "0", ""),
                // Applied after the cycle, or not at all.
                ("P9", "not_applied", "0", ""),
                ("PA", "not_applied", "0", ""),
                // SP2 left its programme on 2025-10-20.
                ("PB", "denied", "0", ""),
            ]
        );
        assert_eq!(rows, vec!["50000.00", "100000", "6250.00", "12500"]);
    }

    #[test]
    fn a_tag_lost_before_applying_does_not_count() {
        let (d, _) = decide_all(
            "P1,SP1,cn,2026-05-01,2026-10-25,2000000.00,CNY\n",
            "SP1,database,2025-01-01,2026-10-24\n",
        );
        assert_eq!(d[0].1, "denied");
    }
}
