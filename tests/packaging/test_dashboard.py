"""The Grafana dashboard: the guide's panels, and every query run by a real Prometheus.

``deploy/grafana/mcp-health-dashboard.json`` is the one source; the chart's
ConfigMap carries a checked copy (test_chart.py).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from tests.packaging.prometheus import Prometheus, PromQLError

REPO = Path(__file__).resolve().parents[2]
DASHBOARD = REPO / "deploy" / "grafana" / "mcp-health-dashboard.json"

# Grafana's variables, as Grafana substitutes them for "All" and a 1s scrape.
GRAFANA_VARIABLES = {
    "$namespace": ".*",
    "$monitor": ".*",
    "$__rate_interval": "1m",
    "$__interval": "15s",
    "$__range": "1h",
}


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def panels() -> dict[str, dict[str, Any]]:
    return {p["title"]: p for p in dashboard()["panels"]}


def substitute(expr: str) -> str:
    # Longest names first: $__rate_interval before $__range / $__interval.
    for name in sorted(GRAFANA_VARIABLES, key=len, reverse=True):
        expr = expr.replace(name, GRAFANA_VARIABLES[name])
    assert "$" not in expr, f"unknown Grafana variable in {expr!r}"
    return expr


def panel_queries() -> list[tuple[str, str]]:
    return [
        (f"{panel['title']} [{target['refId']}]", target["expr"])
        for panel in dashboard()["panels"]
        for target in panel.get("targets", [])
    ]


def variable_queries() -> list[tuple[str, str]]:
    """The metric selector inside each ``label_values(selector, label)`` variable."""
    out = []
    for var in dashboard()["templating"]["list"]:
        if var["type"] != "query":
            continue
        query = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
        match = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", query)
        assert match, f"variable {var['name']}: unexpected query {query!r}"
        out.append((f"variable {var['name']}", match.group(1)))
    return out


def steps(panel: dict[str, Any]) -> list[tuple[float | None, str]]:
    thresholds = panel["fieldConfig"]["defaults"]["thresholds"]
    assert thresholds["mode"] == "absolute"
    return [(step["value"], step["color"]) for step in thresholds["steps"]]


def exprs(panel: dict[str, Any]) -> list[str]:
    return [" ".join(t["expr"].split()) for t in panel["targets"]]


def test_the_guides_panels() -> None:
    by_title = panels()
    health = by_title["Health Status"]
    assert health["type"] == "stat"
    assert exprs(health) == ['mcp_health_status{namespace=~"$namespace", monitor=~"$monitor"}']
    # Grafana's base step has no value (-Infinity): red from 0, yellow from 0.5, green at 1.
    assert steps(health) == [(None, "red"), (0.5, "yellow"), (1, "green")]

    pool = by_title["Connection Pool Utilization"]
    assert pool["type"] == "gauge"
    assert exprs(pool) == [
        'mcp_pool_utilization{namespace=~"$namespace", monitor=~"$monitor"} * 100'
    ]
    assert steps(pool) == [(None, "green"), (80, "yellow"), (95, "red")]
    assert pool["fieldConfig"]["defaults"]["unit"] == "percent"

    latency = by_title["Database Latency"]
    assert latency["type"] == "timeseries"  # the guide's "graph", as Grafana names it now
    assert exprs(latency) == [
        'mcp_database_latency_ms{namespace=~"$namespace", monitor=~"$monitor"}'
    ]
    assert latency["fieldConfig"]["defaults"]["unit"] == "ms"


def test_probe_latency_and_remediation_panels() -> None:
    by_title = panels()
    probe = exprs(by_title["Probe Latency"])
    assert all(
        e.startswith("histogram_quantile(") and "mcp_probe_duration_seconds_bucket" in e
        for e in probe
    )
    assert any(e.startswith("histogram_quantile(0.95,") for e in probe)
    remediation = exprs(by_title["Remediation Actions"])
    assert remediation and all("rate(mcp_remediation_actions_total" in e for e in remediation)


def test_dashboard_is_sidecar_ready() -> None:
    """A plain dashboard model (not the HTTP API's {"dashboard": ...} wrapper), unique ids."""
    d = dashboard()
    assert "dashboard" not in d
    assert d["uid"] and d["title"] == "MCP Health Monitoring"
    ids = [p["id"] for p in d["panels"]]
    assert len(ids) == len(set(ids))
    for panel in d["panels"]:
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}


@pytest.mark.timeout(120)
def test_every_query_is_valid_promql_and_finds_the_operators_series(
    prometheus: Prometheus,
) -> None:
    """Each panel and variable query, Grafana variables substituted, through /api/v1/query.

    A parse error fails; so does a query that finds nothing, since the scraped
    exporter serves every metric family the operator exports.
    """
    queries = panel_queries() + variable_queries()
    assert len(queries) >= 10
    errors, empty = [], []
    for where, expr in queries:
        try:
            result = prometheus.query(substitute(expr))
        except PromQLError as exc:
            errors.append(f"{where}: {expr}: {exc}")
            continue
        if not result:
            empty.append(f"{where}: {expr}")
    assert errors == [], "invalid PromQL:\n" + "\n".join(errors)
    assert empty == [], "queries that find no series:\n" + "\n".join(empty)


def test_prometheus_wrapper_reports_parse_errors(prometheus: Prometheus) -> None:
    with pytest.raises(PromQLError, match="parse error"):
        prometheus.query("sum by (namespace (mcp_health_status)")
