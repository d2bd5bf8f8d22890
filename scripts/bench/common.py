"""Helpers shared by the benchmark rows (scripts/bench/run_bench.py): the simulator and the
exporter as child processes on loopback, scraping with curl, reading the exposition, the
simulator's request counters (GET /-/counters), resident memory and the load average."""

import json
import os
import platform
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
OM = "application/openmetrics-text; version=1.0.0; charset=utf-8"
PROCS = []
_LOCK = threading.Lock()


def log(msg):
    print(f"# {msg}", file=sys.stderr, flush=True)


def load1():
    """The 1-minute load average (the machine is shared: every figure says how busy it was)."""
    return os.getloadavg()[0]


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def drain(stream, sink):
    for line in iter(stream.readline, ""):
        sink.append(line)


def track(p):
    with _LOCK:
        PROCS.append(p)
    return p


def start_sim(binary, pools, cards, latency, seed=1):
    p = track(subprocess.Popen(
        [binary, "simulate", "--listen=127.0.0.1:0", f"--pools={pools}", f"--cards={cards}",
         f"--latency={latency}", f"--seed={seed}", "--app-key=bench-key", "--app-secret=bench-secret"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True))
    first = json.loads(p.stdout.readline())
    threading.Thread(target=drain, args=(p.stdout, []), daemon=True).start()
    return p, first


def write_config(path, sim, pools, cards, concurrency=16, ttl="1h", history=(30, 12), timeout="120s",
                 rps=0, card_ttl=None, pool_ttl=None, history_ttl=None, stale_after="24h"):
    """One account `bench`. More than 5,000 cards go to a cards file next to the config."""
    with open(path, "w") as f:
        f.write("accounts:\n  - name: bench\n")
        f.write(f"    base_url: http://{sim['listen']}\n")
        f.write(f"    app_key: {sim['app_key']}\n    app_secret: {sim['app_secret']}\n")
        f.write("    pools: [" + ", ".join(pools) + "]\n")
        if len(cards) > 5000:
            cards_file = path + ".iccids"
            with open(cards_file, "w") as cf:
                cf.write("\n".join(cards) + "\n")
            f.write(f"    cards_file: {os.path.basename(cards_file)}\n")
        else:
            f.write("    cards: [" + ", ".join(f'"{c}"' for c in cards) + "]\n")
        f.write("collect:\n")
        f.write(f"  timeout: {timeout}\n  concurrency: {concurrency}\n  requests_per_second: {rps}\n")
        f.write(f"  pool_ttl: {pool_ttl or ttl}\n  card_ttl: {card_ttl or ttl}\n"
                f"  history_ttl: {history_ttl or ttl}\n  stale_after: {stale_after}\n")
        f.write(f"  history: {{pool_days: {history[0]}, pool_months: {history[1]}, card_days: 0, card_months: 0}}\n")


def start_exporter(binary, config, extra=()):
    """Starts the exporter; returns (process, address, log lines so far + later ones)."""
    p = track(subprocess.Popen(
        [binary, f"--config.file={config}", "--web.listen-address=127.0.0.1:0", "--log.level=info",
         *extra],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True))
    deadline = time.time() + 60
    lines = []
    while time.time() < deadline:
        line = p.stderr.readline()
        if not line:
            break
        lines.append(line)
        m = re.search(r'address="?([0-9.:\[\]]+)', line)
        if "listening" in line and m:
            threading.Thread(target=drain, args=(p.stderr, lines), daemon=True).start()
            p.log_lines = lines
            return p, m.group(1)
    stop(p)
    raise SystemExit("exporter did not start:\n" + "".join(lines))


def start_baseline(config):
    port = free_port()
    p = track(subprocess.Popen(
        [sys.executable, os.path.join(HERE, "baseline_exporter.py"), "--config", config,
         "--listen", f"127.0.0.1:{port}"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True))
    p.stdout.readline()
    return p, f"127.0.0.1:{port}"


def stop(p):
    if p.poll() is None:
        p.terminate()
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def stop_all():
    with _LOCK:
        procs = list(PROCS)
    for p in procs:
        stop(p)


def curl(url, accept=None, gzip=False, out="/dev/null", timeout=300, headers=()):
    cmd = ["curl", "-s", "--noproxy", "*", "-o", out, "-w", "%{http_code} %{time_total} %{size_download}",
           "--max-time", str(timeout)]
    if accept:
        cmd += ["-H", f"Accept: {accept}"]
    if gzip:
        cmd += ["-H", "Accept-Encoding: gzip"]
    for h in headers:
        cmd += ["-H", h]
    cmd.append(url)
    code, t, size = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.split()
    if code != "200":
        raise SystemExit(f"{url}: HTTP {code}")
    return float(t), int(size)


def fetch_text(url, accept=None, headers=()):
    with tempfile.NamedTemporaryFile(mode="r", suffix=".txt") as f:
        curl(url, accept=accept, out=f.name, headers=headers)
        return open(f.name, encoding="utf-8").read()


def timed_fetch(url, headers=()):
    """One scrape: (seconds by curl, body text)."""
    with tempfile.NamedTemporaryFile(mode="r", suffix=".txt") as f:
        t, _ = curl(url, out=f.name, headers=headers)
        return t, open(f.name, encoding="utf-8").read()


def samples(text):
    return [l for l in text.splitlines() if l and not l.startswith("#")]


LABEL = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse(text):
    """[(name, {label: value}, value)] of every sample line."""
    out = []
    for l in samples(text):
        if "{" in l:
            name, rest = l.split("{", 1)
            labels_text, value = rest.rsplit("} ", 1)
            labels = dict(LABEL.findall(labels_text))
        else:
            name, value = l.split(" ", 1)
            labels = {}
        out.append((name, labels, float(value.split()[0])))
    return out


def metric_sum(text, name, labels=""):
    total = 0.0
    for l in samples(text):
        if l.startswith(name + "{") or l.startswith(name + " "):
            if all(x in l for x in labels.split(",") if x):
                total += float(l.rsplit(" ", 1)[1].split()[0] if "} " in l else l.split()[1])
    return total


def failed_targets(text):
    return sum(1 for l in samples(text) if l.startswith("tibiot_collect_success{") and l.endswith(" 0"))


def proc_status_kib(pid, *keys):
    """Fields of /proc/PID/status in KiB (0 when a field is missing)."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in keys:
                out[k] = int(v.split()[0])
    return tuple(out.get(k, 0) for k in keys)


def memory_kib(pid):
    """VmRSS and VmHWM in KiB."""
    return proc_status_kib(pid, "VmRSS", "VmHWM")


def settled_memory_kib(pid, timeout=5.0):
    """VmRSS and VmHWM once the process is at rest: the exporter hands a scrape's freed memory
    back after the response is written, so a reading right after the last byte can catch it
    before that. Polls every 100 ms until two readings differ by less than 256 KiB."""
    rss, hwm = memory_kib(pid)
    deadline = time.time() + timeout
    while time.time() < deadline:
        time.sleep(0.1)
        now, hwm = memory_kib(pid)
        if abs(now - rss) < 256:
            return now, hwm
        rss = now
    return rss, hwm


def memory_split_kib(pid):
    """RssAnon and RssFile of a process (heap and stacks vs mapped code and data), in KiB."""
    return proc_status_kib(pid, "RssAnon", "RssFile")


def mib(kib):
    return kib / 1024


def sim_counters(sim, targets=False):
    url = f"http://{sim['listen']}/-/counters" + ("?targets=1" if targets else "")
    req = urllib.request.Request(url)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(req, timeout=60) as r:
        return json.loads(r.read())


def fill(url, what, want_cards=None, within=600):
    """Scrapes until every target has a value, none reports failure and the history backfill
    is done (no history pending: the closed days and months fill in after the first scrape)."""
    end = time.time() + within
    attempt = 0
    while True:
        attempt += 1
        t0 = time.time()
        text = fetch_text(url)
        bad = failed_targets(text)
        cards = sum(1 for l in samples(text) if l.startswith("tibiot_card_info{"))
        history = sum(metric_sum(text, "tibiot_collect_pending_targets", f'kind="{k}"')
                      for k in ("pool_history", "card_history"))
        if attempt == 1 or time.time() + 1 > end:
            log(f"{what}: fill scrape {attempt} took {time.time() - t0:.1f}s, {bad} failed targets, "
                f"{cards} cards with values, {history:.0f} histories pending")
        if bad == 0 and (want_cards is None or cards >= want_cards) and history == 0:
            log(f"{what}: filled after {attempt} scrape(s)")
            return text
        if time.time() > end:
            raise SystemExit(f"{what}: targets still failing, missing or pending after the fill")
        time.sleep(0.25)


def machine():
    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = ""
    try:
        with open("/proc/meminfo") as f:
            mem = f"{int(f.readline().split()[1]) / 1024 / 1024:.0f} GiB RAM"
    except OSError:
        pass
    return f"{os.cpu_count()} × {cpu}, {mem}, {platform.system()} {platform.release()}"
