"""Conditions: lastTransitionTime moves only on a status change; derived from a verdict."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from mcp_health_operator.core import conditions as cond
from mcp_health_operator.core.conditions import Condition
from mcp_health_operator.core.judge import Finding, Health, Reason, Severity, Verdict

T0 = datetime(2025, 10, 13, 10, 30, 45, 123000, tzinfo=UTC)
T1 = datetime(2025, 10, 13, 10, 31, 0, tzinfo=UTC)
T2 = datetime(2025, 10, 13, 11, 0, 0, tzinfo=UTC)


def test_timestamp_is_rfc3339_seconds_utc() -> None:
    assert cond.timestamp(T0) == "2025-10-13T10:30:45Z"


def test_first_set_stamps_time_and_generation() -> None:
    out = cond.set_condition(
        [], Condition("Healthy", "True", "AllChecksPassing", "ok"), now=T0, generation=1
    )
    assert out == [
        {
            "type": "Healthy",
            "status": "True",
            "reason": "AllChecksPassing",
            "message": "ok",
            "lastTransitionTime": "2025-10-13T10:30:45Z",
            "observedGeneration": 1,
        }
    ]


# id -> (old status, new status, whether lastTransitionTime moves)
TRANSITIONS: dict[str, tuple[str, str, bool]] = {
    "True -> True keeps": ("True", "True", False),
    "False -> False keeps": ("False", "False", False),
    "Unknown -> Unknown keeps": ("Unknown", "Unknown", False),
    "True -> False moves": ("True", "False", True),
    "False -> True moves": ("False", "True", True),
    "Unknown -> True moves": ("Unknown", "True", True),
    "True -> Unknown moves": ("True", "Unknown", True),
}


@pytest.mark.parametrize(("old", "new", "moves"), TRANSITIONS.values(), ids=TRANSITIONS.keys())
def test_last_transition_time_moves_only_on_status_change(old: Any, new: Any, moves: bool) -> None:
    first = cond.set_condition([], Condition("Degraded", old, "R0", "m0"), now=T0, generation=1)
    second = cond.set_condition(first, Condition("Degraded", new, "R1", "m1"), now=T1, generation=2)
    (entry,) = second
    assert entry["lastTransitionTime"] == cond.timestamp(T1 if moves else T0)
    # Refreshed on every set, status change or not.
    assert (entry["status"], entry["reason"], entry["message"]) == (new, "R1", "m1")
    assert entry["observedGeneration"] == 2


def test_time_kept_across_many_sets_then_moved_once() -> None:
    conditions: list[dict[str, Any]] = []
    for i, now in enumerate([T0, T1, T1, T2]):
        conditions = cond.set_condition(
            conditions,
            Condition("Reachable", "True", "ProbeSucceeded", f"probe {i}"),
            now=now,
            generation=1,
        )
    assert cond.get(conditions, "Reachable") == {
        "type": "Reachable",
        "status": "True",
        "reason": "ProbeSucceeded",
        "message": "probe 3",
        "lastTransitionTime": cond.timestamp(T0),
        "observedGeneration": 1,
    }
    conditions = cond.set_condition(
        conditions,
        Condition("Reachable", "False", "ProbeTimeout", "timed out"),
        now=T2,
        generation=1,
    )
    entry = cond.get(conditions, "Reachable")
    assert entry is not None and entry["lastTransitionTime"] == cond.timestamp(T2)


def test_without_generation_no_observed_generation_is_written() -> None:
    first = cond.set_condition([], Condition("Healthy", "True", "A", "m"), now=T0, generation=3)
    second = cond.set_condition(
        first, Condition("Healthy", "True", "A", "m"), now=T1, generation=None
    )
    assert "observedGeneration" not in second[0]
    assert second[0]["lastTransitionTime"] == cond.timestamp(T0)


def test_an_old_entry_without_a_time_gets_now() -> None:
    old = [{"type": "Healthy", "status": "True", "reason": "A", "message": "m"}]
    out = cond.set_condition(old, Condition("Healthy", "True", "A", "m"), now=T1, generation=1)
    assert out[0]["lastTransitionTime"] == cond.timestamp(T1)


def test_set_condition_returns_a_new_list_and_leaves_the_input_alone() -> None:
    old = cond.set_condition([], Condition("Healthy", "True", "A", "m"), now=T0, generation=1)
    snapshot = [dict(c) for c in old]
    new = cond.set_condition(old, Condition("Healthy", "False", "B", "n"), now=T1, generation=2)
    assert old == snapshot
    assert new is not old and new[0]["status"] == "False"


def test_order_is_reachable_healthy_degraded_then_others() -> None:
    conditions: list[dict[str, Any]] = []
    for type_ in ["Custom", "Degraded", "Healthy", "Reachable"]:
        conditions = cond.set_condition(
            conditions, Condition(type_, "True", "R", "m"), now=T0, generation=1
        )
    assert [c["type"] for c in conditions] == ["Reachable", "Healthy", "Degraded", "Custom"]
    # Setting one again neither duplicates it nor moves it.
    conditions = cond.set_condition(
        conditions, Condition("Healthy", "False", "R", "m"), now=T1, generation=1
    )
    assert [c["type"] for c in conditions] == ["Reachable", "Healthy", "Degraded", "Custom"]


def test_get_and_remove() -> None:
    conditions = cond.set_condition(
        [], Condition("Healthy", "True", "R", "m"), now=T0, generation=1
    )
    conditions = cond.set_condition(
        conditions, Condition("Degraded", "False", "R", "m"), now=T0, generation=1
    )
    assert cond.get(conditions, "Reachable") is None
    assert cond.remove(conditions, "Healthy") == [cond.get(conditions, "Degraded")]


# -- from_verdict ---------------------------------------------------------------------------

POOL_HIGH = Finding(Reason.POOL_UTILIZATION_HIGH, Severity.DEGRADED, "pool utilization 90% >= 80%")
MEMORY_HIGH = Finding(Reason.MEMORY_HIGH, Severity.DEGRADED, "memory 85% > 80%")
DB_DOWN = Finding(Reason.DATABASE_DISCONNECTED, Severity.UNHEALTHY, "database disconnected")
TIMEOUT = Finding(Reason.PROBE_TIMEOUT, Severity.UNHEALTHY, "no answer within 1s")


def verdict(health: Health, *findings: Finding, reachable: bool = True) -> Verdict:
    return Verdict(health, findings, 0, 0, reachable)


Row = tuple[str, str, str]  # status, reason, message

# id -> (verdict, Reachable, Healthy, Degraded)
FROM_VERDICT: dict[str, tuple[Verdict, Row, Row, Row]] = {
    "healthy": (
        verdict(Health.HEALTHY),
        ("True", "ProbeSucceeded", "health document read"),
        ("True", "AllChecksPassing", "all checks passing"),
        ("False", "Healthy", "all checks passing"),
    ),
    "degraded": (
        verdict(Health.DEGRADED, POOL_HIGH),
        ("True", "ProbeSucceeded", "health document read"),
        ("False", "PoolUtilizationHigh", "pool utilization 90% >= 80%"),
        ("True", "PoolUtilizationHigh", "pool utilization 90% >= 80%"),
    ),
    "degraded twice: first reason of the worst, messages joined": (
        verdict(Health.DEGRADED, POOL_HIGH, MEMORY_HIGH),
        ("True", "ProbeSucceeded", "health document read"),
        ("False", "PoolUtilizationHigh", "pool utilization 90% >= 80%; memory 85% > 80%"),
        ("True", "PoolUtilizationHigh", "pool utilization 90% >= 80%; memory 85% > 80%"),
    ),
    "unhealthy from the document: the worst reason wins": (
        verdict(Health.UNHEALTHY, MEMORY_HIGH, DB_DOWN),
        ("True", "ProbeSucceeded", "health document read"),
        ("False", "DatabaseDisconnected", "memory 85% > 80%; database disconnected"),
        ("False", "Unhealthy", "memory 85% > 80%; database disconnected"),
    ),
    "unhealthy and unreachable": (
        verdict(Health.UNHEALTHY, TIMEOUT, reachable=False),
        ("False", "ProbeTimeout", "no answer within 1s"),
        ("False", "ProbeTimeout", "no answer within 1s"),
        ("False", "Unhealthy", "no answer within 1s"),
    ),
    "unknown before any verdict": (
        verdict(Health.UNKNOWN),
        ("True", "ProbeSucceeded", "health document read"),
        ("Unknown", "AwaitingVerdict", "all checks passing"),
        ("Unknown", "AwaitingVerdict", "all checks passing"),
    ),
    "unknown while failures climb": (
        verdict(Health.UNKNOWN, TIMEOUT, reachable=False),
        ("False", "ProbeTimeout", "no answer within 1s"),
        ("Unknown", "ProbeTimeout", "no answer within 1s"),
        ("Unknown", "ProbeTimeout", "no answer within 1s"),
    ),
}


@pytest.mark.parametrize(
    ("v", "reachable", "healthy", "degraded"), FROM_VERDICT.values(), ids=FROM_VERDICT.keys()
)
def test_from_verdict(v: Verdict, reachable: Row, healthy: Row, degraded: Row) -> None:
    out = cond.from_verdict(v)
    assert [c.type for c in out] == ["Reachable", "Healthy", "Degraded"]
    assert [(c.status, c.reason, c.message) for c in out] == [reachable, healthy, degraded]


def test_healthy_condition_reason_does_not_claim_all_checks_pass_when_a_probe_failed() -> None:
    # failureThreshold=3, first timeout: health is held Healthy, but the probe failed.
    (_, healthy, _) = cond.from_verdict(verdict(Health.HEALTHY, TIMEOUT, reachable=False))
    assert healthy.status == "True"
    assert healthy.reason != "AllChecksPassing", healthy


def test_from_verdict_through_set_condition_moves_only_what_changed() -> None:
    conditions: list[dict[str, Any]] = []
    for c in cond.from_verdict(verdict(Health.HEALTHY)):
        conditions = cond.set_condition(conditions, c, now=T0, generation=1)
    for c in cond.from_verdict(verdict(Health.DEGRADED, POOL_HIGH)):
        conditions = cond.set_condition(conditions, c, now=T1, generation=1)
    times = {c["type"]: c["lastTransitionTime"] for c in conditions}
    assert times == {
        "Reachable": cond.timestamp(T0),  # still True
        "Healthy": cond.timestamp(T1),  # True -> False
        "Degraded": cond.timestamp(T1),  # False -> True
    }


def test_refused() -> None:
    out = cond.refused("TargetNotAllowed", "URL targets are not allowed")
    assert [(c.type, c.status, c.reason, c.message) for c in out] == [
        ("Reachable", "False", "TargetNotAllowed", "URL targets are not allowed"),
        ("Healthy", "Unknown", "TargetNotAllowed", "URL targets are not allowed"),
        ("Degraded", "Unknown", "TargetNotAllowed", "URL targets are not allowed"),
    ]
