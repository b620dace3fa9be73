"""``mcp-health check``: the guide's fields and exit codes 0 / 1 / 2, as a user runs it."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from mcp import Client

from mcp_health_operator.testing._procs import free_port
from mcp_health_operator.testing.postgres import Postgres
from tests.conftest import HostileFactory, SampleFactory


def mcp_health(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mcp_health_operator.cli", *args],
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


async def test_degraded_server_exits_1(sample_server: SampleFactory, pg: Postgres) -> None:
    # 9 of 10 connections busy: utilization 0.9, the guide's degraded band.
    server = sample_server("codebase-mcp", dsn=pg.dsn, pool_size=10)
    async with Client(server.url, cache=None) as client:
        await client.call_tool("saturate_pool", {"connections": 9, "seconds": 30})
        done = mcp_health("check", server.base_url)
    assert done.returncode == 1, done.stdout
    assert "Status: DEGRADED" in done.stdout
    assert "Pool Utilization: 90.0%" in done.stdout


def test_nothing_listening_exits_2() -> None:
    done = mcp_health("check", f"http://127.0.0.1:{free_port()}", "--timeout", "2")
    assert done.returncode == 2
    assert done.stdout.startswith("ERROR: Health check failed - Unreachable")


def test_timeout_exits_2(hostile_server: HostileFactory) -> None:
    url = hostile_server("tarpit")
    done = mcp_health("check", url, "--timeout", "0.5", "-o", "json")
    assert done.returncode == 2
    assert json.loads(done.stdout)["outcome"] == "Timeout"


def test_refused_credentials_exit_2_and_never_echo_the_token(
    hostile_server: HostileFactory,
) -> None:
    url = hostile_server("status", "--code", "401")
    done = subprocess.run(
        [sys.executable, "-m", "mcp_health_operator.cli", "check", url, "--token-env", "TOK"],
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
