"""The operator end to end: real API server, real sample servers, real PostgreSQL."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request

import pytest

from mcp_health_testbed.postgres import Postgres
from mcp_health_testbed.samples import SampleServer
from tests.conftest import HostileFactory, SampleFactory
from tests.e2e.conftest import Kubectl, OperatorFactory, monitor, service, wait_for


def resolve(kubectl: Kubectl, name: str, server: SampleServer, port: int = 8000) -> list[str]:
    return ["--resolve", f"{name}.{kubectl.namespace}.svc:{port}=127.0.0.1:{server.port}"]


def status(kubectl: Kubectl, name: str) -> dict:  # type: ignore[type-arg]
    return kubectl.json("mcphealth", name).get("status") or {}


def health_is(kubectl: Kubectl, name: str, health: str) -> dict | None:  # type: ignore[type-arg]
    st = status(kubectl, name)
    return st if st.get("health") == health else None


def test_applied_monitor_turns_healthy_with_every_status_field(
    kubectl: Kubectl, operator: OperatorFactory, sample_server: SampleFactory, pg: Postgres
) -> None:
    server = sample_server("codebase-mcp", dsn=pg.dsn)
    kubectl.apply(service("codebase-mcp"))
    op = operator(*resolve(kubectl, "codebase-mcp", server))
    kubectl.apply(monitor("codebase", service="codebase-mcp"))

    st = wait_for(lambda: health_is(kubectl, "codebase", "Healthy"), timeout=30, what="Healthy")
    assert st["reportedStatus"] == "healthy"
    assert st["databaseStatus"] == "connected"
    assert st["reasons"] == []
    assert st["pool"]["total"] == 10
    assert st["pool"]["percent"] == "0%"
    assert st["checks"]["database"]["status"] == "pass"
    assert st["latencyMs"] > 0 and st["latency"].endswith("ms")
    assert st["lastProbeTime"].endswith("Z")
    assert st["consecutiveFailures"] == 0 and st["consecutiveSuccesses"] >= 1
    assert st["server"]["name"] == "codebase-mcp"
    assert st["server"]["version"] == "2.0.0"
    assert st["server"]["protocolVersion"]
    assert st["server"]["transport"] == "streamable-http"
    assert st["target"] == "svc/codebase-mcp:8000"
    assert st["observedGeneration"] == 1
    conds = {c["type"]: c for c in st["conditions"]}
    assert conds["Reachable"]["status"] == "True"
    assert conds["Healthy"]["status"] == "True"
    assert conds["Degraded"]["status"] == "False"
    assert all(c["observedGeneration"] == 1 and c["lastTransitionTime"] for c in conds.values())
    # Who wrote the status, as `kubectl get --show-managed-fields` names it.
    shown = json.loads(
        kubectl("get", "mcphealth", "codebase", "-o", "json", "--show-managed-fields").stdout
    )
    managers = {(m["manager"], m.get("subresource")) for m in shown["metadata"]["managedFields"]}
    assert ("mcp-health-operator", "status") in managers, managers

    # The printer columns users see.
    table = kubectl("get", "mcphealth", "-o", "wide").stdout
    header, row = table.splitlines()[0].split(), table.splitlines()[1].split()
    assert header[:6] == ["NAME", "TARGET", "HEALTH", "DATABASE", "POOL", "LATENCY"]
    assert "REASONS" in header and "FAILURES" in header
    assert row[:5] == ["codebase", "svc/codebase-mcp:8000", "Healthy", "connected", "0%"]

    labels = {"namespace": kubectl.namespace, "monitor": "codebase"}
    assert op.value("mcp_health_status", **labels) == 1.0
    assert op.value("mcp_pool_utilization", **labels) == 0.0
    assert op.value("mcp_database_latency_ms", **labels) is not None


# Both event loops `mcp-health run --loop` offers carry a monitor through a
# whole outage: uvloop (the default where installed) and the standard library's.
@pytest.mark.parametrize("loop", ["uvloop", "asyncio"])
def test_postgres_outage_turns_unhealthy_after_the_threshold_and_recovers(
    kubectl: Kubectl,
    operator: OperatorFactory,
    sample_server: SampleFactory,
    own_pg: Postgres,
    loop: str,
) -> None:
    server = sample_server("workflow-mcp", dsn=own_pg.dsn)
    kubectl.apply(service("workflow-mcp"))
    op = operator("--loop", loop, *resolve(kubectl, "workflow-mcp", server))
    assert f"event loop: {loop}" in op.log.read_text()
    kubectl.apply(monitor("wf", service="workflow-mcp", failure_threshold=3))
    wait_for(lambda: health_is(kubectl, "wf", "Healthy"), timeout=30, what="Healthy")

    own_pg.stop()
    st = wait_for(lambda: health_is(kubectl, "wf", "Unhealthy"), timeout=30, what="Unhealthy")
    assert st["consecutiveFailures"] >= 3
    assert "DatabaseDisconnected" in st["reasons"]
    assert "ServerReportedUnhealthy" in st["reasons"]
    assert st["databaseStatus"] == "disconnected"
    conds = {c["type"]: c for c in st["conditions"]}
    assert conds["Healthy"]["status"] == "False"
    assert conds["Reachable"]["status"] == "True"  # the server answers; its database does not
    labels = {"namespace": kubectl.namespace, "monitor": "wf"}
    assert wait_for(
        lambda: op.value("mcp_health_status", **labels) == 0.0, timeout=10, what="metric 0"
    )
    assert op.value("mcp_database_connected", **labels) == 0.0
    unhealthy = wait_for(
        lambda: [e for e in kubectl.events("wf") if e["reason"] == "HealthUnhealthy"],
        timeout=10,
        what="HealthUnhealthy event",
    )
    assert unhealthy[0]["type"] == "Warning"
    assert "database disconnected" in unhealthy[0]["message"]

    own_pg.start()
    wait_for(lambda: health_is(kubectl, "wf", "Healthy"), timeout=30, what="Healthy again")
    recovered = wait_for(
        lambda: [e for e in kubectl.events("wf") if e["reason"] == "HealthRecovered"],
        timeout=10,
        what="HealthRecovered event",
    )
    assert recovered[0]["type"] == "Normal"
    assert op.value("mcp_health_status", **labels) == 1.0


@pytest.mark.parametrize("transport", ["streamable-http", "sse", "http"])
def test_each_transport_reaches_healthy(
    kubectl: Kubectl,
    operator: OperatorFactory,
    sample_server: SampleFactory,
    pg: Postgres,
    transport: str,
) -> None:
    server_transport = "sse" if transport == "sse" else "streamable-http"
    server = sample_server("codebase-mcp", dsn=pg.dsn, transport=server_transport)
    kubectl.apply(service("codebase-mcp"))
    operator(*resolve(kubectl, "codebase-mcp", server))
    kubectl.apply(monitor("m", service="codebase-mcp", transport=transport))
    st = wait_for(lambda: health_is(kubectl, "m", "Healthy"), timeout=30, what="Healthy")
    assert st["server"]["transport"] == transport
    assert st["endpoint"].endswith(
        {"streamable-http": "/mcp", "sse": "/sse"}.get(transport, "/health/status")
    )


def test_monitor_pointing_at_nothing_is_unreachable_with_a_reason(
    kubectl: Kubectl, operator: OperatorFactory
) -> None:
    from mcp_health_testbed._procs import free_port

    kubectl.apply(service("ghost"))
    operator("--resolve", f"ghost.{kubectl.namespace}.svc:8000=127.0.0.1:{free_port()}")
    kubectl.apply(monitor("ghost", service="ghost", failure_threshold=2))
    st = wait_for(lambda: health_is(kubectl, "ghost", "Unhealthy"), timeout=30, what="Unhealthy")
    conds = {c["type"]: c for c in st["conditions"]}
    assert conds["Reachable"]["status"] == "False"
    assert conds["Reachable"]["reason"] == "TargetUnreachable"
    assert "cannot connect" in conds["Reachable"]["message"]
    reasons = [e["reason"] for e in kubectl.events("ghost")]
    assert "ProbeFailed" in reasons and "HealthUnhealthy" in reasons


def test_missing_service_is_named_in_the_status(
    kubectl: Kubectl, operator: OperatorFactory
) -> None:
    operator()
    kubectl.apply(monitor("nosvc", service="does-not-exist"))
    st = wait_for(lambda: status(kubectl, "nosvc").get("reason"), timeout=30, what="a reason")
    assert st == "ServiceNotFound"
    assert "does-not-exist" in status(kubectl, "nosvc")["message"]


def test_url_targets_are_refused_unless_allowed(
    kubectl: Kubectl, operator: OperatorFactory, hostile_server: HostileFactory
) -> None:
    url = hostile_server("doc")
    port = url.rsplit(":", 1)[1]
    operator(f"--allow-url=http://127.0.0.1:{port}")
    kubectl.apply(monitor("allowed", url=url, transport="http"))
    kubectl.apply(monitor("refused", url="http://127.0.0.1:1/", transport="http"))
    wait_for(lambda: health_is(kubectl, "allowed", "Healthy"), timeout=30, what="Healthy")
    st = wait_for(lambda: status(kubectl, "refused").get("conditions"), timeout=30, what="status")
    conds = {c["type"]: c for c in st}
    assert conds["Reachable"]["reason"] == "TargetNotAllowed"
    assert conds["Healthy"]["status"] == "Unknown"
    assert [e["reason"] for e in kubectl.events("refused")] == ["TargetRefused"]


def test_cross_namespace_service_is_refused(kubectl: Kubectl, operator: OperatorFactory) -> None:
    operator()
    extra = ""
    kubectl.apply(
        monitor("cross", service="x", extra=extra).replace(
            "service: {name: x, port: 8000}", "service: {name: x, port: 8000, namespace: other}"
        )
    )
    wait_for(
        lambda: status(kubectl, "cross").get("reason") == "TargetNotAllowed",
        timeout=30,
        what="TargetNotAllowed",
    )


BAD_MONITORS = {
    "negative interval": ("probe: {interval: -5s}", "spec.probe.interval"),
    "timeout not below interval": (
        "probe: {interval: 5s, timeout: 5s}",
        "spec.probe.timeout must be shorter than spec.probe.interval",
    ),
    "threshold above 1": (
        "thresholds: {poolUtilization: {degraded: 1.5, unhealthy: 0.95}}",
        "spec.thresholds.poolUtilization.degraded",
    ),
    "degraded above unhealthy": (
        "thresholds: {memoryUtilization: {degraded: 0.9, unhealthy: 0.5}}",
        "spec.thresholds.memoryUtilization",
    ),
    "failureThreshold zero": ("probe: {failureThreshold: 0}", "spec.probe.failureThreshold"),
}


@pytest.mark.parametrize(("fragment", "field"), BAD_MONITORS.values(), ids=BAD_MONITORS.keys())
def test_bad_monitors_are_refused_naming_the_field(
    kubectl: Kubectl, fragment: str, field: str
) -> None:
    manifest = (
        "apiVersion: mcphealth.dev/v1alpha1\nkind: MCPHealthMonitor\nmetadata: {name: bad}\n"
        f"spec:\n  target: {{service: {{name: a, port: 80}}}}\n  {fragment}\n"
    )
    done = kubectl("apply", "-f", "-", stdin=manifest, check=False)
    assert done.returncode != 0
    assert field in done.stderr


BAD_TARGETS = {
    "service and url": (
        "{service: {name: a, port: 80}, url: 'http://x:1'}",
        "exactly one of spec.target.service and spec.target.url",
    ),
    "neither": ("{transport: sse}", "exactly one of spec.target.service and spec.target.url"),
    "unknown transport": (
        "{service: {name: a, port: 80}, transport: carrier-pigeon}",
        'spec.target.transport: Unsupported value: "carrier-pigeon"',
    ),
    "port out of range": ("{service: {name: a, port: 70000}}", "spec.target.service.port"),
    "not an http url": ("{url: 'ftp://x/'}", "spec.target.url"),
}


@pytest.mark.parametrize(("target", "message"), BAD_TARGETS.values(), ids=BAD_TARGETS.keys())
def test_bad_targets_are_refused_naming_the_field(
    kubectl: Kubectl, target: str, message: str
) -> None:
    manifest = (
        "apiVersion: mcphealth.dev/v1alpha1\nkind: MCPHealthMonitor\nmetadata: {name: bad}\n"
        f"spec:\n  target: {target}\n"
    )
    done = kubectl("apply", "-f", "-", stdin=manifest, check=False)
    assert done.returncode != 0
    assert message in done.stderr


def _served(url: str) -> int:
    with urllib.request.urlopen(url + "/__count", timeout=5) as response:
        return int(json.loads(response.read())["count"])


def test_deleting_a_monitor_stops_probes_and_removes_its_series(
    kubectl: Kubectl, operator: OperatorFactory, hostile_server: HostileFactory
) -> None:
    url = hostile_server("doc")
    port = url.rsplit(":", 1)[1]
    op = operator(f"--allow-url=http://127.0.0.1:{port}")
    kubectl.apply(monitor("gone", url=url, transport="http"))
    wait_for(lambda: health_is(kubectl, "gone", "Healthy"), timeout=30, what="Healthy")
    labels = {"namespace": kubectl.namespace, "monitor": "gone"}
    assert op.value("mcp_health_status", **labels) == 1.0

    kubectl("delete", "mcphealth", "gone", "--wait=true", "--timeout=10s")
    deleted_at = time.monotonic()
    wait_for(
        lambda: op.value("mcp_health_status", **labels) is None, timeout=5, what="series removed"
    )
    assert time.monotonic() - deleted_at < 5
    assert op.value("mcp_probe_total", **labels) is None
    settled = _served(url)
    time.sleep(3)  # three intervals: no probe may arrive any more
    assert _served(url) == settled


def test_spec_change_takes_effect_on_the_next_probe(
    kubectl: Kubectl, operator: OperatorFactory, hostile_server: HostileFactory
) -> None:
    url = hostile_server("doc")
    port = url.rsplit(":", 1)[1]
    operator(f"--allow-url=http://127.0.0.1:{port}")
    kubectl.apply(monitor("tempo", url=url, transport="http", interval="4s"))
    wait_for(lambda: health_is(kubectl, "tempo", "Healthy"), timeout=30, what="Healthy")
    start = _served(url)
    time.sleep(8)
    slow = _served(url) - start
    assert 1 <= slow <= 3  # every 4 s

    kubectl.apply(monitor("tempo", url=url, transport="http", interval="1s"))
    wait_for(
        lambda: status(kubectl, "tempo").get("observedGeneration") == 2,
        timeout=10,
        what="generation 2 observed",
    )
    start = _served(url)
    time.sleep(8)
    fast = _served(url) - start
    assert fast >= 6  # every 1 s


def test_steady_minute_costs_no_events_and_at_most_the_heartbeat_in_writes(
    kubectl: Kubectl, operator: OperatorFactory, hostile_server: HostileFactory
) -> None:
    url = hostile_server("doc")
    port = url.rsplit(":", 1)[1]
    operator(f"--allow-url=http://127.0.0.1:{port}")  # default heartbeat: 300 s
    kubectl.apply(monitor("steady", url=url, transport="http", interval="1s"))
    wait_for(lambda: health_is(kubectl, "steady", "Healthy"), timeout=30, what="Healthy")
    time.sleep(2)  # let the first verdict's write settle
    events_before = len(kubectl.events("steady"))
    served_before = _served(url)
    watch = subprocess.Popen(
        [
            *kubectl_argv(kubectl),
            "get",
            "mcphealth",
            "steady",
            "--watch-only",
            "--output-watch-events",
            "-o",
            "jsonpath={.type} {.object.metadata.resourceVersion}{'\\n'}",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    time.sleep(60)
    watch.terminate()
    out, _ = watch.communicate(timeout=10)
    probes = _served(url) - served_before
    writes = [line for line in out.splitlines() if line.startswith("MODIFIED")]
    assert probes >= 50  # the monitor really probed all minute
    assert len(writes) <= 1  # a 300 s heartbeat allows at most one in any minute
    assert len(kubectl.events("steady")) == events_before == 0


def kubectl_argv(kubectl: Kubectl) -> list[str]:
    from mcp_health_testbed import controlplane

    return [
        str(controlplane.kubectl_binary()),
        "--kubeconfig",
        str(kubectl.plane.kubeconfig),
        "-n",
        kubectl.namespace,
    ]
