//! `incentives explain`: a terminal view for an analyst, read from a published cycle: the
//! waterfall from consumption to incentive, the lines behind each step (largest first), and a
//! line's whole story (rules, base, rate, rounding, credit cycle, voucher deductions).

use crate::error::RunError;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::IsTerminal;
use std::path::Path;

/// A row of a published CSV output, by column name.
pub type Row = BTreeMap<String, String>;

/// Reads a published CSV output (for `explain` and `report`, which work from written files).
pub fn read(path: &Path) -> Result<Vec<Row>, RunError> {
    if !path.exists() && path.with_extension("parquet").exists() {
        return Err(RunError::Usage(format!(
            "{}: this cycle was published with --format parquet; explain and report read the CSV outputs: run the cycle again without --format parquet (or read {} with a Parquet reader)",
            path.display(),
            path.with_extension("parquet").display()
        )));
    }
    let mut reader = csv::Reader::from_path(path).map_err(|e| {
        RunError::Usage(format!(
            "{}: {e} (is this a published cycle folder?)",
            path.display()
        ))
    })?;
    let headers = reader
        .headers()
        .map_err(|e| RunError::Io(e.to_string()))?
        .clone();
    let mut rows = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| RunError::Io(format!("{}: {e}", path.display())))?;
        rows.push(
            headers
                .iter()
                .zip(record.iter())
                // Cells are shown on a terminal: no control character from a file reaches it.
                .map(|(h, v)| (h.to_string(), crate::error::printable(v).into_owned()))
                .collect(),
        );
    }
    Ok(rows)
}

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

fn abs_amount(s: &str) -> rust_decimal::Decimal {
    crate::money::parse_decimal(s, 28)
        .map(|d| d.abs())
        .unwrap_or_default()
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

/// Renders the explanation of `partner` (optionally one customer, or one line) in `cycle_dir`.
pub fn render(
    cycle_dir: &Path,
    partner: &str,
    customer: Option<&str>,
    line: Option<&str>,
    limit: usize,
) -> Result<String, RunError> {
    let colour = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let mut out = String::new();
    if let Some(line_id) = line {
        let outcomes = read(&cycle_dir.join("line_outcomes.csv"))?;
        let Some(o) = outcomes.iter().find(|r| r["line_id"] == line_id) else {
            return Err(RunError::Usage(format!(
                "line {line_id} is not in {}",
                cycle_dir.join("line_outcomes.csv").display()
            )));
        };
        let _ = writeln!(
            out,
            "{}",
            bold(
                &format!(
                    "line {line_id} of {} / {}",
                    o["partner_id"], o["customer_id"]
                ),
                colour
            )
        );
        let _ = writeln!(
            out,
            "{} line (bill_lines.csv row {}), payable {} {}: {} {}",
            o["bill_type"],
            o["source_row"],
            o["payable_amount"],
            o["currency"],
            o["fate"],
            o["reason"]
        );
        let _ = writeln!(
            out,
            "rules: {}; base {}; incentive {}; credited in {}",
            o["rule_ids"], o["base"], o["incentive"], o["credit_cycle"]
        );
        for r in read(&cycle_dir.join("ledger.csv"))?
            .iter()
            .filter(|r| r["line_id"] == line_id)
        {
            let parse = |s: &str| crate::money::parse_decimal(s, 28).ok();
            let exact = parse(&r["base"])
                .zip(parse(&r["rate"]))
                .map(|(b, rate)| b * rate);
            let _ = writeln!(
                out,
                "  {} {} ({}) for {}: {} × {} = {} → rounded {} {} (earned {}, credited {})",
                r["kind"],
                r["lever"],
                r["rule_id"],
                r["partner_id"],
                r["base"],
                r["rate"],
                exact.map(|e| e.to_string()).unwrap_or_default(),
                r["amount"],
                r["currency"],
                r["earned_cycle"],
                r["credit_cycle"]
            );
        }
        for d in read(&cycle_dir.join("voucher_deductions.csv"))?
            .iter()
            .filter(|r| r["line_id"] == line_id)
        {
            let _ = writeln!(
                out,
                "  voucher {} paid {} {} (left {})",
                d["voucher_id"], d["amount"], d["currency"], d["voucher_balance_after"]
            );
        }
        return Ok(out);
    }
    let explanations = read(&cycle_dir.join("explanations.csv"))?;
    let chosen: Vec<&Row> = explanations
        .iter()
        .filter(|r| r["partner_id"] == partner && customer.is_none_or(|c| r["customer_id"] == c))
        .collect();
    if chosen.is_empty() {
        return Err(RunError::Usage(format!(
            "no explanation for partner {partner}{} in {}",
            customer
                .map(|c| format!(", customer {c}"))
                .unwrap_or_default(),
            cycle_dir.display()
        )));
    }
    // The waterfall, summed over the chosen rows per currency, at the currency's scale (the
    // places its amounts are written with).
    let mut by_currency: BTreeMap<&str, BTreeMap<&str, rust_decimal::Decimal>> = BTreeMap::new();
    let mut scales: BTreeMap<&str, u32> = BTreeMap::new();
    for r in &chosen {
        let currency = r["currency"].as_str();
        let sums = by_currency.entry(currency).or_default();
        let scale = scales.entry(currency).or_default();
        for (col, _) in STEPS {
            let value = crate::money::parse_decimal(&r[*col], 28).unwrap_or_default();
            *scale = (*scale).max(value.scale());
            *sums.entry(col).or_default() += value;
        }
    }
    let figures: BTreeMap<&str, Vec<String>> = by_currency
        .iter()
        .map(|(currency, sums)| {
            let scale = scales.get(currency).copied().unwrap_or(2);
            let cells = STEPS
                .iter()
                .map(|(col, _)| crate::money::format_amount(sums[col], scale))
                .collect();
            (*currency, cells)
        })
        .collect();
    let width = figures
        .values()
        .flatten()
        .map(|f| f.len())
        .max()
        .unwrap_or(0)
        .max(16);
    for currency in by_currency.keys() {
        let title = format!(
            "{partner}{} — {currency}",
            customer
                .map(|c| format!(" / {c}"))
                .unwrap_or_else(|| format!(" ({} rows)", chosen.len()))
        );
        let _ = writeln!(out, "{}", bold(&title, colour));
        for ((_, label), figure) in STEPS.iter().zip(&figures[currency]) {
            let _ = writeln!(out, "  {label:<42} {figure:>width$}");
        }
    }
    if customer.is_some() && chosen.len() == 1 {
        let _ = writeln!(out, "\n{}", chosen[0]["explanation"]);
    }
    // The lines behind each step, largest first.
    let outcomes = read(&cycle_dir.join("line_outcomes.csv"))?;
    let mut groups: BTreeMap<(String, String), Vec<&Row>> = BTreeMap::new();
    for o in outcomes
        .iter()
        .filter(|o| o["partner_id"] == partner && customer.is_none_or(|c| o["customer_id"] == c))
    {
        groups
            .entry((o["fate"].clone(), o["reason"].clone()))
            .or_default()
            .push(o);
    }
    // Columns as wide as the widest cell listed, so amounts line up whatever their size.
    let listed: Vec<&Row> = groups.values().flat_map(|l| l.iter().copied()).collect();
    let w = |col: &str, min: usize| {
        listed
            .iter()
            .map(|o| o[col].chars().count())
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
    for ((fate, reason), mut lines) in groups {
        lines.sort_by(|a, b| {
            abs_amount(&b["payable_amount"])
                .cmp(&abs_amount(&a["payable_amount"]))
                .then(a["line_id"].cmp(&b["line_id"]))
        });
        let label = if reason.is_empty() {
            fate.clone()
        } else {
            format!("{fate} ({reason})")
        };
        let _ = writeln!(out, "\n{}: {} line(s)", bold(&label, colour), lines.len());
        for o in lines.iter().take(limit) {
            let _ = writeln!(
                out,
                "  {:<w_line$} {:<w_customer$} payable {:>w_payable$} {}  incentive {:>w_incentive$}  {}",
                o["line_id"],
                o["customer_id"],
                o["payable_amount"],
                o["currency"],
                o["incentive"],
                o["rule_ids"]
            );
        }
        if lines.len() > limit {
            let _ = writeln!(out, "  … {} more (--limit)", lines.len() - limit);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn cells_read_for_the_terminal_have_control_characters_escaped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("explanations.csv");
        std::fs::write(&path, "partner_id,explanation\nSP1,\"a\u{1b}[31mred\rb\"\n").unwrap();
        let rows = super::read(&path).unwrap();
        assert_eq!(rows[0]["explanation"], "a\\u{1b}[31mred\\rb");
        assert_eq!(rows[0]["partner_id"], "SP1");
    }
}
