"""The session a ``Prober`` keeps with its target, and the HTTP clients under it.

The SDK's ``Client`` makes the session (``server/discover``, or the
``initialize`` handshake) and lives in a task of its own
(``_SessionHolder``). On Streamable HTTP every read of the health resource
is then one pre-serialised ``resources/read`` sent by ``wire``
(``Session.read``). Every answer the HTTP clients receive passes
``Session.on_response``, which keeps what the SDK would blur (an error
status, what answered the SSE GET) and bounds every body (``_CappedBody``).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import json
import logging
import random
import ssl
import time
import weakref
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import anyio
import httpx2
from mcp import Client
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
    SERVER_INFO_META_KEY,
    DiscoverResult,
    Implementation,
    ServerCapabilities,
)
from mcp_types.version import LATEST_MODERN_VERSION, MODERN_PROTOCOL_VERSIONS
from multidict import CIMultiDict
from pydantic import ValidationError

from mcp_health_operator import __version__
from mcp_health_operator.core.health import HealthCheckResponse
from mcp_health_operator.core.targets import Method, Target, Transport, endpoint
from mcp_health_operator.probing import errors, wire
from mcp_health_operator.probing.errors import Outcome, ProbeFailure

_CLOSE_GRACE = 0.5
# A handshake still in flight when its probe gave up: the server may already
# hold the session, and only the handshake's answer names it for the DELETE.
# The next probe waits on it rather than starting another (up to this age),
# and closing lets it finish (up to _FINISH_GRACE) so its session is ended.
_PENDING_LIMIT = 30.0
# A session lives between this share of ``rehandshake_after`` and all of it.
_LIFETIME_SPREAD = 0.75
_FINISH_GRACE = 5.0
# Room around a document of max_bytes on the wire: the JSON-RPC envelope, SSE
# framing, and JSON string escaping (a quote in the document is two bytes).
_WIRE_MARGIN = 64 * 1024
# httpx2's own bound on one server-sent event, which the SDK's SSE transport
# keeps (sse_client takes no max_event_size).
_SSE_CLIENT_EVENT_LIMIT = 1024 * 1024
_CLIENT_INFO = Implementation(name="mcp-health-operator", version=__version__)
# Pages of resources/list or tools/list read when a session is made: a
# listing longer than this says nothing more about a server's health.
_LIST_PAGES = 10
# The probe decodes nothing it did not ask for: a compressed body's decoded
# size cannot be bounded by counting the bytes that arrive.
_IDENTITY = {"Accept-Encoding": "identity"}


@dataclass(frozen=True, slots=True)
class ServerIdentity:
    name: str | None
    version: str | None
    protocol_version: str | None
    transport: Transport


@dataclass(slots=True)
class _ReadRequest:
    """The session's probe request, serialised once; only its id changes per read.

    ``resources/read`` of the health resource, or, when the server is judged
    by the handshake, ``server/discover`` (2026-07-28) or ``ping`` on the
    session (older revisions).
    """

    method: str
    wire: wire.Request
    session_id: str | None
    prefix: bytes
    suffix: bytes

    def body(self, request_id: int) -> bytes:
        return self.prefix + str(request_id).encode() + self.suffix


class _Refused(Exception):
    """The probe's read was cancelled because a response body was refused."""


class Session:
    """The session kept with one target: made, kept, re-made, dropped.

    A session is kept across probes until a failure of the connection, or
    until it is at most ``rehandshake_after`` seconds old (so a broken accept
    path on the server is noticed; each session's lifetime is drawn from the
    last quarter of that, so sessions made together do not end together).
    What the HTTP clients met during a probe (``http_error``, ``sse_answer``,
    ``refused``) is the probe's to judge.
    """

    def __init__(
        self, target: Target, *, timeout: float, max_bytes: int, rehandshake_after: float
    ) -> None:
        self.target = target
        self.timeout = timeout
        self.max_bytes = max_bytes
        self.rehandshake_after = rehandshake_after
        self.url = endpoint(target.url, target.transport)
        self.http: httpx2.AsyncClient | None = None
        self.holder: _SessionHolder | None = None
        self._pending: _SessionHolder | None = None
        self.reused = False
        self.identity: ServerIdentity | None = None
        # The last answer through ``wire``: when its bytes arrived, and the
        # loop's stall clock then (the probe clears it before its read).
        self.answered: tuple[float, float] | None = None
        self.has_resources = False
        # How this session judges the server (target.method resolved when it
        # was made), whether "auto" fell back, and the expected tools it lacks.
        self.method: Method | None = None
        self.fell_back = False
        self.missing_tools: tuple[str, ...] = ()
        self.mcp_session_id: str | None = None
        self._connected_at = 0.0
        self._lifetime = rehandshake_after
        # The SDK turns an HTTP 401/403/429 on its POST into a generic MCP
        # error; a response hook keeps the status so the probe can say what
        # really happened.
        self.http_error: tuple[int, Mapping[str, str]] | None = None
        # What answered the SSE transport's GET when it was no event stream:
        # the SDK makes that an SSEError, which reads as unreachable.
        self.sse_answer: tuple[int, Mapping[str, str]] | None = None
        # A response body refused mid-read (over its limit, or compressed):
        # the SDK turns that into a generic error, or none at all, so the
        # refusal is kept here and the read waiting on it is cancelled.
        self.refused: ProbeFailure | None = None
        self._scope: anyio.CancelScope | None = None
        self._task: asyncio.Task[Any] | None = None
        # The steady-state read (Streamable HTTP): see ``wire``.
        self.request: _ReadRequest | None = None
        self._pool: wire.Pool | None = None
        self._request_id = 0
        # The server answered server/discover as no 2026 server would: its
        # sessions are made by the SDK's client from then on.
        self.legacy = False

    def _connected(self, now: float) -> None:
        self._connected_at = now
        # A lifetime drawn anew for each session, never past the bound: the
        # sessions of monitors started together (a cold start of thousands)
        # would otherwise all end together, a burst of handshakes every period.
        self._lifetime = self.rehandshake_after * random.uniform(_LIFETIME_SPREAD, 1.0)

    def expired(self, now: float) -> bool:
        """Whether the session made last is due to be made anew at ``now``."""
        return now - self._connected_at >= self._lifetime

    def needs_handshake(self) -> bool:
        if self.expired(time.monotonic()):
            return True
        if self.request is not None and self.request.session_id is None:
            return False  # nothing held on either side (see open)
        holder = self.holder
        return holder is None or holder.client is None

    @property
    def steady(self) -> bool:
        """A read request is ready on a live session that is not due for a re-handshake."""
        return self.request is not None and not self.needs_handshake()

    async def discover(self) -> bool:
        """A 2026-07-28 session made through ``wire``; False: make it with the SDK's client.

        The protocol's ``server/discover`` is one stateless POST, and so are
        the listings that follow it: made here, a session costs ~0.5 ms of
        CPU instead of ~5 ms through the SDK's client (a task group, its
        streams, pydantic models of every message), which a cold start of
        thousands of monitors pays thousands of times. Only positive
        evidence of a 2026 server is taken; anything else is left to the
        SDK's own negotiation (``mode="auto"``), as before. A transport
        failure, or a 401, 403 or 429, is the probe's outcome either way.
        """
        if self.legacy or self.target.transport is not Transport.STREAMABLE_HTTP:
            return False
        self.reused = False
        await self.discard()
        self.mcp_session_id = None
        version = LATEST_MODERN_VERSION
        answer = await self._call(self._prepare(version, "server/discover", {}), probing_era=True)
        found = _discovered(answer)
        if found is None:
            # A server error says nothing of the era: asked again next time.
            self.legacy = answer is not _SERVER_ERROR
            return False
        self._connected(time.monotonic())
        version, info, capabilities = found
        self.identity = ServerIdentity(
            name=info.name if info else None,
            version=info.version if info else None,
            protocol_version=version,
            transport=self.target.transport,
        )
        self.has_resources = capabilities.resources is not None
        await self._resolve(capabilities, _WireLister(self, version))
        if self.has_resources or self.method is Method.HANDSHAKE:
            self.request = self._read_request(version)
        return True

    async def open(self, *, hold: bool = False) -> Client:
        """The kept session, or a new one.

        On Streamable HTTP a session the server keeps no state for (no
        session id: the 2026 protocol) is not held once its read request is
        made, unless ``hold`` (a tool call needs the SDK's client): a
        thousand held SDK clients are ~400,000 objects, and each full
        garbage collection would pause the event loop ~0.5 s to walk them.
        """
        now = time.monotonic()
        if self.holder is not None and not self.expired(now):
            client = self.holder.client
            if client is not None:
                self.reused = True
                return client
        self.reused = False
        await self.discard()
        holder, self._pending = self._pending, None
        if holder is not None and not (holder.alive and now - holder.started < _PENDING_LIMIT):
            await holder.close()
            holder = None
        if holder is None:
            self.mcp_session_id = None
            holder = _SessionHolder(self._new_client())
            holder.start()
        self.holder = holder
        client = await holder.ready()
        self._connected(now)
        info = client.server_info
        self.identity = ServerIdentity(
            name=info.name if info else None,
            version=info.version if info else None,
            protocol_version=client.protocol_version,
            transport=self.target.transport,
        )
        self.has_resources = client.server_capabilities.resources is not None
        await self._resolve(client.server_capabilities, _SdkLister(client))
        if self.target.transport is Transport.STREAMABLE_HTTP and (
            self.has_resources or self.method is Method.HANDSHAKE
        ):
            self.request = self._read_request(client.protocol_version)
            if self.request.session_id is None and not hold:
                self.holder = None
                await holder.close()
        return client

    async def _resolve(self, capabilities: ServerCapabilities, lister: _Lister) -> None:
        """How this session judges the server, and which expected tools it lacks.

        Nothing is asked of a capability the server did not advertise: no
        ``resources/list`` without resources, no ``tools/list`` without tools.
        """
        wanted = self.target.method
        self.fell_back = False
        if wanted is Method.AUTO:
            listed = self.has_resources and await self._lists_resource(lister)
            wanted = Method.HEALTH_RESOURCE if listed else Method.HANDSHAKE
            self.fell_back = not listed
        self.method = wanted
        expected = self.target.expect_tools
        self.missing_tools = ()
        if expected:
            names: set[str] = set()
            if capabilities.tools is not None:
                names = await self._tool_names(lister)
            self.missing_tools = tuple(t for t in expected if t not in names)

    async def _lists_resource(self, lister: _Lister) -> bool:
        uri, cursor = self.target.resource_uri, None
        for _ in range(_LIST_PAGES):
            uris, cursor = await lister.resources(cursor)
            if uri in uris:
                return True
            if cursor is None:
                break
        return False

    async def _tool_names(self, lister: _Lister) -> set[str]:
        names: set[str] = set()
        cursor = None
        for _ in range(_LIST_PAGES):
            page, cursor = await lister.tools(cursor)
            names.update(page)
            if cursor is None:
                break
        return names

    def _read_request(self, version: str) -> _ReadRequest:
        """The probe's request at ``version``."""
        modern = version in MODERN_PROTOCOL_VERSIONS
        if self.method is Method.HANDSHAKE:
            # server/discover is stateless and cheap; ping (removed in the
            # 2026 revision) keeps an older server's session answering.
            if modern:
                return self._prepare(version, "server/discover", {})
            return self._prepare(version, "ping", None)
        return self._prepare(version, "resources/read", {"uri": self.target.resource_uri})

    def _prepare(self, version: str, method: str, params: dict[str, Any] | None) -> _ReadRequest:
        """``method`` as the SDK's session would send it at ``version``."""
        modern = version in MODERN_PROTOCOL_VERSIONS
        uri = self.target.resource_uri
        headers: CIMultiDict[str] = CIMultiDict(self.target.headers)
        headers.setdefault("User-Agent", f"mcp-health-operator/{__version__}")
        headers.update(_IDENTITY)
        headers["Accept"] = "application/json, text/event-stream"
        headers["Content-Type"] = "application/json"
        headers[MCP_PROTOCOL_VERSION_HEADER] = version
        if modern:
            # 2026-07-28: every request carries the envelope and the routing
            # headers. The probe declares no client capabilities (it has no
            # sampling, elicitation or roots callbacks).
            assert params is not None
            params["_meta"] = {
                PROTOCOL_VERSION_META_KEY: version,
                CLIENT_INFO_META_KEY: _CLIENT_INFO.model_dump(
                    by_alias=True, mode="json", exclude_none=True
                ),
                CLIENT_CAPABILITIES_META_KEY: {},
            }
            headers[MCP_METHOD_HEADER] = method
            if method == "resources/read":
                headers[MCP_NAME_HEADER] = encode_header_value(uri)
        session_id = self.mcp_session_id
        if session_id:
            headers[MCP_SESSION_ID] = session_id
        message: dict[str, Any] = {"method": method}
        if params is not None:
            message["params"] = params
        tail = json.dumps(message, separators=(",", ":"))
        return _ReadRequest(
            method=method,
            wire=wire.prepare(self.url, headers, self._verify()),
            session_id=session_id,
            prefix=b'{"jsonrpc":"2.0","id":',
            suffix=b"," + tail[1:].encode(),
        )

    async def read(self) -> str | bytes | None:
        """The probe's request through ``wire``: the resource's text, or its blob decoded.

        None: the server answered the handshake request. Raises ``wire``'s
        exceptions, and a ``ProbeFailure`` for an answer without a result
        (see ``errors``).
        """
        request = self.request
        assert request is not None
        result = await self._call(request)
        if request.method != "resources/read":
            return None
        contents = result.get("contents") if isinstance(result, dict) else None
        return errors.resource_payload(contents, self.target.resource_uri, keep_session=True)

    async def _call(self, request: _ReadRequest, *, probing_era: bool = False) -> Any:
        """One request through ``wire``: its result.

        ``probing_era``: an answer that is no result (an error status, a
        JSON-RPC error) is None rather than a failure -- it says the server
        is not a 2026 one -- except a 401, 403 or 429, which says only that.
        """
        if self._pool is None:
            self._pool = wire.acquire()
        self._request_id += 1
        request_id = self._request_id
        reply = await wire.post(
            self._pool,
            request.wire,
            body=request.body(request_id),
            request_id=request_id,
            body_limit=self._body_limit(),
            event_limit=self._body_limit(),
        )
        request.wire = reply.request  # a redirect is followed from then on
        self.answered = (reply.arrived, reply.stall_at_arrival)
        if probing_era:
            known = errors.status_failure(reply.status, reply.headers)
            if known is not None:
                raise known
            if reply.status >= 500:
                return _SERVER_ERROR
            ok = 200 <= reply.status < 300 and reply.message is not None
            return reply.message.get("result") if ok and reply.message else None
        failure = errors.reply_failure(
            reply,
            method=request.method,
            uri=self.target.resource_uri,
            session_id=request.session_id,
        )
        if failure is not None:
            raise failure
        assert reply.message is not None  # a reply without one is a failure
        return reply.message.get("result")

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
                http_client=self.http_client(),
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
            event_hooks={"response": [self.on_response]},
        )

    def http_client(self) -> httpx2.AsyncClient:
        if self.http is None:
            self.http = httpx2.AsyncClient(
                headers={**self.target.headers, **_IDENTITY},
                verify=self._verify(),
                timeout=httpx2.Timeout(self.timeout, read=self.rehandshake_after + 60),
                limits=httpx2.Limits(max_connections=4, max_keepalive_connections=2),
                event_hooks={"response": [self.on_response]},
            )
        return self.http

    def _verify(self) -> ssl.SSLContext | bool:
        if self.target.insecure_skip_verify:
            return False
        return ssl_context(self.target.ca_file, self.target.ca_data)

    async def on_response(self, response: httpx2.Response) -> None:
        if response.status_code >= 400:
            self.http_error = (response.status_code, dict(response.headers))
        session_id = response.headers.get(MCP_SESSION_ID)
        if session_id:
            self.mcp_session_id = session_id
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
            self.sse_answer = (response.status_code, dict(response.headers))
            if response.is_success:
                # Refused here, before the SDK meets it as an SSEError that it
                # logs with a traceback and that reads as unreachable.
                failure = self.answer_failure()
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

    def answer_failure(self) -> ProbeFailure | None:
        """What an HTTP answer the SDK reports vaguely (or as unreachable) really said."""
        return errors.answer_failure(self.url, self.http_error, self.sse_answer)

    def forget_answers(self) -> None:
        self.http_error = self.sse_answer = None
        self.refused = None

    def _body_limit(self) -> int:
        return 2 * self.max_bytes + _WIRE_MARGIN

    def _event_limit(self) -> int:
        if self.target.transport is Transport.SSE:
            return min(self._body_limit(), _SSE_CLIENT_EVENT_LIMIT)
        return self._body_limit()

    def _refuse(self, response: httpx2.Response, outcome: Outcome, message: str) -> ProbeFailure:
        """A response body was refused mid-read: keep why, and end the read waiting on it.

        Called from whichever task reads the body: the probe's own (plain
        ``GET``), which the raised failure ends, or a session's transport
        task, where the SDK would swallow it or report a lost connection;
        the read's scope (see ``guarded``) is cancelled instead. A
        401/403/429 stays what it is, whatever its body.
        """
        failure = errors.status_failure(response.status_code, response.headers)
        if failure is None:
            failure = ProbeFailure(outcome, message)
        if self.refused is None:
            self.refused = failure
        scope = self._scope
        if scope is not None and asyncio.current_task() is not self._task:
            scope.cancel()
        return failure

    async def guarded(
        self, read: Callable[[], Awaitable[HealthCheckResponse | None]]
    ) -> HealthCheckResponse | None:
        """``read()`` in a scope that a refused response body cancels (see ``_refuse``)."""
        with anyio.CancelScope() as scope:
            self._scope, self._task = scope, asyncio.current_task()
            try:
                return await read()
            finally:
                self._scope = self._task = None
        # Only _refuse cancels this scope, and it has set refused.
        raise _Refused()

    async def discard(self, *, timed_out: bool = False) -> None:
        """Drop the session (after a failure, or to re-handshake); bounded in time.

        ``timed_out``: the probe ran out of time. A handshake still in flight
        then is kept for the next ``open`` (see ``_PENDING_LIMIT``):
        cancelled, it would leave the session the server may have made with
        no id to end it by.
        """
        self.request = None
        holder, self.holder = self.holder, None
        if holder is not None and timed_out and holder.in_flight and self.refused is None:
            self._pending = holder
        elif holder is not None:
            await holder.close()

    async def aclose(self) -> None:
        await self.discard()
        pending, self._pending = self._pending, None
        if pending is not None:
            await pending.close(finish=_FINISH_GRACE)
        pool, self._pool = self._pool, None
        if pool is not None:
            await wire.release(pool)
        http, self.http = self.http, None
        if http is not None:
            with anyio.move_on_after(_CLOSE_GRACE, shield=True):
                await http.aclose()


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
            raise self._refuse(Outcome.PROTOCOL_ERROR, errors.encoded(self._encoding))
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
def ssl_context(ca_file: str | None, ca_data: str | None) -> ssl.SSLContext:
    """One context per CA bundle: building one costs ~20 ms of CPU, so never per client."""
    return ssl.create_default_context(cafile=ca_file, cadata=ca_data)


# Handshakes in flight at once, per event loop (see ``Prober.probe``).
MAX_HANDSHAKES = 32
_slots: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = (
    weakref.WeakKeyDictionary()
)


def handshake_slots() -> asyncio.Semaphore:
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
            message = f"{message}: {type(exc).__name__}: {errors.short(str(exc))}"
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
        self.started = time.monotonic()

    @property
    def client(self) -> Client | None:
        """The session while it is usable; ``None`` once it has ended."""
        if self._task is None or self._task.done() or not self._ready.done():
            return None
        return None if self._ready.exception() else self._ready.result()

    @property
    def in_flight(self) -> bool:
        """The handshake was sent and has not been answered yet."""
        return self._task is not None and not self._task.done() and not self._ready.done()

    @property
    def alive(self) -> bool:
        """In flight, or made and usable."""
        return self.in_flight or self.client is not None

    def start(self) -> None:
        self.started = time.monotonic()
        self._task = asyncio.create_task(self._hold(), name="mcp-health-session")

    async def ready(self) -> Client:
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

    async def close(self, *, finish: float = 0.0) -> None:
        """End the session; a handshake in flight gets ``finish`` seconds to be answered."""
        self._stop.set()
        task = self._task
        if task is None:
            return
        if not self._ready.done() and finish > 0:
            # Answered, the client leaves at once (stop is set), ending the session.
            await asyncio.wait({self._ready}, timeout=finish)
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


_SERVER_ERROR = object()  # what a 5xx answer to server/discover was


def _discovered(answer: Any) -> tuple[str, Implementation | None, ServerCapabilities] | None:
    """The version, identity and capabilities a ``server/discover`` result names.

    None unless it is a 2026 server's (the SDK's own test: a valid result
    naming a modern version this client speaks).
    """
    if not isinstance(answer, dict):
        return None
    try:
        result = DiscoverResult.model_validate(answer)
    except ValidationError:
        return None
    mutual = [v for v in MODERN_PROTOCOL_VERSIONS if v in result.supported_versions]
    if not mutual:
        return None
    # The identity stamp is display-only: absent or malformed reads as none.
    info: Implementation | None = None
    stamp = (result.meta or {}).get(SERVER_INFO_META_KEY)
    if stamp is not None:
        with contextlib.suppress(ValidationError):
            info = Implementation.model_validate(stamp)
    return mutual[-1], info, result.capabilities


class _Lister(Protocol):
    """A page of resource URIs or tool names, and the next page's cursor."""

    async def resources(self, cursor: str | None) -> tuple[set[str], str | None]: ...

    async def tools(self, cursor: str | None) -> tuple[set[str], str | None]: ...


@dataclass(frozen=True, slots=True)
class _SdkLister:
    client: Client

    async def resources(self, cursor: str | None) -> tuple[set[str], str | None]:
        page = await self.client.list_resources(cursor=cursor, cache_mode="refresh")
        return {str(r.uri) for r in page.resources}, page.next_cursor

    async def tools(self, cursor: str | None) -> tuple[set[str], str | None]:
        page = await self.client.list_tools(cursor=cursor, cache_mode="refresh")
        return {t.name for t in page.tools}, page.next_cursor


@dataclass(frozen=True, slots=True)
class _WireLister:
    session: Session
    version: str

    async def resources(self, cursor: str | None) -> tuple[set[str], str | None]:
        items, cursor = await self._page("resources/list", "resources", cursor)
        return {str(r.get("uri")) for r in items}, cursor

    async def tools(self, cursor: str | None) -> tuple[set[str], str | None]:
        items, cursor = await self._page("tools/list", "tools", cursor)
        return {str(t.get("name")) for t in items}, cursor

    async def _page(
        self, method: str, key: str, cursor: str | None
    ) -> tuple[list[dict[str, Any]], str | None]:
        params = {"cursor": cursor} if cursor is not None else {}
        result = await self.session._call(self.session._prepare(self.version, method, params))
        items = result.get(key) if isinstance(result, dict) else None
        if not isinstance(items, list):
            raise ProbeFailure(Outcome.PROTOCOL_ERROR, f"{method}: the answer lists no {key}")
        following = result.get("nextCursor")
        return [i for i in items if isinstance(i, dict)], (
            following if isinstance(following, str) else None
        )
