"""``mcp-health check`` without a server: its threshold flags and how it judges a result.

The probe itself is exercised against real servers in tests/integration/test_cli.py;
here a ``ProbeResult`` is made by hand and handed to what ``check`` does with one.
"""

from __future__ import annotations

import argparse
import copy
import io
import json
from collections.abc import Mapping
from typing import Any

import pytest

from mcp_health_operator.core import health, judge, spec, targets
from mcp_health_operator.probing import probe
from mcp_health_operator.runtime import cli

# The guide's example document: healthy, and its figures agree.
GUIDE_EXAMPLE: dict[str, Any] = {
    "status": "healthy",
    "database_status": "connected",
    "uptime_seconds": 3672.5,
    "connection_pool": {
        "total_connections": 10,
        "active_connections": 3,
        "idle_connections": 7,
        "waiting_requests": 0,
        "pool_utilization": 0.3,
    },
    "checks": {
        "database": {"status": "pass", "latency_ms": 12.5},
        "memory": {"status": "pass", "usage_mb": 245.0, "limit_mb": 2048.0, "percentage": 11.9},
    },
}
TARGET = targets.Target(url="http://mcp.example:8000", transport=targets.Transport.HTTP)


def document(changes: Mapping[str, object] | None = None) -> dict[str, Any]:
    """The guide's example with dotted-path fields replaced."""
    raw = copy.deepcopy(GUIDE_EXAMPLE)
    for path, value in (changes or {}).items():
        node = raw
        *parents, last = path.split(".")
        for key in parents:
            node = node[key]
        node[last] = value
    return raw


def pool_at(used: int) -> dict[str, object]:
    return {
        "connection_pool.active_connections": used,
        "connection_pool.idle_connections": 100 - used,
        "connection_pool.total_connections": 100,
        "connection_pool.pool_utilization": used / 100,
    }


def parse(*flags: str) -> argparse.Namespace:
    return cli.build_parser().parse_args(["check", TARGET.url, *flags])


def ok(raw: dict[str, Any], latency_ms: float = 5.0) -> probe.ProbeResult:
    return probe.ProbeResult(
        outcome=probe.Outcome.OK, latency_ms=latency_ms, document=health.from_object(raw)
    )


def run(result: probe.ProbeResult, *flags: str) -> tuple[int, str, dict[str, Any]]:
    """What check prints (table and json) and exits with, for this probe result."""
    table, as_json = io.StringIO(), io.StringIO()
    code = cli.report(parse(*flags), TARGET, result, out=table)
    assert cli.report(parse(*flags, "-o", "json"), TARGET, result, out=as_json) == code
    return code, table.getvalue(), json.loads(as_json.getvalue())


def refused(capsys: pytest.CaptureFixture[str], *flags: str) -> str:
    """The argparse error for these flags (main exits 2 before any probe)."""
    with pytest.raises(SystemExit) as exited:
        cli.main(["check", TARGET.url, *flags])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: mcp-health check")
    return err.splitlines()[-1]


# -- flags and their validation ------------------------------------------------


def test_flags_are_named_after_the_crd_threshold_fields() -> None:
    assert [t.flag for t in cli.THRESHOLD_FLAGS] == [
        "--pool-utilization-degraded",  # spec.thresholds.poolUtilization.degraded
        "--pool-utilization-unhealthy",
        "--memory-utilization-degraded",
        "--memory-utilization-unhealthy",
        "--database-latency-ms-degraded",  # spec.thresholds.databaseLatencyMs.degraded
        "--probe-latency-ms-degraded",
    ]


def test_without_flags_the_thresholds_are_a_monitors_defaults() -> None:
    monitor = spec.parse({"target": {"url": TARGET.url}})
    assert cli.thresholds_of(parse()) == monitor.thresholds.to_thresholds() == judge.Thresholds()


def test_each_flag_sets_the_spec_field_it_is_named_after() -> None:
    values = {
        ("poolUtilization", "degraded"): 0.5,
        ("poolUtilization", "unhealthy"): 0.9,
        ("memoryUtilization", "degraded"): 0.6,
        ("memoryUtilization", "unhealthy"): 0.99,
        ("databaseLatencyMs", "degraded"): 250.0,
        ("probeLatencyMs", "degraded"): 1500.0,
    }
    flags = [arg for t in cli.THRESHOLD_FLAGS for arg in (t.flag, str(values[(t.field, t.band)]))]
    thresholds: dict[str, dict[str, float]] = {}
    for (field, band), value in values.items():
        thresholds.setdefault(field, {})[band] = value
    monitor = spec.parse({"target": {"url": TARGET.url}, "thresholds": thresholds})
    assert cli.thresholds_of(parse(*flags)) == monitor.thresholds.to_thresholds()
    assert cli.thresholds_of(parse(*flags)) == judge.Thresholds(0.5, 0.9, 0.6, 0.99, 250, 1500)


@pytest.mark.parametrize(
    ("flags", "error"),
    [
        (
            ("--pool-utilization-degraded", "1.5"),
            "argument --pool-utilization-degraded: expected a fraction from 0 to 1, got '1.5'",
        ),
        (
            ("--memory-utilization-unhealthy", "-0.1"),
            "argument --memory-utilization-unhealthy: expected a fraction from 0 to 1, got '-0.1'",
        ),
        (
            ("--pool-utilization-unhealthy", "95%"),
            "argument --pool-utilization-unhealthy: expected a number, got '95%'",
        ),
        (
            ("--pool-utilization-unhealthy", "nan"),
            "argument --pool-utilization-unhealthy: expected a finite number, got 'nan'",
        ),
        (
            ("--database-latency-ms-degraded", "-1"),
            "argument --database-latency-ms-degraded: expected milliseconds >= 0, got '-1'",
        ),
        (
            ("--probe-latency-ms-degraded", "inf"),
            "argument --probe-latency-ms-degraded: expected a finite number, got 'inf'",
        ),
        (
            ("--memory-utilization-degraded", "0.9", "--memory-utilization-unhealthy", "0.85"),
            "--memory-utilization-degraded 0.9 must not exceed --memory-utilization-unhealthy 0.85",
        ),
        (
            ("--pool-utilization-degraded", "0.97"),
            "--pool-utilization-degraded 0.97 must not exceed "
            "--pool-utilization-unhealthy 0.95 (the default)",
        ),
        (
            ("--pool-utilization-unhealthy", "0.5"),
            "--pool-utilization-degraded 0.8 (the default) must not exceed "
            "--pool-utilization-unhealthy 0.5",
        ),
        (
            ("--server-status-only", "--pool-utilization-unhealthy", "0.99"),
            "--pool-utilization-unhealthy has no effect with --server-status-only "
            "(no thresholds apply)",
        ),
    ],
)
def test_bad_threshold_flags_are_an_argparse_error_naming_the_flag(
    capsys: pytest.CaptureFixture[str], flags: tuple[str, ...], error: str
) -> None:
    assert refused(capsys, *flags) == f"mcp-health check: error: {error}"


@pytest.mark.parametrize(
    "flags",
    [
        # The CRD's rule is degraded <= unhealthy: an empty degraded band is allowed.
        ("--pool-utilization-degraded", "0.9", "--pool-utilization-unhealthy", "0.9"),
        ("--memory-utilization-degraded", "0", "--memory-utilization-unhealthy", "1"),
        ("--database-latency-ms-degraded", "0", "--probe-latency-ms-degraded", "60000"),
        ("--server-status-only",),
    ],
)
def test_thresholds_the_crd_accepts_are_accepted(flags: tuple[str, ...]) -> None:
    assert cli.check_arguments_problem(parse(*flags)) is None


# -- judging -----------------------------------------------------------------------


def test_a_healthy_document_exits_0_with_no_reasons() -> None:
    code, table, report = run(ok(document()))
    assert code == 0
    assert "  Status: HEALTHY\n" in table
    assert table.endswith("  Latency: 5.0 ms\n  Verdict: HEALTHY\n")
    assert (report["status"], report["verdict"], report["reasons"]) == ("healthy", "Healthy", [])


@pytest.mark.parametrize(
    ("changes", "verdict", "reasons", "line"),
    [
        (
            {"database_status": "disconnected", "checks.database": {"status": "fail"}},
            "Unhealthy",
            ["DatabaseDisconnected"],
            "Reason DatabaseDisconnected: database disconnected",
        ),
        (
            pool_at(97),
            "Unhealthy",
            ["PoolExhausted"],
            "Reason PoolExhausted: pool utilization 97% >= 95%",
        ),
        (
            pool_at(85),
            "Degraded",
            ["PoolUtilizationHigh"],
            "Reason PoolUtilizationHigh: pool utilization 85% >= 80%",
        ),
        (
            {"checks.memory.percentage": 97.0},
            "Unhealthy",
            ["MemoryCritical"],
            "Reason MemoryCritical: memory 97% > 95%",
        ),
        (
            {"checks.database.latency_ms": 150.0},
            "Degraded",
            ["DatabaseLatencyHigh"],
            "Reason DatabaseLatencyHigh: database latency 150 ms > 100 ms",
        ),
        (
            {"checks.disk": {"status": "warn", "message": "disk 91% full"}},
            "Degraded",
            ["CheckWarning"],
            "Reason CheckWarning: check disk warns: disk 91% full",
        ),
    ],
    ids=["disconnected", "pool-97", "pool-85", "memory-97", "db-latency", "check-warns"],
)
def test_a_document_that_says_healthy_is_judged_by_its_figures(
    changes: dict[str, object], verdict: str, reasons: list[str], line: str
) -> None:
    code, table, report = run(ok(document(changes)))
    assert code == 1
    assert "  Status: HEALTHY\n" in table  # what the server says is still shown
    assert f"  Verdict: {verdict.upper()}\n  {line}\n" in table
    assert (report["status"], report["verdict"], report["reasons"]) == (
        "healthy",
        verdict,
        reasons,
    )


def test_the_probes_own_latency_is_judged() -> None:
    code, table, report = run(ok(document(), latency_ms=800.0))
    assert code == 1
    assert "Reason ProbeLatencyHigh: probe took 800 ms > 500 ms" in table
    assert (report["verdict"], report["reasons"]) == ("Degraded", ["ProbeLatencyHigh"])
    assert run(ok(document(), latency_ms=800.0), "--probe-latency-ms-degraded", "1000")[0] == 0


@pytest.mark.parametrize(
    ("changes", "flags", "code", "verdict", "reasons"),
    [
        (
            pool_at(97),
            ("--pool-utilization-unhealthy", "0.99"),
            1,
            "Degraded",
            ["PoolUtilizationHigh"],
        ),
        (
            pool_at(97),
            ("--pool-utilization-degraded", "0.98", "--pool-utilization-unhealthy", "0.99"),
            0,
            "Healthy",
            [],
        ),
        (
            pool_at(50),
            ("--pool-utilization-degraded", "0.5"),
            1,
            "Degraded",
            ["PoolUtilizationHigh"],
        ),
        (
            {"checks.memory.percentage": 97.0},
            ("--memory-utilization-unhealthy", "0.98"),
            1,
            "Degraded",
            ["MemoryHigh"],
        ),
        (
            {"checks.memory.percentage": 97.0},
            ("--memory-utilization-degraded", "0.97", "--memory-utilization-unhealthy", "0.97"),
            0,
            "Healthy",
            [],
        ),
        (
            {"checks.database.latency_ms": 150.0},
            ("--database-latency-ms-degraded", "200"),
            0,
            "Healthy",
            [],
        ),
    ],
)
def test_threshold_flags_move_the_verdict(
    changes: dict[str, object],
    flags: tuple[str, ...],
    code: int,
    verdict: str,
    reasons: list[str],
) -> None:
    got, _, report = run(ok(document(changes)), *flags)
    assert (got, report["verdict"], report["reasons"]) == (code, verdict, reasons)


def test_what_the_server_says_still_counts() -> None:
    # Worst of: a server that says degraded is Degraded even with good figures.
    code, _, report = run(ok(document({"status": "degraded"})))
    assert (code, report["verdict"], report["reasons"]) == (
        1,
        "Degraded",
        ["ServerReportedDegraded"],
    )


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"status": "unhealthy"},
        {"database_status": "disconnected"},
        {"database_status": "degraded", "checks.database.latency_ms": 400.0},
        pool_at(80),
        pool_at(95),
        {"checks.memory.percentage": 81.0},
        {"checks.disk": {"status": "fail", "message": "read-only"}},
    ],
)
def test_the_verdict_is_the_judges_reading_of_the_probe(changes: dict[str, object]) -> None:
    result = ok(document(changes))
    obs = judge.Observation(result.outcome.value, result.latency_ms, result.document)
    reading = judge.assess(obs, judge.Thresholds())
    code, _, report = run(result)
    assert report["reasons"] == [f.reason.value for f in reading.findings]
    expected = {
        judge.Severity.OK: "Healthy",
        judge.Severity.DEGRADED: "Degraded",
        judge.Severity.UNHEALTHY: "Unhealthy",
    }[reading.severity]
    assert report["verdict"] == expected
    assert code == (0 if expected == "Healthy" else 1)


# -- --server-status-only: the guide's script ------------------------------------


@pytest.mark.parametrize(
    ("changes", "code"),
    [
        ({"database_status": "disconnected"}, 0),
        (pool_at(97), 0),
        ({"status": "degraded"}, 1),
        ({"status": "unhealthy"}, 1),
    ],
)
def test_server_status_only_exits_by_the_servers_own_status(
    changes: dict[str, object], code: int
) -> None:
    got, table, report = run(ok(document(changes)), "--server-status-only")
    assert got == code
    assert "Verdict" not in table and "Reason" not in table
    assert (report["verdict"], report["reasons"]) == (None, None)


# -- no document: exit 2 -----------------------------------------------------------


@pytest.mark.parametrize(
    ("outcome", "verdict", "reason"),
    [
        (probe.Outcome.UNREACHABLE, "Unhealthy", "TargetUnreachable"),
        (probe.Outcome.TIMEOUT, "Unhealthy", "ProbeTimeout"),
        (probe.Outcome.INVALID_DOCUMENT, "Unhealthy", "InvalidHealthDocument"),
        (probe.Outcome.UNAUTHORIZED, "Degraded", "Unauthorized"),
        # A server asking us to back off says nothing of its health.
        (probe.Outcome.RATE_LIMITED, "Unknown", "RateLimited"),
    ],
)
def test_no_document_exits_2_whatever_the_verdict(
    outcome: probe.Outcome, verdict: str, reason: str
) -> None:
    failed = probe.ProbeResult(outcome=outcome, latency_ms=3.0, message="went wrong")
    code, table, report = run(failed)
    assert code == 2
    assert table.startswith(f"ERROR: Health check failed - {outcome.value}: went wrong")
    assert (report["verdict"], report["reasons"]) == (verdict, [reason])
    assert run(failed, "--server-status-only")[0] == 2


# -- judged by the handshake (--method auto or handshake) ------------------------------


def by_handshake(latency_ms: float, *, fell_back: bool) -> probe.ProbeResult:
    return probe.ProbeResult(
        outcome=probe.Outcome.OK,
        latency_ms=latency_ms,
        method=targets.Method.HANDSHAKE,
        fell_back=fell_back,
    )


def test_a_server_judged_by_its_handshake_exits_by_the_verdict() -> None:
    code, table, report = run(by_handshake(5.0, fell_back=True), "--method", "auto")
    assert code == 0
    assert "Method: handshake (the server lists no health resource)" in table
    assert "Verdict: HEALTHY" in table and "Status:" not in table
    assert (report["method"], report["fell_back"], report["status"]) == ("handshake", True, None)
    assert (report["verdict"], report["reasons"]) == ("Healthy", [])
    # The probe's latency is still judged: slow past probeLatencyMs.degraded.
    code, table, report = run(by_handshake(900.0, fell_back=False), "--method", "handshake")
    assert code == 1
    assert "Method: handshake\n" in table
    assert "Reason ProbeLatencyHigh" in table
    assert (report["verdict"], report["reasons"]) == ("Degraded", ["ProbeLatencyHigh"])


def test_a_document_read_is_named_in_the_json() -> None:
    result = ok(document())
    result = probe.ProbeResult(
        outcome=result.outcome,
        latency_ms=result.latency_ms,
        document=result.document,
        method=targets.Method.HEALTH_RESOURCE,
    )
    report = run(result)[2]
    assert (report["method"], report["fell_back"]) == ("healthResource", False)


@pytest.mark.parametrize(
    ("flags", "error"),
    [
        (
            ("--transport", "http", "--method", "handshake"),
            "--method handshake needs an MCP transport, not --transport http",
        ),
        (
            ("--server-status-only", "--method", "handshake"),
            "--server-status-only reads the health document: --method handshake has none",
        ),
    ],
)
def test_method_flags_that_cannot_go_together_are_refused_naming_them(
    capsys: pytest.CaptureFixture[str], flags: tuple[str, ...], error: str
) -> None:
    assert refused(capsys, *flags).endswith(error)
