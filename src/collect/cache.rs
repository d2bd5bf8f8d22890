//! Per-target cache entries ([`Slot`]): the last good value with when it was fetched, and the
//! outcome and error of the latest completed attempt (docs/collection.md, "Pending is not
//! failure": work in progress changes nothing here). The stale rule ([`Slot::served`])
//! decides what a scrape still serves after failures; when a value is refreshed is the
//! scheduler's business (`super::sched`).

use crate::sys::unix_now;
use std::sync::Arc;
use std::time::Duration;
use tibiot_api::{ApiError, Outcome};
use tokio::time::Instant;

/// A value with the time it was fetched, in one allocation (the value last, so that a kind's
/// values can be kept behind `Arc<Fetched<dyn Any …>>` without a second indirection).
#[derive(Debug)]
pub(crate) struct Fetched<T: ?Sized> {
    /// Unix seconds (for metrics and the landing page).
    pub(crate) at_unix: f64,
    /// Monotonic (for TTL and staleness).
    pub(crate) at: Instant,
    pub(crate) value: T,
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

    /// A fetch that panicked (recorded as a failure; never expected).
    pub(crate) fn internal() -> Self {
        Self {
            outcome: Outcome::DecodeError,
            message: "internal error while fetching".into(),
            api_code: None,
            at_unix: unix_now(),
        }
    }
}

/// One cached value of one target.
#[derive(Debug)]
pub(crate) struct Slot<T: ?Sized> {
    pub(crate) good: Option<Arc<Fetched<T>>>,
    /// Outcome of the latest finished attempt; `None` before the first one.
    pub(crate) last_ok: Option<bool>,
    pub(crate) last_error: Option<Arc<FetchError>>,
}

impl<T: ?Sized> Default for Slot<T> {
    fn default() -> Self {
        Self {
            good: None,
            last_ok: None,
            last_error: None,
        }
    }
}

impl<T: ?Sized> Slot<T> {
    /// The value to serve: the last good one while it is younger than `stale_after`.
    #[inline]
    pub(crate) fn served(&self, now: Instant, stale_after: Duration) -> Option<Arc<Fetched<T>>> {
        self.good
            .as_ref()
            .filter(|g| now.saturating_duration_since(g.at) < stale_after)
            .cloned()
    }

    /// Records a finished attempt whose value is already stamped.
    pub(crate) fn record_fetched(&mut self, result: Result<Arc<Fetched<T>>, Arc<FetchError>>) {
        match result {
            Ok(v) => {
                self.good = Some(v);
                self.last_ok = Some(true);
                self.last_error = None;
            }
            Err(e) => {
                self.last_ok = Some(false);
                self.last_error = Some(e);
            }
        }
    }
}

impl<T> Slot<T> {
    /// Records a finished attempt, stamping its value now.
    pub(crate) fn record(&mut self, result: Result<T, Arc<FetchError>>) {
        self.record_fetched(result.map(|v| Arc::new(Fetched::now(v))));
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
    fn stale_rule_and_failures_keep_the_last_good_value() {
        let mut s: Slot<u32> = Slot::default();
        let t0 = Instant::now();
        assert!(s.served(t0, Duration::from_secs(2)).is_none());
        s.record(Ok(7));
        age(&mut s, Duration::from_millis(1500));
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
