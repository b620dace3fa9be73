"""A stateful MCP server (the official SDK) that counts its sessions, for session-hygiene tests.

python -m mcp_health_testbed.stateful --port P [--no-resources] [--idle-timeout S]
    [--initialize-delay S]

The server speaks only the legacy Streamable HTTP transport: the
``initialize`` handshake and an ``Mcp-Session-Id`` per session, held by the
SDK's ``StreamableHTTPSessionManager`` until the client ends it with a
``DELETE`` (or the idle timeout, off by default here, reaps it). It is made
legacy-only the way the SDK provides for: its ``server/discover`` handler
(``Server.add_request_handler``) advertises only the handshake revisions,
which a client in ``mode="auto"`` takes as a legacy server and answers with
``initialize`` (``mcp.client._probe.negotiate_auto``).

Two variants:
  * default: an ``MCPServer`` serving ``health://status`` (and
    ``GET /health/status``) through ``mcp_health_operator.server.add_health``;
  * ``--no-resources``: a low-level ``Server`` with one tool and no resources
    capability at all (a server the operator judges by handshake and ping).

``--initialize-delay S`` holds each ``initialize`` request S seconds before
the SDK sees it (``SlowInitialize``): a handshake slower than a probe's timeout.

``GET /sessions`` answers the counts, as JSON:
  live        sessions the SDK's session manager holds now (the length of its
              own table, ``StreamableHTTPSessionManager._server_instances``)
  live_max    the most it held at once (since start, or the last reset)
  created     sessions ever admitted into that table (one per opening POST)
  ended       sessions ever removed from it (DELETE, idle timeout, a failed
              opening request, shutdown)
  deletes     DELETE requests received at the MCP endpoint; deletes_ok those
              answered 200 (a session ended by its client)
  stale       requests naming a session the server does not hold (answered 404)
  modern      requests at a 2026 protocol revision (the ``server/discover``
              probes a client in ``mode="auto"`` sends before ``initialize``)
  get_streams standalone GET streams open now (the SDK's client keeps one per
              session; while it is open the session is never idle)
  requests    every request at the MCP endpoint

The table is the SDK's own dict, replaced at start-up by a subclass of dict
that counts its insertions and removals (``_LiveSessions``); the SDK keeps
using it as before. ``POST /sessions/reset`` sets ``live_max`` to ``live``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import subprocess
import sys
import tempfile
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import mcp_types as types
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel import Server
from mcp.server.mcpserver import MCPServer
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings
from mcp.shared.inbound import MCP_PROTOCOL_VERSION_HEADER
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mcp_health_operator.server import HealthReporter, add_health
from mcp_health_testbed import _procs

MCP_PATH = "/mcp"
SESSIONS_PATH = "/sessions"
_VERSION_HEADER = MCP_PROTOCOL_VERSION_HEADER.lower().encode()
_SESSION_HEADER = b"mcp-session-id"


@dataclass
class Ledger:
    """What happened to the server's sessions (see the module's docstring)."""

    live: int = 0
    live_max: int = 0
    created: int = 0
    ended: int = 0
    deletes: int = 0
    deletes_ok: int = 0
    stale: int = 0
    modern: int = 0
    get_streams: int = 0
    requests: int = 0


class _LiveSessions(dict[str, Any]):
    """The session manager's table of live sessions, counted as the SDK changes it.

    The SDK writes it with ``table[id] = transport`` (admission), removes with
    ``table.pop(id, None)`` (a session's end) and ``table.clear()`` (shutdown).
    """

    def __init__(self, ledger: Ledger) -> None:
        super().__init__()
        self.ledger = ledger

    def __setitem__(self, key: str, value: Any) -> None:
        new = key not in self
        super().__setitem__(key, value)
        if new:
            self.ledger.created += 1
            self.ledger.live_max = max(self.ledger.live_max, len(self))

    def pop(self, key: str, /, *default: Any) -> Any:
        if key in self:
            self.ledger.ended += 1
        return super().pop(key, *default)

    def clear(self) -> None:
        self.ledger.ended += len(self)
        super().clear()


def count_sessions(manager: StreamableHTTPSessionManager, ledger: Ledger) -> _LiveSessions:
    """Swap the manager's (still empty) session table for a counting one; returns it."""
    table = _LiveSessions(ledger)
    assert not manager._server_instances, "count sessions before the manager runs"
    manager._server_instances = table
    return table


def legacy_only(server: Server[Any]) -> None:
    """Advertise only the handshake revisions in ``server/discover``.

    The 2026-07-28 revision has no sessions: a client in ``mode="auto"``
    first probes ``server/discover``, and adopts the stateless protocol when
    the server lists a 2026 revision. The SDK lets a server replace its
    discover handler (``Server._handle_discover`` says so); a result listing
    no modern revision is the legacy advertisement its client falls back on
    (``negotiate_auto``: "go-sdk's stateful streamable default does this").
    """

    async def discover(
        ctx: ServerRequestContext[Any], params: types.RequestParams
    ) -> types.DiscoverResult:
        return types.DiscoverResult(
            supported_versions=list(HANDSHAKE_PROTOCOL_VERSIONS),
            capabilities=server.get_capabilities(),
            instructions=server.instructions,
        )

    server.add_request_handler("server/discover", types.RequestParams, discover)


class Counting:
    """ASGI wrapper: counts the MCP endpoint's requests and serves ``/sessions``."""

    def __init__(self, inner: ASGIApp, table: _LiveSessions) -> None:
        self.inner = inner
        self.table = table
        self.ledger = table.ledger

    def figures(self) -> dict[str, int]:
        self.ledger.live = len(self.table)
        return asdict(self.ledger)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.inner(scope, receive, send)
            return
        path = scope["path"].rstrip("/")
        if path in (SESSIONS_PATH, SESSIONS_PATH + "/reset"):
            if path != SESSIONS_PATH and scope["method"] == "POST":
                self.ledger.live_max = len(self.table)
            await JSONResponse(self.figures())(scope, receive, send)
            return
        if path == MCP_PATH.rstrip("/"):
            await self._mcp(scope, receive, send)
            return
        await self.inner(scope, receive, send)

    async def _mcp(self, scope: Scope, receive: Receive, send: Send) -> None:
        ledger = self.ledger
        ledger.requests += 1
        headers = dict(scope.get("headers") or [])
        version = headers.get(_VERSION_HEADER, b"").decode("latin-1")
        if version and version not in HANDSHAKE_PROTOCOL_VERSIONS:
            ledger.modern += 1
        named = headers.get(_SESSION_HEADER)
        delete = scope["method"] == "DELETE"
        if delete:
            ledger.deletes += 1

        async def watch(message: Message) -> None:
            if message["type"] == "http.response.start":
                status = message["status"]
                if delete and status in (200, 204):
                    ledger.deletes_ok += 1
                if named is not None and status == 404:
                    ledger.stale += 1
            await send(message)

        stream = scope["method"] == "GET"
        ledger.get_streams += stream
        try:
            await self.inner(scope, receive, watch)
        finally:
            ledger.get_streams -= stream


class SlowInitialize:
    """ASGI wrapper: an ``initialize`` POST reaches the SDK only after ``delay`` seconds.

    A server slower to answer the handshake than a client waits: the SDK
    admits the session and answers a client that may have given up already.
    """

    def __init__(self, inner: ASGIApp, delay: float) -> None:
        self.inner = inner
        self.delay = delay

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.inner(scope, receive, send)
            return
        chunks: list[bytes] = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        body = b"".join(chunks)
        try:
            method = json.loads(body).get("method")
        except (ValueError, AttributeError):
            method = None
        if method == "initialize":
            await asyncio.sleep(self.delay)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.inner(scope, replay, send)


def _security() -> TransportSecuritySettings:
    # Reached as 127.0.0.1 or through a --resolve'd Service name.
    return TransportSecuritySettings(enable_dns_rebinding_protection=False)


def health_app(idle_timeout: float | None) -> tuple[ASGIApp, StreamableHTTPSessionManager]:
    """``MCPServer`` with ``health://status`` (the server authors' helper), legacy-only."""
    mcp: MCPServer[Any] = MCPServer("stateful-mcp", version="1.0.0")
    add_health(mcp, HealthReporter(service="stateful-mcp", version="1.0.0"))
    # MCPServer keeps its low-level Server private; the discover hook is on it.
    legacy_only(mcp._lowlevel_server)
    app = mcp.streamable_http_app(
        streamable_http_path=MCP_PATH,
        session_idle_timeout=idle_timeout,
        max_sessions=None,
        transport_security=_security(),
    )
    return app, mcp.session_manager


def bare_app(idle_timeout: float | None) -> tuple[ASGIApp, StreamableHTTPSessionManager]:
    """A low-level ``Server`` with one tool and no resources capability, legacy-only."""

    async def list_tools(
        ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        tool = types.Tool(name="echo", input_schema={"type": "object"})
        return types.ListToolsResult(tools=[tool])

    async def call_tool(
        ctx: ServerRequestContext[Any], params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        text = json.dumps(params.arguments or {})
        return types.CallToolResult(content=[types.TextContent(type="text", text=text)])

    server: Server[Any] = Server(
        "stateful-mcp-bare", version="1.0.0", on_list_tools=list_tools, on_call_tool=call_tool
    )
    legacy_only(server)
    app = server.streamable_http_app(
        streamable_http_path=MCP_PATH,
        session_idle_timeout=idle_timeout,
        max_sessions=None,
        transport_security=_security(),
    )
    return app, server.session_manager


def build(
    *, resources: bool = True, idle_timeout: float | None = None, initialize_delay: float = 0.0
) -> Counting:
    """The counting app (``idle_timeout`` None: a session lives until its DELETE)."""
    app, manager = health_app(idle_timeout) if resources else bare_app(idle_timeout)
    table = count_sessions(manager, Ledger())
    if initialize_delay > 0:
        app = SlowInitialize(app, initialize_delay)
    return Counting(app, table)


@dataclass
class StatefulServer:
    """``python -m mcp_health_testbed.stateful`` in a subprocess."""

    resources: bool = True
    idle_timeout: float | None = None
    initialize_delay: float = 0.0
    host: str = "127.0.0.1"
    port: int = 0
    _proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    _log: Path | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def url(self) -> str:
        return self.base_url + MCP_PATH

    @property
    def log(self) -> Path | None:
        return self._log

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def start(self, *, timeout: float = 30) -> StatefulServer:
        self.port = self.port or _procs.free_port(self.host)
        fd, name = tempfile.mkstemp(prefix="stateful-mcp-", suffix=".log")
        os.close(fd)
        self._log = Path(name)
        argv = [sys.executable, "-m", "mcp_health_testbed.stateful", "--port", str(self.port)]
        argv += ["--host", self.host]
        if not self.resources:
            argv.append("--no-resources")
        if self.idle_timeout is not None:
            argv += ["--idle-timeout", str(self.idle_timeout)]
        if self.initialize_delay:
            argv += ["--initialize-delay", str(self.initialize_delay)]
        self._proc = subprocess.Popen(
            argv, stdout=self._log.open("ab"), stderr=subprocess.STDOUT, start_new_session=True
        )
        _procs.wait_for_port(self.host, self.port, timeout=timeout, proc=self._proc, log=self._log)
        return self

    def sessions(self, *, reset: bool = False) -> dict[str, int]:
        """The server's counts (see the module's docstring); ``reset``: live_max := live."""
        path = SESSIONS_PATH + ("/reset" if reset else "")
        request = urllib.request.Request(self.base_url + path, method="POST" if reset else "GET")
        with urllib.request.urlopen(request, timeout=10) as response:
            figures: dict[str, int] = json.loads(response.read())
        return figures

    def stop(self) -> None:
        _procs.stop(self._proc)
        self._proc = None

    def __enter__(self) -> StatefulServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    parser = argparse.ArgumentParser(prog="python -m mcp_health_testbed.stateful")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument(
        "--no-resources",
        dest="resources",
        action="store_false",
        help="no resources capability (a server judged by handshake and ping)",
    )
    parser.add_argument(
        "--idle-timeout",
        type=float,
        default=None,
        help="the SDK's session_idle_timeout in seconds (default: none, a session lives "
        "until its client deletes it)",
    )
    parser.add_argument(
        "--initialize-delay",
        type=float,
        default=0.0,
        help="hold each initialize request this many seconds before the SDK sees it",
    )
    args = parser.parse_args(argv)
    # The SDK logs every session made and ended at INFO.
    logging.getLogger("mcp").setLevel(logging.WARNING)
    app = build(
        resources=args.resources,
        idle_timeout=args.idle_timeout,
        initialize_delay=args.initialize_delay,
    )
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
