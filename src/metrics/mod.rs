//! The metric families (docs/metrics.md), declared once in [`FAMILIES`]: name, help, type, label
//! names, where they are served and how their samples are read from a [`Snapshot`] — in the
//! style of kube-state-metrics' generators. [`encode`] walks the table; the README's metric
//! reference is checked against it (`tests/exporter_readme.rs`).
//!
//! Encoding is hand-written ([`expo`]) rather than prometheus-client's registry encoders:
//! the target families are read straight from the snapshot with label fragments escaped once
//! at fetch time, which keeps a warm 10,000-card scrape far below the 60 ms budget;
//! prometheus-client's encoders serve as the reference the unit tests compare against.

pub mod api_stats;
pub mod expo;
pub mod process;

use crate::collect::{Kind, Snapshot, TargetSnap};
use api_stats::{ApiStats, BUCKET_LABELS, COLLECTED_ENDPOINTS};
use expo::{Format, MetricType, Writer};
use process::ProcessStats;
use std::sync::Arc;
use tibiot_api::{CardStatus, Outcome};

/// Where a family is served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Served {
    /// `/metrics` and `/probe`.
    Both,
    /// `/metrics` only (exporter self-metrics and the scrape duration).
    Metrics,
    /// `/probe` only.
    Probe,
}

/// The exporter's own state for the self-metrics.
#[derive(Debug, Clone, Default)]
pub struct SelfMetrics {
    pub reload_ok: bool,
    pub reload_success_time: Option<f64>,
    pub stats: Vec<Arc<ApiStats>>,
    pub process: ProcessStats,
}

/// What the readers see.
pub struct Ctx<'a> {
    pub snap: &'a Snapshot,
    pub me: Option<&'a SelfMetrics>,
}

/// One metric family.
pub struct Family {
    pub name: &'static str,
    pub help: &'static str,
    pub typ: MetricType,
    /// Label names, in the order written (`le` of histograms is implied).
    pub labels: &'static [&'static str],
    pub served: Served,
    pub read: fn(&Ctx<'_>, &mut Writer<'_>),
}

impl std::fmt::Debug for Family {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Family").field("name", &self.name).finish()
    }
}

const TARGET_POOL: &[&str] = &["account", "pool"];
const TARGET_CARD: &[&str] = &["account", "iccid"];

/// Version and revision of this build.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
pub const REVISION: &str = match option_env!("TIBIOT_REVISION") {
    Some(r) => r,
    None => "unknown",
};

macro_rules! pool_gauge {
    ($name:literal, $help:literal, $field:ident) => {
        Family {
            name: $name,
            help: $help,
            typ: MetricType::Gauge,
            labels: TARGET_POOL,
            served: Served::Both,
            read: |c, w| {
                for p in c.snap.pools() {
                    if let Some(v) = p.value.as_ref().and_then(|v| v.value.$field) {
                        w.sample(&p.target.labels, &[], v);
                    }
                }
            },
        }
    };
}

macro_rules! card_gauge {
    ($name:literal, $help:literal, $field:ident) => {
        Family {
            name: $name,
            help: $help,
            typ: MetricType::Gauge,
            labels: TARGET_CARD,
            served: Served::Both,
            read: |c, w| {
                for p in c.snap.cards() {
                    if let Some(v) = p.value.as_ref().and_then(|v| v.value.$field) {
                        w.sample(&p.target.labels, &[], v);
                    }
                }
            },
        }
    };
}

fn history_samples<'a, V: 'a>(
    c: &Ctx<'_>,
    w: &mut Writer<'_>,
    targets: impl Iterator<Item = &'a TargetSnap<V>>,
    months: bool,
) {
    let label = if months { "month" } else { "date" };
    for t in targets {
        let Some((view, _)) = &t.history else {
            continue;
        };
        let points = if months { &view.months } else { &view.days };
        for p in points {
            if p.served(c.snap.now, c.snap.stale_after) {
                w.sample(&t.target.labels, &[(label, &p.label)], p.bytes);
            }
        }
    }
}

fn health_samples(c: &Ctx<'_>, w: &mut Writer<'_>, success: bool) {
    for a in &c.snap.accounts {
        let acc = &*a.rt.label;
        let mut emit = |kind: Kind, id: &str, h: &crate::collect::Health| {
            if success {
                w.sample(
                    acc,
                    &[("kind", kind.as_str()), ("target", id)],
                    h.ok as u8 as f64,
                );
            } else if let Some(ts) = h.last_success {
                w.sample(acc, &[("kind", kind.as_str()), ("target", id)], ts);
            }
        };
        for p in &a.pools {
            emit(Kind::Pool, &p.target.id, &p.health);
        }
        for p in &a.pools {
            if let Some((_, h)) = &p.history {
                emit(Kind::PoolHistory, &p.target.id, h);
            }
        }
        for t in &a.cards {
            emit(Kind::Card, &t.target.id, &t.health);
        }
        for t in &a.cards {
            if let Some((_, h)) = &t.history {
                emit(Kind::CardHistory, &t.target.id, h);
            }
        }
    }
}

fn process_gauge(c: &Ctx<'_>, w: &mut Writer<'_>, f: fn(&ProcessStats) -> Option<f64>) {
    if let Some(v) = c.me.and_then(|m| f(&m.process)) {
        w.sample("", &[], v);
    }
}

/// Every family, in exposition order.
pub static FAMILIES: &[Family] = &[
    // ---- pools
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
        read: |c, w| {
            for p in c.snap.pools() {
                if let Some(v) = &p.value {
                    w.sample2(&p.target.labels, &v.value.info, &[], 1.0);
                }
            }
        },
    },
    pool_gauge!(
        "tibiot_pool_used_bytes",
        "Flow used by the pool in its current cycle, bytes (useFlow KB x 1024). May come from the cache (up to collect.pool_ttl old, kept up to collect.stale_after after failures).",
        used_bytes
    ),
    pool_gauge!(
        "tibiot_pool_capacity_bytes",
        "Total flow of the pool, bytes (totalFlow KB x 1024); absent for usage_billed pools and when not reported. May come from the cache.",
        capacity_bytes
    ),
    pool_gauge!(
        "tibiot_pool_cards",
        "Cards in the pool (totalCard). May come from the cache.",
        cards
    ),
    Family {
        name: "tibiot_pool_status_cards",
        help: "Cards in the pool by card status (bindCardStatusCount), one series per reported status. May come from the cache.",
        typ: MetricType::Gauge,
        labels: &["account", "pool", "status"],
        served: Served::Both,
        read: |c, w| {
            for p in c.snap.pools() {
                if let Some(v) = &p.value {
                    for (status, n) in &v.value.status_cards {
                        w.sample(&p.target.labels, &[("status", status)], *n);
                    }
                }
            }
        },
    },
    pool_gauge!(
        "tibiot_pool_valid",
        "1 when the pool is valid (upoolStatus 1), else 0. May come from the cache.",
        valid
    ),
    pool_gauge!(
        "tibiot_pool_start_timestamp_seconds",
        "Start of the pool's start day on the API calendar, unix seconds (startTime), when reported. May come from the cache.",
        start_ts
    ),
    pool_gauge!(
        "tibiot_pool_end_timestamp_seconds",
        "Start of the pool's end day on the API calendar, unix seconds (endTime), when reported. May come from the cache.",
        end_ts
    ),
    pool_gauge!(
        "tibiot_pool_created_timestamp_seconds",
        "When the pool was created, unix seconds (rawAddTime). May come from the cache.",
        created_ts
    ),
    Family {
        name: "tibiot_pool_daily_usage_bytes",
        help: "Flow used by the pool on one day of the API calendar, bytes, for the last collect.history.pool_days days. Closed days are fetched once and cached; today is refreshed after collect.history_ttl.",
        typ: MetricType::Gauge,
        labels: &["account", "pool", "date"],
        served: Served::Both,
        read: |c, w| history_samples(c, w, c.snap.pools(), false),
    },
    Family {
        name: "tibiot_pool_monthly_usage_bytes",
        help: "Flow used by the pool in one month of the API calendar, bytes, for the last collect.history.pool_months months. Closed months are fetched once and cached; this month is refreshed after collect.history_ttl.",
        typ: MetricType::Gauge,
        labels: &["account", "pool", "month"],
        served: Served::Both,
        read: |c, w| history_samples(c, w, c.snap.pools(), true),
    },
    // ---- cards
    Family {
        name: "tibiot_card_info",
        help: "SIM card details (value 1). From card detail; may come from the cache (up to collect.card_ttl old, kept up to collect.stale_after after failures).",
        typ: MetricType::Info,
        labels: &[
            "account",
            "iccid",
            "imsi",
            "msisdn",
            "imei",
            "apn",
            "billing_method",
        ],
        served: Served::Both,
        read: |c, w| {
            for t in c.snap.cards() {
                if let Some(v) = &t.value {
                    w.sample2(&t.target.labels, &v.value.info, &[], 1.0);
                }
            }
        },
    },
    Family {
        name: "tibiot_card_status",
        help: "Card status as a state set: one series per known status, 1 for the current one (an unknown code adds code_<n> = 1). May come from the cache.",
        typ: MetricType::StateSet,
        labels: &["account", "iccid", "status"],
        served: Served::Both,
        read: |c, w| {
            for t in c.snap.cards() {
                let Some(code) = t.value.as_ref().and_then(|v| v.value.status) else {
                    continue;
                };
                for s in CardStatus::ALL {
                    w.sample(
                        &t.target.labels,
                        &[("status", s.name())],
                        (s.code() == code) as u8 as f64,
                    );
                }
                if CardStatus::from_code(code).is_none() {
                    w.sample(
                        &t.target.labels,
                        &[("status", &CardStatus::label(code))],
                        1.0,
                    );
                }
            }
        },
    },
    card_gauge!(
        "tibiot_card_cycle_usage_bytes",
        "Flow used by the card in its current billing cycle, bytes (useFlow KB x 1024). May come from the cache.",
        cycle_bytes
    ),
    card_gauge!(
        "tibiot_card_month_usage_bytes",
        "Flow used by the card this month, bytes (useMonthFlow KB x 1024). May come from the cache.",
        month_bytes
    ),
    card_gauge!(
        "tibiot_card_capacity_bytes",
        "Total flow of the card, bytes (totalFlow KB x 1024); absent for billing method usage and when not reported. May come from the cache.",
        capacity_bytes
    ),
    Family {
        name: "tibiot_card_daily_usage_bytes",
        help: "Flow used by the card on one day of the API calendar, bytes, for the last collect.history.card_days days. Closed days are fetched once and cached; today is refreshed after collect.history_ttl.",
        typ: MetricType::Gauge,
        labels: &["account", "iccid", "date"],
        served: Served::Both,
        read: |c, w| history_samples(c, w, c.snap.cards(), false),
    },
    Family {
        name: "tibiot_card_monthly_usage_bytes",
        help: "Flow used by the card in one month of the API calendar, bytes, for the last collect.history.card_months months. Closed months are fetched once and cached; this month is refreshed after collect.history_ttl.",
        typ: MetricType::Gauge,
        labels: &["account", "iccid", "month"],
        served: Served::Both,
        read: |c, w| history_samples(c, w, c.snap.cards(), true),
    },
    // ---- collection health
    Family {
        name: "tibiot_up",
        help: "1 when the account's latest upstream request succeeded, else 0.",
        typ: MetricType::Gauge,
        labels: &["account"],
        served: Served::Both,
        read: |c, w| {
            for a in &c.snap.accounts {
                if let Some(up) = a.up {
                    w.sample(&a.rt.label, &[], up as u8 as f64);
                }
            }
        },
    },
    Family {
        name: "tibiot_collect_success",
        help: "1 when the latest fetch of the target succeeded in time, else 0 (kind: pool, card, pool_history, card_history). Values of a failed target are served from the cache until collect.stale_after.",
        typ: MetricType::Gauge,
        labels: &["account", "kind", "target"],
        served: Served::Both,
        read: |c, w| health_samples(c, w, true),
    },
    Family {
        name: "tibiot_collect_last_success_timestamp_seconds",
        help: "When the served values of the target were fetched, unix seconds (for history: the latest successful period fetch).",
        typ: MetricType::Gauge,
        labels: &["account", "kind", "target"],
        served: Served::Both,
        read: |c, w| health_samples(c, w, false),
    },
    Family {
        name: "tibiot_scrape_duration_seconds",
        help: "Time this scrape spent collecting, seconds (close to 0 when everything came from the cache).",
        typ: MetricType::Gauge,
        labels: &[],
        served: Served::Metrics,
        read: |c, w| {
            if let Some(d) = c.snap.scrape_duration {
                w.sample("", &[], d);
            }
        },
    },
    Family {
        name: "tibiot_probe_success",
        help: "1 when every fetch of the probed target succeeded in time, else 0.",
        typ: MetricType::Gauge,
        labels: &[],
        served: Served::Probe,
        read: |c, w| {
            if let Some(p) = c.snap.probe {
                w.sample("", &[], p.success as u8 as f64);
            }
        },
    },
    Family {
        name: "tibiot_probe_duration_seconds",
        help: "Time the probe took, seconds.",
        typ: MetricType::Gauge,
        labels: &[],
        served: Served::Probe,
        read: |c, w| {
            if let Some(p) = c.snap.probe {
                w.sample("", &[], p.duration);
            }
        },
    },
    // ---- exporter self-metrics
    Family {
        name: "tibiot_exporter_build_info",
        help: "Version and revision of the exporter (value 1).",
        typ: MetricType::Info,
        labels: &["version", "revision"],
        served: Served::Metrics,
        read: |c, w| {
            if c.me.is_some() {
                w.sample("", &[("version", VERSION), ("revision", REVISION)], 1.0);
            }
        },
    },
    Family {
        name: "tibiot_api_requests_total",
        help: "Upstream HTTP requests (every attempt, retries included) by endpoint and outcome.",
        typ: MetricType::Counter,
        labels: &["account", "endpoint", "outcome"],
        served: Served::Metrics,
        read: |c, w| {
            for s in c.me.map(|m| m.stats.as_slice()).unwrap_or_default() {
                for e in COLLECTED_ENDPOINTS {
                    for o in Outcome::ALL {
                        w.sample(
                            &s.label,
                            &[("endpoint", e.name()), ("outcome", o.as_str())],
                            s.requests(e, o) as f64,
                        );
                    }
                }
            }
        },
    },
    Family {
        name: "tibiot_api_request_duration_seconds",
        help: "Duration of upstream HTTP requests (every attempt), seconds.",
        typ: MetricType::Histogram,
        labels: &["account", "endpoint"],
        served: Served::Metrics,
        read: |c, w| {
            for s in c.me.map(|m| m.stats.as_slice()).unwrap_or_default() {
                for e in COLLECTED_ENDPOINTS {
                    let (buckets, count, sum) = s.histogram(e);
                    let ep = [("endpoint", e.name())];
                    for (i, le) in BUCKET_LABELS.iter().enumerate() {
                        w.sample_full(
                            "_bucket",
                            &s.label,
                            "",
                            &[ep[0], ("le", le)],
                            buckets[i] as f64,
                        );
                    }
                    w.sample_full(
                        "_bucket",
                        &s.label,
                        "",
                        &[ep[0], ("le", "+Inf")],
                        count as f64,
                    );
                    w.sample_full("_sum", &s.label, "", &ep, sum);
                    w.sample_full("_count", &s.label, "", &ep, count as f64);
                }
            }
        },
    },
    Family {
        name: "tibiot_exporter_config_last_reload_successful",
        help: "1 when the latest configuration (re)load succeeded, else 0 (the previous configuration stays in use).",
        typ: MetricType::Gauge,
        labels: &[],
        served: Served::Metrics,
        read: |c, w| {
            if let Some(m) = c.me {
                w.sample("", &[], m.reload_ok as u8 as f64);
            }
        },
    },
    Family {
        name: "tibiot_exporter_config_last_reload_success_timestamp_seconds",
        help: "When the configuration was last loaded successfully, unix seconds.",
        typ: MetricType::Gauge,
        labels: &[],
        served: Served::Metrics,
        read: |c, w| {
            if let Some(t) = c.me.and_then(|m| m.reload_success_time) {
                w.sample("", &[], t);
            }
        },
    },
    Family {
        name: "process_cpu_seconds_total",
        help: "Total user and system CPU time spent in seconds.",
        typ: MetricType::Counter,
        labels: &[],
        served: Served::Metrics,
        read: |c, w| process_gauge(c, w, |p| p.cpu_seconds),
    },
    Family {
        name: "process_resident_memory_bytes",
        help: "Resident memory size in bytes.",
        typ: MetricType::Gauge,
        labels: &[],
        served: Served::Metrics,
        read: |c, w| process_gauge(c, w, |p| p.resident_bytes),
    },
    Family {
        name: "process_virtual_memory_bytes",
        help: "Virtual memory size in bytes.",
        typ: MetricType::Gauge,
        labels: &[],
        served: Served::Metrics,
        read: |c, w| process_gauge(c, w, |p| p.virtual_bytes),
    },
    Family {
        name: "process_open_fds",
        help: "Number of open file descriptors.",
        typ: MetricType::Gauge,
        labels: &[],
        served: Served::Metrics,
        read: |c, w| process_gauge(c, w, |p| p.open_fds),
    },
    Family {
        name: "process_max_fds",
        help: "Maximum number of open file descriptors.",
        typ: MetricType::Gauge,
        labels: &[],
        served: Served::Metrics,
        read: |c, w| process_gauge(c, w, |p| p.max_fds),
    },
    Family {
        name: "process_start_time_seconds",
        help: "Start time of the process since unix epoch in seconds.",
        typ: MetricType::Gauge,
        labels: &[],
        served: Served::Metrics,
        read: |c, w| process_gauge(c, w, |p| p.start_time),
    },
];

/// Writes every family served by the endpoint (`/probe` when `me` is `None`, else
/// `/metrics`) into `w`, and finishes the exposition.
pub fn encode_into(snap: &Snapshot, me: Option<&SelfMetrics>, mut w: Writer<'_>) -> Vec<u8> {
    let probe = me.is_none();
    let ctx = Ctx { snap, me };
    for f in FAMILIES {
        let wanted = match f.served {
            Served::Both => true,
            Served::Metrics => !probe,
            Served::Probe => probe,
        };
        if wanted {
            w.family(f.name, f.help, f.typ);
            (f.read)(&ctx, &mut w);
        }
    }
    w.finish()
}

/// The README's metric reference, generated from [`FAMILIES`] (between the markers
/// `<!-- metrics:start -->` and `<!-- metrics:end -->`; `tests/exporter_readme.rs` checks it).
pub fn reference_markdown() -> String {
    let mut out =
        String::from("| metric | type | labels | served on | meaning |\n|---|---|---|---|---|\n");
    for f in FAMILIES {
        let labels = if f.labels.is_empty() {
            "—".to_owned()
        } else {
            f.labels
                .iter()
                .map(|l| format!("`{l}`"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let served = match f.served {
            Served::Both => "/metrics, /probe",
            Served::Metrics => "/metrics",
            Served::Probe => "/probe",
        };
        out.push_str(&format!(
            "| `{}` | {} | {labels} | {served} | {} |\n",
            f.name,
            f.typ.as_str(),
            f.help.replace('|', "\\|")
        ));
    }
    out
}

/// The whole exposition in memory (tests, small outputs).
pub fn encode(snap: &Snapshot, me: Option<&SelfMetrics>, fmt: Format) -> Vec<u8> {
    encode_into(snap, me, Writer::new(fmt))
}
