//! `tibiot-exporter check-config`, the real binary: a file with five different mistakes is
//! rejected (exit 2) with all five listed, one a line, `KEY (line N): message`, in file order,
//! and the server refuses it at start the same way; a valid file prints each account's request
//! budget (required and allowed rate, how far refresh periods stretch over budget); secrets
//! that slipped into a URL's userinfo or into a key never appear in the output.

use std::path::Path;
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_tibiot-exporter");

fn check(path: &Path) -> Output {
    Command::new(BIN)
        .arg("check-config")
        .arg(format!("--config.file={}", path.display()))
        .env_remove("CONFIG_CHECK_UNSET")
        .output()
        .unwrap()
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

const FIVE_MISTAKES: &str = "\
accounts:
  - name: main
    base_url: https://api.example.com
    app_key: key-1
    app_secret: ${CONFIG_CHECK_UNSET}
    cards:
      - 89860000000000000001
      - 8986000000000000000X
  - name: main
    base_url: ftp://api.example.com
    auth: none
collect:
  timeout: 10 seconds
";

#[test]
fn five_mistakes_are_all_listed_with_their_lines() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.yml");
    std::fs::write(&path, FIVE_MISTAKES).unwrap();
    let out = check(&path);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stdout}{stderr}");
    let problems: Vec<&str> = stderr.lines().skip(1).collect();
    assert!(
        stderr.lines().next().unwrap().contains("5 problems"),
        "{stderr}"
    );
    let want = [
        (
            "accounts[0].app_secret (line 5): ",
            "CONFIG_CHECK_UNSET is not set",
        ),
        ("accounts[0].cards[1] (line 8): ", "is not an ICCID"),
        ("accounts[1].name (line 9): ", "duplicate account name"),
        ("accounts[1].base_url (line 10): ", "e.g. https://"),
        ("collect.timeout (line 13): ", "30s, 5m, 1h30m"),
    ];
    assert_eq!(problems.len(), want.len(), "{stderr}");
    for (line, (start, has)) in problems.iter().zip(want) {
        assert!(line.starts_with(start), "want {start:?}: {line}");
        assert!(line.contains(has), "want {has:?}: {line}");
    }

    // The server refuses it at start the same way, every problem listed.
    let out = Command::new(BIN)
        .arg(format!("--config.file={}", path.display()))
        .arg("--web.listen-address=127.0.0.1:0")
        .env_remove("CONFIG_CHECK_UNSET")
        .output()
        .unwrap();
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    for (start, _) in want {
        assert!(stderr.contains(start), "want {start:?}: {stderr}");
    }
}

#[test]
fn a_valid_file_prints_each_accounts_request_budget() {
    let dir = tempfile::tempdir().unwrap();
    // 3,000 cards at card_ttl 60s need 50 req/s: over a budget of 20 by 2.5×.
    let cards: String = (0..3000).map(|i| format!("8986{:016}\n", i)).collect();
    std::fs::write(dir.path().join("fleet.txt"), cards).unwrap();
    let yaml = "\
accounts:
  - name: small
    base_url: https://api.example.com
    auth: none
    pools: [P-1, P-2]
  - name: fleet
    base_url: https://api.example.com
    auth: none
    cards_file: fleet.txt
collect:
  requests_per_second: 20
  pool_ttl: 1m
  card_ttl: 1m
  history_ttl: 1h
  history: {pool_days: 30, pool_months: 12, card_days: 0, card_months: 0}
";
    let path = dir.path().join("ok.yml");
    std::fs::write(&path, yaml).unwrap();
    let out = check(&path);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(
        stdout.contains("OK (2 account(s), 2 pool(s), 3000 card(s))"),
        "{stdout}"
    );
    // small: 2 × (1/60 + 2/3600) = 0.0344 req/s
    let small = stdout
        .lines()
        .find(|l| l.starts_with("account small: 2 pool(s)"))
        .unwrap_or_else(|| panic!("{stdout}"));
    assert!(small.contains("required 0.03 req/s"), "{small}");
    assert!(small.contains("allowed 20 req/s: within budget"), "{small}");
    let fill = stdout
        .lines()
        .find(|l| l.starts_with("account small: history fill"))
        .unwrap_or_else(|| panic!("{stdout}"));
    assert!(fill.contains("80 one-off requests"), "{fill}");
    let fleet = stdout
        .lines()
        .find(|l| l.starts_with("account fleet: 0 pool(s), 3000 card(s)"))
        .unwrap_or_else(|| panic!("{stdout}"));
    assert!(fleet.contains("required 50 req/s"), "{fleet}");
    assert!(fleet.contains("OVER BUDGET by 2.50x"), "{fleet}");
    assert!(fleet.contains("card_ttl 2m30s (configured 1m)"), "{fleet}");
    assert!(
        !fleet.contains("pool_ttl"),
        "no pools, no pool period: {fleet}"
    );
}

#[test]
fn secrets_that_slipped_are_not_printed() {
    let dir = tempfile::tempdir().unwrap();
    let secret = "Zq8SlippedSecret4x";
    for (what, yaml, key) in [
        (
            "userinfo",
            format!(
                "accounts:\n  - name: a\n    base_url: http://user:{secret}@api.example.com\n    app_key: k\n    app_secret: {secret}\n"
            ),
            "accounts[0].base_url (line 3)",
        ),
        (
            "secret as a key",
            format!(
                "accounts:\n  - name: a\n    base_url: http://api.example.com\n    app_key: k\n    app_secret:\n    {secret}:\n"
            ),
            "accounts[0] (line 6): an unknown key of 18 characters",
        ),
    ] {
        let path = dir.path().join("slip.yml");
        std::fs::write(&path, yaml).unwrap();
        let out = check(&path);
        let (stdout, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(2), "{what}: {stderr}");
        assert!(stderr.contains(key), "{what}: {stderr}");
        assert!(
            !stdout.contains(secret) && !stderr.contains(secret),
            "{what}: the secret is printed:\n{stdout}{stderr}"
        );
    }
}
