//! Request counters of the simulator, per endpoint and per (endpoint, target), for tests that
//! count upstream calls (retries, caching, shared in-flight fetches). Every request to a known
//! endpoint path counts, whatever its answer (auth failures and injected faults included).
//! Per target it also keeps when the latest request arrived. Outside the process (benchmarks,
//! scripts) the same numbers are read as JSON from `GET /-/counters` ([`Counters::to_json`]).

use serde_json::{Map, Value, json};
use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};
use tibiot_api::Endpoint;

/// Most distinct (endpoint, target) pairs counted; later new pairs are not counted per target.
const MAX_TARGETS: usize = 200_000;

fn index(e: Endpoint) -> usize {
    Endpoint::ALL.iter().position(|x| *x == e).unwrap_or(0)
}

#[derive(Debug, Default)]
pub struct Counters {
    per_endpoint: [AtomicU64; 8],
    /// Requests and the unix time of the latest one, per (endpoint, target).
    per_target: Mutex<HashMap<(Endpoint, String), (u64, f64)>>,
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

impl Counters {
    fn targets(&self) -> std::sync::MutexGuard<'_, HashMap<(Endpoint, String), (u64, f64)>> {
        self.per_target.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts one request about `targets` (pool code, ICCIDs or batch code).
    pub fn count(&self, e: Endpoint, targets: &[String]) {
        self.per_endpoint[index(e)].fetch_add(1, Ordering::Relaxed);
        if targets.is_empty() {
            return;
        }
        let now = unix_now();
        let mut map = self.targets();
        for t in targets {
            if let Some((n, last)) = map.get_mut(&(e, t.clone())) {
                *n += 1;
                *last = now;
            } else if map.len() < MAX_TARGETS {
                map.insert((e, t.clone()), (1, now));
            }
        }
    }

    pub fn requests(&self, e: Endpoint) -> u64 {
        self.per_endpoint[index(e)].load(Ordering::Relaxed)
    }

    pub fn requests_for(&self, e: Endpoint, target: &str) -> u64 {
        self.targets()
            .get(&(e, target.to_owned()))
            .map_or(0, |(n, _)| *n)
    }

    pub fn total(&self) -> u64 {
        self.per_endpoint
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .sum()
    }

    /// `{"total": N, "endpoints": {"card_detail": N, ...}}`, and with `per_target` also
    /// `"targets": {"card_detail": {"<id>": [requests, unix time of the latest], ...}, ...}`.
    pub fn to_json(&self, per_target: bool) -> Value {
        let endpoints: Map<String, Value> = Endpoint::ALL
            .iter()
            .map(|e| (e.name().to_owned(), json!(self.requests(*e))))
            .collect();
        let mut out = json!({"total": self.total(), "endpoints": endpoints});
        if per_target {
            let mut targets: Map<String, Value> = Map::new();
            for ((e, t), (n, last)) in self.targets().iter() {
                let per = targets
                    .entry(e.name().to_owned())
                    .or_insert_with(|| Value::Object(Map::new()));
                if let Value::Object(m) = per {
                    m.insert(t.clone(), json!([n, last]));
                }
            }
            out["targets"] = Value::Object(targets);
        }
        out
    }

    pub fn reset(&self) {
        for c in &self.per_endpoint {
            c.store(0, Ordering::Relaxed);
        }
        self.targets().clear();
    }
}
