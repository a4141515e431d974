//! The explanation paragraph: from consumption to incentive in plain words, in English or in
//! Chinese (the seed's own terms: 激励, 账期, 代金券, 转售, 顾问销售). Every figure is written
//! exactly as its column in the same row, so an analyst can find each one.

use super::Explanation;
use crate::money::format_amount;
use rust_decimal::Decimal;
use std::fmt::Write as _;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Lang {
    #[default]
    En,
    Zh,
}

/// The paragraph of one explanation row, in `lang`, amounts at `scale`.
pub fn paragraph(e: &Explanation, cycle: &str, lang: Lang, scale: u32) -> String {
    let words = Words {
        e,
        cycle,
        scale,
        reasons: e
            .excluded_by_reason
            .iter()
            .map(|(r, a)| format!("{r} {}", format_amount(*a, scale)))
            .collect::<Vec<_>>()
            .join(", "),
    };
    match lang {
        Lang::En => words.english(),
        Lang::Zh => words.chinese(),
    }
}

/// What a paragraph is made of: the row, its cycle, the currency's scale, the exclusions.
struct Words<'e> {
    e: &'e Explanation,
    cycle: &'e str,
    scale: u32,
    reasons: String,
}

fn nz(d: Decimal) -> bool {
    !d.is_zero()
}

impl Words<'_> {
    fn m(&self, d: Decimal) -> String {
        format_amount(d, self.scale)
    }

    fn english(&self) -> String {
        let (e, cycle, reasons) = (self.e, self.cycle, &self.reasons);
        let m = |d: Decimal| self.m(d);
        let cur = e.currency;
        let mut p = String::new();
        if e.customer_id == "*" {
            let _ = write!(
                p,
                "Partner-level incentive of {} in {cur} for cycle {cycle}.",
                e.partner_id
            );
        } else if !nz(e.consumption) && !nz(e.refunds) {
            let _ = write!(
                p,
                "In cycle {cycle}, for customer {} of {} ({cur}), on its resellers' lines:",
                e.customer_id, e.partner_id
            );
        } else {
            let _ = write!(
                p,
                "In cycle {cycle}, customer {} of {} consumed {} {cur}",
                e.customer_id,
                e.partner_id,
                m(e.consumption)
            );
            if nz(e.refunds) {
                let _ = write!(p, " and was refunded {}", m(e.refunds));
            }
            p.push('.');
        }
        if nz(e.eligible_base) || nz(e.non_base) {
            let _ = write!(
                p,
                " Incentive was earned this cycle on a base of {}",
                m(e.eligible_base)
            );
            if nz(e.non_base) {
                let _ = write!(
                    p,
                    "; {} of that consumption was paid with customer coupons and earns nothing",
                    m(e.non_base)
                );
            }
            p.push('.');
        }
        if nz(e.excluded) {
            let _ = write!(p, " {} earned nothing ({reasons}).", m(e.excluded));
        }
        if nz(e.deferred_out_base) || nz(e.deferred_out_non_base) {
            let _ = write!(
                p,
                " Consumption with a base of {} (and {} outside it) is credited next cycle: {} of incentive.",
                m(e.deferred_out_base),
                m(e.deferred_out_non_base),
                m(e.deferred_out_incentive)
            );
        } else if nz(e.deferred_out_incentive) {
            let _ = write!(
                p,
                " {} of incentive from this cycle is credited next cycle.",
                m(e.deferred_out_incentive)
            );
        }
        if nz(e.carried_in) {
            let _ = write!(p, " {} earned last cycle is credited now.", m(e.carried_in));
        }
        if nz(e.clawback_base) {
            let _ = write!(
                p,
                " Refunds of {} clawed back {} at the rates their orders earned.",
                m(e.clawback_base),
                m(e.clawed_back)
            );
        } else if nz(e.clawed_back) {
            let _ = write!(
                p,
                " Refunds on its resellers' lines clawed back {} of override.",
                m(e.clawed_back)
            );
        }
        if nz(e.refund_not_earned) {
            let _ = write!(
                p,
                " Refunds of {} claw nothing back: their orders never earned, or the refund is of an excluded kind.",
                m(e.refund_not_earned)
            );
        }
        if nz(e.override_) {
            let _ = write!(
                p,
                " Override on its resellers' resale lines: {}.",
                m(e.override_)
            );
        }
        if nz(e.tier) {
            let _ = write!(p, " Growth tier on the cycle's total: {}.", m(e.tier));
        }
        if nz(e.cap) {
            let _ = write!(p, " The cap held the incentive back by {}.", m(e.cap));
        }
        let _ = write!(
            p,
            " Incentive credited this cycle: {} = {} earned now + {} carried in + {} clawed back + {} tier + {} cap + {} override.",
            m(e.incentive),
            m(e.earned_now),
            m(e.carried_in),
            m(e.clawed_back),
            m(e.tier),
            m(e.cap),
            m(e.override_)
        );
        p
    }

    fn chinese(&self) -> String {
        let (e, cycle, reasons) = (self.e, self.cycle, &self.reasons);
        let m = |d: Decimal| self.m(d);
        let cur = e.currency;
        let mut p = String::new();
        if e.customer_id == "*" {
            let _ = write!(
                p,
                "合作伙伴 {} 在 {cycle} 账期以 {cur} 计的伙伴级激励。",
                e.partner_id
            );
        } else if !nz(e.consumption) && !nz(e.refunds) {
            let _ = write!(
                p,
                "{cycle} 账期，合作伙伴 {} 的客户 {}（{cur}），来自其名下云经销商的账单：",
                e.partner_id, e.customer_id
            );
        } else {
            let _ = write!(
                p,
                "{cycle} 账期，合作伙伴 {} 的客户 {} 消费 {} {cur}",
                e.partner_id,
                e.customer_id,
                m(e.consumption)
            );
            if nz(e.refunds) {
                let _ = write!(p, "，退订退款 {}", m(e.refunds));
            }
            p.push('。');
        }
        if nz(e.eligible_base) || nz(e.non_base) {
            let _ = write!(p, "本账期计算激励的基数为 {}", m(e.eligible_base));
            if nz(e.non_base) {
                let _ = write!(p, "；其中 {} 由客户代金券支付，不产生激励", m(e.non_base));
            }
            p.push('。');
        }
        if nz(e.excluded) {
            let _ = write!(p, "{} 不产生激励（{reasons}）。", m(e.excluded));
        }
        if nz(e.deferred_out_base) || nz(e.deferred_out_non_base) {
            let _ = write!(
                p,
                "基数 {}（另有基数外 {}）的消费计入下一账期的激励，金额 {}。",
                m(e.deferred_out_base),
                m(e.deferred_out_non_base),
                m(e.deferred_out_incentive)
            );
        } else if nz(e.deferred_out_incentive) {
            let _ = write!(
                p,
                "本账期产生的激励 {} 计入下一账期。",
                m(e.deferred_out_incentive)
            );
        }
        if nz(e.carried_in) {
            let _ = write!(p, "上一账期产生、本账期计入的激励 {}。", m(e.carried_in));
        }
        if nz(e.clawback_base) {
            let _ = write!(
                p,
                "退款 {} 按原订单的激励比例扣回激励 {}。",
                m(e.clawback_base),
                m(e.clawed_back)
            );
        } else if nz(e.clawed_back) {
            let _ = write!(
                p,
                "名下云经销商账单的退款扣回转售激励 {}。",
                m(e.clawed_back)
            );
        }
        if nz(e.refund_not_earned) {
            let _ = write!(
                p,
                "退款 {} 对应的订单未产生激励或属于不计激励的类型，不扣回。",
                m(e.refund_not_earned)
            );
        }
        if nz(e.override_) {
            let _ = write!(
                p,
                "名下云经销商转售账单给总经销商的激励 {}。",
                m(e.override_)
            );
        }
        if nz(e.tier) {
            let _ = write!(p, "本账期累计额的阶梯激励 {}。", m(e.tier));
        }
        if nz(e.cap) {
            let _ = write!(p, "封顶扣减 {}。", m(e.cap));
        }
        let _ = write!(
            p,
            "本账期计入激励 {} = 本期产生 {} + 上期结转 {} + 扣回 {} + 阶梯 {} + 封顶 {} + 转售 {}。",
            m(e.incentive),
            m(e.earned_now),
            m(e.carried_in),
            m(e.clawed_back),
            m(e.tier),
            m(e.cap),
            m(e.override_)
        );
        p
    }
}
