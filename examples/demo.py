"""The demo: real control plane, real PostgreSQL, both sample MCP servers, ``mcp-health check``.

make demo                 # runs start to finish, then cleans up
make demo DEMO_ARGS=--keep  # leaves everything running for exploration (Ctrl-C ends it)
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mcp_health_operator.testing import controlplane, postgres, samples

# The console script installed next to this interpreter (the venv's bin/).
MCP_HEALTH = str(Path(sys.executable).parent / "mcp-health")


def step(text: str) -> None:
    print(f"\n\033[1m==> {text}\033[0m", flush=True)


def run(*argv: str) -> int:
    print("$ " + " ".join(argv), flush=True)
    return subprocess.run(argv, check=False).returncode


def check(server: samples.SampleServer) -> int:
    transport = "sse" if server.transport == "sse" else "streamable-http"
    code = run(MCP_HEALTH, "check", server.base_url, "--transport", transport)
    print(f"(exit code {code})")
    return code


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--keep", action="store_true", help="keep running until Ctrl-C")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="mcp-health-demo-"))
    plane = controlplane.ControlPlane(workdir=workdir / "cp")
    pg = postgres.temporary()
    servers: list[samples.SampleServer] = []
    failures = 0
    try:
        step("Kubernetes control plane (kube-apiserver + etcd, built from the Go module proxy)")
        plane.start()
        kubectl = str(controlplane.kubectl_binary())
        run(kubectl, "--kubeconfig", str(plane.kubeconfig), "get", "namespaces")

        step("PostgreSQL and the guide's two sample MCP servers")
        pg.start()
        print(f"PostgreSQL at {pg.dsn}")
        servers.append(samples.SampleServer("codebase-mcp", dsn=pg.dsn).start())
        servers.append(samples.SampleServer("workflow-mcp", dsn=pg.dsn, transport="sse").start())
        for server in servers:
            print(f"{server.profile} ({server.transport}) at {server.url}")

        step("mcp-health check against both: healthy, exit 0")
        failures += sum(check(server) != 0 for server in servers)

        step("Stop PostgreSQL: the servers report unhealthy, exit 1")
        pg.stop()
        failures += sum(check(server) != 1 for server in servers)

        step("Start PostgreSQL again: healthy once the pools reconnect")
        pg.start()
        time.sleep(2)
        failures += sum(check(server) != 0 for server in servers)

        if args.keep:
            step("Running; Ctrl-C to stop")
            print(f"export KUBECONFIG={plane.kubeconfig}")
            while True:
                time.sleep(1)
    except KeyboardInterrupt:
        pass
    finally:
        step("Cleaning up")
        for server in servers:
            server.stop()
        pg.stop()
        plane.stop()
        shutil.rmtree(workdir, ignore_errors=True)
        shutil.rmtree(pg.workdir, ignore_errors=True)
    print("demo finished" + (f" with {failures} unexpected results" if failures else ""))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
