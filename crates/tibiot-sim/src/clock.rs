//! The simulator's world clock: real time by default, or frozen / shifted by tests so that
//! usage values can be compared exactly, or running `speed` times faster than real time (for
//! time-compressed end-to-end tests: an hour of world time passes in 3600/speed seconds).
//! Signature timestamps always use real time.

use chrono::{DateTime, Duration as ChronoDuration, Utc};
use std::sync::Mutex;

#[derive(Debug)]
struct State {
    frozen: Option<DateTime<Utc>>,
    /// World time = `world` + (real time − `real`) × `speed`.
    real: DateTime<Utc>,
    world: DateTime<Utc>,
    speed: f64,
}

impl Default for State {
    fn default() -> Self {
        let now = Utc::now();
        State {
            frozen: None,
            real: now,
            world: now,
            speed: 1.0,
        }
    }
}

impl State {
    fn running_now(&self) -> DateTime<Utc> {
        let real = Utc::now() - self.real;
        let elapsed = if self.speed == 1.0 {
            real
        } else {
            let ms = real.num_milliseconds() as f64 * self.speed;
            ChronoDuration::milliseconds(ms.clamp(-1e15, 1e15) as i64)
        };
        self.world.checked_add_signed(elapsed).unwrap_or(self.world)
    }

    fn now(&self) -> DateTime<Utc> {
        self.frozen.unwrap_or_else(|| self.running_now())
    }

    /// Re-anchors a running clock at the current instant (before changing its speed).
    fn anchor(&mut self) {
        let now = self.running_now();
        self.real = Utc::now();
        self.world = now;
    }
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
        self.lock().now()
    }

    /// Stops the clock at `at`, or at the current world time when `None`.
    pub fn freeze(&self, at: Option<DateTime<Utc>>) {
        let mut s = self.lock();
        let now = s.now();
        s.frozen = Some(at.unwrap_or(now));
    }

    /// Lets the clock run again from where it stands.
    pub fn resume(&self) {
        let mut s = self.lock();
        if let Some(at) = s.frozen.take() {
            s.real = Utc::now();
            s.world = at;
        }
    }

    /// Back to real time, no offset, speed 1.
    pub fn reset(&self) {
        *self.lock() = State::default();
    }

    /// Runs the clock `speed` times faster than real time from now on (1 = real time;
    /// values outside 0.001..=100000 are clamped). A frozen clock stays frozen.
    pub fn set_speed(&self, speed: f64) {
        let speed = if speed.is_finite() {
            speed.clamp(0.001, 100_000.0)
        } else {
            1.0
        };
        let mut s = self.lock();
        s.anchor();
        s.speed = speed;
    }

    pub fn speed(&self) -> f64 {
        self.lock().speed
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
                if let Some(w) = s.world.checked_add_signed(by)
                    && w.checked_add_signed(ChronoDuration::days(365 * 1000))
                        .is_some()
                {
                    s.world = w;
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

    #[test]
    fn speed() {
        let c = WorldClock::default();
        let t = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        c.freeze(Some(t));
        c.set_speed(1000.0);
        assert_eq!(c.now(), t, "a frozen clock stays frozen");
        c.resume();
        let real = std::time::Instant::now();
        std::thread::sleep(std::time::Duration::from_millis(20));
        let world = (c.now() - t).num_milliseconds() as f64;
        let real = real.elapsed().as_millis() as f64;
        // At least 1000 × the 20 ms slept, at most 1000 × the real time that passed.
        assert!(
            world >= 20_000.0 && world <= 1000.0 * real + 1000.0,
            "{world} {real}"
        );
        c.set_speed(f64::NAN);
        assert_eq!(c.speed(), 1.0);
    }
}
