//! Shared by the `web_*` tests: certificates made with rcgen (a CA, a server certificate for
//! 127.0.0.1/localhost, client certificates from that CA and from another one), a small router
//! standing in for the exporter's, a server started on port 0 with a given web config, and
//! reqwest clients.
#![allow(dead_code)]

use axum::Router;
use axum::routing::{get, post};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tibiot_web::StatsHandle;
use tibiot_web::{Limits, ServerOptions, WebServer};
use tokio::sync::oneshot;

pub struct Ca {
    pub cert: rcgen::Certificate,
    pub key: KeyPair,
}

impl Ca {
    pub fn new(name: &str) -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name.push(DnType::CommonName, name);
        p.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert = p.self_signed(&key).unwrap();
        Ca { cert, key }
    }

    /// (certificate PEM, key PEM) for a leaf signed by this CA.
    pub fn leaf(&self, cn: &str, sans: &[&str], server: bool) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let sans: Vec<String> = sans.iter().map(|s| s.to_string()).collect();
        let mut p = CertificateParams::new(sans).unwrap();
        p.distinguished_name.push(DnType::CommonName, cn);
        p.extended_key_usages = vec![if server {
            ExtendedKeyUsagePurpose::ServerAuth
        } else {
            ExtendedKeyUsagePurpose::ClientAuth
        }];
        let cert = p.signed_by(&key, &self.cert, &self.key).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    pub fn pem(&self) -> String {
        self.cert.pem()
    }
}

/// A folder with `ca.pem`, `server.pem`, `server.key`, `client.pem`/`client.key` (signed by
/// the CA), `other-client.pem`/`.key` (signed by another CA).
pub struct Pki {
    pub dir: tempfile::TempDir,
    pub ca: Ca,
    pub client_identity: Vec<u8>,
    pub other_identity: Vec<u8>,
}

impl Pki {
    pub fn new() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::new("tibiot test CA");
        let other = Ca::new("some other CA");
        let (sc, sk) = ca.leaf("localhost", &["localhost", "127.0.0.1"], true);
        let (cc, ck) = ca.leaf("prometheus", &[], false);
        let (oc, ok) = other.leaf("intruder", &[], false);
        let w = |n: &str, s: &str| std::fs::write(dir.path().join(n), s).unwrap();
        w("ca.pem", &ca.pem());
        w("other-ca.pem", &other.pem());
        w("server.pem", &sc);
        w("server.key", &sk);
        w("client.pem", &cc);
        w("client.key", &ck);
        w("other-client.pem", &oc);
        w("other-client.key", &ok);
        Pki {
            client_identity: format!("{cc}{ck}").into_bytes(),
            other_identity: format!("{oc}{ok}").into_bytes(),
            dir,
            ca,
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Writes `web.yml` in the PKI folder (so relative paths resolve there).
    pub fn write_web_config(&self, yaml: &str) -> PathBuf {
        write_atomically(&self.path("web.yml"), yaml);
        self.path("web.yml")
    }

    /// A client that trusts the test CA only.
    pub fn client(&self) -> reqwest::ClientBuilder {
        client_builder()
            .add_root_certificate(reqwest::Certificate::from_pem(self.ca.pem().as_bytes()).unwrap())
    }

    pub fn client_with(&self, identity: &[u8]) -> reqwest::Client {
        self.client()
            .identity(reqwest::Identity::from_pem(identity).unwrap())
            .build()
            .unwrap()
    }
}

/// Replaces a file in one step, as config management tools do.
pub fn write_atomically(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

pub fn client_builder() -> reqwest::ClientBuilder {
    // reqwest's TLS takes the process's rustls provider
    tibiot_api::client::install_crypto_provider();
    reqwest::Client::builder()
        .tls_backend_rustls()
        // only the roots a test adds
        .tls_certs_only([])
        .no_proxy()
        .timeout(Duration::from_secs(20))
}

pub fn plain_client() -> reqwest::Client {
    client_builder().build().unwrap()
}

/// A stand-in for the exporter's router with the same paths, plus `/slow` and `/echo`.
pub fn test_router() -> Router {
    Router::new()
        .route("/", get(|| async { "landing page" }))
        .route("/metrics", get(|| async { "# EOF\n" }))
        .route("/config", get(|| async { "accounts: []\n" }))
        .route("/-/healthy", get(|| async { "Healthy\n" }))
        .route("/-/reload", post(|| async { "reloaded\n" }))
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                "never"
            }),
        )
        .route(
            "/echo",
            post(|body: axum::body::Bytes| async move { format!("{} bytes", body.len()) }),
        )
}

pub struct Running {
    pub addr: std::net::SocketAddr,
    pub stats: StatsHandle,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl Running {
    pub fn https(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.addr.port())
    }
    pub fn http(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.addr.port())
    }
    /// Stops the server and waits (bounded) for it to finish.
    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(30), t)
                .await
                .expect("server stops within 30 s")
                .unwrap()
                .unwrap();
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(t) = &self.task {
            t.abort();
        }
    }
}

pub fn options(web_config: Option<PathBuf>) -> ServerOptions {
    ServerOptions {
        web_config_file: web_config,
        limits: Limits::default(),
        reload_interval: Duration::from_millis(100),
    }
}

pub async fn start(options: ServerOptions) -> Running {
    start_with(options, test_router()).await
}

pub async fn start_with(options: ServerOptions, router: Router) -> Running {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server = WebServer::from_listener(listener, options).await.unwrap();
    let addr = server.local_addr().unwrap();
    let stats = server.stats_handle();
    let (tx, rx) = oneshot::channel();
    let task = tokio::spawn(server.serve(router, async move {
        let _ = rx.await;
    }));
    Running {
        addr,
        stats,
        stop: Some(tx),
        task: Some(task),
    }
}

/// Retries `check` every 100 ms for up to 30 s; panics with `what` if it never holds.
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let until = tokio::time::Instant::now() + Duration::from_secs(30);
    while tokio::time::Instant::now() < until {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("never happened within 30 s: {what}");
}

/// A bcrypt hash of `password` at the lowest cost (fast tests).
pub fn hash(password: &str) -> String {
    bcrypt::hash(password, 4).unwrap()
}
