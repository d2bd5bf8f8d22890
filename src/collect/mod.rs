//! Turning a scrape into a [`Snapshot`]. The [`Collector`] owns the runtime built from the
//! configuration (one [`AccountRt`] per account: client, limits, targets with their cache
//! slots), swaps it on reload (keeping the cache of targets that stay), and answers scrapes:
//! fetch what is due within the deadline ([`scrape`]), then freeze an immutable snapshot for
//! the encoder. A snapshot holds `Arc`s of the cached values, so taking one copies no data.

pub mod cache;
pub mod history;
pub mod scrape;
pub mod values;

use crate::config::{CollectConfig, Config};
use crate::metrics::api_stats::ApiStats;
use crate::metrics::expo::label_fragment;
use cache::{FetchError, Fetched, Slot};
use futures::FutureExt;
use futures::future::BoxFuture;
use history::{HistView, History};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;
use tibiot_api::calendar::ApiCalendar;
use tibiot_api::{
    ApiError, CardDetail, Client, Deadline, Endpoint, Gate, PoolDetail, RequestObserver,
};
use tokio::time::Instant;
pub use values::{CardValues, PoolValues};

/// Locks a mutex, ignoring poisoning (a panicking fetch must not wedge the cache).
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The `kind` label of the collection-health metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Pool,
    Card,
    PoolHistory,
    CardHistory,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Pool => "pool",
            Kind::Card => "card",
            Kind::PoolHistory => "pool_history",
            Kind::CardHistory => "card_history",
        }
    }
}

/// A kind of target (pool or card): how its detail and history are fetched.
pub trait Fetchable: Sized + Send + Sync + 'static {
    const KIND: Kind;
    const HISTORY: Kind;
    const DETAIL: Endpoint;
    const DAY: Endpoint;
    const MONTH: Endpoint;
    /// The target label name (`pool` or `iccid`).
    const LABEL: &'static str;
    fn fetch(
        client: Client,
        id: Arc<str>,
        cal: ApiCalendar,
        deadline: Deadline,
    ) -> BoxFuture<'static, Result<Self, ApiError>>;
    /// Usage of one day (`YYYY-MM-DD`) or month (`YYYY-MM`), in bytes.
    fn fetch_period(
        client: Client,
        id: Arc<str>,
        period: String,
        month: bool,
        deadline: Deadline,
    ) -> BoxFuture<'static, Result<Option<f64>, ApiError>> {
        let ep = if month { Self::MONTH } else { Self::DAY };
        async move {
            let kb = client.usage_kb(ep, &id, &period, deadline).await?;
            Ok(kb.map(values::kb_to_bytes))
        }
        .boxed()
    }
}

impl Fetchable for PoolValues {
    const KIND: Kind = Kind::Pool;
    const HISTORY: Kind = Kind::PoolHistory;
    const DETAIL: Endpoint = Endpoint::PoolDetail;
    const DAY: Endpoint = Endpoint::PoolDayUsage;
    const MONTH: Endpoint = Endpoint::PoolMonthUsage;
    const LABEL: &'static str = "pool";
    fn fetch(
        client: Client,
        id: Arc<str>,
        cal: ApiCalendar,
        deadline: Deadline,
    ) -> BoxFuture<'static, Result<Self, ApiError>> {
        async move {
            let d: PoolDetail = client.pool_detail(&id, deadline).await?;
            Ok(PoolValues::from_detail(&d, &cal))
        }
        .boxed()
    }
}

impl Fetchable for CardValues {
    const KIND: Kind = Kind::Card;
    const HISTORY: Kind = Kind::CardHistory;
    const DETAIL: Endpoint = Endpoint::CardDetail;
    const DAY: Endpoint = Endpoint::CardDayUsage;
    const MONTH: Endpoint = Endpoint::CardMonthUsage;
    const LABEL: &'static str = "iccid";
    fn fetch(
        client: Client,
        id: Arc<str>,
        _cal: ApiCalendar,
        deadline: Deadline,
    ) -> BoxFuture<'static, Result<Self, ApiError>> {
        async move {
            let d: CardDetail = client.card_detail(&id, deadline).await?;
            Ok(CardValues::from_detail(&d))
        }
        .boxed()
    }
}

/// One pool or card of one account, with its cache.
#[derive(Debug)]
pub struct Target<V> {
    /// Pool code or ICCID.
    pub id: Arc<str>,
    /// `account="..",pool=".."` or `account="..",iccid=".."`, escaped.
    pub labels: Box<str>,
    pub detail: Mutex<Slot<V>>,
    /// Allocated on first use (most cards have no history configured).
    pub history: Mutex<Option<Box<History>>>,
}

impl<V: Fetchable> Target<V> {
    pub fn new(account: &str, id: &str) -> Self {
        Self {
            id: Arc::from(id),
            labels: label_fragment(&[("account", account), (V::LABEL, id)]),
            detail: Mutex::new(Slot::default()),
            history: Mutex::new(None),
        }
    }
}

pub type PoolTarget = Target<PoolValues>;
pub type CardTarget = Target<CardValues>;

/// The most probe-only targets (not in the configuration) kept per account and kind.
const MAX_PROBE_TARGETS: usize = 10_000;

/// One account at run time.
pub struct AccountRt {
    pub name: Arc<str>,
    /// `account="name"`, escaped.
    pub label: Box<str>,
    pub base_url: String,
    /// Passes every attempt through the account's [`Gate`] (`concurrency`,
    /// `requests_per_second`).
    pub client: Client,
    pub stats: Arc<ApiStats>,
    pub pools: Vec<Arc<PoolTarget>>,
    pub cards: Vec<Arc<CardTarget>>,
    probe_pools: Mutex<HashMap<Arc<str>, Arc<PoolTarget>>>,
    probe_cards: Mutex<HashMap<Arc<str>, Arc<CardTarget>>>,
}

impl std::fmt::Debug for AccountRt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccountRt")
            .field("name", &self.name)
            .field("pools", &self.pools.len())
            .field("cards", &self.cards.len())
            .finish()
    }
}

impl AccountRt {
    /// A configured pool, or a probe-only one (kept for later probes).
    pub fn pool_target(&self, code: &str) -> Arc<PoolTarget> {
        if let Some(t) = self.pools.iter().find(|t| &*t.id == code) {
            return t.clone();
        }
        probe_target(&self.probe_pools, &self.name, code)
    }

    /// A configured card, or a probe-only one (kept for later probes).
    pub fn card_target(&self, iccid: &str) -> Arc<CardTarget> {
        if let Some(t) = self.cards.iter().find(|t| &*t.id == iccid) {
            return t.clone();
        }
        probe_target(&self.probe_cards, &self.name, iccid)
    }
}

fn probe_target<V: Fetchable>(
    map: &Mutex<HashMap<Arc<str>, Arc<Target<V>>>>,
    account: &str,
    id: &str,
) -> Arc<Target<V>> {
    let mut m = lock(map);
    if let Some(t) = m.get(id) {
        return t.clone();
    }
    if m.len() >= MAX_PROBE_TARGETS {
        m.clear();
    }
    let t = Arc::new(Target::new(account, id));
    m.insert(t.id.clone(), t.clone());
    t
}

/// Everything built from one configuration.
#[derive(Debug)]
pub struct Runtime {
    pub config: Arc<Config>,
    pub accounts: Vec<Arc<AccountRt>>,
}

impl Runtime {
    pub fn settings(&self) -> &CollectConfig {
        &self.config.collect
    }

    pub fn account(&self, name: &str) -> Option<&Arc<AccountRt>> {
        self.accounts.iter().find(|a| &*a.name == name)
    }
}

/// The collector: the current runtime, replaced on reload.
pub struct Collector {
    rt: RwLock<Arc<Runtime>>,
    stats: Mutex<HashMap<String, Arc<ApiStats>>>,
}

impl Collector {
    /// Builds the runtime of `config`. Fails only when a client cannot be built.
    pub fn new(config: Arc<Config>) -> Result<Self, String> {
        let c = Collector {
            rt: RwLock::new(Arc::new(Runtime {
                config: config.clone(),
                accounts: Vec::new(),
            })),
            stats: Mutex::new(HashMap::new()),
        };
        c.reload(config)?;
        Ok(c)
    }

    /// The current runtime.
    pub fn runtime(&self) -> Arc<Runtime> {
        self.rt.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn config(&self) -> Arc<Config> {
        self.runtime().config.clone()
    }

    /// The statistics of the configured accounts, in configuration order (counters survive
    /// reloads; an account that is removed and added again continues its counters).
    pub fn stats(&self) -> Vec<Arc<ApiStats>> {
        self.runtime()
            .accounts
            .iter()
            .map(|a| a.stats.clone())
            .collect()
    }

    /// Applies a new configuration. Targets that stay (same account name and base URL, same
    /// pool code or ICCID) keep their cache; nothing changes when it fails.
    pub fn reload(&self, config: Arc<Config>) -> Result<(), String> {
        let old = self.runtime();
        let collect = &config.collect;
        let mut accounts = Vec::with_capacity(config.accounts.len());
        for a in &config.accounts {
            let stats = lock(&self.stats)
                .entry(a.name.clone())
                .or_insert_with(|| Arc::new(ApiStats::new(&a.name)))
                .clone();
            let mut opts = a.client_options();
            opts.request_timeout = collect.timeout;
            opts.observer = Some(stats.clone() as Arc<dyn RequestObserver>);
            opts.gate = Some(Arc::new(Gate::new(
                collect.concurrency,
                collect.requests_per_second,
            )));
            let client = Client::new(opts).map_err(|e| format!("accounts[{}]: {e}", a.name))?;
            let prev = old
                .account(&a.name)
                .filter(|p| p.base_url == a.base_url)
                .cloned();
            let pools = build_targets(&a.name, &a.pools, prev.as_ref().map(|p| &p.pools));
            let cards = build_targets(&a.name, &a.cards, prev.as_ref().map(|p| &p.cards));
            accounts.push(Arc::new(AccountRt {
                name: Arc::from(a.name.as_str()),
                label: label_fragment(&[("account", &a.name)]),
                base_url: a.base_url.clone(),
                client,
                stats,
                pools,
                cards,
                probe_pools: Mutex::new(HashMap::new()),
                probe_cards: Mutex::new(HashMap::new()),
            }));
        }
        let rt = Arc::new(Runtime { config, accounts });
        *self.rt.write().unwrap_or_else(|e| e.into_inner()) = rt;
        Ok(())
    }
}

/// The targets of `ids` (de-duplicated), reusing the cached ones of `prev`.
fn build_targets<V: Fetchable>(
    account: &str,
    ids: &[String],
    prev: Option<&Vec<Arc<Target<V>>>>,
) -> Vec<Arc<Target<V>>> {
    let prev: HashMap<&str, &Arc<Target<V>>> = prev
        .map(|l| l.iter().map(|t| (&*t.id, t)).collect())
        .unwrap_or_default();
    let mut seen = std::collections::HashSet::with_capacity(ids.len());
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        if !seen.insert(id.as_str()) {
            continue;
        }
        out.push(
            prev.get(id.as_str())
                .map(|t| (*t).clone())
                .unwrap_or_else(|| Arc::new(Target::new(account, id))),
        );
    }
    out
}

/// Health of one collection kind of one target, as of a snapshot.
#[derive(Debug, Clone, Default)]
pub struct Health {
    /// An attempt has finished (or timed out) at least once.
    pub attempted: bool,
    /// The latest attempt succeeded (in time).
    pub ok: bool,
    /// When the served values were fetched.
    pub last_success: Option<f64>,
    pub error: Option<Arc<FetchError>>,
}

/// One target as of a snapshot.
#[derive(Debug)]
pub struct TargetSnap<V> {
    pub target: Arc<Target<V>>,
    /// The served value (fresh, or cached within `stale_after`).
    pub value: Option<Arc<Fetched<V>>>,
    pub health: Health,
    /// History view and health, when history is configured for this kind.
    pub history: Option<(Arc<HistView>, Health)>,
}

/// One account as of a snapshot.
#[derive(Debug)]
pub struct AccountSnap {
    pub rt: Arc<AccountRt>,
    pub up: Option<bool>,
    pub pools: Vec<TargetSnap<PoolValues>>,
    pub cards: Vec<TargetSnap<CardValues>>,
}

/// The outcome of a `/probe`.
#[derive(Debug, Clone, Copy)]
pub struct ProbeResult {
    pub success: bool,
    pub duration: f64,
}

/// An immutable view of everything a scrape serves.
#[derive(Debug)]
pub struct Snapshot {
    pub now: Instant,
    pub now_unix: f64,
    pub stale_after: Duration,
    pub accounts: Vec<AccountSnap>,
    /// Time the scrape spent collecting (absent for views that did not collect).
    pub scrape_duration: Option<f64>,
    pub probe: Option<ProbeResult>,
}

impl Snapshot {
    pub fn pools(&self) -> impl Iterator<Item = &TargetSnap<PoolValues>> {
        self.accounts.iter().flat_map(|a| a.pools.iter())
    }

    pub fn cards(&self) -> impl Iterator<Item = &TargetSnap<CardValues>> {
        self.accounts.iter().flat_map(|a| a.cards.iter())
    }
}
