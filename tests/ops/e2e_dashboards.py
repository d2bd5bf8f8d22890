#!/usr/bin/env python3
"""End-to-end proof of the Grafana dashboards and the alert rules against a real Prometheus.

    tests/ops/e2e_dashboards.py target/release/tibiot-exporter [--prometheus /usr/bin/prometheus]

1. starts `tibiot-exporter demo --web.listen-address=127.0.0.1:<free port>` (simulator + exporter);
2. writes five days of history for every demo pool and card into a fresh TSDB with
   `promtool tsdb create-blocks-from openmetrics`: the series the rules read over hours and
   days (pool usage, capacity, end date; card month usage), ending at the values the exporter
   serves now and growing at each target's median daily usage from the exporter's own daily
   history, so that growth rates, forecasts and card normals exist from the first evaluation;
3. starts a real Prometheus on a free loopback port on that TSDB, scraping the exporter's
   /metrics every 2s (job "tibiot", as deploy/prometheus/prometheus.yml) and, through the very
   relabel_configs of deploy/prometheus/prometheus-probe.yml (addresses pointed at the test
   exporter), every demo pool and card once more on /probe (job "tibiot-probe"): a second job
   on purpose, which the rules and dashboards must absorb; rule_files =
   deploy/prometheus/rules/tibiot.rules.yml evaluated every 2s;
4. waits (bounded, polling) for scrapes, recorded series and alerts;
5. checks: every scrape target is up and built the right /probe URL; every rule evaluates
   without error; every template variable of every dashboard has values; every query of every
   panel of every dashboard, with its variables substituted by real values, returns data
   (instant query) -- for every value of single-value variables such as the detail
   dashboard's pool, unless it reads a series that only some pools have (capacity, end date);
   the overview's totals count each pool once despite the two jobs; each near-exhausted pool
   (>= 80 % used) has each of its TibiotPoolAlmostExhausted alerts exactly once, and exactly
   one left after the inhibitions of deploy/alertmanager/alertmanager.yml; the invalid pool has
   TibiotPoolInvalid; abnormal cards have TibiotCardAbnormal and cards at >= 90% of their cap
   TibiotCardNearCap, each once, and no card alert is without such a reason; no pool or card
   alert carries job/instance; healthy pools have no pool alert, except a forecast/end-date
   alert that the raw data, queried independently, justify; no card is flagged a runaway.

Prints one line per check and ends with `N passed, M failed`; exits 1 on any failure, 2 when
it cannot run at all. Child processes are always stopped; every wait is bounded.
"""
import argparse
import glob
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

import yaml

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
DASHBOARDS = os.path.join(ROOT, "grafana", "dashboards")
RULES = os.path.join(ROOT, "deploy", "prometheus", "rules", "tibiot.rules.yml")
PROM_DEFAULT = os.path.join(ROOT, "deploy", "prometheus", "prometheus.yml")
PROM_PROBE = os.path.join(ROOT, "deploy", "prometheus", "prometheus-probe.yml")
ALERTMANAGER = os.path.join(ROOT, "deploy", "alertmanager", "alertmanager.yml")

HISTORY_DAYS = 5       # the card normal needs 4 days of data
HISTORY_STEP = 300     # seconds between backfilled samples

SCRAPE_INTERVAL = 2  # seconds
# Grafana's built-in interval variables, as they would be at a 2s scrape interval and a
# dashboard range covering the whole test.
GRAFANA_BUILTINS = {
    "__rate_interval": "1m",
    "__interval": "10s",
    "__interval_ms": "10000",
    "__range": "10m",
    "__range_s": "600",
    "__range_ms": "600000",
}


# Series that exist only for some pools or cards (docs/metrics.md: no capacity for
# usage_billed pools or usage-billed cards, end dates only for unified_pay pools; no forecast
# for a pool without capacity). A query that reads one of them must return data for at least
# one variable combination; any other query for all.
SOMETIMES_ABSENT = (
    "tibiot_pool_capacity_bytes", "tibiot_pool_start_timestamp_seconds", "tibiot_pool_end_timestamp_seconds",
    "tibiot:pool_capacity_bytes", "tibiot:pool_usage_ratio", "tibiot:pool_remaining_bytes",
    "tibiot:pool_exhaustion_seconds", "tibiot:pool_end_seconds",
    "tibiot_card_capacity_bytes", "tibiot:card_usage_ratio",
)


# ---------------------------------------------------------------------------- reporting
class Report:
    def __init__(self):
        self.passed = 0
        self.failed = 0

    def ok(self, what, detail=""):
        self.passed += 1
        print(f"PASS  {what}" + (f"  ({detail})" if detail else ""), flush=True)

    def fail(self, what, detail=""):
        self.failed += 1
        print(f"FAIL  {what}" + (f"\n      {detail}" if detail else ""), flush=True)

    def check(self, cond, what, detail=""):
        (self.ok if cond else self.fail)(what, detail)
        return cond

    @staticmethod
    def info(msg):
        print(f"      {msg}", flush=True)


class Fatal(Exception):
    """The run cannot go on (a process did not start, Prometheus never got data)."""


# ---------------------------------------------------------------------------- helpers
def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(url, timeout=5.0):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.status, r.read().decode("utf-8", "replace")


def wait_until(what, fn, timeout, interval=0.5, procs=()):
    """Call fn() until it returns a truthy value or `timeout` seconds pass. Raises Fatal."""
    deadline = time.monotonic() + timeout
    last_err = None
    while time.monotonic() < deadline:
        for p in procs:
            if p.proc.poll() is not None:
                raise Fatal(f"{p.name} exited with status {p.proc.returncode} while waiting for {what}\n{p.tail()}")
        try:
            v = fn()
            if v:
                return v
        except Exception as e:  # noqa: BLE001 - any error means "not yet"
            last_err = e
        time.sleep(interval)
    raise Fatal(f"timed out after {timeout}s waiting for {what}" + (f" (last error: {last_err})" if last_err else ""))


class Child:
    def __init__(self, name, argv, workdir):
        self.name = name
        self.log_path = os.path.join(workdir, f"{name}.log")
        self.log = open(self.log_path, "wb")
        # own process group, so that stopping it stops whatever it started
        self.proc = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     start_new_session=True)

    def tail(self, n=30):
        try:
            with open(self.log_path, "rb") as f:
                lines = f.read().decode("utf-8", "replace").splitlines()
            return "\n".join(f"      | {line}" for line in lines[-n:])
        except OSError:
            return ""

    def stop(self):
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait(timeout=5)
        self.log.close()


class Prom:
    def __init__(self, base):
        self.base = base

    def api(self, path, params=None, timeout=10.0):
        url = f"{self.base}{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params, doseq=True)
        try:
            with urllib.request.urlopen(url, timeout=timeout) as r:
                body = json.loads(r.read())
        except urllib.error.HTTPError as e:  # 400/422 carry the PromQL error in the body
            try:
                body = json.loads(e.read())
            except ValueError:
                raise RuntimeError(f"HTTP {e.code} for {url}") from e
        if body.get("status") != "success":
            raise RuntimeError(f"{body.get('errorType')}: {body.get('error')}")
        return body["data"]

    def query(self, expr):
        data = self.api("/api/v1/query", {"query": expr})
        return data["resultType"], data["result"]

    def vector(self, expr):
        rtype, res = self.query(expr)
        if rtype != "vector":
            raise RuntimeError(f"expected a vector from {expr}, got {rtype}")
        return res

    def series_label_values(self, selector, label, window=900):
        now = time.time()
        data = self.api("/api/v1/series", {"match[]": selector, "start": now - window, "end": now})
        return sorted({s[label] for s in data if label in s})

    def label_values(self, label, window=900):
        now = time.time()
        return sorted(self.api(f"/api/v1/label/{label}/values", {"start": now - window, "end": now}))


def non_empty(rtype, result):
    if rtype in ("vector", "matrix"):
        return len(result) > 0
    return result is not None  # scalar / string always have a value


# ---------------------------------------------------------------------------- dashboards
VAR_RE = re.compile(r"\$\{(\w+)(?::[^}]*)?\}|\[\[(\w+)(?::[^\]]*)?\]\]|\$(\w+)")


def substitute(expr, values):
    def rep(m):
        name = m.group(1) or m.group(2) or m.group(3)
        if name in values:
            return values[name]
        if name in GRAFANA_BUILTINS:
            return GRAFANA_BUILTINS[name]
        return m.group(0)

    return VAR_RE.sub(rep, expr)


def unresolved(expr):
    return sorted({m.group(1) or m.group(2) or m.group(3) for m in VAR_RE.finditer(expr)})


LABEL_VALUES_RE = re.compile(r"^\s*label_values\(\s*(?:(.*)\s*,\s*)?(\w+)\s*\)\s*$", re.S)


def variable_query(v):
    q = v.get("query")
    if isinstance(q, dict):
        q = q.get("query")
    return q or v.get("definition") or ""


def resolve_variable(prom, v, assigned):
    """Real values of a query variable, given the values of the variables before it."""
    q = substitute(variable_query(v), assigned)
    m = LABEL_VALUES_RE.match(q)
    if not m:
        raise RuntimeError(f"unsupported variable query {q!r} (only label_values(...) is used here)")
    selector, label = m.group(1), m.group(2)
    if selector:
        return prom.series_label_values(selector.strip(), label)
    return prom.label_values(label)


def assignments(prom, variables, report, dash_title):
    """Every combination of variable values to try: multi/All variables get their All value
    (what a user sees by default), single-value variables every real value."""
    combos = [{}]
    for v in variables:
        name, vtype = v["name"], v.get("type")
        if vtype == "datasource":
            continue
        if vtype == "constant":
            combos = [dict(c, **{name: str(v.get("query", ""))}) for c in combos]
            continue
        if vtype != "query":
            raise RuntimeError(f"variable type {vtype!r} of ${name} is not handled by this test")
        new = []
        seen_values = set()
        for c in combos:
            vals = resolve_variable(prom, v, c)
            seen_values.update(vals)
            if v.get("includeAll") and v.get("allValue"):
                if vals:
                    new.append(dict(c, **{name: v["allValue"]}))
            else:
                new.extend(dict(c, **{name: val}) for val in vals)
        report.check(bool(seen_values), f"[{dash_title}] variable ${name} has values",
                     f"{len(seen_values)} values: {', '.join(sorted(seen_values)[:8])}"
                     + (" ..." if len(seen_values) > 8 else "")
                     if seen_values else f"query {variable_query(v)!r} returned nothing")
        combos = new
    return combos


def iter_panels(panels):
    for p in panels:
        yield p
        yield from iter_panels(p.get("panels", []))


def check_dashboards(prom, report):
    files = sorted(glob.glob(os.path.join(DASHBOARDS, "*.json")))
    if not files:
        report.fail("dashboards found", f"no *.json under {DASHBOARDS}")
        return
    n_queries = 0
    for path in files:
        with open(path, encoding="utf-8") as f:
            dash = json.load(f)
        title = dash.get("title", os.path.basename(path))
        try:
            combos = assignments(prom, dash.get("templating", {}).get("list", []), report, title)
        except Exception as e:  # noqa: BLE001
            report.fail(f"[{title}] variables resolve", str(e))
            continue
        if not combos:
            report.fail(f"[{title}] at least one combination of variable values", "none: panels not checked")
            continue
        for panel in iter_panels(dash.get("panels", [])):
            for t in panel.get("targets", []):
                expr = t.get("expr")
                if not expr:
                    continue
                n_queries += 1
                what = f"[{title}] {panel.get('title')!r} {t.get('refId', '?')}"
                with_data, errors, empty, sizes = [], [], [], []
                for c in combos:
                    q = substitute(expr, c)
                    left = unresolved(q)
                    if left:
                        errors.append(f"unresolved variables {left} in {q}")
                        break
                    try:
                        rtype, res = prom.query(q)
                    except Exception as e:  # noqa: BLE001
                        errors.append(f"{q}: {e}")
                        continue
                    if non_empty(rtype, res):
                        with_data.append(c)
                        sizes.append(len(res) if rtype in ("vector", "matrix") else 1)
                    else:
                        empty.append(c)
                optional = any(name in expr for name in SOMETIMES_ABSENT)
                label = ", ".join(f"{k}={v}" for k, v in (combos[0].items())) if len(combos) == 1 else \
                    f"data for {len(with_data)}/{len(combos)} variable combinations" + \
                    ("" if optional else ", all required")
                if sizes:
                    label += f"; {min(sizes)}..{max(sizes)} series" if min(sizes) != max(sizes) else f"; {sizes[0]} series"
                if errors:
                    report.fail(what, "; ".join(errors[:3]))
                elif not with_data:
                    report.fail(what, f"no data for any variable combination; query: {substitute(expr, combos[0])}")
                elif empty and not optional:
                    report.fail(what, f"no data for {len(empty)}/{len(combos)} variable combinations, e.g. "
                                      f"{substitute(expr, empty[0])}")
                else:
                    report.ok(what, label)
    report.info(f"{len(files)} dashboards, {n_queries} panel queries checked")


# ---------------------------------------------------------------------------- alerts
def parse_matcher(m):
    name, op, value = re.fullmatch(r'\s*(\w+)\s*(=~|!~|!=|=)\s*"(.*)"\s*', m).groups()
    if op == "=":
        return lambda lab: lab.get(name, "") == value
    if op == "!=":
        return lambda lab: lab.get(name, "") != value
    if op == "=~":
        return lambda lab: re.fullmatch(value, lab.get(name, "")) is not None
    return lambda lab: re.fullmatch(value, lab.get(name, "")) is None


def after_inhibition(alerts, inhibit_rules):
    """The alerts Alertmanager would still notify, given its inhibit_rules (pending counted as
    firing: the test does not wait out every `for`)."""
    rules = [([parse_matcher(m) for m in r.get("source_matchers", [])],
              [parse_matcher(m) for m in r.get("target_matchers", [])], r.get("equal", [])) for r in inhibit_rules]
    kept = []
    for t in alerts:
        tl = t["labels"]
        muted = any(all(m(tl) for m in tgt) and any(
            s is not t and all(m(s["labels"]) for m in src)
            and all(s["labels"].get(e, "") == tl.get(e, "") for e in equal) for s in alerts)
            for src, tgt, equal in rules)
        if not muted:
            kept.append(t)
    return kept


def check_alerts(prom, report, wait_s):
    # ground truth from the raw series of the /metrics job, independent of the recording rules
    def by_key(expr, key="pool"):
        return {(s["metric"]["account"], s["metric"][key]): float(s["value"][1]) for s in prom.vector(expr)}

    ratios = by_key('tibiot_pool_used_bytes{job="tibiot"} / (tibiot_pool_capacity_bytes{job="tibiot"} > 0)')
    valid = by_key('tibiot_pool_valid{job="tibiot"}')
    pools = set(valid) | set(by_key('tibiot_pool_used_bytes{job="tibiot"}'))
    if not report.check(bool(ratios), "pools with a capacity exist", f"{len(ratios)} pools with a capacity"):
        return
    hot_key = max(ratios, key=ratios.get)
    report.check(ratios[hot_key] > 0.9, "the most used pool is above 90% of its capacity",
                 f"{hot_key[0]}/{hot_key[1]} at {ratios[hot_key]:.4f}")
    expected = [("TibiotPoolAlmostExhausted", k, "warning") for k, r in ratios.items() if r >= 0.8]
    expected += [("TibiotPoolAlmostExhausted", k, "critical") for k, r in ratios.items() if r >= 0.95]
    expected += [("TibiotPoolInvalid", k, "warning") for k, v in valid.items() if v == 0]
    abnormal = set(by_key('tibiot_card_status{job="tibiot", status="abnormal"} == 1', "iccid"))
    card_ratio = by_key('tibiot_card_cycle_usage_bytes{job="tibiot"} / (tibiot_card_capacity_bytes{job="tibiot"} > 0)',
                        "iccid")
    expected_cards = [("TibiotCardAbnormal", k) for k in abnormal]
    expected_cards += [("TibiotCardNearCap", k) for k, r in card_ratio.items() if r >= 0.9]
    report.info(f"pools: {len(pools)}; expected pool alerts: {len(expected)}; abnormal cards: {len(abnormal)}; "
                f"cards >= 90% of their cap: {sum(r >= 0.9 for r in card_ratio.values())}")
    report.check(any(v == 0 for v in valid.values()), "the demo has an invalid pool (tibiot_pool_valid == 0)")

    def active():
        return [a for a in prom.api("/api/v1/alerts")["alerts"] if a.get("state") in ("pending", "firing")]

    def key_of(a, key):
        return (a["labels"].get("account"), a["labels"].get(key))

    def have_all():
        alerts = active()
        got = {(a["labels"]["alertname"], key_of(a, "pool"), a["labels"].get("severity")) for a in alerts}
        got_cards = {(a["labels"]["alertname"], key_of(a, "iccid")) for a in alerts}
        if all(e in got for e in expected) and all(e in got_cards for e in expected_cards):
            return alerts
        return None

    try:
        alerts = wait_until("the expected alerts to be pending or firing", have_all, wait_s, interval=1)
    except Fatal:
        alerts = active()

    # each expected alert exactly once: no second series, no second job, no job/instance label
    for name, key, sev in expected:
        mine = [a for a in alerts if a["labels"]["alertname"] == name and key_of(a, "pool") == key
                and a["labels"].get("severity") == sev]
        report.check(len(mine) == 1, f"alert {name} ({sev}) for pool {key[0]}/{key[1]} exactly once",
                     f"{len(mine)} alerts: {[a['state'] for a in mine]}; usage {ratios.get(key)}, valid {valid.get(key)}")
    for name, key in expected_cards:
        mine = [a for a in alerts if a["labels"]["alertname"] == name and key_of(a, "iccid") == key]
        report.check(len(mine) == 1, f"alert {name} for card {key[1]} exactly once",
                     f"{len(mine)} alerts: {[a['state'] for a in mine]}")
    scoped = [a for a in alerts if "pool" in a["labels"] or "iccid" in a["labels"]]
    with_job = [a["labels"]["alertname"] for a in scoped if "job" in a["labels"] or "instance" in a["labels"]]
    report.check(bool(scoped) and not with_job, "pool and card alerts carry no job/instance (one per pool or card)",
                 f"with job/instance: {with_job[:5]}")

    # what Alertmanager notifies: one TibiotPoolAlmostExhausted per near-exhausted pool
    with open(ALERTMANAGER, encoding="utf-8") as f:
        inhibit_rules = yaml.safe_load(f).get("inhibit_rules", [])
    notified = after_inhibition(alerts, inhibit_rules)
    for key in sorted({k for _, k, _ in expected if ratios.get(k, 0) >= 0.8}):
        mine = [a["labels"].get("severity") for a in notified
                if a["labels"]["alertname"] == "TibiotPoolAlmostExhausted" and key_of(a, "pool") == key]
        want = "critical" if ratios[key] >= 0.95 else "warning"
        report.check(mine == [want], f"near-exhausted pool {key[0]}/{key[1]} is notified exactly once "
                     f"(TibiotPoolAlmostExhausted {want}, after the shipped inhibitions)", f"notified: {mine}")

    # card alerts only where the raw data say so (usage only grows within a cycle, so a card
    # measured >= 90% now may have been alerted on a moment ago, never the other way round)
    for a in alerts:
        lab = a["labels"]
        key = key_of(a, "iccid")
        if lab["alertname"] == "TibiotCardNearCap":
            report.check(card_ratio.get(key, 0.0) >= 0.9 * 0.999, f"TibiotCardNearCap for card {key[1]} "
                         f"is justified by its usage", f"usage/cap {card_ratio.get(key)}")
        elif lab["alertname"] == "TibiotCardAbnormal":
            report.check(key in abnormal, f"TibiotCardAbnormal for card {key[1]} is justified by its status")
    runaways = [key_of(a, "iccid")[1] for a in alerts if a["labels"]["alertname"] == "TibiotCardRunaway"]
    report.check(not runaways, "no demo card is flagged a runaway (their usage follows their history)",
                 f"flagged: {runaways}")

    # healthy pools: valid and below 80% (or without capacity) -> no usage/validity alert. A
    # forecast alert on such a pool is only acceptable when the raw data, computed here from the
    # /metrics job's samples independently of the recording rules, say it runs out within 4 days
    # at its daily average (the longest any forecast alert may keep firing for), or before the
    # end date for the end-date warning.
    healthy = {k for k in pools if valid.get(k, 1) == 1 and ratios.get(k, 0.0) < 0.8}
    report.check(bool(healthy), "the demo has healthy pools", f"{len(healthy)} pools")
    end_left = by_key('tibiot_pool_end_timestamp_seconds{job="tibiot"} - time()')
    daily = by_key('(tibiot_pool_capacity_bytes{job="tibiot"} - tibiot_pool_used_bytes{job="tibiot"}) / '
                   '(clamp_min(tibiot_pool_used_bytes{job="tibiot"} - tibiot_pool_used_bytes{job="tibiot"} offset 1d, 0)'
                   ' / 86400)')

    def justified(a, key):
        name, inf = a["labels"]["alertname"], float("inf")
        if name == "TibiotPoolExhaustionForecast":
            return daily.get(key, inf) < 4 * 86400 * 1.1
        if name == "TibiotPoolExhaustionBeforeCycleEnd":
            return daily.get(key, inf) < 1.1 * end_left.get(key, -inf)
        if name == "TibiotPoolEndDateNear":
            return end_left.get(key, inf) < 1.1 * 7 * 86400
        return name == "TibiotPoolAbnormalCardsIncreasing"  # about cards, not the pool's usage

    for key in sorted(healthy, key=str):
        mine = [a for a in alerts if key_of(a, "pool") == key]
        bad = [f"{a['labels']['alertname']}({a['state']})" for a in mine if not justified(a, key)]
        ok_ones = [f"{a['labels']['alertname']}({a['state']})" for a in mine if justified(a, key)]
        detail = f"usage {ratios.get(key, 'n/a (no capacity)')}"
        if key in daily:
            detail += f", runs out in {daily[key] / 86400:.1f} days at its daily average"
        if ok_ones:
            detail += "; justified by the data: " + ", ".join(ok_ones)
        report.check(not bad, f"healthy pool {key[0]}/{key[1]} has no unjustified pool alert",
                     ("unexpected: " + ", ".join(bad) + "; " + detail) if bad else detail)
    report.info("all pending/firing alerts: " + (", ".join(sorted(
        f"{a['labels']['alertname']}[{a['labels'].get('severity')}]"
        f"{{{a['labels'].get('pool') or a['labels'].get('iccid') or a['labels'].get('instance', '')}}}={a['state']}"
        for a in alerts)) or "none"))


def check_totals(prom, report, pools):
    """The overview's totals, with every variable at All, count each pool once although two jobs
    scrape every pool."""
    with open(os.path.join(DASHBOARDS, "tibiot-pools.json"), encoding="utf-8") as f:
        dash = json.load(f)
    exprs = {p.get("title"): p["targets"][0]["expr"] for p in iter_panels(dash["panels"]) if p.get("targets")}
    every = {"account": ".*", "pool": ".*"}
    n_pools = sum(len(v) for v in pools.values())
    raw = prom.vector("count(tibiot_pool_info)")
    report.check(raw and float(raw[0]["value"][1]) == 2 * n_pools, "every pool is scraped by two jobs here",
                 f"{raw[0]['value'][1] if raw else 0} tibiot_pool_info series for {n_pools} pools")
    truth = {
        "Pools": float(n_pools),
        "Cards": sum(float(s["value"][1]) for s in prom.vector('tibiot_pool_cards{job="tibiot"}')),
        "Capacity": sum(float(s["value"][1]) for s in prom.vector('tibiot_pool_capacity_bytes{job="tibiot"}')),
        "Data used": sum(float(s["value"][1]) for s in prom.vector('tibiot_pool_used_bytes{job="tibiot"}')),
    }
    for title, want in truth.items():
        res = prom.vector(substitute(exprs[title], every))
        got = float(res[0]["value"][1]) if res else None
        # usage grows between the two queries: 1% slack for the byte totals
        ok = got is not None and abs(got - want) <= (0.01 * want if title == "Data used" else 0.5)
        report.check(ok, f"[Pools overview] {title!r} counts each pool once", f"{got} vs {want} from one job")


# ---------------------------------------------------------------------------- setup
def exporter_targets(metrics_text):
    """Pool codes and ICCIDs per account, read from the exporter's own /metrics."""
    pools, cards = {}, {}
    for m in re.finditer(r'^tibiot_pool_info\{([^}]*)\}', metrics_text, re.M):
        lab = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(1)))
        pools.setdefault(lab["account"], set()).add(lab["pool"])
    for m in re.finditer(r'^tibiot_card_info\{([^}]*)\}', metrics_text, re.M):
        lab = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(1)))
        cards.setdefault(lab["account"], set()).add(lab["iccid"])
    return pools, cards


def samples_of(metrics_text, name):
    """[(labels, value)] of one metric family in the exposition text."""
    out = []
    for m in re.finditer(r"^" + re.escape(name) + r"\{([^}]*)\} (\S+)$", metrics_text, re.M):
        out.append((dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(1))), float(m.group(2))))
    return out


def median_daily(metrics_text, family, key):
    """Median usage of the last 7 closed days per (account, target), bytes a day."""
    days = {}
    for lab, v in samples_of(metrics_text, family):
        days.setdefault((lab["account"], lab[key]), {})[lab["date"]] = v
    out = {}
    for k, by_date in days.items():
        closed = [by_date[d] for d in sorted(by_date)[:-1]][-7:]  # the last date is today, still running
        if closed:
            closed.sort()
            out[k] = closed[len(closed) // 2]
    return out


def write_history(workdir, metrics_text, instance, now):
    """OpenMetrics backfill of HISTORY_DAYS for the series the rules read over days, for the
    /metrics job's labels; ends HISTORY_STEP before `now` at the values served now. Returns its
    path and the number of series."""
    pool_rate = median_daily(metrics_text, "tibiot_pool_daily_usage_bytes", "pool")
    card_rate = median_daily(metrics_text, "tibiot_card_daily_usage_bytes", "iccid")
    times = [now - HISTORY_DAYS * 86400 + i * HISTORY_STEP
             for i in range(int(HISTORY_DAYS * 86400 / HISTORY_STEP))]
    lines, n = [], 0
    for family, key, rates, grows in (
            ("tibiot_pool_used_bytes", "pool", pool_rate, True),
            ("tibiot_pool_capacity_bytes", "pool", {}, False),
            ("tibiot_pool_end_timestamp_seconds", "pool", {}, False),
            ("tibiot_card_month_usage_bytes", "iccid", card_rate, True)):
        lines.append(f"# TYPE {family} gauge")
        for lab, value in samples_of(metrics_text, family):
            n += 1
            per_s = rates.get((lab["account"], lab[key]), 0.0) / 86400 if grows else 0.0
            labels = dict(lab, job="tibiot", instance=instance)
            ls = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
            # growing back in time until 0: before that, the previous month / billing cycle, which
            # ended at 30 days of usage (the rules must take the reset in their stride)
            reset = now - value / per_s if per_s > 0 else float("-inf")
            for t in times:
                v = value - per_s * (now - t) if t >= reset else per_s * (30 * 86400 - (reset - t))
                lines.append(f"{family}{{{ls}}} {v:.0f} {t:.3f}")
    lines.append("# EOF")
    path = os.path.join(workdir, "history.om")
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    return path, n


def prometheus_config(workdir, exporter_addr, pools, cards):
    with open(PROM_DEFAULT, encoding="utf-8") as f:
        default = yaml.safe_load(f)
    with open(PROM_PROBE, encoding="utf-8") as f:
        alternative = yaml.safe_load(f)
    metrics_job = next(j for j in default["scrape_configs"] if j["job_name"] == "tibiot")
    probe = next(j for j in alternative["scrape_configs"] if j["job_name"] == "tibiot-probe")
    relabel = []
    for r in probe["relabel_configs"]:
        r = dict(r)
        if r.get("target_label") == "__address__":
            r["replacement"] = exporter_addr  # every shard is the test exporter
        relabel.append(r)
    groups = [{"targets": sorted(codes), "labels": {"__param_account": acc, "__tibiot_kind": "pool"}}
              for acc, codes in pools.items()]
    groups += [{"targets": sorted(ids), "labels": {"__param_account": acc, "__tibiot_kind": "card"}}
               for acc, ids in cards.items()]
    os.makedirs(os.path.join(workdir, "targets"), exist_ok=True)
    with open(os.path.join(workdir, "targets", "demo.yml"), "w", encoding="utf-8") as f:
        yaml.safe_dump(groups, f)
    timeout = f"{int(SCRAPE_INTERVAL * 750)}ms"
    cfg = {
        "global": {"scrape_interval": f"{SCRAPE_INTERVAL}s", "scrape_timeout": timeout,
                   "evaluation_interval": f"{SCRAPE_INTERVAL}s"},
        "rule_files": [RULES],
        "scrape_configs": [
            # the shipped default job, pointed at the test exporter
            dict(metrics_job, static_configs=[{"targets": [exporter_addr]}]),
            # and a second job on the same pools and cards: the shipped /probe relabelling
            {"job_name": "tibiot-probe", "metrics_path": "/probe", "scrape_interval": f"{SCRAPE_INTERVAL}s",
             "scrape_timeout": timeout,
             "file_sd_configs": [{"files": [os.path.join(workdir, "targets", "*.yml")]}],
             "relabel_configs": relabel},
        ],
    }
    path = os.path.join(workdir, "prometheus.yml")
    with open(path, "w", encoding="utf-8") as f:
        yaml.safe_dump(cfg, f, sort_keys=False)
    return path


def check_targets(prom, report, exporter_addr, pools, cards):
    active = prom.api("/api/v1/targets", {"state": "active"})["activeTargets"]
    metrics = [t for t in active if t["labels"].get("job") == "tibiot"]
    report.check(len(metrics) == 1 and metrics[0]["health"] == "up", "job tibiot (/metrics) is up",
                 f"{[(t['scrapeUrl'], t['health'], t.get('lastError')) for t in metrics]}")
    probes = [t for t in active if t["labels"].get("job") == "tibiot-probe"]
    want = {f"account={a}&pool={p}" for a, ps in pools.items() for p in ps}
    want |= {f"account={a}&card={c}" for a, cs in cards.items() for c in cs}
    got = {}
    for t in probes:
        u = urllib.parse.urlparse(t["scrapeUrl"])
        q = urllib.parse.parse_qs(u.query)
        key = "&".join(f"{k}={q[k][0]}" for k in ("account", "pool", "card") if k in q)
        got[key] = t
        if u.netloc != exporter_addr or u.path != "/probe":
            report.fail(f"probe target {key} scrapes the exporter's /probe", t["scrapeUrl"])
    report.check(set(got) == want, "job tibiot-probe has one /probe?account=..&pool=|card=.. target per demo pool and card",
                 f"{len(got)} targets" if set(got) == want else
                 f"missing {sorted(want - set(got))[:5]}, unexpected {sorted(set(got) - want)[:5]}")
    down = [(k, t["health"], t.get("lastError")) for k, t in got.items() if t["health"] != "up"]
    report.check(not down and bool(got), "every /probe target is up", f"down: {down[:5]}" if down else f"{len(got)} up")
    bad_inst = [t["labels"]["instance"] for t in probes if not re.fullmatch(r"[^/]+/(pool|card)/.+", t["labels"]["instance"])]
    report.check(not bad_inst, "probe instance labels are account/kind/code", f"{bad_inst[:5]}")
    probe_ok = prom.vector('tibiot_probe_success{job="tibiot-probe"} == 1')
    report.check(len(probe_ok) == len(want), "tibiot_probe_success is 1 for every probe target",
                 f"{len(probe_ok)}/{len(want)}")


def check_rule_health(prom, report):
    groups = prom.api("/api/v1/rules")["groups"]
    n = 0
    for g in groups:
        for r in g["rules"]:
            n += 1
            if r.get("health") not in ("ok",):
                report.fail(f"rule {r.get('name')} evaluates cleanly", f"health {r.get('health')}: {r.get('lastError')}")
    report.check(n > 0, "Prometheus loaded the shipped rules", f"{n} rules in {len(groups)} groups")


def main():
    ap = argparse.ArgumentParser(description="End-to-end check of dashboards and alerts against a real Prometheus")
    ap.add_argument("binary", help="path to the built tibiot-exporter binary")
    ap.add_argument("--prometheus", default=shutil.which("prometheus") or "/usr/bin/prometheus")
    ap.add_argument("--scrapes", type=int, default=8,
                    help="scrapes of /metrics to wait for before checking (rates over the live part need a few)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory (logs, TSDB)")
    args = ap.parse_args()

    binary = os.path.abspath(args.binary)
    for path, what in ((binary, "tibiot-exporter binary"), (args.prometheus, "prometheus binary")):
        if not (os.path.isfile(path) and os.access(path, os.X_OK)):
            print(f"cannot run: {what} not found or not executable: {path}", file=sys.stderr)
            return 2

    report = Report()
    workdir = tempfile.mkdtemp(prefix="tibiot-e2e-")
    children = []
    t_start = time.monotonic()
    try:
        exp_port = free_port()
        exporter_addr = f"127.0.0.1:{exp_port}"
        exporter = Child("exporter", [binary, "demo", f"--web.listen-address={exporter_addr}"], workdir)
        children.append(exporter)
        wait_until("the exporter to be ready", lambda: http_get(f"http://{exporter_addr}/-/ready")[0] == 200,
                   45, procs=[exporter])
        _, metrics_text = wait_until(
            "the exporter to serve pool metrics",
            lambda: (lambda r: r if "tibiot_pool_info{" in r[1] else None)(http_get(f"http://{exporter_addr}/metrics", 20)),
            45, interval=1, procs=[exporter])
        pools, cards = exporter_targets(metrics_text)
        report.ok("exporter demo is up and serves pools", f"{sum(map(len, pools.values()))} pools, "
                  f"{sum(map(len, cards.values()))} cards, accounts {sorted(set(pools) | set(cards))}")

        # history: days of usage for the rules' day-long windows, written as TSDB blocks
        tsdb = os.path.join(workdir, "tsdb")
        history, n_series = write_history(workdir, metrics_text, exporter_addr, time.time() - HISTORY_STEP)
        promtool = os.path.join(os.path.dirname(os.path.realpath(args.prometheus)), "promtool")
        promtool = promtool if os.access(promtool, os.X_OK) else (shutil.which("promtool") or "promtool")
        backfill = subprocess.run([promtool, "tsdb", "create-blocks-from", "openmetrics", history, tsdb],
                                  capture_output=True, text=True, timeout=600)
        if backfill.returncode != 0:
            raise Fatal(f"promtool tsdb create-blocks-from openmetrics failed:\n{backfill.stdout[-2000:]}"
                        f"{backfill.stderr[-2000:]}")
        report.ok("history written into the TSDB", f"{n_series} series, {HISTORY_DAYS} days every {HISTORY_STEP}s")

        prom_port = free_port()
        cfg = prometheus_config(workdir, exporter_addr, pools, cards)
        prometheus = Child("prometheus", [
            args.prometheus, f"--config.file={cfg}", f"--storage.tsdb.path={tsdb}",
            f"--web.listen-address=127.0.0.1:{prom_port}", "--storage.tsdb.retention.time=30d", "--log.level=warn",
        ], workdir)
        children.append(prometheus)
        prom = Prom(f"http://127.0.0.1:{prom_port}")
        wait_until("Prometheus to be ready", lambda: http_get(f"{prom.base}/-/ready")[0] == 200, 120,
                   procs=[prometheus])
        report.ok("prometheus started", f"{prom.base}, config {cfg}")

        # data flows: both jobs scraped, recording rules evaluated
        wait_until("pool metrics in Prometheus",
                   lambda: prom.vector('count(tibiot_pool_info{job="tibiot"})'), 60, interval=1,
                   procs=children)
        # the backfilled history is visible: yesterday's usage of every pool
        wait_until("the history to be queryable",
                   lambda: prom.vector('count(last_over_time(tibiot_pool_used_bytes{job="tibiot"}[10m] offset 1d))'),
                   120, interval=1, procs=children)
        # several scrapes and evaluations: the live part of the windows, rate()s, the forecasts,
        # the card normals (which need the 4-day-old history)
        wait_until(f"{args.scrapes} scrapes of /metrics and the recorded series",
                   lambda: (prom.vector(f'count_over_time(up{{job="tibiot"}}[5m]) >= {args.scrapes}')
                            and prom.vector("tibiot:pool_usage_ratio") and prom.vector("tibiot:api_requests:rate5m")
                            and prom.vector("tibiot:pool_exhaustion_seconds")
                            and prom.vector("tibiot:card_month_usage_bytes:normal_rate > 0")),
                   180, interval=1, procs=children)
        samples = prom.vector('count_over_time(up{job="tibiot"}[5m])')
        report.info(f"{samples[0]['value'][1] if samples else 0} scrapes of /metrics after "
                    f"{time.monotonic() - t_start:.0f}s")

        check_targets(prom, report, exporter_addr, pools, cards)
        check_rule_health(prom, report)
        check_dashboards(prom, report)
        check_totals(prom, report, pools)
        check_alerts(prom, report, wait_s=120)
    except Fatal as e:
        report.fail("the end-to-end run could go on", str(e))
        for c in children:
            print(f"--- last lines of {c.name} ({c.log_path})\n{c.tail()}", flush=True)
    except Exception as e:  # noqa: BLE001 - report, clean up, fail
        report.fail("the end-to-end run finished without an unexpected error", f"{type(e).__name__}: {e}")
    finally:
        for c in reversed(children):
            c.stop()
        if args.keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    print(f"took {time.monotonic() - t_start:.0f}s")
    print(f"{report.passed} passed, {report.failed} failed")
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main())
