"""The guide's health document, computed from a server's own figures.

Pure standard library plus the operator's ``core.health`` types: no MCP SDK,
no database driver (those live in ``pools`` and ``sdk``).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mcp_health_operator.core.health import CheckStatus, DatabaseStatus, ReportedStatus

# The guide's status table (the operator's default thresholds are the same).
POOL_DEGRADED, POOL_UNHEALTHY = 0.80, 0.95
MEMORY_DEGRADED, MEMORY_UNHEALTHY = 0.80, 0.95
DB_LATENCY_DEGRADED_MS = 100.0
DISK_WARN_PERCENT = 90.0

CGROUP_ROOT = Path("/sys/fs/cgroup")
_MB = 1024.0 * 1024.0


@dataclass(frozen=True)
class PoolFigures:
    """A connection pool's figures, as the document's ``connection_pool`` reports them."""

    total: int
    active: int
    idle: int
    waiting: int
    utilization: float  # active / capacity, 0..1


PoolSource = Callable[[], PoolFigures]
"""Returns the pool's current figures; called on every health read, so it must be cheap."""

DatabaseCheck = Callable[[], Awaitable[object]]
"""One round trip to the database (``SELECT 1``), raising if it is unreachable.

Give it a connection of its own, outside the pool: an exhausted pool is a
pool problem and must not read as a lost database (see ``pools.DedicatedConnection``).
"""


def overall_status(
    database_status: DatabaseStatus | None, pool_utilization: float, memory_fraction: float
) -> ReportedStatus:
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


def http_status(document: Mapping[str, Any]) -> int:
    """503 when unhealthy, else 200: a readiness probe on the route then follows health."""
    return 503 if document.get("status") == "unhealthy" else 200


def rss_mb() -> float:
    """This process's resident memory in MB (0.0 where /proc is not available)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return 0.0


def host_memory_bytes() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (OSError, ValueError, AttributeError):
        return None


def cgroup_memory_limit(root: Path = CGROUP_ROOT) -> int | None:
    """The container's memory limit in bytes from cgroup v2 or v1, or None if unlimited.

    Inside a container, ``root`` is the container's own cgroup (the cgroup
    namespace), so its ``memory.max`` (v2) or ``memory/memory.limit_in_bytes``
    (v1) is the pod's limit.
    """
    for path in (root / "memory.max", root / "memory" / "memory.limit_in_bytes"):
        try:
            text = path.read_text().strip()
        except OSError:
            continue
        if text == "max":
            return None
        try:
            limit = int(text)
        except ValueError:
            continue
        # cgroup v1 writes "unlimited" as a page-aligned 2**63 - 1.
        return limit if 0 < limit < 1 << 62 else None
    return None


def container_memory_limit_mb(root: Path = CGROUP_ROOT) -> float:
    """The memory usage is judged against: the cgroup limit, at most the host's RAM."""
    limits = [n for n in (cgroup_memory_limit(root), host_memory_bytes()) if n]
    return min(limits) / _MB if limits else 0.0


class HealthReporter:
    """Builds the guide's ``HealthCheckResponse`` document on each ``document()`` call.

    ``pool`` and ``database`` are optional: without them the document has no
    ``connection_pool`` or ``database_status`` (the operator's parser accepts
    that). ``memory_limit_mb`` defaults to the container's cgroup limit.
    """

    def __init__(
        self,
        *,
        service: str,
        version: str,
        pool: PoolSource | None = None,
        database: DatabaseCheck | None = None,
        database_timeout: float | None = 2.0,
        memory_limit_mb: float | None = None,
        disk_path: str | os.PathLike[str] = ".",
        metadata: Mapping[str, Any] | None = None,
        cgroup_root: Path = CGROUP_ROOT,
    ) -> None:
        self.pool = pool
        self.database = database
        # A hung database must read as disconnected, not as a health read that
        # never answers (the operator would see only a timeout).
        self.database_timeout = database_timeout
        if memory_limit_mb is None:
            memory_limit_mb = container_memory_limit_mb(cgroup_root)
        self.memory_limit_mb = memory_limit_mb
        self.disk_path = disk_path
        self.metadata = {"version": version, **(metadata or {}), "server": service}
        self.started = time.monotonic()

    async def document(self) -> dict[str, Any]:
        """The health document, a JSON-ready dict."""
        checks: dict[str, dict[str, Any]] = {}
        database_status = await self._check_database(checks)
        fraction = self._check_memory(checks)
        self._check_disk(checks)
        document: dict[str, Any] = {"status": "healthy"}
        document["timestamp"] = datetime.now(UTC).isoformat().replace("+00:00", "Z")
        if database_status is not None:
            document["database_status"] = database_status
        document["uptime_seconds"] = round(time.monotonic() - self.started, 1)
        utilization = 0.0
        if self.pool is not None:
            figures = self.pool()
            utilization = min(max(figures.utilization, 0.0), 1.0)
            document["connection_pool"] = {
                "total_connections": figures.total,
                "active_connections": figures.active,
                "idle_connections": figures.idle,
                "waiting_requests": figures.waiting,
                "pool_utilization": round(utilization, 4),
            }
        document["checks"] = checks
        document["metadata"] = self.metadata
        document["status"] = overall_status(database_status, utilization, fraction)
        return document

    async def _check_database(self, checks: dict[str, dict[str, Any]]) -> DatabaseStatus | None:
        if self.database is None:
            return None
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self.database_timeout):
                await self.database()
        except Exception as exc:  # any failure to reach the database or run the query
            checks["database"] = {
                "status": "fail",
                "message": f"Database unreachable: {type(exc).__name__}",
            }
            return "disconnected"
        latency = (time.perf_counter() - started) * 1000.0
        slow = latency > DB_LATENCY_DEGRADED_MS
        checks["database"] = {
            "status": "warn" if slow else "pass",
            "latency_ms": round(latency, 2),
            "message": "Database responding slowly" if slow else "Database responding normally",
        }
        return "degraded" if slow else "connected"

    def _check_memory(self, checks: dict[str, dict[str, Any]]) -> float:
        usage = rss_mb()
        fraction = usage / self.memory_limit_mb if self.memory_limit_mb else 0.0
        status: CheckStatus = (
            "fail"
            if fraction > MEMORY_UNHEALTHY
            else "warn"
            if fraction > MEMORY_DEGRADED
            else "pass"
        )
        checks["memory"] = {
            "status": status,
            "usage_mb": round(usage),
            "limit_mb": round(self.memory_limit_mb),
            "percentage": round(min(fraction, 1.0) * 100, 1),
        }
        return fraction

    def _check_disk(self, checks: dict[str, dict[str, Any]]) -> None:
        try:
            disk = shutil.disk_usage(self.disk_path)
        except OSError as exc:
            checks["disk"] = {"status": "warn", "message": f"Disk unreadable: {exc.strerror}"}
            return
        used = disk.used / disk.total * 100 if disk.total else 0.0
        checks["disk"] = {
            "status": "warn" if used > DISK_WARN_PERCENT else "pass",
            "free_gb": round(disk.free / 2**30, 1),
            "percentage_used": round(used, 1),
        }
