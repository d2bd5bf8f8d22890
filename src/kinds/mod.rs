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

use crate::collect::{FetchCx, Snapshot, TargetKind, TargetSnap, Values};
use crate::config::{Account, CollectConfig};
use crate::metrics::expo::Writer;
use crate::metrics::{Family, health, own};
use futures::future::BoxFuture;
use std::any::TypeId;
use std::future::Future;
use std::sync::LazyLock;
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
    /// What a fetched detail becomes.
    type Values: Send + Sync + 'static;
    /// Its targets in an account's configuration.
    fn configured(account: &Account) -> &[String];
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
        cx: &FetchCx,
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
    fn configured<'a>(&self, account: &'a Account) -> &'a [String] {
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
        cx: &'a FetchCx,
    ) -> BoxFuture<'a, Result<Values, ApiError>> {
        Box::pin(async move {
            let v = K::fetch(client, id, cx).await?;
            Ok(Box::new(v) as Values)
        })
    }
    fn kind_id(&self) -> TypeId {
        TypeId::of::<K>()
    }
}

/// A registered kind: its collection side and its families.
struct Registration {
    kind: &'static dyn TargetKind,
    families: &'static [Family],
}

const fn register<K: Kind>(kind: &'static K) -> Registration {
    Registration {
        kind,
        families: K::FAMILIES,
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

/// The targets of kind `K` in a snapshot, account by account.
pub(crate) fn targets<K: Kind>(snap: &Snapshot) -> impl Iterator<Item = &TargetSnap> {
    snap.accounts
        .iter()
        .flat_map(|a| &a.kinds)
        .filter(|k| k.kind.kind_id() == TypeId::of::<K>())
        .flat_map(|k| &k.targets)
}

/// The targets of kind `K` that have a served value, with it.
pub(crate) fn served<K: Kind>(snap: &Snapshot) -> impl Iterator<Item = (&TargetSnap, &K::Values)> {
    targets::<K>(snap).filter_map(|t| Some((t, t.value::<K::Values>()?)))
}

/// `account` and the kind's id label of a target.
#[inline]
pub(crate) fn id_labels<K: Kind>(t: &TargetSnap) -> [(&'static str, &str); 2] {
    [("account", t.account()), (K::ID_LABEL, t.id())]
}

/// A gauge family's samples: one per target with a value, when `value` gives one.
#[inline]
pub(crate) fn gauge<K: Kind>(
    snap: &Snapshot,
    w: &mut Writer<'_>,
    value: fn(&K::Values) -> Option<f64>,
) {
    for (t, v) in served::<K>(snap) {
        if let Some(x) = value(v) {
            w.sample(&id_labels::<K>(t), &[], x);
        }
    }
}

/// The samples of a usage-history family (`MONTHS`: the month family, else the day family):
/// each served period of each target, in bytes.
pub(crate) fn history<K: Kind, const MONTHS: bool>(snap: &Snapshot, w: &mut Writer<'_>) {
    let label = if MONTHS { "month" } else { "date" };
    for t in targets::<K>(snap) {
        let Some((view, _)) = &t.history else {
            continue;
        };
        let points = if MONTHS { &view.months } else { &view.days };
        for p in points {
            if p.served(snap.now, snap.stale_after) {
                w.sample(&id_labels::<K>(t), &[(label, &p.label)], p.bytes);
            }
        }
    }
}

/// Bytes from an API KB value.
#[inline]
pub(crate) fn kb_to_bytes(kb: f64) -> f64 {
    kb * 1024.0
}
