"""``helm install`` into the cluster, as a user's first step: both RBAC modes.

The operator runs from the image built from the unchanged Dockerfile, as uid
65532 without a passwd entry, on a read-only root filesystem; the kubelet
really probes it; a real Prometheus scrapes it through the metrics Service.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import pytest

from mcp_health_testbed import cluster as cluster_mod
from tests.cluster.conftest import CHART, Kube, install_operator, wait_for
from tests.packaging.prometheus import Prometheus

RELEASE = "mcph"


def _kubelet_probes(cluster: cluster_mod.Cluster, pod: str) -> dict[str, float]:
    """The kubelet's own count of probes of ``pod`` (its /metrics/probes), by type and result."""
    text = cluster.kubectl(
        "get", "--raw", f"/api/v1/nodes/{cluster_mod.NODE_NAME}/proxy/metrics/probes"
    )
    counts: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("prober_probe_total{") and f'pod="{pod}"' in line:
            labels = dict(re.findall(r'(\w+)="([^"]*)"', line))
            key = f"{labels['probe_type']}/{labels['result']}"
            counts[key] = counts.get(key, 0.0) + float(line.rsplit(" ", 1)[1])
    return counts


def _operator_pod(k: Kube) -> dict[str, Any]:
    pods = k.pods("app.kubernetes.io/name=mcp-health-operator")
    assert len(pods) == 1, [p["metadata"]["name"] for p in pods]
    return pods[0]


def _released_objects(k: Kube, release: str) -> list[str]:
    """Everything still labelled with the release, in its namespace and cluster-wide."""
    kinds = "deploy,rs,pods,svc,sa,cm,secrets,roles,rolebindings,leases"
    left = k("get", kinds, "-l", f"app.kubernetes.io/instance={release}", "-o", "name").stdout
    cluster_left = k(
        "get", "clusterroles,clusterrolebindings", "-l",
        f"app.kubernetes.io/instance={release}", "-o", "name",
    ).stdout  # fmt: skip
    leases = k("get", "leases", "-o", "name").stdout
    return [*left.split(), *cluster_left.split(), *leases.split()]


@pytest.mark.parametrize("scope", ["cluster", "namespaced"])
def test_helm_install_runs_the_image_ready_probed_and_scraped(
    cluster: cluster_mod.Cluster, kube: Kube, scope: str, tmp_path: Path
) -> None:
    values = [f"rbac.scope={scope}"]
    if scope == "namespaced":
        values.append(f"watchNamespaces={{{kube.namespace}}}")
    k = Kube(cluster.kubeconfig, f"{kube.namespace}-op")
    try:
        _install_probe_scrape_upgrade_uninstall(cluster, k, values, tmp_path)
    finally:
        k.helm_quiet("uninstall", RELEASE, "-n", k.namespace)
        k("delete", "namespace", k.namespace, "--wait=false", check=False)


def _install_probe_scrape_upgrade_uninstall(
    cluster: cluster_mod.Cluster, k: Kube, values: list[str], tmp_path: Path
) -> None:
    install_operator(cluster, RELEASE, *values, namespace=k.namespace)
    pod = _operator_pod(k)
    name = str(pod["metadata"]["name"])
    spec = pod["spec"]
    assert spec["containers"][0]["image"] == "mcp-health-operator:0.1.0"
    assert spec["containers"][0]["securityContext"]["readOnlyRootFilesystem"] is True
    # uid 65532 has no passwd entry in the image: the start-up crash this guards against.
    uid = k("exec", name, "--", "python", "-c", "import os; print(os.getuid())").stdout
    assert uid.strip() == "65532"
    assert ":65532:" not in k("exec", name, "--", "cat", "/etc/passwd").stdout

    # The kubelet itself probed readiness and liveness, successfully.
    probes = wait_for(
        lambda: (c := _kubelet_probes(cluster, name)).get("Liveness/successful") and c,
        timeout=60,
        what="a successful liveness probe by the kubelet",
    )
    assert probes.get("Readiness/successful", 0) >= 1, probes
    # Readiness may fail once while the process starts; liveness never.
    assert probes.get("Liveness/failed", 0) == 0, probes
    ready = [c for c in k.json("pod", name)["status"]["conditions"] if c["type"] == "Ready"]
    assert ready[0]["status"] == "True"

    # A real Prometheus scrapes the operator through its metrics Service.
    svc = k.json("svc", "-l", "app.kubernetes.io/name=mcp-health-operator")["items"][0]
    target = f"{svc['spec']['clusterIP']}:{svc['spec']['ports'][0]['port']}"
    with Prometheus(tmp_path / "prom", scrape_targets=[target]) as prom:
        found = prom.wait_for("mcp_operator_info", timeout=60)
        assert found[0]["metric"]["instance"] == target

    log = k("logs", name).stdout
    assert "Traceback" not in log and "getpwuid" not in log, log[-2000:]
    assert " 403" not in log and "Forbidden" not in log, log[-2000:]

    # An upgrade rolls the pod with the new value; uninstall leaves nothing behind.
    k.helm(
        "upgrade", RELEASE, str(CHART), "-n", k.namespace, "--reuse-values",
        "--set", "operator.heartbeatSeconds=120", "--wait", "--timeout", "180s",
    )  # fmt: skip
    upgraded = _operator_pod(k)
    assert "--heartbeat=120" in upgraded["spec"]["containers"][0]["args"]
    assert upgraded["metadata"]["name"] != name
    k.helm("uninstall", RELEASE, "-n", k.namespace, "--wait", "--timeout", "120s")
    left: list[str] = []
    for _ in range(120):
        left = _released_objects(k, RELEASE)
        if not left:
            break
        time.sleep(0.5)
    assert not left, f"left after helm uninstall: {left}"
