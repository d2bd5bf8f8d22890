//! The configuration file (docs/config.md): YAML → a validated [`Config`].
//!
//! Parsing is strict (unknown keys are errors) and every error names the key path
//! (`accounts[1].collect.pool_ttl`) and, where the YAML parser knows it, the line. `${VAR}` is
//! expanded from the environment in `base_url`, `app_key`, `app_secret`, `app_secret_file` and
//! header values; `$$` is a literal `$`. Secrets (`app_secret`, header values) are held as
//! [`SecretString`]s: they never print, and [`Config::redacted_yaml`] (served on `/config`)
//! replaces them. `cards_file` is read relative to the config file's folder.

use secrecy::{ExposeSecret, SecretString};
use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tibiot_api::calendar::{ApiCalendar, parse_offset};
use tibiot_api::{ClientOptions, HmacSha256Signer, NoSigner, Signer, client::parse_base_url};
use tibiot_web::redact::{hide_quoted_values, shown};

/// The config file used when `--config.file` is not given.
pub const DEFAULT_CONFIG_FILE: &str = "tibiot-exporter.yml";

/// A configuration error: the key path it concerns, the line where known, and what is wrong.
/// It never holds a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Key path such as `accounts[0].app_secret`; empty for the whole file.
    pub key: String,
    pub line: Option<usize>,
    pub message: String,
}

impl ConfigError {
    fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            line: None,
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.key.is_empty() {
            write!(f, "{}: ", self.key)?;
        }
        f.write_str(&self.message)?;
        if let Some(line) = self.line {
            write!(f, " (line {line})")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// How requests of an account are authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Auth {
    #[default]
    #[serde(rename = "hmac-sha256")]
    HmacSha256,
    #[serde(rename = "none")]
    None,
}

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub accounts: Vec<Account>,
    pub collect: CollectConfig,
    /// The file it was read from, if any.
    pub source: Option<PathBuf>,
}

/// One TIBIOT account and its targets.
#[derive(Clone)]
pub struct Account {
    /// The `account` label: `[A-Za-z0-9_-]+`, unique.
    pub name: String,
    pub base_url: String,
    pub auth: Auth,
    pub app_key: String,
    app_secret: Option<Arc<SecretString>>,
    headers: Vec<(String, Arc<SecretString>)>,
    pub success_codes: Vec<i64>,
    pub pools: Vec<String>,
    /// `cards` and the entries of `cards_file`, in order, without duplicates.
    pub cards: Vec<String>,
    /// Resolved path of `cards_file`.
    pub cards_file: Option<PathBuf>,
}

impl fmt::Debug for Account {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Account")
            .field("name", &self.name)
            .field("base_url", &self.base_url)
            .field("auth", &self.auth)
            .field("app_key", &self.app_key)
            .field("app_secret", &"[REDACTED]")
            .field(
                "headers",
                &self.headers.iter().map(|(k, _)| k).collect::<Vec<_>>(),
            )
            .field("pools", &self.pools.len())
            .field("cards", &self.cards.len())
            .finish()
    }
}

impl Account {
    /// Client options for this account: base URL, signer, static headers and success codes.
    /// Callers set the observer, timeouts and retry policy they need.
    pub fn client_options(&self) -> ClientOptions {
        let signer: Arc<dyn Signer> = match (self.auth, &self.app_secret) {
            (Auth::HmacSha256, Some(secret)) => Arc::new(HmacSha256Signer::new(
                self.app_key.clone(),
                SecretString::from(secret.expose_secret().to_owned()),
            )),
            _ => Arc::new(NoSigner),
        };
        let mut opts = ClientOptions::new(self.base_url.clone(), signer);
        opts.headers = self
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), v.expose_secret().to_owned()))
            .collect();
        opts.success_codes = self.success_codes.clone();
        opts
    }

    /// Names of the static extra headers (their values may be secrets).
    pub fn header_names(&self) -> impl Iterator<Item = &str> {
        self.headers.iter().map(|(k, _)| k.as_str())
    }
}

/// `collect:` settings.
#[derive(Debug, Clone, PartialEq)]
pub struct CollectConfig {
    /// Upper bound of one scrape's upstream work.
    pub timeout: Duration,
    /// Subtracted from `X-Prometheus-Scrape-Timeout-Seconds`.
    pub timeout_offset: Duration,
    /// In-flight upstream requests, per account.
    pub concurrency: usize,
    /// Per account; 0 = unlimited.
    pub requests_per_second: u32,
    pub pool_ttl: Duration,
    pub card_ttl: Duration,
    pub history_ttl: Duration,
    pub stale_after: Duration,
    pub history: HistoryConfig,
    /// The API's calendar (`utc_offset`).
    pub calendar: ApiCalendar,
    /// `utc_offset` as written (normalised `+HH:MM`).
    pub utc_offset: String,
}

/// `collect.history:` windows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistoryConfig {
    #[serde(default = "d30")]
    pub pool_days: u32,
    #[serde(default = "d12")]
    pub pool_months: u32,
    #[serde(default)]
    pub card_days: u32,
    #[serde(default)]
    pub card_months: u32,
}

fn d30() -> u32 {
    30
}
fn d12() -> u32 {
    12
}

impl Default for HistoryConfig {
    fn default() -> Self {
        Self {
            pool_days: 30,
            pool_months: 12,
            card_days: 0,
            card_months: 0,
        }
    }
}

impl Default for CollectConfig {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(10),
            timeout_offset: Duration::from_millis(500),
            concurrency: 8,
            requests_per_second: 20,
            pool_ttl: Duration::from_secs(60),
            card_ttl: Duration::from_secs(15 * 60),
            history_ttl: Duration::from_secs(3600),
            stale_after: Duration::from_secs(3600),
            history: HistoryConfig::default(),
            calendar: ApiCalendar::default(),
            utc_offset: "+08:00".into(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The file's shape, as read.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    accounts: Vec<RawAccount>,
    #[serde(default)]
    collect: RawCollect,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAccount {
    name: String,
    base_url: String,
    #[serde(default)]
    auth: Auth,
    #[serde(default, deserialize_with = "opt_scalar_string")]
    app_key: Option<String>,
    #[serde(default, deserialize_with = "opt_scalar_string")]
    app_secret: Option<String>,
    #[serde(default)]
    app_secret_file: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default = "default_success_codes")]
    success_codes: Vec<i64>,
    #[serde(default, deserialize_with = "scalar_strings")]
    pools: Vec<String>,
    #[serde(default, deserialize_with = "scalar_strings")]
    cards: Vec<String>,
    #[serde(default)]
    cards_file: Option<String>,
}

fn default_success_codes() -> Vec<i64> {
    vec![0, 200]
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCollect {
    #[serde(default = "dflt_timeout", with = "humantime_serde")]
    timeout: Duration,
    #[serde(default = "dflt_timeout_offset", with = "humantime_serde")]
    timeout_offset: Duration,
    #[serde(default = "dflt_concurrency")]
    concurrency: usize,
    #[serde(default = "dflt_rps")]
    requests_per_second: u32,
    #[serde(default = "dflt_pool_ttl", with = "humantime_serde")]
    pool_ttl: Duration,
    #[serde(default = "dflt_card_ttl", with = "humantime_serde")]
    card_ttl: Duration,
    #[serde(default = "dflt_hour", with = "humantime_serde")]
    history_ttl: Duration,
    #[serde(default = "dflt_hour", with = "humantime_serde")]
    stale_after: Duration,
    #[serde(default)]
    history: HistoryConfig,
    #[serde(default = "dflt_offset")]
    utc_offset: String,
}

fn dflt_timeout() -> Duration {
    CollectConfig::default().timeout
}
fn dflt_timeout_offset() -> Duration {
    CollectConfig::default().timeout_offset
}
fn dflt_concurrency() -> usize {
    CollectConfig::default().concurrency
}
fn dflt_rps() -> u32 {
    CollectConfig::default().requests_per_second
}
fn dflt_pool_ttl() -> Duration {
    CollectConfig::default().pool_ttl
}
fn dflt_card_ttl() -> Duration {
    CollectConfig::default().card_ttl
}
fn dflt_hour() -> Duration {
    Duration::from_secs(3600)
}
fn dflt_offset() -> String {
    "+08:00".into()
}

impl Default for RawCollect {
    fn default() -> Self {
        Self {
            timeout: dflt_timeout(),
            timeout_offset: dflt_timeout_offset(),
            concurrency: dflt_concurrency(),
            requests_per_second: dflt_rps(),
            pool_ttl: dflt_pool_ttl(),
            card_ttl: dflt_card_ttl(),
            history_ttl: dflt_hour(),
            stale_after: dflt_hour(),
            history: HistoryConfig::default(),
            utc_offset: dflt_offset(),
        }
    }
}

/// A list of scalars read as strings. YAML reads `89860000000000000001` as an integer; this
/// keeps its exact digits (u128), where going through a float would corrupt an ICCID.
fn scalar_strings<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    struct ListVisitor;
    impl<'de> Visitor<'de> for ListVisitor {
        type Value = Vec<String>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a list of strings")
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(Vec::new())
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut out = Vec::new();
            while let Some(s) = seq.next_element::<ScalarString>()? {
                out.push(s.0);
            }
            Ok(out)
        }
    }
    d.deserialize_any(ListVisitor)
}

fn opt_scalar_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Option::<ScalarString>::deserialize(d).map(|o| o.map(|s| s.0))
}

/// One scalar (string or integer) as a string; floats are refused because their digits may
/// already be lost.
struct ScalarString(String);

impl<'de> Deserialize<'de> for ScalarString {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = ScalarString;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ScalarString, E> {
                Ok(ScalarString(v.to_owned()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<ScalarString, E> {
                Ok(ScalarString(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<ScalarString, E> {
                Ok(ScalarString(v.to_string()))
            }
            fn visit_i128<E: de::Error>(self, v: i128) -> Result<ScalarString, E> {
                Ok(ScalarString(v.to_string()))
            }
            fn visit_u128<E: de::Error>(self, v: u128) -> Result<ScalarString, E> {
                Ok(ScalarString(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, _v: f64) -> Result<ScalarString, E> {
                Err(E::custom("a number too large or fractional: quote it"))
            }
        }
        d.deserialize_any(V)
    }
}

// ---------------------------------------------------------------------------------------------
// Loading and validation.

/// Looks up environment variables; tests pass their own.
pub type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

impl Config {
    /// Reads and validates the file at `path` (`${VAR}` from the process environment).
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigError::new(
                "",
                format!("cannot read config file {}: {e}", path.display()),
            )
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        let mut cfg = Self::parse_with_env(&text, base, &|k| std::env::var(k).ok())?;
        cfg.source = Some(path.to_path_buf());
        Ok(cfg)
    }

    /// Parses YAML text; relative paths resolve against `base_dir`.
    pub fn parse(yaml: &str, base_dir: &Path) -> Result<Config, ConfigError> {
        Self::parse_with_env(yaml, base_dir, &|k| std::env::var(k).ok())
    }

    /// Parses YAML text with a given environment.
    pub fn parse_with_env(
        yaml: &str,
        base_dir: &Path,
        env: EnvLookup,
    ) -> Result<Config, ConfigError> {
        let de = serde_yaml_ng::Deserializer::from_str(yaml);
        let raw: RawConfig = serde_path_to_error::deserialize(de).map_err(|e| {
            let key = e.path().to_string();
            // "." is the whole file; "?" a segment the parser could not name
            let key = key.trim_end_matches(".?");
            let key = if key == "." || key == "?" {
                String::new()
            } else {
                key.to_owned()
            };
            let inner = e.into_inner();
            ConfigError {
                line: inner.location().map(|l| l.line()),
                message: hide_quoted_values(&strip_location(&inner.to_string(), &key)),
                key,
            }
        })?;
        let collect = validate_collect(raw.collect)?;
        if raw.accounts.is_empty() {
            return Err(ConfigError::new(
                "accounts",
                "at least one account is required",
            ));
        }
        let mut names = HashSet::new();
        let mut accounts = Vec::with_capacity(raw.accounts.len());
        for (i, ra) in raw.accounts.into_iter().enumerate() {
            let acc = validate_account(i, ra, base_dir, env)?;
            if !names.insert(acc.name.clone()) {
                return Err(ConfigError::new(
                    format!("accounts[{i}].name"),
                    format!("duplicate account name {:?}", acc.name),
                ));
            }
            accounts.push(acc);
        }
        Ok(Config {
            accounts,
            collect,
            source: None,
        })
    }

    /// The account named `name`.
    pub fn account(&self, name: &str) -> Option<&Account> {
        self.accounts.iter().find(|a| a.name == name)
    }

    /// The effective configuration as YAML with every secret replaced by `<redacted>`.
    pub fn redacted_yaml(&self) -> String {
        #[derive(Serialize)]
        struct Out<'a> {
            accounts: Vec<OutAccount<'a>>,
            collect: OutCollect,
        }
        #[derive(Serialize)]
        struct OutAccount<'a> {
            name: &'a str,
            base_url: &'a str,
            auth: Auth,
            app_key: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            app_secret: Option<&'static str>,
            headers: BTreeMap<&'a str, &'static str>,
            success_codes: &'a [i64],
            pools: &'a [String],
            cards: &'a [String],
            #[serde(skip_serializing_if = "Option::is_none")]
            cards_file: Option<String>,
        }
        #[derive(Serialize)]
        struct OutCollect {
            timeout: String,
            timeout_offset: String,
            concurrency: usize,
            requests_per_second: u32,
            pool_ttl: String,
            card_ttl: String,
            history_ttl: String,
            stale_after: String,
            history: HistoryConfig,
            utc_offset: String,
        }
        let d = |d: Duration| humantime::format_duration(d).to_string();
        let c = &self.collect;
        let out = Out {
            accounts: self
                .accounts
                .iter()
                .map(|a| OutAccount {
                    name: &a.name,
                    base_url: &a.base_url,
                    auth: a.auth,
                    app_key: &a.app_key,
                    app_secret: a.app_secret.as_ref().map(|_| "<redacted>"),
                    headers: a
                        .headers
                        .iter()
                        .map(|(k, _)| (k.as_str(), "<redacted>"))
                        .collect(),
                    success_codes: &a.success_codes,
                    pools: &a.pools,
                    cards: &a.cards,
                    cards_file: a.cards_file.as_ref().map(|p| p.display().to_string()),
                })
                .collect(),
            collect: OutCollect {
                timeout: d(c.timeout),
                timeout_offset: d(c.timeout_offset),
                concurrency: c.concurrency,
                requests_per_second: c.requests_per_second,
                pool_ttl: d(c.pool_ttl),
                card_ttl: d(c.card_ttl),
                history_ttl: d(c.history_ttl),
                stale_after: d(c.stale_after),
                history: c.history,
                utc_offset: c.utc_offset.clone(),
            },
        };
        serde_yaml_ng::to_string(&out).unwrap_or_else(|e| format!("# cannot render: {e}\n"))
    }

    /// Every (account, pool) target.
    pub fn pool_targets(&self) -> impl Iterator<Item = (&Account, &str)> {
        self.accounts
            .iter()
            .flat_map(|a| a.pools.iter().map(move |p| (a, p.as_str())))
    }

    /// Every (account, ICCID) target.
    pub fn card_targets(&self) -> impl Iterator<Item = (&Account, &str)> {
        self.accounts
            .iter()
            .flat_map(|a| a.cards.iter().map(move |c| (a, c.as_str())))
    }
}

/// serde_yaml_ng appends "at line L column C" (the line is reported separately) and may
/// prefix its own path ("accounts[0]: "), which the key already names.
fn strip_location(msg: &str, key: &str) -> String {
    let msg = match msg.find(" at line ") {
        Some(i) => &msg[..i],
        None => msg,
    };
    match msg.split_once(": ") {
        Some((path, rest)) if !path.is_empty() && key.starts_with(path) => rest.to_owned(),
        _ => msg.to_owned(),
    }
}

fn validate_collect(raw: RawCollect) -> Result<CollectConfig, ConfigError> {
    let err = |k: &str, m: String| Err(ConfigError::new(format!("collect.{k}"), m));
    if raw.timeout.is_zero() {
        return err("timeout", "must be greater than zero".into());
    }
    if raw.timeout_offset >= raw.timeout {
        return err(
            "timeout_offset",
            "must be smaller than collect.timeout".into(),
        );
    }
    if raw.concurrency == 0 || raw.concurrency > 1024 {
        return err(
            "concurrency",
            format!("must be 1..=1024, not {}", raw.concurrency),
        );
    }
    let h = raw.history;
    for (k, v, max) in [
        ("pool_days", h.pool_days, 30),
        ("pool_months", h.pool_months, 12),
        ("card_days", h.card_days, 30),
        ("card_months", h.card_months, 12),
    ] {
        if v > max {
            return err(
                &format!("history.{k}"),
                format!("must be 0..={max}, not {v}"),
            );
        }
    }
    let Some(offset) = parse_offset(&raw.utc_offset) else {
        return err(
            "utc_offset",
            format!(
                "{} is not a UTC offset like \"+08:00\"",
                shown(&raw.utc_offset)
            ),
        );
    };
    let secs = offset.local_minus_utc();
    let utc_offset = format!(
        "{}{:02}:{:02}",
        if secs < 0 { '-' } else { '+' },
        secs.abs() / 3600,
        secs.abs() % 3600 / 60
    );
    Ok(CollectConfig {
        timeout: raw.timeout,
        timeout_offset: raw.timeout_offset,
        concurrency: raw.concurrency,
        requests_per_second: raw.requests_per_second,
        pool_ttl: raw.pool_ttl,
        card_ttl: raw.card_ttl,
        history_ttl: raw.history_ttl,
        stale_after: raw.stale_after,
        history: h,
        calendar: ApiCalendar::new(offset),
        utc_offset,
    })
}

/// `[A-Za-z0-9_-]+`.
pub fn is_valid_account_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// A pool code: 1–64 characters of `A-Z a-z 0-9 _ - .`.
pub fn is_valid_pool_code(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

/// Shortest and longest ICCID accepted (ITU-T E.118 allows up to 22 digits with the check
/// digit; in practice 19 or 20).
pub const ICCID_MIN_LEN: usize = 18;
pub const ICCID_MAX_LEN: usize = 22;

/// An ICCID: 18–22 decimal digits.
pub fn is_valid_iccid(s: &str) -> bool {
    (ICCID_MIN_LEN..=ICCID_MAX_LEN).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit())
}

fn validate_account(
    i: usize,
    ra: RawAccount,
    base_dir: &Path,
    env: EnvLookup,
) -> Result<Account, ConfigError> {
    let key = |k: &str| format!("accounts[{i}].{k}");
    let err = |k: &str, m: String| Err(ConfigError::new(key(k), m));
    if !is_valid_account_name(&ra.name) {
        return err(
            "name",
            format!(
                "{} must match [A-Za-z0-9_-]+ (at most 64 characters)",
                shown(&ra.name)
            ),
        );
    }
    let base_url = expand(&ra.base_url, &key("base_url"), env)?;
    if let Err(e) = parse_base_url(&base_url) {
        return err(
            "base_url",
            format!("{base_url:?} is not a usable base URL: {e}"),
        );
    }
    let app_key = match &ra.app_key {
        Some(k) => expand(k, &key("app_key"), env)?,
        None => String::new(),
    };
    let app_secret = match (&ra.app_secret, &ra.app_secret_file) {
        (Some(_), Some(_)) => {
            return err(
                "app_secret",
                "give exactly one of app_secret and app_secret_file, not both".into(),
            );
        }
        (Some(s), None) => Some(expand(s, &key("app_secret"), env)?),
        (None, Some(f)) => {
            let path = resolve(base_dir, &expand(f, &key("app_secret_file"), env)?);
            let text = std::fs::read_to_string(&path).map_err(|e| {
                ConfigError::new(
                    key("app_secret_file"),
                    format!("cannot read {}: {}", path.display(), e.kind()),
                )
            })?;
            Some(text.trim_end_matches(['\r', '\n']).to_owned())
        }
        (None, None) => None,
    };
    if ra.auth == Auth::HmacSha256 {
        if app_key.is_empty() {
            return err("app_key", "is required with auth: hmac-sha256".into());
        }
        match &app_secret {
            None => {
                return err(
                    "app_secret",
                    "is required with auth: hmac-sha256 (or app_secret_file)".into(),
                );
            }
            Some(s) if s.is_empty() => {
                let k = if ra.app_secret_file.is_some() {
                    "app_secret_file"
                } else {
                    "app_secret"
                };
                return err(k, "the secret is empty".into());
            }
            _ => {}
        }
    }
    let mut headers = Vec::with_capacity(ra.headers.len());
    for (name, value) in &ra.headers {
        let hkey = format!("{}.{name}", key("headers"));
        if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
            return Err(ConfigError::new(hkey, "not a valid HTTP header name"));
        }
        let value = expand(value, &hkey, env)?;
        if reqwest::header::HeaderValue::from_str(&value).is_err() {
            // Never echo the value: it may be a secret.
            return Err(ConfigError::new(
                hkey,
                "the value is not a valid HTTP header value",
            ));
        }
        headers.push((name.clone(), Arc::new(SecretString::from(value))));
    }
    if ra.success_codes.is_empty() {
        return err("success_codes", "must list at least one code".into());
    }
    let mut pools = Vec::with_capacity(ra.pools.len());
    let mut seen = HashSet::new();
    for (j, p) in ra.pools.into_iter().enumerate() {
        let p = p.trim().to_owned();
        if !is_valid_pool_code(&p) {
            return err(
                &format!("pools[{j}]"),
                format!("{p:?} is not a pool code (1-64 of A-Z a-z 0-9 _ - .)"),
            );
        }
        if seen.insert(p.clone()) {
            pools.push(p);
        }
    }
    let mut cards = Vec::with_capacity(ra.cards.len());
    let mut seen = HashSet::new();
    for (j, c) in ra.cards.into_iter().enumerate() {
        let c = c.trim().to_owned();
        if !is_valid_iccid(&c) {
            return err(
                &format!("cards[{j}]"),
                format!("{} is not an ICCID (18-22 digits)", excerpt(&c)),
            );
        }
        if seen.insert(c.clone()) {
            cards.push(c);
        }
    }
    let cards_file = match &ra.cards_file {
        Some(f) => {
            let path = resolve(base_dir, f);
            for c in read_cards_file(&path).map_err(|m| ConfigError::new(key("cards_file"), m))? {
                if seen.insert(c.clone()) {
                    cards.push(c);
                }
            }
            Some(path)
        }
        None => None,
    };
    Ok(Account {
        name: ra.name,
        base_url,
        auth: ra.auth,
        app_key,
        app_secret: app_secret.map(|s| Arc::new(SecretString::from(s))),
        headers,
        success_codes: ra.success_codes,
        pools,
        cards,
        cards_file,
    })
}

fn resolve(base: &Path, p: &str) -> PathBuf {
    let p = Path::new(p);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

/// Reads a cards file: one ICCID a line, `#` comments and blank lines allowed.
pub fn read_cards_file(path: &Path) -> Result<Vec<String>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {}", path.display(), e.kind()))?;
    parse_iccid_lines(&text).map_err(|(line, m)| format!("{} line {line}: {m}", path.display()))
}

/// The entries of an ICCID list text with their 1-based line numbers: `#` starts a comment,
/// surrounding blanks are trimmed, empty lines are skipped. Shared by `cards_file` and
/// `card network --from-file`.
pub fn iccid_list_entries(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines().enumerate().filter_map(|(n, line)| {
        let s = line.split('#').next().unwrap_or("").trim();
        (!s.is_empty()).then_some((n + 1, s))
    })
}

/// A value quoted for an error message, escaped and cut to at most 80 bytes (an escape can
/// take 10 bytes per character, so cutting characters first is not enough).
pub fn excerpt(value: &str) -> String {
    let mut shown = format!("{value:?}");
    if shown.len() > 80 {
        let mut cut = 76;
        while !shown.is_char_boundary(cut) {
            cut -= 1;
        }
        shown.truncate(cut);
        shown.push('…');
    }
    shown
}

/// Parses ICCID lines (`#` comments, blank lines); an error gives the 1-based line number.
pub fn parse_iccid_lines(text: &str) -> Result<Vec<String>, (usize, String)> {
    let mut out = Vec::new();
    for (line, s) in iccid_list_entries(text) {
        if !is_valid_iccid(s) {
            return Err((
                line,
                format!("{} is not an ICCID (18-22 digits)", excerpt(s)),
            ));
        }
        out.push(s.to_owned());
    }
    Ok(out)
}

/// Expands `${VAR}` from `env`; `$$` is a literal `$`. A variable that is not set is an error
/// naming `key` and the variable (never the value).
pub fn expand(s: &str, key: &str, env: EnvLookup) -> Result<String, ConfigError> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(r) = after.strip_prefix('$') {
            out.push('$');
            rest = r;
        } else if let Some(r) = after.strip_prefix('{') {
            let Some(end) = r.find('}') else {
                return Err(ConfigError::new(key, "unterminated ${ in value"));
            };
            let var = &r[..end];
            if var.is_empty() || !var.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                return Err(ConfigError::new(
                    key,
                    format!("invalid variable name {var:?}"),
                ));
            }
            match env(var) {
                Some(v) => out.push_str(&v),
                None => {
                    return Err(ConfigError::new(
                        key,
                        format!("environment variable {var} is not set"),
                    ));
                }
            }
            rest = &r[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// `tibiot-exporter check-config`: 0 when valid (with a one-line summary), 2 with the error.
pub fn check_config_command(path: &Path) -> std::process::ExitCode {
    match Config::load(path) {
        Ok(cfg) => {
            let pools: usize = cfg.accounts.iter().map(|a| a.pools.len()).sum();
            let cards: usize = cfg.accounts.iter().map(|a| a.cards.len()).sum();
            println!(
                "{}: OK ({} account(s), {pools} pool(s), {cards} card(s))",
                path.display(),
                cfg.accounts.len()
            );
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{}: invalid configuration: {e}", path.display());
            std::process::ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(k: &str) -> Option<String> {
        match k {
            "SECRET" => Some("s3cr3t-value".into()),
            "TOKEN" => Some("tok-123".into()),
            _ => None,
        }
    }

    fn parse(yaml: &str) -> Result<Config, ConfigError> {
        Config::parse_with_env(yaml, Path::new("/nonexistent"), &env)
    }

    const MINIMAL: &str = "accounts:\n  - name: main\n    base_url: https://api.example.com/p\n    app_key: k\n    app_secret: ${SECRET}\n";

    #[test]
    fn minimal_gets_every_default() {
        let c = parse(MINIMAL).unwrap();
        assert_eq!(c.collect, CollectConfig::default());
        let a = &c.accounts[0];
        assert_eq!(a.auth, Auth::HmacSha256);
        assert_eq!(a.success_codes, vec![0, 200]);
        assert_eq!(
            a.app_secret.as_ref().unwrap().expose_secret(),
            "s3cr3t-value"
        );
        assert!(!format!("{a:?}").contains("s3cr3t"));
        let y = c.redacted_yaml();
        assert!(!y.contains("s3cr3t"), "{y}");
        assert!(y.contains("app_secret: <redacted>"), "{y}");
    }

    #[test]
    fn full_example_and_big_iccids() {
        let y = "accounts:\n  - name: main-1\n    base_url: http://127.0.0.1:8080\n    auth: hmac-sha256\n    app_key: k\n    app_secret: x\n    headers: {X-Token: \"${TOKEN}\"}\n    success_codes: [0]\n    pools: [POOL-001, POOL-002, POOL-001]\n    cards: [89860000000000000001, \"89860000000000000002\"]\ncollect:\n  timeout: 1m30s\n  timeout_offset: 250ms\n  concurrency: 4\n  requests_per_second: 0\n  pool_ttl: 30s\n  card_ttl: 1h\n  history_ttl: 2h\n  stale_after: 10m\n  history: {pool_days: 7, pool_months: 3, card_days: 2, card_months: 1}\n  utc_offset: \"-05:30\"\n";
        let c = parse(y).unwrap();
        let a = &c.accounts[0];
        assert_eq!(a.pools, ["POOL-001", "POOL-002"]);
        assert_eq!(a.cards, ["89860000000000000001", "89860000000000000002"]);
        assert_eq!(c.collect.timeout, Duration::from_secs(90));
        assert_eq!(c.collect.history.card_days, 2);
        assert_eq!(c.collect.utc_offset, "-05:30");
        let opts = a.client_options();
        assert_eq!(
            opts.headers,
            vec![("X-Token".to_string(), "tok-123".to_string())]
        );
        assert!(!c.redacted_yaml().contains("tok-123"));
    }

    fn err_of(yaml: &str) -> ConfigError {
        parse(yaml).expect_err("should fail")
    }

    #[test]
    fn errors_name_the_key() {
        let e = err_of(&format!("{MINIMAL}    bogus: 1\n"));
        assert_eq!(e.key, "accounts[0].bogus");
        assert!(e.message.contains("bogus"), "{e}");
        assert_eq!(e.line, Some(6));

        let e = err_of(&format!("{MINIMAL}collect:\n  pool_ttl: 5 parsecs\n"));
        assert_eq!(e.key, "collect.pool_ttl", "{e}");
        assert_eq!(e.line, Some(7));

        let e = err_of(&format!("{MINIMAL}{}", &MINIMAL["accounts:\n".len()..]));
        assert_eq!(e.key, "accounts[1].name");
        assert!(e.message.contains("duplicate"));

        let e = err_of(&MINIMAL.replace("${SECRET}", "${NOPE}"));
        assert_eq!(e.key, "accounts[0].app_secret");
        assert!(e.message.contains("NOPE is not set"));

        let e = err_of(&MINIMAL.replace("    app_secret: ${SECRET}\n", ""));
        assert_eq!(e.key, "accounts[0].app_secret");

        let e = err_of(&format!("{MINIMAL}    cards_file: missing.txt\n"));
        assert_eq!(e.key, "accounts[0].cards_file");

        let e = err_of(&MINIMAL.replace("https://api.example.com/p", "ftp://x"));
        assert_eq!(e.key, "accounts[0].base_url");

        let e = err_of(&MINIMAL.replace("name: main", "name: \"ma in\""));
        assert_eq!(e.key, "accounts[0].name");

        let e = err_of(&format!("{MINIMAL}    cards: [\"123\"]\n"));
        assert_eq!(e.key, "accounts[0].cards[0]");

        let e = err_of(&format!(
            "{MINIMAL}collect:\n  history: {{pool_days: 31}}\n"
        ));
        assert_eq!(e.key, "collect.history.pool_days");

        let e = err_of(&format!("{MINIMAL}collect:\n  utc_offset: \"8\"\n"));
        assert_eq!(e.key, "collect.utc_offset");

        let e = err_of(&format!("{MINIMAL}    auth: kerberos\n"));
        assert_eq!(e.key, "accounts[0].auth");

        let e = err_of("accounts: []\n");
        assert_eq!(e.key, "accounts");
        let e = err_of(": : :\n");
        assert!(e.line.is_some(), "{e}");
        // a top-level key indented by one space: the line, and no "?" for a key path
        let e = err_of(&format!("{MINIMAL} collect:\n  timeout: 5s\n"));
        assert_eq!(e.key, "", "{e}");
        assert!(e.line.is_some() && !e.to_string().contains('?'), "{e}");
    }

    #[test]
    fn secret_values_never_in_errors() {
        let y = MINIMAL.to_string() + "    headers: {\"X-A\": \"bad\\nvalue-s3cr3t\"}\n";
        let e = err_of(&y);
        assert_eq!(e.key, "accounts[0].headers.X-A");
        assert!(!e.to_string().contains("s3cr3t"));
    }

    #[test]
    fn mangled_documents_do_not_echo_their_values() {
        // A block-scalar indicator turns the whole file into one string; a numeric secret
        // where a list is expected; a secret where a number is expected.
        for y in [
            format!("|\n{MINIMAL}    app_secret: s3cr3t-in-file\n"),
            "accounts:\n  - name: a\n    base_url: http://x\n    app_key: k\n    app_secret: 831977\n    pools: 831977\n".to_owned(),
            format!("{MINIMAL}collect:\n  concurrency: \"s3cr3t \\\" quoted\"\n"),
        ] {
            let e = err_of(&y);
            let text = e.to_string();
            assert!(!text.contains("s3cr3t") && !text.contains("831977"), "{text}");
        }
        let e = err_of(&format!("{MINIMAL}collect:\n  concurrency: eight\n"));
        assert_eq!(e.key, "collect.concurrency");
        assert!(e.to_string().contains("invalid type: a string"), "{e}");
    }

    #[test]
    fn files_relative_to_config_folder() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("secret"), "file-secret\n").unwrap();
        std::fs::write(
            dir.path().join("iccids.txt"),
            "# fleet A\n89860000000000000009\n\n89860000000000000001 # dup\n",
        )
        .unwrap();
        let y = "accounts:\n  - name: a\n    base_url: http://x\n    app_key: k\n    app_secret_file: secret\n    cards: [89860000000000000001]\n    cards_file: iccids.txt\n";
        let path = dir.path().join("c.yml");
        std::fs::write(&path, y).unwrap();
        let c = Config::load(&path).unwrap();
        let a = &c.accounts[0];
        assert_eq!(
            a.app_secret.as_ref().unwrap().expose_secret(),
            "file-secret"
        );
        assert_eq!(a.cards, ["89860000000000000001", "89860000000000000009"]);
        std::fs::write(
            dir.path().join("iccids.txt"),
            "89860000000000000009\nnot-an-iccid\n",
        )
        .unwrap();
        let e = Config::load(&path).unwrap_err();
        assert_eq!(e.key, "accounts[0].cards_file");
        assert!(e.message.contains("line 2"), "{e}");
    }

    #[test]
    fn expansion() {
        let f = &env;
        assert_eq!(expand("a$$b${TOKEN}c$", "k", f).unwrap(), "a$btok-123c$");
        assert!(expand("${TOKEN", "k", f).is_err());
        assert!(expand("${}", "k", f).is_err());
    }

    #[test]
    fn auth_none_needs_no_credentials() {
        let c = parse("accounts:\n  - name: a\n    base_url: http://x\n    auth: none\n").unwrap();
        assert_eq!(c.accounts[0].client_options().signer.scheme(), "none");
    }
}
