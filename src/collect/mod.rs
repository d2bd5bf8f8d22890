//! Collection (docs/collection.md): keeping the cache of every target fresh and turning a
//! scrape into a [`Snapshot`]. The [`Collector`] owns the runtime built from the configuration
//! — one account runtime per account (client, gate, statistics, its scheduler, and for every
//! registered [`TargetKind`] the targets this replica owns with their cache slots) — swaps it
//! on reload (keeping the cache and the schedule of targets that stay), and answers scrapes
//! ([`scrape`]): tell each account's scheduler ([`sched`]) that a scrape came, wait only for
//! values never fetched, and freeze an immutable snapshot for the encoder ([`snapshot`]). A
//! snapshot holds `Arc`s of the cached values, so taking one copies no data.
//!
//! This module knows target kinds only through [`TargetKind`] and the list it is given at
//! construction; it knows nothing of metric names or the exposition format
//! (docs/architecture.md).

pub(crate) mod cache;
mod fetch;
pub(crate) mod history;
mod kind;
pub(crate) mod queue;
pub(crate) mod sched;
pub(crate) mod scrape;
pub(crate) mod shard;
pub(crate) mod snapshot;
pub(crate) mod stats;

use crate::config::{CollectConfig, Config, RequestBudget, TargetCounts};
use crate::sys::lock;
use cache::Slot;
use history::History;
pub(crate) use kind::same;
pub(crate) use kind::{FetchCx, TargetKind, Values};
use sched::{Mark, Sched};
pub(crate) use scrape::{ProbeRefused, Scope};
pub use shard::Shard;
pub(crate) use snapshot::{Health, Snapshot, TargetSnap};
use stats::AccountStats;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
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

/// One target (a pool, a card, …) of one account, with its cache and its place in the
/// account's schedule.
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
    /// The scheduler's bookkeeping of its detail and its history.
    pub(crate) marks: [Mark; 2],
    /// Dropped from the configuration by a reload.
    retired: AtomicBool,
}

impl Target {
    fn new(account: &Arc<str>, id: Arc<str>) -> Self {
        Self {
            account: account.clone(),
            id,
            detail: Mutex::new(Slot::default()),
            history: Mutex::new(None),
            encoded_labels: OnceLock::new(),
            marks: Default::default(),
            retired: AtomicBool::new(false),
        }
    }

    pub(crate) fn retired(&self) -> bool {
        self.retired.load(Ordering::Relaxed)
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
    /// A configured target of this replica, or a probe-only one (kept for later probes; not
    /// in the configuration or another shard's). The flag says which: `true` for probe-only.
    fn target(&self, account: &Arc<str>, id: &str) -> (Arc<Target>, bool) {
        if let Some(t) = self.targets.iter().find(|t| &*t.id == id) {
            return (t.clone(), false);
        }
        let mut m = lock(&self.probed);
        if let Some(t) = m.get(id) {
            return (t.clone(), true);
        }
        if m.len() >= MAX_PROBE_TARGETS {
            // forgotten probe targets leave the schedule too
            for t in m.values() {
                t.retired.store(true, Ordering::Relaxed);
            }
            m.clear();
        }
        let t = Arc::new(Target::new(account, Arc::from(id)));
        m.insert(t.id.clone(), t.clone());
        (t, true)
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
    /// The account's gate (also inside `client`): its remembered `Retry-After`.
    pub(crate) gate: Arc<Gate>,
    /// The account's scheduler (kept across reloads).
    pub(crate) sched: Arc<Sched>,
    /// The request rate the account's targets on this replica need at the configured TTLs,
    /// and the rate allowed.
    pub(crate) budget: RequestBudget,
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
    /// The target `id` of `kind`: a configured one, or a probe-only one (then `true`).
    pub(crate) fn target(&self, kind: &dyn TargetKind, id: &str) -> Option<(Arc<Target>, bool)> {
        let k = self.kinds.iter().find(|k| same(k.kind, kind))?;
        Some(k.target(&self.name, id))
    }

    /// Whether the account has configured targets on this replica.
    pub(crate) fn has_configured(&self) -> bool {
        self.kinds.iter().any(|k| !k.targets.is_empty())
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
pub(crate) struct Collector {
    kinds: &'static [&'static dyn TargetKind],
    /// Which targets this replica owns.
    shard: Shard,
    rt: RwLock<Arc<Runtime>>,
    stats: Mutex<HashMap<String, Arc<AccountStats>>>,
    /// Every account's scheduler with the base URL it serves (a new base URL: a new one).
    scheds: Mutex<HashMap<String, (String, Arc<Sched>)>>,
}

impl std::fmt::Debug for Collector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Collector")
            .field("kinds", &self.kinds)
            .finish_non_exhaustive()
    }
}

impl Collector {
    /// Builds the runtime of `config` for the given kinds, owning the targets of `shard`.
    /// Fails only when a client cannot be built. Nothing is fetched before the first scrape.
    pub(crate) fn new(
        config: Arc<Config>,
        kinds: &'static [&'static dyn TargetKind],
        shard: Shard,
    ) -> Result<Self, CollectError> {
        let c = Collector {
            kinds,
            shard,
            rt: RwLock::new(Arc::new(Runtime {
                config: config.clone(),
                accounts: Vec::new(),
            })),
            stats: Mutex::new(HashMap::new()),
            scheds: Mutex::new(HashMap::new()),
        };
        c.reload(config)?;
        Ok(c)
    }

    /// The registered kinds, in registration order.
    pub(crate) fn kinds(&self) -> &'static [&'static dyn TargetKind] {
        self.kinds
    }

    /// The current runtime.
    pub(crate) fn runtime(&self) -> Arc<Runtime> {
        self.rt.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub(crate) fn config(&self) -> Arc<Config> {
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
    /// kind and id, still this replica's) keep their cache and their schedule; nothing changes
    /// when it fails. Logs each account's request budget.
    pub(crate) fn reload(&self, config: Arc<Config>) -> Result<(), CollectError> {
        let old = self.runtime();
        let collect = &config.collect;
        let mut accounts = Vec::with_capacity(config.accounts.len());
        for a in &config.accounts {
            let stats = lock(&self.stats)
                .entry(a.name.clone())
                .or_insert_with(|| Arc::new(AccountStats::new(&a.name)))
                .clone();
            let gate = Arc::new(Gate::new(collect.concurrency, collect.requests_per_second));
            let mut opts = a.client_options();
            opts.request_timeout = collect.timeout;
            opts.observer = Some(stats.clone() as Arc<dyn RequestObserver>);
            opts.gate = Some(gate.clone());
            let client = Client::new(opts).map_err(|source| CollectError::Client {
                account: a.name.clone(),
                source,
            })?;
            let prev = old
                .account(&a.name)
                .filter(|p| p.base_url == a.base_url)
                .cloned();
            let name: Arc<str> = Arc::from(a.name.as_str());
            let kinds: Vec<KindTargets> = self
                .kinds
                .iter()
                .map(|&kind| {
                    let prev = prev
                        .as_ref()
                        .and_then(|p| p.kinds.iter().find(|k| same(k.kind, kind)));
                    let ids = kind.configured(a);
                    let owned: Vec<&Arc<str>> = ids
                        .iter()
                        .filter(|id| self.shard.owns(&a.name, kind.name(), id))
                        .collect();
                    KindTargets {
                        kind,
                        targets: build_targets(&name, &owned, prev),
                        probed: Mutex::new(HashMap::new()),
                    }
                })
                .collect();
            // a pause the API asked for outlives the reload
            if let Some(p) = &prev
                && let Some(until) = p.gate.paused_until()
            {
                gate.pause_for(until.saturating_duration_since(tokio::time::Instant::now()));
            }
            let sched = {
                let mut scheds = lock(&self.scheds);
                match scheds.get(&a.name) {
                    Some((url, s)) if *url == a.base_url => s.clone(),
                    _ => {
                        let s = Sched::new(&a.name);
                        if let Some((_, old)) =
                            scheds.insert(a.name.clone(), (a.base_url.clone(), s.clone()))
                        {
                            old.close();
                        }
                        s
                    }
                }
            };
            let budget = request_budget(&kinds, collect);
            accounts.push(Arc::new(AccountRt {
                name,
                base_url: a.base_url.clone(),
                client,
                stats,
                kinds,
                gate,
                sched,
                budget,
            }));
        }
        // Targets that left (the configuration, or the account's base URL changed) leave the
        // schedule; accounts that left stop their scheduler.
        for acc in &old.accounts {
            let kept = accounts
                .iter()
                .find(|n| n.name == acc.name && n.base_url == acc.base_url);
            for k in &acc.kinds {
                for t in &k.targets {
                    let stays = kept.is_some_and(|n| {
                        n.kinds.iter().any(|nk| {
                            same(nk.kind, k.kind) && nk.targets.iter().any(|x| Arc::ptr_eq(x, t))
                        })
                    });
                    if !stays {
                        t.retired.store(true, Ordering::Relaxed);
                    }
                }
                for t in lock(&k.probed).values() {
                    t.retired.store(true, Ordering::Relaxed);
                }
            }
        }
        {
            let mut scheds = lock(&self.scheds);
            scheds.retain(|name, (_, s)| {
                let keep = accounts.iter().any(|a| *a.name == **name);
                if !keep {
                    s.close();
                }
                keep
            });
        }
        for acc in &accounts {
            acc.sched.configure(sched::Driving {
                kinds: self.kinds,
                account: acc.name.clone(),
                stats: acc.stats.clone(),
                client: acc.client.clone(),
                gate: acc.gate.clone(),
                settings: Arc::new(collect.clone()),
                has_configured: acc.has_configured(),
                probe_share: probe_share(collect),
                over_budget: acc.budget.over_budget(),
            });
            log_budget(acc, self.shard);
        }
        let rt = Arc::new(Runtime { config, accounts });
        *self.rt.write().unwrap_or_else(|e| e.into_inner()) = rt;
        Ok(())
    }
}

/// The share of an account's request budget that `/probe` of targets outside the
/// configuration may use (docs/collection.md), from `collect.unconfigured_probe_percent`.
pub(crate) fn probe_share(c: &CollectConfig) -> f64 {
    f64::from(c.unconfigured_probe_percent) / 100.0
}

/// The request budget of the targets this replica owns (the configuration's budget
/// arithmetic, `crate::config::RequestBudget`, over its pools and cards).
fn request_budget(kinds: &[KindTargets], c: &CollectConfig) -> RequestBudget {
    let count = |name: &str| {
        kinds
            .iter()
            .filter(|k| k.kind.name() == name)
            .map(|k| k.targets.len())
            .sum()
    };
    c.request_budget(TargetCounts {
        pools: count("pool"),
        cards: count("card"),
    })
}

/// Logs an account's budget at start and reload; over budget, a warning says what stretches.
fn log_budget(acc: &AccountRt, shard: Shard) {
    let b = &acc.budget;
    let (need, allowed) = (b.required_per_second(), b.allowed_per_second);
    let targets: usize = acc.kinds.iter().map(|k| k.targets.len()).sum();
    let shard_note = if shard.is_sharded() {
        format!("shard {} of {}", shard.shard, shard.total)
    } else {
        "unsharded".to_owned()
    };
    match allowed {
        Some(a) if need > a => tracing::warn!(
            account = %acc.name,
            targets,
            shard = %shard_note,
            required_requests_per_second = format!("{need:.2}"),
            allowed_requests_per_second = format!("{a:.2}"),
            stretch = format!("{:.2}", b.stretch()),
            effective_card_refresh = crate::config::format_duration(b.effective_card_ttl()),
            effective_pool_refresh = crate::config::format_duration(b.effective_pool_ttl()),
            "the account needs more requests than it is allowed: refresh periods stretch by about this factor (oldest data first, pools first; no target starves)"
        ),
        _ => tracing::info!(
            account = %acc.name,
            targets,
            shard = %shard_note,
            required_requests_per_second = format!("{need:.2}"),
            allowed_requests_per_second = allowed.map_or("unlimited".to_owned(), |a| format!("{a:.2}")),
            "request budget"
        ),
    }
}

/// The targets of `ids` (de-duplicated), reusing the cached ones of `prev`.
fn build_targets(
    account: &Arc<str>,
    ids: &[&Arc<str>],
    prev: Option<&KindTargets>,
) -> Vec<Arc<Target>> {
    let prev: HashMap<&str, &Arc<Target>> = prev
        .map(|k| k.targets.iter().map(|t| (&*t.id, t)).collect())
        .unwrap_or_default();
    let mut seen = std::collections::HashSet::with_capacity(ids.len());
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        if !seen.insert(&***id) {
            continue;
        }
        out.push(
            prev.get(&***id)
                .map(|t| (*t).clone())
                .unwrap_or_else(|| Arc::new(Target::new(account, Arc::clone(id)))),
        );
    }
    out
}
