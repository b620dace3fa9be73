"""Serving the document: the ``health://status`` resource and ``GET /health/status``."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from mcp.server.mcpserver import MCPServer
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from mcp_health_operator.server.report import HealthReporter, http_status

HEALTH_URI = "health://status"
HEALTH_PATH = "/health/status"


def add_health(
    server: MCPServer[Any],
    reporter: HealthReporter,
    *,
    uri: str = HEALTH_URI,
    http_path: str | None = HEALTH_PATH,
) -> None:
    """Register the health resource on ``server`` and, unless ``http_path`` is None, its route.

    The route is one of the server's custom routes, so ``server.sse_app()``
    and ``server.streamable_http_app()`` both serve it.
    """

    async def health_status() -> str:
        return json.dumps(await reporter.document())

    server.resource(
        uri,
        name="health_status",
        description="Health check endpoint (the guide's HealthCheckResponse).",
        mime_type="application/json",
    )(health_status)
    if http_path is not None:
        server.custom_route(http_path, methods=["GET"])(_endpoint(reporter))


def health_route(reporter: HealthReporter, path: str = HEALTH_PATH) -> Route:
    """A Starlette ``Route`` for ``GET path``: the same JSON, 503 when unhealthy."""
    return Route(path, endpoint=_endpoint(reporter), methods=["GET"])


def _endpoint(reporter: HealthReporter) -> Callable[[Request], Awaitable[JSONResponse]]:
    async def http_health(request: Request) -> JSONResponse:
        # The guide's `curl http://server/health/status`; 503 when unhealthy so
        # that a kubelet readiness probe on it follows health.
        document = await reporter.document()
        return JSONResponse(document, status_code=http_status(document))

    return http_health
