//! Signature verification of the simulator (docs/api.md, "Signing"), built on [`tibiot_api::sign`]:
//! the string to sign over the method, the path as received, the canonical query of the
//! decoded query pairs and the SHA-256 of the body as received.
//!
//! Rejected (business code 401, HTTP 200 like every business error): a missing header, an
//! unknown app key, a timestamp that is not unix milliseconds or is more than 5 minutes from
//! the real time, a bad signature, and a nonce seen before. Nonces are remembered until their
//! timestamp leaves the 5-minute window (after which the timestamp check rejects a replay);
//! the cache is bounded, the oldest entries going first.

use axum::http::HeaderMap;
use secrecy::{ExposeSecret, SecretString};
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};
use tibiot_api::sign::{
    HEADER_APP_KEY, HEADER_NONCE, HEADER_SIGNATURE, HEADER_TIMESTAMP, SignRequest, string_to_sign,
    verify_signature,
};

/// Largest accepted clock skew, ms.
pub const MAX_SKEW_MS: i64 = 5 * 60 * 1000;
/// Most nonces remembered.
const MAX_NONCES: usize = 500_000;

/// Nonces seen, with the real time (ms) after which a replay is rejected by its timestamp.
#[derive(Debug, Default)]
struct NonceCache {
    seen: HashMap<String, i64>,
    order: VecDeque<(i64, String)>,
}

impl NonceCache {
    /// Records `nonce`; false when it was seen before.
    fn insert(&mut self, nonce: &str, expires_ms: i64, now_ms: i64) -> bool {
        while let Some((exp, _)) = self.order.front() {
            if *exp > now_ms && self.order.len() < MAX_NONCES {
                break;
            }
            if let Some((exp, n)) = self.order.pop_front()
                && self.seen.get(&n) == Some(&exp)
            {
                self.seen.remove(&n);
            }
        }
        if self.seen.contains_key(nonce) {
            return false;
        }
        self.seen.insert(nonce.to_owned(), expires_ms);
        // Entries expire in timestamp order only roughly; the queue is pruned from the front,
        // which is good enough: an entry stays at least until its own expiry or the bound.
        self.order.push_back((expires_ms, nonce.to_owned()));
        true
    }
}

/// Verifies signed requests for one app key.
#[derive(Debug)]
pub struct Verifier {
    app_key: String,
    app_secret: SecretString,
    nonces: Mutex<NonceCache>,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl Verifier {
    pub fn new(app_key: String, app_secret: SecretString) -> Self {
        Self {
            app_key,
            app_secret,
            nonces: Mutex::new(NonceCache::default()),
        }
    }

    /// Checks one request; the error is the message of the 401 answer.
    pub fn verify(
        &self,
        method: &str,
        path: &str,
        query: &[(String, String)],
        body: &[u8],
        headers: &HeaderMap,
    ) -> Result<(), String> {
        let get = |name: &str| -> Result<&str, String> {
            let v = headers
                .get(name)
                .ok_or_else(|| format!("missing header {}", display_name(name)))?;
            v.to_str()
                .map(str::trim)
                .map_err(|_| format!("header {} is not valid text", display_name(name)))
        };
        let key = get(HEADER_APP_KEY)?;
        let ts = get(HEADER_TIMESTAMP)?;
        let nonce = get(HEADER_NONCE)?;
        let sig = get(HEADER_SIGNATURE)?;
        if key != self.app_key {
            return Err("unknown app key".into());
        }
        let ts_ms: i64 = ts
            .parse()
            .map_err(|_| "X-Tibiot-Timestamp must be unix time in milliseconds".to_string())?;
        let now = now_ms();
        if (now - ts_ms).abs() > MAX_SKEW_MS {
            return Err(format!(
                "timestamp is {} s away from the server time (at most 300 s allowed)",
                (now - ts_ms).abs() / 1000
            ));
        }
        if nonce.is_empty() || nonce.len() > 128 {
            return Err("X-Tibiot-Nonce must be 1 to 128 characters".into());
        }
        let req = SignRequest {
            method,
            path,
            query,
            body,
        };
        let sts = string_to_sign(&req, key, ts, nonce);
        if !verify_signature(self.app_secret.expose_secret().as_bytes(), &sts, sig) {
            return Err("signature mismatch".into());
        }
        let fresh = self
            .nonces
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(nonce, ts_ms + MAX_SKEW_MS, now);
        if !fresh {
            return Err("nonce already used (replayed request)".into());
        }
        Ok(())
    }
}

fn display_name(name: &str) -> &'static str {
    match name {
        HEADER_APP_KEY => "X-Tibiot-AppKey",
        HEADER_TIMESTAMP => "X-Tibiot-Timestamp",
        HEADER_NONCE => "X-Tibiot-Nonce",
        _ => "X-Tibiot-Signature",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nonce_cache_rejects_replays_and_prunes() {
        let mut c = NonceCache::default();
        assert!(c.insert("a", 100, 0));
        assert!(!c.insert("a", 100, 50));
        // after expiry the entry is gone
        assert!(c.insert("b", 300, 150));
        assert!(!c.seen.contains_key("a"));
        assert!(c.insert("a", 400, 200));
    }
}
