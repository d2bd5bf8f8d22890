//! [`WebServer`]: binds the pieces together. It loads the web config (an invalid one is an
//! error naming the key), then [`WebServer::serve`] runs the accept loop: every accepted
//! connection goes through [`crate::admission`] (which may close idle ones to make room) and is
//! served on its own task by [`crate::connection`]; the web config file is re-checked by
//! [`crate::reload`]; on shutdown the listener closes and in-flight requests get
//! `shutdown_grace` to finish.
//!
//! Use: `WebServer::from_listener(listener, options).await?`, then
//! `server.serve(router, shutdown).await`.

use crate::admission::{Admission, AdmissionStats};
use crate::auth::AuthStats;
use crate::config::WebConfigError;
use crate::connection::{self, Serving};
use crate::guard::{self, Active, GuardState};
use crate::limits::Limits;
use crate::reload::{self, WatchedFile};
use axum::Router;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

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

/// A bound server with its web configuration loaded.
pub struct WebServer {
    listener: TcpListener,
    state: Arc<GuardState>,
    admission: Arc<Admission>,
    watched: Option<Arc<Mutex<WatchedFile>>>,
    options: ServerOptions,
}

impl WebServer {
    /// Loads the web config (an invalid one is an error naming the key) for serving on
    /// `listener`.
    pub async fn from_listener(
        listener: TcpListener,
        options: ServerOptions,
    ) -> Result<WebServer, WebConfigError> {
        let (active, watched) = match options.web_config_file.clone() {
            None => (Active::plain(), None),
            Some(path) => {
                let (active, watched) = reload::load_initial(path).await?;
                (active, Some(watched))
            }
        };
        Ok(WebServer {
            listener,
            state: Arc::new(GuardState::new(active, &options.limits)),
            admission: Arc::new(Admission::new(&options.limits)),
            watched,
            options,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// A handle to read the server's counters while it serves.
    pub fn stats_handle(&self) -> StatsHandle {
        StatsHandle {
            state: self.state.clone(),
            admission: self.admission.clone(),
        }
    }

    /// Serves `router` (wrapped in the protective layers) until `shutdown` completes, then
    /// stops accepting, lets in-flight requests finish within `shutdown_grace`, and returns.
    pub async fn serve<F>(self, router: Router, shutdown: F) -> io::Result<()>
    where
        F: Future<Output = ()> + Send,
    {
        let WebServer {
            listener,
            state,
            admission,
            watched,
            options,
        } = self;
        let limits = options.limits;
        let active = state.current();
        tracing::info!(
            address = %listener.local_addr()?,
            tls = active.tls.is_some(),
            basic_auth = active.users.is_some(),
            max_connections = limits.max_connections,
            "serving HTTP"
        );
        let reloader =
            watched.map(|w| reload::spawn_reloader(w, state.clone(), options.reload_interval));
        let (stop_tx, stop_rx) = watch::channel(false);
        let (done_tx, done_rx) = mpsc::channel::<()>(1);
        let serving = Serving {
            app: guard::protect(router, state.clone(), &limits),
            limits: limits.clone(),
            stop: stop_rx,
        };
        let accepting = Accepting {
            listener,
            admission,
            state,
            serving,
            done: done_tx,
        };
        accepting.run_until(shutdown).await;
        if let Some(r) = reloader {
            r.abort();
        }
        drain(stop_tx, done_rx, limits.shutdown_grace).await;
        Ok(())
    }
}

/// The accept loop and what it hands to each connection.
struct Accepting {
    listener: TcpListener,
    admission: Arc<Admission>,
    state: Arc<GuardState>,
    serving: Serving,
    /// Held by every connection task; closed when the last one ends.
    done: mpsc::Sender<()>,
}

impl Accepting {
    /// Accepts until `shutdown` completes; then the listener is closed.
    async fn run_until<F: Future<Output = ()>>(self, shutdown: F) {
        tokio::pin!(shutdown);
        loop {
            let (tcp, peer) = tokio::select! {
                r = self.listener.accept() => match r {
                    Ok(c) => c,
                    Err(e) => {
                        self.accept_failed(&e).await;
                        continue;
                    }
                },
                _ = &mut shutdown => return,
            };
            // Refused: dropping the stream closes it.
            let Some(ticket) = self.admission.admit(peer.ip()) else {
                continue;
            };
            let active = self.state.current();
            let serving = self.serving.clone();
            let done = self.done.clone();
            tokio::spawn(async move {
                let _done = done;
                connection::run(tcp, peer, ticket, active, serving).await;
            });
        }
    }

    /// Out of file descriptors and the like: close the longest-idle connection when that is
    /// the cause, back off a moment, keep serving.
    async fn accept_failed(&self, e: &io::Error) {
        // EMFILE and ENFILE have these numbers on Linux, the BSDs and macOS.
        let out_of_files = matches!(e.raw_os_error(), Some(23 | 24));
        if out_of_files {
            self.admission.make_room();
        }
        tracing::warn!(error = %e, "accept failed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Tells every connection to finish (HTTP/2 GOAWAY, HTTP/1 close after the response in
/// progress) and waits up to `grace` for them.
async fn drain(stop: watch::Sender<bool>, mut done: mpsc::Receiver<()>, grace: Duration) {
    tracing::info!("shutting down: waiting for in-flight requests");
    let _ = stop.send(true);
    if tokio::time::timeout(grace, done.recv()).await.is_err() {
        tracing::warn!("shutdown grace period over; closing remaining connections");
    }
}

/// Reads the counters of a running server.
#[derive(Clone)]
pub struct StatsHandle {
    state: Arc<GuardState>,
    admission: Arc<Admission>,
}

impl StatsHandle {
    /// Basic-auth verifications and cache hits.
    pub fn auth(&self) -> AuthStats {
        self.state.verifier.stats()
    }

    /// Connection admission: open, accepted, closed to make room, refused, timed out.
    pub fn admission(&self) -> AdmissionStats {
        self.admission.stats()
    }
}
