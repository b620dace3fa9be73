"""Benchmark: the client CPU of one status write and its Event, by Kubernetes client.

A transition costs the operator one merge patch of the monitor's status and
one Event. This starts the test control plane (real kube-apiserver and
etcd), makes ``--monitors`` monitors, and performs ``--writes`` transitions
(status patch + Event create, ``--concurrency`` at a time) with each client
in turn, interleaved run by run so the machine's drift falls on all alike:

- ``lightkube``: the two calls as the operator made them before
  ``kube.rest`` (lightkube's models over httpx2);
- ``kubernetes_asyncio``: the official generator's asyncio client
  (``CustomObjectsApi.patch_namespaced_custom_object_status``,
  ``CoreV1Api.create_namespaced_event``);
- ``aiohttp``: the same two requests, JSON built by hand, on one aiohttp
  session (the kind the probes already use);
- ``operator``: the operator's path now (``kube.api.Kube.patch_status`` and
  ``post_event`` over ``kube.rest``).

Reported per client: the median over ``--runs`` of the client process's CPU
per transition (``time.process_time``; the API server is another process)
and of the wall time, and each median as a ratio to lightkube's.

    python bench/kube_writes.py [--writes 1000] [--runs 3] [--concurrency 20]

``kubernetes_asyncio`` is not a dependency of the operator: ``make
bench-kube`` installs it beside the venv, on ``PYTHONPATH`` for this
script only (the Makefile says why); without it the script stops before
measuring anything, naming the module that is missing.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
from lightkube import AsyncClient, KubeConfig
from lightkube.models.core_v1 import EventSource, ObjectReference
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import Event
from lightkube.types import PatchType

from mcp_health_operator.core.events import EventSpec, Post
from mcp_health_operator.kube.api import GROUP, PLURAL, VERSION, Kube, Monitor, ObjectRef
from mcp_health_testbed import controlplane

REPO = Path(__file__).resolve().parents[1]
NAMESPACE = "bench"
Write = Callable[[ObjectRef, dict[str, Any], str], Awaitable[None]]


def status_of(i: int) -> dict[str, Any]:
    """A status as the operator writes it on a transition (health flips every write)."""
    health = "Unhealthy" if i % 2 else "Healthy"
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "health": health,
        "reason": "DatabaseDisconnected" if i % 2 else "AllChecksPassing",
        "reasons": ["DatabaseDisconnected"] if i % 2 else [],
        "message": "database disconnected" if i % 2 else "all checks passing",
        "lastProbeTime": now,
        "lastProbeOutcome": "Ok",
        "latencyMs": 3.2,
        "latency": "3ms",
        "consecutiveFailures": i % 2,
        "consecutiveSuccesses": 1 - i % 2,
        "conditions": [
            {
                "type": "Healthy",
                "status": "False" if i % 2 else "True",
                "reason": "DatabaseDisconnected" if i % 2 else "AllChecksPassing",
                "message": "database disconnected" if i % 2 else "all checks passing",
                "lastTransitionTime": now,
            }
        ],
    }


def event_body(ref: ObjectRef, name: str, now: datetime) -> dict[str, Any]:
    stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": name, "namespace": ref.namespace},
        "involvedObject": {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "MCPHealthMonitor",
            "name": ref.name,
            "namespace": ref.namespace,
            "uid": ref.uid,
        },
        "reason": "HealthDegraded",
        "message": "database disconnected",
        "type": "Warning",
        "count": 1,
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "source": {"component": "mcp-health-operator", "host": "bench"},
        "reportingComponent": f"{GROUP}/operator",
        "reportingInstance": "bench",
    }


class Lightkube:
    """The writes as the operator made them through lightkube before ``kube.rest``."""

    name = "lightkube"

    def __init__(self, plane: controlplane.ControlPlane) -> None:
        self.client = AsyncClient(config=KubeConfig.from_file(str(plane.kubeconfig)))

    async def write(self, ref: ObjectRef, status: dict[str, Any], event: str) -> None:
        await self.client.patch(
            Monitor.Status,
            ref.name,
            {"status": status},
            namespace=ref.namespace,
            patch_type=PatchType.MERGE,
        )
        now = datetime.now(UTC)
        await self.client.create(
            Event(
                metadata=ObjectMeta(name=event, namespace=ref.namespace),
                involvedObject=ObjectReference(
                    apiVersion=f"{GROUP}/{VERSION}",
                    kind="MCPHealthMonitor",
                    name=ref.name,
                    namespace=ref.namespace,
                    uid=ref.uid,
                ),
                reason="HealthDegraded",
                message="database disconnected",
                type="Warning",
                count=1,
                firstTimestamp=now,
                lastTimestamp=now,
                source=EventSource(component="mcp-health-operator", host="bench"),
                reportingComponent=f"{GROUP}/operator",
                reportingInstance="bench",
            )
        )

    async def close(self) -> None:
        await self.client.close()


class Operator:
    """The operator's own path: ``kube.api.Kube`` (``kube.rest`` underneath)."""

    name = "operator"

    def __init__(self, plane: controlplane.ControlPlane) -> None:
        config = KubeConfig.from_file(str(plane.kubeconfig))
        self.kube = Kube(AsyncClient(config=config), instance="bench")
        self.spec = EventSpec("Warning", "HealthDegraded", "database disconnected")

    async def write(self, ref: ObjectRef, status: dict[str, Any], event: str) -> None:
        await self.kube.patch_status(ref, status)
        post = Post(event, True, 1, self.spec.message)
        await self.kube.post_event(ref, self.spec, post)

    async def close(self) -> None:
        await self.kube.close()


class Aiohttp:
    name = "aiohttp"

    def __init__(self, plane: controlplane.ControlPlane) -> None:
        import ssl

        self.server = plane.server
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=ssl.create_default_context(cafile=plane.ca_file)),
            headers={"Authorization": f"Bearer {plane.token}"},
        )

    async def write(self, ref: ObjectRef, status: dict[str, Any], event: str) -> None:
        base = f"{self.server}/apis/{GROUP}/{VERSION}/namespaces/{ref.namespace}"
        url = f"{base}/{PLURAL}/{ref.name}/status"
        body = json.dumps({"status": status}).encode()
        headers = {"Content-Type": "application/merge-patch+json"}
        async with self.session.patch(url, data=body, headers=headers) as resp:
            await resp.read()
            if resp.status != 200:
                raise RuntimeError(f"status patch: HTTP {resp.status}")
        url = f"{self.server}/api/v1/namespaces/{ref.namespace}/events"
        body = json.dumps(event_body(ref, event, datetime.now(UTC))).encode()
        headers = {"Content-Type": "application/json"}
        async with self.session.post(url, data=body, headers=headers) as resp:
            await resp.read()
            if resp.status != 201:
                raise RuntimeError(f"event create: HTTP {resp.status}")

    async def close(self) -> None:
        await self.session.close()


class KubernetesAsyncio:
    name = "kubernetes_asyncio"

    def __init__(self, plane: controlplane.ControlPlane) -> None:
        # Not a dependency of the operator (make bench-kube installs it): untyped here.
        client: Any = importlib.import_module("kubernetes_asyncio.client")

        config = client.Configuration(host=plane.server)
        config.ssl_ca_cert = str(plane.ca_file)
        config.api_key = {"BearerToken": f"Bearer {plane.token}"}
        self.api = client.ApiClient(config)
        self.custom = client.CustomObjectsApi(self.api)
        self.core = client.CoreV1Api(self.api)

    async def write(self, ref: ObjectRef, status: dict[str, Any], event: str) -> None:
        await self.custom.patch_namespaced_custom_object_status(
            GROUP,
            VERSION,
            ref.namespace,
            PLURAL,
            ref.name,
            {"status": status},
            _content_type="application/merge-patch+json",
        )
        await self.core.create_namespaced_event(
            ref.namespace, event_body(ref, event, datetime.now(UTC))
        )

    async def close(self) -> None:
        await self.api.close()


def kubectl(plane: controlplane.ControlPlane, *args: str, stdin: str | None = None) -> str:
    argv = [str(controlplane.kubectl_binary()), "--kubeconfig", str(plane.kubeconfig), *args]
    done = subprocess.run(argv, input=stdin, capture_output=True, text=True, check=True)
    return done.stdout


def make_monitors(plane: controlplane.ControlPlane, count: int) -> list[ObjectRef]:
    kubectl(plane, "apply", "-f", str(REPO / "crds"))
    kubectl(plane, "wait", "--for=condition=Established", f"crd/{PLURAL}.{GROUP}")
    kubectl(plane, "create", "namespace", NAMESPACE)
    items = [
        {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "MCPHealthMonitor",
            "metadata": {"name": f"m{i}", "namespace": NAMESPACE},
            "spec": {"target": {"service": {"name": f"s{i}", "port": 8000}}},
        }
        for i in range(count)
    ]
    kubectl(
        plane,
        "apply",
        "-f",
        "-",
        stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": items}),
    )
    listed = json.loads(kubectl(plane, "get", PLURAL, "-n", NAMESPACE, "-o", "json"))
    return [
        ObjectRef(NAMESPACE, o["metadata"]["name"], o["metadata"]["uid"]) for o in listed["items"]
    ]


async def measure(
    client: Any, refs: list[ObjectRef], writes: int, concurrency: int, tag: str
) -> tuple[float, float]:
    """CPU and wall seconds per transition over ``writes`` transitions."""
    queue = iter(range(writes))

    async def worker() -> None:
        for i in queue:
            await client.write(refs[i % len(refs)], status_of(i), f"bench-{tag}-{i}")

    await client.write(refs[0], status_of(0), f"bench-{tag}-warm")  # connections, TLS
    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return (time.process_time() - cpu) / writes, (time.perf_counter() - wall) / writes


async def run(args: argparse.Namespace, plane: controlplane.ControlPlane) -> None:
    refs = make_monitors(plane, args.monitors)
    kinds: list[type[Any]] = [Lightkube, KubernetesAsyncio, Aiohttp, Operator]
    figures: dict[str, list[tuple[float, float]]] = {}
    for run_ in range(args.runs):
        for kind in kinds:
            client = kind(plane)
            try:
                got = await measure(
                    client, refs, args.writes, args.concurrency, f"{kind.name}-{run_}"
                )
            finally:
                await client.close()
            figures.setdefault(kind.name, []).append(got)
            cpu_ms, wall_ms = got[0] * 1000, got[1] * 1000
            print(f"run {run_ + 1} {kind.name}: {cpu_ms:.3f} ms CPU, {wall_ms:.3f} ms wall")
    base = statistics.median(c for c, _ in figures["lightkube"])
    print(
        f"\n{args.writes} transitions (status merge patch + Event create), "
        f"{args.concurrency} at a time, medians of {args.runs} runs:"
    )
    print("| client | CPU per transition | wall per transition | CPU vs lightkube |")
    print("|---|---|---|---|")
    for name, runs in figures.items():
        cpu = statistics.median(c for c, _ in runs)
        wall = statistics.median(w for _, w in runs)
        print(f"| {name} | {cpu * 1000:.3f} ms | {wall * 1000:.3f} ms | {cpu / base:.2f} |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--writes", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--monitors", type=int, default=50)
    args = parser.parse_args()
    try:
        importlib.import_module("kubernetes_asyncio.client")
    except ImportError as missing:
        print(f"kubernetes_asyncio cannot be imported ({missing}); make bench-kube installs it")
        return 2
    with (
        tempfile.TemporaryDirectory(prefix="kube-writes-") as tmp,
        controlplane.ControlPlane(Path(tmp)) as plane,
    ):
        asyncio.run(run(args, plane))
    return 0


if __name__ == "__main__":
    sys.exit(main())
