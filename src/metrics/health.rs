//! The collection-health families every kind shares: whether the account answers
//! (`tibiot_up`), the result and age of each target's latest completed fetch (detail and
//! history, by `kind`), the account's queue and budget (pending parts, oldest data served,
//! required and allowed request rates, a remembered `Retry-After`), how long the scrape spent
//! collecting, and the `/probe` result (docs/collection.md). They read the snapshot through the
//! kinds registered in it, so a new kind gets its health series without a change here.

use super::expo::{MetricType, Writer};
use super::{Family, Served, Source};
use crate::collect::{Health, Snapshot};

/// The health families, in exposition order.
pub(crate) static FAMILIES: &[Family] = &[
    Family {
        name: "tibiot_up",
        help: "1 when the account's latest upstream request succeeded, else 0.",
        typ: MetricType::Gauge,
        labels: &["account"],
        served: Served::Both,
        source: Source::Snapshot(|snap, w| {
            for a in &snap.accounts {
                if let Some(up) = a.up {
                    w.sample(&[("account", &a.name)], &[], up as u8 as f64);
                }
            }
        }),
    },
    Family {
        name: "tibiot_collect_success",
        help: "1 when the latest completed fetch of the target succeeded, else 0 (kind: pool, card, pool_history, card_history); absent until a first fetch completed. Queued or running fetches leave it as it is. Values of a failed target are served from the cache until collect.stale_after.",
        typ: MetricType::Gauge,
        labels: &["account", "kind", "target"],
        served: Served::Both,
        source: Source::Snapshot(|snap, w| {
            health_samples(snap, w, |h| h.attempted.then_some(h.ok as u8 as f64))
        }),
    },
    Family {
        name: "tibiot_collect_last_success_timestamp_seconds",
        help: "When the served values of the target were fetched, unix seconds (for history: the latest successful period fetch).",
        typ: MetricType::Gauge,
        labels: &["account", "kind", "target"],
        served: Served::Both,
        source: Source::Snapshot(|snap, w| health_samples(snap, w, |h| h.last_success)),
    },
    Family {
        name: "tibiot_collect_pending_targets",
        help: "Targets of the account due for a fetch or being fetched, not yet completed, by kind (configured targets of this replica).",
        typ: MetricType::Gauge,
        labels: &["account", "kind"],
        served: Served::Metrics,
        source: Source::Snapshot(|snap, w| {
            for a in &snap.accounts {
                for (kind, n) in &a.pending {
                    w.sample(&[("account", &a.name), ("kind", kind)], &[], *n as f64);
                }
            }
        }),
    },
    Family {
        name: "tibiot_collect_oldest_data_age_seconds",
        help: "Age of the oldest value served for the account, by kind, seconds (history: of the open days and months; closed ones never change).",
        typ: MetricType::Gauge,
        labels: &["account", "kind"],
        served: Served::Metrics,
        source: Source::Snapshot(|snap, w| {
            for a in &snap.accounts {
                for (kind, age) in &a.oldest_age {
                    w.sample(&[("account", &a.name), ("kind", kind)], &[], *age);
                }
            }
        }),
    },
    Family {
        name: "tibiot_collect_required_requests_per_second",
        help: "Requests per second the account's targets (on this replica) need to be refreshed within their TTLs, history included.",
        typ: MetricType::Gauge,
        labels: &["account"],
        served: Served::Metrics,
        source: Source::Snapshot(|snap, w| {
            for a in &snap.accounts {
                w.sample(&[("account", &a.name)], &[], a.required_rps);
            }
        }),
    },
    Family {
        name: "tibiot_collect_allowed_requests_per_second",
        help: "Requests per second the account may make (collect.requests_per_second); absent when unlimited. Above it, refresh periods stretch.",
        typ: MetricType::Gauge,
        labels: &["account"],
        served: Served::Metrics,
        source: Source::Snapshot(|snap, w| {
            for a in &snap.accounts {
                if let Some(r) = a.allowed_rps {
                    w.sample(&[("account", &a.name)], &[], r);
                }
            }
        }),
    },
    Family {
        name: "tibiot_api_paused_until_timestamp_seconds",
        help: "Until when no request is sent to the account because the API answered 429 with Retry-After, unix seconds; 0 when no pause is in force.",
        typ: MetricType::Gauge,
        labels: &["account"],
        served: Served::Metrics,
        source: Source::Snapshot(|snap, w| {
            for a in &snap.accounts {
                w.sample(&[("account", &a.name)], &[], a.paused_until.unwrap_or(0.0));
            }
        }),
    },
    Family {
        name: "tibiot_scrape_duration_seconds",
        help: "Time this scrape spent collecting, seconds (close to 0 when everything came from the cache).",
        typ: MetricType::Gauge,
        labels: &[],
        served: Served::Metrics,
        source: Source::Snapshot(|snap, w| {
            if let Some(d) = snap.scrape_duration {
                w.sample(&[], &[], d);
            }
        }),
    },
    Family {
        name: "tibiot_probe_success",
        help: "1 when the latest completed fetch of every part of the probed target succeeded, else 0 (also when none completed before the deadline).",
        typ: MetricType::Gauge,
        labels: &[],
        served: Served::Probe,
        source: Source::Snapshot(|snap, w| {
            if let Some(p) = snap.probe {
                w.sample(&[], &[], p.success as u8 as f64);
            }
        }),
    },
    Family {
        name: "tibiot_probe_duration_seconds",
        help: "Time the probe took, seconds.",
        typ: MetricType::Gauge,
        labels: &[],
        served: Served::Probe,
        source: Source::Snapshot(|snap, w| {
            if let Some(p) = snap.probe {
                w.sample(&[], &[], p.duration);
            }
        }),
    },
];

/// One sample per target and collection kind (detail, then history, kind by kind), valued
/// by `value` (no sample when it gives none).
fn health_samples(snap: &Snapshot, w: &mut Writer<'_>, value: fn(&Health) -> Option<f64>) {
    for a in &snap.accounts {
        for k in &a.kinds {
            let (detail, history) = (k.kind.name(), k.kind.history_name());
            for t in &k.targets {
                if let Some(v) = value(&t.health) {
                    let labels = [
                        ("account", t.account()),
                        ("kind", detail),
                        ("target", t.id()),
                    ];
                    w.sample(&labels, &[], v);
                }
            }
            for t in &k.targets {
                if let Some((_, h)) = &t.history
                    && let Some(v) = value(h)
                {
                    let labels = [
                        ("account", t.account()),
                        ("kind", history),
                        ("target", t.id()),
                    ];
                    w.sample(&labels, &[], v);
                }
            }
        }
    }
}
