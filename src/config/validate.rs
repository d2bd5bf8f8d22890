//! Raw structs → a validated [`Config`]: defaults, ranges, names, `${VAR}` expansion, secret
//! files, cards files, duplicates and cross-field rules. Every problem is reported with its
//! key path and line; an unset variable only stops the checks of the value that uses it.

use super::cards::{ListFileError, check_iccid, read_cards_file};
use super::error::{ConfigError, Problems};
use super::expand::{EnvLookup, expand};
use super::model::{Account, Auth, CollectConfig, Config, HistoryConfig};
use super::raw::{Field, RawAccount, RawCollect, RawConfig, Slot};
use super::redact::redact_url;
use secrecy::SecretString;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tibiot_api::calendar::{ApiCalendar, parse_offset};
use tibiot_api::client::parse_base_url;
use tibiot_web::redact::shown;

/// At most this many bad entries are listed per list or file; the rest are counted.
const MAX_LISTED: usize = 20;

/// Validates `raw`; `None` when any problem was reported (here or before).
pub(crate) fn validate(
    raw: RawConfig,
    base_dir: &Path,
    env: EnvLookup,
    p: &mut Problems,
) -> Option<Config> {
    let collect = validate_collect(raw.collect, p);
    let mut accounts = Vec::new();
    match raw.accounts {
        Slot::Set(f) if f.value.is_empty() => p.push(
            "accounts",
            f.line,
            "at least one account is required (`- name: main`, `base_url: …`)",
        ),
        Slot::Set(f) => {
            let mut names: HashMap<String, Option<usize>> = HashMap::new();
            for ra in f.value {
                let name = ra
                    .name
                    .as_ref()
                    .map(|n| (n.value.clone(), n.key.clone(), n.line));
                let acc = validate_account(ra, base_dir, env, p);
                if let Some((name, key, line)) = name {
                    if let Some(first) = names.get(&name) {
                        let at = first
                            .map(|l| format!(" (first at line {l})"))
                            .unwrap_or_default();
                        p.push(
                            key,
                            line,
                            format!("duplicate account name {}{at}", shown(&name)),
                        );
                        continue;
                    }
                    names.insert(name, line);
                }
                if let Some(a) = acc {
                    accounts.push(a);
                }
            }
        }
        Slot::Missing | Slot::Empty { .. } => p.push(
            "accounts",
            raw.line,
            "is required: a list of accounts (`accounts:` then `  - name: main` …)",
        ),
        Slot::Bad => {}
    }
    if !p.0.is_empty() {
        return None;
    }
    Some(Config {
        accounts,
        collect: collect?,
        source: None,
    })
}

fn value_or<T: Copy>(f: &Option<Field<T>>, default: T) -> T {
    f.as_ref().map_or(default, |f| f.value)
}

fn validate_collect(raw: RawCollect, p: &mut Problems) -> Option<CollectConfig> {
    let d = CollectConfig::default();
    let before = p.0.len();
    let timeout = value_or(&raw.timeout, d.timeout);
    if let Some(f) = &raw.timeout
        && f.value.is_zero()
    {
        p.push(&f.key, f.line, "must be greater than zero, e.g. 10s");
    }
    let timeout_offset = value_or(&raw.timeout_offset, d.timeout_offset);
    if timeout_offset >= timeout && !timeout.is_zero() {
        let (key, line) = raw
            .timeout_offset
            .as_ref()
            .map(|f| (f.key.clone(), f.line))
            .or_else(|| raw.timeout.as_ref().map(|f| (f.key.clone(), f.line)))
            .unwrap_or(("collect.timeout_offset".into(), raw.line));
        p.push(
            key,
            line,
            format!(
                "collect.timeout_offset ({}) must be smaller than collect.timeout ({})",
                super::duration::format_duration(timeout_offset),
                super::duration::format_duration(timeout)
            ),
        );
    }
    for f in [&raw.pool_ttl, &raw.card_ttl, &raw.history_ttl]
        .into_iter()
        .flatten()
    {
        if f.value < Duration::from_secs(1) {
            p.push(&f.key, f.line, "must be at least 1s, e.g. 1m");
        }
    }
    let mut ranged =
        |f: &Option<Field<i128>>, min: i128, max: i128, default: i128, unit: &str| match f {
            Some(f) if !(min..=max).contains(&f.value) => {
                p.push(
                    &f.key,
                    f.line,
                    format!("must be {min}..={max}{unit}, not {}", f.value),
                );
                default
            }
            Some(f) => f.value,
            None => default,
        };
    let concurrency = ranged(&raw.concurrency, 1, 1024, d.concurrency as i128, "");
    let rps = ranged(
        &raw.requests_per_second,
        0,
        1_000_000,
        d.requests_per_second as i128,
        " (0 = unlimited)",
    );
    let probe_percent = ranged(
        &raw.unconfigured_probe_percent,
        0,
        100,
        d.unconfigured_probe_percent.into(),
        " percent (0 = no /probe of targets outside the configuration)",
    );
    let h = HistoryConfig::default();
    let history = HistoryConfig {
        pool_days: ranged(&raw.pool_days, 0, 30, h.pool_days.into(), " days") as u32,
        pool_months: ranged(&raw.pool_months, 0, 12, h.pool_months.into(), " months") as u32,
        card_days: ranged(&raw.card_days, 0, 30, h.card_days.into(), " days") as u32,
        card_months: ranged(&raw.card_months, 0, 12, h.card_months.into(), " months") as u32,
    };
    let (calendar, utc_offset) = match &raw.utc_offset {
        None => (d.calendar, d.utc_offset.clone()),
        Some(f) => match parse_offset(&f.value) {
            Some(offset) => {
                let secs = offset.local_minus_utc();
                let text = format!(
                    "{}{:02}:{:02}",
                    if secs < 0 { '-' } else { '+' },
                    secs.abs() / 3600,
                    secs.abs() % 3600 / 60
                );
                (ApiCalendar::new(offset), text)
            }
            None => {
                p.push(
                    &f.key,
                    f.line,
                    format!(
                        "{} is not a UTC offset; write it quoted like \"+08:00\" or \"-05:30\"",
                        shown(&f.value)
                    ),
                );
                (d.calendar, d.utc_offset.clone())
            }
        },
    };
    (p.0.len() == before).then(|| CollectConfig {
        timeout,
        timeout_offset,
        concurrency: concurrency as usize,
        requests_per_second: rps as u32,
        unconfigured_probe_percent: probe_percent as u8,
        pool_ttl: value_or(&raw.pool_ttl, d.pool_ttl),
        card_ttl: value_or(&raw.card_ttl, d.card_ttl),
        history_ttl: value_or(&raw.history_ttl, d.history_ttl),
        stale_after: value_or(&raw.stale_after, d.stale_after),
        history,
        calendar,
        utc_offset,
    })
}

/// `[A-Za-z0-9_-]+`, at most 64 characters.
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

/// Expands a field; an unset variable is reported and the value dropped.
fn expanded(f: &Field<String>, env: EnvLookup, p: &mut Problems) -> Option<String> {
    expand(&f.value, &f.key, env)
        .map_err(|e| p.add(e.at(f.line)))
        .ok()
}

fn validate_account(
    ra: RawAccount,
    base_dir: &Path,
    env: EnvLookup,
    p: &mut Problems,
) -> Option<Account> {
    let before = p.0.len();
    let key = |k: &str| format!("{}.{k}", ra.key);
    let required = |slot: &Slot<String>, k: &str, why: &str, p: &mut Problems| match slot {
        Slot::Missing => p.push(key(k), ra.line, why.to_owned()),
        Slot::Empty { line } => p.push(key(k), *line, format!("has no value, and {why}")),
        _ => {}
    };
    required(
        &ra.name,
        "name",
        "is required: the account's label, e.g. `name: main`",
        p,
    );
    if let Some(f) = ra.name.as_ref()
        && !is_valid_account_name(&f.value)
    {
        p.push(
            &f.key,
            f.line,
            format!(
                "{} is not an account name: 1-64 of A-Z a-z 0-9 _ -, e.g. main",
                shown(&f.value)
            ),
        );
    }
    required(
        &ra.base_url,
        "base_url",
        "is required: the API's address, e.g. `base_url: https://api.example.com`",
        p,
    );
    let base_url = ra.base_url.as_ref().and_then(|f| {
        let url = expanded(f, env, p)?;
        match parse_base_url(&url) {
            Ok(_) => Some(url),
            Err(e) => {
                // the URL without its password, and the reason without the URL
                p.push(
                    &f.key,
                    f.line,
                    format!(
                        "{} is not a usable base URL ({}); write scheme and host, e.g. https://api.example.com",
                        super::cards::excerpt(&redact_url(&url)),
                        tibiot_web::redact::hide_quoted_values(&e)
                    ),
                );
                None
            }
        }
    });
    let auth = ra.auth.as_ref().map_or(Auth::default(), |f| f.value);
    let app_key = ra.app_key.as_ref().and_then(|f| expanded(f, env, p));
    let app_secret = match (&ra.app_secret, &ra.app_secret_file) {
        (Slot::Set(f), Slot::Set(_)) => {
            p.push(
                &f.key,
                f.line,
                "give exactly one of app_secret and app_secret_file, not both",
            );
            None
        }
        (Slot::Set(f), _) => expanded(f, env, p),
        (_, Slot::Set(f)) => expanded(f, env, p).and_then(|file| {
            let path = resolve(base_dir, &file);
            match std::fs::read_to_string(&path) {
                Ok(text) => Some(text.trim_end_matches(['\r', '\n']).to_owned()),
                Err(e) => {
                    p.push(
                        &f.key,
                        f.line,
                        format!("cannot read {}: {}", path.display(), e.kind()),
                    );
                    None
                }
            }
        }),
        _ => None,
    };
    if auth == Auth::HmacSha256 {
        match &ra.app_key {
            Slot::Missing | Slot::Empty { .. } => required(
                &ra.app_key,
                "app_key",
                "is required with auth: hmac-sha256, e.g. `app_key: my-app-key`",
                p,
            ),
            Slot::Set(f) if app_key.as_deref() == Some("") => p.push(
                &f.key,
                f.line,
                "is empty; it is required with auth: hmac-sha256",
            ),
            _ => {}
        }
        match (&ra.app_secret, &ra.app_secret_file) {
            (a, f) if a.is_missing() && f.is_missing() => {
                let (slot, k) = match f {
                    Slot::Empty { .. } => (f, "app_secret_file"),
                    _ => (a, "app_secret"),
                };
                required(
                    slot,
                    k,
                    "is required with auth: hmac-sha256: `app_secret: ${TIBIOT_APP_SECRET}` or `app_secret_file: /run/secrets/tibiot`",
                    p,
                )
            }
            (a, f) => {
                let given = a.as_ref().or(f.as_ref());
                if let Some(g) = given
                    && app_secret.as_deref() == Some("")
                {
                    p.push(&g.key, g.line, "the secret is empty");
                }
            }
        }
    }
    let mut headers = Vec::with_capacity(ra.headers.len());
    for (name, f) in &ra.headers {
        let Some(value) = expanded(f, env, p) else {
            continue;
        };
        if reqwest::header::HeaderValue::from_str(&value).is_err() {
            // Never echo the value: it may be a secret.
            p.push(
                &f.key,
                f.line,
                "the value is not a valid HTTP header value (printable text on one line)",
            );
            continue;
        }
        headers.push((name.clone(), Arc::new(SecretString::from(value))));
    }
    let success_codes = match &ra.success_codes {
        Slot::Set(f) if f.value.is_empty() => {
            p.push(&f.key, f.line, "must list at least one code, e.g. [0, 200]");
            Vec::new()
        }
        Slot::Set(f) => f.value.clone(),
        _ => vec![0, 200],
    };
    let mut pools = Vec::with_capacity(ra.pools.len());
    let mut seen = HashSet::new();
    let (mut bad, mut last) = (0, ra.line);
    for f in &ra.pools {
        let code = f.value.trim();
        if !is_valid_pool_code(code) {
            bad += 1;
            last = f.line;
            if bad <= MAX_LISTED {
                p.push(
                    &f.key,
                    f.line,
                    format!(
                        "{} is not a pool code: 1-64 of A-Z a-z 0-9 _ - . such as POOL-001",
                        super::cards::excerpt(code)
                    ),
                );
            }
        } else {
            let code: Arc<str> = Arc::from(code);
            if seen.insert(code.clone()) {
                pools.push(code);
            }
        }
    }
    more(bad, &key("pools"), last, "pool codes", p);
    let mut cards = Vec::with_capacity(ra.cards.len());
    let mut seen = HashSet::new();
    let (mut bad, mut last) = (0, ra.line);
    for f in &ra.cards {
        let iccid = f.value.trim();
        match check_iccid(iccid) {
            Err(e) => {
                bad += 1;
                last = f.line;
                if bad <= MAX_LISTED {
                    p.push(&f.key, f.line, e.to_string());
                }
            }
            Ok(()) => {
                let iccid: Arc<str> = Arc::from(iccid);
                if seen.insert(iccid.clone()) {
                    cards.push(iccid);
                }
            }
        }
    }
    more(bad, &key("cards"), last, "ICCIDs", p);
    let cards_file = ra.cards_file.as_ref().map(|f| {
        let path = resolve(base_dir, &f.value);
        match read_cards_file(&path) {
            Ok(list) => {
                for c in list {
                    let c: Arc<str> = Arc::from(c);
                    if seen.insert(c.clone()) {
                        cards.push(c);
                    }
                }
            }
            Err(ListFileError::Invalid { path, lines }) => {
                for l in lines.iter().take(MAX_LISTED) {
                    p.push(&f.key, f.line, format!("{} {l}", path.display()));
                }
                more(lines.len(), &f.key, f.line, "ICCIDs", p);
            }
            Err(e) => p.push(&f.key, f.line, e.to_string()),
        }
        path
    });
    if p.0.len() != before {
        return None;
    }
    // The lists are kept for the process's life (100,000 ICCIDs): no spare capacity.
    pools.shrink_to_fit();
    cards.shrink_to_fit();
    Some(Account {
        name: ra.name.as_ref()?.value.clone(),
        base_url: base_url?,
        auth,
        app_key: app_key.unwrap_or_default(),
        app_secret: app_secret.map(|s| Arc::new(SecretString::from(s))),
        headers,
        success_codes,
        pools,
        cards,
        cards_file,
    })
}

/// Counts the bad entries that were not listed.
fn more(bad: usize, key: &str, line: Option<usize>, what: &str, p: &mut Problems) {
    if bad > MAX_LISTED {
        p.add(
            ConfigError::new(
                key,
                format!(
                    "… and {} more entries that are not {what}",
                    bad - MAX_LISTED
                ),
            )
            .at(line),
        );
    }
}

fn resolve(base: &Path, p: &str) -> PathBuf {
    let p = Path::new(p);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}
