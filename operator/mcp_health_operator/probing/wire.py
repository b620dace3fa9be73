"""The probe's steady-state read: one pre-serialised JSON-RPC POST on a shared keep-alive pool.

Once a session is made (by the SDK's handshake), every health read is the
same request: ``resources/read`` of one URI with the negotiated protocol
version (and session, if any) in its headers. Through the SDK's client one
read costs 1-2 ms of CPU (a task per request, anyio streams and cancel
scopes, pydantic models of each message); here it is the prepared bytes of
one POST written on a kept-alive connection (asyncio streams), the HTTP/1.1
answer parsed here, and ``json.loads`` of it.

Kept from the SDK's Streamable HTTP transport: the answer may be JSON or a
stream of server-sent events (the answer is the event carrying the
request's id; other events are skipped); a 307/308 redirect within the
endpoint's origin is followed. Added: no body is read past a bound (the
whole body for JSON, each event for an event stream), a compressed body is
refused unread (its decoded size cannot be bounded by counting what
arrives), and a kept-alive connection that the peer closed between two
reads is retried once on a new connection (the read is idempotent).

HTTP statuses and JSON-RPC semantics are the caller's (``probe``); this
module knows HTTP, JSON-RPC framing and server-sent events only.
"""

from __future__ import annotations

import asyncio
import functools
import json
import re
import ssl
import time
import weakref
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, SupportsIndex
from urllib.parse import urljoin, urlsplit

from multidict import CIMultiDict

from mcp_health_operator.probing import stalls

# Connections idle longer than this are closed on our side: longer than any
# usual probe interval, so that each target's reads reuse one connection.
KEEPALIVE_S = 60.0
_MAX_REDIRECTS = 5
# After the answer on an event stream, how long to wait for the stream's end
# (the server closes it right after the answer); past it the connection is
# closed rather than kept.
_DRAIN_S = 0.05


class TooLarge(Exception):
    """A body (``what``: ``response body`` or ``server-sent event``) passed its bound."""

    def __init__(self, what: str, limit: int) -> None:
        super().__init__(f"{what} exceeds the {limit}-byte read limit")
        self.what = what
        self.limit = limit


class Encoded(Exception):
    """The body is content-encoded (compressed), though identity was asked for."""

    def __init__(self, encoding: str) -> None:
        super().__init__(encoding)
        self.encoding = encoding


class Malformed(Exception):
    """The answer is not a JSON-RPC answer to the request."""


class Lost(Exception):
    """The event stream ended before the answer."""


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    headers: Mapping[str, str]
    content_type: str
    # The JSON-RPC response or error answering the request, when the body held one.
    message: dict[str, Any] | None
    # Where it was answered: the request's URL, or a redirect within its origin.
    url: str
    # The request as sent there (the one to send next time).
    request: Request
    # When the answer's last bytes arrived (perf_counter), and the loop's
    # stall clock then: a probe's latency ends here, not when its task ran.
    arrived: float
    stall_at_arrival: float


class CannotConnect(Exception):
    """No connection could be made to ``host:port``."""

    def __init__(self, host: str, port: int, os_error: OSError) -> None:
        super().__init__(f"{host}:{port}: {os_error}")
        self.host = host
        self.port = port
        self.os_error = os_error


class _Reader(asyncio.StreamReader):
    """A stream reader that notes when data last arrived.

    Answers that arrive together (probes started in the same tick) are read
    one task after another; each task's own clock would count the others'
    work as its server's latency (3-4 ms at the median with ~20 a tick).
    The loop hands data over as it arrives, before any of those tasks run.
    """

    arrived = 0.0
    stall_at_arrival = 0.0

    def feed_data(self, data: Iterable[SupportsIndex]) -> None:
        self.arrived = time.perf_counter()
        self.stall_at_arrival = stalls.clock().total()
        super().feed_data(data)


class _Conn:
    """One kept-alive HTTP/1.1 connection."""

    __slots__ = ("fresh", "idle_since", "reader", "writer")

    def __init__(self, reader: _Reader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.idle_since = 0.0
        self.fresh = True  # no request has been answered on it yet

    @property
    def usable(self) -> bool:
        return not (self.writer.is_closing() or self.reader.at_eof())

    def close(self) -> None:
        # abort, not close: nothing is left to flush, and a TLS close_notify
        # exchange with a peer that may be gone is not worth waiting for.
        self.writer.transport.abort()


# An origin and how it is dialled: scheme, host, port, TLS setting.
_Origin = tuple[str, str, int, "ssl.SSLContext | bool"]


class Pool:
    """The keep-alive connections of every probe on one event loop.

    Idle connections are kept per origin and TLS setting, so every monitor of
    one server shares them. A request is written as prepared bytes and its
    answer parsed here (HTTP/1.1: a length, chunks, or the connection's end):
    an aiohttp session spent ~0.25 ms of CPU a read in its request machinery
    (URL objects, header merging, timers) that a fixed request does not need.
    Nothing is decoded: an encoded body is refused; no cookies are kept.
    """

    def __init__(self) -> None:
        self._idle: dict[_Origin, list[_Conn]] = {}
        self._swept = time.monotonic()
        self.users = 0
        self.closed = False

    async def connection(self, origin: _Origin, *, new: bool = False) -> _Conn:
        idle = None if new else self._idle.get(origin)
        while idle:
            conn = idle.pop()
            if conn.usable:
                return conn
            conn.close()
        scheme, host, port, tls = origin
        context = _ssl_context(tls) if scheme == "https" else None
        # asyncio.open_connection, with a reader of our own.
        loop = asyncio.get_running_loop()
        reader = _Reader(limit=_HEAD_LIMIT, loop=loop)
        protocol = asyncio.StreamReaderProtocol(reader, loop=loop)
        try:
            transport, _ = await loop.create_connection(
                lambda: protocol,
                host,
                port,
                ssl=context,
                server_hostname=host if context is not None else None,
            )
        except OSError as exc:
            raise CannotConnect(host, port, exc) from None
        return _Conn(reader, asyncio.StreamWriter(transport, protocol, reader, loop))

    def keep(self, origin: _Origin, conn: _Conn) -> None:
        now = time.monotonic()
        conn.idle_since = now
        conn.fresh = False
        if self.closed:
            conn.close()
            return
        self._idle.setdefault(origin, []).append(conn)
        if now - self._swept > KEEPALIVE_S / 2:
            self._sweep(now)

    def _sweep(self, now: float) -> None:
        """Close what has idled past the keep-alive time, or was closed by the peer."""
        self._swept = now
        for origin, conns in list(self._idle.items()):
            alive = []
            for conn in conns:
                if conn.usable and now - conn.idle_since < KEEPALIVE_S:
                    alive.append(conn)
                else:
                    conn.close()
            if alive:
                self._idle[origin] = alive
            else:
                del self._idle[origin]

    def close(self) -> None:
        self.closed = True
        for conns in self._idle.values():
            for conn in conns:
                conn.close()
        self._idle.clear()


_pools: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Pool] = weakref.WeakKeyDictionary()


def acquire() -> Pool:
    """The running loop's pool; each ``acquire`` needs a ``release``."""
    loop = asyncio.get_running_loop()
    pool = _pools.get(loop)
    if pool is None or pool.closed:
        pool = _pools[loop] = Pool()
    pool.users += 1
    return pool


async def release(pool: Pool) -> None:
    pool.users -= 1
    if pool.users > 0:
        return
    loop = asyncio.get_running_loop()
    if _pools.get(loop) is pool:
        del _pools[loop]
    pool.close()


@functools.lru_cache(maxsize=8)
def _insecure() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


@functools.lru_cache(maxsize=8)
def _default_tls() -> ssl.SSLContext:
    return ssl.create_default_context()


def _ssl_context(tls: ssl.SSLContext | bool) -> ssl.SSLContext:
    if isinstance(tls, ssl.SSLContext):
        return tls
    return _default_tls() if tls else _insecure()


@dataclass(frozen=True, slots=True)
class Request:
    """A POST prepared once: where it goes and its head, less the body's length."""

    url: str
    origin: _Origin
    head: bytes  # request line and headers, up to "Content-Length: "


def prepare(url: str, headers: Mapping[str, str], tls: ssl.SSLContext | bool) -> Request:
    """The request's bytes for ``url``; a header that would split the request is refused."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http(s) URL: {_short(url)}")
    host = parts.hostname
    port = parts.port or (443 if scheme == "https" else 80)
    authority = f"[{host}]" if ":" in host else host
    if parts.port is not None:
        authority = f"{authority}:{parts.port}"
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    lines = [f"POST {target} HTTP/1.1", f"Host: {authority}"]
    for name, value in headers.items():
        if name.lower() in ("host", "content-length", "transfer-encoding", "connection"):
            continue  # framing is this module's
        if not _TOKEN.fullmatch(name) or _FORBIDDEN.search(value):
            raise ValueError(f"header {name!r} has a character not allowed in HTTP")
        lines.append(f"{name}: {value}")
    lines.append("Content-Length: ")
    head = "\r\n".join(lines).encode("latin-1", errors="strict")
    return Request(url, (scheme, host, port, tls), head)


_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_FORBIDDEN = re.compile(r"[\r\n\x00]")
# The bound on a response's status line and headers.
_HEAD_LIMIT = 64 * 1024


async def post(
    pool: Pool,
    request: Request,
    *,
    body: bytes,
    request_id: int,
    body_limit: int,
    event_limit: int,
) -> Reply:
    """POST one JSON-RPC request; the answer, read within its bounds.

    A 401, 403 or 429 is returned unread (its status says it all); an error
    status's body is read only if it is JSON (it may hold a JSON-RPC error).
    A connection that cannot be made raises ``CannotConnect``; one lost
    mid-answer raises ``Lost``.
    """
    hops = 0
    retried = False
    data = b"%s%d\r\n\r\n%s" % (request.head, len(body), body)
    while True:
        conn = await pool.connection(request.origin, new=retried)
        kept = False
        try:
            try:
                conn.writer.write(data)
                status, headers, keep_alive = await _read_head(conn.reader)
            except (ConnectionError, asyncio.IncompleteReadError) as exc:
                # A kept-alive connection closed by the peer between two reads
                # (a server's idle timeout): once more, on a new connection.
                if retried or conn.fresh:
                    raise Lost("the connection was closed before the answer") from exc
                retried = True
                continue
            if status in (307, 308) and hops < _MAX_REDIRECTS:
                location = _within_origin(request.url, headers.get("Location"))
                if location is not None:
                    hops += 1
                    request = prepare(location, _request_headers(request), request.origin[3])
                    data = b"%s%d\r\n\r\n%s" % (request.head, len(body), body)
                    continue
            content_type = headers.get("Content-Type", "").partition(";")[0].strip().lower()
            body_reader = _Body(conn.reader, headers)
            try:
                message = await _answer(
                    status, headers, body_reader, content_type, request_id, body_limit, event_limit
                )
            except (ConnectionError, asyncio.IncompleteReadError) as exc:
                raise Lost("the connection was lost mid-answer") from exc
            arrived, stall = body_reader.answered or (
                conn.reader.arrived,
                conn.reader.stall_at_arrival,
            )
            if keep_alive and body_reader.done:
                pool.keep(request.origin, conn)
                kept = True
            return Reply(
                status, headers, content_type, message, request.url, request, arrived, stall
            )
        finally:
            if not kept:
                conn.close()


def _request_headers(request: Request) -> dict[str, str]:
    """The headers of a prepared request, for the same request to another URL."""
    lines = request.head.decode("latin-1").split("\r\n")[2:-1]
    return dict(line.split(": ", 1) for line in lines)


async def _read_head(reader: _Reader) -> tuple[int, CIMultiDict[str], bool]:
    """The status, headers, and whether the connection may be kept after the body."""
    try:
        raw = await reader.readuntil(b"\r\n\r\n")
    except asyncio.LimitOverrunError:
        raise Malformed(f"the answer's headers exceed {_HEAD_LIMIT} bytes") from None
    while raw.startswith(b"HTTP/1.1 1"):  # 100 Continue and the like: the answer follows
        raw = await reader.readuntil(b"\r\n\r\n")
    lines = raw[:-4].decode("latin-1").split("\r\n")
    version, _, rest = lines[0].partition(" ")
    code = rest[:3]
    if not version.startswith("HTTP/1.") or not code.isdigit():
        raise Malformed(f"not an HTTP/1.1 answer: {_short(repr(lines[0]))}")
    headers: CIMultiDict[str] = CIMultiDict()
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep:
            raise Malformed(f"a header line without a colon: {_short(repr(line))}")
        headers.add(name.strip(), value.strip())
    connection = headers.get("Connection", "").lower()
    keep_alive = version == "HTTP/1.1" and "close" not in connection
    return int(code), headers, keep_alive


class _Body:
    """A response body as it arrives: by its length, in chunks, or to the connection's end."""

    __slots__ = ("answered", "chunk_left", "chunked", "done", "reader", "remaining")

    def __init__(self, reader: _Reader, headers: CIMultiDict[str]) -> None:
        self.reader = reader
        # The reader's arrival stamps when the answer was whole, if noted
        # before reading on (an event stream's end).
        self.answered: tuple[float, float] | None = None
        self.chunk_left = 0
        self.chunked = "chunked" in headers.get("Transfer-Encoding", "").lower()
        length = headers.get("Content-Length")
        # None: read to the end of the connection (which is then not kept).
        self.remaining: int | None = None
        if not self.chunked and length is not None:
            if not length.isdigit():
                raise Malformed(f"Content-Length {_short(repr(length))} is not a number")
            self.remaining = int(length)
        self.done = self.remaining == 0

    @property
    def length(self) -> int | None:
        return None if self.chunked else self.remaining

    async def read(self) -> bytes:
        """The next part of the body; b"" at its end."""
        if self.done:
            return b""
        reader = self.reader
        if self.chunked:
            if self.chunk_left == 0:
                line = await reader.readuntil(b"\r\n")
                size_text = line.partition(b";")[0].strip()
                try:
                    size = int(size_text, 16)
                except ValueError:
                    raise Malformed(f"a bad chunk size {_short(repr(size_text))}") from None
                if size == 0:
                    while await reader.readuntil(b"\r\n") != b"\r\n":
                        pass  # trailers: nothing a read needs
                    self.done = True
                    return b""
                self.chunk_left = size
            # A piece at a time: a chunk may claim any size, and the callers'
            # bounds count what has arrived.
            chunk = await reader.read(min(self.chunk_left, 65536))
            if not chunk:
                raise asyncio.IncompleteReadError(b"", self.chunk_left)
            self.chunk_left -= len(chunk)
            if self.chunk_left == 0 and await reader.readexactly(2) != b"\r\n":
                raise Malformed("a chunk does not end where its size says")
            return chunk
        if self.remaining is None:
            chunk = await reader.read(65536)
            if not chunk:
                self.done = True
            return chunk
        chunk = await reader.read(min(self.remaining, 65536))
        if not chunk:
            raise asyncio.IncompleteReadError(b"", self.remaining)
        self.remaining -= len(chunk)
        self.done = self.remaining == 0
        return chunk

    async def exactly(self, size: int) -> bytes:
        """The whole body of a known ``size``."""
        data = await self.reader.readexactly(size)
        self.remaining = 0
        self.done = True
        return data


async def _answer(
    status: int,
    headers: CIMultiDict[str],
    body: _Body,
    content_type: str,
    request_id: int,
    body_limit: int,
    event_limit: int,
) -> dict[str, Any] | None:
    if status in (401, 403, 429):
        return None
    encoding = headers.get("Content-Encoding", "").strip().lower()
    if encoding not in ("", "identity"):
        raise Encoded(encoding)
    if content_type == "application/json":
        raw = await _read_body(body, body_limit)
        return _json_answer(raw, request_id, strict=status < 300)
    if content_type == "text/event-stream" and status < 300:
        return await _read_events(body, request_id, event_limit)
    return None


async def _read_body(body: _Body, limit: int) -> bytes:
    length = body.length
    if length is not None:
        if length > limit:
            raise TooLarge("response body", limit)
        return await body.exactly(length)
    chunks = []
    size = 0
    while chunk := await body.read():
        size += len(chunk)
        if size > limit:
            raise TooLarge("response body", limit)
        chunks.append(chunk)
    return b"".join(chunks)


def _json_answer(raw: bytes, request_id: int, *, strict: bool) -> dict[str, Any] | None:
    """The JSON-RPC answer in ``raw``; ``strict`` (a 2xx) makes anything else an error."""
    try:
        message = json.loads(raw)
    except (ValueError, RecursionError):
        if strict:
            raise Malformed("the answer is not JSON") from None
        return None
    if not strict:  # an error status: a JSON-RPC error in its body is the better account
        is_error = isinstance(message, dict) and isinstance(message.get("error"), dict)
        return message if is_error else None
    if not isinstance(message, dict) or not ("result" in message or "error" in message):
        raise Malformed("the answer is not a JSON-RPC response")
    answered = message.get("id")
    # An error may name no id (null): the request was refused before it was read.
    if answered != request_id and not (answered is None and "error" in message):
        raise Malformed(f"the answer's id is {_short(repr(answered))}, not the request's")
    return message


# A line ends in \r\n, \n or \r (the server-sent events grammar).
_LINE_END = re.compile(rb"\r\n|\r|\n")


class _Events:
    """Server-sent events from chunks, no event longer than ``limit`` bytes."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._buffer = bytearray()
        self._data: list[bytes] = []
        self._type = b""
        self._size = 0  # bytes of the current event's complete lines

    def feed(self, chunk: bytes) -> list[tuple[bytes, bytes]]:
        """The events (type, data) completed by ``chunk``."""
        buffer = self._buffer
        buffer += chunk
        done: list[tuple[bytes, bytes]] = []
        pos = 0
        while (match := _LINE_END.search(buffer, pos)) is not None:
            if match.end() == len(buffer) and match.group() == b"\r":
                break  # perhaps the first half of \r\n
            line = bytes(buffer[pos : match.start()])
            pos = match.end()
            if not line:  # a blank line ends the event
                if self._data:
                    done.append((self._type or b"message", b"\n".join(self._data)))
                self._data, self._type, self._size = [], b"", 0
                continue
            self._size += len(line) + 1
            if self._size > self.limit:
                raise TooLarge("server-sent event", self.limit)
            name, _, value = line.partition(b":")
            if value.startswith(b" "):
                value = value[1:]
            if name == b"data":
                self._data.append(value)
            elif name == b"event":
                self._type = value
            # id, retry and comments: nothing a single read needs.
        del buffer[:pos]
        if self._size + len(buffer) > self.limit:
            raise TooLarge("server-sent event", self.limit)
        return done


async def _read_events(body: _Body, request_id: int, limit: int) -> dict[str, Any]:
    events = _Events(limit)
    while chunk := await body.read():
        for kind, data in events.feed(chunk):
            if kind != b"message":
                continue
            try:
                message = json.loads(data)
            except (ValueError, RecursionError):
                raise Malformed("a server-sent event is not JSON") from None
            if (
                isinstance(message, dict)
                and message.get("id") == request_id
                and ("result" in message or "error" in message)
            ):
                body.answered = (body.reader.arrived, body.reader.stall_at_arrival)
                await _drain(body, events)
                return message
            # A notification or a request of the server's: not the answer.
    raise Lost("the event stream ended without an answer")


async def _drain(body: _Body, events: _Events) -> None:
    """Read to the stream's end if it comes at once, so the connection can be kept."""
    try:
        async with asyncio.timeout(_DRAIN_S):
            while chunk := await body.read():
                events.feed(chunk)
    except (TimeoutError, TooLarge, Malformed, ConnectionError, asyncio.IncompleteReadError):
        pass  # the connection is closed instead of kept; the answer stands


def _within_origin(url: str, location: str | None) -> str | None:
    """``location`` resolved against ``url`` if it stays on ``url``'s origin."""
    if not location:
        return None
    target = urljoin(url, location)
    a, b = urlsplit(url), urlsplit(target)
    if (a.scheme, a.hostname, a.port) != (b.scheme, b.hostname, b.port) or b.username:
        return None
    return target


def _short(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."
