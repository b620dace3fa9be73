"""Reading a server's health resource: one typed result per probe, never an exception.

A ``Prober`` keeps one session to one target and reuses it across probes
(a new MCP client per probe costs ~30 ms of CPU, a reused session ~1 ms). It
reconnects after a failure of the connection and, even when all is well,
re-handshakes every ``rehandshake_after`` seconds so a broken accept path on
the server is noticed.

On Streamable HTTP the SDK makes the session (``server/discover``, or the
``initialize`` handshake) and holds it; every read of the health resource
is then sent by ``wire``: one pre-serialised ``resources/read`` POST,
stamped as the SDK stamps it (protocol version, method and name headers,
the session's id), on a keep-alive pool that all probes share, with the
answer read within the same bounds (~0.3 ms of CPU a read instead of
1-2 ms through the SDK's client). A failed read keeps the session unless
the connection failed; a 404 on a kept session (the server forgot it) is a
stale session, made again once within the same probe.

A ``Prober`` must be driven from a single task: the SDK's transports run in
anyio task groups that have to be entered and left by the same task.

Transports:
- ``streamable-http``: MCP over Streamable HTTP; ``mode="auto"`` negotiates
  the 2026 protocol or falls back to the initialize handshake.
- ``sse``: MCP over the legacy SSE transport (the guide's transport). A GET
  answered with anything but an event stream (a Streamable HTTP endpoint's
  JSON, say) is a ``ProtocolError`` naming what answered and what to set.
- ``http``: a plain ``GET`` of the same JSON (the guide's ``curl .../health/status``).

No response is read past a bound, whatever the transport: a plain ``GET``
stops at ``max_bytes + 1``; under the SDK's transports every response body
the probe's HTTP clients receive is wrapped so that reading ends once it
passes ``2 * max_bytes + 64 KiB`` (room for the JSON-RPC envelope and JSON
string escaping around a document of ``max_bytes``), counted per
server-sent event on event streams (one SSE stream carries a whole
session). Compressed bodies are refused (the probe asks for ``identity``):
their decoded size could not be bounded by counting what arrives. Such a
probe ends at once as ``InvalidDocument`` (or ``ProtocolError`` for an
encoding) with a message naming the limit.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import json
import logging
import ssl
import time
import weakref
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import anyio
import httpx2
from mcp import Client, MCPError
from mcp.client.sse import sse_client
from mcp.client.streamable_http import MCP_SESSION_ID, streamable_http_client
from mcp.shared.inbound import (
    MCP_METHOD_HEADER,
    MCP_NAME_HEADER,
    MCP_PROTOCOL_VERSION_HEADER,
    encode_header_value,
)
from mcp_types import (
    CLIENT_CAPABILITIES_META_KEY,
    CLIENT_INFO_META_KEY,
    PROTOCOL_VERSION_META_KEY,
    BlobResourceContents,
    Implementation,
    TextResourceContents,
)
from mcp_types.jsonrpc import CONNECTION_CLOSED, INVALID_REQUEST, METHOD_NOT_FOUND
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from multidict import CIMultiDict

from mcp_health_operator import __version__
from mcp_health_operator.core import health
from mcp_health_operator.core.health import HealthCheckResponse
from mcp_health_operator.probing import wire

DEFAULT_RESOURCE = "health://status"
DEFAULT_TIMEOUT = 1.0
DEFAULT_REHANDSHAKE_AFTER = 300.0
_CLOSE_GRACE = 0.5
# Room around a document of max_bytes on the wire: the JSON-RPC envelope, SSE
# framing, and JSON string escaping (a quote in the document is two bytes).
_WIRE_MARGIN = 64 * 1024
# httpx2's own bound on one server-sent event, which the SDK's SSE transport
# keeps (sse_client takes no max_event_size).
_SSE_CLIENT_EVENT_LIMIT = 1024 * 1024
_CLIENT_INFO = Implementation(name="mcp-health-operator", version=__version__)


class Transport(StrEnum):
    STREAMABLE_HTTP = "streamable-http"
    SSE = "sse"
    HTTP = "http"


# Where each transport lives when a URL names only the server (as the
# guide's `health_check.py http://localhost:8000` does).
DEFAULT_PATHS = {
    Transport.STREAMABLE_HTTP: "/mcp",
    Transport.SSE: "/sse",
    Transport.HTTP: "/health/status",
}


class Outcome(StrEnum):
    OK = "Ok"
    TIMEOUT = "Timeout"
    UNREACHABLE = "Unreachable"
    INVALID_DOCUMENT = "InvalidDocument"
    RESOURCE_NOT_FOUND = "ResourceNotFound"
    UNAUTHORIZED = "Unauthorized"
    RATE_LIMITED = "RateLimited"
    PROTOCOL_ERROR = "ProtocolError"


@dataclass(frozen=True, slots=True)
class ServerIdentity:
    name: str | None
    version: str | None
    protocol_version: str | None
    transport: Transport


@dataclass(frozen=True, slots=True)
class ProbeResult:
    outcome: Outcome
    latency_ms: float
    document: HealthCheckResponse | None = None
    message: str = ""
    server: ServerIdentity | None = None
    retry_after_s: float | None = None
    http_status: int | None = None

    @property
    def ok(self) -> bool:
        return self.outcome is Outcome.OK


@dataclass(frozen=True, slots=True)
class Target:
    """Where and how to probe. ``url`` is the transport endpoint (see ``endpoint``)."""

    url: str
    transport: Transport = Transport.STREAMABLE_HTTP
    resource_uri: str = DEFAULT_RESOURCE
    headers: Mapping[str, str] = field(default_factory=dict)
    ca_file: str | None = None
    ca_data: str | None = None  # PEM, e.g. from a Secret
    insecure_skip_verify: bool = False


async def addresses(host: str) -> list[str]:
    """The addresses ``host`` resolves to (none if it does not), for the target checks."""
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, None)
    except OSError:
        return []
    return sorted({str(info[4][0]) for info in infos})


def endpoint(url: str, transport: Transport) -> str:
    """``url`` with the transport's default path when it names only the server."""
    parts = urlsplit(url)
    if parts.path in ("", "/"):
        parts = parts._replace(path=DEFAULT_PATHS[transport])
    return urlunsplit(parts)


class ProbeFailure(Exception):
    """A classified failure on the way to a document; becomes a ``ProbeResult``."""

    def __init__(
        self,
        outcome: Outcome,
        message: str,
        *,
        http_status: int | None = None,
        retry_after_s: float | None = None,
        keep_session: bool = False,
    ) -> None:
        super().__init__(message)
        self.outcome = outcome
        self.message = message
        self.http_status = http_status
        self.retry_after_s = retry_after_s
        # The server answered on a working session: no reason to make a new one.
        self.keep_session = keep_session


class _StaleSession(ProbeFailure):
    """A 404 on the session's id: the server no longer knows the session."""

    def __init__(self, path: str) -> None:
        super().__init__(
            Outcome.PROTOCOL_ERROR, f"no MCP session at {path} (HTTP 404)", http_status=404
        )


@dataclass(slots=True)
class _ReadRequest:
    """The session's ``resources/read``, serialised once; only its id changes per read."""

    url: str
    headers: CIMultiDict[str]
    tls: ssl.SSLContext | bool
    session_id: str | None
    prefix: bytes
    suffix: bytes

    def body(self, request_id: int) -> bytes:
        return self.prefix + str(request_id).encode() + self.suffix


class Prober:
    """One target, one reusable session, one ``ProbeResult`` per ``probe()``."""

    def __init__(
        self,
        target: Target,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        max_bytes: int = health.DEFAULT_MAX_BYTES,
        rehandshake_after: float = DEFAULT_REHANDSHAKE_AFTER,
    ) -> None:
        self.target = target
        self.timeout = timeout
        self.max_bytes = max_bytes
        self.rehandshake_after = rehandshake_after
        self._http: httpx2.AsyncClient | None = None
        self._session_holder: _SessionHolder | None = None
        self._reused = False
        self._connected_at = 0.0
        self._identity: ServerIdentity | None = None
        # The SDK turns an HTTP 401/403/429 on its POST into a generic MCP
        # error; a response hook keeps the status so the probe can say what
        # really happened.
        self._http_error: tuple[int, Mapping[str, str]] | None = None
        # What answered the SSE transport's GET when it was no event stream:
        # the SDK makes that an SSEError, which reads as unreachable.
        self._sse_answer: tuple[int, Mapping[str, str]] | None = None
        # A response body refused mid-read (over its limit, or compressed):
        # the SDK turns that into a generic error, or none at all, so the
        # refusal is kept here and the probe waiting on it is cancelled.
        self._refused: ProbeFailure | None = None
        self._probe_scope: anyio.CancelScope | None = None
        self._probe_task: asyncio.Task[Any] | None = None
        # The steady-state read (Streamable HTTP): see ``wire``.
        self._request: _ReadRequest | None = None
        self._pool: wire.Pool | None = None
        self._request_id = 0
        self._mcp_session_id: str | None = None
        self._has_resources = False
        # When the read of this probe began, if a session was made before it:
        # a probe's latency is its read's, not the handshake's (a start-up of
        # many monitors would otherwise read as slow servers).
        self._read_started: float | None = None

    @property
    def url(self) -> str:
        return endpoint(self.target.url, self.target.transport)

    async def probe(self, *, timeout: float | None = None) -> ProbeResult:
        started = time.perf_counter()
        self._read_started = None
        budget = self.timeout if timeout is None else timeout
        if self._steady():
            # The common case, kept free of anyio scopes and the SDK's client.
            try:
                async with asyncio.timeout(budget):
                    document = await self._read_wire()
                return self._result(Outcome.OK, started, document=document)
            except TimeoutError:
                return self._result(
                    Outcome.TIMEOUT, started, message=f"no answer within {budget:g}s"
                )
            except _StaleSession:
                # The server forgot the session (it restarted): that says
                # nothing about the server; a new session, within what is
                # left of the budget.
                await self._discard()
            except Exception as exc:  # classified here; a probe never raises
                failure = exc if isinstance(exc, ProbeFailure) else classify(exc)
                if not failure.keep_session:
                    await self._discard()
                return self._failed(started, failure)
            return await self._probe_afresh(started, budget)
        if self.target.transport is Transport.HTTP or not self._needs_handshake():
            return await self._probe_afresh(started, budget)
        # A handshake costs ten times a read: a thousand monitors starting at
        # once would each time out while the others' handshakes hold the loop.
        # Waiting for a slot is the operator's queue, not the server's
        # latency, so the probe's clock starts after it.
        async with _handshake_slots():
            return await self._probe_afresh(time.perf_counter(), budget)

    def _needs_handshake(self) -> bool:
        if time.monotonic() - self._connected_at >= self.rehandshake_after:
            return True
        if self._request is not None and self._request.session_id is None:
            return False  # nothing held on either side (see _session)
        holder = self._session_holder
        return holder is None or holder.client is None

    def _steady(self) -> bool:
        """A read request is ready on a live session that is not due for a re-handshake."""
        return self._request is not None and not self._needs_handshake()

    async def _probe_afresh(self, started: float, budget: float) -> ProbeResult:
        remaining = max(budget - (time.perf_counter() - started), 0.0)
        self._http_error = self._sse_answer = None
        self._refused = None
        try:
            with anyio.fail_after(remaining):
                document = await self._read_guarded()
        except TimeoutError:
            # A read that timed out on a session just made leaves the session
            # as good as it was (as on the steady path); a handshake that
            # timed out leaves none.
            if self._refused is not None or not self._steady():
                await self._discard()
            if self._refused is not None:
                return self._failed(started, self._refused)
            return self._result(Outcome.TIMEOUT, started, message=f"no answer within {budget:g}s")
        except Exception as exc:  # classified here; a probe never raises
            await self._discard()
            known = exc if isinstance(exc, ProbeFailure) else None
            # A refused body first: once the probe gave up on a session, the
            # SDK's requests on it may meet 404s that say nothing.
            failure = known or self._refused or self._http_failure() or classify(exc)
            return self._failed(started, failure)
        return self._result(Outcome.OK, started, document=document)

    async def _read_guarded(self) -> HealthCheckResponse:
        """``_read`` in a scope that a refused response body cancels (see ``_refuse``)."""
        with anyio.CancelScope() as scope:
            self._probe_scope, self._probe_task = scope, asyncio.current_task()
            try:
                try:
                    return await self._read()
                except Exception as exc:
                    if self._refused is not None or not self._stale_session(exc):
                        raise
                    # A kept session can go stale (server restarted, idle
                    # connection dropped): that says nothing about the
                    # server, so retry once on a fresh session.
                    await self._discard()
                    self._http_error = self._sse_answer = None
                    return await self._read()
            finally:
                self._probe_scope = self._probe_task = None
        # Only _refuse cancels this scope, and it has set _refused.
        raise _Refused()

    def _failed(self, started: float, failure: ProbeFailure) -> ProbeResult:
        return self._result(
            failure.outcome,
            started,
            message=failure.message,
            http_status=failure.http_status,
            retry_after_s=failure.retry_after_s,
        )

    async def call_tool(self, name: str, arguments: dict[str, Any], *, timeout: float) -> str:
        """Call a tool on the target over the kept session; raises on any failure."""
        if self.target.transport is Transport.HTTP:
            raise ValueError("calling a tool needs an MCP transport, not plain http")
        with anyio.fail_after(timeout):
            client = await self._session(hold=True)
            result = await client.call_tool(name, arguments)
        text = " ".join(getattr(c, "text", "") for c in result.content).strip()
        if result.is_error:
            raise RuntimeError(f"tool {name} failed: {text[:200]}")
        return text

    def _stale_session(self, exc: Exception) -> bool:
        if not self._reused:
            return False
        if isinstance(exc, _StaleSession):
            return True
        if isinstance(exc, MCPError):
            return exc.code == CONNECTION_CLOSED or (
                exc.code == INVALID_REQUEST and "session terminated" in exc.message.lower()
            )
        return isinstance(exc, httpx2.TransportError)

    def _http_failure(self) -> ProbeFailure | None:
        """What an HTTP answer the SDK reports vaguely (or as unreachable) really said."""
        failure = None
        if self._http_error is not None:
            code, headers = self._http_error
            failure = _status_failure(code, headers)
            if failure is None and code == 404:
                failure = ProbeFailure(
                    Outcome.PROTOCOL_ERROR,
                    f"no MCP endpoint at {urlsplit(self.url).path} (HTTP 404)",
                    http_status=code,
                )
        if failure is None and self._sse_answer is not None:
            code, headers = self._sse_answer
            received = _short(headers.get("content-type", "").partition(";")[0], 60)
            # A Streamable HTTP endpoint answers a GET in JSON (a JSON-RPC
            # error without a session) or with a session id.
            if received.lower() == "application/json" or MCP_SESSION_ID in headers:
                fix = "is this a streamable-HTTP endpoint? set transport: streamable-http"
            elif 200 <= code < 300:
                path, default = urlsplit(self.url).path or "/", DEFAULT_PATHS[Transport.SSE]
                usual = "" if path == default else f" (by default {default})"
                fix = (
                    f"is {path} the server's SSE endpoint{usual}? point the URL at it,"
                    " or set the transport the server speaks"
                )
            else:
                return None  # a server error like any other (see classify)
            failure = ProbeFailure(
                Outcome.PROTOCOL_ERROR,
                f"SSE endpoint answered HTTP {code} {received or 'without a content type'},"
                f" not text/event-stream: {fix}",
                http_status=code,
            )
        return failure

    async def _on_response(self, response: httpx2.Response) -> None:
        if response.status_code >= 400:
            self._http_error = (response.status_code, dict(response.headers))
        session_id = response.headers.get(MCP_SESSION_ID)
        if session_id:
            self._mcp_session_id = session_id
        # Every body is read through a bound, whoever reads it (the SDK
        # buffers a JSON response whole, and an SSE stream lives as long as
        # its session).
        assert isinstance(response.stream, httpx2.AsyncByteStream)
        content_type = response.headers.get("content-type", "").partition(";")[0]
        per_event = content_type.strip().lower() == "text/event-stream"
        if (
            self.target.transport is Transport.SSE
            and response.request.method == "GET"
            and not per_event
            and not response.has_redirect_location
        ):
            self._sse_answer = (response.status_code, dict(response.headers))
            if response.is_success:
                # Refused here, before the SDK meets it as an SSEError that it
                # logs with a traceback and that reads as unreachable.
                failure = self._http_failure()
                assert failure is not None
                raise failure
        encoding = response.headers.get("content-encoding", "").strip().lower()
        response.stream = _CappedBody(
            response.stream,
            limit=self._event_limit() if per_event else self._body_limit(),
            document_limit=self.max_bytes,
            per_event=per_event,
            encoding=None if encoding in ("", "identity") else encoding,
            refuse=functools.partial(self._refuse, response),
        )

    def _body_limit(self) -> int:
        return 2 * self.max_bytes + _WIRE_MARGIN

    def _event_limit(self) -> int:
        if self.target.transport is Transport.SSE:
            return min(self._body_limit(), _SSE_CLIENT_EVENT_LIMIT)
        return self._body_limit()

    def _refuse(self, response: httpx2.Response, outcome: Outcome, message: str) -> ProbeFailure:
        """A response body was refused mid-read: keep why, and end the probe waiting on it.

        Called from whichever task reads the body: the probe's own (plain
        ``GET``), which the raised failure ends, or a session's transport
        task, where the SDK would swallow it or report a lost connection;
        the probe's scope is cancelled instead. A 401/403/429 stays what it
        is, whatever its body.
        """
        failure = _status_failure(response.status_code, response.headers)
        if failure is None:
            failure = ProbeFailure(outcome, message)
        if self._refused is None:
            self._refused = failure
        scope = self._probe_scope
        if scope is not None and asyncio.current_task() is not self._probe_task:
            scope.cancel()
        return failure

    def _result(self, outcome: Outcome, started: float, **fields: Any) -> ProbeResult:
        if outcome is Outcome.OK and self._read_started is not None:
            started = max(started, self._read_started)
        self._read_started = None
        latency = (time.perf_counter() - started) * 1000.0
        return ProbeResult(outcome=outcome, latency_ms=latency, server=self._identity, **fields)

    async def _read(self) -> HealthCheckResponse:
        payload: str | bytes
        if self.target.transport is Transport.HTTP:
            payload = await self._get()
        elif self.target.transport is Transport.STREAMABLE_HTTP:
            await self._session_with_resources()
            self._read_started = time.perf_counter()
            return await self._read_wire()
        else:
            payload = await self._read_resource()
        try:
            return health.parse(payload, max_bytes=self.max_bytes)
        except health.DocumentError as exc:
            raise ProbeFailure(Outcome.INVALID_DOCUMENT, str(exc)) from None

    # -- plain HTTP ---------------------------------------------------------

    async def _get(self) -> bytes:
        http = self._http_client()
        self._identity = ServerIdentity(None, None, None, Transport.HTTP)
        async with http.stream("GET", self.url, headers={"Accept": "application/json"}) as resp:
            _raise_for_status(resp.status_code, resp.headers)
            if resp.status_code == 404:
                raise ProbeFailure(
                    Outcome.RESOURCE_NOT_FOUND,
                    f"GET {urlsplit(self.url).path} answered 404",
                    http_status=404,
                )
            # A health endpoint answers 503 with its document when unhealthy
            # (so readiness probes follow it); any other error is no document.
            if resp.status_code >= 400 and resp.status_code != 503:
                raise ProbeFailure(
                    Outcome.PROTOCOL_ERROR,
                    f"GET answered HTTP {resp.status_code}",
                    http_status=resp.status_code,
                )
            body = bytearray()
            # Read at most max_bytes + 1: enough to tell "too large" without
            # buffering whatever an endless body would send.
            async for chunk in resp.aiter_bytes():
                body += chunk
                if len(body) > self.max_bytes:
                    raise ProbeFailure(
                        Outcome.INVALID_DOCUMENT,
                        f"health document exceeds the {self.max_bytes}-byte limit",
                    )
            if resp.status_code == 503:
                try:
                    health.parse(bytes(body), max_bytes=self.max_bytes)
                except health.DocumentError:
                    raise ProbeFailure(
                        Outcome.PROTOCOL_ERROR,
                        "GET answered HTTP 503 without a health document",
                        http_status=503,
                    ) from None
            return bytes(body)

    # -- MCP ---------------------------------------------------------------

    async def _session_with_resources(self) -> Client:
        client = await self._session()
        if not self._has_resources:
            raise ProbeFailure(
                Outcome.RESOURCE_NOT_FOUND,
                "server does not serve resources (it declares no resources capability)",
            )
        return client

    async def _read_resource(self) -> str | bytes:
        client = await self._session_with_resources()
        self._read_started = time.perf_counter()
        try:
            result = await client.read_resource(self.target.resource_uri)
        except MCPError as exc:
            if exc.code == METHOD_NOT_FOUND:
                raise ProbeFailure(
                    Outcome.RESOURCE_NOT_FOUND,
                    "server does not serve resources (resources/read: method not found)",
                ) from None
            if _is_not_found(exc):
                raise ProbeFailure(
                    Outcome.RESOURCE_NOT_FOUND,
                    f"resource {self.target.resource_uri} not found: {_short(exc.message)}",
                ) from None
            raise
        if not result.contents:
            raise ProbeFailure(
                Outcome.INVALID_DOCUMENT,
                f"resource {self.target.resource_uri} returned no contents",
            )
        first = result.contents[0]
        if isinstance(first, TextResourceContents):
            return first.text
        if isinstance(first, BlobResourceContents):
            import base64

            try:
                return base64.b64decode(first.blob, validate=True)
            except ValueError:
                raise ProbeFailure(
                    Outcome.INVALID_DOCUMENT, "resource blob is not valid base64"
                ) from None
        raise ProbeFailure(Outcome.INVALID_DOCUMENT, "resource contents are neither text nor blob")

    async def _session(self, *, hold: bool = False) -> Client:
        """The kept session, or a new one.

        On Streamable HTTP a session the server keeps no state for (no
        session id: the 2026 protocol) is not held once its read request is
        made, unless ``hold`` (a tool call needs the SDK's client): a
        thousand held SDK clients are ~400,000 objects, and each full
        garbage collection would pause the event loop ~0.5 s to walk them.
        """
        now = time.monotonic()
        if self._session_holder is not None and now - self._connected_at < self.rehandshake_after:
            client = self._session_holder.client
            if client is not None:
                self._reused = True
                return client
        self._reused = False
        await self._discard()
        self._mcp_session_id = None
        holder = _SessionHolder(self._new_client())
        self._session_holder = holder
        client = await holder.open()
        self._connected_at = now
        info = client.server_info
        self._identity = ServerIdentity(
            name=info.name if info else None,
            version=info.version if info else None,
            protocol_version=client.protocol_version,
            transport=self.target.transport,
        )
        self._has_resources = client.server_capabilities.resources is not None
        if self.target.transport is Transport.STREAMABLE_HTTP and self._has_resources:
            self._request = self._read_request(client.protocol_version)
            if self._request.session_id is None and not hold:
                self._session_holder = None
                await holder.close()
        return client

    def _read_request(self, version: str) -> _ReadRequest:
        """``resources/read`` as the SDK's session would send it at ``version``."""
        uri = self.target.resource_uri
        params: dict[str, Any] = {"uri": uri}
        headers: CIMultiDict[str] = CIMultiDict(self.target.headers)
        headers.setdefault("User-Agent", f"mcp-health-operator/{__version__}")
        headers.update(_IDENTITY)
        headers["Accept"] = "application/json, text/event-stream"
        headers["Content-Type"] = "application/json"
        headers[MCP_PROTOCOL_VERSION_HEADER] = version
        if version in MODERN_PROTOCOL_VERSIONS:
            # 2026-07-28: every request carries the envelope and the routing
            # headers. The probe declares no client capabilities (it has no
            # sampling, elicitation or roots callbacks).
            params["_meta"] = {
                PROTOCOL_VERSION_META_KEY: version,
                CLIENT_INFO_META_KEY: _CLIENT_INFO.model_dump(
                    by_alias=True, mode="json", exclude_none=True
                ),
                CLIENT_CAPABILITIES_META_KEY: {},
            }
            headers[MCP_METHOD_HEADER] = "resources/read"
            headers[MCP_NAME_HEADER] = encode_header_value(uri)
        session_id = self._mcp_session_id
        if session_id:
            headers[MCP_SESSION_ID] = session_id
        tail = json.dumps({"method": "resources/read", "params": params}, separators=(",", ":"))
        return _ReadRequest(
            url=self.url,
            headers=headers,
            tls=self._verify(),
            session_id=session_id,
            prefix=b'{"jsonrpc":"2.0","id":',
            suffix=b"," + tail[1:].encode(),
        )

    async def _read_wire(self) -> HealthCheckResponse:
        """One ``resources/read`` through ``wire``, its answer judged as the SDK would."""
        request = self._request
        assert request is not None
        if self._pool is None:
            self._pool = wire.acquire()
        self._request_id += 1
        request_id = self._request_id
        try:
            reply = await wire.post(
                self._pool,
                request.url,
                headers=request.headers,
                body=request.body(request_id),
                request_id=request_id,
                tls=request.tls,
                body_limit=self._body_limit(),
                event_limit=self._body_limit(),
            )
        except wire.TooLarge as exc:
            raise ProbeFailure(
                Outcome.INVALID_DOCUMENT,
                f"{exc} (for a health document of at most {self.max_bytes} bytes); stopped reading",
                keep_session=True,
            ) from None
        except wire.Encoded as exc:
            raise ProbeFailure(
                Outcome.PROTOCOL_ERROR, _encoded(exc.encoding), keep_session=True
            ) from None
        except wire.Malformed as exc:
            raise ProbeFailure(
                Outcome.PROTOCOL_ERROR, f"resources/read: {exc}", keep_session=True
            ) from None
        except wire.Lost:
            raise ProbeFailure(Outcome.UNREACHABLE, "connection to the server was lost") from None
        request.url = reply.url
        payload = self._contents(reply, request)
        try:
            return health.parse(payload, max_bytes=self.max_bytes)
        except health.DocumentError as exc:
            raise ProbeFailure(Outcome.INVALID_DOCUMENT, str(exc), keep_session=True) from None

    def _contents(self, reply: wire.Reply, request: _ReadRequest) -> str | bytes:
        status, message = reply.status, reply.message
        failure = _status_failure(status, reply.headers)
        if failure is not None:
            failure.keep_session = True
            raise failure
        if status == 404 and request.session_id is not None:
            raise _StaleSession(urlsplit(request.url).path)
        if message is not None and "error" in message:
            raise self._rpc_error(message["error"])
        if status == 404:
            # What the SDK makes of a 404 without a session: no such method.
            raise ProbeFailure(
                Outcome.RESOURCE_NOT_FOUND,
                "server does not serve resources (resources/read: HTTP 404)",
                http_status=404,
                keep_session=True,
            )
        if not 200 <= status < 300:
            raise ProbeFailure(
                Outcome.PROTOCOL_ERROR,
                f"resources/read answered HTTP {status}",
                http_status=status,
                keep_session=True,
            )
        if message is None:
            what = (
                "202 Accepted and no answer"
                if status == 202
                else _short(reply.content_type or "no content type", 60)
            )
            raise ProbeFailure(
                Outcome.PROTOCOL_ERROR, f"resources/read answered {what}", keep_session=True
            )
        return _resource_text(message.get("result"), self.target.resource_uri)

    def _rpc_error(self, error: object) -> ProbeFailure:
        if not isinstance(error, dict):
            return ProbeFailure(
                Outcome.PROTOCOL_ERROR, "malformed JSON-RPC error", keep_session=True
            )
        code, text = error.get("code"), str(error.get("message", ""))
        if code == METHOD_NOT_FOUND:
            return ProbeFailure(
                Outcome.RESOURCE_NOT_FOUND,
                "server does not serve resources (resources/read: method not found)",
                keep_session=True,
            )
        if isinstance(code, int) and _not_found(code, text):
            return ProbeFailure(
                Outcome.RESOURCE_NOT_FOUND,
                f"resource {self.target.resource_uri} not found: {_short(text)}",
                keep_session=True,
            )
        return ProbeFailure(
            Outcome.PROTOCOL_ERROR,
            f"MCP error {_short(str(code), 20)}: {_short(text)}",
            keep_session=True,
        )

    def _new_client(self) -> Client:
        if self.target.transport is Transport.SSE:
            transport: Any = sse_client(
                self.url,
                headers=dict(self.target.headers),
                timeout=self.timeout,
                sse_read_timeout=self.rehandshake_after + 60,
                httpx_client_factory=self._sse_factory,
            )
        else:
            transport = streamable_http_client(
                self.url,
                http_client=self._http_client(),
                # The SDK's own per-event bound, the same as ours (which,
                # counting raw bytes, always trips first and says why).
                max_sse_event_size=self._event_limit(),
            )
        # cache=None: a health probe must reach the server every time, whatever
        # TTL hints the server sends for resources/read.
        return Client(transport, cache=None, mode="auto", client_info=_CLIENT_INFO)

    def _sse_factory(
        self,
        headers: dict[str, str] | None = None,
        timeout: httpx2.Timeout | None = None,
        auth: httpx2.Auth | None = None,
    ) -> httpx2.AsyncClient:
        return httpx2.AsyncClient(
            headers={**(headers or {}), **_IDENTITY},
            timeout=timeout,
            auth=auth,
            verify=self._verify(),
            event_hooks={"response": [self._on_response]},
        )

    def _http_client(self) -> httpx2.AsyncClient:
        if self._http is None:
            self._http = httpx2.AsyncClient(
                headers={**self.target.headers, **_IDENTITY},
                verify=self._verify(),
                timeout=httpx2.Timeout(self.timeout, read=self.rehandshake_after + 60),
                limits=httpx2.Limits(max_connections=4, max_keepalive_connections=2),
                event_hooks={"response": [self._on_response]},
            )
        return self._http

    def _verify(self) -> ssl.SSLContext | bool:
        if self.target.insecure_skip_verify:
            return False
        return _ssl_context(self.target.ca_file, self.target.ca_data)

    async def _discard(self) -> None:
        """Drop the session (after a failure, or to re-handshake); bounded in time."""
        self._request = None
        holder, self._session_holder = self._session_holder, None
        if holder is not None:
            await holder.close()

    async def aclose(self) -> None:
        await self._discard()
        pool, self._pool = self._pool, None
        if pool is not None:
            await wire.release(pool)
        http, self._http = self._http, None
        if http is not None:
            with anyio.move_on_after(_CLOSE_GRACE, shield=True):
                await http.aclose()


# The probe decodes nothing it did not ask for: a compressed body's decoded
# size cannot be bounded by counting the bytes that arrive.
_IDENTITY = {"Accept-Encoding": "identity"}


class _Refused(Exception):
    """The probe's read was cancelled because a response body was refused."""


class _CappedBody(httpx2.AsyncByteStream):
    """A response body that stops being read once it passes ``limit`` bytes.

    ``per_event``: count the bytes since the last blank line (the end of a
    server-sent event) instead of the whole body. A refused body raises the
    ``ProbeFailure`` that ``refuse`` returns, before the chunk over the limit
    is handed on, so nothing past the limit is ever buffered; httpx2 then
    closes the response and its connection.
    """

    def __init__(
        self,
        inner: httpx2.AsyncByteStream,
        *,
        limit: int,
        document_limit: int,
        per_event: bool,
        encoding: str | None,
        refuse: Callable[[Outcome, str], ProbeFailure],
    ) -> None:
        self._inner = inner
        self._limit = limit
        self._document_limit = document_limit
        self._per_event = per_event
        self._encoding = encoding
        self._refuse = refuse

    @property
    def elapsed(self) -> Any:
        return getattr(self._inner, "elapsed", None)

    async def __aiter__(self) -> AsyncIterator[bytes]:
        if self._encoding is not None:
            raise self._refuse(Outcome.PROTOCOL_ERROR, _encoded(self._encoding))
        stream = self._inner.__aiter__()
        seen = 0
        last = b""
        try:
            async for chunk in stream:
                if self._per_event:
                    window = last + chunk
                    end = max(window.rfind(sep) for sep in _EVENT_ENDS)
                    seen = len(window) - end - 2 if end >= 0 else seen + len(chunk)
                    last = window[-1:]
                else:
                    seen += len(chunk)
                if seen > self._limit:
                    what = "server-sent event" if self._per_event else "response body"
                    raise self._refuse(
                        Outcome.INVALID_DOCUMENT,
                        f"{what} exceeds the {self._limit}-byte read limit (for a health"
                        f" document of at most {self._document_limit} bytes); stopped reading",
                    )
                yield chunk
        finally:
            if isinstance(stream, AsyncGenerator):
                await stream.aclose()

    async def aclose(self) -> None:
        await self._inner.aclose()


# A blank line ends a server-sent event; lines end in \r\n, \n or \r, so any
# two adjacent line ends are one of these (\r\n\r\n holds \n\r).
_EVENT_ENDS = (b"\n\n", b"\r\r", b"\n\r")


@functools.lru_cache(maxsize=64)
def _ssl_context(ca_file: str | None, ca_data: str | None) -> ssl.SSLContext:
    """One context per CA bundle: building one costs ~20 ms of CPU, so never per client."""
    return ssl.create_default_context(cafile=ca_file, cadata=ca_data)


# Handshakes in flight at once, per event loop (see ``Prober.probe``).
MAX_HANDSHAKES = 32
_slots: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = (
    weakref.WeakKeyDictionary()
)


def _handshake_slots() -> asyncio.Semaphore:
    loop = asyncio.get_running_loop()
    slots = _slots.get(loop)
    if slots is None:
        slots = _slots[loop] = asyncio.Semaphore(MAX_HANDSHAKES)
    return slots


# Set in a session's own task, and so in every task the SDK starts for it.
_in_session: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "mcp_health_probe_session", default=False
)


class _SessionRecords(logging.Filter):
    """A record the SDK logs from a probe's session, above DEBUG: one DEBUG line.

    Its failure is the probe's result already; as the SDK logs it (an ERROR
    with a traceback) it would be one per probe of a failing target.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno <= logging.DEBUG or not _in_session.get():
            return True
        message = record.getMessage()
        if record.exc_info is not None and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            message = f"{message}: {type(exc).__name__}: {_short(str(exc))}"
        record.msg, record.args = message, None
        record.exc_info = record.exc_text = record.stack_info = None
        record.levelno, record.levelname = logging.DEBUG, logging.getLevelName(logging.DEBUG)
        return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)


# The SDK's SSE client logs each failure of its stream with a traceback, once
# per probe of a failing target; no other logger is touched.
logging.getLogger("mcp.client.sse").addFilter(_SessionRecords())


def _retrieve(future: asyncio.Future[Client]) -> None:
    if not future.cancelled():
        future.exception()


class _SessionHolder:
    """Owns one entered ``Client`` in a task of its own.

    The SDK's client lives in anyio task groups whose scopes must be entered
    and left by one task, outside any per-probe timeout scope; requests on
    the session may come from any task.
    """

    def __init__(self, client: Client) -> None:
        self._client = client
        self._ready: asyncio.Future[Client] = asyncio.get_running_loop().create_future()
        # A session that fails before anyone awaits it must not log
        # "exception was never retrieved": its probe already reported it.
        self._ready.add_done_callback(_retrieve)
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def client(self) -> Client | None:
        """The session while it is usable; ``None`` once it has ended."""
        if self._task is None or self._task.done() or not self._ready.done():
            return None
        return None if self._ready.exception() else self._ready.result()

    async def open(self) -> Client:
        self._task = asyncio.create_task(self._hold(), name="mcp-health-session")
        # Shield: a probe timeout must not cancel the holder task halfway
        # through its context manager; close() ends it instead.
        return await asyncio.shield(self._ready)

    async def _hold(self) -> None:
        _in_session.set(True)  # this task's own context (see _SessionRecords)
        try:
            async with self._client as client:
                self._ready.set_result(client)
                await self._stop.wait()
        except BaseException as exc:
            if not self._ready.done():
                self._ready.set_exception(
                    exc if isinstance(exc, Exception) else ConnectionError("session cancelled")
                )
            if not isinstance(exc, Exception):
                raise

    async def close(self) -> None:
        self._stop.set()
        task = self._task
        if task is None:
            return
        if not self._ready.done():
            task.cancel()
        done, _ = await asyncio.wait({task}, timeout=_CLOSE_GRACE)
        if not done:
            task.cancel()
            await asyncio.wait({task}, timeout=_CLOSE_GRACE)
        if task.done() and not task.cancelled():
            task.exception()  # retrieved: a dying session's error is not news
        if self._ready.done() and not self._ready.cancelled():
            self._ready.exception()


def classify(exc: BaseException) -> ProbeFailure:
    """Map whatever the SDK or HTTP stack raised to an outcome, without leaking secrets."""
    leaves = list(_leaves(exc))
    for leaf in leaves:
        if isinstance(leaf, ProbeFailure):
            return leaf
    for leaf in leaves:
        if isinstance(leaf, httpx2.HTTPStatusError):
            code = leaf.response.status_code
            failure = _status_failure(code, leaf.response.headers)
            if failure is not None:
                return failure
            return ProbeFailure(
                Outcome.PROTOCOL_ERROR, f"server answered HTTP {code}", http_status=code
            )
    for leaf in leaves:
        if isinstance(leaf, TimeoutError | httpx2.TimeoutException):
            return ProbeFailure(Outcome.TIMEOUT, "timed out")
    for leaf in leaves:
        if isinstance(leaf, aiohttp.ClientConnectorError):
            # Its str() carries the repr of an SSL context object: name host,
            # port and the OS error only (this message goes to status and Events).
            why = leaf.os_error.strerror or str(leaf.os_error) or type(leaf.os_error).__name__
            where = f"{leaf.host}:{leaf.port}"
            return ProbeFailure(Outcome.UNREACHABLE, f"cannot connect to {where}: {_short(why)}")
        if isinstance(leaf, aiohttp.ClientConnectionError | aiohttp.ClientPayloadError):
            return ProbeFailure(Outcome.UNREACHABLE, "connection to the server was lost")
    for leaf in leaves:
        if isinstance(leaf, httpx2.ConnectError | ConnectionError | OSError):
            return ProbeFailure(Outcome.UNREACHABLE, f"cannot connect: {_short(str(leaf))}")
    for leaf in leaves:
        if isinstance(leaf, MCPError):
            if leaf.code == CONNECTION_CLOSED:
                return ProbeFailure(Outcome.UNREACHABLE, "connection to the server was lost")
            if _is_not_found(leaf):
                return ProbeFailure(Outcome.RESOURCE_NOT_FOUND, _short(leaf.message))
            return ProbeFailure(
                Outcome.PROTOCOL_ERROR, f"MCP error {leaf.code}: {_short(leaf.message)}"
            )
    for leaf in leaves:
        if isinstance(leaf, httpx2.TransportError):
            return ProbeFailure(Outcome.UNREACHABLE, f"{type(leaf).__name__}: {_short(str(leaf))}")
    first = leaves[0] if leaves else exc
    return ProbeFailure(Outcome.PROTOCOL_ERROR, f"{type(first).__name__}: {_short(str(first))}")


def _leaves(exc: BaseException, depth: int = 0) -> list[BaseException]:
    """Exceptions inside groups and cause chains, outermost first."""
    if depth > 10:
        return []
    found: list[BaseException] = []
    if isinstance(exc, BaseExceptionGroup):
        for sub in exc.exceptions:
            found += _leaves(sub, depth + 1)
        return found
    found.append(exc)
    cause = exc.__cause__ or exc.__context__
    if cause is not None and cause is not exc:
        found += _leaves(cause, depth + 1)
    return found


def _status_failure(code: int, headers: Mapping[str, str]) -> ProbeFailure | None:
    if code in (401, 403):
        return ProbeFailure(
            Outcome.UNAUTHORIZED, f"server refused the credentials (HTTP {code})", http_status=code
        )
    if code == 429:
        retry = _retry_after(headers.get("retry-after"))
        hint = f", retry after {retry:g}s" if retry is not None else ""
        return ProbeFailure(
            Outcome.RATE_LIMITED,
            f"server is rate-limiting (HTTP 429{hint})",
            http_status=code,
            retry_after_s=retry,
        )
    return None


def _raise_for_status(code: int, headers: Mapping[str, str]) -> None:
    failure = _status_failure(code, headers)
    if failure is not None:
        raise failure


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        from email.utils import parsedate_to_datetime

        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        return max(when.timestamp() - time.time(), 0.0)


# JSON-RPC: -32002 is MCP's "resource not found"; some servers use invalid params.
_NOT_FOUND_CODES = {-32002, -32602}


def _is_not_found(exc: MCPError) -> bool:
    return _not_found(exc.code, exc.message)


def _not_found(code: int, message: str) -> bool:
    if code == -32002:
        return True
    return code in _NOT_FOUND_CODES and any(
        word in message.lower() for word in ("unknown resource", "not found")
    )


def _resource_text(result: object, uri: str) -> str | bytes:
    """The first contents of a ``resources/read`` result: its text, or its blob decoded."""
    contents = result.get("contents") if isinstance(result, dict) else None
    if not isinstance(contents, list):
        raise ProbeFailure(
            Outcome.PROTOCOL_ERROR,
            "resources/read answered without a list of contents",
            keep_session=True,
        )
    if not contents:
        raise ProbeFailure(
            Outcome.INVALID_DOCUMENT, f"resource {uri} returned no contents", keep_session=True
        )
    first = contents[0]
    text = first.get("text") if isinstance(first, dict) else None
    if isinstance(text, str):
        return text
    blob = first.get("blob") if isinstance(first, dict) else None
    if isinstance(blob, str):
        import base64

        try:
            return base64.b64decode(blob, validate=True)
        except ValueError:
            raise ProbeFailure(
                Outcome.INVALID_DOCUMENT, "resource blob is not valid base64", keep_session=True
            ) from None
    raise ProbeFailure(
        Outcome.INVALID_DOCUMENT,
        "resource contents are neither text nor blob",
        keep_session=True,
    )


def _encoded(encoding: str) -> str:
    return (
        f"response is {_short(encoding, 40)}-encoded though the probe asked for"
        " identity; refused, as its decoded size cannot be bounded"
    )


def _short(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
