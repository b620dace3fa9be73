"""The demo on a real single-node cluster (``make demo DEMO_ARGS=--cluster``).

Acts: the cluster (reused if ``make cluster`` left one running); the operator
installed with helm from the locally built image; PostgreSQL and the guide's
two MCP servers as pods; monitors naming their Services go Healthy by cluster
DNS; PostgreSQL stopped, both Unhealthy with Events; codebase-mcp's pool
exhausted and the operator restarting its Deployment (ReplicaSets before and
after); PostgreSQL back, recovery; the operator's metrics through its Service.
Cleans up afterwards (``--keep`` leaves it all running).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
import urllib.request
from pathlib import Path

from mcp import Client

from mcp_health_testbed import cluster as cluster_mod
from mcp_health_testbed import controlplane, helm

EXAMPLES = Path(__file__).resolve().parent
REPO = EXAMPLES.parent
RELEASE = "mcp-health"
OPERATOR_NS = "mcp-health-system"
NS = "mcp-demo"

MONITORS = """apiVersion: mcphealth.dev/v1alpha1
kind: MCPHealthMonitor
metadata: {{name: codebase-mcp}}
spec:
  target: {{service: {{name: codebase-mcp, port: 8000}}}}
  probe: {{interval: 2s, timeout: 1500ms, failureThreshold: 3}}
  remediation:
    cooldown: 10m
    workload: {{name: codebase-mcp}}
    restart: {{after: {after}}}
---
apiVersion: mcphealth.dev/v1alpha1
kind: MCPHealthMonitor
metadata: {{name: workflow-mcp}}
spec:
  target: {{service: {{name: workflow-mcp, port: mcp}}}}
  probe: {{interval: 2s, timeout: 1500ms, failureThreshold: 3}}
"""


def step(text: str) -> None:
    print(f"\n\033[1m==> {text}\033[0m", flush=True)


class ClusterDemo:
    def __init__(self) -> None:
        self.cluster: cluster_mod.Cluster | None = None
        self.started_cluster = False

    def run_cmd(self, argv: list[str], show: str, check: bool = True) -> str:
        print(f"$ {show}", flush=True)
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
        if check and done.returncode != 0:
            raise RuntimeError(f"{show}: {done.stderr}")
        return done.stdout

    def kubectl(self, *args: str, show: bool = True, ns: str | None = NS) -> str:
        assert self.cluster is not None
        argv = [str(controlplane.kubectl_binary()), "--kubeconfig", str(self.cluster.kubeconfig)]
        scoped = ["-n", ns] if ns else []
        if not show:
            done = subprocess.run([*argv, *scoped, *args], capture_output=True, text=True)
            if done.returncode != 0:
                raise RuntimeError(f"kubectl {' '.join(args)}: {done.stderr}")
            return done.stdout
        return self.run_cmd([*argv, *scoped, *args], "kubectl " + " ".join([*scoped, *args]))

    def show(self, *args: str, ns: str | None = NS) -> None:
        print(self.kubectl(*args, ns=ns), end="", flush=True)

    def helm(self, *args: str) -> None:
        assert self.cluster is not None
        argv = [str(helm.helm_binary()), "--kubeconfig", str(self.cluster.kubeconfig), *args]
        print(self.run_cmd(argv, "helm " + " ".join(args)), end="", flush=True)

    def wait(self, what: str, predicate: object, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():  # type: ignore[operator]
                return True
            time.sleep(1)
        print(f"!! {what}: not within {timeout:.0f}s", flush=True)
        return False

    def healths(self) -> dict[str, str]:
        items = json.loads(self.kubectl("get", "mcphealth", "-o", "json", show=False))["items"]
        return {i["metadata"]["name"]: (i.get("status") or {}).get("health", "") for i in items}

    def all_are(self, health: str) -> bool:
        found = self.healths()
        return len(found) == 2 and all(h == health for h in found.values())

    def replicasets(self) -> None:
        self.show("get", "rs", "-l", "app=codebase-mcp", "-o", "wide")

    def run(self) -> int:
        missed = 0
        step("A single-node cluster: kubelet, containerd, CoreDNS, kube-proxy")
        self.started_cluster = cluster_mod.running() is None
        self.cluster = cluster_mod.up()
        print(f"export KUBECONFIG={self.cluster.kubeconfig}")
        self.show("get", "nodes", "-o", "wide", ns=None)

        self.kubectl("create", "namespace", NS, ns=None)
        step("helm install of the operator (the image built from the Dockerfile)")
        print(f"remediation granted in {NS} only (a Role there), for the labelled workloads")
        chart = str(REPO / "helm" / "mcp-health-operator")
        self.helm(
            "upgrade", "--install", RELEASE, chart, "-n", OPERATOR_NS, "--create-namespace",
            "--set", "image.pullPolicy=Never", "--set", "remediation.enabled=true",
            "--set", f"remediation.namespaces={{{NS}}}", "--wait", "--timeout", "180s",
        )  # fmt: skip

        step("The guide's servers as pods: PostgreSQL, codebase-mcp, workflow-mcp")
        self.kubectl("apply", "-f", str(EXAMPLES / "cluster" / "postgres.yaml"))
        self.kubectl("apply", "-f", str(EXAMPLES / "cluster" / "servers.yaml"))
        for workload in ("statefulset/postgres", "deploy/codebase-mcp", "deploy/workflow-mcp"):
            self.kubectl("rollout", "status", workload, "--timeout=180s")
        self.show("get", "pods", "-A", "-o", "wide", ns=None)

        step("Monitors name the Services; the operator finds them by cluster DNS")
        print(f"$ kubectl -n {NS} apply -f - <<EOF\n{MONITORS.format(after='6s')}EOF")
        kubectl = [str(controlplane.kubectl_binary()), "--kubeconfig", str(self.cluster.kubeconfig)]
        subprocess.run(
            [*kubectl, "-n", NS, "apply", "-f", "-"],
            input=MONITORS.format(after="6s"),
            text=True,
            check=True,
        )
        missed += not self.wait("both Healthy", lambda: self.all_are("Healthy"), 90)
        self.show("get", "mcphealth")

        step("Outage: PostgreSQL's pod stopped")
        self.kubectl("scale", "statefulset/postgres", "--replicas=0")
        missed += not self.wait("both Unhealthy", lambda: self.all_are("Unhealthy"), 90)
        self.show("get", "mcphealth", "-o", "wide")
        self.show("get", "events", "--field-selector", "source=mcp-health-operator")

        step("PostgreSQL back: recovery")
        self.kubectl("scale", "statefulset/postgres", "--replicas=1")
        self.kubectl("rollout", "status", "statefulset/postgres", "--timeout=120s")
        missed += not self.wait("both Healthy", lambda: self.all_are("Healthy"), 120)
        self.show("get", "mcphealth")

        step("codebase-mcp's pool exhausted: the operator restarts its Deployment")
        self.replicasets()
        pod = json.loads(self.kubectl("get", "pods", "-l", "app=codebase-mcp", "-o", "json"))
        ip = pod["items"][0]["status"]["podIP"]
        asyncio.run(_saturate(f"http://{ip}:8000/mcp"))
        missed += not self.wait(
            "a restart",
            lambda: (
                "RestartTriggered"
                in self.kubectl(
                    "get", "events", "--field-selector", "reason=RestartTriggered", show=False
                )
            ),
            90,
        )
        self.kubectl("rollout", "status", "deploy/codebase-mcp", "--timeout=180s")
        self.replicasets()
        self.show("get", "pods", "-l", "app=codebase-mcp")
        missed += not self.wait("both Healthy", lambda: self.all_are("Healthy"), 90)
        self.show("get", "mcphealth")
        self.show("get", "events", "--field-selector", "source=mcp-health-operator")

        step("The operator's metrics, through its Service")
        svc = json.loads(
            self.kubectl(
                "get",
                "svc",
                "-l",
                "app.kubernetes.io/instance=" + RELEASE,
                "-o",
                "json",
                ns=OPERATOR_NS,
                show=False,
            )
        )["items"][0]
        url = f"http://{svc['spec']['clusterIP']}:{svc['spec']['ports'][0]['port']}/metrics"
        print(f"$ curl {url} | grep ...")
        with urllib.request.urlopen(url, timeout=10) as response:
            for line in response.read().decode().splitlines():
                if line.startswith(
                    (
                        "mcp_health_status{",
                        "mcp_pool_utilization{",
                        "mcp_remediation_actions_total{",
                    )
                ):
                    print(line)
        return missed

    def cleanup(self) -> None:
        if self.cluster is None:
            return
        step("Cleaning up")
        self.kubectl("delete", "namespace", NS, "--wait=false", ns=None, show=False)
        argv = [str(helm.helm_binary()), "--kubeconfig", str(self.cluster.kubeconfig)]
        subprocess.run([*argv, "uninstall", RELEASE, "-n", OPERATOR_NS], capture_output=True)
        if self.started_cluster:
            left = cluster_mod.down()
            print("cluster down" + (f"; left behind: {left}" if left else "; nothing left"))


async def _saturate(url: str) -> None:
    async with Client(url, cache=None) as client:
        await client.call_tool("saturate_pool", {"connections": 10, "seconds": 300})


def main(keep: bool = False) -> int:
    demo = ClusterDemo()
    missed = 0
    try:
        missed = demo.run()
        if keep:
            step("Running; Ctrl-C to stop")
            while True:
                time.sleep(1)
    except KeyboardInterrupt:
        pass
    finally:
        demo.cleanup()
    print("demo finished" + (f" with {missed} acts that missed" if missed else ""))
    return 1 if missed else 0
