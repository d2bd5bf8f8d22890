//! The immutable view a scrape serves: per account, per registered kind, per target, the
//! served value (fresh, or cached within `stale_after`), the result of its latest completed
//! fetch (work in progress changes nothing: docs/collection.md, "Pending is not failure") and,
//! when configured, its usage history; per account the scheduler's figures (pending parts,
//! oldest data, budget, a remembered `Retry-After`). Built from the cache slots under their
//! locks, holding `Arc`s only, so the encoder reads it without locks and without copies.

use super::cache::{FetchError, Fetched};
use super::history::HistView;
use super::scrape::{Scope, has_history};
use super::{Runtime, Target, TargetKind, Values, same};
use crate::sys::{lock, unix_now};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::time::Instant;

/// Health of one collection kind of one target, as of a snapshot.
#[derive(Debug, Clone, Default)]
pub(crate) struct Health {
    /// A fetch has completed at least once.
    pub(crate) attempted: bool,
    /// The latest completed fetch succeeded.
    pub(crate) ok: bool,
    /// When the served values were fetched.
    pub(crate) last_success: Option<f64>,
    pub(crate) error: Option<Arc<FetchError>>,
}

/// One target as of a snapshot.
#[derive(Debug)]
pub(crate) struct TargetSnap {
    pub(crate) target: Arc<Target>,
    /// The served value (fresh, or cached within `stale_after`).
    pub(crate) value: Option<Arc<Fetched<Values>>>,
    pub(crate) health: Health,
    /// History view and health, when history is configured for this kind.
    pub(crate) history: Option<(Arc<HistView>, Health)>,
}

impl TargetSnap {
    /// The account's name.
    #[inline]
    pub(crate) fn account(&self) -> &str {
        &self.target.account
    }

    /// The target's id (pool code, ICCID, …).
    #[inline]
    pub(crate) fn id(&self) -> &str {
        &self.target.id
    }

    /// The encoder's write-once memo of the target's identifying labels (see [`Target`]).
    #[inline]
    pub(crate) fn encoded_labels(&self) -> &OnceLock<Box<[u8]>> {
        &self.target.encoded_labels
    }

    /// The served value as the kind built it, when there is one of type `V`.
    #[inline]
    pub(crate) fn value<V: 'static>(&self) -> Option<&V> {
        self.value.as_ref()?.value.downcast_ref()
    }
}

/// The targets of one kind of one account, as of a snapshot.
#[derive(Debug)]
pub(crate) struct KindSnap {
    pub(crate) kind: &'static dyn TargetKind,
    pub(crate) targets: Vec<TargetSnap>,
}

/// One account as of a snapshot.
#[derive(Debug)]
pub(crate) struct AccountSnap {
    pub(crate) name: Arc<str>,
    /// Whether the account's latest upstream request succeeded (`None`: none yet).
    pub(crate) up: Option<bool>,
    /// One entry per registered kind, in registration order.
    pub(crate) kinds: Vec<KindSnap>,
    /// Per collection kind (`pool`, `pool_history`, …): configured parts due or being
    /// fetched, not yet completed.
    pub(crate) pending: Vec<(&'static str, usize)>,
    /// Per collection kind: the age of the oldest value served, seconds (kinds with a served
    /// value only).
    pub(crate) oldest_age: Vec<(&'static str, f64)>,
    /// Until when the API asked for no requests (`Retry-After`), unix seconds; `None` when no
    /// pause is in force.
    pub(crate) paused_until: Option<f64>,
    /// Requests per second the account's targets (on this replica) need at their TTLs.
    pub(crate) required_rps: f64,
    /// Requests per second allowed (`None`: unlimited).
    pub(crate) allowed_rps: Option<f64>,
}

impl AccountSnap {
    /// The targets of `kind`.
    pub(crate) fn targets(&self, kind: &dyn TargetKind) -> &[TargetSnap] {
        self.kinds
            .iter()
            .find(|k| same(k.kind, kind))
            .map(|k| k.targets.as_slice())
            .unwrap_or_default()
    }
}

/// The outcome of a `/probe`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ProbeResult {
    pub(crate) success: bool,
    pub(crate) duration: f64,
}

/// An immutable view of everything a scrape serves.
#[derive(Debug)]
pub(crate) struct Snapshot {
    pub(crate) now: Instant,
    pub(crate) now_unix: f64,
    pub(crate) stale_after: Duration,
    pub(crate) accounts: Vec<AccountSnap>,
    /// Time the scrape spent collecting (absent for views that did not collect).
    pub(crate) scrape_duration: Option<f64>,
    pub(crate) probe: Option<ProbeResult>,
}

/// Freezes the state of `scope`.
pub(crate) fn snapshot(rt: &Runtime, scope: &Scope) -> Snapshot {
    let settings = rt.settings();
    let ctx = SnapCtx {
        now: Instant::now(),
        stale_after: settings.stale_after,
        cal: settings.calendar,
    };
    let now_unix = unix_now();
    let mut accounts = Vec::with_capacity(rt.accounts.len());
    for acc in &rt.accounts {
        let kinds: Vec<KindSnap> = match scope {
            Scope::All => acc
                .kinds
                .iter()
                .map(|k| {
                    let history = has_history(k.kind, settings);
                    KindSnap {
                        kind: k.kind,
                        targets: k.targets.iter().map(|t| ctx.target(t, history)).collect(),
                    }
                })
                .collect(),
            Scope::Target { account, kind, id } if **account == *acc.name => {
                let target = acc.target(*kind, id).map(|(t, _)| t);
                acc.kinds
                    .iter()
                    .map(|k| {
                        let targets = match &target {
                            Some(t) if same(k.kind, *kind) => {
                                vec![ctx.target(t, has_history(k.kind, settings))]
                            }
                            _ => Vec::new(),
                        };
                        KindSnap {
                            kind: k.kind,
                            targets,
                        }
                    })
                    .collect()
            }
            Scope::Target { .. } => continue,
        };
        let counts = acc.sched.pending();
        let pending = acc
            .kinds
            .iter()
            .enumerate()
            .flat_map(|(i, k)| {
                let c = |j: usize| counts.get(i * 2 + j).copied().unwrap_or(0);
                let history = has_history(k.kind, settings).then(|| (k.kind.history_name(), c(1)));
                std::iter::once((k.kind.name(), c(0))).chain(history)
            })
            .collect();
        let oldest_age = oldest_ages(&kinds, ctx.now);
        let paused_until = acc
            .gate
            .paused_until()
            .map(|p| now_unix + p.saturating_duration_since(ctx.now).as_secs_f64());
        accounts.push(AccountSnap {
            name: acc.name.clone(),
            up: acc.stats.up(),
            kinds,
            pending,
            oldest_age,
            paused_until,
            required_rps: acc.budget.required_per_second(),
            allowed_rps: acc.budget.allowed_per_second,
        });
    }
    Snapshot {
        now: ctx.now,
        now_unix,
        stale_after: settings.stale_after,
        accounts,
        scrape_duration: None,
        probe: None,
    }
}

/// The age of the oldest value served, per collection kind (history: of the oldest open
/// period served; closed periods never change).
fn oldest_ages(kinds: &[KindSnap], now: Instant) -> Vec<(&'static str, f64)> {
    let mut out = Vec::new();
    for k in kinds {
        let detail = k
            .targets
            .iter()
            .filter_map(|t| t.value.as_ref())
            .map(|v| now.saturating_duration_since(v.at))
            .max();
        if let Some(a) = detail {
            out.push((k.kind.name(), a.as_secs_f64()));
        }
        let history = k
            .targets
            .iter()
            .filter_map(|t| t.history.as_ref())
            .flat_map(|(v, _)| v.days.iter().chain(&v.months))
            .filter(|p| !p.immutable)
            .map(|p| now.saturating_duration_since(p.at))
            .max();
        if let Some(a) = history {
            out.push((k.kind.history_name(), a.as_secs_f64()));
        }
    }
    out
}

struct SnapCtx {
    now: Instant,
    stale_after: Duration,
    cal: tibiot_api::calendar::ApiCalendar,
}

impl SnapCtx {
    fn target(&self, t: &Arc<Target>, with_history: bool) -> TargetSnap {
        let (value, health) = {
            let slot = lock(&t.detail);
            let value = slot.served(self.now, self.stale_after);
            let health = Health {
                attempted: slot.last_ok.is_some(),
                ok: slot.last_ok == Some(true),
                last_success: value.as_ref().map(|v| v.at_unix),
                error: slot.last_error.clone(),
            };
            (value, health)
        };
        let history = with_history.then(|| {
            let mut guard = lock(&t.history);
            let h = guard.get_or_insert_with(Default::default);
            let view = h.view(&self.cal);
            let health = Health {
                attempted: view.attempted,
                ok: view.attempted && view.ok,
                last_success: view.last_success,
                error: view.last_error.clone(),
            };
            (view, health)
        });
        TargetSnap {
            target: t.clone(),
            value,
            health,
            history,
        }
    }
}
