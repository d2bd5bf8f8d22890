//! A changed web config takes effect without a restart: basic auth switched on and its
//! password changed, plain HTTP switched to TLS, a rotated certificate served; a changed but
//! invalid file is reported in the log and the previous configuration stays in force.

mod web_support;

use std::sync::{Arc, Mutex, OnceLock};
use web_support::*;

/// Every log line of this test binary.
fn logs() -> Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let b = buf.clone();
        let _ = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .with_ansi(false)
            .with_writer(move || Writer(b.clone()))
            .try_init();
        buf
    })
    .clone()
}

struct Writer(Arc<Mutex<Vec<u8>>>);
impl std::io::Write for Writer {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn log_text() -> String {
    String::from_utf8_lossy(&logs().lock().unwrap()).into_owned()
}

#[tokio::test]
async fn basic_auth_changes_apply_and_a_bad_file_keeps_the_previous_one() {
    logs();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("web.yml");
    write_atomically(&cfg, "# nothing yet\n");
    let srv = start(options(Some(cfg.clone()))).await;
    let c = plain_client();
    let status = |user: Option<&'static str>, pw: &'static str| {
        let mut req = c.get(srv.http("/config"));
        if let Some(u) = user {
            req = req.basic_auth(u, Some(pw));
        }
        async move { req.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(status(None, "").await, 200);

    write_atomically(
        &cfg,
        &format!("basic_auth_users:\n  ops: {}\n", hash("first")),
    );
    eventually("basic auth is switched on", || async {
        status(None, "").await == 401
    })
    .await;
    assert_eq!(status(Some("ops"), "first").await, 200);

    write_atomically(
        &cfg,
        &format!("basic_auth_users:\n  ops: {}\n", hash("second")),
    );
    eventually("the new password works", || async {
        status(Some("ops"), "second").await == 200
    })
    .await;
    assert_eq!(
        status(Some("ops"), "first").await,
        401,
        "the old one does not"
    );

    // A plaintext password where a hash belongs: logged, not applied.
    write_atomically(&cfg, "basic_auth_users:\n  ops: plaintext-oops\n");
    eventually("the invalid file is reported", || async {
        log_text().contains("keeping the previous one")
    })
    .await;
    assert!(
        log_text().contains("basic_auth_users.ops"),
        "the error names the key"
    );
    assert!(
        !log_text().contains("plaintext-oops"),
        "the value is not logged"
    );
    assert_eq!(
        status(Some("ops"), "second").await,
        200,
        "previous config in force"
    );
    assert_eq!(status(None, "").await, 401);

    // Removing the users switches auth off again.
    write_atomically(&cfg, "http_server_config:\n  http2: true\n");
    eventually("basic auth is switched off", || async {
        status(None, "").await == 200
    })
    .await;
    srv.stop().await;
}

#[tokio::test]
async fn tls_switched_on_and_certificate_rotated_without_restart() {
    logs();
    let pki = Pki::new();
    let cfg = pki.write_web_config("");
    let srv = start(options(Some(cfg))).await;
    assert_eq!(
        plain_client()
            .get(srv.http("/"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    pki.write_web_config("tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\n");
    let trusting = pki.client().build().unwrap();
    eventually("TLS is served", || async {
        trusting.get(srv.https("/")).send().await.is_ok()
    })
    .await;
    assert!(plain_client().get(srv.http("/")).send().await.is_err());

    // Rotate to a certificate from a new CA: the key and certificate files change, not the
    // web config itself.
    let new_ca = Ca::new("rotated CA");
    let (cert, key) = new_ca.leaf("localhost", &["localhost", "127.0.0.1"], true);
    write_atomically(&pki.path("server.key"), &key);
    write_atomically(&pki.path("server.pem"), &cert);
    let trusts_new = client_builder()
        .add_root_certificate(reqwest::Certificate::from_pem(new_ca.pem().as_bytes()).unwrap())
        .build()
        .unwrap();
    eventually("the rotated certificate is served", || async {
        trusts_new.get(srv.https("/")).send().await.is_ok()
    })
    .await;
    // A new connection (the pooled one still has the old session) no longer trusts it.
    let fresh = pki.client().build().unwrap();
    assert!(
        fresh.get(srv.https("/")).send().await.is_err(),
        "the old CA no longer matches"
    );
    srv.stop().await;
}
