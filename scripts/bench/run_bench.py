#!/usr/bin/env python3
"""The benchmark behind scripts/bench.sh: runs the release binary's simulator and exporter as
separate processes on loopback, measures, and prints one Markdown table. Every figure carries
the machine's 1-minute load average when it matters (the machine may be shared).

Rows:
  (a) cold scrape: 200 pools, 100 ms upstream latency, concurrency 16, requests_per_second 0,
      history off, against the bound ceil(200/16) x 100 ms (target <= 1.15x);
  (b) warm scrape (everything cached): 200 pools (30 days + 12 months of history each) +
      10,000 cards; time per scrape, series, bytes, ns per series; text and OpenMetrics, with
      and without gzip (target <= 0.5 us/series);
  (c) upstream calls at a TTL, one scraper vs two concurrent scrapers (counted by the
      exporter's tibiot_api_requests_total; target: two = one);
  (d) resident memory (VmRSS, VmHWM of the exporter process) at 0, 1,000 and 10,000 cards
      (target <= 25 MiB at 10,000);
  (landing) the landing page of the warm exporter of (b), from curl and in headless chromium
      (scripts/bench/landing.py);
  (e, f) fleet scale within and over the request budget (scripts/bench/fleet_rows.py; about
      7 minutes, only with --fleet, first);
  (g) 100,000 cards + 200 pools: memory and warm scrape per series;
  (h) memory under 1, 8 and 64 concurrent scrapers;
  and the same warm scrape and memory for the Python prometheus_client baseline.

Usage: run_bench.py --bin target/release/tibiot-exporter [--quick] [--no-baseline] [--fleet]
                    [--rows=a,b,...] [--sim-bin=OTHER-BINARY]
--sim-bin runs the simulator from another build (e.g. to measure an older exporter with a
simulator that has GET /-/counters).
"""

import argparse
import math
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import (OM, curl, failed_targets, fetch_text, fill, load1, log, machine, memory_kib, settled_memory_kib,  # noqa: E402
                    metric_sum, mib, samples, start_baseline, start_exporter, start_sim, stop, stop_all,
                    write_config)
import fleet_rows  # noqa: E402
from landing import landing_rows  # noqa: E402

DEFAULT_ROWS = ["a", "b", "landing", "c", "d", "g", "h", "base"]


def timed(url, n, accept=None, gzip=False):
    for _ in range(2):
        curl(url, accept=accept, gzip=gzip)
    times, sizes = [], []
    for _ in range(n):
        t, s = curl(url, accept=accept, gzip=gzip)
        times.append(t)
        sizes.append(s)
    return statistics.median(times), max(times), statistics.median(sizes)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--sim-bin", help="binary whose `simulate` to run (default: --bin)")
    ap.add_argument("--quick", action="store_true", help="fewer repetitions")
    ap.add_argument("--no-baseline", action="store_true")
    ap.add_argument("--fleet", action="store_true", help="add rows e and f (about 7 minutes)")
    ap.add_argument("--rows", help="comma-separated rows to run (a,b,landing,c,d,e,f,g,h,base)")
    args = ap.parse_args()
    binary = os.path.abspath(args.bin)
    sim_bin = os.path.abspath(args.sim_bin or args.bin)
    if args.rows:
        want = set(args.rows.split(","))
    else:
        want = set(DEFAULT_ROWS) | ({"e", "f"} if args.fleet else set())
        if args.no_baseline:
            want.discard("base")
    reps = 5 if args.quick else 15
    rows = []
    tmp = tempfile.mkdtemp(prefix="tibiot-bench-")

    def row(section, what, value, target="", verdict=""):
        rows.append((section, what, value, target, verdict))

    try:
        if want & {"e", "f"}:
            # The long rows first and alone: no CPU-heavy row beside their scrapes.
            fleet_rows.fleet_rows(binary, sim_bin, tmp, row)
        # ---------------------------------------------------------------- (a) cold scrape
        if "a" in want:
            sim_p, sim = start_sim(sim_bin, 200, 0, "100ms")
            cfg = os.path.join(tmp, "cold.yml")
            write_config(cfg, sim, sim["pools"], [], concurrency=16, history=(0, 0), timeout="60s")
            bound = math.ceil(200 / 16) * 0.100
            colds = []
            for i in range(3 if args.quick else 5):
                p, addr = start_exporter(binary, cfg)
                t, _ = curl(f"http://{addr}/metrics")
                text = fetch_text(f"http://{addr}/metrics")
                if failed_targets(text):
                    raise SystemExit("cold scrape: some pools failed")
                colds.append(t)
                stop(p)
            cold = statistics.median(colds)
            ratio = cold / bound
            row("a", "cold scrape, 200 pools, 100 ms latency, concurrency 16 (median of "
                f"{len(colds)} fresh processes; min {min(colds) * 1000:.0f} ms; load {load1():.1f})",
                f"{cold * 1000:.0f} ms = {ratio:.3f}× the bound {bound * 1000:.0f} ms",
                "≤ 1.15× bound", "met" if ratio <= 1.15 else "MISSED")
            stop(sim_p)

        sim_p, sim = start_sim(sim_bin, 200, 10000, "0s")
        # ---------------------------------------------------------------- (b) warm scrape
        warm = {}
        mem10k = None
        if want & {"b", "d", "landing", "base"}:
            cfg = os.path.join(tmp, "warm.yml")
            write_config(cfg, sim, sim["pools"], sim["cards"])
            p, addr = start_exporter(binary, cfg)
            url = f"http://{addr}/metrics"
            fill(url, "rust exporter", want_cards=10000)
            for fmt, accept in (("text 0.0.4", None), ("OpenMetrics", OM)):
                if "b" not in want and "base" not in want:
                    break
                body = fetch_text(url, accept=accept)
                n = len(samples(body))
                raw = len(body.encode())
                for gz in (False, True):
                    med, worst, size = timed(url, reps, accept=accept, gzip=gz)
                    warm[(fmt, gz)] = (med, n)
                    ns = med * 1e9 / n
                    if "b" in want:
                        row("b", f"warm scrape, 200 pools + 10,000 cards, {fmt}{', gzip' if gz else ''} "
                            f"(load {load1():.1f})",
                            f"{med * 1000:.1f} ms (max {worst * 1000:.1f}), {n:,} series, "
                            f"{size / 1e6:.2f} MB{' (from ' + format(raw / 1e6, '.2f') + ' MB)' if gz else ''}, "
                            f"{ns:.0f} ns/series",
                            "≤ 500 ns/series", "met" if ns <= 500 else "MISSED")
            if "b" not in want:
                for _ in range(reps):
                    curl(url)
            mem10k = settled_memory_kib(p.pid)
            if "landing" in want:
                # Same warm exporter, after the memory reading (the page does not count in (d)).
                landing_rows(row, f"http://{addr}", reps, log, pid=p.pid)
            stop(p)

        # ---------------------------------------------------------------- (c) calls per hour
        # Scrapes on a fixed 2 s tick, TTL 3 s, one scraper and then two scrapers firing on
        # the same ticks: the second scraper must not add calls.
        if "c" in want:
            calls = {}
            ttl, interval = 3, 2.0
            ticks = 8 if args.quick else 20
            cards_c = sim["cards"][:1000]
            cfg = os.path.join(tmp, "calls.yml")
            write_config(cfg, sim, sim["pools"], cards_c, ttl=f"{ttl}s")
            for scrapers in (1, 2):
                p, addr = start_exporter(binary, cfg)
                url = f"http://{addr}/metrics"
                fill(url, f"calls/{scrapers}", want_cards=len(cards_c))
                readings = {}
                barrier = threading.Barrier(scrapers)

                def loop(idx):
                    barrier.wait()
                    start = time.time()
                    for k in range(ticks + 1):
                        time.sleep(max(0.0, start + k * interval - time.time()))
                        text = fetch_text(url)
                        if idx == 0 and k in (0, ticks):
                            readings[k] = metric_sum(text, "tibiot_api_requests_total")

                threads = [threading.Thread(target=loop, args=(i,)) for i in range(scrapers)]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()
                calls[scrapers] = readings[ticks] - readings[0]
                stop(p)
            targets = 200 + len(cards_c)
            seconds = ticks * interval
            per_hour = calls[1] / seconds * 3600
            due_values = targets + 400  # details, plus today's day and this month's usage per pool
            row("c", f"upstream calls, 200 pools (detail + today's day and this month's usage) + "
                f"1,000 cards, TTL {ttl} s, one scrape per {interval:.0f} s tick, {ticks} ticks: one scraper "
                f"(load {load1():.1f})",
                f"{calls[1]:,.0f} calls = {per_hour:,.0f}/h "
                f"({calls[1] / due_values / (seconds / ttl):.2f} calls per value per TTL)")
            ratio_c = calls[2] / calls[1]
            # Refreshes run on the scheduler's timers, never on scrapes, so a second scraper
            # cannot add a call; the two runs are separate processes whose refresh phases fall
            # differently against the first and last scrape, so the counts may differ by the
            # handful of refreshes that land at the window's edges (0.5 %).
            row("c", "… two concurrent scrapers on the same ticks",
                f"{calls[2]:,.0f} calls = {ratio_c:.3f}× one scraper", "two = one (± 0.5 %)",
                "met" if calls[2] <= calls[1] * 1.005 else "MISSED")

        # ---------------------------------------------------------------- (d) memory
        if "d" in want:
            for n in (0, 1000, 10000):
                if n == 10000:
                    rss, hwm = mem10k
                else:
                    cfg = os.path.join(tmp, f"mem{n}.yml")
                    write_config(cfg, sim, sim["pools"], sim["cards"][:n])
                    p, addr = start_exporter(binary, cfg)
                    url = f"http://{addr}/metrics"
                    fill(url, f"mem {n}", want_cards=n)
                    for _ in range(reps):
                        curl(url)
                    rss, hwm = settled_memory_kib(p.pid)
                    stop(p)
                ok = "" if n != 10000 else ("met" if mib(rss) <= 25 else "MISSED")
                row("d", f"resident memory, 200 pools + {n:,} cards (after the fill and {reps}+ warm scrapes; "
                    f"load {load1():.1f})",
                    f"VmRSS {mib(rss):.1f} MiB, VmHWM {mib(hwm):.1f} MiB",
                    "≤ 25 MiB at 10,000" if n == 10000 else "", ok)

        # ---------------------------------------------------------------- (h) scrapers
        if "h" in want:
            fleet_rows.scrapers_row(binary, sim, tmp, row)

        # ---------------------------------------------------------------- baseline
        if "base" in want:
            cfg = os.path.join(tmp, "baseline.yml")
            write_config(cfg, sim, sim["pools"], sim["cards"])
            p, addr = start_baseline(cfg)
            url = f"http://{addr}/metrics"
            t0 = time.time()
            curl(url, timeout=900)
            log(f"baseline fill took {time.time() - t0:.1f}s")
            body = fetch_text(url)
            n = len(samples(body))
            b_reps = max(3, reps // 3)
            for gz in (False, True):
                med, worst, size = timed(url, b_reps, gzip=gz)
                rust = warm[("text 0.0.4", gz)][0]
                row("base", f"baseline: Python prometheus_client, same cache, 16 threads, warm scrape, "
                    f"text{', gzip' if gz else ''} (load {load1():.1f})",
                    f"{med * 1000:.0f} ms, {n:,} series, {med * 1e9 / n:.0f} ns/series "
                    f"(Rust exporter: {med / rust:.0f}× faster)")
            rss, hwm = settled_memory_kib(p.pid)
            row("base", "baseline: resident memory at 200 pools + 10,000 cards",
                f"VmRSS {mib(rss):.1f} MiB, VmHWM {mib(hwm):.1f} MiB "
                f"(Rust exporter: {mib(mem10k[0]):.1f} MiB)")
            stop(p)
        stop(sim_p)

        # ---------------------------------------------------------------- (g) 100,000 cards
        if "g" in want:
            fleet_rows.big_fleet_row(binary, sim_bin, tmp, row, 3 if args.quick else 5)
    finally:
        stop_all()

    version = subprocess.run([binary, "--version"], capture_output=True, text=True).stdout.strip()
    print(f"Machine: {machine()}")
    print(f"Binary: {version} (release build); simulator and exporter as separate processes on loopback")
    print()
    print("| | measurement | result | target | |")
    print("|---|---|---|---|---|")
    order = {k: i for i, k in enumerate(["a", "b", "landing", "c", "d", "e", "f", "g", "h", "base"])}
    for section, what, value, target, verdict in sorted(rows, key=lambda r: order.get(r[0], 99)):
        print(f"| {section} | {what} | {value} | {target} | {verdict} |")


if __name__ == "__main__":
    main()
