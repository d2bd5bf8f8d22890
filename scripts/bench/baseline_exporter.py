#!/usr/bin/env python3
"""Baseline for scripts/bench.sh: the "hand-written Python prometheus_client exporter with the
same cache and 16 threads" that the exporter is compared against.

It reads the same YAML config as tibiot-exporter (one account; base_url, app_key, app_secret,
pools, cards, collect.{pool_ttl,card_ttl,history_ttl,history.pool_days,pool_months,utc_offset}),
signs requests with the documented hmac-sha256 scheme (docs/api.md, "Signing"), keeps a per-target TTL
cache, fetches what is due at scrape time on a 16-thread pool, and exposes the same metric
families (docs/metrics.md) through prometheus_client's own HTTP server.

Usage: baseline_exporter.py --config FILE --listen 127.0.0.1:PORT
Not part of the product or the tests; only the benchmark runs it.
"""

import argparse
import concurrent.futures
import datetime as dt
import hashlib
import hmac
import http.client
import json
import os
import re
import secrets
import threading
import time
import urllib.parse

import yaml
from prometheus_client import start_http_server
from prometheus_client.core import REGISTRY, GaugeMetricFamily, InfoMetricFamily, StateSetMetricFamily

UNIT = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
CARD_STATUS = {1: "silent", 4: "shutdown", 8: "normal", 12: "test", 16: "shutdown_protection",
               18: "liquidation", 99: "abnormal"}
POOL_TYPE = {1: "user", 2: "usage_billed", 3: "unified_pay"}
BILLING = {0: "unset", 1: "package", 2: "usage", 3: "unified_pay"}


def duration(s, default):
    if s is None:
        return default
    total = 0.0
    for num, unit in re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)", str(s)):
        total += float(num) * UNIT[unit]
    return total


def num(v):
    try:
        f = float(v)
        return f if f == f and abs(f) != float("inf") else None
    except (TypeError, ValueError):
        return None


class Client:
    def __init__(self, base_url, app_key, app_secret):
        u = urllib.parse.urlsplit(base_url)
        self.host, self.port, self.prefix = u.hostname, u.port or 80, u.path.rstrip("/")
        self.key, self.secret = app_key, app_secret.encode()
        self.local = threading.local()

    def _conn(self):
        c = getattr(self.local, "conn", None)
        if c is None:
            c = self.local.conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
        return c

    def get(self, path, params):
        path = self.prefix + path
        enc = lambda s: urllib.parse.quote(s, safe="-_.~")
        pairs = sorted((enc(k), enc(v)) for k, v in params.items())
        query = "&".join(f"{k}={v}" for k, v in pairs)
        ts, nonce = str(int(time.time() * 1000)), secrets.token_hex(16)
        sts = "\n".join(["GET", path, query, hashlib.sha256(b"").hexdigest(), self.key, ts, nonce])
        sig = hmac.new(self.secret, sts.encode(), hashlib.sha256).hexdigest()
        headers = {"X-Tibiot-AppKey": self.key, "X-Tibiot-Timestamp": ts,
                   "X-Tibiot-Nonce": nonce, "X-Tibiot-Signature": sig}
        for attempt in range(2):
            try:
                c = self._conn()
                c.request("GET", f"{path}?{query}", headers=headers)
                r = c.getresponse()
                body = r.read()
                break
            except (http.client.HTTPException, OSError):
                self.local.conn = None
                if attempt:
                    raise
        env = json.loads(body)
        if r.status // 100 != 2 or env.get("code") not in (0, 200):
            raise RuntimeError(f"HTTP {r.status} code {env.get('code')}")
        return env.get("data")


class Collector:
    def __init__(self, cfg, config_dir="."):
        acc = cfg["accounts"][0]
        col = cfg.get("collect") or {}
        hist = col.get("history") or {}
        self.account = acc["name"]
        self.client = Client(acc["base_url"], str(acc.get("app_key", "")), str(acc.get("app_secret", "")))
        self.pools = [str(p) for p in acc.get("pools") or []]
        self.cards = [str(c) for c in acc.get("cards") or []]
        if acc.get("cards_file"):  # one ICCID per line, relative to the configuration file
            with open(os.path.join(config_dir, acc["cards_file"])) as cf:
                self.cards += [line.strip() for line in cf if line.strip() and not line.startswith("#")]
        self.pool_ttl = duration(col.get("pool_ttl"), 60)
        self.card_ttl = duration(col.get("card_ttl"), 900)
        self.history_ttl = duration(col.get("history_ttl"), 3600)
        self.pool_days = int(hist.get("pool_days", 30))
        self.pool_months = int(hist.get("pool_months", 12))
        off = str(col.get("utc_offset", "+08:00"))
        sign = -1 if off.startswith("-") else 1
        hh, mm = off.lstrip("+-").split(":")
        self.tz = dt.timezone(sign * dt.timedelta(hours=int(hh), minutes=int(mm)))
        self.cache = {}  # key -> (fetched_at, value or None, ok)
        self.lock = threading.Lock()
        self.pool = concurrent.futures.ThreadPoolExecutor(max_workers=16)

    def _due(self, key, ttl, now):
        e = self.cache.get(key)
        return e is None or now - e[0] >= ttl

    def _fetch(self, key, path, params):
        try:
            v, ok = self.client.get(path, params), True
        except Exception:  # noqa: BLE001 - a failed fetch is reported as collect_success 0
            v, ok = None, False
        with self.lock:
            old = self.cache.get(key)
            if not ok and old is not None:
                v = old[1]
            self.cache[key] = (time.time(), v, ok)

    def _refresh(self):
        now = time.time()
        today = dt.datetime.now(self.tz).date()
        jobs = []
        for p in self.pools:
            if self._due(("pool", p), self.pool_ttl, now):
                jobs.append((("pool", p), "/api/v1/pool/detail", {"poolCode": p}))
            for i in range(self.pool_days):
                d = (today - dt.timedelta(days=i)).isoformat()
                ttl = self.history_ttl if i == 0 else float("inf")
                if self._due(("pday", p, d), ttl, now):
                    jobs.append((("pday", p, d), "/api/v1/pool/getPoolDayUsage", {"poolCode": p, "queryDay": d}))
            y, m = today.year, today.month
            for i in range(self.pool_months):
                mon = f"{y:04d}-{m:02d}"
                ttl = self.history_ttl if i == 0 else float("inf")
                if self._due(("pmon", p, mon), ttl, now):
                    jobs.append((("pmon", p, mon), "/api/v1/pool/getPoolMonthUsage", {"poolCode": p, "queryMonth": mon}))
                y, m = (y - 1, 12) if m == 1 else (y, m - 1)
        for c in self.cards:
            if self._due(("card", c), self.card_ttl, now):
                jobs.append((("card", c), "/api/v1/card/detail", {"iccid": c}))
        futs = [self.pool.submit(self._fetch, *j) for j in jobs]
        concurrent.futures.wait(futs, timeout=120)

    def collect(self):
        self._refresh()
        a = self.account
        info = InfoMetricFamily("tibiot_pool", "Pool detail (may come from the cache).",
                                labels=["account", "pool"])
        used = GaugeMetricFamily("tibiot_pool_used_bytes", "Used flow.", labels=["account", "pool"])
        cap = GaugeMetricFamily("tibiot_pool_capacity_bytes", "Capacity.", labels=["account", "pool"])
        cards = GaugeMetricFamily("tibiot_pool_cards", "Cards.", labels=["account", "pool"])
        stc = GaugeMetricFamily("tibiot_pool_status_cards", "Cards per status.", labels=["account", "pool", "status"])
        valid = GaugeMetricFamily("tibiot_pool_valid", "Valid.", labels=["account", "pool"])
        created = GaugeMetricFamily("tibiot_pool_created_timestamp_seconds", "Created.", labels=["account", "pool"])
        daily = GaugeMetricFamily("tibiot_pool_daily_usage_bytes", "Day usage.", labels=["account", "pool", "date"])
        monthly = GaugeMetricFamily("tibiot_pool_monthly_usage_bytes", "Month usage.", labels=["account", "pool", "month"])
        cinfo = InfoMetricFamily("tibiot_card", "Card detail.", labels=["account", "iccid"])
        cstat = StateSetMetricFamily("tibiot_card_status", "Card status.", labels=["account", "iccid"])
        cyc = GaugeMetricFamily("tibiot_card_cycle_usage_bytes", "Cycle usage.", labels=["account", "iccid"])
        mon = GaugeMetricFamily("tibiot_card_month_usage_bytes", "Month usage.", labels=["account", "iccid"])
        ccap = GaugeMetricFamily("tibiot_card_capacity_bytes", "Capacity.", labels=["account", "iccid"])
        ok = GaugeMetricFamily("tibiot_collect_success", "Latest fetch succeeded.", labels=["account", "kind", "target"])
        last = GaugeMetricFamily("tibiot_collect_last_success_timestamp_seconds", "Fetched at.",
                                 labels=["account", "kind", "target"])
        with self.lock:
            cache = dict(self.cache)
        for key, (at, v, good) in cache.items():
            kind = key[0]
            if kind == "pool":
                p = key[1]
                ok.add_metric([a, "pool", p], 1 if good else 0)
                if v is None:
                    continue
                last.add_metric([a, "pool", p], at)
                info.add_metric([a, p], {"name": str(v.get("upoolName") or ""),
                                         "name_en": str(v.get("enUpoolName") or ""),
                                         "type": POOL_TYPE.get(v.get("poolType"), "unknown"),
                                         "billing_cycle_months": str(v.get("billingCycle") or "")})
                for metric, field in ((used, "useFlow"), (cards, "totalCard")):
                    x = num(v.get(field))
                    if x is not None:
                        metric.add_metric([a, p], x * 1024 if metric is used else x)
                x = num(v.get("totalFlow"))
                if x is not None and v.get("poolType") != 2:
                    cap.add_metric([a, p], x * 1024)
                for s in v.get("bindCardStatusCount") or []:
                    stc.add_metric([a, p, CARD_STATUS.get(s.get("cardStatus"), f"code_{s.get('cardStatus')}")],
                                   num(s.get("total")) or 0)
                valid.add_metric([a, p], 1 if v.get("upoolStatus") == 1 else 0)
                if v.get("rawAddTime"):
                    t = dt.datetime.strptime(v["rawAddTime"], "%Y-%m-%d %H:%M:%S").replace(tzinfo=self.tz)
                    created.add_metric([a, p], t.timestamp())
            elif kind in ("pday", "pmon") and v is not None:
                x = num(v.get("useFlowKb"))
                if x is not None:
                    (daily if kind == "pday" else monthly).add_metric([a, key[1], key[2]], x * 1024)
            elif kind == "card":
                c = key[1]
                ok.add_metric([a, "card", c], 1 if good else 0)
                if v is None:
                    continue
                last.add_metric([a, "card", c], at)
                cinfo.add_metric([a, c], {k: str(v.get(f) or "") for k, f in
                                          (("imsi", "imsi"), ("msisdn", "msisdn"), ("imei", "imei"), ("apn", "apn"))}
                                 | {"billing_method": BILLING.get(v.get("billingMethod"), "unknown")})
                st = v.get("cardStatus")
                cstat.add_metric([a, c], {name: code == st for code, name in CARD_STATUS.items()})
                for metric, field in ((cyc, "useFlow"), (mon, "useMonthFlow")):
                    x = num(v.get(field))
                    if x is not None:
                        metric.add_metric([a, c], x * 1024)
                x = num(v.get("totalFlow"))
                if x is not None and v.get("billingMethod") != 2:
                    ccap.add_metric([a, c], x * 1024)
        yield from (info, used, cap, cards, stc, valid, created, daily, monthly,
                    cinfo, cstat, cyc, mon, ccap, ok, last)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", required=True)
    ap.add_argument("--listen", default="127.0.0.1:9870")
    args = ap.parse_args()
    with open(args.config) as f:
        cfg = yaml.safe_load(f)
    REGISTRY.register(Collector(cfg, os.path.dirname(os.path.abspath(args.config))))
    host, port = args.listen.rsplit(":", 1)
    start_http_server(int(port), addr=host)
    print(f"listening on {args.listen}", flush=True)
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    main()
