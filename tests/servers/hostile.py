"""Misbehaving servers, as real processes, for probe tests.

python hostile.py status --code 401 --port P     # every request answers 401
python hostile.py status --code 429 --retry-after 7 --port P
python hostile.py tarpit --port P                # accepts, never answers
python hostile.py drip --interval 0.2 --port P   # a valid-looking HTTP response, one byte a tick
python hostile.py bomb --size-mb 50 --port P     # every answer gzip-encoded, whatever was asked:
                                                 # ~50 KiB on the wire, 50 MiB decoded
python hostile.py sse-get --answer A --port P    # what an SSE client's GET is answered, 200 always:
    json      application/json: a JSON-RPC error, as a Streamable HTTP endpoint answers
    text      text/plain: a page that is not an event stream
    silent    text/event-stream, then nothing, ever
    drip      text/event-stream, a valid endpoint event one byte every --interval seconds
python hostile.py doc [--document JSON] --port P # a GET of any path answers the document
                                                 # (default: a healthy one); /__count counts

A real MCP server (the official SDK) whose health answer misbehaves; the same
answer is served over plain HTTP at ``/health/status``:

python hostile.py mcp --transport streamable-http|sse --behaviour B --port P
    [--json-response]   Streamable HTTP answers JSON rather than server-sent events
    [--legacy]          refuse server/discover: clients fall back to initialize

    ok        a valid health document
    huge      the document padded with --size-mb MiB (50), streamed; a complete,
              valid message if anyone read it all
    endless   the document's padding never ends
    drip      the answer one byte every --interval seconds (0.2)
    cut       half of the answer, then the connection is dropped
    missing   resources are served, but not health://status

python hostile.py tools-only --transport streamable-http|sse [--legacy] --port P
    a low-level ``mcp.server.lowlevel.Server`` with tools and no resources
    capability; nothing at /health/status (404)
python hostile.py resources-only ...
    the same with the health resource (listed, healthy) and no tools capability

Both MCP modes record the JSON-RPC method of every request they receive, and
answer ``GET /__methods`` with the list (what a probe asked of the server).

How the MCP answer misbehaves: the health resource's text carries a marker
(``metadata.pad``); an ASGI wrapper around the SDK's app watches what the
SDK sends and, for the one body chunk holding the marker (the JSON response
to ``resources/read``, or its server-sent event), sends the misbehaving
version instead. Everything else (discover, initialize, sessions) is the
real SDK.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send


def status_app(code: int, retry_after: str | None) -> Starlette:
    async def answer(request: Request) -> Response:
        await request.body()
        headers = {"Retry-After": retry_after} if retry_after else {}
        return PlainTextResponse(f"HTTP {code}", status_code=code, headers=headers)

    return Starlette(routes=[Route("/{path:path}", answer, methods=["GET", "POST", "DELETE"])])


HEALTHY = {
    "status": "healthy",
    "database_status": "connected",
    "uptime_seconds": 1.0,
    "connection_pool": {
        "total_connections": 10,
        "active_connections": 1,
        "idle_connections": 9,
        "waiting_requests": 0,
        "pool_utilization": 0.1,
    },
    "checks": {"database": {"status": "pass", "latency_ms": 1.0}},
}


def doc_app(served_document: dict[str, Any] | None = None) -> Starlette:
    body = HEALTHY if served_document is None else served_document
    served = {"count": 0}

    async def document(request: Request) -> Response:
        served["count"] += 1
        return JSONResponse(body)

    async def count(request: Request) -> Response:
        return JSONResponse(served)

    return Starlette(
        routes=[Route("/__count", count), Route("/{path:path}", document, methods=["GET"])]
    )


async def tarpit(host: str, port: int) -> None:
    held: list[asyncio.StreamWriter] = []

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)  # keep the connection open and say nothing, ever
        await asyncio.Event().wait()

    server = await asyncio.start_server(accept, host, port)
    async with server:
        await server.serve_forever()


async def drip(host: str, port: int, interval: float) -> None:
    """Read the request head, then answer a complete, valid response one byte a tick."""
    body = json.dumps(HEALTHY).encode()
    response = (
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
        + f"content-length: {len(body)}\r\n\r\n".encode()
        + body
    )

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            for i in range(len(response)):
                writer.write(response[i : i + 1])
                await writer.drain()
                await asyncio.sleep(interval)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(accept, host, port)
    async with server:
        await server.serve_forever()


def bomb_app(size: int) -> Starlette:
    """Every answer gzip-encoded, ``size`` bytes decoded: JSON, or an event stream if asked."""
    import gzip

    pad = b"x" * size
    json_body = gzip.compress(b'{"status": "healthy", "pad": "' + pad + b'"}', compresslevel=9)
    sse_body = gzip.compress(b"event: endpoint\ndata: /messages/\n\n: " + pad, compresslevel=9)
    del pad

    async def answer(request: Request) -> Response:
        await request.body()
        headers = {"content-encoding": "gzip"}
        if request.method == "GET" and "text/event-stream" in request.headers.get("accept", ""):
            return Response(sse_body, media_type="text/event-stream", headers=headers)
        return Response(json_body, media_type="application/json", headers=headers)

    return Starlette(routes=[Route("/{path:path}", answer, methods=["GET", "POST", "DELETE"])])


SSE_ANSWERS = ("json", "text", "silent", "drip")


def sse_get_app(answer: str, interval: float) -> Starlette:
    """Every GET answered 200 as ``answer`` says, never with an endpoint event in time."""
    from starlette.responses import StreamingResponse

    async def get(request: Request) -> Response:
        if answer == "json":
            error = {"code": -32600, "message": "Bad Request: Missing session ID"}
            return JSONResponse({"jsonrpc": "2.0", "id": None, "error": error})
        if answer == "text":
            return PlainTextResponse("OK")

        async def events() -> Any:
            if answer == "silent":
                await asyncio.Event().wait()
            for byte in b"event: endpoint\ndata: /messages/?session_id=0\n\n":  # drip
                yield bytes([byte])
                await asyncio.sleep(interval)

        return StreamingResponse(events(), media_type="text/event-stream")

    return Starlette(routes=[Route("/{path:path}", get, methods=["GET"])])


# -- MCP servers with a misbehaving health answer ------------------------------

MARKER = "@@HOSTILE-PAD@@"
BEHAVIOURS = ("ok", "huge", "endless", "drip", "cut", "missing")
_CHUNK = 64 * 1024
# "endless" stops somewhere: uvicorn's send() is a no-op once the client has
# gone, so an unbounded loop would spin for ever after the probe gives up.
# A GiB is endless enough for a client that must stop at a few MiB.
_ENDLESS_BYTES = 1 << 30


def hostile_document() -> dict[str, Any]:
    return {**HEALTHY, "metadata": {"pad": MARKER}}


class Misbehave:
    """ASGI wrapper: the response body chunk carrying ``MARKER`` is sent misbehaving.

    ``legacy``: refuse ``server/discover`` (method not found), as servers of
    the handshake era do, so a client falls back to ``initialize`` and a
    Streamable HTTP server answers its requests as server-sent events.
    """

    def __init__(
        self, inner: ASGIApp, behaviour: str, size: int, interval: float, *, legacy: bool
    ) -> None:
        self.inner = inner
        self.behaviour = behaviour
        self.size = size
        self.interval = interval
        self.legacy = legacy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self.legacy and scope["method"] == "POST":
            replay = await self._refuse_discover(scope, receive, send)
            if replay is None:
                return
            receive = replay
        if scope["type"] != "http" or self.behaviour in ("ok", "missing"):
            await self.inner(scope, receive, send)
            return
        held: list[Message] = []  # a response start, kept until its body shows what it is

        async def watch(message: Message) -> None:
            if message["type"] == "http.response.start":
                held.append(message)
                return
            body = message.get("body", b"") if message["type"] == "http.response.body" else b""
            if MARKER.encode() in body:
                start = held.pop() if held else None
                await self._misbehave(start, body, send)
                more = bool(message.get("more_body", False))
                await send({"type": "http.response.body", "body": b"", "more_body": more})
                return
            if held:
                await send(held.pop())
            await send(message)

        await self.inner(scope, receive, watch)

    async def _refuse_discover(self, scope: Scope, receive: Receive, send: Send) -> Receive | None:
        """Answer a ``server/discover`` POST with method-not-found; else replay the body."""
        request, receive = await _read_request(receive)
        if isinstance(request, dict) and request.get("method") == "server/discover":
            error = {"code": -32601, "message": "Method not found: server/discover"}
            reply = {"jsonrpc": "2.0", "id": request.get("id"), "error": error}
            await JSONResponse(reply)(scope, receive, send)
            return None
        return receive

    async def _misbehave(self, start: Message | None, body: bytes, send: Send) -> None:
        before, _, after = body.partition(MARKER.encode())

        async def begin(length: int | None) -> None:
            if start is None:
                return  # already sent: the answer is an event on a running stream
            headers = [(k, v) for k, v in start["headers"] if k.lower() != b"content-length"]
            if length is not None:
                headers.append((b"content-length", str(length).encode()))
            await send({**start, "headers": headers})

        async def chunk(data: bytes) -> None:
            await send({"type": "http.response.body", "body": data, "more_body": True})

        if self.behaviour == "drip":
            data = before + after
            await begin(len(data))
            for i in range(len(data)):
                await chunk(data[i : i + 1])
                await asyncio.sleep(self.interval)
        elif self.behaviour == "cut":
            data = before + after
            await begin(len(data))
            await chunk(data[: len(data) // 2])
            await asyncio.sleep(0.05)
            raise ConnectionAbortedError("hostile: dropping the connection mid-response")
        else:  # huge, endless
            total = self.size if self.behaviour == "huge" else _ENDLESS_BYTES
            await begin(None)
            await chunk(before)
            pad = b"x" * _CHUNK
            for _ in range(total // _CHUNK):
                await chunk(pad)
                await asyncio.sleep(0)  # a no-op send() after a disconnect never yields
            await chunk(after)


class Recorder:
    """ASGI wrapper: the JSON-RPC method of every POST, listed at ``GET /__methods``."""

    def __init__(self, inner: ASGIApp) -> None:
        self.inner = inner
        self.methods: list[str] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.inner(scope, receive, send)
            return
        if scope["path"] == "/__methods":
            await JSONResponse(self.methods)(scope, receive, send)
            return
        if scope["method"] != "POST":
            await self.inner(scope, receive, send)
            return
        request, receive = await _read_request(receive)
        if isinstance(request, dict) and isinstance(request.get("method"), str):
            self.methods.append(request["method"])
        await self.inner(scope, receive, send)


async def _read_request(receive: Receive) -> tuple[Any, Receive]:
    """A request body's JSON (None if it is not), and a receive that replays the body."""
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            break
    body = b"".join(chunks)
    try:
        request = json.loads(body)
    except ValueError:
        request = None
    replayed = False

    async def replay() -> Message:
        nonlocal replayed
        if not replayed:
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return request, replay


def _security() -> Any:
    from mcp.server.transport_security import TransportSecuritySettings

    return TransportSecuritySettings(enable_dns_rebinding_protection=False)


def mcp_app(transport: str, behaviour: str, *, json_response: bool) -> ASGIApp:
    from mcp.server.mcpserver import MCPServer

    mcp: MCPServer[Any] = MCPServer("hostile-mcp", version="0.0.1")
    uri = "health://other" if behaviour == "missing" else "health://status"

    @mcp.resource(uri, name="health_status", mime_type="application/json")
    async def health_status() -> str:
        return json.dumps(hostile_document())

    @mcp.custom_route("/health/status", methods=["GET"])  # type: ignore[untyped-decorator]
    async def http_health(request: Request) -> JSONResponse:
        if behaviour == "missing":
            return JSONResponse({"error": "not found"}, status_code=404)
        return JSONResponse(hostile_document())

    if transport == "sse":
        return mcp.sse_app(
            sse_path="/sse", message_path="/messages/", transport_security=_security()
        )
    return mcp.streamable_http_app(
        streamable_http_path="/mcp", json_response=json_response, transport_security=_security()
    )


def lowlevel_app(transport: str, *, tools: bool, resources: bool) -> ASGIApp:
    """A low-level SDK server with only the capabilities asked for: a tool, the health resource."""
    import mcp_types as types
    from mcp.server.context import ServerRequestContext
    from mcp.server.lowlevel import Server

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

    async def list_resources(
        ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
    ) -> types.ListResourcesResult:
        health = types.Resource(uri="health://status", name="health_status")
        return types.ListResourcesResult(resources=[health])

    async def read_resource(
        ctx: ServerRequestContext[Any], params: types.ReadResourceRequestParams
    ) -> types.ReadResourceResult:
        text = json.dumps(HEALTHY)
        contents = types.TextResourceContents(uri=params.uri, text=text)
        return types.ReadResourceResult(contents=[contents])

    name = "tools-only" if tools and not resources else "resources-only" if resources else "bare"
    server: Server[Any] = Server(
        name,
        on_list_tools=list_tools if tools else None,
        on_call_tool=call_tool if tools else None,
        on_list_resources=list_resources if resources else None,
        on_read_resource=read_resource if resources else None,
    )
    if transport != "sse":
        return server.streamable_http_app(
            streamable_http_path="/mcp", transport_security=_security()
        )

    from mcp.server.sse import SseServerTransport
    from starlette.routing import Mount

    sse = SseServerTransport("/messages/", security_settings=_security())

    async def handle_sse(request: Request) -> Response:
        async with sse.connect_sse(request.scope, request.receive, request._send) as streams:
            await server.run(streams[0], streams[1], server.create_initialization_options())
        return Response()

    return Starlette(
        routes=[
            Route("/sse", handle_sse, methods=["GET"]),
            Mount("/messages/", app=sse.handle_post_message),
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "mode",
        choices=[
            "status",
            "tarpit",
            "doc",
            "drip",
            "bomb",
            "sse-get",
            "mcp",
            "tools-only",
            "resources-only",
        ],
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--code", type=int, default=401)
    parser.add_argument("--retry-after")
    parser.add_argument("--interval", type=float, default=0.2)
    parser.add_argument(
        "--transport", choices=["streamable-http", "sse"], default="streamable-http"
    )
    parser.add_argument("--json-response", action="store_true")
    parser.add_argument("--legacy", action="store_true", help="refuse server/discover")
    parser.add_argument("--behaviour", choices=BEHAVIOURS, default="ok")
    parser.add_argument("--size-mb", type=int, default=50)
    parser.add_argument("--answer", choices=SSE_ANSWERS, default="json")
    parser.add_argument("--document", type=json.loads, help="doc: the JSON document to serve")
    args = parser.parse_args()
    app: ASGIApp
    if args.mode == "tarpit":
        asyncio.run(tarpit(args.host, args.port))
        return
    if args.mode == "drip":
        asyncio.run(drip(args.host, args.port, args.interval))
        return
    if args.mode == "doc":
        app = doc_app(args.document)
    elif args.mode == "bomb":
        app = bomb_app(args.size_mb << 20)
    elif args.mode == "sse-get":
        app = sse_get_app(args.answer, args.interval)
    elif args.mode == "mcp":
        inner = mcp_app(args.transport, args.behaviour, json_response=args.json_response)
        app = Recorder(
            Misbehave(inner, args.behaviour, args.size_mb << 20, args.interval, legacy=args.legacy)
        )
    elif args.mode in ("tools-only", "resources-only"):
        tools = args.mode == "tools-only"
        inner = lowlevel_app(args.transport, tools=tools, resources=not tools)
        app = Recorder(Misbehave(inner, "ok", 0, 0.0, legacy=args.legacy))
    else:
        app = status_app(args.code, args.retry_after)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
