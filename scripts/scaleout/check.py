#!/usr/bin/env python3
"""The scale-out check behind scripts/scaleout/check.sh (see there). Every process is a child
of this script and is stopped at the end; every wait is for a condition, with a generous
deadline (CI machines are busy)."""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request

PROCS = []
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))
DEADLINE = 240  # seconds for the whole pipeline to deliver the series
TARGET_LABELS = ("pool", "iccid", "target")
LABEL = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)="((?:[^"\\]|\\.)*)"')


def log(msg):
    print(f"scale-out check: {msg}", file=sys.stderr, flush=True)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def spawn(args, **kw):
    p = subprocess.Popen(args, **kw)
    PROCS.append(p)
    return p


def get(url, timeout=30):
    with OPENER.open(url, timeout=timeout) as r:
        return r.read().decode("utf-8")


def wait_for(what, cond, deadline, every=0.5):
    last = None
    while time.time() < deadline:
        try:
            last = cond()
            if last:
                return last
        except Exception as e:  # noqa: BLE001 - not up yet
            last = e
        time.sleep(every)
    raise SystemExit(f"scale-out check: FAILED waiting for {what} (last: {last!r})")


def drain(stream, sink):
    for line in iter(stream.readline, ""):
        sink.append(line)


def start_exporter(binary, config, extra, name):
    p = spawn([binary, f"--config.file={config}", "--web.listen-address=127.0.0.1:0", *extra],
              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    lines = []
    deadline = time.time() + 60
    while time.time() < deadline:
        line = p.stderr.readline()
        if not line:
            break
        lines.append(line)
        m = re.search(r'address="?([0-9.:\[\]]+)', line)
        if "listening" in line and m:
            threading.Thread(target=drain, args=(p.stderr, lines), daemon=True).start()
            return m.group(1)
    raise SystemExit(f"scale-out check: {name} did not start:\n" + "".join(lines))


def unescape(v):
    """A label value as written in the text format (\\, \" and \n escaped) back to its text."""
    return re.sub(r'\\(.)', lambda m: "\n" if m.group(1) == "n" else m.group(1), v)


def series_of_exposition(text):
    """Label sets (without job/instance) of the series that belong to a target."""
    out = set()
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name, rest = (line.split("{", 1) + [""])[:2] if "{" in line else (line.split(" ", 1)[0], "")
        labels = dict(LABEL.findall(rest.rsplit("}", 1)[0])) if rest else {}
        # an empty label value is no label at all (as Prometheus stores it)
        labels = {k: unescape(v) for k, v in labels.items() if v != ""}
        if any(k in labels for k in TARGET_LABELS):
            labels["__name__"] = name
            out.add(tuple(sorted(labels.items())))
    return out


def series_of_vm(vm, job):
    q = urllib.parse.urlencode({"match[]": '{__name__=~"tibiot_.+",job="%s"}' % job,
                                "start": str(int(time.time()) - 3600)})
    data = json.loads(get(f"http://{vm}/api/v1/series?{q}"))
    out = set()
    for m in data.get("data", []):
        labels = {k: v for k, v in m.items() if k not in ("job", "instance")}
        if any(k in labels for k in TARGET_LABELS):
            out.add(tuple(sorted(labels.items())))
    return out


def agent_flag():
    help_text = subprocess.run(["prometheus", "--help"], capture_output=True, text=True).stderr
    help_text += subprocess.run(["prometheus", "--help"], capture_output=True, text=True).stdout
    # Prometheus 3 has --agent; 2.x (Debian 12's 2.42) has --enable-feature=agent.
    return "--agent" if re.search(r"^\s+--agent\s", help_text, re.M) else "--enable-feature=agent"


def check_kit():
    """The scale-out files of the deploy kit: the agent configuration passes promtool, and the
    sharded StatefulSet takes its shard from the pod ordinal with as many shards as replicas."""
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
    agent = os.path.join(root, "deploy", "scale-out", "prometheus-agent.yml")
    r = subprocess.run(["promtool", "check", "config", agent], capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"scale-out check: FAILED: promtool check config {agent}:\n{r.stdout}{r.stderr}")
    import yaml  # installed by .ci/run (PyYAML)
    with open(os.path.join(root, "deploy", "kubernetes", "statefulset-sharded.yml")) as f:
        sts = yaml.safe_load(f)
    spec = sts["spec"]
    cont = spec["template"]["spec"]["containers"][0]
    args = cont["args"]
    total = [a.split("=", 1)[1] for a in args if a.startswith("--total-shards=")]
    env = {e["name"]: e for e in cont.get("env", [])}
    shard_arg = [a for a in args if a.startswith("--shard=")]
    problems = []
    if sts["kind"] != "StatefulSet":
        problems.append("not a StatefulSet")
    if total != [str(spec["replicas"])]:
        problems.append(f"--total-shards {total} is not replicas {spec['replicas']}")
    if shard_arg != ["--shard=$(SHARD)"]:
        problems.append(f"shard argument {shard_arg}")
    field = env.get("SHARD", {}).get("valueFrom", {}).get("fieldRef", {}).get("fieldPath")
    if field != "metadata.labels['apps.kubernetes.io/pod-index']":
        problems.append(f"SHARD comes from {field}, not the pod-index label")
    if problems:
        raise SystemExit("scale-out check: FAILED: deploy/kubernetes/statefulset-sharded.yml: " + "; ".join(problems))


def main():
    check_kit()
    binary = os.path.abspath(sys.argv[1])
    tmp = tempfile.mkdtemp(prefix="tibiot-scaleout-")
    try:
        run(binary, tmp)
    finally:
        for p in PROCS:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in PROCS:
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        shutil.rmtree(tmp, ignore_errors=True)


def run(binary, tmp):
    deadline = time.time() + DEADLINE
    sim = spawn([binary, "simulate", "--listen=127.0.0.1:0", "--pools=12", "--cards=60", "--seed=5"],
                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    world = json.loads(sim.stdout.readline())
    cfg = os.path.join(tmp, "tibiot-exporter.yml")
    with open(cfg, "w") as f:
        f.write("accounts:\n  - name: main\n")
        f.write(f"    base_url: http://{world['listen']}\n")
        f.write(f"    app_key: {world['app_key']}\n    app_secret: {world['app_secret']}\n")
        f.write("    pools: [" + ", ".join(world["pools"]) + "]\n")
        f.write("    cards: [" + ", ".join(f'"{c}"' for c in world["cards"]) + "]\n")
        f.write("collect:\n  timeout: 30s\n  concurrency: 8\n  requests_per_second: 0\n"
                "  pool_ttl: 1h\n  card_ttl: 1h\n  history_ttl: 1h\n"
                "  history: {pool_days: 2, pool_months: 2, card_days: 1, card_months: 1}\n")
    shards = [start_exporter(binary, cfg, ["--shard=0", "--total-shards=2"], "shard 0"),
              start_exporter(binary, cfg, ["--shard=1", "--total-shards=2"], "shard 1")]
    whole = start_exporter(binary, cfg, [], "unsharded exporter")
    log(f"simulator {world['listen']} ({len(world['pools'])} pools, {len(world['cards'])} cards); "
        f"shards {shards[0]} and {shards[1]}; unsharded {whole}")

    # The unsharded exporter's target series, once every target has a value.
    def whole_ready():
        text = get(f"http://{whole}/metrics", timeout=60)
        cards = sum(1 for l in text.splitlines() if l.startswith("tibiot_card_info{"))
        pools = sum(1 for l in text.splitlines() if l.startswith("tibiot_pool_info{"))
        return series_of_exposition(text) if (cards, pools) == (60, 12) else None

    expected = wait_for("the unsharded exporter to have every target", whole_ready, deadline)

    # The shards, scraped directly: each non-empty, disjoint, together the whole.
    def shards_ready():
        sets = [series_of_exposition(get(f"http://{s}/metrics", timeout=60)) for s in shards]
        return sets if sets[0] | sets[1] == expected else None

    direct = wait_for("the shards to serve every target between them", shards_ready, deadline)
    if not direct[0] or not direct[1]:
        raise SystemExit(f"scale-out check: FAILED: a shard serves nothing ({len(direct[0])} / {len(direct[1])})")
    shared = direct[0] & direct[1]
    if shared:
        raise SystemExit(f"scale-out check: FAILED: {len(shared)} series served by both shards, e.g. "
                         f"{sorted(shared)[0]}")

    vm = f"127.0.0.1:{free_port()}"
    spawn(["victoria-metrics", f"-storageDataPath={tmp}/vm", f"-httpListenAddr={vm}", "-retentionPeriod=1d",
           "-search.latencyOffset=1s", "-loggerLevel=ERROR"],
          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for("VictoriaMetrics to be healthy", lambda: get(f"http://{vm}/health").strip() == "OK", deadline)

    prom = f"127.0.0.1:{free_port()}"
    pcfg = os.path.join(tmp, "prometheus-agent.yml")
    with open(pcfg, "w") as f:
        f.write(f"""global:
  scrape_interval: 2s
  scrape_timeout: 2s
scrape_configs:
  - job_name: tibiot-shards
    static_configs:
      - targets: ['{shards[0]}', '{shards[1]}']
remote_write:
  - url: http://{vm}/api/v1/write
    queue_config: {{batch_send_deadline: 1s}}
""")
    plog = open(os.path.join(tmp, "prometheus.log"), "w")
    spawn(["prometheus", agent_flag(), f"--config.file={pcfg}", f"--storage.agent.path={tmp}/agent",
           f"--web.listen-address={prom}"], stdout=plog, stderr=plog)
    wait_for("the Prometheus agent to be ready", lambda: "Ready" in get(f"http://{prom}/-/ready"), deadline)

    def vm_complete():
        got = series_of_vm(vm, "tibiot-shards")
        return got if got == expected else (None if got - expected == set() else got)

    got = wait_for("VictoriaMetrics to hold every target series", vm_complete, deadline, every=1.0)
    if got != expected:
        extra = sorted(got - expected)[:3]
        raise SystemExit(f"scale-out check: FAILED: VictoriaMetrics has series the unsharded exporter does "
                         f"not serve, e.g. {extra}")
    print(f"scale-out check: passed: the {len(expected)} target series of the unsharded exporter = the "
          f"union in VictoriaMetrics of shard 0 ({len(direct[0])}) and shard 1 ({len(direct[1])}), "
          f"remote-written by a Prometheus agent; no series on both shards")


if __name__ == "__main__":
    main()
