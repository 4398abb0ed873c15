"""Generates dashboards/ccfast-grafana.json (run: .venv/bin/python dashboards/make_dashboard.py).

The JSON file is the artifact operators import; this script keeps its 20-odd panels consistent
(datasource, variables, layout). tests/test_dashboard.py checks every metric it names exists.
"""

from __future__ import annotations

import json
import pathlib

DS = {"type": "prometheus", "uid": "${datasource}"}
SEL = 'instance=~"$instance",queue=~"$queue"'
INST = 'instance=~"$instance"'

_panels: list[dict] = []
_next_id = [1]
_cursor = {"x": 0, "y": 0, "h": 0}


def _place(w: int, h: int) -> dict:
    if _cursor["x"] + w > 24:
        _cursor["x"] = 0
        _cursor["y"] += _cursor["h"]
        _cursor["h"] = 0
    pos = {"x": _cursor["x"], "y": _cursor["y"], "w": w, "h": h}
    _cursor["x"] += w
    _cursor["h"] = max(_cursor["h"], h)
    return pos


def row(title: str) -> None:
    if _cursor["x"]:
        _cursor["x"], _cursor["y"], _cursor["h"] = 0, _cursor["y"] + _cursor["h"], 0
    _panels.append({"type": "row", "title": title, "id": _next_id[0], "collapsed": False, "panels": [],
                    "gridPos": {"x": 0, "y": _cursor["y"], "w": 24, "h": 1}})
    _next_id[0] += 1
    _cursor["y"] += 1


def _targets(exprs):
    return [{"datasource": DS, "expr": expr, "legendFormat": legend, "refId": chr(65 + i), "range": True}
            for i, (expr, legend) in enumerate(exprs)]


def _thresholds(steps):
    return {"mode": "absolute", "steps": [{"color": c, "value": v} for v, c in steps]}


def stat(title, exprs, unit="short", steps=((None, "green"),), w=4, h=5, desc="", decimals=None):
    defaults = {"unit": unit, "thresholds": _thresholds(steps), "color": {"mode": "thresholds"}}
    if decimals is not None:
        defaults["decimals"] = decimals
    _panels.append({
        "type": "stat", "title": title, "description": desc, "id": _next_id[0], "datasource": DS,
        "gridPos": _place(w, h), "targets": _targets(exprs),
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                    "colorMode": "background", "graphMode": "none", "justifyMode": "auto",
                    "orientation": "auto", "textMode": "value_and_name", "wideLayout": True},
    })
    _next_id[0] += 1


def series(title, exprs, unit="short", w=12, h=8, stack=False, bars=False, desc="", minv=None, maxv=None):
    custom = {"drawStyle": "bars" if bars else "line", "fillOpacity": 60 if bars else 10, "lineWidth": 1,
              "showPoints": "never", "spanNulls": False,
              "stacking": {"mode": "normal" if stack else "none", "group": "A"}}
    defaults = {"unit": unit, "custom": custom, "color": {"mode": "palette-classic"}}
    if minv is not None:
        defaults["min"] = minv
    if maxv is not None:
        defaults["max"] = maxv
    _panels.append({
        "type": "timeseries", "title": title, "description": desc, "id": _next_id[0], "datasource": DS,
        "gridPos": _place(w, h), "targets": _targets(exprs),
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": {"legend": {"displayMode": "table", "placement": "right", "calcs": ["lastNotNull", "max"],
                               "showLegend": True},
                    "tooltip": {"mode": "multi", "sort": "desc"}},
    })
    _next_id[0] += 1


def build() -> dict:
    _panels.clear()
    _next_id[0] = 1
    _cursor.update(x=0, y=0, h=0)
    row("Now (per queue)")
    stat("Waiting", [(f'sum by (queue) (ccfast_queue_members{{{SEL},state=~"Waiting|Trying"}})', "{{queue}}")],
         steps=((None, "green"), (10, "yellow"), (50, "red")), desc="Members waiting or ringing an agent.")
    stat("Oldest wait", [(f"max by (queue) (ccfast_queue_oldest_wait_seconds{{{SEL}}})", "{{queue}}")], unit="s",
         steps=((None, "green"), (20, "yellow"), (45, "orange"), (60, "red")),
         desc="How long the longest-waiting caller has waited.", decimals=0)
    stat("Available agents", [(f"sum by (queue) (ccfast_queue_available_agents{{{SEL}}})", "{{queue}}")],
         steps=((None, "red"), (1, "yellow"), (3, "green")), desc="Agents that could take a call of the queue now.")
    stat("Service level ($window)",
         [(f'ccfast_queue_service_level_ratio{{{SEL},window="$window"}}', "{{queue}}")], unit="percentunit",
         steps=((None, "red"), (0.7, "yellow"), (0.8, "green")),
         desc="Answered within the queue's service-level-threshold / answered, over the window.", decimals=1)
    stat("Abandoned (range)",
         [(f'sum by (queue) (increase(ccfast_queue_calls_total{{{SEL},outcome="abandoned"}}[$__range]))', "{{queue}}")],
         steps=((None, "green"), (1, "yellow"), (10, "red")), desc="Callers who hung up while waiting.", decimals=0)
    stat("ESL links up", [(f"ccfast_esl_link_up{{{INST}}}", "{{box}}")],
         steps=((None, "red"), (1, "green")), desc="1 = connected to the FreeSWITCH box.")

    row("Service")
    series("Service level", [
        (f'ccfast_queue_service_level_ratio{{{SEL},window="$window"}}', "{{queue}} ($window)"),
        (f'sum by (queue) (rate(ccfast_queue_wait_seconds_bucket{{{SEL},outcome="answered",le="20.0"}}[$__rate_interval]))'
         f' / sum by (queue) (rate(ccfast_queue_wait_seconds_count{{{SEL},outcome="answered"}}[$__rate_interval]))',
         "{{queue}} answered ≤ 20 s (histogram)"),
    ], unit="percentunit", minv=0, maxv=1)
    series("Calls by outcome", [
        (f"sum by (outcome) (increase(ccfast_queue_calls_total{{{SEL}}}[$__rate_interval]))", "{{outcome}}"),
    ], stack=True, bars=True)
    series("Average speed of answer", [
        (f'ccfast_queue_average_speed_of_answer_seconds{{{SEL},window="$window"}}', "{{queue}} ($window)"),
        (f'histogram_quantile(0.9, sum by (le, queue) (rate(ccfast_queue_wait_seconds_bucket{{{SEL},outcome="answered"}}[$__rate_interval])))',
         "{{queue}} p90 wait"),
    ], unit="s")
    series("Average handle time (talk + wrap-up)", [
        (f'ccfast_queue_average_handle_time_seconds{{{SEL},window="$window"}}', "{{queue}} ($window)"),
    ], unit="s")
    series("Abandon rate and occupancy", [
        (f'ccfast_queue_abandon_ratio{{{SEL},window="$window"}}', "{{queue}} abandon"),
        (f'ccfast_queue_occupancy_ratio{{{SEL},window="$window"}}', "{{queue}} occupancy"),
    ], unit="percentunit", minv=0, maxv=1)
    series("Waiting members", [
        (f'sum by (queue) (ccfast_queue_members{{{SEL},state=~"Waiting|Trying"}})', "{{queue}}"),
        (f"max by (queue) (ccfast_queue_oldest_wait_seconds{{{SEL}}})", "{{queue}} oldest wait (s)"),
    ])

    row("Agents")
    series("Agents by state (all)", [(f"sum by (state) (ccfast_agents{{{INST}}})", "{{state}}")], stack=True)
    series("Agents by status (all)", [(f"sum by (status) (ccfast_agents{{{INST}}})", "{{status}}")], stack=True)
    series("Agents of selected queues by state", [
        (f"sum by (queue, state) (ccfast_queue_agents{{{SEL}}})", "{{queue}} {{state}}")], stack=True)
    series("Agent offers by result", [
        (f"sum by (result) (increase(ccfast_agent_offers_total{{{SEL}}}[$__rate_interval]))", "{{result}}")],
        stack=True, bars=True)

    row("Dispatcher health")
    series("Dispatch latency (ready → originate)", [
        (f"histogram_quantile(0.5, sum by (le, trigger) (rate(ccfast_dispatch_latency_seconds_bucket{{{INST}}}[$__rate_interval])))",
         "p50 {{trigger}}"),
        (f"histogram_quantile(0.99, sum by (le, trigger) (rate(ccfast_dispatch_latency_seconds_bucket{{{INST}}}[$__rate_interval])))",
         "p99 {{trigger}}"),
    ], unit="s", w=8)
    series("Core decision time p99", [
        (f"histogram_quantile(0.99, sum by (le, op) (rate(ccfast_core_decision_seconds_bucket{{{INST}}}[$__rate_interval])))",
         "{{op}}")], unit="s", w=8)
    series("ESL command round trip p99", [
        (f"histogram_quantile(0.99, sum by (le, box, command) (rate(ccfast_esl_command_seconds_bucket{{{INST}}}[$__rate_interval])))",
         "{{box}} {{command}}")], unit="s", w=8)
    series("ESL events, reconnects, drops", [
        (f"sum by (box) (rate(ccfast_esl_events_received_total{{{INST}}}[$__rate_interval]))", "{{box}} events/s"),
        (f"sum by (box) (increase(ccfast_esl_reconnects_total{{{INST}}}[$__rate_interval]))", "{{box}} reconnects"),
        (f"sum by (box) (increase(ccfast_esl_overflow_drops_total{{{INST}}}[$__rate_interval]))", "{{box}} dropped"),
    ], w=8)
    series("Store", [
        (f"ccfast_store_journal_backlog{{{INST}}}", "journal backlog"),
        (f"histogram_quantile(0.99, sum by (le, backend) (rate(ccfast_store_batch_write_seconds_bucket{{{INST}}}[$__rate_interval])))",
         "{{backend}} batch write p99 (s)"),
    ], w=8)
    series("Events fired", [
        (f"sum by (action) (rate(ccfast_events_fired_total{{{INST}}}[$__rate_interval]))", "{{action}}")],
        unit="ops", w=8)

    row("Cluster (several nodes; flat on a single node)")
    series("Queues owned per node", [
        (f"ccfast_cluster_owned_queues{{{INST}}}", "{{instance}} owned"),
        (f"max(ccfast_cluster_live_nodes{{{INST}}})", "live nodes"),
        (f"sum by (instance) (increase(ccfast_cluster_queues_lost_total{{{INST}}}[$__rate_interval]))",
         "{{instance}} queues lost"),
    ], w=8, desc="A queue changing node shows as lost on one instance and owned by another.")
    series("Agent claims", [
        (f"sum by (result) (rate(ccfast_cluster_claims_total{{{INST}}}[$__rate_interval]))", "{{result}}/s"),
        (f"histogram_quantile(0.99, sum by (le) (rate(ccfast_cluster_claim_seconds_bucket{{{INST}}}[$__rate_interval])))",
         "claim p99 (s)"),
        (f"sum(ccfast_cluster_remote_claims{{{INST}}})", "held elsewhere"),
    ], w=8, desc="refused: another node holds the agent; unavailable: the database did not answer.")
    series("Callers moved between nodes", [
        (f"sum by (instance) (increase(ccfast_cluster_redirects_total{{{INST}}}[$__rate_interval]))",
         "{{instance}} redirected"),
        (f"sum by (instance) (increase(ccfast_cluster_callers_lost_total{{{INST}}}[$__rate_interval]))",
         "{{instance}} ended (queue lost)"),
        (f"sum by (instance) (increase(ccfast_cluster_callers_readopted_total{{{INST}}}[$__rate_interval]))",
         "{{instance}} re-adoptable"),
    ], w=8)

    variables = [
        {"type": "datasource", "name": "datasource", "label": "Data source", "query": "prometheus",
         "current": {}, "hide": 0, "refresh": 1, "regex": "", "options": []},
        {"type": "query", "name": "instance", "label": "Instance", "datasource": DS,
         "query": {"query": "label_values(ccfast_build_info, instance)", "refId": "instance"},
         "definition": "label_values(ccfast_build_info, instance)", "refresh": 2, "multi": True,
         "includeAll": True, "allValue": ".*", "current": {"text": "All", "value": "$__all"}, "sort": 1,
         "hide": 0, "options": [], "regex": ""},
        {"type": "query", "name": "queue", "label": "Queue", "datasource": DS,
         "query": {"query": 'label_values(ccfast_queue_members{instance=~"$instance"}, queue)', "refId": "queue"},
         "definition": 'label_values(ccfast_queue_members{instance=~"$instance"}, queue)', "refresh": 2,
         "multi": True, "includeAll": True, "allValue": ".*", "current": {"text": "All", "value": "$__all"},
         "sort": 1, "hide": 0, "options": [], "regex": ""},
        {"type": "query", "name": "window", "label": "KPI window", "datasource": DS,
         "query": {"query": "label_values(ccfast_queue_service_level_ratio, window)", "refId": "window"},
         "definition": "label_values(ccfast_queue_service_level_ratio, window)", "refresh": 2, "multi": False,
         "includeAll": False, "current": {"text": "15m", "value": "15m"}, "sort": 1, "hide": 0,
         "options": [], "regex": ""},
    ]
    return {
        "__requires": [
            {"type": "grafana", "id": "grafana", "name": "Grafana", "version": "10.0.0"},
            {"type": "datasource", "id": "prometheus", "name": "Prometheus", "version": "1.0.0"},
            {"type": "panel", "id": "stat", "name": "Stat", "version": ""},
            {"type": "panel", "id": "timeseries", "name": "Time series", "version": ""},
        ],
        "title": "ccfast call center",
        "uid": "ccfast-callcenter",
        "description": "Queues, agents and dispatcher health of ccfast (FreeSWITCH queue dispatcher).",
        "tags": ["ccfast", "freeswitch", "callcenter"],
        "timezone": "browser",
        "editable": True,
        "graphTooltip": 1,
        "refresh": "10s",
        "schemaVersion": 39,
        "version": 1,
        "time": {"from": "now-3h", "to": "now"},
        "timepicker": {},
        "annotations": {"list": []},
        "links": [],
        "templating": {"list": variables},
        "panels": _panels,
    }


if __name__ == "__main__":
    path = pathlib.Path(__file__).with_name("ccfast-grafana.json")
    path.write_text(json.dumps(build(), indent=2, ensure_ascii=False) + "\n")
    print(f"wrote {path} ({len(_panels)} panels)")
