"""The status object, what counts as a significant change, and the write budget."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from mcp_health_operator.core import conditions as cond
from mcp_health_operator.core import status
from mcp_health_operator.core.judge import Health, History, Observation, Thresholds, Verdict, judge
from tests.unit.test_judge import _DELETE, interpret_pool_utilization, ok, seed_document

T0 = datetime(2025, 10, 13, 10, 30, 45, tzinfo=UTC)
IDENTITY = status.Identity("codebase-mcp", "2.0.0", "2025-06-18", "streamable-http")
NO_FIGURES = (
    "reportedStatus",
    "databaseStatus",
    "databaseLatencyMs",
    "memoryUtilization",
    "pool",
    "checks",
)


def built(
    obs: Observation,
    *,
    history: History | None = None,
    failure_threshold: int = 3,
    identity: status.Identity | None = IDENTITY,
    now: datetime = T0,
    generation: int | None = 4,
    previous: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    verdict = judge(obs, Thresholds(), history or History(), failure_threshold=failure_threshold)
    return build_from(
        verdict, obs, identity=identity, now=now, generation=generation, previous=previous
    )


def build_from(
    verdict: Verdict,
    obs: Observation,
    *,
    identity: status.Identity | None = IDENTITY,
    now: datetime = T0,
    generation: int | None = 4,
    previous: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    return status.build(
        verdict=verdict,
        obs=obs,
        thresholds=Thresholds(),
        identity=identity,
        target="svc/codebase-mcp:8000",
        endpoint="http://codebase-mcp.default.svc:8000/mcp",
        generation=generation,
        previous_conditions=previous or [],
        now=now,
    )


# -- build ----------------------------------------------------------------------------------


def test_build_from_the_guide_example() -> None:
    s = built(ok(latency_ms=12.34))
    assert s["health"] == "Healthy"
    assert s["reason"] == "AllChecksPassing" and s["reasons"] == []
    assert s["message"] == "all checks passing"
    assert (s["target"], s["endpoint"]) == (
        "svc/codebase-mcp:8000",
        "http://codebase-mcp.default.svc:8000/mcp",
    )
    assert s["lastProbeTime"] == "2025-10-13T10:30:45Z"
    assert s["lastProbeOutcome"] == "Ok"
    assert (s["latencyMs"], s["latency"]) == (12.3, "12ms")
    assert (s["consecutiveFailures"], s["consecutiveSuccesses"]) == (0, 1)
    assert s["observedGeneration"] == 4
    assert s["reportedStatus"] == "healthy"
    assert s["databaseStatus"] == "connected"
    assert s["databaseLatencyMs"] == 12.5
    assert s["memoryUtilization"] == 0.119
    assert s["pool"] == {
        "total": 10,
        "active": 3,
        "idle": 7,
        "waiting": 0,
        "utilization": 0.3,
        "percent": "30%",
    }
    assert s["checks"] == {
        "database": {
            "status": "pass",
            "message": "Database responding normally",
            "latencyMs": 12.5,
        },
        "memory": {"status": "pass"},
        "disk": {"status": "pass"},
    }
    assert s["server"] == {
        "name": "codebase-mcp",
        "version": "2.0.0",
        "protocolVersion": "2025-06-18",
        "transport": "streamable-http",
        "uptimeSeconds": 3672.5,
    }
    assert [(c["type"], c["status"]) for c in s["conditions"]] == [
        ("Reachable", "True"),
        ("Healthy", "True"),
        ("Degraded", "False"),
    ]
    assert all(c["observedGeneration"] == 4 for c in s["conditions"])


PERCENT = {
    "0%": (0.0, "0%"),
    "30%": (0.3, "30%"),
    "80%": (0.8, "80%"),
    "95.6% rounds up": (0.956, "96%"),
    "100%": (1.0, "100%"),
}


@pytest.mark.parametrize(("utilization", "percent"), PERCENT.values(), ids=PERCENT.keys())
def test_pool_percent_string(utilization: float, percent: str) -> None:
    s = built(ok({"connection_pool.pool_utilization": utilization}))
    assert s["pool"]["percent"] == percent
    assert s["pool"]["utilization"] == utilization


LATENCY = {
    "0 ms": (0.0, "0ms", 0.0),
    "12.44 ms": (12.44, "12ms", 12.4),
    "499.96 ms": (499.96, "500ms", 500.0),
    "1234.5 ms": (1234.56, "1235ms", 1234.6),
}


@pytest.mark.parametrize(("latency_ms", "text", "number"), LATENCY.values(), ids=LATENCY.keys())
def test_latency_string_and_number(latency_ms: float, text: str, number: float) -> None:
    s = built(ok(latency_ms=latency_ms))
    assert (s["latency"], s["latencyMs"]) == (text, number)


def test_reason_joins_every_reason() -> None:
    s = built(ok({"connection_pool.pool_utilization": 0.85, "checks.memory.percentage": 90.0}))
    assert s["health"] == "Degraded"
    assert s["reason"] == "PoolUtilizationHigh,MemoryHigh"
    assert s["reasons"] == ["PoolUtilizationHigh", "MemoryHigh"]
    assert s["message"] == "pool utilization 85% >= 80%; memory 90% > 80%"


def test_figures_are_cleared_when_the_probe_read_no_document() -> None:
    s = built(
        Observation("Timeout", 1000.0, None, "no answer within 1s"),
        history=History(),
        identity=None,
    )
    for key in NO_FIGURES:
        assert key in s and s[key] is None, key  # None: a merge patch removes the stale value
    assert "server" not in s
    assert s["lastProbeOutcome"] == "Timeout"
    assert s["reasons"] == ["ProbeTimeout"]
    assert s["health"] == "Unknown"
    assert cond.get(s["conditions"], "Reachable") == {
        "type": "Reachable",
        "status": "False",
        "reason": "ProbeTimeout",
        "message": "no answer within 1s",
        "lastTransitionTime": "2025-10-13T10:30:45Z",
        "observedGeneration": 4,
    }


def test_server_without_a_document_has_no_uptime() -> None:
    s = built(Observation("Unauthorized", 20.0, None, "401"))
    assert s["server"] == {
        "name": "codebase-mcp",
        "version": "2.0.0",
        "protocolVersion": "2025-06-18",
        "transport": "streamable-http",
    }


def test_document_without_pool_or_checks() -> None:
    s = built(Observation("Ok", 5.0, seed_document({"connection_pool": None, "checks": {}})))
    assert s["pool"] is None and s["checks"] == {}
    assert s["memoryUtilization"] is None and s["databaseLatencyMs"] is None
    assert s["databaseStatus"] == "connected"


def test_previous_conditions_keep_their_transition_times() -> None:
    first = built(ok(), history=History(), now=T0)
    later = T0 + timedelta(minutes=5)
    second = built(
        ok({"connection_pool.pool_utilization": 0.9}),
        history=History(Health.HEALTHY),
        now=later,
        previous=first["conditions"],
    )
    times = {c["type"]: c["lastTransitionTime"] for c in second["conditions"]}
    assert times == {
        "Reachable": cond.timestamp(T0),
        "Healthy": cond.timestamp(later),
        "Degraded": cond.timestamp(later),
    }


def test_refused_status() -> None:
    s = status.refused_status(
        reason="TargetNotAllowed",
        message="URL targets are not allowed",
        target="https://example.com/mcp",
        generation=2,
        previous_conditions=[],
        now=T0,
    )
    assert {k: v for k, v in s.items() if k != "conditions"} == {
        "health": "Unknown",
        "reason": "TargetNotAllowed",
        "reasons": ["TargetNotAllowed"],
        "message": "URL targets are not allowed",
        "target": "https://example.com/mcp",
        "observedGeneration": 2,
    }
    assert [(c["type"], c["status"], c["reason"]) for c in s["conditions"]] == [
        ("Reachable", "False", "TargetNotAllowed"),
        ("Healthy", "Unknown", "TargetNotAllowed"),
        ("Degraded", "Unknown", "TargetNotAllowed"),
    ]


# -- pool_band ------------------------------------------------------------------------------

POOL_BANDS: dict[str, tuple[float | None, Thresholds, str]] = {
    "no pool": (None, Thresholds(), "none"),
    "0.00": (0.0, Thresholds(), "ok"),
    "0.49": (0.49, Thresholds(), "ok"),
    "0.79": (0.79, Thresholds(), "ok"),
    "0.80 boundary": (0.80, Thresholds(), "degraded"),
    "0.9499": (0.9499, Thresholds(), "degraded"),
    "0.95 boundary": (0.95, Thresholds(), "unhealthy"),
    "1.00": (1.0, Thresholds(), "unhealthy"),
    "custom 0.6 of 0.5/0.7": (0.6, Thresholds(pool_degraded=0.5, pool_unhealthy=0.7), "degraded"),
    "custom 0.7 of 0.5/0.7": (0.7, Thresholds(pool_degraded=0.5, pool_unhealthy=0.7), "unhealthy"),
}


@pytest.mark.parametrize(("utilization", "t", "band"), POOL_BANDS.values(), ids=POOL_BANDS.keys())
def test_pool_band(utilization: float | None, t: Thresholds, band: str) -> None:
    assert status.pool_band(utilization, t) == band


@pytest.mark.parametrize("utilization", [0.0, 0.3, 0.5, 0.79, 0.8, 0.9, 0.95, 1.0])
def test_pool_band_agrees_with_the_guide(utilization: float) -> None:
    guide = interpret_pool_utilization(utilization).split(" ")[0]
    expected = {"healthy": "ok", "normal": "ok", "warning": "degraded", "critical": "unhealthy"}
    assert status.pool_band(utilization, Thresholds()) == expected[guide]


# -- significant ----------------------------------------------------------------------------

BASE = built(ok(), history=History(Health.HEALTHY))


def _with(path: str, value: object) -> Callable[[dict[str, Any]], dict[str, Any]]:
    def change(s: dict[str, Any]) -> dict[str, Any]:
        out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in s.items()}
        node = out
        *parents, last = path.split(".")
        for key in parents:
            node[key] = dict(node[key])
            node = node[key]
        node[last] = value
        return out

    return change


SIGNIFICANT: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "health": _with("health", "Degraded"),
    "reasons": _with("reasons", ["ProbeLatencyHigh"]),
    "reported status": _with("reportedStatus", "degraded"),
    "database status": _with("databaseStatus", "degraded"),
    "pool band ok -> degraded": _with("pool.utilization", 0.8),
    "pool band -> none": _with("pool", None),
    "observed generation": _with("observedGeneration", 5),
    "probe outcome": _with("lastProbeOutcome", "Timeout"),
    "server version": _with("server.version", "2.0.1"),
    "check status": _with("checks.disk", {"status": "warn"}),
    "remediation": _with("remediation", {"action": "restart"}),
}


@pytest.mark.parametrize("change", SIGNIFICANT.values(), ids=SIGNIFICANT.keys())
def test_significant_changes(change: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
    changed = change(BASE)
    assert changed != BASE
    assert status.significant(changed, Thresholds()) != status.significant(BASE, Thresholds())


INSIGNIFICANT: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "latency": lambda s: _with("latency", "480ms")(_with("latencyMs", 480.0)(s)),
    "last probe time": _with("lastProbeTime", "2025-10-13T10:35:45Z"),
    "message": _with("message", "anything"),
    "pool utilization within its band": _with("pool.utilization", 0.79),
    "pool counts": _with("pool.active", 7),
    "database latency figure": _with("databaseLatencyMs", 80.0),
    "memory figure": _with("memoryUtilization", 0.5),
    "counters": _with("consecutiveSuccesses", 40),
    "uptime": _with("server.uptimeSeconds", 9999.0),
}


@pytest.mark.parametrize("change", INSIGNIFICANT.values(), ids=INSIGNIFICANT.keys())
def test_insignificant_changes(change: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
    changed = change(BASE)
    assert changed != BASE
    assert status.significant(changed, Thresholds()) == status.significant(BASE, Thresholds())


def test_significant_from_real_builds() -> None:
    def key(obs: Observation, **kw: Any) -> Any:
        return status.significant(built(obs, history=History(Health.HEALTHY), **kw), Thresholds())

    base = key(ok(latency_ms=12.0))
    # Only latency and time differ: no write needed.
    assert key(ok(latency_ms=480.0), now=T0 + timedelta(seconds=5)) == base
    # Pool moves inside its band: no write.
    assert key(ok({"connection_pool.pool_utilization": 0.6})) == base
    # Verdict, reasons, database status or pool band change: write.
    assert key(ok({"connection_pool.pool_utilization": 0.85})) != base
    assert key(ok(latency_ms=600.0)) != base  # ProbeLatencyHigh
    assert key(ok({"database_status": "degraded"})) != base


def test_significant_when_only_health_changes() -> None:
    # Second and third bad probe: same reasons and figures, but the third flips health.
    bad = ok({"database_status": "disconnected"})
    healthy = History(Health.HEALTHY)
    second = judge(bad, Thresholds(), History(healthy.health, 1, 0))
    third = judge(bad, Thresholds(), History(healthy.health, 2, 0))
    assert (second.health, third.health) == (Health.HEALTHY, Health.UNHEALTHY)
    assert second.reasons == third.reasons
    k2 = status.significant(build_from(second, bad), Thresholds())
    k3 = status.significant(build_from(third, bad), Thresholds())
    assert k2 != k3


@pytest.mark.parametrize(
    "obs",
    [
        ok(),
        ok(latency_ms=600.0),
        ok({"connection_pool.pool_utilization": 0.79995}),  # rounds into the degraded band
        ok({"connection_pool.pool_utilization": 0.97, "database_status": "degraded"}),
        ok({"checks.database.status": "fail", "status": "unhealthy"}),
        ok({"connection_pool": _DELETE, "checks": {}}),
        Observation("Timeout", 1000.0, None, "no answer within 1s"),
        Observation("Unauthorized", 3.0, None, "HTTP 401"),
    ],
    ids=repr,
)
@pytest.mark.parametrize("identity", [IDENTITY, None])
@pytest.mark.parametrize(
    "extra",
    [
        {},
        {"remediation": {"lastAction": "restart", "actionsInWindow": 1}, "unhealthySince": None},
        {
            "endpoints": [
                {"address": "10.0.0.7", "port": 8000, "pod": "p-0", "health": "Healthy"},
                {"address": "10.0.0.8", "port": 8000, "pod": "p-1", "health": "Unhealthy"},
            ],
            "endpointSummary": {"healthy": 1, "unhealthy": 1},
        },
    ],
    ids=repr,
)
def test_key_is_the_significant_part_of_the_built_status(
    obs: Observation, identity: status.Identity | None, extra: dict[str, Any]
) -> None:
    for history in (History(), History(Health.HEALTHY), History(Health.UNHEALTHY, 3, 0)):
        verdict = judge(obs, Thresholds(), history, failure_threshold=3)
        full = build_from(verdict, obs, identity=identity) | extra
        expected = status.significant(full, Thresholds())
        got = status.key(
            verdict=verdict,
            obs=obs,
            thresholds=Thresholds(),
            identity=identity,
            generation=4,
            extra=extra,
        )
        assert got == expected


# -- WriteBudget ----------------------------------------------------------------------------


def simulate(keys: Sequence[str], *, period_s: float, heartbeat_s: float) -> list[float]:
    """One probe per ``period_s`` with these keys; the times at which status is written."""
    budget = status.WriteBudget(heartbeat_s)
    writes = []
    for i, k in enumerate(keys):
        now = i * period_s
        key = (k,)
        if budget.due(key, now):
            budget.written(key, now)
            writes.append(now)
    return writes


# id -> (keys, expected write times) at 5 s probes, heartbeat 300 s
BUDGET: dict[str, tuple[list[str], list[float]]] = {
    "60 steady probes (t=0..295): one write": (["a"] * 60, [0.0]),
    "61 steady probes (t=0..300): heartbeat at 300": (["a"] * 61, [0.0, 300.0]),
    "one hour steady: one write per heartbeat": (
        ["a"] * 720,
        [300.0 * i for i in range(12)],
    ),
    "a change is written at once and restarts the heartbeat": (
        ["a"] * 10 + ["b"] * 70,
        [0.0, 50.0, 350.0],
    ),
    "a change and back: both written": (["a"] * 3 + ["b"] + ["a"] * 3, [0.0, 15.0, 20.0]),
    "flapping: every probe written": (["a", "b"] * 5, [5.0 * i for i in range(10)]),
}


@pytest.mark.parametrize(("keys", "writes"), BUDGET.values(), ids=BUDGET.keys())
def test_write_budget(keys: list[str], writes: list[float]) -> None:
    assert simulate(keys, period_s=5.0, heartbeat_s=300.0) == writes


def test_sixty_probes_with_a_real_key_write_once() -> None:
    budget = status.WriteBudget(300.0)
    writes = 0
    for i in range(60):
        now = T0 + timedelta(seconds=5 * i)
        s = built(ok(latency_ms=10.0 + i), history=History(Health.HEALTHY), now=now)
        key = status.significant(s, Thresholds())
        if budget.due(key, 5.0 * i):
            budget.written(key, 5.0 * i)
            writes += 1
    assert writes == 1


def test_due_does_not_consume_the_budget() -> None:
    budget = status.WriteBudget(300.0)
    assert budget.due(("a",), 0.0) and budget.due(("a",), 1.0)  # a failed write retries
    budget.written(("a",), 1.0)
    assert not budget.due(("a",), 2.0)
    assert budget.due(("a",), 301.0)


def test_forget_makes_the_next_probe_write() -> None:
    budget = status.WriteBudget(300.0)
    budget.written(("a",), 0.0)
    assert not budget.due(("a",), 5.0)
    budget.forget()
    assert budget.due(("a",), 5.0)
