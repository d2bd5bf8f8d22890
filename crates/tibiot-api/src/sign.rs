//! Request signing (docs/api.md, "Signing") behind the small [`Signer`] seam: [`HmacSha256Signer`]
//! (`auth: hmac-sha256`) and [`NoSigner`] (`auth: none`). Another scheme is one new type.
//!
//! ```text
//! string_to_sign = METHOD "\n" PATH "\n" CANONICAL_QUERY "\n" hex(SHA256(body)) "\n"
//!                  app_key "\n" timestamp "\n" nonce
//! X-Tibiot-Signature = hex(HMAC-SHA256(app_secret, string_to_sign))
//! ```
//!
//! The verifying side (the simulator) uses [`string_to_sign`] and [`verify_signature`] too.

use hmac::{Hmac, Mac};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

pub const HEADER_APP_KEY: &str = "x-tibiot-appkey";
pub const HEADER_TIMESTAMP: &str = "x-tibiot-timestamp";
pub const HEADER_NONCE: &str = "x-tibiot-nonce";
pub const HEADER_SIGNATURE: &str = "x-tibiot-signature";

/// RFC 3986: everything but `A-Z a-z 0-9 - _ . ~` is percent-encoded (upper-case hex).
pub const RFC3986: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Percent-encodes one query name or value per RFC 3986.
pub fn encode_component(s: &str) -> String {
    utf8_percent_encode(s, RFC3986).to_string()
}

/// What a signature covers.
#[derive(Debug, Clone, Copy)]
pub struct SignRequest<'a> {
    /// Upper-case HTTP method.
    pub method: &'a str,
    /// The URL path as sent, base-URL prefix included, query excluded.
    pub path: &'a str,
    /// The query parameters, decoded.
    pub query: &'a [(String, String)],
    /// The exact body bytes sent (empty for GET).
    pub body: &'a [u8],
}

/// Adds authentication headers to a request.
pub trait Signer: Send + Sync + fmt::Debug {
    /// The `auth:` name of the scheme.
    fn scheme(&self) -> &'static str;
    /// The headers to add to this request.
    fn headers(&self, req: &SignRequest<'_>) -> Vec<(&'static str, String)>;
}

/// `auth: none`: no signature headers.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoSigner;

impl Signer for NoSigner {
    fn scheme(&self) -> &'static str {
        "none"
    }
    fn headers(&self, _req: &SignRequest<'_>) -> Vec<(&'static str, String)> {
        Vec::new()
    }
}

/// `auth: hmac-sha256`. The secret never prints (`Debug` redacts it).
#[derive(Clone)]
pub struct HmacSha256Signer {
    app_key: String,
    app_secret: SecretString,
}

impl fmt::Debug for HmacSha256Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HmacSha256Signer")
            .field("app_key", &self.app_key)
            .field("app_secret", &"[REDACTED]")
            .finish()
    }
}

impl HmacSha256Signer {
    pub fn new(app_key: impl Into<String>, app_secret: SecretString) -> Self {
        Self {
            app_key: app_key.into(),
            app_secret,
        }
    }

    /// The headers for a given timestamp (unix ms) and nonce; [`Signer::headers`] supplies
    /// the current time and a fresh random nonce.
    pub fn headers_at(
        &self,
        req: &SignRequest<'_>,
        timestamp_ms: u128,
        nonce: &str,
    ) -> Vec<(&'static str, String)> {
        let ts = timestamp_ms.to_string();
        let sts = string_to_sign(req, &self.app_key, &ts, nonce);
        let signature = hmac_hex(self.app_secret.expose_secret().as_bytes(), &sts);
        vec![
            (HEADER_APP_KEY, self.app_key.clone()),
            (HEADER_TIMESTAMP, ts),
            (HEADER_NONCE, nonce.to_owned()),
            (HEADER_SIGNATURE, signature),
        ]
    }
}

impl Signer for HmacSha256Signer {
    fn scheme(&self) -> &'static str {
        "hmac-sha256"
    }
    fn headers(&self, req: &SignRequest<'_>) -> Vec<(&'static str, String)> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        self.headers_at(req, now, &new_nonce())
    }
}

/// 32 random lower-case hex characters.
pub fn new_nonce() -> String {
    let mut b = [0u8; 16];
    rand::rng().fill_bytes(&mut b);
    hex::encode(b)
}

/// The canonical query: encoded pairs sorted by name, then value, joined `name=value` by `&`.
pub fn canonical_query(query: &[(String, String)]) -> String {
    let mut pairs: Vec<(String, String)> = query
        .iter()
        .map(|(k, v)| (encode_component(k), encode_component(v)))
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// The string to sign of docs/api.md, "Signing".
pub fn string_to_sign(
    req: &SignRequest<'_>,
    app_key: &str,
    timestamp: &str,
    nonce: &str,
) -> String {
    format!(
        "{}\n{}\n{}\n{}\n{}\n{}\n{}",
        req.method.to_ascii_uppercase(),
        req.path,
        canonical_query(req.query),
        hex::encode(Sha256::digest(req.body)),
        app_key,
        timestamp,
        nonce
    )
}

fn mac(key: &[u8]) -> Hmac<Sha256> {
    // HMAC accepts keys of any length; `new_from_slice` cannot fail for it.
    <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes keys of any length")
}

/// Lower-case hex HMAC-SHA256 of `message` under `key`.
pub fn hmac_hex(key: &[u8], message: &str) -> String {
    let mut m = mac(key);
    m.update(message.as_bytes());
    hex::encode(m.finalize().into_bytes())
}

/// Checks a hex signature in constant time.
pub fn verify_signature(key: &[u8], message: &str, signature_hex: &str) -> bool {
    let Ok(sig) = hex::decode(signature_hex.trim()) else {
        return false;
    };
    let mut m = mac(key);
    m.update(message.as_bytes());
    m.verify_slice(&sig).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The documented test vector. Inputs: app_key `demo-key`, app_secret `demo-secret`,
    /// timestamp `1700000000000`, nonce `0123456789abcdef0123456789abcdef`. The expected values
    /// were computed independently (Python `hmac`/`hashlib`/`urllib.parse.quote(safe='-_.~')`).
    #[test]
    fn documented_test_vector_get() {
        let q = vec![("poolCode".to_string(), "POOL-001".to_string())];
        let req = SignRequest {
            method: "GET",
            path: "/api/v1/pool/detail",
            query: &q,
            body: b"",
        };
        let nonce = "0123456789abcdef0123456789abcdef";
        assert_eq!(
            string_to_sign(&req, "demo-key", "1700000000000", nonce),
            "GET\n/api/v1/pool/detail\npoolCode=POOL-001\n\
             e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\n\
             demo-key\n1700000000000\n0123456789abcdef0123456789abcdef"
        );
        let s = HmacSha256Signer::new("demo-key", SecretString::from("demo-secret"));
        let h = s.headers_at(&req, 1_700_000_000_000, nonce);
        assert_eq!(
            h[3],
            (
                HEADER_SIGNATURE,
                "a344f0f174da501c95f115b79d3c723da940ef97f8d0e4f4e215663f6a4dd5af".to_string()
            )
        );
    }

    /// Second vector: POST with a body, a path prefix, repeated and non-ASCII parameters.
    #[test]
    fn documented_test_vector_post_unicode_query() {
        let q = vec![
            ("b".to_string(), "x y".to_string()),
            ("a".to_string(), "池".to_string()),
            ("a".to_string(), "1".to_string()),
        ];
        let body = br#"{"iccids":["89860000000000000001"],"switchOn":false}"#;
        let req = SignRequest {
            method: "post",
            path: "/prefix/api/v1/card/operation/network",
            query: &q,
            body,
        };
        assert_eq!(canonical_query(&q), "a=%E6%B1%A0&a=1&b=x%20y");
        let sts = string_to_sign(
            &req,
            "demo-key",
            "1700000000000",
            "0123456789abcdef0123456789abcdef",
        );
        let sig = hmac_hex(b"demo-secret", &sts);
        assert_eq!(
            sig,
            "41857efa6af15a4a5dda4d4535f386eaf97cb3e9513947db87e72812859d72f2"
        );
        assert!(verify_signature(b"demo-secret", &sts, &sig));
        assert!(!verify_signature(b"other", &sts, &sig));
        assert!(!verify_signature(b"demo-secret", &sts, "zz"));
    }

    #[test]
    fn nonce_and_debug() {
        let n = new_nonce();
        assert_eq!(n.len(), 32);
        assert!(
            n.chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        );
        assert_ne!(n, new_nonce());
        let s = HmacSha256Signer::new("k", SecretString::from("very-secret"));
        assert!(!format!("{s:?}").contains("very-secret"));
        assert_eq!(canonical_query(&[]), "");
    }
}
