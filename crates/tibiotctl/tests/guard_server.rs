//! The guard as a server: basic auth from the web config file (401 without credentials),
//! the refusal to enforce on an address reachable from elsewhere without authentication,
//! strict guard-file errors (exit 2 with the key path), health and reload endpoints.

mod guard_support;

use guard_support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_without_credentials_gets_401() {
    let sim = sim().await;
    let files = Files::new(&sim, &guard_yaml("enforce", false, ""));
    let hash = bcrypt::hash("s3cret-pass", 4).unwrap();
    let web = files.dir.path().join("web.yml");
    std::fs::write(
        &web,
        format!("basic_auth_users:\n  alertmanager: '{hash}'\n"),
    )
    .unwrap();
    let guard = Guard::start(&files, &[&format!("--web.config.file={}", path_str(&web))]);
    let body = message(&[Alert::runaway(&normal_cards(&sim)[1], "00000000000000f1")]);
    let url = format!("{}/webhook", guard.base);
    for (user, pass) in [(None, None), (Some("alertmanager"), Some("wrong"))] {
        let mut req = client().post(&url).body(body.clone());
        if let Some(u) = user {
            req = req.basic_auth(u, pass);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status().as_u16(), 401, "{user:?}");
    }
    let r = client()
        .get(format!("{}/metrics", guard.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401, "metrics need credentials too");
    assert_eq!(network_requests(&sim), 0);
    assert!(files.audit_records().is_empty());

    let r = client()
        .post(&url)
        .basic_auth("alertmanager", Some("s3cret-pass"))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let end = tokio::time::Instant::now() + WAIT;
    while network_requests(&sim) == 0 {
        assert!(tokio::time::Instant::now() < end, "no request sent");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(!guard.log().contains("s3cret-pass"));
    drop(guard);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enforce_mode_needs_authentication_off_loopback() {
    let sim = sim().await;
    let files = Files::new(&sim, &guard_yaml("enforce", false, ""));
    for listen in ["0.0.0.0:0", ":0"] {
        let (code, stderr) = run_to_exit(&files, &[&format!("--web.listen-address={listen}")]);
        assert_eq!(code, 2, "{listen}: {stderr}");
        assert!(stderr.contains("refusing enforce mode"), "{stderr}");
    }
    // A web config without users or verified client certificates is not authentication.
    let web = files.dir.path().join("web.yml");
    std::fs::write(&web, "http_server_config:\n  http2: false\n").unwrap();
    let (code, stderr) = run_to_exit(
        &files,
        &[
            "--web.listen-address=0.0.0.0:0",
            &format!("--web.config.file={}", path_str(&web)),
        ],
    );
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("neither basic_auth_users"), "{stderr}");
    // Nothing was written: the guard never started.
    assert!(!files.audit().exists());
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_guard_files_exit_2_naming_the_key() {
    let sim = sim().await;
    let good = guard_yaml("enforce", false, "");
    let cases = [
        (good.replace("mode: enforce", "mode: yes-please"), "mode:"),
        (
            good.replace("action: disable", "action: wipe"),
            "policies[0].action",
        ),
        (
            format!("{good}limits:\n  max_cards_per_hour: 0\n"),
            "limits.max_cards_per_hour",
        ),
        (format!("{good}protect: [123]\n"), "protect[0]"),
        (format!("{good}colour: red\n"), "colour"),
        (good.replace("audit_log: audit.jsonl\n", ""), "audit_log"),
    ];
    for (yaml, key) in cases {
        let files = Files::new(&sim, &yaml);
        let (code, stderr) = run_to_exit(&files, &["--web.listen-address=127.0.0.1:0"]);
        assert_eq!(code, 2, "{key}: {stderr}");
        assert!(stderr.contains(key), "{key}: {stderr}");
        assert!(!stderr.contains(sim.app_secret()));
    }
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_reload_and_a_bad_reload_keeping_the_previous_file() {
    let sim = sim().await;
    let files = Files::new(&sim, &guard_yaml("dry-run", false, ""));
    let guard = Guard::start(&files, &[]);
    for path in ["/-/healthy", "/-/ready", "/"] {
        let r = client()
            .get(format!("{}{path}", guard.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200, "{path}");
    }
    let page = client()
        .get(&guard.base)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("mode: dry-run"), "{page}");
    files.write_guard("mode: enforce\npolicies: []\n");
    let (code, body) = guard.post("/-/reload", String::new()).await;
    assert_eq!(code, 500, "{body}");
    assert!(body.contains("policies"), "{body}");
    assert_eq!(
        guard
            .value("tibiot_guard_config_last_reload_successful", &[])
            .await,
        0.0
    );
    assert_eq!(guard.value("tibiot_guard_enforcing", &[]).await, 0.0);
    // SIGHUP reloads as well.
    files.write_guard(&guard_yaml("enforce", false, ""));
    // SAFETY: signalling our own child.
    unsafe { libc::kill(guard.pid(), libc::SIGHUP) };
    guard
        .wait_for("tibiot_guard_config_last_reload_successful", &[], 1.0)
        .await;
    assert_eq!(guard.value("tibiot_guard_enforcing", &[]).await, 1.0);
    // promtool-style check of the exposition: every family has HELP and TYPE.
    let text = guard.metrics().await;
    for family in [
        "tibiot_guard_decisions_total",
        "tibiot_guard_cards_switched_off",
        "tibiot_guard_actions_in_flight",
    ] {
        assert!(
            text.contains(&format!("# TYPE {}", family.trim_end_matches("_total"))),
            "{text}"
        );
    }
    assert_eq!(guard.stop().await, 0);
    sim.shutdown().await;
}
