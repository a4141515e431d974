//! `incentives explain`: a terminal view for an analyst, read from a published cycle: the
//! waterfall from consumption to incentive, the lines behind each step (largest first), and a
//! line's whole story (rules, base, rate, rounding, credit cycle, voucher deductions). Read
//! through polars (`analyst::cycle`): only the rows of the partner, customer or line asked for,
//! only the columns shown, CSV or Parquet alike.

use crate::analyst::cycle::{PublishedCycle, decimals, is, texts};
use crate::error::RunError;
use rust_decimal::Decimal;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::IsTerminal;
use std::path::Path;

/// Before `explain` or `report` answers on `cycle` (published in `out`): a warning on stderr if
/// the chain in `state` has the cycle stale, or its publication pending or lost; a note, once, if
/// there is no state to ask (or it does not hold the cycle). Nothing if the cycle was never
/// published there (the answer is then an error of its own).
pub fn warn_on_standing(state: &Path, out: &Path, cycle: crate::calendar::Cycle) {
    if std::fs::symlink_metadata(out.join(cycle.to_string())).is_err() {
        return;
    }
    let shown = state.display();
    let say = |text: String| crate::progress::note("WARN", &text);
    match crate::status::read_chain(state) {
        Ok(None) => say(format!(
            "note: no state in {shown} (no state.db): whether cycle {cycle} is stale cannot be told; pass --state with the folder the chain was run with"
        )),
        Err(e) => say(format!(
            "note: the state in {shown} cannot be read ({e}): whether cycle {cycle} is stale cannot be told"
        )),
        Ok(Some(chain)) => match chain.iter().find(|c| c.record.cycle == cycle.to_string()) {
            None => say(format!(
                "note: cycle {cycle} is not in the state in {shown}: whether it is stale cannot be told; pass --state with the folder it was run with"
            )),
            Some(c) => match c.word() {
                "STALE" => say(format!(
                    "warning: cycle {cycle} is STALE in {shown}: an earlier cycle was re-run after it, so these outputs no longer add up with the chain; re-run {cycle} (and the cycles after it, in order) before relying on them"
                )),
                "pending" => say(format!(
                    "warning: cycle {cycle}'s latest run is committed in {shown} but its publication is pending: these outputs may be an earlier run's; the next run on that state publishes it"
                )),
                "unpublished" => say(format!(
                    "warning: cycle {cycle}'s latest run is committed in {shown} but its outputs were lost before publication: these outputs are an earlier run's; re-run {cycle} (`incentives status --state {shown}` gives the command)"
                )),
                _ => {}
            },
        },
    }
}

fn bold(text: &str, colour: bool) -> String {
    if colour {
        format!("\u{1b}[1m{text}\u{1b}[0m")
    } else {
        text.to_string()
    }
}

const STEPS: &[(&str, &str)] = &[
    ("consumption", "consumption (payable of positive lines)"),
    ("non_base", "− paid with customer coupons (earns nothing)"),
    ("excluded", "− excluded"),
    ("deferred_out_base", "− base credited next cycle"),
    ("deferred_out_non_base", "− outside the base, next cycle"),
    ("eligible_base", "= base earning this cycle"),
    ("earned_now", "incentive earned now"),
    ("carried_in", "+ carried in from last cycle"),
    ("clawed_back", "+ clawed back (refunds)"),
    ("override", "+ override"),
    ("tier", "+ tier"),
    ("cap", "+ cap"),
    ("incentive", "= incentive credited this cycle"),
    ("deferred_out_incentive", "(credited next cycle)"),
];

/// The rows of `table` that `filter` keeps, only `columns`; each kept row holds `key` in a
/// cell (the id the filter names).
fn rows_of(
    cycle: &PublishedCycle,
    table: &str,
    key: &str,
    filter: polars::prelude::Expr,
    columns: &[&str],
) -> Result<polars::prelude::DataFrame, RunError> {
    cycle.rows_holding(table, key, filter, columns)
}

/// Text columns of a frame, by name.
fn text_columns(
    df: &polars::prelude::DataFrame,
    names: &[&str],
) -> Result<BTreeMap<String, Vec<String>>, RunError> {
    names
        .iter()
        .map(|n| texts(df, n).map(|v| (n.to_string(), v)))
        .collect()
}

/// Every column of a frame as text, by name.
fn all_text(df: &polars::prelude::DataFrame) -> Result<BTreeMap<String, Vec<String>>, RunError> {
    let names: Vec<String> = df
        .get_column_names()
        .iter()
        .map(|n| n.to_string())
        .collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    text_columns(df, &names)
}

/// Renders the explanation of `partner` (optionally one customer, or one line) in the
/// published cycle.
pub fn render(
    cycle: &PublishedCycle,
    partner: &str,
    customer: Option<&str>,
    line: Option<&str>,
    limit: usize,
) -> Result<String, RunError> {
    let colour = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    match line {
        Some(line_id) => render_line(cycle, partner, line_id, colour),
        None => render_partner(cycle, partner, customer, limit, colour),
    }
}

/// One line's story, asked by `partner`: the line's own partner, or a distributor its line
/// earned an override (a ledger row of the line is the distributor's).
fn render_line(
    cycle: &PublishedCycle,
    partner: &str,
    line_id: &str,
    colour: bool,
) -> Result<String, RunError> {
    let mut out = String::new();
    let df = rows_of(
        cycle,
        "line_outcomes",
        line_id,
        is("line_id", line_id),
        &[
            "partner_id",
            "customer_id",
            "bill_type",
            "source_row",
            "payable_amount",
            "currency",
            "fate",
            "reason",
            "rule_ids",
            "base",
            "incentive",
            "credit_cycle",
        ],
    )?;
    if df.height() == 0 {
        return Err(RunError::Usage(format!(
            "line {line_id} is not in {}",
            cycle.path("line_outcomes").display()
        )));
    }
    let o = all_text(&df)?;
    let f = |c: &str| o[c][0].as_str();
    let _ = writeln!(
        out,
        "{}",
        bold(
            &format!(
                "line {line_id} of {} / {}",
                f("partner_id"),
                f("customer_id")
            ),
            colour
        )
    );
    let _ = writeln!(
        out,
        "{} line (bill_lines.csv row {}), payable {} {}: {} {}",
        f("bill_type"),
        f("source_row"),
        f("payable_amount"),
        f("currency"),
        f("fate"),
        f("reason")
    );
    let _ = writeln!(
        out,
        "rules: {}; base {}; incentive {}; credited in {}",
        f("rule_ids"),
        f("base"),
        f("incentive"),
        f("credit_cycle")
    );
    let ledger = rows_of(
        cycle,
        "ledger",
        line_id,
        is("line_id", line_id),
        &[
            "entry_id",
            "kind",
            "lever",
            "rule_id",
            "partner_id",
            "base",
            "rate",
            "amount",
            "currency",
            "earned_cycle",
            "credit_cycle",
        ],
    )?;
    let r = all_text(&ledger)?;
    if f("partner_id") != partner && !r["partner_id"].iter().any(|p| p == partner) {
        return Err(RunError::Usage(format!(
            "line {line_id} is partner {}'s, and earned partner {} nothing: pass --partner {}",
            f("partner_id"),
            crate::error::printable(partner),
            f("partner_id")
        )));
    }
    let (bases, rates) = (decimals(&ledger, "base")?, decimals(&ledger, "rate")?);
    for i in 0..ledger.height() {
        let f = |c: &str| r[c][i].as_str();
        // Exact, or said to be out of range (a hand-edited table must not end in a panic).
        let exact = bases[i]
            .checked_mul(rates[i])
            .map_or_else(|| "(out of range)".to_string(), |d| d.to_string());
        let _ = writeln!(
            out,
            "  {} {} ({}) for {}: {} × {} = {} → rounded {} {} (earned {}, credited {})",
            f("kind"),
            f("lever"),
            f("rule_id"),
            f("partner_id"),
            f("base"),
            f("rate"),
            exact,
            f("amount"),
            f("currency"),
            f("earned_cycle"),
            f("credit_cycle")
        );
    }
    let deductions = rows_of(
        cycle,
        "voucher_deductions",
        line_id,
        is("line_id", line_id),
        &["voucher_id", "amount", "currency", "voucher_balance_after"],
    )?;
    let d = all_text(&deductions)?;
    for (i, voucher) in d["voucher_id"].iter().enumerate() {
        let _ = writeln!(
            out,
            "  voucher {voucher} paid {} {} (left {})",
            d["amount"][i], d["currency"][i], d["voucher_balance_after"][i]
        );
    }
    Ok(out)
}

fn render_partner(
    cycle: &PublishedCycle,
    partner: &str,
    customer: Option<&str>,
    limit: usize,
    colour: bool,
) -> Result<String, RunError> {
    let mut out = String::new();
    let mut filter = is("partner_id", partner);
    if let Some(c) = customer {
        filter = filter.and(is("customer_id", c));
    }
    let mut columns = vec!["customer_id", "currency", "explanation"];
    columns.extend(STEPS.iter().map(|s| s.0));
    let key = customer.unwrap_or(partner);
    let chosen = rows_of(cycle, "explanations", key, filter.clone(), &columns)?;
    if chosen.height() == 0 {
        return Err(RunError::Usage(format!(
            "no explanation for partner {partner}{} in {}",
            customer
                .map(|c| format!(", customer {c}"))
                .unwrap_or_default(),
            cycle.dir.display()
        )));
    }
    // The waterfall, summed over the chosen rows per currency, at the currency's scale.
    let currencies = texts(&chosen, "currency")?;
    let mut by_currency: BTreeMap<&str, Vec<Decimal>> = BTreeMap::new();
    let figures_of: Vec<Vec<Decimal>> = STEPS
        .iter()
        .map(|(c, _)| decimals(&chosen, c))
        .collect::<Result<_, _>>()?;
    for (i, currency) in currencies.iter().enumerate() {
        let sums = by_currency
            .entry(currency.as_str())
            .or_insert_with(|| vec![Decimal::ZERO; STEPS.len()]);
        for (s, figures) in sums.iter_mut().zip(&figures_of) {
            crate::analyst::cycle::add(s, figures[i])?;
        }
    }
    let cells: BTreeMap<&str, Vec<String>> = by_currency
        .iter()
        .map(|(currency, sums)| {
            let scale = cycle.scale(currency);
            let cells = sums
                .iter()
                .map(|d| crate::analyst::grouped(*d, scale))
                .collect();
            (*currency, cells)
        })
        .collect();
    let width = cells
        .values()
        .flatten()
        .map(|f| f.chars().count())
        .max()
        .unwrap_or(0)
        .max(16);
    let label_width = STEPS.iter().map(|s| s.1.chars().count()).max().unwrap_or(0);
    for (currency, figures) in &cells {
        let title = format!(
            "{partner}{} — {currency}",
            customer
                .map(|c| format!(" / {c}"))
                .unwrap_or_else(|| format!(" ({} rows)", chosen.height()))
        );
        let _ = writeln!(out, "{}", bold(&title, colour));
        for ((_, label), figure) in STEPS.iter().zip(figures) {
            let _ = writeln!(out, "  {label:<label_width$} {figure:>width$}");
        }
    }
    if customer.is_some() && chosen.height() == 1 {
        let _ = writeln!(out, "\n{}", texts(&chosen, "explanation")?[0]);
    }
    // The lines behind each step, largest first: only this partner's (and customer's) lines,
    // only the columns listed.
    let lines = rows_of(
        cycle,
        "line_outcomes",
        key,
        filter,
        &[
            "line_id",
            "customer_id",
            "payable_amount",
            "currency",
            "fate",
            "reason",
            "rule_ids",
            "incentive",
        ],
    )?;
    out.push_str(&line_groups(&lines, limit, colour)?);
    Ok(out)
}

/// The partner's lines grouped by fate and reason, each group largest first (by magnitude),
/// `limit` lines shown per group, columns as wide as their widest cell shown.
fn line_groups(
    lines: &polars::prelude::DataFrame,
    limit: usize,
    colour: bool,
) -> Result<String, RunError> {
    let mut out = String::new();
    let fate = texts(lines, "fate")?;
    let reason = texts(lines, "reason")?;
    let payable = decimals(lines, "payable_amount")?;
    let line_id = texts(lines, "line_id")?;
    let mut groups: BTreeMap<(&str, &str), Vec<usize>> = BTreeMap::new();
    for i in 0..lines.height() {
        groups
            .entry((fate[i].as_str(), reason[i].as_str()))
            .or_default()
            .push(i);
    }
    for list in groups.values_mut() {
        list.sort_by(|a, b| {
            payable[*b]
                .abs()
                .cmp(&payable[*a].abs())
                .then(line_id[*a].cmp(&line_id[*b]))
        });
    }
    let shown: Vec<usize> = groups
        .values()
        .flat_map(|l| l.iter().take(limit).copied())
        .collect();
    // Only the shown rows are turned into text for the table.
    let shown_frame = lines
        .take(&polars::prelude::IdxCa::from_vec(
            "i".into(),
            shown
                .iter()
                .map(|i| *i as polars::prelude::IdxSize)
                .collect(),
        ))
        .map_err(|e| RunError::Io(e.to_string()))?;
    let cell = text_columns(
        &shown_frame,
        &[
            "line_id",
            "customer_id",
            "payable_amount",
            "currency",
            "incentive",
            "rule_ids",
        ],
    )?;
    let w = |c: &str, min: usize| {
        cell[c]
            .iter()
            .map(|v| v.chars().count())
            .max()
            .unwrap_or(0)
            .max(min)
    };
    let (w_line, w_customer, w_payable, w_incentive) = (
        w("line_id", 20),
        w("customer_id", 12),
        w("payable_amount", 14),
        w("incentive", 10),
    );
    let mut at = 0;
    for ((fate, reason), list) in &groups {
        let label = if reason.is_empty() {
            fate.to_string()
        } else {
            format!("{fate} ({reason})")
        };
        let _ = writeln!(out, "\n{}: {} line(s)", bold(&label, colour), list.len());
        for _ in list.iter().take(limit) {
            let f = |c: &str| cell[c][at].as_str();
            let _ = writeln!(
                out,
                "  {:<w_line$} {:<w_customer$} payable {:>w_payable$} {}  incentive {:>w_incentive$}  {}",
                f("line_id"),
                f("customer_id"),
                f("payable_amount"),
                f("currency"),
                f("incentive"),
                f("rule_ids")
            );
            at += 1;
        }
        if list.len() > limit {
            let _ = writeln!(out, "  … {} more (--limit)", list.len() - limit);
        }
    }
    Ok(out)
}

/// A frame of one column, for tests.
#[cfg(test)]
fn frame(name: &str, values: &[&str]) -> polars::prelude::DataFrame {
    use polars::prelude::*;
    DataFrame::new_infer_height(vec![Column::new(name.into(), values)]).unwrap()
}

#[cfg(test)]
mod tests {
    #[test]
    fn cells_read_for_the_terminal_have_control_characters_escaped() {
        let df = super::frame("explanation", &["a\u{1b}[31mred\rb", "SP1"]);
        let cells = crate::analyst::cycle::texts(&df, "explanation").unwrap();
        assert_eq!(cells[0], "a\\u{1b}[31mred\\rb");
        assert_eq!(cells[1], "SP1");
    }
}
