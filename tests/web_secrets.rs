//! Secret hygiene, end to end: the real binary at `--log.level=debug`, with distinctive
//! secrets in `app_secret`, in `app_secret_file`, in `headers` (literal and `${VAR}`), and in
//! the web config (the basic-auth password and its bcrypt hash), talks to the simulator while
//! it answers successfully and with faults (a wrong app secret → 401, HTTP 500, malformed and
//! truncated bodies, business errors). No secret may appear in stdout, stderr, any response of
//! `/metrics`, `/probe`, `/config`, `/`, `/-/reload` (also failed reloads, among them a secret
//! slipped into the base URL's userinfo or made a key by an indentation slip), `check-config`'s
//! output for those files, or a 401 answer.
//! The same run shows that no HTTP route reaches the card network operation.

mod web_support;

use base64::Engine;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tibiot_api::Endpoint;
use tibiot_sim::{Fault, FaultRule, SimHandle, SimOptions};
use web_support::*;

struct Exporter(Child);

impl Drop for Exporter {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn distinct(what: &str) -> String {
    format!("{what}{}", hex::encode(rand::random::<[u8; 8]>()))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_in_logs_pages_metrics_or_errors() {
    let app_secret = distinct("AppSecretQ");
    let wrong_secret = distinct("WrongSecretQ");
    let header_secret = distinct("HeaderSecretQ");
    let env_secret = distinct("EnvSecretQ");
    let web_password = distinct("WebPassQ");

    let sim = SimHandle::start(
        SimOptions {
            pools: 4,
            cards: 4,
            app_key: Some("key-main".into()),
            app_secret: Some(app_secret.clone()),
            ..SimOptions::default()
        },
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    let pools = sim.pools();
    let cards = sim.cards();
    sim.set_fault(FaultRule::new(Fault::Http500).target(pools[1].clone()));
    sim.set_fault(FaultRule::new(Fault::Malformed).target(pools[2].clone()));
    sim.set_fault(FaultRule::new(Fault::Truncated).target(cards[1].clone()));
    sim.set_fault(FaultRule::new(Fault::BusinessError).target(cards[2].clone()));

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("wrong-secret"), format!("{wrong_secret}\n")).unwrap();
    let config = format!(
        "accounts:\n\
         \x20 - name: main\n\
         \x20   base_url: {base}\n\
         \x20   app_key: key-main\n\
         \x20   app_secret: {app_secret}\n\
         \x20   headers:\n\
         \x20     X-Api-Token: {header_secret}\n\
         \x20     X-Env-Token: ${{WEB_SECRETS_TEST_TOKEN}}\n\
         \x20   pools: [{p}]\n\
         \x20   cards: [{c}]\n\
         \x20 - name: wrong\n\
         \x20   base_url: {base}\n\
         \x20   app_key: key-main\n\
         \x20   app_secret_file: wrong-secret\n\
         \x20   pools: [{p0}]\n\
         collect:\n\
         \x20 timeout: 5s\n\
         \x20 history:\n\
         \x20   pool_days: 2\n\
         \x20   pool_months: 1\n\
         \x20   card_days: 1\n\
         \x20   card_months: 1\n",
        base = sim.base_url(),
        p = pools.join(", "),
        c = cards.join(", "),
        p0 = pools[0],
    );
    let config_file = dir.path().join("tibiot-exporter.yml");
    std::fs::write(&config_file, &config).unwrap();
    let hash = bcrypt::hash(&web_password, 4).unwrap();
    let web_file = dir.path().join("web.yml");
    std::fs::write(
        &web_file,
        format!("basic_auth_users:\n  prometheus: {hash}\n"),
    )
    .unwrap();

    let port = free_port();
    let stdout = dir.path().join("stdout.log");
    let stderr = dir.path().join("stderr.log");
    let child = Command::new(env!("CARGO_BIN_EXE_tibiot-exporter"))
        .arg(format!("--config.file={}", config_file.display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg(format!("--web.config.file={}", web_file.display()))
        .arg("--log.level=debug")
        .env("WEB_SECRETS_TEST_TOKEN", &env_secret)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&stdout).unwrap())
        .stderr(std::fs::File::create(&stderr).unwrap())
        .spawn()
        .unwrap();
    let mut exporter = Exporter(child);

    let c = plain_client();
    let base = format!("http://127.0.0.1:{port}");
    let mut seen: Vec<(String, String)> = Vec::new();
    let get = |path: String| {
        c.get(format!("{base}{path}"))
            .basic_auth("prometheus", Some(web_password.clone()))
    };
    eventually("the exporter answers", || async {
        matches!(get("/-/healthy".into()).send().await, Ok(r) if r.status() == 200)
    })
    .await;

    // Scrapes (twice: the second is served partly from the cache), both formats.
    for accept in ["text/plain", "application/openmetrics-text; version=1.0.0"] {
        for _ in 0..2 {
            let r = get("/metrics".into())
                .header("accept", accept)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            seen.push(("/metrics".into(), r.text().await.unwrap()));
        }
    }
    let metrics = &seen[0].1;
    assert!(
        metrics.contains("tibiot_up{account=\"wrong\"} 0"),
        "the wrong secret was refused upstream:\n{metrics}"
    );
    assert!(
        metrics.contains("tibiot_up{account=\"main\"}"),
        "main was scraped:\n{metrics}"
    );
    assert!(
        metrics.contains("tibiot_pool_used_bytes{account=\"main\""),
        "successful calls happened:\n{metrics}"
    );
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("tibiot_collect_success") && l.ends_with(" 0")),
        "failing calls happened:\n{metrics}"
    );

    let mut paths = vec![
        "/".to_string(),
        "/config".into(),
        "/-/ready".into(),
        format!("/probe?account=wrong&pool={}", pools[0]),
        "/probe?account=main&pool=NOT%2FVALID".into(),
        "/probe?account=main&card=123".into(),
        "/probe?account=nobody&pool=P".into(),
    ];
    for p in &pools {
        paths.push(format!("/probe?account=main&pool={p}"));
    }
    for card in &cards {
        paths.push(format!("/probe?account=main&card={card}"));
    }
    for path in paths {
        let r = get(path.clone()).send().await.unwrap();
        let status = r.status();
        let body = r.text().await.unwrap();
        assert!(
            status.is_success() || status == 400,
            "{path}: {status}\n{body}"
        );
        seen.push((path, body));
    }
    assert!(
        seen.iter()
            .any(|(p, b)| p.starts_with("/config") && b.contains("key-main")),
        "/config shows the configuration"
    );

    // Reload: a good one, then a bad one (the secret sits next to the error).
    let r = c
        .post(format!("{base}/-/reload"))
        .basic_auth("prometheus", Some(web_password.clone()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    seen.push(("/-/reload".into(), r.text().await.unwrap()));
    std::fs::write(
        &config_file,
        config.replacen(
            "    app_key: key-main\n",
            "    app_key: key-main\n    bogus_key: 1\n",
            1,
        ),
    )
    .unwrap();
    let r = c
        .post(format!("{base}/-/reload"))
        .basic_auth("prometheus", Some(web_password.clone()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 500, "a bad configuration is refused");
    let body = r.text().await.unwrap();
    assert!(
        body.contains("bogus_key"),
        "the error names the key: {body}"
    );
    seen.push(("/-/reload (bad)".into(), body));

    // Two slips that put the app secret where an error would quote it: the secret as the
    // password of the base URL's userinfo, and an indentation slip that makes it a key. The
    // reload is refused naming the key, and the secret is in neither the answer, the log
    // (checked below) nor check-config's output.
    let slips = [
        (
            "userinfo",
            config.replacen(
                "    base_url: http://",
                &format!("    base_url: http://tibiot:{app_secret}@"),
                1,
            ),
            "accounts[0].base_url (line 3)",
        ),
        (
            "secret as a key",
            config.replacen(
                &format!("    app_secret: {app_secret}\n"),
                &format!("    app_secret:\n    {app_secret}:\n"),
                1,
            ),
            "an unknown key of",
        ),
    ];
    for (what, text, key) in slips {
        assert_ne!(text, config, "{what}: the slip was made");
        std::fs::write(&config_file, &text).unwrap();
        let r = c
            .post(format!("{base}/-/reload"))
            .basic_auth("prometheus", Some(web_password.clone()))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 500, "{what}: refused");
        let body = r.text().await.unwrap();
        assert!(
            body.contains(key),
            "{what}: the error names the key: {body}"
        );
        seen.push((format!("/-/reload ({what})"), body));
        let out = Command::new(env!("CARGO_BIN_EXE_tibiot-exporter"))
            .arg("check-config")
            .arg(format!("--config.file={}", config_file.display()))
            .env("WEB_SECRETS_TEST_TOKEN", &env_secret)
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(2),
            "{what}: check-config refuses it"
        );
        seen.push((
            format!("check-config ({what})"),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        ));
    }

    // Failed logins.
    for (user, pw) in [("prometheus", "wrong"), ("nobody", web_password.as_str())] {
        let r = c
            .get(format!("{base}/metrics"))
            .basic_auth(user, Some(pw))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
        seen.push((
            format!("401 for {user}"),
            format!("{:?} {}", r.headers().clone(), r.text().await.unwrap()),
        ));
    }

    // No route reaches the card network operation, whatever the method.
    for path in [
        "/card/network",
        "/api/v1/card/network",
        "/-/card",
        "/probe",
        "/cards",
    ] {
        for method in [
            reqwest::Method::POST,
            reqwest::Method::PUT,
            reqwest::Method::DELETE,
        ] {
            let r = c
                .request(
                    method.clone(),
                    format!("{base}{path}?iccid={}&enable=false", cards[0]),
                )
                .basic_auth("prometheus", Some(web_password.clone()))
                .send()
                .await
                .unwrap();
            assert!(
                r.status().is_client_error(),
                "{method} {path}: {}",
                r.status()
            );
        }
    }
    assert_eq!(sim.requests(Endpoint::CardNetwork), 0, "no card operation");

    // Stop the exporter (SIGTERM, then wait) so its logs are complete.
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(exporter.0.id().to_string())
        .status();
    let waited = tokio::task::spawn_blocking(move || {
        let until = std::time::Instant::now() + Duration::from_secs(30);
        while std::time::Instant::now() < until {
            if let Ok(Some(_)) = exporter.0.try_wait() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    })
    .await
    .unwrap();
    assert!(waited, "the exporter stops on SIGTERM");

    let out = std::fs::read_to_string(&stdout).unwrap();
    let err = std::fs::read_to_string(&stderr).unwrap();
    let logs = format!("{out}{err}");
    assert!(
        logs.to_lowercase().contains("debug"),
        "debug logging was on:\n{logs}"
    );
    seen.push(("stdout".into(), out));
    seen.push(("stderr".into(), err));

    let basic =
        base64::engine::general_purpose::STANDARD.encode(format!("prometheus:{web_password}"));
    let secrets = [
        ("app_secret", app_secret.as_str()),
        ("app_secret_file", wrong_secret.as_str()),
        ("headers value", header_secret.as_str()),
        ("headers ${VAR} value", env_secret.as_str()),
        ("web password", web_password.as_str()),
        ("bcrypt hash", hash.as_str()),
        ("Authorization header", basic.as_str()),
    ];
    for (where_, text) in &seen {
        for (what, secret) in secrets {
            // The distinctive part alone, so a truncated or re-quoted copy is caught too.
            let core = &secret[secret.len().saturating_sub(16)..];
            assert!(
                !text.contains(core),
                "the {what} appears in {where_}:\n{text}"
            );
        }
    }
    sim.shutdown().await;
}
