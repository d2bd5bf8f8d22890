//! The simulator's deterministic world: pools and cards generated from `(seed, index)`, and
//! their usage as a pure function of `(seed, target, date, world clock)`.
//!
//! Usage model (all values in KB, integers):
//! - every target has a full-day usage per date, from a hash of `(seed, target, date)`
//!   (weekends lighter); today's usage is that × the fraction of today elapsed on the API
//!   calendar, so counters grow with the world clock;
//! - a month's usage is the sum of its day usages (up to today); a cycle's usage (`useFlow`)
//!   is the sum of the day usages since the start of the current billing cycle (cycles of 1,
//!   3, 6 or 12 months aligned on January);
//! - pool `POOL-0001` is "hot": 90.5 % of its capacity is used at 00:00 of the first day of
//!   each month and the rest of the month stays below 100 %;
//! - pool usage before `rawAddTime` is zero; cards that start silent, shut down, protected or
//!   in liquidation never use data;
//! - a *runaway* card ([`World::with_runaway`]) uses, on top of its normal usage, `factor` ×
//!   its normal daily usage (at least 50 MB a day) spread evenly over world time from the
//!   moment it ran away until the network operation switches it off (again from when it is
//!   switched back on). Its pool's usage is not changed.
//!
//! Generation is O(pools + cards) and every answer is O(days in the cycle), so 200 pools and
//! 10,000 cards cost next to nothing.

use chrono::{DateTime, Datelike, Duration as ChronoDuration, NaiveDate, NaiveDateTime, Utc};
use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU8, Ordering};
use tibiot_api::calendar::{ApiCalendar, Month};
use tibiot_api::{CardDetail, CardStatusCount, EpiConfig, PackageInfo, PoolDetail, PoolMonthUsage};

/// KB in one GB.
const GB_KB: u64 = 1 << 20;
/// Share of the hot pool's capacity used at the start of each month.
const HOT_LUMP: f64 = 0.905;
/// Share of the hot pool's capacity used on average during the rest of the month.
const HOT_REST: f64 = 0.05;

/// The card statuses, in the order the first cards get them.
pub const FIRST_CARD_STATUSES: [u8; 7] = [8, 4, 1, 12, 16, 18, 99];

/// SplitMix64 finaliser.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn hash(seed: u64, a: u64, b: u64, c: u64) -> u64 {
    mix(mix(mix(seed ^ 0xA5A5_5A5A_0F0F_F0F0) ^ a) ^ b.rotate_left(17)) ^ mix(c)
}

/// A value in [0, 1) from a hash.
fn unit(h: u64) -> f64 {
    (h >> 11) as f64 / (1u64 << 53) as f64
}

/// Luhn check digit of a digit string.
fn luhn_digit(digits: &str) -> u8 {
    let mut sum = 0u32;
    for (i, b) in digits.bytes().rev().enumerate() {
        let mut d = u32::from(b - b'0');
        if i % 2 == 0 {
            d *= 2;
            if d > 9 {
                d -= 9;
            }
        }
        sum += d;
    }
    ((10 - sum % 10) % 10) as u8
}

/// What a target is, for hashing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Pool = 1,
    Card = 2,
}

/// One generated pool.
#[derive(Debug, Clone)]
pub struct Pool {
    pub code: String,
    pub name: String,
    pub name_en: String,
    /// 1 user, 2 usage billed, 3 unified pay.
    pub pool_type: u8,
    /// Months: 1, 3, 6 or 12.
    pub billing_cycle: u32,
    /// 1 valid, 2 invalid.
    pub status: u8,
    pub hot: bool,
    /// Average full-day usage, KB.
    pub daily_kb: f64,
    /// Capacity, KB.
    pub capacity_kb: u64,
    pub created: NaiveDateTime,
    pub package: PackageInfo,
}

/// One generated card.
#[derive(Debug, Clone)]
pub struct Card {
    pub iccid: String,
    pub imsi: String,
    pub msisdn: String,
    pub imei: Option<String>,
    pub apn: String,
    /// 0 unset, 1 package, 2 usage, 3 unified pay.
    pub billing_method: u8,
    pub initial_status: u8,
    /// Index of the pool the card is bound to.
    pub pool: Option<usize>,
    /// Average full-day usage, KB (0 for cards that never use data).
    pub daily_kb: f64,
    /// Capacity per cycle, KB.
    pub capacity_kb: u64,
}

/// Smallest normal daily usage a runaway factor multiplies, KB (50 MB).
const RUNAWAY_MIN_DAILY_KB: f64 = 50.0 * 1024.0;

/// A world-time interval `[start, end)`; `None`: still open.
type Interval = (DateTime<Utc>, Option<DateTime<Utc>>);

/// Extra usage of a runaway card.
#[derive(Debug)]
struct Runaway {
    kb_per_day: f64,
    /// Intervals of runaway usage; the last may be open.
    active: Mutex<Vec<Interval>>,
}

/// The generated world plus the cards' current statuses (changed by network operations).
#[derive(Debug)]
pub struct World {
    seed: u64,
    cal: ApiCalendar,
    pools: Vec<Pool>,
    cards: Vec<Card>,
    pool_index: HashMap<String, usize>,
    card_index: HashMap<String, usize>,
    pool_cards: Vec<Vec<u32>>,
    status: Vec<AtomicU8>,
    runaways: HashMap<usize, Runaway>,
}

const REGIONS: [&str; 8] = [
    "华东", "华南", "华北", "西南", "东北", "西北", "华中", "海外",
];
const REGIONS_EN: [&str; 8] = [
    "East China",
    "South China",
    "North China",
    "Southwest",
    "Northeast",
    "Northwest",
    "Central China",
    "Overseas",
];
const CHANNELS: [&str; 4] = [
    "中国移动 CMIOT",
    "中国联通 \"雁飞\"",
    "中国电信 CTWing",
    "TIBIOT 国际\\漫游",
];
const APNS: [&str; 3] = ["cmiot", "cmnet", "iot.tibiot.cn"];

impl World {
    /// Generates a world of `pools` pools and `cards` cards.
    pub fn generate(seed: u64, pools: usize, cards: usize, cal: ApiCalendar) -> Self {
        let pools: Vec<Pool> = (0..pools).map(|i| gen_pool(seed, i)).collect();
        let cards: Vec<Card> = (0..cards).map(|i| gen_card(seed, i, &pools)).collect();
        let mut pool_cards = vec![Vec::new(); pools.len()];
        for (i, c) in cards.iter().enumerate() {
            if let Some(p) = c.pool {
                pool_cards[p].push(i as u32);
            }
        }
        let pool_index = pools
            .iter()
            .enumerate()
            .map(|(i, p)| (p.code.clone(), i))
            .collect();
        let card_index = cards
            .iter()
            .enumerate()
            .map(|(i, c)| (c.iccid.clone(), i))
            .collect();
        let status = cards
            .iter()
            .map(|c| AtomicU8::new(c.initial_status))
            .collect();
        Self {
            seed,
            cal,
            pools,
            cards,
            pool_index,
            card_index,
            pool_cards,
            status,
            runaways: HashMap::new(),
        }
    }

    /// Makes card `i` run away from world time `since`: `factor` × its normal daily usage
    /// (at least 50 MB) on top of it, until it is switched off.
    pub fn with_runaway(mut self, i: usize, since: DateTime<Utc>, factor: f64) -> Self {
        if i < self.cards.len() {
            let kb_per_day = factor.max(0.0) * self.cards[i].daily_kb.max(RUNAWAY_MIN_DAILY_KB);
            self.runaways.insert(
                i,
                Runaway {
                    kb_per_day,
                    active: Mutex::new(vec![(since, None)]),
                },
            );
        }
        self
    }

    /// Applies a finished network operation on card `i` at world time `now`: normal (8) when
    /// switched on, shut down (4) when switched off; a runaway card stops (or resumes) its
    /// extra usage then.
    pub fn switch_card(&self, i: usize, on: bool, now: DateTime<Utc>) {
        self.set_card_status(i, if on { 8 } else { 4 });
        let Some(r) = self.runaways.get(&i) else {
            return;
        };
        let mut active = r.active.lock().unwrap_or_else(|e| e.into_inner());
        match active.last_mut() {
            Some((start, end @ None)) if !on => *end = Some(now.max(*start)),
            Some((_, Some(_))) | None if on => active.push((now, None)),
            _ => {}
        }
    }

    /// Extra KB a runaway card used on `date` up to `now`.
    fn runaway_kb(&self, i: usize, date: NaiveDate, now: DateTime<Utc>) -> f64 {
        let Some(r) = self.runaways.get(&i) else {
            return 0.0;
        };
        let start = self.cal.day_start(date) as f64;
        let end = (self.cal.day_end(date) as f64).min(now.timestamp_millis() as f64 / 1000.0);
        let secs = |t: DateTime<Utc>| t.timestamp_millis() as f64 / 1000.0;
        let active = r.active.lock().unwrap_or_else(|e| e.into_inner());
        let overlap: f64 = active
            .iter()
            .map(|(a, b)| {
                let from = secs(*a).max(start);
                let to = b.map(secs).unwrap_or(f64::INFINITY).min(end);
                (to - from).max(0.0)
            })
            .sum();
        r.kb_per_day * overlap / 86_400.0
    }

    pub fn calendar(&self) -> ApiCalendar {
        self.cal
    }

    pub fn pools(&self) -> &[Pool] {
        &self.pools
    }

    pub fn cards(&self) -> &[Card] {
        &self.cards
    }

    pub fn pool_idx(&self, code: &str) -> Option<usize> {
        self.pool_index.get(code).copied()
    }

    pub fn card_idx(&self, iccid: &str) -> Option<usize> {
        self.card_index.get(iccid).copied()
    }

    /// The current status of card `i`.
    pub fn card_status(&self, i: usize) -> u8 {
        self.status[i].load(Ordering::Relaxed)
    }

    /// Sets the status of card `i`.
    pub fn set_card_status(&self, i: usize, status: u8) {
        self.status[i].store(status, Ordering::Relaxed);
    }

    /// The fraction of `date` elapsed at `now` (0 before, 1 after).
    fn fraction(&self, date: NaiveDate, now: DateTime<Utc>) -> f64 {
        let start = self.cal.day_start(date) as f64;
        let t = now.timestamp_millis() as f64 / 1000.0;
        ((t - start) / 86_400.0).clamp(0.0, 1.0)
    }

    /// (lump, variable part) of a target's full-day usage on `date`.
    fn day_parts(&self, kind: Kind, i: usize, date: NaiveDate) -> (f64, f64) {
        let (daily, hot, cap) = match kind {
            Kind::Pool => {
                let p = &self.pools[i];
                if date < p.created.date() {
                    return (0.0, 0.0);
                }
                (p.daily_kb, p.hot, p.capacity_kb)
            }
            Kind::Card => (self.cards[i].daily_kb, false, 0),
        };
        let h = hash(
            self.seed,
            kind as u64,
            i as u64,
            date.num_days_from_ce() as u64,
        );
        let weekday = if date.weekday().number_from_monday() >= 6 {
            0.7
        } else {
            1.0
        };
        let var = daily * weekday * (0.5 + unit(h));
        let lump = if hot && date.day() == 1 {
            cap as f64 * HOT_LUMP
        } else {
            0.0
        };
        (lump, var)
    }

    /// Usage of one day at `now`: full for past days, partial today, 0 in the future.
    fn day_usage(&self, kind: Kind, i: usize, date: NaiveDate, now: DateTime<Utc>) -> u64 {
        self.day_usage_on(kind, i, date, self.cal.date_at(now), now)
    }

    /// [`Self::day_usage`] with `today` already known.
    fn day_usage_on(
        &self,
        kind: Kind,
        i: usize,
        date: NaiveDate,
        today: NaiveDate,
        now: DateTime<Utc>,
    ) -> u64 {
        if date > today {
            return 0;
        }
        let (lump, var) = self.day_parts(kind, i, date);
        let var = if date == today {
            (var * self.fraction(date, now)).floor()
        } else {
            var.floor()
        };
        let extra = match kind {
            Kind::Card => self.runaway_kb(i, date, now).floor(),
            Kind::Pool => 0.0,
        };
        lump as u64 + var as u64 + extra as u64
    }

    /// Sum of day usages from `from` to `to` (inclusive), days after today counting 0.
    fn sum_since(
        &self,
        kind: Kind,
        i: usize,
        from: NaiveDate,
        to: NaiveDate,
        now: DateTime<Utc>,
    ) -> u64 {
        let today = self.cal.date_at(now);
        let end = to.min(today);
        from.iter_days()
            .take_while(|d| *d <= end)
            .map(|d| self.day_usage_on(kind, i, d, today, now))
            .sum()
    }

    fn month_usage(&self, kind: Kind, i: usize, month: Month, now: DateTime<Utc>) -> u64 {
        let last = month.next_first_day() - ChronoDuration::days(1);
        self.sum_since(kind, i, month.first_day(), last, now)
    }

    /// The first and last day of the billing cycle of `cycle` months holding `date`.
    pub fn cycle_bounds(cycle: u32, date: NaiveDate) -> (NaiveDate, NaiveDate) {
        let cycle = cycle.clamp(1, 12);
        let m0 = date.month0() / cycle * cycle;
        let start = Month {
            year: date.year(),
            month: m0 + 1,
        };
        let end_month = Month {
            year: date.year(),
            month: (m0 + cycle).min(12),
        };
        (
            start.first_day(),
            end_month.next_first_day() - ChronoDuration::days(1),
        )
    }

    fn card_cycle(&self, i: usize) -> u32 {
        self.cards[i]
            .pool
            .map(|p| self.pools[p].billing_cycle)
            .unwrap_or(1)
    }

    // ---- pools ----

    /// Pool day usage, KB.
    pub fn pool_day_usage(&self, i: usize, date: NaiveDate, now: DateTime<Utc>) -> u64 {
        self.day_usage(Kind::Pool, i, date, now)
    }

    /// Pool month usage, KB.
    pub fn pool_month_usage(&self, i: usize, month: Month, now: DateTime<Utc>) -> u64 {
        self.month_usage(Kind::Pool, i, month, now)
    }

    /// Pool usage in the current billing cycle (`useFlow`), KB.
    pub fn pool_cycle_usage(&self, i: usize, now: DateTime<Utc>) -> u64 {
        let today = self.cal.date_at(now);
        let (start, end) = Self::cycle_bounds(self.pools[i].billing_cycle, today);
        self.sum_since(Kind::Pool, i, start, end, now)
    }

    /// The pool detail served at `now`.
    pub fn pool_detail(&self, i: usize, now: DateTime<Utc>) -> PoolDetail {
        let p = &self.pools[i];
        let today = self.cal.date_at(now);
        let mut counts: Vec<(u8, u32)> = Vec::new();
        for &c in &self.pool_cards[i] {
            let s = self.card_status(c as usize);
            match counts.iter_mut().find(|(st, _)| *st == s) {
                Some((_, n)) => *n += 1,
                None => counts.push((s, 1)),
            }
        }
        counts.sort();
        let (start, end) = Self::cycle_bounds(p.billing_cycle, today);
        let unified = p.pool_type == 3;
        PoolDetail {
            upool_code: Some(p.code.clone()),
            upool_name: Some(p.name.clone()),
            en_upool_name: Some(p.name_en.clone()),
            pool_type: Some(i64::from(p.pool_type)),
            use_flow: Some(self.pool_cycle_usage(i, now) as f64),
            total_flow: (p.pool_type != 2).then_some(p.capacity_kb as f64),
            billing_cycle: Some(i64::from(p.billing_cycle)),
            total_card: Some(self.pool_cards[i].len() as f64),
            raw_add_time: Some(p.created.format("%Y-%m-%d %H:%M:%S").to_string()),
            bind_card_status_count: counts
                .into_iter()
                .map(|(s, n)| CardStatusCount {
                    card_status: Some(i64::from(s)),
                    total: Some(f64::from(n)),
                })
                .collect(),
            package_info: Some(p.package.clone()),
            start_time: unified.then(|| start.format("%Y-%m-%d").to_string()),
            end_time: unified.then(|| end.format("%Y-%m-%d").to_string()),
            upool_status: Some(i64::from(p.status)),
        }
    }

    /// The pool month usage answer.
    pub fn pool_month_answer(&self, i: usize, month: Month, now: DateTime<Utc>) -> PoolMonthUsage {
        PoolMonthUsage {
            month: Some(month.to_string()),
            pool_code: Some(self.pools[i].code.clone()),
            use_flow_kb: Some(self.pool_month_usage(i, month, now) as f64),
        }
    }

    // ---- cards ----

    /// Card day usage, KB.
    pub fn card_day_usage(&self, i: usize, date: NaiveDate, now: DateTime<Utc>) -> u64 {
        self.day_usage(Kind::Card, i, date, now)
    }

    /// Card month usage, KB.
    pub fn card_month_usage(&self, i: usize, month: Month, now: DateTime<Utc>) -> u64 {
        self.month_usage(Kind::Card, i, month, now)
    }

    /// Card usage in the current billing cycle (`useFlow`), KB.
    pub fn card_cycle_usage(&self, i: usize, now: DateTime<Utc>) -> u64 {
        let today = self.cal.date_at(now);
        let (start, end) = Self::cycle_bounds(self.card_cycle(i), today);
        self.sum_since(Kind::Card, i, start, end, now)
    }

    /// The card detail served at `now`.
    pub fn card_detail(&self, i: usize, now: DateTime<Utc>) -> CardDetail {
        let c = &self.cards[i];
        let today = self.cal.date_at(now);
        CardDetail {
            iccid: Some(c.iccid.clone()),
            imei: c.imei.clone(),
            imsi: Some(c.imsi.clone()),
            msisdn: Some(c.msisdn.clone()),
            total_flow: (c.billing_method != 2).then_some(c.capacity_kb as f64),
            use_month_flow: Some(self.card_month_usage(i, Month::of(today), now) as f64),
            use_flow: Some(self.card_cycle_usage(i, now) as f64),
            billing_method: Some(i64::from(c.billing_method)),
            apn: Some(c.apn.clone()),
            card_status: Some(i64::from(self.card_status(i))),
        }
    }
}

fn gen_pool(seed: u64, i: usize) -> Pool {
    let h = |salt: u64| hash(seed, 0x100 + salt, i as u64, 0);
    // The first pools cover every special kind: 0 user + hot, 1 usage billed,
    // 2 unified pay, 3 invalid; then a mix.
    let pool_type: u8 = match i {
        0 | 3 => 1,
        1 => 2,
        2 => 3,
        _ => match h(1) % 10 {
            0..=5 => 1,
            6 | 7 => 2,
            _ => 3,
        },
    };
    let status = if i == 3 || (i > 3 && h(2) % 20 == 0) {
        2
    } else {
        1
    };
    let hot = i == 0;
    let billing_cycle = match (i, pool_type) {
        (0, _) => 1,
        (_, 3) => 12,
        _ => [1, 1, 1, 3, 6, 12][(h(3) % 6) as usize],
    };
    let region = (i + (seed as usize % REGIONS.len())) % REGIONS.len();
    let (name, name_en) = match i {
        0 => (
            "华东 \"主\" 池 \\ A".to_string(),
            "East China \"Main\" Pool \\ A".to_string(),
        ),
        4 => (
            format!("{} 测试池\n第二行", REGIONS[region]),
            format!("{} test pool\nsecond line", REGIONS_EN[region]),
        ),
        _ => {
            let kind = ["物联网池", "车联网 \"V2X\" 池", "表计\\抄表池", "共享池"][i % 4];
            let kind_en = [
                "IoT pool",
                "V2X \"car\" pool",
                "Meter\\reading pool",
                "Shared pool",
            ][i % 4];
            (
                format!("{} {} {}", REGIONS[region], kind, i + 1),
                format!("{} {} {}", REGIONS_EN[region], kind_en, i + 1),
            )
        }
    };
    // 1 GB .. 40 GB a day.
    let mut daily_kb = GB_KB as f64 * (1.0 + 39.0 * unit(h(4)));
    let capacity_kb = if hot {
        let cap = 500 * GB_KB;
        daily_kb = cap as f64 * HOT_REST / 30.0 / 0.914;
        cap
    } else {
        let fill = 0.3 + 0.55 * unit(h(5));
        let expected = daily_kb * 0.914 * 30.44 * f64::from(billing_cycle);
        let gb = (expected / fill / GB_KB as f64).ceil().max(1.0) as u64;
        gb * GB_KB
    };
    let created = NaiveDate::from_ymd_opt(2023, 1, 1)
        .expect("valid date")
        .and_hms_opt(0, 0, 0)
        .expect("valid time")
        + ChronoDuration::seconds((h(6) % (700 * 86_400)) as i64);
    let unit_name = if pool_type == 2 {
        ["KB", "MB", "GB", "TB"][(h(7) % 4) as usize]
    } else {
        "GB"
    };
    let n_configs = 1 + (h(8) % 3) as usize;
    let epi_configs = (0..n_configs)
        .map(|k| {
            let fen = 500 + (hash(seed, 0x200, i as u64, k as u64) % 20_000);
            EpiConfig {
                epi_config_code: Some(format!("EPC-{:04}-{}", i + 1, k + 1)),
                epi_code: Some(format!("EPI-{:04}", i + 1)),
                standard_charge: Some(fen as f64 / 100.0),
                real_fen_standard_charge: Some(fen as f64),
                epi_config_type: Some(k as i64 + 1),
                unit: Some(unit_name.to_string()),
            }
        })
        .collect();
    let package_name = match pool_type {
        1 => format!("物联网 {} GB \"月包\"", capacity_kb / GB_KB),
        2 => "按量计费 \\ 流量包".to_string(),
        _ => format!("统付池 {} 年包", created.year()),
    };
    Pool {
        code: format!("POOL-{:04}", i + 1),
        name,
        name_en,
        pool_type,
        billing_cycle,
        status,
        hot,
        daily_kb,
        capacity_kb,
        created,
        package: PackageInfo {
            flow_package_type: Some(i64::from(pool_type)),
            client_flow_package_name: Some(package_name),
            channel_name: Some(CHANNELS[(h(9) % CHANNELS.len() as u64) as usize].to_string()),
            epi_configs,
        },
    }
}

fn gen_card(seed: u64, i: usize, pools: &[Pool]) -> Card {
    let h = |salt: u64| hash(seed, 0x300 + salt, i as u64, 0);
    let s2 = seed % 100;
    let body = format!("898604{s2:02}{i:011}");
    let iccid = format!("{body}{}", luhn_digit(&body));
    let initial_status = if i < FIRST_CARD_STATUSES.len() {
        FIRST_CARD_STATUSES[i]
    } else {
        match h(1) % 100 {
            0..=69 => 8,
            70..=79 => 4,
            80..=84 => 1,
            85..=89 => 12,
            90..=94 => 16,
            95..=97 => 18,
            _ => 99,
        }
    };
    let pool = (!pools.is_empty()).then(|| i % pools.len());
    let billing_method = match pool.map(|p| pools[p].pool_type) {
        Some(2) => 2,
        Some(3) => 3,
        _ if i == 3 || h(2) % 20 == 0 => 0,
        _ => 1,
    };
    let uses_data = matches!(initial_status, 8 | 12 | 99);
    // 1 MB .. 200 MB a day.
    let daily_kb = if uses_data {
        1024.0 * (1.0 + 199.0 * unit(h(3)))
    } else {
        0.0
    };
    let cycle = pool.map(|p| pools[p].billing_cycle).unwrap_or(1);
    let capacity_kb = [1u64, 2, 5, 10, 20][(h(4) % 5) as usize] * GB_KB * u64::from(cycle);
    let imei = (initial_status != 1).then(|| {
        let body = format!("86{:012}", h(5) % 1_000_000_000_000);
        format!("{body}{}", luhn_digit(&body))
    });
    Card {
        iccid,
        imsi: format!("46004{s2:02}{:08}", i % 100_000_000),
        msisdn: format!("1064{s2:02}{:07}", i % 10_000_000),
        imei,
        apn: APNS[(h(6) % APNS.len() as u64) as usize].to_string(),
        billing_method,
        initial_status,
        pool,
        daily_kb,
        capacity_kb,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn world() -> World {
        World::generate(7, 8, 40, ApiCalendar::default())
    }

    #[test]
    fn first_pools_and_cards_cover_every_kind() {
        let w = World::generate(1, 4, 7, ApiCalendar::default());
        let types: Vec<u8> = w.pools().iter().map(|p| p.pool_type).collect();
        assert_eq!(types, [1, 2, 3, 1]);
        assert_eq!(w.pools()[3].status, 2);
        assert!(w.pools()[0].hot);
        let statuses: Vec<u8> = w.cards().iter().map(|c| c.initial_status).collect();
        assert_eq!(statuses, FIRST_CARD_STATUSES);
        let mut methods: Vec<u8> = w.cards().iter().map(|c| c.billing_method).collect();
        methods.sort();
        methods.dedup();
        assert_eq!(methods, [0, 1, 2, 3]);
        for c in w.cards() {
            assert_eq!(c.iccid.len(), 20);
            assert!(c.iccid.starts_with("8986"));
            assert!(c.iccid.bytes().all(|b| b.is_ascii_digit()));
        }
        assert_eq!(w.pools()[0].code, "POOL-0001");
        assert_eq!(w.pools()[0].name, "华东 \"主\" 池 \\ A");
    }

    #[test]
    fn deterministic_and_seed_dependent() {
        let now = Utc.with_ymd_and_hms(2026, 3, 10, 5, 0, 0).unwrap();
        let a = world();
        let b = world();
        let c = World::generate(8, 8, 40, ApiCalendar::default());
        assert_eq!(a.pool_detail(1, now), b.pool_detail(1, now));
        assert_ne!(a.cards()[0].iccid, c.cards()[0].iccid);
    }

    #[test]
    fn history_is_consistent_and_grows() {
        let w = world();
        let cal = w.calendar();
        let now = Utc.with_ymd_and_hms(2026, 3, 10, 5, 0, 0).unwrap();
        let today = cal.date_at(now);
        for i in 0..w.pools().len() {
            for m in cal.last_months(today, 12) {
                let days: u64 = m.days().map(|d| w.pool_day_usage(i, d, now)).sum();
                assert_eq!(days, w.pool_month_usage(i, m, now));
            }
            // monthly cycle: useFlow = this month's usage
            if w.pools()[i].billing_cycle == 1 {
                assert_eq!(
                    w.pool_cycle_usage(i, now),
                    w.pool_month_usage(i, Month::of(today), now)
                );
            }
            let later = now + ChronoDuration::hours(3);
            assert!(w.pool_cycle_usage(i, later) >= w.pool_cycle_usage(i, now));
        }
        // cards that use data grow during the day
        let c = (0..40).find(|&i| w.cards()[i].daily_kb > 0.0).unwrap();
        let later = now + ChronoDuration::hours(3);
        assert!(w.card_cycle_usage(c, later) > w.card_cycle_usage(c, now));
        assert_eq!(w.card_day_usage(c, today + ChronoDuration::days(1), now), 0);
    }

    #[test]
    fn hot_pool_stays_between_90_and_100_percent() {
        let w = world();
        let cap = w.pools()[0].capacity_kb as f64;
        let mut t = Utc.with_ymd_and_hms(2025, 12, 31, 16, 0, 1).unwrap();
        for _ in 0..(24 * 70) {
            let used = w.pool_cycle_usage(0, t) as f64;
            assert!(used > 0.9 * cap && used < cap, "{t}: {}", used / cap);
            t += ChronoDuration::hours(1);
        }
        let d = w.pool_detail(0, t);
        assert!(d.use_flow.unwrap() < d.total_flow.unwrap());
    }

    #[test]
    fn detail_fields() {
        let w = world();
        let now = Utc.with_ymd_and_hms(2026, 5, 10, 5, 0, 0).unwrap();
        let p = w.pool_detail(1, now);
        assert_eq!(p.pool_type, Some(2));
        assert_eq!(p.total_flow, None);
        let u = w.pool_detail(2, now);
        assert_eq!(u.start_time.as_deref(), Some("2026-01-01"));
        assert_eq!(u.end_time.as_deref(), Some("2026-12-31"));
        assert_eq!(w.pool_detail(3, now).upool_status, Some(2));
        let total: f64 = p
            .bind_card_status_count
            .iter()
            .filter_map(|c| c.total)
            .sum();
        assert_eq!(Some(total), p.total_card);
        let c = w.card_detail(1, now);
        assert_eq!(c.billing_method, Some(2));
        assert_eq!(c.total_flow, None);
        assert_eq!(
            World::cycle_bounds(3, parse("2026-05-10")),
            (parse("2026-04-01"), parse("2026-06-30"))
        );
        assert_eq!(
            World::cycle_bounds(12, parse("2026-05-10")).1,
            parse("2026-12-31")
        );
    }

    fn parse(s: &str) -> NaiveDate {
        tibiot_api::calendar::parse_day(s).unwrap()
    }

    #[test]
    fn a_runaway_card_uses_far_more_until_switched_off() {
        let since = Utc.with_ymd_and_hms(2026, 3, 10, 1, 0, 0).unwrap();
        let w = world().with_runaway(0, since, 100.0);
        let plain = world();
        let c = 0;
        let hour = ChronoDuration::hours(1);
        let used = |w: &World, t| w.card_cycle_usage(c, t) as f64;
        // Before: the same as without the knob.
        assert_eq!(used(&w, since), used(&plain, since));
        // One hour later: 100 × the normal daily usage / 24 on top.
        let extra = used(&w, since + hour) - used(&plain, since + hour);
        let want = 100.0 * w.cards()[c].daily_kb.max(RUNAWAY_MIN_DAILY_KB) / 24.0;
        assert!((extra - want).abs() <= 2.0, "{extra} vs {want}");
        // Switched off: the extra stops growing; switched on: it grows again.
        w.switch_card(c, false, since + hour);
        assert_eq!(w.card_status(c), 4);
        let at = |t| used(&w, t) - used(&plain, t);
        assert!((at(since + hour * 3) - extra).abs() <= 2.0);
        w.switch_card(c, true, since + hour * 3);
        assert!((at(since + hour * 4) - 2.0 * extra).abs() <= 4.0);
        // Other cards are untouched.
        assert_eq!(
            w.card_cycle_usage(1, since + hour * 4),
            plain.card_cycle_usage(1, since + hour * 4)
        );
    }

    #[test]
    fn large_world_is_cheap() {
        let w = World::generate(3, 200, 10_000, ApiCalendar::default());
        assert_eq!(w.cards().len(), 10_000);
        let mut seen = std::collections::HashSet::new();
        assert!(w.cards().iter().all(|c| seen.insert(c.iccid.clone())));
        assert_eq!(w.pool_idx("POOL-0200"), Some(199));
    }
}
