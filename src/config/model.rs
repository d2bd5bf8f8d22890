//! The validated configuration: [`Config`], its [`Account`]s and the `collect:` settings, with
//! their defaults. Secrets are held as [`SecretString`]s and never printed (`Debug` hides them).

use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tibiot_api::calendar::ApiCalendar;
use tibiot_api::{ClientOptions, HmacSha256Signer, NoSigner, Signer};

/// How requests of an account are authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub enum Auth {
    #[default]
    #[serde(rename = "hmac-sha256")]
    HmacSha256,
    #[serde(rename = "none")]
    None,
}

impl Auth {
    /// The names the file uses.
    pub(crate) const NAMES: [(&'static str, Auth); 2] =
        [("hmac-sha256", Auth::HmacSha256), ("none", Auth::None)];
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
    pub(crate) app_secret: Option<Arc<SecretString>>,
    pub(crate) headers: Vec<(String, Arc<SecretString>)>,
    pub success_codes: Vec<i64>,
    /// Pool codes, in order, without duplicates (shared with the collector's targets).
    pub pools: Vec<Arc<str>>,
    /// `cards` and the entries of `cards_file`, in order, without duplicates (shared with the
    /// collector's targets: 100,000 ICCIDs are kept once).
    pub cards: Vec<Arc<str>>,
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
    /// The share of an account's request budget, percent, that `/probe` of targets outside
    /// the configuration may use, after all configured work (0: such probes are refused).
    pub unconfigured_probe_percent: u8,
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct HistoryConfig {
    pub pool_days: u32,
    pub pool_months: u32,
    pub card_days: u32,
    pub card_months: u32,
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
            unconfigured_probe_percent: 20,
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

impl Config {
    /// The account named `name`.
    pub fn account(&self, name: &str) -> Option<&Account> {
        self.accounts.iter().find(|a| a.name == name)
    }
}
