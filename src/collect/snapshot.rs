//! The immutable view a scrape serves: per account, per registered kind, per target, the
//! served value (fresh, or cached within `stale_after`), the health of its latest fetch and,
//! when configured, its usage history. Built from the cache slots under their locks, holding
//! `Arc`s only, so the encoder reads it without locks and without copies.

use super::cache::{FetchError, Fetched};
use super::history::HistView;
use super::scrape::Scope;
use super::{Runtime, Target, TargetKind, Values, same};
use crate::sys::{lock, unix_now};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::time::Instant;

/// Health of one collection kind of one target, as of a snapshot.
#[derive(Debug, Clone, Default)]
pub struct Health {
    /// An attempt has finished (or timed out) at least once.
    pub(crate) attempted: bool,
    /// The latest attempt succeeded (in time).
    pub(crate) ok: bool,
    /// When the served values were fetched.
    pub(crate) last_success: Option<f64>,
    pub(crate) error: Option<Arc<FetchError>>,
}

/// One target as of a snapshot.
#[derive(Debug)]
pub struct TargetSnap {
    pub(crate) target: Arc<Target>,
    /// The served value (fresh, or cached within `stale_after`).
    pub(crate) value: Option<Arc<Fetched<Values>>>,
    pub(crate) health: Health,
    /// History view and health, when history is configured for this kind.
    pub(crate) history: Option<(Arc<HistView>, Health)>,
}

impl TargetSnap {
    /// The account's name.
    pub(crate) fn account(&self) -> &str {
        &self.target.account
    }

    /// The target's id (pool code, ICCID, …).
    pub(crate) fn id(&self) -> &str {
        &self.target.id
    }

    /// The encoder's write-once memo of the target's identifying labels (see [`Target`]).
    pub(crate) fn encoded_labels(&self) -> &OnceLock<Box<[u8]>> {
        &self.target.encoded_labels
    }

    /// The served value as the kind built it, when there is one of type `V`.
    pub(crate) fn value<V: 'static>(&self) -> Option<&V> {
        self.value.as_ref()?.value.downcast_ref()
    }
}

/// The targets of one kind of one account, as of a snapshot.
#[derive(Debug)]
pub struct KindSnap {
    pub(crate) kind: &'static dyn TargetKind,
    pub(crate) targets: Vec<TargetSnap>,
}

/// One account as of a snapshot.
#[derive(Debug)]
pub struct AccountSnap {
    pub(crate) name: Arc<str>,
    /// Whether the account's latest upstream request succeeded (`None`: none yet).
    pub(crate) up: Option<bool>,
    /// One entry per registered kind, in registration order.
    pub(crate) kinds: Vec<KindSnap>,
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
pub struct Snapshot {
    pub(crate) now: Instant,
    pub(crate) now_unix: f64,
    pub(crate) stale_after: Duration,
    pub(crate) accounts: Vec<AccountSnap>,
    /// Time the scrape spent collecting (absent for views that did not collect).
    pub(crate) scrape_duration: Option<f64>,
    pub(crate) probe: Option<ProbeResult>,
}

/// Freezes the state of `scope`. `timed_out`: the scrape's wait was cut short, so what is
/// still in flight is reported as failed.
pub(crate) fn snapshot(rt: &Runtime, scope: &Scope, timed_out: bool) -> Snapshot {
    let settings = rt.settings();
    let ctx = SnapCtx {
        now: Instant::now(),
        stale_after: settings.stale_after,
        timed_out,
        cal: settings.calendar,
    };
    let mut accounts = Vec::with_capacity(rt.accounts.len());
    for acc in &rt.accounts {
        let kinds = match scope {
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
                let target = acc.target(*kind, id);
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
        accounts.push(AccountSnap {
            name: acc.name.clone(),
            up: acc.stats.up(),
            kinds,
        });
    }
    Snapshot {
        now: ctx.now,
        now_unix: unix_now(),
        stale_after: settings.stale_after,
        accounts,
        scrape_duration: None,
        probe: None,
    }
}

fn has_history(kind: &dyn TargetKind, c: &crate::config::CollectConfig) -> bool {
    let (days, months) = kind.history_window(c);
    days + months > 0
}

struct SnapCtx {
    now: Instant,
    stale_after: Duration,
    timed_out: bool,
    cal: tibiot_api::calendar::ApiCalendar,
}

impl SnapCtx {
    fn target(&self, t: &Arc<Target>, with_history: bool) -> TargetSnap {
        let (value, health) = {
            let slot = lock(&t.detail);
            let value = slot.served(self.now, self.stale_after);
            let late = self.timed_out && slot.inflight.is_some();
            let health = Health {
                attempted: slot.last_ok.is_some() || late,
                ok: !late && slot.last_ok == Some(true),
                last_success: value.as_ref().map(|v| v.at_unix),
                error: if late {
                    Some(Arc::new(FetchError::deadline()))
                } else {
                    slot.last_error.clone()
                },
            };
            (value, health)
        };
        let history = with_history.then(|| {
            let mut guard = lock(&t.history);
            let h = guard.get_or_insert_with(Default::default);
            let view = h.view(&self.cal);
            let late = self.timed_out && h.any_inflight();
            let health = Health {
                attempted: view.attempted || late,
                ok: !late && view.attempted && view.ok,
                last_success: view.last_success,
                error: if late {
                    Some(Arc::new(FetchError::deadline()))
                } else {
                    view.last_error.clone()
                },
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
