//! `explanations.csv` (SPEC Appendix B).

use super::error::WriteError;
use super::{Column, Out, Staging};
use crate::explain::{Explanation, Lang, paragraph};
use crate::money::format_amount;
use crate::rules::RuleSet;

/// The columns of `explanations` (SPEC Appendix B).
pub const COLUMNS: &[Column] = &[
    Column::text("cycle"),
    Column::text("partner_id"),
    Column::text("customer_id"),
    Column::text("currency"),
    Column::amount("consumption"),
    Column::amount("refunds"),
    Column::amount("eligible_base"),
    Column::amount("non_base"),
    Column::amount("excluded"),
    Column::text("excluded_by_reason"),
    Column::amount("deferred_out_base"),
    Column::amount("deferred_out_non_base"),
    Column::amount("deferred_out_incentive"),
    Column::amount("clawback_base"),
    Column::amount("refund_not_earned"),
    Column::amount("earned_now"),
    Column::amount("carried_in"),
    Column::amount("clawed_back"),
    Column::amount("tier"),
    Column::amount("cap"),
    Column::amount("override"),
    Column::amount("incentive"),
    Column::count("rejected_lines"),
    Column::unique("explanation"),
];

pub fn write_explanations(
    staging: &Staging,
    rules: &RuleSet,
    cycle: &str,
    explanations: &[Explanation],
    lang: Lang,
) -> Result<(), WriteError> {
    let mut out = staging.table("explanations", COLUMNS)?;
    let reasons = crate::explain::reason_words_of(rules);
    super::table::write_parallel(&mut out, explanations, |slice, batch| {
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
            let text = paragraph(e, cycle, lang, scale, &reasons);
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
