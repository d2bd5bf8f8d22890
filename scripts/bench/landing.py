"""The landing page rows of scripts/bench.sh: the page of an exporter that already holds
200 pools + 10,000 cards in its cache (the warm exporter of row b).

- server: median time of GET / (and of a filtered, paginated card list, and of an ICCID
  search) with curl, and the size of the HTML;
- browser: Debian's chromium, headless, rendering the page to a screenshot (load, layout
  and paint), against the same browser rendering /-/healthy (a few bytes of text): the
  difference is what the page costs the browser beyond starting. Each run uses a fresh
  profile. Skipped, and said so, when no chromium is installed.
"""

import os
import shutil
import statistics
import subprocess
import tempfile
import time

from common import settled_memory_kib

BROWSER_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--hide-scrollbars", "--window-size=1400,900",
]


def _get(url):
    out = subprocess.run(
        ["curl", "-s", "--noproxy", "*", "-o", "/dev/null", "-w", "%{http_code} %{time_total} %{size_download}",
         "--max-time", "60", url], capture_output=True, text=True, check=True).stdout.split()
    if out[0] != "200":
        raise SystemExit(f"{url}: HTTP {out[0]}")
    return float(out[1]), int(out[2])


def _server(url, reps):
    for _ in range(2):
        _get(url)
    runs = [_get(url) for _ in range(reps)]
    times = [t for t, _ in runs]
    return statistics.median(times), max(times), runs[-1][1]


def _browser(binary, url):
    with tempfile.TemporaryDirectory(prefix="tibiot-bench-chromium-") as d:
        shot = os.path.join(d, "page.png")
        t0 = time.monotonic()
        subprocess.run([binary, *BROWSER_FLAGS, f"--user-data-dir={d}/profile", f"--screenshot={shot}", url],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120, check=False)
        took = time.monotonic() - t0
        if not os.path.exists(shot) or os.path.getsize(shot) < 1000:
            raise SystemExit(f"chromium made no screenshot of {url}")
        return took


def landing_rows(row, base, reps, log, pid=None):
    """Adds the landing rows for the exporter at `base` (http://host:port), process `pid`."""
    page = f"{base}/"
    med, worst, size = _server(page, reps)
    row("landing", "landing page, 200 pools + 10,000 cards in the cache: GET / (problems, every pool, "
        "cards by status, top 10, problem cards, 100-card page of the list)",
        f"{med * 1000:.1f} ms (max {worst * 1000:.1f}), {size / 1000:.0f} kB of HTML")
    for what, q in (("filtered and paginated list (?status=problems&page=3)", "?status=problems&page=3"),
                    ("ICCID search (?q=…)", "?q=89860401000000001234")):
        med, worst, size = _server(page + q, reps)
        row("landing", f"… {what}", f"{med * 1000:.1f} ms (max {worst * 1000:.1f}), {size / 1000:.0f} kB")
    if pid is not None:
        rss, hwm = (kib / 1024 for kib in settled_memory_kib(pid))
        row("landing", "… resident memory of the exporter after these page loads (row d is read before them)",
            f"VmRSS {rss:.1f} MiB, VmHWM {hwm:.1f} MiB")
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if not binary:
        row("landing", "… in a browser", "not measured: no chromium installed")
        return
    n = max(3, reps // 3)
    log(f"landing page: {n} headless chromium renders of the page and of /-/healthy")
    pages, empties = [], []
    for _ in range(n):
        pages.append(_browser(binary, page))
        empties.append(_browser(binary, f"{base}/-/healthy"))
    p, e = statistics.median(pages), statistics.median(empties)
    row("landing", f"… in a browser: headless chromium from start to screenshot (median of {n}, fresh "
        "profile), the page against /-/healthy",
        f"{p:.2f} s against {e:.2f} s: the page costs the browser ≈ {max(0.0, p - e) * 1000:.0f} ms "
        "(load, layout, paint)")
