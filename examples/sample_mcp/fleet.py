"""Many logical MCP targets in one process, for benchmarks: ``python -m sample_mcp.fleet``.

A thousand monitors should not need a thousand server processes. This serves
``--targets N`` targets numbered from ``--first`` on one port, each at its own
path, each with its own health state::

    python -m sample_mcp.fleet --targets 500 --first 0 --port 18000

    POST /t/<i>/mcp                   MCP over Streamable HTTP (the official SDK's MCPServer)
    GET  /t/<i>/health/status         the same JSON over plain HTTP
    POST /t/<i>/flip?status=S         set one target's status (healthy|degraded|unhealthy)
    POST /control/flip                {"targets": [i, ...] | "all", "status": S}
    GET  /control/arrivals?since=T    {"now": T1, "arrivals": {"<i>": [t, ...]}}: the wall-clock
                                      times (``time.time()``) at which each target's health
                                      resource was read, T <= t (no since: all kept)
    POST /control/reset               every target healthy, arrival log cleared
    GET  /control/stats               {"targets": N, "reads": R, "connections": C}: reads so
                                      far, and how many client connections (address and
                                      port) they came on

How: one ``MCPServer`` (one session manager) behind a Starlette route
``/t/{tid:int}/mcp``. The SDK hands the HTTP request that carried each
JSON-RPC message to the handler (``Context.request_context.request``), so
``read_resource`` looks up the target from the route's path parameter.
Mounting one ``MCPServer`` per target would also work and is not expensive
(measured: 500 instances with their apps, ~9 MB and 0.3 s of CPU), but each
needs its own session-manager lifespan and Starlette matches mounts one by
one; a single server with a path parameter costs nothing per target beyond
its state.

The health document has the guide's ``HealthCheckResponse`` shape (see
``health_service.py``) but no database behind it: the connection pool is a
fixed in-memory figure (10 total, 2 active, 8 idle, 0 waiting), the
database check reports a fixed latency while the target is healthy,
``degraded`` (slow) when degraded and ``disconnected`` when unhealthy, as
the real sample server does when PostgreSQL stops. Memory is the process's
real RSS against ``--memory-limit-mb``; disk is the real disk usage.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import uvicorn
from mcp.server.lowlevel.helper_types import ReadResourceContents
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.streamable_http_manager import StreamableHTTPASGIApp
from mcp.server.transport_security import TransportSecuritySettings
from mcp_types import InputRequiredResult
from pydantic.networks import AnyUrl
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from sample_mcp.health_service import _rss_mb

HEALTH_URI = "health://status"
STATUSES = ("healthy", "degraded", "unhealthy")
# How many read times each target keeps (at a 1 s interval, about 8 minutes).
ARRIVALS_KEPT = 512
# The fixed pool figure every target reports (there is no database in fleet mode).
POOL = {
    "total_connections": 10,
    "active_connections": 2,
    "idle_connections": 8,
    "waiting_requests": 0,
    "pool_utilization": 0.2,
}
_DB_LATENCY_MS = {"healthy": 1.5, "degraded": 150.0}


@dataclass
class TargetState:
    tid: int
    status: str = "healthy"
    client: tuple[str, int] | None = None
    arrivals: deque[float] = field(default_factory=lambda: deque(maxlen=ARRIVALS_KEPT))


class Fleet:
    """The targets' health states and read log, and the health document per target."""

    def __init__(
        self,
        first: int,
        count: int,
        *,
        memory_limit_mb: float = 2048.0,
        environment: str = "bench",
        region: str = "local",
    ) -> None:
        self.targets = {i: TargetState(i) for i in range(first, first + count)}
        self.started = time.monotonic()
        self.memory_limit_mb = memory_limit_mb
        self.environment = environment
        self.region = region
        self.reads = 0
        self.connections = 0
        self._clients: set[tuple[str, int] | None] = set()
        self._rss_mb = 0.0
        self._rss_at = -1.0
        disk = shutil.disk_usage(os.getcwd())
        self._disk = {
            "status": "pass",
            "free_gb": round(disk.free / 2**30, 1),
            "percentage_used": round(disk.used / disk.total * 100, 1) if disk.total else 0.0,
        }

    def get(self, tid: int) -> TargetState | None:
        return self.targets.get(tid)

    def flip(self, tids: Iterable[int], status: str) -> int:
        if status not in STATUSES:
            raise ValueError(f"status must be one of {', '.join(STATUSES)}, not {status!r}")
        flipped = 0
        for tid in tids:
            target = self.targets.get(tid)
            if target is not None:
                target.status = status
                flipped += 1
        return flipped

    def reset(self) -> None:
        for target in self.targets.values():
            target.status = "healthy"
            target.arrivals.clear()
            target.client = None
        self.reads = 0
        self.connections = 0
        self._clients.clear()

    def arrivals(self, since: float) -> dict[str, list[float]]:
        return {
            str(tid): [t for t in target.arrivals if t >= since]
            for tid, target in self.targets.items()
        }

    def record(self, target: TargetState, client: tuple[str, int] | None = None) -> None:
        target.arrivals.append(time.time())
        self.reads += 1
        target.client = client
        # A client that shares its connections among targets (a pool per
        # server) must not look like one connection per read.
        if client is None or client not in self._clients:
            self.connections += 1
            self._clients.add(client)

    def document(self, target: TargetState) -> dict[str, Any]:
        """The guide's HealthCheckResponse for one target."""
        status = target.status
        checks: dict[str, dict[str, Any]] = {}
        if status == "unhealthy":
            database_status = "disconnected"
            checks["database"] = {
                "status": "fail",
                "message": "Database unreachable: OperationalError",
            }
        else:
            slow = status == "degraded"
            database_status = "degraded" if slow else "connected"
            checks["database"] = {
                "status": "warn" if slow else "pass",
                "latency_ms": _DB_LATENCY_MS[status],
                "message": "Database responding slowly" if slow else "Database responding normally",
            }
        usage = self._rss()
        fraction = usage / self.memory_limit_mb if self.memory_limit_mb else 0.0
        checks["memory"] = {
            "status": "fail" if fraction > 0.95 else "warn" if fraction > 0.80 else "pass",
            "usage_mb": round(usage),
            "limit_mb": round(self.memory_limit_mb),
            "percentage": round(min(fraction, 1.0) * 100, 1),
        }
        checks["disk"] = self._disk
        return {
            "status": status,
            "timestamp": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
            "database_status": database_status,
            "uptime_seconds": round(time.monotonic() - self.started, 1),
            "connection_pool": POOL,
            "checks": checks,
            "metadata": {
                "version": "2.0.0",
                "environment": self.environment,
                "region": self.region,
                "server": f"fleet-target-{target.tid}",
            },
        }

    def _rss(self) -> float:
        # Once a second is plenty: reading /proc per probe would cost more than the probe.
        now = time.monotonic()
        if now - self._rss_at >= 1.0:
            self._rss_mb, self._rss_at = _rss_mb(), now
        return self._rss_mb


class FleetMCPServer(MCPServer[Any]):
    """One MCP server answering ``health://status`` for whichever target the request named."""

    def __init__(self, fleet: Fleet) -> None:
        super().__init__(
            "sample-fleet", version="2.0.0", instructions="Many health targets in one process."
        )
        self.fleet = fleet

        # Declared so that resources/list shows it; reads go through read_resource below.
        @self.resource(HEALTH_URI, name="health_status", mime_type="application/json")
        async def health_status() -> str:
            """Health check endpoint (the guide's HealthCheckResponse)."""
            raise ValueError("health://status is read per target, at /t/<i>/mcp")

    async def read_resource(
        self, uri: AnyUrl | str, context: Context[Any, Any] | None = None
    ) -> Iterable[ReadResourceContents] | InputRequiredResult:
        if str(uri) != HEALTH_URI or context is None:
            return await super().read_resource(uri, context)
        request = context.request_context.request
        tid = request.path_params.get("tid") if isinstance(request, Request) else None
        target = self.fleet.get(tid) if isinstance(tid, int) else None
        if target is None:
            return await super().read_resource(uri, context)
        self.fleet.record(target, _client(request))
        body = json.dumps(self.fleet.document(target))
        return [ReadResourceContents(content=body, mime_type="application/json")]


def app(fleet: Fleet, *, json_response: bool = False) -> Starlette:
    mcp = FleetMCPServer(fleet)
    # Reached through Service names as well as loopback (see server.app).
    security = TransportSecuritySettings(enable_dns_rebinding_protection=False)
    starlette = mcp.streamable_http_app(
        streamable_http_path="/mcp", transport_security=security, json_response=json_response
    )
    target_mcp = _TargetMCP(fleet, StreamableHTTPASGIApp(mcp.session_manager))

    def target_of(request: Request) -> TargetState | None:
        tid = request.path_params["tid"]
        return fleet.get(tid) if isinstance(tid, int) else None

    async def plain_health(request: Request) -> Response:
        target = target_of(request)
        if target is None:
            return JSONResponse({"error": "no such target"}, status_code=404)
        fleet.record(target, _client(request))
        return JSONResponse(fleet.document(target))

    async def flip_one(request: Request) -> Response:
        target = target_of(request)
        if target is None:
            return JSONResponse({"error": "no such target"}, status_code=404)
        try:
            fleet.flip([target.tid], request.query_params.get("status", "unhealthy"))
        except ValueError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        return JSONResponse({"target": target.tid, "status": target.status, "at": time.time()})

    async def flip_many(request: Request) -> Response:
        body = await request.json()
        wanted = body.get("targets", [])
        tids = list(fleet.targets) if wanted == "all" else [int(t) for t in wanted]
        try:
            flipped = fleet.flip(tids, str(body.get("status", "unhealthy")))
        except ValueError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        return JSONResponse({"flipped": flipped, "at": time.time()})

    async def arrivals(request: Request) -> Response:
        since = float(request.query_params.get("since", "0"))
        return JSONResponse({"now": time.time(), "arrivals": fleet.arrivals(since)})

    async def reset(_: Request) -> Response:
        fleet.reset()
        return JSONResponse({"targets": len(fleet.targets)})

    async def stats(_: Request) -> Response:
        return JSONResponse(
            {"targets": len(fleet.targets), "reads": fleet.reads, "connections": fleet.connections}
        )

    starlette.router.routes.extend(
        [
            Route("/t/{tid:int}/mcp", endpoint=target_mcp, methods=["GET", "POST", "DELETE"]),
            Route("/t/{tid:int}/health/status", endpoint=plain_health, methods=["GET"]),
            Route("/t/{tid:int}/flip", endpoint=flip_one, methods=["POST"]),
            Route("/control/flip", endpoint=flip_many, methods=["POST"]),
            Route("/control/arrivals", endpoint=arrivals, methods=["GET"]),
            Route("/control/reset", endpoint=reset, methods=["POST"]),
            Route("/control/stats", endpoint=stats, methods=["GET"]),
        ]
    )
    return starlette


def _client(request: object) -> tuple[str, int] | None:
    """The peer's (address, port): a new port means a new connection."""
    client = request.client if isinstance(request, Request) else None
    return (client.host, client.port) if client is not None else None


class _TargetMCP:
    """The MCP endpoint at ``/t/{tid}/mcp``: the SDK's ASGI app, for known targets only.

    A class, not a function: Starlette calls a plain function endpoint with a
    ``Request``, an object with ``__call__`` as a raw ASGI app.
    """

    def __init__(self, fleet: Fleet, endpoint: StreamableHTTPASGIApp) -> None:
        self.fleet = fleet
        self.endpoint = endpoint

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.fleet.get(scope["path_params"]["tid"]) is None:
            response = JSONResponse({"error": "no such target"}, status_code=404)
            await response(scope, receive, send)
            return
        await self.endpoint(scope, receive, send)


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m sample_mcp.fleet", description=__doc__)
    parser.add_argument("--targets", type=int, default=100, help="how many targets (default 100)")
    parser.add_argument("--first", type=int, default=0, help="number of the first target")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=18000)
    parser.add_argument("--memory-limit-mb", type=float, default=2048.0)
    parser.add_argument(
        "--json-response",
        action="store_true",
        help="answer MCP POSTs with application/json instead of an SSE stream",
    )
    return parser.parse_args(argv)


async def run(args: argparse.Namespace) -> None:
    fleet = Fleet(args.first, args.targets, memory_limit_mb=args.memory_limit_mb)
    config = uvicorn.Config(
        app(fleet, json_response=args.json_response),
        host=args.host,
        port=args.port,
        log_level="warning",
        access_log=False,
        lifespan="on",
        # Many keep-alive sessions, probed every few seconds.
        timeout_keep_alive=600,
        backlog=4096,
    )
    await uvicorn.Server(config).serve()


def main() -> None:
    asyncio.run(run(parse()))


if __name__ == "__main__":
    main()
