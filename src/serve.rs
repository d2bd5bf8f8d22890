//! The default command: load the configuration (a bad one exits 2 naming the key), build the
//! collector and the router, listen, re-read the configuration on SIGHUP and `POST /-/reload`,
//! and shut down gracefully on SIGTERM/SIGINT.
//!
//! Seam for the web layer: [`serve_router`] is the one function that puts the router on the
//! network, through `tibiot_web::WebServer` (TLS and basic auth from `--web.config.file`,
//! connection admission and request limits from [`WebFlags`]).

use crate::config::Config;
use crate::http::{App, Loader, Shard, router};
use crate::logging::{self, LogFormat};
use axum::Router;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
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
    pub(crate) config_file: PathBuf,
    /// Address to listen on (`:9869` = every interface).
    #[arg(
        long = "web.listen-address",
        default_value = ":9869",
        value_name = "ADDR"
    )]
    pub(crate) listen_address: String,
    /// Web configuration file (TLS, basic auth), exporter-toolkit format.
    #[arg(long = "web.config.file", value_name = "PATH")]
    pub(crate) web_config_file: Option<PathBuf>,
    #[command(flatten)]
    pub web: WebFlags,
    /// This replica's shard, 0 to --total-shards − 1 (or a StatefulSet pod name such as
    /// tibiot-exporter-2: the number after its last '-'). It collects and serves only the
    /// targets whose stable hash falls on it.
    #[arg(long = "shard", default_value = "0", value_name = "N", value_parser = crate::collect::shard::parse_shard)]
    pub(crate) shard: u32,
    /// How many replicas share the targets (1: this one serves them all).
    #[arg(long = "total-shards", default_value_t = 1, value_name = "M")]
    pub(crate) total_shards: u32,
    #[command(flatten)]
    pub log: LogFlags,
}

/// Request and connection limits of the web server (README, "Securing the exporter"). Any
/// binary that serves through `tibiot_web::WebServer` can flatten these.
#[derive(Debug, Clone, clap::Args)]
pub struct WebFlags {
    /// Requests served at once, every endpoint counted; beyond it 503 at once. 0: no limit.
    #[arg(
        long = "web.max-requests",
        default_value_t = tibiot_web::DEFAULT_MAX_REQUESTS,
        value_name = "N",
        global = true
    )]
    pub(crate) max_requests: usize,
    /// Open connections at once. A new connection beyond it closes the longest-idle one
    /// (first those that never sent a request); connections with a request in progress are
    /// kept.
    #[arg(
        long = "web.max-connections",
        default_value_t = tibiot_web::DEFAULT_MAX_CONNECTIONS,
        value_parser = positive_count,
        value_name = "N",
        global = true
    )]
    pub(crate) max_connections: usize,
    /// Open connections from one client address (IPv6: one /64). A new one beyond it closes
    /// that client's own longest-idle connection. 0: no per-client limit.
    #[arg(
        long = "web.max-connections-per-client",
        default_value_t = tibiot_web::DEFAULT_MAX_CONNECTIONS_PER_CLIENT,
        value_name = "N",
        global = true
    )]
    pub(crate) max_connections_per_client: usize,
    /// Time from connecting to complete request headers (TLS handshake and HTTP/2 preface
    /// included), and from the first byte of a later HTTP/1 request to its headers.
    #[arg(
        long = "web.read-header-timeout",
        default_value = "10s",
        value_parser = positive_duration,
        value_name = "DURATION",
        global = true
    )]
    pub(crate) read_header_timeout: Duration,
    /// Time a connection may stay open without a request (HTTP/1 keep-alive and HTTP/2
    /// alike). Keep it above the scrape interval so scrapes reuse their connection.
    #[arg(
        long = "web.idle-timeout",
        default_value = "3m",
        value_parser = positive_duration,
        value_name = "DURATION",
        global = true
    )]
    pub(crate) idle_timeout: Duration,
}

impl WebFlags {
    /// The web server's options: these limits, `web_config_file`, the rest default.
    pub(crate) fn server_options(
        &self,
        web_config_file: Option<&Path>,
    ) -> tibiot_web::ServerOptions {
        tibiot_web::ServerOptions {
            web_config_file: web_config_file.map(Path::to_path_buf),
            limits: tibiot_web::Limits {
                max_concurrent_requests: self.max_requests,
                max_connections: self.max_connections,
                max_connections_per_client: self.max_connections_per_client,
                header_read_timeout: self.read_header_timeout,
                idle_timeout: self.idle_timeout,
                ..Default::default()
            },
            ..Default::default()
        }
    }
}

fn positive_count(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err("must be above 0".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}

/// A duration in the configuration's compact form (`10s`, `3m`, `1m30s`), above 0.
fn positive_duration(s: &str) -> Result<Duration, String> {
    match crate::config::parse_duration(s) {
        Ok(d) if d.is_zero() => Err("must be above 0".into()),
        Ok(d) => Ok(d),
        Err(e) => Err(e.to_string()),
    }
}

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
    pub(crate) level: String,
    /// Log format.
    #[arg(
        long = "log.format",
        value_enum,
        default_value = "logfmt",
        global = true
    )]
    pub(crate) format: LogFormat,
}

impl LogFlags {
    /// Installs the global logger these flags describe (`tibiotctl guard` logs like the
    /// exporter). An unknown level is an error.
    pub fn init(&self) -> Result<(), String> {
        logging::init(&self.level, self.format)
    }
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
        && let Err(e) = tibiot_web::check_file(web)
    {
        eprintln!("error: invalid {e}");
        return ExitCode::from(2);
    }
    let shard = match Shard::new(flags.shard, flags.total_shards) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
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
        let web = flags.web.server_options(flags.web_config_file.as_deref());
        run_server(config, Some(loader), listener, web, shard).await
    })
}

/// Serves `config` on `listener` with the web server `options` until SIGTERM/SIGINT; SIGHUP
/// reloads through `loader`; `shard`: the targets this replica owns.
pub(crate) async fn run_server(
    config: Config,
    loader: Option<Loader>,
    listener: TcpListener,
    web: tibiot_web::ServerOptions,
    shard: Shard,
) -> ExitCode {
    let app = match App::sharded(config, loader, shard) {
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
    if shard.is_sharded() {
        tracing::info!(
            shard = shard.shard,
            total_shards = shard.total,
            "serving one shard: only the targets whose hash falls on it"
        );
    }
    tracing::info!(address = %addr, version = crate::metrics::VERSION, "listening");
    let a = app.clone();
    on_sighup("the configuration", move || {
        let a = a.clone();
        async move {
            let _ = a.reload().await;
        }
    });
    warn_if_few_file_descriptors(web.limits.max_connections);
    match serve_router(listener, router(app), web, shutdown_signal()).await {
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
/// finish). The web layer (TLS, basic auth, admission, limits per `options`) plugs in here.
pub(crate) async fn serve_router(
    listener: TcpListener,
    app: Router,
    options: tibiot_web::ServerOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let server = tibiot_web::WebServer::from_listener(listener, options)
        .await
        .map_err(std::io::Error::other)?;
    server.serve(app, shutdown).await
}

/// Each connection takes a file descriptor: warn when the process may run out of them before
/// `--web.max-connections` is reached (the server then closes idle connections to accept).
fn warn_if_few_file_descriptors(max_connections: usize) {
    #[cfg(unix)]
    {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit only writes the struct it is given.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
            return;
        }
        // rlim_t is not u64 on every platform.
        #[allow(clippy::unnecessary_cast)]
        let limit = lim.rlim_cur as u64;
        // Room for the upstream connections, log files and the like.
        let needed = max_connections as u64 + 128;
        if lim.rlim_cur != libc::RLIM_INFINITY && limit < needed {
            tracing::warn!(
                open_files_limit = limit,
                max_connections,
                "the open files limit (ulimit -n) is below --web.max-connections + 128; \
                 raise it or lower --web.max-connections"
            );
        }
    }
    #[cfg(not(unix))]
    let _ = max_connections;
}

/// Calls `reload` on every SIGHUP (Unix), logging `what` is reloaded; the exporter's and the
/// guard's reload path alike. A no-op elsewhere.
pub fn on_sighup<F, Fut>(what: &'static str, reload: F)
where
    F: Fn() -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    #[cfg(unix)]
    tokio::spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(mut hup) = signal(SignalKind::hangup()) else {
            tracing::warn!("cannot listen for SIGHUP; reload with POST /-/reload");
            return;
        };
        while hup.recv().await.is_some() {
            tracing::info!("SIGHUP: reloading {what}");
            reload().await;
        }
    });
    #[cfg(not(unix))]
    let _ = (what, reload);
}

/// Parses the command line of a binary (exporter or `tibiotctl`): on a usage error the message
/// and exit code 2; for `--help` and `--version` the text and exit code 0.
pub fn parse_args<C: clap::Parser>() -> Result<C, ExitCode> {
    C::try_parse().map_err(|e| {
        let _ = e.print();
        if e.use_stderr() {
            ExitCode::from(2)
        } else {
            ExitCode::SUCCESS
        }
    })
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

    #[test]
    fn web_flag_defaults_are_the_web_layer_defaults() {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            web: WebFlags,
        }
        let cli = <Cli as clap::Parser>::try_parse_from(["x"]).unwrap();
        let got = cli.web.server_options(None);
        assert_eq!(got.limits, tibiot_web::Limits::default());
        let cli = <Cli as clap::Parser>::try_parse_from([
            "x",
            "--web.max-connections=64",
            "--web.max-connections-per-client=0",
            "--web.read-header-timeout=5s",
            "--web.idle-timeout=1m30s",
        ])
        .unwrap();
        let l = cli.web.server_options(None).limits;
        assert_eq!((l.max_connections, l.max_connections_per_client), (64, 0));
        assert_eq!(l.header_read_timeout, Duration::from_secs(5));
        assert_eq!(l.idle_timeout, Duration::from_secs(90));
        for bad in [
            "--web.max-connections=0",
            "--web.idle-timeout=0s",
            "--web.idle-timeout=3",
        ] {
            assert!(
                <Cli as clap::Parser>::try_parse_from(["x", bad]).is_err(),
                "{bad}"
            );
        }
    }

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
