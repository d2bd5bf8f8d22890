#!/usr/bin/env python3
"""Static checks of the ops kit: dashboards, rules, Prometheus/Alertmanager/Grafana configs,
the deploy files and the runbook. Offline; needs python3 (jsonschema, pyyaml) and promtool.

    tests/ops/check_static.py [--schema PATH]

The Grafana dashboard JSON Schema is tests/ops/schemas/grafana-dashboard.schema.json.

Prints one line per check and `N passed, M failed`; exits 1 on any failure.
"""
import argparse
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

import jsonschema
import yaml

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SCHEMA = os.path.join(ROOT, "tests", "ops", "schemas", "grafana-dashboard.schema.json")
DASH_DIR = os.path.join(ROOT, "grafana", "dashboards")
RULES = os.path.join(ROOT, "deploy", "prometheus", "rules", "tibiot.rules.yml")
RULES_TEST = os.path.join(ROOT, "deploy", "prometheus", "rules", "tibiot.rules.test.yml")
PROM_CFG = os.path.join(ROOT, "deploy", "prometheus", "prometheus.yml")
PROM_PROBE_CFG = os.path.join(ROOT, "deploy", "prometheus", "prometheus-probe.yml")
RUNBOOK = os.path.join(ROOT, "docs", "runbook.md")
DEPLOY_DOC = os.path.join(ROOT, "docs", "deploy.md")

EXPECTED_UIDS = {
    "tibiot-pools": "tibiot-pools.json",
    "tibiot-pool-detail": "tibiot-pool-detail.json",
    "tibiot-cards": "tibiot-cards.json",
    "tibiot-exporter-health": "tibiot-exporter-health.json",
}
DS_REF = {"type": "prometheus", "uid": "${datasource}"}

# The metric families the exporter serves (docs/metrics.md): the only tibiot_* names a query
# may use (histogram series included)
EXPORTER_METRICS = {
    "tibiot_pool_info", "tibiot_pool_used_bytes", "tibiot_pool_capacity_bytes", "tibiot_pool_cards",
    "tibiot_pool_status_cards", "tibiot_pool_valid", "tibiot_pool_start_timestamp_seconds",
    "tibiot_pool_end_timestamp_seconds", "tibiot_pool_created_timestamp_seconds",
    "tibiot_pool_daily_usage_bytes", "tibiot_pool_monthly_usage_bytes",
    "tibiot_card_info", "tibiot_card_status", "tibiot_card_cycle_usage_bytes", "tibiot_card_month_usage_bytes",
    "tibiot_card_capacity_bytes", "tibiot_card_daily_usage_bytes", "tibiot_card_monthly_usage_bytes",
    "tibiot_up", "tibiot_collect_success", "tibiot_collect_last_success_timestamp_seconds",
    "tibiot_scrape_duration_seconds", "tibiot_exporter_build_info", "tibiot_api_requests_total",
    "tibiot_api_request_duration_seconds_bucket", "tibiot_api_request_duration_seconds_sum",
    "tibiot_api_request_duration_seconds_count", "tibiot_exporter_config_last_reload_successful",
    "tibiot_probe_success", "tibiot_probe_duration_seconds",
}
OTHER_METRICS = {"up", "scrape_duration_seconds", "ALERTS", "process_resident_memory_bytes",
                 "process_cpu_seconds_total"}
API_OUTCOMES = {"success", "http_error", "api_error", "timeout", "transport_error", "decode_error", "rate_limited"}
CARD_STATUSES = {"silent", "shutdown", "normal", "test", "shutdown_protection", "liquidation", "abnormal"}


class Checks:
    def __init__(self):
        self.passed = 0
        self.failed = 0

    def check(self, cond, what, detail=""):
        if cond:
            self.passed += 1
            print(f"PASS  {what}" + (f"  ({detail})" if detail else ""))
        else:
            self.failed += 1
            print(f"FAIL  {what}" + (f"\n      {detail}" if detail else ""))
        return cond


def rel(p):
    return os.path.relpath(p, ROOT)


def run(argv, cwd=ROOT, stdout_only=False, timeout=120):
    try:
        p = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    except FileNotFoundError as e:
        return 127, str(e)
    return p.returncode, (p.stdout if stdout_only else p.stdout + p.stderr).strip()


def load_yaml_all(path):
    with open(path, encoding="utf-8") as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def recorded_names(rules):
    return {r["record"] for g in rules["groups"] for r in g["rules"] if "record" in r}


def alerts_of(rules):
    return [r for g in rules["groups"] for r in g["rules"] if "alert" in r]


# PromQL identifiers that are not metric names
PROMQL_WORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool", "offset",
    "sum", "min", "max", "avg", "count", "stddev", "stdvar", "topk", "bottomk", "quantile", "count_values", "group",
    "rate", "irate", "increase", "delta", "idelta", "deriv", "predict_linear", "changes", "resets", "time",
    "vector", "scalar", "abs", "clamp_min", "clamp_max", "clamp", "label_replace", "label_join", "sort",
    "sort_desc", "histogram_quantile", "absent", "absent_over_time", "min_over_time", "max_over_time",
    "avg_over_time", "count_over_time", "sum_over_time", "last_over_time", "ceil", "floor", "round", "timestamp",
    "inf", "nan", "le", "e",
}


def metric_names(expr):
    """Metric names in a PromQL expression (approximate: identifiers outside {...}, "..." and [..])."""
    stripped = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    stripped = re.sub(r"\{[^}]*\}", "{}", stripped)
    stripped = re.sub(r"\[[^\]]*\]", "[]", stripped)
    stripped = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", r"\1", stripped)
    names = set()
    for m in re.finditer(r"(?<![\w$:.])([a-zA-Z_:][\w:]*)", stripped):
        w = m.group(1)
        if w.lower() in PROMQL_WORDS or w.startswith("__"):
            continue
        if re.fullmatch(r"\d+[smhdwy]", w):
            continue
        names.add(w)
    return names


def label_values_used(expr, label):
    return set(re.findall(label + r'\s*=~?\s*"([^"]*)"', expr))


# ---------------------------------------------------------------------------- dashboards
def check_dashboards(c, schema_path, recorded):
    try:
        with open(schema_path, encoding="utf-8") as f:
            schema = json.load(f)
    except OSError as e:
        c.check(False, "dashboard schema readable", f"{schema_path}: {e}")
        return
    validator = jsonschema.Draft7Validator(schema)
    code, out = run([sys.executable, os.path.join(ROOT, "scripts", "ops", "gen-dashboards.py"), "--check"])
    c.check(code == 0, "grafana/dashboards/*.json are what scripts/ops/gen-dashboards.py generates", out)

    files = sorted(glob.glob(os.path.join(DASH_DIR, "*.json")))
    uids = {}
    known = EXPORTER_METRICS | OTHER_METRICS | recorded
    n_panels = n_targets = 0
    for path in files:
        name = os.path.basename(path)
        try:
            with open(path, encoding="utf-8") as f:
                d = json.load(f)
        except (OSError, ValueError) as e:
            c.check(False, f"{name} is JSON", str(e))
            continue
        errors = sorted(validator.iter_errors(d), key=lambda e: list(e.absolute_path))
        c.check(not errors, f"{name} validates against {os.path.basename(schema_path)}",
                "; ".join(f"{list(e.absolute_path)}: {e.message[:160]}" for e in errors[:5]))
        uid = d.get("uid")
        uids.setdefault(uid, []).append(name)
        c.check(EXPECTED_UIDS.get(uid) == name, f"{name} has its stable uid", f"uid {uid!r}")
        c.check(d.get("id") is None, f"{name} has no instance-specific numeric id")

        variables = {v["name"]: v for v in d.get("templating", {}).get("list", [])}
        dsv = variables.get("datasource")
        c.check(dsv is not None and dsv.get("type") == "datasource" and dsv.get("query") == "prometheus",
                f"{name} has a datasource variable of type datasource, prometheus")
        c.check("account" in variables, f"{name} has an account variable")
        bad_vars = [v["name"] for v in variables.values() if v.get("type") == "query"
                    and (v.get("datasource") != DS_REF or not str(v.get("query", "")).startswith("label_values("))]
        c.check(not bad_vars, f"{name} query variables use label_values() on ${{datasource}}", f"{bad_vars}")

        panels = list(iter_panels(d.get("panels", [])))
        ids = [p.get("id") for p in panels]
        c.check(len(ids) == len(set(ids)), f"{name} panel ids are unique")
        problems, units = [], set()
        boxes = []
        for p in panels:
            if p.get("type") == "row":
                continue
            n_panels += 1
            t = p.get("title", "?")
            if not (p.get("description") or "").strip():
                problems.append(f"{t!r}: no description")
            if p.get("datasource") != DS_REF:
                problems.append(f"{t!r}: panel datasource is not ${{datasource}}")
            defaults = p.get("fieldConfig", {}).get("defaults", {})
            if not defaults.get("thresholds", {}).get("steps"):
                problems.append(f"{t!r}: no thresholds")
            units.add(defaults.get("unit"))
            if not p.get("targets"):
                problems.append(f"{t!r}: no queries")
            for tg in p.get("targets", []):
                n_targets += 1
                if tg.get("datasource") != DS_REF:
                    problems.append(f"{t!r} {tg.get('refId')}: query datasource is not ${{datasource}}")
                expr = tg.get("expr", "")
                unknown = metric_names(expr) - known
                if unknown:
                    problems.append(f"{t!r} {tg.get('refId')}: unknown metrics {sorted(unknown)}")
                for var in re.findall(r"\$\{?(\w+)", expr):
                    if var not in variables and not var.startswith("__"):
                        problems.append(f"{t!r} {tg.get('refId')}: undefined variable ${var}")
                bad_status = label_values_used(expr, "status") - CARD_STATUSES
                if bad_status:
                    problems.append(f"{t!r}: unknown status {bad_status}")
                bad_outcome = label_values_used(expr, "outcome") - API_OUTCOMES
                if bad_outcome:
                    problems.append(f"{t!r}: unknown outcome {bad_outcome}")
            g = p.get("gridPos", {})
            boxes.append((t, g.get("x", 0), g.get("y", 0), g.get("w", 0), g.get("h", 0)))
        for i, a in enumerate(boxes):
            for b in boxes[i + 1:]:
                if a[1] < b[1] + b[3] and b[1] < a[1] + a[3] and a[2] < b[2] + b[4] and b[2] < a[2] + a[4]:
                    problems.append(f"panels {a[0]!r} and {b[0]!r} overlap")
        c.check(not problems, f"{name}: every panel has a description, thresholds, ${{datasource}}, known metrics, "
                              f"defined variables, no overlap", "; ".join(problems[:8]))
        if name in ("tibiot-pools.json", "tibiot-pool-detail.json", "tibiot-cards.json"):
            c.check({"bytes", "percentunit"} <= units, f"{name} uses the units bytes (IEC) and percentunit",
                    f"units: {sorted(u for u in units if u)}")
    c.check(set(uids) == set(EXPECTED_UIDS) and all(len(v) == 1 for v in uids.values()),
            "dashboard uids are the four expected ones, each once", f"{uids}")
    print(f"      {len(files)} dashboards, {n_panels} panels, {n_targets} queries")


def iter_panels(panels):
    for p in panels:
        yield p
        yield from iter_panels(p.get("panels", []))


# ---------------------------------------------------------------------------- rules
def check_rules(c, rules):
    code, out = run(["promtool", "check", "rules", RULES])
    c.check(code == 0, "promtool check rules deploy/prometheus/rules/tibiot.rules.yml", out.splitlines()[-1] if out else "")
    # day-long series, minute by minute: a few minutes on a busy machine
    code, out = run(["promtool", "test", "rules", os.path.basename(RULES_TEST)], cwd=os.path.dirname(RULES_TEST), timeout=1200)
    c.check(code == 0 and "SUCCESS" in out, "promtool test rules deploy/prometheus/rules/tibiot.rules.test.yml",
            out if code else "SUCCESS")

    recorded = recorded_names(rules)
    known = EXPORTER_METRICS | OTHER_METRICS | recorded
    problems = []
    for g in rules["groups"]:
        for r in g["rules"]:
            unknown = metric_names(r["expr"]) - known
            if unknown:
                problems.append(f"{r.get('alert') or r.get('record')}: unknown metrics {sorted(unknown)}")
            bad = label_values_used(r["expr"], "outcome") - API_OUTCOMES
            if bad:
                problems.append(f"{r.get('alert') or r.get('record')}: unknown outcome {bad}")
    c.check(not problems, "rules use only exporter metrics and recorded series", "; ".join(problems))

    alerts = alerts_of(rules)
    problems = []
    for a in alerts:
        n = a["alert"]
        if not re.fullmatch(r"Tibiot(?:[A-Z][a-z0-9]*)+", n):
            problems.append(f"{n}: not CamelCase Tibiot…")
        if a.get("labels", {}).get("severity") not in ("critical", "warning", "info"):
            problems.append(f"{n}: severity {a.get('labels', {}).get('severity')!r}")
        ann = a.get("annotations", {})
        for k in ("summary", "description", "runbook_url"):
            if not ann.get(k):
                problems.append(f"{n}: no {k}")
        # absent() has no labels to template
        if "{{" not in ann.get("description", "") and not a["expr"].lstrip().startswith("absent("):
            problems.append(f"{n}: description is not templated")
    c.check(not problems, f"all {len(alerts)} alerts: CamelCase Tibiot names, severity, summary, templated "
                          f"description, runbook_url", "; ".join(problems))

    # every alert is shown firing by at least one unit test, and quiet by at least one
    with open(RULES_TEST, encoding="utf-8") as f:
        tests = yaml.safe_load(f)
    firing, quiet = set(), set()
    for t in tests["tests"]:
        for at in t.get("alert_rule_test", []):
            (firing if at.get("exp_alerts") else quiet).add(at["alertname"])
    names = {a["alert"] for a in alerts}
    c.check(names <= firing, "every alert has a unit test where it fires", f"missing: {sorted(names - firing)}")
    c.check(names <= quiet, "every alert has a unit test where it stays quiet", f"missing: {sorted(names - quiet)}")
    c.check(firing | quiet <= names, "unit tests name only existing alerts", f"unknown: {sorted((firing | quiet) - names)}")

    # runbook anchors
    try:
        with open(RUNBOOK, encoding="utf-8") as f:
            runbook = f.read()
    except OSError as e:
        c.check(False, "docs/runbook.md exists", str(e))
        return
    anchors = {github_slug(h) for h in re.findall(r"^#{1,6}\s+(.+?)\s*#*\s*$", runbook, re.M)}
    anchors |= set(re.findall(r'<a (?:name|id)="([^"]+)"', runbook))
    missing = []
    for a in alerts:
        url = a["annotations"].get("runbook_url", "")
        if not re.search(r"/docs/runbook\.md#[\w-]+$", url):
            missing.append(f"{a['alert']}: runbook_url {url!r} does not point into docs/runbook.md#anchor")
            continue
        if url.rsplit("#", 1)[1] not in anchors:
            missing.append(f"{a['alert']}: no heading for #{url.rsplit('#', 1)[1]}")
    c.check(not missing, "every runbook_url anchor is a heading of docs/runbook.md", "; ".join(missing))


def github_slug(heading):
    s = heading.strip().lower()
    s = re.sub(r"[^\w\- ]", "", s)
    return s.replace(" ", "-")


def check_prometheus_config(c):
    code, out = run(["promtool", "check", "config", rel(PROM_CFG)])
    c.check(code == 0, "promtool check config deploy/prometheus/prometheus.yml", out.splitlines()[-1] if out else "")
    code, out = run(["promtool", "check", "config", rel(PROM_PROBE_CFG)])
    c.check(code == 0, "promtool check config deploy/prometheus/prometheus-probe.yml", out.splitlines()[-1] if out else "")
    # one series per pool: the default scrapes the exporter's /metrics once, and nothing else
    with open(PROM_CFG, encoding="utf-8") as f:
        cfg = yaml.safe_load(f)
    jobs = cfg.get("scrape_configs", [])
    c.check(len(jobs) == 1 and jobs[0]["job_name"].startswith("tibiot")
            and jobs[0].get("metrics_path", "/metrics") == "/metrics" and "file_sd_configs" not in jobs[0],
            "prometheus.yml scrapes every pool once: a single /metrics job",
            f"{[(j['job_name'], j.get('metrics_path', '/metrics')) for j in jobs]}")
    with open(PROM_PROBE_CFG, encoding="utf-8") as f:
        pcfg = yaml.safe_load(f)
    by_name = {j["job_name"]: j for j in pcfg.get("scrape_configs", [])}
    self_job = by_name.get("tibiot", {})
    drops = [r for r in self_job.get("metric_relabel_configs", []) if r.get("action") == "drop"
             and r.get("source_labels") == ["__name__"] and re.fullmatch(r.get("regex", ""), "tibiot_pool_used_bytes")
             and re.fullmatch(r.get("regex", ""), "tibiot_card_month_usage_bytes")
             and not re.fullmatch(r.get("regex", ""), "tibiot_api_requests_total")]
    c.check(set(by_name) == {"tibiot", "tibiot-probe"} and by_name["tibiot-probe"].get("metrics_path") == "/probe"
            and bool(drops),
            "prometheus-probe.yml: pools and cards from /probe only (the /metrics job drops tibiot_pool_*, "
            "tibiot_card_*)", f"jobs {sorted(by_name)}")
    # file_sd answers at once; promtool waits for --timeout before printing in any case
    code, out = run(["promtool", "check", "service-discovery", "--timeout=5s", os.path.basename(PROM_PROBE_CFG),
                     "tibiot-probe"], cwd=os.path.dirname(PROM_PROBE_CFG), stdout_only=True)
    try:
        targets = json.loads(out[out.index("["):])
    except ValueError:
        c.check(False, "promtool check service-discovery tibiot-probe runs", out[-500:])
        return
    # ground truth from the target files themselves (promtool 2.42 prints discoveredLabels
    # that alias the relabelled ones, so they are not used)
    expected = {}
    for path in sorted(glob.glob(os.path.join(os.path.dirname(PROM_PROBE_CFG), "targets", "*.yml"))):
        for grp in load_yaml_all(path)[0]:
            lab = grp.get("labels", {})
            for code_ in grp["targets"]:
                expected[f"{lab.get('__param_account')}/{lab.get('__tibiot_kind')}/{code_}"] = \
                    (lab.get("__param_account"), lab.get("__tibiot_kind"), code_)
    problems, shards, seen = [], set(), set()
    for t in targets:
        lab = t["labels"]
        if not lab:
            problems.append("a target was dropped")
            continue
        inst = lab.get("instance")
        if inst not in expected:
            problems.append(f"unexpected instance {inst}")
            continue
        seen.add(inst)
        account, kind, code_ = expected[inst]
        params = {k[len("__param_"):]: v for k, v in lab.items() if k.startswith("__param_")}
        if params != {"account": account, kind: code_}:
            problems.append(f"{inst}: params {params}")
        if lab.get("__metrics_path__") != "/probe":
            problems.append(f"{inst}: path {lab.get('__metrics_path__')}")
        if not re.fullmatch(r"tibiot-exporter-\d+:9869", lab.get("__address__", "")):
            problems.append(f"{inst}: address {lab.get('__address__')}")
        shards.add(lab.get("__address__"))
    if set(expected) - seen:
        problems.append(f"missing {sorted(set(expected) - seen)}")
    c.check(targets and not problems,
            "tibiot-probe relabelling builds /probe?account=A&pool=CODE|card=ICCID, instance and shard address",
            "; ".join(problems) if problems else f"{len(targets)} example targets over {len(shards)} exporter shards")
    c.check(len(shards) >= 2, "the example targets spread over more than one exporter shard", f"{sorted(shards)}")


# ---------------------------------------------------------------------------- deploy files
def check_generated_prometheusrule(c, rules):
    code, out = run([sys.executable, os.path.join(ROOT, "scripts", "ops", "gen-prometheusrule.py"), "--check"])
    c.check(code == 0, "deploy/kubernetes/prometheusrule.yml is generated from the rules file and up to date", out)
    docs = load_yaml_all(os.path.join(ROOT, "deploy", "kubernetes", "prometheusrule.yml"))
    c.check(len(docs) == 1 and docs[0].get("kind") == "PrometheusRule" and docs[0]["spec"]["groups"] == rules["groups"],
            "the PrometheusRule holds exactly the groups of tibiot.rules.yml")


def check_kubernetes(c):
    kdir = os.path.join(ROOT, "deploy", "kubernetes")
    objs = {}
    for path in sorted(glob.glob(os.path.join(kdir, "*.yml")) + glob.glob(os.path.join(kdir, "*.yaml"))):
        try:
            for d in load_yaml_all(path):
                objs.setdefault(d.get("kind"), []).append(d)
        except yaml.YAMLError as e:
            c.check(False, f"{rel(path)} parses", str(e))
    need = {"ConfigMap", "Deployment", "Service", "ServiceMonitor", "PrometheusRule", "Kustomization"}
    c.check(need <= set(objs), "deploy/kubernetes has ConfigMap, Deployment, Service, ServiceMonitor, "
                               "PrometheusRule, Kustomization", f"kinds: {sorted(k for k in objs if k)}")
    if not need <= set(objs):
        return
    kust = objs["Kustomization"][0]
    missing = [r for r in kust.get("resources", []) if not os.path.exists(os.path.join(kdir, r))]
    c.check(not missing, "kustomization resources exist", f"{missing}")
    dep = objs["Deployment"][0]
    pod = dep["spec"]["template"]
    cont = pod["spec"]["containers"][0]
    c.check(cont.get("livenessProbe", {}).get("httpGet", {}).get("path") == "/-/healthy"
            and cont.get("readinessProbe", {}).get("httpGet", {}).get("path") == "/-/ready",
            "Deployment probes /-/healthy (liveness) and /-/ready (readiness)")
    c.check(any(p.get("containerPort") == 9869 for p in cont.get("ports", [])), "Deployment exposes 9869")
    sc = cont.get("securityContext", {})
    c.check(pod["spec"].get("securityContext", {}).get("runAsNonRoot") is True and sc.get("readOnlyRootFilesystem")
            and sc.get("allowPrivilegeEscalation") is False and sc.get("capabilities", {}).get("drop") == ["ALL"],
            "Deployment runs non-root, read-only, no privilege escalation, no capabilities")
    secrets = [v["secret"]["secretName"] for v in pod["spec"].get("volumes", []) if "secret" in v]
    cms = [v["configMap"]["name"] for v in pod["spec"].get("volumes", []) if "configMap" in v]
    cm = objs["ConfigMap"][0]
    c.check(bool(secrets) and cm["metadata"]["name"] in cms, "Deployment mounts the ConfigMap and a Secret")
    cfg = yaml.safe_load(cm["data"]["tibiot-exporter.yml"])
    mounts = {m["name"]: m["mountPath"] for m in cont.get("volumeMounts", [])}
    sec_vol = next(v["name"] for v in pod["spec"]["volumes"] if "secret" in v)
    acc = cfg["accounts"][0]
    c.check("app_secret" not in acc and acc.get("app_secret_file", "").startswith(mounts.get(sec_vol, "?") + "/"),
            "the ConfigMap's account reads its secret from the mounted Secret file, not inline",
            f"{acc.get('app_secret_file')} vs mount {mounts.get(sec_vol)}")
    c.check(f"--config.file={mounts.get('config')}/tibiot-exporter.yml" in cont.get("args", []),
            "Deployment points --config.file at the mounted ConfigMap")
    svc = objs["Service"][0]
    pod_labels = pod["metadata"]["labels"]
    c.check(all(pod_labels.get(k) == v for k, v in svc["spec"]["selector"].items()), "Service selects the pods")
    sm = objs["ServiceMonitor"][0]
    c.check(all(svc["metadata"]["labels"].get(k) == v for k, v in sm["spec"]["selector"]["matchLabels"].items())
            and sm["spec"]["endpoints"][0]["port"] in [p["name"] for p in svc["spec"]["ports"]],
            "ServiceMonitor selects the Service and its named port")
    c.check(svc["metadata"]["name"].startswith("tibiot"), "Service name (= job label) starts with tibiot")


def check_compose(c):
    cdir = os.path.join(ROOT, "deploy", "compose")
    path = os.path.join(cdir, "compose.yml")
    try:
        comp = load_yaml_all(path)[0]
    except (OSError, yaml.YAMLError, IndexError) as e:
        c.check(False, "deploy/compose/compose.yml parses", str(e))
        return
    svcs = comp.get("services", {})
    c.check({"tibiot-exporter", "prometheus", "alertmanager", "grafana"} <= set(svcs),
            "compose has tibiot-exporter, prometheus, alertmanager, grafana", f"{sorted(svcs)}")
    exp = svcs.get("tibiot-exporter", {})
    c.check(exp.get("command") == ["demo", "--web.listen-address=:9869"], "compose runs `tibiot-exporter demo "
            "--web.listen-address=:9869`", f"{exp.get('command')}")
    b = exp.get("build", {})
    c.check(os.path.isfile(os.path.join(cdir, b.get("context", "?"), b.get("dockerfile", "?"))),
            "compose builds the exporter from deploy/container/Containerfile")
    mounts = {}
    missing = []
    for name, s in svcs.items():
        for v in s.get("volumes", []):
            src, dst = v.split(":")[:2]
            if src.startswith(".") or src.startswith("/"):
                if not os.path.exists(os.path.join(cdir, src)):
                    missing.append(f"{name}: {src}")
                mounts[(name, dst)] = os.path.normpath(os.path.join(cdir, src))
    c.check(not missing, "every bind mount of compose.yml exists", f"{missing}")
    # prometheus: the rules it loads are the shipped rules, its config passes promtool
    pcfg_host = mounts.get(("prometheus", "/etc/prometheus/prometheus.yml"))
    rules_host = mounts.get(("prometheus", "/etc/prometheus/rules"))
    c.check(rules_host == os.path.dirname(RULES), "compose Prometheus mounts deploy/prometheus/rules")
    if pcfg_host and rules_host:
        with open(pcfg_host, encoding="utf-8") as f:
            pcfg = yaml.safe_load(f)
        c.check(pcfg.get("rule_files") == ["/etc/prometheus/rules/tibiot.rules.yml"],
                "compose Prometheus loads /etc/prometheus/rules/tibiot.rules.yml")
        targets = [t for j in pcfg["scrape_configs"] for sc in j.get("static_configs", []) for t in sc["targets"]]
        c.check("tibiot-exporter:9869" in targets, "compose Prometheus scrapes tibiot-exporter:9869")
        with tempfile.TemporaryDirectory() as tmp:
            pcfg["rule_files"] = [RULES]
            tmpcfg = os.path.join(tmp, "prometheus.yml")
            with open(tmpcfg, "w", encoding="utf-8") as f:
                yaml.safe_dump(pcfg, f)
            code, out = run(["promtool", "check", "config", tmpcfg])
        c.check(code == 0, "promtool check config deploy/compose/prometheus.yml (rule path mapped to the repo)",
                out.splitlines()[-1] if out else "")
    am = mounts.get(("alertmanager", "/etc/alertmanager/alertmanager.yml"))
    c.check(am is not None and os.path.isfile(am), "compose Alertmanager mounts deploy/alertmanager/alertmanager.yml")
    # grafana: provisioning + dashboards at the provider's path
    prov = mounts.get(("grafana", "/etc/grafana/provisioning"))
    c.check(prov == os.path.join(ROOT, "grafana", "provisioning"), "compose Grafana mounts grafana/provisioning")
    with open(os.path.join(ROOT, "grafana", "provisioning", "dashboards", "tibiot.yml"), encoding="utf-8") as f:
        provider = yaml.safe_load(f)["providers"][0]
    dash_path = provider["options"]["path"]
    c.check(mounts.get(("grafana", dash_path)) == DASH_DIR,
            f"compose Grafana mounts grafana/dashboards at the provider path {dash_path}")
    with open(os.path.join(ROOT, "grafana", "provisioning", "datasources", "tibiot-prometheus.yml"), encoding="utf-8") as f:
        ds = yaml.safe_load(f)["datasources"][0]
    c.check(ds["type"] == "prometheus" and ds["url"] == "http://prometheus:9090",
            "Grafana data source provisioning points at the compose Prometheus")
    try:
        with open(DEPLOY_DOC, encoding="utf-8") as f:
            doc = f.read()
        c.check(dash_path in doc, f"docs/deploy.md documents the dashboards path {dash_path}")
    except OSError as e:
        c.check(False, "docs/deploy.md exists", str(e))


def check_alertmanager(c):
    path = os.path.join(ROOT, "deploy", "alertmanager", "alertmanager.yml")
    with open(path, encoding="utf-8") as f:
        am = yaml.safe_load(f)
    receivers = {r["name"] for r in am["receivers"]}

    def walk(route):
        yield route.get("receiver")
        for r in route.get("routes", []):
            yield from walk(r)

    used = set(walk(am["route"])) - {None}
    c.check(used <= receivers, "alertmanager routes name defined receivers", f"{used - receivers}")
    inhibit = am.get("inhibit_rules", [])
    c.check(any(i.get("source_matchers") == ['severity="critical"'] and "alertname" in i.get("equal", [])
                and {"account", "pool", "iccid"} <= set(i.get("equal", [])) for i in inhibit),
            "alertmanager inhibits warnings while the critical twin (same alertname, pool or card) fires")
    c.check(any("TibiotPoolExhaustionForecast" in " ".join(i.get("source_matchers", []))
                and "TibiotPoolExhaustionBeforeCycleEnd" in " ".join(i.get("target_matchers", [])) for i in inhibit),
            "alertmanager inhibits the end-date warning while a pool's exhaustion forecast fires")
    if shutil.which("amtool"):
        code, out = run(["amtool", "check-config", path])
        c.check(code == 0, "amtool check-config deploy/alertmanager/alertmanager.yml", "" if code == 0 else out[-300:])
        # the card guard gets TibiotCardRunaway by its name and labels, and the pager too
        code, out = run(["amtool", "config", "routes", "test", f"--config.file={path}", "alertname=TibiotCardRunaway",
                         "severity=critical", "account=main", "iccid=89860000000000000001"], stdout_only=True)
        c.check(code == 0 and set(out.split(",")) == {"tibiot-guard", "pager"},
                "alertmanager routes TibiotCardRunaway to the card guard and the pager", out)


def check_container(c):
    path = os.path.join(ROOT, "deploy", "container", "Containerfile")
    with open(path, encoding="utf-8") as f:
        text = f.read()
    lines = [l.strip() for l in re.sub(r"\\\n", " ", text).splitlines() if l.strip() and not l.strip().startswith("#")]
    # Base images are ARGs (with defaults) so that a mirror or a pinned digest can be given.
    args = dict(m.groups() for m in (re.match(r"ARG\s+(\w+)=(\S+)$", l) for l in lines) if m)
    froms = [re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), m.group(0)), l)
             for l in lines if l.upper().startswith("FROM ")]
    c.check(len(froms) >= 2 and "rust:1-bookworm" in froms[0] and
            re.search(r"distroless/cc|debian:[\w.-]*slim", froms[-1]) is not None,
            "Containerfile: rust:1-bookworm builder, distroless/cc or debian-slim runtime", f"{froms}")
    users = [l.split()[1] for l in lines if l.upper().startswith("USER ")]
    c.check(bool(users) and users[-1].split(":")[0] not in ("0", "root"), "Containerfile runs as a non-root user",
            f"{users}")
    c.check("EXPOSE 9869" in lines, "Containerfile EXPOSE 9869")
    c.check('ENTRYPOINT ["/usr/local/bin/tibiot-exporter"]' in lines,
            'Containerfile ENTRYPOINT ["/usr/local/bin/tibiot-exporter"]')
    c.check(any("--locked" in l for l in lines), "Containerfile builds with --locked")
    c.check("COPY . ." in lines and any("-p tibiot-exporter" in l for l in lines),
            "Containerfile copies the whole workspace and builds the exporter package only")


def check_systemd(c):
    path = os.path.join(ROOT, "deploy", "systemd", "tibiot-exporter.service")
    with open(path, encoding="utf-8") as f:
        text = f.read()
    joined = re.sub(r"\\\n\s*", " ", text)
    kv = {}
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith(("#", "[")) and "=" in line:
            k, v = line.split("=", 1)
            kv.setdefault(k, []).append(v)
    need = {
        "DynamicUser": "yes", "NoNewPrivileges": "yes", "ProtectSystem": "strict", "CapabilityBoundingSet": "",
        "ProtectHome": "yes", "PrivateTmp": "yes", "PrivateDevices": "yes", "RestrictSUIDSGID": "yes",
        "MemoryDenyWriteExecute": "yes",
    }
    wrong = [f"{k}={kv.get(k)}" for k, v in need.items() if kv.get(k) != [v]]
    c.check(not wrong, "systemd unit hardening directives", f"{wrong}")
    c.check(kv.get("ExecReload") == ["/bin/kill -HUP $MAINPID"], "systemd ExecReload=/bin/kill -HUP $MAINPID")
    c.check(any("--config.file=/etc/tibiot-exporter/tibiot-exporter.yml" in v for v in kv.get("ExecStart", [])),
            "systemd ExecStart reads /etc/tibiot-exporter/tibiot-exporter.yml")
    c.check(bool(kv.get("LoadCredential")), "systemd LoadCredential= for the app secret")
    if shutil.which("systemd-analyze"):
        with tempfile.TemporaryDirectory() as tmp:
            unit = os.path.join(tmp, "tibiot-exporter.service")
            shutil.copy(path, unit)
            code, out = run(["systemd-analyze", "verify", unit])
        # the binary is not installed on the checking machine: that one complaint is expected
        rest = [l for l in out.splitlines() if l and "/usr/local/bin/tibiot-exporter is not executable" not in l]
        c.check(not rest, "systemd-analyze verify deploy/systemd/tibiot-exporter.service", "; ".join(rest))


def check_guard_unit(c):
    """deploy/systemd/tibiotctl-guard.service: verified by systemd, state kept, reload by SIGHUP."""
    path = os.path.join(ROOT, "deploy", "systemd", "tibiotctl-guard.service")
    with open(path, encoding="utf-8") as f:
        text = re.sub(r"\\\n\s*", " ", f.read())
    for want in ("StateDirectory=tibiotctl-guard", "ExecReload=/bin/kill -HUP $MAINPID", "--guard.file=",
                 "--web.config.file=", "DynamicUser=yes", "ProtectSystem=strict"):
        c.check(want in text, f"guard unit has {want}")
    if shutil.which("systemd-analyze"):
        with tempfile.TemporaryDirectory() as tmp:
            unit = os.path.join(tmp, "tibiotctl-guard.service")
            shutil.copy(path, unit)
            code, out = run(["systemd-analyze", "verify", unit])
        rest = [l for l in out.splitlines() if l and "/usr/local/bin/tibiotctl is not executable" not in l]
        c.check(not rest, "systemd-analyze verify deploy/systemd/tibiotctl-guard.service", "; ".join(rest))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--schema", default=os.environ.get("GRAFANA_DASHBOARD_SCHEMA") or SCHEMA,
                    help="grafana-dashboard.schema.json (default: tests/ops/schemas/ in the repository)")
    args = ap.parse_args()
    if not shutil.which("promtool"):
        print("FAIL  promtool not found (apt-get install prometheus)")
        print("0 passed, 1 failed")
        return 1
    c = Checks()
    with open(RULES, encoding="utf-8") as f:
        rules = yaml.safe_load(f)
    sections = [
        ("rules", lambda: check_rules(c, rules)),
        ("prometheus config", lambda: check_prometheus_config(c)),
        ("dashboards", lambda: check_dashboards(c, args.schema, recorded_names(rules))),
        ("prometheusrule", lambda: check_generated_prometheusrule(c, rules)),
        ("kubernetes", lambda: check_kubernetes(c)),
        ("compose", lambda: check_compose(c)),
        ("alertmanager", lambda: check_alertmanager(c)),
        ("container", lambda: check_container(c)),
        ("systemd", lambda: check_systemd(c)),
        ("guard unit", lambda: check_guard_unit(c)),
    ]
    for name, fn in sections:
        print(f"== {name}")
        try:
            fn()
        except Exception as e:  # noqa: BLE001 - a crash in a section is a failure, not an abort
            c.check(False, f"{name} checks ran", f"{type(e).__name__}: {e}")
    print(f"{c.passed} passed, {c.failed} failed")
    return 1 if c.failed else 0


if __name__ == "__main__":
    sys.exit(main())
