//! Stage: project subsidies (seeds 4, 5). Every project gets a decision; a project applied for
//! in the cycle is granted when its partner is in its programme on the application date, the
//! annual new-resource amount reaches its market's threshold in that market's currency, and the
//! partner holds a qualifying capability tag on the application date (not at registration).

use crate::calendar::Cycle;
use crate::evaluate::{Evaluation, Kind, RULE_SUBSIDY};
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
    evaluation: &mut Evaluation<'_>,
) -> Vec<SubsidyDecision> {
    let Some(policy) = &rules.subsidy else {
        return Vec::new();
    };
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
                let in_programme =
                    partner.joined_on <= d && partner.exited_on.is_none_or(|e| d < e);
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
            evaluation.push_balance_row(
                project.partner,
                Kind::Subsidy,
                RULE_SUBSIDY,
                cycle,
                project.annual_new_resource_amount,
                Some(policy.rate),
                amount,
                project.currency,
                &project.project_id,
            );
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
    decisions
}
