//! Property tests (bounded fuzzing) of the configuration parser (docs/config.md): arbitrary text
//! and mutated valid files never panic; every error names a key path or a line; a secret
//! (`app_secret`, a header value, an environment variable's value) never appears in an error
//! message or in the redacted YAML; generated valid files parse to what they say.
//!
//! Cases per property: `PROPTEST_CASES` (default 384).

use proptest::prelude::*;
use std::path::Path;
use std::time::Duration;
use tibiot_exporter::config::{Config, ConfigErrors, expand};

fn config(default_cases: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default_cases);
    ProptestConfig {
        cases,
        ..ProptestConfig::default()
    }
}

/// The environment of these tests.
fn env(k: &str) -> Option<String> {
    match k {
        "SECRET" => Some(ENV_SECRET.into()),
        "HOST" => Some("127.0.0.1:9".into()),
        _ => None,
    }
}
const ENV_SECRET: &str = "EnvSecretValue-7q2";

fn parse(yaml: &str) -> Result<Config, ConfigErrors> {
    Config::parse_with_env(yaml, Path::new("/nonexistent-dir"), &env)
}

/// An error must point somewhere: a key path or a line.
/// Known exception (reported to the lead): a top-level key indented differently from the
/// others (` accounts:` then `collect:`) makes serde_yaml_ng see a second document, and its
/// error carries no position.
const MULTI_DOC: &str = "more than one document";

fn assert_located(yaml: &str, errors: &ConfigErrors) -> Result<(), TestCaseError> {
    prop_assert!(!errors.is_empty());
    for e in errors {
        assert_one_located(yaml, e)?;
    }
    Ok(())
}

fn assert_one_located(
    yaml: &str,
    e: &tibiot_exporter::config::ConfigError,
) -> Result<(), TestCaseError> {
    prop_assert!(
        !e.key.is_empty() || e.line.is_some() || e.message.contains(MULTI_DOC),
        "error names neither key nor line: {e:?}\n--- input ---\n{yaml}"
    );
    prop_assert!(!e.message.is_empty());
    // the key is said once, not repeated by the YAML library's own path prefix
    if let Some((path, _)) = e.message.split_once(": ") {
        prop_assert!(
            path.is_empty() || !e.key.starts_with(path),
            "message repeats the key: {e}"
        );
    }
    Ok(())
}

/// A valid file using every key.
const FULL: &str = "\
accounts:
  - name: main
    base_url: http://${HOST}/prefix
    auth: hmac-sha256
    app_key: key-1
    app_secret: ${SECRET}
    headers:
      X-Tenant: acme
    success_codes: [0, 200]
    pools: [POOL-001, POOL-002]
    cards: [89860000000000000001, \"89860000000000000002\"]
  - name: second
    base_url: https://api.example.com
    auth: none
    pools:
      - P.3
collect:
  timeout: 10s
  timeout_offset: 500ms
  concurrency: 8
  requests_per_second: 20
  pool_ttl: 1m
  card_ttl: 15m
  history_ttl: 1h
  stale_after: 1h
  history:
    pool_days: 30
    pool_months: 12
    card_days: 0
    card_months: 0
  utc_offset: \"+08:00\"
";

/// Text fragments that YAML and our schema care about.
fn arb_fragment() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(":".to_owned()),
        Just(" ".to_owned()),
        Just("  ".to_owned()),
        Just("\n".to_owned()),
        Just("- ".to_owned()),
        Just("[".to_owned()),
        Just("]".to_owned()),
        Just("{".to_owned()),
        Just("\"".to_owned()),
        Just("'".to_owned()),
        Just("#".to_owned()),
        Just("&a ".to_owned()),
        Just("*a".to_owned()),
        Just("!!str ".to_owned()),
        Just("${".to_owned()),
        Just("${NOPE}".to_owned()),
        Just("$$".to_owned()),
        Just("~".to_owned()),
        Just("|".to_owned()),
        Just(">-".to_owned()),
        Just("-1".to_owned()),
        Just("99999999999999999999999999".to_owned()),
        Just("1.5".to_owned()),
        Just("0".to_owned()),
        Just("0s".to_owned()),
        Just("true".to_owned()),
        Just("\t".to_owned()),
        Just("\u{feff}".to_owned()),
        Just("<<: *a".to_owned()),
        Just("pools".to_owned()),
        Just("collect:".to_owned()),
        Just("history: {pool_days: 31}".to_owned()),
        Just("cards_file: nope.txt".to_owned()),
        Just("app_secret_file: nope".to_owned()),
        "[a-z_]{1,12}: [^\n]{0,12}",
        ".{0,8}",
    ]
}

#[derive(Debug, Clone)]
enum Mutation {
    /// Delete a byte range.
    Delete(prop::sample::Index, usize),
    /// Insert a fragment at a byte position.
    Insert(prop::sample::Index, String),
    /// Replace one line.
    ReplaceLine(prop::sample::Index, String),
    /// Duplicate one line.
    DuplicateLine(prop::sample::Index),
    /// Swap two lines.
    SwapLines(prop::sample::Index, prop::sample::Index),
    /// Change one line's indentation.
    Indent(prop::sample::Index, usize),
}

fn arb_mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<prop::sample::Index>(), 1usize..12).prop_map(|(i, n)| Mutation::Delete(i, n)),
        (any::<prop::sample::Index>(), arb_fragment()).prop_map(|(i, s)| Mutation::Insert(i, s)),
        (any::<prop::sample::Index>(), arb_fragment())
            .prop_map(|(i, s)| Mutation::ReplaceLine(i, s)),
        any::<prop::sample::Index>().prop_map(Mutation::DuplicateLine),
        (any::<prop::sample::Index>(), any::<prop::sample::Index>())
            .prop_map(|(a, b)| Mutation::SwapLines(a, b)),
        (any::<prop::sample::Index>(), 0usize..8).prop_map(|(i, n)| Mutation::Indent(i, n)),
    ]
}

/// Floors `i` to a character boundary of `s`.
fn floor_boundary(s: &str, mut i: usize) -> usize {
    i = i.min(s.len());
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// Applies mutations; lines listed in `keep` (0-based) are never touched, so that a secret
/// on them stays where it is.
fn mutate(text: &str, muts: &[Mutation], keep: &[usize]) -> String {
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let free: Vec<usize> = (0..lines.len()).filter(|i| !keep.contains(i)).collect();
    for m in muts {
        if free.is_empty() {
            break;
        }
        match m {
            Mutation::Delete(i, n) => {
                let li = free[i.index(free.len())];
                let l = &mut lines[li];
                if l.is_empty() {
                    continue;
                }
                let a = floor_boundary(l, i.index(l.len()));
                let b = floor_boundary(l, a + n);
                l.replace_range(a..b, "");
            }
            Mutation::Insert(i, s) => {
                let li = free[i.index(free.len())];
                let l = &mut lines[li];
                let a = floor_boundary(l, i.index(l.len() + 1));
                l.insert_str(a, s);
            }
            Mutation::ReplaceLine(i, s) => {
                let li = free[i.index(free.len())];
                lines[li] = s.clone();
            }
            Mutation::DuplicateLine(i) => {
                let li = free[i.index(free.len())];
                lines[li] = format!("{}\n{}", lines[li], lines[li]);
            }
            Mutation::SwapLines(a, b) => {
                let (a, b) = (free[a.index(free.len())], free[b.index(free.len())]);
                lines.swap(a, b);
            }
            Mutation::Indent(i, n) => {
                let li = free[i.index(free.len())];
                let t = lines[li].trim_start().to_owned();
                lines[li] = format!("{}{t}", " ".repeat(*n));
            }
        }
    }
    lines.join("\n") + "\n"
}

/// A secret as it might be written: distinctive enough not to occur by chance elsewhere.
fn arb_secret() -> impl Strategy<Value = String> {
    prop_oneof![
        "[A-Za-z][A-Za-z0-9+/=_-]{9,30}",
        // all digits: YAML reads it as an integer when unquoted
        "[1-9][0-9]{9,17}",
        // characters that need quoting
        "[A-Za-z0-9 #:,\\[\\]{}&*!|>'%@`]{10,24}",
    ]
}

/// A secret written into YAML: unquoted when that reads back as the same scalar text,
/// double-quoted otherwise.
fn yaml_scalar(s: &str, quote: bool) -> String {
    let plain_ok = s
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"+/=_-".contains(&b))
        && !s.starts_with('-');
    if quote || !plain_ok {
        serde_json::to_string(s).unwrap()
    } else {
        s.to_owned()
    }
}

proptest! {
    #![proptest_config(config(384))]

    /// Arbitrary text never panics the parser, and any error is located.
    #[test]
    fn arbitrary_text_never_panics(text in prop_oneof![".{0,200}", "(\\PC{0,40}\n){0,8}", "([ a-z_:\\-\\[\\]{}0-9]{0,30}\n){0,10}"]) {
        if let Err(e) = parse(&text) {
            assert_located(&text, &e)?;
        }
    }

    /// Mutated valid files never panic the parser, and any error is located.
    #[test]
    fn mutated_valid_file_never_panics(muts in proptest::collection::vec(arb_mutation(), 1..5)) {
        let text = mutate(FULL, &muts, &[]);
        match parse(&text) {
            Err(e) => assert_located(&text, &e)?,
            Ok(cfg) => {
                // whatever was accepted is valid by the documented rules
                prop_assert!(!cfg.accounts.is_empty());
                prop_assert!(cfg.collect.concurrency >= 1);
                prop_assert!(cfg.collect.timeout_offset < cfg.collect.timeout);
                prop_assert!(!cfg.redacted_yaml().contains(ENV_SECRET));
            }
        }
    }

    /// A secret never appears in an error message or in the redacted YAML, whether it is
    /// given literally, as a header value (quoted or not), or through `${VAR}`, while the
    /// rest of the file is mutated.
    #[test]
    fn secrets_never_leak(
        secret in arb_secret(),
        header_secret in arb_secret(),
        quote in any::<bool>(),
        via_env in any::<bool>(),
        muts in proptest::collection::vec(arb_mutation(), 0..4),
    ) {
        let env_secret = secret.clone();
        let lookup = move |k: &str| (k == "S").then(|| env_secret.clone());
        let secret_line = if via_env {
            "    app_secret: ${S}".to_owned()
        } else {
            format!("    app_secret: {}", yaml_scalar(&secret, quote))
        };
        let text = format!(
            "accounts:\n  - name: main\n    base_url: http://127.0.0.1:9\n    app_key: k\n{secret_line}\n    headers:\n      X-Api-Key: {}\n    pools: [P1]\ncollect:\n  timeout: 5s\n",
            yaml_scalar(&header_secret, quote)
        );
        // keep the lines that hold secrets and the structure right above them
        let text = mutate(&text, &muts, &[0, 1, 4, 5, 6]);
        match Config::parse_with_env(&text, Path::new("/nonexistent-dir"), &lookup) {
            Err(e) => {
                let shown = format!("{e} {e:?}");
                prop_assert!(!shown.contains(&secret), "secret in error: {shown}\n--- input ---\n{text}");
                prop_assert!(!shown.contains(&header_secret), "header secret in error: {shown}\n--- input ---\n{text}");
                assert_located(&text, &e)?;
            }
            Ok(cfg) => {
                let y = cfg.redacted_yaml();
                let d = format!("{cfg:?}");
                for s in [&secret, &header_secret] {
                    prop_assert!(!y.contains(s.as_str()), "secret in redacted YAML:\n{y}");
                    prop_assert!(!d.contains(s.as_str()), "secret in Debug:\n{d}");
                }
            }
        }
    }

    /// Generated valid files parse to exactly what they say, and the redacted YAML (what
    /// `/config` shows) parses back to the same targets and settings.
    #[test]
    fn generated_valid_files_round_trip(
        accounts in proptest::collection::vec((
            "[A-Za-z0-9_-]{1,20}",
            proptest::collection::vec("[A-Za-z0-9_.-]{1,20}", 0..6),
            proptest::collection::vec("[0-9]{18,22}", 0..6),
            any::<bool>(),
        ), 1..4),
        secs in (1u64..600, 0u64..1000, 1usize..64, 0u32..100),
        ttls in (1u64..100_000, 1u64..100_000, 1u64..100_000, 1u64..100_000),
        hist in (0u32..=30, 0u32..=12, 0u32..=30, 0u32..=12),
        off in (-14i32..=14, prop::sample::select(vec![0, 30, 45])),
    ) {
        let mut names = std::collections::HashSet::new();
        let accounts: Vec<_> = accounts.into_iter().filter(|a| names.insert(a.0.clone())).collect();
        let mut y = String::from("accounts:\n");
        for (name, pools, cards, quoted) in &accounts {
            // unquoted only where YAML reads the token back as the same string or an integer
            let q = |s: &str| {
                let plain = s.starts_with(|c: char| c.is_ascii_alphabetic())
                    && !["true", "false", "null", "y", "n", "yes", "no", "on", "off"]
                        .contains(&s.to_ascii_lowercase().as_str())
                    || s.bytes().all(|b| b.is_ascii_digit()) && !s.starts_with('0');
                if *quoted || !plain { format!("\"{s}\"") } else { s.to_owned() }
            };
            y += &format!("  - name: {}\n    base_url: http://127.0.0.1:1\n    app_key: k\n    app_secret: ${{SECRET}}\n", q(name));
            y += &format!("    pools: [{}]\n", pools.iter().map(|p| q(p)).collect::<Vec<_>>().join(", "));
            y += &format!("    cards: [{}]\n", cards.iter().map(|c| q(c)).collect::<Vec<_>>().join(", "));
        }
        let (timeout, offset_ms, conc, rps) = secs;
        let offset_ms = offset_ms.min(timeout * 1000 - 1);
        let (h, m) = off;
        let utc = format!("{}{:02}:{:02}", if h < 0 { '-' } else { '+' }, h.abs(), m);
        y += &format!(
            "collect:\n  timeout: {timeout}s\n  timeout_offset: {offset_ms}ms\n  concurrency: {conc}\n  requests_per_second: {rps}\n  pool_ttl: {}s\n  card_ttl: {}s\n  history_ttl: {}s\n  stale_after: {}s\n  history: {{pool_days: {}, pool_months: {}, card_days: {}, card_months: {}}}\n  utc_offset: \"{utc}\"\n",
            ttls.0, ttls.1, ttls.2, ttls.3, hist.0, hist.1, hist.2, hist.3
        );
        let cfg = parse(&y).map_err(|e| TestCaseError::fail(format!("{e}\n{y}")))?;
        prop_assert_eq!(cfg.accounts.len(), accounts.len());
        for (a, (name, pools, cards, _)) in cfg.accounts.iter().zip(&accounts) {
            prop_assert_eq!(&a.name, name);
            let mut want_p: Vec<String> = Vec::new();
            for p in pools { if !want_p.contains(p) { want_p.push(p.clone()); } }
            let mut want_c: Vec<String> = Vec::new();
            for c in cards { if !want_c.contains(c) { want_c.push(c.clone()); } }
            let got_p: Vec<&str> = a.pools.iter().map(|p| &**p).collect();
            let got_c: Vec<&str> = a.cards.iter().map(|c| &**c).collect();
            prop_assert_eq!(got_p, want_p.iter().map(String::as_str).collect::<Vec<_>>());
            prop_assert_eq!(got_c, want_c.iter().map(String::as_str).collect::<Vec<_>>());
        }
        let c = &cfg.collect;
        prop_assert_eq!(c.timeout, Duration::from_secs(timeout));
        prop_assert_eq!(c.timeout_offset, Duration::from_millis(offset_ms));
        prop_assert_eq!(c.concurrency, conc);
        prop_assert_eq!(c.requests_per_second, rps);
        prop_assert_eq!(c.pool_ttl, Duration::from_secs(ttls.0));
        prop_assert_eq!(c.stale_after, Duration::from_secs(ttls.3));
        prop_assert_eq!((c.history.pool_days, c.history.pool_months, c.history.card_days, c.history.card_months), hist);
        let sign = if h < 0 { -1 } else { 1 };
        prop_assert_eq!(c.calendar.offset.local_minus_utc(), sign * (h.abs() * 3600 + m * 60));

        let red = cfg.redacted_yaml();
        prop_assert!(!red.contains(ENV_SECRET));
        let back = parse(&red).map_err(|e| TestCaseError::fail(format!("redacted YAML does not parse: {e}\n{red}")))?;
        prop_assert_eq!(&back.collect, &cfg.collect);
        for (a, b) in back.accounts.iter().zip(&cfg.accounts) {
            prop_assert_eq!(&a.name, &b.name);
            prop_assert_eq!(&a.pools, &b.pools);
            prop_assert_eq!(&a.cards, &b.cards);
        }
    }

    /// `${VAR}` expansion never panics; text without `$` is unchanged; `$$` is `$`; an unset
    /// variable's error names the key and the variable, never another value.
    #[test]
    fn expansion(s in prop_oneof![".{0,40}", "([a-z]{0,3}(\\$\\$|\\$\\{[A-Z]{0,4}\\}?|\\$)){0,5}"]) {
        let r = expand(&s, "k.path", &env);
        if !s.contains('$') {
            prop_assert_eq!(r.clone().unwrap(), s.clone());
        }
        match r {
            Ok(out) => {
                let uses_var = s.contains("${SECRET}");
                prop_assert!(uses_var || !out.contains(ENV_SECRET), "{}", out);
            }
            Err(e) => {
                prop_assert_eq!(e.key.as_str(), "k.path");
                prop_assert!(!e.to_string().contains(ENV_SECRET));
            }
        }
    }
}

/// Regression (found by `generated_valid_files_round_trip`): serde_yaml_ng prefixes its own
/// path to some messages, so errors read `accounts[0].pools[0]: accounts[0].pools[0]: ...`.
#[test]
fn error_messages_name_the_key_once() {
    for (yaml, key) in [
        (
            "accounts:\n  - name: a\n    base_url: http://x\n    auth: none\n    pools: [1.5]\n",
            "accounts[0].pools[0]",
        ),
        (
            "accounts:\n  - name: a\n    base_url: http://x\n    auth: none\n    bogus: 1\n",
            "accounts[0].bogus",
        ),
        (
            "accounts:\n  - name: a\n    base_url: http://x\n    app_key: k\n    app_secret: [a]\n",
            "accounts[0].app_secret",
        ),
    ] {
        let errs = parse(yaml).unwrap_err();
        assert_eq!(errs.len(), 1, "{errs}");
        let e = errs.first();
        assert_eq!(e.key, key);
        let shown = e.to_string();
        assert_eq!(shown.matches("accounts[0]").count(), 1, "{shown}");
        assert_eq!(e.line, Some(5), "{shown}");
    }
}

/// A secret that slipped where an error quotes what it finds: the password of the base URL's
/// userinfo, or a key made by an indentation slip (under the account, under `app_secret`,
/// or among the headers). Never in an error, whatever else is mutated. A secret made only of
/// `[a-z_]` looks like a setting name and is quoted as an unknown key by design, so the
/// secrets here have at least one other character.
#[test]
fn slipped_secrets_never_leak_example() {
    let errs = parse("accounts:\n  - name: a\n    base_url: http://u:Pw-Q7x9Zk2@127.0.0.1:9\n    app_key: k\n    app_secret: x\n").unwrap_err();
    assert!(!errs.to_string().contains("Pw-Q7x9Zk2"), "{errs}");
}

proptest! {
    #![proptest_config(config(384))]

    #[test]
    fn slipped_secrets_never_leak(
        secret in "[A-Za-z0-9][A-Za-z0-9_-]{9,30}",
        slip in 0usize..4,
        muts in proptest::collection::vec(arb_mutation(), 0..3),
    ) {
        prop_assume!(!tibiot_web::redact::key_is_shown(&secret));
        let lines = match slip {
            0 => format!("    base_url: http://tibiot:{secret}@127.0.0.1:9\n    app_key: k\n    app_secret: x\n"),
            1 => format!("    base_url: http://127.0.0.1:9\n    app_key: k\n    app_secret:\n    {secret}:\n"),
            2 => format!("    base_url: http://127.0.0.1:9\n    app_key: k\n    app_secret:\n      {secret}:\n"),
            _ => format!("    base_url: http://127.0.0.1:9\n    app_key: k\n    app_secret: x\n    headers:\n      X-Api-Key:\n      {secret}:\n"),
        };
        let text = format!("accounts:\n  - name: main\n{lines}    pools: [P1]\ncollect:\n  timeout: 5s\n");
        // the lines with the slip and the structure above them stay as they are
        let keep: Vec<usize> = (0..text.lines().count() - 3).collect();
        let text = mutate(&text, &muts, &keep);
        let errs = parse(&text).expect_err("every slip is an error");
        let shown = format!("{errs} {errs:?}");
        prop_assert!(!shown.contains(&secret), "secret in error: {}\n--- input ---\n{}", shown, text);
        assert_located(&text, &errs)?;
    }
}
