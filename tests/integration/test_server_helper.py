"""The server authors' helper on a real SDK server with a real psycopg pool, read by the Prober."""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx2
import pytest
import uvicorn
from mcp.server.mcpserver import MCPServer
from mcp.server.transport_security import TransportSecuritySettings
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from mcp_health_operator.core.targets import Target, Transport
from mcp_health_operator.probing.probe import Outcome, Prober
from mcp_health_operator.server import (
    HealthReporter,
    PsycopgDatabaseCheck,
    add_health,
    psycopg_pool_figures,
)
from mcp_health_testbed._procs import free_port
from mcp_health_testbed.postgres import Postgres

pytestmark = pytest.mark.postgres

POOL_SIZE = 4


@dataclass
class Served:
    base_url: str
    pool: AsyncConnectionPool[AsyncConnection]


@pytest.fixture(params=["streamable-http", "sse"])
async def served(request: pytest.FixtureRequest, pg: Postgres) -> AsyncIterator[Served]:
    """An SDK ``MCPServer`` with the helper, served by uvicorn in this event loop."""
    pool: AsyncConnectionPool[AsyncConnection] = AsyncConnectionPool(
        pg.dsn, min_size=POOL_SIZE, max_size=POOL_SIZE, open=False
    )
    # wait=True: psycopg counts connections still being opened as in use.
    await pool.open(wait=True, timeout=30)
    check = PsycopgDatabaseCheck(pg.dsn)
    reporter = HealthReporter(
        service="helper-mcp",
        version="1.2.3",
        pool=psycopg_pool_figures(pool),
        database=check,
        metadata={"environment": "test"},
    )
    mcp: MCPServer[Any] = MCPServer("helper-mcp", version="1.2.3")
    add_health(mcp, reporter)
    security = TransportSecuritySettings(enable_dns_rebinding_protection=False)
    app = (
        mcp.sse_app(transport_security=security)
        if request.param == "sse"
        else mcp.streamable_http_app(transport_security=security)
    )
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    task = asyncio.create_task(server.serve())
    for _ in range(300):
        if server.started or task.done():
            break
        await asyncio.sleep(0.02)
    assert server.started, "uvicorn did not start"
    try:
        yield Served(f"http://127.0.0.1:{port}", pool)
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)
        await check.aclose()
        await pool.close()


def _transport(request: pytest.FixtureRequest) -> Transport:
    return Transport(request.node.callspec.params["served"])


async def test_the_prober_reads_pool_figures_and_database_latency(
    served: Served, request: pytest.FixtureRequest
) -> None:
    for transport in (_transport(request), Transport.HTTP):
        prober = Prober(Target(served.base_url, transport), timeout=5.0)
        try:
            result = await prober.probe()
        finally:
            await prober.aclose()
        assert result.outcome is Outcome.OK, result.message
        doc = result.document
        assert doc is not None
        assert doc.status == "healthy"
        assert doc.database_status == "connected"
        latency = doc.database_latency_ms()
        assert latency is not None and latency < 100
        assert doc.connection_pool is not None
        assert doc.connection_pool.total_connections == POOL_SIZE
        assert doc.connection_pool.active_connections == 0
        assert doc.connection_pool.idle_connections == POOL_SIZE
        assert doc.connection_pool.pool_utilization == 0.0
        assert {"database", "memory", "disk"} <= set(doc.checks)
        assert doc.metadata == {"version": "1.2.3", "environment": "test", "server": "helper-mcp"}
        if transport is not Transport.HTTP:
            assert result.server is not None and result.server.name == "helper-mcp"


async def test_an_exhausted_pool_is_unhealthy_but_the_database_stays_connected(
    served: Served, request: pytest.FixtureRequest
) -> None:
    held = [await served.pool.getconn(timeout=5) for _ in range(POOL_SIZE)]
    prober = Prober(Target(served.base_url, _transport(request)), timeout=5.0)
    try:
        result = await prober.probe()
        async with httpx2.AsyncClient() as client:
            plain = await client.get(f"{served.base_url}/health/status")
    finally:
        await prober.aclose()
        for conn in held:
            await served.pool.putconn(conn)
    doc = result.document
    assert doc is not None and doc.connection_pool is not None, result.message
    assert doc.connection_pool.active_connections == POOL_SIZE
    assert doc.connection_pool.pool_utilization == 1.0
    assert doc.status == "unhealthy"
    # The check runs on its own connection: the database is still reachable.
    assert doc.database_status == "connected"
    assert plain.status_code == 503
    assert plain.json()["status"] == "unhealthy"


async def test_get_health_status_answers_within_the_guides_50ms_budget(served: Served) -> None:
    timings = []
    async with httpx2.AsyncClient(base_url=served.base_url) as client:
        await client.get("/health/status")  # the health connection is made on first use
        for _ in range(15):
            started = time.perf_counter()
            response = await client.get("/health/status")
            timings.append((time.perf_counter() - started) * 1000.0)
            assert response.status_code == 200
    # Client and server share this loop and a busy 2-core machine: a wide margin.
    assert statistics.median(timings) < 50.0, timings
