"""Metrics are produced from the live monitors: names, labels, values, and removal."""

from __future__ import annotations

import re
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from mcp_health_operator.controller import metrics
from mcp_health_operator.core import health
from mcp_health_operator.core.judge import Health, History, Observation, Thresholds, judge
from tests.unit.test_health_document import SEED_EXAMPLE


def scrape(figures: list[metrics.MonitorFigures]) -> dict[str, list[tuple[dict[str, str], float]]]:
    text = metrics.exposition(figures).decode()
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, []).append((dict(sample.labels), sample.value))
    return out


def observed(outcome: str = "Ok", document: str | None = SEED_EXAMPLE) -> metrics.MonitorFigures:
    fig = metrics.MonitorFigures("ns", "m", "svc/x:8000")
    doc = health.parse(document) if document else None
    obs = Observation(outcome, 12.0, doc, "")
    fig.observe(obs, judge(obs, Thresholds(), History()))
    return fig


def test_the_guides_metrics_keep_their_names_and_meanings() -> None:
    got = scrape([observed()])
    labels = {"namespace": "ns", "monitor": "m", "target": "svc/x:8000"}
    assert got["mcp_health_status"] == [(labels, 1.0)]
    assert got["mcp_pool_utilization"] == [(labels, 0.3)]
    assert got["mcp_database_latency_ms"] == [(labels, 12.5)]
    assert got["mcp_server_reported_status"] == [(labels, 1.0)]
    assert got["mcp_database_connected"] == [(labels, 1.0)]
    assert ({**labels, "state": "active"}, 3.0) in got["mcp_pool_connections"]
    assert ({**labels, "state": "idle"}, 7.0) in got["mcp_pool_connections"]
    assert got["mcp_probe_total"] == [({**labels, "outcome": "Ok"}, 1.0)]
    assert got["mcp_probe_duration_seconds_count"] == [(labels, 1.0)]
    assert ({"health": "Healthy"}, 1.0) in got["mcp_monitors"]


def test_failed_probe_clears_the_figures_but_keeps_the_verdict_series() -> None:
    fig = observed()
    obs = Observation("Timeout", 1000.0, None, "no answer")
    fig.observe(obs, judge(obs, Thresholds(), History(), failure_threshold=1))
    got = scrape([fig])
    assert got["mcp_health_status"][0][1] == 0.0
    assert "mcp_pool_utilization" not in got
    assert "mcp_database_latency_ms" not in got
    assert got["mcp_probe_consecutive_failures"][0][1] == 1.0
    outcomes = {labels["outcome"]: value for labels, value in got["mcp_probe_total"]}
    assert outcomes == {"Ok": 1.0, "Timeout": 1.0}


def test_unknown_health_has_no_health_series() -> None:
    fig = metrics.MonitorFigures("ns", "m", "t")
    assert "mcp_health_status" not in scrape([fig])


def test_a_removed_monitor_has_no_series() -> None:
    fleet = [observed()]
    assert "mcp_health_status" in scrape(fleet)
    fleet.clear()
    got = scrape(fleet)
    assert "mcp_health_status" not in got
    assert "mcp_operator_info" in got


def test_every_metric_is_listed_in_the_module_docstring() -> None:
    fig = observed()
    fig.count_remediation("restart", "success")
    fig.count_event_dropped("ProbeFailed")
    names = {re.sub(r"_(total|bucket|count|sum|created)$", "", n) for n in scrape([fig])}
    documented = set(re.findall(r"``(mcp_[a-z_]+)", metrics.__doc__ or ""))
    counters = {"mcp_probe", "mcp_remediation_actions", "mcp_events_dropped"}
    assert names - counters <= documented
    assert {f"{name}_total" for name in counters} <= documented


def test_dropped_events_are_counted_by_reason() -> None:
    fig = metrics.MonitorFigures("ns", "m", "t")
    assert "mcp_events_dropped_total" not in scrape([fig])
    for reason in ("ProbeFailed", "ProbeFailed", "HealthUnhealthy"):
        fig.count_event_dropped(reason)
    labels = {"namespace": "ns", "monitor": "m", "target": "t"}
    assert sorted(scrape([fig])["mcp_events_dropped_total"], key=lambda s: s[0]["reason"]) == [
        ({**labels, "reason": "HealthUnhealthy"}, 1.0),
        ({**labels, "reason": "ProbeFailed"}, 2.0),
    ]


def test_the_text_is_exactly_what_prometheus_client_wrote() -> None:
    """``metrics_golden.txt`` was written by prometheus_client's ``generate_latest`` from
    these figures (every family, escaped labels, a histogram, endpoints, 1e21 values);
    the exposition writes the same bytes."""
    doc = health.parse(SEED_EXAMPLE)

    def observe(fig: metrics.MonitorFigures, outcome: str, latency: float, ok: bool) -> None:
        obs = Observation(outcome, latency, doc if ok else None, "")
        fig.observe(obs, judge(obs, Thresholds(), History()))

    a = metrics.MonitorFigures("ns", "m", "svc/x:8000")
    for latency in (12.0, 700.0, 30000.0):
        observe(a, "Ok", latency, True)
    observe(a, "Timeout", 1000.0, False)
    observe(a, "Ok", 3.25, True)
    a.count_remediation("restart", "ok")
    a.count_remediation("restart", "suppressed")
    a.count_event_dropped("HealthDegraded")
    b = metrics.MonitorFigures("other-ns", 'q"uo\\te', "http://x\ny")
    c = metrics.MonitorFigures("ns", "fan", "svc/fan:80")
    observe(c, "Ok", 1e-4, True)
    c.endpoints = (
        metrics.EndpointFigures("10.0.0.1:80", "pod-a", Health.HEALTHY, 2.5, 0),
        metrics.EndpointFigures("10.0.0.2:80", "pod-b", Health.UNKNOWN, 1e21, 4),
    )
    golden = (Path(__file__).parent / "metrics_golden.txt").read_text()
    assert metrics.exposition([a, b, c]).decode() == golden


def test_a_new_target_relabels_the_series() -> None:
    fig = observed()
    assert 'target="svc/x:8000"' in metrics.exposition([fig]).decode()
    fig.target = "svc/y:9000"
    text = metrics.exposition([fig]).decode()
    assert 'target="svc/y:9000"' in text and "svc/x:8000" not in text
