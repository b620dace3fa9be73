"""The guide's servers as workloads: PostgreSQL, codebase-mcp and workflow-mcp as pods.

The operator (installed with helm, a pod) finds them by cluster DNS through
the Services the monitors name; outages, restarts and pool scaling happen to
real pods, ReplicaSets and mounted ConfigMaps.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from mcp import Client

from mcp_health_operator.core.targets import Target
from mcp_health_operator.probing.probe import Prober
from mcp_health_testbed import cluster as cluster_mod
from tests.cluster.conftest import (
    OPERATOR_NS,
    Kube,
    guide_servers,
    install_operator,
    monitor,
    remediation_in,
    wait_for,
)

RELEASE = "guide"


@pytest.fixture(scope="module")
def servers(cluster: cluster_mod.Cluster) -> Iterator[Kube]:
    """The operator installed cluster-wide, and the guide's servers in a namespace."""
    k = Kube(cluster.kubeconfig, f"guide-{uuid.uuid4().hex[:6]}")
    k("create", "namespace", k.namespace)
    install_operator(cluster, RELEASE, *remediation_in(k.namespace))
    guide_servers(k)
    yield k
    k("delete", "namespace", k.namespace, "--wait=false", check=False)
    Kube(cluster.kubeconfig, OPERATOR_NS).helm("uninstall", RELEASE, "-n", OPERATOR_NS, "--wait")


@pytest.fixture
def fresh(servers: Kube) -> Iterator[Kube]:
    """Each test starts from Healthy servers and no monitors; its own are removed after."""
    servers("delete", "mcphealth", "--all", "--wait=true")
    servers.rollout("deployment/codebase-mcp")
    servers.rollout("deployment/workflow-mcp")
    yield servers
    servers("delete", "mcphealth", "--all", "--wait=true", check=False)


def _pod_ips(k: Kube, app: str) -> list[str]:
    return [p["status"]["podIP"] for p in k.pods(f"app={app}") if p["status"].get("podIP")]


async def _saturate(pod_ip: str, port: int, connections: int, seconds: float = 300) -> None:
    # The pod's own address, from this host: the bridge routes to it.
    async with Client(f"http://{pod_ip}:{port}/mcp", cache=None) as client:
        await client.call_tool("saturate_pool", {"connections": connections, "seconds": seconds})


def saturate(k: Kube, app: str, port: int, connections: int = 10) -> None:
    [ip] = _pod_ips(k, app)
    asyncio.run(_saturate(ip, port, connections))


def _replicasets(k: Kube, app: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = k.json("rs", "-l", f"app={app}")["items"]
    return sorted(items, key=lambda rs: rs["metadata"]["creationTimestamp"])


def _status(k: Kube, name: str) -> dict[str, Any]:
    status: dict[str, Any] = k.json("mcphealth", name).get("status", {})
    return status


def test_monitors_go_healthy_over_service_dns(fresh: Kube) -> None:
    k = fresh
    k.apply(monitor("codebase-mcp", "codebase-mcp", 8000))
    k.apply(monitor("workflow-mcp", "workflow-mcp", "mcp"))
    for name in ("codebase-mcp", "workflow-mcp"):
        wait_for(lambda: k.health(name) == "Healthy", timeout=60, what=f"{name} Healthy")  # noqa: B023
        status = _status(k, name)
        assert status["databaseStatus"] == "connected"
    # The operator pod resolves the Service name through cluster DNS to its ClusterIP.
    op = Kube(k.kubeconfig, OPERATOR_NS)
    [pod] = op.pods("app.kubernetes.io/instance=" + RELEASE)
    fqdn = f"codebase-mcp.{k.namespace}.svc.cluster.local"
    resolved = op(
        "exec", pod["metadata"]["name"], "--", "python", "-c",
        f"import socket; print(socket.gethostbyname({fqdn!r}))",
    ).stdout.strip()  # fmt: skip
    assert resolved == k.json("svc", "codebase-mcp")["spec"]["clusterIP"]
    table = k("get", "mcphealth").stdout
    assert "Healthy" in table and "connected" in table, table


def test_postgres_stopped_then_back(fresh: Kube) -> None:
    k = fresh
    k.apply(monitor("codebase-mcp", "codebase-mcp", 8000, failure_threshold=3))
    wait_for(lambda: k.health("codebase-mcp") == "Healthy", timeout=60, what="Healthy")
    k("scale", "statefulset/postgres", "--replicas=0")
    wait_for(lambda: not k.pods("app=postgres"), timeout=60, what="the PostgreSQL pod gone")
    wait_for(lambda: k.health("codebase-mcp") == "Unhealthy", timeout=60, what="Unhealthy")
    status = _status(k, "codebase-mcp")
    assert "DatabaseDisconnected" in status["reasons"], status
    assert status["consecutiveFailures"] >= 3, status
    [unhealthy] = wait_for(
        lambda: k.events("codebase-mcp", "HealthUnhealthy"), timeout=10, what="HealthUnhealthy"
    )
    assert "database disconnected" in unhealthy["message"]
    # Readiness follows health: the server's pod is unready while it is down.
    pod = k.pods("app=codebase-mcp")[0]
    ready = {c["type"]: c["status"] for c in pod["status"]["conditions"]}
    assert ready["Ready"] == "False"

    k("scale", "statefulset/postgres", "--replicas=1")
    k.rollout("statefulset/postgres")
    wait_for(lambda: k.health("codebase-mcp") == "Healthy", timeout=90, what="Healthy again")
    wait_for(
        lambda: k.events("codebase-mcp", "HealthRecovered"), timeout=10, what="HealthRecovered"
    )


RESTART = """  remediation:
    cooldown: 10m
    workload: {name: codebase-mcp}
    restart: {after: 4s}
"""


def test_restart_replaces_the_pods_although_they_went_unready(fresh: Kube) -> None:
    k = fresh
    before = _replicasets(k, "codebase-mcp")
    old_pods = {p["metadata"]["name"] for p in k.pods("app=codebase-mcp")}
    k.apply(monitor("codebase-mcp", "codebase-mcp", 8000, extra=RESTART))
    wait_for(lambda: k.health("codebase-mcp") == "Healthy", timeout=60, what="Healthy")
    saturate(k, "codebase-mcp", 8000)
    # The server reports itself unhealthy, so its pod goes unready and the
    # Deployment has no available replica: that is no rollout in progress.
    wait_for(
        lambda: k.json("deploy", "codebase-mcp")["status"].get("unavailableReplicas"),
        timeout=30,
        what="the pod unready",
    )
    wait_for(lambda: k.events("codebase-mcp", "RestartTriggered"), timeout=60, what="a restart")
    wait_for(
        lambda: len(_replicasets(k, "codebase-mcp")) == len(before) + 1,
        timeout=60,
        what="a new ReplicaSet",
    )
    k.rollout("deployment/codebase-mcp")
    after = _replicasets(k, "codebase-mcp")
    new_pods = {p["metadata"]["name"] for p in k.pods("app=codebase-mcp")}
    assert new_pods and not new_pods & old_pods, (old_pods, new_pods)
    newest = after[-1]
    assert newest["status"].get("readyReplicas") == 1
    assert all(rs["spec"]["replicas"] == 0 for rs in after[:-1])
    wait_for(lambda: k.health("codebase-mcp") == "Healthy", timeout=60, what="Healthy after")


SCALE = """  remediation:
    workload: {{name: {workload}}}
    poolScaling: {{after: 2s, step: 5, max: 50, method: {method}{extra}}}
"""


def _pool_total(k: Kube, name: str) -> int | None:
    pool = _status(k, name).get("pool") or {}
    return pool.get("total")


def test_pool_scaling_through_a_mounted_configmap(fresh: Kube) -> None:
    k = fresh
    pods_before = {p["metadata"]["name"] for p in k.pods("app=codebase-mcp")}
    extra = ", configMap: {name: codebase-pool, key: pool-size}"
    scaling = SCALE.format(workload="codebase-mcp", method="configMap", extra=extra)
    k.apply(monitor("codebase-mcp", "codebase-mcp", 8000, extra=scaling))
    wait_for(lambda: k.health("codebase-mcp") == "Healthy", timeout=60, what="Healthy")
    saturate(k, "codebase-mcp", 8000)
    wait_for(
        lambda: k.json("cm", "codebase-pool")["data"]["pool-size"] == "15",
        timeout=60,
        what="the ConfigMap key raised",
    )
    # The kubelet updates the mounted file; the running server applies it live.
    assert wait_for(lambda: _pool_total(k, "codebase-mcp") == 15, timeout=120, what="pool 15")
    wait_for(lambda: k.health("codebase-mcp") == "Healthy", timeout=60, what="Healthy again")
    assert {p["metadata"]["name"] for p in k.pods("app=codebase-mcp")} == pods_before
    k.apply(_configmap_back())


def _configmap_back() -> str:
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "codebase-pool"},
            "data": {"pool-size": "10"},
        }
    )


def test_pool_scaling_through_the_env_var_rolls_the_deployment(fresh: Kube) -> None:
    k = fresh
    before = _replicasets(k, "workflow-mcp")
    scaling = SCALE.format(workload="workflow-mcp", method="env", extra="")
    k.apply(monitor("workflow-mcp", "workflow-mcp", "mcp", extra=scaling))
    wait_for(lambda: k.health("workflow-mcp") == "Healthy", timeout=60, what="Healthy")
    saturate(k, "workflow-mcp", 8001)
    wait_for(lambda: k.events("workflow-mcp", "PoolScaled"), timeout=60, what="PoolScaled")
    wait_for(
        lambda: len(_replicasets(k, "workflow-mcp")) == len(before) + 1,
        timeout=60,
        what="a new ReplicaSet",
    )
    k.rollout("deployment/workflow-mcp")
    [pod] = k.pods("app=workflow-mcp")
    env = {e["name"]: e.get("value") for e in pod["spec"]["containers"][0]["env"]}
    assert env["DB_POOL_MAX_SIZE"] == "15"
    total = asyncio.run(_read_pool_total(pod["status"]["podIP"], 8001))
    assert total == 15
    wait_for(lambda: k.health("workflow-mcp") == "Healthy", timeout=60, what="Healthy again")
    k("set", "env", "deployment/workflow-mcp", "DB_POOL_MAX_SIZE=10")


async def _read_pool_total(ip: str, port: int) -> int:
    prober = Prober(Target(f"http://{ip}:{port}"), timeout=5)
    try:
        result = await prober.probe()
    finally:
        await prober.aclose()
    assert result.document is not None and result.document.connection_pool is not None
    return result.document.connection_pool.total_connections
