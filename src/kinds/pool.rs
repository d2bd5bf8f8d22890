//! The pool kind: a flow pool that cards share. Its targets are `accounts[].pools`; its detail
//! comes from the pool-detail endpoint every `collect.pool_ttl`, its history from the pool
//! day and month usage endpoints; its families are the `tibiot_pool_*` metrics
//! (docs/metrics.md).

use super::{Bounds, Kind, gauge, history, kb_to_bytes, sample, served};
use crate::collect::FetchCx;
use crate::config::{Account, CollectConfig, is_valid_pool_code};
use crate::metrics::expo::MetricType;
use crate::metrics::{Family, Served, Source};
use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tibiot_api::calendar::ApiCalendar;
use tibiot_api::{ApiError, CardStatus, Client, PoolDetail, PoolStatus, PoolType, Query, Subject};

/// The pool kind.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Pool;

/// A pool detail, ready to encode: label values as data (escaped only when written), numbers
/// in bytes.
#[derive(Debug, Clone, Default)]
pub(crate) struct PoolValues {
    pub(crate) name: Box<str>,
    pub(crate) name_en: Box<str>,
    /// The product's name of the pool type (`code_<n>` for an unknown code).
    pub(crate) type_label: Option<Cow<'static, str>>,
    pub(crate) billing_cycle: Box<str>,
    pub(crate) package: Box<str>,
    pub(crate) channel: Box<str>,
    pub(crate) used_bytes: Option<f64>,
    /// Absent for usage-billed pools and when `totalFlow` is missing.
    pub(crate) capacity_bytes: Option<f64>,
    pub(crate) cards: Option<f64>,
    /// Cards by status: one entry per reported status in the order first reported
    /// (duplicates summed), at most [`MAX_UNKNOWN_STATUSES`] unknown ones, then `other`.
    pub(crate) status_cards: Vec<(Cow<'static, str>, f64)>,
    pub(crate) valid: Option<f64>,
    pub(crate) start_ts: Option<f64>,
    pub(crate) end_ts: Option<f64>,
    pub(crate) created_ts: Option<f64>,
}

/// The most unknown card status codes (`code_<n>`) exported per pool: the lowest codes; the
/// cards of further codes are summed into `status="other"` (docs/metrics.md, "Bounds"). The
/// API knows seven statuses, all of which are always exported; a real pool reports a handful,
/// so the bound only ever meets a broken or hostile answer and is not configurable.
pub(crate) const MAX_UNKNOWN_STATUSES: usize = 24;

/// The `status` of the cards of the codes beyond [`MAX_UNKNOWN_STATUSES`].
const OTHER: &str = "other";

impl PoolValues {
    pub(crate) fn from_detail(d: &PoolDetail, cal: &ApiCalendar, bounds: &mut Bounds) -> Self {
        let type_label = d.pool_type.map(PoolType::label);
        let usage_billed = d.pool_type == Some(PoolType::UsageBilled.code());
        let pkg = d.package_info.as_ref();
        let day_start = |s: &Option<String>| {
            s.as_deref()
                .and_then(|s| cal.parse_timestamp(s))
                .and_then(|ts| chrono::DateTime::from_timestamp(ts, 0))
                .map(|dt| cal.day_start(cal.date_at(dt)) as f64)
        };
        Self {
            name: bounds.label("name", d.upool_name.as_deref()).into(),
            name_en: bounds.label("name_en", d.en_upool_name.as_deref()).into(),
            type_label,
            billing_cycle: d
                .billing_cycle
                .map(|c| c.to_string())
                .unwrap_or_default()
                .into(),
            package: bounds
                .label(
                    "package",
                    pkg.and_then(|p| p.client_flow_package_name.as_deref()),
                )
                .into(),
            channel: bounds
                .label("channel", pkg.and_then(|p| p.channel_name.as_deref()))
                .into(),
            used_bytes: d.use_flow.map(kb_to_bytes),
            capacity_bytes: if usage_billed {
                None
            } else {
                d.total_flow.map(kb_to_bytes)
            },
            cards: d.total_card,
            status_cards: status_cards(d, bounds),
            valid: d
                .upool_status
                .map(|s| (s == PoolStatus::Valid.code()) as u8 as f64),
            start_ts: day_start(&d.start_time),
            end_ts: day_start(&d.end_time),
            created_ts: d
                .raw_add_time
                .as_deref()
                .and_then(|s| cal.parse_timestamp(s))
                .map(|t| t as f64),
        }
    }
}

/// `bindCardStatusCount` by status name, in one pass: duplicates summed, in the order first
/// reported; known statuses always, the lowest [`MAX_UNKNOWN_STATUSES`] unknown codes as
/// `code_<n>`, the cards of the other codes summed into a last `other` entry.
fn status_cards(d: &PoolDetail, bounds: &mut Bounds) -> Vec<(Cow<'static, str>, f64)> {
    // code → (position of first report, cards)
    let mut sums: HashMap<i64, (usize, f64)> = HashMap::new();
    for s in &d.bind_card_status_count {
        let (Some(code), Some(total)) = (s.card_status, s.total) else {
            continue;
        };
        let next = sums.len();
        sums.entry(code).or_insert((next, 0.0)).1 += total;
    }
    let mut unknown: Vec<i64> = sums
        .keys()
        .copied()
        .filter(|c| CardStatus::from_code(*c).is_none())
        .collect();
    let mut other: Option<f64> = None;
    if unknown.len() > MAX_UNKNOWN_STATUSES {
        // The lowest codes stay; selecting them is linear.
        unknown.select_nth_unstable(MAX_UNKNOWN_STATUSES);
        for code in &unknown[MAX_UNKNOWN_STATUSES..] {
            if let Some((_, cards)) = sums.remove(code) {
                *other.get_or_insert(0.0) += cards;
            }
        }
        bounds.folded(unknown.len() - MAX_UNKNOWN_STATUSES);
    }
    let mut kept: Vec<(usize, i64, f64)> = sums
        .into_iter()
        .map(|(code, (at, cards))| (at, code, cards))
        .collect();
    kept.sort_unstable_by_key(|k| k.0);
    let mut out: Vec<(Cow<'static, str>, f64)> = kept
        .into_iter()
        .map(|(_, code, cards)| (CardStatus::label(code), cards))
        .collect();
    if let Some(cards) = other {
        out.push((Cow::Borrowed(OTHER), cards));
    }
    out
}

impl Kind for Pool {
    const NAME: &'static str = "pool";
    const HISTORY_NAME: &'static str = "pool_history";
    const ID_LABEL: &'static str = "pool";
    const ID_FORM: &'static str = "pool code (1-64 of A-Z a-z 0-9 - _ .)";
    const SUBJECT: Subject = Subject::Pool;
    const FAMILIES: &'static [Family] = FAMILIES;
    const DAILY: &'static Family = &DAILY;
    const MONTHLY: &'static Family = &MONTHLY;
    type Values = PoolValues;

    fn configured(account: &Account) -> &[Arc<str>] {
        &account.pools
    }

    fn ttl(c: &CollectConfig) -> Duration {
        c.pool_ttl
    }

    fn history_window(c: &CollectConfig) -> (u32, u32) {
        (c.history.pool_days, c.history.pool_months)
    }

    fn is_valid_id(id: &str) -> bool {
        is_valid_pool_code(id)
    }

    async fn fetch(client: &Client, id: &str, cx: &FetchCx<'_>) -> Result<PoolValues, ApiError> {
        let d = client.get(Query::pool_detail(id), cx.deadline).await?;
        let mut bounds = Bounds::default();
        let values = PoolValues::from_detail(&d, &cx.calendar, &mut bounds);
        bounds.report::<Pool>(cx, id);
        Ok(values)
    }
}

const LABELS: &[&str] = &["account", "pool"];

/// The day-usage history family (also written by the backfill).
const DAILY: Family = Family {
    name: "tibiot_pool_daily_usage_bytes",
    help: "Flow used by the pool on one day of the API calendar, bytes, for the last collect.history.pool_days days. Closed days are fetched once and cached; today is refreshed after collect.history_ttl.",
    typ: MetricType::Gauge,
    labels: &["account", "pool", "date"],
    served: Served::Both,
    source: Source::Snapshot(history::<Pool, false>),
};

/// The month-usage history family (also written by the backfill).
const MONTHLY: Family = Family {
    name: "tibiot_pool_monthly_usage_bytes",
    help: "Flow used by the pool in one month of the API calendar, bytes, for the last collect.history.pool_months months. Closed months are fetched once and cached; this month is refreshed after collect.history_ttl.",
    typ: MetricType::Gauge,
    labels: &["account", "pool", "month"],
    served: Served::Both,
    source: Source::Snapshot(history::<Pool, true>),
};

/// The pool families, in exposition order.
static FAMILIES: &[Family] = &[
    Family {
        name: "tibiot_pool_info",
        help: "Flow pool details (value 1). From pool detail; may come from the cache (up to collect.pool_ttl old, kept up to collect.stale_after after failures).",
        typ: MetricType::Info,
        labels: &[
            "account",
            "pool",
            "name",
            "name_en",
            "type",
            "billing_cycle_months",
            "package",
            "channel",
        ],
        served: Served::Both,
        source: Source::Snapshot(|snap, w| {
            for (t, v) in served::<Pool>(snap) {
                let info = [
                    ("name", &*v.name),
                    ("name_en", &*v.name_en),
                    ("type", v.type_label.as_deref().unwrap_or("")),
                    ("billing_cycle_months", &*v.billing_cycle),
                    ("package", &*v.package),
                    ("channel", &*v.channel),
                ];
                sample::<Pool>(w, t, &info, 1.0);
            }
        }),
    },
    Family {
        name: "tibiot_pool_used_bytes",
        help: "Flow used by the pool in its current cycle, bytes (useFlow KB x 1024). May come from the cache (up to collect.pool_ttl old, kept up to collect.stale_after after failures).",
        typ: MetricType::Gauge,
        labels: LABELS,
        served: Served::Both,
        source: Source::Snapshot(|snap, w| gauge::<Pool>(snap, w, |v| v.used_bytes)),
    },
    Family {
        name: "tibiot_pool_capacity_bytes",
        help: "Total flow of the pool, bytes (totalFlow KB x 1024); absent for usage_billed pools and when not reported. May come from the cache.",
        typ: MetricType::Gauge,
        labels: LABELS,
        served: Served::Both,
        source: Source::Snapshot(|snap, w| gauge::<Pool>(snap, w, |v| v.capacity_bytes)),
    },
    Family {
        name: "tibiot_pool_cards",
        help: "Cards in the pool (totalCard). May come from the cache.",
        typ: MetricType::Gauge,
        labels: LABELS,
        served: Served::Both,
        source: Source::Snapshot(|snap, w| gauge::<Pool>(snap, w, |v| v.cards)),
    },
    Family {
        name: "tibiot_pool_status_cards",
        help: "Cards in the pool by card status (bindCardStatusCount), one series per reported status (at most 24 unknown codes as code_<n>, the cards of further codes summed into status=\"other\"). May come from the cache.",
        typ: MetricType::Gauge,
        labels: &["account", "pool", "status"],
        served: Served::Both,
        source: Source::Snapshot(|snap, w| {
            for (t, v) in served::<Pool>(snap) {
                for (status, n) in &v.status_cards {
                    sample::<Pool>(w, t, &[("status", status)], *n);
                }
            }
        }),
    },
    Family {
        name: "tibiot_pool_valid",
        help: "1 when the pool is valid (upoolStatus 1), else 0. May come from the cache.",
        typ: MetricType::Gauge,
        labels: LABELS,
        served: Served::Both,
        source: Source::Snapshot(|snap, w| gauge::<Pool>(snap, w, |v| v.valid)),
    },
    Family {
        name: "tibiot_pool_start_timestamp_seconds",
        help: "Start of the pool's start day on the API calendar, unix seconds (startTime), when reported. May come from the cache.",
        typ: MetricType::Gauge,
        labels: LABELS,
        served: Served::Both,
        source: Source::Snapshot(|snap, w| gauge::<Pool>(snap, w, |v| v.start_ts)),
    },
    Family {
        name: "tibiot_pool_end_timestamp_seconds",
        help: "Start of the pool's end day on the API calendar, unix seconds (endTime), when reported. May come from the cache.",
        typ: MetricType::Gauge,
        labels: LABELS,
        served: Served::Both,
        source: Source::Snapshot(|snap, w| gauge::<Pool>(snap, w, |v| v.end_ts)),
    },
    Family {
        name: "tibiot_pool_created_timestamp_seconds",
        help: "When the pool was created, unix seconds (rawAddTime). May come from the cache.",
        typ: MetricType::Gauge,
        labels: LABELS,
        served: Served::Both,
        source: Source::Snapshot(|snap, w| gauge::<Pool>(snap, w, |v| v.created_ts)),
    },
    DAILY,
    MONTHLY,
];

#[cfg(test)]
mod tests {
    use super::*;
    use tibiot_api::{CardStatusCount, PackageInfo};

    #[test]
    fn pool_values() {
        let cal = ApiCalendar::default();
        let count = |code, total| CardStatusCount {
            card_status: Some(code),
            total: Some(total),
        };
        let d = PoolDetail {
            upool_name: Some("池 \"A\"".into()),
            pool_type: Some(2),
            use_flow: Some(1.5),
            total_flow: Some(100.0),
            billing_cycle: Some(3),
            total_card: Some(4.0),
            bind_card_status_count: vec![count(8, 2.0), count(77, 1.0), count(8, 1.0)],
            package_info: Some(PackageInfo {
                channel_name: Some("ch".into()),
                ..Default::default()
            }),
            start_time: Some("2026-01-01 12:30:00".into()),
            upool_status: Some(2),
            ..Default::default()
        };
        let v = PoolValues::from_detail(&d, &cal, &mut Bounds::default());
        assert_eq!(v.used_bytes, Some(1536.0));
        assert_eq!(v.capacity_bytes, None, "usage_billed has no capacity");
        assert_eq!(
            v.status_cards,
            vec![
                (Cow::Borrowed("normal"), 3.0),
                (Cow::Owned("code_77".into()), 1.0)
            ]
        );
        assert_eq!(v.valid, Some(0.0));
        assert_eq!(v.start_ts, Some(1_767_196_800.0));
        assert_eq!(&*v.name, "池 \"A\"", "label values are kept as data");
        assert_eq!(v.type_label.as_deref(), Some("usage_billed"));
        assert_eq!(&*v.billing_cycle, "3");
        assert_eq!(&*v.channel, "ch");
    }

    #[test]
    fn statuses_and_names_are_bounded() {
        let cal = ApiCalendar::default();
        let count = |code, total| CardStatusCount {
            card_status: Some(code),
            total: Some(total),
        };
        // 100,000 distinct codes (the seven known ones among them), in reverse, one card
        // each, and code 8 once more; a name of 1 MiB of three-byte characters.
        let mut statuses: Vec<CardStatusCount> =
            (1..=100_000).rev().map(|c| count(c, 1.0)).collect();
        statuses.push(count(8, 2.0));
        let d = PoolDetail {
            upool_name: Some("池".repeat(1 << 19)),
            bind_card_status_count: statuses,
            ..Default::default()
        };
        let mut bounds = Bounds::default();
        let v = PoolValues::from_detail(&d, &cal, &mut bounds);
        let known = CardStatus::ALL.len();
        assert_eq!(v.status_cards.len(), known + MAX_UNKNOWN_STATUSES + 1);
        let total: f64 = v.status_cards.iter().map(|s| s.1).sum();
        assert_eq!(total, 100_002.0, "no card is lost");
        for s in CardStatus::ALL {
            assert!(v.status_cards.iter().any(|(n, _)| n == s.name()), "{s:?}");
        }
        assert!(
            v.status_cards
                .iter()
                .any(|(n, c)| n == "normal" && *c == 3.0)
        );
        // The lowest unknown codes stay: 2, 3, 5, 6, 7, 9, …
        assert!(v.status_cards.iter().any(|(n, _)| n == "code_2"));
        assert!(!v.status_cards.iter().any(|(n, _)| n == "code_99999"));
        let other = v.status_cards.last().unwrap();
        assert_eq!(other.0, "other");
        let folded = 100_000 - known - MAX_UNKNOWN_STATUSES;
        assert_eq!(other.1, folded as f64);
        assert_eq!(bounds.folded, folded);
        assert!(
            v.name.len() <= super::super::MAX_LABEL_BYTES,
            "{}",
            v.name.len()
        );
        assert!(v.name.ends_with(super::super::TRUNCATED));
        assert!(v.name.starts_with("池池"));
        assert_eq!(bounds.truncated, vec![("name", 3 << 19)]);
        // Within the bounds nothing is cut or folded.
        let mut bounds = Bounds::default();
        let small = PoolDetail {
            upool_name: Some("n".repeat(super::super::MAX_LABEL_BYTES)),
            // six known codes and 24 unknown ones
            bind_card_status_count: (1..=30).map(|c| count(c, 1.0)).collect(),
            ..Default::default()
        };
        let v = PoolValues::from_detail(&small, &cal, &mut bounds);
        assert_eq!(v.status_cards.len(), 30);
        assert!(bounds.truncated.is_empty() && bounds.folded == 0);
        assert_eq!(v.name.len(), super::super::MAX_LABEL_BYTES);
    }
}
