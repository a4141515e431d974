//! `incentives check`: parses every rule file, checks it, and compiles the set. All problems are
//! collected, each with file, line and column, before the set is refused.

use super::condition::{Condition, Field};
use super::format::{Conditions, RuleFile};
use super::{
    AmountField, Band, BaseExpr, Exclusion, Lever, LeverKind, NextCycle, Problem, Problems,
    Rounding, Rule, RuleSet, TierMode, Tiers, Timing,
};
use crate::calendar::parse_date;
use crate::model::Currency;
use crate::money::parse_decimal;
use chrono::{NaiveDate, NaiveTime};
use chrono_tz::Tz;
use rust_decimal::{Decimal, RoundingStrategy};
use std::collections::{BTreeMap, HashMap};
use std::ops::Range;

/// Collects problems against the files' text, turning byte spans into lines and columns.
struct Report<'a> {
    dir: &'a str,
    problems: Vec<Problem>,
    /// What `check` accepts but a person should look at (a rate above 100 %).
    warnings: Vec<Problem>,
}

impl Report<'_> {
    fn place(&self, file: &str, text: &str, span: Range<usize>, message: String) -> Problem {
        let offset = span.start.min(text.len());
        let before = &text[..offset];
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        Problem {
            file: std::path::Path::new(self.dir)
                .join(file)
                .display()
                .to_string(),
            line,
            column,
            message,
        }
    }

    fn at(&mut self, file: &str, text: &str, span: Range<usize>, message: impl Into<String>) {
        let problem = self.place(file, text, span, message.into());
        self.problems.push(problem);
    }

    fn warn_at(&mut self, file: &str, text: &str, span: Range<usize>, message: impl Into<String>) {
        let warning = self.place(file, text, span, message.into());
        self.warnings.push(warning);
    }

    /// A rate as the outputs can hold it: a decimal of at most 8 places (the Parquet columns'
    /// scale and the CSV's exact text), ≥ 0 and at most [`RATE_MAX`] (so no rate × amount sum can
    /// overflow); above 1 (100 %) it is accepted with a warning. `what` names it in messages.
    fn rate(
        &mut self,
        file: &str,
        text: &str,
        span: Range<usize>,
        what: &str,
        raw: &str,
    ) -> Option<Decimal> {
        let refuse = |report: &mut Self, why: String| {
            report.at(
                file,
                text,
                span.clone(),
                format!("{what}: rate {raw:?} {why}"),
            );
            None
        };
        let rate = match parse_decimal(raw, RATE_PLACES_MAX) {
            Ok(rate) => rate,
            Err(crate::money::DecimalError::TooManyPlaces { places, .. }) => {
                return refuse(
                    self,
                    format!("has {places} decimal places; the outputs hold {RATE_PLACES_MAX}"),
                );
            }
            Err(_) => return refuse(self, "is not a decimal".into()),
        };
        if rate < Decimal::ZERO {
            return refuse(self, "is negative".into());
        }
        if rate > Decimal::from(RATE_MAX) {
            return refuse(self, format!("is above {RATE_MAX} ({RATE_MAX}00 %)"));
        }
        if rate > Decimal::ONE {
            self.warn_at(
                file,
                text,
                span.clone(),
                format!("{what}: rate {raw} is above 1 (100 %): more than the base itself"),
            );
        }
        Some(rate)
    }

    fn whole(&mut self, message: impl Into<String>) {
        self.problems.push(Problem {
            file: self.dir.to_string(),
            line: 0,
            column: 0,
            message: message.into(),
        });
    }
}

/// Decimal places a rate may have: what `ledger.csv`'s `rate` and Parquet's DECIMAL(38,8) hold.
const RATE_PLACES_MAX: u32 = 8;

/// The largest rate accepted: 1,000 (100,000 %) is a typo already, and it keeps every rate ×
/// amount (amounts are below 10^12) and their sums far inside `Decimal`'s range.
const RATE_MAX: u32 = 1000;

fn decimal(text: &str) -> Option<Decimal> {
    parse_decimal(text, 12).ok()
}

fn parse_base(text: &str) -> Option<BaseExpr> {
    let mut terms = Vec::new();
    let mut negative = false;
    let mut expect_term = true;
    for token in text.split_whitespace() {
        match (expect_term, token) {
            (false, "+") => (negative, expect_term) = (false, true),
            (false, "-") => (negative, expect_term) = (true, true),
            (true, field) => {
                let f = match field {
                    "payable_amount" => AmountField::Payable,
                    "coupon_amount" => AmountField::Coupon,
                    "settlement_amount" => AmountField::Settlement,
                    _ => return None,
                };
                terms.push((negative, f));
                expect_term = false;
            }
            _ => return None,
        }
    }
    (!expect_term && !terms.is_empty()).then(|| BaseExpr {
        text: text.to_string(),
        terms,
    })
}

fn time_zone(name: &str) -> Option<Tz> {
    name.parse::<Tz>().ok()
}

/// Checks a `when` table: words of closed vocabularies, amounts, tags.
fn condition(
    report: &mut Report<'_>,
    file: &str,
    text: &str,
    span: Range<usize>,
    c: &Conditions,
) -> Condition {
    let tests = Condition::text_tests(c);
    for (field, test) in &tests {
        let vocabulary: Option<Vec<&str>> = match field {
            Field::Currency => None,
            f => f.vocabulary().map(|v| v.to_vec()),
        };
        for word in test.words() {
            let known = match (field, &vocabulary) {
                (Field::Currency, _) => Currency::parse(word).is_some(),
                (_, Some(v)) => v.contains(&word.as_str()),
                (_, None) => true,
            };
            if !known {
                let expected = vocabulary
                    .as_ref()
                    .map_or("an ISO 4217 code".to_string(), |v| v.join(", "));
                report.at(
                    file,
                    text,
                    span.clone(),
                    format!(
                        "unknown {} {word:?}: expected one of {expected}",
                        field.name()
                    ),
                );
            }
        }
    }
    let mut ranges = Vec::new();
    for (field, range) in [
        (AmountField::Payable, &c.payable_amount),
        (AmountField::Coupon, &c.coupon_amount),
        (AmountField::Settlement, &c.settlement_amount),
    ] {
        let Some(range) = range else { continue };
        let mut bound = |v: &Option<String>, what: &str| -> Option<Decimal> {
            let v = v.as_ref()?;
            let d = decimal(v);
            if d.is_none() {
                report.at(
                    file,
                    text,
                    span.clone(),
                    format!("{} {what} {v:?} is not a decimal", field.name()),
                );
            }
            d
        };
        let (min, max) = (bound(&range.min, "min"), bound(&range.max, "max"));
        if let (Some(a), Some(b)) = (min, max)
            && a > b
        {
            report.at(
                file,
                text,
                span.clone(),
                format!("{} range reversed: min {a} > max {b}", field.name()),
            );
        }
        ranges.push((field, min, max));
    }
    Condition {
        tests,
        partner_in_programme: c.partner_in_programme,
        partner_tags: c.partner_tags.clone(),
        ranges,
    }
}

/// A `when` table that may be left out (then: always).
fn spanned_condition(
    report: &mut Report<'_>,
    file: &str,
    text: &str,
    when: &Option<toml::Spanned<Conditions>>,
) -> Condition {
    match when {
        Some(w) => condition(report, file, text, w.span(), w.get_ref()),
        None => Condition::default(),
    }
}

struct PendingLever {
    file: usize,
    span: Range<usize>,
    lever: Lever,
    credit: Option<(String, Range<usize>)>,
    stacks_on: Vec<(String, Range<usize>)>,
    total_of: Option<(String, Range<usize>)>,
}

/// Sections that may appear once in a whole rule set, as found so far.
#[derive(Default)]
struct Singles {
    ruleset: Option<(String, String, Option<Tz>)>,
    rounding: Option<Rounding>,
    vouchers: Option<super::VoucherPolicy>,
    balances: Option<super::BalancePolicy>,
    subsidy: Option<super::SubsidyPolicy>,
}

/// Checks and compiles a rule set: each file parsed, each section checked by its own validator
/// (problems gathered with file:line:column, never only the first), then the references
/// between sections (timings, levers, rules) resolved.
pub(super) fn compile(
    dir: &str,
    sources: &[(String, String)],
    hash: String,
) -> Result<RuleSet, Problems> {
    let mut report = Report {
        dir,
        problems: Vec::new(),
        warnings: Vec::new(),
    };
    let mut parsed: Vec<(usize, RuleFile)> = Vec::new();
    for (i, (name, text)) in sources.iter().enumerate() {
        match toml::from_str::<RuleFile>(text) {
            Ok(file) => parsed.push((i, file)),
            Err(e) => {
                let message = e.message().replace('\n', " ");
                report.at(name, text, e.span().unwrap_or(0..0), message);
            }
        }
    }

    let mut singles = Singles::default();
    let mut exclusions = Vec::new();
    let mut levers: Vec<PendingLever> = Vec::new();
    for (i, file) in &parsed {
        let (fname, text) = (sources[*i].0.as_str(), sources[*i].1.as_str());
        singles_of_file(&mut report, fname, text, file, &mut singles);
        for e in &file.exclusion {
            exclusions.push(exclusion_section(&mut report, fname, text, e.get_ref()));
        }
        for l in &file.lever {
            let lever = lever_section(&mut report, fname, text, *i, l);
            if levers.iter().any(|p| p.lever.name == lever.lever.name) {
                let name = l.get_ref().name.clone();
                report.at(
                    fname,
                    text,
                    name.span(),
                    format!("lever {} is defined twice", name.get_ref()),
                );
            }
            levers.push(lever);
        }
    }
    if singles.ruleset.is_none() && !parsed.is_empty() {
        report.whole("no [ruleset] table (name, time_zone) in any file");
    }
    let rounding_mode_refused = report
        .problems
        .iter()
        .any(|p| p.message.contains("rounding mode"));
    if singles.rounding.is_none() && !parsed.is_empty() && !rounding_mode_refused {
        report.whole("no [rounding] table (mode, scale) in any file");
    }
    let (name, description, zone) = singles.ruleset.take().unwrap_or_default();
    let zone = zone.unwrap_or(chrono_tz::UTC);

    let mut timings: Vec<Timing> = Vec::new();
    for (i, file) in &parsed {
        let (fname, text) = (sources[*i].0.as_str(), sources[*i].1.as_str());
        for (tname, t) in &file.timing {
            if timings.iter().any(|known| known.name == *tname) {
                report.at(
                    fname,
                    text,
                    t.span(),
                    format!("timing {tname} is defined twice"),
                );
            }
            timings.push(timing_section(
                &mut report,
                fname,
                text,
                tname,
                t.get_ref(),
                zone,
            ));
        }
    }
    resolve_lever_references(&mut report, sources, &mut levers, &timings);
    let mut rules = RuleChecks::default();
    for (i, file) in &parsed {
        let (fname, text) = (sources[*i].0.as_str(), sources[*i].1.as_str());
        for r in &file.rule {
            rules.check(&mut report, fname, text, *i, r, &mut levers);
        }
    }

    if !report.problems.is_empty() {
        return Err(Problems(report.problems));
    }
    let mut levers: Vec<Lever> = levers.into_iter().map(|p| p.lever).collect();
    for lever in &mut levers {
        lever.rules.sort_by_key(|r| r.priority);
    }
    let Some(rounding) = singles.rounding else {
        return Err(Problems(vec![Problem {
            file: dir.to_string(),
            line: 0,
            column: 0,
            message: "no [rounding]".into(),
        }]));
    };
    Ok(RuleSet {
        name,
        description,
        hash,
        files: sources.iter().map(|(n, _)| n.clone()).collect(),
        time_zone: zone,
        rounding,
        timings,
        exclusions,
        levers,
        vouchers: singles.vouchers,
        balances: singles.balances,
        subsidy: singles.subsidy,
        warnings: report.warnings,
    })
}

/// The sections a rule set holds once (`[ruleset]`, `[rounding]`, `[vouchers]`, `[balances]`,
/// `[subsidy]`), checked where a file has them; a second `[ruleset]` or `[rounding]` is refused.
fn singles_of_file(
    report: &mut Report<'_>,
    fname: &str,
    text: &str,
    file: &RuleFile,
    singles: &mut Singles,
) {
    if let Some(rs) = &file.ruleset {
        if singles.ruleset.is_some() {
            report.at(
                fname,
                text,
                rs.span(),
                "[ruleset] is defined twice in the rule set",
            );
        }
        singles.ruleset = Some(ruleset_section(report, fname, text, rs.get_ref()));
    }
    if let Some(r) = &file.rounding {
        if singles.rounding.is_some() {
            report.at(
                fname,
                text,
                r.span(),
                "[rounding] is defined twice in the rule set",
            );
        }
        if let Some(rounding) = rounding_section(report, fname, text, r) {
            singles.rounding = Some(rounding);
        }
    }
    if let Some(v) = &file.vouchers {
        singles.vouchers = Some(voucher_section(report, fname, text, v.get_ref()));
    }
    if let Some(b) = &file.balances {
        singles.balances = Some(balance_section(report, fname, text, b.get_ref()));
    }
    if let Some(sub) = &file.subsidy {
        singles.subsidy = Some(subsidy_section(report, fname, text, sub));
    }
}

/// `[ruleset]`: name, description and the time zone of every date test.
fn ruleset_section(
    report: &mut Report<'_>,
    fname: &str,
    text: &str,
    rs: &super::format::RulesetSection,
) -> (String, String, Option<Tz>) {
    let zone = time_zone(rs.time_zone.get_ref());
    if zone.is_none() {
        report.at(
            fname,
            text,
            rs.time_zone.span(),
            format!(
                "unknown time zone {:?} (an IANA name such as Asia/Shanghai)",
                rs.time_zone.get_ref()
            ),
        );
    }
    (rs.name.clone(), rs.description.clone(), zone)
}

/// `[rounding]`: the mode and the scale per currency (None when the mode is unknown).
fn rounding_section(
    report: &mut Report<'_>,
    fname: &str,
    text: &str,
    r: &toml::Spanned<super::format::RoundingSection>,
) -> Option<Rounding> {
    let inner = r.get_ref();
    let strategy = match inner.mode.get_ref().as_str() {
        "half_up" => Some(RoundingStrategy::MidpointAwayFromZero),
        "half_even" => Some(RoundingStrategy::MidpointNearestEven),
        other => {
            report.at(
                fname,
                text,
                inner.mode.span(),
                format!("unknown rounding mode {other:?}: expected half_up or half_even"),
            );
            None
        }
    };
    let mut per_currency = BTreeMap::new();
    for (code, scale) in &inner.currency_scale {
        match Currency::parse(code) {
            Some(c) => {
                per_currency.insert(c, *scale);
            }
            None => report.at(
                fname,
                text,
                r.span(),
                format!("unknown currency {code:?} in currency_scale"),
            ),
        }
    }
    Some(Rounding {
        mode_name: inner.mode.get_ref().clone(),
        strategy: strategy?,
        default_scale: inner.scale,
        per_currency,
    })
}

/// `[[exclusion]]`: its condition, reason and what else it does.
fn exclusion_section(
    report: &mut Report<'_>,
    fname: &str,
    text: &str,
    e: &super::format::ExclusionSection,
) -> Exclusion {
    let what = format!("exclusion {}", e.id);
    let (window_from, window_to) = rule_window(report, fname, text, &what, &e.window);
    Exclusion {
        id: e.id.clone(),
        reason: e.reason.clone(),
        explanation: e.explanation.clone(),
        when: spanned_condition(report, fname, text, &e.when),
        window_from,
        window_to,
        stops_clawback: e.stops_clawback,
        counts_toward_tier: e.counts_toward_tier,
    }
}

/// `[[lever]]`: its kind, base and caps; the names it refers to are resolved later.
fn lever_section(
    report: &mut Report<'_>,
    fname: &str,
    text: &str,
    file: usize,
    l: &toml::Spanned<super::format::LeverSection>,
) -> PendingLever {
    let inner = l.get_ref();
    let kind = match inner.kind.get_ref().as_str() {
        "line" => LeverKind::Line,
        "override" => LeverKind::Override,
        "tier" => LeverKind::Tier,
        other => {
            report.at(
                fname,
                text,
                inner.kind.span(),
                format!("unknown lever kind {other:?}: expected line, override or tier"),
            );
            LeverKind::Line
        }
    };
    let base = inner.base.as_ref().and_then(|b| {
        let parsed = parse_base(b.get_ref());
        if parsed.is_none() {
            report.at(fname, text, b.span(), format!(
                "base {:?} is not a sum of payable_amount, coupon_amount, settlement_amount with + and -",
                b.get_ref()
            ));
        }
        parsed
    });
    if inner.base.is_none() && kind != LeverKind::Tier {
        report.at(
            fname,
            text,
            l.span(),
            format!("lever {} needs a base", inner.name.get_ref()),
        );
    }
    let mut cap = BTreeMap::new();
    for (code, amount) in &inner.cap {
        match (Currency::parse(code), decimal(amount)) {
            (Some(c), Some(a)) if a >= Decimal::ZERO => {
                cap.insert(c, a);
            }
            (None, _) => report.at(
                fname,
                text,
                l.span(),
                format!("unknown currency {code:?} in cap"),
            ),
            _ => report.at(
                fname,
                text,
                l.span(),
                format!("cap {code} = {amount:?} is not an amount ≥ 0"),
            ),
        }
    }
    let named = |s: &toml::Spanned<String>| (s.get_ref().clone(), s.span());
    PendingLever {
        file,
        span: l.span(),
        lever: Lever {
            name: inner.name.get_ref().clone(),
            description: inner.description.clone(),
            kind,
            base,
            credit: None,
            stacks_on: Vec::new(),
            total_of: None,
            cap,
            rules: Vec::new(),
        },
        credit: inner.credit.as_ref().map(named),
        stacks_on: inner.stacks_on.iter().map(named).collect(),
        total_of: inner.total_of.as_ref().map(named),
    }
}

/// `[vouchers]`: which lines vouchers pay for and how candidates are ordered.
fn voucher_section(
    report: &mut Report<'_>,
    fname: &str,
    text: &str,
    inner: &super::format::VoucherSection,
) -> super::VoucherPolicy {
    let mut order = Vec::new();
    for key in inner.candidate_order.get_ref() {
        match key.as_str() {
            "restricted_first" => order.push(super::VoucherKey::RestrictedFirst),
            "expires_at" => order.push(super::VoucherKey::ExpiresAt),
            "issued_at" => order.push(super::VoucherKey::IssuedAt),
            "voucher_id" => order.push(super::VoucherKey::VoucherId),
            other => report.at(fname, text, inner.candidate_order.span(), format!(
                "unknown voucher ordering key {other:?}: expected restricted_first, expires_at, issued_at, voucher_id"
            )),
        }
    }
    let eligible = spanned_condition(report, fname, text, &inner.eligible);
    if let Some(when) = inner
        .eligible
        .as_ref()
        .filter(|_| eligible.reads_order_type())
    {
        report.at(
            fname,
            text,
            when.span(),
            "[vouchers] eligible cannot test order_type: vouchers are deducted from the \
             bill's lines at bill generation, not matched to orders; use the line's \
             fields (bill_type, charge_mode, ...)",
        );
    }
    super::VoucherPolicy {
        eligible,
        candidate_order: order,
    }
}

/// `[balances]`: notification day, the term after exit, the report's windows.
fn balance_section(
    report: &mut Report<'_>,
    fname: &str,
    text: &str,
    inner: &super::format::BalanceSection,
) -> super::BalancePolicy {
    let day = *inner.notification_day.get_ref();
    if !(1..=28).contains(&day) {
        report.at(
            fname,
            text,
            inner.notification_day.span(),
            "notification_day must be 1 to 28 (a day every month has)",
        );
    }
    let windows = inner.report_windows.get_ref().clone();
    if windows.is_empty() || windows.windows(2).any(|w| w[0] >= w[1]) {
        report.at(
            fname,
            text,
            inner.report_windows.span(),
            "report_windows must be ascending day counts, e.g. [30, 60, 90]",
        );
    }
    super::BalancePolicy {
        notification_day: day,
        exit_grace_years: inner.exit_grace_years,
        report_windows: windows,
    }
}

/// `[subsidy]`: rate, thresholds per market and caps per currency.
fn subsidy_section(
    report: &mut Report<'_>,
    fname: &str,
    text: &str,
    sub: &toml::Spanned<super::format::SubsidySection>,
) -> super::SubsidyPolicy {
    let inner = sub.get_ref();
    let rate = report.rate(
        fname,
        text,
        inner.rate.span(),
        "subsidy",
        inner.rate.get_ref(),
    );
    let mut thresholds = BTreeMap::new();
    for t in &inner.thresholds {
        let th = t.get_ref();
        let market = th.market.parse::<crate::model::Market>().ok();
        let currency = Currency::parse(&th.currency);
        let amount = decimal(&th.amount);
        match (market, currency, amount) {
            (Some(m), Some(c), Some(a)) => {
                thresholds.insert(m, (c, a));
            }
            (None, _, _) => report.at(
                fname,
                text,
                t.span(),
                format!("unknown market {:?}: expected cn or intl", th.market),
            ),
            (_, None, _) => report.at(
                fname,
                text,
                t.span(),
                format!("unknown currency {:?}", th.currency),
            ),
            _ => report.at(
                fname,
                text,
                t.span(),
                format!("threshold {:?} is not a decimal", th.amount),
            ),
        }
    }
    let mut cap = BTreeMap::new();
    for (code, amount) in &inner.cap {
        match (Currency::parse(code), decimal(amount)) {
            (Some(c), Some(a)) => {
                cap.insert(c, a);
            }
            (None, _) => report.at(
                fname,
                text,
                sub.span(),
                format!("unknown currency {code:?} in subsidy cap"),
            ),
            _ => report.at(
                fname,
                text,
                sub.span(),
                format!("subsidy cap {code} = {amount:?} is not a decimal"),
            ),
        }
    }
    super::SubsidyPolicy {
        lever: inner.lever.clone(),
        rate: rate.unwrap_or_default(),
        qualifying_tags: inner.qualifying_tags.clone(),
        thresholds,
        cap,
    }
}

/// `[timing.NAME]`: its `next_cycle` entries, cut-offs in their zone (default the set's).
fn timing_section(
    report: &mut Report<'_>,
    fname: &str,
    text: &str,
    name: &str,
    t: &super::format::TimingSection,
    zone: Tz,
) -> Timing {
    let mut next_cycle = Vec::new();
    for n in &t.next_cycle {
        let inner = n.get_ref();
        let when = inner
            .when
            .as_ref()
            .map(|w| condition(report, fname, text, w.span(), w.get_ref()));
        let cutoff_zone = match &inner.zone {
            Some(z) => time_zone(z.get_ref()).unwrap_or_else(|| {
                report.at(
                    fname,
                    text,
                    z.span(),
                    format!(
                        "unknown time zone {:?} (an IANA name such as Asia/Shanghai)",
                        z.get_ref()
                    ),
                );
                zone
            }),
            None => zone,
        };
        let cutoff = inner.cutoff.as_ref().and_then(|c| {
            let t = NaiveTime::parse_from_str(c.get_ref(), "%H:%M:%S").ok();
            if t.is_none() {
                report.at(
                    fname,
                    text,
                    c.span(),
                    format!("cutoff {:?} is not a time of day HH:MM:SS", c.get_ref()),
                );
            }
            t.map(|t| (t, cutoff_zone))
        });
        if when.is_none() && inner.cutoff.is_none() {
            report.at(
                fname,
                text,
                n.span(),
                "a next_cycle entry needs `when` or `cutoff`",
            );
        }
        next_cycle.push(NextCycle {
            reason: inner.reason.clone(),
            when,
            cutoff,
        });
    }
    Timing {
        name: name.to_string(),
        next_cycle,
    }
}

/// The names levers refer to: their timing, the levers they stack on, a tier's lever.
fn resolve_lever_references(
    report: &mut Report<'_>,
    sources: &[(String, String)],
    levers: &mut [PendingLever],
    timings: &[Timing],
) {
    let lever_names: Vec<String> = levers.iter().map(|l| l.lever.name.clone()).collect();
    for p in levers.iter_mut() {
        let (fname, text) = (&sources[p.file].0, &sources[p.file].1);
        if let Some((c, span)) = &p.credit {
            p.lever.credit = timings.iter().position(|t| t.name == *c);
            if p.lever.credit.is_none() {
                report.at(
                    fname,
                    text,
                    span.clone(),
                    format!("unknown timing {c:?}: define it as [timing.{c}]"),
                );
            }
        }
        for (s, span) in &p.stacks_on {
            match lever_names.iter().position(|n| n == s) {
                Some(i) => p.lever.stacks_on.push(i),
                None => report.at(
                    fname,
                    text,
                    span.clone(),
                    format!("stacks_on names unknown lever {s:?}"),
                ),
            }
        }
        if let Some((s, span)) = &p.total_of {
            p.lever.total_of = lever_names.iter().position(|n| n == s);
            if p.lever.total_of.is_none() {
                report.at(
                    fname,
                    text,
                    span.clone(),
                    format!("total_of names unknown lever {s:?}"),
                );
            }
        }
        if p.lever.kind == LeverKind::Tier && p.total_of.is_none() {
            report.at(
                fname,
                text,
                p.span.clone(),
                format!("tier lever {} needs total_of", p.lever.name),
            );
        }
    }
}

/// What `[[rule]]` checks remember across files: ids in use, priorities per lever.
#[derive(Default)]
struct RuleChecks {
    seen_ids: HashMap<String, (usize, Range<usize>)>,
    by_priority: HashMap<(usize, i64), String>,
}

impl RuleChecks {
    /// `[[rule]]`: a unique id, its lever, a priority no other rule of the lever has, a rate or
    /// tiers as the lever's kind needs, its window and condition; added to its lever.
    fn check(
        &mut self,
        report: &mut Report<'_>,
        fname: &str,
        text: &str,
        file: usize,
        r: &toml::Spanned<super::format::RuleSection>,
        levers: &mut [PendingLever],
    ) {
        let inner = r.get_ref();
        let id = inner.id.get_ref().clone();
        if self
            .seen_ids
            .insert(id.clone(), (file, inner.id.span()))
            .is_some()
        {
            report.at(
                fname,
                text,
                inner.id.span(),
                format!("rule id {id} is used twice"),
            );
        }
        let Some(lever_index) = levers
            .iter()
            .position(|l| l.lever.name == *inner.lever.get_ref())
        else {
            let names: Vec<&str> = levers.iter().map(|l| l.lever.name.as_str()).collect();
            report.at(
                fname,
                text,
                inner.lever.span(),
                format!(
                    "rule {id}: unknown lever {:?} (levers: {})",
                    inner.lever.get_ref(),
                    names.join(", ")
                ),
            );
            return;
        };
        let priority = *inner.priority.get_ref();
        if let Some(other) = self.by_priority.insert((lever_index, priority), id.clone()) {
            report.at(fname, text, inner.priority.span(), format!(
                "rules {other} and {id} of lever {} both have priority {priority}: the first match must be unambiguous",
                levers[lever_index].lever.name
            ));
        }
        let kind = levers[lever_index].lever.kind;
        let rate = inner
            .rate
            .as_ref()
            .and_then(|r| report.rate(fname, text, r.span(), &format!("rule {id}"), r.get_ref()));
        let tiers = inner
            .tiers
            .as_ref()
            .and_then(|t| tiers(report, fname, text, &id, t.span(), t.get_ref()));
        match kind {
            LeverKind::Tier if inner.tiers.is_none() => {
                report.at(
                    fname,
                    text,
                    r.span(),
                    format!("rule {id} of a tier lever needs tiers"),
                );
            }
            LeverKind::Line | LeverKind::Override if inner.rate.is_none() => {
                report.at(fname, text, r.span(), format!("rule {id} needs a rate"));
            }
            _ => {}
        }
        let (window_from, window_to) =
            rule_window(report, fname, text, &format!("rule {id}"), &inner.window);
        let when = spanned_condition(report, fname, text, &inner.when);
        if kind == LeverKind::Tier
            && when.tests.iter().any(|(f, _)| {
                !matches!(
                    f,
                    Field::PartnerId | Field::PartnerType | Field::Programme | Field::PartnerMarket
                )
            })
        {
            report.at(fname, text, r.span(), format!(
                "rule {id}: a tier rule is about a partner's total, so its conditions may only name partner_id, partner_type, programme or partner_market"
            ));
        }
        levers[lever_index].lever.rules.push(Rule {
            id,
            description: inner.description.clone(),
            priority,
            rate,
            tiers,
            when,
            window_from,
            window_to,
        });
    }
}

/// A rule's (or an exclusion's) effective window on the trade date: both ends dates, the end not
/// before the start.
fn rule_window(
    report: &mut Report<'_>,
    fname: &str,
    text: &str,
    what: &str,
    window: &Option<toml::Spanned<super::format::DateWindow>>,
) -> (Option<NaiveDate>, Option<NaiveDate>) {
    let Some(w) = window else {
        return (None, None);
    };
    let mut date = |d: &Option<toml::Spanned<String>>| {
        d.as_ref().and_then(|d| {
            let parsed = parse_date(d.get_ref());
            if parsed.is_none() {
                report.at(
                    fname,
                    text,
                    d.span(),
                    format!("{what}: {:?} is not a date YYYY-MM-DD", d.get_ref()),
                );
            }
            parsed
        })
    };
    let (from, to) = (date(&w.get_ref().from), date(&w.get_ref().to));
    if let (Some(f), Some(t)) = (from, to)
        && t < f
    {
        report.at(
            fname,
            text,
            w.span(),
            format!("{what}: window ends {t}, before it starts {f}"),
        );
    }
    (from, to)
}

/// Checks tier bands: per currency, from 0 upwards, each band starting where the last ended, only
/// the last open.
fn tiers(
    report: &mut Report<'_>,
    file: &str,
    text: &str,
    id: &str,
    span: Range<usize>,
    t: &super::format::TiersSection,
) -> Option<Tiers> {
    let mode = match t.mode.as_str() {
        "marginal" => TierMode::Marginal,
        "whole" => TierMode::Whole,
        other => {
            report.at(
                file,
                text,
                span,
                format!("rule {id}: unknown tier mode {other:?}: expected marginal or whole"),
            );
            return None;
        }
    };
    let mut bands = BTreeMap::new();
    let mut ok = true;
    for (code, raw) in &t.bands {
        let Some(currency) = Currency::parse(code) else {
            report.at(
                file,
                text,
                span.clone(),
                format!("rule {id}: unknown currency {code:?} in tiers"),
            );
            ok = false;
            continue;
        };
        let mut list = Vec::new();
        let mut expected_from = Some(Decimal::ZERO);
        for (n, b) in raw.iter().enumerate() {
            let (from, to) = (decimal(&b.from), b.to.as_deref().map(decimal));
            let what = format!("rule {id}: {code} band {}", n + 1);
            let Some(rate) = report.rate(file, text, span.clone(), &what, &b.rate) else {
                ok = false;
                continue;
            };
            let Some(from) = from else {
                report.at(
                    file,
                    text,
                    span.clone(),
                    format!("{what}: from {:?} is not a decimal", b.from),
                );
                ok = false;
                continue;
            };
            let to = match to {
                Some(Some(t)) => Some(t),
                Some(None) => {
                    report.at(
                        file,
                        text,
                        span.clone(),
                        format!("rule {id}: {code} band {}: to is not a decimal", n + 1),
                    );
                    ok = false;
                    continue;
                }
                None => None,
            };
            match expected_from {
                Some(e) if e == from => {}
                Some(e) if from > e => {
                    report.at(
                        file,
                        text,
                        span.clone(),
                        format!("rule {id}: {code} bands leave a gap from {e} to {from}"),
                    );
                    ok = false;
                }
                Some(e) => {
                    report.at(file, text, span.clone(), format!("rule {id}: {code} bands overlap: a band starts at {from}, the previous one ends at {e}"));
                    ok = false;
                }
                None => {
                    report.at(file, text, span.clone(), format!("rule {id}: {code} band from {from} follows an open band (only the last band may leave `to` out)"));
                    ok = false;
                }
            }
            if let Some(t) = to
                && t <= from
            {
                report.at(
                    file,
                    text,
                    span.clone(),
                    format!("rule {id}: {code} band from {from} to {t} is empty or reversed"),
                );
                ok = false;
            }
            expected_from = to;
            list.push(Band { from, to, rate });
        }
        if expected_from.is_some() && !list.is_empty() {
            report.at(
                file,
                text,
                span.clone(),
                format!("rule {id}: {code} last band must be open (no `to`)"),
            );
            ok = false;
        }
        bands.insert(currency, list);
    }
    ok.then_some(Tiers { mode, bands })
}
