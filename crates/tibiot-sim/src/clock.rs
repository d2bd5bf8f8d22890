//! The simulator's world clock: real time by default, or frozen / shifted by tests so that
//! usage values can be compared exactly. Signature timestamps always use real time.

use chrono::{DateTime, Duration as ChronoDuration, Utc};
use std::sync::Mutex;

/// Real time plus `offset` (real time if that would overflow).
fn shifted(offset: ChronoDuration) -> DateTime<Utc> {
    let now = Utc::now();
    now.checked_add_signed(offset).unwrap_or(now)
}

#[derive(Debug, Default)]
struct State {
    frozen: Option<DateTime<Utc>>,
    offset: ChronoDuration,
}

/// The world clock.
#[derive(Debug, Default)]
pub struct WorldClock {
    state: Mutex<State>,
}

impl WorldClock {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The current world time.
    pub fn now(&self) -> DateTime<Utc> {
        let s = self.lock();
        s.frozen.unwrap_or_else(|| shifted(s.offset))
    }

    /// Stops the clock at `at`, or at the current world time when `None`.
    pub fn freeze(&self, at: Option<DateTime<Utc>>) {
        let mut s = self.lock();
        let now = s.frozen.unwrap_or_else(|| shifted(s.offset));
        s.frozen = Some(at.unwrap_or(now));
    }

    /// Lets the clock run again from where it stands.
    pub fn resume(&self) {
        let mut s = self.lock();
        if let Some(at) = s.frozen.take() {
            s.offset = at - Utc::now();
        }
    }

    /// Back to real time, no offset.
    pub fn reset(&self) {
        *self.lock() = State::default();
    }

    /// Moves the clock forward (or back, with a negative duration). A move past the end of
    /// chrono's range is ignored.
    pub fn advance(&self, by: ChronoDuration) {
        let mut s = self.lock();
        match &mut s.frozen {
            Some(at) => {
                if let Some(t) = at.checked_add_signed(by) {
                    *at = t;
                }
            }
            None => {
                if let Some(o) = s.offset.checked_add(&by)
                    && Utc::now().checked_add_signed(o).is_some()
                {
                    s.offset = o;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn freeze_advance_resume() {
        let c = WorldClock::default();
        let t = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        c.freeze(Some(t));
        assert_eq!(c.now(), t);
        c.advance(ChronoDuration::hours(1));
        assert_eq!(c.now(), t + ChronoDuration::hours(1));
        c.resume();
        assert!((c.now() - t).num_minutes().abs() <= 61);
        c.advance(ChronoDuration::MAX);
        c.freeze(None);
        c.advance(ChronoDuration::MAX);
        c.reset();
        assert!((c.now() - Utc::now()).num_seconds().abs() <= 1);
    }
}
