"""conclude(): one verdict → the status (when due), the Events, the remediation step's input."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from mcp_health_operator.core import events, status
from mcp_health_operator.core.conclude import Evidence, Memory, Report, conclude
from mcp_health_operator.core.judge import Health, History, Observation, Thresholds, judge
from mcp_health_operator.core.spec import RemediationSpec
from tests.unit.test_faults import RESTART
from tests.unit.test_judge import failed, ok

NOW = datetime(2026, 11, 30, 3, 0, 0, tzinfo=UTC)
HEALTHY = Memory(History(Health.HEALTHY, 0, 5), True, [])


def concluded(
    obs: Observation,
    memory: Memory = HEALTHY,
    *,
    due: bool = True,
    remediation: RemediationSpec | None = None,
    fields: dict[str, Any] | None = None,
    evidence_events: tuple[events.EventSpec, ...] = (),
) -> Report:
    verdict = judge(obs, Thresholds(), memory.history, failure_threshold=1)
    evidence = Evidence(
        obs,
        verdict,
        status.Identity("codebase-mcp", "2.0.0", "2025-06-18", "streamable-http"),
        endpoint="http://codebase-mcp.default.svc:8000/mcp",
        fields=fields or {},
        events=evidence_events,
    )
    keys: list[tuple[Any, ...]] = []

    def budget(key: tuple[Any, ...]) -> bool:
        keys.append(key)
        return due

    report = conclude(
        evidence,
        memory,
        thresholds=Thresholds(),
        remediation=remediation,
        fields={},
        target="svc/codebase-mcp:8000",
        generation=3,
        due=budget,
        now=NOW,
    )
    assert keys == [report.key]  # the budget is asked once, with the report's key
    return report


def test_a_steady_healthy_probe_not_due_builds_nothing_and_posts_nothing() -> None:
    report = concluded(ok(), due=False)
    assert report.status is None
    assert report.events == ()
    assert report.step is None
    assert report.history.health is Health.HEALTHY


def test_a_due_status_is_the_built_one_with_the_configured_generation() -> None:
    report = concluded(ok())
    assert report.status is not None
    assert report.status["health"] == "Healthy"
    assert report.status["observedGeneration"] == 3
    assert report.status["target"] == "svc/codebase-mcp:8000"
    assert report.status["endpoint"] == "http://codebase-mcp.default.svc:8000/mcp"
    assert status.significant(report.status, Thresholds()) == report.key


def test_a_failure_after_healthy_is_two_transitions_and_new_memory() -> None:
    report = concluded(failed("Unreachable", "connection refused"))
    assert [e.reason for e in report.events] == ["ProbeFailed", "HealthUnhealthy"]
    assert report.history.health is Health.UNHEALTHY
    assert report.reachable is False
    assert report.status is not None and report.status["health"] == "Unhealthy"


def test_the_endpoints_fields_and_events_go_with_the_monitors_own() -> None:
    endpoint_event = events.EventSpec(events.WARNING, "EndpointUnhealthy", "10.0.0.2 down")
    entries = [{"address": "10.0.0.2", "port": 8000, "health": "Unhealthy"}]
    report = concluded(
        failed("Unreachable"),
        fields={"endpoints": entries},
        evidence_events=(endpoint_event,),
    )
    assert report.events[-1] == endpoint_event
    assert report.status is not None and report.status["endpoints"] == entries


def test_a_remediating_monitor_gets_the_steps_input_with_the_pool_size() -> None:
    assert RESTART is not None
    report = concluded(ok({"connection_pool.total_connections": 20}), remediation=RESTART)
    assert report.step is not None
    assert (report.step.spec, report.step.health, report.step.pool_size) == (
        RESTART,
        Health.HEALTHY,
        20,
    )
    assert concluded(failed("Timeout"), remediation=RESTART).step is not None
    assert concluded(ok()).step is None
