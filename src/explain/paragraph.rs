//! The explanation paragraph: from consumption to incentive in plain words, in English or in
//! Chinese (the vendor's own terms: 激励, 账期, 代金券, 退订, 总经销商, 云经销商, 顾问销售, 代售).
//! Amounts in the prose are at the currency's scale with thousands separators (the exact
//! figures stay in the row's columns); refunds are said as amounts refunded, never with a minus
//! sign; exclusions by their readable reason (the rule set's `explanation` text, else the reason
//! code in words); every case in words: lines paid
//! entirely with customer coupons, lines credited next cycle and why, the resellers whose
//! lines earned a distributor its override.

use super::Explanation;
use rust_decimal::Decimal;
use std::collections::BTreeMap;
use std::fmt::Write as _;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Lang {
    #[default]
    En,
    Zh,
}

/// The readable words of each exclusion reason: reason code → the rule set's `explanation`.
pub type ReasonWords = BTreeMap<String, String>;

/// The rule set's readable exclusion reasons, for the paragraphs.
pub fn reason_words_of(rules: &crate::rules::RuleSet) -> ReasonWords {
    rules
        .exclusions
        .iter()
        .map(|e| (e.reason.clone(), e.explanation.clone()))
        .collect()
}

/// The paragraph of one explanation row, in `lang`, amounts at `scale`, exclusions named by
/// `reasons` (else by their code in words).
pub fn paragraph(
    e: &Explanation,
    cycle: &str,
    lang: Lang,
    scale: u32,
    reasons: &ReasonWords,
) -> String {
    let words = Words {
        e,
        cycle,
        scale,
        reasons,
    };
    match lang {
        Lang::En => words.english(),
        Lang::Zh => words.chinese(),
    }
}

/// What a paragraph is made of: the row, its cycle, the currency's scale, the reasons' words.
struct Words<'e> {
    e: &'e Explanation,
    cycle: &'e str,
    scale: u32,
    reasons: &'e ReasonWords,
}

impl Words<'_> {
    /// The words of an exclusion reason: the rule set's, else the code with spaces.
    fn reason(&self, code: &str) -> String {
        self.reasons
            .get(code)
            .cloned()
            .unwrap_or_else(|| code.replace('_', " "))
    }
}

fn nz(d: Decimal) -> bool {
    !d.is_zero()
}

/// Why lines are credited next cycle, in words (the timing rule's reason code).
fn deferral_en(code: &str) -> String {
    match code {
        "on_demand" => "on-demand usage, credited the cycle after it is billed".into(),
        "after_cutoff" => "traded after the cycle's cut-off, credited next cycle".into(),
        other => other.replace('_', " "),
    }
}

fn deferral_zh(code: &str) -> String {
    match code {
        "on_demand" => "按需计费的用量，在出账的下一账期计入".into(),
        "after_cutoff" => "交易时间晚于本账期截止时间，计入下一账期".into(),
        other => other.replace('_', " "),
    }
}

impl Words<'_> {
    /// An amount in prose: at the currency's scale, thousands separated.
    fn m(&self, d: Decimal) -> String {
        crate::money::prose(d, self.scale)
    }

    /// An amount refunded or clawed back, said without its sign.
    fn a(&self, d: Decimal) -> String {
        self.m(d.abs())
    }

    fn english(&self) -> String {
        let mut p = String::new();
        self.english_consumption(&mut p);
        self.english_timing_and_refunds(&mut p);
        self.english_partner_and_total(&mut p);
        p
    }

    /// The customer's consumption and refunds, what earned, what earned nothing.
    fn english_consumption(&self, p: &mut String) {
        let (e, cycle) = (self.e, self.cycle);
        let cur = e.currency;
        if e.customer_id == "*" {
            let _ = write!(
                p,
                "Partner-level incentive of {} in {cur} for cycle {cycle} (on the cycle's total, not on one customer).",
                e.partner_id
            );
        } else if !nz(e.consumption) && !nz(e.refunds) {
            let _ = write!(
                p,
                "In cycle {cycle}, customer {} bought through resellers of distributor {} ({cur}).",
                e.customer_id, e.partner_id
            );
        } else {
            let _ = write!(
                p,
                "In cycle {cycle}, customer {} of {} consumed {} {cur}",
                e.customer_id,
                e.partner_id,
                self.m(e.consumption)
            );
            if nz(e.refunds) {
                let _ = write!(p, " and was refunded {}", self.a(e.refunds));
            }
            p.push('.');
        }
        if nz(e.eligible_base) || nz(e.non_base) {
            let _ = write!(
                p,
                " Incentive was earned this cycle on a base of {}",
                self.m(e.eligible_base)
            );
            if nz(e.non_base) {
                let _ = write!(
                    p,
                    "; {} was paid with customer coupons, which earn nothing",
                    self.m(e.non_base)
                );
            }
            p.push('.');
        }
        match e.notes.coupon_only_lines {
            0 => {}
            1 => {
                p.push_str(" One line was paid entirely with customer coupons and earned nothing.")
            }
            n => {
                let _ = write!(
                    p,
                    " {n} lines were paid entirely with customer coupons and earned nothing."
                );
            }
        }
        if nz(e.excluded) {
            let reasons: Vec<String> = e
                .excluded_by_reason
                .iter()
                .map(|(r, a)| format!("{} ({})", self.reason(r), self.m(*a)))
                .collect();
            let _ = write!(
                p,
                " {} earned nothing: {}.",
                self.m(e.excluded),
                reasons.join("; ")
            );
        }
    }

    /// What moves between cycles, and what refunds took back.
    fn english_timing_and_refunds(&self, p: &mut String) {
        let e = self.e;
        if nz(e.deferred_out_base) || nz(e.deferred_out_non_base) {
            let why: Vec<String> = e
                .notes
                .deferred_by_reason
                .iter()
                .map(|(r, a)| format!("{} of {}", self.m(*a), deferral_en(r)))
                .collect();
            let _ = write!(
                p,
                " Consumption of {} is credited next cycle ({}): {} of incentive{}.",
                self.a(e.deferred_out_base + e.deferred_out_non_base),
                why.join("; "),
                self.a(e.deferred_out_incentive),
                if e.deferred_out_incentive.is_sign_negative() {
                    " taken back"
                } else {
                    ""
                }
            );
        } else if nz(e.deferred_out_incentive) {
            let _ = write!(
                p,
                " {} of incentive from this cycle is {} next cycle.",
                self.a(e.deferred_out_incentive),
                if e.deferred_out_incentive.is_sign_negative() {
                    "taken back"
                } else {
                    "credited"
                }
            );
        }
        if nz(e.carried_in) {
            let _ = write!(
                p,
                " {} {} in an earlier cycle is {} now.",
                self.a(e.carried_in),
                if e.carried_in.is_sign_negative() {
                    "taken back"
                } else {
                    "earned"
                },
                if e.carried_in.is_sign_negative() {
                    "deducted"
                } else {
                    "credited"
                }
            );
        }
        if nz(e.clawback_base) {
            let _ = write!(
                p,
                " Refunds of {} took back {} of incentive, at the rates their orders earned.",
                self.a(e.clawback_base),
                self.a(e.clawed_back)
            );
        } else if nz(e.clawed_back) {
            let _ = write!(
                p,
                " Refunds on its resellers' lines took back {} of override.",
                self.a(e.clawed_back)
            );
        }
        if nz(e.refund_not_earned) {
            let _ = write!(
                p,
                " Refunds of {} took nothing back: their orders never earned, or the refund is of an excluded kind.",
                self.a(e.refund_not_earned)
            );
        }
    }

    /// Overrides, tier and cap, then the incentive credited as a sum in words.
    fn english_partner_and_total(&self, p: &mut String) {
        let e = self.e;
        let cur = e.currency;
        if nz(e.override_) || !e.notes.override_resellers.is_empty() {
            let resellers: Vec<&str> = e
                .notes
                .override_resellers
                .iter()
                .map(String::as_str)
                .collect();
            let by = match resellers.len() {
                0 => "its resellers".to_string(),
                1 => format!("its reseller {}", resellers[0]),
                _ => format!("its resellers {}", resellers.join(", ")),
            };
            let _ = write!(
                p,
                " Resale lines of {by} earned this distributor an override of {}.",
                self.m(e.override_)
            );
        }
        if nz(e.tier) {
            let _ = write!(p, " Growth tier on the cycle's total: {}.", self.m(e.tier));
        }
        if nz(e.cap) {
            let _ = write!(p, " The cap held the incentive back by {}.", self.a(e.cap));
        }
        let mut parts = Vec::new();
        for (amount, what) in [
            (e.earned_now, "earned now"),
            (e.carried_in, "carried in"),
            (e.clawed_back, "clawed back"),
            (e.tier, "tier"),
            (e.cap, "cap"),
            (e.override_, "override"),
        ] {
            if nz(amount) {
                let sign = if parts.is_empty() {
                    if amount.is_sign_negative() {
                        "less "
                    } else {
                        ""
                    }
                } else if amount.is_sign_negative() {
                    "less "
                } else {
                    "plus "
                };
                parts.push(format!("{sign}{} {what}", self.a(amount)));
            }
        }
        // A net clawback is said as an amount taken back, never with a minus sign.
        let _ = write!(
            p,
            " Incentive credited this cycle: {}{} {cur}{}.",
            if e.incentive.is_sign_negative() && nz(e.incentive) {
                "a net clawback of "
            } else {
                ""
            },
            self.a(e.incentive),
            if parts.is_empty() {
                String::new()
            } else {
                format!(" ({})", parts.join(", "))
            }
        );
    }

    fn chinese(&self) -> String {
        let mut p = String::new();
        self.chinese_consumption(&mut p);
        self.chinese_timing_and_refunds(&mut p);
        self.chinese_partner_and_total(&mut p);
        p
    }

    /// The customer's consumption and refunds, what earned, what earned nothing.
    fn chinese_consumption(&self, p: &mut String) {
        let (e, cycle) = (self.e, self.cycle);
        let cur = e.currency;
        if e.customer_id == "*" {
            let _ = write!(
                p,
                "合作伙伴 {} 在 {cycle} 账期以 {cur} 计的伙伴级激励（按本账期累计额计算，不针对单个客户）。",
                e.partner_id
            );
        } else if !nz(e.consumption) && !nz(e.refunds) {
            let _ = write!(
                p,
                "{cycle} 账期，客户 {} 通过总经销商 {} 名下的云经销商购买（{cur}）。",
                e.customer_id, e.partner_id
            );
        } else {
            let _ = write!(
                p,
                "{cycle} 账期，合作伙伴 {} 的客户 {} 消费 {} {cur}",
                e.partner_id,
                e.customer_id,
                self.m(e.consumption)
            );
            if nz(e.refunds) {
                let _ = write!(p, "，退订退款 {}", self.a(e.refunds));
            }
            p.push('。');
        }
        if nz(e.eligible_base) || nz(e.non_base) {
            let _ = write!(p, "本账期计算激励的基数为 {}", self.m(e.eligible_base));
            if nz(e.non_base) {
                let _ = write!(
                    p,
                    "；另有 {} 由客户代金券支付，不计入基数，不产生激励",
                    self.m(e.non_base)
                );
            }
            p.push('。');
        }
        if e.notes.coupon_only_lines > 0 {
            let _ = write!(
                p,
                "其中 {} 笔账单全部由客户代金券支付，不产生激励。",
                e.notes.coupon_only_lines
            );
        }
        if nz(e.excluded) {
            let reasons: Vec<String> = e
                .excluded_by_reason
                .iter()
                .map(|(r, a)| format!("{}（{}）", self.reason(r), self.m(*a)))
                .collect();
            let _ = write!(
                p,
                "{} 不产生激励：{}。",
                self.m(e.excluded),
                reasons.join("；")
            );
        }
    }

    /// What moves between cycles, and what refunds took back.
    fn chinese_timing_and_refunds(&self, p: &mut String) {
        let e = self.e;
        if nz(e.deferred_out_base) || nz(e.deferred_out_non_base) {
            let why: Vec<String> = e
                .notes
                .deferred_by_reason
                .iter()
                .map(|(r, a)| format!("{} 为{}", self.m(*a), deferral_zh(r)))
                .collect();
            let _ = write!(
                p,
                "消费 {} 计入下一账期（{}），对应{}激励 {}。",
                self.a(e.deferred_out_base + e.deferred_out_non_base),
                why.join("；"),
                if e.deferred_out_incentive.is_sign_negative() {
                    "扣回"
                } else {
                    ""
                },
                self.a(e.deferred_out_incentive)
            );
        } else if nz(e.deferred_out_incentive) {
            let _ = write!(
                p,
                "本账期{}的激励 {} 计入下一账期。",
                if e.deferred_out_incentive.is_sign_negative() {
                    "扣回"
                } else {
                    "产生"
                },
                self.a(e.deferred_out_incentive)
            );
        }
        if nz(e.carried_in) {
            let _ = write!(
                p,
                "以前账期{}、本账期{}的激励 {}。",
                if e.carried_in.is_sign_negative() {
                    "扣回"
                } else {
                    "产生"
                },
                if e.carried_in.is_sign_negative() {
                    "扣减"
                } else {
                    "计入"
                },
                self.a(e.carried_in)
            );
        }
        if nz(e.clawback_base) {
            let _ = write!(
                p,
                "退订退款 {} 按原订单的激励比例扣回激励 {}。",
                self.a(e.clawback_base),
                self.a(e.clawed_back)
            );
        } else if nz(e.clawed_back) {
            let _ = write!(
                p,
                "名下云经销商账单的退订扣回总经销商激励 {}。",
                self.a(e.clawed_back)
            );
        }
        if nz(e.refund_not_earned) {
            let _ = write!(
                p,
                "退订退款 {} 对应的订单未产生激励或属于不计激励的类型，不扣回。",
                self.a(e.refund_not_earned)
            );
        }
    }

    /// Overrides, tier and cap, then the incentive credited as a sum in words.
    fn chinese_partner_and_total(&self, p: &mut String) {
        let e = self.e;
        let cur = e.currency;
        if nz(e.override_) || !e.notes.override_resellers.is_empty() {
            let resellers: Vec<&str> = e
                .notes
                .override_resellers
                .iter()
                .map(String::as_str)
                .collect();
            let by = if resellers.is_empty() {
                "名下云经销商".to_string()
            } else {
                format!("名下云经销商 {} ", resellers.join("、"))
            };
            let _ = write!(
                p,
                "{by}的代售账单为本总经销商带来激励 {}。",
                self.m(e.override_)
            );
        }
        if nz(e.tier) {
            let _ = write!(p, "本账期累计额的阶梯激励 {}。", self.m(e.tier));
        }
        if nz(e.cap) {
            let _ = write!(p, "封顶扣减激励 {}。", self.a(e.cap));
        }
        let mut parts = Vec::new();
        for (amount, what) in [
            (e.earned_now, "本期产生"),
            (e.carried_in, "以前账期结转"),
            (e.clawed_back, "退订扣回"),
            (e.tier, "阶梯激励"),
            (e.cap, "封顶扣减"),
            (e.override_, "总经销商激励"),
        ] {
            if nz(amount) {
                let sign = if amount.is_sign_negative() {
                    "减"
                } else if parts.is_empty() {
                    ""
                } else {
                    "加"
                };
                parts.push(format!("{sign}{what} {}", self.a(amount)));
            }
        }
        // A net clawback is said as an amount taken back, never with a minus sign.
        let _ = write!(
            p,
            "本账期{} {} {cur}{}。",
            if e.incentive.is_sign_negative() && nz(e.incentive) {
                "净扣回激励"
            } else {
                "计入激励"
            },
            self.a(e.incentive),
            if parts.is_empty() {
                String::new()
            } else {
                format!("（{}）", parts.join("，"))
            }
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::explain::{Explanation, Notes};

    /// A customer whose refunds took back more than it earned: consumed 1,000.00 of which a
    /// base of 1,000.00 earned 5 % = 50.00; refunds of 3,000.00 clawed back 150.00 at the same
    /// 5 %; credited 50.00 − 150.00 = −100.00, a net clawback said as 100.00 taken back.
    fn net_clawback() -> Explanation {
        let d = |s: &str| s.parse::<Decimal>().unwrap();
        Explanation {
            partner_id: "SP001".into(),
            customer_id: "C101".into(),
            currency: crate::model::Currency::parse("CNY").unwrap(),
            consumption: d("1000.00"),
            refunds: d("-3000.00"),
            eligible_base: d("1000.00"),
            non_base: d("0"),
            excluded: d("0"),
            excluded_by_reason: BTreeMap::new(),
            deferred_out_base: d("0"),
            deferred_out_non_base: d("0"),
            deferred_out_incentive: d("0"),
            clawback_base: d("-3000.00"),
            refund_not_earned: d("0"),
            earned_now: d("50.00"),
            carried_in: d("-20.00"),
            clawed_back: d("-150.00"),
            tier: d("0"),
            cap: d("0"),
            override_: d("0"),
            incentive: d("-120.00"),
            rejected_lines: 0,
            notes: Notes::default(),
        }
    }

    #[test]
    fn a_net_clawback_is_said_as_an_amount_taken_back_in_both_languages() {
        let e = net_clawback();
        let en = paragraph(&e, "2026-10", Lang::En, 2, &ReasonWords::new());
        assert!(!en.contains(" -") && !en.contains("(-"), "{en}");
        assert!(
            en.contains("Incentive credited this cycle: a net clawback of 120.00 CNY (50.00 earned now, less 20.00 carried in, less 150.00 clawed back)."),
            "{en}"
        );
        assert!(
            en.contains("20.00 taken back in an earlier cycle is deducted now"),
            "{en}"
        );
        assert!(en.contains("was refunded 3,000.00"), "{en}");
        let zh = paragraph(&e, "2026-10", Lang::Zh, 2, &ReasonWords::new());
        assert!(!zh.contains(" -") && !zh.contains("（-"), "{zh}");
        assert!(
            zh.contains("本账期净扣回激励 120.00 CNY（本期产生 50.00，减以前账期结转 20.00，减退订扣回 150.00）。"),
            "{zh}"
        );
        // Chinese punctuation only (the ASCII comma and point stay inside figures: 3,000.00).
        for c in [';', ':', '(', ')', '!', '?'] {
            assert!(!zh.contains(c), "{c} in {zh}");
        }
        assert!(!zh.contains(", ") && !zh.contains(". "), "{zh}");
    }
}
