//! `explanations.csv` (SPEC Appendix B).

use super::{Out, Staging};
use crate::error::RunError;
use crate::explain::{Explanation, Lang, paragraph};
use crate::money::format_amount;
use crate::rules::RuleSet;

const COLUMNS: &[&str] = &[
    "cycle",
    "partner_id",
    "customer_id",
    "currency",
    "consumption",
    "refunds",
    "eligible_base",
    "non_base",
    "excluded",
    "excluded_by_reason",
    "deferred_out_base",
    "deferred_out_non_base",
    "deferred_out_incentive",
    "clawback_base",
    "refund_not_earned",
    "earned_now",
    "carried_in",
    "clawed_back",
    "tier",
    "cap",
    "override",
    "incentive",
    "rejected_lines",
    "explanation",
];

pub fn write_explanations(
    staging: &Staging,
    rules: &RuleSet,
    cycle: &str,
    explanations: &[Explanation],
    lang: Lang,
) -> Result<(), RunError> {
    let mut out = staging.table("explanations", COLUMNS)?;
    super::table::write_parallel(&mut out, explanations, COLUMNS.len(), |slice, batch| {
        for e in slice {
            let scale = rules.rounding.scale(e.currency);
            let m = |d| format_amount(d, scale);
            let by_reason = e
                .excluded_by_reason
                .iter()
                .map(|(r, a)| format!("{r}={}", m(*a)))
                .collect::<Vec<_>>()
                .join(";");
            let figures = e.amounts().map(|d| Out::Amount(d, scale));
            let text = paragraph(e, cycle, lang, scale);
            let mut cells = vec![
                Out::Text(cycle),
                Out::Text(&e.partner_id),
                Out::Text(&e.customer_id),
                Out::Text(e.currency.as_str()),
            ];
            // `excluded_by_reason` sits after the fifth figure, `excluded`.
            cells.extend_from_slice(&figures[..5]);
            cells.push(Out::Text(&by_reason));
            cells.extend_from_slice(&figures[5..]);
            cells.push(Out::Count(e.rejected_lines));
            cells.push(Out::Text(&text));
            batch.row(&cells);
        }
    })?;
    staging.finish(out)
}
