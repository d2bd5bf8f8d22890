//! One scrape: plan what is due (no allocation when nothing is), start each due fetch as a
//! spawned task behind a shared future stored in the target's slot (concurrent scrapes join
//! it instead of calling upstream again), wait for them until the deadline — the timeout is
//! around the wait, not the fetch, so a fetch that outlives a scrape still fills the cache for
//! the next — and freeze a [`Snapshot`] (see [`super::snapshot`]).

use super::cache::{FetchError, InFlight, Slot};
use super::history::{Window, period_due};
use super::snapshot::{ProbeResult, snapshot};
use super::{AccountRt, Collector, FetchCx, Runtime, Snapshot, Target, TargetKind};
use crate::config::CollectConfig;
use crate::sys::{lock, unix_now};
use futures::{FutureExt, StreamExt};
use std::sync::Arc;
use std::time::Duration;
use tibiot_api::calendar::{Month, format_day};
use tibiot_api::{Deadline, Query};
use tokio::sync::oneshot;
use tokio::time::Instant;

/// What a scrape covers.
#[derive(Debug, Clone)]
pub enum Scope {
    /// Every configured target.
    All,
    /// One target of one account (`/probe`); it need not be configured.
    Target {
        account: String,
        kind: &'static dyn TargetKind,
        id: String,
    },
}

/// The history window of `kind` for one scrape (`None`: no history).
pub(crate) fn window(kind: &dyn TargetKind, c: &CollectConfig) -> Option<Window> {
    let (days, months) = kind.history_window(c);
    let w = Window::new(&c.calendar, c.calendar.today(), days, months);
    (!w.is_empty()).then_some(w)
}

/// Fetches started per account (and scrape) per slot of `concurrency`; see
/// [`Plan::dispatch`].
const DRIVER_FACTOR: usize = 4;

struct Plan<'a> {
    settings: &'a CollectConfig,
    now: Instant,
    now_unix: f64,
    waits: Vec<InFlight>,
    /// New fetches of the account being planned, details first.
    jobs: Vec<Job>,
    history_jobs: Vec<Job>,
}

impl Collector {
    /// Collects everything due and returns the snapshot to encode. Never fails: what did not
    /// arrive before `deadline` is reported as failed and keeps being fetched.
    pub async fn scrape(&self, deadline: Instant) -> Snapshot {
        let started = Instant::now();
        let rt = self.runtime();
        let timed_out = collect(&rt, &Scope::All, deadline).await;
        let mut snap = snapshot(&rt, &Scope::All, timed_out);
        snap.scrape_duration = Some(started.elapsed().as_secs_f64());
        snap
    }

    /// The cache as it is now, without fetching or waiting (the landing page).
    pub fn cached(&self) -> Snapshot {
        let rt = self.runtime();
        snapshot(&rt, &Scope::All, false)
    }

    /// Collects one target (the `/probe` endpoint). `None` when the scope is not one target
    /// of a configured account.
    pub async fn probe(&self, scope: &Scope, deadline: Instant) -> Option<Snapshot> {
        let started = Instant::now();
        let rt = self.runtime();
        let Scope::Target { account, .. } = scope else {
            return None;
        };
        rt.account(account)?;
        let timed_out = collect(&rt, scope, deadline).await;
        let mut snap = snapshot(&rt, scope, timed_out);
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
        Some(snap)
    }
}

/// Starts or joins every due fetch of `scope` and waits for them until `deadline`.
/// Returns whether the deadline cut the wait short.
async fn collect(rt: &Runtime, scope: &Scope, deadline: Instant) -> bool {
    let settings = rt.settings();
    let mut plan = Plan {
        settings,
        now: Instant::now(),
        now_unix: unix_now(),
        waits: Vec::new(),
        jobs: Vec::new(),
        history_jobs: Vec::new(),
    };
    // Windows are the same for every account: computed once per kind.
    let windows: Vec<Option<Window>> = match rt.accounts.first() {
        Some(a) => a.kinds.iter().map(|k| window(k.kind, settings)).collect(),
        None => Vec::new(),
    };
    for acc in &rt.accounts {
        match scope {
            Scope::All => {
                for (k, w) in acc.kinds.iter().zip(&windows) {
                    let ttl = k.kind.ttl(settings);
                    for t in &k.targets {
                        plan.target(k.kind, t, ttl, w.as_ref());
                    }
                }
            }
            Scope::Target { account, kind, id } if **account == *acc.name => {
                if let Some(t) = acc.target(*kind, id) {
                    plan.target(
                        *kind,
                        &t,
                        kind.ttl(settings),
                        window(*kind, settings).as_ref(),
                    );
                }
            }
            Scope::Target { .. } => {}
        }
        plan.dispatch(acc);
    }
    if plan.waits.is_empty() {
        return false;
    }
    let waits = std::mem::take(&mut plan.waits);
    tokio::time::timeout_at(deadline, futures::future::join_all(waits))
        .await
        .is_err()
}

/// A new in-flight marker: completes when the returned sender is dropped (after the
/// fetch recorded its result).
fn marker() -> (oneshot::Sender<()>, InFlight) {
    let (tx, rx) = oneshot::channel::<()>();
    (tx, rx.map(|_| ()).boxed().shared())
}

impl Plan<'_> {
    fn target(
        &mut self,
        kind: &'static dyn TargetKind,
        t: &Arc<Target>,
        ttl: Duration,
        window: Option<&Window>,
    ) {
        let detail_failing;
        {
            let mut slot = lock(&t.detail);
            // Still in flight since an earlier scrape: slow.
            detail_failing = slot.inflight.is_some();
            if let Some(f) = &slot.inflight {
                self.waits.push(f.clone());
            } else if !slot.is_fresh(self.now, ttl) {
                let (tx, f) = marker();
                slot.inflight = Some(f.clone());
                self.waits.push(f);
                self.jobs.push(Job {
                    kind,
                    target: t.clone(),
                    work: Work::Detail,
                    done: tx,
                });
            }
        }
        let Some(w) = window else { return };
        // No new history requests start while a slow detail fetch of the target is still in
        // flight since an earlier scrape (they would most likely be slow too, and would tie up
        // the account's concurrency). History already in flight is still waited for.
        let mut guard = lock(&t.history);
        let h = guard.get_or_insert_with(Default::default);
        h.align(w);
        let ttl = self.settings.history_ttl;
        let periods = w
            .days
            .iter()
            .map(|(d, end)| (Period::Day(*d), *end))
            .chain(w.months.iter().map(|(m, end)| (Period::Month(*m), *end)));
        for (period, end) in periods {
            let slot = match period {
                Period::Day(d) => h.days.get_mut(&d),
                Period::Month(m) => h.months.get_mut(&m),
            };
            let Some(slot) = slot else { continue };
            if let Some(f) = &slot.inflight {
                self.waits.push(f.clone());
            } else if !detail_failing && period_due(slot, end, self.now, self.now_unix, ttl) {
                let (tx, f) = marker();
                slot.inflight = Some(f.clone());
                self.waits.push(f);
                self.history_jobs.push(Job {
                    kind,
                    target: t.clone(),
                    work: Work::Period(period),
                    done: tx,
                });
            }
        }
    }

    /// Hands the account's new fetches (details first) to one driver task. The account's gate
    /// (in its client) keeps `concurrency` requests in flight; the driver keeps a few times
    /// that many fetches started, so that fetches waiting out a retry backoff (which hold no
    /// gate slot) do not stall the queue behind them, while a 10,000-target fill still has
    /// only that many futures alive. The gate admits in order, so details still go first. The
    /// driver is not tied to this scrape: what outlives the deadline still lands in the cache.
    fn dispatch(&mut self, acc: &Arc<AccountRt>) {
        if self.jobs.is_empty() && self.history_jobs.is_empty() {
            return;
        }
        let mut jobs = std::mem::take(&mut self.jobs);
        jobs.append(&mut self.history_jobs);
        let acc = acc.clone();
        let settings = Arc::new(self.settings.clone());
        let limit = settings.concurrency.max(1).saturating_mul(DRIVER_FACTOR);
        let many = jobs.len() >= 1000;
        tokio::spawn(async move {
            futures::stream::iter(jobs)
                .for_each_concurrent(limit, |job| job.run(&acc, &settings))
                .await;
            if many {
                // A large fill leaves a lot of freed request buffers behind.
                crate::sys::release_freed_memory();
            }
        });
    }
}

/// One period of a target's usage history.
#[derive(Debug, Clone, Copy)]
enum Period {
    Day(chrono::NaiveDate),
    Month(Month),
}

impl Period {
    fn label(self) -> String {
        match self {
            Period::Day(d) => format_day(d),
            Period::Month(m) => m.to_string(),
        }
    }
}

/// What a job fetches of its target.
#[derive(Debug, Clone, Copy)]
enum Work {
    Detail,
    Period(Period),
}

/// One upstream fetch to do.
struct Job {
    kind: &'static dyn TargetKind,
    target: Arc<Target>,
    work: Work,
    /// Dropped once the result is recorded: wakes every scrape waiting for it.
    done: oneshot::Sender<()>,
}

impl Job {
    /// Fetches and records; a panic is recorded as a failure. Dropping `done` afterwards
    /// wakes the waiting scrapes.
    async fn run(self, acc: &AccountRt, s: &CollectConfig) {
        let Job {
            kind,
            target,
            work,
            done,
        } = self;
        let result = std::panic::AssertUnwindSafe(async {
            match work {
                Work::Detail => fetch_detail(acc, kind, &target, s).await,
                Work::Period(p) => fetch_period(acc, kind, &target, p, s).await,
            }
        })
        .catch_unwind()
        .await;
        if result.is_err() {
            let e = internal_error();
            match work {
                Work::Detail => lock(&target.detail).record(Err(e)),
                Work::Period(p) => record_period(&target, p, Err(e)),
            }
        }
        drop(done);
    }
}

fn internal_error() -> Arc<FetchError> {
    let mut e = FetchError::from_api(&tibiot_api::ApiError::Invalid(
        "internal error while fetching".into(),
    ));
    e.outcome = tibiot_api::Outcome::DecodeError;
    Arc::new(e)
}

async fn fetch_detail(acc: &AccountRt, kind: &dyn TargetKind, t: &Target, s: &CollectConfig) {
    let cx = FetchCx {
        account: &acc.name,
        stats: &acc.stats,
        calendar: s.calendar,
        deadline: Deadline::AfterAdmission(s.timeout),
    };
    let res = kind.fetch(&acc.client, &t.id, &cx).await;
    let res = res.map_err(|e| {
        let ep = kind.subject().detail();
        crate::logging::fetch_failed(&acc.name, kind.name(), &t.id, None, ep, &e);
        Arc::new(FetchError::from_api(&e))
    });
    lock(&t.detail).record(res);
}

async fn fetch_period(
    acc: &AccountRt,
    kind: &dyn TargetKind,
    t: &Target,
    period: Period,
    s: &CollectConfig,
) {
    let label = period.label();
    let subject = kind.subject();
    let query = match period {
        Period::Day(_) => Query::day_usage(subject, &t.id, &label),
        Period::Month(_) => Query::month_usage(subject, &t.id, &label),
    };
    let ep = query.endpoint();
    let res = acc
        .client
        .get(query, Deadline::AfterAdmission(s.timeout))
        .await
        // KB from the API, bytes in the cache and on the wire.
        .map(|kb| kb.map(|kb| kb * 1024.0));
    let res = res.map_err(|e| {
        crate::logging::fetch_failed(&acc.name, kind.history_name(), &t.id, Some(&label), ep, &e);
        Arc::new(FetchError::from_api(&e))
    });
    record_period(t, period, res);
}

fn record_period(t: &Target, period: Period, res: Result<Option<f64>, Arc<FetchError>>) {
    let mut guard = lock(&t.history);
    let Some(h) = guard.as_mut() else { return };
    let slot: Option<&mut Slot<Option<f64>>> = match period {
        Period::Day(d) => h.days.get_mut(&d),
        Period::Month(m) => h.months.get_mut(&m),
    };
    if let Some(slot) = slot {
        slot.record(res);
    }
    h.invalidate();
}
