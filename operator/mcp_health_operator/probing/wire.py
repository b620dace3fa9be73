"""The probe's steady-state read: one pre-serialised JSON-RPC POST on a shared keep-alive pool.

Once a session is made (by the SDK's handshake), every health read is the
same request: ``resources/read`` of one URI with the negotiated protocol
version (and session, if any) in its headers. Through the SDK's client one
read costs 1-2 ms of CPU (a task per request, anyio streams and cancel
scopes, pydantic models of each message); here it is one aiohttp POST on a
kept-alive connection and ``json.loads`` of the answer.

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
import json
import re
import ssl
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin, urlsplit

import aiohttp

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


class Pool:
    """The keep-alive connections of every probe on one event loop.

    One aiohttp session: its connector keeps a pool per origin and TLS
    setting, so every monitor of one server shares the connections. Its
    cookie jar ignores cookies: a probe carries no state from one answer to
    the next. Decompression is off: an encoded body is refused, not decoded.
    """

    def __init__(self) -> None:
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=KEEPALIVE_S),
            cookie_jar=aiohttp.DummyCookieJar(),
            auto_decompress=False,
            timeout=aiohttp.ClientTimeout(total=None),  # the probe's own deadline governs
        )
        self.users = 0


_pools: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Pool] = weakref.WeakKeyDictionary()


def acquire() -> Pool:
    """The running loop's pool; each ``acquire`` needs a ``release``."""
    loop = asyncio.get_running_loop()
    pool = _pools.get(loop)
    if pool is None or pool.session.closed:
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
    await pool.session.close()


async def post(
    pool: Pool,
    url: str,
    *,
    headers: Mapping[str, str],
    body: bytes,
    request_id: int,
    tls: ssl.SSLContext | bool,
    body_limit: int,
    event_limit: int,
) -> Reply:
    """POST one JSON-RPC request; the answer, read within its bounds.

    A 401, 403 or 429 is returned unread (its status says it all); an error
    status's body is read only if it is JSON (it may hold a JSON-RPC error).
    Connection failures raise aiohttp's exceptions.
    """
    session = pool.session
    hops = 0
    retried = False
    while True:
        try:
            response = await session.post(
                url, data=body, headers=headers, ssl=tls, allow_redirects=False
            )
        except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError) as exc:
            # A kept-alive connection closed by the peer between two reads
            # (a server's idle timeout): once more, on a new connection. A
            # refused connection is not that.
            if retried or isinstance(exc, aiohttp.ClientConnectorError):
                raise
            retried = True
            continue
        try:
            if response.status in (307, 308) and hops < _MAX_REDIRECTS:
                location = _within_origin(url, response.headers.get("Location"))
                if location is not None:
                    hops += 1
                    url = location
                    continue
            content_type = response.headers.get("Content-Type", "")
            content_type = content_type.partition(";")[0].strip().lower()
            message = await _answer(response, content_type, request_id, body_limit, event_limit)
            return Reply(response.status, response.headers, content_type, message, url)
        finally:
            # An unfinished body closes the connection instead of pooling it.
            response.release()


async def _answer(
    response: aiohttp.ClientResponse,
    content_type: str,
    request_id: int,
    body_limit: int,
    event_limit: int,
) -> dict[str, Any] | None:
    status = response.status
    if status in (401, 403, 429):
        return None
    encoding = response.headers.get("Content-Encoding", "").strip().lower()
    if encoding not in ("", "identity"):
        raise Encoded(encoding)
    if content_type == "application/json":
        raw = await _read_body(response, body_limit)
        return _json_answer(raw, request_id, strict=status < 300)
    if content_type == "text/event-stream" and status < 300:
        return await _read_events(response.content, request_id, event_limit)
    return None


async def _read_body(response: aiohttp.ClientResponse, limit: int) -> bytes:
    length = response.content_length
    if length is not None:
        if length > limit:
            raise TooLarge("response body", limit)
        return await response.content.readexactly(length)
    chunks = []
    size = 0
    while chunk := await response.content.readany():
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


async def _read_events(
    content: aiohttp.StreamReader, request_id: int, limit: int
) -> dict[str, Any]:
    events = _Events(limit)
    while chunk := await content.readany():
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
                await _drain(content, events)
                return message
            # A notification or a request of the server's: not the answer.
    raise Lost("the event stream ended without an answer")


async def _drain(content: aiohttp.StreamReader, events: _Events) -> None:
    """Read to the stream's end if it comes at once, so the connection can be kept."""
    try:
        async with asyncio.timeout(_DRAIN_S):
            while not content.at_eof() and (chunk := await content.readany()):
                events.feed(chunk)
    except (TimeoutError, TooLarge, aiohttp.ClientError):
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
