"""The alert rules: promtool's checks and unit tests, their contract, and a real Prometheus.

``deploy/prometheus/mcp-health-rules.yaml`` is the one source; the chart's
PrometheusRule carries a checked copy (test_chart.py).
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.packaging.prometheus import RULES, Prometheus, binary

REPO = Path(__file__).resolve().parents[2]
PROMTOOL_TESTS = sorted((REPO / "tests" / "promtool").glob("*.yaml"))
RUNBOOKS = REPO / "docs" / "runbooks"

# The guide's rules and thresholds tables: alert -> (expr, for, severity, channel).
GUIDE = {
    "MCPUnhealthy": ("mcp_health_status < 0.5", "10s", "critical", "pagerduty"),
    "MCPPoolExhausted": ("mcp_pool_utilization > 0.95", "30s", "critical", "pagerduty"),
    "MCPHighLatency": ("mcp_database_latency_ms > 100", "2m", "warning", "slack"),
    "MCPDatabaseDisconnected": ("mcp_database_connected == 0", "10s", "critical", "pagerduty"),
    "MCPSlowResponse": ("mcp_probe_latency_ms > 500", "1m", "critical", "pagerduty"),
    "MCPDegraded": ("mcp_health_status == 0.5", "5m", "warning", "slack"),
    "MCPPoolHighUtilization": ("mcp_pool_utilization > 0.8", "2m", "warning", "slack"),
    "MCPHighMemory": ("mcp_memory_utilization > 0.8", "5m", "info", "email"),
    "MCPRecentRestart": ("mcp_server_uptime_seconds < 3600", None, "info", "log"),
    "MCPPoolExhaustionPredicted": (
        "predict_linear(mcp_pool_utilization[30m], 3600) >= 0.95",
        "5m",
        "warning",
        "slack",
    ),
}
EXTRA = {"MCPHealthOperatorDown", "MCPProbeFailing", "MCPEndpointUnhealthy"}


def rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load(RULES.read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(binary("promtool")), *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )


def test_promtool_check_rules() -> None:
    done = promtool("check", "rules", str(RULES))
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(rules())} rules found" in done.stdout


def test_promtool_unit_tests_pass() -> None:
    assert PROMTOOL_TESTS, "no tests/promtool/*.yaml"
    done = promtool("test", "rules", *map(str, PROMTOOL_TESTS))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_the_guides_alerts_keep_their_expressions_durations_and_severities() -> None:
    by_name = {rule["alert"]: rule for rule in rules()}
    assert set(by_name) == set(GUIDE) | EXTRA
    for name, (expr, for_, severity, channel) in GUIDE.items():
        rule = by_name[name]
        assert " ".join(rule["expr"].split()) == expr, name
        assert rule.get("for") == for_, name
        assert rule["labels"]["severity"] == severity, name
        assert rule["labels"]["channel"] == channel, name


def test_every_alert_has_labels_annotations_and_a_runbook() -> None:
    for rule in rules():
        name = rule["alert"]
        assert rule["labels"]["service"] == "mcp", name
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}, name
        annotations = rule["annotations"]
        assert annotations.get("summary") and annotations.get("description"), name
        url = annotations["runbook_url"]
        assert url.startswith("docs/runbooks/") and url.endswith(".md"), (name, url)
        page = REPO / url
        assert page.is_file(), f"{name}: runbook {url} is missing"
        assert f"# {name}" in page.read_text(), f"{url} does not document {name}"


def test_every_alert_is_unit_tested_firing_and_not_firing() -> None:
    firing: set[str] = set()
    quiet: set[str] = set()
    for path in PROMTOOL_TESTS:
        for case in yaml.safe_load(path.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                (firing if check.get("exp_alerts") else quiet).add(check["alertname"])
    names = {rule["alert"] for rule in rules()}
    assert names - firing == set(), "alerts never tested firing"
    # Every alert with a `for:` is also checked while still pending; MCPRecentRestart
    # (no duration) is checked quiet through its not-firing series.
    assert names - quiet - {"MCPRecentRestart"} == set(), "alerts never tested quiet"


@pytest.mark.timeout(120)
def test_a_real_prometheus_loads_and_evaluates_every_rule(prometheus: Prometheus) -> None:
    # Two evaluations after the first scrape, so every rule has run at least once.
    prometheus.wait_for("count_over_time(mcp_operator_info[1m]) >= 4")
    groups = prometheus.rule_groups()
    loaded = {rule["name"]: rule for group in groups for rule in group["rules"]}
    assert set(loaded) == {rule["alert"] for rule in rules()}
    for name, rule in loaded.items():
        assert rule["health"] == "ok", (name, rule.get("lastError"))


@pytest.mark.timeout(120)
def test_the_operators_metrics_trigger_the_rules(prometheus: Prometheus) -> None:
    """On the operator's real metric families: the unhealthy monitor alerts, the healthy not."""
    active = prometheus.wait_for_alert("MCPUnhealthy")
    assert {a["labels"]["monitor"] for a in active} == {"ledger-mcp"}
    assert active[0]["labels"]["severity"] == "critical"
    assert active[0]["annotations"]["runbook_url"] == "docs/runbooks/mcp-unhealthy.md"
    for name in ("MCPDatabaseDisconnected", "MCPPoolExhausted", "MCPSlowResponse"):
        found = prometheus.wait_for_alert(name)
        assert {a["labels"]["monitor"] for a in found} == {"ledger-mcp"}, name
    restarts = prometheus.wait_for_alert("MCPRecentRestart", states=("firing",))
    assert {a["labels"]["monitor"] for a in restarts} == {"workflow-mcp", "ledger-mcp"}
    probing = prometheus.wait_for_alert("MCPProbeFailing")
    assert {a["labels"]["monitor"] for a in probing} == {"ledger-mcp"}
    names = {a["labels"]["alertname"] for a in prometheus.alerts()}
    assert "MCPHealthOperatorDown" not in names
