//! The exporter-toolkit web configuration file (`--web.config.file`), parsed strictly.
//!
//! Same format and the same checks as `promtool check web-config` (Prometheus exporter-toolkit):
//! unknown keys, duplicate users, a non-bcrypt password, a header that may not be configured,
//! `cert_file` without `key_file`, a client CA without a client-auth policy are errors. Errors
//! name the key path and never echo a password hash or a value that may be a plaintext password.
//! Relative paths resolve against the web config file's folder.
//!
//! Deliberate differences from Go (each a clear error instead of a server that cannot work):
//! `max_version` below TLS 1.2 (rustls speaks only TLS 1.2 and 1.3; a `min_version` of TLS10 or
//! TLS11 is raised to TLS12), `min_version` above `max_version`, cipher suites and curves that
//! rustls does not implement (CBC/RC4/3DES suites, P-521), certificate verification without a
//! `client_ca_file`, and a malformed bcrypt hash that could never match.

use crate::redact::{hide_quoted_values, shown};
use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// A web configuration error: which file, which key, what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebConfigError {
    /// The web config file, when the error came from one.
    pub(crate) file: Option<PathBuf>,
    /// The key path (`tls_server_config.client_auth_type`), when known.
    pub(crate) key: Option<String>,
    /// What is wrong.
    pub(crate) message: String,
}

impl WebConfigError {
    pub(crate) fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        WebConfigError {
            file: None,
            key: Some(key.into()),
            message: message.into(),
        }
    }

    fn plain(message: impl Into<String>) -> Self {
        WebConfigError {
            file: None,
            key: None,
            message: message.into(),
        }
    }

    pub(crate) fn unreadable(e: &std::io::Error) -> Self {
        Self::plain(format!("cannot read: {e}"))
    }

    pub(crate) fn not_utf8() -> Self {
        Self::plain("not UTF-8")
    }

    pub(crate) fn internal(message: impl Into<String>) -> Self {
        Self::plain(message)
    }

    pub(crate) fn in_file(mut self, file: &Path) -> Self {
        self.file = Some(file.to_path_buf());
        self
    }
}

impl fmt::Display for WebConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("web config")?;
        if let Some(file) = &self.file {
            write!(f, " {}", file.display())?;
        }
        f.write_str(": ")?;
        if let Some(key) = &self.key {
            write!(f, "{key}: ")?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for WebConfigError {}

/// Client certificate policy (`tls_server_config.client_auth_type`), Go's `tls.ClientAuthType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ClientAuth {
    /// No client certificate is requested.
    NoClientCert,
    /// A certificate is requested; none or any is accepted, nothing is verified.
    RequestClientCert,
    /// A certificate is required; it is not verified against a CA.
    RequireAnyClientCert,
    /// A certificate is optional; when given it must verify against `client_ca_file`.
    VerifyClientCertIfGiven,
    /// A certificate is required and must verify against `client_ca_file`.
    RequireAndVerifyClientCert,
}

impl ClientAuth {
    fn parse(s: &str) -> Option<ClientAuth> {
        Some(match s {
            "" | "NoClientCert" => ClientAuth::NoClientCert,
            "RequestClientCert" => ClientAuth::RequestClientCert,
            "RequireAnyClientCert" => ClientAuth::RequireAnyClientCert,
            "VerifyClientCertIfGiven" => ClientAuth::VerifyClientCertIfGiven,
            "RequireAndVerifyClientCert" => ClientAuth::RequireAndVerifyClientCert,
            _ => return None,
        })
    }

    /// Whether client certificates are checked against `client_ca_file`.
    pub(crate) fn verifies(self) -> bool {
        matches!(
            self,
            ClientAuth::VerifyClientCertIfGiven | ClientAuth::RequireAndVerifyClientCert
        )
    }
}

/// A TLS protocol version as the toolkit names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum TlsVersion {
    Tls10,
    Tls11,
    Tls12,
    Tls13,
}

impl<'de> Deserialize<'de> for TlsVersion {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        match s.as_str() {
            "TLS10" => Ok(TlsVersion::Tls10),
            "TLS11" => Ok(TlsVersion::Tls11),
            "TLS12" => Ok(TlsVersion::Tls12),
            "TLS13" => Ok(TlsVersion::Tls13),
            _ => Err(de::Error::custom(format!(
                "unknown TLS version: {} (TLS10, TLS11, TLS12, TLS13)",
                shown(&s)
            ))),
        }
    }
}

/// A YAML 1.1 boolean as Go's yaml.v2 reads it: `true`/`false` and also `yes`/`no`/`on`/`off`.
#[derive(Debug, Clone, Copy)]
struct YamlBool(bool);

impl<'de> Deserialize<'de> for YamlBool {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = YamlBool;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a boolean")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<YamlBool, E> {
                Ok(YamlBool(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<YamlBool, E> {
                match v {
                    "y" | "Y" | "yes" | "Yes" | "YES" | "on" | "On" | "ON" => Ok(YamlBool(true)),
                    "n" | "N" | "no" | "No" | "NO" | "off" | "Off" | "OFF" => Ok(YamlBool(false)),
                    _ => Err(E::invalid_value(de::Unexpected::Str(v), &self)),
                }
            }
        }
        d.deserialize_any(V)
    }
}

/// `basic_auth_users`: a map that refuses duplicate user names (as yaml.v2 does).
#[derive(Default)]
struct Users(BTreeMap<String, String>);

impl<'de> Deserialize<'de> for Users {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Users;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a map of user name to bcrypt hash")
            }
            fn visit_unit<E: de::Error>(self) -> Result<Users, E> {
                Ok(Users::default())
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Users, A::Error> {
                let mut out = BTreeMap::new();
                while let Some(user) = map.next_key::<String>()? {
                    // A value that is not a string is reported without echoing it.
                    let hash: Option<String> = map.next_value()?;
                    if out.contains_key(&user) {
                        return Err(de::Error::custom(format!(
                            "user {user:?} is listed more than once"
                        )));
                    }
                    out.insert(user, hash.unwrap_or_default());
                }
                Ok(Users(out))
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawWebConfig {
    #[serde(default)]
    tls_server_config: Option<RawTls>,
    #[serde(default)]
    http_server_config: Option<RawHttp>,
    #[serde(default)]
    basic_auth_users: Option<Users>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawTls {
    #[serde(default)]
    cert_file: Option<String>,
    #[serde(default)]
    key_file: Option<String>,
    #[serde(default)]
    client_auth_type: Option<String>,
    #[serde(default)]
    client_ca_file: Option<String>,
    #[serde(default)]
    min_version: Option<TlsVersion>,
    #[serde(default)]
    max_version: Option<TlsVersion>,
    #[serde(default)]
    cipher_suites: Option<Vec<String>>,
    #[serde(default)]
    curve_preferences: Option<Vec<String>>,
    #[serde(default)]
    prefer_server_cipher_suites: Option<YamlBool>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawHttp {
    #[serde(default)]
    http2: Option<YamlBool>,
    #[serde(default)]
    headers: Option<BTreeMap<String, String>>,
}

/// Validated TLS settings; files are read by [`crate::tls`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TlsSettings {
    pub(crate) cert_file: PathBuf,
    pub(crate) key_file: PathBuf,
    pub(crate) client_auth: ClientAuth,
    pub(crate) client_ca_file: Option<PathBuf>,
    /// Always TLS12 or TLS13.
    pub(crate) min_version: TlsVersion,
    /// Always TLS12 or TLS13, not below `min_version`.
    pub(crate) max_version: TlsVersion,
    /// Go cipher suite names; empty = the defaults.
    pub(crate) cipher_suites: Vec<String>,
    /// Go curve names, in preference order; empty = the defaults.
    pub(crate) curve_preferences: Vec<String>,
    pub(crate) prefer_server_cipher_suites: bool,
}

/// A validated web configuration.
#[derive(Clone, PartialEq, Eq)]
pub struct WebConfig {
    /// `None`: plain HTTP.
    pub(crate) tls: Option<TlsSettings>,
    /// User name → bcrypt hash; empty: no basic auth.
    pub(crate) basic_auth_users: BTreeMap<String, String>,
    /// Headers added to every response.
    pub(crate) headers: Vec<(String, String)>,
    /// Whether HTTP/2 is offered (default true).
    pub(crate) http2: bool,
}

impl Default for WebConfig {
    fn default() -> Self {
        WebConfig {
            tls: None,
            basic_auth_users: BTreeMap::new(),
            headers: Vec::new(),
            http2: true,
        }
    }
}

impl fmt::Debug for WebConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebConfig")
            .field("tls", &self.tls)
            .field(
                "basic_auth_users",
                &self.basic_auth_users.keys().collect::<Vec<_>>(),
            )
            .field("headers", &self.headers)
            .field("http2", &self.http2)
            .finish()
    }
}

/// Headers the toolkit lets a web config set, with their allowed values (`None`: any).
const ALLOWED_HEADERS: &[(&str, Option<&[&str]>)] = &[
    ("Strict-Transport-Security", None),
    ("X-Content-Type-Options", Some(&["nosniff"])),
    ("X-Frame-Options", Some(&["deny", "sameorigin"])),
    ("X-XSS-Protection", None),
    ("Content-Security-Policy", None),
];

/// Go's TLS 1.2 cipher suite names that rustls (ring) implements.
pub(crate) const SUPPORTED_TLS12_SUITES: &[&str] = &[
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
];

/// Go's TLS 1.3 suite names: always enabled (Go does not let them be configured either).
pub(crate) const TLS13_SUITES: &[&str] = &[
    "TLS_AES_128_GCM_SHA256",
    "TLS_AES_256_GCM_SHA384",
    "TLS_CHACHA20_POLY1305_SHA256",
];

/// Names Go knows that rustls does not implement (CBC, RC4, 3DES, static RSA key exchange).
const UNSUPPORTED_SUITES: &[&str] = &[
    "TLS_RSA_WITH_RC4_128_SHA",
    "TLS_RSA_WITH_3DES_EDE_CBC_SHA",
    "TLS_RSA_WITH_AES_128_CBC_SHA",
    "TLS_RSA_WITH_AES_256_CBC_SHA",
    "TLS_RSA_WITH_AES_128_CBC_SHA256",
    "TLS_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_RSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_ECDSA_WITH_RC4_128_SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA",
    "TLS_ECDHE_RSA_WITH_RC4_128_SHA",
    "TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256",
];

/// Go's curve names that rustls (ring) implements.
pub(crate) const SUPPORTED_CURVES: &[&str] = &["X25519", "CurveP256", "CurveP384"];

impl WebConfig {
    /// Whether every request must authenticate: basic auth users, or TLS client certificates
    /// that are required and verified against the configured CA.
    pub fn requires_authentication(&self) -> bool {
        !self.basic_auth_users.is_empty()
            || self
                .tls
                .as_ref()
                .is_some_and(|t| t.client_auth == ClientAuth::RequireAndVerifyClientCert)
    }

    /// Reads and validates a web config file; relative paths resolve against its folder.
    pub fn load(path: &Path) -> Result<WebConfig, WebConfigError> {
        let text = std::fs::read(path).map_err(|e| WebConfigError::unreadable(&e).in_file(path))?;
        let text = String::from_utf8(text).map_err(|_| WebConfigError::not_utf8().in_file(path))?;
        let dir = path.parent().unwrap_or_else(|| Path::new("."));
        WebConfig::parse(&text, dir).map_err(|e| e.in_file(path))
    }

    /// Parses and validates web config YAML; relative paths resolve against `base_dir`.
    pub fn parse(text: &str, base_dir: &Path) -> Result<WebConfig, WebConfigError> {
        let raw: Option<RawWebConfig> = if text.trim().is_empty() {
            None
        } else {
            serde_yaml_ng::from_str(text)
                .map_err(|e| WebConfigError::plain(hide_quoted_values(&e.to_string())))?
        };
        let raw = raw.unwrap_or_default();

        let users = raw.basic_auth_users.unwrap_or_default().0;
        for (user, hash) in &users {
            check_bcrypt_hash(hash).map_err(|e| {
                WebConfigError::new(format!("basic_auth_users.{user}"), e.to_string())
            })?;
        }

        let http = raw.http_server_config.unwrap_or_default();
        let mut headers = Vec::new();
        for (name, value) in http.headers.unwrap_or_default() {
            let key = format!("http_server_config.headers.{name}");
            let Some((_, allowed)) = ALLOWED_HEADERS.iter().find(|(n, _)| *n == name) else {
                return Err(WebConfigError::new(
                    key,
                    format!(
                        "HTTP header {name:?} can not be configured (allowed: {})",
                        ALLOWED_HEADERS
                            .iter()
                            .map(|(n, _)| *n)
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ));
            };
            if let Some(allowed) = allowed
                && !allowed.contains(&value.as_str())
            {
                return Err(WebConfigError::new(
                    key,
                    format!(
                        "invalid value {}; expected one of {allowed:?}",
                        shown(&value)
                    ),
                ));
            }
            if axum::http::HeaderValue::from_str(&value).is_err() {
                return Err(WebConfigError::new(
                    key,
                    "the value is not a valid HTTP header value",
                ));
            }
            headers.push((name, value));
        }

        let tls = match raw.tls_server_config {
            Some(t) => tls_settings(t, base_dir)?,
            None => None,
        };

        Ok(WebConfig {
            tls,
            basic_auth_users: users,
            headers,
            http2: http.http2.map(|b| b.0).unwrap_or(true),
        })
    }

    /// The bcrypt hash configured for `user` in `basic_auth_users`.
    pub fn password_hash(&self, user: &str) -> Option<&str> {
        self.basic_auth_users.get(user).map(String::as_str)
    }

    /// Every file the configuration refers to (for change detection).
    pub(crate) fn referenced_files(&self) -> Vec<PathBuf> {
        let mut v = Vec::new();
        if let Some(t) = &self.tls {
            v.push(t.cert_file.clone());
            v.push(t.key_file.clone());
            if let Some(ca) = &t.client_ca_file {
                v.push(ca.clone());
            }
        }
        v
    }
}

fn non_empty(s: Option<String>) -> Option<String> {
    s.filter(|s| !s.is_empty())
}

fn tls_settings(t: RawTls, base_dir: &Path) -> Result<Option<TlsSettings>, WebConfigError> {
    let k = |key: &str| format!("tls_server_config.{key}");
    let cert = non_empty(t.cert_file);
    let key = non_empty(t.key_file);
    let auth_s = non_empty(t.client_auth_type);
    let ca = non_empty(t.client_ca_file);
    if cert.is_none() && key.is_none() && auth_s.is_none() && ca.is_none() {
        // The toolkit serves plain HTTP when none of these are set.
        return Ok(None);
    }
    let Some(cert) = cert else {
        return Err(WebConfigError::new(k("cert_file"), "missing cert_file"));
    };
    let Some(key) = key else {
        return Err(WebConfigError::new(k("key_file"), "missing key_file"));
    };
    let auth_s = auth_s.unwrap_or_default();
    let Some(client_auth) = ClientAuth::parse(&auth_s) else {
        return Err(WebConfigError::new(
            k("client_auth_type"),
            format!(
                "invalid ClientAuth: {auth_s} (NoClientCert, RequestClientCert, \
                 RequireAnyClientCert, VerifyClientCertIfGiven, RequireAndVerifyClientCert)"
            ),
        ));
    };
    if ca.is_some() && client_auth == ClientAuth::NoClientCert {
        return Err(WebConfigError::new(
            k("client_ca_file"),
            "Client CA's have been configured without a Client Auth Policy \
             (set client_auth_type)",
        ));
    }
    if client_auth.verifies() && ca.is_none() {
        return Err(WebConfigError::new(
            k("client_ca_file"),
            format!(
                "client_auth_type {auth_s} verifies client certificates: client_ca_file is required"
            ),
        ));
    }
    let min = t.min_version.unwrap_or(TlsVersion::Tls12);
    let max = t.max_version.unwrap_or(TlsVersion::Tls13);
    if max < TlsVersion::Tls12 {
        return Err(WebConfigError::new(
            k("max_version"),
            "unsupported: TLS 1.0 and 1.1 are not implemented (use TLS12 or TLS13)",
        ));
    }
    let min = min.max(TlsVersion::Tls12);
    if min > max {
        return Err(WebConfigError::new(
            k("min_version"),
            "min_version is above max_version",
        ));
    }
    let suites = t.cipher_suites.unwrap_or_default();
    for s in &suites {
        if UNSUPPORTED_SUITES.contains(&s.as_str()) {
            return Err(WebConfigError::new(
                k("cipher_suites"),
                format!(
                    "cipher suite {s} is unsupported by this exporter (supported: {}, {})",
                    SUPPORTED_TLS12_SUITES.join(", "),
                    TLS13_SUITES.join(", ")
                ),
            ));
        }
        if !SUPPORTED_TLS12_SUITES.contains(&s.as_str()) && !TLS13_SUITES.contains(&s.as_str()) {
            return Err(WebConfigError::new(
                k("cipher_suites"),
                format!("unknown cipher: {}", shown(s)),
            ));
        }
    }
    if !suites.is_empty()
        && max == TlsVersion::Tls12
        && !suites
            .iter()
            .any(|s| SUPPORTED_TLS12_SUITES.contains(&s.as_str()))
    {
        return Err(WebConfigError::new(
            k("cipher_suites"),
            "max_version is TLS12 but no TLS 1.2 cipher suite is listed",
        ));
    }
    let curves = t.curve_preferences.unwrap_or_default();
    for c in &curves {
        if c == "CurveP521" {
            return Err(WebConfigError::new(
                k("curve_preferences"),
                format!(
                    "curve {c} is unsupported by this exporter (supported: {})",
                    SUPPORTED_CURVES.join(", ")
                ),
            ));
        }
        if !SUPPORTED_CURVES.contains(&c.as_str()) {
            return Err(WebConfigError::new(
                k("curve_preferences"),
                format!("unknown curve: {}", shown(c)),
            ));
        }
    }
    Ok(Some(TlsSettings {
        cert_file: base_dir.join(cert),
        key_file: base_dir.join(key),
        client_auth,
        client_ca_file: ca.map(|c| base_dir.join(c)),
        min_version: min,
        max_version: max,
        cipher_suites: suites,
        curve_preferences: curves,
        prefer_server_cipher_suites: t.prefer_server_cipher_suites.map(|b| b.0).unwrap_or(true),
    }))
}

/// Why a `basic_auth_users` value is not usable. Never holds the value: a value that is not
/// a hash is likely a plaintext password.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BcryptHashError {
    /// Not of the form `$2y$<cost>$<53 characters>`.
    Malformed,
    /// A well-formed hash whose cost is outside 4..=31.
    Cost(u32),
}

impl fmt::Display for BcryptHashError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BcryptHashError::Malformed => f.write_str(
                "not a bcrypt hash: expected $2y$<cost>$<53 characters> (make one with \
                 `htpasswd -nbBC 10 USER PASSWORD`); the value is not shown",
            ),
            BcryptHashError::Cost(c) => {
                write!(f, "bcrypt cost {c} is outside allowed range (4,31)")
            }
        }
    }
}

impl std::error::Error for BcryptHashError {}

/// Checks that `hash` is a complete bcrypt hash (`$2a$`, `$2b$`, `$2x$` or `$2y$`, cost 4–31,
/// 53 characters of bcrypt base64).
pub(crate) fn check_bcrypt_hash(hash: &str) -> Result<(), BcryptHashError> {
    let b = hash.as_bytes();
    let malformed = Err(BcryptHashError::Malformed);
    if b.len() != 60 || b[0] != b'$' || b[1] != b'2' || b[3] != b'$' || b[6] != b'$' {
        return malformed;
    }
    if !matches!(b[2], b'a' | b'b' | b'x' | b'y') {
        return malformed;
    }
    if !b[4].is_ascii_digit() || !b[5].is_ascii_digit() {
        return malformed;
    }
    let cost = u32::from(b[4] - b'0') * 10 + u32::from(b[5] - b'0');
    if !(4..=31).contains(&cost) {
        return Err(BcryptHashError::Cost(cost));
    }
    if !b[7..]
        .iter()
        .all(|c| c.is_ascii_alphanumeric() || *c == b'.' || *c == b'/')
    {
        return malformed;
    }
    Ok(())
}

/// The cost of a hash that passed [`check_bcrypt_hash`].
pub(crate) fn bcrypt_cost(hash: &str) -> u32 {
    hash.get(4..6).and_then(|c| c.parse().ok()).unwrap_or(10)
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: &str = "$2y$10$QOauhQNbBCuQDKes6eFzPeMqBSjb7Mr5DUmpZ/VcEd00UAV/LDeSi";

    fn p(s: &str) -> Result<WebConfig, WebConfigError> {
        WebConfig::parse(s, Path::new("/etc/x"))
    }

    #[test]
    fn empty_and_comment_only_are_plain_http() {
        assert_eq!(p("").unwrap(), WebConfig::default());
        assert_eq!(p("# nothing\n").unwrap(), WebConfig::default());
        assert_eq!(p("basic_auth_users:\n").unwrap(), WebConfig::default());
    }

    #[test]
    fn full_config_resolves_paths() {
        let c = p(&format!(
            "tls_server_config:\n  cert_file: c.pem\n  key_file: /abs/k.pem\n  \
             client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca/ca.pem\n  \
             min_version: TLS13\n  cipher_suites: [TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256]\n  \
             curve_preferences: [X25519]\n  prefer_server_cipher_suites: no\n\
             http_server_config:\n  http2: false\n  headers:\n    X-Frame-Options: deny\n\
             basic_auth_users:\n  alice: {H}\n"
        ))
        .unwrap();
        let t = c.tls.as_ref().unwrap();
        assert_eq!(t.cert_file, Path::new("/etc/x/c.pem"));
        assert_eq!(t.key_file, Path::new("/abs/k.pem"));
        assert_eq!(
            t.client_ca_file.as_deref(),
            Some(Path::new("/etc/x/ca/ca.pem"))
        );
        assert_eq!(t.client_auth, ClientAuth::RequireAndVerifyClientCert);
        assert_eq!(t.min_version, TlsVersion::Tls13);
        assert!(!t.prefer_server_cipher_suites);
        assert!(!c.http2);
        assert_eq!(c.headers, vec![("X-Frame-Options".into(), "deny".into())]);
        assert!(!format!("{c:?}").contains(H), "Debug shows no hash");
    }

    #[test]
    fn errors_name_the_key() {
        let e = p("tls_server_config:\n  cert_file: c\n  bogus: 1\n").unwrap_err();
        assert!(e.to_string().contains("tls_server_config"), "{e}");
        assert!(e.to_string().contains("bogus"), "{e}");
        let e = p("basic_auth_users:\n  bob: hunter2-plaintext\n").unwrap_err();
        assert_eq!(e.key.as_deref(), Some("basic_auth_users.bob"));
        assert!(!e.to_string().contains("hunter2"), "{e}");
        let e = p(&format!("basic_auth_users:\n  bob: {H}\n  bob: {H}\n")).unwrap_err();
        assert!(e.to_string().contains("more than once"), "{e}");
        let e = p("http_server_config:\n  headers:\n    X-Foo: 1\n").unwrap_err();
        assert!(e.to_string().contains("can not be configured"), "{e}");
        let e = p("tls_server_config:\n  cert_file: c\n").unwrap_err();
        assert!(e.to_string().contains("missing key_file"), "{e}");
        let e = p("tls_server_config:\n  cert_file: c\n  key_file: k\n  client_ca_file: x\n")
            .unwrap_err();
        assert!(
            e.to_string().contains("without a Client Auth Policy"),
            "{e}"
        );
        let e = p(
            "tls_server_config:\n  cert_file: c\n  key_file: k\n  curve_preferences: [CurveP521]\n",
        )
        .unwrap_err();
        assert!(e.to_string().contains("unsupported"), "{e}");
        let e = p("tls_server_config:\n  cert_file: c\n  key_file: k\n  max_version: TLS11\n")
            .unwrap_err();
        assert!(e.to_string().contains("unsupported"), "{e}");
        let e = p("tls_server_config:\n  min_version: TLS14\n").unwrap_err();
        assert!(e.to_string().contains("unknown TLS version"), "{e}");
    }

    #[test]
    fn bcrypt_formats() {
        for v in ["a", "b", "x", "y"] {
            assert!(check_bcrypt_hash(&H.replacen("2y", &format!("2{v}"), 1)).is_ok());
        }
        assert_eq!(
            check_bcrypt_hash("$2y$03$QOauhQNbBCuQDKes6eFzPeMqBSjb7Mr5DUmpZ/VcEd00UAV/LDeSi"),
            Err(BcryptHashError::Cost(3))
        );
        let malformed = Err(BcryptHashError::Malformed);
        assert_eq!(
            check_bcrypt_hash("$3y$10$QOauhQNbBCuQDKes6eFzPeMqBSjb7Mr5DUmpZ/VcEd00UAV/LDeSi"),
            malformed
        );
        assert_eq!(check_bcrypt_hash(&H[..59]), malformed);
        assert_eq!(check_bcrypt_hash(""), malformed);
        assert!(!BcryptHashError::Malformed.to_string().contains('Q'));
        assert_eq!(bcrypt_cost(H), 10);
    }
}
