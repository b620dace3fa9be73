"""The sample MCP server: health resource and plain-HTTP route (the helper's), pool tools."""

from __future__ import annotations

import asyncio
import hmac
import json
from dataclasses import dataclass
from typing import Any

from mcp.server.mcpserver import MCPServer
from mcp.server.transport_security import TransportSecuritySettings
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from mcp_health_operator.server import add_health
from sample_mcp.health_service import HealthService
from sample_mcp.pool import DatabasePool


@dataclass(frozen=True)
class Profile:
    """What tells the guide's two servers apart."""

    name: str
    port: int
    version: str
    instructions: str


PROFILES = {
    "codebase-mcp": Profile(
        "codebase-mcp", 8000, "2.0.0", "Code search over indexed repositories."
    ),
    "workflow-mcp": Profile("workflow-mcp", 8001, "2.0.0", "Task and workflow tracking."),
}


def build(
    profile: Profile, pool: DatabasePool, health: HealthService, *, scale_delay_s: float = 0.0
) -> MCPServer[Any]:
    mcp: MCPServer[Any] = MCPServer(
        profile.name, version=profile.version, instructions=profile.instructions
    )

    # health://status, and GET /health/status with the same JSON (the guide's
    # `curl http://server/health/status`), 503 when unhealthy.
    add_health(mcp, health)

    @mcp.tool()
    async def database_time() -> str:
        """The database's clock, through a pooled connection."""
        async with pool.connection() as conn:
            cursor = await conn.execute("SELECT now()::text")
            row = await cursor.fetchone()
        return json.dumps({"now": row[0] if row else None})

    @mcp.tool()
    async def scale_pool(size: int) -> str:
        """Resize the database connection pool live (no restart)."""
        if size < 1:
            raise ValueError("size must be at least 1")
        if scale_delay_s:
            # A slow resize, so a caller can be interrupted mid-action in tests.
            await asyncio.sleep(scale_delay_s)
        await pool.resize(size)
        return json.dumps({"pool_size": pool.size})

    @mcp.tool()
    async def saturate_pool(connections: int, seconds: float = 60.0) -> str:
        """Check out `connections` pool connections and hold them (for testing alerts)."""
        held = await pool.hold(connections, seconds)
        return json.dumps({"held": held, "seconds": seconds})

    @mcp.tool()
    async def release_pool() -> str:
        """Return every connection held by saturate_pool."""
        await pool.release()
        return json.dumps({"held": 0})

    return mcp


def app(mcp: MCPServer[Any], transport: str, *, bearer_token: str | None = None) -> ASGIApp:
    # The sample is reached through a Service name as well as loopback, so
    # the Host allow-list of DNS-rebinding protection would get in the way.
    security = TransportSecuritySettings(enable_dns_rebinding_protection=False)
    if transport == "sse":
        inner: ASGIApp = mcp.sse_app(
            sse_path="/sse", message_path="/messages/", transport_security=security
        )
    else:
        inner = mcp.streamable_http_app(streamable_http_path="/mcp", transport_security=security)
    return BearerAuth(inner, bearer_token) if bearer_token else inner


class BearerAuth:
    """Every HTTP request must carry ``Authorization: Bearer <token>``; else 401."""

    def __init__(self, inner: ASGIApp, token: str) -> None:
        self.inner = inner
        self.expected = f"Bearer {token}".encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            headers = dict(scope.get("headers") or [])
            if not hmac.compare_digest(headers.get(b"authorization", b""), self.expected):
                await JSONResponse({"error": "unauthorized"}, status_code=401)(scope, receive, send)
                return
        await self.inner(scope, receive, send)
