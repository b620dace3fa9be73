"""The Go benchmark fleet (``bench/fleet``), read by the operator's real probe and the SDK.

Each mode the benchmark can ask for is probed with ``Prober`` as the
operator does: the 2026-07-28 revision (JSON or event-stream answers), the
handshake era (``--legacy``: ``server/discover`` refused, ``initialize``,
``Mcp-Session-Id`` sessions ended by ``DELETE``), the legacy SSE transport
and plain HTTP; and its documents are held against the Python fleet's.
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from mcp.client.sse import sse_client

from bench import fleet
from mcp_health_operator.core.targets import Method, Target, Transport
from mcp_health_operator.probing.probe import Outcome, Prober, ProbeResult
from mcp_health_testbed import _procs
from tests.conftest import FleetFactory

GoFleet = Callable[..., str]


@pytest.fixture(scope="module")
def fleet_binary() -> Path:
    """The built Go fleet; no Go toolchain is a failure that says so, not a skip."""
    try:
        return fleet.binary()
    except RuntimeError as exc:
        pytest.fail(f"cannot build bench/fleet: {exc}")
    except subprocess.CalledProcessError as exc:
        pytest.fail(
            f"`go build` of bench/fleet failed (exit {exc.returncode}); see the output above"
        )


@pytest.fixture
def go_fleet(fleet_binary: Path, tmp_path: Path) -> Iterator[GoFleet]:
    """Start the Go fleet with targets 0..n-1 and these flags; returns its base URL."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(targets: int = 3, *flags: str) -> str:
        port = _procs.free_port()
        log = tmp_path / f"bench-fleet-{len(procs)}.log"
        proc = subprocess.Popen(
            [str(fleet_binary), "--targets", str(targets), "--port", str(port), *flags],
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        procs.append(proc)
        _procs.wait_for_port("127.0.0.1", port, timeout=30, proc=proc, log=log)
        return f"http://127.0.0.1:{port}"

    yield start
    for proc in procs:
        _procs.stop(proc)


def _request(
    url: str,
    body: bytes | None = None,
    *,
    method: str = "GET",
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def _get(url: str) -> dict[str, Any]:
    status, _, body = _request(url)
    assert status == 200, body
    return dict(json.loads(body))


def _post(url: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    data = json.dumps(body).encode() if body is not None else b""
    headers = {"Content-Type": "application/json"}
    status, _, answer = _request(url, data, method="POST", headers=headers)
    assert status == 200, answer
    return dict(json.loads(answer))


async def _read(prober: Prober) -> ProbeResult:
    result = await prober.probe(timeout=5.0)
    assert result.outcome is Outcome.OK, result.message
    assert result.document is not None
    return result


async def _status_of(prober: Prober) -> str:
    doc = (await _read(prober)).document
    assert doc is not None
    return doc.status


# -- the 2026-07-28 revision ---------------------------------------------------------


async def test_targets_answer_on_their_own_paths_flip_and_log_their_reads(
    go_fleet: GoFleet,
) -> None:
    base = go_fleet(3)
    first = Prober(Target(f"{base}/t/0/mcp", method=Method.HEALTH_RESOURCE))
    second = Prober(Target(f"{base}/t/2/mcp", method=Method.HEALTH_RESOURCE))
    try:
        for prober, tid in ((first, 0), (second, 2)):
            result = await _read(prober)
            doc = result.document
            assert doc is not None
            assert doc.status == "healthy"
            assert doc.database_status == "connected"
            assert doc.connection_pool is not None
            assert doc.connection_pool.total_connections == 10
            assert doc.checks["database"].status == "pass"
            assert doc.checks["database"].latency_ms == 1.5
            assert {"database", "memory", "disk"} <= set(doc.checks)
            assert doc.metadata["server"] == f"fleet-target-{tid}"
            assert result.server is not None
            assert result.server.name == "bench-fleet"
            assert result.server.protocol_version == "2026-07-28"
            assert prober._mcp_session_id is None  # stateless: no session

        flipped = _post(f"{base}/t/2/flip?status=unhealthy")
        assert (flipped["target"], flipped["status"]) == (2, "unhealthy")
        unhealthy = (await _read(second)).document  # the same kept session
        assert unhealthy is not None
        assert unhealthy.status == "unhealthy"
        assert unhealthy.database_status == "disconnected"
        assert unhealthy.checks["database"].status == "fail"
        assert await _status_of(first) == "healthy"

        done = _post(f"{base}/control/flip", {"targets": [0, 2, 9], "status": "degraded"})
        assert done["flipped"] == 2  # 9 is no target of this fleet
        degraded = (await _read(first)).document
        assert degraded is not None
        assert degraded.status == "degraded"
        assert degraded.database_status == "degraded"
        assert degraded.checks["database"].status == "warn"
        assert degraded.checks["database"].latency_ms == 150.0
        assert await _status_of(second) == "degraded"

        assert _post(f"{base}/control/flip", {"targets": "all", "status": "healthy"}) | {
            "at": 0
        } == {"flipped": 3, "at": 0}
        assert await _status_of(second) == "healthy"
    finally:
        await first.aclose()
        await second.aclose()

    arrivals = _get(f"{base}/control/arrivals")
    assert set(arrivals["arrivals"]) == {"0", "1", "2"}
    assert len(arrivals["arrivals"]["0"]) == 3
    assert arrivals["arrivals"]["1"] == []
    assert len(arrivals["arrivals"]["2"]) == 4
    times = arrivals["arrivals"]["2"]
    assert times == sorted(times) and times[-1] <= arrivals["now"] <= time.time() + 1
    later = _get(f"{base}/control/arrivals?since={times[1]!r}")["arrivals"]
    assert later["2"] == times[1:]
    assert later["0"] == [t for t in arrivals["arrivals"]["0"] if t >= times[1]]
    stats = _get(f"{base}/control/stats")
    assert stats["targets"] == 3
    assert stats["reads"] == 7
    # The probes share one keep-alive pool: one connection carries every read.
    assert stats["connections"] == 1

    assert _post(f"{base}/control/reset") == {"targets": 3}
    stats = _get(f"{base}/control/stats")
    assert (stats["reads"], stats["connections"]) == (0, 0)
    assert _get(f"{base}/control/arrivals")["arrivals"]["2"] == []


async def test_bad_flips_and_unknown_targets_are_refused(go_fleet: GoFleet) -> None:
    base = go_fleet(2)
    status, _, body = _request(f"{base}/t/1/flip?status=sick", b"", method="POST")
    assert status == 400
    assert "healthy, degraded, unhealthy" in json.loads(body)["error"]
    status, _, body = _request(
        f"{base}/control/flip", b'{"targets": "all", "status": "sick"}', method="POST"
    )
    assert status == 400
    assert _post(f"{base}/t/1/flip")["status"] == "unhealthy"  # the default, as fleet.py's

    for path in ("mcp", "sse", "health/status"):
        status, _, body = _request(f"{base}/t/7/{path}")
        assert status == 404, path
        assert json.loads(body) == {"error": "no such target"}
    prober = Prober(Target(f"{base}/t/7/mcp"))
    try:
        result = await prober.probe(timeout=5.0)
    finally:
        await prober.aclose()
    assert result.outcome is Outcome.PROTOCOL_ERROR
    assert result.http_status == 404


async def test_an_unknown_resource_is_resource_not_found(go_fleet: GoFleet) -> None:
    base = go_fleet(1)
    for transport, path in ((Transport.STREAMABLE_HTTP, "mcp"), (Transport.SSE, "sse")):
        prober = Prober(Target(f"{base}/t/0/{path}", transport, resource_uri="health://nope"))
        try:
            result = await prober.probe(timeout=5.0)
        finally:
            await prober.aclose()
        assert result.outcome is Outcome.RESOURCE_NOT_FOUND, (transport, result.message)
        assert "Unknown resource: health://nope" in result.message


async def test_event_stream_answers_to_2026_requests(go_fleet: GoFleet) -> None:
    base = go_fleet(2, "--event-stream")
    prober = Prober(Target(f"{base}/t/1/mcp"))
    try:
        assert await _status_of(prober) == "healthy"
        _post(f"{base}/t/1/flip?status=degraded")
        assert await _status_of(prober) == "degraded"
    finally:
        await prober.aclose()
    status, headers, body = _request(
        f"{base}/t/1/mcp", _discover(1), method="POST", headers=_modern_headers("server/discover")
    )
    assert status == 200
    assert headers["Content-Type"] == "text/event-stream"
    assert body.startswith(b"event: message\r\ndata: {")
    answer = json.loads(body.split(b"data: ", 1)[1])
    assert answer["result"]["supportedVersions"] == ["2026-07-28"]


def _discover(request_id: int) -> bytes:
    meta = {
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {},
    }
    message = {
        "jsonrpc": "2.0",
        "id": request_id,
        "method": "server/discover",
        "params": {"_meta": meta},
    }
    return json.dumps(message).encode()


def _modern_headers(method: str, **more: str) -> dict[str, str]:
    return {
        "Accept": "application/json, text/event-stream",
        "Content-Type": "application/json",
        "Mcp-Protocol-Version": "2026-07-28",
        "Mcp-Method": method,
        **more,
    }


async def test_2026_requests_are_checked_against_their_headers(go_fleet: GoFleet) -> None:
    base = go_fleet(1)
    status, headers, body = _request(
        f"{base}/t/0/mcp", _discover(5), method="POST", headers=_modern_headers("server/discover")
    )
    assert status == 200
    assert headers["Content-Type"] == "application/json"
    answer = json.loads(body)
    assert answer["id"] == 5
    result = answer["result"]
    assert result["supportedVersions"] == ["2026-07-28"]
    assert result["resultType"] == "complete"
    assert set(result["capabilities"]) == {"resources", "tools"}
    assert result["_meta"]["io.modelcontextprotocol/serverInfo"]["name"] == "bench-fleet"

    status, _, body = _request(
        f"{base}/t/0/mcp", _discover(6), method="POST", headers=_modern_headers("tools/list")
    )
    assert status == 400
    assert json.loads(body)["error"]["code"] == -32020  # Mcp-Method is not the body's
    status, _, body = _request(
        f"{base}/t/0/mcp",
        json.dumps({"jsonrpc": "2.0", "id": 7, "method": "server/discover"}).encode(),
        method="POST",
        headers=_modern_headers("server/discover"),
    )
    assert status == 400
    assert json.loads(body)["error"]["code"] == -32602  # no _meta envelope
    status, _, _ = _request(
        f"{base}/t/0/mcp", _discover(8), method="POST", headers={"Accept": "text/event-stream"}
    )
    assert status in (400, 406)


# -- the handshake era ------------------------------------------------------------------


@pytest.mark.parametrize("answers", [[], ["--json-response"]], ids=["event-stream", "json"])
async def test_legacy_targets_make_sessions_and_end_them(
    go_fleet: GoFleet, answers: list[str]
) -> None:
    base = go_fleet(2, "--legacy", *answers)
    status, _, body = _request(
        f"{base}/t/0/mcp", _discover(1), method="POST", headers=_modern_headers("server/discover")
    )
    assert status == 200
    assert json.loads(body)["error"]["code"] == -32601  # as a handshake-era server says

    prober = Prober(Target(f"{base}/t/0/mcp"))
    pinger = Prober(Target(f"{base}/t/1/mcp", method=Method.HANDSHAKE))
    try:
        result = await _read(prober)
        assert result.server is not None
        assert result.server.protocol_version == "2025-11-25"
        assert prober._mcp_session_id is not None
        _post(f"{base}/t/0/flip?status=unhealthy")
        assert await _status_of(prober) == "unhealthy"
        judged = await pinger.probe(timeout=5.0)  # ping on the session
        assert judged.outcome is Outcome.OK, judged.message
        assert judged.method is Method.HANDSHAKE and judged.document is None
        assert _get(f"{base}/control/stats")["sessions"] == 2
    finally:
        await prober.aclose()
        await pinger.aclose()
    # Closing the SDK's client sends DELETE: the server forgets both sessions.
    stats = _stats_once_settled(base, "sessions")
    assert stats["sessions"] == 0
    assert stats["reads"] == 2


async def test_legacy_answers_are_event_streams_or_json_as_asked(go_fleet: GoFleet) -> None:
    for flags, content_type in (
        ([], "text/event-stream"),
        (["--json-response"], "application/json"),
    ):
        base = go_fleet(1, "--legacy", *flags)
        initialize = {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "initialize",
            "params": {
                "protocolVersion": "2025-06-18",
                "capabilities": {},
                "clientInfo": {"name": "test", "version": "0"},
            },
        }
        headers = {
            "Accept": "application/json, text/event-stream",
            "Content-Type": "application/json",
        }
        status, answer_headers, body = _request(
            f"{base}/t/0/mcp", json.dumps(initialize).encode(), method="POST", headers=headers
        )
        assert status == 200
        assert answer_headers["Content-Type"] == content_type
        session = answer_headers["Mcp-Session-Id"]
        text = body.split(b"data: ", 1)[1] if content_type == "text/event-stream" else body
        assert json.loads(text)["result"]["protocolVersion"] == "2025-06-18"
        read = {
            "jsonrpc": "2.0",
            "id": 2,
            "method": "resources/read",
            "params": {"uri": "health://status"},
        }
        status, _, _ = _request(
            f"{base}/t/0/mcp", json.dumps(read).encode(), method="POST", headers=headers
        )
        assert status == 400  # no session named
        status, _, _ = _request(
            f"{base}/t/0/mcp",
            json.dumps(read).encode(),
            method="POST",
            headers={**headers, "Mcp-Session-Id": "0" * 32},
        )
        assert status == 404  # no such session
        status, _, _ = _request(
            f"{base}/t/0/mcp", method="DELETE", headers={"Mcp-Session-Id": session}
        )
        assert status == 200
        status, _, _ = _request(
            f"{base}/t/0/mcp",
            json.dumps(read).encode(),
            method="POST",
            headers={**headers, "Mcp-Session-Id": session},
        )
        assert status == 404  # ended


async def test_legacy_mode_can_be_per_target(go_fleet: GoFleet) -> None:
    base = go_fleet(3, "--legacy-targets", "1-2")
    versions = {}
    for tid in range(3):
        prober = Prober(Target(f"{base}/t/{tid}/mcp"))
        try:
            result = await _read(prober)
        finally:
            await prober.aclose()
        assert result.server is not None
        versions[tid] = result.server.protocol_version
    assert versions == {0: "2026-07-28", 1: "2025-11-25", 2: "2025-11-25"}


# -- the legacy SSE transport and plain HTTP -----------------------------------------


@pytest.mark.parametrize("legacy", [False, True], ids=["2026", "handshake"])
async def test_the_sse_transport_reads_flips_and_ends_with_its_stream(
    go_fleet: GoFleet, legacy: bool
) -> None:
    base = go_fleet(2, *(["--legacy"] if legacy else []))
    prober = Prober(Target(f"{base}/t/1/sse", Transport.SSE))
    pinger = Prober(Target(f"{base}/t/0/sse", Transport.SSE, method=Method.HANDSHAKE))
    try:
        result = await _read(prober)
        assert result.server is not None
        assert result.server.transport is Transport.SSE
        assert result.server.protocol_version == ("2025-11-25" if legacy else "2026-07-28")
        _post(f"{base}/control/flip", {"targets": [1], "status": "degraded"})
        assert await _status_of(prober) == "degraded"
        judged = await pinger.probe(timeout=5.0)  # server/discover, or ping
        assert judged.outcome is Outcome.OK, judged.message
        assert _get(f"{base}/control/stats")["sse_sessions"] == 2
    finally:
        await prober.aclose()
        await pinger.aclose()
    stats = _stats_once_settled(base, "sse_sessions")
    assert stats["sse_sessions"] == 0  # a closed stream ends its session
    assert stats["reads"] == 2


def _stats_once_settled(base: str, key: str, timeout: float = 5.0) -> dict[str, Any]:
    """The fleet's stats once ``key`` is 0 (a stream's end reaches the server a little later)."""
    deadline = time.monotonic() + timeout
    stats = _get(f"{base}/control/stats")
    while stats[key] and time.monotonic() < deadline:
        time.sleep(0.05)
        stats = _get(f"{base}/control/stats")
    return stats


async def test_sse_messages_need_a_live_session(go_fleet: GoFleet) -> None:
    base = go_fleet(1)
    status, _, _ = _request(f"{base}/t/0/messages/", b"{}", method="POST")
    assert status == 400
    status, _, _ = _request(f"{base}/t/0/messages/?session_id={'0' * 32}", b"{}", method="POST")
    assert status == 404


async def test_plain_http_reads_the_same_document(go_fleet: GoFleet) -> None:
    base = go_fleet(1)
    prober = Prober(Target(f"{base}/t/0/health/status", Transport.HTTP))
    try:
        assert await _status_of(prober) == "healthy"
        _post(f"{base}/t/0/flip?status=unhealthy")
        assert await _status_of(prober) == "unhealthy"  # 200 still, as fleet.py answers
    finally:
        await prober.aclose()


# -- the SDK's own client, the tool, the method ----------------------------------


async def test_the_sdk_client_speaks_both_eras_and_calls_the_tool(go_fleet: GoFleet) -> None:
    base = go_fleet(2)
    for mode in ("auto", "legacy"):
        async with Client(f"{base}/t/1/mcp", cache=None, mode=mode) as client:
            assert client.protocol_version == ("2026-07-28" if mode == "auto" else "2025-11-25")
            listed = await client.list_resources()
            assert [str(r.uri) for r in listed.resources] == ["health://status"]
            tools = await client.list_tools()
            assert [t.name for t in tools.tools] == ["set_status"]
            read = await client.read_resource("health://status")
            text = getattr(read.contents[0], "text", "")
            assert json.loads(text)["metadata"]["server"] == "fleet-target-1"
            called = await client.call_tool("set_status", {"status": "degraded"})
            assert not called.is_error
            assert json.loads(getattr(called.content[0], "text", ""))["status"] == "degraded"
            refused = await client.call_tool("set_status", {"status": "sick"})
            assert refused.is_error
            _post(f"{base}/t/1/flip?status=healthy")
    async with Client(sse_client(f"{base}/t/0/sse"), cache=None) as client:
        read = await client.read_resource("health://status")
        assert json.loads(getattr(read.contents[0], "text", ""))["status"] == "healthy"

    prober = Prober(Target(f"{base}/t/0/mcp"))
    try:
        text = await prober.call_tool("set_status", {"status": "unhealthy"}, timeout=5.0)
        assert json.loads(text) == {"target": 0, "status": "unhealthy"}
        assert await _status_of(prober) == "unhealthy"
    finally:
        await prober.aclose()


async def test_method_auto_finds_the_resource_and_the_expected_tools(go_fleet: GoFleet) -> None:
    base = go_fleet(1)
    target = Target(f"{base}/t/0/mcp", method=Method.AUTO, expect_tools=("set_status", "absent"))
    prober = Prober(target)
    handshake = Prober(Target(f"{base}/t/0/mcp", method=Method.HANDSHAKE))
    try:
        result = await _read(prober)
        assert result.method is Method.HEALTH_RESOURCE and not result.fell_back
        assert result.missing_tools == ("absent",)
        judged = await handshake.probe(timeout=5.0)  # server/discover, stateless
        assert judged.outcome is Outcome.OK, judged.message
        assert judged.method is Method.HANDSHAKE and judged.document is None
    finally:
        await prober.aclose()
        await handshake.aclose()


# -- the same document as the Python fleet ----------------------------------------

# Figures of the process or the moment, not of the target's state.
_VOLATILE = {"timestamp", "uptime_seconds", "usage_mb", "percentage", "free_gb", "percentage_used"}


def _shape(value: Any) -> Any:
    """``value`` with its keys in order and its volatile figures replaced by their type."""
    if isinstance(value, dict):
        return [(k, type(v).__name__ if k in _VOLATILE else _shape(v)) for k, v in value.items()]
    return value


async def test_documents_are_the_python_fleets(
    go_fleet: GoFleet, start_fleet: FleetFactory
) -> None:
    go_base, python_base = go_fleet(1), start_fleet(1)
    for status in ("healthy", "degraded", "unhealthy"):
        docs = []
        for base in (go_base, python_base):
            _post(f"{base}/t/0/flip?status={status}")
            plain = _get(f"{base}/t/0/health/status")
            prober = Prober(Target(f"{base}/t/0/mcp"))
            try:
                result = await _read(prober)
            finally:
                await prober.aclose()
            assert result.document is not None
            assert result.document.status == status
            docs.append(plain)
        go_doc, python_doc = docs
        assert _shape(go_doc) == _shape(python_doc), status
        assert go_doc["timestamp"].endswith("Z")

    # The resource's text is written as json.dumps writes it (", " and ": ").
    async with Client(f"{go_base}/t/0/mcp", cache=None) as client:
        read = await client.read_resource("health://status")
    text = getattr(read.contents[0], "text", "")
    assert text == json.dumps(json.loads(text))
    assert read.contents[0].mime_type == "application/json"
