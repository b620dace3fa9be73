"""The guide's HealthCheckResponse from real figures, built by ``mcp_health_operator.server``."""

from __future__ import annotations

from typing import Any

from mcp_health_operator.server import HealthReporter, overall_status
from mcp_health_operator.server.report import rss_mb as _rss_mb
from sample_mcp.pool import DatabasePool

__all__ = ["HealthService", "_rss_mb", "overall_status"]


class HealthService(HealthReporter):
    """The sample's reporter: its pool's own figures and its health connection's ``SELECT 1``."""

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
        super().__init__(
            service=server_name,
            version=version,
            pool=pool.figures,
            database=pool.ping,
            # As before the helper: a hung database holds the read (connect_timeout bounds it).
            database_timeout=None,
            memory_limit_mb=memory_limit_mb,
            metadata={"environment": environment, "region": region},
        )

    async def check_health(self) -> dict[str, Any]:
        return await self.document()
