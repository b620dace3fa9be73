"""Parsing the guide's HealthCheckResponse: the example parses, bad documents are named."""

from __future__ import annotations

import json

import pytest

from mcp_health_operator.core import health

# The guide's example response, verbatim.
SEED_EXAMPLE = """{
  "status": "healthy",
  "timestamp": "2025-10-13T10:30:45.123Z",
  "database_status": "connected",
  "uptime_seconds": 3672.5,
  "connection_pool": {
    "total_connections": 10,
    "active_connections": 3,
    "idle_connections": 7,
    "waiting_requests": 0,
    "pool_utilization": 0.3
  },
  "checks": {
    "database": {"status": "pass", "latency_ms": 12.5, "message": "Database responding normally"},
    "memory": {"status": "pass", "usage_mb": 245, "limit_mb": 2048, "percentage": 11.9},
    "disk": {"status": "pass", "free_gb": 125.3, "percentage_used": 45.2}
  },
  "metadata": {"version": "2.0.0", "environment": "production", "region": "us-west-2"}
}"""


def test_seed_example_parses_with_every_figure() -> None:
    doc = health.parse(SEED_EXAMPLE)
    assert doc.status == "healthy"
    assert doc.database_status == "connected"
    assert doc.uptime_seconds == 3672.5
    assert doc.timestamp is not None and doc.timestamp.year == 2025
    assert doc.connection_pool is not None
    assert doc.connection_pool.total_connections == 10
    assert doc.connection_pool.active_connections == 3
    assert doc.connection_pool.idle_connections == 7
    assert doc.connection_pool.pool_utilization == 0.3
    assert doc.database_latency_ms() == 12.5
    assert doc.memory_fraction() == pytest.approx(0.119)
    # Figures the model does not name are kept (lenient where the guide leaves room).
    assert doc.checks["disk"].model_extra == {"free_gb": 125.3, "percentage_used": 45.2}
    assert doc.metadata["region"] == "us-west-2"


def test_memory_fraction_falls_back_to_usage_over_limit() -> None:
    raw = json.loads(SEED_EXAMPLE)
    del raw["checks"]["memory"]["percentage"]
    doc = health.from_object(raw)
    assert doc.memory_fraction() == pytest.approx(245 / 2048)


def test_minimal_document_without_database_is_valid() -> None:
    doc = health.parse('{"status": "degraded"}')
    assert doc.status == "degraded"
    assert doc.connection_pool is None and doc.database_status is None
    assert doc.database_latency_ms() is None and doc.memory_fraction() is None


def _seed_with(path: str, value: object) -> str:
    raw = json.loads(SEED_EXAMPLE)
    node = raw
    keys = path.split(".")
    for key in keys[:-1]:
        node = node[key]
    if value is _DELETE:
        del node[keys[-1]]
    else:
        node[keys[-1]] = value
    return json.dumps(raw)


_DELETE = object()

BAD_DOCUMENTS = {
    "not json": ("{status: healthy", "not JSON"),
    "empty": ("", "not JSON"),
    "json array": ("[1, 2]", "must be a JSON object, got list"),
    "json string": ('"healthy"', "must be a JSON object, got str"),
    "missing status": (_seed_with("status", _DELETE), "status: Field required"),
    "unknown status": (_seed_with("status", "fine"), "status: Input should be 'healthy'"),
    "status wrong type": (_seed_with("status", 1), "status: Input should be 'healthy'"),
    "status upper case": (_seed_with("status", "HEALTHY"), "status: Input should be"),
    "unknown database status": (_seed_with("database_status", "up"), "database_status:"),
    "pool utilization above 1": (
        _seed_with("connection_pool.pool_utilization", 1.5),
        "connection_pool.pool_utilization: Input should be less",
    ),
    "pool utilization negative": (
        _seed_with("connection_pool.pool_utilization", -0.1),
        "connection_pool.pool_utilization: Input should be greater",
    ),
    "pool utilization a string": (
        _seed_with("connection_pool.pool_utilization", "high"),
        "connection_pool.pool_utilization:",
    ),
    "negative connections": (
        _seed_with("connection_pool.active_connections", -3),
        "connection_pool.active_connections:",
    ),
    "pool missing a count": (
        _seed_with("connection_pool.total_connections", _DELETE),
        "connection_pool.total_connections: Field required",
    ),
    "check status unknown": (_seed_with("checks.database.status", "ok"), "checks.database.status:"),
    "latency NaN": (
        _seed_with("checks.database.latency_ms", float("nan")),
        "checks.database.latency_ms:",
    ),
    "uptime infinite": (_seed_with("uptime_seconds", float("inf")), "uptime_seconds:"),
    "checks not an object": (_seed_with("checks", ["database"]), "checks:"),
    "deep nesting": ("[" * 100_000 + "]" * 100_000, "not JSON"),
}


@pytest.mark.parametrize(("payload", "expected"), BAD_DOCUMENTS.values(), ids=BAD_DOCUMENTS.keys())
def test_bad_documents_raise_a_document_error_naming_the_problem(
    payload: str, expected: str
) -> None:
    with pytest.raises(health.DocumentError) as caught:
        health.parse(payload)
    assert expected in str(caught.value)


def test_huge_payload_is_refused_by_size_before_parsing() -> None:
    payload = '{"status": "healthy", "metadata": {"pad": "' + "x" * (2 << 20) + '"}}'
    with pytest.raises(health.DocumentError, match="over the 1048576-byte limit"):
        health.parse(payload)


def test_invalid_utf8_bytes_are_not_json() -> None:
    with pytest.raises(health.DocumentError, match="not JSON"):
        health.parse(b'{"status": "\xff\xfe"}')


def test_error_message_is_printable_and_bounded() -> None:
    payload = _seed_with("status", "\x1b[31m" + "y" * 5000)
    with pytest.raises(health.DocumentError) as caught:
        health.parse(payload)
    message = str(caught.value)
    assert len(message) <= 300
    assert message.isprintable()
