//! One scrape: plan what is due (no allocation when nothing is), start each due fetch as a
//! spawned task behind a shared future stored in the target's slot (concurrent scrapes join
//! it instead of calling upstream again), wait for them until the deadline — the timeout is
//! around the wait, not the fetch, so a fetch that outlives a scrape still fills the cache for
//! the next — and freeze a [`Snapshot`].

use super::cache::{FetchError, InFlight, Slot, unix_now};
use super::history::{Window, period_due};
use super::{
    AccountRt, AccountSnap, CardValues, Collector, Fetchable, Health, PoolValues, ProbeResult,
    Runtime, Snapshot, Target, TargetSnap, lock,
};
use crate::config::CollectConfig;
use futures::{FutureExt, StreamExt};
use std::sync::Arc;
use std::time::Duration;
use tibiot_api::Deadline;
use tibiot_api::calendar::Month;
use tokio::sync::oneshot;
use tokio::time::Instant;

/// What a scrape covers.
#[derive(Debug, Clone)]
pub enum Scope {
    All,
    Pool { account: String, code: String },
    Card { account: String, iccid: String },
}

/// The history windows of one scrape.
struct Windows {
    pool: Option<Window>,
    card: Option<Window>,
}

impl Windows {
    fn new(c: &CollectConfig) -> Self {
        let today = c.calendar.today();
        let h = &c.history;
        let pool = Window::new(&c.calendar, today, h.pool_days, h.pool_months);
        let card = Window::new(&c.calendar, today, h.card_days, h.card_months);
        Self {
            pool: (!pool.is_empty()).then_some(pool),
            card: (!card.is_empty()).then_some(card),
        }
    }
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

    /// Collects one target (the `/probe` endpoint). `None` when the account is unknown.
    pub async fn probe(&self, scope: &Scope, deadline: Instant) -> Option<Snapshot> {
        let started = Instant::now();
        let rt = self.runtime();
        let account = match scope {
            Scope::All => return None,
            Scope::Pool { account, .. } | Scope::Card { account, .. } => account,
        };
        rt.account(account)?;
        let timed_out = collect(&rt, scope, deadline).await;
        let mut snap = snapshot(&rt, scope, timed_out);
        let success = snap.accounts.iter().all(|a| {
            a.pools
                .iter()
                .map(|p| (&p.health, &p.history))
                .chain(a.cards.iter().map(|c| (&c.health, &c.history)))
                .all(|(h, hist)| h.ok && hist.as_ref().is_none_or(|(_, hh)| hh.ok))
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
    let windows = Windows::new(settings);
    let mut plan = Plan {
        settings,
        now: Instant::now(),
        now_unix: unix_now(),
        waits: Vec::new(),
        jobs: Vec::new(),
        history_jobs: Vec::new(),
    };
    for acc in &rt.accounts {
        match scope {
            Scope::All => {
                for p in &acc.pools {
                    plan.target(p, settings.pool_ttl, windows.pool.as_ref());
                }
                for c in &acc.cards {
                    plan.target(c, settings.card_ttl, windows.card.as_ref());
                }
            }
            Scope::Pool { account, code } if **account == *acc.name => {
                let p = acc.pool_target(code);
                plan.target(&p, settings.pool_ttl, windows.pool.as_ref());
            }
            Scope::Card { account, iccid } if **account == *acc.name => {
                let c = acc.card_target(iccid);
                plan.target(&c, settings.card_ttl, windows.card.as_ref());
            }
            _ => {}
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
    fn target<V: WorkOf>(&mut self, t: &Arc<Target<V>>, ttl: Duration, window: Option<&Window>) {
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
                    work: V::detail_work(t.clone()),
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
                    work: V::period_work(t.clone(), period),
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
                crate::metrics::process::release_freed_memory();
            }
        });
    }
}

#[derive(Debug, Clone, Copy)]
pub enum Period {
    Day(chrono::NaiveDate),
    Month(Month),
}

impl Period {
    fn label(self) -> String {
        match self {
            Period::Day(d) => tibiot_api::calendar::format_day(d),
            Period::Month(m) => m.to_string(),
        }
    }
}

/// One upstream fetch to do.
pub enum Work {
    PoolDetail(Arc<Target<PoolValues>>),
    CardDetail(Arc<Target<CardValues>>),
    PoolPeriod(Arc<Target<PoolValues>>, Period),
    CardPeriod(Arc<Target<CardValues>>, Period),
}

/// How a kind of target names its work.
pub trait WorkOf: Fetchable {
    fn detail_work(t: Arc<Target<Self>>) -> Work;
    fn period_work(t: Arc<Target<Self>>, p: Period) -> Work;
}

impl WorkOf for PoolValues {
    fn detail_work(t: Arc<Target<Self>>) -> Work {
        Work::PoolDetail(t)
    }
    fn period_work(t: Arc<Target<Self>>, p: Period) -> Work {
        Work::PoolPeriod(t, p)
    }
}

impl WorkOf for CardValues {
    fn detail_work(t: Arc<Target<Self>>) -> Work {
        Work::CardDetail(t)
    }
    fn period_work(t: Arc<Target<Self>>, p: Period) -> Work {
        Work::CardPeriod(t, p)
    }
}

struct Job {
    work: Work,
    /// Dropped once the result is recorded: wakes every scrape waiting for it.
    done: oneshot::Sender<()>,
}

impl Job {
    /// Fetches and records; a panic is recorded as a failure. Dropping `done` afterwards
    /// wakes the waiting scrapes.
    async fn run(self, acc: &AccountRt, s: &CollectConfig) {
        let Job { work, done } = self;
        let result = std::panic::AssertUnwindSafe(execute(&work, acc, s))
            .catch_unwind()
            .await;
        if result.is_err() {
            let e = internal_error();
            match &work {
                Work::PoolDetail(t) => lock(&t.detail).record(Err(e)),
                Work::CardDetail(t) => lock(&t.detail).record(Err(e)),
                Work::PoolPeriod(t, p) => record_period(t, *p, Err(e)),
                Work::CardPeriod(t, p) => record_period(t, *p, Err(e)),
            }
        }
        drop(done);
    }
}

async fn execute(work: &Work, acc: &AccountRt, s: &CollectConfig) {
    match work {
        Work::PoolDetail(t) => fetch_detail(acc, t, s).await,
        Work::CardDetail(t) => fetch_detail(acc, t, s).await,
        Work::PoolPeriod(t, p) => fetch_period(acc, t, *p, s).await,
        Work::CardPeriod(t, p) => fetch_period(acc, t, *p, s).await,
    }
}

fn internal_error() -> Arc<FetchError> {
    let mut e = FetchError::from_api(&tibiot_api::ApiError::Invalid(
        "internal error while fetching".into(),
    ));
    e.outcome = tibiot_api::Outcome::DecodeError;
    Arc::new(e)
}

async fn fetch_detail<V: Fetchable>(acc: &AccountRt, t: &Target<V>, s: &CollectConfig) {
    let cal = s.calendar;
    let id = t.id.clone();
    let res = V::fetch(
        acc.client.clone(),
        id,
        cal,
        Deadline::AfterAdmission(s.timeout),
    )
    .await;
    let res = res.map_err(|e| {
        crate::logging::fetch_failed(&acc.name, V::KIND.as_str(), &t.id, None, V::DETAIL, &e);
        Arc::new(FetchError::from_api(&e))
    });
    lock(&t.detail).record(res);
}

async fn fetch_period<V: Fetchable>(
    acc: &AccountRt,
    t: &Target<V>,
    period: Period,
    s: &CollectConfig,
) {
    let (month, ep) = match period {
        Period::Day(_) => (false, V::DAY),
        Period::Month(_) => (true, V::MONTH),
    };
    let label = period.label();
    let id = t.id.clone();
    let p = label.clone();
    let res = V::fetch_period(
        acc.client.clone(),
        id,
        p,
        month,
        Deadline::AfterAdmission(s.timeout),
    )
    .await;
    let res = res.map_err(|e| {
        crate::logging::fetch_failed(&acc.name, V::HISTORY.as_str(), &t.id, Some(&label), ep, &e);
        Arc::new(FetchError::from_api(&e))
    });
    record_period(t, period, res);
}

fn record_period<V>(t: &Target<V>, period: Period, res: Result<Option<f64>, Arc<FetchError>>) {
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

/// Freezes the state of `scope`. `timed_out`: the scrape's wait was cut short, so what is
/// still in flight is reported as failed.
fn snapshot(rt: &Runtime, scope: &Scope, timed_out: bool) -> Snapshot {
    let settings = rt.settings();
    let now = Instant::now();
    let ctx = SnapCtx {
        now,
        stale_after: settings.stale_after,
        timed_out,
        cal: settings.calendar,
        pool_history: settings.history.pool_days + settings.history.pool_months > 0,
        card_history: settings.history.card_days + settings.history.card_months > 0,
    };
    let mut accounts = Vec::with_capacity(rt.accounts.len());
    for acc in &rt.accounts {
        let (pools, cards) = match scope {
            Scope::All => (
                acc.pools
                    .iter()
                    .map(|p| ctx.target(p, ctx.pool_history))
                    .collect(),
                acc.cards
                    .iter()
                    .map(|c| ctx.target(c, ctx.card_history))
                    .collect(),
            ),
            Scope::Pool { account, code } if **account == *acc.name => (
                vec![ctx.target(&acc.pool_target(code), ctx.pool_history)],
                Vec::new(),
            ),
            Scope::Card { account, iccid } if **account == *acc.name => (
                Vec::new(),
                vec![ctx.target(&acc.card_target(iccid), ctx.card_history)],
            ),
            _ => continue,
        };
        accounts.push(AccountSnap {
            rt: acc.clone(),
            up: acc.stats.up(),
            pools,
            cards,
        });
    }
    Snapshot {
        now,
        now_unix: unix_now(),
        stale_after: settings.stale_after,
        accounts,
        scrape_duration: None,
        probe: None,
    }
}

struct SnapCtx {
    now: Instant,
    stale_after: Duration,
    timed_out: bool,
    cal: tibiot_api::calendar::ApiCalendar,
    pool_history: bool,
    card_history: bool,
}

impl SnapCtx {
    fn target<V>(&self, t: &Arc<Target<V>>, with_history: bool) -> TargetSnap<V> {
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
