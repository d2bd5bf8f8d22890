#!/usr/bin/env python3
"""Measure the pool and card alerts on long synthetic scenarios, minute by minute, with promtool.

    scripts/ops/measure-alerts.py                 # the table (Markdown) for the shipped rules
    scripts/ops/measure-alerts.py --check         # ... and exit 1 when a scenario misses its goal
    scripts/ops/measure-alerts.py --rules OLD.yml # measure another rules file (e.g. an old one)
    scripts/ops/measure-alerts.py --only steady   # scenarios whose name contains "steady"

Every scenario is a pool or a card with a made-up usage history of a week: steady burns from
several fill levels, update cadences from 1 minute to 1 hour, day-only usage, failed scrapes
(staleness markers), billing-cycle and month resets, runaways, healthy and odd pools, ordinary
and odd cards. The series are written into one `promtool test rules` file together with an
instant query of ALERTS{alertstate="firing"} for every minute of the week; each query asserts
"nothing fires", so promtool reports exactly what fires when. From that timeline:

  warn lead h   hours between the first warning (any pool alert of severity warning) and the
                exhaustion of the pool
  crit lead h   the same for the first critical
  delay min     minutes from the start of a runaway to the first critical pool alert, or to
                TibiotCardRunaway for a card
  false         alert episodes that should not be there: any alert on a pool or card that must
                stay quiet, an alert that is not one of the scenario's expected alerts, or a
                pool alert that fires and resolves before the pool runs out
  flaps         times an alert (name + severity) resolved and fired again while its cause lasted
  gap min       minutes between the first warning and the exhaustion with no pool alert
                firing at all (a hand-over that leaves the pager silent)

Needs promtool (apt-get install prometheus); takes a few minutes on a busy machine.
"""
import argparse
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field

import yaml

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
RULES = os.path.join(ROOT, "deploy", "prometheus", "rules", "tibiot.rules.yml")

DAY = 1440  # minutes
HOUR = 60
MINUTES = 6 * DAY  # the longest scenario, sampled every minute
HORIZON = {"pool": 5 * DAY + 12 * HOUR, "card": 6 * DAY}  # how long each kind of scenario runs
TIB = 1 << 40
GIB = 1 << 30

POOL_LABELS = 'job="tibiot",instance="exp:9869",account="main",pool="{}"'
CARD_LABELS = 'job="tibiot",instance="exp:9869",account="main",iccid="{}"'


# ---------------------------------------------------------------------------- usage shapes
def steady(rate):
    """Bytes used per minute, the same every minute."""
    return lambda m: rate


def daytime(rate_day, start_h=8, end_h=20):
    """All usage between start_h and end_h (timeline hours), none at night."""
    return lambda m: rate_day if start_h * HOUR <= m % DAY < end_h * HOUR else 0


def sine_day(avg, noise=None):
    """Usage shaped like a half sine between 08:00 and 20:00 (peak ~3x the daily average,
    a 6-hour afternoon rate ~2.8x), constant within each quarter hour; `noise` scales each day."""
    peak = avg * math.pi  # the half sine over 12 h averages 1/pi of its peak over 24 h

    def f(m):
        t = m % DAY
        if not 8 * HOUR <= t < 20 * HOUR:
            return 0
        q = (t - 8 * HOUR) // 15 * 15 + 7.5
        day_factor = noise[(m // DAY) % len(noise)] if noise else 1.0
        return peak * math.sin(math.pi * q / (12 * HOUR)) * day_factor

    return f


def switch(at, before, after):
    return lambda m: before(m) if m < at else after(m)


def burst(background, size, at_minute_of_day, minutes):
    """A steady background plus `size` bytes spread over `minutes` at the same time each day."""
    def f(m):
        t = m % DAY
        extra = size / minutes if at_minute_of_day <= t < at_minute_of_day + minutes else 0
        return background + extra
    return f


def integrate(start_value, per_minute, start=0, resets=(), cap=None):
    """Cumulative usage per minute (index = minute). `resets`: minutes where usage restarts at
    0 (billing cycle, month start). `cap`: usage stops growing there (the pool is used up)."""
    # whole bytes per minute, so that steady stretches compress into a+bxn runs
    out, v = [], float(round(start_value))
    for m in range(MINUTES + 1):
        if m in resets:
            v = 0.0
        if m > start:
            v += round(per_minute(m - 1))
        if cap is not None:
            v = min(v, float(cap))
        out.append(v)
    return out


def sample(values, cadence=1, phase=0, first=0):
    """What Prometheus stores when the value changes only every `cadence` minutes (the API or
    the exporter's cache updates it then); before `first` the series does not exist."""
    out = []
    for m in range(len(values)):
        if m < first:
            out.append(None)
            continue
        k = max(first, (m - phase) // cadence * cadence + phase)
        out.append(values[min(k, m)])
    return out


def with_stale(values, every=None, offset=0):
    """Failed scrapes: Prometheus writes a staleness marker instead of a sample."""
    return [("stale" if v is not None and every and (m - offset) % every == 0 and m > 0 else v)
            for m, v in enumerate(values)]


def first_reaching(values, level):
    for m, v in enumerate(values):
        if isinstance(v, float) and v >= level:
            return m
    return None


# ---------------------------------------------------------------------------- scenarios
@dataclass
class Scenario:
    name: str
    cls: str                     # the scenario class (table grouping)
    kind: str                    # "pool" or "card"
    series: dict                 # metric name -> per-minute values (float, None = absent, "stale")
    expect: str                  # "exhaust" | "healthy" | "full" | "runaway"
    exhaust_min: int = None      # pools that run out: minute the capacity is reached
    runaway_min: int = None      # runaway start
    allowed: set = field(default_factory=set)   # (alertname, severity) that may fire
    goals: dict = field(default_factory=dict)   # checked by --check
    note: str = ""
    quiet_after: int = None      # no alert may fire after this minute (a top-up)


POOL_ALERTS = {"TibiotPoolExhaustionForecast", "TibiotPoolExhaustionBeforeCycleEnd", "TibiotPoolAlmostExhausted"}
EXHAUST_ALERTS = {("TibiotPoolAlmostExhausted", "warning"), ("TibiotPoolAlmostExhausted", "critical"),
                  ("TibiotPoolExhaustionForecast", "warning"), ("TibiotPoolExhaustionForecast", "critical"),
                  ("TibiotPoolExhaustionBeforeCycleEnd", "warning")}
EXHAUST_GOALS = {"warn_lead_h": 24, "crit_lead_h": 4, "false": 0, "flaps": 0, "gap_min": 0}


def pool(name, cls, used, capacity=None, end=None, expect="exhaust", runaway_min=None, allowed=None,
         goals=None, note=""):
    series = {"tibiot_pool_used_bytes": used}
    if capacity is not None:
        series["tibiot_pool_capacity_bytes"] = [None if u is None else ("stale" if u == "stale" else float(capacity))
                                                for u in used]
    if end is not None:
        series["tibiot_pool_end_timestamp_seconds"] = [None if u is None else ("stale" if u == "stale" else float(end))
                                                       for u in used]
    exhaust = first_reaching(used, capacity) if capacity and expect in ("exhaust", "runaway") else None
    if allowed is None:
        allowed = EXHAUST_ALERTS if expect in ("exhaust", "runaway") else set()
    if goals is None:
        goals = dict(EXHAUST_GOALS) if expect == "exhaust" else {"false": 0, "flaps": 0}
    return Scenario(name, cls, "pool", series, expect, exhaust, runaway_min, set(allowed), goals, note)


def card(name, cls, month_usage, expect="healthy", runaway_min=None, goals=None, note=""):
    series = {"tibiot_card_month_usage_bytes": month_usage}
    if goals is None:
        goals = {"delay_min": 60, "false": 0, "flaps": 0} if expect == "runaway" else {"false": 0}
    allowed = {("TibiotCardRunaway", "critical")} if expect == "runaway" else set()
    return Scenario(name, cls, "card", series, expect, None, runaway_min, allowed, goals, note)


def scenarios():
    out = []
    cap = 1 * TIB
    burn = cap / (72 * HOUR)          # empty to exhausted in 72 h
    start = 2 * DAY                   # the burn starts after 2 quiet days

    # -- steady burn from empty, every update cadence ------------------------------------
    for cad, label in ((1, "1m"), (5, "5m"), (15, "15m"), (60, "1h")):
        used = sample(integrate(0, switch(start, steady(0), steady(burn)), cap=cap), cad)
        out.append(pool(f"steady-{label}", "steady burn 72 h from empty", used, cap,
                        note=f"updated every {label}"))
    used = sample(integrate(0, switch(start, steady(0), steady(burn)), cap=cap), 1)
    out.append(pool("steady-1m-enddate", "steady burn 72 h from empty", used, cap, end=20 * DAY * 60,
                    note="end date in 20 days"))
    used = sample(integrate(0, switch(start, steady(0), steady(burn)), cap=cap), 60)
    out.append(pool("steady-1h-enddate", "steady burn 72 h from empty", used, cap, end=20 * DAY * 60,
                    note="hourly steps, end date"))

    # the previous cycle burnt at half the rate; reset to 0 at day 2, used up 72 h later
    used = sample(integrate(0, switch(start, steady(burn / 2), steady(burn)), resets={start}, cap=cap), 1)
    out.append(pool("steady-after-reset", "steady burn 72 h from empty", used, cap,
                    note="half that burn before a cycle reset at day 2"))

    # -- the same burn rate starting from a fuller pool ----------------------------------
    for fill in (0.3, 0.5, 0.6):
        used = sample(integrate(fill * cap, switch(start, steady(0), steady(burn)), cap=cap), 1)
        hours = (1 - fill) * 72
        goals = dict(EXHAUST_GOALS)
        if hours < 24 + 6:
            goals["warn_lead_h"] = None  # reported, not a goal: the burn starts < 30 h before the end
        out.append(pool(f"fill{int(fill * 100)}-1m", "steady burn from a fuller pool", used, cap,
                        goals=goals, note=f"flat at {int(fill * 100)} %, then runs out in {hours:.0f} h"))
        used = sample(integrate(fill * cap, switch(start, steady(0), steady(burn)), cap=cap), 60)
        out.append(pool(f"fill{int(fill * 100)}-1h", "steady burn from a fuller pool", used, cap,
                        goals=goals, note=f"flat at {int(fill * 100)} %, hourly steps"))

    # -- day-time usage only -----------------------------------------------------------------
    # 12 busy hours a day, none at night: from empty at day 0 to used up after 5 such days.
    day_rate6 = cap / (5 * 12 * HOUR)
    for cad, label in ((1, "1m"), (60, "1h")):
        used = sample(integrate(0, daytime(day_rate6), cap=cap), cad)
        out.append(pool(f"daytime-{label}", "day-time usage only", used, cap,
                        note=f"08:00-20:00 only, empty to used up in 5 days, updated every {label}"))
    used = sample(integrate(0, daytime(day_rate6), cap=cap), 1)
    out.append(pool("daytime-1m-enddate", "day-time usage only", used, cap, end=20 * DAY * 60,
                    note="the same with an end date in 20 days"))
    # after a billing-cycle reset at day 2, 4x busier than the previous cycle: used up in 3 days
    day_rate = cap / (3 * 12 * HOUR)
    used = sample(integrate(0, switch(start, daytime(day_rate / 4), daytime(day_rate)), resets={start},
                            cap=cap), 1)
    out.append(pool("daytime-after-reset", "day-time usage only", used, cap,
                    note="cycle reset at day 2, then 4x busier: used up in 3 days"))
    # a new day-time workload on a pool that was idle
    used = sample(integrate(0, switch(start, steady(0), daytime(day_rate)), cap=cap), 1)
    out.append(pool("daytime-from-idle", "day-time usage only", used, cap,
                    note="idle for 2 days, then 08:00-20:00 usage: used up in 3 days"))

    # -- failed scrapes --------------------------------------------------------------------
    base = sample(integrate(0, switch(start, steady(0), steady(burn)), cap=cap), 1)
    out.append(pool("stale-1in3", "failed scrapes", with_stale(base, 3), cap, note="every 3rd scrape fails"))
    out.append(pool("stale-2h", "failed scrapes", with_stale(base, 120, 37), cap, note="one failed scrape every 2 h"))
    out.append(pool("stale-2h-enddate", "failed scrapes", with_stale(base, 120, 37), cap, end=20 * DAY * 60,
                    note="one failed scrape every 2 h, end date"))
    used = sample(integrate(0, switch(start, daytime(day_rate / 4), daytime(day_rate)), resets={start}, cap=cap), 60)
    out.append(pool("stale-1in3-daytime-1h", "failed scrapes", with_stale(used, 3), cap,
                    note="day-time usage, hourly steps, every 3rd scrape fails"))

    # -- runaway: a healthy pool at 30 % starts burning 20x ----------------------------------
    normal = 0.7 * cap / (15 * DAY)   # the remaining 70 % would last 15 days
    for cad, label, jump in ((1, "1m", 3 * DAY + 10 * HOUR + 17), (15, "15m", 3 * DAY + 10 * HOUR + 17),
                             (60, "1h", 3 * DAY + 10 * HOUR + 17), (1, "1m-night", 3 * DAY + 2 * HOUR + 17)):
        f = switch(jump, steady(normal), steady(20 * normal))
        used = sample(integrate(0.3 * cap - 3 * DAY * normal, f, cap=cap), cad)
        goals = dict(EXHAUST_GOALS, delay_min=60)
        goals["warn_lead_h"] = None  # a runaway that empties the pool in 18 h cannot be warned 24 h ahead
        if cad == 60:
            goals["delay_min"] = None  # the first hourly step after the jump shows it: reported only
        out.append(pool(f"runaway-{label}", "runaway on a healthy pool at 30 %", used, cap, expect="exhaust",
                        runaway_min=jump, goals=goals, note=f"updated every {cad} min"))
    # 10x instead of 20x: empties the pool in 36 h
    jump = 3 * DAY + 10 * HOUR + 17
    f = switch(jump, steady(normal), steady(10 * normal))
    used = sample(integrate(0.3 * cap - 3 * DAY * normal, f, cap=cap), 1)
    goals = dict(EXHAUST_GOALS)
    goals["warn_lead_h"] = None
    out.append(pool("runaway-10x", "runaway on a healthy pool at 30 %", used, cap, expect="exhaust",
                    runaway_min=jump, goals=goals, note="10x: runs out in ~1.5 days"))
    # a runaway that would empty the pool in 23 hours
    jump = 3 * DAY + 10 * HOUR + 17
    normal23 = 0.7 * cap / (23 * 20 * HOUR)
    f = switch(jump, steady(normal23), steady(20 * normal23))
    used = sample(integrate(0.3 * cap - normal23 * jump, f, cap=cap), 1)  # 30 % at the jump
    goals = dict(EXHAUST_GOALS, delay_min=60)
    goals["warn_lead_h"] = None
    out.append(pool("runaway-23h", "runaway on a healthy pool at 30 %", used, cap, expect="exhaust",
                    runaway_min=jump, goals=goals, note="20x empties it in 23 h"))
    # a day-time pool whose burn jumps 20x at night
    normal_day = 2 * normal
    f = switch(3 * DAY + 1 * HOUR + 17, daytime(normal_day), steady(20 * normal))
    used = sample(integrate(0.3 * cap - 3 * DAY * normal, f, cap=cap), 1)
    goals = dict(EXHAUST_GOALS, delay_min=60)
    goals["warn_lead_h"] = None
    out.append(pool("runaway-daytime-pool", "runaway on a healthy pool at 30 %", used, cap, expect="exhaust",
                    runaway_min=3 * DAY + 1 * HOUR + 17, goals=goals, note="day-time pool, 20x at 01:17"))

    # -- escalation with an end date --------------------------------------------------------
    # A pool with an end date in 20 days that runs out on day 5: the end-date warning, then
    # the 2-day and 1-day forecasts, then the 80 %/95 % thresholds, with no silent minute.
    r = 0.9 * cap / (5 * DAY)
    used = sample(integrate(0.1 * cap, steady(r), cap=cap), 1)
    out.append(pool("handover-enddate", "escalation warning -> critical", used, cap, end=20 * DAY * 60,
                    note="10 % -> 100 % in 5 days, end date in 20 days"))
    used = sample(integrate(0.1 * cap, daytime(2 * r), cap=cap), 60)
    out.append(pool("handover-enddate-daytime-1h", "escalation warning -> critical", used, cap, end=20 * DAY * 60,
                    note="day-time usage, hourly steps"))

    # -- a top-up: the alerts must go away --------------------------------------------------
    # burns towards exhaustion on day 5; at day 3 12:00 the pool is moved to 4x the capacity
    used = sample(integrate(0, switch(2 * DAY, steady(0), steady(burn))), 1)
    topup = 3 * DAY + 12 * HOUR
    s_ = pool("topped-up", "top-up", used, cap, expect="topup",
              goals={"false": 0, "flaps": 0}, note="runs out on day 5; capacity x4 at day 3 12:00")
    s_.series["tibiot_pool_capacity_bytes"] = [float(cap if m < topup else 4 * cap) for m in range(MINUTES + 1)]
    s_.quiet_after = topup + 60
    s_.allowed = set(EXHAUST_ALERTS)
    out.append(s_)

    # -- healthy pools: nothing may fire ----------------------------------------------------
    noise = [1.0, 1.35, 0.65, 1.2, 0.8, 1.4, 0.6]
    avg = 0.3 * cap / (30 * DAY)  # 40 % now, ~70 % at its end date 30 days later
    used = sample(integrate(0.4 * cap - 3 * DAY * avg, sine_day(avg, noise)), 1)
    out.append(pool("healthy-enddate-afternoons", "healthy pools", used, cap, end=33 * DAY * 60, expect="healthy",
                    note="40 % -> ~70 % at its end, busy afternoons, +-40 % day to day"))
    avg = 0.3 * cap / (4 * DAY)  # 40 % at day 2, ~70 % at its end date at day 6
    used = sample(integrate(0.4 * cap - 2 * DAY * avg, sine_day(avg, noise)), 1)
    out.append(pool("healthy-enddate-near", "healthy pools", used, cap, end=6 * DAY * 60, expect="healthy",
                    allowed={("TibiotPoolEndDateNear", "warning")},
                    note="40 % -> ~70 % at its end 4 days later, busy afternoons, +-40 % day to day"))
    avg = 0.02 * cap / DAY
    used = with_stale(sample(integrate(0.3 * cap, daytime(2 * avg)), 60), 3)
    out.append(pool("healthy-1h-stale", "healthy pools", used, cap, expect="healthy",
                    note="30 %, +2 %/day, hourly steps, every 3rd scrape fails"))
    # near the end of a cycle at 85 %: the reset comes first
    avg = 0.05 * cap / DAY
    used = sample(integrate(0.5 * cap, steady(avg), resets={3 * DAY}), 1)
    out.append(pool("healthy-cycle-reset", "healthy pools", used, cap, expect="healthy",
                    note="+5 %/day, 50 % -> 65 %, reset to 0 at day 3"))
    used = sample(integrate(0.5 * cap, sine_day(avg), resets={3 * DAY}), 60)
    out.append(pool("healthy-cycle-reset-1h", "healthy pools", used, cap, expect="healthy",
                    note="the same with day-time usage and hourly steps"))
    used = sample(integrate(0, steady(2 * TIB / DAY)), 1)
    out.append(pool("usage-billed", "odd pools", used, None, expect="healthy",
                    note="no capacity, 2 TiB/day"))
    used = sample(integrate(0, steady(100 * GIB / DAY)), 1)
    out.append(pool("capacity-0", "odd pools", used, 0, expect="healthy", note="capacity 0, 100 GiB/day"))
    used = sample(integrate(100 * GIB, steady(0)), 1)
    out.append(pool("full-flat", "odd pools", used, 100 * GIB, expect="full",
                    allowed={("TibiotPoolAlmostExhausted", "warning"), ("TibiotPoolAlmostExhausted", "critical")},
                    goals={"false": 0, "flaps": 0}, note="100 % used, no growth: only the threshold alerts"))

    # -- cards -------------------------------------------------------------------------------
    # Card values change when the exporter re-fetches the card (collect.card_ttl, 15 min).
    mb = 1000 * 1000
    run = 4 * DAY + 10 * HOUR + 7
    for cad, label in ((15, "15m"), (1, "1m"), (60, "1h")):
        f = switch(run, steady(50 * mb / DAY), steady(20 * 50 * mb / DAY))
        goals = {"delay_min": 60 if cad < 60 else None, "false": 0, "flaps": 0}
        out.append(card(f"card-runaway-{label}", "runaway card", sample(integrate(10 * mb, f), cad),
                        expect="runaway", runaway_min=run, goals=goals,
                        note=f"50 MB/day -> 1 GB/day, updated every {cad} min"))
    f = switch(run, steady(50 * mb / DAY), steady(10 * 50 * mb / DAY))
    out.append(card("card-runaway-10x", "runaway card", sample(integrate(10 * mb, f), 15),
                    expect="runaway", runaway_min=run, note="50 MB/day -> 500 MB/day (10x)"))
    f = switch(run, steady(200 * mb / DAY), steady(20 * 200 * mb / DAY))
    out.append(card("card-runaway-stale", "runaway card",
                    with_stale(sample(integrate(10 * mb, f), 15), 3), expect="runaway", runaway_min=run,
                    note="200 MB/day -> 4 GB/day, every 3rd scrape fails"))
    f = switch(run, daytime(2 * 100 * mb / DAY), steady(20 * 100 * mb / DAY))
    out.append(card("card-runaway-daytime", "runaway card", sample(integrate(10 * mb, f), 15),
                    expect="runaway", runaway_min=run, note="day-time card, 100 MB/day -> 2 GB/day"))
    # runaway across a month start: keeps firing (the reset is not the end of the runaway)
    f = switch(run, steady(50 * mb / DAY), steady(20 * 50 * mb / DAY))
    out.append(card("card-runaway-month-start", "runaway card",
                    sample(integrate(10 * mb, f, resets={5 * DAY}), 15), expect="runaway", runaway_min=run,
                    note="as card-runaway-15m, the month starts 14 h into the runaway"))
    out.append(card("card-month-start", "ordinary cards",
                    sample(integrate(900 * mb, steady(80 * mb / DAY), resets={4 * DAY}), 15),
                    note="80 MB/day, month start at day 4"))
    out.append(card("card-new", "ordinary cards",
                    sample(integrate(2 * GIB, steady(100 * mb / DAY), start=4 * DAY), 15, first=4 * DAY),
                    note="appears at day 4 with 2 GiB used"))
    out.append(card("card-heavy", "ordinary cards", sample(integrate(0, steady(5 * GIB / DAY)), 15),
                    note="steady 5 GiB/day"))
    out.append(card("card-bursty", "ordinary cards",
                    sample(integrate(0, burst(5 * mb / DAY, 150 * mb, 3 * HOUR, 10)), 15),
                    note="5 MB/day and a 150 MB upload every night at 03:00"))
    out.append(card("card-daytime", "ordinary cards", sample(integrate(0, daytime(2 * 200 * mb / DAY)), 15),
                    note="200 MB/day, 08:00-20:00 only"))
    out.append(card("card-silent-then-active", "ordinary cards",
                    sample(integrate(0, switch(4 * DAY, steady(0), steady(100 * mb / DAY))), 15),
                    note="no usage for 4 days, then 100 MB/day"))
    out.append(card("card-noisy-hours", "ordinary cards",
                    sample(integrate(0, sine_day(60 * mb / DAY, [1.0, 1.4, 0.6, 1.3, 0.7, 1.5, 0.5])), 15),
                    note="60 MB/day, busy afternoons, +-50 % day to day"))
    return out


# ---------------------------------------------------------------------------- promtool file
def compress(values):
    """Per-minute values as promtool's series notation: `a+bxn` for arithmetic runs, `_xn`
    for absent stretches, `stale` for staleness markers."""
    vals = [None if v is None else v if v == "stale" else round(float(v)) for v in values]
    tokens, i, n = [], 0, len(vals)
    while i < n:
        v = vals[i]
        if v is None:
            j = i
            while j + 1 < n and vals[j + 1] is None:
                j += 1
            tokens.append("_" if j == i else f"_x{j - i + 1}")
            i = j + 1
            continue
        if v == "stale":
            tokens.append("stale")
            i += 1
            continue
        j = i
        if i + 1 < n and isinstance(vals[i + 1], int):
            d = vals[i + 1] - v
            while j + 1 < n and isinstance(vals[j + 1], int) and vals[j + 1] - vals[j] == d:
                j += 1
            if j > i:
                sign = "+" if d >= 0 else "-"
                tokens.append(f"{v}{sign}{abs(d)}x{j - i}")
                i = j + 1
                continue
        tokens.append(str(v))
        i += 1
    return " ".join(tokens)


GROUP_OF_KIND = {"pool": "tibiot.pools", "card": "tibiot.cards"}
PER_TEST_GROUP = 16


def write_test_files(tmp, rules_path, scens, workers):
    """promtool test files: scenarios of a kind share test groups of PER_TEST_GROUP (promtool's
    cost is mostly per rule evaluation, and its unit-test engine caps a query at 10,000
    samples), each file loads only the rule group of its kind, and `workers` files run at once."""
    with open(rules_path, encoding="utf-8") as f:
        rules = yaml.safe_load(f)
    chunks = []
    for kind, group in GROUP_OF_KIND.items():
        sub = {"groups": [g for g in rules["groups"] if g["name"] == group]}
        if not sub["groups"]:
            raise RuntimeError(f"{rules_path} has no rule group {group}")
        sub_path = os.path.join(tmp, f"{group}.rules.yml")
        with open(sub_path, "w", encoding="utf-8") as f:
            yaml.safe_dump(sub, f, sort_keys=False)
        mine = [s for s in scens if s.kind == kind]
        chunks += [(sub_path, mine[i:i + PER_TEST_GROUP]) for i in range(0, len(mine), PER_TEST_GROUP)]
    files = [[] for _ in range(workers)]
    for i, (sub_path, chunk) in enumerate(chunks):
        horizon = max(HORIZON[s.kind] for s in chunk)
        # a scraped exporter, so that TibiotExporterAbsent stays out of the way
        series = [{"series": 'up{job="tibiot",instance="exp:9869"}', "values": f"1x{horizon}"}]
        for s in chunk:
            tmpl = POOL_LABELS if s.kind == "pool" else CARD_LABELS
            for metric, values in s.series.items():
                series.append({"series": f"{metric}{{{tmpl.format(s.name)}}}",
                               "values": compress(values[:horizon + 1])})
        files[i % workers].append((sub_path, {
            "name": ", ".join(s.name for s in chunk),
            "interval": "1m",
            "input_series": series,
            "promql_expr_test": [{"expr": ALERTS_QUERY, "eval_time": f"{m}m", "exp_samples": []}
                                 for m in range(0, horizon + 1)],
        }))
    paths = []
    for i, entries in enumerate(files):
        by_rules = {}
        for sub_path, test in entries:
            by_rules.setdefault(sub_path, []).append(test)
        for j, (sub_path, tests) in enumerate(by_rules.items()):
            path = os.path.join(tmp, f"scenarios-{i}-{j}.test.yml")
            doc = {"rule_files": [sub_path], "evaluation_interval": "1m", "tests": tests}
            with open(path, "w", encoding="utf-8") as f:
                yaml.safe_dump(doc, f, width=1 << 30, sort_keys=False)
            paths.append(path)
    return paths


ALERTS_QUERY = 'ALERTS{alertstate="firing", alertname=~"TibiotPool.*|TibiotCard.*"}'
EXPR_RE = re.compile(r'expr: "ALERTS\{.*?\}", time: (\S+?),')
SAMPLE_RE = re.compile(r'\{([^{}]*)\} ')


def parse_duration(s):
    total = 0
    for num, unit in re.findall(r"(\d+)(ms|[ywdhms])", s):
        total += int(num) * {"y": 525600, "w": 10080, "d": 1440, "h": 60, "m": 1, "s": 0, "ms": 0}[unit]
    return total


def run_promtool(paths, workers):
    """Runs the files, `workers` at a time; returns {minute: [labels of every firing alert]}."""
    from concurrent.futures import ThreadPoolExecutor

    def one(path):
        return subprocess.run(["promtool", "test", "rules", os.path.basename(path)], cwd=os.path.dirname(path),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True).stdout

    with ThreadPoolExecutor(max_workers=workers) as ex:
        outputs = list(ex.map(one, paths))
    firing = {}
    for out in outputs:
        if "FAILED" not in out and "SUCCESS" not in out:
            raise RuntimeError(f"promtool did not run the tests:\n{out[-3000:]}")
        current = None
        for line in out.splitlines():
            m = EXPR_RE.search(line)
            if m:
                current = parse_duration(m.group(1))
                continue
            stripped = line.strip()
            if current is not None and stripped.startswith("got:"):
                firing.setdefault(current, []).extend(
                    dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', lab)) for lab in SAMPLE_RE.findall(stripped[4:] + " "))
                current = None
            elif stripped.startswith("rule:") or " err: " in stripped or "error" in stripped.lower():
                # a rule that cannot be evaluated would silently look like "nothing fires"
                raise RuntimeError(f"promtool: {stripped}")
    return firing


# ---------------------------------------------------------------------------- metrics
def episodes(minutes):
    """[(start, end)] of consecutive minutes (end inclusive)."""
    out = []
    for m in sorted(minutes):
        if out and m == out[-1][1] + 1:
            out[-1][1] = m
        else:
            out.append([m, m])
    return [tuple(e) for e in out]


def measure(s, firing):
    key = "pool" if s.kind == "pool" else "iccid"
    by_alert = {}
    for minute, alerts in firing.items():
        for a in alerts:
            if a.get(key) == s.name and a.get("account") == "main":
                by_alert.setdefault((a["alertname"], a.get("severity", "")), set()).add(minute)
    res = {"warn": None, "crit": None, "delay": None, "false": 0, "flaps": 0, "gap": None, "fired": {}}
    horizon = HORIZON[s.kind]
    end = s.exhaust_min if s.exhaust_min is not None else horizon
    for (name, sev), mins in sorted(by_alert.items()):
        eps = episodes(mins)
        res["fired"][f"{name}/{sev}"] = len(eps)
        if (name, sev) not in s.allowed:
            res["false"] += len(eps)
            continue
        if s.expect == "runaway":
            # keeps firing while the runaway lasts (until the end of the week)
            res["flaps"] += len(eps) - 1
            res["false"] += sum(1 for a, _ in eps if a < s.runaway_min)
            continue
        if s.expect == "full":
            res["flaps"] += len(eps) - 1
            continue
        if s.expect == "topup":
            res["flaps"] += sum(1 for a, _ in eps[1:] if a < s.quiet_after)
            res["false"] += sum(1 for _, b in eps if b >= s.quiet_after)
            continue
        # pool alerts: episodes that end before the exhaustion are flaps if they fire again,
        # false if they never come back
        before = [e for e in eps if e[0] < end]
        for i, (a, b) in enumerate(before):
            if b < end - 1 and b < horizon:
                if i + 1 < len(before):
                    res["flaps"] += 1
                else:
                    res["false"] += 1
    pool_alert_mins = set()
    for (name, sev), mins in by_alert.items():
        if name in POOL_ALERTS:
            pool_alert_mins |= mins
    warn_mins = set().union(*[m for (n, sv), m in by_alert.items() if sv == "warning" and (n, sv) in s.allowed]) \
        if by_alert else set()
    crit_mins = set().union(*[m for (n, sv), m in by_alert.items() if sv == "critical" and (n, sv) in s.allowed]) \
        if by_alert else set()
    if s.kind == "pool" and s.exhaust_min is not None:
        if warn_mins:
            res["warn"] = (s.exhaust_min - min(warn_mins)) / 60
        if crit_mins:
            res["crit"] = (s.exhaust_min - min(crit_mins)) / 60
        first = min(pool_alert_mins) if pool_alert_mins else None
        if first is not None:
            res["gap"] = sum(1 for m in range(first, s.exhaust_min + 1) if m not in pool_alert_mins)
    if s.runaway_min is not None:
        hits = sorted(m for m in crit_mins if m >= s.runaway_min)
        res["delay"] = hits[0] - s.runaway_min if hits else None
    return res


def verdict(s, r):
    problems = []
    g = s.goals
    if g.get("warn_lead_h") is not None and (r["warn"] is None or r["warn"] < g["warn_lead_h"]):
        problems.append(f"warning lead {show(r['warn'])} h < {g['warn_lead_h']} h")
    if g.get("crit_lead_h") is not None and (r["crit"] is None or r["crit"] < g["crit_lead_h"]):
        problems.append(f"critical lead {show(r['crit'])} h < {g['crit_lead_h']} h")
    if g.get("delay_min") is not None and (r["delay"] is None or r["delay"] > g["delay_min"]):
        problems.append(f"runaway delay {r['delay']} min > {g['delay_min']} min")
    if g.get("false") is not None and r["false"] > g["false"]:
        problems.append(f"{r['false']} false alerts")
    if g.get("flaps") is not None and r["flaps"] > g["flaps"]:
        problems.append(f"{r['flaps']} flaps")
    if g.get("gap_min") is not None and r["gap"] is not None and r["gap"] > g["gap_min"]:
        problems.append(f"{r['gap']} silent minutes before exhaustion")
    if s.expect == "runaway" and s.kind == "card" and r["delay"] is None and g.get("delay_min") is not None:
        problems.append("runaway never named")
    return problems


def show(v, digits=1):
    if v is None:
        return "–"
    return f"{v:.{digits}f}" if isinstance(v, float) else str(v)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rules", default=RULES, help="rules file to measure (default: the shipped rules)")
    ap.add_argument("--check", action="store_true", help="exit 1 when a scenario misses one of its goals")
    ap.add_argument("--only", help="only scenarios whose name contains this")
    ap.add_argument("--keep", help="copy the generated promtool test files into this folder")
    ap.add_argument("--jobs", type=int, default=2, help="promtool processes to run at once (default 2)")
    ap.add_argument("--verbose", action="store_true", help="list the alert episodes of every scenario")
    args = ap.parse_args()
    if not shutil.which("promtool"):
        print("promtool not found (apt-get install prometheus)", file=sys.stderr)
        return 2
    scens = [s for s in scenarios() if not args.only or args.only in s.name]
    tmp = tempfile.mkdtemp(prefix="tibiot-measure-")
    try:
        paths = write_test_files(tmp, args.rules, scens, max(1, args.jobs))
        if args.keep:
            os.makedirs(args.keep, exist_ok=True)
            for p in paths:
                shutil.copy(p, args.keep)
        firing = run_promtool(paths, max(1, args.jobs))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    print(f"Rules: {os.path.relpath(os.path.abspath(args.rules), ROOT)}; {len(scens)} scenarios "
          f"({HORIZON['pool'] / DAY:g} days for a pool, {HORIZON['card'] / DAY:g} for a card), "
          "alerts read every minute.\n")
    print("| scenario | class | warn lead h | crit lead h | delay min | false | flaps | gap min | goals |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---|")
    failed = 0
    for s in scens:
        r = measure(s, firing)
        problems = verdict(s, r)
        failed += bool(problems)
        ok = "MISSED: " + "; ".join(problems) if problems else "met"
        print(f"| {s.name} | {s.cls} | {show(r['warn'])} | {show(r['crit'])} | {show(r['delay'], 0)} | "
              f"{r['false']} | {r['flaps']} | {show(r['gap'], 0)} | {ok} |")
        if args.verbose:
            print(f"|  | {s.note} | {', '.join(f'{k} x{v}' for k, v in sorted(r['fired'].items())) or 'nothing fired'} "
                  "| | | | | | |")
    print(f"\n{len(scens) - failed} of {len(scens)} scenarios meet their goals.")
    return 1 if args.check and failed else 0


if __name__ == "__main__":
    sys.exit(main())
