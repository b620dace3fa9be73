"""The cluster suite: the operator installed with helm on a real node, as users run it.

One cluster per session (``testing.cluster.session``: reuses one started by
``make cluster``, else starts it and takes it down at the end, failing if
anything of it is left behind). No ``--resolve``: monitors name Services and
the operator, a pod, finds them by cluster DNS.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from mcp_health_testbed import cluster as cluster_mod
from mcp_health_testbed import controlplane, helm
from tests.e2e.conftest import wait_for

__all__ = ["wait_for"]  # the suite's modules import it from here

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "helm" / "mcp-health-operator"
EXAMPLES = REPO / "examples" / "cluster"
OPERATOR_NS = "mcp-health-system"


@pytest.fixture(scope="package")
def cluster() -> Iterator[cluster_mod.Cluster]:
    with cluster_mod.session() as running:
        yield running


@dataclass
class Kube:
    """kubectl and helm against the cluster, bound to one namespace."""

    kubeconfig: Path
    namespace: str

    def __call__(
        self, *args: str, stdin: str | None = None, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        argv = [str(controlplane.kubectl_binary()), "--kubeconfig", str(self.kubeconfig)]
        done = subprocess.run(
            [*argv, "-n", self.namespace, *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and done.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed: {done.stderr}")
        return done

    def json(self, *args: str) -> Any:
        return json.loads(self("get", *args, "-o", "json").stdout)

    def apply(self, manifest: str | Path) -> None:
        if isinstance(manifest, Path):
            self("apply", "-f", str(manifest))
        else:
            self("apply", "-f", "-", stdin=manifest)

    def helm(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [str(helm.helm_binary()), "--kubeconfig", str(self.kubeconfig), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if done.returncode != 0:
            raise AssertionError(f"helm {' '.join(args)} failed: {done.stderr}")
        return done

    def helm_quiet(self, *args: str) -> None:
        """helm for cleaning up: whatever it says is fine."""
        subprocess.run(
            [str(helm.helm_binary()), "--kubeconfig", str(self.kubeconfig), *args],
            capture_output=True,
            timeout=300,
        )

    def events(self, name: str, reason: str | None = None) -> list[dict[str, Any]]:
        items = self.json("events", "--field-selector", f"involvedObject.name={name}")["items"]
        return [
            e
            for e in items
            if e.get("source", {}).get("component") == "mcp-health-operator"
            and (reason is None or e["reason"] == reason)
        ]

    def rollout(self, kind_name: str, timeout: int = 120) -> None:
        self("rollout", "status", kind_name, f"--timeout={timeout}s", timeout=timeout + 10)

    def health(self, monitor: str) -> str | None:
        done = self("get", "mcphealth", monitor, "-o", "json", check=False)
        if done.returncode != 0:
            return None
        value = json.loads(done.stdout).get("status", {}).get("health")
        return str(value) if value else None

    def pods(self, selector: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self.json("pods", "-l", selector)["items"]
        return [p for p in items if not p["metadata"].get("deletionTimestamp")]


def when(value: Any, condition: Callable[[Any], bool]) -> Any:
    """``value`` if ``condition(value)``, else None: for ``wait_for`` predicates."""
    return value if condition(value) else None


@pytest.fixture
def kube(cluster: cluster_mod.Cluster) -> Iterator[Kube]:
    """A namespace of the test's own, deleted afterwards."""
    namespace = f"t-{uuid.uuid4().hex[:6]}"
    k = Kube(cluster.kubeconfig, namespace)
    k("create", "namespace", namespace)
    yield k
    k("delete", "namespace", namespace, "--wait=false", check=False)


def install_operator(
    cluster: cluster_mod.Cluster, release: str, *values: str, namespace: str = OPERATOR_NS
) -> Kube:
    """``helm upgrade --install`` of the chart with the locally built image; waits for Ready."""
    k = Kube(cluster.kubeconfig, namespace)
    sets = [arg for value in values for arg in ("--set", value)]
    k.helm(
        "upgrade", "--install", release, str(CHART), "-n", namespace, "--create-namespace",
        "--set", "image.pullPolicy=Never", *sets, "--wait", "--timeout", "180s",
    )  # fmt: skip
    return k


def remediation_in(namespace: str) -> tuple[str, ...]:
    """The chart's values that let remediation act in ``namespace`` (a Role there)."""
    return ("remediation.enabled=true", f"remediation.namespaces={{{namespace}}}")


def guide_servers(k: Kube) -> None:
    """PostgreSQL, codebase-mcp and workflow-mcp in ``k``'s namespace, all Ready."""
    k.apply(EXAMPLES / "postgres.yaml")
    k.apply(EXAMPLES / "servers.yaml")
    k.rollout("statefulset/postgres")
    k.rollout("deployment/codebase-mcp")
    k.rollout("deployment/workflow-mcp")


def monitor(
    name: str,
    service: str,
    port: int | str,
    *,
    interval: str = "2s",
    failure_threshold: int = 2,
    extra: str = "",
) -> str:
    return f"""apiVersion: mcphealth.dev/v1alpha1
kind: MCPHealthMonitor
metadata: {{name: {name}}}
spec:
  target: {{service: {{name: {service}, port: {port}}}}}
  probe: {{interval: {interval}, timeout: 1500ms, failureThreshold: {failure_threshold}}}
{extra}"""
