//! The listener: accepts TCP connections, performs the TLS handshake when the web config asks
//! for TLS (bounded by a handshake timeout), serves the protected router over HTTP/1.1 or
//! HTTP/2 with hyper-util (header read timeout, bounded header buffer), and shuts down
//! gracefully. The web config file and the files it names are re-checked every
//! `reload_interval`: a changed, valid file takes effect for the next connection and request;
//! a changed, invalid one is logged once and the previous configuration stays in force.
//!
//! Use: `WebServer::from_listener(listener, options).await?` (an invalid web config is an
//! error naming the key), then `server.serve(router, shutdown).await`.

use crate::auth::AuthStats;
use crate::config::{WebConfig, WebConfigError};
pub use crate::guard::Limits;
use crate::guard::{self, Active, Shared};
use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use sha2::{Digest, Sha256};
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, mpsc, watch};

/// How the server is run.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// `--web.config.file`; `None`: plain HTTP, no auth.
    pub web_config_file: Option<PathBuf>,
    /// Self-protection limits.
    pub limits: Limits,
    /// How often the web config file (and the certificates it names) is checked for changes.
    pub reload_interval: Duration,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            web_config_file: None,
            limits: Limits::default(),
            reload_interval: Duration::from_secs(2),
        }
    }
}

/// A web config file and the fingerprint of what is in force.
struct Watched {
    path: PathBuf,
    applied: [u8; 32],
    last_bad: Option<[u8; 32]>,
}

/// Hash of the file's bytes and of every file it names (missing files hash as missing).
fn fingerprint(path: &Path) -> ([u8; 32], Result<WebConfig, WebConfigError>) {
    let mut h = Sha256::new();
    let text = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) => {
            h.update(b"unreadable");
            let err = WebConfigError {
                file: Some(path.to_path_buf()),
                key: None,
                message: format!("cannot read: {e}"),
            };
            return (h.finalize().into(), Err(err));
        }
    };
    h.update((text.len() as u64).to_be_bytes());
    h.update(&text);
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    let parsed = std::str::from_utf8(&text)
        .map_err(|_| WebConfigError {
            file: None,
            key: None,
            message: "not UTF-8".into(),
        })
        .and_then(|t| WebConfig::parse(t, dir))
        .map_err(|e| e.in_file(path));
    if let Ok(cfg) = &parsed {
        for f in cfg.referenced_files() {
            h.update(f.as_os_str().as_encoded_bytes());
            match std::fs::read(&f) {
                Ok(b) => {
                    h.update((b.len() as u64).to_be_bytes());
                    h.update(&b);
                }
                Err(_) => h.update(b"missing"),
            }
        }
    }
    (h.finalize().into(), parsed)
}

/// Loads and builds a web config file (blocking).
fn load(path: &Path) -> ([u8; 32], Result<Active, WebConfigError>) {
    let (fp, parsed) = fingerprint(path);
    let active = parsed.and_then(|cfg| {
        let a = Active::build(&cfg).map_err(|e| e.in_file(path))?;
        describe(path, &cfg);
        Ok(a)
    });
    (fp, active)
}

fn describe(path: &Path, cfg: &WebConfig) {
    tracing::info!(
        file = %path.display(),
        tls = cfg.tls.is_some(),
        client_auth = ?cfg.tls.as_ref().map(|t| t.client_auth),
        basic_auth_users = cfg.basic_auth_users.len(),
        http2 = cfg.http2,
        "web config loaded"
    );
    if cfg.tls.is_none() && !cfg.basic_auth_users.is_empty() {
        tracing::warn!("basic auth without TLS: passwords cross the network in clear text");
    }
}

/// Re-checks the watched file; applies a changed valid one, logs a changed invalid one once.
fn check_reload(watched: &Mutex<Watched>, shared: &Shared) {
    let Ok(mut w) = watched.lock() else { return };
    let (fp, _) = fingerprint(&w.path);
    if fp == w.applied || Some(fp) == w.last_bad {
        return;
    }
    let (fp, result) = load(&w.path);
    match result {
        Ok(active) => {
            shared.replace(active);
            w.applied = fp;
            w.last_bad = None;
            tracing::info!(file = %w.path.display(), "web config reloaded");
        }
        Err(e) => {
            w.last_bad = Some(fp);
            tracing::error!(error = %e, "web config changed but is invalid; keeping the previous one");
        }
    }
}

/// Checks a web config file completely (YAML, keys, hashes, certificate and key files), as
/// `promtool check web-config` does. Blocking.
pub fn check_file(path: &Path) -> Result<(), WebConfigError> {
    let cfg = WebConfig::load(path)?;
    Active::build(&cfg).map_err(|e| e.in_file(path))?;
    Ok(())
}

/// A bound server with its web configuration loaded.
pub struct WebServer {
    listener: TcpListener,
    shared: Arc<Shared>,
    watched: Option<Arc<Mutex<Watched>>>,
    options: ServerOptions,
}

impl WebServer {
    /// Loads the web config (an invalid one is an error naming the key) for serving on
    /// `listener`.
    pub async fn from_listener(
        listener: TcpListener,
        options: ServerOptions,
    ) -> Result<WebServer, WebConfigError> {
        let (shared, watched) = Self::load_initial(&options).await?;
        Ok(WebServer {
            listener,
            shared,
            watched,
            options,
        })
    }

    #[allow(clippy::type_complexity)]
    async fn load_initial(
        options: &ServerOptions,
    ) -> Result<(Arc<Shared>, Option<Arc<Mutex<Watched>>>), WebConfigError> {
        let Some(path) = options.web_config_file.clone() else {
            return Ok((
                Arc::new(Shared::new(Active::plain(), &options.limits)),
                None,
            ));
        };
        let p = path.clone();
        let (fp, result) = tokio::task::spawn_blocking(move || load(&p))
            .await
            .map_err(|e| WebConfigError {
                file: Some(path.clone()),
                key: None,
                message: format!("loading failed: {e}"),
            })?;
        let active = result?;
        let watched = Watched {
            path,
            applied: fp,
            last_bad: None,
        };
        Ok((
            Arc::new(Shared::new(active, &options.limits)),
            Some(Arc::new(Mutex::new(watched))),
        ))
    }

    /// The bound address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Whether the configuration in force serves TLS.
    pub fn tls_enabled(&self) -> bool {
        self.shared.current().tls.is_some()
    }

    /// A handle to read basic-auth counters while serving.
    pub fn stats_handle(&self) -> StatsHandle {
        StatsHandle(self.shared.clone())
    }

    /// Serves `router` (wrapped in the protective layers) until `shutdown` completes, then
    /// stops accepting, lets in-flight requests finish within `shutdown_grace`, and returns.
    pub async fn serve<F>(self, router: Router, shutdown: F) -> io::Result<()>
    where
        F: Future<Output = ()> + Send,
    {
        let WebServer {
            listener,
            shared,
            watched,
            options,
        } = self;
        let limits = options.limits.clone();
        let app = guard::protect(router, shared.clone(), &limits);
        let addr = listener.local_addr()?;
        tracing::info!(
            address = %addr,
            tls = shared.current().tls.is_some(),
            basic_auth = shared.current().users.is_some(),
            "serving HTTP"
        );

        let reloader = watched.map(|w| {
            let shared = shared.clone();
            let every = options.reload_interval.max(Duration::from_millis(50));
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(every).await;
                    let (w, s) = (w.clone(), shared.clone());
                    let _ = tokio::task::spawn_blocking(move || check_reload(&w, &s)).await;
                }
            })
        });

        let (stop_tx, stop_rx) = watch::channel(false);
        let (done_tx, mut done_rx) = mpsc::channel::<()>(1);
        let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
        tokio::pin!(shutdown);
        loop {
            let permit = tokio::select! {
                p = slots.clone().acquire_owned() => match p {
                    Ok(p) => p,
                    Err(_) => break,
                },
                _ = &mut shutdown => break,
            };
            let (tcp, peer) = tokio::select! {
                r = listener.accept() => match r {
                    Ok(c) => c,
                    Err(e) => {
                        // Out of file descriptors and the like: back off, keep serving.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                _ = &mut shutdown => break,
            };
            let _ = tcp.set_nodelay(true);
            let active = shared.current();
            let app = app.clone();
            let stop = stop_rx.clone();
            let done = done_tx.clone();
            let limits = limits.clone();
            tokio::spawn(async move {
                let _permit = permit;
                let _done = done;
                match &active.tls {
                    None => {
                        // A client that connects and sends nothing is dropped after the header
                        // read timeout (hyper's own timer starts only once it sniffed a version).
                        let mut first = [0u8; 1];
                        match tokio::time::timeout(limits.header_read_timeout, tcp.peek(&mut first))
                            .await
                        {
                            Ok(Ok(n)) if n > 0 => {}
                            _ => return,
                        }
                        let proto = if active.http2 {
                            Proto::Auto
                        } else {
                            Proto::Http1
                        };
                        serve_conn(TokioIo::new(tcp), app, peer, proto, &limits, stop).await
                    }
                    Some(cfg) => {
                        let acceptor = tokio_rustls::TlsAcceptor::from(cfg.clone());
                        match tokio::time::timeout(
                            limits.tls_handshake_timeout,
                            acceptor.accept(tcp),
                        )
                        .await
                        {
                            Ok(Ok(tls)) => {
                                // ALPN decides the protocol; without ALPN, sniff it.
                                let proto = match tls.get_ref().1.alpn_protocol() {
                                    Some(b"h2") => Proto::Http2,
                                    Some(_) => Proto::Http1,
                                    None if active.http2 => Proto::Auto,
                                    None => Proto::Http1,
                                };
                                serve_conn(TokioIo::new(tls), app, peer, proto, &limits, stop).await
                            }
                            Ok(Err(e)) => {
                                tracing::debug!(%peer, error = %e, "TLS handshake failed")
                            }
                            Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                        }
                    }
                }
            });
        }
        drop(listener);
        if let Some(r) = reloader {
            r.abort();
        }
        tracing::info!("shutting down: waiting for in-flight requests");
        let _ = stop_tx.send(true);
        drop(done_tx);
        if tokio::time::timeout(limits.shutdown_grace, done_rx.recv())
            .await
            .is_err()
        {
            tracing::warn!("shutdown grace period over; closing remaining connections");
        }
        Ok(())
    }
}

/// Reads the basic-auth counters of a running server.
#[derive(Clone)]
pub struct StatsHandle(Arc<Shared>);

impl StatsHandle {
    pub fn auth(&self) -> AuthStats {
        self.0.verifier.stats()
    }
}

/// Which HTTP version a connection speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Proto {
    Http1,
    Http2,
    /// Sniffed from the first bytes (plain connections, TLS without ALPN).
    Auto,
}

async fn serve_conn<I>(
    io: TokioIo<I>,
    app: Router,
    peer: SocketAddr,
    proto: Proto,
    limits: &Limits,
    mut stop: watch::Receiver<bool>,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let svc = tower::ServiceBuilder::new()
        .map_request(move |mut r: axum::http::Request<Incoming>| {
            r.extensions_mut().insert(ConnectInfo(peer));
            r
        })
        .service(app);
    let svc = TowerToHyperService::new(svc);
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(64 * 1024);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(64)
        .max_header_list_size(64 * 1024)
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .keep_alive_timeout(limits.header_read_timeout);
    let builder = match proto {
        Proto::Http1 => builder.http1_only(),
        Proto::Http2 => builder.http2_only(),
        Proto::Auto => builder,
    };
    let conn = builder.serve_connection(io, svc);
    tokio::pin!(conn);
    let mut stopping = false;
    loop {
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
                break;
            }
            _ = stop.wait_for(|s| *s), if !stopping => {
                stopping = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}
