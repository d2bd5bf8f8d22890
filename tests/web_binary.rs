//! The real binary with `--web.config.file`: an invalid web config stops it at start with
//! exit status 2 and an error naming the key (never the value); a valid one with TLS, client
//! certificates and basic auth is served.

mod web_support;

use std::process::{Child, Command, Stdio};
use web_support::*;

struct Exporter(Child);

impl Drop for Exporter {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

const CONFIG: &str = "accounts:\n  - name: main\n    base_url: http://127.0.0.1:9\n    \
                      auth: none\n    pools: [POOL-1]\n";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn exporter(dir: &std::path::Path, port: u16) -> Command {
    let config = dir.join("tibiot-exporter.yml");
    std::fs::write(&config, CONFIG).unwrap();
    let mut c = Command::new(env!("CARGO_BIN_EXE_tibiot-exporter"));
    c.arg(format!("--config.file={}", config.display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg(format!(
            "--web.config.file={}",
            dir.join("web.yml").display()
        ))
        .stdin(Stdio::null());
    c
}

#[test]
fn invalid_web_config_exits_2_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("web.yml"),
        "basic_auth_users:\n  ops: PlainTextOops123\n",
    )
    .unwrap();
    let out = exporter(dir.path(), free_port()).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("basic_auth_users.ops"), "{stderr}");
    assert!(!stderr.contains("PlainTextOops123"), "{stderr}");

    std::fs::write(
        dir.path().join("web.yml"),
        "tls_server_config:\n  cert_file: missing.pem\n  key_file: missing.key\n",
    )
    .unwrap();
    let out = exporter(dir.path(), free_port()).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("tls_server_config.cert_file"), "{stderr}");
}

#[tokio::test]
async fn binary_serves_mutual_tls_with_basic_auth() {
    let pki = Pki::new();
    pki.write_web_config(&format!(
        "tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\n  \
         client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.pem\n\
         basic_auth_users:\n  prometheus: {}\n",
        hash("scrape")
    ));
    let port = free_port();
    let child = exporter(pki.dir.path(), port)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _exporter = Exporter(child);
    let url = |p: &str| format!("https://localhost:{port}{p}");
    let good = pki.client_with(&pki.client_identity);
    eventually("the exporter serves TLS", || async {
        matches!(good.get(url("/-/healthy")).basic_auth("prometheus", Some("scrape")).send().await,
                 Ok(r) if r.status() == 200)
    })
    .await;
    let r = good
        .get(url("/metrics"))
        .basic_auth("prometheus", Some("scrape"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("tibiot_up"));
    let r = good.get(url("/config")).send().await.unwrap();
    assert_eq!(
        r.status(),
        401,
        "basic auth on top of the client certificate"
    );
    let no_cert = pki.client().build().unwrap();
    assert!(
        no_cert
            .get(url("/"))
            .basic_auth("prometheus", Some("scrape"))
            .send()
            .await
            .is_err()
    );
    let wrong_ca = pki.client_with(&pki.other_identity);
    assert!(
        wrong_ca
            .get(url("/"))
            .basic_auth("prometheus", Some("scrape"))
            .send()
            .await
            .is_err()
    );
}
