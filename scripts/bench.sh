#!/usr/bin/env bash
# The benchmark: ONE command that builds the release binary and prints ONE table (cold scrape
# vs its lower bound, warm scrape per series in text/OpenMetrics with and without gzip,
# upstream calls with one and two scrapers, resident memory, 100,000 cards, memory under 64
# concurrent scrapers, and a Python prometheus_client baseline). Not part of the tests. Takes
# about 9 minutes on 2 cores; --fleet adds the fleet-scale rows e and f (within and over the
# request budget, about 7 more minutes, run beside the others).
#
#   scripts/bench.sh                 # full run
#   scripts/bench.sh --fleet         # full run with rows e and f
#   scripts/bench.sh --rows=e,f      # only some rows
#   scripts/bench.sh --quick         # fewer repetitions
#   scripts/bench.sh --no-baseline
#
# Needs curl and python3; the baseline needs the prometheus_client and pyyaml packages
# (installed with pip when missing). Progress goes to stderr, the table to stdout.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v curl >/dev/null || { echo "bench: curl is required" >&2; exit 2; }
if [[ " $* " != *" --no-baseline "* && " $* " != *" --rows="* ]]; then
  python3 -c "import prometheus_client, yaml" 2>/dev/null \
    || python3 -m pip install -q prometheus_client pyyaml >&2
fi
cargo build --release --quiet
exec python3 scripts/bench/run_bench.py --bin target/release/tibiot-exporter "$@"
