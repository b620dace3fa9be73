"""The probe against real sample MCP servers, real PostgreSQL and misbehaving servers."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.request

import pytest
from mcp import Client

from mcp_health_operator.core.targets import Target, Transport
from mcp_health_operator.probing.probe import Outcome, Prober
from mcp_health_testbed.postgres import Postgres
from tests.conftest import HostileFactory, SampleFactory

PROFILES = ["codebase-mcp", "workflow-mcp"]
TRANSPORTS = [Transport.STREAMABLE_HTTP, Transport.SSE, Transport.HTTP]


def _server_transport(transport: Transport) -> str:
    # The plain-HTTP route is served beside either MCP transport.
    return "sse" if transport is Transport.SSE else "streamable-http"


async def _probe(target: Target, *, times: int = 1, timeout: float = 5.0) -> list[object]:
    prober = Prober(target, timeout=timeout)
    try:
        return [await prober.probe() for _ in range(times)]
    finally:
        await prober.aclose()


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("transport", TRANSPORTS, ids=lambda t: t.value)
async def test_each_transport_reads_a_healthy_document_from_both_servers(
    sample_server: SampleFactory, pg: Postgres, profile: str, transport: Transport
) -> None:
    server = sample_server(profile, dsn=pg.dsn, transport=_server_transport(transport))
    results = await _probe(Target(server.base_url, transport), times=3)
    for result in results:
        assert result.outcome is Outcome.OK, result.message  # type: ignore[attr-defined]
        doc = result.document  # type: ignore[attr-defined]
        assert doc.status == "healthy"
        assert doc.database_status == "connected"
        assert doc.connection_pool.total_connections == 10
        assert doc.checks["database"].status == "pass"
        assert doc.checks["database"].latency_ms is not None
        assert {"database", "memory", "disk"} <= set(doc.checks)
        assert doc.metadata["server"] == profile
    last = results[-1]
    if transport is not Transport.HTTP:
        # MCP transports report who answered; plain HTTP cannot.
        assert last.server.name == profile  # type: ignore[attr-defined]
        assert last.server.protocol_version  # type: ignore[attr-defined]


async def test_stopping_postgres_turns_the_server_unhealthy_and_restarting_recovers(
    sample_server: SampleFactory, own_pg: Postgres
) -> None:
    server = sample_server("codebase-mcp", dsn=own_pg.dsn)
    prober = Prober(Target(server.base_url), timeout=5.0)
    try:
        first = await prober.probe()
        assert first.document is not None and first.document.status == "healthy"

        own_pg.stop()
        down = await prober.probe()
        assert down.outcome is Outcome.OK, down.message  # the server still answers
        assert down.document is not None
        assert down.document.status == "unhealthy"
        assert down.document.database_status == "disconnected"
        assert down.document.checks["database"].status == "fail"

        # The plain GET answers 503 with the same document (a readiness probe on
        # it follows health), and the http transport still reads that document.
        with pytest.raises(urllib.error.HTTPError) as refused:
            await asyncio.to_thread(
                urllib.request.urlopen, f"{server.base_url}/health/status", timeout=5
            )
        assert refused.value.code == 503
        assert json.loads(refused.value.read())["status"] == "unhealthy"
        [plain] = await _probe(Target(server.base_url, Transport.HTTP), timeout=5.0)
        assert plain.outcome is Outcome.OK, plain  # type: ignore[attr-defined]
        assert plain.document.status == "unhealthy"  # type: ignore[attr-defined]
        assert plain.document.database_status == "disconnected"  # type: ignore[attr-defined]

        own_pg.start()
        for _ in range(50):  # the pool reconnects in the background
            back = await prober.probe()
            if back.document is not None and back.document.status == "healthy":
                break
            await asyncio.sleep(0.2)
        assert back.document is not None and back.document.status == "healthy"
        assert back.document.database_status == "connected"
    finally:
        await prober.aclose()


async def test_saturating_the_pool_reports_utilization_at_or_above_095(
    sample_server: SampleFactory, pg: Postgres
) -> None:
    server = sample_server("workflow-mcp", dsn=pg.dsn, pool_size=10)
    async with Client(server.url, cache=None) as client:
        held = await client.call_tool("saturate_pool", {"connections": 10, "seconds": 30})
        assert json.loads(held.content[0].text)["held"] == 10  # type: ignore[union-attr]
        [result] = await _probe(Target(server.base_url))
        doc = result.document  # type: ignore[attr-defined]
        assert doc.connection_pool.pool_utilization >= 0.95
        assert doc.connection_pool.active_connections == 10
        assert doc.status == "unhealthy"
        await client.call_tool("release_pool", {})
        [after] = await _probe(Target(server.base_url))
        assert after.document.connection_pool.pool_utilization < 0.8  # type: ignore[attr-defined]


async def test_scale_pool_tool_resizes_the_live_pool(
    sample_server: SampleFactory, pg: Postgres
) -> None:
    server = sample_server("codebase-mcp", dsn=pg.dsn, pool_size=4)
    async with Client(server.url, cache=None) as client:
        await client.call_tool("saturate_pool", {"connections": 4, "seconds": 30})
        [before] = await _probe(Target(server.base_url))
        assert before.document.connection_pool.pool_utilization == 1.0  # type: ignore[attr-defined]
        await client.call_tool("scale_pool", {"size": 8})
        [after] = await _probe(Target(server.base_url))
        pool = after.document.connection_pool  # type: ignore[attr-defined]
        assert pool.total_connections == 8
        assert pool.pool_utilization == 0.5


async def test_persistent_session_is_reused_across_probes(
    sample_server: SampleFactory, pg: Postgres
) -> None:
    server = sample_server("codebase-mcp", dsn=pg.dsn)
    prober = Prober(Target(server.base_url), timeout=5.0)
    try:
        assert (await prober.probe()).ok
        # The session's read request, made once at the handshake, serves every read.
        request = prober._session.request
        assert request is not None
        for _ in range(5):
            assert (await prober.probe()).ok
        assert prober._session.request is request
    finally:
        await prober.aclose()


async def test_the_operators_own_stall_is_neither_latency_nor_a_timeout(
    sample_server: SampleFactory, pg: Postgres
) -> None:
    """The answer arrives while the operator's process is held (a loaded node): it is read
    when the process runs again, within the timeout and at the server's latency."""
    server = sample_server("codebase-mcp", dsn=pg.dsn)
    prober = Prober(Target(server.base_url), timeout=1.0)
    try:
        assert (await prober.probe()).ok  # the session is made
        probing = asyncio.ensure_future(prober.probe())
        # Runs once the probe has sent its read and waits for the answer.
        asyncio.get_running_loop().call_soon(time.sleep, 1.5)
        result = await probing
        assert result.ok, result
        assert result.latency_ms < 500, result
    finally:
        await prober.aclose()


async def test_session_reconnects_after_the_server_restarts(
    sample_server: SampleFactory, pg: Postgres
) -> None:
    server = sample_server("codebase-mcp", dsn=pg.dsn)
    prober = Prober(Target(server.base_url), timeout=5.0)
    try:
        assert (await prober.probe()).ok
        server.stop()
        down = await prober.probe()
        assert down.outcome is Outcome.UNREACHABLE, down
        server.start()
        assert (await prober.probe()).ok
    finally:
        await prober.aclose()


async def test_nothing_listening_is_unreachable(pg: Postgres) -> None:
    from mcp_health_testbed._procs import free_port

    url = f"http://127.0.0.1:{free_port()}"
    for transport in TRANSPORTS:
        [result] = await _probe(Target(url, transport), timeout=2.0)
        assert result.outcome is Outcome.UNREACHABLE, (transport, result)  # type: ignore[attr-defined]


async def test_missing_resource_is_resource_not_found(
    sample_server: SampleFactory, pg: Postgres
) -> None:
    server = sample_server("codebase-mcp", dsn=pg.dsn)
    [result] = await _probe(Target(server.base_url, resource_uri="health://missing"))
    assert result.outcome is Outcome.RESOURCE_NOT_FOUND  # type: ignore[attr-defined]
    assert "health://missing" in result.message  # type: ignore[attr-defined]


@pytest.mark.parametrize("transport", TRANSPORTS, ids=lambda t: t.value)
async def test_tarpit_times_out_within_the_probe_timeout(
    hostile_server: HostileFactory, transport: Transport
) -> None:
    url = hostile_server("tarpit")
    [result] = await _probe(Target(url, transport), timeout=0.5)
    assert result.outcome is Outcome.TIMEOUT  # type: ignore[attr-defined]
    # The probe ends at its timeout (plus closing grace), not the SDK's own limits.
    assert result.latency_ms < 0.5 * 1000 * 1.5  # type: ignore[attr-defined]


@pytest.mark.parametrize("transport", TRANSPORTS, ids=lambda t: t.value)
@pytest.mark.parametrize(
    ("code", "outcome"),
    [(401, Outcome.UNAUTHORIZED), (403, Outcome.UNAUTHORIZED), (429, Outcome.RATE_LIMITED)],
)
async def test_http_refusals_are_named(
    hostile_server: HostileFactory, transport: Transport, code: int, outcome: Outcome
) -> None:
    url = hostile_server("status", "--code", str(code), "--retry-after", "7")
    [result] = await _probe(Target(url, transport), timeout=3.0)
    assert result.outcome is outcome, result  # type: ignore[attr-defined]
    assert result.http_status == code  # type: ignore[attr-defined]
    if code == 429:
        assert result.retry_after_s == 7.0  # type: ignore[attr-defined]


async def test_a_plain_503_without_a_document_is_a_protocol_error(
    hostile_server: HostileFactory,
) -> None:
    url = hostile_server("status", "--code", "503")
    [result] = await _probe(Target(url, Transport.HTTP), timeout=3.0)
    assert result.outcome is Outcome.PROTOCOL_ERROR, result  # type: ignore[attr-defined]
    assert "503 without a health document" in result.message  # type: ignore[attr-defined]
