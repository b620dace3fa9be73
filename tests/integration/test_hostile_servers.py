"""The probe against hostile servers, each a real process (``tests/servers/hostile.py``).

Every hostile case runs on each transport it applies to: MCP over Streamable
HTTP (as the 2026 protocol answers, in JSON, and as a handshake-era server
answers, in server-sent events), MCP over SSE, and a plain ``GET``. What is
held: the probe never hangs past its timeout, never reads an unbounded body
into memory, and every failure has the outcome (and through the judge, the
reason and verdict) that says what happened.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import pytest

from mcp_health_operator.core import health, judge
from mcp_health_operator.core.targets import Target, Transport
from mcp_health_operator.probing.probe import Outcome, Prober, ProbeResult
from mcp_health_testbed.postgres import Postgres
from tests.conftest import SampleFactory
from tests.integration.conftest import ServerFactory

STREAMABLE, SSE, HTTP = Transport.STREAMABLE_HTTP, Transport.SSE, Transport.HTTP
TRANSPORTS = [STREAMABLE, SSE, HTTP]
MiB = 1 << 20


# How each transport meets an MCP server with a given behaviour: (transport,
# the server's arguments). "streamable-json" is the 2026 protocol (the SDK
# answers each request with JSON); "streamable-sse" a handshake-era server
# (server/discover refused) answering in server-sent events; "http" the
# plain GET of /health/status beside the MCP endpoint.
VARIANTS: dict[str, tuple[Transport, tuple[str, ...]]] = {
    "streamable-json": (STREAMABLE, ()),
    "streamable-sse": (STREAMABLE, ("--legacy",)),
    "sse": (SSE, ("--transport", "sse")),
    "http": (HTTP, ()),
}


def _mcp(server: ServerFactory, variant: str, behaviour: str, *extra: str) -> Target:
    transport, args = VARIANTS[variant]
    return Target(server("mcp", *args, "--behaviour", behaviour, *extra), transport)


async def _probes(target: Target, count: int, *, timeout: float) -> list[tuple[ProbeResult, float]]:
    """``count`` probes on one Prober; each with its wall-clock duration in seconds."""
    prober = Prober(target, timeout=timeout)
    results = []
    try:
        for _ in range(count):
            started = time.perf_counter()
            result = await prober.probe()
            results.append((result, time.perf_counter() - started))
    finally:
        await prober.aclose()
    return results


def _verdict(result: ProbeResult, history: judge.History | None = None) -> judge.Verdict:
    obs = judge.Observation(
        result.outcome.value, result.latency_ms, result.document, result.message
    )
    return judge.judge(obs, judge.Thresholds(), history or judge.History(), failure_threshold=3)


# -- the harness itself ----------------------------------------------------------


@pytest.mark.parametrize("variant", VARIANTS)
async def test_the_hostile_mcp_server_answers_well_when_told_to(
    server: ServerFactory, variant: str
) -> None:
    # So that every failure below comes from the behaviour, not the harness.
    [(result, _)] = await _probes(_mcp(server, variant, "ok"), 1, timeout=5.0)
    assert result.outcome is Outcome.OK, result
    assert result.document is not None and result.document.status == "healthy"


# -- hanging servers: the probe ends at its timeout --------------------------------

TIMEOUT = 1.0
# The bound: a probe against a server that never finishes ends
# within its timeout plus 10%.
BOUND = TIMEOUT * 1.10


@pytest.mark.parametrize("transport", TRANSPORTS, ids=str)
async def test_tarpit_probes_end_within_timeout_plus_10_percent(
    server: ServerFactory, transport: Transport
) -> None:
    results = await _probes(Target(server("tarpit"), transport), 4, timeout=TIMEOUT)
    took = [round(wall, 3) for _, wall in results]
    print(f"tarpit {transport}: probe wall times {took} s (timeout {TIMEOUT} s)")
    for result, wall in results:
        assert result.outcome is Outcome.TIMEOUT, result
        assert result.message == f"no answer within {TIMEOUT:g}s"
        assert TIMEOUT <= wall <= BOUND, took
        assert result.latency_ms <= BOUND * 1000
        verdict = _verdict(result)
        assert verdict.reasons == ("ProbeTimeout",)


@pytest.mark.parametrize("transport", TRANSPORTS, ids=str)
async def test_a_response_dripped_a_byte_every_200ms_ends_at_the_timeout(
    server: ServerFactory, transport: Transport
) -> None:
    # A complete, valid HTTP response, one byte every 0.2 s: each byte resets
    # any read timeout, so only the probe's own deadline ends it.
    results = await _probes(
        Target(server("drip", "--interval", "0.2"), transport), 2, timeout=TIMEOUT
    )
    took = [round(wall, 3) for _, wall in results]
    print(f"drip {transport}: probe wall times {took} s")
    for result, wall in results:
        assert result.outcome is Outcome.TIMEOUT, result
        assert TIMEOUT <= wall <= BOUND, took


@pytest.mark.parametrize("variant", VARIANTS)
async def test_a_health_answer_dripped_after_the_handshake_ends_at_the_timeout(
    server: ServerFactory, variant: str
) -> None:
    # The handshake is quick; only the resources/read answer drips.
    target = _mcp(server, variant, "drip", "--interval", "0.2")
    results = await _probes(target, 2, timeout=TIMEOUT)
    took = [round(wall, 3) for _, wall in results]
    for result, wall in results:
        assert result.outcome is Outcome.TIMEOUT, result
        assert TIMEOUT <= wall <= BOUND, took


# -- enormous bodies: read up to a bound, never whole --------------------------------


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/self/status")


def _reset_peak_rss() -> str:
    """Reset the process's peak RSS (VmHWM) if the kernel allows; the field to read after."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return "VmRSS"  # then only the growth that stays is seen
    return "VmHWM"


# The limits the probe reads up to with its default max_bytes (1 MiB): a
# plain GET stops past max_bytes; SDK transports past 2 * max_bytes + 64 KiB
# per body, or per server-sent event (1 MiB on the SSE transport, whose SDK
# client keeps httpx2's own event limit).
WIRE = 2 * health.DEFAULT_MAX_BYTES + 64 * 1024
LIMIT_NAMED = {
    "streamable-json": f"response body exceeds the {WIRE}-byte read limit",
    "streamable-sse": f"server-sent event exceeds the {WIRE}-byte read limit",
    "streamable-sse-json": f"response body exceeds the {WIRE}-byte read limit",
    "sse": f"server-sent event exceeds the {MiB}-byte read limit",
    "http": f"health document exceeds the {health.DEFAULT_MAX_BYTES}-byte limit",
}


@pytest.mark.parametrize("behaviour", ["huge", "endless"])
@pytest.mark.parametrize("variant", LIMIT_NAMED)
async def test_a_50_mib_or_endless_body_is_cut_at_the_limit_without_growing_memory(
    server: ServerFactory, variant: str, behaviour: str
) -> None:
    if variant == "streamable-sse-json":  # handshake era, answering in JSON
        target = _mcp(server, "streamable-sse", behaviour, "--size-mb", "50", "--json-response")
    else:
        target = _mcp(server, variant, behaviour, "--size-mb", "50")
    field = _reset_peak_rss()
    before = _status_kib(field)
    results = await _probes(target, 2, timeout=10.0)
    grown_mib = (_status_kib(field) - before) / 1024
    took = [round(wall, 3) for _, wall in results]
    print(f"{behaviour} body over {variant}: {took} s, {field} grew {grown_mib:.1f} MiB")
    for result, wall in results:
        assert result.outcome is Outcome.INVALID_DOCUMENT, result
        assert LIMIT_NAMED[variant] in result.message
        assert wall < 3.0, took  # at once, not at the 10 s timeout
        verdict = _verdict(result)
        assert verdict.reasons == ("InvalidHealthDocument",)
        assert verdict.instant is judge.Health.UNHEALTHY
    # The body is 50 MiB (or endless); reading it whole costs 50 MiB at the
    # very least (measured before the limit: +400 MiB peak on Streamable HTTP).
    assert grown_mib < 20, grown_mib


@pytest.mark.parametrize("transport", TRANSPORTS, ids=str)
async def test_a_gzip_bomb_is_refused_before_decoding(
    server: ServerFactory, transport: Transport
) -> None:
    # ~50 KiB on the wire, 50 MiB decoded, sent though the probe asks for
    # identity (measured before: 8 s and +720 MiB peak per Streamable HTTP probe).
    field = _reset_peak_rss()
    before = _status_kib(field)
    results = await _probes(Target(server("bomb", "--size-mb", "50"), transport), 2, timeout=10.0)
    grown_mib = (_status_kib(field) - before) / 1024
    print(f"gzip bomb over {transport}: {field} grew {grown_mib:.1f} MiB")
    for result, wall in results:
        assert result.outcome is Outcome.PROTOCOL_ERROR, result
        assert "gzip-encoded" in result.message
        assert wall < 3.0
    assert grown_mib < 20, grown_mib


# -- connections dropped mid-answer --------------------------------------------------


@pytest.mark.parametrize("variant", VARIANTS)
async def test_a_connection_dropped_mid_answer_is_a_lost_connection(
    server: ServerFactory, variant: str
) -> None:
    results = await _probes(_mcp(server, variant, "cut"), 2, timeout=5.0)
    for result, wall in results:
        assert result.outcome is Outcome.UNREACHABLE, result
        if variant == "http":
            assert "peer closed connection without sending complete message body" in (
                result.message
            )
        else:
            assert result.message == "connection to the server was lost"
        assert wall < 2.0  # the drop is seen at once, not at the timeout
        assert _verdict(result).reasons == ("TargetUnreachable",)


# -- refusals: 401/403 and 429 -------------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS, ids=str)
@pytest.mark.parametrize("code", [401, 403])
async def test_refused_credentials_are_degraded_never_unhealthy(
    server: ServerFactory, transport: Transport, code: int
) -> None:
    results = await _probes(Target(server("status", "--code", str(code)), transport), 5, timeout=5)
    history = judge.History(judge.Health.HEALTHY, 0, 10)
    for result, _ in results:
        assert result.outcome is Outcome.UNAUTHORIZED, result
        assert result.http_status == code
        assert f"HTTP {code}" in result.message
        verdict = _verdict(result, history)
        # Past failureThreshold (3) and still Degraded: our credentials, not
        # the server, are the problem, and nothing counts toward a restart.
        assert verdict.reasons == ("Unauthorized",)
        assert verdict.health is judge.Health.DEGRADED
        assert verdict.consecutive_failures == 0
        history = verdict.history()
    # Even from Unknown (a monitor's first probes) it never turns Unhealthy.
    assert _verdict(results[0][0]).health is judge.Health.DEGRADED


@pytest.mark.parametrize("transport", TRANSPORTS, ids=str)
@pytest.mark.parametrize("retry_after", ["7", "http-date"])
async def test_rate_limiting_is_neutral_and_its_retry_after_is_read(
    server: ServerFactory, transport: Transport, retry_after: str
) -> None:
    if retry_after == "http-date":
        # Another spelling RFC 9110 allows: an HTTP-date 30 s ahead.
        when = datetime.now(UTC) + timedelta(seconds=30)
        header, expected = format_datetime(when, usegmt=True), (25.0, 30.0)
    else:
        header, expected = retry_after, (7.0, 7.0)
    url = server("status", "--code", "429", "--retry-after", header)
    results = await _probes(Target(url, transport), 4, timeout=5)
    for history in (
        judge.History(judge.Health.HEALTHY, 0, 5),
        judge.History(judge.Health.DEGRADED, 0, 5),
        judge.History(judge.Health.UNHEALTHY, 3, 0),
    ):
        for result, _ in results:
            assert result.outcome is Outcome.RATE_LIMITED, result
            assert result.http_status == 429
            assert result.retry_after_s is not None
            assert expected[0] <= result.retry_after_s <= expected[1], result.retry_after_s
            verdict = _verdict(result, history)
            # Not counted as down (nor as up): the verdict and counters hold.
            assert verdict.reasons == ("RateLimited",)
            assert verdict.reachable
            assert verdict.history() == history


# -- servers without the health resource ---------------------------------------------


@pytest.mark.parametrize("variant", VARIANTS)
async def test_a_server_without_the_health_resource_is_health_resource_not_found(
    server: ServerFactory, variant: str
) -> None:
    results = await _probes(_mcp(server, variant, "missing"), 3, timeout=5.0)
    history = judge.History()
    for result, _ in results:
        assert result.outcome is Outcome.RESOURCE_NOT_FOUND, result
        if variant == "http":
            assert result.message == "GET /health/status answered 404"
        else:
            assert "health://status" in result.message
        verdict = _verdict(result, history)
        assert verdict.reasons == ("HealthResourceNotFound",)
        history = verdict.history()
    assert history.health is judge.Health.UNHEALTHY  # after failureThreshold (3)


@pytest.mark.parametrize("transport", TRANSPORTS, ids=str)
async def test_an_mcp_server_without_the_resources_capability(
    server: ServerFactory, transport: Transport
) -> None:
    # A low-level SDK Server with a tool and nothing else.
    args = ("--transport", "sse") if transport is SSE else ()
    [(result, _)] = await _probes(Target(server("tools-only", *args), transport), 1, timeout=5)
    assert result.outcome is Outcome.RESOURCE_NOT_FOUND, result
    if transport is HTTP:
        assert result.message == "GET /health/status answered 404"
    else:
        assert "does not serve resources" in result.message
        assert result.server is not None and result.server.name == "tools-only"
    assert _verdict(result).reasons == ("HealthResourceNotFound",)


# -- the SSE transport at what is not an SSE endpoint ---------------------------------

# A misconfiguration, not an outage: the server answered, so the probe says
# what it answered and what to fix, and it is no TargetUnreachable.
NOT_AN_EVENT_STREAM = {
    # What answers the SSE GET with 200: (hostile.py's arguments, the answer
    # the message names, the fix it suggests).
    "json": (
        ("sse-get", "--answer", "json"),
        "HTTP 200 application/json",
        "set transport: streamable-http",
    ),
    "text": (("sse-get", "--answer", "text"), "HTTP 200 text/plain", "the server's SSE endpoint"),
}


@pytest.mark.parametrize("answer", NOT_AN_EVENT_STREAM)
async def test_an_sse_get_answered_200_without_an_event_stream_is_a_protocol_error(
    server: ServerFactory, answer: str
) -> None:
    args, received, fix = NOT_AN_EVENT_STREAM[answer]
    results = await _probes(Target(server(*args), SSE), 3, timeout=TIMEOUT)
    for result, wall in results:
        assert result.outcome is Outcome.PROTOCOL_ERROR, result
        assert f"SSE endpoint answered {received}, not text/event-stream" in result.message
        assert fix in result.message, result.message
        assert result.http_status == 200
        assert wall < TIMEOUT  # at once: the answer's headers say it all
        assert _verdict(result).reasons == ("ProtocolError",)


async def test_the_sse_transport_at_a_streamable_http_endpoint_says_to_switch(
    sample_server: SampleFactory, pg: Postgres
) -> None:
    # The sample server's real Streamable HTTP endpoint answers the SSE GET
    # with 400 and a JSON-RPC error (no session id): set the transport.
    sample = sample_server("codebase-mcp", dsn=pg.dsn)
    results = await _probes(Target(sample.base_url + "/mcp", SSE), 3, timeout=5.0)
    for result, _ in results:
        assert result.outcome is Outcome.PROTOCOL_ERROR, result
        assert result.message == (
            "SSE endpoint answered HTTP 400 application/json, not text/event-stream:"
            " is this a streamable-HTTP endpoint? set transport: streamable-http"
        )
        assert result.http_status == 400
    # And the same server read as it should be.
    [(right, _)] = await _probes(Target(sample.base_url + "/mcp", STREAMABLE), 1, timeout=5.0)
    assert right.outcome is Outcome.OK, right


@pytest.mark.parametrize("answer", ["silent", "drip"])
async def test_an_event_stream_without_an_endpoint_event_in_time_is_a_timeout(
    server: ServerFactory, answer: str
) -> None:
    # 200 text/event-stream, then nothing, or the endpoint event one byte
    # every 0.2 s (~10 s): only the probe's deadline ends it.
    target = Target(server("sse-get", "--answer", answer, "--interval", "0.2"), SSE)
    results = await _probes(target, 2, timeout=TIMEOUT)
    took = [round(wall, 3) for _, wall in results]
    for result, wall in results:
        assert result.outcome is Outcome.TIMEOUT, result
        assert result.message == f"no answer within {TIMEOUT:g}s"
        assert TIMEOUT <= wall <= BOUND, took
        assert _verdict(result).reasons == ("ProbeTimeout",)


def _tracebacks(records: list[logging.LogRecord]) -> list[str]:
    return [
        f"{r.levelname} {r.name}: {r.getMessage()}"
        for r in records
        if r.exc_info is not None or r.exc_text or r.levelno >= logging.WARNING
    ]


async def test_twenty_probes_of_a_misconfigured_sse_target_log_no_traceback(
    server: ServerFactory, caplog: pytest.LogCaptureFixture
) -> None:
    # A monitor probes every few seconds: a traceback per probe from the SDK
    # would be hundreds of ERROR lines a minute saying what the result says.
    caplog.set_level(logging.DEBUG)
    results = await _probes(Target(server("sse-get", "--answer", "json"), SSE), 20, timeout=5.0)
    assert {result.outcome for result, _ in results} == {Outcome.PROTOCOL_ERROR}
    assert _tracebacks(caplog.records) == []


@pytest.mark.parametrize(
    ("args", "outcome"),
    [
        # The SDK's SSE reader logs "Error in sse_reader" with a traceback for
        # a dropped connection and for a body the probe refused.
        (("mcp", "--transport", "sse", "--behaviour", "cut"), Outcome.UNREACHABLE),
        (("bomb", "--size-mb", "5"), Outcome.PROTOCOL_ERROR),
    ],
    ids=["cut", "bomb"],
)
async def test_sse_session_failures_are_one_debug_line_not_a_traceback(
    server: ServerFactory,
    caplog: pytest.LogCaptureFixture,
    args: tuple[str, ...],
    outcome: Outcome,
) -> None:
    caplog.set_level(logging.DEBUG)
    results = await _probes(Target(server(*args), SSE), 5, timeout=5.0)
    assert {result.outcome for result, _ in results} == {outcome}
    assert _tracebacks(caplog.records) == []
    # What the SDK said is still there for whoever debugs, on one line.
    said = [
        r for r in caplog.records if r.name == "mcp.client.sse" and "Error in" in r.getMessage()
    ]
    assert said, [r.getMessage() for r in caplog.records if r.name.startswith("mcp")]
    assert all(r.levelno == logging.DEBUG for r in said)
