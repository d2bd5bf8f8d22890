//! The layers put around the whole router, so every endpoint (landing page, `/config`,
//! `/-/healthy` included) is covered: configured response headers, a limit on concurrent
//! requests (503 beyond it), basic auth (401 with `WWW-Authenticate: Basic`), the request body
//! read in full before the handler runs (413 beyond the size limit, announced or streamed; 408
//! when it does not arrive in time) and a request timeout (503 when the handler takes longer).
//!
//! The web configuration in force is read per request from [`GuardState`], so a reloaded file
//! applies to the next request, also on kept-alive connections.

use crate::auth::{BasicAuthUsers, Verifier};
use crate::config::{WebConfig, WebConfigError};
use crate::limits::Limits;
use crate::tls;
use axum::Router;
use axum::body::{Body, HttpBody};
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::sync::Semaphore;
use tower_http::timeout::TimeoutLayer;

/// A web configuration turned into what the server uses: TLS acceptor, users, headers.
#[derive(Debug)]
pub(crate) struct Active {
    /// `None`: plain HTTP.
    pub(crate) tls: Option<Arc<rustls::ServerConfig>>,
    /// `None`: no basic auth.
    pub(crate) users: Option<Arc<BasicAuthUsers>>,
    /// Added to every response.
    pub(crate) headers: Vec<(HeaderName, HeaderValue)>,
    /// Whether HTTP/2 is offered.
    pub(crate) http2: bool,
}

impl Active {
    /// Builds from a validated config: reads certificate files, makes the dummy bcrypt hash.
    /// Blocking (file reads, one bcrypt run).
    pub(crate) fn build(cfg: &WebConfig) -> Result<Active, WebConfigError> {
        let tls = match &cfg.tls {
            Some(t) => Some(Arc::new(tls::server_config(t, cfg.http2)?)),
            None => None,
        };
        let users = if cfg.basic_auth_users.is_empty() {
            None
        } else {
            Some(Arc::new(BasicAuthUsers::new(&cfg.basic_auth_users)))
        };
        let mut headers = Vec::new();
        for (n, v) in &cfg.headers {
            let name = HeaderName::from_bytes(n.as_bytes()).map_err(|_| {
                WebConfigError::new(format!("http_server_config.headers.{n}"), "bad name")
            })?;
            let value = HeaderValue::from_str(v).map_err(|_| {
                WebConfigError::new(format!("http_server_config.headers.{n}"), "bad value")
            })?;
            headers.push((name, value));
        }
        Ok(Active {
            tls,
            users,
            headers,
            http2: cfg.http2,
        })
    }

    /// Plain HTTP, no auth, no headers.
    pub(crate) fn plain() -> Active {
        Active {
            tls: None,
            users: None,
            headers: Vec::new(),
            http2: true,
        }
    }
}

/// State shared by the listener and the layers: the configuration in force, the basic-auth
/// verifier (its cache survives reloads) and the request slots.
pub(crate) struct GuardState {
    current: RwLock<Arc<Active>>,
    pub(crate) verifier: Verifier,
    requests: Arc<Semaphore>,
}

impl GuardState {
    pub(crate) fn new(active: Active, limits: &Limits) -> GuardState {
        GuardState {
            current: RwLock::new(Arc::new(active)),
            verifier: Verifier::default(),
            requests: Arc::new(Semaphore::new(match limits.max_concurrent_requests {
                0 => Semaphore::MAX_PERMITS,
                n => n,
            })),
        }
    }

    /// The configuration in force.
    pub(crate) fn current(&self) -> Arc<Active> {
        match self.current.read() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// Puts a new configuration in force.
    pub(crate) fn replace(&self, active: Active) {
        let active = Arc::new(active);
        match self.current.write() {
            Ok(mut g) => *g = active,
            Err(p) => *p.into_inner() = active,
        }
    }
}

fn plain(status: StatusCode, msg: &'static str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        msg,
    )
        .into_response()
}

async fn guard(State(state): State<Arc<GuardState>>, req: Request, next: Next) -> Response {
    let active = state.current();
    let mut resp = match state.requests.clone().try_acquire_owned() {
        Err(_) => {
            let mut r = plain(
                StatusCode::SERVICE_UNAVAILABLE,
                "Too many concurrent requests\n",
            );
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            r
        }
        Ok(_permit) => {
            let allowed = match &active.users {
                None => true,
                Some(users) => {
                    state
                        .verifier
                        .check(users, req.headers().get(header::AUTHORIZATION))
                        .await
                }
            };
            if allowed {
                next.run(req).await
            } else {
                tracing::debug!(path = %req.uri().path(), "basic auth failed");
                let mut r = plain(StatusCode::UNAUTHORIZED, "Unauthorized\n");
                r.headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic"));
                r
            }
        }
    };
    for (n, v) in &active.headers {
        resp.headers_mut().insert(n.clone(), v.clone());
    }
    resp
}

/// How much body a request may have, and how long it may take to arrive.
#[derive(Clone, Copy)]
struct BodyLimits {
    max_bytes: usize,
    read_timeout: Duration,
}

/// Reads the request body in full before the handler runs, so the size limit holds whether
/// the body is announced (`Content-Length`) or streamed (chunked, HTTP/2 DATA frames), and a
/// handler that ignores its body cannot be sent an unbounded one.
async fn read_body(State(limits): State<BodyLimits>, req: Request, next: Next) -> Response {
    if req.body().size_hint().exact() == Some(0) {
        return next.run(req).await;
    }
    let announced = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if announced.is_some_and(|n| n > limits.max_bytes as u64) {
        return too_large();
    }
    let (parts, body) = req.into_parts();
    let read = Limited::new(body, limits.max_bytes).collect();
    match tokio::time::timeout(limits.read_timeout, read).await {
        Ok(Ok(collected)) => {
            let req = Request::from_parts(parts, Body::from(collected.to_bytes()));
            next.run(req).await
        }
        Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => too_large(),
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "request body could not be read");
            plain(StatusCode::BAD_REQUEST, "Request body could not be read\n")
        }
        Err(_) => plain(
            StatusCode::REQUEST_TIMEOUT,
            "Request body not received in time\n",
        ),
    }
}

fn too_large() -> Response {
    plain(StatusCode::PAYLOAD_TOO_LARGE, "Request body too large\n")
}

/// Wraps `router` in the layers; `state` decides auth and headers per request.
pub(crate) fn protect(router: Router, state: Arc<GuardState>, limits: &Limits) -> Router {
    let body = BodyLimits {
        max_bytes: limits.max_request_body_bytes,
        read_timeout: limits.body_read_timeout,
    };
    router
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            limits.request_timeout,
        ))
        .layer(middleware::from_fn_with_state(body, read_body))
        .layer(middleware::from_fn_with_state(state, guard))
}
