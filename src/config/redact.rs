//! What the configuration may show of itself: the effective configuration with every secret
//! replaced (served on `/config`), URLs without their password (as Go's `url.Redacted()`
//! shows them), and unknown keys only when they look like a setting name.

use super::duration::format_duration;
use super::model::{Auth, Config, HistoryConfig};
use serde::Serialize;
use std::collections::BTreeMap;

/// `url` with the password of its userinfo replaced by `xxxxx` (`http://user:xxxxx@host/p`),
/// as Go's `url.Redacted()` shows it. A text that does not parse as a URL with a host is
/// redacted more widely: everything between the scheme and the last `@` but the user name.
pub(crate) fn redact_url(url: &str) -> String {
    if let Ok(mut parsed) = reqwest::Url::parse(url)
        && parsed.has_host()
    {
        if parsed.password().is_none() || parsed.set_password(Some("xxxxx")).is_err() {
            return url.to_owned();
        }
        return parsed.to_string();
    }
    let start = url.find("://").map_or(0, |i| i + 3);
    match url[start..].rfind('@') {
        Some(at) => {
            let userinfo = &url[start..start + at];
            let user = userinfo
                .find([':', '/', '?', '#'])
                .map_or(userinfo, |i| &userinfo[..i]);
            format!("{}{user}:xxxxx{}", &url[..start], &url[start + at..])
        }
        None => url.to_owned(),
    }
}

/// Whether an unknown key may be quoted in a message (see [`tibiot_web::redact::shown_key`]).
pub(crate) fn key_may_be_shown(key: &str) -> bool {
    tibiot_web::redact::key_is_shown(key)
}

/// The message for an unknown key: the key when it may be shown (with the nearest known key
/// when one is close), else only its length; and the keys allowed there.
pub(crate) fn unknown_key(key: &str, known: &[&str]) -> String {
    let listed = known.join(", ");
    if !key_may_be_shown(key) {
        return format!(
            "{} here (not shown: it does not look like a setting name, and a slip of indentation can make a secret a key); the keys here are {listed}",
            tibiot_web::redact::shown_key(key)
        );
    }
    let near = known
        .iter()
        .map(|k| (edit_distance(key, k), *k))
        .filter(|(d, _)| *d <= 2)
        .min();
    match near {
        Some((_, k)) => {
            format!("unknown key `{key}`; did you mean `{k}`? The keys here are {listed}")
        }
        None => format!("unknown key `{key}`; the keys here are {listed}"),
    }
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur.push((prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

impl Config {
    /// The effective configuration as YAML with every secret replaced by `<redacted>`. It
    /// parses back to the same settings and targets.
    pub fn redacted_yaml(&self) -> String {
        #[derive(Serialize)]
        struct Out<'a> {
            accounts: Vec<OutAccount<'a>>,
            collect: OutCollect,
        }
        #[derive(Serialize)]
        struct OutAccount<'a> {
            name: &'a str,
            base_url: String,
            auth: Auth,
            app_key: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            app_secret: Option<&'static str>,
            headers: BTreeMap<&'a str, &'static str>,
            success_codes: &'a [i64],
            pools: Vec<&'a str>,
            cards: Vec<&'a str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            cards_file: Option<String>,
        }
        #[derive(Serialize)]
        struct OutCollect {
            timeout: String,
            timeout_offset: String,
            concurrency: usize,
            requests_per_second: u32,
            unconfigured_probe_percent: u8,
            pool_ttl: String,
            card_ttl: String,
            history_ttl: String,
            stale_after: String,
            history: HistoryConfig,
            utc_offset: String,
        }
        let d = format_duration;
        let c = &self.collect;
        let out = Out {
            accounts: self
                .accounts
                .iter()
                .map(|a| OutAccount {
                    name: &a.name,
                    base_url: redact_url(&a.base_url),
                    auth: a.auth,
                    app_key: &a.app_key,
                    app_secret: a.app_secret.as_ref().map(|_| "<redacted>"),
                    headers: a
                        .headers
                        .iter()
                        .map(|(k, _)| (k.as_str(), "<redacted>"))
                        .collect(),
                    success_codes: &a.success_codes,
                    pools: a.pools.iter().map(|p| &**p).collect(),
                    cards: a.cards.iter().map(|c| &**c).collect(),
                    cards_file: a.cards_file.as_ref().map(|p| p.display().to_string()),
                })
                .collect(),
            collect: OutCollect {
                timeout: d(c.timeout),
                timeout_offset: d(c.timeout_offset),
                concurrency: c.concurrency,
                requests_per_second: c.requests_per_second,
                unconfigured_probe_percent: c.unconfigured_probe_percent,
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_their_password() {
        for (url, want) in [
            (
                "http://user:S3CRET@host:8080/p",
                "http://user:xxxxx@host:8080/p",
            ),
            ("https://host/p?x=1", "https://host/p?x=1"),
            ("http://user@host", "http://user@host"),
            ("user:S3CRET@host", "user:xxxxx@host"),
            ("http://u:S3CRET@host:bad/p@x", "http://u:xxxxx@x"),
            ("http://u:p:S3CRET@h@ost/", "http://u:xxxxx@ost/"),
            ("http://u:S3/CRET@host/", "http://u:xxxxx@host/"),
            ("https://host/a@b", "https://host/a@b"),
        ] {
            assert_eq!(redact_url(url), want, "{url}");
        }
    }

    #[test]
    fn unknown_keys() {
        let m = unknown_key("timout", &["timeout", "concurrency"]);
        assert!(
            m.contains("`timout`") && m.contains("did you mean `timeout`"),
            "{m}"
        );
        let m = unknown_key("S3cr3t-Value_1", &["timeout"]);
        assert!(!m.contains("S3cr3t") && m.contains("14 characters"), "{m}");
    }
}
