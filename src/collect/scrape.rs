//! A scrape, as collection sees it (docs/collection.md): tell each account's scheduler that a
//! scrape came (refreshing goes on while scrapes keep coming; after a (re)load the new
//! targets become known), wait — only until the deadline — for configured values that were
//! never fetched (the cold start), and freeze a [`Snapshot`] of the cache (see
//! [`super::snapshot`]). Warm values are served as they are, their refreshes run in the
//! background. `/probe` does the same for one target, which need not be configured.

use super::history::Window;
use super::sched::{Item, Part};
use super::snapshot::{ProbeResult, snapshot};
use super::{AccountRt, Collector, Snapshot, TargetKind};
use crate::config::CollectConfig;
use std::sync::Arc;
use tokio::time::Instant;

/// What a scrape covers.
#[derive(Debug, Clone)]
pub(crate) enum Scope {
    /// Every configured target.
    All,
    /// One target of one account (`/probe`); it need not be configured.
    Target {
        account: String,
        kind: &'static dyn TargetKind,
        id: String,
    },
}

/// Why a `/probe` is not answered with metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ProbeRefused {
    /// The scope is not one target of a configured account.
    UnknownAccount,
    /// The target is not this replica's and `/probe` of such targets is switched off.
    NotConfigured,
}

/// The history window of `kind` today (`None`: no history).
pub(crate) fn window(kind: &dyn TargetKind, c: &CollectConfig) -> Option<Window> {
    let (days, months) = kind.history_window(c);
    if days + months == 0 {
        return None;
    }
    let w = Window::new(&c.calendar, c.calendar.today(), days, months);
    (!w.is_empty()).then_some(w)
}

/// Whether `kind` keeps a usage history under `c`.
pub(crate) fn has_history(kind: &dyn TargetKind, c: &CollectConfig) -> bool {
    let (days, months) = kind.history_window(c);
    days + months > 0
}

/// The parts of one target: its detail, and its history when the kind keeps one.
fn parts(
    rank: u8,
    target: &Arc<super::Target>,
    probe: bool,
    history: bool,
) -> impl Iterator<Item = Item> + use<> {
    let t = target.clone();
    [Part::Detail, Part::History]
        .into_iter()
        .filter(move |p| *p == Part::Detail || history)
        .map(move |part| Item {
            target: t.clone(),
            timer: 0,
            rank,
            part,
            probe,
        })
}

/// Every part of every configured target of `acc`.
fn configured<'a>(acc: &'a AccountRt, c: &'a CollectConfig) -> impl Iterator<Item = Item> + 'a {
    acc.kinds.iter().enumerate().flat_map(move |(rank, k)| {
        let history = has_history(k.kind, c);
        let rank = u8::try_from(rank).unwrap_or(u8::MAX);
        k.targets
            .iter()
            .flat_map(move |t| parts(rank, t, false, history))
    })
}

impl Collector {
    /// Tells every account that a scrape came and waits, until `deadline`, for configured
    /// values never fetched. Returns whether it had to wait for any (then a snapshot taken
    /// earlier is older than what this scrape may serve).
    pub(crate) async fn collect(&self, deadline: Instant) -> bool {
        let rt = self.runtime();
        let settings = rt.settings();
        for acc in &rt.accounts {
            acc.sched.scraped(configured(acc, settings));
        }
        let waits = rt.accounts.iter().map(|a| a.sched.wait_cold(deadline));
        futures::future::join_all(waits)
            .await
            .into_iter()
            .any(|w| w)
    }

    /// Every configured target as the cache holds it now.
    pub(crate) fn snapshot(&self) -> Snapshot {
        snapshot(&self.runtime(), &Scope::All)
    }

    /// [`Collector::collect`], then the snapshot to encode, with the time spent collecting.
    /// Never fails: what has no value yet is left out, and keeps being fetched.
    pub(crate) async fn scrape(&self, deadline: Instant) -> Snapshot {
        let started = Instant::now();
        self.collect(deadline).await;
        let mut snap = self.snapshot();
        snap.scrape_duration = Some(started.elapsed().as_secs_f64());
        snap
    }

    /// Collects one target (the `/probe` endpoint): served from the cache when it has a
    /// value, else waited for until `deadline`. A target this replica does not own is
    /// `/probe`-only work (after every configured target, within its share of the budget).
    pub(crate) async fn probe(
        &self,
        scope: &Scope,
        deadline: Instant,
    ) -> Result<Snapshot, ProbeRefused> {
        let started = Instant::now();
        let rt = self.runtime();
        let Scope::Target { account, kind, id } = scope else {
            return Err(ProbeRefused::UnknownAccount);
        };
        let acc = rt.account(account).ok_or(ProbeRefused::UnknownAccount)?;
        let settings = rt.settings();
        let (rank, _) = acc
            .kinds
            .iter()
            .enumerate()
            .find(|(_, k)| super::same(k.kind, *kind))
            .ok_or(ProbeRefused::UnknownAccount)?;
        let (target, probe_only) = acc.target(*kind, id).ok_or(ProbeRefused::UnknownAccount)?;
        if probe_only && super::probe_share(settings) <= 0.0 {
            return Err(ProbeRefused::NotConfigured);
        }
        let rank = u8::try_from(rank).unwrap_or(u8::MAX);
        let items: Vec<Item> =
            parts(rank, &target, probe_only, has_history(*kind, settings)).collect();
        acc.sched.probed(&items);
        acc.sched.wait_items(&items, deadline).await;
        let mut snap = snapshot(&rt, scope);
        let success = snap.accounts.iter().all(|a| {
            a.kinds
                .iter()
                .flat_map(|k| &k.targets)
                .all(|t| t.health.ok && t.history.as_ref().is_none_or(|(_, h)| h.ok))
        });
        snap.probe = Some(ProbeResult {
            success,
            duration: started.elapsed().as_secs_f64(),
        });
        Ok(snap)
    }
}
