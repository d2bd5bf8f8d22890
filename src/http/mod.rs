//! The exporter's HTTP surface (README, "Endpoints"), built as one `axum::Router` by [`router`]:
//! `/metrics` (streamed exposition, OpenMetrics by `Accept`, gzip by `Accept-Encoding`),
//! `/probe`, the landing page `/`, `/config` (redacted), `/-/healthy`, `/-/ready` and
//! `POST /-/reload`. [`App`] is the shared state: the collector, how to re-read the
//! configuration, and the reload status.

pub mod landing;

use crate::collect::Collector;
use crate::collect::cache::unix_now;
use crate::collect::scrape::Scope;
use crate::config::{Config, is_valid_iccid, is_valid_pool_code};
use crate::metrics::expo::{Format, Writer};
use crate::metrics::process::ProcessStats;
use crate::metrics::{SelfMetrics, encode, encode_into};
use axum::Router;
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;
use tower_http::compression::CompressionLayer;

/// Re-reads the configuration (config file and cards files).
pub type Loader = Arc<dyn Fn() -> Result<Config, String> + Send + Sync>;

/// Shared state of the HTTP handlers.
pub struct App {
    pub collector: Arc<Collector>,
    loader: Option<Loader>,
    reload_ok: AtomicBool,
    reload_time: Mutex<Option<f64>>,
    reload_lock: tokio::sync::Mutex<()>,
    /// A background refresh started by the landing page is running.
    landing_refresh: AtomicBool,
}

impl App {
    /// `loader` re-reads the configuration on reload; `None` when there is nothing to
    /// re-read (the demo's generated configuration).
    pub fn new(collector: Arc<Collector>, loader: Option<Loader>) -> Arc<Self> {
        Arc::new(Self {
            collector,
            loader,
            reload_ok: AtomicBool::new(true),
            reload_time: Mutex::new(Some(unix_now())),
            reload_lock: tokio::sync::Mutex::new(()),
            landing_refresh: AtomicBool::new(false),
        })
    }

    /// Re-reads and applies the configuration; on failure the old one stays and
    /// `tibiot_exporter_config_last_reload_successful` becomes 0.
    pub async fn reload(&self) -> Result<(), String> {
        let _guard = self.reload_lock.lock().await;
        let result = match &self.loader {
            None => Err("this configuration was not loaded from a file; nothing to re-read".into()),
            Some(load) => {
                let load = load.clone();
                match tokio::task::spawn_blocking(move || load()).await {
                    Ok(Ok(cfg)) => self.collector.reload(Arc::new(cfg)),
                    Ok(Err(e)) => Err(e),
                    Err(_) => Err("internal error while reading the configuration".into()),
                }
            }
        };
        match &result {
            Ok(()) => {
                self.reload_ok.store(true, Ordering::Relaxed);
                *crate::collect::lock(&self.reload_time) = Some(unix_now());
                tracing::info!("configuration reloaded");
            }
            Err(e) => {
                self.reload_ok.store(false, Ordering::Relaxed);
                tracing::error!(error = %e, "configuration reload failed; keeping the previous one");
            }
        }
        result
    }

    pub fn reload_ok(&self) -> bool {
        self.reload_ok.load(Ordering::Relaxed)
    }

    fn self_metrics(&self) -> SelfMetrics {
        SelfMetrics {
            reload_ok: self.reload_ok(),
            reload_success_time: *crate::collect::lock(&self.reload_time),
            stats: self.collector.stats(),
            process: ProcessStats::read(),
        }
    }

    /// The scrape deadline: `collect.timeout`, or Prometheus' scrape timeout header minus
    /// `collect.timeout_offset` when that is smaller.
    pub fn deadline(&self, headers: &HeaderMap) -> Instant {
        let cfg = self.collector.config();
        let c = &cfg.collect;
        let mut budget = c.timeout;
        if let Some(h) = headers
            .get("x-prometheus-scrape-timeout-seconds")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|v| v.is_finite() && *v > 0.0)
        {
            let header = Duration::from_secs_f64(h.min(1e6));
            let offered = header.checked_sub(c.timeout_offset).unwrap_or(header / 2);
            budget = budget.min(offered);
        }
        Instant::now() + budget
    }
}

/// Whether `Accept-Encoding` accepts gzip (`gzip` or `*` with a non-zero quality).
pub fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|item| {
            let mut parts = item.split(';').map(str::trim);
            let coding = parts.next().unwrap_or("");
            let q_ok = parts.all(|p| match p.split_once('=') {
                Some((k, v)) if k.trim().eq_ignore_ascii_case("q") => {
                    v.trim().parse::<f64>().is_ok_and(|q| q > 0.0)
                }
                _ => true,
            });
            q_ok && (coding.eq_ignore_ascii_case("gzip") || coding == "*")
        })
}

/// The exporter's router. The web layer (TLS, basic auth) wraps it; see `serve`.
pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/", get(landing::page))
        .route("/metrics", get(metrics))
        .route("/probe", get(probe))
        .route("/config", get(config))
        .route("/-/healthy", get(healthy))
        .route("/-/ready", get(ready))
        .route("/-/reload", post(reload).put(reload))
        .layer(
            CompressionLayer::new()
                .gzip(true)
                .no_br()
                .no_deflate()
                .no_zstd(),
        )
        .with_state(app)
}

fn text(status: StatusCode, body: impl Into<String>) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body.into(),
    )
        .into_response()
}

async fn metrics(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    let fmt = Format::from_accept(headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()));
    let deadline = app.deadline(&headers);
    let snap = app.collector.scrape(deadline).await;
    let me = app.self_metrics();
    let gzip = accepts_gzip(&headers);
    // Encode (and compress) on a blocking thread, streaming chunks: the runtime stays
    // responsive and a large exposition is never in memory whole. Compression happens here,
    // at the fastest level (a 13 MB exposition compresses in about 20 ms), rather than in the
    // generic compression layer.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Bytes>(4);
    tokio::task::spawn_blocking(move || {
        let mut open = true;
        let mut send = |chunk: Vec<u8>| {
            if open && !chunk.is_empty() && tx.blocking_send(Bytes::from(chunk)).is_err() {
                open = false; // the client went away
            }
        };
        if gzip {
            use std::io::Write;
            let mut gz = flate2::write::GzEncoder::new(
                Vec::with_capacity(crate::metrics::expo::CHUNK),
                flate2::Compression::fast(),
            );
            {
                let mut sink = |chunk: Vec<u8>| {
                    let _ = gz.write_all(&chunk);
                    if gz.get_ref().len() >= crate::metrics::expo::CHUNK {
                        send(std::mem::take(gz.get_mut()));
                    }
                };
                encode_into(&snap, Some(&me), Writer::streaming(fmt, &mut sink));
            }
            if let Ok(rest) = gz.finish() {
                send(rest);
            }
        } else {
            encode_into(&snap, Some(&me), Writer::streaming(fmt, &mut send));
        }
        drop(snap);
        crate::metrics::process::release_freed_memory();
    });
    let stream = futures::stream::poll_fn(move |cx| {
        rx.poll_recv(cx)
            .map(|o| o.map(Ok::<Bytes, std::convert::Infallible>))
    });
    let mut resp = Response::new(Body::from_stream(stream));
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(fmt.content_type()),
    );
    h.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    if gzip {
        h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    resp
}

async fn probe(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Query(params): Query<Vec<(String, String)>>,
) -> Response {
    let get = |k: &str| {
        let mut it = params.iter().filter(|(n, _)| n == k);
        let first = it.next().map(|(_, v)| v.as_str());
        (first, it.next().is_some())
    };
    let (account, dup_a) = get("account");
    let (pool, dup_p) = get("pool");
    let (card, dup_c) = get("card");
    if dup_a || dup_p || dup_c {
        return text(
            StatusCode::BAD_REQUEST,
            "each of account, pool and card may be given once\n",
        );
    }
    let rt = app.collector.runtime();
    let account: String = match account.filter(|a| !a.is_empty()) {
        Some(a) if rt.account(a).is_some() => a.to_owned(),
        Some(_) => {
            return text(
                StatusCode::BAD_REQUEST,
                "unknown account (not in the configuration)\n",
            );
        }
        // with one account configured, it is the one meant
        None => match rt.accounts.as_slice() {
            [only] => only.name.to_string(),
            _ => {
                return text(
                    StatusCode::BAD_REQUEST,
                    "missing parameter: account (needed when several accounts are configured)\n",
                );
            }
        },
    };
    drop(rt);
    let scope = match (pool, card) {
        (Some(p), None) if is_valid_pool_code(p) => Scope::Pool {
            account,
            code: p.to_owned(),
        },
        (None, Some(c)) if is_valid_iccid(c) => Scope::Card {
            account,
            iccid: c.to_owned(),
        },
        (Some(_), None) => {
            return text(
                StatusCode::BAD_REQUEST,
                "malformed pool code (1-64 of A-Z a-z 0-9 - _ .)\n",
            );
        }
        (None, Some(_)) => {
            return text(StatusCode::BAD_REQUEST, "malformed ICCID (18-22 digits)\n");
        }
        _ => {
            return text(
                StatusCode::BAD_REQUEST,
                "give exactly one of the parameters pool and card\n",
            );
        }
    };
    let fmt = Format::from_accept(headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()));
    let deadline = app.deadline(&headers);
    let Some(snap) = app.collector.probe(&scope, deadline).await else {
        return text(StatusCode::BAD_REQUEST, "unknown account\n");
    };
    let body = encode(&snap, None, fmt);
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(fmt.content_type()),
        )],
        body,
    )
        .into_response()
}

async fn config(State(app): State<Arc<App>>) -> Response {
    text(StatusCode::OK, app.collector.config().redacted_yaml())
}

async fn healthy() -> Response {
    text(StatusCode::OK, "Healthy.\n")
}

/// A server only runs with a valid configuration loaded (a bad one at start exits 2, a bad
/// reload keeps the previous one), so it is ready as soon as it listens.
async fn ready() -> Response {
    text(StatusCode::OK, "Ready.\n")
}

async fn reload(State(app): State<Arc<App>>) -> Response {
    match app.reload().await {
        Ok(()) => text(StatusCode::OK, "configuration reloaded\n"),
        Err(e) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("failed to reload the configuration (the previous one stays in use): {e}\n"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gzip_negotiation() {
        let h = |v: &str| {
            let mut m = HeaderMap::new();
            m.insert(header::ACCEPT_ENCODING, HeaderValue::from_str(v).unwrap());
            accepts_gzip(&m)
        };
        assert!(h("gzip"));
        assert!(h("deflate, gzip;q=0.5"));
        assert!(h("*"));
        assert!(!h("gzip;q=0"));
        assert!(!h("br, identity"));
        assert!(!accepts_gzip(&HeaderMap::new()));
    }
}
