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
//!
//! The gate also remembers a `Retry-After` ([`Gate::pause_for`]): until the time the API named
//! (at most [`MAX_PAUSE`] ahead) it admits no request of the account, whoever asks.
//!
//! A caller that must choose *what* to send only once a request may go (a fair queue: the
//! choice made after admission cannot be overtaken) takes the admission itself and hands it
//! to the request with [`with_admission`]: the first [`Gate::admit`] of that gate inside the
//! future uses it instead of queueing again.

use std::cell::RefCell;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

/// The longest pause a `Retry-After` can impose (a longer one is shortened to this; when it
/// runs out, the next request asks again and the API may name a new time).
pub const MAX_PAUSE: Duration = Duration::from_secs(300);

/// An account's limits on upstream requests. Shared by all clones of a client.
pub struct Gate {
    slots: Arc<Semaphore>,
    rate: Option<governor::DefaultDirectRateLimiter>,
    /// No request is admitted before this instant (a remembered `Retry-After`).
    pause: Mutex<Option<Instant>>,
    max_pause: Duration,
}

impl std::fmt::Debug for Gate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gate")
            .field("free_slots", &self.slots.available_permits())
            .field("rate_limited", &self.rate.is_some())
            .field("paused_until", &self.paused_until())
            .finish()
    }
}

/// The right to send one request; the slot is free again when this is dropped.
#[must_use]
pub struct Admission {
    _slot: Option<OwnedSemaphorePermit>,
    /// The gate that admitted it (its semaphore's address).
    gate: usize,
}

impl std::fmt::Debug for Admission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admission").finish_non_exhaustive()
    }
}

tokio::task_local! {
    static ADMITTED: RefCell<Option<Admission>>;
}

/// Runs `fut` with `admission` already granted: the first [`Gate::admit`] inside it on the gate
/// that granted the admission returns it at once (later ones, e.g. retries, queue as usual).
pub async fn with_admission<F: Future>(admission: Admission, fut: F) -> F::Output {
    ADMITTED.scope(RefCell::new(Some(admission)), fut).await
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Gate {
    /// `concurrency` requests in flight at most (at least 1); `requests_per_second` requests
    /// started per second at most (`0`: unlimited).
    pub fn new(concurrency: usize, requests_per_second: u32) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(concurrency.max(1))),
            rate: std::num::NonZeroU32::new(requests_per_second)
                .map(|r| governor::RateLimiter::direct(governor::Quota::per_second(r))),
            pause: Mutex::new(None),
            max_pause: MAX_PAUSE,
        }
    }

    /// Sets the longest pause a `Retry-After` can impose (default [`MAX_PAUSE`]; zero: none).
    pub fn with_max_pause(mut self, max: Duration) -> Self {
        self.max_pause = max;
        self
    }

    fn id(&self) -> usize {
        Arc::as_ptr(&self.slots) as usize
    }

    /// Remembers a `Retry-After` of `after`: no request is admitted before then (capped at the
    /// gate's longest pause; an earlier, longer pause is kept). Returns the end of the pause.
    pub fn pause_for(&self, after: Duration) -> Option<Instant> {
        let until = Instant::now() + after.min(self.max_pause);
        let mut p = lock(&self.pause);
        if p.is_none_or(|old| old < until) && !after.min(self.max_pause).is_zero() {
            *p = Some(until);
        }
        *p
    }

    /// The end of the current pause, if one is in force.
    pub fn paused_until(&self) -> Option<Instant> {
        lock(&self.pause).filter(|p| *p > Instant::now())
    }

    /// Waits out a pause, then for a free slot, then for a rate token. Inside
    /// [`with_admission`] the first call returns the admission it was given.
    pub async fn admit(&self) -> Admission {
        let given = ADMITTED
            .try_with(|a| {
                let mut a = a.borrow_mut();
                match a.as_ref() {
                    Some(adm) if adm.gate == self.id() => a.take(),
                    _ => None,
                }
            })
            .ok()
            .flatten();
        if let Some(a) = given {
            return a;
        }
        loop {
            if let Some(until) = self.paused_until() {
                tokio::time::sleep_until(until).await;
                continue;
            }
            // The semaphore is never closed, so acquiring fails never; were it to, the request
            // would go without a slot rather than fail.
            let slot = self.slots.clone().acquire_owned().await.ok();
            if let Some(rate) = &self.rate {
                rate.until_ready().await;
            }
            // A pause that began while this request queued holds it too.
            if self.paused_until().is_some() {
                continue;
            }
            return Admission {
                _slot: slot,
                gate: self.id(),
            };
        }
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
    async fn a_pause_holds_every_request_and_is_capped() {
        let gate = Gate::new(4, 0).with_max_pause(Duration::from_millis(300));
        let t0 = Instant::now();
        let until = gate.pause_for(Duration::from_secs(3600)).unwrap();
        assert!(
            until <= Instant::now() + Duration::from_millis(300),
            "not capped"
        );
        assert!(until >= t0 + Duration::from_millis(300));
        // a shorter pause does not shorten it
        assert_eq!(gate.pause_for(Duration::from_millis(5)), Some(until));
        let _a = gate.admit().await;
        assert!(Instant::now() >= until, "admitted during the pause");
        assert_eq!(gate.paused_until(), None);
    }

    #[tokio::test]
    async fn a_given_admission_is_used_once_and_only_by_its_gate() {
        let gate = Gate::new(1, 0);
        let other = Gate::new(1, 0);
        let adm = gate.admit().await;
        with_admission(adm, async {
            // the other gate queues as usual (and has a free slot)
            let _o = other.admit().await;
            // the first admit of the granting gate gets the admission: no wait for the slot
            let first = tokio::time::timeout(Duration::from_secs(5), gate.admit()).await;
            assert!(first.is_ok(), "the given admission was not used");
            // the second queues behind the (only) slot, which the first still holds
            let second = tokio::time::timeout(Duration::from_millis(50), gate.admit()).await;
            assert!(
                second.is_err(),
                "a second request went past the single slot"
            );
        })
        .await;
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
