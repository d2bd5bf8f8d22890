#!/usr/bin/env python3
"""An independent TIBIOT client (docs/api.md, "Signing" implemented from scratch with the Python
standard library only) run against `tibiot-exporter simulate`.

Usage: independent_client.py PATH/TO/tibiot-exporter

Starts the simulator on a free port with app key `k` and secret `s`, reads its first stdout
line (JSON: listen, app_key, app_secret, pools, cards), calls all eight endpoints with signed
requests, checks that a wrong signature, a reused nonce and a skewed timestamp get code 401,
stops the simulator, prints `N passed, N failed` and exits non-zero on any failure.
"""

import datetime
import hashlib
import hmac
import json
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

APP_KEY = "k"
APP_SECRET = "s"
API_OFFSET = datetime.timezone(datetime.timedelta(hours=8))

passed = 0
failed = 0


def check(name, ok, detail=""):
    global passed, failed
    if ok:
        passed += 1
        print(f"ok   {name}")
    else:
        failed += 1
        print(f"FAIL {name} {detail}")


def enc(s):
    # RFC 3986: only A-Z a-z 0-9 - _ . ~ stay as they are; upper-case hex.
    return urllib.parse.quote(s, safe="-_.~")


def canonical_query(pairs):
    encoded = sorted((enc(k), enc(v)) for k, v in pairs)
    return "&".join(f"{k}={v}" for k, v in encoded)


def sign_headers(method, path, pairs, body, key=APP_KEY, secret=APP_SECRET,
                 timestamp=None, nonce=None):
    ts = str(timestamp if timestamp is not None else int(time.time() * 1000))
    nonce = nonce or secrets.token_hex(16)
    sts = "\n".join([
        method.upper(),
        path,
        canonical_query(pairs),
        hashlib.sha256(body).hexdigest(),
        key,
        ts,
        nonce,
    ])
    sig = hmac.new(secret.encode(), sts.encode(), hashlib.sha256).hexdigest()
    return {
        "X-Tibiot-AppKey": key,
        "X-Tibiot-Timestamp": ts,
        "X-Tibiot-Nonce": nonce,
        "X-Tibiot-Signature": sig,
    }


def call(base, method, path, pairs=(), body=None, **sign):
    pairs = list(pairs)
    raw = b"" if body is None else json.dumps(body).encode()
    headers = sign_headers(method, path, pairs, raw, **sign)
    if body is not None:
        headers["Content-Type"] = "application/json"
    qs = "&".join(f"{enc(k)}={enc(v)}" for k, v in pairs)
    url = base + path + ("?" + qs if qs else "")
    req = urllib.request.Request(url, data=raw if body is not None else None,
                                 headers=headers, method=method)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read().decode("utf-8"))
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read().decode("utf-8") or "null")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ok_envelope(status, env):
    return (status == 200 and isinstance(env, dict) and env.get("code") == 200
            and isinstance(env.get("traceId"), str) and env.get("traceId") != ""
            and "data" in env)


def main():
    if len(sys.argv) != 2:
        print("usage: independent_client.py PATH/TO/tibiot-exporter", file=sys.stderr)
        return 2
    binary = sys.argv[1]
    port = free_port()
    child = subprocess.Popen(
        [binary, "simulate", "--listen", f"127.0.0.1:{port}",
         "--app-key", APP_KEY, "--app-secret", APP_SECRET],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        line = child.stdout.readline()
        info = json.loads(line)
        check("first line is the announcement",
              info.get("listen") == f"127.0.0.1:{port}" and info.get("app_key") == APP_KEY
              and info.get("app_secret") == APP_SECRET and info.get("pools") and info.get("cards"),
              line[:200])
        base = "http://" + info["listen"]
        pool = info["pools"][0]
        card = info["cards"][0]
        now = datetime.datetime.now(API_OFFSET)
        month = now.strftime("%Y-%m")
        day = now.strftime("%Y-%m-%d")

        st, env = call(base, "GET", "/api/v1/pool/detail", [("poolCode", pool)])
        check("pool detail", ok_envelope(st, env) and env["data"].get("upoolCode") == pool, env)
        st, env = call(base, "GET", "/api/v1/pool/getPoolMonthUsage",
                       [("poolCode", pool), ("queryMonth", month)])
        check("pool month usage",
              ok_envelope(st, env) and env["data"].get("month") == month
              and isinstance(env["data"].get("useFlowKb"), (int, float)), env)
        st, env = call(base, "GET", "/api/v1/pool/getPoolDayUsage",
                       [("poolCode", pool), ("queryDay", day)])
        check("pool day usage", ok_envelope(st, env) and env["data"].get("day") == day, env)
        st, env = call(base, "GET", "/api/v1/card/detail", [("iccid", card)])
        check("card detail", ok_envelope(st, env) and env["data"].get("iccid") == card, env)
        st, env = call(base, "GET", "/api/v1/card/getCardMonthUsage",
                       [("iccid", card), ("queryMonth", month)])
        check("card month usage", ok_envelope(st, env) and env["data"].get("iccid") == card, env)
        st, env = call(base, "GET", "/api/v1/card/getCardDayUsage",
                       [("iccid", card), ("queryDay", day)])
        check("card day usage", ok_envelope(st, env) and env["data"].get("day") == day, env)
        st, env = call(base, "POST", "/api/v1/card/operation/network",
                       body={"iccids": [card], "switchOn": True})
        batch = (env.get("data") or {}).get("batchCode") if isinstance(env, dict) else None
        check("card network operation",
              ok_envelope(st, env) and env["data"].get("successCount") == 1 and batch, env)
        st, env = call(base, "GET", "/api/v1/operation/batch/query/status",
                       [("batchCode", batch or "")])
        check("batch status",
              ok_envelope(st, env) and isinstance(env["data"], list)
              and env["data"][0].get("iccid") == card
              and env["data"][0].get("operationCardStatus") in (1, 2, 3, 4), env)

        # A parameter that needs percent-encoding is signed over its decoded form.
        st, env = call(base, "GET", "/api/v1/pool/detail", [("poolCode", "池 A/+")])
        check("encoded unknown pool is a business error, not an auth error",
              st == 200 and env.get("code") not in (200, 401), env)

        # Rejections.
        st, env = call(base, "GET", "/api/v1/pool/detail", [("poolCode", pool)], secret="wrong")
        check("wrong signature gets code 401", env.get("code") == 401, (st, env))
        nonce = secrets.token_hex(16)
        call(base, "GET", "/api/v1/pool/detail", [("poolCode", pool)], nonce=nonce)
        st, env = call(base, "GET", "/api/v1/pool/detail", [("poolCode", pool)], nonce=nonce)
        check("reused nonce gets code 401", env.get("code") == 401, (st, env))
        old = int(time.time() * 1000) - 10 * 60 * 1000
        st, env = call(base, "GET", "/api/v1/pool/detail", [("poolCode", pool)], timestamp=old)
        check("skewed timestamp gets code 401", env.get("code") == 401, (st, env))
        st, env = call(base, "GET", "/api/v1/pool/detail", [("poolCode", pool)], key="other")
        check("unknown app key gets code 401", env.get("code") == 401, (st, env))
    except Exception as e:  # noqa: BLE001 - any failure is a test failure
        check("no exception", False, repr(e))
    finally:
        child.terminate()
        try:
            rc = child.wait(timeout=10)
        except subprocess.TimeoutExpired:
            child.kill()
            rc = child.wait()
        check("simulator exits 0 on SIGTERM", rc == 0, rc)
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
