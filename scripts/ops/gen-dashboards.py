#!/usr/bin/env python3
"""Generate the provisionable Grafana dashboards of tibiot-exporter.

    scripts/ops/gen-dashboards.py            # (re)write grafana/dashboards/*.json
    scripts/ops/gen-dashboards.py --check    # exit 1 if a committed file differs

The JSON files under grafana/dashboards/ are what Grafana loads (see docs/deploy.md); this
script is their source so that every panel gets the same data source reference, a
description, units and thresholds. Edit here, run it, commit both. A dashboard changed in the
Grafana UI can be exported and folded back in here by hand.

Conventions checked by tests/ops/check_static.py: every panel has a description, every query
uses the `${datasource}` variable, dashboard uids are stable and unique.
"""
import argparse
import json
import os
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
OUT = os.path.join(ROOT, "grafana", "dashboards")

DS = {"type": "prometheus", "uid": "${datasource}"}
SCHEMA_VERSION = 39
TAGS = ["tibiot", "tibiot-exporter"]

GREEN, YELLOW, ORANGE, RED, BLUE = "green", "yellow", "orange", "red", "blue"


# ---------------------------------------------------------------------------- building blocks
def thresholds(*steps):
    """thresholds((None, GREEN), (0.8, ORANGE), (0.95, RED))"""
    return {"mode": "absolute", "steps": [{"value": v, "color": c} for v, c in steps]}


RATIO_THRESHOLDS = thresholds((None, GREEN), (0.8, ORANGE), (0.95, RED))
CARD_RATIO_THRESHOLDS = thresholds((None, GREEN), (0.8, ORANGE), (0.9, RED))
NEUTRAL = thresholds((None, BLUE))


def by_pool(expr):
    """One series per pool however many jobs scrape it (a /metrics and a /probe job, HA pairs)."""
    return f"max by (account, pool) ({expr})"


def by_card(expr):
    """One series per card however many jobs scrape it."""
    return f"max by (account, iccid) ({expr})"


def target(expr, ref="A", legend="", instant=False, fmt=None):
    t = {"datasource": DS, "refId": ref, "expr": expr, "legendFormat": legend or "__auto"}
    if instant:
        t.update({"instant": True, "range": False, "format": fmt or "table"})
    else:
        t.update({"instant": False, "range": True, "format": fmt or "time_series"})
    return t


def override(name, props):
    # byNames, not byName: the dashboard schema wants object matcher options (and object
    # property values, so only object-valued properties such as thresholds, color,
    # custom.cellOptions, custom.lineStyle can be overridden per field).
    return {
        "matcher": {"id": "byNames", "options": {"mode": "include", "names": [name]}},
        "properties": [{"id": k, "value": v} for k, v in props.items()],
    }


def zero_one_mapping(zero_text, one_text):
    """Value mapping of a 0/1 gauge: 0 red, 1 green."""
    return [{"type": "value", "options": {"0": {"text": zero_text, "color": RED, "index": 0},
                                          "1": {"text": one_text, "color": GREEN, "index": 1}}}]


VALID_MAPPING = zero_one_mapping("invalid", "valid")
UP_MAPPING = zero_one_mapping("DOWN", "UP")
OK_MAPPING = zero_one_mapping("failing", "ok")
# +Inf seconds (flat or falling usage) reads as "not at this rate"
NEVER_MAPPING = [
    {
        "type": "range",
        "options": {"from": 3.0e9, "to": None, "result": {"text": "not at this rate", "color": GREEN, "index": 0}},
    }
]


class Dashboard:
    def __init__(self, uid, title, description, variables, refresh="1m", time_from="now-24h"):
        self.uid, self.title, self.description = uid, title, description
        self.variables, self.refresh, self.time_from = variables, refresh, time_from
        self.panels, self.next_id, self.y = [], 1, 0
        self.row_x, self.row_h = 0, 0

    def row(self, title):
        self._newline()
        self.panels.append(
            {"type": "row", "id": self._id(), "title": title, "collapsed": False, "panels": [],
             "gridPos": {"h": 1, "w": 24, "x": 0, "y": self.y}}
        )
        self.y += 1

    def _id(self):
        i = self.next_id
        self.next_id += 1
        return i

    def _newline(self):
        if self.row_x:
            self.y += self.row_h
            self.row_x, self.row_h = 0, 0

    def add(self, ptype, title, description, targets, w, h, unit=None, th=None, mappings=None,
            options=None, custom=None, overrides=None, transformations=None, minv=None, maxv=None,
            decimals=None, color=None, no_value=None, links=None):
        if self.row_x + w > 24:
            self._newline()
        defaults = {"thresholds": th or NEUTRAL}
        if unit:
            defaults["unit"] = unit
        if mappings:
            defaults["mappings"] = mappings
        if custom:
            defaults["custom"] = custom
        if minv is not None:
            defaults["min"] = minv
        if maxv is not None:
            defaults["max"] = maxv
        if decimals is not None:
            defaults["decimals"] = decimals
        if no_value is not None:
            defaults["noValue"] = no_value
        if links:
            defaults["links"] = links
        defaults["color"] = color or {"mode": "thresholds" if ptype in ("stat", "gauge", "bargauge", "table") else "palette-classic"}
        p = {
            "type": ptype,
            "id": self._id(),
            "title": title,
            "description": description,
            "datasource": DS,
            "gridPos": {"h": h, "w": w, "x": self.row_x, "y": self.y},
            "targets": targets,
            "fieldConfig": {"defaults": defaults, "overrides": overrides or []},
            "options": options or {},
        }
        if transformations:
            p["transformations"] = transformations
        self.panels.append(p)
        self.row_x += w
        self.row_h = max(self.row_h, h)
        return p

    def to_json(self):
        links = [
            {"title": "TIBIOT dashboards", "type": "dashboards", "icon": "external link", "tooltip": "",
             "tags": ["tibiot"], "asDropdown": True, "targetBlank": False, "includeVars": True,
             "keepTime": True},
        ]
        return {
            "uid": self.uid,
            "title": self.title,
            "description": self.description,
            "tags": TAGS,
            "timezone": "browser",
            "editable": True,
            "graphTooltip": 1,
            "refresh": self.refresh,
            "schemaVersion": SCHEMA_VERSION,
            "version": 1,
            "time": {"from": self.time_from, "to": "now"},
            "timepicker": {},
            "fiscalYearStartMonth": 0,
            "liveNow": False,
            "links": links,
            "annotations": {
                "list": [
                    {"builtIn": 1, "datasource": {"type": "grafana", "uid": "-- Grafana --"}, "enable": True,
                     "hide": True, "iconColor": "rgba(0, 211, 255, 1)", "name": "Annotations & Alerts",
                     "type": "dashboard"},
                    {"name": "TIBIOT alerts", "datasource": DS, "enable": True, "hide": False,
                     "iconColor": "red", "expr": 'ALERTS{alertname=~"Tibiot.*", alertstate="firing"}',
                     "step": "60s", "titleFormat": "{{alertname}}",
                     "textFormat": "{{severity}} {{account}} {{pool}}{{iccid}}", "tagKeys": "severity"},
                ]
            },
            "templating": {"list": self.variables},
            "panels": self.panels,
        }


def ds_var():
    return {"type": "datasource", "name": "datasource", "label": "Data source", "query": "prometheus",
            "refresh": 1, "hide": 0, "regex": "", "multi": False, "includeAll": False}


def query_var(name, label, query, multi=True, include_all=True, description=""):
    v = {"type": "query", "name": name, "label": label, "datasource": DS, "query": query,
         "definition": query, "refresh": 2, "sort": 1, "hide": 0, "regex": "",
         "multi": multi, "includeAll": include_all, "description": description}
    if include_all:
        v["allValue"] = ".*"
        v["current"] = {"selected": True, "text": ["All"], "value": ["$__all"]}
    return v


def table_organize(hide=(), rename=None, order=None):
    hide_all = {"Time": True, "__name__": True, "job": True, "instance": True}
    hide_all.update({h: True for h in hide})
    opts = {"excludeByName": hide_all, "renameByName": rename or {}}
    if order:
        opts["indexByName"] = {name: i for i, name in enumerate(order)}
    return {"id": "organize", "options": opts}


def pool_link(field_pool="pool", field_account="account"):
    """A data link from a table row to the pool detail dashboard."""
    return {
        "title": "Pool detail", "type": "link", "icon": "dashboard", "tooltip": "Open the pool detail dashboard",
        "tags": [], "asDropdown": False, "targetBlank": False, "includeVars": False, "keepTime": True,
        "url": "/d/tibiot-pool-detail/tibiot-pool-detail?${datasource:queryparam}"
               "&var-account=${__data.fields.%s}&var-pool=${__data.fields.%s}" % (field_account, field_pool),
    }


# bar chart of an instant table query with one row per date / month label
HISTORY_BARS = {"orientation": "vertical", "showValue": "auto", "barWidth": 0.8, "xTickLabelRotation": -45,
                "legend": {"displayMode": "hidden", "placement": "bottom"}, "tooltip": {"mode": "single"}}

TS_OPTIONS = {"legend": {"displayMode": "list", "placement": "bottom"}, "tooltip": {"mode": "multi", "sort": "desc"}}
TS_OPTIONS_UNSORTED = {"legend": {"displayMode": "list", "placement": "bottom"}, "tooltip": {"mode": "multi", "sort": "none"}}
TS_CUSTOM = {"drawStyle": "line", "lineWidth": 1, "fillOpacity": 10, "showPoints": "never",
             "spanNulls": True, "axisSoftMin": 0}


# ---------------------------------------------------------------------------- pools overview
def pools_overview():
    sel = 'account=~"$account", pool=~"$pool"'
    d = Dashboard(
        "tibiot-pools", "TIBIOT / Pools overview",
        "Every TIBIOT flow pool: usage against capacity, validity, end dates and when it runs out.",
        [ds_var(),
         query_var("account", "Account", "label_values(tibiot_pool_info, account)",
                   description="TIBIOT accounts configured in tibiot-exporter"),
         query_var("pool", "Pool", 'label_values(tibiot_pool_info{account=~"$account"}, pool)',
                   description="Pool codes")],
    )
    d.row("Totals")
    d.add("stat", "Pools", "Number of pools exported (tibiot_pool_info).",
          [target(f"count({by_pool(f'tibiot_pool_info{{{sel}}}')})", instant=True, fmt="time_series")], 4, 4)
    d.add("stat", "Cards", "SIM cards bound to these pools (sum of tibiot_pool_cards, each pool counted once).",
          [target(f"sum({by_pool(f'tibiot_pool_cards{{{sel}}}')})", instant=True, fmt="time_series")], 4, 4)
    d.add("stat", "Data used", "Data used this cycle by all these pools, usage_billed pools included "
          "(tibiot:pool_used_bytes: one series per pool).",
          [target(f"sum({by_pool(f'tibiot:pool_used_bytes{{{sel}}}')})", instant=True, fmt="time_series")], 4, 4,
          unit="bytes")
    d.add("stat", "Capacity", "Total capacity of the pools that have one (usage_billed pools have none).",
          [target(f"sum({by_pool(f'tibiot:pool_capacity_bytes{{{sel}}}')})", instant=True, fmt="time_series")], 4, 4,
          unit="bytes")
    d.add("stat", "Pools ≥ 80% used",
          "Pools that used at least 80% of their capacity (tibiot:pool_usage_ratio); the "
          "TibiotPoolAlmostExhausted alert fires for them.",
          [target(f"count({by_pool(f'tibiot:pool_usage_ratio{{{sel}}}')} >= 0.8) or vector(0)", instant=True,
                  fmt="time_series")], 4, 4,
          th=thresholds((None, GREEN), (1, ORANGE)))
    d.add("stat", "Invalid pools", "Pools whose status is invalid (tibiot_pool_valid == 0).",
          [target(f"count({by_pool(f'tibiot_pool_valid{{{sel}}}')} == 0) or vector(0)", instant=True,
                  fmt="time_series")],
          4, 4, th=thresholds((None, GREEN), (1, RED)))

    d.row("Pools")
    # Table columns carry their unit in their name and are scaled in PromQL (GiB, %, days):
    # the dashboard schema only allows object values in field overrides, so a per-column
    # `unit` override is not expressible. Stats, gauges and graphs use bytes/percentunit.
    d.add(
        "table", "All pools",
        "One row per pool. Usage is used / capacity; days left are until the pool's end date "
        "(unified_pay pools) and, at its burn rate, until it runs out "
        "(tibiot:pool_exhaustion_seconds: the daily average, or the last 6 h / 1 h when usage "
        "clearly accelerated; Inf = not growing; empty during a pool's first day). Sizes in GiB "
        "(2^30 bytes). Click a row for the pool's detail dashboard.",
        [
            target("max by (account, pool, name, name_en, type, billing_cycle_months, package, channel) "
                   f"(tibiot_pool_info{{{sel}}})", "A", instant=True),
            target(f"{by_pool(f'tibiot:pool_usage_ratio{{{sel}}}')} * 100", "B", instant=True),
            target(f"{by_pool(f'tibiot:pool_used_bytes{{{sel}}}')} / 2^30", "C", instant=True),
            target(f"{by_pool(f'tibiot:pool_capacity_bytes{{{sel}}}')} / 2^30", "D", instant=True),
            target(by_pool(f"tibiot_pool_cards{{{sel}}}"), "E", instant=True),
            target(f'label_replace({by_pool(f"tibiot_pool_valid{{{sel}}}")} == 1, "status", "valid", "", "") '
                   f'or label_replace({by_pool(f"tibiot_pool_valid{{{sel}}}")} == 0, "status", "INVALID", "", "")',
                   "F", instant=True),
            target(f"{by_pool(f'tibiot:pool_end_seconds{{{sel}}}')} / 86400", "G", instant=True),
            target(f"{by_pool(f'tibiot:pool_exhaustion_seconds{{{sel}}}')} / 86400", "H", instant=True),
        ],
        24, 11,
        unit="none", decimals=1, minv=0, maxv=100, th=NEUTRAL, links=[pool_link()],
        options={"showHeader": True, "cellHeight": "sm", "footer": {"show": False, "reducer": ["sum"], "fields": ""},
                 "sortBy": [{"displayName": "Usage %", "desc": True}]},
        transformations=[
            {"id": "merge", "options": {}},
            table_organize(
                hide=["Value #A", "Value #F"],
                rename={"account": "Account", "pool": "Pool", "name": "Name", "name_en": "Name (en)",
                        "type": "Type", "billing_cycle_months": "Cycle (months)", "package": "Package",
                        "channel": "Channel", "Value #B": "Usage %", "Value #C": "Used GiB",
                        "Value #D": "Capacity GiB", "Value #E": "Cards", "status": "Status",
                        "Value #G": "End date in (days)", "Value #H": "Runs out in (days)"},
                order=["account", "pool", "name", "name_en", "type", "Value #B", "Value #C", "Value #D",
                       "Value #E", "status", "Value #G", "Value #H", "billing_cycle_months", "package",
                       "channel"],
            ),
        ],
        overrides=[
            override("Usage %", {"custom.cellOptions": {"type": "gauge", "mode": "lcd"},
                                 "thresholds": thresholds((None, GREEN), (80, ORANGE), (95, RED))}),
            override("End date in (days)", {"thresholds": thresholds((None, RED), (0, ORANGE), (7, GREEN)),
                                            "custom.cellOptions": {"type": "color-text"}}),
            override("Runs out in (days)", {"thresholds": thresholds((None, RED), (1, ORANGE), (7, GREEN)),
                                            "custom.cellOptions": {"type": "color-text"}}),
        ],
    )
    d.add("bargauge", "Usage by pool", "Share of capacity used, highest first; orange from 80%, red from 95%.",
          [target(f"sort_desc({by_pool(f'tibiot:pool_usage_ratio{{{sel}}}')})", legend="{{account}} / {{pool}}",
                  instant=True,
                  fmt="time_series")],
          8, 10, unit="percentunit", th=RATIO_THRESHOLDS, minv=0, maxv=1,
          options={"orientation": "horizontal", "displayMode": "lcd", "showUnfilled": True,
                   "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False}})

    d.add("timeseries", "Usage over time", "tibiot:pool_usage_ratio per pool; dashed lines at 80% and 95%.",
          [target(by_pool(f"tibiot:pool_usage_ratio{{{sel}}}"), legend="{{account}} / {{pool}}")],
          16, 10, unit="percentunit", th=RATIO_THRESHOLDS, minv=0,
          custom=dict(TS_CUSTOM, thresholdsStyle={"mode": "dashed"}),
          options={"legend": {"displayMode": "table", "placement": "right", "calcs": ["lastNotNull"]},
                   "tooltip": {"mode": "multi", "sort": "desc"}})
    d.row("Trends")
    d.add("timeseries", "Data used over time",
          "tibiot:pool_used_bytes per pool (one series per pool; drops to ~0 when a cycle starts).",
          [target(by_pool(f"tibiot:pool_used_bytes{{{sel}}}"), legend="{{account}} / {{pool}}")],
          12, 9, unit="bytes", custom=TS_CUSTOM,
          options=TS_OPTIONS)
    d.add("timeseries", "Burn rate",
          "How fast each pool is used up, as the forecasts see it (tibiot:pool_used_bytes:burn_rate, "
          "bytes per second, IEC): the daily average, or the rate of the last 6 h / 1 h when it is "
          "well above the same hours yesterday. A cycle reset does not make it negative.",
          [target(by_pool(f"tibiot:pool_used_bytes:burn_rate{{{sel}}}"), legend="{{account}} / {{pool}}")],
          12, 9, unit="binBps", custom=TS_CUSTOM,
          options=TS_OPTIONS)
    return d


# ---------------------------------------------------------------------------- pool detail
def pool_detail():
    sel = 'account="$account", pool="$pool"'
    d = Dashboard(
        "tibiot-pool-detail", "TIBIOT / Pool detail",
        "One TIBIOT flow pool: usage against capacity with a forecast, daily and monthly usage, cards by status.",
        [ds_var(),
         query_var("account", "Account", "label_values(tibiot_pool_info, account)", multi=False, include_all=False,
                   description="TIBIOT account"),
         query_var("pool", "Pool", 'label_values(tibiot_pool_info{account="$account"}, pool)', multi=False,
                   include_all=False, description="Pool code")],
        time_from="now-7d",
    )
    d.add("table", "Pool", "Static facts of the pool from tibiot_pool_info.",
          [target("max by (account, pool, name, name_en, type, billing_cycle_months, package, channel) "
                  f"(tibiot_pool_info{{{sel}}})", instant=True)], 24, 3,
          options={"showHeader": True, "cellHeight": "sm"},
          transformations=[table_organize(hide=["Value"], rename={
              "account": "Account", "pool": "Pool", "name": "Name", "name_en": "Name (en)", "type": "Type",
              "billing_cycle_months": "Cycle (months)", "package": "Package", "channel": "Channel"})])
    d.add("gauge", "Usage", "Share of the capacity used this cycle (tibiot:pool_usage_ratio). Empty for usage_billed pools.",
          [target(by_pool(f"tibiot:pool_usage_ratio{{{sel}}}"), instant=True, fmt="time_series")], 4, 5,
          unit="percentunit", th=RATIO_THRESHOLDS, minv=0, maxv=1, no_value="no capacity",
          options={"showThresholdMarkers": True, "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False}})
    d.add("stat", "Used", "Data used this cycle (tibiot_pool_used_bytes).",
          [target(by_pool(f"tibiot:pool_used_bytes{{{sel}}}"), instant=True, fmt="time_series")], 4, 5, unit="bytes")
    d.add("stat", "Capacity", "Capacity of the pool (tibiot_pool_capacity_bytes); none for usage_billed pools.",
          [target(by_pool(f"tibiot:pool_capacity_bytes{{{sel}}}"), instant=True, fmt="time_series")], 4, 5,
          unit="bytes",
          no_value="none")
    d.add("stat", "Status", "tibiot_pool_valid: valid or invalid.",
          [target(by_pool(f"tibiot_pool_valid{{{sel}}}"), instant=True, fmt="time_series")], 3, 5,
          mappings=VALID_MAPPING, th=thresholds((None, RED), (1, GREEN)))
    d.add("stat", "End date in", "Time until the pool's end date (tibiot:pool_end_seconds, unified_pay pools only).",
          [target(by_pool(f"tibiot:pool_end_seconds{{{sel}}}"), instant=True, fmt="time_series")], 4, 5, unit="s",
          th=thresholds((None, RED), (0, ORANGE), (604800, GREEN)), no_value="no end date")
    d.add("stat", "Runs out in",
          "Forecast: time until the capacity is used up at the pool's burn rate "
          "(tibiot:pool_exhaustion_seconds; the burn rate is the daily average, or the last 6 h / 1 h "
          "when usage clearly accelerated). 'not growing' = +Inf; empty for a full pool that no "
          "longer grows and during a pool's first day.",
          [target(by_pool(f"tibiot:pool_exhaustion_seconds{{{sel}}}"), instant=True, fmt="time_series")], 5, 5,
          unit="s", mappings=NEVER_MAPPING, th=thresholds((None, RED), (86400, ORANGE), (172800, GREEN)),
          no_value="n/a")

    d.add("timeseries", "Used vs capacity, with forecast",
          "Used bytes against capacity. 'in 24 h' adds a day at the burn rate "
          "(tibiot:pool_used_bytes:burn_rate): when it crosses the capacity the pool runs out within a "
          "day. 'at end date' adds the daily average (tibiot:pool_used_bytes:rate1d) up to the pool's "
          "end date (unified_pay only): above the capacity, TibiotPoolExhaustionBeforeCycleEnd fires.",
          [target(by_pool(f"tibiot:pool_used_bytes{{{sel}}}"), "A", "used"),
           target(by_pool(f"tibiot:pool_capacity_bytes{{{sel}}}"), "B", "capacity"),
           target(f"{by_pool(f'tibiot:pool_used_bytes{{{sel}}}')} "
                  f"+ 86400 * {by_pool(f'tibiot:pool_used_bytes:burn_rate{{{sel}}}')}", "C", "forecast: used in 24h"),
           target(f"{by_pool(f'tibiot:pool_used_bytes{{{sel}}}')} + {by_pool(f'tibiot:pool_used_bytes:rate1d{{{sel}}}')} "
                  f"* clamp_min({by_pool(f'tibiot:pool_end_seconds{{{sel}}}')}, 0)", "D", "forecast: used at end date")],
          16, 10, unit="bytes", custom=TS_CUSTOM,
          options=TS_OPTIONS_UNSORTED,
          overrides=[override("capacity", {"color": {"mode": "fixed", "fixedColor": RED}, "custom.lineStyle": {"fill": "dash", "dash": [10, 10]}}),
                     override("forecast: used in 24h", {"color": {"mode": "fixed", "fixedColor": ORANGE},
                                                        "custom.lineStyle": {"fill": "dot", "dash": [0, 10]}}),
                     override("forecast: used at end date", {"color": {"mode": "fixed", "fixedColor": YELLOW},
                                                             "custom.lineStyle": {"fill": "dot", "dash": [0, 10]}})])
    d.add("piechart", "Cards by status", "Cards bound to the pool by card status (tibiot_pool_status_cards).",
          [target(f"max by (account, pool, status) (tibiot_pool_status_cards{{{sel}}})", legend="{{status}}",
                  instant=True, fmt="time_series")],
          8, 10, unit="none",
          options={"pieType": "donut", "legend": {"displayMode": "table", "placement": "right", "values": ["value"]},
                   "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False}})

    d.add("barchart", "Daily usage, last 30 days",
          "Pool day usage from the API (tibiot_pool_daily_usage_bytes{date}, API calendar), one bar a "
          "day. An instant query: it shows the whole window from the first scrape on.",
          [target(f"max by (account, pool, date) (tibiot_pool_daily_usage_bytes{{{sel}}})", instant=True)], 12, 9,
          unit="bytes",
          options=dict(HISTORY_BARS, xField="date"),
          transformations=[table_organize(hide=["account", "pool"], order=["date", "Value"]),
                           {"id": "sortBy", "options": {"sort": [{"field": "date", "desc": False}]}}])
    d.add("barchart", "Monthly usage, last 12 months",
          "Pool month usage from the API (tibiot_pool_monthly_usage_bytes{month}), one bar a month.",
          [target(f"max by (account, pool, month) (tibiot_pool_monthly_usage_bytes{{{sel}}})", instant=True)], 12, 9,
          unit="bytes",
          options=dict(HISTORY_BARS, xField="month"),
          transformations=[table_organize(hide=["account", "pool"], order=["month", "Value"]),
                           {"id": "sortBy", "options": {"sort": [{"field": "month", "desc": False}]}}])
    d.add("timeseries", "Usage growth",
          "Growth of the pool's usage in bytes per second (IEC) over the last hour and the last day "
          "(tibiot:pool_used_bytes:rate1h, :rate1d), and the burn rate the forecasts use "
          "(tibiot:pool_used_bytes:burn_rate). A cycle reset does not make them negative.",
          [target(by_pool(f"tibiot:pool_used_bytes:rate1h{{{sel}}}"), "A", "last hour"),
           target(by_pool(f"tibiot:pool_used_bytes:rate1d{{{sel}}}"), "B", "last day"),
           target(by_pool(f"tibiot:pool_used_bytes:burn_rate{{{sel}}}"), "C", "burn rate")],
          12, 8, unit="binBps", custom=TS_CUSTOM,
          options=TS_OPTIONS_UNSORTED)
    d.add("timeseries", "Cards by status over time", "tibiot_pool_status_cards per status.",
          [target(f"max by (account, pool, status) (tibiot_pool_status_cards{{{sel}}})", legend="{{status}}")],
          12, 8, unit="none", custom=dict(TS_CUSTOM, stacking={"mode": "normal", "group": "A"}),
          options=TS_OPTIONS)
    return d


# ---------------------------------------------------------------------------- cards
def cards():
    sel = 'account=~"$account", iccid=~"$iccid"'
    d = Dashboard(
        "tibiot-cards", "TIBIOT / Cards",
        "TIBIOT SIM cards: who burns data fastest now, who uses the most, who is near their own cap, "
        "statuses and status changes.",
        [ds_var(),
         query_var("account", "Account", "label_values(tibiot_card_info, account)", description="TIBIOT account"),
         query_var("iccid", "ICCID", 'label_values(tibiot_card_info{account=~"$account"}, iccid)',
                   description="Card ICCIDs")],
    )
    d.add("stat", "Cards", "Cards exported (tibiot_card_info).",
          [target(f"count({by_card(f'tibiot_card_info{{{sel}}}')})", instant=True, fmt="time_series")], 6, 4)
    d.add("stat", "Abnormal cards", "Cards whose status is abnormal (tibiot_card_status{status=\"abnormal\"} == 1).",
          [target("count(" + by_card(f'tibiot_card_status{{{sel}, status="abnormal"}}') + " == 1) or vector(0)",
                  instant=True,
                  fmt="time_series")], 6, 4, th=thresholds((None, GREEN), (1, RED)))
    d.add("stat", "Cards ≥ 90% of their cap", "Cards that used at least 90% of their own cap (tibiot:card_usage_ratio).",
          [target(f"count({by_card(f'tibiot:card_usage_ratio{{{sel}}}')} >= 0.9) or vector(0)", instant=True,
                  fmt="time_series")],
          6, 4, th=thresholds((None, GREEN), (1, ORANGE)))
    d.add("stat", "Cycle usage, all cards", "Sum of tibiot_card_cycle_usage_bytes, each card counted once.",
          [target(f"sum({by_card(f'tibiot_card_cycle_usage_bytes{{{sel}}}')})", instant=True, fmt="time_series")], 6, 4,
          unit="bytes")

    d.add("bargauge", "Cards burning data fastest now",
          "The 20 cards that used the most data in the last hour, as a rate (tibiot:card_month_usage_bytes:rate1h, "
          "bytes per second, IEC). A card far above its own normal is a runaway candidate: see the "
          "next panel and TibiotCardRunaway.",
          [target(f"topk(20, {by_card(f'tibiot:card_month_usage_bytes:rate1h{{{sel}}}')})", legend="{{iccid}}",
                  instant=True, fmt="time_series")], 12, 12, unit="binBps", th=NEUTRAL,
          options={"orientation": "horizontal", "displayMode": "gradient", "showUnfilled": True,
                   "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False}})
    d.add("bargauge", "Cards furthest above their normal",
          "Last hour's rate / the card's normal (its average over the 3 days that ended a day ago, "
          "tibiot:card_month_usage_bytes:normal_rate), the 20 highest. Orange from 3x (a firing "
          "TibiotCardRunaway stays above it), red from 6x (where it can start). Cards with less than "
          "4 days of data have no normal and are not listed.",
          [target(f"topk(20, {by_card(f'tibiot:card_month_usage_bytes:rate1h{{{sel}}}')} "
                  f"/ {by_card(f'tibiot:card_month_usage_bytes:normal_rate{{{sel}}} > 0')})",
                  legend="{{iccid}}", instant=True, fmt="time_series")], 12, 12, unit="none", decimals=1,
          th=thresholds((None, GREEN), (3, ORANGE), (6, RED)),
          options={"orientation": "horizontal", "displayMode": "lcd", "showUnfilled": True,
                   "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False}})

    d.add("bargauge", "Top cards by cycle usage", "The 20 cards that used the most data this cycle.",
          [target(f"topk(20, {by_card(f'tibiot_card_cycle_usage_bytes{{{sel}}}')})", legend="{{iccid}}", instant=True,
                  fmt="time_series")], 12, 12, unit="bytes", th=NEUTRAL,
          options={"orientation": "horizontal", "displayMode": "gradient", "showUnfilled": True,
                   "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False}})
    d.add("bargauge", "Cards nearest their cap",
          "The 20 cards with the highest cycle usage / own cap (tibiot:card_usage_ratio); cards "
          "billed by usage have no cap and are not listed. TibiotCardNearCap fires at 90%.",
          [target(f"topk(20, {by_card(f'tibiot:card_usage_ratio{{{sel}}}')})", legend="{{iccid}}", instant=True,
                  fmt="time_series")], 12, 12, unit="percentunit", th=CARD_RATIO_THRESHOLDS, minv=0, maxv=1,
          options={"orientation": "horizontal", "displayMode": "lcd", "showUnfilled": True,
                   "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False}})

    d.add("table", "Card status",
          "Current status of every card (tibiot_card_status == 1) with its identifiers from tibiot_card_info.",
          [target(f"(max by (account, iccid, status) (tibiot_card_status{{{sel}}}) == 1) "
                  "* on (account, iccid) group_left (msisdn, imsi, imei, apn, billing_method) "
                  f"max by (account, iccid, msisdn, imsi, imei, apn, billing_method) (tibiot_card_info{{{sel}}})",
                  instant=True)],
          12, 10, options={"showHeader": True, "cellHeight": "sm",
                           "sortBy": [{"displayName": "Status", "desc": False}]},
          transformations=[table_organize(hide=["Value"], rename={
              "account": "Account", "iccid": "ICCID", "status": "Status", "msisdn": "MSISDN", "imsi": "IMSI",
              "imei": "IMEI", "apn": "APN", "billing_method": "Billing"},
              order=["account", "iccid", "status", "msisdn", "imsi", "imei", "apn", "billing_method"])])
    d.add("table", "Status changes in the time range",
          "How many times each card changed status in the selected time range: every change flips "
          "one status series 1→0 and another 0→1, hence changes(tibiot_card_status) / 2. Busiest first.",
          [target(f"topk(20, max by (account, iccid) (sum by (job, instance, account, iccid) "
                  f"(changes(tibiot_card_status{{{sel}}}[$__range]))) / 2)",
                  instant=True)],
          12, 10, th=thresholds((None, GREEN), (1, ORANGE)),
          options={"showHeader": True, "cellHeight": "sm", "sortBy": [{"displayName": "Changes", "desc": True}]},
          decimals=0,
          transformations=[table_organize(rename={"account": "Account", "iccid": "ICCID", "Value": "Changes"})],
          overrides=[override("Changes", {"custom.cellOptions": {"type": "color-text"}})])
    d.add("timeseries", "Cards by status", "Number of cards in each status over time.",
          [target(f"count by (status) (max by (account, iccid, status) (tibiot_card_status{{{sel}}}) == 1)",
                  legend="{{status}}")],
          12, 8, unit="none", custom=dict(TS_CUSTOM, stacking={"mode": "normal", "group": "A"}),
          options=TS_OPTIONS)
    d.add("timeseries", "Month usage of the top cards", "tibiot_card_month_usage_bytes of the 10 biggest users.",
          [target(f"topk(10, {by_card(f'tibiot:card_month_usage_bytes{{{sel}}}')})", legend="{{iccid}}")],
          12, 8, unit="bytes", custom=TS_CUSTOM,
          options=TS_OPTIONS)
    d.add("barchart", "Daily usage of the selected cards",
          "Sum of the card day usage from the API (tibiot_card_daily_usage_bytes{date}) over the "
          "selected cards, one bar a day. Needs collect.history.card_days > 0 (default 0: empty).",
          [target(f"sum by (date) (max by (account, iccid, date) (tibiot_card_daily_usage_bytes{{{sel}}}))",
                  instant=True)], 12, 8, unit="bytes",
          options=dict(HISTORY_BARS, xField="date"),
          transformations=[table_organize(order=["date", "Value"]),
                           {"id": "sortBy", "options": {"sort": [{"field": "date", "desc": False}]}}])
    d.add("barchart", "Monthly usage of the selected cards",
          "Sum of the card month usage (tibiot_card_monthly_usage_bytes{month}) over the selected "
          "cards, one bar a month. Needs collect.history.card_months > 0 (default 0: empty).",
          [target(f"sum by (month) (max by (account, iccid, month) (tibiot_card_monthly_usage_bytes{{{sel}}}))",
                  instant=True)], 12, 8, unit="bytes",
          options=dict(HISTORY_BARS, xField="month"),
          transformations=[table_organize(order=["month", "Value"]),
                           {"id": "sortBy", "options": {"sort": [{"field": "month", "desc": False}]}}])
    return d


# ---------------------------------------------------------------------------- exporter health
def exporter_health():
    jsel = 'job=~"$job"'
    sel = 'job=~"$job", account=~"$account"'
    d = Dashboard(
        "tibiot-exporter-health", "TIBIOT / Exporter health",
        "tibiot-exporter itself: upstream API requests, latency, collection success, data age, scrapes.",
        [ds_var(),
         query_var("job", "Job", "label_values(tibiot_up, job)", description="Prometheus jobs scraping tibiot-exporter"),
         query_var("account", "Account", 'label_values(tibiot_up{job=~"$job"}, account)', description="TIBIOT account")],
        time_from="now-6h",
    )
    d.add("stat", "TIBIOT API", "tibiot_up: 1 when the account's latest upstream request succeeded.",
          [target(f"min by (account) (tibiot_up{{{sel}}})", legend="{{account}}", instant=True, fmt="time_series")],
          5, 4, mappings=UP_MAPPING, th=thresholds((None, RED), (1, GREEN)))
    d.add("stat", "Failing targets", "Targets whose latest fetch failed (tibiot_collect_success == 0).",
          [target(f"count(tibiot_collect_success{{{sel}}} == 0) or vector(0)", instant=True, fmt="time_series")],
          5, 4, th=thresholds((None, GREEN), (1, RED)))
    d.add("stat", "Oldest data", "Age of the oldest value served (tibiot:collect_data_age_seconds).",
          [target(f"max(tibiot:collect_data_age_seconds{{{sel}}})", instant=True, fmt="time_series")], 5, 4,
          unit="s", th=thresholds((None, GREEN), (900, ORANGE), (3600, RED)))
    d.add("stat", "Config reload", "tibiot_exporter_config_last_reload_successful of every exporter instance.",
          [target(f"min(tibiot_exporter_config_last_reload_successful{{{jsel}}})", instant=True, fmt="time_series")],
          4, 4, mappings=OK_MAPPING, th=thresholds((None, RED), (1, GREEN)))
    d.add("stat", "Version", "tibiot_exporter_build_info of every exporter instance.",
          [target(f"count by (version, revision) (tibiot_exporter_build_info{{{jsel}}})", legend="{{version}} ({{revision}})",
                  instant=True, fmt="time_series")], 5, 4,
          options={"textMode": "name", "colorMode": "none",
                   "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False}})

    d.add("timeseries", "API requests by outcome",
          "Upstream requests per second by outcome (tibiot:api_requests:rate5m from "
          "tibiot_api_requests_total): success, http_error, api_error, timeout, transport_error, "
          "decode_error, rate_limited.",
          [target(f"sum by (outcome) (tibiot:api_requests:rate5m{{{sel}}})", legend="{{outcome}}")],
          12, 8, unit="reqps", custom=dict(TS_CUSTOM, stacking={"mode": "normal", "group": "A"}),
          options=TS_OPTIONS,
          overrides=[override("success", {"color": {"mode": "fixed", "fixedColor": GREEN}})])
    d.add("timeseries", "API requests by endpoint", "Upstream requests per second by API endpoint.",
          [target(f"sum by (endpoint) (tibiot:api_requests:rate5m{{{sel}}})", legend="{{endpoint}}")],
          12, 8, unit="reqps", custom=TS_CUSTOM,
          options=TS_OPTIONS)
    d.add("timeseries", "API latency",
          "Upstream request latency quantiles per endpoint over 5 minutes (histogram_quantile over "
          "tibiot_api_request_duration_seconds_bucket, recorded). Gaps: no request in the window.",
          [target(f"max by (endpoint) (tibiot:api_request_duration_seconds:p50_5m{{{sel}}})", "A", "p50 {{endpoint}}"),
           target(f"max by (endpoint) (tibiot:api_request_duration_seconds:p95_5m{{{sel}}})", "B", "p95 {{endpoint}}"),
           target(f"max by (endpoint) (tibiot:api_request_duration_seconds:p99_5m{{{sel}}})", "C", "p99 {{endpoint}}")],
          12, 8, unit="s", th=thresholds((None, GREEN), (1, ORANGE), (5, RED)),
          custom=dict(TS_CUSTOM, thresholdsStyle={"mode": "dashed"}),
          options=TS_OPTIONS)
    d.add("timeseries", "Failing targets by kind",
          "Targets whose latest fetch failed, by kind (pool, card, pool_history, card_history).",
          [target(f"sum by (kind) (1 - tibiot_collect_success{{{sel}}})", legend="{{kind}}")],
          12, 8, unit="none", th=thresholds((None, GREEN), (1, RED)), custom=TS_CUSTOM,
          options=TS_OPTIONS)

    d.add("table", "Collection per target",
          "Latest fetch result (tibiot_collect_success: ok / FAILING) and age of the served data "
          "(tibiot:collect_data_age_seconds) for every target; failures first.",
          [target(f'label_replace(tibiot_collect_success{{{sel}}} == 1, "result", "ok", "", "") '
                  f'or label_replace(tibiot_collect_success{{{sel}}} == 0, "result", "FAILING", "", "")', "A",
                  instant=True),
           target(f"tibiot:collect_data_age_seconds{{{sel}}}", "B", instant=True)],
          24, 10, unit="s", th=thresholds((None, GREEN), (900, ORANGE), (3600, RED)),
          options={"showHeader": True, "cellHeight": "sm",
                   "sortBy": [{"displayName": "Latest fetch", "desc": False}]},
          transformations=[{"id": "merge", "options": {}},
                           table_organize(hide=["Value #A"],
                                          rename={"account": "Account", "kind": "Kind", "target": "Target",
                                                  "result": "Latest fetch", "Value #B": "Data age"},
                                          order=["account", "kind", "target", "result", "Value #B"])],
          overrides=[override("Data age", {"custom.cellOptions": {"type": "color-text"}})])

    d.add("timeseries", "Data age", "Age of the served data, oldest target per kind (tibiot:collect_data_age_seconds).",
          [target(f"max by (kind) (tibiot:collect_data_age_seconds{{{sel}}})", legend="{{kind}}")],
          12, 8, unit="s", th=thresholds((None, GREEN), (900, ORANGE), (3600, RED)),
          custom=dict(TS_CUSTOM, thresholdsStyle={"mode": "dashed"}),
          options=TS_OPTIONS)
    d.add("timeseries", "TIBIOT API up", "tibiot_up per account and exporter instance.",
          [target(f"tibiot_up{{{sel}}}", legend="{{account}} {{instance}}")],
          12, 8, unit="none", minv=0, maxv=1, mappings=UP_MAPPING, th=thresholds((None, RED), (1, GREEN)),
          custom=dict(TS_CUSTOM, drawStyle="line", lineInterpolation="stepAfter"),
          options=TS_OPTIONS_UNSORTED)
    d.add("timeseries", "Scrape duration",
          "Time a scrape spent collecting, as the exporter measures it (tibiot_scrape_duration_seconds) "
          "and as Prometheus sees it (scrape_duration_seconds). Keep it under the scrape timeout.",
          [target(f"max by (instance) (tibiot_scrape_duration_seconds{{{jsel}}})", "A", "exporter {{instance}}"),
           target(f"max by (instance) (scrape_duration_seconds{{{jsel}}})", "B", "prometheus {{instance}}")],
          12, 8, unit="s", custom=TS_CUSTOM,
          options=TS_OPTIONS)
    d.add("timeseries", "Exporter targets up", "up of every Prometheus target of the selected jobs.",
          [target(f"up{{{jsel}}}", legend="{{job}} {{instance}}")],
          12, 8, unit="none", minv=0, maxv=1, mappings=UP_MAPPING, th=thresholds((None, RED), (1, GREEN)),
          custom=dict(TS_CUSTOM, lineInterpolation="stepAfter"),
          options=TS_OPTIONS_UNSORTED)
    d.add("timeseries", "Exporter memory",
          "Resident memory of every exporter process (process_resident_memory_bytes, /metrics job).",
          [target(f"process_resident_memory_bytes{{{jsel}}}", legend="{{instance}}")],
          12, 8, unit="bytes", custom=TS_CUSTOM,
          options=TS_OPTIONS_UNSORTED)
    d.add("timeseries", "Exporter CPU",
          "CPU used by every exporter process, in cores (rate of process_cpu_seconds_total).",
          [target(f"rate(process_cpu_seconds_total{{{jsel}}}[$__rate_interval])", legend="{{instance}}")],
          12, 8, unit="none", custom=TS_CUSTOM,
          options=TS_OPTIONS_UNSORTED)
    return d


DASHBOARDS = {
    "tibiot-pools.json": pools_overview,
    "tibiot-pool-detail.json": pool_detail,
    "tibiot-cards.json": cards,
    "tibiot-exporter-health.json": exporter_health,
}


def render(fn):
    return json.dumps(fn().to_json(), indent=2, ensure_ascii=False) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="fail if grafana/dashboards/ is not up to date")
    args = ap.parse_args()
    stale = []
    for name, fn in DASHBOARDS.items():
        path = os.path.join(OUT, name)
        text = render(fn)
        if args.check:
            try:
                with open(path, encoding="utf-8") as f:
                    if f.read() != text:
                        stale.append(path)
            except FileNotFoundError:
                stale.append(path)
        else:
            os.makedirs(OUT, exist_ok=True)
            with open(path, "w", encoding="utf-8") as f:
                f.write(text)
            print(f"wrote {os.path.relpath(path, ROOT)}")
    if stale:
        for p in stale:
            print(f"out of date: {os.path.relpath(p, ROOT)} (run scripts/ops/gen-dashboards.py)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
