//! tibiot-exporter: a Prometheus exporter for the TIBIOT IoT SIM-card platform.
//!
//! Data flow: [`config`] → [`api`] (client, signing, models) → `collect` (cache, scheduling,
//! deadlines) → `metrics` (the family table) → `http` (axum routes). The simulator (`sim`)
//! and the operator CLI (`cli`) use the [`api`] types.

pub mod api;
pub mod calendar;
pub mod cli;
pub mod collect;
pub mod config;
pub mod demo;
pub mod http;
pub mod logging;
pub mod metrics;
pub mod serve;
pub mod sim;
pub mod web;
