#!/usr/bin/env bash
# The scale-out check, with real parts: one simulator; two exporter shards
# (--shard=0/1 --total-shards=2) and one unsharded exporter on the same configuration;
# Prometheus in agent mode scraping the two shards and remote-writing to VictoriaMetrics.
# Passes when the union of the target series in VictoriaMetrics equals the unsharded
# exporter's target series (and the two shards share none). Run by scripts/test.sh.
#
#   scripts/scaleout/check.sh [BINARY]     # default: target/debug/tibiot-exporter
#
# Needs prometheus (agent mode), victoria-metrics and python3 (Debian: apt-get install
# prometheus victoria-metrics; .ci/run installs them).
set -euo pipefail
cd "$(dirname "$0")/../.."
bin="${1:-target/debug/tibiot-exporter}"
for tool in prometheus victoria-metrics python3; do
  command -v "$tool" >/dev/null || { echo "scale-out check: $tool is required" >&2; exit 2; }
done
[ -x "$bin" ] || { echo "scale-out check: no binary at $bin (cargo build first)" >&2; exit 2; }
exec python3 scripts/scaleout/check.py "$bin"
