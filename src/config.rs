//! TEMPORARY stand-in for the lead's config module (same public API), only so the exporter
//! compiles before the real one lands on main. Replaced by the lead's file on merge.

use crate::api::{ClientOptions, HmacSha256Signer, NoSigner};
use crate::calendar::{ApiCalendar, parse_offset};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Config {
    pub accounts: Vec<Account>,
    pub collect: CollectConfig,
    pub source: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Auth {
    HmacSha256,
    None,
}

#[derive(Debug, Clone)]
pub struct Account {
    pub name: String,
    pub base_url: String,
    pub auth: Auth,
    pub app_key: String,
    pub success_codes: Vec<i64>,
    pub pools: Vec<String>,
    pub cards: Vec<String>,
    pub cards_file: Option<PathBuf>,
    app_secret: String,
}

impl Account {
    pub fn client_options(&self) -> ClientOptions {
        let signer: Arc<dyn crate::api::Signer> = match self.auth {
            Auth::HmacSha256 => Arc::new(HmacSha256Signer::new(
                self.app_key.clone(),
                self.app_secret.clone().into(),
            )),
            Auth::None => Arc::new(NoSigner),
        };
        let mut o = ClientOptions::new(self.base_url.clone(), signer);
        o.success_codes = self.success_codes.clone();
        o
    }
}

#[derive(Debug, Clone)]
pub struct CollectConfig {
    pub timeout: Duration,
    pub timeout_offset: Duration,
    pub concurrency: usize,
    pub requests_per_second: u32,
    pub pool_ttl: Duration,
    pub card_ttl: Duration,
    pub history_ttl: Duration,
    pub stale_after: Duration,
    pub history: HistoryConfig,
    pub calendar: ApiCalendar,
}

#[derive(Debug, Clone, Copy, Default)]
pub struct HistoryConfig {
    pub pool_days: u32,
    pub pool_months: u32,
    pub card_days: u32,
    pub card_months: u32,
}

#[derive(Debug, Clone)]
pub struct ConfigError {
    pub key: String,
    pub line: Option<usize>,
    pub message: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}
impl std::error::Error for ConfigError {}

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
    auth: Option<String>,
    #[serde(default)]
    app_key: String,
    #[serde(default)]
    app_secret: String,
    #[serde(default)]
    pools: Vec<String>,
    #[serde(default)]
    cards: Vec<String>,
}
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawCollect {
    #[serde(default, with = "humantime_serde")]
    timeout: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pool_ttl: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    card_ttl: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    history_ttl: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    stale_after: Option<Duration>,
    concurrency: Option<usize>,
    requests_per_second: Option<u32>,
    #[serde(default)]
    history: RawHistory,
    utc_offset: Option<String>,
}
#[derive(Deserialize, Default)]
struct RawHistory {
    #[serde(default)]
    pool_days: u32,
    #[serde(default)]
    pool_months: u32,
    #[serde(default)]
    card_days: u32,
    #[serde(default)]
    card_months: u32,
}

impl Config {
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            key: "config.file".into(),
            line: None,
            message: e.to_string(),
        })?;
        let mut c = Self::parse(&text, path.parent().unwrap_or(Path::new(".")))?;
        c.source = Some(path.to_owned());
        Ok(c)
    }

    pub fn parse(yaml: &str, _base_dir: &Path) -> Result<Config, ConfigError> {
        let raw: RawConfig = serde_yaml_ng::from_str(yaml).map_err(|e| ConfigError {
            key: "accounts".into(),
            line: None,
            message: e.to_string(),
        })?;
        let c = raw.collect;
        Ok(Config {
            accounts: raw
                .accounts
                .into_iter()
                .map(|a| Account {
                    name: a.name,
                    base_url: a.base_url,
                    auth: if a.auth.as_deref() == Some("none") {
                        Auth::None
                    } else {
                        Auth::HmacSha256
                    },
                    app_key: a.app_key,
                    success_codes: vec![0, 200],
                    pools: a.pools,
                    cards: a.cards,
                    cards_file: None,
                    app_secret: a.app_secret,
                })
                .collect(),
            collect: CollectConfig {
                timeout: c.timeout.unwrap_or(Duration::from_secs(10)),
                timeout_offset: Duration::from_millis(500),
                concurrency: c.concurrency.unwrap_or(8),
                requests_per_second: c.requests_per_second.unwrap_or(20),
                pool_ttl: c.pool_ttl.unwrap_or(Duration::from_secs(60)),
                card_ttl: c.card_ttl.unwrap_or(Duration::from_secs(900)),
                history_ttl: c.history_ttl.unwrap_or(Duration::from_secs(3600)),
                stale_after: c.stale_after.unwrap_or(Duration::from_secs(3600)),
                history: HistoryConfig {
                    pool_days: c.history.pool_days,
                    pool_months: c.history.pool_months,
                    card_days: c.history.card_days,
                    card_months: c.history.card_months,
                },
                calendar: ApiCalendar::new(
                    c.utc_offset
                        .as_deref()
                        .and_then(parse_offset)
                        .unwrap_or(ApiCalendar::default().offset),
                ),
            },
            source: None,
        })
    }

    pub fn redacted_yaml(&self) -> String {
        let mut s = String::from("accounts:\n");
        for a in &self.accounts {
            s.push_str(&format!("  - name: {}\n    app_secret: <secret>\n", a.name));
        }
        s
    }

    pub fn account(&self, name: &str) -> Option<&Account> {
        self.accounts.iter().find(|a| a.name == name)
    }
}
