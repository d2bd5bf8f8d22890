//! Card network operation batches: each accepted ICCID goes pending (1) → running (2) →
//! done (3) or failed (4) over real time (not the world clock), in steps of `batch_step`:
//! pending for one step, running until `2 × step + k × step / 5` for the k-th card, then
//! final. Cards whose status is abnormal (99) fail; the others are done and their status
//! changes (switch on → 8 normal, off → 4 shutdown) at that moment. Changes are applied
//! lazily whenever a card, a pool or a batch is read, so reads are always consistent with
//! the batch status served.

use crate::world::World;
use chrono::{DateTime, Utc};
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Most batches remembered; older ones are forgotten.
const MAX_BATCHES: usize = 10_000;

#[derive(Debug)]
struct Item {
    card: usize,
    iccid: String,
    msisdn: String,
    fails: bool,
    applied: bool,
}

#[derive(Debug)]
struct Batch {
    created: Instant,
    switch_on: bool,
    items: Vec<Item>,
}

#[derive(Debug, Default)]
struct Inner {
    batches: HashMap<String, Batch>,
    order: VecDeque<String>,
    unsettled: Vec<String>,
    next: u64,
}

/// One card of a batch as served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemState {
    pub iccid: String,
    pub msisdn: String,
    /// 1 pending, 2 running, 3 done, 4 failed.
    pub state: u8,
}

/// Every batch of a simulator.
#[derive(Debug)]
pub struct Batches {
    step: Duration,
    inner: Mutex<Inner>,
}

impl Batches {
    pub fn new(step: Duration) -> Self {
        Self {
            step,
            inner: Mutex::new(Inner::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn final_after(&self, k: usize) -> Duration {
        self.step * 2 + self.step.mul_f64(k as f64 / 5.0)
    }

    fn state_at(&self, k: usize, item: &Item, elapsed: Duration) -> u8 {
        if elapsed < self.step {
            1
        } else if elapsed < self.final_after(k) {
            2
        } else if item.fails {
            4
        } else {
            3
        }
    }

    /// Starts a batch for the given cards (index, will it fail); returns its code.
    pub fn create(&self, world: &World, switch_on: bool, cards: &[(usize, bool)]) -> String {
        let mut inner = self.lock();
        inner.next += 1;
        let code = format!("BATCH-{:08}", inner.next);
        let items = cards
            .iter()
            .map(|&(card, fails)| Item {
                card,
                iccid: world.cards()[card].iccid.clone(),
                msisdn: world.cards()[card].msisdn.clone(),
                fails,
                applied: false,
            })
            .collect();
        inner.batches.insert(
            code.clone(),
            Batch {
                created: Instant::now(),
                switch_on,
                items,
            },
        );
        inner.order.push_back(code.clone());
        inner.unsettled.push(code.clone());
        while inner.order.len() > MAX_BATCHES {
            if let Some(old) = inner.order.pop_front() {
                inner.batches.remove(&old);
                inner.unsettled.retain(|c| *c != old);
            }
        }
        code
    }

    /// Applies the status changes of every card whose operation is done by now; `now` is the
    /// world time they are recorded at (a runaway card stops using data when switched off).
    pub fn settle(&self, world: &World, now: DateTime<Utc>) {
        let mut inner = self.lock();
        if inner.unsettled.is_empty() {
            return;
        }
        let Inner {
            batches, unsettled, ..
        } = &mut *inner;
        unsettled.retain(|code| {
            let Some(b) = batches.get_mut(code) else {
                return false;
            };
            let elapsed = b.created.elapsed();
            let mut open = false;
            for (k, item) in b.items.iter_mut().enumerate() {
                if item.applied {
                    continue;
                }
                if elapsed >= self.final_after(k) {
                    if !item.fails {
                        world.switch_card(item.card, b.switch_on, now);
                    }
                    item.applied = true;
                } else {
                    open = true;
                }
            }
            open
        });
    }

    /// The per-card state of a batch, or `None` for an unknown code.
    pub fn status(&self, world: &World, code: &str, now: DateTime<Utc>) -> Option<Vec<ItemState>> {
        self.settle(world, now);
        let inner = self.lock();
        let b = inner.batches.get(code)?;
        let elapsed = b.created.elapsed();
        Some(
            b.items
                .iter()
                .enumerate()
                .map(|(k, item)| ItemState {
                    iccid: item.iccid.clone(),
                    msisdn: item.msisdn.clone(),
                    state: self.state_at(k, item, elapsed),
                })
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tibiot_api::calendar::ApiCalendar;

    #[test]
    fn schedule() {
        let b = Batches::new(Duration::from_millis(100));
        let item = |fails| Item {
            card: 0,
            iccid: String::new(),
            msisdn: String::new(),
            fails,
            applied: false,
        };
        let ms = Duration::from_millis;
        assert_eq!(b.state_at(0, &item(false), ms(0)), 1);
        assert_eq!(b.state_at(0, &item(false), ms(99)), 1);
        assert_eq!(b.state_at(0, &item(false), ms(100)), 2);
        assert_eq!(b.state_at(0, &item(false), ms(199)), 2);
        assert_eq!(b.state_at(0, &item(false), ms(200)), 3);
        assert_eq!(b.state_at(0, &item(true), ms(200)), 4);
        // the tenth card finishes last, after 2 + 9/5 steps
        assert_eq!(b.state_at(9, &item(false), ms(379)), 2);
        assert_eq!(b.state_at(9, &item(false), ms(381)), 3);
    }

    #[test]
    fn batch_progresses_and_applies() {
        let w = World::generate(1, 2, 8, ApiCalendar::default());
        let b = Batches::new(Duration::from_millis(30));
        // card 0 normal → off; card 6 abnormal fails
        let code = b.create(&w, false, &[(0, false), (6, true)]);
        // nothing changes before a read settles the batch
        assert_eq!(w.card_status(0), 8);
        let start = Instant::now();
        loop {
            let s = b.status(&w, &code, Utc::now()).unwrap();
            if s.iter().all(|i| i.state >= 3) {
                assert_eq!(s[0].state, 3);
                assert_eq!(s[1].state, 4);
                break;
            }
            assert!(start.elapsed() < Duration::from_secs(10));
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(w.card_status(0), 4);
        assert_eq!(w.card_status(6), 99);
        assert!(b.status(&w, "nope", Utc::now()).is_none());
    }
}
