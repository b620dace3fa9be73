"""Computes the guide's HealthCheckResponse from real figures."""

from __future__ import annotations

import os
import shutil
import time
from datetime import UTC, datetime
from typing import Any

from sample_mcp.pool import DatabasePool

# The guide's status table.
POOL_DEGRADED, POOL_UNHEALTHY = 0.80, 0.95
MEMORY_DEGRADED, MEMORY_UNHEALTHY = 0.80, 0.95
DB_LATENCY_DEGRADED_MS = 100.0


def _rss_mb() -> float:
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return 0.0


class HealthService:
    def __init__(
        self,
        pool: DatabasePool,
        *,
        version: str,
        environment: str,
        region: str,
        memory_limit_mb: float,
        server_name: str,
    ) -> None:
        self.pool = pool
        self.started = time.monotonic()
        self.memory_limit_mb = memory_limit_mb
        self.metadata = {
            "version": version,
            "environment": environment,
            "region": region,
            "server": server_name,
        }

    async def check_health(self) -> dict[str, Any]:
        checks: dict[str, dict[str, Any]] = {}
        try:
            latency = await self.pool.ping()
        except Exception as exc:  # any failure to get a connection or run SELECT 1
            database_status = "disconnected"
            checks["database"] = {
                "status": "fail",
                "message": f"Database unreachable: {type(exc).__name__}",
            }
        else:
            slow = latency > DB_LATENCY_DEGRADED_MS
            database_status = "degraded" if slow else "connected"
            checks["database"] = {
                "status": "warn" if slow else "pass",
                "latency_ms": round(latency, 2),
                "message": "Database responding slowly" if slow else "Database responding normally",
            }
        usage = _rss_mb()
        fraction = usage / self.memory_limit_mb if self.memory_limit_mb else 0.0
        checks["memory"] = {
            "status": "fail"
            if fraction > MEMORY_UNHEALTHY
            else "warn"
            if fraction > MEMORY_DEGRADED
            else "pass",
            "usage_mb": round(usage),
            "limit_mb": round(self.memory_limit_mb),
            "percentage": round(min(fraction, 1.0) * 100, 1),
        }
        disk = shutil.disk_usage(os.getcwd())
        used = disk.used / disk.total * 100 if disk.total else 0.0
        checks["disk"] = {
            "status": "warn" if used > 90 else "pass",
            "free_gb": round(disk.free / 2**30, 1),
            "percentage_used": round(used, 1),
        }
        pool = self.pool.figures()
        return {
            "status": overall_status(database_status, pool.utilization, fraction),
            "timestamp": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
            "database_status": database_status,
            "uptime_seconds": round(time.monotonic() - self.started, 1),
            "connection_pool": {
                "total_connections": pool.total,
                "active_connections": pool.active,
                "idle_connections": pool.idle,
                "waiting_requests": pool.waiting,
                "pool_utilization": round(pool.utilization, 4),
            },
            "checks": checks,
            "metadata": self.metadata,
        }


def overall_status(database_status: str, pool_utilization: float, memory_fraction: float) -> str:
    """The guide's status table: unhealthy, then degraded, else healthy."""
    if (
        database_status == "disconnected"
        or pool_utilization >= POOL_UNHEALTHY
        or memory_fraction > MEMORY_UNHEALTHY
    ):
        return "unhealthy"
    if (
        database_status == "degraded"
        or pool_utilization >= POOL_DEGRADED
        or memory_fraction > MEMORY_DEGRADED
    ):
        return "degraded"
    return "healthy"
