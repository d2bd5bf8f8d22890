//! Metrics: the [`Family`] descriptor (name, help, type, labels, where it is served and how its
//! samples are read — in the style of kube-state-metrics' generators), the streaming
//! exposition writer ([`expo`]), the collection-health families every kind shares
//! ([`health`]), the exporter's own metrics in a prometheus-client registry ([`own`]), and
//! [`encode`], which walks a family table and appends the registry's output.
//!
//! The family table itself is assembled in `crate::kinds` (each kind's families, then
//! [`health::FAMILIES`], then [`own::FAMILIES`]); it is the one source for `/metrics`,
//! `/probe`, docs/metrics.md and the backfill. Target families are written by the hand-made
//! [`expo::Writer`] straight from the snapshot, which keeps a warm 10,000-card scrape far
//! below its budget (docs/benchmarks.md); the few self-metrics go through prometheus-client.

pub mod expo;
pub(crate) mod health;
pub(crate) mod own;
pub(crate) mod process;

use crate::collect::Snapshot;
use expo::{MetricType, Writer};
pub(crate) use own::VERSION;

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

/// The two endpoints that serve metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Endpoint {
    Metrics,
    Probe,
}

impl Served {
    fn on(self, e: Endpoint) -> bool {
        matches!(
            (self, e),
            (Served::Both, _)
                | (Served::Metrics, Endpoint::Metrics)
                | (Served::Probe, Endpoint::Probe)
        )
    }

    fn as_str(self) -> &'static str {
        match self {
            Served::Both => "/metrics, /probe",
            Served::Metrics => "/metrics",
            Served::Probe => "/probe",
        }
    }
}

/// Where the samples of a family come from.
#[derive(Clone, Copy)]
pub(crate) enum Source {
    /// Read from the scrape's snapshot by the streaming writer.
    Snapshot(fn(&Snapshot, &mut Writer<'_>)),
    /// The exporter's own metric: encoded from the prometheus-client registry.
    Registry,
}

/// One metric family.
#[derive(Clone, Copy)]
pub struct Family {
    pub name: &'static str,
    pub help: &'static str,
    pub typ: MetricType,
    /// Label names, in the order written (`le` of histograms is implied).
    pub labels: &'static [&'static str],
    pub served: Served,
    pub(crate) source: Source,
}

impl std::fmt::Debug for Family {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Family").field("name", &self.name).finish()
    }
}

/// Writes every family of `table` served on `endpoint` into `w`, then (on `/metrics`) the
/// registry's families, and finishes the exposition.
pub(crate) fn encode_into(
    table: &[Family],
    snap: &Snapshot,
    endpoint: Endpoint,
    own: Option<&own::OwnMetrics>,
    mut w: Writer<'_>,
) -> Vec<u8> {
    for f in table.iter().filter(|f| f.served.on(endpoint)) {
        if let Source::Snapshot(read) = f.source {
            w.family(f);
            read(snap, &mut w);
        }
    }
    if let Some(own) = own.filter(|_| endpoint == Endpoint::Metrics) {
        let text = own.encode(w.format());
        w.raw(text.as_bytes());
    }
    w.finish()
}

/// The metric reference of docs/metrics.md: a Markdown table of `table`.
pub fn reference_markdown(table: &[Family]) -> String {
    let mut out =
        String::from("| metric | type | labels | served on | meaning |\n|---|---|---|---|---|\n");
    for f in table {
        let labels = if f.labels.is_empty() {
            "—".to_owned()
        } else {
            f.labels
                .iter()
                .map(|l| format!("`{l}`"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        out.push_str(&format!(
            "| `{}` | {} | {labels} | {} | {} |\n",
            f.name,
            f.typ.as_str(),
            f.served.as_str(),
            f.help.replace('|', "\\|")
        ));
    }
    out
}
