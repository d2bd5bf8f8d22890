//! Request counters of the simulator, per endpoint and per (endpoint, target), for tests that
//! count upstream calls (retries, caching, shared in-flight fetches). Every request to a known
//! endpoint path counts, whatever its answer (auth failures and injected faults included).

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use tibiot_api::Endpoint;

/// Most distinct (endpoint, target) pairs counted; later new pairs are not counted per target.
const MAX_TARGETS: usize = 200_000;

fn index(e: Endpoint) -> usize {
    Endpoint::ALL.iter().position(|x| *x == e).unwrap_or(0)
}

#[derive(Debug, Default)]
pub struct Counters {
    per_endpoint: [AtomicU64; 8],
    per_target: Mutex<HashMap<(Endpoint, String), u64>>,
}

impl Counters {
    fn targets(&self) -> std::sync::MutexGuard<'_, HashMap<(Endpoint, String), u64>> {
        self.per_target.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts one request about `targets` (pool code, ICCIDs or batch code).
    pub fn count(&self, e: Endpoint, targets: &[String]) {
        self.per_endpoint[index(e)].fetch_add(1, Ordering::Relaxed);
        if targets.is_empty() {
            return;
        }
        let mut map = self.targets();
        for t in targets {
            if let Some(n) = map.get_mut(&(e, t.clone())) {
                *n += 1;
            } else if map.len() < MAX_TARGETS {
                map.insert((e, t.clone()), 1);
            }
        }
    }

    pub fn requests(&self, e: Endpoint) -> u64 {
        self.per_endpoint[index(e)].load(Ordering::Relaxed)
    }

    pub fn requests_for(&self, e: Endpoint, target: &str) -> u64 {
        self.targets()
            .get(&(e, target.to_owned()))
            .copied()
            .unwrap_or(0)
    }

    pub fn total(&self) -> u64 {
        self.per_endpoint
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .sum()
    }

    pub fn reset(&self) {
        for c in &self.per_endpoint {
            c.store(0, Ordering::Relaxed);
        }
        self.targets().clear();
    }
}
