//! tibiot-exporter: a Prometheus exporter for the TIBIOT IoT SIM-card platform.
//!
//! Data flow (docs/architecture.md): [`config`] → `tibiot_api` (client, signing, models) →
//! `collect` (cache, scheduling, deadlines; kinds only through its `TargetKind` trait) →
//! [`kinds`] (pools and cards: fetches, values, families) → [`metrics`] (family descriptor,
//! writer, self-metrics registry) → [`http`] (axum routes) behind `tibiot_web` (TLS, basic
//! auth, admission). The simulator (`tibiot_sim`) and the operator binary (`tibiotctl`) are
//! crates of their own.

#![warn(unreachable_pub)]

mod collect;
pub mod config;
pub mod demo;
pub mod http;
pub mod kinds;
mod logging;
pub mod metrics;
pub mod serve;
mod sys;
pub mod version;
