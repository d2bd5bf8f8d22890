//! The scheduler of one account (docs/collection.md): it keeps the account's targets fresh in
//! the background while scrapes keep coming, one request per value per TTL, in the fair order
//! of [`super::queue`], through the account's gate. Scrapes only tell it that they came
//! ([`Sched::scraped`], [`Sched::probed`]) and wait for values that were never fetched
//! ([`Sched::wait_cold`]); everything else is served from the cache.
//!
//! The unit of work is one part of one target: its detail, or its history (every due day and
//! month of its window). Each part carries a [`Mark`] with its place in the scheduler
//! (idle, waiting for its refresh instant, parked while nobody scrapes, ready, running) and the
//! generation of its one live timer, so a part is never queued twice. Marks and queue entries
//! are small (two words per part, a pointer and a few bytes per queued item): a 100,000-card
//! fleet has 100,000 of each. One driver task per account takes the gate's admission first and
//! only then picks the best ready part, so the queue's order is the order requests go out; at
//! most `4 × concurrency` parts run at once (a part backing off before a retry holds no slot of
//! the gate, and must not stall the queue behind it).

use super::queue::{Activity, Due, Order, Queue, next_refresh, phase};
use super::{Target, TargetKind};
use crate::config::CollectConfig;
use crate::sys::lock;
use futures::FutureExt;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
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
#[repr(u8)]
pub(crate) enum State {
    /// Not known to the scheduler (never wanted, or a probe nobody repeats).
    #[default]
    Idle = 0,
    /// Waiting for its refresh instant (a timer).
    Waiting = 1,
    /// Due, but nobody scrapes the account.
    Parked = 2,
    Ready = 3,
    Running = 4,
}

impl State {
    fn from_bits(b: u64) -> Self {
        match b & 0xff {
            1 => State::Waiting,
            2 => State::Parked,
            3 => State::Ready,
            4 => State::Running,
            _ => State::Idle,
        }
    }
}

const COLD: u64 = 1 << 8;

/// A part's bookkeeping, kept in the target: two words, no lock. Every change happens under
/// the scheduler's lock; scrapes waiting for a value only read it.
#[derive(Debug, Default)]
pub(crate) struct Mark {
    /// The state (bits 0–7), whether a scrape waits for it (bit 8: ready or running with
    /// nothing to serve), and the generation of its live timer (bits 32–63).
    word: AtomicU64,
    /// The latest attempt ended (queue epoch nanoseconds; 0: never).
    last_attempt: AtomicU64,
}

impl Mark {
    fn word(&self) -> u64 {
        self.word.load(Ordering::Relaxed)
    }

    fn set(&self, w: u64) {
        self.word.store(w, Ordering::Relaxed);
    }

    pub(crate) fn state(&self) -> State {
        State::from_bits(self.word())
    }

    fn set_state(&self, s: State) {
        self.set((self.word() & !0xff) | s as u64);
    }

    fn cold(&self) -> bool {
        self.word() & COLD != 0
    }

    fn set_cold(&self, cold: bool) {
        let w = self.word();
        self.set(if cold { w | COLD } else { w & !COLD });
    }

    fn timer(&self) -> u32 {
        (self.word() >> 32) as u32
    }

    /// Starts a new timer generation (older timers of the part become void); returns it.
    fn arm(&self) -> u32 {
        let t = self.timer().wrapping_add(1);
        self.set((self.word() & 0xffff_ffff) | (u64::from(t) << 32));
        t
    }

    fn last_attempt(&self) -> u64 {
        self.last_attempt.load(Ordering::Relaxed)
    }

    /// Whether a scrape waiting for never-fetched values must wait for this part.
    pub(crate) fn cold_pending(&self) -> bool {
        self.cold() && matches!(self.state(), State::Ready | State::Running)
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
    /// The target's stable hash (its phase within each TTL spreads the refreshes).
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
    /// The account's statistics (truncated label values are counted there).
    pub(crate) stats: Arc<super::stats::AccountStats>,
    pub(crate) client: Client,
    pub(crate) gate: Arc<Gate>,
    pub(crate) settings: Arc<CollectConfig>,
    /// The registered kinds (an item names its kind by its place here).
    pub(crate) kinds: &'static [&'static dyn TargetKind],
    /// Whether the account has configured targets on this replica (then `/probe`-only work is
    /// held to its share of the budget).
    pub(crate) has_configured: bool,
    /// The share of the budget `/probe`-only work may use (0: none).
    pub(crate) probe_share: f64,
}

/// One unit of work in the queue (16 bytes).
#[derive(Clone)]
pub(crate) struct Item {
    pub(crate) target: Arc<Target>,
    /// The timer generation this copy was queued with.
    pub(crate) timer: u32,
    /// The kind's place among the registered kinds (the first leads: pools).
    pub(crate) rank: u8,
    pub(crate) part: Part,
    /// Not in the configuration (or another shard's): `/probe`-only work.
    pub(crate) probe: bool,
}

impl Item {
    /// Index into the per-kind counters: two per registered kind (detail, history).
    fn counter(&self) -> usize {
        usize::from(self.rank) * 2 + self.part.index()
    }

    fn mark(&self) -> &Mark {
        &self.target.marks[self.part.index()]
    }

    /// The item's kind among `kinds`.
    pub(crate) fn kind(&self, kinds: &[&'static dyn TargetKind]) -> &'static dyn TargetKind {
        kinds[usize::from(self.rank).min(kinds.len().saturating_sub(1))]
    }

    /// The key of the target in the scheduler's probe table.
    fn key(&self) -> usize {
        Arc::as_ptr(&self.target) as usize
    }
}

/// A copy of `item` carrying a new timer generation of its part (its one live timer).
fn armed(item: &Item) -> Item {
    Item {
        timer: item.mark().arm(),
        ..item.clone()
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
    /// Targets someone probes, with their probes' rhythm (kept fresh while probes come).
    probed: HashMap<usize, (Arc<Target>, Activity)>,
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
    generation: AtomicU64,
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

impl Sched {
    pub(crate) fn new(name: &str) -> Arc<Self> {
        let now = Instant::now();
        Arc::new(Self {
            name: Arc::from(name),
            epoch: now,
            inner: Mutex::new(Inner {
                queue: Queue::new(now),
                activity: Activity::default(),
                probed: HashMap::new(),
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
            generation: AtomicU64::new(0),
            wake: Notify::new(),
            cold_done: watch::channel(0).0,
            cold_count: AtomicUsize::new(0),
            started: AtomicBool::new(false),
            closed: AtomicBool::new(false),
        })
    }

    fn env(&self, item: &Item, kind: &dyn TargetKind) -> DueEnv {
        let t = &item.target;
        let last = item.mark().last_attempt();
        DueEnv {
            epoch: self.epoch,
            phase_hash: super::shard::target_hash(&t.account, kind.name(), &t.id),
            last_attempt: (last > 0).then(|| self.epoch + Duration::from_nanos(last)),
        }
    }

    fn driving(&self) -> Option<Arc<Driving>> {
        lock(&self.driving).clone()
    }

    /// Applies a (re)loaded configuration: the client, gate, settings and kinds the next fetches
    /// use; parts of targets dropped from the configuration leave the queue, every waiting part
    /// is looked at again (the TTLs may have changed), and the next scrape makes the new
    /// targets known.
    pub(crate) fn configure(&self, driving: Driving) {
        let n = driving.kinds.len() * 2;
        *lock(&self.driving) = Some(Arc::new(driving));
        self.generation.fetch_add(1, Ordering::AcqRel);
        let now = Instant::now();
        let mut inner = lock(&self.inner);
        if inner.pending.len() < n {
            inner.pending.resize(n, 0);
        }
        let Inner {
            queue,
            pending,
            cold,
            probed,
            ..
        } = &mut *inner;
        let mut removed_cold = false;
        queue.retain(|item| {
            if !item.target.retired() {
                return true;
            }
            let m = item.mark();
            if m.state() == State::Ready {
                if !item.probe {
                    pending[item.counter()] -= 1;
                    if m.cold() {
                        *cold -= 1;
                        removed_cold = true;
                    }
                }
                m.set_cold(false);
            }
            if m.state() != State::Running {
                m.set_state(State::Idle);
            }
            false
        });
        probed.retain(|_, (t, a)| !t.retired() && a.active(now));
        inner.queue.reschedule_all(now);
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
            inner
                .probed
                .entry(first.key())
                .or_insert_with(|| (first.target.clone(), Activity::default()))
                .1
                .scraped(now);
        }
        for item in items {
            if item.mark().state() == State::Parked {
                let item = armed(item);
                item.mark().set_state(State::Waiting);
                inner.queue.push_timer(item, now);
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
        if item.mark().state() != State::Idle {
            return;
        }
        let item = armed(&item);
        item.mark().set_state(State::Waiting);
        inner.queue.push_timer(item, now);
    }

    /// Moves the parts whose instant came to the ready heap (or parks or drops them).
    fn promote(&self, inner: &mut Inner, now: Instant) -> Option<Instant> {
        let Some(d) = self.driving() else {
            return inner.queue.next_timer();
        };
        let Inner {
            queue,
            activity,
            probed,
            pending,
            ..
        } = &mut *inner;
        let active = activity.active(now);
        let kinds = u8::try_from(d.kinds.len()).unwrap_or(u8::MAX);
        let mut became_cold = 0usize;
        let mut forget = Vec::new();
        let next = queue.promote(now, |item| {
            let m = item.mark();
            if !matches!(m.state(), State::Waiting | State::Parked) || m.timer() != item.timer {
                return Due::Drop; // an outdated timer; the part is elsewhere
            }
            let wanted = probed.get(&item.key()).is_some_and(|(_, a)| a.active(now));
            if item.target.retired() || (item.probe && !wanted) {
                m.set_state(State::Idle);
                if item.probe {
                    forget.push(item.key());
                }
                return Due::Drop;
            }
            if !item.probe && !active && !wanted {
                m.set_state(State::Parked);
                return Due::Park;
            }
            m.set_state(State::Waiting);
            let kind = item.kind(d.kinds);
            let env = self.env(item, kind);
            let due = super::fetch::next_due(item, kind, now, &env, &d.settings);
            let Some(at) = due.at else {
                m.set_state(State::Idle);
                return Due::Drop;
            };
            if at > now {
                return Due::Later(at);
            }
            m.set_state(State::Ready);
            m.set_cold(due.cold);
            if !item.probe {
                pending[item.counter()] += 1;
                became_cold += usize::from(due.cold);
            }
            Due::Ready(order(item, kinds, due.cold, m.last_attempt()))
        });
        for k in forget {
            inner.probed.remove(&k);
        }
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
            if !items.iter().any(|i| i.mark().cold_pending()) {
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
                        item.mark().set_state(State::Running);
                        inner.running += 1;
                        if item.probe {
                            inner.running_probes += 1;
                        }
                        Some(item)
                    }
                    None => None,
                }
            };
            let Some(item) = picked else {
                drop(admission);
                continue;
            };
            let kind = item.kind(d.kinds);
            let env = self.env(&item, kind);
            let me = self.clone();
            tokio::spawn(async move {
                let fut = super::fetch::run(item.clone(), kind, d, env);
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
        let d = self.driving();
        let mut inner = lock(&self.inner);
        inner.running -= 1;
        if item.probe {
            inner.running_probes -= 1;
        } else {
            inner.pending[item.counter()] -= 1;
        }
        let m = item.mark();
        m.last_attempt
            .store(inner.queue.since(now).max(1), Ordering::Relaxed);
        let was_cold = m.cold();
        m.set_cold(false);
        let wanted = inner
            .probed
            .get(&item.key())
            .is_some_and(|(_, a)| a.active(now));
        let keep = !item.target.retired() && (!item.probe || wanted);
        let next = match (keep, &d) {
            (true, Some(d)) => {
                let kind = item.kind(d.kinds);
                let env = self.env(item, kind);
                super::fetch::next_due(item, kind, now, &env, &d.settings).at
            }
            _ => None,
        };
        match next {
            Some(at) => {
                let item = armed(item);
                item.mark().set_state(State::Waiting);
                inner.queue.push_timer(item, at.max(now));
            }
            None => m.set_state(State::Idle),
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
