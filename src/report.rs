//! `incentives report`: a self-contained HTML page of a published cycle for finance and analysts
//! (no network, no script): totals per lever and currency, top partners, and for each partner
//! the waterfall from consumption to incentive as an SVG chart beside its explanations. Every
//! figure is summed from the cycle's `ledger.csv` and `explanations.csv`.

use crate::calendar::Cycle;
use crate::error::RunError;
use crate::money::{format_amount, parse_decimal};
use rust_decimal::Decimal;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use crate::explain::view::{Row, read};

fn dec(s: &str) -> Decimal {
    parse_decimal(s, 28).unwrap_or_default()
}

/// HTML-escapes text.
fn esc(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The waterfall steps: (column, label, kind) where kind is `total`, `down` (subtracted from
/// consumption) or `step` (added to incentive).
const CONSUMPTION: &[(&str, &str)] = &[
    ("non_base", "customer coupons"),
    ("excluded", "excluded"),
    ("deferred_out_base", "base next cycle"),
    ("deferred_out_non_base", "non-base next cycle"),
];
const INCENTIVE: &[(&str, &str)] = &[
    ("earned_now", "earned now"),
    ("carried_in", "carried in"),
    ("clawed_back", "clawed back"),
    ("override", "override"),
    ("tier", "tier"),
    ("cap", "cap"),
];

/// One partner's figures in one currency: the sums of its explanation rows.
fn sums(rows: &[&Row]) -> BTreeMap<&'static str, Decimal> {
    let mut m = BTreeMap::new();
    for col in ["consumption", "eligible_base", "incentive"]
        .into_iter()
        .chain(CONSUMPTION.iter().map(|c| c.0))
        .chain(INCENTIVE.iter().map(|c| c.0))
    {
        m.insert(col, rows.iter().map(|r| dec(&r[col])).sum());
    }
    m
}

/// A waterfall chart: floating bars from a start total through steps to an end total.
fn waterfall(
    title: &str,
    start: (&str, Decimal),
    steps: &[(&str, Decimal)],
    end: (&str, Decimal),
    subtract: bool,
    scale: u32,
) -> String {
    let mut levels = vec![Decimal::ZERO, start.1];
    let mut level = start.1;
    for (_, v) in steps {
        level += if subtract { -*v } else { *v };
        levels.push(level);
    }
    levels.push(end.1);
    let max = levels
        .iter()
        .map(|l| l.abs())
        .max()
        .unwrap_or(Decimal::ONE)
        .max(Decimal::new(1, 2));
    let (width, bar_h, gap, label_w) = (640i64, 22i64, 8i64, 170i64);
    let n = steps.len() as i64 + 2;
    let height = n * (bar_h + gap) + 30;
    let plot = Decimal::from(width - label_w - 110);
    let zero_x = label_w
        + if levels.iter().any(|l| *l < Decimal::ZERO) {
            60
        } else {
            0
        };
    let x = |v: Decimal| -> i64 {
        let px = (v / max * plot).round();
        zero_x + i64::try_from(px.mantissa() / 10i128.pow(px.scale())).unwrap_or(0)
    };
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg width="{width}" height="{height}" role="img" aria-label="{}"><title>{}</title>"#,
        esc(title),
        esc(title)
    );
    let mut bar = |i: i64,
                   label: &str,
                   from: Decimal,
                   to: Decimal,
                   class: &str,
                   figure: Decimal| {
        let (a, b) = (x(from.min(to)), x(from.max(to)));
        let y = 10 + i * (bar_h + gap);
        let _ = write!(
            svg,
            r#"<text x="0" y="{}" class="label">{}</text><rect x="{a}" y="{y}" width="{}" height="{bar_h}" class="{class}"/><text x="{}" y="{}" class="figure" data-step="{}">{}</text>"#,
            y + 15,
            esc(label),
            (b - a).max(1),
            b + 6,
            y + 15,
            esc(label),
            format_amount(figure, scale)
        );
    };
    bar(0, start.0, Decimal::ZERO, start.1, "total", start.1);
    let mut level = start.1;
    for (i, (label, v)) in steps.iter().enumerate() {
        let next = level + if subtract { -*v } else { *v };
        let class = if next < level { "down" } else { "up" };
        bar(i as i64 + 1, label, level, next, class, *v);
        level = next;
    }
    bar(n - 1, end.0, Decimal::ZERO, end.1, "total", end.1);
    svg.push_str("</svg>");
    svg
}

pub fn write_report(
    cycle_dir: &Path,
    cycle: Cycle,
    partner: Option<&str>,
    output: &Path,
) -> Result<(), RunError> {
    let explanations = read(&cycle_dir.join("explanations.csv"))?;
    let ledger = read(&cycle_dir.join("ledger.csv"))?;
    let mut html = String::new();
    let _ = write!(
        html,
        r#"<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>Incentives {cycle}</title><style>
body{{font-family:system-ui,sans-serif;margin:2em;color:#222}}table{{border-collapse:collapse;margin:1em 0}}
td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}th{{background:#f3f3f3}}td.l,th.l{{text-align:left}}
section{{border-top:2px solid #ddd;margin-top:2em;padding-top:1em}}.pair{{display:flex;gap:2em;flex-wrap:wrap}}
.label{{font-size:12px}}.figure{{font-size:12px;font-family:monospace}}rect.total{{fill:#4a6fa5}}rect.up{{fill:#5a9e5a}}rect.down{{fill:#c0504d}}
p.explanation{{max-width:60em;font-size:14px;line-height:1.4}}</style></head><body><h1>Partner incentives, cycle {cycle}</h1>"#
    );
    // Totals per lever and currency credited to the cycle (the journal's own rows).
    let mut totals: BTreeMap<(String, String), Decimal> = BTreeMap::new();
    for r in ledger
        .iter()
        .filter(|r| r["credit_cycle"] == cycle.to_string())
    {
        *totals
            .entry((r["lever"].clone(), r["currency"].clone()))
            .or_default() += dec(&r["amount"]);
    }
    html.push_str("<h2>Ledger totals credited to this cycle, per lever</h2><table><tr><th class=\"l\">lever</th><th>currency</th><th>amount</th></tr>");
    for ((lever, currency), amount) in &totals {
        let _ = write!(
            html,
            "<tr><td class=\"l\">{}</td><td>{}</td><td>{}</td></tr>",
            esc(lever),
            esc(currency),
            format_amount(*amount, 2)
        );
    }
    html.push_str("</table>");
    // Partners by incentive credited.
    let mut by_partner: BTreeMap<(String, String), Vec<&Row>> = BTreeMap::new();
    for r in &explanations {
        if partner.is_none_or(|p| r["partner_id"] == p) {
            by_partner
                .entry((r["partner_id"].clone(), r["currency"].clone()))
                .or_default()
                .push(r);
        }
    }
    if by_partner.is_empty() {
        return Err(RunError::Usage(format!(
            "no explanation rows{} in {}",
            partner
                .map(|p| format!(" for partner {p}"))
                .unwrap_or_default(),
            cycle_dir.display()
        )));
    }
    let mut ranked: Vec<(&(String, String), Decimal)> = by_partner
        .iter()
        .map(|(k, rows)| (k, sums(rows)["incentive"]))
        .collect();
    ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    html.push_str("<h2>Top partners</h2><table><tr><th class=\"l\">partner</th><th>currency</th><th>incentive credited</th></tr>");
    for ((p, c), amount) in ranked.iter().take(10) {
        let _ = write!(
            html,
            "<tr><td class=\"l\"><a href=\"#{p}-{c}\">{}</a></td><td>{}</td><td>{}</td></tr>",
            esc(p),
            esc(c),
            format_amount(*amount, 2)
        );
    }
    html.push_str("</table>");
    for ((p, c), rows) in &by_partner {
        let s = sums(rows);
        let consumption_steps: Vec<(&str, Decimal)> = CONSUMPTION
            .iter()
            .map(|(col, label)| (*label, s[col]))
            .collect();
        let incentive_steps: Vec<(&str, Decimal)> = INCENTIVE
            .iter()
            .map(|(col, label)| (*label, s[col]))
            .collect();
        let _ = write!(
            html,
            r#"<section id="{}-{}" class="partner" data-partner="{}" data-currency="{}"><h2>{} — {}</h2><div class="pair">"#,
            esc(p),
            esc(c),
            esc(p),
            esc(c),
            esc(p),
            esc(c)
        );
        html.push_str(&waterfall(
            &format!("{p} {c}: from consumption to the base earning this cycle"),
            ("consumption", s["consumption"]),
            &consumption_steps,
            ("eligible base", s["eligible_base"]),
            true,
            2,
        ));
        html.push_str(&waterfall(
            &format!("{p} {c}: incentive credited this cycle"),
            ("start", Decimal::ZERO),
            &incentive_steps,
            ("incentive", s["incentive"]),
            false,
            2,
        ));
        html.push_str("</div>");
        for r in rows.iter().filter(|r| !r["explanation"].is_empty()) {
            let _ = write!(
                html,
                "<p class=\"explanation\"><b>{}</b>: {}</p>",
                esc(&r["customer_id"]),
                esc(&r["explanation"])
            );
        }
        html.push_str("</section>");
    }
    html.push_str("</body></html>\n");
    write_new(output, &html)
}

/// How every page this command writes begins: what tells a report of ours from another file.
const REPORT_START: &str =
    "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Incentives ";

/// Writes the page to `output` through a new file beside it renamed into place: a symbolic link
/// planted at `output` is refused (never followed), and so is a file or folder there that is not
/// a report this command wrote; an earlier report is replaced.
fn write_new(output: &Path, html: &str) -> Result<(), RunError> {
    use std::io::{Read as _, Write as _};
    let shown = output.display();
    match std::fs::symlink_metadata(output) {
        Ok(m) if m.file_type().is_symlink() => {
            return Err(RunError::Usage(format!(
                "{shown}: is a symbolic link; the report is not written through it: remove the link (rm {shown}) or pass another --output"
            )));
        }
        Ok(m) if m.is_dir() => {
            return Err(RunError::Usage(format!(
                "{shown}: is a folder, where the report is a file: pass --output with a file name"
            )));
        }
        Ok(_) => {
            let mut head = vec![0u8; REPORT_START.len()];
            let ours = std::fs::File::open(output)
                .and_then(|mut f| f.read_exact(&mut head))
                .is_ok()
                && head == REPORT_START.as_bytes();
            if !ours {
                return Err(RunError::Usage(format!(
                    "{shown}: exists and is not a report incentives wrote; it is left as it is: move it away or pass another --output"
                )));
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(RunError::io(shown, e)),
    }
    let parent = match output.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mut file = tempfile::Builder::new()
        .prefix(".report-")
        .tempfile_in(parent)
        .map_err(|e| RunError::io(parent.display(), e))?;
    file.write_all(html.as_bytes())
        .and_then(|()| {
            use std::os::unix::fs::PermissionsExt as _;
            file.as_file()
                .set_permissions(std::fs::Permissions::from_mode(0o644))
        })
        .map_err(|e| RunError::io(output.display(), e))?;
    file.persist(output)
        .map_err(|e| RunError::io(output.display(), e.error))?;
    Ok(())
}
