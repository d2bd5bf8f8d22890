#!/usr/bin/env bash
# The test command of the README: every test of the project.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --workspace --all-targets
# An independent (Python, stdlib-only) client of docs/api.md, "Signing" against `simulate`.
cargo build --bin tibiot-exporter
timeout 120 python3 tests/py/independent_client.py target/debug/tibiot-exporter
# The ops kit: dashboards, rules and deploy files (static), then every dashboard query and the
# alerts against a real Prometheus scraping `tibiot-exporter demo`.
scripts/ops/check.sh target/debug/tibiot-exporter
# Scale-out with real parts: two shards and one unsharded exporter against one simulator, a
# Prometheus agent remote-writing the shards to VictoriaMetrics; the union must be the whole.
scripts/scaleout/check.sh target/debug/tibiot-exporter
# The guard end to end, time-compressed: a simulator with a runaway card, the exporter, a real
# Prometheus with the shipped rules, a real Alertmanager with the shipped routes, and
# `tibiotctl guard` in enforce mode (tests/e2e/guard_e2e.py says how time is compressed).
cargo build -p tibiot-exporter -p tibiotctl
timeout 900 python3 tests/e2e/guard_e2e.py target/debug/tibiot-exporter target/debug/tibiotctl
