"""The benchmark's many-targets sample server (``sample_mcp.fleet``), read by the real probe."""

from __future__ import annotations

import json
import urllib.request

import pytest

from mcp_health_operator.core.targets import Target
from mcp_health_operator.probing.probe import Outcome, Prober, ProbeResult
from tests.conftest import FleetFactory


@pytest.fixture
def fleet_server(start_fleet: FleetFactory) -> str:
    """``python -m sample_mcp.fleet`` with targets 0, 1 and 2; its base URL."""
    return start_fleet(3)


def _post(url: str, body: dict[str, object] | None = None) -> dict[str, object]:
    data = json.dumps(body).encode() if body is not None else b""
    request = urllib.request.Request(
        url, data=data, method="POST", headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        return dict(json.loads(response.read()))


def _get(url: str) -> dict[str, object]:
    with urllib.request.urlopen(url, timeout=5) as response:
        return dict(json.loads(response.read()))


async def _read(prober: Prober) -> ProbeResult:
    result = await prober.probe(timeout=5.0)
    assert result.outcome is Outcome.OK, result.message
    assert result.document is not None
    return result


async def test_targets_answer_on_their_own_paths_and_flip_independently(
    fleet_server: str,
) -> None:
    first = Prober(Target(f"{fleet_server}/t/0/mcp"))
    second = Prober(Target(f"{fleet_server}/t/2/mcp"))
    try:
        for prober, tid in ((first, 0), (second, 2)):
            doc = (await _read(prober)).document
            assert doc is not None
            assert doc.status == "healthy"
            assert doc.database_status == "connected"
            assert doc.connection_pool is not None
            assert doc.connection_pool.total_connections == 10
            assert {"database", "memory", "disk"} <= set(doc.checks)
            assert doc.metadata["server"] == f"fleet-target-{tid}"

        flipped = _post(f"{fleet_server}/t/2/flip?status=unhealthy")
        assert flipped["status"] == "unhealthy"

        unhealthy = (await _read(second)).document  # same kept session
        assert unhealthy is not None
        assert unhealthy.status == "unhealthy"
        assert unhealthy.database_status == "disconnected"
        assert unhealthy.checks["database"].status == "fail"
        still = (await _read(first)).document
        assert still is not None
        assert still.status == "healthy"

        # Several targets at once, back to healthy.
        done = _post(f"{fleet_server}/control/flip", {"targets": [2], "status": "healthy"})
        assert done["flipped"] == 1
        recovered = (await _read(second)).document
        assert recovered is not None
        assert recovered.status == "healthy"
    finally:
        await first.aclose()
        await second.aclose()

    # Every read is logged per target, for the benchmark's schedule figures.
    arrivals = _get(f"{fleet_server}/control/arrivals")["arrivals"]
    assert isinstance(arrivals, dict)
    assert len(arrivals["0"]) == 2
    assert len(arrivals["1"]) == 0
    assert len(arrivals["2"]) == 3
    stats = _get(f"{fleet_server}/control/stats")
    assert stats["reads"] == 5
    # Two kept sessions, one after the other, read through the probes' shared
    # keep-alive pool: one connection carries every read.
    assert stats["connections"] == 1


async def test_an_unknown_target_is_not_an_mcp_endpoint(fleet_server: str) -> None:
    prober = Prober(Target(f"{fleet_server}/t/7/mcp"))
    try:
        result = await prober.probe(timeout=5.0)
    finally:
        await prober.aclose()
    assert result.outcome is Outcome.PROTOCOL_ERROR
    assert result.http_status == 404
