//! The fair queue of one account (docs/collection.md, "Queue order"): what is due now, in the
//! order it is fetched, and what falls due later. Generic over the work item; the scheduler
//! ([`super::sched`]) decides what an item is and when it is due.
//!
//! - [`Order`]: configured work before `/probe`-only work; then the tier (pool details and pool
//!   refreshes, then never-fetched work, then refreshes); then the kind within the tier; then
//!   the oldest data (the time of the item's latest attempt), so no item is fetched again while
//!   another due item of its class has waited longer; then first come, first served.
//! - Timers: an item that is not due yet waits in a heap of due instants; [`Queue::promote`]
//!   moves every item whose instant has come to the ready heap (or lets the caller park or drop
//!   it, e.g. while nobody scrapes).
//! - Refresh instants are spread over the TTL ([`next_refresh`]): each item has a fixed phase
//!   within its TTL (from the stable hash of its identity), so a thousand values fetched in the
//!   same second fall due at a thousand different instants of the next TTL, and then once per
//!   TTL each.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Duration;
use tokio::time::Instant;

/// Tier of the first registered kind's (pools') details and history refreshes.
pub(crate) const LEAD: u8 = 0;
/// Tier of details never fetched (or with nothing left to serve).
pub(crate) const COLD: u8 = 1;
/// Tier of refreshes.
pub(crate) const REFRESH: u8 = 2;
/// Tier of history never fetched (the closed days and months of a cold start): after
/// refreshes; over budget, with one turn in every [`BACKFILL_EVERY`] while refreshes wait.
pub(crate) const BACKFILL: u8 = 3;
/// The backfill's share of the turns while refreshes wait (over budget): one in this many.
pub(crate) const BACKFILL_EVERY: u32 = 10;

/// Where a ready item stands in the queue (smaller first).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Order {
    /// `/probe`-only work (not in the configuration) goes after all configured work.
    pub probe: bool,
    /// [`LEAD`], [`COLD`], [`REFRESH`] or [`BACKFILL`].
    pub tier: u8,
    /// The kind's place within the tier.
    pub kind: u8,
    /// The item's latest attempt (oldest first); never-fetched work: when it was first
    /// wanted. Nanoseconds since the queue's epoch.
    pub since: u64,
}

/// A ready item with its place.
struct ReadyItem<T> {
    order: Order,
    seq: u64,
    item: T,
}

impl<T> PartialEq for ReadyItem<T> {
    fn eq(&self, o: &Self) -> bool {
        (self.order, self.seq) == (o.order, o.seq)
    }
}
impl<T> Eq for ReadyItem<T> {}
impl<T> PartialOrd for ReadyItem<T> {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl<T> Ord for ReadyItem<T> {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (self.order, self.seq).cmp(&(o.order, o.seq))
    }
}

/// A waiting item: 8 bytes of instant (nanoseconds since the queue's epoch) next to the item,
/// since every configured part of every target has one (100,000 cards: 200,000 timers).
struct Timer<T> {
    at: u64,
    item: T,
}

impl<T> PartialEq for Timer<T> {
    fn eq(&self, o: &Self) -> bool {
        self.at == o.at
    }
}
impl<T> Eq for Timer<T> {}
impl<T> PartialOrd for Timer<T> {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl<T> Ord for Timer<T> {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        self.at.cmp(&o.at)
    }
}

/// What to do with an item whose timer has come.
pub(crate) enum Due {
    /// Fetch it: into the ready heap at this place.
    Ready(Order),
    /// Not due after all: wait again until then.
    Later(Instant),
    /// Keep it aside (nobody wants it now; [`Queue::unpark`] brings it back).
    Park,
    /// Forget it (a target no longer configured, a probe nobody repeats).
    Drop,
}

/// The queue: ready items in [`Order`], timers, and parked items.
pub(crate) struct Queue<T> {
    epoch: Instant,
    seq: u64,
    ready: BinaryHeap<Reverse<ReadyItem<T>>>,
    /// Ready history backfill (configured, never fetched).
    backfill: BinaryHeap<Reverse<ReadyItem<T>>>,
    /// Turns taken by other configured work since the backfill's last one.
    since_backfill: u32,
    /// Ready `/probe`-only items (kept apart so the configured ones can be counted cheaply).
    probes: BinaryHeap<Reverse<ReadyItem<T>>>,
    timers: BinaryHeap<Reverse<Timer<T>>>,
    parked: Vec<T>,
}

impl<T> Queue<T> {
    pub(crate) fn new(epoch: Instant) -> Self {
        Self {
            epoch,
            seq: 0,
            ready: BinaryHeap::new(),
            backfill: BinaryHeap::new(),
            since_backfill: BACKFILL_EVERY,
            probes: BinaryHeap::new(),
            timers: BinaryHeap::new(),
            parked: Vec::new(),
        }
    }

    /// Nanoseconds since the queue's epoch (for [`Order::since`]).
    pub(crate) fn since(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX)
    }

    fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    /// Makes `item` ready at `order`.
    pub(crate) fn push_ready(&mut self, item: T, order: Order) {
        let seq = self.next_seq();
        let r = Reverse(ReadyItem { order, seq, item });
        if order.probe {
            self.probes.push(r);
        } else if order.tier >= BACKFILL {
            self.backfill.push(r);
        } else {
            self.ready.push(r);
        }
    }

    /// Lets `item` wait until `at`.
    pub(crate) fn push_timer(&mut self, item: T, at: Instant) {
        let at = self.since(at);
        self.timers.push(Reverse(Timer { at, item }));
    }

    fn instant(&self, at: u64) -> Instant {
        self.epoch + Duration::from_nanos(at)
    }

    /// Moves every item whose timer has come (at `now`) where `due` says. Returns the next
    /// timer's instant.
    pub(crate) fn promote(
        &mut self,
        now: Instant,
        mut due: impl FnMut(&T) -> Due,
    ) -> Option<Instant> {
        let now_ns = self.since(now);
        while let Some(Reverse(t)) = self.timers.peek() {
            if t.at > now_ns {
                break;
            }
            let Some(Reverse(t)) = self.timers.pop() else {
                break;
            };
            match due(&t.item) {
                Due::Ready(order) => self.push_ready(t.item, order),
                // never earlier than now + 1 ms: a wrong answer cannot spin the loop
                Due::Later(at) => {
                    self.push_timer(t.item, at.max(now + Duration::from_millis(1)));
                }
                Due::Park => self.parked.push(t.item),
                Due::Drop => {}
            }
        }
        self.next_timer()
    }

    /// The next timer's instant.
    pub(crate) fn next_timer(&self) -> Option<Instant> {
        self.timers.peek().map(|Reverse(t)| self.instant(t.at))
    }

    /// Makes every waiting and parked item due `now` (to be looked at again, e.g. after the
    /// TTLs changed).
    pub(crate) fn reschedule_all(&mut self, now: Instant) {
        let timers = std::mem::take(&mut self.timers);
        for Reverse(t) in timers {
            self.push_timer(t.item, now);
        }
        self.unpark(now);
    }

    /// Brings the parked items back as timers due `now`.
    pub(crate) fn unpark(&mut self, now: Instant) {
        for item in std::mem::take(&mut self.parked) {
            self.push_timer(item, now);
        }
    }

    /// Configured items ready.
    pub(crate) fn ready_len(&self) -> usize {
        self.ready.len() + self.backfill.len()
    }

    /// `/probe`-only items ready.
    pub(crate) fn probe_len(&self) -> usize {
        self.probes.len()
    }

    /// Items waiting for their timer or parked.
    #[cfg(test)]
    pub(crate) fn waiting_len(&self) -> usize {
        self.timers.len() + self.parked.len()
    }

    /// The first ready item: configured work first — the lead and never-fetched details
    /// strictly, then refreshes, the history backfill taking every turn no refresh waits for
    /// and, with `share` (over budget, where refreshes always wait), one in
    /// [`BACKFILL_EVERY`] while they wait; `/probe`-only work only when `probes` allows it and
    /// no configured work is ready.
    pub(crate) fn pop(&mut self, probes: bool, share: bool) -> Option<(T, Order)> {
        let top = self.ready.peek().map(|Reverse(r)| r.order.tier);
        let backfill_turn = !self.backfill.is_empty()
            && match top {
                None => true,
                Some(t) if t >= REFRESH => share && self.since_backfill >= BACKFILL_EVERY,
                Some(_) => false,
            };
        if backfill_turn && let Some(Reverse(r)) = self.backfill.pop() {
            self.since_backfill = 0;
            release_drained(&mut self.backfill);
            return Some((r.item, r.order));
        }
        if let Some(Reverse(r)) = self.ready.pop() {
            self.since_backfill = self.since_backfill.saturating_add(1);
            release_drained(&mut self.ready);
            return Some((r.item, r.order));
        }
        if probes && let Some(Reverse(r)) = self.probes.pop() {
            release_drained(&mut self.probes);
            return Some((r.item, r.order));
        }
        None
    }

    /// Removes every item (ready, waiting or parked) for which `keep` is false.
    pub(crate) fn retain(&mut self, mut keep: impl FnMut(&T) -> bool) {
        self.ready.retain(|Reverse(r)| keep(&r.item));
        self.backfill.retain(|Reverse(r)| keep(&r.item));
        self.probes.retain(|Reverse(r)| keep(&r.item));
        self.timers.retain(|Reverse(t)| keep(&t.item));
        self.parked.retain(|t| keep(t));
    }
}

/// Above this capacity a drained heap gives its memory back: a cold fill of 100,000 cards
/// makes the ready heap hold them all at once (MiBs), and it is empty again afterwards.
const KEEP_CAPACITY: usize = 4096;

/// Frees an emptied heap's buffer when it is large (see [`KEEP_CAPACITY`]).
fn release_drained<X: Ord>(heap: &mut BinaryHeap<X>) {
    if heap.is_empty() && heap.capacity() > KEEP_CAPACITY {
        *heap = BinaryHeap::new();
    }
}

/// When a value fetched at `fetched` by a cold fetch (its first value) is refreshed: the latest
/// instant of the item's phase (`epoch + phase + k × ttl`) that is at most one `ttl` after
/// `fetched`. Values fetched together in a cold fill are so spread over the next TTL; after
/// that each value is refreshed one TTL after its previous fetch (see `super::sched`), which
/// keeps them spread, costs one call per TTL and keeps the data age at the TTL.
pub(crate) fn next_refresh(
    epoch: Instant,
    phase: Duration,
    ttl: Duration,
    fetched: Instant,
) -> Instant {
    if ttl.is_zero() {
        return fetched;
    }
    let ttl_ns = ttl.as_nanos();
    let phase_ns = phase.as_nanos() % ttl_ns;
    let limit = (fetched + ttl).saturating_duration_since(epoch).as_nanos();
    // the largest k with phase + k·ttl <= limit (k >= 0; before the first phase: fetched + ttl)
    if limit < phase_ns {
        return fetched + ttl;
    }
    let k = (limit - phase_ns) / ttl_ns;
    let at_ns = phase_ns + k * ttl_ns;
    let at = epoch + Duration::from_nanos(u64::try_from(at_ns).unwrap_or(u64::MAX));
    if at <= fetched { fetched + ttl } else { at }
}

/// The phase of an item within a TTL: `hash` mapped onto `[0, ttl)`.
pub(crate) fn phase(hash: u64, ttl: Duration) -> Duration {
    let ns = ttl.as_nanos().max(1);
    Duration::from_nanos(u64::try_from(u128::from(hash) % ns).unwrap_or(0))
}

/// When scrapes of something are still coming: refreshing goes on while the latest scrape is
/// younger than three times the longest of the last gaps between scrapes, and at least
/// [`Activity::MIN_KEEP`].
#[derive(Debug, Clone, Default)]
pub(crate) struct Activity {
    last: Option<Instant>,
    gaps: [Duration; 4],
    next_gap: usize,
}

impl Activity {
    /// Refreshing never stops sooner than this after a scrape.
    pub(crate) const MIN_KEEP: Duration = Duration::from_secs(120);

    /// A scrape came at `now`. Returns whether refreshing had stopped (so it resumes).
    pub(crate) fn scraped(&mut self, now: Instant) -> bool {
        let resumed = !self.active(now);
        if let Some(last) = self.last {
            let gap = now.saturating_duration_since(last);
            // scrapes of one Prometheus (or an HA pair) come at least this far apart
            if gap >= Duration::from_millis(500) {
                self.gaps[self.next_gap] = gap;
                self.next_gap = (self.next_gap + 1) % self.gaps.len();
            }
        }
        self.last = Some(now);
        resumed
    }

    /// How long after the latest scrape refreshing goes on.
    pub(crate) fn keep(&self) -> Duration {
        let longest = self.gaps.iter().max().copied().unwrap_or_default();
        (longest * 3).max(Self::MIN_KEEP)
    }

    /// Whether scrapes are still coming at `now`.
    pub(crate) fn active(&self, now: Instant) -> bool {
        self.last
            .is_some_and(|l| now.saturating_duration_since(l) <= self.keep())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order(probe: bool, tier: u8, kind: u8, since: u64) -> Order {
        Order {
            probe,
            tier,
            kind,
            since,
        }
    }

    #[test]
    fn ready_items_come_out_in_order() {
        let mut q = Queue::new(Instant::now());
        q.push_ready("probe", order(true, LEAD, 0, 0));
        q.push_ready("card refresh, newer", order(false, REFRESH, 0, 20));
        q.push_ready("card refresh, older", order(false, REFRESH, 0, 10));
        q.push_ready("cold card", order(false, COLD, 1, 30));
        q.push_ready("cold pool history", order(false, BACKFILL, 2, 5));
        q.push_ready("pool", order(false, LEAD, 0, 40));
        q.push_ready("cold pool", order(false, LEAD, 0, 0));
        q.push_ready("card refresh, older, second", order(false, REFRESH, 0, 10));
        let mut got = Vec::new();
        while let Some((i, _)) = q.pop(false, true) {
            got.push(i);
        }
        // the backfill's turn comes once the never-fetched details are done (it had none yet)
        assert_eq!(
            got,
            [
                "cold pool",
                "pool",
                "cold card",
                "cold pool history",
                "card refresh, older",
                "card refresh, older, second",
                "card refresh, newer"
            ]
        );
        assert_eq!(q.probe_len(), 1);
        assert_eq!(q.pop(true, true).map(|x| x.0), Some("probe"));
    }

    #[test]
    fn the_backfill_gets_one_turn_in_ten_while_refreshes_wait() {
        let mut q = Queue::new(Instant::now());
        for i in 0..30u64 {
            q.push_ready(format!("refresh {i}"), order(false, REFRESH, 0, i));
        }
        for i in 0..5u64 {
            q.push_ready(format!("backfill {i}"), order(false, BACKFILL, 2, 0));
        }
        let got: Vec<String> = std::iter::from_fn(|| q.pop(false, true).map(|x| x.0)).collect();
        let turns: Vec<usize> = got
            .iter()
            .enumerate()
            .filter(|(_, s)| s.starts_with("backfill"))
            .map(|(i, _)| i)
            .collect();
        // first at once (it waited), then every tenth turn, then the rest when nothing else waits
        assert_eq!(turns, [0, 11, 22, 33, 34], "{got:?}");
        // within budget the backfill takes only the turns no refresh waits for
        for i in 0..3u64 {
            q.push_ready(format!("refresh {i}"), order(false, REFRESH, 0, i));
            q.push_ready(format!("backfill {i}"), order(false, BACKFILL, 2, 0));
        }
        let got: Vec<String> = std::iter::from_fn(|| q.pop(false, false).map(|x| x.0)).collect();
        assert!(got[..3].iter().all(|s| s.starts_with("refresh")), "{got:?}");
    }

    #[test]
    fn timers_promote_park_and_drop() {
        let t0 = Instant::now();
        let mut q = Queue::new(t0);
        q.push_timer(1, t0 + Duration::from_secs(1));
        q.push_timer(2, t0 + Duration::from_secs(2));
        q.push_timer(3, t0 + Duration::from_secs(3));
        q.push_timer(4, t0 + Duration::from_secs(9));
        let next = q.promote(t0 + Duration::from_secs(5), |i| match i {
            1 => Due::Ready(order(false, 2, 0, 0)),
            2 => Due::Park,
            _ => Due::Drop,
        });
        assert_eq!(next, Some(t0 + Duration::from_secs(9)));
        assert_eq!(q.ready_len(), 1);
        assert_eq!(q.waiting_len(), 2);
        q.unpark(t0 + Duration::from_secs(5));
        q.promote(t0 + Duration::from_secs(5), |_| {
            Due::Later(t0 + Duration::from_secs(7))
        });
        assert_eq!(q.next_timer(), Some(t0 + Duration::from_secs(7)));
        q.retain(|i| *i != 4);
        assert_eq!(q.waiting_len(), 1);
    }

    #[test]
    fn refreshes_keep_their_phase_and_spread_after_a_cold_fill() {
        let epoch = Instant::now();
        let ttl = Duration::from_secs(60);
        let s = Duration::from_secs;
        // phase 10 s: fetched at 0.5 s -> refreshed at 10 s (spread), then every 60 s
        let r1 = next_refresh(epoch, s(10), ttl, epoch + Duration::from_millis(500));
        assert_eq!(r1, epoch + s(10));
        // fetched a little after its phase instant: the next one, one TTL later
        let r2 = next_refresh(epoch, s(10), ttl, r1 + Duration::from_millis(300));
        assert_eq!(r2, epoch + s(70));
        // late (a queue delay): still on the phase grid, never more than one TTL after
        let r3 = next_refresh(epoch, s(10), ttl, epoch + s(95));
        assert_eq!(r3, epoch + s(130));
        assert!(r3 <= epoch + s(95) + ttl);
        // 10,000 values fetched within one second spread over the next TTL
        let mut secs = std::collections::HashSet::new();
        for i in 0..10_000u64 {
            let h = i.wrapping_mul(0x9E37_79B9_7F4A_7C15);
            let at = next_refresh(
                epoch,
                phase(h, ttl),
                ttl,
                epoch + Duration::from_millis(i / 10),
            );
            assert!(at > epoch + Duration::from_millis(i / 10));
            secs.insert(at.duration_since(epoch).as_secs());
        }
        assert!(
            secs.len() >= 55,
            "refreshes fall in only {} seconds",
            secs.len()
        );
    }

    #[test]
    fn activity_stops_after_three_intervals_and_never_before_two_minutes() {
        let t0 = Instant::now();
        let mut a = Activity::default();
        assert!(!a.active(t0));
        assert!(a.scraped(t0), "the first scrape starts refreshing");
        assert!(a.active(t0 + Duration::from_secs(119)));
        assert!(!a.active(t0 + Duration::from_secs(121)));
        // scrapes every 60 s: refreshing goes on 180 s after the last one
        let mut t = t0;
        for _ in 0..4 {
            t += Duration::from_secs(60);
            assert!(!a.scraped(t));
        }
        assert!(a.active(t + Duration::from_secs(179)));
        assert!(!a.active(t + Duration::from_secs(181)));
        assert!(a.scraped(t + Duration::from_secs(200)), "resumed");
    }
}
