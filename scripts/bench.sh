#!/usr/bin/env bash
# The benchmark of issue 7: ONE command that builds the release binary and prints ONE table
# (cold scrape vs its lower bound, warm scrape per series in text/OpenMetrics with and without
# gzip, upstream calls per hour with one and two scrapers, resident memory, and a Python
# prometheus_client baseline). Not part of the tests. Takes about 5 minutes on 2 cores.
#
#   scripts/bench.sh            # full run
#   scripts/bench.sh --quick    # fewer repetitions
#   scripts/bench.sh --no-baseline
#
# Needs curl and python3; the baseline needs the prometheus_client and pyyaml packages
# (installed with pip when missing). Progress goes to stderr, the table to stdout.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v curl >/dev/null || { echo "bench: curl is required" >&2; exit 2; }
if [[ " $* " != *" --no-baseline "* ]]; then
  python3 -c "import prometheus_client, yaml" 2>/dev/null \
    || python3 -m pip install -q prometheus_client pyyaml >&2
fi
cargo build --release --quiet
exec python3 scripts/bench/run_bench.py --bin target/release/tibiot-exporter "$@"
