#!/usr/bin/env bash
# All checks of the ops kit (dashboards, rules, deploy files, the alerts measured on synthetic
# scenarios, e2e against a real Prometheus).
#   scripts/ops/check.sh [PATH/TO/tibiot-exporter]
# Without an argument it uses target/debug/tibiot-exporter, building it if needed.
# Needs promtool + prometheus (apt-get install prometheus) and python3 with jsonschema, pyyaml.
set -euo pipefail
cd "$(dirname "$0")/../.."
bin=${1:-target/debug/tibiot-exporter}
python3 tests/ops/check_static.py
# the pool and card alerts on week-long synthetic scenarios: lead times, delays, false alerts, flaps
python3 scripts/ops/measure-alerts.py --check
if [ $# -eq 0 ]; then
  cargo build --quiet --bin tibiot-exporter
fi
python3 tests/ops/e2e_dashboards.py "$bin"
