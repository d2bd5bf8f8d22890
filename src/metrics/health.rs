//! The collection-health families every kind shares: whether the account answers
//! (`tibiot_up`), the result and age of each target's latest fetch (detail and history, by
//! `kind`), how long the scrape spent collecting, and the `/probe` result. They read the
//! snapshot through the kinds registered in it, so a new kind gets its health series without
//! a change here.

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
        help: "1 when the latest fetch of the target succeeded in time, else 0 (kind: pool, card, pool_history, card_history). Values of a failed target are served from the cache until collect.stale_after.",
        typ: MetricType::Gauge,
        labels: &["account", "kind", "target"],
        served: Served::Both,
        source: Source::Snapshot(|snap, w| health_samples(snap, w, |h| Some(h.ok as u8 as f64))),
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
        help: "1 when every fetch of the probed target succeeded in time, else 0.",
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
