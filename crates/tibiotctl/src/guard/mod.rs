//! `tibiotctl guard`: a long-running Alertmanager webhook receiver that switches runaway cards
//! off (README "Protecting a pool", docs/runbook.md). This module owns the command's flags,
//! start-up (files, the exposure check, the audit log, the listener), the HTTP routes and the
//! signals; [`config`] parses the guard file, [`alert`] the webhook message, [`state`] keeps
//! the audit log and what it says, [`engine`] decides and acts, [`metrics`] counts.
//!
//! Routes: `POST /webhook`, `GET /metrics`, `GET /-/healthy`, `GET /-/ready`,
//! `POST /-/reload` (and SIGHUP), `GET /` (a plain-text summary). Served through `tibiot-web`
//! (`--web.config.file`: TLS, basic auth).

pub mod alert;
pub mod config;
pub mod engine;
pub mod metrics;
pub mod state;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use clap::Args;
use engine::{Guard, Settings};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

/// The default `--guard.file`.
pub const DEFAULT_GUARD_FILE: &str = "guard.yml";
/// How long in-flight actions may still take after SIGTERM.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(60);
/// Largest webhook message accepted (Alertmanager's `max_alerts` bounds it at the source).
const MAX_BODY_BYTES: usize = 4 << 20;

/// `tibiotctl guard` flags (besides `--config.file` and `--timeout`).
#[derive(Debug, Clone, Args)]
pub struct GuardArgs {
    /// The guard file: mode, policies, limits, protect list, audit log.
    #[arg(long = "guard.file", value_name = "PATH", default_value = DEFAULT_GUARD_FILE, help_heading = "Guard")]
    pub guard_file: PathBuf,
    /// How long the batch of one action is followed before its outcome is `unknown`.
    #[arg(long = "wait-timeout", value_name = "DURATION", default_value = "10m", value_parser = crate::parse_timeout, help_heading = "Guard")]
    pub wait_timeout: Duration,
    /// Address to listen on (`:9870` = every interface).
    #[arg(
        long = "web.listen-address",
        value_name = "ADDR",
        default_value = ":9870",
        help_heading = "Web"
    )]
    pub listen_address: String,
    /// Web configuration file (TLS, basic auth), exporter-toolkit format. Required for
    /// enforce mode on a non-loopback address.
    #[arg(long = "web.config.file", value_name = "PATH", help_heading = "Web")]
    pub web_config_file: Option<PathBuf>,
    /// Requests served at once; beyond it 503 at once. 0: no limit.
    #[arg(long = "web.max-requests", value_name = "N", default_value_t = tibiot_web::DEFAULT_MAX_REQUESTS, help_heading = "Web")]
    pub max_requests: usize,
    /// `--log.level`, `--log.format` (the exporter's).
    #[command(flatten, next_help_heading = "Logging")]
    pub log: tibiot_exporter::serve::LogFlags,
}

/// Runs the guard until SIGTERM/SIGINT; returns the exit status (2: bad files or an
/// unprotected enforce mode, 1: runtime failure).
pub fn run(config_file: PathBuf, timeout: Duration, args: GuardArgs) -> ExitCode {
    if let Err(e) = args.log.init() {
        eprintln!("tibiotctl: error: {e}");
        return ExitCode::from(2);
    }
    if let Some(web) = &args.web_config_file
        && let Err(e) = tibiot_web::WebConfig::load(web)
    {
        eprintln!("tibiotctl: error: invalid {e}");
        return ExitCode::from(2);
    }
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tibiotctl: error: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    rt.block_on(serve(config_file, timeout, args))
}

async fn serve(config_file: PathBuf, timeout: Duration, args: GuardArgs) -> ExitCode {
    // Everything is checked before the port is opened.
    let settings = Settings {
        config_file,
        guard_file: args.guard_file.clone(),
        web_config_file: args.web_config_file.clone(),
        listen: args.listen_address.clone(),
        listen_loopback: engine::is_loopback_listen(&args.listen_address),
        timeout,
        wait_timeout: args.wait_timeout,
    };
    let guard = match Guard::start(settings) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("tibiotctl: error: {e}");
            return ExitCode::from(2);
        }
    };
    let listener = match tibiot_exporter::serve::bind_listener(&args.listen_address).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!(
                "tibiotctl: error: cannot listen on {}: {e}",
                args.listen_address
            );
            return ExitCode::from(1);
        }
    };
    let listen = match listener.local_addr() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("tibiotctl: error: {e}");
            return ExitCode::from(1);
        }
    };
    let options = tibiot_web::ServerOptions {
        web_config_file: args.web_config_file.clone(),
        limits: tibiot_web::Limits {
            max_concurrent_requests: args.max_requests,
            max_request_body_bytes: MAX_BODY_BYTES,
            ..Default::default()
        },
        ..Default::default()
    };
    let server = match tibiot_web::WebServer::from_listener(listener, options).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("tibiotctl: error: invalid {e}");
            return ExitCode::from(2);
        }
    };
    tracing::info!(address = %listen, mode = guard.mode().name(), "listening");
    let g = guard.clone();
    tibiot_exporter::serve::on_sighup("the guard's configuration", move || {
        let g = g.clone();
        async move {
            let _ = tokio::task::spawn_blocking(move || g.reload()).await;
        }
    });
    let result = server
        .serve(
            router(guard.clone()),
            tibiot_exporter::serve::shutdown_signal(),
        )
        .await;
    let left = guard.drain(SHUTDOWN_GRACE).await;
    if left > 0 {
        tracing::warn!(
            in_flight = left,
            "stopping with actions in flight: their outcome is reported unknown at the next start"
        );
    }
    match result {
        Ok(()) => {
            tracing::info!("shut down");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("tibiotctl: error: {e}");
            ExitCode::from(1)
        }
    }
}

/// The guard's routes.
pub fn router(guard: Arc<Guard>) -> Router {
    Router::new()
        .route("/webhook", post(webhook))
        .route("/metrics", get(metrics_page))
        .route("/-/healthy", get(|| async { "Healthy.\n" }))
        .route("/-/ready", get(|| async { "Ready.\n" }))
        .route("/-/reload", post(reload))
        .route("/", get(index))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(guard)
}

fn text(status: StatusCode, body: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body,
    )
        .into_response()
}

async fn webhook(State(guard): State<Arc<Guard>>, body: Bytes) -> Response {
    let n = match alert::Notification::parse(&body) {
        Ok(n) => n,
        Err(alert::BadMessage(m)) => {
            guard.metrics_notification("invalid");
            tracing::warn!(error = %m, "webhook message refused");
            return text(StatusCode::BAD_REQUEST, format!("{m}\n"));
        }
    };
    let g = guard.clone();
    // Audit lines are fsynced: off the async workers.
    let handled = tokio::task::spawn_blocking(move || {
        g.still_protected().map_err(|e| {
            tracing::error!(error = %e, "webhook refused: nothing done");
            engine::AuditFailed(e.to_string())
        })?;
        g.handle(n)
    })
    .await;
    match handled {
        Ok(Ok(h)) => {
            guard.metrics_notification("accepted");
            text(
                StatusCode::OK,
                format!("accepted: {} decided, {} repeated\n", h.decided, h.repeats),
            )
        }
        Ok(Err(engine::AuditFailed(m))) => {
            guard.metrics_notification("error");
            text(StatusCode::INTERNAL_SERVER_ERROR, format!("{m}\n"))
        }
        Err(e) => {
            guard.metrics_notification("error");
            tracing::error!(error = %e, "webhook handling failed");
            text(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal error\n".to_owned(),
            )
        }
    }
}

async fn metrics_page(State(guard): State<Arc<Guard>>, headers: HeaderMap) -> Response {
    let om = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("application/openmetrics-text"));
    let body = guard.encode_metrics(om);
    let ctype = if om {
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    } else {
        "text/plain; version=0.0.4; charset=utf-8"
    };
    ([(header::CONTENT_TYPE, ctype)], body).into_response()
}

async fn reload(State(guard): State<Arc<Guard>>) -> Response {
    let g = guard.clone();
    match tokio::task::spawn_blocking(move || g.reload()).await {
        Ok(Ok(())) => text(StatusCode::OK, "reloaded\n".into()),
        Ok(Err(e)) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("reload failed, the previous files stay in force: {e}\n"),
        ),
        Err(_) => text(StatusCode::INTERNAL_SERVER_ERROR, "reload failed\n".into()),
    }
}

async fn index(State(guard): State<Arc<Guard>>) -> Response {
    text(StatusCode::OK, guard.summary())
}
