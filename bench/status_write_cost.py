"""Benchmark: the API server's CPU per status write, the CRD as shipped against a per-field one.

The shipped CRD declares the status ``x-kubernetes-map-type: atomic``: the
API server's field manager records the writer's ownership as ``f:status:
{}`` instead of every leaf of the status again. This starts the test
control plane (real kube-apiserver and etcd), installs the CRD twice, as
shipped (group ``mcphealth.dev``) and without the atomic marker (the same
schema under ``perfield.mcphealth.dev``), makes ``--monitors`` monitors of
each, and writes each monitor's status (a merge patch of the status the
operator builds from the guide's example document), in batches taken in
turn, A then B, B then A, 20 requests in flight. Then once more (a
monitor's second write, over its first). The API server's CPU
(``/proc``) over each batch, a second after its last answer, is divided by
the batch's writes; reported are the medians and the ratios of the pairs.

    python bench/status_write_cost.py [--monitors 4000] [--batch 500]
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: the repository, not bench/, on the path
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import argparse
import asyncio
import copy
import json
import os
import ssl
import statistics
import subprocess
import tempfile
from datetime import UTC, datetime
from typing import Any

import aiohttp
import yaml

from mcp_health_operator.core import health, judge, status
from mcp_health_testbed import controlplane

REPO = Path(__file__).resolve().parents[1]
CRD = REPO / "crds" / "mcphealth.dev_mcphealthmonitors.yaml"
NAMESPACE = "bench"
GUIDE_EXAMPLE = {
    "status": "healthy",
    "timestamp": "2025-10-13T10:30:45.123Z",
    "database_status": "connected",
    "uptime_seconds": 3672.5,
    "connection_pool": {
        "total_connections": 10,
        "active_connections": 3,
        "idle_connections": 7,
        "waiting_requests": 0,
        "pool_utilization": 0.3,
    },
    "checks": {
        "database": {"status": "pass", "latency_ms": 12.5, "message": "Database responding"},
        "memory": {"status": "pass", "usage_mb": 245, "limit_mb": 2048, "percentage": 11.9},
        "disk": {"status": "pass", "free_gb": 125.3, "percentage_used": 45.2},
    },
}


def written_status(i: int) -> dict[str, Any]:
    """What the operator writes for a Healthy monitor of the guide's example document."""
    obs = judge.Observation(
        outcome="Ok",
        latency_ms=3.2,
        document=health.from_object(GUIDE_EXAMPLE),
        method=judge.HEALTH_RESOURCE,
    )
    verdict = judge.judge(obs, judge.Thresholds(), judge.History())
    return status.build(
        verdict=verdict,
        obs=obs,
        thresholds=judge.Thresholds(),
        identity=status.Identity("codebase-mcp", "2.0.0", "2025-06-18", "streamable-http"),
        target=f"svc/s{i}:8000",
        endpoint=f"http://s{i}.{NAMESPACE}.svc:8000/mcp",
        generation=1,
        previous_conditions=[],
        now=datetime.now(UTC),
    )


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def kubectl(plane: controlplane.ControlPlane, *args: str, stdin: str | None = None) -> None:
    argv = [str(controlplane.kubectl_binary()), "--kubeconfig", str(plane.kubeconfig), *args]
    subprocess.run(argv, input=stdin, capture_output=True, text=True, check=True)


def crds() -> dict[str, dict[str, Any]]:
    shipped = yaml.safe_load(CRD.read_text())
    perfield = copy.deepcopy(shipped)
    perfield["metadata"]["name"] = "mcphealthmonitors.perfield.mcphealth.dev"
    perfield["spec"]["group"] = "perfield.mcphealth.dev"
    for version in perfield["spec"]["versions"]:
        version["schema"]["openAPIV3Schema"]["properties"]["status"].pop("x-kubernetes-map-type")
    return {"shipped (atomic)": shipped, "per-field": perfield}


async def write_batch(
    plane: controlplane.ControlPlane, group: str, numbers: range, body: dict[int, bytes]
) -> float:
    """The API server's CPU milliseconds per status write over one batch."""
    tls = ssl.create_default_context(cafile=str(plane.ca_file))
    headers = {
        "Authorization": f"Bearer {plane.token}",
        "Content-Type": "application/merge-patch+json",
    }
    todo = iter(numbers)
    pid = plane.pids()["apiserver"]
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=tls, limit=20)) as http:

        async def writer() -> None:
            for i in todo:
                url = (
                    f"{plane.server}/apis/{group}/v1alpha1/namespaces/{NAMESPACE}"
                    f"/mcphealthmonitors/m{i}/status"
                )
                async with http.patch(url, data=body[i], headers=headers) as answer:
                    if answer.status != 200:
                        raise RuntimeError(f"HTTP {answer.status}: {await answer.text()}")

        await asyncio.sleep(1)
        before = cpu_s(pid)
        await asyncio.gather(*(writer() for _ in range(20)))
        await asyncio.sleep(1)  # the watch cache's decoding of the last writes
        return (cpu_s(pid) - before) / len(numbers) * 1000


def run(args: argparse.Namespace, plane: controlplane.ControlPlane) -> None:
    kinds = crds()
    for crd in kinds.values():
        kubectl(plane, "apply", "-f", "-", stdin=json.dumps(crd))
        kubectl(plane, "wait", "--for=condition=Established", f"crd/{crd['metadata']['name']}")
    kubectl(plane, "create", "namespace", NAMESPACE)
    for crd in kinds.values():
        group = crd["spec"]["group"]
        for start in range(0, args.monitors, 1000):
            items = [
                {
                    "apiVersion": f"{group}/v1alpha1",
                    "kind": "MCPHealthMonitor",
                    "metadata": {"name": f"m{i}", "namespace": NAMESPACE},
                    "spec": {"target": {"service": {"name": f"s{i}", "port": 8000}}},
                }
                for i in range(start, min(start + 1000, args.monitors))
            ]
            kubectl(
                plane,
                "create",
                "-f",
                "-",
                stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": items}),
            )
    names = list(kinds)
    for write in ("first", "second"):
        body = {i: json.dumps({"status": written_status(i)}).encode() for i in range(args.monitors)}
        per: dict[str, list[float]] = {name: [] for name in names}
        for k, start in enumerate(range(0, args.monitors, args.batch)):
            batch = range(start, min(start + args.batch, args.monitors))
            for name in names if k % 2 == 0 else names[::-1]:
                group = kinds[name]["spec"]["group"]
                per[name].append(asyncio.run(write_batch(plane, group, batch, body)))
        a, b = per[names[0]], per[names[1]]
        ratios = [x / y for x, y in zip(a, b, strict=True)]
        print(
            f"{write} write: {names[0]} {statistics.median(a):.2f} ms, "
            f"{names[1]} {statistics.median(b):.2f} ms of API-server CPU a write (medians of "
            f"{len(a)} batches of {args.batch}); ratios {names[0]} / {names[1]}: "
            f"{', '.join(f'{r:.2f}' for r in ratios)} (median {statistics.median(ratios):.2f})"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--monitors", type=int, default=4000)
    parser.add_argument("--batch", type=int, default=500)
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory(prefix="status-write-cost-") as tmp,
        controlplane.ControlPlane(Path(tmp)) as plane,
    ):
        run(args, plane)
    return 0


if __name__ == "__main__":
    sys.exit(main())
