//! The kinds of target the exporter watches, one file each (node_exporter's one collector per
//! file): [`pool`] and [`card`]. A kind owns its whole path — where its targets come from in
//! the configuration, how its detail is fetched, what the answer becomes ([`Kind::Values`])
//! and its metric families — by implementing the one trait [`Kind`]. [`REGISTERED`] lists them;
//! [`families`] assembles the exporter's family table from the kinds' families, the shared
//! collection-health families and the self-metrics.
//!
//! Adding a kind: a file implementing [`Kind`] and its line in [`REGISTERED`]. The collection
//! machinery (`crate::collect`) and the encoder (`crate::metrics`) need no change.

pub(crate) mod card;
pub(crate) mod pool;

use crate::collect::cache::Fetched;
use crate::collect::{FetchCx, Snapshot, TargetKind, TargetSnap, Values};
use crate::config::{Account, CollectConfig};
use crate::metrics::expo::Writer;
use crate::metrics::{Family, health, own};
use futures::future::BoxFuture;
use std::any::TypeId;
use std::borrow::Cow;
use std::future::Future;
use std::sync::{Arc, LazyLock};
use std::time::Duration;
use tibiot_api::{ApiError, Client, Subject};

/// A kind of target: everything the exporter knows about it.
pub(crate) trait Kind: Send + Sync + 'static {
    /// The `kind` label of its collection-health series and the `/probe` parameter.
    const NAME: &'static str;
    /// The `kind` label of its history's collection-health series.
    const HISTORY_NAME: &'static str;
    /// The label that names one target.
    const ID_LABEL: &'static str;
    /// What an id is and its well-formed shape, in words (for the `/probe` error).
    const ID_FORM: &'static str;
    /// Which API endpoints serve it.
    const SUBJECT: Subject;
    /// Its families, in exposition order.
    const FAMILIES: &'static [Family];
    /// Its day-usage and month-usage history families (among [`Kind::FAMILIES`]).
    const DAILY: &'static Family;
    const MONTHLY: &'static Family;
    /// What a fetched detail becomes.
    type Values: Send + Sync + 'static;
    /// Its targets in an account's configuration.
    fn configured(account: &Account) -> &[Arc<str>];
    /// How long a fetched detail is reused.
    fn ttl(c: &CollectConfig) -> Duration;
    /// Days and months of usage history to keep.
    fn history_window(c: &CollectConfig) -> (u32, u32);
    /// Whether `id` is well formed.
    fn is_valid_id(id: &str) -> bool;
    /// Fetches one target's detail and builds its values.
    fn fetch(
        client: &Client,
        id: &str,
        cx: &FetchCx<'_>,
    ) -> impl Future<Output = Result<Self::Values, ApiError>> + Send;
}

impl<K: Kind> TargetKind for K {
    fn name(&self) -> &'static str {
        K::NAME
    }
    fn history_name(&self) -> &'static str {
        K::HISTORY_NAME
    }
    fn subject(&self) -> Subject {
        K::SUBJECT
    }
    fn configured<'a>(&self, account: &'a Account) -> &'a [Arc<str>] {
        K::configured(account)
    }
    fn ttl(&self, c: &CollectConfig) -> Duration {
        K::ttl(c)
    }
    fn history_window(&self, c: &CollectConfig) -> (u32, u32) {
        K::history_window(c)
    }
    fn is_valid_id(&self, id: &str) -> bool {
        K::is_valid_id(id)
    }
    fn id_form(&self) -> &'static str {
        K::ID_FORM
    }
    fn fetch<'a>(
        &'a self,
        client: &'a Client,
        id: &'a str,
        cx: &'a FetchCx<'a>,
    ) -> BoxFuture<'a, Result<Arc<Fetched<Values>>, ApiError>> {
        Box::pin(async move {
            let v = K::fetch(client, id, cx).await?;
            Ok(Arc::new(Fetched::now(v)) as Arc<Fetched<Values>>)
        })
    }
    fn kind_id(&self) -> TypeId {
        TypeId::of::<K>()
    }
}

/// A registered kind: its collection side, its families and its history.
struct Registration {
    kind: &'static dyn TargetKind,
    families: &'static [Family],
    history: HistorySource,
}

const fn register<K: Kind>(kind: &'static K) -> Registration {
    Registration {
        kind,
        families: K::FAMILIES,
        history: HistorySource {
            kind,
            id_label: K::ID_LABEL,
            daily: K::DAILY,
            monthly: K::MONTHLY,
        },
    }
}

/// The registered kinds, in exposition order: one line per kind.
static REGISTERED: &[Registration] = &[register(&pool::Pool), register(&card::Card)];

/// The registered kinds, as the collector sees them.
pub(crate) fn kinds() -> &'static [&'static dyn TargetKind] {
    static KINDS: LazyLock<Vec<&'static dyn TargetKind>> =
        LazyLock::new(|| REGISTERED.iter().map(|r| r.kind).collect());
    &KINDS
}

/// The exporter's family table: every kind's families, the collection-health families and
/// the self-metrics, in exposition order. The one source of `/metrics`, `/probe`,
/// docs/metrics.md and the backfill.
pub fn families() -> &'static [Family] {
    static TABLE: LazyLock<Vec<Family>> = LazyLock::new(|| {
        REGISTERED
            .iter()
            .flat_map(|r| r.families)
            .chain(health::FAMILIES)
            .chain(own::FAMILIES)
            .copied()
            .collect()
    });
    &TABLE
}

/// What a backfill needs of one registered kind: its API subject and id label, its targets in
/// an account's configuration, its history window, and its day and month families (the same
/// names, help and labels the exporter serves).
#[derive(Debug, Clone, Copy)]
pub struct HistorySource {
    kind: &'static dyn TargetKind,
    id_label: &'static str,
    daily: &'static Family,
    monthly: &'static Family,
}

impl HistorySource {
    /// The kind's name (`pool`, `card`).
    pub fn name(&self) -> &'static str {
        self.kind.name()
    }

    /// Which usage endpoints serve its history.
    pub fn subject(&self) -> Subject {
        self.kind.subject()
    }

    /// The label that names one target (`pool`, `iccid`).
    pub fn id_label(&self) -> &'static str {
        self.id_label
    }

    /// Its targets in `account`'s configuration.
    pub fn targets<'a>(&self, account: &'a Account) -> &'a [Arc<str>] {
        self.kind.configured(account)
    }

    /// Days and months of history the configuration keeps for it.
    pub fn window(&self, c: &CollectConfig) -> (u32, u32) {
        self.kind.history_window(c)
    }

    /// The day-usage family (label `date`).
    pub fn daily(&self) -> &'static Family {
        self.daily
    }

    /// The month-usage family (label `month`).
    pub fn monthly(&self) -> &'static Family {
        self.monthly
    }
}

/// The history of every registered kind, in exposition order (for `tibiotctl backfill`).
pub fn history_sources() -> impl Iterator<Item = HistorySource> {
    REGISTERED.iter().map(|r| r.history)
}

/// The targets of kind `K` in a snapshot, account by account (a slice per account).
#[inline]
pub(crate) fn target_lists<K: Kind>(snap: &Snapshot) -> impl Iterator<Item = &[TargetSnap]> {
    snap.accounts
        .iter()
        .flat_map(|a| &a.kinds)
        .filter(|k| k.kind.kind_id() == TypeId::of::<K>())
        .map(|k| k.targets.as_slice())
}

/// The targets of kind `K` in a snapshot, account by account.
pub(crate) fn targets<K: Kind>(snap: &Snapshot) -> impl Iterator<Item = &TargetSnap> {
    target_lists::<K>(snap).flatten()
}

/// The targets of kind `K` that have a served value, with it.
pub(crate) fn served<K: Kind>(snap: &Snapshot) -> impl Iterator<Item = (&TargetSnap, &K::Values)> {
    targets::<K>(snap).filter_map(|t| Some((t, t.value::<K::Values>()?)))
}

/// One sample of a target: `account` and the kind's id label (escaped once per target, see
/// `metrics::expo`), then `extra`.
#[inline]
pub(crate) fn sample<K: Kind>(
    w: &mut Writer<'_>,
    t: &TargetSnap,
    extra: &[(&str, &str)],
    value: f64,
) {
    let ids = || [("account", t.account()), (K::ID_LABEL, t.id())];
    w.sample_memo(t.encoded_labels(), ids, extra, value);
}

/// A gauge family's samples: one per target with a value, when `value` gives one.
#[inline]
pub(crate) fn gauge<K: Kind>(
    snap: &Snapshot,
    w: &mut Writer<'_>,
    value: impl Fn(&K::Values) -> Option<f64>,
) {
    for list in target_lists::<K>(snap) {
        for t in list {
            if let Some(x) = t.value::<K::Values>().and_then(&value) {
                sample::<K>(w, t, &[], x);
            }
        }
    }
}

/// The samples of a usage-history family (`MONTHS`: the month family, else the day family):
/// each served period of each target, in bytes.
pub(crate) fn history<K: Kind, const MONTHS: bool>(snap: &Snapshot, w: &mut Writer<'_>) {
    let label = if MONTHS { "month" } else { "date" };
    for t in target_lists::<K>(snap).flatten() {
        let Some((view, _)) = &t.history else {
            continue;
        };
        let points = if MONTHS { &view.months } else { &view.days };
        for p in points {
            if p.served(snap.now, snap.stale_after) {
                sample::<K>(w, t, &[(label, &p.label)], p.bytes);
            }
        }
    }
}

/// The longest label value taken from upstream, in bytes (docs/metrics.md, "Bounds"): longer
/// ones are cut at a character boundary and end with [`TRUNCATED`]. Real names are a few dozen
/// characters; the bound is far above them and below the `label_value_length_limit` a
/// Prometheus is likely to set, so one hostile answer cannot make it drop the whole scrape.
pub(crate) const MAX_LABEL_BYTES: usize = 256;

/// The marker at the end of a cut label value.
pub(crate) const TRUNCATED: &str = "…";

/// What building one target's values had to bound; reported once per fetch.
#[derive(Debug, Default)]
pub(crate) struct Bounds {
    /// Label values cut: label name and original length in bytes.
    truncated: Vec<(&'static str, usize)>,
    /// Card status codes summed into `status="other"`.
    folded: usize,
}

impl Bounds {
    /// `value` (absent: empty) as a label value of at most [`MAX_LABEL_BYTES`] bytes.
    pub(crate) fn label<'v>(&mut self, name: &'static str, value: Option<&'v str>) -> Cow<'v, str> {
        let v = value.unwrap_or("");
        if v.len() <= MAX_LABEL_BYTES {
            return Cow::Borrowed(v);
        }
        self.truncated.push((name, v.len()));
        let mut end = MAX_LABEL_BYTES - TRUNCATED.len();
        while !v.is_char_boundary(end) {
            end -= 1;
        }
        let mut cut = String::with_capacity(end + TRUNCATED.len());
        cut.push_str(&v[..end]);
        cut.push_str(TRUNCATED);
        Cow::Owned(cut)
    }

    /// Notes `n` status codes summed into `other`.
    pub(crate) fn folded(&mut self, n: usize) {
        self.folded += n;
    }

    /// Logs and counts what was bounded, if anything.
    pub(crate) fn report<K: Kind>(&self, cx: &FetchCx<'_>, id: &str) {
        cx.bounded(K::NAME, id, &self.truncated, self.folded);
    }
}

/// Several label values kept in one allocation (a card has four; 10,000 cards would
/// otherwise hold 40,000 small strings). Values as data, escaped only when written. Each
/// value is a bounded label value ([`MAX_LABEL_BYTES`]), so 16-bit offsets are enough.
#[derive(Debug, Clone)]
pub(crate) struct Texts<const N: usize> {
    text: Box<str>,
    /// Where each value ends in `text`.
    ends: [u16; N],
}

impl<const N: usize> Texts<N> {
    pub(crate) fn new(values: [&str; N]) -> Self {
        let mut text = String::with_capacity(values.iter().map(|v| v.len()).sum());
        let mut ends = [0u16; N];
        for (end, v) in ends.iter_mut().zip(values) {
            if text.len() + v.len() > usize::from(u16::MAX) {
                *end = text.len() as u16; // unreachable with bounded values: the rest is empty
                continue;
            }
            text.push_str(v);
            *end = text.len() as u16;
        }
        Self {
            text: text.into_boxed_str(),
            ends,
        }
    }

    /// The value at `i` (empty when out of range).
    #[inline]
    pub(crate) fn get(&self, i: usize) -> &str {
        let start = match i {
            0 => 0,
            _ => self.ends.get(i - 1).map_or(0, |e| *e as usize),
        };
        let end = self.ends.get(i).map_or(0, |e| *e as usize);
        self.text.get(start..end).unwrap_or("")
    }
}

/// Bytes from an API KB value.
#[inline]
pub(crate) fn kb_to_bytes(kb: f64) -> f64 {
    kb * 1024.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collect::{Collector, Scope};
    use crate::config::Config;
    use crate::metrics::expo::Format;
    use std::sync::Arc;

    /// A collector of 200 pools (30 days, 12 months of history) and `cards` cards, every
    /// value in the cache, as the warm scrape of docs/benchmarks.md sees it.
    fn warm(cards: usize) -> Collector {
        let pools: Vec<String> = (1..=200).map(|i| format!("POOL-{i:04}")).collect();
        let iccids: Vec<String> = (0..cards).map(|i| format!("8986{i:016}")).collect();
        let yaml = format!(
            "accounts:\n  - name: bench\n    base_url: http://127.0.0.1:9\n    auth: none\n    pools: {}\n    cards: {}\ncollect:\n  stale_after: 24h\n  history: {{pool_days: 30, pool_months: 12}}\n",
            serde_json::to_string(&pools).unwrap(),
            serde_json::to_string(&iccids).unwrap()
        );
        let config = Config::parse(&yaml, std::path::Path::new(".")).unwrap();
        let c = Collector::new(Arc::new(config), kinds(), Default::default()).unwrap();
        let rt = c.runtime();
        let settings = rt.settings();
        for a in &rt.accounts {
            for k in &a.kinds {
                let window = crate::collect::scrape::window(k.kind, settings);
                for (i, t) in k.targets.iter().enumerate() {
                    let v: Arc<Fetched<Values>> = if k.kind.name() == "pool" {
                        let d = tibiot_api::PoolDetail {
                            upool_code: Some(t.id.to_string()),
                            upool_name: Some(format!("华东 \"主\" 池 {i}")),
                            en_upool_name: Some(format!("East {i}")),
                            pool_type: Some(1),
                            use_flow: Some(1.0e6 + i as f64),
                            total_flow: Some(1.0e7),
                            billing_cycle: Some(1),
                            total_card: Some(50.0),
                            bind_card_status_count: [1, 4, 8, 99]
                                .map(|c| tibiot_api::CardStatusCount {
                                    card_status: Some(c),
                                    total: Some(10.0),
                                })
                                .to_vec(),
                            upool_status: Some(1),
                            raw_add_time: Some("2025-01-01 10:00:00".into()),
                            ..Default::default()
                        };
                        Arc::new(Fetched::now(pool::PoolValues::from_detail(
                            &d,
                            &settings.calendar,
                            &mut Bounds::default(),
                        )))
                    } else {
                        let d = tibiot_api::CardDetail {
                            iccid: Some(t.id.to_string()),
                            imsi: Some(format!("46000{i:010}")),
                            msisdn: Some(format!("1440{i:09}")),
                            imei: Some(format!("86{i:013}")),
                            apn: Some("cmiot".into()),
                            total_flow: Some(1.0e6),
                            use_month_flow: Some(1234.0 + i as f64),
                            use_flow: Some(5678.0 + i as f64),
                            billing_method: Some(1),
                            card_status: Some(8),
                        };
                        Arc::new(Fetched::now(card::CardValues::from_detail(
                            &d,
                            &mut Bounds::default(),
                        )))
                    };
                    crate::sys::lock(&t.detail).record_fetched(Ok(v));
                    if let Some(w) = &window {
                        let mut h = crate::sys::lock(&t.history);
                        let h = h.get_or_insert_with(Default::default);
                        h.align(w);
                        for slot in h.days.values_mut().chain(h.months.values_mut()) {
                            slot.record(Ok(Some(1.5e9 + i as f64)));
                        }
                        h.invalidate();
                    }
                }
            }
        }
        c
    }

    #[test]
    fn texts_keep_each_value() {
        let t = Texts::new(["460", "", "池\"\\", "apn"]);
        assert_eq!(
            (t.get(0), t.get(1), t.get(2), t.get(3)),
            ("460", "", "池\"\\", "apn")
        );
        assert_eq!(t.get(4), "");
        let e = Texts::new(["", ""]);
        assert_eq!((e.get(0), e.get(1)), ("", ""));
    }

    /// `cargo test --release --lib encode_speed -- --ignored --nocapture`: the CPU cost of
    /// encoding a warm snapshot of 200 pools + 10,000 cards, per series (no assertion: a
    /// measurement, see docs/benchmarks.md).
    #[test]
    #[ignore]
    fn encode_speed() {
        let cards = std::env::var("CARDS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(10_000);
        let rounds = std::env::var("ROUNDS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(30);
        let c = warm(cards);
        for fmt in [Format::Text, Format::OpenMetrics] {
            let mut best = f64::MAX;
            let mut series = 0;
            for _ in 0..rounds {
                let snap = crate::collect::snapshot::snapshot(&c.runtime(), &Scope::All);
                let started = std::time::Instant::now();
                let mut bytes = 0;
                let mut sink = |chunk: Vec<u8>| bytes += chunk.len();
                let mut w = Writer::streaming(fmt, &mut sink);
                for f in families() {
                    if let crate::metrics::Source::Snapshot(read) = f.source
                        && f.served != crate::metrics::Served::Probe
                    {
                        w.family(f);
                        read(&snap, &mut w);
                    }
                }
                series = w.samples();
                w.finish();
                best = best.min(started.elapsed().as_secs_f64());
            }
            println!(
                "{fmt:?}: {series} series in {:.2} ms = {:.1} ns/series",
                best * 1e3,
                best * 1e9 / series as f64
            );
        }
    }
}
