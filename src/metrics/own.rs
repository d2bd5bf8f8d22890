//! The exporter's own metrics, kept in a prometheus-client [`Registry`]: build info, the
//! configuration reload status, the upstream request counters and duration histogram of every
//! configured account (read from the collector's per-account statistics when encoded), and
//! the standard `process_*` metrics. Their names, help texts and labels come from
//! [`FAMILIES`], the self-metric part of the family table, so docs/metrics.md and the
//! exposition cannot drift apart (a unit test compares them).
//!
//! [`OwnMetrics::encode`] writes the registry in either format without an end marker, so the
//! output can follow the target families in the same response (the writer adds `# EOF`).

use super::expo::{Format, MetricType};
use super::process::ProcessStats;
use super::{Family, Served, Source};
use crate::collect::Collector;
use crate::collect::stats::BUCKETS;
use prometheus_client::collector::Collector as PcCollector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::MetricType as PcType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use tibiot_api::{Endpoint, Outcome};

/// Version of this build.
pub(crate) const VERSION: &str = crate::version::VERSION;
/// Git revision of this build (from `build.rs`, see `crate::version`), else `unknown`.
pub(crate) const REVISION: &str = crate::version::REVISION;

/// The self-metric families, in exposition order (the registry's order: registered metrics,
/// then collectors).
pub(crate) static FAMILIES: &[Family] = &[
    Family {
        name: "tibiot_exporter_build_info",
        help: "Version and revision of the exporter (value 1).",
        typ: MetricType::Info,
        labels: &["version", "revision"],
        served: Served::Metrics,
        source: Source::Registry,
    },
    Family {
        name: "tibiot_exporter_config_last_reload_successful",
        help: "1 when the latest configuration (re)load succeeded, else 0 (the previous configuration stays in use).",
        typ: MetricType::Gauge,
        labels: &[],
        served: Served::Metrics,
        source: Source::Registry,
    },
    Family {
        name: "tibiot_exporter_config_last_reload_success_timestamp_seconds",
        help: "When the configuration was last loaded successfully, unix seconds.",
        typ: MetricType::Gauge,
        labels: &[],
        served: Served::Metrics,
        source: Source::Registry,
    },
    Family {
        name: "tibiot_api_requests_total",
        help: "Upstream HTTP requests (every attempt, retries included) by endpoint and outcome.",
        typ: MetricType::Counter,
        labels: &["account", "endpoint", "outcome"],
        served: Served::Metrics,
        source: Source::Registry,
    },
    Family {
        name: "tibiot_api_request_duration_seconds",
        help: "Duration of upstream HTTP requests (every attempt), seconds.",
        typ: MetricType::Histogram,
        labels: &["account", "endpoint"],
        served: Served::Metrics,
        source: Source::Registry,
    },
    Family {
        name: "tibiot_label_values_truncated_total",
        help: "Label values from upstream cut to their bound of 256 bytes (ending in …), by kind of target; the log names the target and the label.",
        typ: MetricType::Counter,
        labels: &["account", "kind"],
        served: Served::Metrics,
        source: Source::Registry,
    },
    Family {
        name: "process_cpu_seconds_total",
        help: "Total user and system CPU time spent in seconds.",
        typ: MetricType::Counter,
        labels: &[],
        served: Served::Metrics,
        source: Source::Registry,
    },
    Family {
        name: "process_resident_memory_bytes",
        help: "Resident memory size in bytes.",
        typ: MetricType::Gauge,
        labels: &[],
        served: Served::Metrics,
        source: Source::Registry,
    },
    Family {
        name: "process_virtual_memory_bytes",
        help: "Virtual memory size in bytes.",
        typ: MetricType::Gauge,
        labels: &[],
        served: Served::Metrics,
        source: Source::Registry,
    },
    Family {
        name: "process_open_fds",
        help: "Number of open file descriptors.",
        typ: MetricType::Gauge,
        labels: &[],
        served: Served::Metrics,
        source: Source::Registry,
    },
    Family {
        name: "process_max_fds",
        help: "Maximum number of open file descriptors.",
        typ: MetricType::Gauge,
        labels: &[],
        served: Served::Metrics,
        source: Source::Registry,
    },
    Family {
        name: "process_start_time_seconds",
        help: "Start time of the process since unix epoch in seconds.",
        typ: MetricType::Gauge,
        labels: &[],
        served: Served::Metrics,
        source: Source::Registry,
    },
];

/// The family of the table named `name`.
fn family(name: &str) -> &'static Family {
    FAMILIES
        .iter()
        .find(|f| f.name == name)
        .unwrap_or_else(|| unreachable!("{name} is in the self-metric table"))
}

/// The name prometheus-client is given: it appends `_total` to counters and `_info` to info
/// metrics itself.
fn registered_name(f: &Family) -> &'static str {
    match f.typ {
        MetricType::Counter => f.name.strip_suffix("_total").unwrap_or(f.name),
        MetricType::Info => f.name.strip_suffix("_info").unwrap_or(f.name),
        _ => f.name,
    }
}

/// The help prometheus-client is given for [`Registry::register`], which appends a period.
fn registered_help(f: &Family) -> &'static str {
    f.help.strip_suffix('.').unwrap_or(f.help)
}

fn register(registry: &mut Registry, name: &str, metric: impl prometheus_client::registry::Metric) {
    let f = family(name);
    registry.register(registered_name(f), registered_help(f), metric);
}

/// The exporter's own metrics.
#[derive(Debug)]
pub(crate) struct OwnMetrics {
    registry: Registry,
    reload_ok: Gauge,
    reload_time: Gauge<f64, AtomicU64>,
}

impl OwnMetrics {
    /// The registry, with the request statistics of `collector`'s configured accounts.
    pub(crate) fn new(collector: Arc<Collector>) -> Self {
        let mut registry = Registry::default();
        register(
            &mut registry,
            "tibiot_exporter_build_info",
            Info::new([("version", VERSION), ("revision", REVISION)]),
        );
        let reload_ok = Gauge::default();
        let reload_time = Gauge::<f64, AtomicU64>::default();
        register(
            &mut registry,
            "tibiot_exporter_config_last_reload_successful",
            reload_ok.clone(),
        );
        register(
            &mut registry,
            "tibiot_exporter_config_last_reload_success_timestamp_seconds",
            reload_time.clone(),
        );
        registry.register_collector(Box::new(AccountMetrics(collector)));
        registry.register_collector(Box::new(Process));
        let me = Self {
            registry,
            reload_ok,
            reload_time,
        };
        me.reloaded(true);
        me
    }

    /// Records a (re)load: its outcome, and when it succeeded.
    pub(crate) fn reloaded(&self, ok: bool) {
        self.reload_ok.set(ok as i64);
        if ok {
            self.reload_time.set(crate::sys::unix_now());
        }
    }

    /// The registry in `fmt`, without `# EOF`.
    pub(crate) fn encode(&self, fmt: Format) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail; a collector error would leave the part written.
        let _ = match fmt {
            Format::OpenMetrics => {
                prometheus_client::encoding::text::encode_registry(&mut out, &self.registry)
            }
            Format::Text => {
                prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)
            }
        };
        out
    }
}

/// The per-account statistics of the configured accounts: `tibiot_api_requests_total` and
/// `tibiot_api_request_duration_seconds` for the endpoints the registered kinds call, and
/// `tibiot_label_values_truncated_total` for each registered kind.
#[derive(Debug)]
struct AccountMetrics(Arc<Collector>);

impl PcCollector for AccountMetrics {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let stats = self.0.stats();
        if stats.is_empty() {
            return Ok(());
        }
        let mut endpoints: Vec<Endpoint> = Vec::new();
        for k in self.0.kinds() {
            for e in k.subject().endpoints() {
                if !endpoints.contains(&e) {
                    endpoints.push(e);
                }
            }
        }
        let f = family("tibiot_api_requests_total");
        let mut m = encoder.encode_descriptor(registered_name(f), f.help, None, PcType::Counter)?;
        for s in &stats {
            for e in &endpoints {
                for o in Outcome::ALL {
                    let labels = [
                        ("account", s.account()),
                        ("endpoint", e.name()),
                        ("outcome", o.as_str()),
                    ];
                    ConstCounter::new(s.requests(*e, o)).encode(m.encode_family(&labels)?)?;
                }
            }
        }
        let f = family("tibiot_api_request_duration_seconds");
        let mut m = encoder.encode_descriptor(f.name, f.help, None, PcType::Histogram)?;
        for s in &stats {
            for e in &endpoints {
                let (per_bucket, count, sum) = s.histogram(*e);
                // The `+Inf` bucket is explicit: the OpenMetrics encoder adds none of its own.
                let above = count - per_bucket.iter().sum::<u64>();
                let buckets: Vec<(f64, u64)> = BUCKETS
                    .iter()
                    .copied()
                    .zip(per_bucket)
                    .chain([(f64::INFINITY, above)])
                    .collect();
                let labels = [("account", s.account()), ("endpoint", e.name())];
                m.encode_family(&labels)?
                    .encode_histogram::<NoLabelSet>(sum, count, &buckets, None)?;
            }
        }
        let f = family("tibiot_label_values_truncated_total");
        let mut m = encoder.encode_descriptor(registered_name(f), f.help, None, PcType::Counter)?;
        for s in &stats {
            for k in self.0.kinds() {
                let labels = [("account", s.account()), ("kind", k.name())];
                ConstCounter::new(s.truncations(k.name())).encode(m.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}

/// The standard `process_*` metrics, read when encoded (absent where `/proc` is not).
#[derive(Debug)]
struct Process;

impl PcCollector for Process {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let p = ProcessStats::read();
        let values = [
            ("process_cpu_seconds_total", p.cpu_seconds),
            ("process_resident_memory_bytes", p.resident_bytes),
            ("process_virtual_memory_bytes", p.virtual_bytes),
            ("process_open_fds", p.open_fds),
            ("process_max_fds", p.max_fds),
            ("process_start_time_seconds", p.start_time),
        ];
        for (name, value) in values {
            let Some(v) = value else { continue };
            let f = family(name);
            if f.typ == MetricType::Counter {
                let m =
                    encoder.encode_descriptor(registered_name(f), f.help, None, PcType::Counter)?;
                ConstCounter::new(v).encode(m)?;
            } else {
                let m = encoder.encode_descriptor(f.name, f.help, None, PcType::Gauge)?;
                ConstGauge::new(v).encode(m)?;
            }
        }
        Ok(())
    }
}
