"""spec.probe.method and expectTools against real SDK servers, and what each probe asks.

Every server here records the JSON-RPC methods it receives (``GET
/__methods``), so each test shows what a method sends, per session and per
probe, and that nothing is asked of a capability the server did not
advertise.
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from collections import Counter
from collections.abc import Iterator

import pytest
from mcp import Client
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from mcp_health_operator.core import judge
from mcp_health_operator.core.targets import Method, Target, Transport
from mcp_health_operator.probing.probe import Outcome, Prober, ProbeResult
from mcp_health_operator.probing.session import Session
from mcp_health_testbed import _procs
from tests.conftest import HOSTILE
from tests.integration.conftest import ServerFactory

STREAMABLE, SSE = Transport.STREAMABLE_HTTP, Transport.SSE

# (transport, server arguments): the 2026 protocol (server/discover), a
# handshake-era server on Streamable HTTP (initialize, a session), and SSE
# (on which the SDK negotiates the 2026 revision).
ERAS: dict[str, tuple[Transport, tuple[str, ...]]] = {
    "modern": (STREAMABLE, ()),
    "legacy": (STREAMABLE, ("--legacy",)),
    "sse": (SSE, ("--transport", "sse")),
}
RESOURCE_METHODS = {"resources/list", "resources/read", "resources/templates/list"}


def _methods(base: str) -> list[str]:
    with urllib.request.urlopen(base + "/__methods", timeout=5) as resp:
        methods: list[str] = json.load(resp)
    return methods


async def _probe(target: Target, count: int) -> tuple[list[ProbeResult], Counter[str]]:
    """``count`` probes on one Prober, and the methods the server received for them."""
    before = len(_methods(target.url))
    prober = Prober(target, timeout=5.0)
    try:
        results = [await prober.probe() for _ in range(count)]
    finally:
        await prober.aclose()
    return results, Counter(_methods(target.url)[before:])


def _verdict(result: ProbeResult) -> judge.Verdict:
    history = judge.History()
    return judge.judge(result.observation(), judge.Thresholds(), history, failure_threshold=1)


@pytest.mark.parametrize("era", ERAS)
async def test_auto_falls_back_to_the_handshake_on_a_server_without_resources(
    server: ServerFactory, era: str
) -> None:
    transport, args = ERAS[era]
    base = server("tools-only", *args)
    results, asked = await _probe(Target(base, transport, method=Method.AUTO), 5)
    for result in results:
        assert result.outcome is Outcome.OK, result
        assert result.document is None
        assert result.method is Method.HANDSHAKE and result.fell_back
        verdict = _verdict(result)
        assert verdict.health is judge.Health.HEALTHY and verdict.reasons == ()
    # The server advertised no resources: none was asked for.
    assert not RESOURCE_METHODS & set(asked), asked
    assert results[0].server is not None
    if results[0].server.protocol_version in MODERN_PROTOCOL_VERSIONS:
        # The 2026 revision (the SDK's SSE server speaks it too): stateless,
        # the session's discover, then one server/discover a probe.
        assert asked["server/discover"] == 1 + 5, asked
        assert "initialize" not in asked
    else:
        # One initialize session, answered ping by ping: no session per probe.
        assert asked["initialize"] == 1, asked
        assert asked["ping"] == 5, asked


@pytest.mark.parametrize("era", ERAS)
async def test_auto_reads_the_health_resource_a_server_lists(
    server: ServerFactory, era: str
) -> None:
    transport, args = ERAS[era]
    base = server("mcp", *args, "--behaviour", "ok")
    results, asked = await _probe(Target(base, transport, method=Method.AUTO), 4)
    for result in results:
        assert result.outcome is Outcome.OK, result
        assert result.document is not None and result.document.status == "healthy"
        assert result.method is Method.HEALTH_RESOURCE and not result.fell_back
    # The listing is read once, when the session is made; then one read a probe.
    assert asked["resources/list"] == 1, asked
    assert asked["resources/read"] == 4, asked
    assert "ping" not in asked


@pytest.mark.parametrize("era", ERAS)
async def test_auto_does_not_read_a_resource_the_server_does_not_list(
    server: ServerFactory, era: str
) -> None:
    # Resources are served, but not health://status.
    transport, args = ERAS[era]
    base = server("mcp", *args, "--behaviour", "missing")
    results, asked = await _probe(Target(base, transport, method=Method.AUTO), 3)
    assert all(r.outcome is Outcome.OK and r.method is Method.HANDSHAKE for r in results)
    assert all(r.fell_back for r in results)
    assert asked["resources/list"] == 1, asked
    assert "resources/read" not in asked


@pytest.mark.parametrize("era", ERAS)
async def test_handshake_never_reads_the_health_resource(server: ServerFactory, era: str) -> None:
    transport, args = ERAS[era]
    base = server("mcp", *args, "--behaviour", "ok")
    results, asked = await _probe(Target(base, transport, method=Method.HANDSHAKE), 3)
    for result in results:
        assert result.outcome is Outcome.OK and result.document is None, result
        assert result.method is Method.HANDSHAKE and not result.fell_back
        assert result.server is not None and result.server.name == "hostile-mcp"
    assert not RESOURCE_METHODS & set(asked), asked


@pytest.mark.parametrize("era", ERAS)
async def test_health_resource_asks_nothing_of_a_server_without_resources(
    server: ServerFactory, era: str
) -> None:
    transport, args = ERAS[era]
    base = server("tools-only", *args)
    target = Target(base, transport, method=Method.HEALTH_RESOURCE)
    results, asked = await _probe(target, 2)
    assert all(r.outcome is Outcome.RESOURCE_NOT_FOUND for r in results), results
    assert _verdict(results[0]).reasons == ("HealthResourceNotFound",)
    assert not RESOURCE_METHODS & set(asked), asked


@pytest.mark.parametrize("era", ERAS)
async def test_expected_tools_are_read_once_a_session_from_a_server_with_tools(
    server: ServerFactory, era: str
) -> None:
    transport, args = ERAS[era]
    base = server("tools-only", *args)
    present = Target(base, transport, method=Method.AUTO, expect_tools=("echo",))
    results, asked = await _probe(present, 3)
    assert all(r.outcome is Outcome.OK and r.missing_tools == () for r in results)
    assert asked["tools/list"] == 1, asked

    absent = Target(base, transport, method=Method.AUTO, expect_tools=("echo", "search"))
    [result], _ = await _probe(absent, 1)
    assert result.outcome is Outcome.OK and result.missing_tools == ("search",)
    verdict = _verdict(result)
    assert verdict.health is judge.Health.UNHEALTHY
    assert verdict.reasons == ("ExpectedToolsMissing",)
    assert "search" in verdict.message and "echo" not in verdict.message


@pytest.mark.parametrize("era", ERAS)
async def test_expected_tools_of_a_server_without_tools_are_missing_unasked(
    server: ServerFactory, era: str
) -> None:
    # A server with the health resource and no tools capability: the document
    # is read, the tools are missing, and tools/list is never sent.
    transport, args = ERAS[era]
    base = server("resources-only", *args)
    target = Target(base, transport, method=Method.AUTO, expect_tools=("echo",))
    [result], asked = await _probe(target, 1)
    assert result.outcome is Outcome.OK and result.method is Method.HEALTH_RESOURCE
    assert result.document is not None and result.missing_tools == ("echo",)
    assert "tools/list" not in asked
    verdict = _verdict(result)
    assert verdict.health is judge.Health.UNHEALTHY
    assert verdict.reasons == ("ExpectedToolsMissing",)


@pytest.fixture
def stoppable() -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """A server of the test's own, to stop mid-test."""
    port = _procs.free_port()
    proc = subprocess.Popen(
        [sys.executable, str(HOSTILE), "tools-only", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    _procs.wait_for_port("127.0.0.1", port, timeout=30, proc=proc)
    yield proc, f"http://127.0.0.1:{port}"
    _procs.stop(proc)


async def test_a_handshake_probe_of_a_stopped_server_is_unreachable(
    stoppable: tuple[subprocess.Popen[bytes], str],
) -> None:
    proc, base = stoppable
    prober = Prober(Target(base, method=Method.HANDSHAKE), timeout=2.0)
    try:
        first = await prober.probe()
        assert first.outcome is Outcome.OK, first
        _procs.stop(proc)
        second = await prober.probe()
    finally:
        await prober.aclose()
    assert second.outcome is Outcome.UNREACHABLE, second
    assert _verdict(second).reasons == ("TargetUnreachable",)


@pytest.mark.parametrize("era", ["modern", "legacy"])
async def test_a_2026_session_is_made_without_the_sdks_client(
    server: ServerFactory, era: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The SDK's client costs ~5 ms of CPU a session; a 2026 server's
    # server/discover and listings are plain requests. A handshake-era server
    # still gets the SDK's negotiation, once.
    made: list[Session] = []
    new_client = Session._new_client

    def counted(self: Session) -> Client:
        made.append(self)
        return new_client(self)

    monkeypatch.setattr(Session, "_new_client", counted)
    transport, args = ERAS[era]
    base = server("mcp", *args, "--behaviour", "ok")
    results, asked = await _probe(Target(base, transport, method=Method.AUTO), 3)
    for result in results:
        assert result.outcome is Outcome.OK and result.document is not None, result
        assert result.method is Method.HEALTH_RESOURCE
        assert result.server is not None and result.server.name == "hostile-mcp"
    assert asked["resources/list"] == 1 and asked["resources/read"] == 3, asked
    if era == "modern":
        assert made == [], "no SDK client for a 2026 server"
        assert asked["server/discover"] == 1 and "initialize" not in asked, asked
        assert results[0].server is not None
        assert results[0].server.protocol_version in MODERN_PROTOCOL_VERSIONS
    else:
        assert len(made) == 1 and asked["initialize"] == 1, asked
        # Its refusal of the plain server/discover, then the SDK's own.
        assert asked["server/discover"] <= 2, asked
