"""``wire``: the probe's own HTTP/1.1 exchange, against a raw loopback server.

The answers are written byte by byte as a server might frame them (a
length, chunks split anywhere, the connection's end, interim answers), so
each framing and each bound is met exactly as it comes off a socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import pytest

from mcp_health_operator.probing import stalls, wire

Answer = Callable[[bytes], list[bytes]]


@dataclass
class RawServer:
    """Answers each request on a connection with ``answer(request)``'s pieces."""

    answer: Answer
    connections: int = 0
    requests: list[bytes] = field(default_factory=list)
    close_after: int | None = None  # requests served before closing the connection
    port: int = 0
    pause_s: float = 0.0  # between two pieces of an answer

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        served = 0
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                request = head + await reader.readexactly(length)
                self.requests.append(request)
                for piece in self.answer(request):
                    writer.write(piece)
                    await writer.drain()
                    await asyncio.sleep(self.pause_s)
                served += 1
                if self.close_after is not None and served >= self.close_after:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


async def _listen(raw: RawServer) -> asyncio.Server:
    server = await asyncio.start_server(raw.handle, "127.0.0.1", 0)
    raw.port = server.sockets[0].getsockname()[1]
    return server


@contextlib.asynccontextmanager
async def _serving(raw: RawServer) -> AsyncIterator[wire.Pool]:
    """``raw`` listening on loopback, and a pool of probe connections to reach it."""
    server = await _listen(raw)
    pool = wire.acquire()
    try:
        yield pool
    finally:
        await wire.release(pool)
        server.close()


def _rpc(request: bytes, result: object) -> bytes:
    body = request.split(b"\r\n\r\n", 1)[1]
    return json.dumps({"jsonrpc": "2.0", "id": json.loads(body)["id"], "result": result}).encode()


def _json_answer(request: bytes, result: object = "ok", extra: bytes = b"") -> bytes:
    body = _rpc(request, result)
    return (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
        + extra
        + b"Content-Length: %d\r\n\r\n" % len(body)
        + body
    )


def _chunked(data: bytes, size: int) -> bytes:
    out = b""
    for i in range(0, len(data), size):
        piece = data[i : i + size]
        out += b"%x;ext=1\r\n%s\r\n" % (len(piece), piece)
    return out + b"0\r\nX-Trailer: t\r\n\r\n"


async def _post(
    pool: wire.Pool, port: int, request_id: int, limit: int = 1 << 20, path: str = "/mcp"
) -> wire.Reply:
    request = wire.prepare(
        f"http://127.0.0.1:{port}{path}", {"Content-Type": "application/json"}, True
    )
    body = b'{"jsonrpc":"2.0","id":%d,"method":"ping"}' % request_id
    return await wire.post(
        pool, request, body=body, request_id=request_id, body_limit=limit, event_limit=limit
    )


async def test_a_json_answer_by_length_keeps_the_connection() -> None:
    raw = RawServer(lambda r: [_json_answer(r)])
    async with _serving(raw) as pool:
        for i in range(1, 4):
            reply = await _post(pool, raw.port, i)
            assert (reply.status, reply.message) == (
                200,
                {"jsonrpc": "2.0", "id": i, "result": "ok"},
            )
        assert raw.connections == 1
        head = raw.requests[0].split(b"\r\n\r\n")[0].decode()
        assert head.startswith("POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:")


async def test_an_event_stream_in_chunks_split_anywhere() -> None:
    def answer(request: bytes) -> list[bytes]:
        note = b'event: message\ndata: {"jsonrpc":"2.0","method":"notifications/message"}\n\n'
        events = note + b"event: message\r\ndata: " + _rpc(request, {"x": 1}) + b"\r\n\r\n"
        body = _chunked(events, 7)
        head = (
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )
        data = head + body
        return [data[i : i + 5] for i in range(0, len(data), 5)]

    raw = RawServer(answer)
    async with _serving(raw) as pool:
        for i in (1, 2):
            reply = await _post(pool, raw.port, i)
            assert reply.message is not None and reply.message["result"] == {"x": 1}
        assert raw.connections == 1  # the stream's end was read: the connection kept


async def test_an_answer_arrives_when_its_bytes_do_not_when_its_task_runs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Answers that come together are read one task after another: the time a
    reply carries is when its bytes arrived, before the tasks queued ahead of
    it ran (here, one holding the loop 0.2 s), with the stall clock then."""
    original = wire._Reader.feed_data

    def queued_behind_another(reader: wire._Reader, data: bytes) -> None:
        # Queued before the reading task's wake-up, which feed_data queues.
        asyncio.get_running_loop().call_soon(time.sleep, 0.2)
        original(reader, data)

    monkeypatch.setattr(wire._Reader, "feed_data", queued_behind_another)
    raw = RawServer(lambda r: [_json_answer(r)])
    async with _serving(raw) as pool:
        sent = time.perf_counter()
        reply = await _post(pool, raw.port, 1)
        returned = time.perf_counter()
        assert sent < reply.arrived < returned - 0.2
        assert reply.stall_at_arrival < stalls.clock().total() - 0.1  # the hold came after


async def test_an_event_streams_answer_arrives_with_its_event_not_the_streams_end() -> None:
    def answer(request: bytes) -> list[bytes]:
        head = (
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )
        event = b"event: message\ndata: " + _rpc(request, "ok") + b"\n\n"
        return [head + b"%x\r\n%s\r\n" % (len(event), event), b"0\r\n\r\n"]

    # The stream's end 30 ms after the answer: read (the connection is kept),
    # but not part of the answer's time.
    raw = RawServer(answer, pause_s=0.03)
    async with _serving(raw) as pool:
        reply = await _post(pool, raw.port, 1)
        returned = time.perf_counter()
        assert reply.message is not None and reply.message["result"] == "ok"
        assert returned - reply.arrived >= 0.025
        assert (await _post(pool, raw.port, 2)).message is not None
        assert raw.connections == 1


async def test_a_body_to_the_connections_end_and_an_interim_answer() -> None:
    def answer(request: bytes) -> list[bytes]:
        return [
            b"HTTP/1.1 100 Continue\r\n\r\n",
            b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n",
            _rpc(request, "end"),
        ]

    raw = RawServer(answer, close_after=1)
    async with _serving(raw) as pool:
        reply = await _post(pool, raw.port, 7)
        assert reply.message is not None and reply.message["result"] == "end"
        reply = await _post(pool, raw.port, 8)
        assert reply.message is not None and reply.message["id"] == 8
        assert raw.connections == 2  # HTTP/1.0 to the end: never kept


async def test_a_kept_connection_closed_by_the_peer_is_retried_once() -> None:
    raw = RawServer(lambda r: [_json_answer(r)], close_after=1)
    async with _serving(raw) as pool:
        await _post(pool, raw.port, 1)
        await asyncio.sleep(0.05)  # the server has closed its side
        reply = await _post(pool, raw.port, 2)
        assert reply.message is not None and reply.message["id"] == 2
        assert raw.connections == 2


async def test_a_new_connection_closed_before_the_answer_is_lost() -> None:
    raw = RawServer(lambda r: [], close_after=1)
    async with _serving(raw) as pool:
        with pytest.raises(wire.Lost):
            await _post(pool, raw.port, 1)


async def test_a_chunk_claiming_a_huge_size_stops_at_the_bound() -> None:
    def answer(request: bytes) -> list[bytes]:
        head = (
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\nffffffff\r\n"
        )
        return [head] + [b"x" * 65536] * 8

    raw = RawServer(answer, close_after=1)
    async with _serving(raw) as pool:
        with pytest.raises(wire.TooLarge):
            await _post(pool, raw.port, 1, limit=100_000)


async def test_an_encoded_body_and_a_redirect_within_the_origin() -> None:
    def answer(request: bytes) -> list[bytes]:
        if request.startswith(b"POST /old "):
            return [
                b"HTTP/1.1 307 Temporary Redirect\r\nLocation: /new\r\nContent-Length: 0\r\n\r\n"
            ]
        if request.startswith(b"POST /gz "):
            return [_json_answer(request, extra=b"Content-Encoding: gzip\r\n")]
        return [_json_answer(request, "moved")]

    raw = RawServer(answer)
    async with _serving(raw) as pool:
        reply = await _post(pool, raw.port, 1, path="/old")
        assert reply.message is not None and reply.message["result"] == "moved"
        assert reply.url.endswith("/new") and reply.request.url == reply.url
        with pytest.raises(wire.Encoded):
            await _post(pool, raw.port, 2, path="/gz")


async def test_nothing_listening_names_host_and_port() -> None:
    raw = RawServer(lambda r: [])
    server = await _listen(raw)
    port = raw.port
    server.close()
    await server.wait_closed()
    pool = wire.acquire()
    try:
        with pytest.raises(wire.CannotConnect) as caught:
            await _post(pool, port, 1)
        assert (caught.value.host, caught.value.port) == ("127.0.0.1", port)
    finally:
        await wire.release(pool)


def test_a_header_that_would_split_the_request_is_refused() -> None:
    with pytest.raises(ValueError, match="X-Evil"):
        wire.prepare("http://127.0.0.1:1/mcp", {"X-Evil": "a\r\nInjected: 1"}, True)
    with pytest.raises(ValueError, match="not an http"):
        wire.prepare("ftp://127.0.0.1/mcp", {}, True)
    prepared = wire.prepare("https://[::1]/mcp?a=1", {"Host": "spoof"}, False)
    assert prepared.head.startswith(b"POST /mcp?a=1 HTTP/1.1\r\nHost: [::1]\r\n")
    assert b"spoof" not in prepared.head
    assert prepared.origin[:3] == ("https", "::1", 443)
