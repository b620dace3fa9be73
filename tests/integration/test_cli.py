"""``mcp-health check``: the guide's fields, the operator's verdict and reasons, and exit
codes 0 / 1 / 2, as a user runs it."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest
from mcp import Client

from mcp_health_testbed._procs import free_port
from mcp_health_testbed.postgres import Postgres
from tests.conftest import HostileFactory, SampleFactory


def mcp_health(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mcp_health_operator.runtime.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("transport", ["streamable-http", "sse", "http"])
def test_healthy_server_exits_0_and_prints_the_guide_fields(
    sample_server: SampleFactory, pg: Postgres, transport: str
) -> None:
    server_transport = "sse" if transport == "sse" else "streamable-http"
    server = sample_server("codebase-mcp", dsn=pg.dsn, transport=server_transport)
    done = mcp_health("check", server.base_url, "--transport", transport)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Status: HEALTHY" in done.stdout
    assert "Database: connected" in done.stdout
    assert "Pool Utilization: 0.0%" in done.stdout
    for check in ("database", "memory", "disk"):
        assert f"Check {check}: pass" in done.stdout
    assert "Verdict: HEALTHY" in done.stdout
    assert "Reason " not in done.stdout


async def test_unhealthy_server_exits_1_with_json_output(
    sample_server: SampleFactory, pg: Postgres
) -> None:
    server = sample_server("workflow-mcp", dsn=pg.dsn, pool_size=5)
    async with Client(server.url, cache=None) as client:
        await client.call_tool("saturate_pool", {"connections": 5, "seconds": 30})
        done = mcp_health("check", server.base_url, "--output", "json")
    assert done.returncode == 1, done.stdout + done.stderr
    report = json.loads(done.stdout)
    assert report["status"] == "unhealthy"
    assert report["pool_utilization"] == 1.0
    assert report["database_status"] == "connected"
    assert report["checks"]["database"]["status"] == "pass"
    assert report["server"]["name"] == "workflow-mcp"
    assert report["verdict"] == "Unhealthy"
    assert report["reasons"][:2] == ["ServerReportedUnhealthy", "PoolExhausted"]


async def test_degraded_server_exits_1(sample_server: SampleFactory, pg: Postgres) -> None:
    # 9 of 10 connections busy: utilization 0.9, the guide's degraded band.
    server = sample_server("codebase-mcp", dsn=pg.dsn, pool_size=10)
    async with Client(server.url, cache=None) as client:
        await client.call_tool("saturate_pool", {"connections": 9, "seconds": 30})
        done = mcp_health("check", server.base_url)
    assert done.returncode == 1, done.stdout
    assert "Status: DEGRADED" in done.stdout
    assert "Pool Utilization: 90.0%" in done.stdout
    assert "Verdict: DEGRADED" in done.stdout
    assert "Reason ServerReportedDegraded: server reports degraded" in done.stdout
    assert "Reason PoolUtilizationHigh: pool utilization 90% >= 80%" in done.stdout


# What a server says of itself, beside figures that say otherwise. Served
# as-is by tests/servers/hostile.py's ``doc`` mode over plain HTTP.
SAYS_HEALTHY: dict[str, Any] = {
    "status": "healthy",
    "database_status": "connected",
    "uptime_seconds": 60.0,
    "connection_pool": {
        "total_connections": 100,
        "active_connections": 10,
        "idle_connections": 90,
        "waiting_requests": 0,
        "pool_utilization": 0.10,
    },
    "checks": {"database": {"status": "pass", "latency_ms": 1.0}},
}
DISCONNECTED_BUT_HEALTHY = {
    **SAYS_HEALTHY,
    "database_status": "disconnected",
    "checks": {"database": {"status": "fail", "message": "Database unreachable"}},
}
POOL_97_BUT_HEALTHY = {
    **SAYS_HEALTHY,
    "connection_pool": {
        "total_connections": 100,
        "active_connections": 97,
        "idle_connections": 3,
        "waiting_requests": 4,
        "pool_utilization": 0.97,
    },
}


def serve(hostile_server: HostileFactory, document: dict[str, Any]) -> str:
    return hostile_server("doc", "--document", json.dumps(document))


def test_says_healthy_with_the_database_disconnected_exits_1(
    hostile_server: HostileFactory,
) -> None:
    url = serve(hostile_server, DISCONNECTED_BUT_HEALTHY)
    done = mcp_health("check", url, "--transport", "http")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Status: HEALTHY" in done.stdout  # what the server says, still shown
    assert "Database: disconnected" in done.stdout
    assert "Verdict: UNHEALTHY" in done.stdout
    assert "Reason DatabaseDisconnected: database disconnected" in done.stdout
    done = mcp_health("check", url, "--transport", "http", "-o", "json")
    assert done.returncode == 1, done.stdout + done.stderr
    report = json.loads(done.stdout)
    assert report["status"] == "healthy"
    assert report["verdict"] == "Unhealthy"
    assert report["reasons"] == ["DatabaseDisconnected"]


def test_says_healthy_with_the_pool_at_97_percent_exits_1(hostile_server: HostileFactory) -> None:
    url = serve(hostile_server, POOL_97_BUT_HEALTHY)
    done = mcp_health("check", url, "--transport", "http")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Pool Utilization: 97.0% (97 active, 3 idle of 100, 4 waiting)" in done.stdout
    assert "Verdict: UNHEALTHY" in done.stdout
    assert "Reason PoolExhausted: pool utilization 97% >= 95%" in done.stdout
    report = json.loads(mcp_health("check", url, "--transport", "http", "-o", "json").stdout)
    assert (report["verdict"], report["reasons"]) == ("Unhealthy", ["PoolExhausted"])


@pytest.mark.parametrize(
    ("document", "code"),
    [
        (DISCONNECTED_BUT_HEALTHY, 0),
        (POOL_97_BUT_HEALTHY, 0),
        ({**SAYS_HEALTHY, "status": "degraded"}, 1),
        ({**SAYS_HEALTHY, "status": "unhealthy"}, 1),
    ],
    ids=["disconnected", "pool-97", "says-degraded", "says-unhealthy"],
)
def test_server_status_only_is_the_guides_script(
    hostile_server: HostileFactory, document: dict[str, Any], code: int
) -> None:
    url = serve(hostile_server, document)
    done = mcp_health("check", url, "--transport", "http", "--server-status-only")
    assert done.returncode == code, done.stdout + done.stderr
    assert f"Status: {document['status'].upper()}" in done.stdout
    assert "Verdict" not in done.stdout and "Reason" not in done.stdout
    args = ("check", url, "--transport", "http", "--server-status-only", "-o", "json")
    done = mcp_health(*args)
    assert done.returncode == code
    report = json.loads(done.stdout)
    assert (report["status"], report["verdict"], report["reasons"]) == (
        document["status"],
        None,
        None,
    )


def test_threshold_flags_change_the_verdict(hostile_server: HostileFactory) -> None:
    url = serve(hostile_server, POOL_97_BUT_HEALTHY)
    base = ("check", url, "--transport", "http", "-o", "json")
    # 0.97 is now below the unhealthy line but above the degraded one.
    done = mcp_health(*base, "--pool-utilization-unhealthy", "0.99")
    assert done.returncode == 1, done.stdout + done.stderr
    report = json.loads(done.stdout)
    assert (report["verdict"], report["reasons"]) == ("Degraded", ["PoolUtilizationHigh"])
    # Below both lines: the figures no longer contradict the server.
    done = mcp_health(
        *base, "--pool-utilization-degraded", "0.98", "--pool-utilization-unhealthy", "0.99"
    )
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout)
    assert (report["verdict"], report["reasons"]) == ("Healthy", [])


def test_a_real_outage_exits_1_with_the_operators_reasons(
    sample_server: SampleFactory, own_pg: Postgres
) -> None:
    server = sample_server("codebase-mcp", dsn=own_pg.dsn)
    assert mcp_health("check", server.base_url).returncode == 0
    own_pg.stop()
    done = mcp_health("check", server.base_url, "-o", "json")
    assert done.returncode == 1, done.stdout + done.stderr
    report = json.loads(done.stdout)
    assert report["database_status"] == "disconnected"
    assert report["verdict"] == "Unhealthy"
    assert report["reasons"][:2] == ["ServerReportedUnhealthy", "DatabaseDisconnected"]


def test_nothing_listening_exits_2() -> None:
    done = mcp_health("check", f"http://127.0.0.1:{free_port()}", "--timeout", "2")
    assert done.returncode == 2
    assert done.stdout.startswith("ERROR: Health check failed - Unreachable")


def test_timeout_exits_2(hostile_server: HostileFactory) -> None:
    url = hostile_server("tarpit")
    done = mcp_health("check", url, "--timeout", "0.5", "-o", "json")
    assert done.returncode == 2
    report = json.loads(done.stdout)
    assert report["outcome"] == "Timeout"
    # Exit 2 all the same; the judge's reading of the failed probe is shown.
    assert (report["verdict"], report["reasons"]) == ("Unhealthy", ["ProbeTimeout"])


def test_refused_credentials_exit_2_and_never_echo_the_token(
    hostile_server: HostileFactory,
) -> None:
    url = hostile_server("status", "--code", "401")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "mcp_health_operator.runtime.cli",
            "check",
            url,
            "--token-env",
            "TOK",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={**__import__("os").environ, "TOK": "s3cr3t-value"},
    )
    assert done.returncode == 2
    assert "Unauthorized" in done.stdout
    assert "s3cr3t-value" not in done.stdout + done.stderr


def test_bad_arguments_are_refused_by_the_parser() -> None:
    done = mcp_health("check", "http://x", "--transport", "carrier-pigeon")
    assert done.returncode == 2
    assert "invalid choice: 'carrier-pigeon'" in done.stderr
    done = mcp_health("check", "http://x", "--pool-utilization-unhealthy", "0.5")
    assert done.returncode == 2
    assert "usage: mcp-health check" in done.stderr
    assert (
        "--pool-utilization-degraded 0.8 (the default) must not exceed "
        "--pool-utilization-unhealthy 0.5"
    ) in done.stderr


def test_contradictory_membership_flags_are_refused_before_anything_starts() -> None:
    done = mcp_health("run", "--membership", "--lease-duration", "5", "--lease-renew", "5")
    assert done.returncode == 2
    assert "--lease-renew must be shorter than --lease-duration" in done.stderr
    done = mcp_health("run", "--membership", "leader", "--member-group", "not a label/")
    assert done.returncode == 2
    assert "--member-group must be a label value" in done.stderr
    done = mcp_health("run", "--membership", "majority")
    assert done.returncode == 2
    assert "invalid choice: 'majority'" in done.stderr


@pytest.mark.parametrize("era", [(), ("--legacy",), ("--transport", "sse")], ids=str)
def test_method_auto_judges_a_server_without_the_document_by_its_handshake(
    hostile_server: HostileFactory, era: tuple[str, ...]
) -> None:
    base = hostile_server("tools-only", *era)
    transport = "sse" if "sse" in era else "streamable-http"
    # The guide's script, as by default: no document, exit 2.
    done = mcp_health("check", base, "--transport", transport)
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stdout.startswith("ERROR: Health check failed - ResourceNotFound"), done.stdout
    done = mcp_health("check", base, "--transport", transport, "--method", "auto")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Method: handshake (the server lists no health resource)" in done.stdout
    assert "Server: " in done.stdout
    assert "Verdict: HEALTHY" in done.stdout
    assert "Status:" not in done.stdout  # no document, none shown
    done = mcp_health("check", base, "--transport", transport, "--method", "auto", "-o", "json")
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout)
    assert (report["method"], report["fell_back"]) == ("handshake", True)
    assert (report["verdict"], report["reasons"], report["status"]) == ("Healthy", [], None)


def test_method_handshake_leaves_the_document_unread_and_auto_reads_it(
    hostile_server: HostileFactory,
) -> None:
    base = hostile_server("resources-only")  # lists health://status, healthy
    report = json_report(base, "--method", "handshake")
    shown = (report["method"], report["fell_back"], report["verdict"], report["status"])
    assert shown == ("handshake", False, "Healthy", None)  # the document was not read
    done = mcp_health("check", base, "--method", "handshake")
    assert "Method: handshake\n" in done.stdout, done.stdout
    report = json_report(base, "--method", "auto")
    shown = (report["method"], report["fell_back"], report["verdict"], report["status"])
    assert shown == ("healthResource", False, "Healthy", "healthy")


def json_report(base: str, *flags: str) -> dict[str, Any]:
    """``check -o json`` of a server judged Healthy (exit 0)."""
    done = mcp_health("check", base, *flags, "-o", "json")
    assert done.returncode == 0, done.stdout + done.stderr
    report: dict[str, Any] = json.loads(done.stdout)
    return report
