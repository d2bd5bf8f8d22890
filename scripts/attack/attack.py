#!/usr/bin/env python3
"""Connection-exhaustion attacks against a real tibiot-exporter on loopback, and how scrapes
fare meanwhile. Not part of the tests: it prints figures (docs/benchmarks.md and the README's
"Securing the exporter" section describe what the server does against each attack).

It starts the simulator and the exporter (the binary given with --bin), optionally with TLS
and/or basic auth (a throwaway certificate made with the `openssl` command), opens the
attack connections, waits until they are open, then runs Prometheus-like scrapes: GET /metrics
on a fresh connection each (as Prometheus does when its kept-alive connection was closed),
with `X-Prometheus-Scrape-Timeout-Seconds` and a client timeout of 10 s. A scrape over 5 s
would fail a 5 s scrape timeout; one that gets no answer within 10 s fails outright.

Attacks (each connection that the server closes is reopened after a 1 s pause, so the
attacker keeps holding as many connections as it can; this models peers that hold slots, not
a connection flood):
  h2idle     HTTP/2 client preface + an empty SETTINGS frame, then only PING answers
  silent     TCP connect, then nothing (with TLS: not even a ClientHello)
  slowloris  HTTP/1.1 request headers at 1 byte per second, never finished
  none       no attack (the baseline)

Usage:
  scripts/attack/attack.py --bin target/debug/tibiot-exporter --attack h2idle --conns 520
  scripts/attack/attack.py --bin ... --attack silent --conns 600 --tls --basic-auth
  scripts/attack/attack.py --bin ... --all            # the whole table
  scripts/attack/attack.py --bin ... --keepalive 20   # is an idle kept-alive connection reused?
  scripts/attack/attack.py --bin ... --reload-body    # POST /-/reload with a 10 MB body
  scripts/attack/attack.py --bin ... --attack h2idle --basic-auth --prometheus 150
      # a real Prometheus (the `prometheus` command) scrapes every 15 s (timeout 10 s) during
      # 150 s of attack: how many of its `up` samples are 1, the longest scrape_duration_seconds
Extra exporter flags go after `--`. Needs python3 (stdlib only) and, for --tls, openssl.
"""

import argparse
import asyncio
import base64
import http.client
import json
import os
import resource
import shutil
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time

# A test password and its bcrypt hash (cost 10); nothing else uses them.
PASSWORD = "attack-test"
HASH = "$2b$10$nFYsC/3VcyA13IkBTpuQo.lCPpThzALaqHrAys3aUB3Z9up7WTRQe"
USER = "prometheus"
H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
SETTINGS_EMPTY = b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
PROCS = []


def log(msg):
    print(f"# {msg}", file=sys.stderr, flush=True)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def drain(stream):
    for _ in iter(stream.readline, b""):
        pass


def stop(p):
    if p.poll() is None:
        p.terminate()
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def make_cert(folder):
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-days", "2", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
         "-keyout", os.path.join(folder, "server.key"), "-out", os.path.join(folder, "server.pem")],
        check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


class Exporter:
    """The simulator and the exporter, in a temporary folder."""

    def __init__(self, binary, tls, basic_auth, extra):
        self.dir = tempfile.mkdtemp(prefix="tibiot-attack-")
        self.tls = tls
        self.basic_auth = basic_auth
        sim = subprocess.Popen(
            [binary, "simulate", "--listen=127.0.0.1:0", "--pools=4", "--cards=8", "--seed=1",
             "--app-key=attack-key", "--app-secret=attack-secret"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        PROCS.append(sim)
        first = json.loads(sim.stdout.readline())
        threading.Thread(target=drain, args=(sim.stdout,), daemon=True).start()
        config = os.path.join(self.dir, "tibiot-exporter.yml")
        with open(config, "w") as f:
            f.write("accounts:\n  - name: main\n")
            f.write(f"    base_url: http://{first['listen']}\n")
            f.write(f"    app_key: {first['app_key']}\n    app_secret: {first['app_secret']}\n")
            f.write("    pools: [" + ", ".join(first["pools"]) + "]\n")
            f.write("    cards: [" + ", ".join(f'"{c}"' for c in first["cards"]) + "]\n")
            f.write("collect:\n  pool_ttl: 1h\n  card_ttl: 1h\n  history_ttl: 1h\n")
        web = []
        if tls or basic_auth:
            path = os.path.join(self.dir, "web.yml")
            with open(path, "w") as f:
                if tls:
                    make_cert(self.dir)
                    f.write("tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\n")
                if basic_auth:
                    f.write(f"basic_auth_users:\n  {USER}: {HASH}\n")
            web = [f"--web.config.file={path}"]
        self.port = free_port()
        self.proc = subprocess.Popen(
            [binary, f"--config.file={config}", f"--web.listen-address=127.0.0.1:{self.port}",
             "--log.level=warn", *web, *extra],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        PROCS.append(self.proc)
        self.sim = sim
        threading.Thread(target=drain, args=(self.proc.stderr,), daemon=True).start()
        deadline = time.time() + 60
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"exporter exited with {self.proc.returncode}")
            ok, _, _ = self.scrape(path="/-/healthy", timeout=2)
            if ok:
                return
            time.sleep(0.2)
        raise SystemExit("exporter did not answer /-/healthy within 60 s")

    def ssl_context(self, alpn=None):
        ctx = ssl.create_default_context(cafile=os.path.join(self.dir, "server.pem"))
        if alpn:
            ctx.set_alpn_protocols(alpn)
        return ctx

    def connection(self, timeout):
        if self.tls:
            return http.client.HTTPSConnection("localhost", self.port, timeout=timeout,
                                               context=self.ssl_context(["http/1.1"]))
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)

    def headers(self, timeout):
        h = {"X-Prometheus-Scrape-Timeout-Seconds": str(timeout), "Accept-Encoding": "gzip"}
        if self.basic_auth:
            h["Authorization"] = "Basic " + base64.b64encode(
                f"{USER}:{PASSWORD}".encode()).decode()
        return h

    def request(self, conn, path, timeout):
        conn.request("GET", path, headers=self.headers(timeout))
        r = conn.getresponse()
        r.read()
        return r.status

    def scrape(self, path="/metrics", timeout=10.0):
        """One request on a fresh connection: (ok, seconds, what)."""
        t = time.monotonic()
        conn = self.connection(timeout)
        try:
            status = self.request(conn, path, timeout)
            return status == 200, time.monotonic() - t, str(status)
        except Exception as e:  # noqa: BLE001 - every failure is a data point
            return False, time.monotonic() - t, type(e).__name__
        finally:
            conn.close()

    def close(self):
        stop(self.proc)
        stop(self.sim)
        shutil.rmtree(self.dir, ignore_errors=True)


class Attack:
    """`conns` attacking connections, spread over `sources` loopback source addresses, in an
    asyncio loop on its own thread."""

    def __init__(self, exp, kind, conns, sources):
        self.exp, self.kind, self.conns, self.sources = exp, kind, conns, sources
        self.open = 0
        self.opened = 0
        self.closed_by_server = 0
        self.loop = asyncio.new_event_loop()
        self.stopping = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self._main())

    async def _main(self):
        tasks = [asyncio.ensure_future(self._slot(i)) for i in range(self.conns)]
        while not self.stopping:
            await asyncio.sleep(0.2)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _slot(self, i):
        source = f"127.0.0.{1 + i % self.sources}" if self.sources > 1 else "127.0.0.1"
        # Spread the first connects over ~1 s, as a real attacker's would be.
        await asyncio.sleep((i % 100) / 100)
        while not self.stopping:
            try:
                await self._hold(source)
            except (OSError, asyncio.IncompleteReadError, ssl.SSLError, ConnectionError):
                pass
            await asyncio.sleep(1.0)

    async def _hold(self, source):
        exp = self.exp
        ctx = None
        if exp.tls and self.kind != "silent":
            ctx = exp.ssl_context(["h2"] if self.kind == "h2idle" else ["http/1.1"])
        reader, writer = await asyncio.wait_for(asyncio.open_connection(
            "127.0.0.1", exp.port, ssl=ctx, server_hostname="localhost" if ctx else None,
            local_addr=(source, 0)), timeout=30)
        self.open += 1
        self.opened += 1
        try:
            if self.kind == "h2idle":
                writer.write(H2_PREFACE + SETTINGS_EMPTY)
                await writer.drain()
                while True:
                    head = await reader.readexactly(9)
                    length = int.from_bytes(head[:3], "big")
                    kind, flags = head[3], head[4]
                    payload = await reader.readexactly(length)
                    if kind == 6 and not flags & 1:
                        writer.write(b"\x00\x00\x08\x06\x01\x00\x00\x00\x00" + payload)
                        await writer.drain()
            elif self.kind == "silent":
                await reader.read()
            elif self.kind == "slowloris":
                # The request line at once, then one byte of a header every second.
                writer.write(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nX-Slow: ")
                await writer.drain()
                while not reader.at_eof():
                    try:
                        await asyncio.wait_for(reader.read(1024), timeout=1.0)
                    except asyncio.TimeoutError:
                        pass
                    writer.write(b"a")
                    await writer.drain()
        finally:
            self.open -= 1
            if not self.stopping:
                self.closed_by_server += 1
            writer.close()

    def stop(self):
        self.stopping = True
        self.thread.join(30)


def measure(args, kind, tls, basic_auth):
    exp = Exporter(args.bin, tls, basic_auth, args.extra)
    try:
        exp.scrape()  # the first scrape fills the cache: what follows measures admission
        attack = None
        if kind != "none":
            conns = args.conns or {"h2idle": 520, "silent": 600, "slowloris": 600}[kind]
            attack = Attack(exp, kind, conns, args.sources)
            # Let the attack reach its size (or as close as the server allows).
            deadline = time.time() + 15
            while time.time() < deadline and attack.open < conns:
                time.sleep(0.2)
            time.sleep(2)
        results = []
        for _ in range(args.scrapes):
            results.append(exp.scrape(timeout=10.0))
            time.sleep(args.interval)
        held = attack.open if attack else 0
        reopened = attack.closed_by_server if attack else 0
        if attack:
            attack.stop()
        alive = exp.proc.poll() is None
        times = [t for _, t, _ in results]
        failed = sum(1 for ok, _, _ in results if not ok)
        over5 = sum(1 for ok, t, _ in results if not ok or t > 5)
        why = sorted({w for ok, _, w in results if not ok})
        return {
            "attack": kind, "tls": tls, "basic_auth": basic_auth,
            "conns": (attack.conns if attack else 0), "held_at_end": held,
            "closed_by_server": reopened,
            "median_s": statistics.median(times), "max_s": max(times),
            "fail_5s": over5, "fail_10s": failed, "scrapes": len(results),
            "errors": why, "exporter_alive": alive,
        }
    finally:
        exp.close()


def keepalive(args):
    """One connection, scrapes `gap` seconds apart: is it reused?"""
    exp = Exporter(args.bin, args.tls, args.basic_auth, args.extra)
    try:
        conn = exp.connection(10)
        reused = 0
        for i in range(3):
            try:
                exp.request(conn, "/metrics", 10)
                if i > 0:
                    reused += 1
            except Exception as e:  # noqa: BLE001
                log(f"scrape {i} after {args.keepalive} s idle: {type(e).__name__}")
                conn.close()
                conn = exp.connection(10)
                exp.request(conn, "/metrics", 10)
            if i < 2:
                time.sleep(args.keepalive)
        print(f"kept-alive connection reused after {args.keepalive} s idle: {reused} of 2")
    finally:
        exp.close()


def reload_body(args):
    """POST /-/reload with a 10 MB body, streamed (chunked) and announced (Content-Length):
    the status line of the answer."""
    exp = Exporter(args.bin, args.tls, args.basic_auth, args.extra)
    size = 10 * 1024 * 1024
    try:
        for how in ["chunked", "content-length"]:
            s = socket.create_connection(("127.0.0.1", exp.port), timeout=30)
            head = f"POST /-/reload HTTP/1.1\r\nHost: 127.0.0.1:{exp.port}\r\n"
            head += ("Transfer-Encoding: chunked\r\n" if how == "chunked"
                     else f"Content-Length: {size}\r\n")
            s.sendall((head + "\r\n").encode())
            chunk = b"x" * 65536
            sent = 0
            answer = b""
            s.setblocking(False)
            while sent < size and b"\r\n" not in answer:
                try:
                    answer += s.recv(4096)
                except BlockingIOError:
                    pass
                except OSError:
                    break
                data = (b"10000\r\n" + chunk + b"\r\n") if how == "chunked" else chunk
                try:
                    s.setblocking(True)
                    s.settimeout(5)
                    s.sendall(data)
                    s.setblocking(False)
                    sent += len(chunk)
                except OSError:
                    break
            if sent >= size and how == "chunked":
                try:
                    s.setblocking(True)
                    s.sendall(b"0\r\n\r\n")
                except OSError:
                    pass
            s.setblocking(True)
            s.settimeout(30)
            try:
                while b"\r\n" not in answer:
                    more = s.recv(4096)
                    if not more:
                        break
                    answer += more
            except OSError:
                pass
            s.close()
            status = answer.split(b"\r\n", 1)[0].decode(errors="replace")
            print(f"{how} 10 MB body: {status or 'no answer'}")
    finally:
        exp.close()


def prometheus(args):
    """A real Prometheus scraping the exporter (keep-alive, 15 s interval, 10 s timeout)
    while the attack runs for `args.prometheus` seconds."""
    import urllib.parse
    import urllib.request
    if not shutil.which("prometheus"):
        raise SystemExit("the prometheus command is needed (Debian: apt-get install prometheus)")
    exp = Exporter(args.bin, args.tls, args.basic_auth, args.extra)
    folder = tempfile.mkdtemp(prefix="tibiot-attack-prom-")
    proc = None
    try:
        job = ["  - job_name: tibiot\n",
               f"    static_configs: [{{targets: ['localhost:{exp.port}']}}]\n"]
        if args.basic_auth:
            with open(os.path.join(folder, "pw"), "w") as f:
                f.write(PASSWORD)
            job.append(f"    basic_auth: {{username: {USER}, "
                       f"password_file: {os.path.join(folder, 'pw')}}}\n")
        if args.tls:
            job.append("    scheme: https\n")
            job.append(f"    tls_config: {{ca_file: {os.path.join(exp.dir, 'server.pem')}}}\n")
        with open(os.path.join(folder, "prometheus.yml"), "w") as f:
            f.write("global: {scrape_interval: 15s, scrape_timeout: 10s}\nscrape_configs:\n")
            f.write("".join(job))
        port = free_port()
        proc = subprocess.Popen(
            ["prometheus", f"--config.file={folder}/prometheus.yml",
             f"--storage.tsdb.path={folder}/data", f"--web.listen-address=127.0.0.1:{port}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(20)  # its first scrapes, before the attack
        conns = args.conns or {"h2idle": 520, "silent": 600, "slowloris": 600}.get(args.attack, 0)
        attack = Attack(exp, args.attack, conns, args.sources) if conns else None
        start = time.time() + 20  # the attack in place
        time.sleep(args.prometheus)
        if attack:
            attack.stop()

        def series(query):
            url = (f"http://127.0.0.1:{port}/api/v1/query_range?query="
                   f"{urllib.parse.quote(query)}&start={start}&end={time.time()}&step=15")
            result = json.load(urllib.request.urlopen(url))["data"]["result"]
            return [float(v) for _, v in result[0]["values"]] if result else []
        up = series('up{job="tibiot"}')
        duration = series('scrape_duration_seconds{job="tibiot"}')
        mode = ("TLS" if args.tls else "plain") + (" + basic auth" if args.basic_auth else "")
        print(f"| {conns} {args.attack} | {mode} | {sum(up):.0f}/{len(up)} | "
              f"{max(duration, default=0):.2f} |")
    finally:
        if proc:
            stop(proc)
        exp.close()
        shutil.rmtree(folder, ignore_errors=True)


def row(r):
    mode = ("TLS" if r["tls"] else "plain") + (" + basic auth" if r["basic_auth"] else "")
    attack = "none" if r["attack"] == "none" else f"{r['conns']} {r['attack']}"
    return (f"| {attack} | {mode} | {r['median_s']:.2f} | {r['max_s']:.2f} | "
            f"{r['fail_5s']}/{r['scrapes']} | {r['fail_10s']}/{r['scrapes']} | "
            f"{r['held_at_end']} | {r['closed_by_server']} | {', '.join(r['errors']) or '-'} |")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--bin", required=True)
    p.add_argument("--attack", choices=["h2idle", "silent", "slowloris", "none"], default="none")
    p.add_argument("--conns", type=int, default=0, help="attack connections (default 520/600)")
    p.add_argument("--sources", type=int, default=1,
                   help="spread the attack over 127.0.0.1..N (default 1: the scraper's address)")
    p.add_argument("--tls", action="store_true")
    p.add_argument("--basic-auth", action="store_true")
    p.add_argument("--scrapes", type=int, default=10)
    p.add_argument("--interval", type=float, default=1.0, help="pause between scrapes (s)")
    p.add_argument("--all", action="store_true",
                   help="every attack, plain and with basic auth (and --tls if given)")
    p.add_argument("--keepalive", type=float, default=0,
                   help="only check that a connection idle this long is reused")
    p.add_argument("--reload-body", action="store_true",
                   help="only POST /-/reload with a 10 MB body, chunked and with Content-Length")
    p.add_argument("--prometheus", type=float, default=0, metavar="SECONDS",
                   help="only let a real Prometheus scrape during this long an attack")
    p.add_argument("--json", action="store_true", help="one JSON line per run")
    p.add_argument("extra", nargs="*", help="extra exporter flags (after --)")
    args = p.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    try:
        if args.keepalive:
            keepalive(args)
            return
        if args.reload_body:
            reload_body(args)
            return
        if args.prometheus:
            prometheus(args)
            return
        runs = []
        if args.all:
            for kind in ["none", "h2idle", "silent", "slowloris"]:
                for auth in [False, True]:
                    runs.append((kind, args.tls, auth))
        else:
            runs.append((args.attack, args.tls, args.basic_auth))
        print("| attack | server | median s | max s | over 5 s | failed (10 s) "
              "| attack conns open at end | closed by server | errors |")
        print("|---|---|---|---|---|---|---|---|---|")
        for kind, tls, auth in runs:
            log(f"{kind} tls={tls} basic_auth={auth}")
            r = measure(args, kind, tls, auth)
            print(json.dumps(r) if args.json else row(r), flush=True)
    finally:
        for proc in PROCS:
            stop(proc)


if __name__ == "__main__":
    main()
