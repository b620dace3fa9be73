"""spec.probe.method end to end: the METHOD column, status.probeMethod, the HealthResource
condition, expectTools, and the API server refusing a method a transport cannot carry."""

from __future__ import annotations

from typing import Any

import pytest

from mcp_health_testbed.postgres import Postgres
from tests.conftest import HostileFactory, SampleFactory
from tests.e2e.conftest import Kubectl, OperatorFactory, monitor, wait_for


def _status(kubectl: Kubectl, name: str) -> dict[str, Any]:
    status: dict[str, Any] = kubectl.json("mcphealth", name).get("status") or {}
    return status


def _settled(kubectl: Kubectl, name: str, health: str, method: str) -> dict[str, Any] | None:
    st = _status(kubectl, name)
    return st if st.get("health") == health and st.get("probeMethod") == method else None


def _condition(st: dict[str, Any], type_: str) -> dict[str, Any]:
    found: list[dict[str, Any]] = [c for c in st["conditions"] if c["type"] == type_]
    assert len(found) == 1, st["conditions"]
    return found[0]


@pytest.mark.parametrize("legacy", [False, True], ids=["2026-07-28", "initialize"])
def test_a_mixed_fleet_shows_how_each_server_is_judged(
    kubectl: Kubectl,
    operator: OperatorFactory,
    hostile_server: HostileFactory,
    sample_server: SampleFactory,
    pg: Postgres,
    legacy: bool,
) -> None:
    era = ("--legacy",) if legacy else ()
    bare = hostile_server("tools-only", *era)  # no health resource, no resources at all
    publishing = sample_server("codebase-mcp", dsn=pg.dsn).base_url
    operator(f"--allow-url={bare}", f"--allow-url={publishing}")
    kubectl.apply(monitor("bare", url=bare))
    kubectl.apply(monitor("publishing", url=publishing))
    kubectl.apply(
        monitor("lacking", url=bare).replace(
            "failureThreshold: 3}", "failureThreshold: 1, expectTools: [echo, search]}"
        )
    )

    bare_st = wait_for(
        lambda: _settled(kubectl, "bare", "Healthy", "handshake"), timeout=30, what="handshake"
    )
    assert bare_st["reasons"] == [] and bare_st["lastProbeOutcome"] == "Ok"
    assert bare_st["server"]["name"] == "tools-only"
    assert bare_st.get("reportedStatus") is None and bare_st.get("pool") is None
    hint = _condition(bare_st, "HealthResource")
    assert hint["status"] == "False" and hint["reason"] == "HealthResourceNotListed"
    assert _condition(bare_st, "Reachable")["message"] == "server answered the handshake"

    pub_st = wait_for(
        lambda: _settled(kubectl, "publishing", "Healthy", "healthResource"),
        timeout=30,
        what="healthResource",
    )
    assert pub_st["reportedStatus"] == "healthy" and pub_st["pool"]["total"] == 10
    assert _condition(pub_st, "HealthResource")["reason"] == "HealthResourceRead"

    lacking = wait_for(
        lambda: _settled(kubectl, "lacking", "Unhealthy", "handshake"),
        timeout=30,
        what="ExpectedToolsMissing",
    )
    assert lacking["reasons"] == ["ExpectedToolsMissing"]
    assert "search" in lacking["message"] and "echo" not in lacking["message"]
    assert _condition(lacking, "Reachable")["status"] == "True"

    table = kubectl("get", "mcphealth").stdout.splitlines()
    assert table[0].split()[:6] == ["NAME", "TARGET", "HEALTH", "DATABASE", "POOL", "LATENCY"]
    assert "METHOD" in table[0].split()
    rows = {line.split()[0]: line for line in table[1:]}
    assert "handshake" in rows["bare"].split()
    assert "healthResource" in rows["publishing"].split()


def test_method_handshake_on_a_publishing_server_reads_no_document(
    kubectl: Kubectl, operator: OperatorFactory, sample_server: SampleFactory, pg: Postgres
) -> None:
    publishing = sample_server("codebase-mcp", dsn=pg.dsn).base_url
    operator(f"--allow-url={publishing}")
    kubectl.apply(
        monitor("asked", url=publishing).replace(
            "failureThreshold: 3}", "failureThreshold: 3, method: handshake}"
        )
    )
    st = wait_for(
        lambda: _settled(kubectl, "asked", "Healthy", "handshake"), timeout=30, what="handshake"
    )
    assert st.get("reportedStatus") is None and st.get("databaseStatus") is None
    assert _condition(st, "HealthResource")["reason"] == "HandshakeRequested"
    spec = kubectl.json("mcphealth", "asked")["spec"]["probe"]
    assert spec["method"] == "handshake"


BAD = {
    "unknown method": (
        "streamable-http",
        "method: ping",
        'spec.probe.method: Unsupported value: "ping"',
    ),
    "handshake over a plain GET": (
        "http",
        "method: handshake",
        "spec.probe: Invalid value",
    ),
    "expectTools over a plain GET": (
        "http",
        "expectTools: [search]",
        "spec.probe.expectTools need an MCP transport",
    ),
}


@pytest.mark.parametrize(("transport", "probe", "message"), BAD.values(), ids=BAD.keys())
def test_a_method_the_transport_cannot_carry_is_refused_naming_the_field(
    kubectl: Kubectl, transport: str, probe: str, message: str
) -> None:
    manifest = (
        "apiVersion: mcphealth.dev/v1alpha1\nkind: MCPHealthMonitor\nmetadata: {name: bad}\n"
        f"spec:\n  target: {{url: 'http://x:1', transport: {transport}}}\n"
        f"  probe: {{{probe}}}\n"
    )
    done = kubectl("apply", "-f", "-", stdin=manifest, check=False)
    assert done.returncode != 0
    assert message in done.stderr, done.stderr
