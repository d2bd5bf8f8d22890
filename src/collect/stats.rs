//! Per-account upstream request statistics, fed by the client's [`RequestObserver`] hook: the
//! requests by endpoint and outcome, their durations as a histogram, and the outcome of the
//! account's latest request. Lock-free atomics; they outlive config reloads. The metrics
//! layer reads them (`tibiot_api_requests_total`, `tibiot_api_request_duration_seconds`,
//! `tibiot_up`).

use crate::sys::lock;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tibiot_api::{Endpoint, Outcome, RequestObserver};

/// Upper bounds of the duration histogram, seconds.
pub(crate) const BUCKETS: [f64; 10] = [0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

const NE: usize = Endpoint::ALL.len();
const NO: usize = Outcome::ALL.len();

#[derive(Default)]
struct Hist {
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

/// The statistics of one account.
pub(crate) struct AccountStats {
    account: Arc<str>,
    requests: [[AtomicU64; NO]; NE],
    hist: [Hist; NE],
    /// 0 no request yet, 1 latest succeeded, 2 latest failed.
    up: AtomicU8,
    /// Label values cut to their bound, by kind (rare: a lock is fine).
    truncated: Mutex<BTreeMap<&'static str, u64>>,
}

impl std::fmt::Debug for AccountStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccountStats")
            .field("account", &self.account)
            .finish()
    }
}

fn ep_index(e: Endpoint) -> usize {
    e.index()
}

fn outcome_index(o: Outcome) -> usize {
    Outcome::ALL.iter().position(|x| *x == o).unwrap_or(0)
}

impl AccountStats {
    pub(crate) fn new(account: &str) -> Self {
        Self {
            account: Arc::from(account),
            requests: Default::default(),
            hist: Default::default(),
            up: AtomicU8::new(0),
            truncated: Mutex::new(BTreeMap::new()),
        }
    }

    /// Counts `n` label values of a `kind` target cut to their bound.
    pub(crate) fn truncated(&self, kind: &'static str, n: u64) {
        *lock(&self.truncated).entry(kind).or_default() += n;
    }

    /// Label values of `kind` targets cut so far.
    pub(crate) fn truncations(&self, kind: &str) -> u64 {
        lock(&self.truncated).get(kind).copied().unwrap_or(0)
    }

    pub(crate) fn account(&self) -> &str {
        &self.account
    }

    /// Whether the latest upstream request succeeded; `None` before the first one.
    pub(crate) fn up(&self) -> Option<bool> {
        match self.up.load(Ordering::Relaxed) {
            1 => Some(true),
            2 => Some(false),
            _ => None,
        }
    }

    pub(crate) fn requests(&self, e: Endpoint, o: Outcome) -> u64 {
        self.requests[ep_index(e)][outcome_index(o)].load(Ordering::Relaxed)
    }

    /// Observations per bucket (not cumulative: an observation counts in the first bucket
    /// whose bound holds it, or in none above the last bound), then count and sum in seconds.
    /// The count is never below the buckets' total, even while an observation is being added.
    pub(crate) fn histogram(&self, e: Endpoint) -> ([u64; BUCKETS.len()], u64, f64) {
        let h = &self.hist[ep_index(e)];
        let mut b = [0u64; BUCKETS.len()];
        for (i, c) in h.buckets.iter().enumerate() {
            b[i] = c.load(Ordering::Relaxed);
        }
        let count = h.count.load(Ordering::Relaxed).max(b.iter().sum());
        (b, count, h.sum_micros.load(Ordering::Relaxed) as f64 / 1e6)
    }
}

impl RequestObserver for AccountStats {
    fn observe(&self, endpoint: Endpoint, outcome: Outcome, elapsed: Duration) {
        let e = ep_index(endpoint);
        self.requests[e][outcome_index(outcome)].fetch_add(1, Ordering::Relaxed);
        let h = &self.hist[e];
        let secs = elapsed.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|le| secs <= *le) {
            h.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        h.count.fetch_add(1, Ordering::Relaxed);
        h.sum_micros
            .fetch_add(elapsed.as_micros() as u64, Ordering::Relaxed);
        self.up.store(
            if outcome == Outcome::Success { 1 } else { 2 },
            Ordering::Relaxed,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_buckets() {
        let s = AccountStats::new("a\"b");
        assert_eq!(s.account(), "a\"b");
        assert_eq!(s.up(), None);
        s.observe(
            Endpoint::PoolDetail,
            Outcome::Success,
            Duration::from_millis(70),
        );
        s.observe(
            Endpoint::PoolDetail,
            Outcome::Timeout,
            Duration::from_secs(40),
        );
        assert_eq!(s.up(), Some(false));
        assert_eq!(s.requests(Endpoint::PoolDetail, Outcome::Success), 1);
        let (b, count, sum) = s.histogram(Endpoint::PoolDetail);
        assert_eq!(b[0], 0);
        assert_eq!(b[2], 1);
        assert_eq!(b.iter().sum::<u64>(), 1, "40 s is above the last bound");
        assert_eq!(count, 2);
        assert!((sum - 40.07).abs() < 1e-6);
    }
}
