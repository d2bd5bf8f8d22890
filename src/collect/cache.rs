//! Per-target cache entries ([`Slot`]): the last good value with when it was fetched, the
//! outcome and error of the latest attempt, and the in-flight fetch that concurrent scrapes
//! join. The TTL rule ([`Slot::is_fresh`]) decides what a scrape fetches; the stale rule
//! ([`Slot::served`]) decides what it still serves after failures.

use crate::sys::unix_now;
use futures::future::{BoxFuture, Shared};
use std::sync::Arc;
use std::time::Duration;
use tibiot_api::{ApiError, Outcome};
use tokio::time::Instant;

/// A fetch in progress; every scrape that needs it awaits a clone.
pub(crate) type InFlight = Shared<BoxFuture<'static, ()>>;

/// A value with the time it was fetched.
#[derive(Debug)]
pub(crate) struct Fetched<T> {
    pub(crate) value: T,
    /// Unix seconds (for metrics and the landing page).
    pub(crate) at_unix: f64,
    /// Monotonic (for TTL and staleness).
    pub(crate) at: Instant,
}

impl<T> Fetched<T> {
    pub(crate) fn now(value: T) -> Self {
        Self {
            value,
            at_unix: unix_now(),
            at: Instant::now(),
        }
    }
}

/// What went wrong with the latest attempt (safe to show: upstream text is cleaned by
/// the client and secrets never enter an [`ApiError`]).
#[derive(Debug, Clone)]
pub(crate) struct FetchError {
    pub(crate) outcome: Outcome,
    pub(crate) message: String,
    pub(crate) api_code: Option<i64>,
    pub(crate) at_unix: f64,
}

impl FetchError {
    pub(crate) fn from_api(e: &ApiError) -> Self {
        Self {
            outcome: e.outcome(),
            message: e.to_string(),
            api_code: e.api_code(),
            at_unix: unix_now(),
        }
    }

    /// A fetch that did not finish before the scrape's deadline.
    pub(crate) fn deadline() -> Self {
        Self {
            outcome: Outcome::Timeout,
            message: "not finished before the scrape deadline (still being fetched)".into(),
            api_code: None,
            at_unix: unix_now(),
        }
    }
}

/// One cached value of one target.
#[derive(Debug)]
pub(crate) struct Slot<T> {
    pub(crate) good: Option<Arc<Fetched<T>>>,
    /// Outcome of the latest finished attempt; `None` before the first one.
    pub(crate) last_ok: Option<bool>,
    pub(crate) last_error: Option<Arc<FetchError>>,
    pub(crate) inflight: Option<InFlight>,
}

impl<T> Default for Slot<T> {
    fn default() -> Self {
        Self {
            good: None,
            last_ok: None,
            last_error: None,
            inflight: None,
        }
    }
}

impl<T> Slot<T> {
    /// A good value younger than `ttl` exists.
    #[inline]
    pub(crate) fn is_fresh(&self, now: Instant, ttl: Duration) -> bool {
        self.good
            .as_ref()
            .is_some_and(|g| now.saturating_duration_since(g.at) < ttl)
    }

    /// The value to serve: the last good one while it is younger than `stale_after`.
    #[inline]
    pub(crate) fn served(&self, now: Instant, stale_after: Duration) -> Option<Arc<Fetched<T>>> {
        self.good
            .as_ref()
            .filter(|g| now.saturating_duration_since(g.at) < stale_after)
            .cloned()
    }

    /// Records a finished attempt.
    pub(crate) fn record(&mut self, result: Result<T, Arc<FetchError>>) {
        match result {
            Ok(v) => {
                self.good = Some(Arc::new(Fetched::now(v)));
                self.last_ok = Some(true);
                self.last_error = None;
            }
            Err(e) => {
                self.last_ok = Some(false);
                self.last_error = Some(e);
            }
        }
        self.inflight = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn age(s: &mut Slot<u32>, by: Duration) {
        let g = s.good.as_mut().unwrap();
        let at = g.at.checked_sub(by).unwrap();
        *g = Arc::new(Fetched {
            value: g.value,
            at_unix: g.at_unix - by.as_secs_f64(),
            at,
        });
    }

    #[test]
    fn ttl_and_stale_rules() {
        let mut s: Slot<u32> = Slot::default();
        let t0 = Instant::now();
        assert!(!s.is_fresh(t0, Duration::from_secs(1)));
        assert!(s.served(t0, Duration::from_secs(2)).is_none());
        s.record(Ok(7));
        assert!(s.is_fresh(Instant::now(), Duration::from_secs(1)));
        age(&mut s, Duration::from_millis(1500));
        assert!(!s.is_fresh(Instant::now(), Duration::from_secs(1)));
        s.record(Err(Arc::new(FetchError::from_api(&ApiError::Timeout))));
        assert_eq!(s.last_ok, Some(false));
        assert_eq!(
            s.served(Instant::now(), Duration::from_secs(2))
                .unwrap()
                .value,
            7
        );
        age(&mut s, Duration::from_millis(600));
        assert!(s.served(Instant::now(), Duration::from_secs(2)).is_none());
        assert_eq!(s.last_error.as_ref().unwrap().outcome, Outcome::Timeout);
    }
}
