#!/usr/bin/env bash
# Benchmark (not a test): warm /metrics of the release binary for 200 pools + 10,000 cards
# against the simulator. Prints time per warm scrape, series, bytes and resident memory.
#   benches/scrape.sh [POOLS] [CARDS] [SCRAPES]
set -euo pipefail
cd "$(dirname "$0")/.."
POOLS=${1:-200}
CARDS=${2:-10000}
N=${3:-20}
cargo build --release -q
BIN=target/release/tibiot-exporter
TMP=$(mktemp -d)
cleanup() {
  [[ -n "${EXP:-}" ]] && kill "$EXP" 2>/dev/null || true
  [[ -n "${SIM:-}" ]] && kill "$SIM" 2>/dev/null || true
  rm -rf "$TMP"
}
trap cleanup EXIT

"$BIN" simulate --listen=127.0.0.1:0 --pools="$POOLS" --cards="$CARDS" >"$TMP/sim.json" 2>"$TMP/sim.log" &
SIM=$!
for _ in $(seq 100); do [[ -s "$TMP/sim.json" ]] && break; sleep 0.1; done
CONCURRENCY=${CONCURRENCY:-16} python3 - "$TMP" <<'PY'
import json, os, sys
tmp = sys.argv[1]
s = json.loads(open(f"{tmp}/sim.json").readline())
open(f"{tmp}/cards.txt", "w").write("\n".join(s["cards"]) + "\n")
pools = "\n".join(f"      - {p}" for p in s["pools"])
open(f"{tmp}/config.yml", "w").write(f"""accounts:
  - name: bench
    base_url: http://{s['listen']}
    app_key: {s['app_key']}
    app_secret: {s['app_secret']}
    pools:
{pools}
    cards_file: cards.txt
collect:
  timeout: 60s
  concurrency: {os.environ['CONCURRENCY']}
  requests_per_second: 0
  pool_ttl: 1h
  card_ttl: 1h
  history_ttl: 1h
  stale_after: 2h
  history:
    pool_days: 30
    pool_months: 12
""")
PY
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
${EXPORTER_ENV:-} "$BIN" --config.file="$TMP/config.yml" --web.listen-address="127.0.0.1:$PORT" --log.level=warn 2>"$TMP/exporter.log" &
EXP=$!
URL="http://127.0.0.1:$PORT/metrics"
for _ in $(seq 100); do curl -sf -o /dev/null "http://127.0.0.1:$PORT/-/healthy" && break; sleep 0.1; done
start=$(date +%s.%N)
curl -sf -o "$TMP/cold.txt" "$URL"
echo "cold scrape (fills the cache): $(echo "$(date +%s.%N) - $start" | bc) s"
rss() { awk '/VmRSS/ {printf "%.1f MiB", $2/1024}' /proc/$EXP/status; }
echo "resident after the cold scrape: $(rss)"
curl -sf -o "$TMP/warm.txt" "$URL"
echo "series: $(grep -vc '^#' "$TMP/warm.txt")  bytes: $(wc -c <"$TMP/warm.txt")  failed targets: $(grep -c '^tibiot_collect_success.* 0$' "$TMP/warm.txt" || true)"
for enc in identity gzip; do
  total=0
  for _ in $(seq "$N"); do
    t=$(curl -sf -o /dev/null -H "Accept-Encoding: $enc" -w '%{time_total}' "$URL")
    total=$(echo "$total + $t" | bc -l)
  done
  printf 'warm scrape (%s): %.1f ms mean over %d\n' "$enc" "$(echo "$total * 1000 / $N" | bc -l)" "$N"
done
printf 'gzip bytes: %s\n' "$(curl -sf -H 'Accept-Encoding: gzip' "$URL" | wc -c)"
echo "exporter resident memory after the warm scrapes: $(rss) (peak $(awk '/VmHWM/ {printf "%.1f MiB", $2/1024}' /proc/$EXP/status))"
[[ -n "${SHOW_LOG:-}" ]] && tail -4 "$TMP/exporter.log"; true
