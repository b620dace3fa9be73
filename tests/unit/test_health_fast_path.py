"""health.parse reads a document in one pass of pydantic's JSON parser, and falls back
to json.loads and the model (``_parse_text``) for whatever that pass refuses.

The fast path must not change what is accepted, what is read, or how a bad
document is named: whatever pydantic's parser accepts, ``_parse_text`` reads
the same, and ``parse`` answers as ``_parse_text`` alone would, for every
payload generated here (JSON syntax at its edges, numbers, timestamps,
duplicate keys, and the documents of ``test_documents_property``).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mcp_health_operator.core import health
from tests.unit.test_documents_property import (
    _encode,
    _full_document,
    hostile_bytes,
    json_values,
    mutated_documents,
    valid_documents,
)


def _outcome(parse: Any, text: str | bytes) -> health.HealthCheckResponse | str:
    """The document, or the DocumentError's message."""
    try:
        doc: health.HealthCheckResponse = parse(text)
    except health.DocumentError as exc:
        return f"DocumentError: {exc}"
    return doc


def _reference(text: str) -> health.HealthCheckResponse | str:
    """What ``_parse_text`` alone makes of ``text`` (the parse before the fast path)."""
    suspect = health._may_hold_surrogates(text)
    return _outcome(lambda t: health._parse_text(t, suspect=suspect), text)


def _read(doc: health.HealthCheckResponse) -> tuple[Any, ...]:
    """All a document holds: values with their types (repr: NaN too), which fields were set."""
    pool = doc.connection_pool
    return (
        repr(doc),
        doc.model_fields_set,
        pool.model_fields_set if pool is not None else None,
        {name: check.model_fields_set for name, check in doc.checks.items()},
        repr(doc.model_extra),
    )


def _same(a: health.HealthCheckResponse | str, b: health.HealthCheckResponse | str) -> bool:
    if isinstance(a, str) or isinstance(b, str):
        return a == b
    return _read(a) == _read(b)


def check(text: str) -> bool:
    """The fast path agrees with the reference; True if it accepted ``text`` itself."""
    expected = _reference(text)
    assert _same(_outcome(health.parse, text), expected), text[:300]
    if health._may_hold_surrogates(text):
        return False
    try:
        fast = health.HealthCheckResponse.model_validate_json(text)
    except ValueError:
        return False
    assert not isinstance(expected, str), (text[:300], expected)
    assert _read(fast) == _read(expected), text[:300]
    return True


# -- fixed cases: JSON's edges, where two parsers could differ ----------------------------

_DOC = json.dumps(_full_document())
_POOL = '"connection_pool":{"total_connections":%s,"active_connections":1,"idle_connections":1,"pool_utilization":0.1}'  # noqa: E501

EDGES = {
    "control character in a string": '{"status":"healthy","metadata":{"a":"x\x01y"}}',
    "tab in a string": '{"status":"healthy","metadata":{"a":"x\ty"}}',
    "NUL in a key": '{"status":"healthy","metadata":{"\x00":1}}',
    "NaN literal": '{"status":"healthy","metadata":{"a":NaN}}',
    "Infinity literals": '{"status":"healthy","metadata":{"a":Infinity,"b":-Infinity}}',
    "overflowing float": '{"status":"healthy","metadata":{"a":1e400,"b":-1e400}}',
    "overflowing uptime": '{"status":"healthy","uptime_seconds":1e400}',
    "NaN uptime": '{"status":"healthy","uptime_seconds":NaN}',
    "big integer": '{"status":"healthy","metadata":{"a":123456789012345678901234567890}}',
    "huge integer": '{"status":"healthy","metadata":{"a":' + "9" * 5000 + "}}",
    "huge integer as uptime": '{"status":"healthy","uptime_seconds":' + "9" * 400 + "}",
    "huge integer as a count": '{"status":"healthy",' + _POOL % ("9" * 400) + "}",
    "float as a count": '{"status":"healthy",' + _POOL % "1.0" + "}",
    "fraction as a count": '{"status":"healthy",' + _POOL % "1.5" + "}",
    "exponent as a count": '{"status":"healthy",' + _POOL % "1e20" + "}",
    "true as a count": '{"status":"healthy",' + _POOL % "true" + "}",
    "string as a count": '{"status":"healthy",' + _POOL % '"3"' + "}",
    "leading zero": '{"status":"healthy","metadata":{"a":01}}',
    "trailing dot": '{"status":"healthy","metadata":{"a":1.}}',
    "leading dot": '{"status":"healthy","metadata":{"a":.5}}',
    "plus sign": '{"status":"healthy","metadata":{"a":+1}}',
    "negative zeros": '{"status":"healthy","metadata":{"a":-0,"b":-0.0,"c":0e0}}',
    "exact floats": '{"status":"healthy","metadata":{"a":0.30000000000000004,'
    '"b":2.2250738585072011e-308,"c":4.9e-324,"d":1.7976931348623157e308,"e":5e-325}}',
    "long mantissa": '{"status":"healthy","metadata":{"a":1.' + "3" * 500 + "}}",
    "duplicate status": '{"status":"healthy","status":"degraded"}',
    "duplicate status, bad first": '{"status":"bogus","status":"degraded"}',
    "duplicate status, bad last": '{"status":"degraded","status":"bogus"}',
    "duplicate in metadata": '{"status":"healthy","metadata":{"a":1,"a":2}}',
    "duplicate extra field": '{"status":"healthy","x":1,"x":[2]}',
    "duplicate check": '{"status":"healthy","checks":'
    '{"d":{"status":"pass"},"d":{"status":"fail"}}}',
    "duplicate block": '{"status":"healthy","metadata":{"a":1},"metadata":{"b":2}}',
    "form feed as space": '{"status":\x0c"healthy"}',
    "vertical tab as space": '{"status":\x0b"healthy"}',
    "no-break space as space": '{"status":\xa0"healthy"}',
    "line separator as space": '{"status":\u2028"healthy"}',
    "byte-order mark": '\ufeff{"status":"healthy"}',
    "trailing whitespace": '{"status":"healthy"} \n\t\r',
    "trailing junk": '{"status":"healthy"} x',
    "two documents": '{"status":"healthy"}{"status":"healthy"}',
    "invalid escape": '{"status":"healthy","metadata":{"a":"\\a"}}',
    "escaped slash": '{"status":"healthy","metadata":{"a":"\\/"}}',
    "escaped NUL": '{"status":"healthy","metadata":{"a":"\\u0000"}}',
    "upper-case U escape": '{"status":"healthy","metadata":{"a":"\\U0041"}}',
    "escaped key": '{"st\\u0061tus":"healthy"}',
    "escaped surrogate pair": '{"status":"healthy","metadata":{"a":"\\ud83d\\ude00"}}',
    "non-ASCII text": '{"status":"healthy","metadata":{"a":"\u00e9\u4e2d\U0001f600"}}',
    "empty key": '{"status":"healthy","":1}',
    "comment": '{"status":"healthy" /* c */}',
    "single quotes": "{'status':'healthy'}",
    "trailing comma": '{"status":"healthy",}',
    "unquoted key": '{status:"healthy"}',
    "bool uptime": '{"status":"healthy","uptime_seconds":true}',
    "string uptime": '{"status":"healthy","uptime_seconds":"12.5"}',
    "NaN string uptime": '{"status":"healthy","uptime_seconds":"NaN"}',
    "unix timestamp": '{"status":"healthy","timestamp":1760000000}',
    "fractional timestamp": '{"status":"healthy","timestamp":1760000000.5}',
    "date as timestamp": '{"status":"healthy","timestamp":"2025-10-13"}',
    "timestamp string of digits": '{"status":"healthy","timestamp":"1760000000"}',
    "timestamp beyond 9999": '{"status":"healthy","timestamp":1e20}',
    "bool timestamp": '{"status":"healthy","timestamp":true}',
    "number as message": '{"status":"healthy","checks":{"a":{"status":"pass","message":5}}}',
    "list as document": "[1, 2]",
    "string as document": '"healthy"',
    "null as document": "null",
    "empty": "",
    "deep, but not too deep": '{"status":"healthy","metadata":' + "[" * 150 + "]" * 150 + "}",
    "deep": '{"status":"healthy","metadata":' + "[" * 300 + "]" * 300 + "}",
    "the full document": _DOC,
}


@pytest.mark.parametrize("text", EDGES.values(), ids=EDGES.keys())
def test_the_fast_path_reads_json_at_its_edges_as_json_loads_does(text: str) -> None:
    check(text)


def test_the_common_document_takes_the_fast_path() -> None:
    # Else the tests here would prove nothing of it.
    assert check(_DOC)
    assert check(json.dumps(_full_document(), indent=2, ensure_ascii=False))


# -- generated cases ------------------------------------------------------------------

SETTINGS = settings(
    max_examples=600,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# What a careless (or hostile) server might splice into a document.
JUNK = st.sampled_from(
    [chr(c) for c in range(0x20)]
    + ["\x7f", " ", "\xa0", "\ufeff", "\u2028", "NaN", "Infinity", "-", "+", "0", "01", "."]
    + ["e", "E5", "1e400", "-0", '"', "\\", "\\u0041", "\\x", "\\ud800", ",", ":", "}", "]"]
    + ["{", "[", "null", "true", "//", "/*", "'", '"status":"degraded",', '"checks":{},']
)


@st.composite
def spliced(draw: st.DrawFn) -> str:
    """A document's text with junk put in one to three places."""
    doc = draw(st.one_of(valid_documents(), st.builds(_full_document)))
    text = json.dumps(doc, allow_nan=True, indent=draw(st.sampled_from([None, 1])))
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.integers(0, len(text)))
        text = text[:at] + draw(JUNK) + text[at:]
    return text


NUMBERS = st.one_of(
    st.from_regex(r"\A-?(0|[1-9][0-9]{0,25})(\.[0-9]{1,25})?([eE][+-]?[0-9]{1,3})?\Z"),
    st.floats().map(repr),
    st.integers().map(str),
    st.sampled_from(["NaN", "Infinity", "-Infinity", "1e309", "-0", "0e0", "5e-324"]),
)
NUMBER_PLACES = [
    ("uptime_seconds",),
    ("timestamp",),
    ("connection_pool", "total_connections"),
    ("connection_pool", "pool_utilization"),
    ("checks", "database", "latency_ms"),
    ("checks", "memory", "percentage"),
    ("metadata", "version"),
]


@st.composite
def odd_numbers(draw: st.DrawFn) -> str:
    """A document with a number written as JSON (or json.loads) allows it, or not."""
    doc = _full_document()
    path = draw(st.sampled_from(NUMBER_PLACES))
    node = doc
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = "@@"
    return json.dumps(doc).replace('"@@"', draw(NUMBERS))


@st.composite
def odd_timestamps(draw: st.DrawFn) -> str:
    doc = _full_document()
    doc["timestamp"] = draw(
        st.one_of(
            st.from_regex(
                r"\A[0-9]{4}-[0-9]{2}-[0-9]{2}([T ][0-9:.]{0,15})?(Z|[+-][0-9:]{0,5})?\Z"
            ),
            st.text(alphabet="0123456789-:TZ.+ ", max_size=30),
            st.integers(-(10**13), 10**13),
            st.floats(allow_nan=False),
        )
    )
    return json.dumps(doc)


def test_generated_payloads_are_read_the_same_by_either_path() -> None:
    @SETTINGS
    @given(
        text=st.one_of(
            spliced(),
            odd_numbers(),
            odd_timestamps(),
            st.builds(
                _encode,
                st.one_of(valid_documents(), mutated_documents(), json_values),
                st.sampled_from(["str", "ascii"]),
            ),
        )
    )
    def prop(text: str | bytes) -> None:
        assert isinstance(text, str)
        check(text)

    prop()


def test_hostile_bytes_are_read_the_same_by_either_path() -> None:
    @SETTINGS
    @given(payload=hostile_bytes())
    def prop(payload: bytes) -> None:
        try:
            text = payload.decode(json.detect_encoding(payload))
        except UnicodeDecodeError:
            return  # refused before either path, the same for both
        expected = _reference(text)
        assert _same(_outcome(health.parse, payload), expected)

    prop()
