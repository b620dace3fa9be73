"""Serve the guide's ``health://status`` document from an MCP server (for server authors).

The operator judges a server by this document; this package builds it from a
server's own figures and serves it on an official-SDK ``MCPServer``::

    from mcp_health_operator.server import (
        HealthReporter, PsycopgDatabaseCheck, add_health, psycopg_pool_figures,
    )

    reporter = HealthReporter(
        service="codebase-mcp",
        version="2.0.0",
        pool=psycopg_pool_figures(pool),         # psycopg_pool.AsyncConnectionPool
        database=PsycopgDatabaseCheck(dsn),      # SELECT 1 outside the pool
        metadata={"environment": "production"},
    )
    add_health(mcp, reporter)   # health://status and GET /health/status (503 if unhealthy)

The operator itself never imports this package (see ``[tool.importlinter]``).
"""

from mcp_health_operator.server.pools import (
    PsycopgDatabaseCheck,
    SizedPool,
    StatsPool,
    asyncpg_pool_figures,
    figures,
    psycopg_pool_figures,
)
from mcp_health_operator.server.report import (
    DatabaseCheck,
    HealthReporter,
    PoolFigures,
    PoolSource,
    cgroup_memory_limit,
    container_memory_limit_mb,
    http_status,
    overall_status,
)
from mcp_health_operator.server.sdk import HEALTH_PATH, HEALTH_URI, add_health, health_route

__all__ = [
    "HEALTH_PATH",
    "HEALTH_URI",
    "DatabaseCheck",
    "HealthReporter",
    "PoolFigures",
    "PoolSource",
    "PsycopgDatabaseCheck",
    "SizedPool",
    "StatsPool",
    "add_health",
    "asyncpg_pool_figures",
    "cgroup_memory_limit",
    "container_memory_limit_mb",
    "figures",
    "health_route",
    "http_status",
    "overall_status",
    "psycopg_pool_figures",
]
