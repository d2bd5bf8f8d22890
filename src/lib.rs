//! tibiot-exporter: a Prometheus exporter for the TIBIOT IoT SIM-card platform.
//!
//! Data flow (docs/architecture.md): [`config`] → `tibiot_api` (client, signing, models) →
//! `collect` (cache, scheduling, deadlines) → `metrics` (the family table) → `http` (axum
//! routes) behind `tibiot_web` (TLS, basic auth, admission). The simulator (`tibiot_sim`)
//! and the operator binary (`tibiotctl`) are crates of their own.

pub mod collect;
pub mod config;
pub mod demo;
pub mod http;
pub mod logging;
pub mod metrics;
pub mod serve;
pub mod version;
