"""The server authors' helper: the guide's document from given figures, cgroup limits, 503."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx2
import pytest
from starlette.applications import Starlette

from mcp_health_operator.core import health
from mcp_health_operator.server import (
    HealthReporter,
    PoolFigures,
    asyncpg_pool_figures,
    cgroup_memory_limit,
    container_memory_limit_mb,
    figures,
    health_route,
    http_status,
    psycopg_pool_figures,
)
from mcp_health_operator.server import report as report_module


def _reporter(
    *,
    utilization: float = 0.3,
    latency_s: float | None = 0.0,
    memory_fraction: float = 0.1,
    monkeypatch: pytest.MonkeyPatch,
    **kwargs: Any,
) -> HealthReporter:
    """A reporter whose pool, database and memory figures are the given ones."""
    monkeypatch.setattr(report_module, "rss_mb", lambda: 1000.0 * memory_fraction)

    async def database() -> None:
        if latency_s is None:
            raise ConnectionRefusedError("down")
        await asyncio.sleep(latency_s)

    active = round(utilization * 10)
    pool = PoolFigures(10, active, 10 - active, 0, utilization)
    return HealthReporter(
        service="codebase-mcp",
        version="2.0.0",
        pool=lambda: pool,
        database=database,
        memory_limit_mb=1000.0,
        metadata={"environment": "production", "region": "us-west-2"},
        **kwargs,
    )


async def test_a_healthy_document_has_the_guides_shape_and_parses(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    document = await _reporter(monkeypatch=monkeypatch).document()
    assert list(document) == [
        "status",
        "timestamp",
        "database_status",
        "uptime_seconds",
        "connection_pool",
        "checks",
        "metadata",
    ]
    assert document["status"] == "healthy"
    assert document["database_status"] == "connected"
    assert document["timestamp"].endswith("Z")
    assert document["connection_pool"] == {
        "total_connections": 10,
        "active_connections": 3,
        "idle_connections": 7,
        "waiting_requests": 0,
        "pool_utilization": 0.3,
    }
    assert document["checks"]["database"]["status"] == "pass"
    assert document["checks"]["memory"] == {
        "status": "pass",
        "usage_mb": 100,
        "limit_mb": 1000,
        "percentage": 10.0,
    }
    assert {"free_gb", "percentage_used"} <= set(document["checks"]["disk"])
    assert document["metadata"] == {
        "version": "2.0.0",
        "environment": "production",
        "region": "us-west-2",
        "server": "codebase-mcp",
    }
    parsed = health.parse(json.dumps(document))
    assert parsed.status == "healthy"
    assert parsed.database_latency_ms() is not None
    assert parsed.memory_fraction() == pytest.approx(0.1)
    assert parsed.connection_pool is not None and parsed.connection_pool.total_connections == 10


# The guide's table: pool 80-95 % degraded, >= 95 % unhealthy; memory > 80 % /
# > 95 %; database slower than 100 ms degraded, unreachable unhealthy.
@pytest.mark.parametrize(
    ("figures_", "status", "database_status"),
    [
        ({"utilization": 0.79}, "healthy", "connected"),
        ({"utilization": 0.80}, "degraded", "connected"),
        ({"utilization": 0.94}, "degraded", "connected"),
        ({"utilization": 0.95}, "unhealthy", "connected"),
        ({"utilization": 1.0}, "unhealthy", "connected"),
        ({"memory_fraction": 0.80}, "healthy", "connected"),
        ({"memory_fraction": 0.85}, "degraded", "connected"),
        ({"memory_fraction": 0.96}, "unhealthy", "connected"),
        ({"latency_s": 0.15}, "degraded", "degraded"),
        ({"latency_s": None}, "unhealthy", "disconnected"),
    ],
)
async def test_the_overall_status_follows_the_guides_table(
    monkeypatch: pytest.MonkeyPatch,
    figures_: dict[str, Any],
    status: str,
    database_status: str,
) -> None:
    document = await _reporter(monkeypatch=monkeypatch, **figures_).document()
    assert document["status"] == status
    assert document["database_status"] == database_status
    parsed = health.parse(json.dumps(document))
    assert parsed.status == status
    if database_status == "disconnected":
        assert parsed.checks["database"].status == "fail"
        assert parsed.database_latency_ms() is None
    if database_status == "degraded":
        assert parsed.checks["database"].status == "warn"
        assert (parsed.database_latency_ms() or 0) > 100


async def test_a_hung_database_reads_as_disconnected_within_the_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    reporter = _reporter(monkeypatch=monkeypatch, latency_s=30.0, database_timeout=0.05)
    document = await asyncio.wait_for(reporter.document(), 5)
    assert document["database_status"] == "disconnected"
    assert document["checks"]["database"]["message"] == "Database unreachable: TimeoutError"


async def test_without_pool_or_database_the_blocks_are_left_out() -> None:
    document = await HealthReporter(service="s", version="1", memory_limit_mb=1 << 20).document()
    assert "connection_pool" not in document and "database_status" not in document
    assert set(document["checks"]) == {"memory", "disk"}
    assert document["status"] == "healthy"
    assert health.parse(json.dumps(document)).connection_pool is None


def test_pool_adapters_report_against_capacity() -> None:
    class PsycopgLike:
        def get_stats(self) -> dict[str, int]:
            return {"pool_min": 2, "pool_max": 10, "pool_size": 4, "pool_available": 1}

    class AsyncpgLike:
        def get_size(self) -> int:
            return 10

        def get_idle_size(self) -> int:
            return 0

        def get_max_size(self) -> int:
            return 10

    assert psycopg_pool_figures(PsycopgLike())() == PoolFigures(10, 3, 1, 0, 0.3)
    assert asyncpg_pool_figures(AsyncpgLike())() == PoolFigures(10, 10, 0, 0, 1.0)
    assert figures(0, 0, 0) == PoolFigures(0, 0, 0, 0, 0.0)


@pytest.mark.parametrize(
    ("files", "limit"),
    [
        ({"memory.max": "536870912\n"}, 512 << 20),
        ({"memory.max": "max\n"}, None),
        ({"memory/memory.limit_in_bytes": "268435456\n"}, 256 << 20),
        # cgroup v1's "no limit" is a page-aligned 2**63 - 1.
        ({"memory/memory.limit_in_bytes": "9223372036854771712\n"}, None),
        ({"memory.max": "garbage"}, None),
        ({}, None),
    ],
)
def test_cgroup_limits_are_read_from_v2_then_v1(
    tmp_path: Path, files: dict[str, str], limit: int | None
) -> None:
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert cgroup_memory_limit(tmp_path) == limit


def test_the_memory_limit_falls_back_to_the_hosts_ram(tmp_path: Path) -> None:
    host = report_module.host_memory_bytes()
    assert host
    assert container_memory_limit_mb(tmp_path) == host / 2**20
    (tmp_path / "memory.max").write_text(str(64 << 20))
    assert container_memory_limit_mb(tmp_path) == 64.0
    reporter = HealthReporter(service="s", version="1", cgroup_root=tmp_path)
    assert reporter.memory_limit_mb == 64.0


@pytest.mark.parametrize(
    ("status", "code"), [("healthy", 200), ("degraded", 200), ("unhealthy", 503)]
)
async def test_the_http_route_answers_503_only_when_unhealthy(
    monkeypatch: pytest.MonkeyPatch, status: str, code: int
) -> None:
    utilization = {"healthy": 0.1, "degraded": 0.85, "unhealthy": 0.99}[status]
    reporter = _reporter(monkeypatch=monkeypatch, utilization=utilization)
    app = Starlette(routes=[health_route(reporter)])
    transport = httpx2.ASGITransport(app=app)
    async with httpx2.AsyncClient(transport=transport, base_url="http://test") as client:
        response = await client.get("/health/status")
    assert response.status_code == code
    assert http_status(response.json()) == code
    assert health.parse(response.content).status == status
