"""Several pods: per-endpoint probing of one Deployment's replicas, and the operator's own.

- Three real replicas behind one Service; one made unhealthy: exactly that
  pod is deleted, its ReplicaSet replaces it, the monitor goes Healthy.
- The operator pod deleted mid-spell: the new pod resumes without repeating
  the action taken before; two operator replicas share (shard) or fail over
  (leader) the monitors.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from mcp_health_testbed import cluster as cluster_mod
from tests.cluster.conftest import (
    EXAMPLES,
    OPERATOR_NS,
    Kube,
    install_operator,
    monitor,
    remediation_in,
    wait_for,
    when,
)
from tests.cluster.test_guide_servers import _saturate

RELEASE = "replicas"

# Three replicas of codebase-mcp whose readiness is only "listening": an
# unhealthy replica stays an endpoint, so the per-endpoint probe judges it.
FLEET = """apiVersion: v1
kind: Service
metadata: {name: fleet}
spec:
  selector: {app: fleet}
  ports: [{name: mcp, port: 8000, targetPort: 8000}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: fleet, labels: {app: fleet, mcphealth.dev/allow-remediation: "true"}}
spec:
  replicas: 3
  selector: {matchLabels: {app: fleet}}
  template:
    metadata: {labels: {app: fleet}}
    spec:
      terminationGracePeriodSeconds: 2
      securityContext: {runAsUser: 10001, runAsNonRoot: true}
      containers:
        - name: server
          image: localhost/mcp-health/sample-servers:dev
          imagePullPolicy: Never
          command: ["python", "-m", "sample_mcp"]
          args: [--profile=codebase-mcp, --host=0.0.0.0, --port=8000,
                 "--dsn=postgresql://postgres@postgres:5432/postgres", --pool-size=10]
          ports: [{containerPort: 8000}]
          readinessProbe: {tcpSocket: {port: 8000}, periodSeconds: 2}
"""


@pytest.fixture(scope="module")
def ns(cluster: cluster_mod.Cluster) -> Iterator[Kube]:
    k = Kube(cluster.kubeconfig, f"rep-{uuid.uuid4().hex[:6]}")
    k("create", "namespace", k.namespace)
    install_operator(
        cluster, RELEASE, "replicaCount=2", "membership.mode=shard",
        "membership.leaseDurationSeconds=4", "membership.renewSeconds=1",
        *remediation_in(k.namespace),
    )  # fmt: skip
    k.apply(EXAMPLES / "postgres.yaml")
    k.apply(EXAMPLES / "servers.yaml")
    k.apply(FLEET)
    for workload in ("statefulset/postgres", "deployment/codebase-mcp", "deployment/fleet"):
        k.rollout(workload)
    yield k
    k("delete", "namespace", k.namespace, "--wait=false", check=False)
    Kube(cluster.kubeconfig, OPERATOR_NS).helm("uninstall", RELEASE, "-n", OPERATOR_NS, "--wait")


def _operator_pods(cluster: cluster_mod.Cluster, *, ready: bool = True) -> list[str]:
    """The operator's pods (not being deleted), only the Ready ones by default."""
    op = Kube(cluster.kubeconfig, OPERATOR_NS)
    pods = op.pods(f"app.kubernetes.io/instance={RELEASE}")
    return sorted(p["metadata"]["name"] for p in pods if _ready(p) or not ready)


def _ready(pod: dict[str, Any]) -> bool:
    conditions = pod.get("status", {}).get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


PER_ENDPOINT = """apiVersion: mcphealth.dev/v1alpha1
kind: MCPHealthMonitor
metadata: {name: fleet}
spec:
  target:
    service: {name: fleet, port: mcp}
    perEndpoint: {policy: all}
  probe: {interval: 2s, timeout: 1500ms, failureThreshold: 2}
  remediation:
    cooldown: 10m
    workload: {name: fleet}
    podDeletion: {after: 4s}
"""


def test_per_endpoint_deletes_exactly_the_unhealthy_pod(ns: Kube) -> None:
    k = ns
    k.apply(PER_ENDPOINT)
    # Healthy may come while the third replica is still starting: all three listed.
    wait_for(
        lambda: (
            k.health("fleet") == "Healthy"
            and len(k.json("mcphealth", "fleet")["status"].get("endpoints") or []) == 3
        ),
        timeout=90,
        what="Healthy with three endpoints",
    )
    pods = {p["metadata"]["name"]: p["status"]["podIP"] for p in k.pods("app=fleet")}
    victim = sorted(pods)[0]
    replicasets = {rs["metadata"]["name"] for rs in k.json("rs", "-l", "app=fleet")["items"]}

    import asyncio

    asyncio.run(_saturate(pods[victim], 8000, 10))
    deleted = wait_for(lambda: k.events("fleet", "PodDeleted"), timeout=60, what="PodDeleted")
    assert victim in deleted[0]["message"]
    wait_for(
        lambda: victim not in {p["metadata"]["name"] for p in k.pods("app=fleet")},
        timeout=60,
        what="the victim gone",
    )
    now = wait_for(
        lambda: when(
            {p["metadata"]["name"] for p in k.pods("app=fleet") if _ready(p)},
            lambda names: len(names) == 3,
        ),
        timeout=90,
        what="three ready replicas again",
    )
    # Exactly that pod: the other two are the same pods, the ReplicaSet made one new.
    assert set(pods) - now == {victim}
    assert {rs["metadata"]["name"] for rs in k.json("rs", "-l", "app=fleet")["items"]} == (
        replicasets
    )
    wait_for(lambda: k.health("fleet") == "Healthy", timeout=90, what="Healthy again")
    assert len(k.events("fleet", "PodDeleted")) == 1
    k("delete", "mcphealth", "fleet")


def test_two_operator_replicas_share_the_monitors(ns: Kube, cluster: cluster_mod.Cluster) -> None:
    k = ns
    members = wait_for(
        lambda: when(_operator_pods(cluster), lambda pods: len(pods) == 2),
        timeout=60,
        what="two ready operator pods",
    )
    for i in range(10):
        k.apply(monitor(f"share-{i}", "codebase-mcp", 8000, interval="3s"))

    def probed_by() -> dict[str, str] | None:
        found = {}
        for item in k.json("mcphealth")["items"]:
            if item["metadata"]["name"].startswith("share-"):
                status = item.get("status") or {}
                if status.get("health") != "Healthy" or not status.get("probedBy"):
                    return None
                found[item["metadata"]["name"]] = status["probedBy"]
        return found if len(found) == 10 else None

    owners = wait_for(probed_by, timeout=90, what="10 monitors Healthy with probedBy")
    assert set(owners.values()) == set(members), owners

    # One replica killed outright: the other (and its replacement) take over.
    victim = members[0]
    op = Kube(cluster.kubeconfig, OPERATOR_NS)
    op("delete", "pod", victim, "--grace-period=0", "--force")
    moved = wait_for(
        lambda: (o := probed_by()) and victim not in o.values() and o,
        timeout=90,
        what=f"every monitor probed by a replica other than {victim}",
    )
    assert set(moved.values()) <= set(_operator_pods(cluster, ready=False))
    for i in range(10):
        k("delete", "mcphealth", f"share-{i}", "--wait=false")


RESTART_ONCE = """  remediation:
    cooldown: 30m
    workload: {name: codebase-mcp}
    restart: {after: 2s}
"""


def test_operator_pod_deleted_mid_spell_resumes_without_repeating(
    ns: Kube, cluster: cluster_mod.Cluster
) -> None:
    k = ns
    k.apply(monitor("spell", "codebase-mcp", 8000, extra=RESTART_ONCE))
    wait_for(lambda: k.health("spell") == "Healthy", timeout=60, what="Healthy")
    # PostgreSQL away: every codebase-mcp pod stays unhealthy, restart or not.
    k("scale", "statefulset/postgres", "--replicas=0")
    wait_for(lambda: k.events("spell", "RestartTriggered"), timeout=90, what="one restart")
    restarted = k.json("deploy", "codebase-mcp")["spec"]["template"]["metadata"]["annotations"]
    op = Kube(cluster.kubeconfig, OPERATOR_NS)
    for pod in _operator_pods(cluster):
        op("delete", "pod", pod, "--wait=false")
    wait_for(lambda: len(_operator_pods(cluster)) == 2, timeout=90, what="new operator pods")
    status = wait_for(
        lambda: (
            (s := k.json("mcphealth", "spell").get("status", {})).get("probedBy")
            in _operator_pods(cluster)
            and s
        ),
        timeout=60,
        what="the monitor probed by a new pod",
    )
    assert status["health"] == "Unhealthy"
    # The spell goes on under the new pods; the restart already done is not repeated.
    import time

    time.sleep(15)
    again = k.json("deploy", "codebase-mcp")["spec"]["template"]["metadata"]["annotations"]
    assert again == restarted
    assert len(k.events("spell", "RestartTriggered")) == 1
    k("scale", "statefulset/postgres", "--replicas=1")
    k.rollout("statefulset/postgres")
    wait_for(lambda: k.health("spell") == "Healthy", timeout=120, what="Healthy again")
    k("delete", "mcphealth", "spell")


def test_leader_mode_one_replica_probes_all_and_the_other_takes_over(
    ns: Kube, cluster: cluster_mod.Cluster
) -> None:
    k = ns
    install_operator(
        cluster, RELEASE, "replicaCount=2", "membership.mode=leader",
        "membership.leaseDurationSeconds=4", "membership.renewSeconds=1",
        *remediation_in(k.namespace),
    )  # fmt: skip
    wait_for(lambda: len(_operator_pods(cluster)) == 2, timeout=90, what="two operator pods")
    for i in range(4):
        k.apply(monitor(f"lead-{i}", "codebase-mcp", 8000, interval="2s"))

    def probers() -> set[str] | None:
        items = [
            i for i in k.json("mcphealth")["items"] if i["metadata"]["name"].startswith("lead-")
        ]
        found = {str((i.get("status") or {}).get("probedBy")) for i in items}
        live = set(_operator_pods(cluster))
        return found if len(items) == 4 and len(found) == 1 and found <= live else None

    [leader] = wait_for(probers, timeout=90, what="one live replica probing all four")
    op = Kube(cluster.kubeconfig, OPERATOR_NS)
    op("delete", "pod", leader, "--grace-period=0", "--force")
    [successor] = wait_for(
        lambda: (p := probers()) and leader not in p and p,
        timeout=90,
        what="the standby probing all four",
    )
    assert successor != leader
    for i in range(4):
        k("delete", "mcphealth", f"lead-{i}", "--wait=false")
