#!/usr/bin/env python3
"""End-to-end proof of the Grafana dashboards and the alert rules against a real Prometheus.

    tests/ops/e2e_dashboards.py target/release/tibiot-exporter [--prometheus /usr/bin/prometheus]

1. starts `tibiot-exporter demo --web.listen-address=127.0.0.1:<free port>` (simulator + exporter);
2. starts a real Prometheus on a free loopback port with a temporary TSDB, scraping the
   exporter's /metrics every 2s (job "tibiot") and, through the very relabel_configs of
   deploy/prometheus/prometheus.yml (addresses pointed at the test exporter), every demo pool and
   card on /probe (job "tibiot-probe"), with rule_files = deploy/prometheus/rules/tibiot.rules.yml
   evaluated every 2s;
3. waits (bounded) for a few scrapes and rule evaluations;
4. checks: every scrape target is up and built the right /probe URL; every rule evaluates
   without error; every template variable of every dashboard has values; every query of every
   panel of every dashboard, with its variables substituted by real values, returns data
   (instant query) -- for every value of single-value variables such as the detail
   dashboard's pool, unless it reads a series that only some pools have (capacity, end date); the most used pool (> 90% of its capacity) has TibiotPoolAlmostExhausted
   pending or firing; the invalid pool has TibiotPoolInvalid; abnormal cards have
   TibiotCardAbnormal and cards at >= 90% of their cap TibiotCardNearCap, and no card alert is
   without such a reason; healthy pools (valid, < 80% used or without capacity) have no pool
   alert, except a forecast/end-date alert that the raw data, queried independently, justify.

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
PROM_EXAMPLE = os.path.join(ROOT, "deploy", "prometheus", "prometheus.yml")

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


# Series that exist only for some pools or cards (docs/metrics.md: no capacity for usage_billed
# pools or usage-billed cards, end dates only for unified_pay pools). A query that reads one of
# them must return data for at least one variable combination; any other query for all.
SOMETIMES_ABSENT = (
    "tibiot_pool_capacity_bytes", "tibiot_pool_start_timestamp_seconds", "tibiot_pool_end_timestamp_seconds",
    "tibiot:pool_usage_ratio", "tibiot:pool_exhaustion_seconds", "tibiot:pool_end_seconds",
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
def check_alerts(prom, report, wait_s):
    # ground truth from the raw metrics, independent of the recording rules
    ratios = {(s["metric"]["account"], s["metric"]["pool"], s["metric"].get("job")): float(s["value"][1])
              for s in prom.vector("tibiot_pool_used_bytes / tibiot_pool_capacity_bytes")}
    valid = {(s["metric"]["account"], s["metric"]["pool"], s["metric"].get("job")): float(s["value"][1])
             for s in prom.vector("tibiot_pool_valid")}
    pools = set(valid) | {(s["metric"]["account"], s["metric"]["pool"], s["metric"].get("job"))
                          for s in prom.vector("tibiot_pool_used_bytes")}
    if not report.check(bool(ratios), "pools with a capacity exist", f"{len(ratios)} pool series with a capacity"):
        return
    hot_key = max(ratios, key=ratios.get)
    hot = ratios[hot_key]
    report.check(hot > 0.9, "the most used pool is above 90% of its capacity",
                 f"{hot_key[0]}/{hot_key[1]} (job {hot_key[2]}) at {hot:.4f}")
    expected = [("TibiotPoolAlmostExhausted", k, "warning") for k, r in ratios.items() if r >= 0.8]
    expected += [("TibiotPoolAlmostExhausted", k, "critical") for k, r in ratios.items() if r >= 0.95]
    expected += [("TibiotPoolInvalid", k, "warning") for k, v in valid.items() if v == 0]
    abnormal = [(s["metric"]["account"], s["metric"]["iccid"], s["metric"].get("job"))
                for s in prom.vector('tibiot_card_status{status="abnormal"} == 1')]
    card_ratio = {(s["metric"]["account"], s["metric"]["iccid"], s["metric"].get("job")): float(s["value"][1])
                  for s in prom.vector("tibiot_card_cycle_usage_bytes / tibiot_card_capacity_bytes")}
    expected_cards = [("TibiotCardAbnormal", k) for k in abnormal]
    expected_cards += [("TibiotCardNearCap", k) for k, r in card_ratio.items() if r >= 0.9]
    report.info(f"pools: {len(pools)} series; expected pool alerts: {len(expected)}; abnormal cards: {len(abnormal)}; "
                f"cards >= 90% of their cap: {sum(r >= 0.9 for r in card_ratio.values())}")
    report.check(any(v == 0 for v in valid.values()), "the demo has an invalid pool (tibiot_pool_valid == 0)")

    def active():
        return [a for a in prom.api("/api/v1/alerts")["alerts"] if a.get("state") in ("pending", "firing")]

    def pool_key(a):
        lab = a["labels"]
        return (lab.get("account"), lab.get("pool"), lab.get("job"))

    def have_all():
        alerts = active()
        got = {(a["labels"]["alertname"], pool_key(a), a["labels"].get("severity")) for a in alerts}
        got_cards = {(a["labels"]["alertname"], (a["labels"].get("account"), a["labels"].get("iccid"),
                                                 a["labels"].get("job"))) for a in alerts}
        if all(e in got for e in expected) and all(e in got_cards for e in expected_cards):
            return alerts
        return None

    try:
        alerts = wait_until("the expected alerts to be pending or firing", have_all, wait_s, interval=1)
    except Fatal:
        alerts = active()
    got = {(a["labels"]["alertname"], pool_key(a), a["labels"].get("severity")): a["state"] for a in alerts}
    for name, key, sev in expected:
        st = got.get((name, key, sev))
        report.check(st is not None, f"alert {name} ({sev}) for pool {key[0]}/{key[1]} job {key[2]}",
                     f"state {st}" if st else f"not pending/firing; usage {ratios.get(key)}, valid {valid.get(key)}")
    got_cards = {(a["labels"]["alertname"], (a["labels"].get("account"), a["labels"].get("iccid"),
                                             a["labels"].get("job"))): a["state"] for a in alerts}
    for name, key in expected_cards:
        st = got_cards.get((name, key))
        report.check(st is not None, f"alert {name} for card {key[1]} job {key[2]}",
                     f"state {st}" if st else "not pending/firing")

    # card alerts only where the raw data say so (usage only grows within a cycle, so a card
    # measured >= 90% now may have been alerted on a moment ago, never the other way round)
    for a in alerts:
        lab = a["labels"]
        key = (lab.get("account"), lab.get("iccid"), lab.get("job"))
        if lab["alertname"] == "TibiotCardNearCap":
            report.check(card_ratio.get(key, 0.0) >= 0.9 * 0.999, f"TibiotCardNearCap for card {key[1]} job {key[2]} "
                         f"is justified by its usage", f"usage/cap {card_ratio.get(key)}")
        elif lab["alertname"] == "TibiotCardAbnormal":
            report.check(key in abnormal, f"TibiotCardAbnormal for card {key[1]} job {key[2]} is justified by its status")

    # healthy pools: valid and below 80% (or without capacity) -> no usage/validity alert.
    # A forecast alert on such a pool is only acceptable when the raw data, computed here
    # independently of the recording rules, do forecast exhaustion within 24h / before the end
    # date (10% margin for the time between the rule evaluation and this query).
    healthy = {k for k in pools if valid.get(k, 1) == 1 and ratios.get(k, 0.0) < 0.8}
    report.check(bool(healthy), "the demo has healthy pools", f"{len(healthy)} pool series")
    end_left = {(s["metric"]["account"], s["metric"]["pool"], s["metric"].get("job")): float(s["value"][1])
                for s in prom.vector("tibiot_pool_end_timestamp_seconds - time()")}
    forecast = {(s["metric"]["account"], s["metric"]["pool"], s["metric"].get("job")): float(s["value"][1])
                for s in prom.vector("(tibiot_pool_capacity_bytes - tibiot_pool_used_bytes)"
                                     " / (deriv(tibiot_pool_used_bytes[6h]) > 0)")}

    def justified(a, key):
        name, inf = a["labels"]["alertname"], float("inf")
        if name == "TibiotPoolExhaustionForecast":
            return forecast.get(key, inf) < 1.1 * 86400
        if name == "TibiotPoolExhaustionBeforeCycleEnd":
            return forecast.get(key, inf) < 1.1 * end_left.get(key, -inf)
        if name == "TibiotPoolEndDateNear":
            return end_left.get(key, inf) < 1.1 * 7 * 86400
        return name == "TibiotPoolAbnormalCardsIncreasing"  # about cards, not the pool's usage

    for key in sorted(healthy, key=str):
        mine = [a for a in alerts if pool_key(a) == key]
        bad = [f"{a['labels']['alertname']}({a['state']})" for a in mine if not justified(a, key)]
        ok_ones = [f"{a['labels']['alertname']}({a['state']})" for a in mine if justified(a, key)]
        detail = f"usage {ratios.get(key, 'n/a (no capacity)')}"
        if key in forecast:
            detail += f", raw forecast {forecast[key] / 3600:.1f}h"
        if ok_ones:
            detail += "; justified by the data: " + ", ".join(ok_ones)
        report.check(not bad, f"healthy pool {key[0]}/{key[1]} job {key[2]} has no unjustified pool alert",
                     ("unexpected: " + ", ".join(bad) + "; " + detail) if bad else detail)
    report.info("all pending/firing alerts: " + (", ".join(sorted(
        f"{a['labels']['alertname']}[{a['labels'].get('severity')}]"
        f"{{{a['labels'].get('pool') or a['labels'].get('iccid') or a['labels'].get('instance', '')}}}={a['state']}"
        for a in alerts)) or "none"))


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


def prometheus_config(workdir, exporter_addr, pools, cards):
    with open(PROM_EXAMPLE, encoding="utf-8") as f:
        example = yaml.safe_load(f)
    probe = next(j for j in example["scrape_configs"] if j["job_name"] == "tibiot-probe")
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
            {"job_name": "tibiot", "static_configs": [{"targets": [exporter_addr]}]},
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
    ap.add_argument("--settle", type=float, default=20.0,
                    help="seconds of scraping to wait for once data flows (rates need several samples)")
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

        prom_port = free_port()
        cfg = prometheus_config(workdir, exporter_addr, pools, cards)
        prometheus = Child("prometheus", [
            args.prometheus, f"--config.file={cfg}", f"--storage.tsdb.path={os.path.join(workdir, 'tsdb')}",
            f"--web.listen-address=127.0.0.1:{prom_port}", "--storage.tsdb.retention.time=1h", "--log.level=warn",
        ], workdir)
        children.append(prometheus)
        prom = Prom(f"http://127.0.0.1:{prom_port}")
        wait_until("Prometheus to be ready", lambda: http_get(f"{prom.base}/-/ready")[0] == 200, 30,
                   procs=[prometheus])
        report.ok("prometheus started", f"{prom.base}, config {cfg}")

        # data flows: both jobs scraped, recording rules evaluated
        wait_until("pool metrics in Prometheus",
                   lambda: prom.vector('count(tibiot_pool_info{job="tibiot"})'), 30, interval=1,
                   procs=children)
        wait_until("recording rules to produce data",
                   lambda: prom.vector("tibiot:pool_usage_ratio") and prom.vector("tibiot:api_requests:rate5m"),
                   30, interval=1, procs=children)
        # several scrapes so that rate()/deriv()/changes() have samples to work on
        settle_end = time.monotonic() + args.settle
        while time.monotonic() < settle_end:
            for c in children:
                if c.proc.poll() is not None:
                    raise Fatal(f"{c.name} exited with status {c.proc.returncode}\n{c.tail()}")
            time.sleep(1)
        samples = prom.vector('count_over_time(up{job="tibiot"}[5m])')
        report.info(f"{samples[0]['value'][1] if samples else 0} scrapes of /metrics after "
                    f"{time.monotonic() - t_start:.0f}s")

        check_targets(prom, report, exporter_addr, pools, cards)
        check_rule_health(prom, report)
        check_dashboards(prom, report)
        check_alerts(prom, report, wait_s=20)
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
