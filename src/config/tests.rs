//! Unit tests of the whole way from text to [`Config`]: defaults, every key, every problem
//! with its key path and line, secrets kept out of messages, files relative to the config.

use super::*;
use secrecy::ExposeSecret;
use std::sync::Arc;
use std::time::Duration;

fn env(k: &str) -> Option<String> {
    match k {
        "SECRET" => Some("s3cr3t-value".into()),
        "TOKEN" => Some("tok-123".into()),
        _ => None,
    }
}

fn parse(yaml: &str) -> Result<Config, ConfigErrors> {
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
    assert_eq!(a.pools, [Arc::from("POOL-001"), Arc::from("POOL-002")]);
    assert_eq!(
        a.cards,
        [
            Arc::from("89860000000000000001"),
            Arc::from("89860000000000000002")
        ]
    );
    assert_eq!(c.collect.timeout, Duration::from_secs(90));
    assert_eq!(c.collect.history.card_days, 2);
    assert_eq!(c.collect.utc_offset, "-05:30");
    let opts = a.client_options();
    assert_eq!(
        opts.headers,
        vec![("X-Token".to_string(), "tok-123".to_string())]
    );
    let red = c.redacted_yaml();
    assert!(!red.contains("tok-123"));
    assert!(red.contains("timeout: 1m30s"), "{red}");
    let back = parse(&red).unwrap();
    assert_eq!(back.collect, c.collect);
}

/// The only problem of a file that has exactly one.
fn err_of(yaml: &str) -> ConfigError {
    let errs = parse(yaml).expect_err("should fail");
    assert_eq!(errs.len(), 1, "one problem expected:\n{errs}");
    errs.first().clone()
}

#[test]
fn errors_name_the_key_and_line() {
    let e = err_of(&format!("{MINIMAL}    bogus: 1\n"));
    assert_eq!(e.key, "accounts[0].bogus");
    assert!(e.message.contains("bogus"), "{e}");
    assert_eq!(e.line, Some(6));

    let e = err_of(&format!("{MINIMAL}collect:\n  pool_ttl: 5 parsecs\n"));
    assert_eq!(
        (e.key.as_str(), e.line),
        ("collect.pool_ttl", Some(7)),
        "{e}"
    );

    let e = err_of(&format!("{MINIMAL}{}", &MINIMAL["accounts:\n".len()..]));
    assert_eq!((e.key.as_str(), e.line), ("accounts[1].name", Some(6)));
    assert!(
        e.message.contains("duplicate") && e.message.contains("line 2"),
        "{e}"
    );

    let e = err_of(&MINIMAL.replace("${SECRET}", "${NOPE}"));
    assert_eq!(
        (e.key.as_str(), e.line),
        ("accounts[0].app_secret", Some(5))
    );
    assert!(e.message.contains("NOPE is not set"));

    let e = err_of(&MINIMAL.replace("    app_secret: ${SECRET}\n", ""));
    assert_eq!(
        (e.key.as_str(), e.line),
        ("accounts[0].app_secret", Some(2))
    );

    let e = err_of(&format!("{MINIMAL}    cards_file: missing.txt\n"));
    assert_eq!(
        (e.key.as_str(), e.line),
        ("accounts[0].cards_file", Some(6))
    );

    let e = err_of(&MINIMAL.replace("https://api.example.com/p", "ftp://x"));
    assert_eq!((e.key.as_str(), e.line), ("accounts[0].base_url", Some(3)));
    assert!(e.message.contains("e.g. https://"), "{e}");

    let e = err_of(&MINIMAL.replace("name: main", "name: \"ma in\""));
    assert_eq!((e.key.as_str(), e.line), ("accounts[0].name", Some(2)));

    let e = err_of(&format!("{MINIMAL}    cards: [\"123\"]\n"));
    assert_eq!((e.key.as_str(), e.line), ("accounts[0].cards[0]", Some(6)));

    let e = err_of(&format!(
        "{MINIMAL}collect:\n  history: {{pool_days: 31}}\n"
    ));
    assert_eq!(
        (e.key.as_str(), e.line),
        ("collect.history.pool_days", Some(7))
    );

    let e = err_of(&format!("{MINIMAL}collect:\n  utc_offset: \"8\"\n"));
    assert_eq!((e.key.as_str(), e.line), ("collect.utc_offset", Some(7)));

    let e = err_of(&format!("{MINIMAL}    auth: kerberos\n"));
    assert_eq!((e.key.as_str(), e.line), ("accounts[0].auth", Some(6)));

    let e = err_of(&format!("{MINIMAL}collect:\n  concurrency: 0\n"));
    assert_eq!((e.key.as_str(), e.line), ("collect.concurrency", Some(7)));

    let e = err_of("accounts: []\n");
    assert_eq!((e.key.as_str(), e.line), ("accounts", Some(1)));
    let e = err_of(": : :\n");
    assert!(e.line.is_some(), "{e}");
    // a top-level key indented by one space: the line, and no "?" for a key path
    let e = err_of(&format!("{MINIMAL} collect:\n  timeout: 5s\n"));
    assert_eq!(e.key, "", "{e}");
    assert!(e.line.is_some() && !e.to_string().contains('?'), "{e}");
}

#[test]
fn display_is_key_line_message() {
    let e = err_of(&format!("{MINIMAL}collect:\n  timeout: 10\n"));
    assert_eq!(
        e.to_string(),
        "collect.timeout (line 7): a number without a unit; durations look like 30s, 5m, 1h30m (units ms, s, m, h, d, w)"
    );
    let e = err_of(&format!("{MINIMAL}collect:\n  timeout: 10 seconds\n"));
    assert!(e.message.contains("without spaces"), "{e}");
}

#[test]
fn every_problem_is_reported_in_file_order() {
    let y = "accounts:\n  - name: main\n    base_url: http://user:pw@${HOST}\n    app_key: k\n    app_secret: ${NOPE}\n    pools: [\"bad code\"]\n    cards: [123, 89860000000000000001]\n    colour: red\n  - name: main\n    base_url: ftp://x\n    auth: none\ncollect:\n  timeout: 10\n  pool_ttl: 10 seconds\n  concurrency: 2000\n  history: {pool_days: 31, card_months: -1}\n";
    let errs = parse(y).unwrap_err();
    let got: Vec<(String, Option<usize>)> = errs.iter().map(|e| (e.key.clone(), e.line)).collect();
    let want = [
        ("accounts[0].base_url", 3),
        ("accounts[0].app_secret", 5),
        ("accounts[0].pools[0]", 6),
        ("accounts[0].cards[0]", 7),
        ("accounts[0].colour", 8),
        ("accounts[1].name", 9),
        ("accounts[1].base_url", 10),
        ("collect.timeout", 13),
        ("collect.pool_ttl", 14),
        ("collect.concurrency", 15),
        ("collect.history.pool_days", 16),
        ("collect.history.card_months", 16),
    ];
    let want: Vec<(String, Option<usize>)> = want
        .iter()
        .map(|(k, l)| (k.to_string(), Some(*l)))
        .collect();
    assert_eq!(got, want, "\n{errs}");
    let text = errs.to_string();
    assert_eq!(text.lines().count(), want.len(), "{text}");
    assert!(text.contains("HOST is not set"), "{text}");
}

#[test]
fn secret_values_never_in_errors() {
    let y = MINIMAL.to_string() + "    headers: {\"X-A\": \"bad\\nvalue-s3cr3t\"}\n";
    let e = err_of(&y);
    assert_eq!(e.key, "accounts[0].headers.X-A");
    assert!(!e.to_string().contains("s3cr3t"));
}

#[test]
fn secret_slips_are_not_echoed() {
    // userinfo in the base URL: the password is replaced
    let y = MINIMAL.replace(
        "https://api.example.com/p",
        "http://user:S3cretPw9@api.example.com",
    );
    let e = err_of(&y);
    assert_eq!(e.key, "accounts[0].base_url");
    assert!(!e.to_string().contains("S3cretPw9"), "{e}");
    assert!(
        e.to_string().contains("http://user:xxxxx@api.example.com"),
        "{e}"
    );
    // an indentation slip makes the secret a key
    let y = MINIMAL.replace(
        "    app_secret: ${SECRET}\n",
        "    app_secret:\n    Zq8-SlippedSecret-4x:\n",
    );
    let errs = parse(&y).unwrap_err();
    let text = errs.to_string();
    assert!(!text.contains("SlippedSecret"), "{text}");
    assert!(text.contains("an unknown key of 20 characters"), "{text}");
    assert!(text.contains("accounts[0].app_secret"), "{text}");
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
        let e = parse(&y).unwrap_err();
        let text = e.to_string();
        assert!(!text.contains("s3cr3t") && !text.contains("831977"), "{text}");
    }
    let e = err_of(&format!("{MINIMAL}collect:\n  concurrency: eight\n"));
    assert_eq!(e.key, "collect.concurrency");
    assert!(e.to_string().contains("found a string"), "{e}");
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
    assert_eq!(
        a.cards,
        [
            Arc::from("89860000000000000001"),
            Arc::from("89860000000000000009")
        ]
    );
    std::fs::write(
        dir.path().join("iccids.txt"),
        "89860000000000000009\nnot-an-iccid\n123\n",
    )
    .unwrap();
    let errs = Config::load(&path).unwrap_err();
    assert_eq!(errs.len(), 2, "{errs}");
    for e in &errs {
        assert_eq!(
            (e.key.as_str(), e.line),
            ("accounts[0].cards_file", Some(7))
        );
    }
    assert!(errs.first().message.contains("line 2"), "{errs}");
}

#[test]
fn auth_none_needs_no_credentials() {
    let c = parse("accounts:\n  - name: a\n    base_url: http://x\n    auth: none\n").unwrap();
    assert_eq!(c.accounts[0].client_options().signer.scheme(), "none");
}

#[test]
fn unconfigured_probe_percent_is_a_bounded_share() {
    assert_eq!(
        parse(MINIMAL).unwrap().collect.unconfigured_probe_percent,
        20
    );
    let off = format!("{MINIMAL}collect:\n  unconfigured_probe_percent: 0\n");
    assert_eq!(parse(&off).unwrap().collect.unconfigured_probe_percent, 0);
    let y = parse(&off).unwrap().redacted_yaml();
    assert!(y.contains("unconfigured_probe_percent: 0"), "{y}");
    let e = err_of(&format!(
        "{MINIMAL}collect:\n  unconfigured_probe_percent: 101\n"
    ));
    assert_eq!(e.key, "collect.unconfigured_probe_percent");
    assert_eq!(e.line, Some(7));
}
