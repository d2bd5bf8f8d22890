//! Admission of upstream requests for one account, and request deadlines.
//!
//! A [`Gate`] holds an account's limits: at most `concurrency` HTTP requests in flight and at
//! most `requests_per_second` started per second. The client passes *every* HTTP attempt
//! through it, retries included, and holds the slot only while the attempt is on the wire: a
//! retry's backoff (a `Retry-After` of seconds, say) holds no slot, and a retry pays for a
//! rate token like any other request.
//!
//! A [`Deadline`] is either a fixed instant or a budget that starts once the first attempt is
//! admitted, so that work waiting in the gate's queue is not timed out by the wait.

use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

/// An account's limits on upstream requests. Shared by all clones of a client.
pub struct Gate {
    slots: Arc<Semaphore>,
    rate: Option<governor::DefaultDirectRateLimiter>,
}

impl std::fmt::Debug for Gate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gate")
            .field("free_slots", &self.slots.available_permits())
            .field("rate_limited", &self.rate.is_some())
            .finish()
    }
}

/// The right to send one request; the slot is free again when this is dropped.
#[must_use]
pub struct Admission {
    _slot: Option<OwnedSemaphorePermit>,
}

impl Gate {
    /// `concurrency` requests in flight at most (at least 1); `requests_per_second` requests
    /// started per second at most (`0`: unlimited).
    pub fn new(concurrency: usize, requests_per_second: u32) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(concurrency.max(1))),
            rate: std::num::NonZeroU32::new(requests_per_second)
                .map(|r| governor::RateLimiter::direct(governor::Quota::per_second(r))),
        }
    }

    /// Waits for a free slot, then for a rate token.
    pub async fn admit(&self) -> Admission {
        // The semaphore is never closed, so acquiring fails never; were it to, the request
        // would go without a slot rather than fail.
        let slot = self.slots.clone().acquire_owned().await.ok();
        if let Some(rate) = &self.rate {
            rate.until_ready().await;
        }
        Admission { _slot: slot }
    }
}

/// When a request (all its attempts) must be done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deadline {
    /// At this instant; waiting for admission counts.
    At(Instant),
    /// This long after the first attempt is admitted; waiting for admission does not count
    /// (for queued background work that must not expire in the queue).
    AfterAdmission(Duration),
}

impl From<Instant> for Deadline {
    fn from(at: Instant) -> Self {
        Deadline::At(at)
    }
}

impl Deadline {
    /// The instant, if it is already fixed.
    pub fn fixed(self) -> Option<Instant> {
        match self {
            Deadline::At(at) => Some(at),
            Deadline::AfterAdmission(_) => None,
        }
    }

    /// Fixes a budget to start `now` (a fixed instant stays); returns the instant.
    pub fn start(&mut self, now: Instant) -> Instant {
        let at = match *self {
            Deadline::At(at) => at,
            Deadline::AfterAdmission(budget) => now + budget,
        };
        *self = Deadline::At(at);
        at
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_budget_starts_at_admission_and_a_fixed_deadline_stays() {
        let t0 = Instant::now();
        let mut d = Deadline::AfterAdmission(Duration::from_secs(5));
        assert_eq!(d.fixed(), None);
        let admitted = t0 + Duration::from_secs(2);
        let at = d.start(admitted);
        assert_eq!(at, t0 + Duration::from_secs(7));
        assert_eq!(d.fixed(), Some(at));
        // later attempts keep the first admission's deadline
        assert_eq!(d.start(t0 + Duration::from_secs(3)), at);
        let mut fixed = Deadline::from(t0);
        assert_eq!(fixed.start(t0 + Duration::from_secs(1)), t0);
    }

    #[tokio::test]
    async fn the_gate_admits_no_more_than_its_slots() {
        let gate = Gate::new(2, 0);
        let a = gate.admit().await;
        let _b = gate.admit().await;
        let third = tokio::time::timeout(Duration::from_millis(50), gate.admit()).await;
        assert!(third.is_err(), "a third request went past two slots");
        drop(a);
        let _c = tokio::time::timeout(Duration::from_secs(5), gate.admit())
            .await
            .expect("a freed slot admits the next request");
    }
}
