"""The Grafana dashboard only names metrics (and labels) that ccfast exports; it is import-ready."""

import importlib.util
import json
import pathlib
import re

import pytest

from ccfast.metrics import Metrics, exported_series

ROOT = pathlib.Path(__file__).resolve().parent.parent
DASHBOARD = ROOT / "dashboards" / "ccfast-grafana.json"
PROMETHEUS_YML = ROOT / "examples" / "prometheus.yml"

# PromQL words that look like identifiers but are not metric names
KEYWORDS = {"bool", "offset", "and", "or", "unless", "inf", "nan", "atan2", "group_left", "group_right"}
GROUPING = r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)"
TARGET_LABELS = {"instance", "job"}  # added by Prometheus at scrape time


def _strip_strings(expr: str) -> str:
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    return re.sub(r"'(?:[^'\\]|\\.)*'", "''", expr)


def metric_names(expr: str) -> set[str]:
    """Metric names a PromQL expression selects (functions, keywords, labels, numbers excluded)."""
    e = re.sub(r"\{[^}]*\}", " ", _strip_strings(expr))  # label matchers
    e = re.sub(r"\[[^\]]*\]", " ", e)  # range / subquery durations
    e = re.sub(GROUPING, " ", e)  # grouping label lists
    e = re.sub(r"\$\{?\w+\}?", " ", e)  # Grafana variables
    names = set()
    for m in re.finditer(r"(?<![\w.])[A-Za-z_:][A-Za-z0-9_:]*", e):
        rest = e[m.end():].lstrip()
        if rest.startswith("(") or m.group(0).lower() in KEYWORDS:
            continue  # a function or aggregation call, or an operator keyword
        names.add(m.group(0))
    return names


def selectors(expr: str) -> list[tuple[str, set[str]]]:
    """(metric, label names used in its matcher) for every ``name{...}`` in the expression."""
    out = []
    for m in re.finditer(r"([A-Za-z_:][A-Za-z0-9_:]*)\s*\{([^}]*)\}", _strip_strings(expr)):
        labels = {lm.group(1) for lm in re.finditer(r"([A-Za-z_]\w*)\s*(?:=~|!~|!=|=)", m.group(2))}
        out.append((m.group(1), labels))
    return out


def grouping_labels(expr: str) -> set[str]:
    labels = set()
    for m in re.finditer(GROUPING, expr):
        inner = m.group(0)[m.group(0).index("(") + 1:-1]
        labels |= {x.strip() for x in inner.split(",") if x.strip()}
    return labels


def test_parser_on_known_expressions():
    expr = ('sum by (queue, le) (rate(foo_bar_bucket{a="x{y}", b=~"$q"}[$__rate_interval])) '
            '/ on (queue) group_left bogus_total > bool 0.5e3 offset 5m')
    assert metric_names(expr) == {"foo_bar_bucket", "bogus_total"}
    assert selectors(expr) == [("foo_bar_bucket", {"a", "b"})]
    assert grouping_labels(expr) == {"queue", "le"}
    assert metric_names("histogram_quantile(0.9, x)") == {"x"}


def load():
    return json.loads(DASHBOARD.read_text())


def all_exprs(dash) -> list[str]:
    exprs = []
    for panel in dash["panels"]:
        for target in panel.get("targets", []):
            exprs.append(target["expr"])
    return exprs


def variable_queries(dash) -> list[str]:
    out = []
    for var in dash["templating"]["list"]:
        if var["type"] == "query":
            q = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
            out.append(q)
    return out


def test_every_metric_in_the_dashboard_is_exported():
    exported = exported_series(per_agent=False)
    # the exported table matches what a live registry really emits
    live = set()
    m = Metrics(process_metrics=False)
    for fam in m.registry.collect():
        live.add(fam.name)
    assert {spec.name for spec in exported.values()} == live
    exprs = all_exprs(load())
    assert len(exprs) >= 25
    seen = set()
    for expr in exprs:
        names = metric_names(expr)
        assert names, f"no metric found in {expr!r}"
        for name in names:
            assert name in exported, f"dashboard uses {name!r} which ccfast does not export ({expr})"
        seen |= names
    for query in variable_queries(load()):
        inner = re.match(r"label_values\((.*),\s*(\w+)\)$", query)
        assert inner, query
        metric_expr, label = inner.groups()
        for name in metric_names(metric_expr):
            assert name in exported, query
            assert label in exported[name].labels or label in TARGET_LABELS, query
    # the dashboard covers the main families
    for family in ("ccfast_queue_members", "ccfast_queue_oldest_wait_seconds", "ccfast_queue_available_agents",
                   "ccfast_queue_service_level_ratio", "ccfast_queue_calls_total", "ccfast_agents",
                   "ccfast_queue_average_speed_of_answer_seconds", "ccfast_queue_average_handle_time_seconds",
                   "ccfast_queue_wait_seconds_bucket"):
        assert family in seen, family


def test_every_label_in_the_dashboard_exists_on_its_metric():
    exported = exported_series(per_agent=False)
    for expr in all_exprs(load()):
        available = set(TARGET_LABELS)
        for name, labels in selectors(expr):
            spec_labels = set(exported[name].labels) | TARGET_LABELS
            if name.endswith("_bucket"):
                spec_labels.add("le")
            assert labels <= spec_labels, f"{name} has no label(s) {labels - spec_labels} ({expr})"
            available |= spec_labels
        assert grouping_labels(expr) <= available, expr


def test_dashboard_is_import_ready():
    dash = load()
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    assert variables["queue"]["type"] == "query" and variables["queue"]["includeAll"]
    assert dash["uid"] and dash["title"] and dash["schemaVersion"] >= 36
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dash["panels"]:
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}"
        pos = panel["gridPos"]
        assert 0 <= pos["x"] and pos["x"] + pos["w"] <= 24
    stats = {p["title"]: p for p in dash["panels"] if p["type"] == "stat"}
    for title in ("Waiting", "Oldest wait", "Available agents", "Service level ($window)", "Abandoned (range)"):
        assert title in stats, title
        assert all('queue=~"$queue"' in t["expr"] for t in stats[title]["targets"])
    colours = [s["color"] for s in stats["Oldest wait"]["fieldConfig"]["defaults"]["thresholds"]["steps"]]
    assert colours[0] == "green" and colours[-1] == "red"
    titles = {p["title"] for p in dash["panels"] if p["type"] == "timeseries"}
    for title in ("Service level", "Average speed of answer", "Average handle time (talk + wrap-up)",
                  "Calls by outcome", "Agents by state (all)"):
        assert title in titles


def test_json_is_what_the_generator_produces():
    spec = importlib.util.spec_from_file_location("make_dashboard", ROOT / "dashboards" / "make_dashboard.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.build() == load(), "run .venv/bin/python dashboards/make_dashboard.py"


def test_prometheus_example_scrapes_metrics_path():
    text = PROMETHEUS_YML.read_text()
    assert "metrics_path: /metrics" in text and "scrape_configs:" in text
    port = re.search(r"targets:\s*\[\s*['\"]?[\w.]+:(\d+)", text)
    assert port, "a static target host:port"


@pytest.mark.parametrize("bad", ["ccfst_queue_members", "ccfast_queue_member", "ccfast_queue_calls"])
def test_a_typo_would_be_caught(bad):
    assert not metric_names(f"sum({bad})") <= set(exported_series())
