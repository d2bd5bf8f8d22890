//! The default command: load the configuration (a bad one exits 2 naming the key), build the
//! collector and the router, listen, re-read the configuration on SIGHUP and `POST /-/reload`,
//! and shut down gracefully on SIGTERM/SIGINT.
//!
//! Seam for the web layer: [`serve_router`] is the one function that puts the router on the
//! network; TLS and basic auth from `--web.config.file` plug in there.

use crate::config::Config;
use crate::http::{App, Loader, router};
use crate::logging::{self, LogFormat};
use axum::Router;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use tokio::net::TcpListener;

/// Flags of the server (README, "Command line").
#[derive(Debug, Clone, clap::Args)]
pub struct ServeFlags {
    /// Configuration file.
    #[arg(
        long = "config.file",
        default_value = "tibiot-exporter.yml",
        value_name = "PATH"
    )]
    pub config_file: PathBuf,
    /// Address to listen on (`:9869` = every interface).
    #[arg(
        long = "web.listen-address",
        default_value = ":9869",
        value_name = "ADDR"
    )]
    pub listen_address: String,
    /// Web configuration file (TLS, basic auth), exporter-toolkit format.
    #[arg(long = "web.config.file", value_name = "PATH")]
    pub web_config_file: Option<PathBuf>,
    /// Requests served at once, every endpoint counted; beyond it 503 at once. 0: no limit.
    #[arg(
        long = "web.max-requests",
        default_value_t = DEFAULT_MAX_REQUESTS,
        value_name = "N",
        global = true
    )]
    pub max_requests: usize,
    #[command(flatten)]
    pub log: LogFlags,
}

/// `--web.max-requests` when not given.
pub const DEFAULT_MAX_REQUESTS: usize = 64;

/// Logging flags, shared by the server and the demo.
#[derive(Debug, Clone, clap::Args)]
pub struct LogFlags {
    /// Only log messages with this severity or above: error, warn, info, debug.
    #[arg(
        long = "log.level",
        default_value = "info",
        value_name = "LEVEL",
        global = true
    )]
    pub level: String,
    /// Log format.
    #[arg(
        long = "log.format",
        value_enum,
        default_value = "logfmt",
        global = true
    )]
    pub format: LogFormat,
}

/// Listens on `--web.listen-address`. `:9869` means every interface, IPv6 and IPv4 like the Go
/// exporters (`[::]:9869`, dual-stack), falling back to `0.0.0.0:9869` where IPv6 is off;
/// other forms (`127.0.0.1:9869`, `[::1]:9869`, `host:9869`) are bound as given.
pub async fn bind_listener(listen: &str) -> std::io::Result<TcpListener> {
    match listen.strip_prefix(':') {
        Some(port) => match TcpListener::bind(format!("[::]:{port}")).await {
            Ok(l) => Ok(l),
            Err(_) => TcpListener::bind(format!("0.0.0.0:{port}")).await,
        },
        None => TcpListener::bind(listen).await,
    }
}

/// Runs the server; returns the process exit status.
pub fn run(flags: ServeFlags) -> ExitCode {
    if let Err(e) = logging::init(&flags.log.level, flags.log.format) {
        eprintln!("error: {e}");
        return ExitCode::from(2);
    }
    let config = match Config::load(&flags.config_file) {
        Ok(c) => c,
        Err(e) => {
            eprintln!(
                "error: invalid configuration {}:\n{e}",
                flags.config_file.display()
            );
            return ExitCode::from(2);
        }
    };
    if let Some(web) = &flags.web_config_file
        && let Err(e) = tibiot_web::server::check_file(web)
    {
        eprintln!("error: invalid {e}");
        return ExitCode::from(2);
    }
    crate::sys::limit_malloc_arenas();
    let path = flags.config_file.clone();
    let loader: Loader = Arc::new(move || Config::load(&path));
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    rt.block_on(async move {
        let listener = match bind_listener(&flags.listen_address).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("error: cannot listen on {}: {e}", flags.listen_address);
                return ExitCode::from(1);
            }
        };
        run_server(
            config,
            Some(loader),
            listener,
            flags.web_config_file,
            flags.max_requests,
        )
        .await
    })
}

/// Serves `config` on `listener` until SIGTERM/SIGINT; SIGHUP reloads through `loader`.
/// `max_requests`: requests served at once (0: no limit).
pub async fn run_server(
    config: Config,
    loader: Option<Loader>,
    listener: TcpListener,
    web_config: Option<PathBuf>,
    max_requests: usize,
) -> ExitCode {
    let app = match App::new(config, loader) {
        Ok(app) => app,
        Err(e) => {
            eprintln!("error: invalid configuration: {e}");
            return ExitCode::from(2);
        }
    };
    let addr = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    tracing::info!(address = %addr, version = crate::metrics::VERSION, "listening");
    spawn_sighup(app.clone());
    match serve_router(
        listener,
        router(app),
        web_config.as_deref(),
        max_requests,
        shutdown_signal(),
    )
    .await
    {
        Ok(()) => {
            tracing::info!("shut down");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}

/// Puts the router on the network until `shutdown` resolves (graceful: in-flight requests
/// finish). The web layer (TLS, basic auth per `web_config`) plugs in here.
pub async fn serve_router(
    listener: TcpListener,
    app: Router,
    web_config: Option<&Path>,
    max_requests: usize,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let options = tibiot_web::ServerOptions {
        web_config_file: web_config.map(Path::to_path_buf),
        limits: tibiot_web::Limits {
            max_concurrent_requests: max_requests,
            ..Default::default()
        },
        ..Default::default()
    };
    let server = tibiot_web::WebServer::from_listener(listener, options)
        .await
        .map_err(std::io::Error::other)?;
    server.serve(app, shutdown).await
}

fn spawn_sighup(app: Arc<App>) {
    #[cfg(unix)]
    tokio::spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(mut hup) = signal(SignalKind::hangup()) else {
            tracing::warn!("cannot listen for SIGHUP; reload with POST /-/reload");
            return;
        };
        while hup.recv().await.is_some() {
            tracing::info!("SIGHUP: reloading the configuration");
            let _ = app.reload().await;
        }
    });
    #[cfg(not(unix))]
    let _ = app;
}

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => tracing::info!("SIGINT: shutting down"),
        _ = term => tracing::info!("SIGTERM: shutting down"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn listen_addresses() {
        // `:PORT` is every interface: reachable over IPv4 loopback (and IPv6 where enabled).
        let l = bind_listener(":0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        assert!(l.local_addr().unwrap().ip().is_unspecified());
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        let l = bind_listener("127.0.0.1:0").await.unwrap();
        assert!(l.local_addr().unwrap().ip().is_loopback());
        assert!(bind_listener("not an address").await.is_err());
    }
}
