//! Connection admission: which connections may stay open. Every accepted connection is
//! registered here with its peer and what it is doing (opening, serving requests, idle since
//! when). A new connection is always accepted; to keep within the limits, one that is not
//! serving a request is closed instead:
//!
//! 1. beyond the per-peer share, the peer's own longest-idle connection;
//! 2. beyond the connection cap, the longest-idle connection of any peer.
//!
//! Connections that never sent a complete request go first (oldest first), then those idle
//! between requests (longest idle first). A connection with a request in progress is never
//! chosen; only when every other one has a request in progress is the new connection refused.
//! So peers that connect and then say nothing, dribble headers, or keep an HTTP/2 connection
//! open without streams cannot lock anyone out: a scrape's new connection takes the place of
//! one of theirs. How long a connection may stay silent or idle is decided per connection
//! ([`ConnState::deadline`]), and enforced by the connection's task.

use crate::limits::Limits;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;

/// Counters of the admission decisions since start (tests, debugging).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct AdmissionStats {
    /// Connections open now.
    pub open: u64,
    /// Connections accepted.
    pub accepted: u64,
    /// Connections closed to make room for a new one (cap or per-client share reached).
    pub evicted: u64,
    /// New connections refused because every other one had a request in progress.
    pub refused: u64,
    /// Connections closed for not completing request headers in time.
    pub header_timeouts: u64,
    /// Connections closed after `idle_timeout` without a request.
    pub idle_timeouts: u64,
}

/// What a peer is for the per-peer share: an IPv4 address, or the /64 of an IPv6 address
/// (one host usually holds a whole /64).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct PeerKey(IpAddr);

impl PeerKey {
    fn of(ip: IpAddr) -> PeerKey {
        match ip.to_canonical() {
            IpAddr::V4(v4) => PeerKey(IpAddr::V4(v4)),
            IpAddr::V6(v6) => {
                let masked = u128::from(v6) & !((1u128 << 64) - 1);
                PeerKey(IpAddr::V6(masked.into()))
            }
        }
    }
}

/// Why a connection is to be closed now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Expiry {
    /// No complete request headers in time (from accept, or from a request's first byte).
    Headers,
    /// Idle between requests for `idle_timeout`.
    Idle,
}

/// The registry of open connections.
pub(crate) struct Admission {
    epoch: Instant,
    max: usize,
    per_peer: usize,
    registry: Mutex<Registry>,
    accepted: AtomicU64,
    evicted: AtomicU64,
    refused: AtomicU64,
    header_timeouts: AtomicU64,
    idle_timeouts: AtomicU64,
    pressure: Mutex<Pressure>,
}

#[derive(Default)]
struct Registry {
    next_id: u64,
    conns: HashMap<u64, Arc<ConnState>>,
    per_peer: HashMap<PeerKey, usize>,
}

/// Evictions and refusals not yet reported in the log (one warning a minute at most).
struct Pressure {
    last_report: Option<Instant>,
    evicted: u64,
    refused: u64,
}

const REPORT_EVERY: Duration = Duration::from_secs(60);

impl Admission {
    pub(crate) fn new(limits: &Limits) -> Admission {
        Admission {
            epoch: Instant::now(),
            max: limits.max_connections.max(1),
            per_peer: match limits.max_connections_per_client {
                0 => usize::MAX,
                n => n,
            },
            registry: Mutex::new(Registry::default()),
            accepted: AtomicU64::new(0),
            evicted: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            header_timeouts: AtomicU64::new(0),
            idle_timeouts: AtomicU64::new(0),
            pressure: Mutex::new(Pressure {
                last_report: None,
                evicted: 0,
                refused: 0,
            }),
        }
    }

    fn registry(&self) -> MutexGuard<'_, Registry> {
        // Nothing that can panic runs under this lock; a poisoned one still holds valid data.
        self.registry.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a connection from `ip`, closing others to stay within the limits. `None`:
    /// refused (every connection that would have to make room has a request in progress).
    pub(crate) fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<Ticket> {
        let peer = PeerKey::of(ip);
        let now = self.epoch.elapsed();
        let (state, evicted) = {
            let mut reg = self.registry();
            let from_peer = reg.per_peer.get(&peer).copied().unwrap_or(0);
            // Closing one of the peer's own connections also frees a place under the cap.
            let made_room = if from_peer >= self.per_peer {
                reg.evict(|c| c.peer == peer).then_some(true)
            } else if reg.conns.len() >= self.max {
                reg.evict(|_| true).then_some(true)
            } else {
                Some(false)
            };
            match made_room {
                Some(evicted) => (reg.insert(peer, self.epoch, now), evicted),
                None => {
                    drop(reg);
                    self.refused(ip);
                    return None;
                }
            }
        };
        if evicted {
            self.evicted.fetch_add(1, Ordering::Relaxed);
            self.report(1, 0);
        }
        self.accepted.fetch_add(1, Ordering::Relaxed);
        Some(Ticket {
            admission: self.clone(),
            state,
        })
    }

    /// Closes the longest-idle connection of any peer (out of file descriptors).
    pub(crate) fn make_room(&self) {
        if self.registry().evict(|_| true) {
            self.evicted.fetch_add(1, Ordering::Relaxed);
            self.report(1, 0);
        }
    }

    fn refused(&self, ip: IpAddr) {
        self.refused.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(peer = %ip, "connection refused: every connection has a request in progress");
        self.report(0, 1);
    }

    /// Logs evictions and refusals, at most once a minute (with the counts since the last).
    fn report(&self, evicted: u64, refused: u64) {
        let mut p = self.pressure.lock().unwrap_or_else(|p| p.into_inner());
        p.evicted += evicted;
        p.refused += refused;
        let now = Instant::now();
        if p.last_report.is_some_and(|t| now < t + REPORT_EVERY) {
            return;
        }
        tracing::warn!(
            closed_idle = p.evicted,
            refused = p.refused,
            max_connections = self.max,
            "connection limit reached: closed idle connections to admit new ones \
             (many connections that send nothing, or a client that opens too many)"
        );
        p.last_report = Some(now);
        p.evicted = 0;
        p.refused = 0;
    }

    fn unregister(&self, conn: &ConnState) {
        self.registry().remove(conn.id, conn.peer);
    }

    /// Counts a connection closed by its own deadline.
    pub(crate) fn expired(&self, why: Expiry) {
        match why {
            Expiry::Headers => &self.header_timeouts,
            Expiry::Idle => &self.idle_timeouts,
        }
        .fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn stats(&self) -> AdmissionStats {
        let open = self.registry().conns.len() as u64;
        AdmissionStats {
            open,
            accepted: self.accepted.load(Ordering::Relaxed),
            evicted: self.evicted.load(Ordering::Relaxed),
            refused: self.refused.load(Ordering::Relaxed),
            header_timeouts: self.header_timeouts.load(Ordering::Relaxed),
            idle_timeouts: self.idle_timeouts.load(Ordering::Relaxed),
        }
    }
}

impl Registry {
    fn insert(&mut self, peer: PeerKey, epoch: Instant, now: Duration) -> Arc<ConnState> {
        let id = self.next_id;
        self.next_id += 1;
        let state = Arc::new(ConnState::new(id, peer, epoch, now));
        self.conns.insert(id, state.clone());
        *self.per_peer.entry(peer).or_insert(0) += 1;
        state
    }

    fn remove(&mut self, id: u64, peer: PeerKey) -> bool {
        if self.conns.remove(&id).is_none() {
            return false;
        }
        if let Some(n) = self.per_peer.get_mut(&peer) {
            *n -= 1;
            if *n == 0 {
                self.per_peer.remove(&peer);
            }
        }
        true
    }

    /// Closes the connection among those matching `which` that should make room first:
    /// false when every one of them has a request in progress.
    fn evict(&mut self, which: impl Fn(&ConnState) -> bool) -> bool {
        let victim = self
            .conns
            .values()
            .filter(|c| which(c) && c.in_flight.load(Ordering::Acquire) == 0)
            .min_by_key(|c| c.eviction_rank())
            .cloned();
        let Some(victim) = victim else { return false };
        self.remove(victim.id, victim.peer);
        victim.close_now();
        true
    }
}

/// Held by a connection's task; unregisters the connection when dropped.
pub(crate) struct Ticket {
    admission: Arc<Admission>,
    state: Arc<ConnState>,
}

impl Ticket {
    pub(crate) fn state(&self) -> &Arc<ConnState> {
        &self.state
    }

    pub(crate) fn admission(&self) -> &Admission {
        &self.admission
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.admission.unregister(&self.state);
    }
}

/// What one connection is doing, updated by its requests and its reads, read by the
/// registry (to choose whom to close) and by the connection's task (to time it out).
pub(crate) struct ConnState {
    id: u64,
    peer: PeerKey,
    epoch: Instant,
    /// Requests whose handling began.
    requests: AtomicU64,
    /// Requests being handled (until their response body is finished or dropped).
    in_flight: AtomicU32,
    /// Since when no request is in progress (ms after `epoch`): the accept time at first.
    idle_since_ms: AtomicU64,
    /// HTTP/1: when the first byte of the next request arrived (ms after `epoch`, +1; 0: not
    /// yet). Its headers must be complete `header_read_timeout` after it.
    reading_since_ms: AtomicU64,
    /// The connection speaks HTTP/2 (bytes between requests are frames, not a request).
    http2: AtomicBool,
    /// Chosen to make room: close at once.
    closing: AtomicBool,
    /// Wakes the connection's task when its deadline may have changed.
    pub(crate) wake: Notify,
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl ConnState {
    fn new(id: u64, peer: PeerKey, epoch: Instant, now: Duration) -> ConnState {
        ConnState {
            id,
            peer,
            epoch,
            requests: AtomicU64::new(0),
            in_flight: AtomicU32::new(0),
            idle_since_ms: AtomicU64::new(ms(now)),
            reading_since_ms: AtomicU64::new(0),
            http2: AtomicBool::new(false),
            closing: AtomicBool::new(false),
            wake: Notify::new(),
        }
    }

    fn now_ms(&self) -> u64 {
        ms(self.epoch.elapsed())
    }

    /// Connections that never began a request first, then the longest idle (the older
    /// connection when two became idle in the same millisecond).
    fn eviction_rank(&self) -> (bool, u64, u64) {
        (
            self.requests.load(Ordering::Relaxed) > 0,
            self.idle_since_ms.load(Ordering::Relaxed),
            self.id,
        )
    }

    fn close_now(&self) {
        self.closing.store(true, Ordering::Release);
        self.wake.notify_one();
    }

    /// Whether the connection was chosen to make room for another.
    pub(crate) fn evicted(&self) -> bool {
        self.closing.load(Ordering::Acquire)
    }

    /// Bytes arrived from the client (after TLS). On an idle HTTP/1 connection they are the
    /// start of a request, whose headers now have `header_read_timeout` to arrive.
    pub(crate) fn bytes_read(&self) {
        if self.in_flight.load(Ordering::Acquire) == 0
            && self.requests.load(Ordering::Relaxed) > 0
            && !self.http2.load(Ordering::Relaxed)
            && self.reading_since_ms.load(Ordering::Relaxed) == 0
        {
            self.reading_since_ms
                .store(self.now_ms() + 1, Ordering::Relaxed);
            self.wake.notify_one();
        }
    }

    /// A request's headers arrived and its handling begins; the returned guard ends it.
    pub(crate) fn request_begins(self: &Arc<Self>, http2: bool) -> Busy {
        if http2 {
            self.http2.store(true, Ordering::Relaxed);
        }
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.reading_since_ms.store(0, Ordering::Relaxed);
        Busy(self.clone())
    }

    /// When the connection must be closed if nothing changes, and why. `None`: not while a
    /// request is in progress (the request timeout bounds that).
    pub(crate) fn deadline(&self, limits: &Limits) -> Option<(Instant, Expiry)> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        let at = |ms: u64, after: Duration| self.epoch + Duration::from_millis(ms) + after;
        let idle_since = self.idle_since_ms.load(Ordering::Relaxed);
        if self.requests.load(Ordering::Relaxed) == 0 {
            return Some((at(idle_since, limits.header_read_timeout), Expiry::Headers));
        }
        let idle = (at(idle_since, limits.idle_timeout), Expiry::Idle);
        match self.reading_since_ms.load(Ordering::Relaxed) {
            0 => Some(idle),
            r => {
                let headers = (at(r - 1, limits.header_read_timeout), Expiry::Headers);
                Some(if headers.0 < idle.0 { headers } else { idle })
            }
        }
    }
}

/// A request in progress on a connection; dropped when its response is finished (or the
/// request abandoned).
pub(crate) struct Busy(Arc<ConnState>);

impl Drop for Busy {
    fn drop(&mut self) {
        let s = &self.0;
        // The idle clock restarts before the count drops, so a connection that just became
        // idle is never ranked as idle since long ago.
        s.idle_since_ms.store(s.now_ms(), Ordering::Relaxed);
        if s.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            s.wake.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv6Addr;

    fn admission(max: usize, per_peer: usize) -> Arc<Admission> {
        Arc::new(Admission::new(&Limits {
            max_connections: max,
            max_connections_per_client: per_peer,
            ..Limits::default()
        }))
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn peers_are_ipv4_addresses_and_ipv6_slash_64s() {
        assert_eq!(
            PeerKey::of(ip("::ffff:10.0.0.1")),
            PeerKey::of(ip("10.0.0.1"))
        );
        assert_eq!(
            PeerKey::of(ip("2001:db8::1")),
            PeerKey::of(ip("2001:db8::ffff:1"))
        );
        assert_ne!(
            PeerKey::of(ip("2001:db8::1")),
            PeerKey::of(ip("2001:db8:0:1::1"))
        );
        assert_eq!(
            PeerKey::of(ip("2001:db8::1")).0,
            IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0))
        );
    }

    #[test]
    fn a_new_connection_takes_the_place_of_one_that_never_sent_a_request() {
        let a = admission(3, 0);
        let served = a.admit(ip("10.0.0.1")).unwrap();
        drop(served.state().request_begins(false)); // served one request, now idle
        let silent1 = a.admit(ip("10.0.0.2")).unwrap();
        let silent2 = a.admit(ip("10.0.0.3")).unwrap();
        let new = a.admit(ip("10.0.0.4")).unwrap();
        assert!(
            silent1.state().evicted(),
            "the oldest that never sent a request"
        );
        assert!(!silent2.state().evicted() && !served.state().evicted());
        assert!(!new.state().evicted());
        assert_eq!(a.stats().open, 3);
        assert_eq!(a.stats().evicted, 1);
        drop(silent1); // its task ends: nothing is counted twice
        assert_eq!(a.stats().open, 3);
    }

    #[test]
    fn connections_with_a_request_in_progress_are_kept() {
        let a = admission(2, 0);
        let c1 = a.admit(ip("10.0.0.1")).unwrap();
        let c2 = a.admit(ip("10.0.0.2")).unwrap();
        let _b1 = c1.state().request_begins(false);
        let b2 = c2.state().request_begins(true);
        assert!(
            a.admit(ip("10.0.0.3")).is_none(),
            "refused: nothing to close"
        );
        assert_eq!(a.stats().refused, 1);
        drop(b2);
        let _c3 = a.admit(ip("10.0.0.3")).unwrap();
        assert!(c2.state().evicted() && !c1.state().evicted());
    }

    #[test]
    fn the_per_peer_share_closes_that_peers_own_connections() {
        let a = admission(10, 2);
        let other = a.admit(ip("10.0.0.9")).unwrap();
        let p1 = a.admit(ip("10.0.0.1")).unwrap();
        let p2 = a.admit(ip("10.0.0.1")).unwrap();
        let p3 = a.admit(ip("10.0.0.1")).unwrap();
        assert!(p1.state().evicted(), "the peer's oldest");
        assert!(!other.state().evicted(), "older, but another peer's");
        assert!(!p2.state().evicted() && !p3.state().evicted());
    }

    #[test]
    fn deadlines_follow_the_connection_phase() {
        let limits = Limits::default();
        let a = admission(10, 0);
        let c = a.admit(ip("10.0.0.1")).unwrap();
        let s = c.state();
        let (at, why) = s.deadline(&limits).unwrap();
        assert_eq!(why, Expiry::Headers, "the first request's headers");
        assert!(at <= Instant::now() + limits.header_read_timeout);
        let busy = s.request_begins(false);
        assert_eq!(s.deadline(&limits), None, "a request in progress");
        drop(busy);
        assert_eq!(s.deadline(&limits).unwrap().1, Expiry::Idle);
        s.bytes_read();
        assert_eq!(
            s.deadline(&limits).unwrap().1,
            Expiry::Headers,
            "HTTP/1: the next request started"
        );
        let busy = s.request_begins(true);
        drop(busy);
        s.bytes_read();
        assert_eq!(
            s.deadline(&limits).unwrap().1,
            Expiry::Idle,
            "HTTP/2: frames between requests are not a request"
        );
    }
}
