//! The file's shape as written: a [`Node`] tree → raw structs whose every field knows its key
//! path and line. This stage checks only shape and types (unknown or repeated keys, a list
//! where a string belongs, a duration without a unit); ranges, names and cross-field rules are
//! `validate`'s. Every problem is collected; nothing stops at the first.

use super::duration::{DURATION_EXAMPLES, parse_duration};
use super::error::Problems;
use super::model::Auth;
use super::redact::unknown_key;
use super::yaml::{Node, Value};
use std::time::Duration;

/// A value with its key path and line.
pub(crate) struct Field<T> {
    pub value: T,
    pub key: String,
    pub line: Option<usize>,
}

/// A setting as read: absent, given without a value (`app_secret:`), present but unusable
/// (already reported), or set.
pub(crate) enum Slot<T> {
    Missing,
    Empty { line: Option<usize> },
    Bad,
    Set(Field<T>),
}

impl<T> Slot<T> {
    pub(super) fn as_ref(&self) -> Option<&Field<T>> {
        match self {
            Slot::Set(f) => Some(f),
            _ => None,
        }
    }

    /// Absent or without a value.
    pub(super) fn is_missing(&self) -> bool {
        matches!(self, Slot::Missing | Slot::Empty { .. })
    }
}

pub(crate) struct RawConfig {
    pub line: Option<usize>,
    /// `None` when missing or not a list.
    pub accounts: Slot<Vec<RawAccount>>,
    pub collect: RawCollect,
}

pub(crate) struct RawAccount {
    pub key: String,
    pub line: Option<usize>,
    pub name: Slot<String>,
    pub base_url: Slot<String>,
    pub auth: Slot<Auth>,
    pub app_key: Slot<String>,
    pub app_secret: Slot<String>,
    pub app_secret_file: Slot<String>,
    /// (name, value); the value may be a secret.
    pub headers: Vec<(String, Field<String>)>,
    pub success_codes: Slot<Vec<i64>>,
    pub pools: Vec<Field<String>>,
    pub cards: Vec<Field<String>>,
    pub cards_file: Slot<String>,
}

#[derive(Default)]
pub(crate) struct RawCollect {
    pub line: Option<usize>,
    pub timeout: Option<Field<Duration>>,
    pub timeout_offset: Option<Field<Duration>>,
    pub concurrency: Option<Field<i128>>,
    pub requests_per_second: Option<Field<i128>>,
    pub unconfigured_probe_percent: Option<Field<i128>>,
    pub pool_ttl: Option<Field<Duration>>,
    pub card_ttl: Option<Field<Duration>>,
    pub history_ttl: Option<Field<Duration>>,
    pub stale_after: Option<Field<Duration>>,
    pub pool_days: Option<Field<i128>>,
    pub pool_months: Option<Field<i128>>,
    pub card_days: Option<Field<i128>>,
    pub card_months: Option<Field<i128>>,
    pub utc_offset: Option<Field<String>>,
}

pub(crate) const TOP_KEYS: [&str; 2] = ["accounts", "collect"];
pub(crate) const ACCOUNT_KEYS: [&str; 11] = [
    "name",
    "base_url",
    "auth",
    "app_key",
    "app_secret",
    "app_secret_file",
    "headers",
    "success_codes",
    "pools",
    "cards",
    "cards_file",
];
pub(crate) const COLLECT_KEYS: [&str; 11] = [
    "timeout",
    "timeout_offset",
    "concurrency",
    "requests_per_second",
    "unconfigured_probe_percent",
    "pool_ttl",
    "card_ttl",
    "history_ttl",
    "stale_after",
    "history",
    "utc_offset",
];
pub(crate) const HISTORY_KEYS: [&str; 4] = ["pool_days", "pool_months", "card_days", "card_months"];

/// Reads the document into raw structs, reporting every shape and type problem.
pub(crate) fn read(doc: &Node, p: &mut Problems) -> RawConfig {
    let mut top = match &doc.value {
        Value::Map(_) => Entries::new(doc, "", p),
        Value::Null => Entries::empty(doc.line),
        other => {
            p.push(
                "",
                doc.line,
                format!(
                    "the file must be a mapping with `accounts:` (and optionally `collect:`), not {}",
                    other.kind()
                ),
            );
            Entries::empty(doc.line)
        }
    };
    let accounts = match top.get("accounts") {
        None => Slot::Missing,
        Some(n) => match &n.value {
            Value::Seq(items) => {
                let accs = items
                    .iter()
                    .enumerate()
                    .filter_map(|(i, item)| read_account(i, item, p))
                    .collect();
                Slot::Set(Field {
                    value: accs,
                    key: "accounts".into(),
                    line: n.line,
                })
            }
            Value::Null => Slot::Missing,
            other => {
                p.push(
                    "accounts",
                    n.line,
                    format!(
                        "expected a list of accounts (`- name: main` …), found {}",
                        other.kind()
                    ),
                );
                Slot::Bad
            }
        },
    };
    let collect = match top.get("collect") {
        None => RawCollect::default(),
        Some(n) => read_collect(n, p),
    };
    top.finish(&TOP_KEYS, p);
    RawConfig {
        line: doc.line,
        accounts,
        collect,
    }
}

fn read_account(i: usize, node: &Node, p: &mut Problems) -> Option<RawAccount> {
    let key = format!("accounts[{i}]");
    if !matches!(node.value, Value::Map(_)) {
        p.push(
            &key,
            node.line,
            format!(
                "expected an account (`name: main`, `base_url: …`, …), found {}",
                node.value.kind()
            ),
        );
        return None;
    }
    let mut e = Entries::new(node, &key, p);
    let k = |s: &str| format!("{key}.{s}");
    let name = opt(e.get("name"), |n| string(n, &k("name"), "main", p));
    let base_url = opt(e.get("base_url"), |n| {
        string(n, &k("base_url"), "https://api.example.com", p)
    });
    let auth = match opt(e.get("auth"), |n| string(n, &k("auth"), "hmac-sha256", p)) {
        Slot::Set(f) => match Auth::NAMES.iter().find(|(s, _)| *s == f.value) {
            Some((_, a)) => Slot::Set(Field {
                value: *a,
                key: f.key,
                line: f.line,
            }),
            None => {
                p.push(
                    &f.key,
                    f.line,
                    format!(
                        "unknown authentication {}: hmac-sha256 (the default) or none",
                        tibiot_web::redact::shown(&f.value)
                    ),
                );
                Slot::Bad
            }
        },
        Slot::Missing => Slot::Missing,
        Slot::Empty { line } => Slot::Empty { line },
        Slot::Bad => Slot::Bad,
    };
    let app_key = opt(e.get("app_key"), |n| {
        string(n, &k("app_key"), "my-app-key", p)
    });
    let app_secret = opt(e.get("app_secret"), |n| {
        string(n, &k("app_secret"), "${TIBIOT_APP_SECRET}", p)
    });
    let app_secret_file = opt(e.get("app_secret_file"), |n| {
        string(n, &k("app_secret_file"), "/run/secrets/tibiot", p)
    });
    let headers = match e.get("headers") {
        None => Vec::new(),
        Some(n) => read_headers(n, &k("headers"), p),
    };
    let success_codes = opt(e.get("success_codes"), |n| {
        let key = k("success_codes");
        let Value::Seq(items) = &n.value else {
            p.push(
                &key,
                n.line,
                format!(
                    "expected a list of codes such as [0, 200], found {}",
                    n.value.kind()
                ),
            );
            return Slot::Bad;
        };
        let mut codes = Vec::with_capacity(items.len());
        let mut ok = true;
        for (j, item) in items.iter().enumerate() {
            match &item.value {
                Value::Int(s) if s.parse::<i64>().is_ok() => codes.push(s.parse().unwrap_or(0)),
                other => {
                    ok = false;
                    p.push(
                        format!("{key}[{j}]"),
                        item.line,
                        format!(
                            "expected a whole number such as 200, found {}",
                            other.kind()
                        ),
                    );
                }
            }
        }
        if ok {
            Slot::Set(Field {
                value: codes,
                key,
                line: n.line,
            })
        } else {
            Slot::Bad
        }
    });
    let pools = e
        .get("pools")
        .map(|n| scalar_list(n, &k("pools"), "[POOL-001, POOL-002]", p))
        .unwrap_or_default();
    let cards = e
        .get("cards")
        .map(|n| scalar_list(n, &k("cards"), "[89860000000000000001]", p))
        .unwrap_or_default();
    let cards_file = opt(e.get("cards_file"), |n| {
        string(n, &k("cards_file"), "iccids.txt", p)
    });
    e.finish(&ACCOUNT_KEYS, p);
    Some(RawAccount {
        key,
        line: node.line,
        name,
        base_url,
        auth,
        app_key,
        app_secret,
        app_secret_file,
        headers,
        success_codes,
        pools,
        cards,
        cards_file,
    })
}

fn read_headers(node: &Node, key: &str, p: &mut Problems) -> Vec<(String, Field<String>)> {
    let entries = match &node.value {
        Value::Null => return Vec::new(),
        Value::Map(entries) => entries,
        other => {
            p.push(
                key,
                node.line,
                format!(
                    "expected a mapping of header names to values such as `X-Tenant: acme`, found {}",
                    other.kind()
                ),
            );
            return Vec::new();
        }
    };
    let mut out: Vec<(String, Field<String>)> = Vec::with_capacity(entries.len());
    for (k, v) in entries {
        let Value::Str(name) = &k.value else {
            p.push(
                key,
                k.line,
                format!("a header name must be text, not {}", k.value.kind()),
            );
            continue;
        };
        // A header's name is shown (on /config too) once it has a value and is a valid
        // name; a "name" without a value, or not a valid name, may be a secret that an
        // indentation slip made a key, and is not shown.
        let text_value = matches!(v.value, Value::Str(_) | Value::Int(_));
        if !text_value || reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
            let what = if matches!(v.value, Value::Null) {
                "has no value".to_string()
            } else if !text_value {
                format!(
                    "has {} as its value, not text such as ${{TIBIOT_TOKEN}}",
                    v.value.kind()
                )
            } else {
                "is not a valid HTTP header name (letters, digits and - such as X-Tenant)".into()
            };
            p.push(
                key,
                k.line,
                format!(
                    "a header name of {} characters {what}; the name is not shown, as a slip of indentation can make a secret a key",
                    name.chars().count()
                ),
            );
            continue;
        }
        let hkey = format!("{key}.{name}");
        if out.iter().any(|(n, _)| n == name) {
            p.push(&hkey, k.line, "this header is given twice");
            continue;
        }
        if let Slot::Set(f) = string(v, &hkey, "${TIBIOT_TOKEN}", p) {
            out.push((name.clone(), f));
        }
    }
    out
}

fn read_collect(node: &Node, p: &mut Problems) -> RawCollect {
    let mut e = match &node.value {
        Value::Map(_) => Entries::new(node, "collect", p),
        Value::Null => {
            return RawCollect {
                line: node.line,
                ..RawCollect::default()
            };
        }
        other => {
            p.push(
                "collect",
                node.line,
                format!(
                    "expected the collection settings (`timeout: 10s`, …), found {}",
                    other.kind()
                ),
            );
            return RawCollect::default();
        }
    };
    let k = |s: &str| format!("collect.{s}");
    let dur = |name: &str, e: &mut Entries, p: &mut Problems| {
        e.get(name)
            .and_then(|n| duration(n, &k(name), p).into_field())
    };
    let timeout = dur("timeout", &mut e, p);
    let timeout_offset = dur("timeout_offset", &mut e, p);
    let pool_ttl = dur("pool_ttl", &mut e, p);
    let card_ttl = dur("card_ttl", &mut e, p);
    let history_ttl = dur("history_ttl", &mut e, p);
    let stale_after = dur("stale_after", &mut e, p);
    let concurrency = e
        .get("concurrency")
        .and_then(|n| integer(n, &k("concurrency"), "8", p).into_field());
    let requests_per_second = e
        .get("requests_per_second")
        .and_then(|n| integer(n, &k("requests_per_second"), "20", p).into_field());
    let unconfigured_probe_percent = e
        .get("unconfigured_probe_percent")
        .and_then(|n| integer(n, &k("unconfigured_probe_percent"), "20", p).into_field());
    let utc_offset = e
        .get("utc_offset")
        .and_then(|n| string(n, &k("utc_offset"), "\"+08:00\"", p).into_field());
    let mut raw = RawCollect {
        line: node.line,
        timeout,
        timeout_offset,
        concurrency,
        requests_per_second,
        unconfigured_probe_percent,
        pool_ttl,
        card_ttl,
        history_ttl,
        stale_after,
        utc_offset,
        ..RawCollect::default()
    };
    if let Some(h) = e.get("history") {
        match &h.value {
            Value::Null => {}
            Value::Map(_) => {
                let mut he = Entries::new(h, "collect.history", p);
                let int = |name: &str, he: &mut Entries, p: &mut Problems| {
                    he.get(name).and_then(|n| {
                        integer(n, &format!("collect.history.{name}"), "30", p).into_field()
                    })
                };
                raw.pool_days = int("pool_days", &mut he, p);
                raw.pool_months = int("pool_months", &mut he, p);
                raw.card_days = int("card_days", &mut he, p);
                raw.card_months = int("card_months", &mut he, p);
                he.finish(&HISTORY_KEYS, p);
            }
            other => p.push(
                "collect.history",
                h.line,
                format!(
                    "expected the history windows (`pool_days: 30`, …), found {}",
                    other.kind()
                ),
            ),
        }
    }
    e.finish(&COLLECT_KEYS, p);
    raw
}

impl<T> Slot<T> {
    fn into_field(self) -> Option<Field<T>> {
        match self {
            Slot::Set(f) => Some(f),
            _ => None,
        }
    }
}

fn opt<T>(node: Option<&Node>, f: impl FnOnce(&Node) -> Slot<T>) -> Slot<T> {
    node.map_or(Slot::Missing, f)
}

/// A string setting. An integer is read as its digits (`app_key: 12345`); null is absent.
fn string(node: &Node, key: &str, example: &str, p: &mut Problems) -> Slot<String> {
    let value = match &node.value {
        Value::Str(s) | Value::Int(s) => s.clone(),
        Value::Null => return Slot::Empty { line: node.line },
        other => {
            p.push(
                key,
                node.line,
                format!(
                    "expected a string such as {example}, found {}",
                    other.kind()
                ),
            );
            return Slot::Bad;
        }
    };
    Slot::Set(Field {
        value,
        key: key.to_owned(),
        line: node.line,
    })
}

fn duration(node: &Node, key: &str, p: &mut Problems) -> Slot<Duration> {
    let parsed = match &node.value {
        Value::Str(s) | Value::Int(s) => parse_duration(s),
        Value::Float(_) => Err(super::duration::DurationError::NoUnit),
        Value::Null => return Slot::Missing,
        other => {
            p.push(
                key,
                node.line,
                format!(
                    "expected a duration, found {}; {DURATION_EXAMPLES}",
                    other.kind()
                ),
            );
            return Slot::Bad;
        }
    };
    match parsed {
        Ok(value) => Slot::Set(Field {
            value,
            key: key.to_owned(),
            line: node.line,
        }),
        Err(e) => {
            p.push(key, node.line, e.to_string());
            Slot::Bad
        }
    }
}

fn integer(node: &Node, key: &str, example: &str, p: &mut Problems) -> Slot<i128> {
    let value = match &node.value {
        Value::Int(s) => match s.parse::<i128>() {
            Ok(v) => v,
            Err(_) => {
                p.push(key, node.line, "the number is too large");
                return Slot::Bad;
            }
        },
        Value::Null => return Slot::Missing,
        other => {
            p.push(
                key,
                node.line,
                format!(
                    "expected a whole number such as {example}, found {}",
                    other.kind()
                ),
            );
            return Slot::Bad;
        }
    };
    Slot::Set(Field {
        value,
        key: key.to_owned(),
        line: node.line,
    })
}

/// A list of scalars read as strings (ICCIDs keep their exact digits).
fn scalar_list(node: &Node, key: &str, example: &str, p: &mut Problems) -> Vec<Field<String>> {
    let items = match &node.value {
        Value::Seq(items) => items,
        Value::Null => return Vec::new(),
        other => {
            p.push(
                key,
                node.line,
                format!("expected a list such as {example}, found {}", other.kind()),
            );
            return Vec::new();
        }
    };
    let mut out = Vec::with_capacity(items.len());
    for (j, item) in items.iter().enumerate() {
        let ikey = format!("{key}[{j}]");
        match &item.value {
            Value::Str(s) | Value::Int(s) => out.push(Field {
                value: s.clone(),
                key: ikey,
                line: item.line,
            }),
            Value::Float(_) => p.push(
                ikey,
                item.line,
                "YAML reads this entry as a fractional or very large number, whose digits may be lost: quote it",
            ),
            other => p.push(
                ikey,
                item.line,
                format!("expected a code or an ICCID, found {}", other.kind()),
            ),
        }
    }
    out
}

/// The entries of one mapping, taken by name; what is left over is reported as unknown.
struct Entries<'a> {
    path: String,
    line: Option<usize>,
    entries: Vec<(&'a Node, &'a Node, bool)>,
}

impl<'a> Entries<'a> {
    fn empty(line: Option<usize>) -> Self {
        Self {
            path: String::new(),
            line,
            entries: Vec::new(),
        }
    }

    /// The entries of a mapping node; a key given twice is reported and its first value used.
    fn new(node: &'a Node, path: &str, p: &mut Problems) -> Self {
        let Value::Map(map) = &node.value else {
            return Self::empty(node.line);
        };
        let mut entries: Vec<(&Node, &Node, bool)> = Vec::with_capacity(map.len());
        for (k, v) in map {
            if let Value::Str(name) = &k.value
                && let Some((first, _, _)) = entries
                    .iter()
                    .find(|(fk, _, _)| matches!(&fk.value, Value::Str(n) if n == name))
            {
                let (key, shown) = child_key(path, name);
                if shown {
                    let at = first
                        .line
                        .map(|l| format!(" (first at line {l})"))
                        .unwrap_or_default();
                    p.push(key, k.line, format!("given twice{at}; the first is used"));
                }
                // an unknown key given twice is reported once, as unknown
                continue;
            }
            entries.push((k, v, false));
        }
        Self {
            path: path.to_owned(),
            line: node.line,
            entries,
        }
    }

    fn get(&mut self, name: &str) -> Option<&'a Node> {
        let e = self
            .entries
            .iter_mut()
            .find(|(k, _, _)| matches!(&k.value, Value::Str(n) if n == name))?;
        e.2 = true;
        Some(e.1)
    }

    /// Reports every key not taken.
    fn finish(self, known: &[&str], p: &mut Problems) {
        for (k, _, used) in self.entries {
            if used {
                continue;
            }
            let (key, message) = match &k.value {
                Value::Str(name) => {
                    let (key, _) = child_key(&self.path, name);
                    (key, unknown_key(name, known))
                }
                other => (
                    self.path.clone(),
                    format!(
                        "a key must be a setting name, not {}; the keys here are {}",
                        other.kind(),
                        known.join(", ")
                    ),
                ),
            };
            p.push(key, k.line.or(self.line), message);
        }
    }
}

/// The key path of a child; the name is left out of the path when it may not be shown (an
/// indentation slip can turn a secret into a key).
fn child_key(path: &str, name: &str) -> (String, bool) {
    if super::redact::key_may_be_shown(name) {
        let key = if path.is_empty() {
            name.to_owned()
        } else {
            format!("{path}.{name}")
        };
        (key, true)
    } else {
        (path.to_owned(), false)
    }
}
