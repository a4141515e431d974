//! The generator's master data: partners, their customers, links, tags, projects, vouchers and
//! lots, each a pure function of (seed, index), so any cycle of a chain can be regenerated alone.

use crate::calendar::Cycle;
use crate::model::{Market, PartnerType};
use chrono::{Days, NaiveDate};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// A deterministic stream for one thing, named by a domain tag and indices.
pub fn rng_for(seed: u64, tag: u64, a: u64, b: u64) -> ChaCha8Rng {
    // SplitMix64 finaliser over the inputs: distinct inputs give unrelated streams.
    let mut x = seed ^ tag.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    for v in [a, b] {
        x ^= v
            .wrapping_add(0x9E37_79B9_7F4A_7C15)
            .wrapping_add(x << 6)
            .wrapping_add(x >> 2);
        x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        x ^= x >> 31;
    }
    ChaCha8Rng::seed_from_u64(x)
}

pub const TAG_PARTNER: u64 = 1;
pub const TAG_CUSTOMER: u64 = 2;
pub const TAG_LINE: u64 = 3;
pub const TAG_TAGS: u64 = 4;
pub const TAG_LINK: u64 = 5;
pub const TAG_PROJECT: u64 = 6;
pub const TAG_VOUCHER: u64 = 7;
pub const TAG_LOT: u64 = 8;
pub const TAG_WITHDRAWAL: u64 = 9;

/// Business regions with their market, currency and cloud regions. The first four partners are
/// distributors, one per business region, so every reseller has a distributor at home.
pub const REGIONS: &[(&str, Market, &str, &[&str])] = &[
    (
        "cn",
        Market::Cn,
        "CNY",
        &["cn-north-4", "cn-east-3", "cn-south-1", "cn-southwest-2"],
    ),
    (
        "ap",
        Market::Intl,
        "USD",
        &["ap-southeast-1", "ap-southeast-3"],
    ),
    ("eu", Market::Intl, "USD", &["eu-west-0"]),
    ("la", Market::Intl, "USD", &["la-south-2"]),
];

pub const QUALIFYING_TAGS: &[&str] = &[
    "migration",
    "database",
    "ascend_cloud",
    "ai_platform",
    "big_data",
    "cloud_native",
    "app_modernization",
    "sap",
];
const OTHER_TAGS: &[&str] = &["iot", "security", "video"];

#[derive(Debug, Clone)]
pub struct GenPartner {
    pub index: usize,
    pub kind: PartnerType,
    pub region: usize,
    pub joined_on: NaiveDate,
    pub exited_on: Option<NaiveDate>,
}

impl GenPartner {
    pub fn id(&self) -> String {
        format!("P{:05}", self.index)
    }
    pub fn market(&self) -> Market {
        REGIONS[self.region].1
    }
    pub fn currency(&self) -> &'static str {
        REGIONS[self.region].2
    }
    pub fn holds_vouchers(&self) -> bool {
        self.kind != PartnerType::Distributor
    }
}

/// The partners and customers of a generated programme.
pub struct World {
    pub seed: u64,
    pub partners: Vec<GenPartner>,
    pub customers: u64,
    /// The first cycle of the chain: dates of master data are laid out around it.
    pub chain_start: Cycle,
    /// The largest partner and the millionths of the lines it holds (`--top-share`).
    pub top: Option<(usize, u64)>,
}

pub fn add_days(d: NaiveDate, days: i64) -> NaiveDate {
    if days >= 0 {
        d.checked_add_days(Days::new(days as u64)).unwrap_or(d)
    } else {
        d.checked_sub_days(Days::new((-days) as u64)).unwrap_or(d)
    }
}

impl World {
    pub fn new(seed: u64, partners: usize, customers: u64, chain_start: Cycle) -> World {
        let start = chain_start.first_day();
        let partners = (0..partners.max(REGIONS.len() + 1))
            .map(|i| {
                let mut rng = rng_for(seed, TAG_PARTNER, i as u64, 0);
                let (kind, region) = if i < REGIONS.len() {
                    (PartnerType::Distributor, i)
                } else {
                    let kind = match rng.random_range(0..100) {
                        0..8 => PartnerType::Distributor,
                        8..20 => PartnerType::Reseller,
                        _ => PartnerType::SolutionProvider,
                    };
                    let region = match rng.random_range(0..100) {
                        0..70 => 0,
                        70..85 => 1,
                        85..95 => 2,
                        _ => 3,
                    };
                    (kind, region)
                };
                let joined_on = add_days(start, -rng.random_range(200..2400));
                // A few partners leave: some months before the chain, some during its first cycle.
                let exited_on = (i >= REGIONS.len() && rng.random_range(0..100) < 4)
                    .then(|| add_days(start, rng.random_range(-150..31)));
                GenPartner {
                    index: i,
                    kind,
                    region,
                    joined_on,
                    exited_on,
                }
            })
            .collect();
        World {
            seed,
            partners,
            customers: customers.max(1),
            chain_start,
            top: None,
        }
    }

    /// Makes the first solution provider that stays in its programme (it holds vouchers, and
    /// its volume earns it tiers) take `ppm` millionths of the lines; 0 leaves the world as it
    /// was (and every line the same bytes).
    pub fn with_top_share(mut self, ppm: u64) -> World {
        if ppm > 0 {
            self.top = self
                .partners
                .iter()
                .find(|p| p.kind == PartnerType::SolutionProvider && p.exited_on.is_none())
                .map(|p| (p.index, ppm));
        }
        self
    }

    /// The customer of a line: with a top share, that share of the lines goes to one of the
    /// largest partner's customers and the rest to the others; without one, as always: a roll
    /// squared, so some customers (and so partners) are much busier than others.
    pub fn pick_customer(&self, rng: &mut impl rand::Rng) -> u64 {
        if let Some((top, ppm)) = self.top
            && rng.random_range(0..1_000_000u64) < ppm
        {
            let partners = self.partners.len() as u64;
            let own = (self.customers.saturating_sub(top as u64) / partners).max(1);
            return top as u64 + partners * rng.random_range(0..own);
        }
        let roll = rng.random_range(0..self.customers);
        let customer = (u128::from(roll) * u128::from(roll) / u128::from(self.customers)) as u64;
        match self.top {
            // The largest partner holds its share and no more: its customers' rolls go to the
            // next customer (another partner's).
            Some((top, _)) if self.customer_partner(customer).index == top => {
                (customer + 1) % self.customers
            }
            _ => customer,
        }
    }

    /// Customer `c` belongs to partner `c mod P`, always through the same sales mode.
    pub fn customer_partner(&self, customer: u64) -> &GenPartner {
        &self.partners[(customer % self.partners.len() as u64) as usize]
    }

    pub fn customer_is_resale(&self, customer: u64) -> bool {
        rng_for(self.seed, TAG_CUSTOMER, customer, 0).random_range(0..100) < 60
    }

    /// Distributors of one business region, in index order.
    fn distributors_in(&self, region: usize) -> Vec<&GenPartner> {
        self.partners
            .iter()
            .filter(|p| p.kind == PartnerType::Distributor && p.region == region)
            .collect()
    }

    pub fn partners_csv(&self) -> String {
        let mut out = String::from(
            "partner_id,name,partner_type,business_region,market,programme,joined_on,exited_on\n",
        );
        for p in &self.partners {
            let programme = if p.kind == PartnerType::SolutionProvider {
                "solution_provider"
            } else {
                "distribution"
            };
            out.push_str(&format!(
                "{},Partner {} Co. Ltd,{},{},{},{},{},{}\n",
                p.id(),
                p.index,
                p.kind,
                REGIONS[p.region].0,
                p.market(),
                programme,
                p.joined_on,
                p.exited_on.map(|d| d.to_string()).unwrap_or_default()
            ));
        }
        out
    }

    /// One open link per reseller; a fifth of them switch distributor during the first cycle
    /// (the old link ends the day before the new one starts: never two at once).
    pub fn links_csv(&self) -> String {
        let mut out = String::from("reseller_id,distributor_id,valid_from,valid_to\n");
        let start = self.chain_start.first_day();
        for p in self
            .partners
            .iter()
            .filter(|p| p.kind == PartnerType::Reseller)
        {
            let mut rng = rng_for(self.seed, TAG_LINK, p.index as u64, 0);
            let home = self.distributors_in(p.region);
            let first = home[rng.random_range(0..home.len())];
            if home.len() > 1 && rng.random_range(0..100) < 20 {
                let switch = add_days(start, rng.random_range(1..28));
                let second = home
                    .iter()
                    .find(|d| d.index != first.index)
                    .unwrap_or(&first);
                out.push_str(&format!(
                    "{},{},{},{}\n",
                    p.id(),
                    first.id(),
                    p.joined_on,
                    add_days(switch, -1)
                ));
                out.push_str(&format!("{},{},{},\n", p.id(), second.id(), switch));
            } else {
                out.push_str(&format!("{},{},{},\n", p.id(), first.id(), p.joined_on));
            }
        }
        out
    }

    pub fn tags_csv(&self) -> String {
        let mut out = String::from("partner_id,tag,valid_from,valid_to\n");
        let start = self.chain_start.first_day();
        for p in &self.partners {
            let mut rng = rng_for(self.seed, TAG_TAGS, p.index as u64, 0);
            let count = match rng.random_range(0..100) {
                0..55 => 0,
                55..80 => 1,
                80..95 => 2,
                _ => 3,
            };
            let mut used: Vec<&str> = Vec::new();
            for _ in 0..count {
                let tag = if rng.random_range(0..100) < 85 {
                    QUALIFYING_TAGS[rng.random_range(0..QUALIFYING_TAGS.len())]
                } else {
                    OTHER_TAGS[rng.random_range(0..OTHER_TAGS.len())]
                };
                if used.contains(&tag) {
                    continue;
                }
                used.push(tag);
                let from = add_days(start, rng.random_range(-700..25));
                let to = (rng.random_range(0..100) < 30)
                    .then(|| add_days(from.max(start), rng.random_range(0..60)));
                out.push_str(&format!(
                    "{},{},{},{}\n",
                    p.id(),
                    tag,
                    from,
                    to.map(|d| d.to_string()).unwrap_or_default()
                ));
            }
        }
        out
    }

    /// Projects near the subsidy thresholds (1,000,000 CNY / 125,000 USD), applied for before,
    /// during or after the first cycle, or not at all.
    pub fn projects_csv(&self) -> String {
        let mut out = String::from(
            "project_id,partner_id,market,registered_on,benefit_applied_on,annual_new_resource_amount,currency\n",
        );
        let start = self.chain_start.first_day();
        for p in &self.partners {
            let mut rng = rng_for(self.seed, TAG_PROJECT, p.index as u64, 0);
            let count = match rng.random_range(0..100) {
                0..60 => 0,
                60..90 => 1,
                _ => 2,
            };
            for n in 0..count {
                let threshold_cents: i64 = if p.market() == Market::Cn {
                    100_000_000
                } else {
                    12_500_000
                };
                let cents = match rng.random_range(0..100) {
                    0..10 => threshold_cents,
                    10..15 => threshold_cents - 1,
                    _ => {
                        threshold_cents * rng.random_range(80..130) / 100 + rng.random_range(0..100)
                    }
                };
                let currency = if rng.random_range(0..100) < 4 {
                    if p.currency() == "CNY" { "USD" } else { "CNY" }
                } else {
                    p.currency()
                };
                let registered = add_days(start, -rng.random_range(60..300));
                let applied = match rng.random_range(0..100) {
                    0..25 => None,
                    25..40 => Some(add_days(start, -rng.random_range(1..60))),
                    40..85 => Some(add_days(start, rng.random_range(0..28))),
                    _ => Some(add_days(start, rng.random_range(28..120))),
                };
                out.push_str(&format!(
                    "PRJ{:05}{},{},{},{},{},{}.{:02},{}\n",
                    p.index,
                    n,
                    p.id(),
                    p.market(),
                    registered,
                    applied.map(|d| d.to_string()).unwrap_or_default(),
                    cents / 100,
                    cents % 100,
                    currency
                ));
            }
        }
        out
    }

    /// A project id of the partner, for orders that belong to one.
    pub fn project_of(&self, partner: &GenPartner, pick: u32) -> Option<String> {
        let mut rng = rng_for(self.seed, TAG_PROJECT, partner.index as u64, 0);
        let count = match rng.random_range(0..100) {
            0..60 => 0,
            60..90 => 1,
            _ => 2,
        };
        (count > 0).then(|| format!("PRJ{:05}{}", partner.index, pick % count))
    }

    /// Opening lots, first cycle only: (partner, lot id, notified_on, balance in cents).
    pub fn opening_lots(&self) -> Vec<(usize, String, NaiveDate, i64)> {
        let mut lots = Vec::new();
        let start = self.chain_start;
        for p in &self.partners {
            let mut rng = rng_for(self.seed, TAG_LOT, p.index as u64, 0);
            if rng.random_range(0..100) >= 50 {
                continue;
            }
            let mut cycle = start;
            for n in 0..rng.random_range(1..4) {
                cycle = cycle.previous();
                let notified = add_days(cycle.next().first_day(), 9);
                lots.push((
                    p.index,
                    format!("LOT{:05}{}", p.index, n),
                    notified,
                    rng.random_range(10_000..5_000_000),
                ));
            }
        }
        lots
    }

    pub fn opening_balances_csv(&self) -> String {
        let mut out = String::from("partner_id,lot_id,notified_on,currency,balance\n");
        for (p, lot, notified, cents) in self.opening_lots() {
            let partner = &self.partners[p];
            out.push_str(&format!(
                "{},{},{},{},{}.{:02}\n",
                partner.id(),
                lot,
                notified,
                partner.currency(),
                cents / 100,
                cents % 100
            ));
        }
        out
    }
}

/// Formats cents as a decimal string.
pub fn cents(c: i64) -> String {
    let sign = if c < 0 { "-" } else { "" };
    format!("{sign}{}.{:02}", c.abs() / 100, c.abs() % 100)
}

impl World {
    /// Vouchers listed in cycle `k` of the chain: in the first, every voucher held at its start;
    /// later, only those issued during the cycle (the state carries the others).
    pub fn vouchers_csv(&self, cycle: Cycle, k: u32) -> String {
        let mut out = String::from(
            "voucher_id,partner_id,voucher_type,face_value,opening_balance,currency,issued_at,valid_from,expires_at,restricted_customer_id,service_scope\n",
        );
        let start = cycle.first_day();
        let types = ["poc_test", "marketing", "compensation"];
        let scopes = [
            "hws.service.type.ec2",
            "hws.service.type.evs",
            "hws.service.type.rds",
            "hws.service.type.obs",
        ];
        for p in self.partners.iter().filter(|p| p.holds_vouchers()) {
            let mut rng = rng_for(self.seed, TAG_VOUCHER, p.index as u64, u64::from(k));
            if rng.random_range(0..100) >= if k == 0 { 30 } else { 8 } {
                continue;
            }
            for n in 0..rng.random_range(1..4) {
                let face: i64 = rng.random_range(5..200) * 10_000;
                let opening = if k == 0 {
                    face * rng.random_range(20..=100) / 100
                } else {
                    face
                };
                let issued = if k == 0 {
                    add_days(start, -rng.random_range(10..300))
                } else {
                    add_days(start, rng.random_range(0..20))
                };
                let valid_from = if rng.random_range(0..100) < 10 {
                    add_days(cycle.next().first_day(), rng.random_range(1..40))
                } else {
                    issued
                };
                let expires = if rng.random_range(0..100) < 15 {
                    add_days(start, rng.random_range(0..31)).max(add_days(valid_from, 1))
                } else {
                    add_days(valid_from, rng.random_range(60..500))
                };
                let restricted = if rng.random_range(0..100) < 30 {
                    // A customer of this partner: c ≡ index (mod P).
                    let round =
                        rng.random_range(0..(self.customers / self.partners.len() as u64).max(1));
                    format!(
                        "C{:08}",
                        round * self.partners.len() as u64 + p.index as u64
                    )
                } else {
                    String::new()
                };
                let scope = if rng.random_range(0..100) < 30 {
                    let a = rng.random_range(0..scopes.len());
                    if rng.random_range(0..2) == 0 {
                        scopes[a].to_string()
                    } else {
                        format!("{};{}", scopes[a], scopes[(a + 1) % scopes.len()])
                    }
                } else {
                    String::new()
                };
                out.push_str(&format!(
                    "V{}{:05}{},{},{},{},{},{},{}T10:00:00+08:00,{}T10:00:00+08:00,{}T00:00:00+08:00,{},{}\n",
                    cycle.to_string().replace('-', ""),
                    p.index,
                    n,
                    p.id(),
                    types[rng.random_range(0..types.len())],
                    cents(face),
                    cents(opening),
                    p.currency(),
                    issued,
                    valid_from,
                    expires,
                    restricted,
                    scope
                ));
            }
        }
        out
    }

    /// Applications in cycle `k`, in every status. Approved and paid ones stay well inside the
    /// opening lots (a fifth of them, halving each cycle), so a generated chain never over-draws.
    pub fn withdrawals_csv(&self, cycle: Cycle, k: u32) -> String {
        let mut out = String::from(
            "application_id,partner_id,amount,currency,submitted_at,status,decided_at\n",
        );
        let mut per_partner: std::collections::BTreeMap<usize, i64> = Default::default();
        for (p, _, _, balance) in self.opening_lots() {
            *per_partner.entry(p).or_default() += balance;
        }
        let start = cycle.first_day();
        let statuses = ["submitted", "approved", "rejected", "revoked", "paid"];
        for (&p, &total) in &per_partner {
            let partner = &self.partners[p];
            if k > 0 && partner.exited_on.is_some() {
                continue;
            }
            let mut rng = rng_for(self.seed, TAG_WITHDRAWAL, p as u64, u64::from(k));
            let budget = total / 5 / (1 << k.min(20)) / 2;
            for n in 0..rng.random_range(0..3) {
                let status = statuses[rng.random_range(0..statuses.len())];
                let amount = rng.random_range(1..=budget.max(1)).min(budget.max(1));
                if budget < 1 {
                    break;
                }
                // From the 10th: the newest opening lot is notified on the 10th, and a
                // withdrawal may draw only on lots notified by the day it is submitted.
                let submitted = add_days(start, rng.random_range(9..25));
                let decided = if status == "submitted" {
                    String::new()
                } else {
                    format!(
                        "{}T16:00:00+08:00",
                        add_days(submitted, rng.random_range(1..4))
                    )
                };
                out.push_str(&format!(
                    "W{}{:05}{},{},{},{},{}T09:30:00+08:00,{},{}\n",
                    cycle.to_string().replace('-', ""),
                    p,
                    n,
                    partner.id(),
                    cents(amount),
                    partner.currency(),
                    submitted,
                    status,
                    decided
                ));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn first_cycle_withdrawals_draw_only_on_lots_notified_by_their_submission() {
        // A withdrawal may use only lots notified on or before its submission day (SPEC §4.9),
        // and a generated bundle loads with zero rejects (SPEC §7). The newest opening lot is
        // notified on the 10th of the chain's first month, so with 2 000 partners some have
        // that lot alone; a withdrawal submitted from the 1st to the 9th would be rejected.
        let cycle: Cycle = "2026-10".parse().unwrap();
        let world = World::new(7, 2_000, 40_000, cycle);
        let mut lots: BTreeMap<String, Vec<(NaiveDate, i64)>> = BTreeMap::new();
        for (p, _, notified, cents) in world.opening_lots() {
            lots.entry(world.partners[p].id())
                .or_default()
                .push((notified, cents));
        }
        let mut drawn: BTreeMap<String, i64> = BTreeMap::new();
        let csv = world.withdrawals_csv(cycle, 0);
        let mut checked = 0;
        for row in csv.lines().skip(1) {
            let f: Vec<&str> = row.split(',').collect();
            let (partner, amount, submitted, status) = (f[1], f[2], &f[4][..10], f[5]);
            if !matches!(status, "approved" | "paid") {
                continue;
            }
            let submitted: NaiveDate = submitted.parse().unwrap();
            let (units, hundredths) = amount.split_once('.').unwrap();
            let cents = units.parse::<i64>().unwrap() * 100 + hundredths.parse::<i64>().unwrap();
            let total = drawn.entry(partner.to_string()).or_default();
            *total += cents;
            let available: i64 = lots[partner]
                .iter()
                .filter(|(notified, _)| *notified <= submitted)
                .map(|(_, c)| c)
                .sum();
            assert!(
                *total <= available,
                "{row}: {total} cents drawn > {available} available"
            );
            checked += 1;
        }
        assert!(
            checked > 100,
            "enough withdrawals to mean something: {checked}"
        );
    }
}
