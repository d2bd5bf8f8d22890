//! Secure serving: the exporter-toolkit web configuration (`--web.config.file`: TLS, client
//! certificates, basic auth, response headers), the listener that applies it (TLS handshake,
//! hyper connections, graceful shutdown, reload of a changed file without a restart) and the
//! self-protection layers (timeouts, concurrency and body limits). Nothing here knows about
//! TIBIOT: any Rust exporter can put its `axum::Router` behind [`WebServer`].
//!
//! - [`config`]: parse and validate the YAML (strict, errors name the key).
//! - [`tls`]: rustls `ServerConfig` from the validated TLS settings.
//! - [`auth`]: basic auth (bcrypt, dummy hash for unknown users, verified-credential cache).
//! - [`guard`]: the tower layers put around the whole router.
//! - [`server`]: accept loop, TLS, hyper-util connections, reload, shutdown.

pub mod auth;
pub mod config;
pub mod guard;
pub mod redact;
pub mod server;
pub mod tls;

pub use config::{WebConfig, WebConfigError};
pub use guard::{DEFAULT_MAX_REQUESTS, Limits};
pub use server::{ServerOptions, WebServer};
