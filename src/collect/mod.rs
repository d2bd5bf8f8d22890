//! Collection: turning a scrape into a [`Snapshot`]. The [`Collector`] owns the runtime built
//! from the configuration — one account runtime per account (client, limits, statistics, and
//! for every registered [`TargetKind`] its targets with their cache slots) — swaps it on
//! reload (keeping the cache of targets that stay), and answers scrapes: fetch what is due
//! within the deadline ([`scrape`]), then freeze an immutable snapshot for the encoder
//! ([`snapshot`]). A snapshot holds `Arc`s of the cached values, so taking one copies no data.
//!
//! This module knows target kinds only through [`TargetKind`] and the list it is given at
//! construction; it knows nothing of metric names or the exposition format
//! (docs/architecture.md).

pub(crate) mod cache;
pub(crate) mod history;
mod kind;
pub(crate) mod scrape;
pub(crate) mod snapshot;
pub(crate) mod stats;

use crate::config::{CollectConfig, Config};
use crate::sys::lock;
use cache::Slot;
use history::History;
pub(crate) use kind::same;
pub use kind::{FetchCx, TargetKind, Values};
pub use scrape::Scope;
pub use snapshot::{Health, Snapshot, TargetSnap};
use stats::AccountStats;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use tibiot_api::{Client, Gate, RequestObserver};

/// Why a configuration could not be put into service.
#[derive(Debug, thiserror::Error)]
pub enum CollectError {
    /// The account's HTTP client could not be built (a header or base URL the client
    /// rejects).
    #[error("accounts[{account}]: {source}")]
    Client {
        account: String,
        #[source]
        source: tibiot_api::client::BuildError,
    },
}

/// One target (a pool, a card, …) of one account, with its cache.
#[derive(Debug)]
pub(crate) struct Target {
    /// The account's name (the `account` label).
    pub(crate) account: Arc<str>,
    /// Pool code, ICCID, …: the value of the kind's id label.
    pub(crate) id: Arc<str>,
    pub(crate) detail: Mutex<Slot<Values>>,
    /// Allocated on first use (most cards have no history configured).
    pub(crate) history: Mutex<Option<Box<History>>>,
    /// Write-once scratch space of the encoder: the target's identifying labels (`account`
    /// and its id) as written on the wire, filled by the encoder at their first sample and
    /// reused by every later one, because they never change. Opaque here: collection never
    /// escapes or formats anything.
    pub(crate) encoded_labels: OnceLock<Box<[u8]>>,
}

impl Target {
    fn new(account: &Arc<str>, id: &str) -> Self {
        Self {
            account: account.clone(),
            id: Arc::from(id),
            detail: Mutex::new(Slot::default()),
            history: Mutex::new(None),
            encoded_labels: OnceLock::new(),
        }
    }
}

/// The most probe-only targets (not in the configuration) kept per account and kind.
const MAX_PROBE_TARGETS: usize = 10_000;

/// The targets of one kind in one account.
pub(crate) struct KindTargets {
    pub(crate) kind: &'static dyn TargetKind,
    /// The configured targets, in configuration order, without duplicates.
    pub(crate) targets: Vec<Arc<Target>>,
    /// Targets asked for by `/probe` only, kept for later probes.
    probed: Mutex<HashMap<Arc<str>, Arc<Target>>>,
}

impl KindTargets {
    /// A configured target, or a probe-only one (kept for later probes).
    fn target(&self, account: &Arc<str>, id: &str) -> Arc<Target> {
        if let Some(t) = self.targets.iter().find(|t| &*t.id == id) {
            return t.clone();
        }
        let mut m = lock(&self.probed);
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
}

/// One account at run time.
pub(crate) struct AccountRt {
    pub(crate) name: Arc<str>,
    base_url: String,
    /// Passes every attempt through the account's [`Gate`] (`concurrency`,
    /// `requests_per_second`).
    pub(crate) client: Client,
    pub(crate) stats: Arc<AccountStats>,
    /// One entry per registered kind, in registration order.
    pub(crate) kinds: Vec<KindTargets>,
}

impl std::fmt::Debug for AccountRt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut d = f.debug_struct("AccountRt");
        d.field("name", &self.name);
        for k in &self.kinds {
            d.field(k.kind.name(), &k.targets.len());
        }
        d.finish()
    }
}

impl AccountRt {
    /// The target `id` of `kind`: a configured one, or a probe-only one.
    pub(crate) fn target(&self, kind: &dyn TargetKind, id: &str) -> Option<Arc<Target>> {
        let k = self.kinds.iter().find(|k| same(k.kind, kind))?;
        Some(k.target(&self.name, id))
    }
}

/// Everything built from one configuration.
#[derive(Debug)]
pub(crate) struct Runtime {
    pub(crate) config: Arc<Config>,
    pub(crate) accounts: Vec<Arc<AccountRt>>,
}

impl Runtime {
    pub(crate) fn settings(&self) -> &CollectConfig {
        &self.config.collect
    }

    pub(crate) fn account(&self, name: &str) -> Option<&Arc<AccountRt>> {
        self.accounts.iter().find(|a| &*a.name == name)
    }
}

/// The collector: the registered kinds and the current runtime, replaced on reload.
pub struct Collector {
    kinds: &'static [&'static dyn TargetKind],
    rt: RwLock<Arc<Runtime>>,
    stats: Mutex<HashMap<String, Arc<AccountStats>>>,
}

impl std::fmt::Debug for Collector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Collector")
            .field("kinds", &self.kinds)
            .finish_non_exhaustive()
    }
}

impl Collector {
    /// Builds the runtime of `config` for the given kinds. Fails only when a client cannot be
    /// built.
    pub fn new(
        config: Arc<Config>,
        kinds: &'static [&'static dyn TargetKind],
    ) -> Result<Self, CollectError> {
        let c = Collector {
            kinds,
            rt: RwLock::new(Arc::new(Runtime {
                config: config.clone(),
                accounts: Vec::new(),
            })),
            stats: Mutex::new(HashMap::new()),
        };
        c.reload(config)?;
        Ok(c)
    }

    /// The registered kinds, in registration order.
    pub fn kinds(&self) -> &'static [&'static dyn TargetKind] {
        self.kinds
    }

    /// The current runtime.
    pub(crate) fn runtime(&self) -> Arc<Runtime> {
        self.rt.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn config(&self) -> Arc<Config> {
        self.runtime().config.clone()
    }

    /// The statistics of the configured accounts, in configuration order (counters survive
    /// reloads; an account that is removed and added again continues its counters).
    pub(crate) fn stats(&self) -> Vec<Arc<AccountStats>> {
        self.runtime()
            .accounts
            .iter()
            .map(|a| a.stats.clone())
            .collect()
    }

    /// Applies a new configuration. Targets that stay (same account name and base URL, same
    /// kind and id) keep their cache; nothing changes when it fails.
    pub fn reload(&self, config: Arc<Config>) -> Result<(), CollectError> {
        let old = self.runtime();
        let collect = &config.collect;
        let mut accounts = Vec::with_capacity(config.accounts.len());
        for a in &config.accounts {
            let stats = lock(&self.stats)
                .entry(a.name.clone())
                .or_insert_with(|| Arc::new(AccountStats::new(&a.name)))
                .clone();
            let mut opts = a.client_options();
            opts.request_timeout = collect.timeout;
            opts.observer = Some(stats.clone() as Arc<dyn RequestObserver>);
            opts.gate = Some(Arc::new(Gate::new(
                collect.concurrency,
                collect.requests_per_second,
            )));
            let client = Client::new(opts).map_err(|source| CollectError::Client {
                account: a.name.clone(),
                source,
            })?;
            let prev = old
                .account(&a.name)
                .filter(|p| p.base_url == a.base_url)
                .cloned();
            let name: Arc<str> = Arc::from(a.name.as_str());
            let kinds = self
                .kinds
                .iter()
                .map(|&kind| {
                    let prev = prev
                        .as_ref()
                        .and_then(|p| p.kinds.iter().find(|k| same(k.kind, kind)));
                    KindTargets {
                        kind,
                        targets: build_targets(&name, kind.configured(a), prev),
                        probed: Mutex::new(HashMap::new()),
                    }
                })
                .collect();
            accounts.push(Arc::new(AccountRt {
                name,
                base_url: a.base_url.clone(),
                client,
                stats,
                kinds,
            }));
        }
        let rt = Arc::new(Runtime { config, accounts });
        *self.rt.write().unwrap_or_else(|e| e.into_inner()) = rt;
        Ok(())
    }
}

/// The targets of `ids` (de-duplicated), reusing the cached ones of `prev`.
fn build_targets(
    account: &Arc<str>,
    ids: &[String],
    prev: Option<&KindTargets>,
) -> Vec<Arc<Target>> {
    let prev: HashMap<&str, &Arc<Target>> = prev
        .map(|k| k.targets.iter().map(|t| (&*t.id, t)).collect())
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
