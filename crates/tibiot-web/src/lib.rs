//! Secure serving for Prometheus exporters: the exporter-toolkit web configuration
//! (`--web.config.file`: TLS, client certificates, basic auth, response headers), the listener
//! that applies it (TLS handshake, HTTP/1.1 and HTTP/2, reload of a changed file without a
//! restart, graceful shutdown), connection admission that idle or silent peers cannot exhaust,
//! and the request limits (concurrency, body size, timeouts). Nothing here knows about TIBIOT:
//! any Rust exporter can put its `axum::Router` behind [`WebServer`].
//!
//! - `config`: parse and validate the YAML (strict, errors name the key).
//! - `tls`: rustls `ServerConfig` from the validated TLS settings.
//! - `auth`: basic auth (bcrypt, dummy hash for unknown users, verified-credential cache).
//! - `guard`: the tower layers put around the whole router.
//! - `limits`: the numbers ([`Limits`]).
//! - `admission`: which connections may stay open; who makes room for a new one.
//! - `connection`: one connection from accept to close, with its deadlines.
//! - `reload`: loading and re-checking the web config file.
//! - `server`: [`WebServer`], the accept loop and shutdown.
//! - [`redact`]: keeping values out of configuration error messages (shared with exporters).

#![warn(unreachable_pub)]

mod admission;
mod auth;
mod config;
mod connection;
mod guard;
mod limits;
pub mod redact;
mod reload;
mod server;
mod tls;

pub use admission::AdmissionStats;
pub use auth::{AuthStats, parse_basic};
pub use config::{WebConfig, WebConfigError};
pub use limits::{
    DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_CONNECTIONS_PER_CLIENT, DEFAULT_MAX_REQUESTS, Limits,
};
pub use reload::check_file;
pub use server::{ServerOptions, StatsHandle, WebServer};
