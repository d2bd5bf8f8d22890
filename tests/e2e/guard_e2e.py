#!/usr/bin/env python3
"""End-to-end proof of the guard with real parts, time-compressed.

    tests/e2e/guard_e2e.py target/debug/tibiot-exporter target/debug/tibiotctl

A simulator with one runaway card, the exporter scraping it, a real Prometheus evaluating the
SHIPPED rules (deploy/prometheus/rules/tibiot.rules.yml), a real Alertmanager routed by the
SHIPPED example (deploy/alertmanager/alertmanager.yml) to `tibiotctl guard` in enforce mode
(basic auth from a web config, as deployed). It passes when the runaway card ends switched off
in the simulator and shown so by the exporter, and no other card is touched.

Time compression. TibiotCardRunaway compares a card's last half hour or hour with its own
normal over the previous days, and a runaway must be named within 60 minutes: a CI run can wait
for neither. So the whole world runs N times faster, and its past is backfilled:

- the simulator's world clock runs N x real time (`simulate --clock-speed=N`) from the 10th of
  the month (`--clock-start`, so no month start falls into the run); its runaway card starts
  a minute (wall) after the start (`--runaway-after`), when Prometheus scrapes;
- the rules file is derived from the shipped one by dividing every duration by N -- the range
  and subquery windows and offsets in `expr`, `for` and `keep_firing_for` -- and the test
  asserts that this mechanical transformation changed nothing else;
- the exporter's TTLs, Alertmanager's group timings and Prometheus' resend delay and lookback
  are divided by N as well; scrapes and rule evaluations run every 0.5 s (N/2 seconds of world
  time each);
- the days before the start, which the rule reads as the card's normal, are backfilled into
  Prometheus' TSDB (`promtool tsdb create-blocks-from openmetrics`): a second simulator of the
  same world (same seed, no runaway) is frozen at every 15 world minutes of them
  (`--clock-control`), each card's month usage read and written as the exporter would serve it
  (`tibiot_card_month_usage_bytes` = useMonthFlow KB x 1024, the value changing every 15 world
  minutes like the exporter's card TTL, a sample at every scrape), stamped N times closer
  together before the live start. Only that series is backfilled: it is the one the rule reads.

N is chosen from the rule itself: as large as its shortest window allows (three scrapes in it).
The rule divides usage differences by fixed world durations (e.g. `/ 1800` for 30 minutes), so
its values are the same in the compressed world; the delay from the runaway's start to the
alert, in world time, is reported and must be at most 60 min.

Prints one line per check and ends with `N passed, M failed`; exits 1 on any failure, 2 when it
cannot run. Loopback only; every child process is stopped and the temporary folder removed.
"""
import argparse
import base64
import datetime
import http.client
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
RULES = os.path.join(ROOT, "deploy", "prometheus", "rules", "tibiot.rules.yml")
AM_EXAMPLE = os.path.join(ROOT, "deploy", "alertmanager", "alertmanager.yml")
GUARD_EXAMPLE = os.path.join(ROOT, "deploy", "guard", "guard.yml")
ALERT = "TibiotCardRunaway"

SCRAPE_S = 0.5           # scrape and evaluation interval, wall seconds (N x that in world time)
MIN_SAMPLES = 3          # scrapes that must fit into the rule's shortest window
MAX_SPEED = 600         # a 0.5 s scrape is then 5 world minutes, finer than the cards' 15 min updates
WORLD_DETECTION_LIMIT_S = 3600  # a runaway is named within 60 min of its start (world time)
RUNAWAY_FACTOR = 100     # the runaway card uses 100 x its normal daily usage on top
RUNAWAY_AFTER_S = 60     # wall seconds from the live start to the runaway (Prometheus is up by then)
MAX_HISTORY_S = 8 * 86400  # world time backfilled at most
POOLS, CARDS = 4, 16
# Test-only credentials of the guard's web config (bcrypt cost 4 of "e2e-guard-password").
GUARD_USER = "alertmanager"
GUARD_PASSWORD = "e2e-guard-password"
GUARD_HASH = "$2b$04$9SjqWf3FB.gnK1CNZddFde.pOXngPQOH1Bw4HcGsgUtLiCa7tga8y"


# ---------------------------------------------------------------------------- reporting
class Report:
    def __init__(self):
        self.passed = 0
        self.failed = 0

    def check(self, cond, what, detail=""):
        if cond:
            self.passed += 1
            print(f"PASS  {what}" + (f"  ({detail})" if detail else ""), flush=True)
        else:
            self.failed += 1
            print(f"FAIL  {what}" + (f"  ({detail})" if detail else ""), flush=True)
        return cond


def info(msg):
    print(f"      {msg}", flush=True)


class Fatal(Exception):
    """The run cannot go on."""


# ---------------------------------------------------------------------------- durations
DUR_RE = r"(?:\d+(?:ms|[smhdwy]))+"
UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000,
           "y": 31_536_000_000}


def dur_ms(s):
    parts = re.findall(r"(\d+)(ms|[smhdwy])", s)
    if not parts or "".join(f"{n}{u}" for n, u in parts) != s:
        raise ValueError(f"not a duration: {s!r}")
    return sum(int(n) * UNIT_MS[u] for n, u in parts)


def fmt_ms(ms):
    """A duration in ms; a non-zero one stays at least 1ms."""
    return "0s" if ms == 0 else f"{max(1, int(round(ms)))}ms"


# A duration inside a range or subquery selector `[5m]`, `[1h:5m]`, `[1h:]`, or after `offset`.
SELECTOR_RE = re.compile(r"\[\s*(" + DUR_RE + r")\s*(?::\s*(" + DUR_RE + r")?\s*)?\]")
OFFSET_RE = re.compile(r"(\boffset\s+-?)(" + DUR_RE + r")")


def expr_durations(expr):
    """(ranges, offsets) in ms found in a PromQL expression."""
    ranges, offsets = [], []
    for m in SELECTOR_RE.finditer(expr):
        ranges.append(dur_ms(m.group(1)))
        if m.group(2):
            ranges.append(dur_ms(m.group(2)))
    for m in OFFSET_RE.finditer(expr):
        offsets.append(dur_ms(m.group(2)))
    return ranges, offsets


def scale_expr(expr, n):
    def sel(m):
        out = "[" + fmt_ms(dur_ms(m.group(1)) / n)
        if m.group(0).find(":") >= 0:
            out += ":" + (fmt_ms(dur_ms(m.group(2)) / n) if m.group(2) else "")
        return out + "]"

    expr = SELECTOR_RE.sub(sel, expr)
    return OFFSET_RE.sub(lambda m: m.group(1) + fmt_ms(dur_ms(m.group(2)) / n), expr)


def normalize_expr(expr):
    """The expression with every scaled duration replaced by a placeholder."""
    expr = SELECTOR_RE.sub(lambda m: "[D" + (":D" if ":" in m.group(0) else "") + "]", expr)
    return OFFSET_RE.sub(lambda m: m.group(1) + "D", expr)


TIMED_KEYS = ("for", "keep_firing_for")


def scale_rules(doc, n):
    out = json.loads(json.dumps(doc))
    for g in out.get("groups", []):
        for r in g.get("rules", []):
            if "expr" in r:
                r["expr"] = scale_expr(str(r["expr"]), n)
            for k in TIMED_KEYS:
                if k in r:
                    r[k] = fmt_ms(dur_ms(str(r[k])) / n)
        if "interval" in g:
            g["interval"] = fmt_ms(dur_ms(str(g["interval"])) / n)
    return out


def normalized(doc):
    out = json.loads(json.dumps(doc))
    for g in out.get("groups", []):
        g.pop("interval", None)
        for r in g.get("rules", []):
            if "expr" in r:
                r["expr"] = normalize_expr(str(r["expr"]))
            for k in TIMED_KEYS:
                if k in r:
                    r[k] = "D"
    return out


def check_scaling(orig, scaled, n):
    """Every duration divided by n, and nothing else changed."""
    if normalized(orig) != normalized(scaled):
        return "the transformation changed something besides durations"
    for go, gs in zip(orig["groups"], scaled["groups"]):
        for ro, rs in zip(go["rules"], gs["rules"]):
            a, b = expr_durations(str(ro.get("expr", ""))), expr_durations(str(rs.get("expr", "")))
            for xs, ys in zip(a, b):
                if len(xs) != len(ys) or any(y != (max(1, round(x / n)) if x else 0) for x, y in zip(xs, ys)):
                    return f"durations of {ro.get('alert') or ro.get('record')} not divided by {n}: {xs} -> {ys}"
            for k in TIMED_KEYS:
                want = dur_ms(str(ro[k])) if k in ro else 0
                if k in ro and dur_ms(str(rs[k])) != (max(1, round(want / n)) if want else 0):
                    return f"{k} of {ro.get('alert')} not divided by {n}"
    return None


def rule_lookback(doc):
    """(shortest window, longest look-back) in ms over the runaway alert and the recording rules
    it reads, as found in their expressions."""
    rules = {r.get("record") or r.get("alert"): r for g in doc["groups"] for r in g["rules"]}
    alert = next((r for g in doc["groups"] for r in g["rules"] if r.get("alert") == ALERT), None)
    if alert is None:
        return None
    todo, seen, exprs = [alert], set(), []
    while todo:
        r = todo.pop()
        e = str(r.get("expr", ""))
        exprs.append(e)
        for name, rr in rules.items():
            if rr.get("record") and name not in seen and re.search(r"(?<![\w:])" + re.escape(name) + r"(?![\w:])", e):
                seen.add(name)
                todo.append(rr)
    shortest, longest = None, 0
    for e in exprs:
        ranges, offsets = expr_durations(e)
        if ranges:
            shortest = min([shortest or min(ranges)] + ranges)
        # Recording rules read by the alert need their own look-back before they have values:
        # adding the look-backs of the chain is a safe upper bound.
        longest += max([0] + ranges) + max([0] + offsets)
    return shortest, longest


# ---------------------------------------------------------------------------- processes
def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Child:
    def __init__(self, name, argv, workdir, stdout_pipe=False):
        self.name = name
        self.log_path = os.path.join(workdir, f"{name}.log")
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE if stdout_pipe else self.log, stderr=self.log,
                                     stdin=subprocess.DEVNULL, start_new_session=True)

    def tail(self, n=25):
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
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait(timeout=5)
        if self.proc.stdout:
            self.proc.stdout.close()
        self.log.close()


def wait_until(what, fn, timeout, procs, interval=0.25):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        for p in procs:
            if p.proc.poll() is not None:
                raise Fatal(f"{p.name} exited ({p.proc.returncode}) while waiting for {what}\n{p.tail()}")
        try:
            v = fn()
            if v:
                return v
        except Exception as e:  # noqa: BLE001 - "not yet"
            last = e
        time.sleep(interval)
    raise Fatal(f"timed out after {timeout:.0f}s waiting for {what}" + (f" (last error: {last})" if last else ""))


def fetch(url, data=None, auth=None, timeout=10.0):
    req = urllib.request.Request(url, data=data, method="POST" if data is not None else "GET")
    if auth:
        req.add_header("Authorization", "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode())
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode("utf-8", "replace")


def prom_query(base, expr):
    code, body = fetch(f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
    data = json.loads(body)
    if data.get("status") != "success":
        raise RuntimeError(f"{expr}: {data.get('error')}")
    return data["data"]["result"]


def card_statuses(metrics_text):
    """iccid -> status name whose tibiot_card_status sample is 1."""
    out = {}
    for line in metrics_text.splitlines():
        if line.startswith("tibiot_card_status{") and line.rstrip().endswith(" 1"):
            labels = dict(re.findall(r'(\w+)="([^"]*)"', line))
            if "iccid" in labels:
                out[labels["iccid"]] = labels.get("status") or labels.get("tibiot_card_status")
    return out


def luhn_digit(digits):
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 0:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return (10 - total % 10) % 10


def sim_iccid(seed, i):
    body = f"898604{seed % 100:02d}{i:011d}"
    return f"{body}{luhn_digit(body)}"


# ---------------------------------------------------------------------------- the run
def alertmanager_config(workdir, guard_url, n):
    with open(AM_EXAMPLE, encoding="utf-8") as f:
        am = yaml.safe_load(f)
    pass_file = os.path.join(workdir, "guard.password")
    with open(pass_file, "w", encoding="utf-8") as f:
        f.write(GUARD_PASSWORD)
    found = False
    receivers = []
    for r in am["receivers"]:
        if r["name"] == "tibiot-guard":
            for w in r.get("webhook_configs", []):
                w["url"] = guard_url
                w["http_config"]["basic_auth"]["password_file"] = pass_file
                found = True
            receivers.append(r)
        else:
            receivers.append({"name": r["name"]})  # people's integrations: nowhere to send here
    am["receivers"] = receivers

    def scale_route(route):
        for k in ("group_wait", "group_interval", "repeat_interval"):
            if k in route:
                route[k] = fmt_ms(max(200, dur_ms(str(route[k])) / n))
        for sub in route.get("routes", []):
            scale_route(sub)

    scale_route(am["route"])
    path = os.path.join(workdir, "alertmanager.yml")
    with open(path, "w", encoding="utf-8") as f:
        yaml.safe_dump(am, f, sort_keys=False)
    return path, found


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("exporter")
    ap.add_argument("tibiotctl")
    ap.add_argument("--prometheus", default=shutil.which("prometheus") or "/usr/bin/prometheus")
    ap.add_argument("--alertmanager", default=shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
                    or "/usr/bin/prometheus-alertmanager")
    ap.add_argument("--rules", default=RULES, help="rules file (default: the shipped one)")
    args = ap.parse_args()
    report = Report()
    for path, what in ((args.exporter, "tibiot-exporter"), (args.tibiotctl, "tibiotctl"),
                       (args.prometheus, "prometheus"), (args.alertmanager, "alertmanager")):
        if not (path and os.access(path, os.X_OK)):
            print(f"FAIL  {what} binary not found: {path}")
            print("0 passed, 1 failed")
            return 2

    with open(args.rules, encoding="utf-8") as f:
        rules = yaml.safe_load(f)
    lb = rule_lookback(rules)
    if lb is None:
        # The alert is written apart from the guard; until it is in the rules file there is
        # nothing to route. Said loudly, not counted as a pass.
        print(f"SKIP  {os.path.relpath(args.rules, ROOT)} has no alert {ALERT} yet: the guard e2e did not run")
        return 0
    shortest, longest = lb
    shortest = shortest or 3_600_000
    n = max(1, min(MAX_SPEED, int(shortest / 1000 / (MIN_SAMPLES * SCRAPE_S))))
    history_s = min(MAX_HISTORY_S, max(86_400, longest / 1000 + 3600))
    info(f"{ALERT}: shortest window {fmt_ms(shortest)}, look-back at most {fmt_ms(longest)} -> speed N={n}: "
         f"a {SCRAPE_S:g}s scrape is {SCRAPE_S * n / 60:.1f} world minutes; {history_s / 86400:.1f} world days "
         f"of history backfilled")

    workdir = tempfile.mkdtemp(prefix="tibiot-guard-e2e-")
    children = []
    try:
        run(args, report, workdir, children, rules, n, history_s)
    except Fatal as e:
        report.check(False, "the run completed", str(e))
        for c in children:
            print(f"      --- {c.name} ---\n{c.tail()}")
    finally:
        for c in reversed(children):
            c.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"{report.passed} passed, {report.failed} failed")
    return 0 if report.failed == 0 else 1


def sweep_history(args, workdir, children, seed, clock_start, history_s):
    """{iccid: [(world unix seconds, month usage KB)]} every 15 world minutes over the history,
    read from a second simulator of the same world, frozen at each time."""
    hist = Child("simulate-history", [args.exporter, "simulate", "--listen=127.0.0.1:0", f"--seed={seed}",
                                      f"--pools={POOLS}", f"--cards={CARDS}", "--no-auth", "--clock-control"],
                 workdir, stdout_pipe=True)
    children.append(hist)
    announce = json.loads(hist.proc.stdout.readline() or "{}")
    if "listen" not in announce:
        raise Fatal(f"the history simulator did not start\n{hist.tail()}")
    host, port = announce["listen"].rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=30)

    def call(method, path):
        conn.request(method, path)
        r = conn.getresponse()
        body = r.read()
        if r.status != 200:
            raise Fatal(f"history simulator: {method} {path}: HTTP {r.status} {body[:200]!r}")
        return json.loads(body)

    end = int(datetime.datetime.fromisoformat(clock_start).timestamp())
    out = {c: [] for c in announce["cards"]}
    step = 15 * 60
    w = end - int(history_s) // step * step
    while w <= end:
        call("POST", "/-/clock?at=" + urllib.parse.quote(time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(w))))
        for c in announce["cards"]:
            data = call("GET", f"/api/v1/card/detail?iccid={c}").get("data") or {}
            out[c].append((w, int(data.get("useMonthFlow") or 0)))
        w += step
    conn.close()
    hist.stop()
    children.remove(hist)
    return out, end


def backfill(path, history, world_end, wall_end, n, labels):
    """OpenMetrics with timestamps: a sample per scrape interval (wall) before `wall_end`, each
    the card's value at the matching world time (the last read at or before it)."""
    lines = ["# TYPE tibiot_card_month_usage_bytes gauge"]
    count = 0
    for iccid, points in history.items():
        first_world = points[0][0]
        k = 0
        t = wall_end - (world_end - first_world) / n
        while t < wall_end:
            w = world_end - (wall_end - t) * n
            while k + 1 < len(points) and points[k + 1][0] <= w:
                k += 1
            lab = ",".join(f'{a}="{b}"' for a, b in sorted({**labels, "iccid": iccid}.items()))
            lines.append(f"tibiot_card_month_usage_bytes{{{lab}}} {points[k][1] * 1024} {t:.3f}")
            count += 1
            t += SCRAPE_S
    lines.append("# EOF")
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    return count


def run(args, report, workdir, children, rules, n, history_s):
    # Rules: every duration divided by N, nothing else changed.
    scaled = scale_rules(rules, n)
    problem = check_scaling(rules, scaled, n)
    report.check(problem is None, f"rules derived from {os.path.relpath(args.rules, ROOT)}: every duration / {n}, "
                 "nothing else changed", problem or "")
    rules_path = os.path.join(workdir, "rules.yml")
    with open(rules_path, "w", encoding="utf-8") as f:
        yaml.safe_dump(scaled, f, sort_keys=False, width=1000)
    out = subprocess.run(["promtool", "check", "rules", rules_path], capture_output=True, text=True)
    report.check(out.returncode == 0, "promtool check rules (derived file)", (out.stdout + out.stderr)[-300:])

    seed, runaway_index = 1, 0
    runaway = sim_iccid(seed, runaway_index)
    app_key, app_secret = "e2e-key", "e2e-" + os.urandom(8).hex()
    # The live world starts on the 10th of this month, 00:00 API time, its history a few days
    # before: no month start falls into the run, whatever today's date (month resets are the
    # rule's unit tests' business, not this test's).
    now = time.gmtime()
    clock_start = f"{now.tm_year:04d}-{now.tm_mon:02d}-10T00:00:00+08:00"
    started = time.time()
    history, world_end = sweep_history(args, workdir, children, seed, clock_start, history_s)
    info(f"history: {len(history[runaway])} reads of {len(history)} cards in {time.time() - started:.1f}s")
    runaway_after_world = int(RUNAWAY_AFTER_S * n)
    sim = Child("simulate", [args.exporter, "simulate", "--listen=127.0.0.1:0", f"--seed={seed}", f"--pools={POOLS}",
                             f"--cards={CARDS}", f"--clock-speed={n}", f"--runaway-card={runaway}",
                             f"--runaway-after={runaway_after_world}s", f"--runaway-factor={RUNAWAY_FACTOR}",
                             f"--clock-start={clock_start}", "--batch-step=200ms", f"--app-key={app_key}",
                             f"--app-secret={app_secret}"], workdir,
                stdout_pipe=True)
    children.append(sim)
    sim_start = time.time()
    announce = json.loads(sim.proc.stdout.readline() or "{}")
    if runaway not in announce.get("cards", []):
        raise Fatal(f"the simulator does not have card {runaway}: {announce}\n{sim.tail()}")
    runaway_wall = sim_start + runaway_after_world / n
    cards = announce["cards"]

    # The exporter, its TTLs divided by N (the configuration accepts no TTL under 1 s: the
    # pools' 1m becomes N/60 world minutes; the cards' 15m, which the rule is built for, scales).
    def ttl(world_s):
        return fmt_ms(max(1000, world_s * 1000 / n))

    config = os.path.join(workdir, "tibiot-exporter.yml")
    with open(config, "w", encoding="utf-8") as f:
        yaml.safe_dump({
            "accounts": [{"name": "main", "base_url": f"http://{announce['listen']}", "app_key": app_key,
                          "app_secret": app_secret, "pools": announce["pools"], "cards": cards}],
            "collect": {"timeout": "5s", "timeout_offset": "200ms", "requests_per_second": 0,
                        "pool_ttl": ttl(60), "card_ttl": ttl(15 * 60), "history_ttl": ttl(3600),
                        "stale_after": ttl(3600),
                        # The exporter's history windows follow the real calendar, the world
                        # does not: no history (the rules read the live counters).
                        "history": {"pool_days": 0, "pool_months": 0, "card_days": 0, "card_months": 0}},
        }, f, sort_keys=False)
    exporter_port = free_port()
    exporter = Child("exporter", [args.exporter, f"--config.file={config}",
                                  f"--web.listen-address=127.0.0.1:{exporter_port}"], workdir)
    children.append(exporter)
    exporter_url = f"http://127.0.0.1:{exporter_port}"

    # The guard in enforce mode, derived from the shipped example, with basic auth.
    with open(GUARD_EXAMPLE, encoding="utf-8") as f:
        guard_cfg = yaml.safe_load(f)
    guard_cfg["mode"] = "enforce"
    guard_cfg["audit_log"] = os.path.join(workdir, "audit.jsonl")
    guard_file = os.path.join(workdir, "guard.yml")
    with open(guard_file, "w", encoding="utf-8") as f:
        yaml.safe_dump(guard_cfg, f, sort_keys=False)
    web = os.path.join(workdir, "guard-web.yml")
    with open(web, "w", encoding="utf-8") as f:
        f.write(f"basic_auth_users:\n  {GUARD_USER}: '{GUARD_HASH}'\n")
    guard_port = free_port()
    guard = Child("guard", [args.tibiotctl, "guard", f"--config.file={config}", f"--guard.file={guard_file}",
                            f"--web.listen-address=127.0.0.1:{guard_port}", f"--web.config.file={web}",
                            "--wait-timeout=2m"], workdir)
    children.append(guard)
    guard_url = f"http://127.0.0.1:{guard_port}"

    # Alertmanager with the shipped routes.
    am_config, found = alertmanager_config(workdir, f"{guard_url}/webhook", n)
    report.check(found, "the shipped Alertmanager example has the tibiot-guard webhook receiver")
    out = subprocess.run(["amtool", "check-config", am_config], capture_output=True, text=True) \
        if shutil.which("amtool") else None
    if out is not None:
        report.check(out.returncode == 0, "amtool check-config (derived file)", (out.stdout + out.stderr)[-300:])
    am_port = free_port()
    am = Child("alertmanager", [args.alertmanager, f"--config.file={am_config}",
                                f"--storage.path={os.path.join(workdir, 'am')}",
                                f"--web.listen-address=127.0.0.1:{am_port}", "--cluster.listen-address="], workdir)
    children.append(am)

    # Prometheus.
    prom_config = os.path.join(workdir, "prometheus.yml")
    with open(prom_config, "w", encoding="utf-8") as f:
        yaml.safe_dump({
            "global": {"scrape_interval": fmt_ms(SCRAPE_S * 1000), "evaluation_interval": fmt_ms(SCRAPE_S * 1000),
                       "scrape_timeout": fmt_ms(SCRAPE_S * 1000)},
            "rule_files": [rules_path],
            "alerting": {"alertmanagers": [{"static_configs": [{"targets": [f"127.0.0.1:{am_port}"]}]}]},
            "scrape_configs": [{"job_name": "tibiot", "static_configs": [{"targets": [f"127.0.0.1:{exporter_port}"]}]}],
        }, f, sort_keys=False)
    tsdb = os.path.join(workdir, "tsdb")
    om = os.path.join(workdir, "history.om")
    samples = backfill(om, history, world_end, sim_start, n,
                       {"account": "main", "job": "tibiot", "instance": f"127.0.0.1:{exporter_port}"})
    out = subprocess.run(["promtool", "tsdb", "create-blocks-from", "openmetrics", om, tsdb],
                         capture_output=True, text=True)
    report.check(out.returncode == 0, "history backfilled with promtool tsdb create-blocks-from openmetrics",
                 f"{samples} samples" if out.returncode == 0 else (out.stdout + out.stderr)[-300:])
    prom_port = free_port()
    prom = Child("prometheus", [args.prometheus, f"--config.file={prom_config}",
                                f"--storage.tsdb.path={tsdb}",
                                f"--web.listen-address=127.0.0.1:{prom_port}",
                                f"--rules.alert.resend-delay={fmt_ms(max(200, 60_000 / n))}",
                                f"--query.lookback-delta={fmt_ms(max(3000 * SCRAPE_S, 300_000 / n))}"], workdir)
    children.append(prom)
    prom_url = f"http://127.0.0.1:{prom_port}"
    procs = [sim, exporter, guard, am, prom]

    wait_until("the exporter", lambda: fetch(f"{exporter_url}/-/ready")[0] == 200, 60, procs)
    wait_until("the guard", lambda: fetch(f"{guard_url}/-/ready", auth=(GUARD_USER, GUARD_PASSWORD))[0] == 200, 60, procs)
    report.check(fetch(f"{guard_url}/webhook", data=b"{}")[0] == 401, "the guard refuses a webhook without credentials")
    wait_until("Alertmanager", lambda: fetch(f"http://127.0.0.1:{am_port}/-/ready")[0] == 200, 60, procs)
    wait_until("Prometheus", lambda: fetch(f"{prom_url}/-/ready")[0] == 200, 60, procs)

    # Every card's status as first served, once the exporter has them all.
    before = wait_until("every card's status from the exporter",
                        lambda: (lambda s: s if len(s) == len(cards) else None)(card_statuses(fetch(f"{exporter_url}/metrics")[1])),
                        60, procs)
    info(f"runaway card {runaway} ({before.get(runaway)}); {len(cards)} cards; runaway starts in "
         f"{max(0.0, runaway_wall - time.time()):.0f}s")
    report.check(before.get(runaway) == "normal", "the runaway card starts in the normal state", before.get(runaway))

    # Wait for the alert, then for the guard's outcome.
    deadline = runaway_wall + 3 * WORLD_DETECTION_LIMIT_S / n + 180

    def firing():
        res = prom_query(prom_url, f'ALERTS{{alertname="{ALERT}",alertstate="firing"}}')
        return [r["metric"].get("iccid") for r in res] or None

    fired = wait_until(f"{ALERT} firing", firing, max(30.0, deadline - time.time()), procs, interval=0.2)
    fired_wall = time.time()
    delay_world = (fired_wall - runaway_wall) * n
    report.check(fired == [runaway], f"{ALERT} fires for the runaway card only", f"{fired}")
    report.check(0 <= delay_world <= WORLD_DETECTION_LIMIT_S,
                 f"{ALERT} fires within {WORLD_DETECTION_LIMIT_S // 60} world minutes of the runaway's start",
                 f"{delay_world / 60:.1f} world minutes ({fired_wall - runaway_wall:.1f}s wall at N={n})")

    audit_path = guard_cfg["audit_log"]

    def audit():
        try:
            with open(audit_path, encoding="utf-8") as f:
                return [json.loads(line) for line in f if line.strip()]
        except FileNotFoundError:
            return []

    def done():
        return [r for r in audit() if r["outcome"] == "done" and r["action"] == "disable"] or None

    recs = wait_until("the guard's done disable", done, 120, procs)
    info(f"guard: done {time.time() - fired_wall:.1f}s after the alert fired; batch {recs[0].get('batch_code')}")
    report.check(len(recs) == 1 and recs[0]["iccid"] == runaway and recs[0]["account"] == "main",
                 "the guard switched the runaway card off (audit: done)", json.dumps(recs))

    def shown_off():
        s = card_statuses(fetch(f"{exporter_url}/metrics")[1])
        return s if s.get(runaway) == "shutdown" else None

    after = wait_until("the exporter showing the card shut down", shown_off, 120, procs)
    report.check(True, "the exporter shows the runaway card shut down (tibiot_card_status{status=\"shutdown\"} 1)")
    changed = {c: (before.get(c), after.get(c)) for c in cards if c != runaway and before.get(c) != after.get(c)}
    report.check(not changed, "no other card changed status", f"{changed}")
    others = [r for r in audit() if r.get("iccid") != runaway]
    report.check(not others, "the audit log names no other card", json.dumps(others)[:300])
    code, metrics = fetch(f"{guard_url}/metrics", auth=(GUARD_USER, GUARD_PASSWORD))
    report.check(code == 200 and re.search(r"^tibiot_guard_cards_switched_off 1$", metrics, re.M) is not None,
                 "tibiot_guard_cards_switched_off 1")
    named = {r["metric"].get("iccid") for r in prom_query(
        prom_url, f'max_over_time(ALERTS{{alertname="{ALERT}",alertstate="firing"}}[1h])')}
    report.check(named == {runaway}, f"{ALERT} never fired for another card", f"{named}")
    # Alertmanager keeps notifying while the alert fires: one request all the same.
    disables = [r for r in audit() if r["action"] == "disable" and r["outcome"] in ("sending", "done")]
    report.check(len(disables) == 2, "one request for the card (sending + done), whatever Alertmanager repeated",
                 f"{len(disables)} lines")


if __name__ == "__main__":
    sys.exit(main())
