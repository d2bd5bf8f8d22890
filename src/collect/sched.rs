//! The scheduler of one account (docs/collection.md): it keeps the account's targets fresh in
//! the background while scrapes keep coming, one request per value per TTL, in the fair order
//! of [`super::queue`], through the account's gate. Scrapes only tell it that they came
//! ([`Sched::scraped`], [`Sched::probed`]) and wait for values that were never fetched
//! ([`Sched::wait_cold`]); everything else is served from the cache.
//!
//! The unit of work is one part of one target: its detail, or its history (every due day and
//! month of its window). Each part carries a [`Mark`] with its place in the scheduler
//! (idle, waiting for its refresh instant, parked while nobody scrapes, ready, running), so a
//! part is never queued twice. One driver task per account takes the gate's admission first and
//! only then picks the best ready part, so the queue's order is the order requests go out; at
//! most `4 × concurrency` parts run at once (a part backing off before a retry holds no slot of
//! the gate, and must not stall the queue behind it).

use super::queue::{Activity, Due, Order, Queue, next_refresh, phase};
use super::{Target, TargetKind};
use crate::config::CollectConfig;
use crate::sys::lock;
use futures::FutureExt;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tibiot_api::{Client, Gate};
use tokio::sync::{Notify, watch};
use tokio::time::Instant;

/// Parts started per account per slot of `concurrency`.
const DRIVER_FACTOR: usize = 4;
/// A failed fetch is due again after at most this long (or its TTL, if shorter).
pub(crate) const RETRY_FAILED_AFTER: Duration = Duration::from_secs(60);

/// Which part of a target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Part {
    Detail,
    History,
}

impl Part {
    pub(crate) fn index(self) -> usize {
        match self {
            Part::Detail => 0,
            Part::History => 1,
        }
    }
}

/// Where a part stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum State {
    /// Not known to the scheduler (never wanted, or a probe nobody repeats).
    #[default]
    Idle,
    /// Waiting for its refresh instant (a timer).
    Waiting,
    /// Due, but nobody scrapes the account.
    Parked,
    Ready,
    Running,
}

/// A part's bookkeeping, kept in the target.
#[derive(Debug, Default)]
pub(crate) struct Mark {
    pub(crate) state: State,
    /// Counted as a value a scrape waits for (ready or running, nothing to serve).
    cold: bool,
    /// The latest attempt ended (queue epoch nanoseconds; 0: never).
    last_attempt: u64,
    /// The generation of the part's live timer (older timers in the queue are ignored).
    timer: u32,
    /// Probes of this target (kept in the detail's mark, only for targets someone probes).
    probed: Option<Box<Activity>>,
}

impl Mark {
    /// Whether a scrape waiting for never-fetched values must wait for this part.
    pub(crate) fn cold_pending(&self) -> bool {
        self.cold && matches!(self.state, State::Ready | State::Running)
    }
}

/// When a part is next due, as its cache sees it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct NextDue {
    /// `None`: never (every period of a history closed and final).
    pub(crate) at: Option<Instant>,
    /// Nothing to serve (never fetched, or the value is past `stale_after`) and the latest
    /// attempt did not fail: a scrape waits for it, and it goes before refreshes.
    pub(crate) cold: bool,
}

/// What a part needs to compute its due instant.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DueEnv {
    pub(crate) epoch: Instant,
    /// The target's phase hash (spreads refreshes).
    pub(crate) phase_hash: u64,
    /// When the part's latest attempt ended, if it did.
    pub(crate) last_attempt: Option<Instant>,
}

impl DueEnv {
    /// When a value fetched at `fetched` with this TTL is refreshed.
    pub(crate) fn refresh(&self, ttl: Duration, fetched: Instant) -> Instant {
        next_refresh(self.epoch, phase(self.phase_hash, ttl), ttl, fetched)
    }

    /// When a part whose latest attempt failed is tried again.
    pub(crate) fn retry(&self, ttl: Duration, now: Instant) -> Instant {
        self.last_attempt.unwrap_or(now) + ttl.min(RETRY_FAILED_AFTER)
    }
}

/// The account's current client and settings (replaced on reload).
pub(crate) struct Driving {
    pub(crate) account: Arc<str>,
    pub(crate) client: Client,
    pub(crate) gate: Arc<Gate>,
    pub(crate) settings: Arc<CollectConfig>,
    /// Whether the account has configured targets on this replica (then `/probe`-only work is
    /// held to its share of the budget).
    pub(crate) has_configured: bool,
    /// The share of the budget `/probe`-only work may use (0: none).
    pub(crate) probe_share: f64,
}

/// One unit of work in the queue.
#[derive(Clone)]
pub(crate) struct Item {
    pub(crate) kind: &'static dyn TargetKind,
    /// The kind's place among the registered kinds (the first leads: pools).
    pub(crate) rank: u8,
    pub(crate) target: Arc<Target>,
    pub(crate) part: Part,
    /// Not in the configuration (or another shard's): `/probe`-only work.
    pub(crate) probe: bool,
    /// The timer generation this copy was queued with.
    pub(crate) timer: u32,
}

impl Item {
    /// Index into the per-kind counters: two per registered kind (detail, history).
    fn counter(&self) -> usize {
        usize::from(self.rank) * 2 + self.part.index()
    }
}

/// The place of a due part (docs/collection.md, "One fair queue per account"): the first
/// registered kind (pools) leads with its details and history refreshes; then everything
/// never fetched (details kind by kind, then history kind by kind); then refreshes, oldest
/// first.
fn order(item: &Item, kinds: u8, cold: bool, last_attempt: u64) -> Order {
    let lead = item.rank == 0;
    let (tier, kind) = match (item.part, cold) {
        (Part::Detail, _) if lead => (0, 0),
        (Part::History, false) if lead => (0, 1),
        (Part::Detail, true) => (1, item.rank),
        (Part::History, true) => (1, kinds.saturating_add(item.rank)),
        (_, false) => (2, 0),
    };
    Order {
        probe: item.probe,
        tier,
        kind,
        since: if cold { 0 } else { last_attempt },
    }
}

struct Inner {
    queue: Queue<Item>,
    activity: Activity,
    /// Registered kinds (for the order and the counters).
    kinds: u8,
    /// The configuration generation whose targets were last made known.
    seeded: u64,
    running: usize,
    running_probes: usize,
    /// Ready or running configured parts, two counters per kind (detail, history).
    pending: Vec<usize>,
    /// Configured cold parts ready or running.
    cold: usize,
    /// Since when cold parts have been waiting (the current cold episode).
    cold_since: Option<Instant>,
    /// The cold episode's starvation was logged.
    starved_logged: bool,
    /// The largest number of cold parts waiting at once in this episode.
    cold_peak: usize,
    /// Spacing of `/probe`-only requests when the rate is limited.
    probe_next: Instant,
}

/// The scheduler of one account. Survives reloads (same account name and base URL).
pub(crate) struct Sched {
    name: Arc<str>,
    epoch: Instant,
    inner: Mutex<Inner>,
    driving: Mutex<Option<Arc<Driving>>>,
    /// Bumped by every [`Sched::configure`].
    generation: std::sync::atomic::AtomicU64,
    /// Wakes the driver: new ready work, a finished part, a scrape after a pause.
    wake: Notify,
    /// Bumped whenever a cold part finishes (scrapes waiting for values re-check).
    cold_done: watch::Sender<u64>,
    cold_count: AtomicUsize,
    started: AtomicBool,
    closed: AtomicBool,
}

impl std::fmt::Debug for Sched {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sched")
            .field("account", &self.name)
            .finish()
    }
}

fn mark_of(item: &Item) -> std::sync::MutexGuard<'_, [Mark; 2]> {
    lock(&item.target.marks)
}

/// A copy of `item` carrying a new timer generation of `m` (the part's one live timer).
fn armed(item: &Item, m: &mut Mark) -> Item {
    m.timer = m.timer.wrapping_add(1);
    Item {
        timer: m.timer,
        ..item.clone()
    }
}

impl Sched {
    pub(crate) fn new(name: &str) -> Arc<Self> {
        let now = Instant::now();
        Arc::new(Self {
            name: Arc::from(name),
            epoch: now,
            inner: Mutex::new(Inner {
                queue: Queue::new(now),
                activity: Activity::default(),
                kinds: 0,
                seeded: 0,
                running: 0,
                running_probes: 0,
                pending: Vec::new(),
                cold: 0,
                cold_since: None,
                starved_logged: false,
                cold_peak: 0,
                probe_next: now,
            }),
            driving: Mutex::new(None),
            generation: std::sync::atomic::AtomicU64::new(0),
            wake: Notify::new(),
            cold_done: watch::channel(0).0,
            cold_count: AtomicUsize::new(0),
            started: AtomicBool::new(false),
            closed: AtomicBool::new(false),
        })
    }

    fn env(&self, item: &Item, m: &Mark) -> DueEnv {
        DueEnv {
            epoch: self.epoch,
            phase_hash: item.target.hash,
            last_attempt: (m.last_attempt > 0)
                .then(|| self.epoch + Duration::from_nanos(m.last_attempt)),
        }
    }

    fn driving(&self) -> Option<Arc<Driving>> {
        lock(&self.driving).clone()
    }

    /// Applies a (re)loaded configuration: the client, gate and settings the next fetches use
    /// (`kinds`: how many kinds are registered); parts of targets dropped from the
    /// configuration leave the queue, and the next scrape makes the new ones known.
    pub(crate) fn configure(&self, driving: Driving, kinds: u8) {
        *lock(&self.driving) = Some(Arc::new(driving));
        self.generation.fetch_add(1, Ordering::AcqRel);
        let mut inner = lock(&self.inner);
        inner.kinds = kinds;
        let n = usize::from(kinds) * 2;
        if inner.pending.len() < n {
            inner.pending.resize(n, 0);
        }
        let Inner {
            queue,
            pending,
            cold,
            ..
        } = &mut *inner;
        let mut removed_cold = false;
        queue.retain(|item| {
            if !item.target.retired() {
                return true;
            }
            let mut marks = mark_of(item);
            let m = &mut marks[item.part.index()];
            if m.state == State::Ready {
                if !item.probe {
                    pending[item.counter()] -= 1;
                    if m.cold {
                        *cold -= 1;
                        removed_cold = true;
                    }
                }
                m.cold = false;
            }
            if m.state != State::Running {
                m.state = State::Idle;
            }
            false
        });
        // the TTLs (or the probe share) may have changed: look at every waiting part again
        inner.queue.reschedule_all(Instant::now());
        self.cold_count.store(inner.cold, Ordering::Relaxed);
        drop(inner);
        if removed_cold {
            self.cold_done.send_modify(|n| *n += 1);
        }
        self.wake.notify_one();
    }

    /// Stops the driver (the account left the configuration, or its base URL changed).
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Relaxed);
        *lock(&self.driving) = None;
        self.wake.notify_one();
    }

    /// A scrape of the account's `/metrics` came: refreshing goes on (or resumes after a
    /// pause), and after a (re)load every configured part of `targets` is made known.
    pub(crate) fn scraped(self: &Arc<Self>, targets: impl Iterator<Item = Item>) {
        let now = Instant::now();
        let generation = self.generation.load(Ordering::Acquire);
        let mut inner = lock(&self.inner);
        if inner.activity.scraped(now) {
            inner.queue.unpark(now);
        }
        if inner.seeded != generation {
            inner.seeded = generation;
            for item in targets {
                Self::ensure(&mut inner, item, now);
            }
        }
        self.promote(&mut inner, now);
        drop(inner);
        self.start();
        self.wake.notify_one();
    }

    /// A `/probe` of the target of `items` came: keep it fresh while its probes keep coming.
    pub(crate) fn probed(self: &Arc<Self>, items: &[Item]) {
        let now = Instant::now();
        let mut inner = lock(&self.inner);
        if let Some(first) = items.first() {
            mark_of(first)[0]
                .probed
                .get_or_insert_with(Default::default)
                .scraped(now);
        }
        for item in items {
            {
                let mut marks = mark_of(item);
                let m = &mut marks[item.part.index()];
                if m.state == State::Parked {
                    m.state = State::Waiting;
                    let item = armed(item, m);
                    drop(marks);
                    inner.queue.push_timer(item, now);
                }
            }
            Self::ensure(&mut inner, item.clone(), now);
        }
        self.promote(&mut inner, now);
        drop(inner);
        self.start();
        self.wake.notify_one();
    }

    /// Makes an idle part known: its timer comes at once and decides.
    fn ensure(inner: &mut Inner, item: Item, now: Instant) {
        let item = {
            let mut marks = mark_of(&item);
            let m = &mut marks[item.part.index()];
            if m.state != State::Idle {
                return;
            }
            m.state = State::Waiting;
            armed(&item, m)
        };
        inner.queue.push_timer(item, now);
    }

    /// Moves the parts whose instant came to the ready heap (or parks or drops them).
    fn promote(&self, inner: &mut Inner, now: Instant) -> Option<Instant> {
        let Some(d) = self.driving() else {
            return inner.queue.next_timer();
        };
        let active = inner.activity.active(now);
        let kinds = inner.kinds;
        let mut became_cold = 0usize;
        let mut pending = std::mem::take(&mut inner.pending);
        let next = inner.queue.promote(now, |item| {
            let mut marks = mark_of(item);
            let probed = marks[0].probed.as_ref().is_some_and(|p| p.active(now));
            let m = &mut marks[item.part.index()];
            if !matches!(m.state, State::Waiting | State::Parked) || m.timer != item.timer {
                return Due::Drop; // an outdated timer; the part is elsewhere
            }
            m.state = State::Waiting;
            if item.target.retired() || (item.probe && !probed) {
                m.state = State::Idle;
                return Due::Drop;
            }
            if !item.probe && !active && !probed {
                m.state = State::Parked;
                return Due::Park;
            }
            let env = self.env(item, m);
            let due = super::fetch::next_due(item, now, &env, &d.settings);
            let Some(at) = due.at else {
                m.state = State::Idle;
                return Due::Drop;
            };
            if at > now {
                return Due::Later(at);
            }
            m.state = State::Ready;
            m.cold = due.cold;
            if !item.probe {
                pending[item.counter()] += 1;
                became_cold += usize::from(due.cold);
            }
            Due::Ready(order(item, kinds, due.cold, m.last_attempt))
        });
        inner.pending = pending;
        if became_cold > 0 {
            if inner.cold == 0 {
                inner.cold_since = Some(now);
                inner.starved_logged = false;
                inner.cold_peak = 0;
            }
            inner.cold += became_cold;
            inner.cold_peak = inner.cold_peak.max(inner.cold);
            self.cold_count.store(inner.cold, Ordering::Relaxed);
        }
        next
    }

    /// Starts the driver task on first use.
    fn start(self: &Arc<Self>) {
        if self.started.swap(true, Ordering::AcqRel) {
            return;
        }
        let me = self.clone();
        tokio::spawn(async move { me.drive().await });
    }

    /// Configured parts of the account waiting for their first value.
    pub(crate) fn cold_pending(&self) -> usize {
        self.cold_count.load(Ordering::Relaxed)
    }

    /// Waits until no configured part of the account waits for its first value, or until
    /// `deadline`. Returns whether it waited at all. When the deadline passes first, says so
    /// in the log once per cold episode (how many targets waited, for how long).
    pub(crate) async fn wait_cold(&self, deadline: Instant) -> bool {
        if self.cold_pending() == 0 {
            return false;
        }
        let mut rx = self.cold_done.subscribe();
        loop {
            if self.cold_pending() == 0 {
                return true;
            }
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => continue,
                _ => break,
            }
        }
        let mut inner = lock(&self.inner);
        if inner.cold > 0 && !inner.starved_logged {
            inner.starved_logged = true;
            let waited = inner
                .cold_since
                .map(|s| Instant::now().saturating_duration_since(s).as_secs_f64())
                .unwrap_or(0.0);
            tracing::warn!(
                account = %self.name,
                waiting = inner.cold,
                waited_seconds = format!("{waited:.1}"),
                "scrape deadline reached while targets of the account were still queued for their first value; they are served as soon as they arrive (the account's request budget sets the pace)"
            );
        }
        true
    }

    /// Waits until none of `items` waits for its first value, or until `deadline`.
    pub(crate) async fn wait_items(&self, items: &[Item], deadline: Instant) {
        let mut rx = self.cold_done.subscribe();
        loop {
            if !items
                .iter()
                .any(|i| mark_of(i)[i.part.index()].cold_pending())
            {
                return;
            }
            if !matches!(
                tokio::time::timeout_at(deadline, rx.changed()).await,
                Ok(Ok(()))
            ) {
                return;
            }
        }
    }

    /// Ready or running configured parts, two counters per registered kind (detail, history).
    pub(crate) fn pending(&self) -> Vec<usize> {
        lock(&self.inner).pending.clone()
    }

    /// The driver: admission first, then the best ready part, until the account is closed.
    async fn drive(self: Arc<Self>) {
        loop {
            if self.closed.load(Ordering::Relaxed) {
                return;
            }
            let Some(d) = self.driving() else {
                self.wake.notified().await;
                continue;
            };
            let limit = d.settings.concurrency.max(1).saturating_mul(DRIVER_FACTOR);
            let wait = {
                let now = Instant::now();
                let mut inner = lock(&self.inner);
                let next = self.promote(&mut inner, now);
                let probes = Self::probes_allowed(&mut inner, &d, now, limit, false);
                if inner.running < limit && (inner.queue.ready_len() > 0 || probes.is_ok()) {
                    None
                } else {
                    // wake at the next timer, or when the probe spacing allows one
                    let later = now + Duration::from_secs(3600);
                    Some(
                        next.unwrap_or(later)
                            .min(probes.err().flatten().unwrap_or(later)),
                    )
                }
            };
            if let Some(at) = wait {
                tokio::select! {
                    _ = self.wake.notified() => {}
                    _ = tokio::time::sleep_until(at) => {}
                }
                continue;
            }
            let admission = d.gate.admit().await;
            let picked = {
                let now = Instant::now();
                let mut inner = lock(&self.inner);
                self.promote(&mut inner, now);
                let probes = Self::probes_allowed(&mut inner, &d, now, limit, true).is_ok();
                match inner.queue.pop(probes) {
                    Some((item, _)) => {
                        let env = {
                            let mut marks = mark_of(&item);
                            let m = &mut marks[item.part.index()];
                            m.state = State::Running;
                            self.env(&item, m)
                        };
                        inner.running += 1;
                        if item.probe {
                            inner.running_probes += 1;
                        }
                        Some((item, env))
                    }
                    None => None,
                }
            };
            let Some((item, env)) = picked else {
                drop(admission);
                continue;
            };
            let me = self.clone();
            tokio::spawn(async move {
                let fut = super::fetch::run(item.clone(), d, env);
                let done =
                    std::panic::AssertUnwindSafe(tibiot_api::gate::with_admission(admission, fut))
                        .catch_unwind()
                        .await;
                if done.is_err() {
                    super::fetch::record_internal_error(&item);
                }
                me.completed(&item);
            });
        }
    }

    /// Whether a `/probe`-only part may go now: after configured work, within its share.
    /// `Err(Some(at))`: not before `at`; `Err(None)`: not until something changes. With
    /// `take`, a permitted probe uses up its place in the spacing.
    fn probes_allowed(
        inner: &mut Inner,
        d: &Driving,
        now: Instant,
        limit: usize,
        take: bool,
    ) -> Result<(), Option<Instant>> {
        if inner.queue.probe_len() == 0 || inner.queue.ready_len() > 0 {
            return Err(None);
        }
        if !d.has_configured {
            return Ok(());
        }
        if d.probe_share <= 0.0 {
            return Err(None);
        }
        let share = d.probe_share.min(1.0);
        let slots = ((limit as f64 * share).ceil() as usize).max(1);
        if inner.running_probes >= slots {
            return Err(None);
        }
        let rps = d.settings.requests_per_second;
        if rps > 0 {
            if now < inner.probe_next {
                return Err(Some(inner.probe_next));
            }
            if take {
                let gap = Duration::from_secs_f64(1.0 / (f64::from(rps) * share).max(1e-3));
                inner.probe_next = inner.probe_next.max(now) + gap;
            }
        }
        Ok(())
    }

    /// A part finished (its result is recorded): schedule its next refresh.
    fn completed(&self, item: &Item) {
        let now = Instant::now();
        let settings = self.driving().map(|d| d.settings.clone());
        let mut inner = lock(&self.inner);
        inner.running -= 1;
        if item.probe {
            inner.running_probes -= 1;
        } else {
            inner.pending[item.counter()] -= 1;
        }
        let since = inner.queue.since(now).max(1);
        let mut marks = mark_of(item);
        let probed = marks[0].probed.as_ref().is_some_and(|p| p.active(now));
        let m = &mut marks[item.part.index()];
        m.last_attempt = since;
        let was_cold = std::mem::take(&mut m.cold);
        let keep = !item.target.retired() && (!item.probe || probed);
        let next = match (keep, &settings) {
            (true, Some(s)) => {
                let env = self.env(item, m);
                super::fetch::next_due(item, now, &env, s).at
            }
            _ => None,
        };
        match next {
            Some(at) => {
                m.state = State::Waiting;
                let item = armed(item, m);
                drop(marks);
                inner.queue.push_timer(item, at.max(now));
            }
            None => {
                m.state = State::Idle;
                drop(marks);
            }
        }
        if was_cold && !item.probe {
            inner.cold -= 1;
            self.cold_count.store(inner.cold, Ordering::Relaxed);
            if inner.cold == 0 {
                if inner.starved_logged
                    && let Some(since) = inner.cold_since
                {
                    tracing::info!(
                        account = %self.name,
                        targets = inner.cold_peak,
                        after_seconds = format!("{:.1}", now.saturating_duration_since(since).as_secs_f64()),
                        "every queued target of the account has its first value now"
                    );
                }
                inner.cold_since = None;
            }
        }
        drop(inner);
        if was_cold {
            self.cold_done.send_modify(|n| *n += 1);
        }
        self.wake.notify_one();
    }
}
