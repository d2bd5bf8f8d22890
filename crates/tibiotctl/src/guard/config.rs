//! The guard file (`--guard.file`, README "Protecting a pool"): YAML → a validated
//! [`GuardConfig`]. Parsing is strict like the exporter's configuration: unknown keys are
//! errors, and every error names the key path (`policies[1].match`) and, where the YAML parser
//! knows it, the line. `protect_file` and `audit_log` are relative to the guard file's folder;
//! `protect_file` is read again on every reload.

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};
use tibiot_exporter::config::{excerpt, is_valid_iccid, read_cards_file};

/// Default of `limits.max_cards_per_hour`.
pub const DEFAULT_MAX_CARDS_PER_HOUR: u32 = 20;
/// Largest `limits.max_cards_per_hour` accepted.
const MAX_CARDS_PER_HOUR: u32 = 10_000;

/// A guard-file error: key path, line where known, what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuardConfigError {
    /// Key path such as `policies[0].action`; empty for the whole file.
    pub key: String,
    pub line: Option<usize>,
    pub message: String,
}

impl GuardConfigError {
    fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            line: None,
            message: message.into(),
        }
    }
}

impl fmt::Display for GuardConfigError {
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

impl std::error::Error for GuardConfigError {}

/// `mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Deserialize)]
pub enum Mode {
    /// Log, audit and count what would be done; send nothing.
    #[default]
    #[serde(rename = "dry-run")]
    DryRun,
    /// Switch cards.
    #[serde(rename = "enforce")]
    Enforce,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::DryRun => "dry-run",
            Mode::Enforce => "enforce",
        }
    }
}

/// `policies[].action`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum PolicyAction {
    /// Switch the network of the card named by the alert's `iccid` label off.
    #[serde(rename = "disable")]
    Disable,
}

/// One policy: which alerts it takes, and what it does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub name: String,
    /// Equality matchers on the alert's labels (every one must hold).
    pub matchers: BTreeMap<String, String>,
    pub action: PolicyAction,
    /// A resolved alert switches the card it switched off back on.
    pub reenable_on_resolve: bool,
}

impl Policy {
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.matchers
            .iter()
            .all(|(k, v)| labels.get(k).is_some_and(|l| l == v))
    }
}

/// A validated guard file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuardConfig {
    pub mode: Mode,
    /// In file order; the first policy that matches an alert decides.
    pub policies: Vec<Policy>,
    pub max_cards_per_hour: u32,
    /// `protect` and the entries of `protect_file`.
    pub protect: BTreeSet<String>,
    /// Resolved path of `protect_file`.
    pub protect_file: Option<PathBuf>,
    /// Resolved path of `audit_log`.
    pub audit_log: PathBuf,
}

impl GuardConfig {
    /// The first policy matching `labels`.
    pub fn policy_for(&self, labels: &BTreeMap<String, String>) -> Option<&Policy> {
        self.policies.iter().find(|p| p.matches(labels))
    }

    /// Reads and validates the file at `path`.
    pub fn load(path: &Path) -> Result<GuardConfig, GuardConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            GuardConfigError::new(
                "",
                format!("cannot read guard file {}: {}", path.display(), e.kind()),
            )
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Self::parse(&text, base)
    }

    /// Parses YAML text; relative paths resolve against `base_dir`.
    pub fn parse(yaml: &str, base_dir: &Path) -> Result<GuardConfig, GuardConfigError> {
        let de = serde_yaml_ng::Deserializer::from_str(yaml);
        let raw: RawGuard = serde_path_to_error::deserialize(de).map_err(|e| {
            let key = e.path().to_string();
            let key = key.trim_end_matches(".?");
            let key = if key == "." || key == "?" {
                String::new()
            } else {
                key.to_owned()
            };
            let inner = e.into_inner();
            GuardConfigError {
                line: inner.location().map(|l| l.line()),
                message: strip_location(&inner.to_string(), &key),
                key,
            }
        })?;
        validate(raw, base_dir)
    }
}

/// serde_yaml_ng appends "at line L column C" (the line is reported separately) and may
/// prefix its own path, which the key already names.
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGuard {
    #[serde(default)]
    mode: Mode,
    #[serde(default)]
    policies: Vec<RawPolicy>,
    #[serde(default)]
    limits: RawLimits,
    #[serde(default, deserialize_with = "scalar_strings")]
    protect: Vec<String>,
    #[serde(default)]
    protect_file: Option<String>,
    #[serde(default)]
    audit_log: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    name: String,
    #[serde(rename = "match")]
    matchers: BTreeMap<String, ScalarString>,
    action: PolicyAction,
    #[serde(default)]
    reenable_on_resolve: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    #[serde(default)]
    max_cards_per_hour: Option<u32>,
}

/// A scalar (string or integer) as a string: YAML reads an unquoted ICCID as an integer,
/// and its digits must stay exact.
#[derive(Debug)]
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
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<ScalarString, E> {
                Ok(ScalarString(v.to_string()))
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

fn scalar_strings<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    Option::<Vec<ScalarString>>::deserialize(d)
        .map(|v| v.unwrap_or_default().into_iter().map(|s| s.0).collect())
}

fn is_valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// A Prometheus label name.
fn is_valid_label_name(s: &str) -> bool {
    let mut b = s.bytes();
    matches!(b.next(), Some(c) if c.is_ascii_alphabetic() || c == b'_')
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'_')
}

fn resolve(base: &Path, p: &str) -> PathBuf {
    let p = Path::new(p);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

fn validate(raw: RawGuard, base: &Path) -> Result<GuardConfig, GuardConfigError> {
    if raw.policies.is_empty() {
        return Err(GuardConfigError::new(
            "policies",
            "at least one policy is required",
        ));
    }
    let mut names = HashSet::new();
    let mut policies = Vec::with_capacity(raw.policies.len());
    for (i, p) in raw.policies.into_iter().enumerate() {
        let key = |k: &str| format!("policies[{i}].{k}");
        if !is_valid_name(&p.name) {
            return Err(GuardConfigError::new(
                key("name"),
                format!(
                    "{} is not a policy name (1-64 of A-Z a-z 0-9 _ -)",
                    excerpt(&p.name)
                ),
            ));
        }
        if !names.insert(p.name.clone()) {
            return Err(GuardConfigError::new(
                key("name"),
                format!("duplicate policy name {:?}", p.name),
            ));
        }
        if p.matchers.is_empty() {
            return Err(GuardConfigError::new(
                key("match"),
                "at least one label matcher is required (a policy never takes every alert)",
            ));
        }
        let mut matchers = BTreeMap::new();
        for (label, value) in p.matchers {
            if !is_valid_label_name(&label) {
                return Err(GuardConfigError::new(
                    format!("{}.{label}", key("match")),
                    format!("{} is not a label name", excerpt(&label)),
                ));
            }
            matchers.insert(label, value.0);
        }
        policies.push(Policy {
            name: p.name,
            matchers,
            action: p.action,
            reenable_on_resolve: p.reenable_on_resolve,
        });
    }
    let max_cards_per_hour = raw
        .limits
        .max_cards_per_hour
        .unwrap_or(DEFAULT_MAX_CARDS_PER_HOUR);
    if !(1..=MAX_CARDS_PER_HOUR).contains(&max_cards_per_hour) {
        return Err(GuardConfigError::new(
            "limits.max_cards_per_hour",
            format!(
                "must be 1 to {MAX_CARDS_PER_HOUR} (use mode: dry-run to switch nothing), got {max_cards_per_hour}"
            ),
        ));
    }
    let mut protect = BTreeSet::new();
    for (i, c) in raw.protect.iter().enumerate() {
        let c = c.trim();
        if !is_valid_iccid(c) {
            return Err(GuardConfigError::new(
                format!("protect[{i}]"),
                format!("{} is not an ICCID (18-22 digits)", excerpt(c)),
            ));
        }
        protect.insert(c.to_owned());
    }
    let protect_file = match raw.protect_file.as_deref().map(str::trim) {
        None => None,
        Some("") => {
            return Err(GuardConfigError::new(
                "protect_file",
                "must not be empty (leave the key out)",
            ));
        }
        Some(p) => {
            let path = resolve(base, p);
            let list = read_cards_file(&path)
                .map_err(|e| GuardConfigError::new("protect_file", e.to_string()))?;
            protect.extend(list);
            Some(path)
        }
    };
    let audit_log = match raw.audit_log.as_deref().map(str::trim) {
        None | Some("") => {
            return Err(GuardConfigError::new(
                "audit_log",
                "required: the file the guard appends every decision to and rebuilds its state from",
            ));
        }
        Some(p) => resolve(base, p),
    };
    Ok(GuardConfig {
        mode: raw.mode,
        policies,
        max_cards_per_hour,
        protect,
        protect_file,
        audit_log,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "mode: enforce
policies:
  - name: runaway-cards
    match: {alertname: TibiotCardRunaway}
    action: disable
    reenable_on_resolve: true
limits:
  max_cards_per_hour: 5
protect: [89860000000000000001, \"89860000000000000002\"]
audit_log: audit.jsonl
";

    #[test]
    fn parses_the_documented_example() {
        let c = GuardConfig::parse(GOOD, Path::new("/etc/g")).unwrap();
        assert_eq!(c.mode, Mode::Enforce);
        assert_eq!(c.max_cards_per_hour, 5);
        assert_eq!(c.audit_log, PathBuf::from("/etc/g/audit.jsonl"));
        assert!(c.protect.contains("89860000000000000001"));
        assert!(c.protect.contains("89860000000000000002"));
        let p = &c.policies[0];
        assert!(p.reenable_on_resolve);
        let mut labels = BTreeMap::new();
        labels.insert("alertname".to_owned(), "TibiotCardRunaway".to_owned());
        labels.insert("iccid".to_owned(), "1".to_owned());
        assert!(p.matches(&labels));
        labels.insert("alertname".to_owned(), "Other".to_owned());
        assert!(c.policy_for(&labels).is_none());
    }

    #[test]
    fn defaults() {
        let c = GuardConfig::parse(
            "policies: [{name: p, match: {a: b}, action: disable}]\naudit_log: a.jsonl\n",
            Path::new("."),
        )
        .unwrap();
        assert_eq!(c.mode, Mode::DryRun);
        assert_eq!(c.max_cards_per_hour, DEFAULT_MAX_CARDS_PER_HOUR);
        assert!(!c.policies[0].reenable_on_resolve);
    }

    #[test]
    fn errors_name_the_key() {
        let cases = [
            (GOOD.replace("mode: enforce", "mode: yolo"), "mode"),
            (
                GOOD.replace("action: disable", "action: delete"),
                "policies[0].action",
            ),
            (
                GOOD.replace("    reenable_on_resolve: true\n", "    colour: red\n"),
                "policies[0]",
            ),
            (
                GOOD.replace("{alertname: TibiotCardRunaway}", "{}"),
                "policies[0].match",
            ),
            (
                GOOD.replace("alertname: T", "0bad: T"),
                "policies[0].match.0bad",
            ),
            (
                GOOD.replace("name: runaway-cards", "name: 'a b'"),
                "policies[0].name",
            ),
            (
                GOOD.replace("max_cards_per_hour: 5", "max_cards_per_hour: 0"),
                "limits.max_cards_per_hour",
            ),
            (
                GOOD.replace("max_cards_per_hour: 5", "max_cards_per_hour: -1"),
                "limits.max_cards_per_hour",
            ),
            (
                GOOD.replace("89860000000000000001,", "12345,"),
                "protect[0]",
            ),
            (GOOD.replace("audit_log: audit.jsonl\n", ""), "audit_log"),
            (
                GOOD.replace(
                    "audit_log: audit.jsonl\n",
                    "protect_file: nope.txt\naudit_log: a\n",
                ),
                "protect_file",
            ),
            (format!("{GOOD}extra: 1\n"), ""),
        ];
        for (yaml, key) in cases {
            let e = GuardConfig::parse(&yaml, Path::new("/nonexistent")).unwrap_err();
            assert!(e.to_string().starts_with(key), "{key}: got {e} for\n{yaml}");
        }
        let e = GuardConfig::parse(&format!("{GOOD}extra: 1\n"), Path::new(".")).unwrap_err();
        assert!(e.message.contains("extra"), "{e}");
        assert_eq!(e.line, Some(11), "{e}");
    }

    #[test]
    fn protect_file_is_read() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("p.txt"), "# keep\n89860000000000000009\n\n").unwrap();
        let yaml = GOOD.replace("audit_log:", "protect_file: p.txt\naudit_log:");
        let c = GuardConfig::parse(&yaml, dir.path()).unwrap();
        assert!(c.protect.contains("89860000000000000009"));
        std::fs::write(dir.path().join("p.txt"), "123\n").unwrap();
        let e = GuardConfig::parse(&yaml, dir.path()).unwrap_err();
        assert_eq!(e.key, "protect_file");
        assert!(e.message.contains("line 1"), "{e}");
    }
}
