"""Bad health documents, generated: the parser and the judge never fail on any of them.

Hypothesis generates over 10,000 payloads per run (each test checks its own
count): valid documents, documents with fields of the wrong type, missing
or extra fields, NaN and infinities (as JSON literals and as strings),
negative counts, utilization above 1, enormous strings, deep nesting, lone
UTF-16 surrogates, invalid UTF-8 and bytes that are not JSON at all; and,
end to end through a ``Prober`` (plain HTTP over an in-process transport,
no network), whatever a server may send with them.

What holds for every one:
  * ``health.parse`` returns a document or raises ``DocumentError``, nothing
    else, with a short printable message (naming the field when one is wrong);
  * the judge turns either into a verdict: an invalid document always gives
    ``InvalidHealthDocument`` with that message; a valid one a verdict whose
    every non-Healthy result has a reason;
  * every string of a parsed document can be written as UTF-8;
  * a probe returns a ``ProbeResult`` (never raises) whose outcome says what
    the server did.
"""

from __future__ import annotations

import asyncio
import copy
import json
import math
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mcp_health_operator.core import health, judge
from mcp_health_operator.core.targets import Target, Transport
from mcp_health_operator.probing.probe import Outcome, Prober, ProbeResult

# -- budget ----------------------------------------------------------------------------

# Examples per test; they add up to more than the 10,000.
EXAMPLES = {
    "valid": 400,
    "documents": 3000,
    "fields": 3000,
    "bytes": 2500,
    "huge": 300,
    "prober": 1200,
}
assert sum(EXAMPLES.values()) >= 10_000


def _settings(name: str) -> settings:
    return settings(
        max_examples=EXAMPLES[name],
        deadline=None,  # a loaded CI machine is not a failure
        database=None,  # nothing written into the work tree
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.filter_too_much,
        ],
    )


class Counter:
    def __init__(self) -> None:
        self.n = 0


def _run(name: str, prop: Callable[[Counter], None]) -> None:
    """Run a property and check that it really tried its budget of examples."""
    counter = Counter()
    prop(counter)
    assert counter.n >= EXAMPLES[name], (name, counter.n)


# -- what must hold --------------------------------------------------------------------

THRESHOLDS = judge.Thresholds()


def _all_strings(root: object) -> Iterator[str]:
    """Every string in a JSON-like value, keys too (iterative: documents nest deep)."""
    pending = [root]
    while pending:
        value = pending.pop()
        if isinstance(value, str):
            yield value
        elif isinstance(value, dict):
            pending += value.keys()
            pending += value.values()
        elif isinstance(value, list | tuple):
            pending += value


def _document_strings(doc: health.HealthCheckResponse) -> Iterator[str]:
    """Every string a parsed document holds (not through model_dump: it recurses)."""
    yield doc.status
    yield doc.database_status or ""
    yield from _all_strings(doc.metadata)
    yield from _all_strings(doc.model_extra or {})
    for name, check in doc.checks.items():
        yield name
        yield check.message or ""
        yield from _all_strings(check.model_extra or {})


def check_invalid(message: str) -> judge.Verdict:
    """What an invalid document must come to: a short message, and the judge's reason."""
    assert message, "a DocumentError must say what is wrong"
    assert len(message) <= 300 and message.isprintable(), message
    verdict = judge.judge(
        judge.Observation("InvalidDocument", 4.2, None, message), THRESHOLDS, judge.History()
    )
    assert verdict.reasons == ("InvalidHealthDocument",)
    assert verdict.message == message
    assert verdict.instant is judge.Health.UNHEALTHY
    assert verdict.consecutive_failures == 1
    assert not verdict.reachable
    return verdict


def check_valid(doc: health.HealthCheckResponse) -> judge.Verdict:
    """What a valid document must come to: writable strings, a verdict with its reasons."""
    for text in _document_strings(doc):
        text.encode("utf-8")  # a lone surrogate here would break every writer
    verdict = judge.judge(
        judge.Observation("Ok", 4.2, doc), THRESHOLDS, judge.History(), failure_threshold=1
    )
    assert verdict.health is verdict.instant  # thresholds of 1: this probe decides
    if verdict.health is not judge.Health.HEALTHY or doc.status != "healthy":
        assert verdict.reasons, doc
    if doc.status == "unhealthy":
        assert "ServerReportedUnhealthy" in verdict.reasons
        assert verdict.health is judge.Health.UNHEALTHY
    verdict.message.encode("utf-8")
    pool = doc.connection_pool
    if pool is not None:
        assert 0.0 <= pool.pool_utilization <= 1.0
        assert min(pool.total_connections, pool.active_connections, pool.idle_connections) >= 0
    for check in doc.checks.values():
        for figure in (check.latency_ms, check.usage_mb, check.limit_mb, check.percentage):
            assert figure is None or (math.isfinite(figure) and figure >= 0)
    return verdict


def check_payload(payload: str | bytes) -> health.HealthCheckResponse | None:
    """Parse and judge; anything but a document or a DocumentError fails the test."""
    try:
        doc = health.parse(payload)
    except health.DocumentError as exc:
        check_invalid(str(exc))
        return None
    check_valid(doc)
    return doc


# -- strategies ------------------------------------------------------------------------

STATUSES = ["healthy", "degraded", "unhealthy"]
DB_STATUSES = ["connected", "disconnected", "degraded"]
CHECK_STATUSES = ["pass", "warn", "fail"]
COUNTS = ["total_connections", "active_connections", "idle_connections", "waiting_requests"]

finite = st.floats(min_value=0, max_value=1e12, allow_nan=False, allow_infinity=False)
# Short texts, from an alphabet with the troublemakers in it (quotes,
# backslashes, control characters, non-BMP, lone surrogates): generating text
# costs a draw per character, so strings stay short here; enormous ones are
# built below without drawing each character.
troublesome = st.characters() | st.sampled_from(
    ['"', "\\", "\x00", "\n", "\u2028", "\U0001f600", "\ud800", "\udfff"]
)
short_text = st.text(alphabet=troublesome, max_size=6)
names = st.text(alphabet=troublesome, min_size=1, max_size=6)
# Strings a careless server might put where a number belongs.
number_strings = st.sampled_from(
    ["NaN", "nan", "Infinity", "-Infinity", "inf", "-inf", "1e309", "-1", "0x10", "", " 1 ", "½"]
)
json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    short_text,
    number_strings,
)
# Two levels at most (st.recursive costs four times as much per example);
# deep nesting has its own strategy below.
json_values = st.one_of(
    json_scalars,
    st.lists(json_scalars, max_size=3),
    st.dictionaries(short_text, json_scalars, max_size=2),
)
MESSAGES = st.sampled_from(["ok", "", "Database responding normally", "timeout after 5s"])
TIMESTAMPS = st.sampled_from(
    ["2025-10-13T10:30:45.123Z", "2026-01-01T00:00:00+02:00", 1760000000, "2025-10-13"]
)


@st.composite
def valid_documents(draw: st.DrawFn) -> dict[str, Any]:
    """A document that must parse; which optional blocks it has is one draw."""
    shape = draw(st.integers(0, 255))
    doc: dict[str, Any] = {"status": draw(st.sampled_from(STATUSES))}
    if shape & 1:
        doc["database_status"] = draw(st.sampled_from(DB_STATUSES))
    if shape & 2:
        doc["uptime_seconds"] = draw(finite)
    if shape & 4:
        doc["timestamp"] = draw(TIMESTAMPS)
    if shape & 8:
        total, active, idle, waiting = draw(
            st.lists(st.integers(0, 10_000), min_size=4, max_size=4)
        )
        doc["connection_pool"] = {
            "total_connections": total,
            "active_connections": active,
            "idle_connections": idle,
            "waiting_requests": waiting,
            "pool_utilization": draw(st.floats(0, 1)),
        }
    if shape & 16:
        doc["checks"] = {}
    if shape & 32:
        check: dict[str, Any] = {"status": draw(st.sampled_from(CHECK_STATUSES))}
        if shape & 64:
            check["latency_ms"] = draw(finite)
        if shape & 128:
            check["message"] = draw(st.one_of(MESSAGES, short_text))
        doc.setdefault("checks", {})["database"] = check
    if shape & 64:
        memory: dict[str, Any] = {"status": draw(st.sampled_from(CHECK_STATUSES))}
        if shape & 1:
            memory["percentage"] = draw(st.floats(0, 100))
        else:
            memory["usage_mb"], memory["limit_mb"] = draw(st.tuples(finite, finite))
        doc.setdefault("checks", {})["memory"] = memory
    if shape & 128:
        doc.setdefault("checks", {})[draw(names)] = {
            "status": draw(st.sampled_from(CHECK_STATUSES)),
            "extra_figure": draw(json_values),
        }
        doc["metadata"] = {draw(short_text): draw(json_values)}
    return doc


# Where a mutation may land: (path, the field's own strategy of certainly-wrong values).
def _not(values: list[str]) -> st.SearchStrategy[Any]:
    near = [v.upper() for v in values] + [v + " " for v in values] + [v[:-1] for v in values]
    return st.one_of(
        st.sampled_from(near),
        short_text.filter(lambda s: s not in values),
        st.integers(),
        st.floats(),
        st.lists(json_scalars, max_size=2),
        st.dictionaries(short_text, json_scalars, max_size=2),
    )


bad_counts = st.one_of(
    st.integers(max_value=-1),
    st.floats(allow_nan=True, allow_infinity=True).filter(
        lambda f: not math.isfinite(f) or f < 0 or not f.is_integer()
    ),
    number_strings.filter(lambda s: s not in (" 1 ",)),
    st.lists(json_scalars, min_size=1, max_size=2),
    st.dictionaries(names, json_scalars, min_size=1, max_size=2),
)
bad_fractions = st.one_of(
    st.floats(min_value=1, exclude_min=True),
    st.floats(max_value=0, exclude_max=True),
    st.sampled_from([math.nan, math.inf, -math.inf, "NaN", "Infinity", "1.5", "-0.1"]),
    st.lists(json_scalars, max_size=2),
)
bad_figures = st.one_of(
    st.floats(max_value=0, exclude_max=True),
    st.sampled_from([math.nan, math.inf, -math.inf, "NaN", "-Infinity", "inf", "-1"]),
    st.lists(json_scalars, max_size=2),
    st.dictionaries(names, json_scalars, max_size=2),
)
FIELD_MUTATIONS: list[tuple[tuple[str, ...], st.SearchStrategy[Any]]] = [
    (("status",), _not(STATUSES)),
    (("database_status",), _not(DB_STATUSES)),
    (("uptime_seconds",), bad_figures),
    (("timestamp",), st.sampled_from(["yesterday", "2025-13-45T00:00:00Z", math.nan, 1e300])),
    (("connection_pool",), st.one_of(short_text, st.integers(), st.lists(json_scalars))),
    (("checks",), st.one_of(short_text, st.integers(), st.lists(json_scalars, min_size=0))),
    (("metadata",), st.one_of(short_text, st.integers(), st.lists(json_scalars))),
    *[(("connection_pool", k), bad_counts) for k in COUNTS],
    (("connection_pool", "pool_utilization"), bad_fractions),
    (("checks", "database", "status"), _not(CHECK_STATUSES)),
    (("checks", "database", "latency_ms"), bad_figures),
    (("checks", "memory", "usage_mb"), bad_figures),
    (("checks", "memory", "limit_mb"), bad_figures),
    (
        ("checks", "memory", "percentage"),
        st.one_of(st.floats(min_value=100, exclude_min=True), bad_figures),
    ),
    (("checks", "disk"), st.one_of(short_text, st.integers(), st.lists(json_scalars))),
    (("checks", "disk", "message"), st.one_of(st.integers(), st.lists(json_scalars))),
]
REQUIRED = [
    ("status",),
    *[("connection_pool", k) for k in COUNTS if k != "waiting_requests"],
    ("connection_pool", "pool_utilization"),
    ("checks", "database", "status"),
]


def _full_document() -> dict[str, Any]:
    """A valid document with every block, for mutations to land in."""
    return {
        "status": "healthy",
        "database_status": "connected",
        "uptime_seconds": 12.0,
        "timestamp": "2025-10-13T10:30:45.123Z",
        "connection_pool": {
            "total_connections": 10,
            "active_connections": 3,
            "idle_connections": 7,
            "waiting_requests": 0,
            "pool_utilization": 0.3,
        },
        "checks": {
            "database": {"status": "pass", "latency_ms": 1.5, "message": "ok"},
            "memory": {"status": "pass", "usage_mb": 200, "limit_mb": 2048, "percentage": 9.8},
            "disk": {"status": "pass", "message": "ok", "free_gb": 10},
        },
        "metadata": {"version": "1"},
    }


def _set(doc: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    node = doc
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value


def _delete(doc: dict[str, Any], path: tuple[str, ...]) -> None:
    node = doc
    for key in path[:-1]:
        node = node[key]
    del node[path[-1]]


@st.composite
def mutated_documents(draw: st.DrawFn) -> dict[str, Any]:
    """A valid document with one to three things done to it (any may still leave it valid)."""
    start = st.one_of(valid_documents(), st.builds(_full_document))
    doc: dict[str, Any] = copy.deepcopy(draw(start))
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["wrong", "missing", "extra", "junk"]))
        if kind == "wrong":
            path, values = draw(st.sampled_from(FIELD_MUTATIONS))
            if _has_parent(doc, path):
                _set(doc, path, draw(values))
        elif kind == "missing":
            path = draw(st.sampled_from(REQUIRED))
            if _has(doc, path):
                _delete(doc, path)
        elif kind == "extra":
            where = draw(st.sampled_from([(), ("connection_pool",), ("checks", "database")]))
            if _has(doc, where) and isinstance(_get(doc, where), dict):
                _get(doc, where)[draw(names)] = draw(json_values)
        else:
            path, _ = draw(st.sampled_from(FIELD_MUTATIONS))
            if _has_parent(doc, path):
                _set(doc, path, draw(json_values))
    return doc


def _get(doc: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        doc = doc[key]
    return doc


def _has(doc: Any, path: tuple[str, ...]) -> bool:
    for key in path:
        if not isinstance(doc, dict) or key not in doc:
            return False
        doc = doc[key]
    return True


def _has_parent(doc: Any, path: tuple[str, ...]) -> bool:
    return _has(doc, path[:-1]) and isinstance(_get(doc, path[:-1]), dict)


def _encode(doc: object, how: str) -> str | bytes:
    """``doc`` as JSON text: a str, or bytes (a lone surrogate in ``doc`` then is not UTF-8)."""
    text = json.dumps(doc, allow_nan=True, ensure_ascii=how.startswith("ascii"))
    return text.encode("utf-8", "surrogatepass") if how.endswith("bytes") else text


encodings = st.sampled_from(["str", "ascii", "bytes", "ascii-bytes"])


# -- 1. documents of every shape -------------------------------------------------------


def test_any_document_parses_or_is_named_and_always_gets_a_verdict() -> None:
    @_settings("documents")
    @given(
        doc=st.one_of(valid_documents(), mutated_documents(), json_values),
        how=encodings,
    )
    def prop(counter: Counter, doc: object, how: str) -> None:
        counter.n += 1
        check_payload(_encode(doc, how))

    _run("documents", prop)


def test_valid_documents_stay_valid() -> None:
    # The generator of valid documents is what the mutations start from: it
    # must be right, or "invalid" below would prove nothing.
    @_settings("valid")
    @given(doc=valid_documents(), how=st.sampled_from(["str", "ascii", "ascii-bytes"]))
    def prop(counter: Counter, doc: dict[str, Any], how: str) -> None:
        counter.n += 1
        assert check_payload(_encode(doc, how)) is not None

    _run("valid", prop)


# -- 2. one wrong field: rejected, and the message names it ----------------------------


@st.composite
def one_wrong_field(draw: st.DrawFn) -> tuple[dict[str, Any], tuple[str, ...]]:
    doc = _full_document()
    if draw(st.booleans()):
        path, values = draw(st.sampled_from(FIELD_MUTATIONS))
        _set(doc, path, draw(values))
    else:
        path = draw(st.sampled_from(REQUIRED))
        _delete(doc, path)
    return doc, path


def test_one_wrong_field_is_rejected_and_named() -> None:
    @_settings("fields")
    @given(case=one_wrong_field(), how=st.sampled_from(["str", "ascii", "ascii-bytes"]))
    def prop(counter: Counter, case: tuple[dict[str, Any], tuple[str, ...]], how: str) -> None:
        counter.n += 1
        doc, path = case
        with pytest.raises(health.DocumentError) as caught:
            health.parse(_encode(doc, how))
        message = str(caught.value)
        check_invalid(message)
        assert message.startswith(".".join(path)), (path, message)

    _run("fields", prop)


# -- 3. bytes: invalid UTF-8, lone surrogates, NaN literals, truncation, not JSON ------


@st.composite
def hostile_bytes(draw: st.DrawFn) -> bytes:
    kind = draw(
        st.sampled_from(["binary", "bad-utf8", "truncated", "surrogate", "literal", "wrapped"])
    )
    base = json.dumps(draw(st.one_of(valid_documents(), st.just(_full_document())))).encode()
    if kind == "binary":
        return draw(st.binary(max_size=200))
    if kind == "bad-utf8":
        # Stray continuation bytes, truncated sequences, overlongs, encoded surrogates.
        junk = draw(
            st.sampled_from(
                [b"\xff", b"\x80", b"\xc3", b"\xe2\x82", b"\xc0\xaf", b"\xed\xa0\x80", b"\xf8\x88"]
            )
        )
        at = draw(st.integers(0, len(base)))
        return base[:at] + junk + base[at:]
    if kind == "truncated":
        return base[: draw(st.integers(0, max(len(base) - 1, 0)))]
    if kind == "surrogate":
        # A JSON escape of a lone surrogate inside a string, a key or a check message.
        escape = draw(st.sampled_from([b"\\ud800", b"\\udfff", b"\\uDBFF", b"\\ud83d"]))
        doc = _full_document()
        target = draw(st.sampled_from(["message", "name", "metadata"]))
        if target == "message":
            doc["checks"]["database"]["status"] = "fail"
            doc["checks"]["database"]["message"] = "@@"
        elif target == "name":
            doc["checks"]["@@"] = {"status": "warn"}
        else:
            doc["metadata"]["@@"] = "@@"
        return json.dumps(doc).encode().replace(b"@@", escape)
    if kind == "literal":
        # JSON's NaN / Infinity literals (Python's json accepts them) in every figure.
        literal = draw(st.sampled_from([b"NaN", b"Infinity", b"-Infinity", b"1e400", b"-1e400"]))
        path, _ = draw(st.sampled_from(FIELD_MUTATIONS))
        doc = _full_document()
        if _has_parent(doc, path):
            _set(doc, path, "@@NUM@@")
        return json.dumps(doc).encode().replace(b'"@@NUM@@"', literal)
    # A document inside some other JSON value, or after a byte-order mark.
    wrapper = draw(st.sampled_from([b"[%s]", b'{"result": %s}', b"\xef\xbb\xbf%s", b"%s %s"]))
    return wrapper.replace(b"%s", base)


def test_hostile_bytes_parse_or_are_named() -> None:
    @_settings("bytes")
    @given(payload=hostile_bytes(), as_text=st.booleans())
    def prop(counter: Counter, payload: bytes, as_text: bool) -> None:
        counter.n += 1
        check_payload(payload)
        if as_text:
            # The same as a str (what an MCP text resource carries), surrogates and all.
            check_payload(payload.decode("utf-8", "surrogateescape"))

    _run("bytes", prop)


# -- 4. enormous strings and deep nesting ----------------------------------------------


@st.composite
def enormous_or_deep(draw: st.DrawFn) -> str:
    kind = draw(st.sampled_from(["long-string", "many-checks", "deep-array", "deep-metadata"]))
    if kind == "long-string":
        # Up to 2.5 MiB: over the 1 MiB limit is refused before JSON is decoded.
        size = draw(st.integers(0, 5 * health.DEFAULT_MAX_BYTES // 2))
        where = draw(st.sampled_from(["message", "metadata", "status", "name"]))
        doc = _full_document()
        if where == "message":
            doc["checks"]["database"] |= {"status": "fail", "message": "m" * size}
        elif where == "metadata":
            doc["metadata"]["pad"] = "p" * size
        elif where == "status":
            doc["status"] = "h" * size
        else:
            doc["checks"]["n" * max(size, 1)] = {"status": "warn"}
        return json.dumps(doc)
    if kind == "many-checks":
        count = draw(st.integers(0, 5_000))
        doc = _full_document()
        doc["checks"] = {f"c{i}": {"status": "warn", "message": "w"} for i in range(count)}
        return json.dumps(doc)
    depth = draw(st.integers(1, 20_000))
    if kind == "deep-array":
        return "[" * depth + "]" * depth
    inner = '{"a": ' * depth + "1" + "}" * depth
    return '{"status": "degraded", "metadata": ' + inner + "}"


def test_enormous_strings_and_deep_nesting_parse_or_are_named() -> None:
    @_settings("huge")
    @given(payload=enormous_or_deep())
    def prop(counter: Counter, payload: str) -> None:
        counter.n += 1
        doc = check_payload(payload)
        size = len(payload.encode())
        if size > health.DEFAULT_MAX_BYTES:
            assert doc is None  # refused on size alone

    _run("huge", prop)


# -- 5. end to end through a Prober, without a network ---------------------------------


class _Chunks(httpx2.AsyncByteStream):
    def __init__(self, chunks: list[bytes]) -> None:
        self._chunks = chunks

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self._chunks:
            yield chunk


@st.composite
def server_answers(draw: st.DrawFn) -> tuple[int, dict[str, str], list[bytes]]:
    """What a server might answer a GET with: a status, headers and a body in chunks."""
    body = draw(
        st.one_of(
            st.builds(lambda d, h: _as_bytes(_encode(d, h)), mutated_documents(), encodings),
            st.builds(lambda d: json.dumps(d).encode(), valid_documents()),
            hostile_bytes(),
            st.integers(0, 3 * health.DEFAULT_MAX_BYTES).map(
                lambda n: b'{"status": "healthy", "pad": "' + b"x" * n + b'"}'
            ),
        )
    )
    cuts = sorted(draw(st.lists(st.integers(0, len(body)), max_size=4)))
    chunks = [body[a:b] for a, b in zip([0, *cuts], [*cuts, len(body)], strict=True)]
    status = draw(st.sampled_from([200, 200, 200, 200, 401, 403, 404, 429, 500, 503]))
    headers = {"content-type": draw(st.sampled_from(["application/json", "text/plain", ""]))}
    if status == 429 and draw(st.booleans()):
        headers["retry-after"] = draw(
            st.one_of(
                st.sampled_from(["7", "0", "-5", "soon", "Wed, 21 Oct 2015 07:28:00 GMT", "1e9"]),
                st.text(
                    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=20
                ),
            )
        )
    if draw(st.integers(0, 9)) == 0:
        headers["content-encoding"] = draw(st.sampled_from(["gzip", "br", "identity", "x-junk"]))
    return status, headers, chunks


def _as_bytes(payload: str | bytes) -> bytes:
    return payload if isinstance(payload, bytes) else payload.encode("utf-8", "surrogatepass")


EXPECTED_FOR_STATUS = {
    401: Outcome.UNAUTHORIZED,
    403: Outcome.UNAUTHORIZED,
    404: Outcome.RESOURCE_NOT_FOUND,
    429: Outcome.RATE_LIMITED,
    500: Outcome.PROTOCOL_ERROR,
}


def test_a_probe_of_any_answer_is_a_result_with_the_right_outcome() -> None:
    answer: list[tuple[int, dict[str, str], list[bytes]]] = []

    async def handler(request: httpx2.Request) -> httpx2.Response:
        status, headers, chunks = answer[0]
        return httpx2.Response(status, headers=headers, stream=_Chunks(chunks))

    loop = asyncio.new_event_loop()
    prober = Prober(Target("http://health.invalid", Transport.HTTP), timeout=5.0)
    # The probe's own client, on an in-process transport instead of the network
    # (the response hook, which bounds bodies, is the probe's own).
    prober._session.http = httpx2.AsyncClient(
        transport=httpx2.MockTransport(handler),
        headers={"Accept-Encoding": "identity"},
        event_hooks={"response": [prober._session.on_response]},
    )

    @_settings("prober")
    @given(case=server_answers())
    def prop(counter: Counter, case: tuple[int, dict[str, str], list[bytes]]) -> None:
        counter.n += 1
        answer[:] = [case]
        status, headers, chunks = case
        result = loop.run_until_complete(prober.probe())
        assert isinstance(result, ProbeResult)
        body = b"".join(chunks)
        encoded = headers.get("content-encoding", "identity") != "identity"
        if status == 503:
            # A health endpoint's 503 carries its document (readiness that
            # follows health): read like a 200's; without one, no document.
            try:
                health.parse(body)
                readable = not encoded
            except health.DocumentError:
                readable = False
            if readable:
                assert result.outcome is Outcome.OK, result
            else:
                assert result.outcome in (Outcome.PROTOCOL_ERROR, Outcome.INVALID_DOCUMENT)
        elif status in EXPECTED_FOR_STATUS:
            assert result.outcome is EXPECTED_FOR_STATUS[status], result
            assert result.http_status == status
            if status == 429 and result.retry_after_s is not None:
                assert math.isfinite(result.retry_after_s) and result.retry_after_s >= 0
        elif encoded:
            assert result.outcome is Outcome.PROTOCOL_ERROR, result
            assert "encoded" in result.message
        elif len(body) > health.DEFAULT_MAX_BYTES:
            # Stopped by the GET's own bound or, for a chunk too big to pass
            # at once, by the probe's bound on every body.
            assert result.outcome is Outcome.INVALID_DOCUMENT, result
            assert "limit" in result.message and "1048576" in result.message
        else:
            try:
                expected: health.HealthCheckResponse | None = health.parse(body)
            except health.DocumentError:
                expected = None
            if expected is None:
                assert result.outcome is Outcome.INVALID_DOCUMENT, result
            else:
                assert result.outcome is Outcome.OK, result
                assert result.document == expected
        obs = judge.Observation(
            result.outcome.value, result.latency_ms, result.document, result.message
        )
        verdict = judge.judge(obs, THRESHOLDS, judge.History())
        if result.outcome is not Outcome.OK:
            assert verdict.reasons, result
            assert result.message
        else:
            assert result.document is not None
            check_valid(result.document)

    try:
        _run("prober", prop)
    finally:
        loop.run_until_complete(prober.aclose())
        loop.close()
