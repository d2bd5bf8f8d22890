//! HTTP basic auth against `basic_auth_users` (bcrypt hashes).
//!
//! - Unknown users are verified against a dummy hash of the same cost as the configured ones,
//!   so an unknown user and a wrong password cost the same time.
//! - Verified (user, password, hash) triples are remembered by their SHA-256 in a bounded set,
//!   so a scrape every 15 s does not pay bcrypt each time; a changed hash misses the cache.
//!   Failures are never cached.
//! - bcrypt runs on the blocking pool, at most [`BCRYPT_SLOTS`] at a time, so a flood of bad
//!   passwords cannot occupy every core or the async workers.

use crate::config::bcrypt_cost;
use axum::http::HeaderValue;
use base64::Engine;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::Semaphore;

/// Concurrent bcrypt verifications.
pub(crate) const BCRYPT_SLOTS: usize = 4;
/// Verified credentials remembered.
pub(crate) const CACHE_SIZE: usize = 1024;

/// The configured users and the dummy hash for unknown ones.
pub(crate) struct BasicAuthUsers {
    users: HashMap<String, String>,
    dummy_hash: String,
}

impl std::fmt::Debug for BasicAuthUsers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BasicAuthUsers")
            .field("users", &self.users.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl BasicAuthUsers {
    /// `users` hold validated bcrypt hashes. Blocking: makes the dummy hash (one bcrypt run at
    /// the highest configured cost).
    pub(crate) fn new(users: &BTreeMap<String, String>) -> BasicAuthUsers {
        let cost = users.values().map(|h| bcrypt_cost(h)).max().unwrap_or(10);
        let random: [u8; 16] = rand::random();
        let dummy_hash = bcrypt::hash(hex::encode(random), cost).unwrap_or_else(|_| {
            // Unreachable for costs 4..=31; keep a valid cost-10 hash as the fallback.
            "$2y$10$QOauhQNbBCuQDKes6eFzPeMqBSjb7Mr5DUmpZ/VcEd00UAV/LDeSi".to_string()
        });
        BasicAuthUsers {
            users: users.clone().into_iter().collect(),
            dummy_hash,
        }
    }
}

/// Counters for observing the cache (tests, debugging).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct AuthStats {
    /// bcrypt verifications run.
    pub bcrypt_runs: u64,
    /// Requests accepted from the cache without bcrypt.
    pub cache_hits: u64,
}

/// Checks `Authorization` headers; shared by every connection, survives web config reloads.
pub(crate) struct Verifier {
    cache: Mutex<HashSet<[u8; 32]>>,
    slots: Semaphore,
    bcrypt_runs: AtomicU64,
    cache_hits: AtomicU64,
}

impl Default for Verifier {
    fn default() -> Self {
        Verifier {
            cache: Mutex::new(HashSet::new()),
            slots: Semaphore::new(BCRYPT_SLOTS),
            bcrypt_runs: AtomicU64::new(0),
            cache_hits: AtomicU64::new(0),
        }
    }
}

/// Splits a `Basic` authorization header into user and password.
pub fn parse_basic(value: &HeaderValue) -> Option<(String, Vec<u8>)> {
    let v = value.to_str().ok()?;
    let (scheme, rest) = v.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(rest.trim())
        .ok()?;
    let colon = decoded.iter().position(|b| *b == b':')?;
    let user = String::from_utf8(decoded[..colon].to_vec()).ok()?;
    Some((user, decoded[colon + 1..].to_vec()))
}

fn cache_key(user: &str, password: &[u8], hash: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    for part in [user.as_bytes(), password, hash.as_bytes()] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part);
    }
    h.finalize().into()
}

impl Verifier {
    /// Whether the `Authorization` header names a configured user with the right password.
    pub(crate) async fn check(&self, users: &BasicAuthUsers, header: Option<&HeaderValue>) -> bool {
        let (user, password) = match header.and_then(parse_basic) {
            Some(c) => c,
            // Malformed or missing credentials: fail without bcrypt, as the toolkit does.
            None => return false,
        };
        let (hash, known) = match users.users.get(&user) {
            Some(h) => (h.clone(), true),
            None => (users.dummy_hash.clone(), false),
        };
        let key = cache_key(&user, &password, &hash);
        if known && self.cache.lock().is_ok_and(|c| c.contains(&key)) {
            self.cache_hits.fetch_add(1, Ordering::Relaxed);
            return true;
        }
        let Ok(_slot) = self.slots.acquire().await else {
            return false;
        };
        self.bcrypt_runs.fetch_add(1, Ordering::Relaxed);
        let matched =
            tokio::task::spawn_blocking(move || bcrypt::verify(&password, &hash).unwrap_or(false))
                .await
                .unwrap_or(false);
        let ok = matched && known;
        if ok && let Ok(mut c) = self.cache.lock() {
            if c.len() >= CACHE_SIZE
                && let Some(evict) = c.iter().next().copied()
            {
                c.remove(&evict);
            }
            c.insert(key);
        }
        ok
    }

    /// Counters since start.
    pub(crate) fn stats(&self) -> AuthStats {
        AuthStats {
            bcrypt_runs: self.bcrypt_runs.load(Ordering::Relaxed),
            cache_hits: self.cache_hits.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(user: &str, pw: &str) -> HeaderValue {
        let enc = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pw}"));
        HeaderValue::from_str(&format!("Basic {enc}")).unwrap()
    }

    #[test]
    fn parses_basic() {
        assert_eq!(
            parse_basic(&header("a", "b:c")),
            Some(("a".to_string(), b"b:c".to_vec()))
        );
        assert_eq!(
            parse_basic(&HeaderValue::from_static("bAsIc YTpi")),
            Some(("a".to_string(), b"b".to_vec()))
        );
        assert_eq!(parse_basic(&HeaderValue::from_static("Bearer YTpi")), None);
        assert_eq!(parse_basic(&HeaderValue::from_static("Basic !!")), None);
        assert_eq!(parse_basic(&HeaderValue::from_static("Basic YWI=")), None);
    }

    #[tokio::test]
    async fn verifies_and_caches() {
        let mut m = BTreeMap::new();
        m.insert("alice".to_string(), bcrypt::hash("s3cret", 4).unwrap());
        let users = BasicAuthUsers::new(&m);
        assert_eq!(bcrypt_cost(&users.dummy_hash), 4);
        let v = Verifier::default();
        assert!(!v.check(&users, None).await);
        assert!(!v.check(&users, Some(&header("alice", "wrong"))).await);
        assert!(!v.check(&users, Some(&header("mallory", "s3cret"))).await);
        assert_eq!(v.stats().bcrypt_runs, 2, "unknown user pays bcrypt too");
        assert!(v.check(&users, Some(&header("alice", "s3cret"))).await);
        assert!(v.check(&users, Some(&header("alice", "s3cret"))).await);
        assert_eq!(
            v.stats(),
            AuthStats {
                bcrypt_runs: 3,
                cache_hits: 1
            }
        );
        assert!(!v.check(&users, Some(&header("alice", "wrong"))).await);
        assert_eq!(v.stats().bcrypt_runs, 4, "failures are not cached");
    }
}
