"""The demo, unattended: a real control plane, PostgreSQL, the guide's two MCP servers,
the operator, and an outage.

    make demo                      # runs start to finish (about 2 minutes), then cleans up
    make demo DEMO_ARGS=--keep     # leaves everything running for exploration (Ctrl-C ends it)
    make demo DEMO_ARGS=--remediation   # adds an act: pool exhaustion healed live via MCP tool
    make demo DEMO_ARGS=--cluster  # the same story on a real single-node cluster (demo_cluster.py)

Acts: the monitors go Healthy; PostgreSQL stops and both go Unhealthy with
Events; PostgreSQL comes back and both recover; the metrics are shown.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from mcp_health_testbed import _procs, controlplane, postgres, samples

EXAMPLES = Path(__file__).resolve().parent
REPO = EXAMPLES.parent
# The console script installed next to this interpreter (the venv's bin/).
MCP_HEALTH = str(Path(sys.executable).parent / "mcp-health")


def step(text: str) -> None:
    print(f"\n\033[1m==> {text}\033[0m", flush=True)


class Demo:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.plane = controlplane.ControlPlane(workdir=workdir / "cp")
        self.pg = postgres.temporary()
        self.servers: list[samples.SampleServer] = []
        self.operator: subprocess.Popen[bytes] | None = None
        self.metrics_port = 9090

    def kubectl(self, *args: str, show: bool = True) -> str:
        argv = [str(controlplane.kubectl_binary()), "--kubeconfig", str(self.plane.kubeconfig)]
        if show:
            print("$ kubectl " + " ".join(args), flush=True)
        done = subprocess.run([*argv, *args], capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"kubectl {' '.join(args)}: {done.stderr}")
        return done.stdout

    def healths(self) -> dict[str, str]:
        out = self.kubectl(
            "get",
            "mcphealth",
            "-o",
            "jsonpath={range .items[*]}{.metadata.name}={.status.health}{'\\n'}{end}",
            show=False,
        )
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def wait_all(self, health: str, timeout: float) -> bool:
        """Print the table whenever it changes, until every monitor has ``health``."""
        deadline, last = time.monotonic() + timeout, ""
        while time.monotonic() < deadline:
            # Print when a verdict, reason or failure count moves, not every second.
            key = self.kubectl(
                "get",
                "mcphealth",
                "-o",
                "jsonpath={range .items[*]}{.status.health}{.status.reason}"
                "{.status.consecutiveFailures}{end}",
                show=False,
            )
            if key != last:
                print(self.kubectl("get", "mcphealth", "-o", "wide", show=False), flush=True)
                last = key
            current = self.healths()
            if current and all(h == health for h in current.values()):
                return True
            time.sleep(1)
        print(f"!! not all {health} within {timeout:.0f}s: {self.healths()}")
        return False

    def start(self) -> None:
        step("A real Kubernetes control plane (kube-apiserver + etcd, built from source)")
        self.plane.start()
        print(self.kubectl("get", "namespaces"))
        print(self.kubectl("apply", "-f", str(REPO / "crds")))
        self.kubectl("wait", "--for=condition=Established", "crd/mcphealthmonitors.mcphealth.dev")

        step("PostgreSQL and the guide's two sample MCP servers (official mcp SDK)")
        self.pg.start()
        print(f"PostgreSQL at {self.pg.dsn}")
        self.servers = [
            samples.SampleServer("codebase-mcp", dsn=self.pg.dsn).start(),
            samples.SampleServer("workflow-mcp", dsn=self.pg.dsn, transport="sse").start(),
        ]
        for server in self.servers:
            print(f"{server.profile} ({server.transport}) listening at {server.url}")
        print(self.kubectl("apply", "-f", str(EXAMPLES / "monitors" / "services.yaml")))

        step("mcp-health check, the guide's one-shot script")
        for server in self.servers:
            transport = "sse" if server.transport == "sse" else "streamable-http"
            code = subprocess.run(
                [MCP_HEALTH, "check", server.base_url, "--transport", transport], check=False
            ).returncode
            print(f"(exit code {code})")

        step("The operator")
        if not _port_free(self.metrics_port):
            self.metrics_port = _procs.free_port()
        codebase, workflow = self.servers
        argv = [
            MCP_HEALTH,
            "run",
            "--metrics-port",
            str(self.metrics_port),
            # Outside a cluster network, Service names are resolved here instead.
            "--resolve",
            f"codebase-mcp.default.svc:8000=127.0.0.1:{codebase.port}",
            "--resolve",
            f"workflow-mcp.default.svc:8001=127.0.0.1:{workflow.port}",
        ]
        print("$ " + " ".join(argv[:4]) + " --resolve ...", flush=True)
        log = self.workdir / "operator.log"
        self.operator = subprocess.Popen(
            argv,
            env={**os.environ, "KUBECONFIG": str(self.plane.kubeconfig)},
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        _procs.wait_for_port("127.0.0.1", self.metrics_port, timeout=30, proc=self.operator)
        print(f"operator log: {log}")

    def run(self) -> int:
        failures = 0
        step("kubectl apply -f examples/monitors/ : both monitors go Healthy")
        print(self.kubectl("apply", "-f", str(EXAMPLES / "monitors")))
        failures += not self.wait_all("Healthy", 60)

        step("Stop PostgreSQL: Unhealthy after failureThreshold (3) probes, with Events")
        self.pg.stop()
        failures += not self.wait_all("Unhealthy", 60)
        print(
            self.kubectl(
                "get", "events", "--field-selector", "involvedObject.kind=MCPHealthMonitor"
            )
        )

        step("Start PostgreSQL again: both recover")
        self.pg.start()
        failures += not self.wait_all("Healthy", 60)
        describe = self.kubectl("describe", "mcphealth", "codebase-mcp")
        print(describe[describe.find("Events:") :])

        step(f"Metrics at http://127.0.0.1:{self.metrics_port}/metrics")
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            text = response.read().decode()
        wanted = ("mcp_health_status", "mcp_pool_utilization", "mcp_database_latency_ms")
        for line in text.splitlines():
            if line.startswith(wanted):
                print(line)
        return failures

    def remediation_act(self) -> int:
        step("Remediation: exhaust codebase-mcp's pool; the operator grows it live (MCP tool)")
        patch = {
            "spec": {
                "remediation": {
                    "poolScaling": {"after": "10s", "step": 5, "max": 30, "method": "mcpTool"}
                }
            }
        }
        print(
            self.kubectl(
                "patch", "mcphealth", "codebase-mcp", "--type=merge", "-p", json.dumps(patch)
            )
        )
        codebase = self.servers[0]
        print(f"saturate_pool(connections=10) on {codebase.url}", flush=True)
        asyncio.run(_call_tool(codebase.url, "saturate_pool", {"connections": 10, "seconds": 300}))
        failures = not self.wait_all_of("codebase-mcp", "Unhealthy", 60)
        failures += not self.wait_all_of("codebase-mcp", "Healthy", 90)
        describe = self.kubectl("describe", "mcphealth", "codebase-mcp")
        print(describe[describe.find("Events:") :])
        return failures

    def wait_all_of(self, name: str, health: str, timeout: float) -> bool:
        deadline, last = time.monotonic() + timeout, ""
        while time.monotonic() < deadline:
            row = self.kubectl("get", "mcphealth", name, "-o", "wide", show=False)
            key = row.splitlines()[-1].split()[2] if row.strip() else ""
            if row.splitlines()[-1] != last:
                print(row.splitlines()[-1], flush=True)
                last = row.splitlines()[-1]
            if key == health:
                return True
            time.sleep(1)
        print(f"!! {name} not {health} within {timeout:.0f}s")
        return False

    def stop(self) -> None:
        _procs.stop(self.operator)
        for server in self.servers:
            server.stop()
        self.pg.stop()
        self.plane.stop()
        shutil.rmtree(self.pg.workdir, ignore_errors=True)


async def _call_tool(url: str, name: str, arguments: dict[str, object]) -> None:
    from mcp import Client

    async with Client(url, cache=None) as client:
        await client.call_tool(name, arguments)


def _port_free(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--keep", action="store_true", help="keep running until Ctrl-C")
    parser.add_argument(
        "--remediation", action="store_true", help="add the pool-scaling remediation act"
    )
    parser.add_argument(
        "--cluster",
        action="store_true",
        help="the demo on a real single-node cluster: helm install, pods, a real restart",
    )
    args = parser.parse_args()
    if args.cluster:
        import demo_cluster

        return demo_cluster.main(keep=args.keep)
    workdir = Path(tempfile.mkdtemp(prefix="mcp-health-demo-"))
    demo = Demo(workdir)
    failures = 0
    try:
        demo.start()
        failures = demo.run()
        if args.remediation:
            failures += demo.remediation_act()
        if args.keep:
            step("Running; Ctrl-C to stop")
            print(f"export KUBECONFIG={demo.plane.kubeconfig}")
            print(f"metrics: http://127.0.0.1:{demo.metrics_port}/metrics")
            while True:
                time.sleep(1)
    except KeyboardInterrupt:
        pass
    finally:
        step("Cleaning up")
        demo.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    print("demo finished" + (f" with {failures} acts that missed" if failures else ""))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
