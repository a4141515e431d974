//! `incentives report`: self-contained HTML pages of a published cycle for finance (no network,
//! no script), read through polars (`analyst::cycle`), CSV or Parquet alike, in English or
//! Chinese (`--lang zh`).
//!
//! The cycle's page is bounded whatever the month's size: the totals per currency (incentive
//! credited to the cycle, by lever, under the one definition of `analyst::cycle::credited_to`;
//! credited next cycle; subsidies, withdrawals and expiry apart) and the top 50 partners per
//! currency, each linking to its own page. A partner's page (`--partner P`, also written for
//! every partner the cycle's page lists) holds P's figures and nothing of any other partner's,
//! except, on a distributor's page, the resellers whose lines earned it an override.

use crate::analyst::cycle::{PublishedCycle, credited_to, decimals, is, texts};
use crate::analyst::grouped;
use crate::error::RunError;
use crate::explain::Lang;
use polars::prelude::*;
use rust_decimal::Decimal;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Partners listed per currency on the cycle's page.
pub const TOP: usize = 50;
/// Customers whose paragraphs a partner's page shows (largest incentive first); the rest are
/// counted and left to `explain`.
const CUSTOMERS_SHOWN: usize = 200;

/// HTML-escapes text.
fn esc(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Width in pixels of a label at 12px: wide characters (CJK) count double.
fn text_width(text: &str) -> i64 {
    text.chars()
        .map(|c| if (c as u32) >= 0x2E80 { 13 } else { 7 })
        .sum()
}

/// The words of a page, in English or Chinese.
struct Words {
    lang: Lang,
}

impl Words {
    fn t(&self, en: &'static str) -> &'static str {
        if self.lang == Lang::En {
            return en;
        }
        match en {
            "Partner incentives, cycle" => "合作伙伴激励，账期",
            "Incentive credited to this cycle" => "本账期计入的激励",
            "currency" => "币种",
            "incentive credited" => "计入激励",
            "lever" => "激励类型",
            "credited next cycle" => "计入下一账期",
            "Balances moved apart from the incentive credited" => "激励之外的余额变动",
            "kind" => "类型",
            "rows" => "笔数",
            "amount" => "金额",
            "subsidy" => "项目补贴",
            "withdrawal" => "提取激励",
            "expiry" => "激励过期",
            "Top partners by incentive credited" => "计入激励最多的合作伙伴",
            "partner" => "合作伙伴",
            "name" => "名称",
            "consumption" => "消费",
            "customer coupons" => "客户代金券支付",
            "excluded" => "不计激励",
            "base next cycle" => "下一账期基数",
            "non-base next cycle" => "下一账期基数外",
            "eligible base" => "本账期激励基数",
            "start" => "起点",
            "earned now" => "本期产生",
            "carried in" => "上期结转",
            "clawed back" => "退订扣回",
            "override" => "总经销商激励",
            "tier" => "阶梯激励",
            "cap" => "封顶",
            "incentive" => "激励",
            "from consumption to the base earning this cycle" => "从消费到本账期激励基数",
            "incentive credited this cycle" => "本账期计入的激励",
            "Resellers whose lines earned this distributor an override" => {
                "为本总经销商带来激励的云经销商"
            }
            "reseller" => "云经销商",
            "override earned" => "总经销商激励",
            "Customers" => "客户",
            "more customers: incentives explain --partner" => {
                "位客户未列出：incentives explain --partner"
            }
            "back to the cycle" => "返回账期总览",
            "partners in all" => "个合作伙伴",
            "page" => "页面",
            other => other,
        }
    }

    /// A colon after a heading or a name: `: ` in English, `：` in Chinese.
    fn colon(&self) -> &'static str {
        match self.lang {
            Lang::En => ": ",
            Lang::Zh => "：",
        }
    }

    /// `text` in brackets: ` (text)` in English, `（text）` in Chinese.
    fn bracket(&self, text: &str) -> String {
        match self.lang {
            Lang::En => format!(" ({text})"),
            Lang::Zh => format!("（{text}）"),
        }
    }

    fn html_lang(&self) -> &'static str {
        match self.lang {
            Lang::En => "en",
            Lang::Zh => "zh-CN",
        }
    }
}

/// The waterfall steps from consumption: (column, label).
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
        level = level.saturating_add(if subtract { -*v } else { *v });
        levels.push(level);
    }
    levels.push(end.1);
    let max = levels
        .iter()
        .map(|l| l.abs())
        .max()
        .unwrap_or(Decimal::ONE)
        .max(Decimal::new(1, 2));
    let label_w = steps
        .iter()
        .map(|s| s.0)
        .chain([start.0, end.0])
        .map(text_width)
        .max()
        .unwrap_or(0)
        + 12;
    let figure_w = levels
        .iter()
        .chain(steps.iter().map(|s| &s.1))
        .map(|v| text_width(&crate::analyst::grouped(*v, scale)))
        .max()
        .unwrap_or(0)
        + 12;
    let (bar_h, gap) = (22i64, 8i64);
    // Room left of zero for the lowest level below it, so no bar runs into the labels.
    let lowest = levels.iter().copied().min().unwrap_or(Decimal::ZERO);
    let below = {
        use rust_decimal::prelude::ToPrimitive as _;
        (-lowest.min(Decimal::ZERO) / max * Decimal::from(400))
            .ceil()
            .to_i64()
            .unwrap_or(400)
    };
    let width = label_w + below + 400 + figure_w;
    let n = steps.len() as i64 + 2;
    let height = n * (bar_h + gap) + 30;
    let plot = Decimal::from(400);
    let zero_x = label_w + below;
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
            crate::analyst::grouped(figure, scale)
        );
    };
    bar(0, start.0, Decimal::ZERO, start.1, "total", start.1);
    let mut level = start.1;
    for (i, (label, v)) in steps.iter().enumerate() {
        let next = level.saturating_add(if subtract { -*v } else { *v });
        let class = if next < level { "down" } else { "up" };
        bar(i as i64 + 1, label, level, next, class, *v);
        level = next;
    }
    bar(n - 1, end.0, Decimal::ZERO, end.1, "total", end.1);
    svg.push_str("</svg>");
    svg
}

/// Partner names from `INPUT/partners.csv` (the bundle the cycle ran on), when given.
pub fn partner_names(input: Option<&Path>) -> BTreeMap<String, String> {
    let mut names = BTreeMap::new();
    let Some(dir) = input else { return names };
    let Ok(mut reader) = csv::Reader::from_path(dir.join("partners.csv")) else {
        return names;
    };
    let Ok(headers) = reader.headers().cloned() else {
        return names;
    };
    let at = |name: &str| {
        headers
            .iter()
            .position(|h| h.trim_start_matches('\u{feff}') == name)
    };
    let (Some(id), Some(name)) = (at("partner_id"), at("name")) else {
        return names;
    };
    for record in reader.records().flatten() {
        if let (Some(i), Some(n)) = (record.get(id), record.get(name)) {
            names
                .entry(i.to_string())
                .or_insert_with(|| crate::error::printable(n).into_owned());
        }
    }
    names
}

/// Where `report --partner P` writes P's page by default, beside the cycle's page.
pub fn partner_page_name(cycle: &PublishedCycle, partner: &str) -> String {
    format!("{}-report-{partner}.html", cycle.cycle)
}

fn page_start(html: &mut String, words: &Words, title: &str) {
    let _ = write!(
        html,
        r#"<!DOCTYPE html><html lang="{}"><head><meta charset="utf-8"><meta name="generator" content="incentives report"><title>{}</title><style>
body{{font-family:system-ui,sans-serif;margin:2em;color:#222}}table{{border-collapse:collapse;margin:1em 0}}
td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right;white-space:nowrap}}th{{background:#f3f3f3}}td.l,th.l{{text-align:left}}
section{{border-top:2px solid #ddd;margin-top:2em;padding-top:1em}}.pair{{display:flex;gap:2em;flex-wrap:wrap}}svg{{overflow:visible}}
.label{{font-size:12px}}.figure{{font-size:12px;font-family:monospace}}rect.total{{fill:#4a6fa5}}rect.up{{fill:#5a9e5a}}rect.down{{fill:#c0504d}}
p.explanation{{max-width:60em;font-size:14px;line-height:1.5}}</style></head><body><h1>{}</h1>"#,
        words.html_lang(),
        esc(title),
        esc(title)
    );
}

/// A grouped frame's rows: the key cells and the amounts.
type Keyed = Vec<(Vec<String>, Vec<Decimal>)>;

/// Sums per (currency, key columns...) of `amounts`, from a grouped frame.
fn keyed_sums(df: &DataFrame, keys: &[&str], amounts: &[&str]) -> Result<Keyed, RunError> {
    let key_cols: Vec<Vec<String>> = keys
        .iter()
        .map(|k| texts(df, k))
        .collect::<Result<_, _>>()?;
    let amount_cols: Vec<Vec<Decimal>> = amounts
        .iter()
        .map(|a| decimals(df, a))
        .collect::<Result<_, _>>()?;
    Ok((0..df.height())
        .map(|i| {
            (
                key_cols.iter().map(|c| c[i].clone()).collect(),
                amount_cols.iter().map(|c| c[i]).collect(),
            )
        })
        .collect())
}

/// Writes the cycle's page (and the pages of the partners it lists) or, with `partner`, that
/// partner's page only. Returns the files written.
pub fn write_report(
    cycle: &PublishedCycle,
    partner: Option<&str>,
    lang: Lang,
    input: Option<&Path>,
    output: &Path,
) -> Result<Vec<PathBuf>, RunError> {
    let words = Words { lang };
    crate::analyst::cycle::folder_of(output, "--output")?;
    let names = partner_names(input);
    if let Some(p) = partner {
        let html = partner_page(cycle, p, &words, &names, None, None)?;
        write_new(output, &html)?;
        return Ok(vec![output.to_path_buf()]);
    }
    let (html, listed) = cycle_page(cycle, &words, &names)?;
    write_new(output, &html)?;
    let mut written = vec![output.to_path_buf()];
    let folder = match output.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let back = output.file_name().map(|f| f.to_string_lossy().into_owned());
    let read_once = Listed {
        explanations: listed_explanations(cycle, &listed)?,
        line_partners: listed_override_lines(cycle, &listed)?,
    };
    for p in listed {
        // A partner's page is named by its id: an id the engine would not have written (a
        // table edited by hand) names no file.
        if !crate::load::is_valid_id(&p) {
            return Err(RunError::Usage(format!(
                "{}: partner id {:?} is not an id incentives writes: no page is named after it; re-run the cycle to publish it again",
                cycle.path("explanations").display(),
                crate::error::printable(&p)
            )));
        }
        let page = folder.join(partner_page_name(cycle, &p));
        let html = partner_page(cycle, &p, &words, &names, back.as_deref(), Some(&read_once))?;
        write_new(&page, &html)?;
        written.push(page);
    }
    Ok(written)
}

/// The cycle's page and the partners it links to.
fn cycle_page(
    cycle: &PublishedCycle,
    words: &Words,
    names: &BTreeMap<String, String>,
) -> Result<(String, Vec<String>), RunError> {
    let w = |s| words.t(s);
    let mut html = String::new();
    page_start(
        &mut html,
        words,
        &format!("{} {}", w("Partner incentives, cycle"), cycle.cycle),
    );
    credited_section(&mut html, cycle, words)?;
    apart_section(&mut html, cycle, words)?;
    let listed = top_partners_section(&mut html, cycle, words, names)?;
    html.push_str("</body></html>\n");
    Ok((html, listed))
}

/// Credited to this cycle, per currency and lever, and credited next cycle.
fn credited_section(
    html: &mut String,
    cycle: &PublishedCycle,
    words: &Words,
) -> Result<(), RunError> {
    let w = |s| words.t(s);
    // Credited to this cycle, per currency (the explanations' incentive column: earned now,
    // carried in, clawed back, tier, cap, override) and per lever (the statements' rows under
    // the same definition); credited next cycle.
    let totals = cycle.collect(
        cycle
            .scan("explanations")?
            .group_by([col("currency")])
            .agg([col("incentive").sum(), col("deferred_out_incentive").sum()])
            .sort(["currency"], Default::default()),
    )?;
    let totals = keyed_sums(
        &totals,
        &["currency"],
        &["incentive", "deferred_out_incentive"],
    )?;
    let statements = match cycle.scan_statements()? {
        Some(s) => s,
        None => cycle.scan("ledger")?,
    };
    let by_lever = cycle.collect(
        statements
            .filter(credited_to(cycle.cycle))
            .group_by([col("currency"), col("lever")])
            .agg([col("amount").sum()])
            .sort(["currency", "lever"], Default::default()),
    )?;
    let by_lever = keyed_sums(&by_lever, &["currency", "lever"], &["amount"])?;
    let _ = write!(
        *html,
        "<h2>{}</h2><table><tr><th class=\"l\">{}</th><th class=\"l\">{}</th><th>{}</th><th>{}</th></tr>",
        w("Incentive credited to this cycle"),
        w("currency"),
        w("lever"),
        w("incentive credited"),
        w("credited next cycle")
    );
    for (key, sums) in &totals {
        let c = &key[0];
        let scale = cycle.scale(c);
        let _ = write!(
            *html,
            "<tr class=\"total\" data-currency=\"{}\"><td class=\"l\"><b>{}</b></td><td class=\"l\"></td><td data-credited=\"{}\"><b>{}</b></td><td>{}</td></tr>",
            esc(c),
            esc(c),
            esc(c),
            grouped(sums[0], scale),
            grouped(sums[1], scale)
        );
        for (lk, amount) in by_lever.iter().filter(|(k, _)| &k[0] == c) {
            let _ = write!(
                *html,
                "<tr><td class=\"l\">{}</td><td class=\"l\">{}</td><td data-lever=\"{}\">{}</td><td></td></tr>",
                esc(c),
                esc(&lk[1]),
                esc(&lk[1]),
                grouped(amount[0], scale)
            );
        }
    }
    html.push_str("</table>");
    Ok(())
}

/// Subsidies, withdrawals and expiry: they move balances, so they are shown apart.
fn apart_section(html: &mut String, cycle: &PublishedCycle, words: &Words) -> Result<(), RunError> {
    let w = |s| words.t(s);
    // Subsidies, withdrawals and expiry move balances: shown apart.
    let apart = cycle.collect(
        cycle
            .scan("ledger")?
            .filter(crate::analyst::cycle::is_one_of(
                "kind",
                &["subsidy", "withdrawal", "expiry"].map(String::from),
            ))
            .group_by([col("currency"), col("kind")])
            .agg([col("amount").sum(), col("amount").count().alias("rows")])
            .sort(["currency", "kind"], Default::default()),
    )?;
    if apart.height() > 0 {
        let rows = crate::analyst::cycle::counts(&apart, "rows")?;
        let apart = keyed_sums(&apart, &["currency", "kind"], &["amount"])?;
        let _ = write!(
            *html,
            "<h2>{}</h2><table><tr><th class=\"l\">{}</th><th class=\"l\">{}</th><th>{}</th><th>{}</th></tr>",
            w("Balances moved apart from the incentive credited"),
            w("currency"),
            w("kind"),
            w("rows"),
            w("amount")
        );
        for ((key, amount), n) in apart.iter().zip(rows) {
            let kind: &'static str = match key[1].as_str() {
                "subsidy" => "subsidy",
                "withdrawal" => "withdrawal",
                _ => "expiry",
            };
            let _ = write!(
                *html,
                "<tr><td class=\"l\">{}</td><td class=\"l\" data-kind=\"{}\">{}</td><td>{n}</td><td>{}</td></tr>",
                esc(&key[0]),
                esc(&key[1]),
                w(kind),
                grouped(amount[0], cycle.scale(&key[0]))
            );
        }
        html.push_str("</table>");
    }
    Ok(())
}

/// The top partners per currency by incentive credited, each linking to its page; returns the
/// partners listed, in id order.
fn top_partners_section(
    html: &mut String,
    cycle: &PublishedCycle,
    words: &Words,
    names: &BTreeMap<String, String>,
) -> Result<Vec<String>, RunError> {
    let w = |s| words.t(s);
    // The top partners per currency by incentive credited.
    let ranked = cycle.collect(
        cycle
            .scan("explanations")?
            .group_by([col("currency"), col("partner_id")])
            .agg([col("incentive").sum(), col("consumption").sum()]),
    )?;
    let ranked = keyed_sums(
        &ranked,
        &["currency", "partner_id"],
        &["incentive", "consumption"],
    )?;
    let mut per_currency: BTreeMap<String, Vec<(String, Decimal, Decimal)>> = BTreeMap::new();
    for (key, sums) in ranked {
        per_currency
            .entry(key[0].clone())
            .or_default()
            .push((key[1].clone(), sums[0], sums[1]));
    }
    let mut listed: Vec<String> = Vec::new();
    let _ = write!(
        *html,
        "<h2>{}</h2>",
        w("Top partners by incentive credited")
    );
    for (c, mut partners) in per_currency {
        partners.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        let scale = cycle.scale(&c);
        let _ = write!(
            *html,
            "<h3>{}{}</h3><table class=\"top\" data-currency=\"{}\"><tr><th>#</th><th class=\"l\">{}</th><th class=\"l\">{}</th><th>{}</th><th>{}</th></tr>",
            esc(&c),
            words.bracket(&format!("{} {}", partners.len(), w("partners in all"))),
            esc(&c),
            w("partner"),
            w("name"),
            w("consumption"),
            w("incentive credited")
        );
        for (n, (p, incentive, consumption)) in partners.iter().take(TOP).enumerate() {
            let _ = write!(
                *html,
                "<tr><td>{}</td><td class=\"l\"><a href=\"{}\">{}</a></td><td class=\"l\">{}</td><td>{}</td><td>{}</td></tr>",
                n + 1,
                esc(&partner_page_name(cycle, p)),
                esc(p),
                esc(names.get(p).map_or("", String::as_str)),
                grouped(*consumption, scale),
                grouped(*incentive, scale)
            );
            if !listed.contains(p) {
                listed.push(p.clone());
            }
        }
        html.push_str("</table>");
    }
    listed.sort();
    Ok(listed)
}

/// One partner's page: its waterfalls per currency, its customers' explanations and, for a
/// distributor, the resellers whose lines earned it an override. Nothing of another partner.
/// The explanation columns a partner page shows: the first three are text, the rest amounts.
fn page_columns() -> Vec<&'static str> {
    let mut columns = vec![
        "customer_id",
        "currency",
        "explanation",
        "consumption",
        "eligible_base",
        "incentive",
    ];
    columns.extend(CONSUMPTION.iter().map(|c| c.0));
    columns.extend(INCENTIVE.iter().map(|c| c.0));
    columns
}

/// What the pages of the partners a cycle page lists read from the large tables, read once
/// for all of them.
struct Listed {
    /// Their explanation rows.
    explanations: DataFrame,
    /// `line_id`, `partner_id` of every line that earned one of them an override.
    line_partners: DataFrame,
}

/// The explanation rows of the partners a cycle page lists, read in one scan (a page each
/// would scan the whole table once per partner).
fn listed_explanations(cycle: &PublishedCycle, listed: &[String]) -> Result<DataFrame, RunError> {
    let mut columns = page_columns();
    columns.push("partner_id");
    let ids = Series::new("ids".into(), listed.to_vec());
    cycle.collect(
        cycle
            .scan("explanations")?
            .filter(col("partner_id").is_in(lit(ids).implode(false), false))
            .select(columns.iter().map(|c| col(*c)).collect::<Vec<_>>()),
    )
}

fn partner_page(
    cycle: &PublishedCycle,
    partner: &str,
    words: &Words,
    names: &BTreeMap<String, String>,
    back: Option<&str>,
    listed: Option<&Listed>,
) -> Result<String, RunError> {
    let w = |s| words.t(s);
    let columns = page_columns();
    let source = match listed {
        Some(l) => l.explanations.clone().lazy(),
        None => cycle.scan("explanations")?,
    };
    let rows = cycle.collect(
        source
            .filter(is("partner_id", partner))
            .select(columns.iter().map(|c| col(*c)).collect::<Vec<_>>()),
    )?;
    if rows.height() == 0 {
        return Err(RunError::Usage(format!(
            "no explanation rows for partner {partner} in {}",
            cycle.dir.display()
        )));
    }
    let currency = texts(&rows, "currency")?;
    let customer = texts(&rows, "customer_id")?;
    let paragraph = texts(&rows, "explanation")?;
    let figures: BTreeMap<&str, Vec<Decimal>> = columns[3..]
        .iter()
        .map(|c| decimals(&rows, c).map(|v| (*c, v)))
        .collect::<Result<_, _>>()?;
    let mut sums: BTreeMap<&str, BTreeMap<&str, Decimal>> = BTreeMap::new();
    for i in 0..rows.height() {
        let s = sums.entry(currency[i].as_str()).or_default();
        for (c, v) in &figures {
            crate::analyst::cycle::add(s.entry(c).or_default(), v[i])?;
        }
    }
    let name = names.get(partner).map(String::as_str).unwrap_or("");
    let title = if name.is_empty() {
        format!(
            "{} {} — {partner}",
            w("Partner incentives, cycle"),
            cycle.cycle
        )
    } else {
        format!(
            "{} {} — {partner} {name}",
            w("Partner incentives, cycle"),
            cycle.cycle
        )
    };
    let mut html = String::new();
    page_start(&mut html, words, &title);
    if let Some(back) = back {
        let _ = write!(
            html,
            "<p><a href=\"{}\">{}</a></p>",
            esc(back),
            w("back to the cycle")
        );
    }
    for (c, s) in &sums {
        let scale = cycle.scale(c);
        let consumption_steps: Vec<(&str, Decimal)> = CONSUMPTION
            .iter()
            .map(|(col, label)| (w(label), s[col]))
            .collect();
        let incentive_steps: Vec<(&str, Decimal)> = INCENTIVE
            .iter()
            .map(|(col, label)| (w(label), s[col]))
            .collect();
        let _ = write!(
            html,
            r#"<section id="{}-{}" class="partner" data-partner="{}" data-currency="{}"><h2>{} — {}</h2><div class="pair">"#,
            esc(partner),
            esc(c),
            esc(partner),
            esc(c),
            esc(partner),
            esc(c)
        );
        html.push_str(&waterfall(
            &format!(
                "{partner} {c}{}{}",
                words.colon(),
                w("from consumption to the base earning this cycle")
            ),
            (w("consumption"), s["consumption"]),
            &consumption_steps,
            (w("eligible base"), s["eligible_base"]),
            true,
            scale,
        ));
        html.push_str(&waterfall(
            &format!(
                "{partner} {c}{}{}",
                words.colon(),
                w("incentive credited this cycle")
            ),
            (w("start"), Decimal::ZERO),
            &incentive_steps,
            (w("incentive"), s["incentive"]),
            false,
            scale,
        ));
        html.push_str("</div></section>");
    }
    html.push_str(&override_resellers(
        cycle,
        partner,
        words,
        names,
        listed.map(|l| &l.line_partners),
    )?);
    // The customers' paragraphs, largest incentive first.
    let incentive = &figures["incentive"];
    let mut order: Vec<usize> = (0..rows.height())
        .filter(|i| !paragraph[*i].is_empty())
        .collect();
    order.sort_by(|a, b| {
        incentive[*b]
            .abs()
            .cmp(&incentive[*a].abs())
            .then(customer[*a].cmp(&customer[*b]))
            .then(currency[*a].cmp(&currency[*b]))
    });
    let _ = write!(html, "<h2>{}</h2>", w("Customers"));
    for i in order.iter().take(CUSTOMERS_SHOWN) {
        let _ = write!(
            html,
            "<p class=\"explanation\"><b>{}{}</b>{}{}</p>",
            esc(&customer[*i]),
            words.bracket(&esc(&currency[*i])),
            words.colon(),
            esc(&paragraph[*i])
        );
    }
    if order.len() > CUSTOMERS_SHOWN {
        let _ = write!(
            html,
            "<p>{} {} {}</p>",
            order.len() - CUSTOMERS_SHOWN,
            w("more customers: incentives explain --partner"),
            esc(partner)
        );
    }
    html.push_str("</body></html>\n");
    Ok(html)
}

/// A partner's override rows earned this cycle, from its own statement (its rows earned this
/// cycle are its journal rows; the statement adds rows of earlier runs credited now).
fn overrides_earned(cycle: &PublishedCycle, partner: &str) -> Result<Option<DataFrame>, RunError> {
    let statement = format!("ledgers/{partner}");
    if !cycle.path(&statement).is_file() {
        return Ok(None);
    }
    cycle
        .collect(
            cycle
                .scan(&statement)?
                .filter(is("kind", "override").and(is("earned_cycle", &cycle.cycle.to_string())))
                .select([col("line_id"), col("amount"), col("currency")]),
        )
        .map(Some)
}

/// The own partner of every line that earned a listed partner an override this cycle, read in
/// one scan of `line_outcomes` (a distributor's page each would read all of it once per page).
fn listed_override_lines(cycle: &PublishedCycle, listed: &[String]) -> Result<DataFrame, RunError> {
    let mut ids: Vec<String> = Vec::new();
    for p in listed {
        if let Some(rows) = overrides_earned(cycle, p)? {
            ids.extend(texts(&rows, "line_id")?);
        }
    }
    ids.sort();
    ids.dedup();
    let ids = Series::new("ids".into(), ids);
    cycle.collect(
        cycle
            .scan("line_outcomes")?
            .filter(col("line_id").is_in(lit(ids).implode(false), false))
            .select([col("line_id"), col("partner_id")]),
    )
}

/// For a distributor: the resellers whose lines earned it an override this cycle, with the
/// override each earned it (the lines' own partner, read from `line_outcomes`, or from
/// `line_partners` when the lines' partners were read for every listed page at once).
fn override_resellers(
    cycle: &PublishedCycle,
    partner: &str,
    words: &Words,
    names: &BTreeMap<String, String>,
    line_partners: Option<&DataFrame>,
) -> Result<String, RunError> {
    let w = |s| words.t(s);
    // The distributor's override rows first (few, often none); the lines' own partners only
    // for the lines they name.
    let Some(overrides) = overrides_earned(cycle, partner)? else {
        return Ok(String::new());
    };
    if overrides.height() == 0 {
        return Ok(String::new());
    }
    let mut ids = texts(&overrides, "line_id")?;
    ids.sort();
    ids.dedup();
    let ids = Series::new("ids".into(), ids);
    let lines = match line_partners {
        Some(known) => known.clone().lazy(),
        None => cycle
            .scan("line_outcomes")?
            .filter(col("line_id").is_in(lit(ids).implode(false), false))
            .select([col("line_id"), col("partner_id")]),
    };
    let joined = cycle.collect(
        overrides
            .lazy()
            .join(
                lines,
                [col("line_id")],
                [col("line_id")],
                JoinArgs::new(JoinType::Inner),
            )
            .group_by([col("currency"), col("partner_id")])
            .agg([col("amount").sum()])
            .sort(["currency", "partner_id"], Default::default()),
    )?;
    if joined.height() == 0 {
        return Ok(String::new());
    }
    let mut html = format!(
        "<h2>{}</h2><table class=\"resellers\"><tr><th class=\"l\">{}</th><th class=\"l\">{}</th><th class=\"l\">{}</th><th>{}</th></tr>",
        w("Resellers whose lines earned this distributor an override"),
        w("reseller"),
        w("name"),
        w("currency"),
        w("override earned")
    );
    for (key, amount) in keyed_sums(&joined, &["currency", "partner_id"], &["amount"])? {
        let _ = write!(
            html,
            "<tr><td class=\"l\">{}</td><td class=\"l\">{}</td><td class=\"l\">{}</td><td>{}</td></tr>",
            esc(&key[1]),
            esc(names.get(&key[1]).map_or("", String::as_str)),
            esc(&key[0]),
            grouped(amount[0], cycle.scale(&key[0]))
        );
    }
    html.push_str("</table>");
    Ok(html)
}

/// How every page this command writes begins: what tells a report of ours from another file
/// (the page's language follows; pages of earlier releases began with `lang="en"><head>`).
const REPORT_START: &str = "<!DOCTYPE html><html lang=\"";
/// What follows the language on every page this command writes (and wrote).
const REPORT_MARK: &str = "<head><meta charset=\"utf-8\">";

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
            let mut head = vec![0u8; 128];
            let read = std::fs::File::open(output)
                .and_then(|f| f.take(128).read(&mut head))
                .unwrap_or(0);
            let head = String::from_utf8_lossy(&head[..read]);
            let ours = head.starts_with(REPORT_START) && head.contains(REPORT_MARK);
            if !ours {
                return Err(RunError::Usage(format!(
                    "{shown}: exists and is not a report incentives wrote; it is left as it is: move it away or pass another --output"
                )));
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(RunError::io(shown, e)),
    }
    let parent = crate::analyst::cycle::folder_of(output, "--output")?;
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Every `x="…"` of an SVG, as numbers.
    fn xs(svg: &str) -> Vec<i64> {
        svg.split(" x=\"")
            .skip(1)
            .map(|rest| rest.split('"').next().unwrap().parse().unwrap())
            .collect()
    }

    #[test]
    fn a_waterfall_below_zero_runs_into_no_label() {
        // consumption 100.00 − excluded 300.00 = −200.00: the lowest level is the whole scale
        // (max |level| = 200.00), so 400 px are kept left of zero; before, 60 px were, and the
        // bar began at label width + 60 − 400 < 0 (clipped, over the labels).
        let d = |s: &str| s.parse::<Decimal>().unwrap();
        let svg = waterfall(
            "t",
            ("consumption", d("100.00")),
            &[("excluded", d("300.00"))],
            ("eligible base", d("-200.00")),
            true,
            2,
        );
        let label_w = text_width("eligible base") + 12;
        let rects: Vec<i64> = svg
            .split("<rect")
            .skip(1)
            .flat_map(|r| xs(r).into_iter().take(1))
            .collect();
        assert_eq!(rects.len(), 3, "{svg}");
        assert!(rects.iter().all(|x| *x >= label_w), "{rects:?} {svg}");
        assert!(xs(&svg).iter().all(|x| *x >= 0), "{svg}");
        // The −200.00 bar spans the 400 px left of zero.
        assert!(
            svg.contains(&format!("x=\"{label_w}\" y=\"70\" width=\"400\"")),
            "{svg}"
        );
    }
}
