//! The exporter's HTTP surface (README, "Endpoints"), built as one `axum::Router` by [`router`]:
//! `/metrics` (streamed exposition, OpenMetrics by `Accept`, gzip by `Accept-Encoding`; scrapes
//! that overlap share one snapshot and one encoding, [`broadcast`]), `/probe`, the landing page
//! `/`, `/config` (redacted), `/-/healthy`, `/-/ready` and `POST /-/reload`. [`App`] is the
//! shared state: the collector, how to re-read the configuration, the reload status, and the
//! expositions being written.

mod broadcast;
mod landing;

pub use crate::collect::{CollectError, Shard};
use crate::collect::{Collector, ProbeRefused, Scope};
use crate::config::{Config, ConfigErrors};
use crate::metrics::expo::{Format, Writer};
use crate::metrics::own::OwnMetrics;
use crate::metrics::{Endpoint, encode_into};
use axum::Router;
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use broadcast::Broadcast;
use futures::StreamExt;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use tokio::time::Instant;
use tower_http::compression::CompressionLayer;

/// Re-reads the configuration (config file and cards files); every problem on failure.
pub type Loader = Arc<dyn Fn() -> Result<Config, ConfigErrors> + Send + Sync>;

/// Shared state of the HTTP handlers.
pub struct App {
    collector: Arc<Collector>,
    own: OwnMetrics,
    loader: Option<Loader>,
    reload_ok: std::sync::atomic::AtomicBool,
    reload_lock: tokio::sync::Mutex<()>,
    /// A background refresh started by the landing page is running.
    landing_refresh: std::sync::atomic::AtomicBool,
    /// The `/metrics` expositions being written, by format and compression: a scrape that
    /// arrives while one is young joins it.
    expositions: Mutex<HashMap<(Format, bool), Weak<Broadcast>>>,
}

impl App {
    /// Builds the collector of `config` (for the registered kinds) and the exporter's own
    /// metrics. `loader` re-reads the configuration on reload; `None` when there is nothing
    /// to re-read (the demo's generated configuration). Fails only when an account's client
    /// cannot be built.
    pub fn new(config: Config, loader: Option<Loader>) -> Result<Arc<Self>, CollectError> {
        Self::sharded(config, loader, Shard::default())
    }

    /// [`App::new`] for one shard of several: it collects and serves only the targets
    /// `shard` owns (docs/collection.md, "Sharding").
    pub fn sharded(
        config: Config,
        loader: Option<Loader>,
        shard: Shard,
    ) -> Result<Arc<Self>, CollectError> {
        let collector = Arc::new(Collector::new(
            Arc::new(config),
            crate::kinds::kinds(),
            shard,
        )?);
        Ok(Arc::new(Self {
            own: OwnMetrics::new(collector.clone()),
            collector,
            loader,
            reload_ok: std::sync::atomic::AtomicBool::new(true),
            reload_lock: tokio::sync::Mutex::new(()),
            landing_refresh: std::sync::atomic::AtomicBool::new(false),
            expositions: Mutex::new(HashMap::new()),
        }))
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
                    Ok(Ok(cfg)) => self
                        .collector
                        .reload(Arc::new(cfg))
                        .map_err(|e| e.to_string()),
                    // one problem a line
                    Ok(Err(e)) => Err(e.to_string()),
                    Err(_) => Err("internal error while reading the configuration".into()),
                }
            }
        };
        self.reload_ok
            .store(result.is_ok(), std::sync::atomic::Ordering::Relaxed);
        self.own.reloaded(result.is_ok());
        match &result {
            Ok(()) => tracing::info!("configuration reloaded"),
            Err(e) => {
                tracing::error!(error = %e, "configuration reload failed; keeping the previous one")
            }
        }
        result
    }

    pub fn reload_ok(&self) -> bool {
        self.reload_ok.load(std::sync::atomic::Ordering::Relaxed)
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
pub(crate) fn accepts_gzip(headers: &HeaderMap) -> bool {
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
    let gzip = accepts_gzip(&headers);
    let started = Instant::now();
    let waited = app.collector.collect(app.deadline(&headers)).await;
    let reader = match (!waited).then(|| app.join_exposition(fmt, gzip)).flatten() {
        Some(r) => r,
        None => app.start_exposition(fmt, gzip, started),
    };
    let stream = reader
        .into_stream()
        .map(Ok::<bytes::Bytes, std::convert::Infallible>);
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

impl App {
    /// A reader of the young exposition of this format, if one is being written.
    fn join_exposition(&self, fmt: Format, gzip: bool) -> Option<broadcast::Reader> {
        let map = crate::sys::lock(&self.expositions);
        map.get(&(fmt, gzip))?.upgrade()?.join()
    }

    /// Starts a new exposition of every configured target (a snapshot taken now) and returns
    /// its first reader. Encoding (and compression) runs on a blocking thread, in chunks, so
    /// the runtime stays responsive and a large exposition is never in memory whole; it is
    /// compressed here at the fastest level (a 13 MB exposition in about 20 ms) rather than
    /// by the generic compression layer.
    fn start_exposition(
        self: &Arc<Self>,
        fmt: Format,
        gzip: bool,
        started: Instant,
    ) -> broadcast::Reader {
        let b = Broadcast::new();
        let reader = b
            .join()
            .unwrap_or_else(|| unreachable!("a new broadcast takes readers"));
        {
            let mut map = crate::sys::lock(&self.expositions);
            map.retain(|_, w| w.strong_count() > 0);
            map.insert((fmt, gzip), Arc::downgrade(&b));
        }
        let mut snap = self.collector.snapshot();
        snap.scrape_duration = Some(started.elapsed().as_secs_f64());
        let app = self.clone();
        let table = crate::kinds::families();
        tokio::task::spawn_blocking(move || {
            let mut open = true;
            let mut send = |chunk: Vec<u8>| {
                if open && !b.write(chunk) {
                    open = false; // every reader went away
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
                    let w = Writer::streaming(fmt, &mut sink);
                    encode_into(table, &snap, Endpoint::Metrics, Some(&app.own), w);
                }
                if let Ok(rest) = gz.finish() {
                    send(rest);
                }
            } else {
                let w = Writer::streaming(fmt, &mut send);
                encode_into(table, &snap, Endpoint::Metrics, Some(&app.own), w);
            }
            b.finish();
            drop(snap);
            crate::sys::release_freed_memory();
        });
        reader
    }
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
    let kinds = app.collector.kinds();
    let (account, dup_account) = get("account");
    let given: Vec<_> = kinds
        .iter()
        .filter_map(|&k| {
            let (id, dup) = get(k.name());
            id.map(|id| (k, id, dup))
        })
        .collect();
    let names = kinds.iter().map(|k| k.name()).collect::<Vec<_>>();
    if dup_account || given.iter().any(|g| g.2) {
        return text(
            StatusCode::BAD_REQUEST,
            format!("each of account, {} may be given once\n", names.join(", ")),
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
    let scope = match given.as_slice() {
        [(kind, id, _)] if kind.is_valid_id(id) => Scope::Target {
            account,
            kind: *kind,
            id: (*id).to_owned(),
        },
        [(kind, _, _)] => {
            return text(
                StatusCode::BAD_REQUEST,
                format!("malformed {}\n", kind.id_form()),
            );
        }
        _ => {
            return text(
                StatusCode::BAD_REQUEST,
                format!(
                    "give exactly one of the parameters {}\n",
                    names.join(" and ")
                ),
            );
        }
    };
    let fmt = Format::from_accept(headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()));
    let deadline = app.deadline(&headers);
    let snap = match app.collector.probe(&scope, deadline).await {
        Ok(snap) => snap,
        Err(ProbeRefused::UnknownAccount) => {
            return text(StatusCode::BAD_REQUEST, "unknown account\n");
        }
        Err(ProbeRefused::NotConfigured) => {
            return text(
                StatusCode::BAD_REQUEST,
                "this target is not in the configuration (of this shard), and /probe of such targets is switched off (collect.unconfigured_probe_percent: 0)\n",
            );
        }
    };
    let body = encode_into(
        crate::kinds::families(),
        &snap,
        Endpoint::Probe,
        None,
        Writer::new(fmt),
    );
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
            format!("failed to reload the configuration (the previous one stays in use):\n{e}\n"),
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
