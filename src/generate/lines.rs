//! One generated bill line (and its order) as a pure function of (seed, cycle, index): lines are
//! generated in parallel, and a refund can regenerate the earlier line whose order it refunds.

use super::world::{GenPartner, REGIONS, TAG_LINE, World, add_days, rng_for};
use crate::calendar::Cycle;
use crate::model::{PartnerType, SalesMode};
use chrono::{Datelike, Duration, FixedOffset, NaiveTime, Offset, Utc};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rust_decimal::Decimal;
use std::fmt::Write as _;

/// Service types with weights; marketplace, support and domain are excluded by the reference
/// policy, modelarts, gaussdb and ascend promoted.
const SERVICES: &[(&str, &str, u32)] = &[
    ("hws.service.type.ec2", "hws.resource.type.vm", 24),
    ("hws.service.type.evs", "hws.resource.type.volume", 10),
    ("hws.service.type.obs", "hws.resource.type.obs.bucket", 10),
    ("hws.service.type.rds", "hws.resource.type.rds.vm", 9),
    ("hws.service.type.cce", "hws.resource.type.cce.cluster", 7),
    ("hws.service.type.vpc", "hws.resource.type.eip", 5),
    ("hws.service.type.dcs", "hws.resource.type.dcs", 4),
    (
        "hws.service.type.functiongraph",
        "hws.resource.type.function",
        4,
    ),
    ("hws.service.type.gaussdb", "hws.resource.type.gaussdb", 6),
    (
        "hws.service.type.modelarts",
        "hws.resource.type.modelarts.train",
        5,
    ),
    ("hws.service.type.ascend", "hws.resource.type.ascend.npu", 3),
    (
        "hws.service.type.marketplace",
        "hws.resource.type.marketplace.app",
        6,
    ),
    (
        "hws.service.type.support",
        "hws.resource.type.support.plan",
        4,
    ),
    (
        "hws.service.type.domain",
        "hws.resource.type.domain.name",
        3,
    ),
];
const SERVICE_WEIGHT: u32 = 100;

/// A bad row the generator planted: where, and the reject code the loader must give.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlantedReject {
    pub row: u64,
    pub column: &'static str,
    pub value: String,
    pub code: &'static str,
}

/// A generated line before it is written.
#[derive(Debug, Clone)]
pub struct GenLine {
    pub cycle: Cycle,
    pub index: u64,
    pub partner: usize,
    pub customer: u64,
    pub resale: bool,
    pub region: &'static str,
    pub service: usize,
    pub charge_mode: &'static str,
    pub bill_type: &'static str,
    pub trade_time: String,
    pub order_id: Option<String>,
    /// The `original_order_id` cell as written (blank for some refunds).
    pub original_order_id: Option<String>,
    /// For a refund, the order it refunds (what its unsubscribe order in `orders.csv` points at).
    pub refunded_order: Option<String>,
    pub payable: Decimal,
    pub discount: Decimal,
    pub coupon: Option<Decimal>,
    pub settlement: Option<Decimal>,
    pub currency: &'static str,
}

impl GenLine {
    pub fn line_id(&self) -> String {
        format!("L{}{:09}", compact(self.cycle), self.index)
    }
}

pub fn compact(cycle: Cycle) -> String {
    format!("{:04}{:02}", cycle.year(), cycle.month())
}

fn order_id(cycle: Cycle, index: u64) -> String {
    format!("O{}{:09}", compact(cycle), index)
}

fn pick_service(rng: &mut ChaCha8Rng) -> usize {
    let mut roll = rng.random_range(0..SERVICE_WEIGHT);
    for (i, (_, _, w)) in SERVICES.iter().enumerate() {
        if roll < *w {
            return i;
        }
        roll -= w;
    }
    0
}

/// A positive amount: cents spread over five orders of magnitude; some on-demand usage carries
/// up to 8 decimal places, as metered usage does.
fn amount(rng: &mut ChaCha8Rng, metered: bool) -> Decimal {
    let magnitude = rng.random_range(0..5u32);
    let cents: i64 = rng.random_range(10i64.pow(magnitude + 1)..10i64.pow(magnitude + 2)) + 1;
    if metered && rng.random_range(0..100) < 25 {
        let scale = rng.random_range(3..=8u32);
        Decimal::new(
            cents * 10i64.pow(scale - 2) + rng.random_range(0..10i64.pow(scale - 2)),
            scale,
        )
    } else {
        Decimal::new(cents, 2)
    }
}

/// Trade time: anywhere in the cycle (Shanghai), more often on its last evening, sometimes on the
/// previous cycle's last day; written with one of several offsets.
fn trade_time(rng: &mut ChaCha8Rng, cycle: Cycle) -> String {
    let (day, seconds) = match rng.random_range(0..1000) {
        0..5 => (add_days(cycle.first_day(), -1), rng.random_range(0..86_400)),
        5..30 => (cycle.last_day(), rng.random_range(19 * 3600 + 1800..86_400)),
        _ => (
            add_days(
                cycle.first_day(),
                rng.random_range(0..i64::from(cycle.last_day().day0() + 1)),
            ),
            rng.random_range(0..86_400),
        ),
    };
    let time = NaiveTime::from_num_seconds_from_midnight_opt(seconds, 0).unwrap_or_default();
    // Shanghai is UTC+8 all year.
    let instant = (day.and_time(time) - Duration::hours(8)).and_utc();
    let offset_seconds = match rng.random_range(0..10) {
        0..6 => 8 * 3600,
        6..9 => 0,
        _ => 5 * 3600 + 1800,
    };
    match FixedOffset::east_opt(offset_seconds) {
        Some(offset) if offset_seconds != 0 => instant
            .with_timezone(&offset)
            .format("%Y-%m-%dT%H:%M:%S%:z")
            .to_string(),
        _ => instant
            .with_timezone(&Utc.fix())
            .format("%Y-%m-%dT%H:%M:%SZ")
            .to_string(),
    }
}

/// The line at `index` of `cycle`, without refunds (what a refund may point back at).
fn base_line(world: &World, cycle: Cycle, index: u64, rng: &mut ChaCha8Rng) -> GenLine {
    let customer = world.pick_customer(rng);
    let partner: &GenPartner = world.customer_partner(customer);
    let resale = world.customer_is_resale(customer);
    let regions = REGIONS[partner.region].3;
    let region = regions[rng.random_range(0..regions.len())];
    let service = pick_service(rng);
    let (charge_mode, prepaid) = match rng.random_range(0..100) {
        0..50 => ("on_demand", false),
        50..85 => ("yearly_monthly", true),
        85..93 => ("reserved", true),
        _ => ("savings_plan", true),
    };
    let adjustment = rng.random_range(0..100) < 2;
    let bill_type = if adjustment {
        "adjustment"
    } else if prepaid {
        match rng.random_range(0..100) {
            0..45 => "new",
            45..80 => "renew",
            _ => "change",
        }
    } else {
        "usage"
    };
    let mut payable = amount(rng, !prepaid);
    if adjustment && rng.random_range(0..100) < 70 {
        payable = -payable;
    }
    let discount = (payable.abs() * Decimal::new(rng.random_range(0..30), 2)).round_dp(2);
    let coupon = match rng.random_range(0..100) {
        0..8 => Some(
            (payable * Decimal::new(rng.random_range(1..100), 2)).trunc_with_scale(payable.scale()),
        ),
        8..10 => Some(payable),
        _ => None,
    };
    let settlement = (resale && payable > Decimal::ZERO && rng.random_range(0..2) == 0)
        .then(|| (payable * Decimal::new(9, 1)).trunc_with_scale(2));
    GenLine {
        cycle,
        index,
        partner: partner.index,
        customer,
        resale,
        region,
        service,
        charge_mode,
        bill_type,
        trade_time: trade_time(rng, cycle),
        order_id: prepaid.then(|| order_id(cycle, index)),
        original_order_id: None,
        refunded_order: None,
        payable,
        discount,
        coupon,
        settlement,
        currency: partner.currency(),
    }
}

/// The line at `index` of cycle `k` of the chain. About 6 % of lines are refunds of an earlier
/// prepaid order of this cycle or the previous one (found by regenerating that line); a refund
/// whose pick is not a prepaid purchase refunds an order from before the chain instead.
pub fn line(world: &World, cycle: Cycle, k: u32, index: u64) -> GenLine {
    let mut rng = rng_for(
        world.seed,
        TAG_LINE,
        u64::from(cycle.year() as u32) * 12 + u64::from(cycle.month()),
        index,
    );
    let refund = rng.random_range(0..100) < 6;
    let mut line = base_line(world, cycle, index, &mut rng);
    if !refund {
        return line;
    }
    let (from_cycle, from_index) = if k > 0 && rng.random_range(0..100) < 40 {
        (cycle.previous(), rng.random_range(0..=index))
    } else if index > 0 {
        (cycle, index - 1 - rng.random_range(0..index.min(5_000)))
    } else {
        return line;
    };
    let mut original_rng = rng_for(
        world.seed,
        TAG_LINE,
        u64::from(from_cycle.year() as u32) * 12 + u64::from(from_cycle.month()),
        from_index,
    );
    // The original's own first roll decided whether it was itself a refund.
    let original_was_refund = original_rng.random_range(0..100) < 6;
    let original = base_line(world, from_cycle, from_index, &mut original_rng);
    let refundable =
        !original_was_refund && matches!(original.bill_type, "new" | "renew" | "change");
    let share = Decimal::new(rng.random_range(10..=100), 2);
    let (payable, original_order) = if refundable {
        line.partner = original.partner;
        line.customer = original.customer;
        line.resale = original.resale;
        line.region = original.region;
        line.service = original.service;
        line.currency = original.currency;
        line.charge_mode = original.charge_mode;
        (
            (original.payable * share)
                .round_dp(2)
                .max(Decimal::new(1, 2)),
            original.order_id.unwrap_or_default(),
        )
    } else {
        line.charge_mode = "yearly_monthly";
        (
            line.payable.round_dp(2).max(Decimal::new(1, 2)),
            format!("O2000{:09}", from_index),
        )
    };
    line.bill_type = "refund";
    line.payable = -payable;
    line.discount = Decimal::ZERO;
    line.coupon = None;
    line.settlement = None;
    line.order_id = Some(format!("U{}{:09}", compact(cycle), index));
    // Most refunds name their original order; the rest leave it to orders.csv.
    line.original_order_id = (rng.random_range(0..100) < 70).then(|| original_order.clone());
    line.refunded_order = Some(original_order);
    line
}

/// What the generator writes for one line: its CSV row, its order row (if any), and a planted
/// reject (if this row was made bad).
pub fn write_line(
    world: &World,
    line: &GenLine,
    bad: Option<u32>,
    bills: &mut String,
    orders: &mut String,
) -> Option<PlantedReject> {
    let partner = &world.partners[line.partner];
    let (service, resource, _) = SERVICES[line.service];
    let mut cycle = line.cycle.to_string();
    let mut partner_id = partner.id();
    let mut trade_time = line.trade_time.clone();
    let mut payable = line.payable.to_string();
    let mut currency = line.currency.to_string();
    let row = line.index + 2;
    let planted = bad.map(|kind| match kind {
        0 => {
            payable = format!("{}O", &payable[..payable.len() - 1]);
            PlantedReject {
                row,
                column: "payable_amount",
                value: payable.clone(),
                code: "bad_decimal",
            }
        }
        1 => {
            trade_time = format!("{}-32T10:00:00+08:00", &line.cycle.to_string());
            PlantedReject {
                row,
                column: "trade_time",
                value: trade_time.clone(),
                code: "bad_timestamp",
            }
        }
        2 => {
            partner_id = format!("P-UNKNOWN-{}", line.index);
            PlantedReject {
                row,
                column: "partner_id",
                value: partner_id.clone(),
                code: "unknown_partner",
            }
        }
        3 => {
            currency = "RMB".to_string();
            PlantedReject {
                row,
                column: "currency",
                value: currency.clone(),
                code: "bad_currency",
            }
        }
        _ => {
            cycle = line.cycle.previous().to_string();
            PlantedReject {
                row,
                column: "bill_cycle",
                value: cycle.clone(),
                code: "wrong_cycle",
            }
        }
    });
    // List price: payable plus the discount, on the payable's side of zero.
    let official = if line.payable.is_sign_negative() {
        line.payable - line.discount
    } else {
        line.payable + line.discount
    };
    let dec = |d: Option<Decimal>| d.map(|d| d.to_string()).unwrap_or_default();
    let _ = writeln!(
        bills,
        "{},{},{},C{:08},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}",
        line.line_id(),
        cycle,
        partner_id,
        line.customer,
        if line.resale {
            SalesMode::Resale
        } else {
            SalesMode::Referral
        },
        partner.market(),
        line.region,
        service,
        resource,
        line.charge_mode,
        line.bill_type,
        trade_time,
        line.order_id.as_deref().unwrap_or(""),
        line.original_order_id.as_deref().unwrap_or(""),
        official,
        line.discount,
        payable,
        dec(line.coupon),
        dec(line.settlement),
        currency
    );
    if let Some(order) = &line.order_id {
        let order_type = match line.bill_type {
            "refund" => "unsubscribe",
            "new" => "new",
            "renew" => "renew",
            _ => "change",
        };
        let project = if line.bill_type == "new"
            && partner.kind != PartnerType::Distributor
            && line.index.is_multiple_of(7)
        {
            world
                .project_of(partner, line.index as u32)
                .unwrap_or_default()
        } else {
            String::new()
        };
        let _ = writeln!(
            orders,
            "{},{},C{:08},{},{},{},{},{},{},{}",
            order,
            partner.id(),
            line.customer,
            order_type,
            line.trade_time,
            line.trade_time,
            line.payable,
            line.currency,
            project,
            line.refunded_order.as_deref().unwrap_or("")
        );
    }
    planted
}
