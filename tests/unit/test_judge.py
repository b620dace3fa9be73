"""The judge: the guide's status table, its pool bands, probe failures, kubelet thresholds."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from mcp_health_operator.core import health
from mcp_health_operator.core.judge import (
    Health,
    History,
    Observation,
    Reason,
    Severity,
    Thresholds,
    Verdict,
    assess,
    judge,
)
from tests.unit.test_health_document import SEED_EXAMPLE

H, D, U, UNKNOWN = Health.HEALTHY, Health.DEGRADED, Health.UNHEALTHY, Health.UNKNOWN
_DELETE = object()


def seed_document(changes: Mapping[str, object] | None = None) -> health.HealthCheckResponse:
    """The guide's example document with dotted-path fields replaced (or deleted)."""
    raw: dict[str, Any] = json.loads(SEED_EXAMPLE)
    for path, value in (changes or {}).items():
        node = raw
        *parents, last = path.split(".")
        for key in parents:
            node = node.setdefault(key, {})
        if value is _DELETE:
            del node[last]
        else:
            node[last] = value
    return health.from_object(raw)


def ok(changes: Mapping[str, object] | None = None, *, latency_ms: float = 12.0) -> Observation:
    return Observation("Ok", latency_ms, seed_document(changes))


def failed(outcome: str, message: str = "") -> Observation:
    return Observation(outcome, 1000.0, None, message)


def judged_once(obs: Observation, thresholds: Thresholds | None = None) -> Verdict:
    """One probe from a Healthy history with thresholds of 1: health == what the probe says."""
    return judge(
        obs,
        thresholds or Thresholds(),
        History(H),
        failure_threshold=1,
        success_threshold=1,
    )


# -- the guide's status table ---------------------------------------------------------------

# id -> (changes to the seed example, expected health, expected reasons in order)
STATUS_TABLE: dict[str, tuple[dict[str, object], Health, tuple[str, ...]]] = {
    # healthy: database connected, pool < 80%, all checks passing
    "healthy: the guide's example as is": ({}, H, ()),
    "healthy: pool 79%": ({"connection_pool.pool_utilization": 0.79}, H, ()),
    "healthy: memory exactly 80% is not above 80%": ({"checks.memory.percentage": 80.0}, H, ()),
    "healthy: database exactly 100 ms is not slow": ({"checks.database.latency_ms": 100.0}, H, ()),
    # degraded: pool 80-95%, memory > 80%, slow database > 100 ms
    "degraded: pool exactly 80%": (
        {"connection_pool.pool_utilization": 0.80},
        D,
        ("PoolUtilizationHigh",),
    ),
    "degraded: pool 90%": ({"connection_pool.pool_utilization": 0.90}, D, ("PoolUtilizationHigh",)),
    "degraded: pool 94.9%": (
        {"connection_pool.pool_utilization": 0.949},
        D,
        ("PoolUtilizationHigh",),
    ),
    "degraded: memory 81%": ({"checks.memory.percentage": 81.0}, D, ("MemoryHigh",)),
    "degraded: memory exactly 95% is not above 95%": (
        {"checks.memory.percentage": 95.0},
        D,
        ("MemoryHigh",),
    ),
    "degraded: memory 1700/2048 MB without percentage": (
        {"checks.memory.percentage": _DELETE, "checks.memory.usage_mb": 1700},
        D,
        ("MemoryHigh",),
    ),
    "degraded: slow database 101 ms": (
        {"checks.database.latency_ms": 101.0},
        D,
        ("DatabaseLatencyHigh",),
    ),
    "degraded: database status degraded": (
        {"database_status": "degraded"},
        D,
        ("DatabaseDegraded",),
    ),
    # unhealthy: database disconnected, pool exhausted, memory critical
    "unhealthy: database disconnected": (
        {"database_status": "disconnected"},
        U,
        ("DatabaseDisconnected",),
    ),
    "unhealthy: database disconnected, its failing check not repeated": (
        {"database_status": "disconnected", "checks.database.status": "fail"},
        U,
        ("DatabaseDisconnected",),
    ),
    "unhealthy: pool exactly 95%": (
        {"connection_pool.pool_utilization": 0.95},
        U,
        ("PoolExhausted",),
    ),
    "unhealthy: pool 100%": ({"connection_pool.pool_utilization": 1.0}, U, ("PoolExhausted",)),
    "unhealthy: memory 96%": ({"checks.memory.percentage": 96.0}, U, ("MemoryCritical",)),
    "unhealthy: memory 2000/2048 MB without percentage": (
        {"checks.memory.percentage": _DELETE, "checks.memory.usage_mb": 2000},
        U,
        ("MemoryCritical",),
    ),
    # several at once: worst of, every reason listed
    "worst of: slow database and pool 85% and memory 90%": (
        {
            "checks.database.latency_ms": 250.0,
            "connection_pool.pool_utilization": 0.85,
            "checks.memory.percentage": 90.0,
        },
        D,
        ("DatabaseLatencyHigh", "PoolUtilizationHigh", "MemoryHigh"),
    ),
    "worst of: disconnected database beats a busy pool": (
        {"database_status": "disconnected", "connection_pool.pool_utilization": 0.85},
        U,
        ("DatabaseDisconnected", "PoolUtilizationHigh"),
    ),
}


@pytest.mark.parametrize(
    ("changes", "expected", "reasons"), STATUS_TABLE.values(), ids=STATUS_TABLE.keys()
)
def test_guide_status_table(
    changes: dict[str, object], expected: Health, reasons: tuple[str, ...]
) -> None:
    verdict = judged_once(ok(changes))
    assert verdict.instant is expected
    assert verdict.health is expected
    assert verdict.reasons == reasons
    assert verdict.reachable


def test_reasons_are_machine_readable_and_messages_carry_the_figures() -> None:
    verdict = judged_once(
        ok(
            {
                "checks.database.latency_ms": 250.0,
                "connection_pool.pool_utilization": 0.85,
                "checks.memory.percentage": 90.0,
            }
        )
    )
    assert verdict.message == (
        "database latency 250 ms > 100 ms; pool utilization 85% >= 80%; memory 90% > 80%"
    )
    assert all(f.severity is Severity.DEGRADED for f in verdict.findings)


# -- the guide's interpret_pool_utilization -------------------------------------------------


def interpret_pool_utilization(utilization: float) -> str:
    """The guide's function, verbatim."""
    if utilization < 0.5:
        return "healthy - low utilization"
    elif utilization < 0.8:
        return "normal - moderate utilization"
    elif utilization < 0.95:
        return "warning - high utilization"
    else:
        return "critical - pool exhausted"


_BAND_HEALTH = {"healthy": H, "normal": H, "warning": D, "critical": U}

# id -> (utilization, the guide's band word, expected reasons)
POOL_BANDS: dict[str, tuple[float, str, tuple[str, ...]]] = {
    "0.00 healthy - low": (0.0, "healthy", ()),
    "0.30 healthy - low": (0.3, "healthy", ()),
    "0.4999 healthy - low": (0.4999, "healthy", ()),
    "0.50 normal - moderate (boundary)": (0.5, "normal", ()),
    "0.79 normal - moderate": (0.79, "normal", ()),
    "0.7999 normal - moderate": (0.7999, "normal", ()),
    "0.80 warning - high (boundary)": (0.80, "warning", ("PoolUtilizationHigh",)),
    "0.90 warning - high": (0.90, "warning", ("PoolUtilizationHigh",)),
    "0.9499 warning - high": (0.9499, "warning", ("PoolUtilizationHigh",)),
    "0.95 critical - exhausted (boundary)": (0.95, "critical", ("PoolExhausted",)),
    "0.99 critical - exhausted": (0.99, "critical", ("PoolExhausted",)),
    "1.00 critical - exhausted": (1.0, "critical", ("PoolExhausted",)),
}


@pytest.mark.parametrize(
    ("utilization", "band", "reasons"), POOL_BANDS.values(), ids=POOL_BANDS.keys()
)
def test_pool_bands_match_the_guide(
    utilization: float, band: str, reasons: tuple[str, ...]
) -> None:
    assert interpret_pool_utilization(utilization).startswith(band)
    verdict = judged_once(ok({"connection_pool.pool_utilization": utilization}))
    assert verdict.health is _BAND_HEALTH[band]
    assert verdict.reasons == reasons


# -- probe latency, checks, server-reported status ------------------------------------------

# id -> (changes, probe latency ms, expected health, expected reasons)
DOCUMENT_CASES: dict[str, tuple[dict[str, object], float, Health, tuple[str, ...]]] = {
    "probe latency exactly 500 ms": ({}, 500.0, H, ()),
    "probe latency 501 ms": ({}, 501.0, D, ("ProbeLatencyHigh",)),
    "probe latency 5 s is slow, not down": ({}, 5000.0, D, ("ProbeLatencyHigh",)),
    "check disk fail": ({"checks.disk.status": "fail"}, 12.0, U, ("CheckFailed",)),
    "check disk warn": ({"checks.disk.status": "warn"}, 12.0, D, ("CheckWarning",)),
    "check database fail while connected": (
        {"checks.database.status": "fail"},
        12.0,
        U,
        ("CheckFailed",),
    ),
    "an extra check of the server's own fails": (
        {"checks.cache": {"status": "fail", "message": "redis down"}},
        12.0,
        U,
        ("CheckFailed",),
    ),
    "checks reported in name order": (
        {"checks.memory.status": "warn", "checks.disk.status": "fail"},
        12.0,
        U,
        ("CheckFailed", "CheckWarning"),
    ),
    "server reports healthy": ({"status": "healthy"}, 12.0, H, ()),
    "server reports degraded": ({"status": "degraded"}, 12.0, D, ("ServerReportedDegraded",)),
    "server reports unhealthy": ({"status": "unhealthy"}, 12.0, U, ("ServerReportedUnhealthy",)),
    "server says healthy but the pool is exhausted": (
        {"status": "healthy", "connection_pool.pool_utilization": 0.97},
        12.0,
        U,
        ("PoolExhausted",),
    ),
    "server says degraded, figures say unhealthy": (
        {"status": "degraded", "checks.memory.percentage": 99.0},
        12.0,
        U,
        ("ServerReportedDegraded", "MemoryCritical"),
    ),
    "server says unhealthy, slow probe too": (
        {"status": "unhealthy"},
        800.0,
        U,
        ("ServerReportedUnhealthy", "ProbeLatencyHigh"),
    ),
}


@pytest.mark.parametrize(
    ("changes", "latency_ms", "expected", "reasons"),
    DOCUMENT_CASES.values(),
    ids=DOCUMENT_CASES.keys(),
)
def test_document_and_latency_findings(
    changes: dict[str, object], latency_ms: float, expected: Health, reasons: tuple[str, ...]
) -> None:
    verdict = judged_once(ok(changes, latency_ms=latency_ms))
    assert verdict.health is expected
    assert verdict.reasons == reasons


def test_finding_messages_name_the_check_and_its_message() -> None:
    verdict = judged_once(
        ok({"checks.disk.status": "fail", "checks.disk.message": "disk full"}, latency_ms=612.4)
    )
    assert verdict.message == "check disk failed: disk full; probe took 612 ms > 500 ms"


def test_minimal_document_has_nothing_to_judge_but_its_status() -> None:
    obs = Observation("Ok", 3.0, health.parse('{"status": "healthy"}'))
    verdict = judged_once(obs)
    assert verdict.health is H and verdict.findings == () and verdict.reachable


def test_ok_without_a_document_is_an_invalid_document_failure() -> None:
    a = assess(Observation("Ok", 3.0, None), Thresholds())
    assert a.severity is Severity.UNHEALTHY
    assert a.counts_as == "failure" and not a.reachable
    assert [f.reason for f in a.findings] == [Reason.INVALID_HEALTH_DOCUMENT]


# -- probe failures -------------------------------------------------------------------------

# outcome -> (reason, what this probe alone says, how it counts, server reachable)
PROBE_FAILURES: dict[str, tuple[str, Health, str, bool]] = {
    "Timeout": ("ProbeTimeout", U, "failure", False),
    "Unreachable": ("TargetUnreachable", U, "failure", False),
    "InvalidDocument": ("InvalidHealthDocument", U, "failure", False),
    "ResourceNotFound": ("HealthResourceNotFound", U, "failure", False),
    "ProtocolError": ("ProtocolError", U, "failure", False),
    "Unauthorized": ("Unauthorized", D, "neutral", False),
    # A server asking us to back off is up and answering.
    "RateLimited": ("RateLimited", H, "neutral", True),
}


@pytest.mark.parametrize(
    ("outcome", "reason", "instant", "counts_as", "reachable"),
    [(o, *v) for o, v in PROBE_FAILURES.items()],
    ids=PROBE_FAILURES.keys(),
)
def test_probe_failure_outcomes_map_to_reasons(
    outcome: str, reason: str, instant: Health, counts_as: str, reachable: bool
) -> None:
    a = assess(failed(outcome, f"{outcome} details"), Thresholds())
    assert a.counts_as == counts_as
    assert a.reachable is reachable
    assert [(f.reason.value, f.message) for f in a.findings] == [(reason, f"{outcome} details")]
    verdict = judge(failed(outcome), Thresholds(), History(H, 0, 5), failure_threshold=1)
    assert verdict.instant is instant
    assert verdict.reasons == (reason,)
    assert verdict.message == outcome  # no message: the outcome stands in
    assert verdict.reachable is reachable


# -- kubelet threshold semantics ------------------------------------------------------------

STEPS: dict[str, Observation] = {
    "ok": ok(),
    "deg": ok({"connection_pool.pool_utilization": 0.9}),
    "bad": ok({"database_status": "disconnected"}),
    "timeout": failed("Timeout"),
    "unreachable": failed("Unreachable"),
    "invalid": failed("InvalidDocument"),
    "401": failed("Unauthorized"),
    "429": failed("RateLimited"),
}


def run(
    steps: Sequence[str],
    start: History,
    *,
    failure_threshold: int,
    success_threshold: int,
) -> list[Verdict]:
    history, verdicts = start, []
    for step in steps:
        verdict = judge(
            STEPS[step],
            Thresholds(),
            history,
            failure_threshold=failure_threshold,
            success_threshold=success_threshold,
        )
        verdicts.append(verdict)
        history = verdict.history()
    return verdicts


# id -> (start, failureThreshold, successThreshold, steps, health after each step)
SEQUENCES: dict[str, tuple[History, int, int, list[str], list[Health]]] = {
    "3 bad probes turn Unhealthy on the third": (
        History(H),
        3,
        1,
        ["bad", "bad", "bad"],
        [H, H, U],
    ),
    "a good probe in between resets the count": (
        History(H),
        3,
        1,
        ["bad", "bad", "ok", "bad", "bad", "bad"],
        [H, H, H, H, H, U],
    ),
    "a degraded probe in between resets the count too": (
        History(H),
        3,
        1,
        ["bad", "bad", "deg", "bad", "bad", "bad"],
        [H, H, D, D, D, U],
    ),
    "failure kinds count together": (
        History(H),
        3,
        1,
        ["timeout", "unreachable", "invalid"],
        [H, H, U],
    ),
    "failureThreshold 1 flips at once": (History(H), 1, 1, ["timeout"], [U]),
    "failureThreshold 5 needs five": (
        History(H),
        5,
        1,
        ["bad"] * 5,
        [H, H, H, H, U],
    ),
    "Degraded holds while failures stay below the threshold": (
        History(D),
        3,
        1,
        ["timeout", "timeout", "timeout"],
        [D, D, U],
    ),
    "successThreshold 2 needs two good probes to leave Unhealthy": (
        History(U, 3, 0),
        3,
        2,
        ["ok", "ok"],
        [U, H],
    ),
    "a bad probe between good ones restarts the climb back": (
        History(U, 3, 0),
        3,
        2,
        ["ok", "bad", "ok", "ok"],
        [U, U, U, H],
    ),
    "successThreshold 1 leaves Unhealthy at once": (History(U, 3, 0), 3, 1, ["ok"], [H]),
    "degraded probes are successes on the way out of Unhealthy": (
        History(U, 3, 0),
        3,
        2,
        ["deg", "deg"],
        [U, D],
    ),
    "Degraded needs no threshold": (History(H), 3, 2, ["deg"], [D]),
    "leaving Degraded needs no threshold": (History(D), 3, 3, ["ok"], [H]),
    "Unknown start: bad probes hold Unknown until the threshold": (
        History(),
        3,
        1,
        ["bad", "bad", "bad"],
        [UNKNOWN, UNKNOWN, U],
    ),
    "Unknown start: successThreshold 2 needs two good probes": (
        History(),
        3,
        2,
        ["ok", "ok"],
        [UNKNOWN, H],
    ),
    "Unknown start: one good probe decides with successThreshold 1": (
        History(),
        3,
        1,
        ["ok"],
        [H],
    ),
    "Unknown start: a degraded first probe": (History(), 3, 1, ["deg"], [D]),
    "Unauthorized shows Degraded and never Unhealthy": (
        History(H),
        1,
        1,
        ["401"] * 5,
        [D] * 5,
    ),
    "Unauthorized does not hide Unhealthy": (History(U, 3, 0), 3, 1, ["401"], [U]),
    "Unauthorized then the token works again": (History(H), 3, 1, ["401", "ok"], [D, H]),
    "RateLimited keeps every health": (
        History(H),
        1,
        1,
        ["429", "deg", "429", "timeout", "429"],
        [H, D, D, U, U],
    ),
}


@pytest.mark.parametrize(
    ("start", "failure_threshold", "success_threshold", "steps", "expected"),
    SEQUENCES.values(),
    ids=SEQUENCES.keys(),
)
def test_kubelet_threshold_semantics(
    start: History,
    failure_threshold: int,
    success_threshold: int,
    steps: list[str],
    expected: list[Health],
) -> None:
    verdicts = run(
        steps, start, failure_threshold=failure_threshold, success_threshold=success_threshold
    )
    assert [v.health for v in verdicts] == expected


def test_counters_follow_each_probe() -> None:
    verdicts = run(
        ["bad", "bad", "ok", "ok", "bad", "401", "429", "bad"],
        History(H),
        failure_threshold=3,
        success_threshold=1,
    )
    assert [(v.consecutive_failures, v.consecutive_successes) for v in verdicts] == [
        (1, 0),
        (2, 0),
        (0, 1),
        (0, 2),
        (1, 0),
        (1, 0),  # Unauthorized: untouched
        (1, 0),  # RateLimited: untouched
        (2, 0),
    ]


def test_reasons_show_the_latest_probe_while_health_is_held() -> None:
    (verdict,) = run(["timeout"], History(H), failure_threshold=3, success_threshold=1)
    assert verdict.health is H
    assert verdict.instant is U
    assert verdict.reasons == ("ProbeTimeout",)
    assert not verdict.reachable


NEUTRAL_STARTS = {
    "unknown": History(),
    "healthy with 2 failures": History(H, 2, 0),
    "degraded with 4 successes": History(D, 0, 4),
    "unhealthy climbing back": History(U, 0, 1),
}


@pytest.mark.parametrize("start", NEUTRAL_STARTS.values(), ids=NEUTRAL_STARTS.keys())
def test_rate_limited_is_neutral(start: History) -> None:
    verdict = judge(failed("RateLimited"), Thresholds(), start, failure_threshold=1)
    assert verdict.history() == start
    assert verdict.reasons == ("RateLimited",)


@pytest.mark.parametrize("start", NEUTRAL_STARTS.values(), ids=NEUTRAL_STARTS.keys())
def test_unauthorized_is_degraded_but_never_counts(start: History) -> None:
    verdict = judge(failed("Unauthorized"), Thresholds(), start, failure_threshold=1)
    assert (verdict.consecutive_failures, verdict.consecutive_successes) == (
        start.consecutive_failures,
        start.consecutive_successes,
    )
    assert verdict.health is (U if start.health is U else D)
    assert verdict.reasons == ("Unauthorized",)


def test_verdict_history_round_trips() -> None:
    verdict = judge(STEPS["bad"], Thresholds(), History(D, 1, 0))
    assert verdict.history() == History(D, 2, 0)


# -- custom thresholds ----------------------------------------------------------------------

# id -> (thresholds, changes, probe latency, health with defaults, health with these)
CUSTOM: dict[str, tuple[Thresholds, dict[str, object], float, Health, Health]] = {
    "lower pool bands": (
        Thresholds(pool_degraded=0.5, pool_unhealthy=0.7),
        {"connection_pool.pool_utilization": 0.6},
        12.0,
        H,
        D,
    ),
    "lower pool exhaustion": (
        Thresholds(pool_degraded=0.5, pool_unhealthy=0.7),
        {"connection_pool.pool_utilization": 0.7},
        12.0,
        H,
        U,
    ),
    "higher pool exhaustion": (
        Thresholds(pool_unhealthy=0.99),
        {"connection_pool.pool_utilization": 0.96},
        12.0,
        U,
        D,
    ),
    "lower memory limit": (Thresholds(memory_degraded=0.10), {}, 12.0, H, D),
    "higher memory limits": (
        Thresholds(memory_degraded=0.97, memory_unhealthy=0.99),
        {"checks.memory.percentage": 96.0},
        12.0,
        U,
        H,
    ),
    "tighter database latency": (Thresholds(database_latency_ms=10.0), {}, 12.0, H, D),
    "looser database latency": (
        Thresholds(database_latency_ms=300.0),
        {"checks.database.latency_ms": 250.0},
        12.0,
        D,
        H,
    ),
    "tighter probe latency": (Thresholds(probe_latency_ms=10.0), {}, 12.0, H, D),
    "looser probe latency": (Thresholds(probe_latency_ms=2000.0), {}, 900.0, D, H),
}


@pytest.mark.parametrize(
    ("thresholds", "changes", "latency_ms", "default_health", "custom_health"),
    CUSTOM.values(),
    ids=CUSTOM.keys(),
)
def test_custom_thresholds_change_the_verdict(
    thresholds: Thresholds,
    changes: dict[str, object],
    latency_ms: float,
    default_health: Health,
    custom_health: Health,
) -> None:
    obs = ok(changes, latency_ms=latency_ms)
    assert judged_once(obs).health is default_health
    assert judged_once(obs, thresholds).health is custom_health
