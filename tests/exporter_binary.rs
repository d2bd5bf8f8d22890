//! The real binary: a bad configuration makes the server exit 2 naming the key; SIGHUP
//! reloads good and bad files; SIGTERM shuts down cleanly; one log line per failed fetch
//! (logfmt and JSON) without secrets; `demo` serves every simulated target with history.

mod exporter_support;

use exporter_support::*;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;
use tibiot_sim::SimOptions;

fn signal(p: &Proc, sig: i32) {
    // SAFETY: sending a signal to our own child.
    let rc = unsafe { libc::kill(p.0.id() as i32, sig) };
    assert_eq!(rc, 0);
}

/// Waits for the child to exit, at most `within`.
async fn exit_status(p: &mut Proc, within: Duration) -> Option<std::process::ExitStatus> {
    let end = tokio::time::Instant::now() + within;
    loop {
        if let Some(s) = p.0.try_wait().unwrap() {
            return Some(s);
        }
        if tokio::time::Instant::now() >= end {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn start(config: &std::path::Path, extra: &[&str]) -> (Proc, String) {
    start_binary(config, extra, Stdio::piped(), Duration::from_secs(20)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_configurations_make_the_server_exit_2_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let good = "accounts:\n  - name: a\n    base_url: http://127.0.0.1:1\n    app_key: k\n    app_secret: s\n    pools: [P-1]\n";
    let cases = [
        (
            "unknown key",
            format!("{good}collect:\n  colour: red\n"),
            "collect.colour",
        ),
        (
            "bad duration",
            format!("{good}collect:\n  pool_ttl: 5 parsecs\n"),
            "collect.pool_ttl",
        ),
        (
            "duplicate account",
            format!(
                "{good}  - name: a\n    base_url: http://127.0.0.1:1\n    app_key: k\n    app_secret: s\n"
            ),
            "accounts[1].name",
        ),
        (
            "missing secret",
            good.replace("    app_secret: s\n", ""),
            "accounts[0].app_secret",
        ),
        (
            "missing cards_file",
            good.replace("    pools: [P-1]\n", "    cards_file: missing.txt\n"),
            "accounts[0].cards_file",
        ),
        (
            "bad base_url",
            good.replace("http://127.0.0.1:1", "ftp://example"),
            "accounts[0].base_url",
        ),
    ];
    for (what, yaml, key) in cases {
        let path = dir.path().join("bad.yml");
        std::fs::write(&path, yaml).unwrap();
        let config_flag = format!("--config.file={}", path.display());
        // The server and `check-config` reject it alike.
        for args in [
            vec![config_flag.as_str(), "--web.listen-address=127.0.0.1:0"],
            vec!["check-config", config_flag.as_str()],
        ] {
            let out = Command::new(BIN).args(&args).output().unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{what} {args:?}: {stderr}");
            assert!(stderr.contains(key), "{what} {args:?}: {stderr}");
            assert!(!stderr.contains("app_secret: s"), "{what}: secret echoed");
        }
    }
    // check-config accepts the good file, and checks a web config when given one.
    let path = dir.path().join("good.yml");
    std::fs::write(&path, good).unwrap();
    let config_flag = format!("--config.file={}", path.display());
    let out = Command::new(BIN)
        .args(["check-config", config_flag.as_str()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let web = dir.path().join("web.yml");
    std::fs::write(&web, "basic_auth_users:\n  ops: plain-password\n").unwrap();
    let web_flag = format!("--web.config.file={}", web.display());
    let out = Command::new(BIN)
        .args(["check-config", config_flag.as_str(), web_flag.as_str()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("basic_auth_users.ops"), "{stderr}");
    assert!(!stderr.contains("plain-password"), "{stderr}");
    // A missing config file is exit 2 as well.
    let out = Command::new(BIN)
        .arg("--config.file=/nonexistent/tibiot.yml")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    // A bad log level too.
    let out = Command::new(BIN).arg("--log.level=loud").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_and_sigterm_shuts_down() {
    let sim = sim(SimOptions::default()).await;
    let pools = sim.pools();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yml");
    std::fs::write(&path, config_yaml(&sim, &pools[..1], &[], "")).unwrap();
    let (mut p, base) = start(&path, &[]).await;
    let metrics = format!("{base}/metrics");
    let has = |text: &str, pool: &str| {
        value(&parse(text), "tibiot_pool_used_bytes", &[("pool", pool)]).is_some()
    };
    assert!(has(&get(&metrics).await.1, &pools[0]));

    std::fs::write(&path, config_yaml(&sim, &pools[..2], &[], "")).unwrap();
    signal(&p, libc::SIGHUP);
    let second = pools[1].clone();
    let ok = eventually(Duration::from_secs(10), || {
        let (m, s) = (metrics.clone(), second.clone());
        async move { has(&get(&m).await.1, &s) }
    })
    .await;
    assert!(ok, "SIGHUP did not apply the new configuration");

    std::fs::write(&path, "accounts: [}\n").unwrap();
    signal(&p, libc::SIGHUP);
    let failed = eventually(Duration::from_secs(10), || {
        let m = metrics.clone();
        async move {
            let s = parse(&get(&m).await.1);
            value(&s, "tibiot_exporter_config_last_reload_successful", &[]) == Some(0.0)
        }
    })
    .await;
    assert!(failed, "a bad file must set the reload gauge to 0");
    assert!(
        has(&get(&metrics).await.1, &pools[1]),
        "the old configuration stays"
    );

    signal(&p, libc::SIGTERM);
    let status = exit_status(&mut p, Duration::from_secs(10)).await;
    assert_eq!(status.and_then(|s| s.code()), Some(0), "graceful shutdown");
}

fn read_stderr_until(p: &mut Proc, needle: &str, max_lines: usize) -> Vec<String> {
    let stderr = p.0.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let needle = needle.to_owned();
    std::thread::spawn(move || {
        let mut lines = Vec::new();
        for line in BufReader::new(stderr).lines().take(max_lines) {
            let Ok(line) = line else { break };
            let done = line.contains(&needle);
            lines.push(line);
            if done {
                break;
            }
        }
        let _ = tx.send(lines);
    });
    rx.recv_timeout(Duration::from_secs(20)).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_log_line_per_failed_fetch_without_secrets() {
    let base = sim(SimOptions::default()).await;
    let failing = base.pools()[0].clone();
    drop(base);
    let sim = sim(SimOptions {
        failing_targets: vec![failing.clone()],
        ..SimOptions::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yml");
    let yaml = config_yaml(
        &sim,
        std::slice::from_ref(&failing),
        &[],
        "  history: {pool_days: 0, pool_months: 0}\n",
    );
    std::fs::write(&path, &yaml).unwrap();

    for format in ["logfmt", "json"] {
        let (mut p, base) = start(&path, &[&format!("--log.format={format}")]).await;
        assert_eq!(get(&format!("{base}/metrics")).await.0, 200);
        let lines = read_stderr_until(&mut p, "fetch failed", 50);
        let line = lines
            .iter()
            .find(|l| l.contains("fetch failed"))
            .unwrap_or_else(|| panic!("no failure line in {lines:?}"));
        for l in &lines {
            assert!(!l.contains(sim.app_secret()), "secret in log: {l}");
        }
        if format == "logfmt" {
            assert!(line.contains("level=warn"), "{line}");
            assert!(line.contains("msg=\"fetch failed\""), "{line}");
            assert!(line.contains("account=test"), "{line}");
            assert!(line.contains(&format!("target={failing}")), "{line}");
            assert!(line.contains("outcome=http_error"), "{line}");
            assert!(line.contains("api_code=500"), "{line}");
            assert!(line.contains("trace_id="), "{line}");
            assert!(
                !line.contains("trace_id=\"\""),
                "the simulator sends a traceId: {line}"
            );
        } else {
            let v: serde_json::Value = serde_json::from_str(line).expect("a JSON line");
            assert_eq!(v["level"], "WARN");
            assert_eq!(v["account"], "test");
            assert_eq!(v["target"], failing.as_str());
            assert_eq!(v["outcome"], "http_error");
            assert_eq!(v["api_code"], "500");
            assert!(!v["trace_id"].as_str().unwrap_or("").is_empty());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_serves_every_simulated_target_with_history() {
    let port = free_port();
    // The demo writes its configuration for tibiotctl into the working folder.
    let cwd = tempfile::tempdir().unwrap();
    let child = Command::new(BIN)
        .current_dir(cwd.path())
        .args(["demo", &format!("--web.listen-address=127.0.0.1:{port}")])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut p = Proc(child);
    let stdout = p.0.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut text = String::new();
        for line in BufReader::new(stdout).lines().take(30) {
            let Ok(line) = line else { break };
            text.push_str(&line);
            text.push('\n');
            if line.contains("Ctrl-C") {
                break;
            }
        }
        let _ = tx.send(text);
    });
    let banner = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("demo banner");
    let base = format!("http://127.0.0.1:{port}");
    assert!(banner.contains(&format!("{base}/metrics")), "{banner}");
    assert!(
        banner.contains(&format!("{base}/probe?account=demo&pool=")),
        "{banner}"
    );

    let written = std::fs::read_to_string(cwd.path().join("tibiot-demo.yml"))
        .expect("the demo wrote tibiot-demo.yml");
    assert!(
        banner.contains("tibiot-demo.yml pool show POOL-0001"),
        "{banner}"
    );
    assert!(written.contains("name: demo"), "{written}");

    // The first scrape waits for every pool and card; their history fills in right after
    // (the backfill does not hold up scrapes).
    let (status, text) = get(&format!("{base}/metrics")).await;
    assert_eq!(status, 200);
    let s = parse(&text);
    let pools = find(&s, "tibiot_pool_info", &[("account", "demo")]).len();
    let cards = find(&s, "tibiot_card_info", &[("account", "demo")]).len();
    assert_eq!((pools, cards), (8, 40), "every simulated pool and card");
    // settled: nothing due or being fetched any more (the history filled in)
    let s = parse(&settled_at(&format!("{base}/metrics")).await);
    assert_eq!(find(&s, "tibiot_pool_daily_usage_bytes", &[]).len(), 8 * 30);
    assert_eq!(
        find(&s, "tibiot_pool_monthly_usage_bytes", &[]).len(),
        8 * 12
    );
    assert!(!find(&s, "tibiot_card_daily_usage_bytes", &[]).is_empty());
    assert!(
        find(&s, "tibiot_collect_success", &[])
            .iter()
            .all(|x| x.value == 1.0)
    );
    let (status, html) = get(&format!("{base}/")).await;
    assert_eq!(status, 200);
    assert!(html.contains("POOL-0001"));

    signal(&p, libc::SIGINT);
    let status = exit_status(&mut p, Duration::from_secs(10)).await;
    assert_eq!(status.and_then(|s| s.code()), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_prints_its_configuration_on_request_and_refuses_an_unwritable_path() {
    // --print-config: the configuration on stdout (after the banner), no file.
    let cwd = tempfile::tempdir().unwrap();
    let port = free_port();
    let child = Command::new(BIN)
        .current_dir(cwd.path())
        .args([
            "demo",
            "--print-config",
            &format!("--web.listen-address=127.0.0.1:{port}"),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut p = Proc(child);
    let stdout = p.0.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut text = String::new();
        let mut lines = BufReader::new(stdout).lines();
        for line in lines.by_ref() {
            let Ok(line) = line else { break };
            text.push_str(&line);
            text.push('\n');
            if line.starts_with("    card_months:") {
                break;
            }
        }
        let _ = tx.send(text);
        // Keep reading what else comes (nothing is expected).
        for _ in lines {}
    });
    let out = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("the printed configuration");
    let yaml = &out[out.find("# Generated by").expect("a configuration")..];
    let config = tibiot_exporter::config::Config::parse(yaml, std::path::Path::new("."))
        .expect("the printed configuration is valid");
    assert_eq!(config.accounts[0].name, "demo");
    assert!(yaml.contains("app_secret: "), "{yaml}");
    assert_eq!(std::fs::read_dir(cwd.path()).unwrap().count(), 0, "no file");
    // Stop it once it serves (its SIGINT handler is in place by then).
    let ready = format!("http://127.0.0.1:{port}/-/ready");
    let up = eventually(Duration::from_secs(30), || {
        let ready = ready.clone();
        async move { client().get(&ready).send().await.is_ok() }
    })
    .await;
    assert!(up, "the demo serves");
    signal(&p, libc::SIGINT);
    let status = exit_status(&mut p, Duration::from_secs(30)).await;
    assert_eq!(status.and_then(|s| s.code()), Some(0));

    // An explicit --write-config that cannot be written is a usage error (exit 2).
    let out = Command::new(BIN)
        .current_dir(cwd.path())
        .args([
            "demo",
            "--web.listen-address=127.0.0.1:0",
            "--write-config=no/such/folder/demo.yml",
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--write-config") && err.contains("cannot write"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn web_max_requests_turns_away_what_is_over_the_limit() {
    use tibiot_api::Endpoint;
    use tibiot_sim::{Fault, FaultRule};
    let sim = sim(SimOptions::default()).await;
    let pool = sim.pools()[0].clone();
    sim.set_fault(
        FaultRule::new(Fault::Slow(Duration::from_secs(3)))
            .endpoint(Endpoint::PoolDetail)
            .times(1),
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yml");
    std::fs::write(
        &path,
        config_yaml(&sim, std::slice::from_ref(&pool), &[], ""),
    )
    .unwrap();
    let (_p, base) = start(&path, &["--web.max-requests=1"]).await;
    let metrics = format!("{base}/metrics");
    // the first scrape waits for the slow pool and holds the only place
    let first = tokio::spawn({
        let m = metrics.clone();
        async move { get(&m).await }
    });
    let in_flight = eventually(Duration::from_secs(10), || {
        let n = sim.requests_for(Endpoint::PoolDetail, &pool);
        async move { n > 0 }
    })
    .await;
    assert!(in_flight, "the first scrape did not reach the simulator");
    let (status, _) = get(&format!("{base}/-/healthy")).await;
    assert_eq!(
        status, 503,
        "a second request went past --web.max-requests=1"
    );
    let (status, body) = first.await.unwrap();
    assert_eq!(status, 200);
    assert!(body.contains("tibiot_pool_used_bytes"));
    // the place is free again
    assert_eq!(get(&format!("{base}/-/healthy")).await.0, 200);
}
