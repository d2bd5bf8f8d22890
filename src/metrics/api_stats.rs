//! Per-account upstream request statistics, fed by the client's [`RequestObserver`] hook:
//! `tibiot_api_requests_total{account,endpoint,outcome}`, the
//! `tibiot_api_request_duration_seconds{account,endpoint}` histogram and the outcome of the
//! account's latest request (`tibiot_up`). Lock-free atomics; they outlive config reloads.

use crate::metrics::expo::label_fragment;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::time::Duration;
use tibiot_api::{Endpoint, Outcome, RequestObserver};

/// Upper bounds of the duration histogram, seconds.
pub const BUCKETS: [f64; 10] = [0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];
/// Their `le` label values.
pub const BUCKET_LABELS: [&str; 10] = [
    "0.025", "0.05", "0.1", "0.25", "0.5", "1.0", "2.5", "5.0", "10.0", "30.0",
];

/// The endpoints the exporter calls (the others are never reported).
pub const COLLECTED_ENDPOINTS: [Endpoint; 6] = [
    Endpoint::PoolDetail,
    Endpoint::PoolMonthUsage,
    Endpoint::PoolDayUsage,
    Endpoint::CardDetail,
    Endpoint::CardMonthUsage,
    Endpoint::CardDayUsage,
];

const NE: usize = Endpoint::ALL.len();
const NO: usize = Outcome::ALL.len();

#[derive(Default)]
struct Hist {
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

/// The statistics of one account.
pub struct ApiStats {
    /// `account="name"`, escaped.
    pub label: Box<str>,
    requests: [[AtomicU64; NO]; NE],
    hist: [Hist; NE],
    /// 0 no request yet, 1 latest succeeded, 2 latest failed.
    up: AtomicU8,
}

impl std::fmt::Debug for ApiStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiStats")
            .field("label", &self.label)
            .finish()
    }
}

fn ep_index(e: Endpoint) -> usize {
    Endpoint::ALL.iter().position(|x| *x == e).unwrap_or(0)
}

fn outcome_index(o: Outcome) -> usize {
    Outcome::ALL.iter().position(|x| *x == o).unwrap_or(0)
}

impl ApiStats {
    pub fn new(account: &str) -> Self {
        Self {
            label: label_fragment(&[("account", account)]),
            requests: Default::default(),
            hist: Default::default(),
            up: AtomicU8::new(0),
        }
    }

    /// Whether the latest upstream request succeeded; `None` before the first one.
    pub fn up(&self) -> Option<bool> {
        match self.up.load(Ordering::Relaxed) {
            1 => Some(true),
            2 => Some(false),
            _ => None,
        }
    }

    pub fn requests(&self, e: Endpoint, o: Outcome) -> u64 {
        self.requests[ep_index(e)][outcome_index(o)].load(Ordering::Relaxed)
    }

    /// Cumulative bucket counts, then count and sum in seconds.
    pub fn histogram(&self, e: Endpoint) -> ([u64; BUCKETS.len()], u64, f64) {
        let h = &self.hist[ep_index(e)];
        let mut b = [0u64; BUCKETS.len()];
        for (i, c) in h.buckets.iter().enumerate() {
            b[i] = c.load(Ordering::Relaxed);
        }
        (
            b,
            h.count.load(Ordering::Relaxed),
            h.sum_micros.load(Ordering::Relaxed) as f64 / 1e6,
        )
    }
}

impl RequestObserver for ApiStats {
    fn observe(&self, endpoint: Endpoint, outcome: Outcome, elapsed: Duration) {
        let e = ep_index(endpoint);
        self.requests[e][outcome_index(outcome)].fetch_add(1, Ordering::Relaxed);
        let h = &self.hist[e];
        let secs = elapsed.as_secs_f64();
        // Buckets are stored cumulatively.
        for (i, le) in BUCKETS.iter().enumerate() {
            if secs <= *le {
                h.buckets[i].fetch_add(1, Ordering::Relaxed);
            }
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
    fn counts_and_cumulative_buckets() {
        let s = ApiStats::new("a\"b");
        assert_eq!(&*s.label, "account=\"a\\\"b\"");
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
        assert_eq!(b[9], 1);
        assert_eq!(count, 2);
        assert!((sum - 40.07).abs() < 1e-6);
        assert_eq!(BUCKETS.len(), BUCKET_LABELS.len());
    }
}
