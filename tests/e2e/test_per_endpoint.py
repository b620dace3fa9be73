"""Per-endpoint monitors end to end: EndpointSlices on the real API server, real MCP servers.

The API server refuses loopback and link-local addresses in EndpointSlices,
so the three sample fleet servers (the official SDK) run in a network
namespace of the test's own, on the same port at three addresses of
198.18.N.0/24 (a benchmarking range), reached from the operator over a
veth pair. A Service, its EndpointSlice and the Pods it names are created
through the API; with no kubelet the Pods stay Pending, but they exist and
can be deleted. With no EndpointSlice controller, the test plays its part
when a pod goes.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import subprocess
import sys
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from mcp_health_testbed import _procs, controlplane
from mcp_health_testbed.samples import examples_dir
from tests.e2e.conftest import Kubectl, OperatorFactory, wait_for
from tests.e2e.test_chart_rbac import install_rbac, service_account_kubeconfig
from tests.e2e.test_remediation import deployment, event, finish_rollout, restarted_at


@dataclass(frozen=True)
class Servers:
    addresses: tuple[str, str, str]
    port: int
    pods: dict[str, str]


def _ip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[Servers]:
    """One fleet server (one target, /t/0/mcp) at each of three addresses, all on one port."""
    if shutil.which("ip") is None:
        pytest.fail("needs iproute2 (ip) to make a network namespace")
    tag = uuid.uuid4().hex[:6]
    netns, host_if, ns_if = f"mht-{tag}", f"mh{tag}h", f"mh{tag}n"
    net = f"198.18.{random.randrange(256)}"
    if _ip("netns", "add", netns).returncode != 0:
        pytest.fail("needs CAP_NET_ADMIN (root) to make a network namespace")
    procs: list[subprocess.Popen[bytes]] = []
    try:
        addresses = (f"{net}.2", f"{net}.3", f"{net}.4")
        for args in (
            ("link", "add", host_if, "type", "veth", "peer", "name", ns_if, "netns", netns),
            ("addr", "add", f"{net}.1/24", "dev", host_if),
            ("link", "set", host_if, "up"),
            *(("-n", netns, "addr", "add", f"{a}/24", "dev", ns_if) for a in addresses),
            ("-n", netns, "link", "set", ns_if, "up"),
            ("-n", netns, "link", "set", "lo", "up"),
        ):
            done = _ip(*args)
            assert done.returncode == 0, f"ip {' '.join(args)}: {done.stderr}"
        port = _procs.free_port()
        for address in addresses:
            log = tmp_path / f"fleet-{address}.log"
            command = [sys.executable, "-m", "sample_mcp.fleet", "--targets", "1"]
            proc = subprocess.Popen(
                ["ip", "netns", "exec", netns, *command, "--host", address, "--port", str(port)],
                env={**os.environ, "PYTHONPATH": str(examples_dir())},
                stdout=log.open("wb"),
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            procs.append(proc)
            _procs.wait_for_port(address, port, timeout=30, proc=proc, log=log)
        pods = dict(zip(addresses, ("fleet-a", "fleet-b", "fleet-c"), strict=True))
        yield Servers(addresses, port, pods)
    finally:
        for proc in procs:
            _procs.stop(proc)
        _ip("link", "del", host_if)  # takes its peer along
        _ip("netns", "del", netns)


def flip(address: str, port: int, status: str) -> None:
    request = urllib.request.Request(
        f"http://{address}:{port}/t/0/flip?status={status}", method="POST"
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        assert json.load(response)["status"] == status


def pod(name: str) -> str:
    return f"""apiVersion: v1
kind: Pod
metadata:
  name: {name}
  # Its owner allows remediation to delete it (without it: RemediationNotPermitted).
  labels: {{app: fleet, mcphealth.dev/allow-remediation: "true"}}
spec:
  containers: [{{name: server, image: example.invalid/fleet:2.0.0}}]
"""


def endpoint_slice(kubectl: Kubectl, servers: Servers, addresses: tuple[str, ...]) -> str:
    eps = []
    for address in addresses:
        name = servers.pods[address]
        uid = kubectl.json("pod", name)["metadata"]["uid"]
        ref = {"kind": "Pod", "name": name, "namespace": kubectl.namespace, "uid": uid}
        eps.append({"addresses": [address], "conditions": {"ready": True}, "targetRef": ref})
    return json.dumps(
        {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "name": "fleet-abc12",
                "labels": {"kubernetes.io/service-name": "fleet"},
            },
            "addressType": "IPv4",
            "ports": [{"name": "mcp", "port": servers.port, "protocol": "TCP"}],
            "endpoints": eps,
        }
    )


SERVICE = """apiVersion: v1
kind: Service
metadata: {name: fleet}
spec:
  ports: [{name: mcp, port: 8000, targetPort: mcp}]
"""


def per_endpoint_monitor(name: str, policy: str, remediation: str = "") -> str:
    return f"""apiVersion: mcphealth.dev/v1alpha1
kind: MCPHealthMonitor
metadata: {{name: {name}}}
spec:
  target:
    service: {{name: fleet, port: mcp}}
    path: /t/0/mcp
    perEndpoint: {{policy: {policy}}}
  probe: {{interval: 1s, timeout: 800ms, failureThreshold: 2}}
{remediation}"""


REMEDIATION = """  remediation:
    cooldown: 10m
    workload: {name: fleet}
    restart: {after: 2s}
    podDeletion: {after: 2s}
"""


def status_of(kubectl: Kubectl, name: str) -> dict[str, Any]:
    return dict(kubectl.json("mcphealth", name).get("status") or {})


def endpoint_healths(kubectl: Kubectl, name: str) -> dict[str, str]:
    return {e["address"]: e["health"] for e in status_of(kubectl, name).get("endpoints") or []}


def healths(kubectl: Kubectl) -> dict[str, str | None]:
    return {m: status_of(kubectl, m).get("health") for m in ("all", "majority", "any")}


def pods(kubectl: Kubectl) -> list[str]:
    return sorted(p["metadata"]["name"] for p in kubectl.json("pods")["items"])


def test_each_endpoint_judged_by_policy_and_only_the_bad_pod_deleted(
    kubectl: Kubectl, operator: OperatorFactory, servers: Servers
) -> None:
    port, pods_of = servers.port, servers.pods
    a, b, c = addresses = servers.addresses
    kubectl.apply(SERVICE)
    kubectl.apply(deployment("fleet"))
    finish_rollout(kubectl, "fleet")
    # Pods need their ServiceAccount, which no controller makes here.
    kubectl("create", "serviceaccount", "default")
    for name in pods_of.values():
        kubectl.apply(pod(name))
    kubectl.apply(endpoint_slice(kubectl, servers, addresses))
    op = operator("--endpoints-refresh", "1")
    kubectl.apply(per_endpoint_monitor("all", "all", REMEDIATION))
    kubectl.apply(per_endpoint_monitor("majority", "majority"))
    kubectl.apply(per_endpoint_monitor("any", "any"))

    healthy = {a: "Healthy" for a in addresses}
    for name in ("all", "majority", "any"):
        wait_for(
            lambda n=name: endpoint_healths(kubectl, n) == healthy,  # type: ignore[misc]
            timeout=30,
            what=f"{name}: three Healthy endpoints",
        )
    assert healths(kubectl) == {"all": "Healthy", "majority": "Healthy", "any": "Healthy"}
    s = status_of(kubectl, "all")
    assert s["endpointSummary"]["ratio"] == "3/3"
    entries = {e["address"]: e for e in s["endpoints"]}
    assert {a: e["pod"] for a, e in entries.items()} == pods_of
    assert all(e["port"] == port and e["latencyMs"] > 0 for e in entries.values())
    assert s["databaseStatus"] == "connected"  # the document shown is an endpoint's
    wide = kubectl("get", "mcphealth", "all", "-o", "wide").stdout
    assert "ENDPOINTS" in wide.splitlines()[0] and "3/3" in wide

    # One replica goes bad: only the strict policy turns the monitor Unhealthy.
    flip(a, port, "unhealthy")
    wait_for(lambda: healths(kubectl)["all"] == "Unhealthy", timeout=20, what="all Unhealthy")
    assert healths(kubectl) == {"all": "Unhealthy", "majority": "Healthy", "any": "Healthy"}
    for name in ("majority", "any"):
        wait_for(
            lambda n=name: endpoint_healths(kubectl, n).get(a) == "Unhealthy",  # type: ignore[misc]
            timeout=20,
            what=f"{name}: the first endpoint Unhealthy",
        )
        assert status_of(kubectl, name)["endpointSummary"]["ratio"] == "2/3"
    majority = status_of(kubectl, "majority")
    assert majority["reasons"][0] == "HealthyByPolicy"
    assert majority["message"].startswith("2/3 endpoints healthy (policy majority)")
    healthy_condition = next(c for c in majority["conditions"] if c["type"] == "Healthy")
    assert (healthy_condition["status"], healthy_condition["reason"]) == (
        "True",
        "HealthyByPolicy",
    )
    bad = {e["address"]: e for e in status_of(kubectl, "majority")["endpoints"]}[a]
    assert bad["pod"] == "fleet-a"
    assert bad["reason"] in ("ServerReportedUnhealthy", "DatabaseDisconnected")
    endpoint = f"{a}:{port}"
    assert op.value("mcp_endpoint_health_status", monitor="any", endpoint=endpoint) == 0.0
    assert op.value("mcp_endpoint_health_status", monitor="any", pod="fleet-b") == 1.0
    assert op.value("mcp_endpoints", monitor="majority", health="Unhealthy") == 1.0
    assert op.value("mcp_health_status", monitor="majority") == 1.0
    assert op.value("mcp_health_status", monitor="all") == 0.0
    unhealthy_events = wait_for(
        lambda: event(kubectl, "any", "EndpointUnhealthy"), timeout=10, what="EndpointUnhealthy"
    )
    assert "fleet-a" in unhealthy_events[0]["message"]

    # Remediation deletes that pod, and nothing else.
    wait_for(lambda: "fleet-a" not in pods(kubectl), timeout=30, what="fleet-a deleted")
    assert pods(kubectl) == ["fleet-b", "fleet-c"]
    deleted = wait_for(lambda: event(kubectl, "all", "PodDeleted"), timeout=10, what="PodDeleted")
    assert "deleted pod fleet-a" in deleted[0]["message"]
    ledger = wait_for(
        lambda: (
            (status_of(kubectl, "all").get("remediation") or {}).get("lastResult") == "success"
            and status_of(kubectl, "all")["remediation"]
        ),
        timeout=10,
        what="ledger",
    )
    assert ledger["lastAction"] == "delete-pod"
    result = {"monitor": "all", "action": "delete-pod", "result": "success"}
    assert op.value("mcp_remediation_actions_total", **result) == 1.0
    # The monitor stays Unhealthy (the endpoint is still listed): the restart it is
    # due is held by the cooldown the pod deletion started. The Deployment is untouched.
    held = wait_for(
        lambda: event(kubectl, "all", "RestartSuppressed"), timeout=15, what="RestartSuppressed"
    )
    assert held[0]["message"].startswith("Cooldown")
    assert restarted_at(kubectl, "fleet") is None
    assert pods(kubectl) == ["fleet-b", "fleet-c"]

    # The EndpointSlice controller's part: the deleted pod's endpoint leaves the slice.
    kubectl.apply(endpoint_slice(kubectl, servers, addresses[1:]))
    wait_for(
        lambda: set(endpoint_healths(kubectl, "all")) == set(addresses[1:]),
        timeout=15,
        what="two endpoints",
    )
    wait_for(lambda: healths(kubectl)["all"] == "Healthy", timeout=15, what="all Healthy again")
    wait_for(
        lambda: op.value("mcp_endpoint_health_status", monitor="all", endpoint=endpoint) is None,
        timeout=10,
        what="the gone endpoint's series gone",
    )

    # One of two bad: no majority; both bad: none.
    flip(b, port, "unhealthy")
    wait_for(
        lambda: healths(kubectl) == {"all": "Unhealthy", "majority": "Unhealthy", "any": "Healthy"},
        timeout=20,
        what="majority Unhealthy, any Healthy",
    )
    flip(c, port, "unhealthy")
    wait_for(lambda: healths(kubectl)["any"] == "Unhealthy", timeout=20, what="any Unhealthy")
    assert "0/2 endpoints healthy (policy any)" in status_of(kubectl, "any")["message"]
    # Through all of it: one pod deleted, no restart.
    assert pods(kubectl) == ["fleet-b", "fleet-c"]
    assert restarted_at(kubectl, "fleet") is None

    # Recovery.
    for address in addresses[1:]:
        flip(address, port, "healthy")
    wait_for(
        lambda: healths(kubectl) == {"all": "Healthy", "majority": "Healthy", "any": "Healthy"},
        timeout=20,
        what="all three Healthy",
    )
    recovered = wait_for(
        lambda: event(kubectl, "any", "EndpointRecovered"), timeout=10, what="EndpointRecovered"
    )
    assert any("fleet-b" in e["message"] for e in recovered)


def test_endpoints_at_forbidden_addresses_are_listed_but_never_probed(
    kubectl: Kubectl, operator: OperatorFactory
) -> None:
    """A slice can be written by hand. The API server refuses loopback and link-local
    addresses in it, but not 0.0.0.0/8 (which Linux connects to this host) nor the
    IPv6 metadata address: the operator lists those and never probes them."""
    kubectl.apply(SERVICE)
    for name, family, address in (("v4", "IPv4", "0.1.2.3"), ("v6", "IPv6", "fd00:ec2::254")):
        slice_ = {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "name": f"fleet-{name}",
                "labels": {"kubernetes.io/service-name": "fleet"},
            },
            "addressType": family,
            "ports": [{"name": "mcp", "port": 80}],
            "endpoints": [{"addresses": [address]}],
        }
        kubectl.apply(json.dumps(slice_))
    operator()
    kubectl.apply(per_endpoint_monitor("evil", "any"))
    entries = wait_for(
        lambda: (
            len(status_of(kubectl, "evil").get("endpoints") or []) == 2
            and status_of(kubectl, "evil")["endpoints"]
        ),
        timeout=30,
        what="two endpoints in status",
    )
    by_address = {e["address"]: e for e in entries}
    assert set(by_address) == {"0.1.2.3", "fd00:ec2::254"}
    assert {e["reason"] for e in entries} == {"TargetNotAllowed"}
    assert {e["health"] for e in entries} == {"Unknown"}
    assert all("never probes it" in e["message"] for e in entries)
    assert all("lastProbeTime" not in e for e in entries)  # never probed
    s = status_of(kubectl, "evil")
    assert s["health"] == "Unknown"
    assert s["endpointSummary"]["unknown"] == 2


def test_the_api_server_refuses_per_endpoint_with_a_url_and_names_the_field(
    kubectl: Kubectl,
) -> None:
    bad = """apiVersion: mcphealth.dev/v1alpha1
kind: MCPHealthMonitor
metadata: {name: bad}
spec:
  target: {url: 'http://example.com/mcp', perEndpoint: {policy: any}}
"""
    done = kubectl("apply", "-f", "-", stdin=bad, check=False)
    assert done.returncode != 0
    assert "spec.target.perEndpoint" in done.stderr
    assert "a URL has no endpoints" in done.stderr
    wrong_policy = per_endpoint_monitor("bad", "most")
    done = kubectl("apply", "-f", "-", stdin=wrong_policy, check=False)
    assert done.returncode != 0
    assert 'spec.target.perEndpoint.policy: Unsupported value: "most"' in done.stderr
    pods_without_endpoints = """apiVersion: mcphealth.dev/v1alpha1
kind: MCPHealthMonitor
metadata: {name: bad}
spec:
  target: {service: {name: fleet, port: 8000}}
  remediation: {podDeletion: {after: 30s}}
"""
    done = kubectl("apply", "-f", "-", stdin=pods_without_endpoints, check=False)
    assert done.returncode != 0
    assert "spec.remediation.podDeletion" in done.stderr


def test_per_endpoint_probing_and_pod_deletion_with_the_charts_rbac(
    kubectl: Kubectl, operator: OperatorFactory, servers: Servers, tmp_path: Path
) -> None:
    """Listing EndpointSlices and deleting a pod are within what the chart grants."""
    release = f"r{uuid.uuid4().hex[:6]}"
    sa = install_rbac(kubectl, release)
    config = service_account_kubeconfig(kubectl, sa, tmp_path / "sa.kubeconfig")
    kubectl.apply(SERVICE)
    kubectl("create", "serviceaccount", "default")
    for name in servers.pods.values():
        kubectl.apply(pod(name))
    kubectl.apply(endpoint_slice(kubectl, servers, servers.addresses))
    op = operator("--endpoints-refresh", "1", kubeconfig=config)
    pods_only = "  remediation: {cooldown: 10m, podDeletion: {after: 2s}}\n"
    kubectl.apply(per_endpoint_monitor("m", "majority", pods_only))
    healthy = {a: "Healthy" for a in servers.addresses}
    wait_for(lambda: endpoint_healths(kubectl, "m") == healthy, timeout=30, what="3 Healthy")

    bad = servers.addresses[1]
    flip(bad, servers.port, "unhealthy")
    wait_for(lambda: "fleet-b" not in pods(kubectl), timeout=30, what="fleet-b deleted")
    assert pods(kubectl) == ["fleet-a", "fleet-c"]
    assert status_of(kubectl, "m")["health"] == "Healthy"  # 2 of 3: a majority
    # The chart's pod verbs are the calls made: the consent read, the deletion.
    user = f"system:serviceaccount:{kubectl.namespace}:{sa}"
    calls = controlplane.audited_calls(kubectl.plane.audit_log, user)
    assert {("", "pods", "get"), ("", "pods", "delete")} <= calls, calls
    log = op.log.read_text()
    # (403 not after a comma: a log timestamp's milliseconds may read 403.)
    refused = re.search(r"(?<!,)\b403\b", log) or "forbidden" in log.lower()
    assert not refused, log[-3000:]
    wait_for(lambda: event(kubectl, "m", "PodDeletionSuppressed"), timeout=10, what="cooldown hold")

    # An operator restart: the endpoints' verdicts and the ledger carry over, so no
    # Event is repeated and the (still listed, still bad) endpoint's pod is not
    # deleted again inside the cooldown.
    op.stop()
    held_before = {e["metadata"]["name"] for e in event(kubectl, "m", "PodDeletionSuppressed")}
    op = operator("--endpoints-refresh", "1", kubeconfig=config)
    wait_for(
        lambda: (
            status_of(kubectl, "m")["remediation"].get("suppressed") == "Cooldown"
            and {e["metadata"]["name"] for e in event(kubectl, "m", "PodDeletionSuppressed")}
            - held_before
        ),
        timeout=30,
        what="the new operator holding by cooldown",
    )
    unhealthy = event(kubectl, "m", "EndpointUnhealthy")
    assert [e["count"] for e in unhealthy] == [1], unhealthy
    assert not event(kubectl, "m", "RemediationFailed")
    assert not event(kubectl, "m", "PodDeleted")[1:]
    # Each endpoint's session is kept across rounds, as a single target's is.
    with urllib.request.urlopen(
        f"http://{servers.addresses[0]}:{servers.port}/control/stats", timeout=5
    ) as response:
        stats = json.load(response)
    assert stats["reads"] >= 5 and stats["connections"] <= 2, stats


def test_the_endpointslice_watch_brings_a_scale_out_in_seconds(
    kubectl: Kubectl, operator: OperatorFactory, servers: Servers
) -> None:
    """No re-list is due for two minutes: only the shared watch can bring the change."""
    a, b, c = servers.addresses
    kubectl.apply(SERVICE)
    kubectl("create", "serviceaccount", "default")
    for name in servers.pods.values():
        kubectl.apply(pod(name))
    kubectl.apply(endpoint_slice(kubectl, servers, (a,)))
    operator("--endpoints-refresh", "120")
    kubectl.apply(per_endpoint_monitor("any", "any"))
    wait_for(
        lambda: endpoint_healths(kubectl, "any") == {a: "Healthy"}, timeout=30, what="one endpoint"
    )
    kubectl.apply(endpoint_slice(kubectl, servers, (a, b, c)))
    every = {x: "Healthy" for x in (a, b, c)}
    wait_for(lambda: endpoint_healths(kubectl, "any") == every, timeout=15, what="three endpoints")
    kubectl.apply(endpoint_slice(kubectl, servers, (b,)))
    wait_for(
        lambda: endpoint_healths(kubectl, "any") == {b: "Healthy"}, timeout=15, what="scaled in"
    )
