//! The layers put around the whole router, so every endpoint (landing page, `/config`,
//! `/-/healthy` included) is covered: configured response headers, a limit on concurrent
//! requests (503 beyond it), basic auth (401 with `WWW-Authenticate: Basic`), a request body
//! limit and a request timeout (503 when the handler takes longer).
//!
//! The web configuration in force is read per request from [`Shared`], so a reloaded file
//! applies to the next request, also on kept-alive connections.

use crate::auth::{BasicAuthUsers, Verifier};
use crate::config::{WebConfig, WebConfigError};
use crate::tls;
use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::sync::Semaphore;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;

/// A web configuration turned into what the server uses: TLS acceptor, users, headers.
#[derive(Debug)]
pub struct Active {
    /// `None`: plain HTTP.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// `None`: no basic auth.
    pub users: Option<Arc<BasicAuthUsers>>,
    /// Added to every response.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Whether HTTP/2 is offered.
    pub http2: bool,
}

impl Active {
    /// Builds from a validated config: reads certificate files, makes the dummy bcrypt hash.
    /// Blocking (file reads, one bcrypt run).
    pub fn build(cfg: &WebConfig) -> Result<Active, WebConfigError> {
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
    pub fn plain() -> Active {
        Active {
            tls: None,
            users: None,
            headers: Vec::new(),
            http2: true,
        }
    }
}

/// Limits that protect the server.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Longest a request may take inside the router; 503 after it. A safety net: scrapes are
    /// bounded by `collect.timeout` (keep that below this).
    pub request_timeout: Duration,
    /// Requests served at once; beyond it 503 at once. 0: no limit.
    pub max_concurrent_requests: usize,
    /// Largest accepted request body.
    pub max_request_body_bytes: usize,
    /// Open connections at once; beyond it new connections wait in the listen backlog.
    pub max_connections: usize,
    /// Time a client has to send a request's headers.
    pub header_read_timeout: Duration,
    /// Time a client has to finish the TLS handshake.
    pub tls_handshake_timeout: Duration,
    /// On shutdown, how long in-flight requests may still take.
    pub shutdown_grace: Duration,
}

/// Requests served at once by default (`--web.max-requests`), every endpoint counted.
pub const DEFAULT_MAX_REQUESTS: usize = 64;

impl Default for Limits {
    fn default() -> Self {
        Limits {
            request_timeout: Duration::from_secs(300),
            max_concurrent_requests: DEFAULT_MAX_REQUESTS,
            max_request_body_bytes: 64 * 1024,
            max_connections: 512,
            header_read_timeout: Duration::from_secs(10),
            tls_handshake_timeout: Duration::from_secs(10),
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

/// State shared by the listener and the layers.
pub struct Shared {
    current: RwLock<Arc<Active>>,
    /// Checks basic auth; its cache survives reloads.
    pub verifier: Verifier,
    requests: Arc<Semaphore>,
}

impl Shared {
    pub fn new(active: Active, limits: &Limits) -> Shared {
        Shared {
            current: RwLock::new(Arc::new(active)),
            verifier: Verifier::default(),
            requests: Arc::new(Semaphore::new(match limits.max_concurrent_requests {
                0 => Semaphore::MAX_PERMITS,
                n => n,
            })),
        }
    }

    /// The configuration in force.
    pub fn current(&self) -> Arc<Active> {
        match self.current.read() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// Puts a new configuration in force.
    pub fn replace(&self, active: Active) {
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

async fn guard(State(shared): State<Arc<Shared>>, req: Request, next: Next) -> Response {
    let active = shared.current();
    let mut resp = match shared.requests.clone().try_acquire_owned() {
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
                    shared
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

async fn body_too_large(req: Request, next: Next) -> Response {
    let resp = next.run(req).await;
    if resp.status() == StatusCode::PAYLOAD_TOO_LARGE {
        // Replace tower-http's empty body with a plain message.
        let (parts, _) = resp.into_parts();
        return Response::from_parts(parts, Body::from("Request body too large\n"));
    }
    resp
}

/// Wraps `router` in the layers; `shared` decides auth and headers per request.
pub fn protect(router: Router, shared: Arc<Shared>, limits: &Limits) -> Router {
    router
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            limits.request_timeout,
        ))
        .layer(RequestBodyLimitLayer::new(limits.max_request_body_bytes))
        .layer(middleware::from_fn(body_too_large))
        .layer(middleware::from_fn_with_state(shared, guard))
}
