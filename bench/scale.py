"""Benchmark: the operator at scale, on real parts.

Starts the real API server (``testing.controlplane``) with the CRD, K fleet
servers (many MCP health targets per process, each at ``/t/<i>/mcp``: by
default the Go fleet of ``bench/fleet``, a few percent of a core at a
thousand reads a second; ``--fleet python`` for ``python -m
sample_mcp.fleet``, the official SDK's server), creates N Services and N
MCPHealthMonitors in a fresh namespace, runs ``mcp-health run`` as a
subprocess with one ``--resolve`` entry per Service (by default after all
monitors exist: a cold start of the whole fleet; ``--ramp R`` starts the
operator first and adds R monitors per second), waits until every monitor
is Healthy (at most ``--settle`` + 0.1 s per monitor; an operator that
cannot get there is measured as it is), warms up, and then measures over a
window:

- operator CPU (``/proc/<pid>/stat`` utime + stime) per probe, the probes
  being the reads the fleet logged inside the same window (failed probes
  by outcome from the operator's ``mcp_probe_total``); its share of one core;
  its RSS (``VmRSS``, peak over the window); the share of reads that came on
  a new TCP connection (the fleet servers see the client port change);
- beside it, the fleet servers' own CPU, per read they served and as a share
  of one core: on a machine of two cores, targets that cost as much as the
  operator leave it less CPU than it would have in a cluster;
- schedule: the fleet servers log when each target's health resource is
  read; lateness is how far each inter-read gap strays from the interval
  (``|gap - interval|``, p50 / p99 / max), an overlap is a gap shorter than
  half the interval, a miss one longer than 1.5 intervals;
- API requests by verb and resource during the window, from the API
  server's own ``apiserver_request_total``; status writes (``PATCH`` on
  ``mcphealthmonitors/status``) and Events posted;
- detection: a share of the targets (10%) turns unhealthy; the time until
  each monitor's ``status.health`` is ``Unhealthy`` (seen on a watch), p50
  and max, against ``interval x failureThreshold + 1 s``; and how long after
  the deciding probe (the failureThreshold-th read after the flip) the
  status showed it (goal: within 1 s);
- the baseline, in the same run: client CPU per probe of a new MCP client
  per probe (``mcp.Client``, as the guide's script does; and a new
  ``Prober`` per probe) against one kept ``Prober`` per target.

Then it prints a markdown table of the medians over ``--runs`` runs (each
run: a new namespace and a new operator process; the control plane and the
fleet servers are shared).

    python bench/scale.py --monitors 100 --servers 2 --window 60 --runs 3
    python bench/scale.py --monitors 100,1000 --runs 3 --json /tmp/scale.json
    python bench/scale.py --monitors 100 --runs 1 --profile 30   # py-spy, after the window
    python bench/scale.py --monitors 1000 --fleet python          # the SDK's servers as targets
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: the repository, not bench/, on the path
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import argparse
import asyncio
import contextlib
import itertools
import json
import math
import os
import random
import shutil
import signal
import ssl
import statistics
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import httpx2
from mcp import Client
from prometheus_client.parser import text_string_to_metric_families

from bench import fleet as bench_fleet
from mcp_health_operator.core.targets import Target
from mcp_health_operator.probing.probe import Prober
from mcp_health_testbed import _procs, controlplane

REPO = Path(__file__).resolve().parents[1]
CLK_TCK = os.sysconf("SC_CLK_TCK")
SERVICE_PORT = 8000
MONITORS_API = "/apis/mcphealth.dev/v1alpha1/namespaces/{ns}/mcphealthmonitors"


@dataclass(frozen=True)
class Settings:
    monitors: int
    servers: int
    interval_s: float
    timeout_s: float
    failure_threshold: int
    window_s: float
    warmup_s: float
    ramp_per_s: float
    settle_s: float
    flip_share: float
    baseline_targets: int
    baseline_fresh_rounds: int
    baseline_kept_rounds: int
    profile_s: float
    workdir: Path
    json_response: bool
    fleet: bench_fleet.Kind = "go"
    loop: str = "auto"  # the operator's `--loop`

    @property
    def detection_goal_s(self) -> float:
        return self.interval_s * self.failure_threshold + 1.0


# -- small helpers ---------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile; NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    index = min(max(math.ceil(q / 100 * len(ordered)) - 1, 0), len(ordered) - 1)
    return ordered[index]


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process so far (``/proc/<pid>/stat``)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    # After the command: state is field 3, utime 14 and stime 15 (1-based).
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def memory_mb(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of a process, in MB."""
    rss = hwm = 0.0
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) / 1024
            elif line.startswith("VmHWM:"):
                hwm = int(line.split()[1]) / 1024
    return rss, hwm


def machine_ticks() -> tuple[int, int]:
    """(busy, total) CPU ticks of the whole machine (``/proc/stat``)."""
    with open("/proc/stat") as stat:
        values = [int(v) for v in stat.readline().split()[1:9]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


def metric_samples(text: str, name: str) -> Iterable[tuple[dict[str, str], float]]:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                yield dict(sample.labels), float(sample.value)


def probe_counts(text: str) -> tuple[float, float]:
    """(all probes, failed probes) from the operator's ``mcp_probe_total``."""
    outcomes = probe_outcomes(text)
    return sum(outcomes.values()), sum(v for k, v in outcomes.items() if k != "Ok")


def probe_outcomes(text: str) -> Counter[str]:
    """Probes by outcome from the operator's ``mcp_probe_total``."""
    out: Counter[str] = Counter()
    for labels, value in metric_samples(text, "mcp_probe_total"):
        out[labels.get("outcome", "")] += int(value)
    return out


def api_requests(text: str) -> Counter[tuple[str, str]]:
    """``apiserver_request_total`` by (verb, resource[/subresource]), resource requests only."""
    out: Counter[tuple[str, str]] = Counter()
    for labels, value in metric_samples(text, "apiserver_request_total"):
        resource = labels.get("resource", "")
        if not resource:
            continue  # /metrics, /readyz and the like: the benchmark's own
        sub = labels.get("subresource", "")
        out[(labels.get("verb", ""), f"{resource}/{sub}" if sub else resource)] += int(value)
    return out


# -- the parts -------------------------------------------------------------------


@dataclass
class FleetServer:
    """A fleet server (``bench/fleet``, or ``python -m sample_mcp.fleet``) serving
    targets ``first .. first + count - 1``."""

    first: int
    count: int
    log: Path
    json_response: bool = False
    kind: bench_fleet.Kind = "go"
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def owns(self, tid: int) -> bool:
        return self.first <= tid < self.first + self.count

    def start(self) -> FleetServer:
        self.port = _procs.free_port()
        args, env = bench_fleet.command(
            self.kind,
            targets=self.count,
            first=self.first,
            port=self.port,
            json_response=self.json_response,
        )
        self.proc = subprocess.Popen(
            args,
            env=env,
            stdout=self.log.open("ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        _procs.wait_for_port("127.0.0.1", self.port, timeout=30, proc=self.proc, log=self.log)
        return self

    def stop(self) -> None:
        _procs.stop(self.proc)
        self.proc = None


def start_fleet(settings: Settings) -> list[FleetServer]:
    return start_servers(
        settings.monitors,
        settings.servers,
        settings.workdir,
        json_response=settings.json_response,
        kind=settings.fleet,
    )


def start_servers(
    monitors: int,
    servers: int,
    workdir: Path,
    *,
    json_response: bool = False,
    kind: bench_fleet.Kind = "go",
) -> list[FleetServer]:
    """Targets ``0 .. monitors - 1`` split evenly over this many fleet servers, started."""
    per = math.ceil(monitors / servers)
    out = []
    for k in range(servers):
        first = k * per
        count = min(per, monitors - first)
        if count <= 0:
            break
        log = workdir / f"fleet-{monitors}-{k}.log"
        out.append(FleetServer(first, count, log, json_response=json_response, kind=kind))
    for server in out:
        server.start()
    return out


def server_of(servers: Sequence[FleetServer], tid: int) -> FleetServer:
    return next(s for s in servers if s.owns(tid))


def operator_command(
    namespace: str,
    metrics_port: int,
    servers: Sequence[FleetServer],
    monitors: int,
    loop: str = "auto",
) -> list[str]:
    """``mcp-health run`` for one namespace, each Service resolved to its fleet server."""
    resolve = []
    for tid in range(monitors):
        port = server_of(servers, tid).port
        resolve += ["--resolve", f"mcp-{tid}.{namespace}.svc:{SERVICE_PORT}=127.0.0.1:{port}"]
    return [
        sys.executable,
        "-m",
        "mcp_health_operator.runtime.cli",
        "run",
        "--namespace",
        namespace,
        "--metrics-port",
        str(metrics_port),
        "--metrics-host",
        "127.0.0.1",
        "--loop",
        loop,
        *resolve,
    ]


async def stop_process(proc: asyncio.subprocess.Process, timeout: float = 20) -> None:
    """SIGTERM, then SIGKILL if it has not exited within ``timeout`` seconds."""
    if proc.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(proc.wait(), timeout=timeout)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()


async def monitor_healths(api: Api, namespace: str) -> dict[str, str]:
    """``status.health`` of every monitor in the namespace, by name ("" before the first)."""
    body = await api.get(MONITORS_API.format(ns=namespace))
    return {
        item["metadata"]["name"]: (item.get("status") or {}).get("health", "")
        for item in body["items"]
    }


async def follow_healths(api: Api, namespace: str, update: Callable[[str, str], bool]) -> None:
    """``update(name, health)`` of every monitor, listed then watched, until it says done."""
    listing = await api.get(MONITORS_API.format(ns=namespace))
    done = False
    for item in listing["items"]:
        done = update(item["metadata"]["name"], (item.get("status") or {}).get("health", ""))
    if not done:
        await watch_healths(api, namespace, listing["metadata"]["resourceVersion"], update)


async def watch_healths(
    api: Api, namespace: str, version: str, update: Callable[[str, str], bool]
) -> None:
    """``update(name, health)`` of each monitor added or changed after ``version``, until done."""
    path = MONITORS_API.format(ns=namespace)
    params = {"watch": "1", "resourceVersion": version, "allowWatchBookmarks": "true"}
    while True:
        timeout = httpx2.Timeout(10.0, read=None)
        async with api.http.stream("GET", path, params=params, timeout=timeout) as resp:
            resp.raise_for_status()
            async for line in resp.aiter_lines():
                if not line:
                    continue
                event = json.loads(line)
                obj = event.get("object") or {}
                meta = obj.get("metadata") or {}
                if meta.get("resourceVersion"):
                    params["resourceVersion"] = meta["resourceVersion"]
                if event.get("type") in ("ADDED", "MODIFIED") and meta.get("name"):
                    health = (obj.get("status") or {}).get("health", "")
                    if update(meta["name"], health):
                        return


async def fleet_totals(http: httpx2.AsyncClient, servers: Sequence[FleetServer]) -> tuple[int, int]:
    """(reads, reads that came on a new connection) over all fleet servers so far."""
    reads = connections = 0
    for server in servers:
        response = await http.get(f"{server.base_url}/control/stats")
        response.raise_for_status()
        body = response.json()
        reads += int(body["reads"])
        connections += int(body["connections"])
    return reads, connections


async def fleet_arrivals(
    http: httpx2.AsyncClient, servers: Sequence[FleetServer], since: float
) -> dict[int, list[float]]:
    """Read times (epoch seconds) at or after ``since``, by target."""
    out: dict[int, list[float]] = {}
    for server in servers:
        response = await http.get(
            f"{server.base_url}/control/arrivals", params={"since": repr(since)}
        )
        response.raise_for_status()
        for tid, times in response.json()["arrivals"].items():
            out[int(tid)] = [float(t) for t in times]
    return out


class Api:
    """The API server over REST as the admin (no client library in the way)."""

    def __init__(self, plane: controlplane.ControlPlane) -> None:
        self.http = httpx2.AsyncClient(
            base_url=plane.server,
            verify=ssl.create_default_context(cafile=str(plane.ca_file)),
            headers={"Authorization": f"Bearer {plane.token}"},
            timeout=httpx2.Timeout(60.0),
        )

    async def create(self, path: str, obj: dict[str, Any]) -> None:
        response = await self.http.post(path, json=obj)
        if response.status_code >= 400:
            raise RuntimeError(f"POST {path}: HTTP {response.status_code} {response.text[:300]}")

    async def get(self, path: str, **params: str) -> dict[str, Any]:
        response = await self.http.get(path, params=params)
        response.raise_for_status()
        return dict(response.json())

    async def metrics(self) -> str:
        response = await self.http.get("/metrics")
        response.raise_for_status()
        return response.text

    async def delete_collection(self, path: str) -> None:
        await self.http.delete(path)

    async def aclose(self) -> None:
        await self.http.aclose()


async def gather_limited(jobs: Iterable[Awaitable[None]], limit: int = 16) -> None:
    semaphore = asyncio.Semaphore(limit)

    async def one(job: Awaitable[None]) -> None:
        async with semaphore:
            await job

    await asyncio.gather(*(one(job) for job in jobs))


async def create_services(
    api: Api, http: httpx2.AsyncClient, servers: Sequence[FleetServer], namespace: str, n: int
) -> float:
    """The namespace and Services ``mcp-0`` .. ``mcp-<n-1>`` in it, the fleet's read logs
    reset; the seconds it took."""
    await api.create("/api/v1/namespaces", {"metadata": {"name": namespace}})
    started = time.monotonic()
    await gather_limited(
        api.create(f"/api/v1/namespaces/{namespace}/services", service_obj(i)) for i in range(n)
    )
    for server in servers:
        (await http.post(f"{server.base_url}/control/reset")).raise_for_status()
    return time.monotonic() - started


async def create_monitors(api: Api, namespace: str, manifests: Iterable[dict[str, Any]]) -> float:
    """The monitors, all at once (a cold start of the whole fleet); the seconds it took."""
    started = time.monotonic()
    await gather_limited(api.create(MONITORS_API.format(ns=namespace), m) for m in manifests)
    return time.monotonic() - started


def service_obj(tid: int) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": f"mcp-{tid}"},
        "spec": {"ports": [{"name": "mcp", "port": SERVICE_PORT}]},
    }


def monitor_obj(tid: int, settings: Settings) -> dict[str, Any]:
    return monitor_manifest(
        tid, settings.interval_s, settings.timeout_s, settings.failure_threshold
    )


def monitor_manifest(
    tid: int, interval_s: float, timeout_s: float, failure_threshold: int
) -> dict[str, Any]:
    """The MCPHealthMonitor ``mcp-<tid>`` of Service ``mcp-<tid>``, target ``/t/<tid>/mcp``."""
    return {
        "apiVersion": "mcphealth.dev/v1alpha1",
        "kind": "MCPHealthMonitor",
        "metadata": {"name": f"mcp-{tid}"},
        "spec": {
            "target": {
                "service": {"name": f"mcp-{tid}", "port": SERVICE_PORT},
                "transport": "streamable-http",
                "path": f"/t/{tid}/mcp",
            },
            "probe": {
                "interval": f"{interval_s:g}s",
                "timeout": f"{timeout_s:g}s",
                "failureThreshold": failure_threshold,
            },
        },
    }


# -- one run ---------------------------------------------------------------------


@dataclass
class RunResult:
    figures: dict[str, float] = field(default_factory=dict)
    requests: dict[str, int] = field(default_factory=dict)
    start_requests: dict[str, int] = field(default_factory=dict)
    profile: Path | None = None


class Run:
    def __init__(
        self,
        settings: Settings,
        plane: controlplane.ControlPlane,
        servers: list[FleetServer],
        index: int,
    ) -> None:
        self.settings = settings
        self.plane = plane
        self.servers = servers
        self.index = index
        self.namespace = f"scale-{settings.monitors}-{index}-{os.urandom(2).hex()}"
        self.api = Api(plane)
        self.http = httpx2.AsyncClient(timeout=httpx2.Timeout(60.0))
        self.operator: asyncio.subprocess.Process | None = None
        self.metrics_port = 0
        self.operator_started = 0.0
        self.start_cpu: dict[str, float] = {}
        self.result = RunResult()

    def say(self, text: str) -> None:
        print(f"[{self.settings.monitors} monitors, run {self.index}] {text}", flush=True)

    def server_of(self, tid: int) -> FleetServer:
        return server_of(self.servers, tid)

    async def execute(self) -> RunResult:
        try:
            await self.setup()
            if self.settings.ramp_per_s > 0:
                await self.start_operator()
                await self.create_monitors()
            else:
                await self.create_monitors()
                await self.start_operator()
            before = api_requests(await self.api.metrics())
            await self.wait_all_healthy()
            self.start_requests(before, api_requests(await self.api.metrics()))
            self.say(f"warming up {self.settings.warmup_s:g}s")
            await asyncio.sleep(self.settings.warmup_s)
            await self.window()
            if self.settings.profile_s > 0:
                await self.profile()
            await self.detection()
            await self.stop_operator()
            await self.baseline()
        finally:
            await self.stop_operator()
            with contextlib.suppress(Exception):
                ns = self.namespace
                await self.api.delete_collection(MONITORS_API.format(ns=ns))
            await self.api.aclose()
            await self.http.aclose()
        return self.result

    # -- setup ----------------------------------------------------------------

    async def setup(self) -> None:
        n = self.settings.monitors
        took = await create_services(self.api, self.http, self.servers, self.namespace, n)
        self.say(f"{n} Services created in {took:.1f}s")

    async def create_monitors(self) -> None:
        """All at once (a cold start of the whole fleet), or ``--ramp`` per second."""
        n, ns, ramp = self.settings.monitors, self.namespace, self.settings.ramp_per_s
        started = time.monotonic()
        if ramp <= 0:
            await create_monitors(self.api, ns, (monitor_obj(i, self.settings) for i in range(n)))
        else:
            for i in range(n):
                await asyncio.sleep(max(0.0, started + i / ramp - time.monotonic()))
                await self.api.create(MONITORS_API.format(ns=ns), monitor_obj(i, self.settings))
        self.say(f"{n} monitors created in {time.monotonic() - started:.1f}s")

    async def start_operator(self) -> None:
        self.metrics_port = _procs.free_port()
        log = self.settings.workdir / f"operator-{self.namespace}.log"
        self.operator = await asyncio.create_subprocess_exec(
            *operator_command(
                self.namespace,
                self.metrics_port,
                self.servers,
                self.settings.monitors,
                self.settings.loop,
            ),
            env={**os.environ, "KUBECONFIG": str(self.plane.kubeconfig)},
            stdout=log.open("ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.operator_started = time.monotonic()
        self.start_cpu = self.cpu_by_part()

    def cpu_by_part(self) -> dict[str, float]:
        """CPU seconds so far of the API server, etcd, the operator and the fleet servers."""
        pids = {**self.plane.pids(), "operator": self.operator_pid}
        cpu = {part: cpu_seconds(pid) for part, pid in pids.items()}
        cpu["fleet"] = sum(cpu_seconds(server.pid) for server in self.servers)
        return cpu

    async def stop_operator(self) -> None:
        proc, self.operator = self.operator, None
        if proc is not None:
            await stop_process(proc)

    @property
    def operator_pid(self) -> int:
        assert self.operator is not None
        return self.operator.pid

    async def healths(self) -> dict[str, str]:
        return await monitor_healths(self.api, self.namespace)

    async def wait_all_healthy(self) -> None:
        """Until every monitor is Healthy; past the deadline, measure whatever state it is in.

        An operator that cannot keep up may never get there (probes time
        out, sessions are re-made, which costs more): that is a result too,
        so the run goes on and reports how many were Healthy. Followed on a
        watch, not by listing every monitor again and again: a list of
        thousands of monitors every few seconds would load the API server
        (and this process) during the very start-up being measured.
        """
        n = self.settings.monitors
        deadline = self.settings.settle_s + 0.1 * n
        healths: dict[str, str] = {}
        half: list[float] = []

        def update(name: str, health: str) -> bool:
            healths[name] = health
            healthy = sum(1 for h in healths.values() if h == "Healthy")
            if not half and healthy * 2 >= n:
                half.append(time.monotonic() - self.operator_started)
            return healthy == n

        try:
            await asyncio.wait_for(self.follow_healths(update), timeout=deadline)
            took = time.monotonic() - self.operator_started
            self.result.figures["all_healthy_s"] = took
            self.result.figures["half_healthy_s"] = half[0] if half else math.nan
            # Who was busy during the start: the API server's share says
            # whether the start waits on it.
            spent = self.cpu_by_part()
            for part, before in self.start_cpu.items():
                self.result.figures[f"start_cpu_{part}_s"] = spent[part] - before
            self.say(
                f"all {n} monitors Healthy {took:.1f}s after the operator started "
                f"(half of them after {half[0] if half else math.nan:.1f}s)"
            )
        except TimeoutError:
            healthy = sum(1 for h in healths.values() if h == "Healthy")
            self.say(f"only {healthy} of {n} monitors Healthy by the deadline; measuring anyway")
        healthy = sum(1 for h in healths.values() if h == "Healthy")
        self.result.figures["healthy_at_start"] = healthy

    async def operator_metrics(self) -> str:
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        response = await self.http.get(url)
        response.raise_for_status()
        return response.text

    async def events(self) -> tuple[int, int]:
        """(Event objects, sum of their counts) in the namespace."""
        items = (await self.api.get(f"/api/v1/namespaces/{self.namespace}/events"))["items"]
        return len(items), sum(int(e.get("count") or 1) for e in items)

    async def fleet_stats(self) -> tuple[int, int]:
        return await fleet_totals(self.http, self.servers)

    async def arrivals(self, since: float) -> dict[int, list[float]]:
        return await fleet_arrivals(self.http, self.servers, since)

    # -- the window -------------------------------------------------------------

    async def window(self) -> None:
        s, figures = self.settings, self.result.figures
        pid = self.operator_pid
        server_pids = [server.pid for server in self.servers]
        self.say(f"measuring for {s.window_s:g}s")
        events0 = await self.events()
        api0 = api_requests(await self.api.metrics())
        reads0, connections0 = await self.fleet_stats()
        # The probe count and the CPU next to each other at both ends (the
        # scrape's text parsed only after the CPU is read: at 5,000 monitors
        # parsing takes seconds): the probes counted are the ones the CPU
        # was spent on.
        scraped0 = await self.operator_metrics()
        cpu0 = cpu_seconds(pid)
        outcomes0 = probe_outcomes(scraped0)
        probes0, failed0 = sum(outcomes0.values()), sum(outcomes0.values()) - outcomes0["Ok"]
        servers_cpu0 = sum(cpu_seconds(p) for p in server_pids)
        busy0, total0 = machine_ticks()
        t0 = time.time()
        peak_rss = 0.0
        while time.time() < t0 + s.window_s:
            peak_rss = max(peak_rss, memory_mb(pid)[0])
            await asyncio.sleep(min(1.0, max(t0 + s.window_s - time.time(), 0.0)))
        servers_cpu1 = sum(cpu_seconds(p) for p in server_pids)
        busy1, total1 = machine_ticks()
        t1 = time.time()
        cpu1 = cpu_seconds(pid)
        scraped1 = await self.operator_metrics()
        outcomes1 = probe_outcomes(scraped1)
        rss, hwm = memory_mb(pid)
        reads1, connections1 = await self.fleet_stats()
        probes1, failed1 = sum(outcomes1.values()), sum(outcomes1.values()) - outcomes1["Ok"]
        for outcome, count in (outcomes1 - outcomes0).items():
            if outcome != "Ok":
                figures[f"failed_{outcome}"] = count
        api1 = api_requests(await self.api.metrics())
        events1 = await self.events()
        arrivals = await self.arrivals(t0)

        gaps: list[float] = []
        reads = overlaps = misses = 0
        overlapping = set()
        for tid, times in arrivals.items():
            inside = [t for t in times if t0 <= t <= t1]
            reads += len(inside)
            for a, b in itertools.pairwise(inside):
                gap = b - a
                gaps.append(gap)
                if gap < s.interval_s / 2:
                    overlaps += 1
                    overlapping.add(tid)
                elif gap > s.interval_s * 1.5:
                    misses += 1
        lateness = [abs(g - s.interval_s) for g in gaps]
        figures["reads_seen"] = reads
        figures["lateness_p50_s"] = percentile(lateness, 50)
        figures["lateness_p99_s"] = percentile(lateness, 99)
        figures["lateness_max_s"] = max(lateness, default=math.nan)
        figures["overlaps"] = overlaps
        figures["overlapping_monitors"] = len(overlapping)
        figures["missed_intervals"] = misses

        elapsed = t1 - t0
        cpu = cpu1 - cpu0
        figures["window_s"] = elapsed
        # The probes of the window are the reads the fleet logged inside it,
        # the same stretch as the CPU reading (each steady probe is one read).
        # The operator's counters are read by a scrape whose answer takes
        # seconds to arrive at 5,000 monitors: they count ~10 % more.
        probes = reads
        counted = probes1 - probes0
        figures["probes"] = probes
        figures["probes_per_s"] = probes / elapsed
        figures["failed_probes"] = failed1 - failed0
        figures["failed_share"] = (failed1 - failed0) / counted if counted else math.nan
        # Kept-alive connections should carry many reads; a new one per read costs a TCP
        # handshake. (The servers count client address:port pairs they have not seen.)
        reads_window = reads1 - reads0
        figures["new_connection_share"] = (
            (connections1 - connections0) / reads_window if reads_window else math.nan
        )
        figures["cpu_s"] = cpu
        figures["cpu_ms_per_probe"] = cpu * 1000 / probes if probes else math.nan
        figures["cpu_share"] = cpu / elapsed
        figures["rss_mb"] = max(peak_rss, rss)
        figures["rss_kb_per_monitor"] = figures["rss_mb"] * 1024 / self.settings.monitors
        figures["hwm_mb"] = hwm
        figures["servers_cpu_share"] = (servers_cpu1 - servers_cpu0) / elapsed
        # What the targets cost, beside what the operator does: both share this machine.
        figures["servers_cpu_ms_per_read"] = (
            (servers_cpu1 - servers_cpu0) * 1000 / reads_window if reads_window else math.nan
        )
        ncpu = os.cpu_count() or 1
        figures["machine_busy_share"] = (busy1 - busy0) / max(total1 - total0, 1) * ncpu

        requests = api1 - api0
        self.result.requests = {f"{verb} {res}": count for (verb, res), count in requests.items()}
        verbs: Counter[str] = Counter()
        for (verb, _), count in requests.items():
            verbs[verb] += count
        for verb, count in verbs.items():
            figures[f"api_{verb}"] = count
        figures["api_total"] = sum(verbs.values())
        status_writes = requests.get(("PATCH", "mcphealthmonitors/status"), 0)
        figures["status_writes"] = status_writes
        # Per monitor per 5 minutes, the budget's unit.
        figures["status_writes_per_monitor_5min"] = (
            status_writes / s.monitors / (elapsed / 300.0) if s.monitors else 0.0
        )
        figures["events_new"] = events1[0] - events0[0]
        figures["events_posted"] = events1[1] - events0[1]
        self.say(
            f"{probes:.0f} probes, {figures['cpu_ms_per_probe']:.2f} ms CPU/probe, "
            f"{figures['cpu_share']:.1%} of a core, RSS {figures['rss_mb']:.0f} MB, "
            f"lateness p99 {figures['lateness_p99_s']:.3f}s; {s.fleet} fleet "
            f"{figures['servers_cpu_ms_per_read']:.3f} ms CPU/read, "
            f"{figures['servers_cpu_share']:.1%} of a core"
        )

    # -- profile ----------------------------------------------------------------

    async def profile(self) -> None:
        py_spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which(
            "py-spy"
        )
        if py_spy is None:
            self.say("py-spy not found (pip install py-spy): no profile")
            return
        out = self.settings.workdir / f"profile-{self.settings.monitors}-{self.index}.txt"
        self.say(f"profiling the operator with py-spy for {self.settings.profile_s:g}s")
        proc = await asyncio.create_subprocess_exec(
            py_spy,
            "record",
            "--pid",
            str(self.operator_pid),
            "--duration",
            f"{self.settings.profile_s:g}",
            "--rate",
            "100",
            "--format",
            "raw",
            "--function",
            "--output",
            str(out),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        await proc.wait()
        if out.exists():
            self.result.profile = out

    # -- detection --------------------------------------------------------------

    async def detection(self) -> None:
        s, figures = self.settings, self.result.figures
        rng = random.Random(self.index)
        # Only monitors that are Healthy now can show a turn to Unhealthy.
        healths = await self.healths()
        candidates = [t for t in range(s.monitors) if healths.get(f"mcp-{t}") == "Healthy"]
        count = min(max(1, round(s.monitors * s.flip_share)), len(candidates))
        figures["flipped"] = count
        if count == 0:
            self.say("no Healthy monitor to turn unhealthy: no detection figures")
            return
        flipped = sorted(rng.sample(candidates, count))
        names = {f"mcp-{tid}": tid for tid in flipped}
        listing = await self.api.get(MONITORS_API.format(ns=self.namespace))
        seen: dict[int, float] = {}
        all_seen = asyncio.Event()
        watcher = asyncio.create_task(
            self.watch_health(listing["metadata"]["resourceVersion"], names, seen, all_seen)
        )
        flipped_at: dict[int, float] = {}
        try:
            for server in self.servers:
                mine = [tid for tid in flipped if server.owns(tid)]
                if not mine:
                    continue
                response = await self.http.post(
                    f"{server.base_url}/control/flip",
                    json={"targets": mine, "status": "unhealthy"},
                )
                response.raise_for_status()
                at = float(response.json()["at"])
                flipped_at.update(dict.fromkeys(mine, at))
            self.say(f"{count} targets turned unhealthy; waiting for their monitors")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(all_seen.wait(), timeout=s.detection_goal_s * 3 + 10)
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
        times = [seen[tid] - flipped_at[tid] for tid in flipped if tid in seen]
        figures["detected"] = len(times)
        figures["undetected"] = count - len(times)
        figures["detection_p50_s"] = percentile(times, 50)
        figures["detection_max_s"] = max(times, default=math.nan)
        # How long after the deciding probe the status showed it.
        arrivals = await self.arrivals(min(flipped_at.values()))
        lags = []
        for tid in flipped:
            after = [t for t in arrivals.get(tid, []) if t >= flipped_at[tid]]
            if tid in seen and len(after) >= s.failure_threshold:
                lags.append(seen[tid] - after[s.failure_threshold - 1])
        figures["status_lag_p50_s"] = percentile(lags, 50)
        figures["status_lag_max_s"] = max(lags, default=math.nan)
        self.say(
            f"detected {len(times)}/{count}: p50 {figures['detection_p50_s']:.1f}s, "
            f"max {figures['detection_max_s']:.1f}s; status lag after the deciding probe "
            f"max {figures['status_lag_max_s']:.2f}s"
        )
        for server in self.servers:
            await self.http.post(
                f"{server.base_url}/control/flip", json={"targets": "all", "status": "healthy"}
            )

    def start_requests(
        self, before: Counter[tuple[str, str]], after: Counter[tuple[str, str]]
    ) -> None:
        """The API requests of the start-up (operator and this benchmark), per second of it."""
        figures = self.result.figures
        took = time.monotonic() - self.operator_started
        during = after - before
        total = sum(during.values())
        self.result.start_requests = {f"{verb} {res}": n for (verb, res), n in during.items()}
        figures["start_api_requests"] = total
        figures["start_api_rate"] = total / took if took > 0 else math.nan

    async def follow_healths(self, update: Callable[[str, str], bool]) -> None:
        await follow_healths(self.api, self.namespace, update)

    async def watch_health(
        self, version: str, names: dict[str, int], seen: dict[int, float], done: asyncio.Event
    ) -> None:
        def update(name: str, health: str) -> bool:
            tid = names.get(name)
            if tid is not None and health == "Unhealthy" and tid not in seen:
                seen[tid] = time.time()
            return len(seen) == len(names)

        await watch_healths(self.api, self.namespace, version, update)
        done.set()

    # -- baseline ---------------------------------------------------------------

    async def baseline(self) -> None:
        s, figures = self.settings, self.result.figures
        tids = list(range(min(s.baseline_targets, s.monitors)))
        urls = [f"{self.server_of(tid).base_url}/t/{tid}/mcp" for tid in tids]
        self.say(f"baseline on {len(urls)} targets: new session per probe vs a kept one")

        async def fresh_client(url: str) -> None:
            async with Client(url, cache=None) as client:
                await client.read_resource("health://status")

        async def fresh_prober(url: str) -> None:
            prober = Prober(Target(url), timeout=5.0)
            try:
                result = await prober.probe()
            finally:
                await prober.aclose()
            if not result.ok:
                raise RuntimeError(f"baseline probe of {url} failed: {result.message}")

        async def measure(rounds: int, once: Callable[[str], Awaitable[None]]) -> float:
            started = time.process_time()
            for _ in range(rounds):
                for url in urls:
                    await once(url)
            return (time.process_time() - started) * 1000 / (rounds * len(urls))

        await fresh_client(urls[0])  # imports, first connections: not part of any figure
        figures["baseline_fresh_client_ms"] = await measure(s.baseline_fresh_rounds, fresh_client)
        figures["baseline_fresh_prober_ms"] = await measure(s.baseline_fresh_rounds, fresh_prober)

        probers = {url: Prober(Target(url), timeout=5.0) for url in urls}
        try:
            for prober in probers.values():
                await prober.probe()  # the handshake, once per kept session

            async def kept(url: str) -> None:
                result = await probers[url].probe()
                if not result.ok:
                    raise RuntimeError(f"baseline probe of {url} failed: {result.message}")

            figures["baseline_kept_ms"] = await measure(s.baseline_kept_rounds, kept)
        finally:
            for prober in probers.values():
                await prober.aclose()
        figures["baseline_ratio"] = (
            figures["baseline_fresh_client_ms"] / figures["baseline_kept_ms"]
        )
        self.say(
            f"client CPU per probe: new mcp.Client {figures['baseline_fresh_client_ms']:.2f} ms, "
            f"new Prober {figures['baseline_fresh_prober_ms']:.2f} ms, "
            f"kept Prober {figures['baseline_kept_ms']:.2f} ms "
            f"(x{figures['baseline_ratio']:.1f})"
        )


# -- profile summary ---------------------------------------------------------------


# Leaf frames where a sampled thread is really waiting, not working: py-spy's idle
# detection misses a thread pool worker blocked in its queue and the event
# loop blocked in epoll.
IDLE_LEAVES = (
    "_worker (concurrent/futures/thread.py",
    "EpollSelector.select (selectors.py",
    "Condition.wait (threading.py",
)


def summarize_profile(path: Path, top: int = 10) -> str:
    """What py-spy's raw (collapsed) stacks say about where the CPU goes.

    Own time by function and by package, the coroutine each sample was
    running under (the frame the event loop called), and the operator's own
    functions by inclusive time. Samples whose leaf is a known wait are
    counted apart as idle.
    """
    own: Counter[str] = Counter()
    packages: Counter[str] = Counter()
    roots: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    busy = idle = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        if frames[-1].startswith(IDLE_LEAVES):
            idle += count
            continue
        busy += count
        own[frames[-1]] += count
        packages[_package(frames[-1])] += count
        roots[_task_root(frames)] += count
        for frame in set(frames):
            if "mcp_health_operator/" in frame and "cli.py" not in frame:
                inclusive[frame.split(" (")[0]] += count
    if not busy:
        return "(no samples)"
    lines = [
        f"{busy} busy samples at 100 Hz ({idle} more were waits: a thread pool worker "
        "blocked on its queue, the event loop in epoll)",
        "",
        "| own % | function (own time) |",
        "|---:|---|",
    ]
    lines += [f"| {n / busy:.1%} | `{name}` |" for name, n in own.most_common(top)]
    lines += ["", "| own % | package |", "|---:|---|"]
    lines += [f"| {n / busy:.1%} | `{name}` |" for name, n in packages.most_common(top)]
    lines += ["", "| % | running under (the task or callback the event loop ran) |", "|---:|---|"]
    lines += [f"| {n / busy:.1%} | `{name}` |" for name, n in roots.most_common(8)]
    lines += ["", "| incl. % | operator function (inclusive time) |", "|---:|---|"]
    lines += [f"| {n / busy:.1%} | `{name}` |" for name, n in inclusive.most_common(top)]
    return "\n".join(lines)


def _package(frame: str) -> str:
    """``fn (pydantic/main.py:748)`` → ``pydantic``; ``fn (selectors.py:451)`` → ``selectors``."""
    where = frame.partition(" (")[2].rstrip(")").rsplit(":", 1)[0]
    return where.split("/", 1)[0].removesuffix(".py") or frame


def _task_root(frames: list[str]) -> str:
    """The frame just under the event loop's last ``Handle._run``: what this sample served."""
    for index in range(len(frames) - 1, -1, -1):
        if frames[index].startswith(("Handle._run (", "TaskHandle._run_coro (")):
            if index + 1 < len(frames):
                return frames[index + 1].split(" (")[0]
            break
    return "(event loop itself)"


# -- report ------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    label: str
    key: str
    fmt: str
    goal: str = ""
    check: Callable[[float, Settings], bool] | None = None


ROWS = [
    Row("probes/s (reads the fleet logged in the window)", "probes_per_s", "{:.1f}"),
    Row("monitors Healthy when the window opened", "healthy_at_start", "{:.0f}"),
    Row("failed probes in the window", "failed_probes", "{:.0f}"),
    Row("failed share of probes", "failed_share", "{:.1%}"),
    Row("reads on a new TCP connection", "new_connection_share", "{:.1%}"),
    Row(
        "operator CPU per probe",
        "cpu_ms_per_probe",
        "{:.2f} ms",
        "≤ 0.25 ms",
        lambda v, s: v <= 0.25,
    ),
    Row("operator CPU, share of one core", "cpu_share", "{:.1%}", "≤ 30%", lambda v, s: v <= 0.3),
    Row("fleet servers' CPU per read served", "servers_cpu_ms_per_read", "{:.3f} ms"),
    Row("fleet servers' CPU, share of one core", "servers_cpu_share", "{:.1%}"),
    Row("operator RSS (peak in window)", "rss_mb", "{:.0f} MB", "≤ 400 MB", lambda v, s: v <= 400),
    Row(
        "operator RSS per monitor",
        "rss_kb_per_monitor",
        "{:.0f} KB",
        "≤ 60 KB",
        lambda v, s: v <= 60,
    ),
    Row("lateness p50 (abs(gap - interval))", "lateness_p50_s", "{:.3f} s"),
    Row("lateness p99", "lateness_p99_s", "{:.3f} s", "≤ 0.1 s", lambda v, s: v <= 0.1),
    Row("lateness max", "lateness_max_s", "{:.3f} s"),
    Row("probe overlaps (gap < interval/2)", "overlaps", "{:.0f}", "0", lambda v, s: v == 0),
    Row("missed intervals (gap > 1.5 x interval)", "missed_intervals", "{:.0f}"),
    Row("status writes in the window", "status_writes", "{:.0f}"),
    Row(
        "status writes per monitor per 5 min",
        "status_writes_per_monitor_5min",
        "{:.3f}",
        "≤ 1",
        lambda v, s: v <= 1,
    ),
    Row("Events posted in the window", "events_posted", "{:.0f}", "0", lambda v, s: v == 0),
    Row("API requests in the window (all verbs)", "api_total", "{:.0f}"),
    Row(
        "monitors turned unhealthy but never seen Unhealthy",
        "undetected",
        "{:.0f}",
        "0",
        lambda v, s: v == 0,
    ),
    Row(
        "detection p50 (flip → status Unhealthy)",
        "detection_p50_s",
        "{:.1f} s",
        "≤ interval x failureThreshold + 1 s",
        lambda v, s: v <= s.detection_goal_s,
    ),
    Row(
        "detection max",
        "detection_max_s",
        "{:.1f} s",
        "≤ interval x failureThreshold + 1 s",
        lambda v, s: v <= s.detection_goal_s,
    ),
    Row(
        "status lag after the deciding probe, max",
        "status_lag_max_s",
        "{:.2f} s",
        "≤ 1 s",
        lambda v, s: v <= 1,
    ),
    Row("time to half Healthy after operator start", "half_healthy_s", "{:.1f} s"),
    Row(
        "time to all Healthy after operator start",
        "all_healthy_s",
        "{:.1f} s",
        "≤ 30 s",
        lambda v, s: v <= 30,
    ),
    Row("API requests/s until all Healthy (all clients)", "start_api_rate", "{:.0f}"),
    Row("CPU until all Healthy: API server", "start_cpu_apiserver_s", "{:.1f} s"),
    Row("CPU until all Healthy: etcd", "start_cpu_etcd_s", "{:.1f} s"),
    Row("CPU until all Healthy: operator", "start_cpu_operator_s", "{:.1f} s"),
    Row("CPU until all Healthy: fleet servers", "start_cpu_fleet_s", "{:.1f} s"),
    Row("whole machine busy, cores", "machine_busy_share", "{:.2f}"),
    Row("baseline: new mcp.Client per probe, client CPU", "baseline_fresh_client_ms", "{:.2f} ms"),
    Row("baseline: new Prober per probe, client CPU", "baseline_fresh_prober_ms", "{:.2f} ms"),
    Row("baseline: kept Prober session, client CPU", "baseline_kept_ms", "{:.2f} ms"),
    Row("baseline ratio (new client / kept session)", "baseline_ratio", "x {:.1f}"),
]


def _fmt(fmt: str, value: float) -> str:
    return "n/a" if math.isnan(value) else fmt.format(value)


def report(settings: Settings, results: list[RunResult]) -> str:
    s = settings
    loop = "" if s.loop == "auto" else f", --loop {s.loop}"
    lines = [
        f"### {s.monitors} monitors, {s.servers} {s.fleet} fleet servers{loop}, "
        f"interval {s.interval_s:g}s, "
        f"failureThreshold {s.failure_threshold}; {len(results)} runs, "
        f"{s.window_s:g}s window, medians",
        "",
        "| metric | median | runs | goal | met |",
        "|---|---:|---|---|---|",
    ]
    for row in ROWS:
        values = [r.figures.get(row.key, math.nan) for r in results]
        present = [v for v in values if not math.isnan(v)]
        median = statistics.median(present) if present else math.nan
        runs = " / ".join(_fmt(row.fmt, v) for v in values)
        met = ""
        if row.check is not None and not math.isnan(median):
            met = "yes" if row.check(median, s) else "**no**"
        goal = row.goal.replace("interval x failureThreshold + 1 s", f"{s.detection_goal_s:g} s")
        lines.append(f"| {row.label} | {_fmt(row.fmt, median)} | {runs} | {goal} | {met} |")
    failed = sorted(
        {
            k
            for r in results
            for k in r.figures
            if k.startswith("failed_") and k not in ("failed_probes", "failed_share")
        }
    )
    if failed:
        lines += ["", "Failed probes in the window, by outcome:", ""]
        lines += ["| outcome | median | runs |", "|---|---:|---|"]
        for key in failed:
            shares = [r.figures.get(key, 0.0) for r in results]
            runs = " / ".join(f"{c:.0f}" for c in shares)
            lines.append(
                f"| {key.removeprefix('failed_')} | {statistics.median(shares):g} | {runs} |"
            )
    lines += _request_table("during the window", [r.requests for r in results])
    lines += _request_table(
        "from the operator's start until all Healthy (every client)",
        [r.start_requests for r in results],
    )
    return "\n".join(lines)


def _request_table(when: str, counted: list[dict[str, int]]) -> list[str]:
    keys = {key for counts in counted for key in counts}
    requests = {key: [counts.get(key, 0) for counts in counted] for key in keys}
    lines = ["", f"API requests {when}, by verb and resource (median of runs):", ""]
    lines += ["| request | median | runs |", "|---|---:|---|"]
    for key, counts in sorted(requests.items(), key=lambda kv: -statistics.median(kv[1])):
        runs = " / ".join(str(c) for c in counts)
        lines.append(f"| `{key}` | {statistics.median(counts):g} | {runs} |")
    return lines


# -- main --------------------------------------------------------------------------


def install_crds(plane: controlplane.ControlPlane) -> None:
    kubectl = [str(controlplane.kubectl_binary()), "--kubeconfig", str(plane.kubeconfig)]
    subprocess.run([*kubectl, "apply", "-f", str(REPO / "crds")], check=True, capture_output=True)
    subprocess.run(
        [
            *kubectl,
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            "crd/mcphealthmonitors.mcphealth.dev",
        ],
        check=True,
        capture_output=True,
    )


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python bench/scale.py",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--monitors", default="100", help="how many monitors; a comma list runs several scales"
    )
    parser.add_argument("--servers", type=int, default=2, help="fleet server processes")
    parser.add_argument("--interval", type=float, default=5.0, help="probe interval, seconds")
    parser.add_argument("--timeout", type=float, default=1.0, help="probe timeout, seconds")
    parser.add_argument("--failure-threshold", type=int, default=3)
    parser.add_argument("--window", type=float, default=60.0, help="measuring window, seconds")
    parser.add_argument(
        "--warmup", type=float, default=10.0, help="seconds after all monitors are Healthy"
    )
    parser.add_argument(
        "--settle",
        type=float,
        default=60.0,
        help="wait at most this long plus 0.1 s per monitor for all monitors to be Healthy "
        "(default 60); then measure anyway",
    )
    parser.add_argument(
        "--ramp",
        type=float,
        default=0.0,
        metavar="PER_SECOND",
        help="start the operator first and add monitors at this rate (default 0: create them "
        "all, then start the operator: a cold start of the whole fleet)",
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--flip-share", type=float, default=0.10, help="share turned unhealthy")
    parser.add_argument("--baseline-targets", type=int, default=20)
    parser.add_argument("--baseline-fresh-rounds", type=int, default=5)
    parser.add_argument("--baseline-kept-rounds", type=int, default=50)
    parser.add_argument(
        "--profile",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="after the window of run 1, profile the operator with py-spy this long",
    )
    parser.add_argument("--json-response", action="store_true", help="fleet servers answer JSON")
    parser.add_argument(
        "--fleet",
        choices=bench_fleet.KINDS,
        default="go",
        help="the targets: go (bench/fleet, built with the Go toolchain on first use; the "
        "default: it costs a few percent of a core) or python (sample_mcp.fleet, the "
        "official SDK's server, which saturates a core at a few hundred reads/s)",
    )
    parser.add_argument(
        "--loop",
        default="auto",
        help="the operator's --loop; a comma list (e.g. uvloop,asyncio) takes turns run by "
        "run at each scale and reports each loop's medians and their ratios",
    )
    parser.add_argument("--json", type=Path, help="also write every run's figures here")
    parser.add_argument("--workdir", type=Path, help="logs and profiles (default: a temp dir)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    scales = [int(n) for n in str(args.monitors).split(",") if n.strip()]
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="mcp-health-scale-"))
    workdir.mkdir(parents=True, exist_ok=True)
    print(f"logs in {workdir}", flush=True)
    plane = controlplane.ControlPlane(workdir=workdir / "controlplane").start()
    reports: list[str] = []
    dump: dict[str, Any] = {}
    try:
        install_crds(plane)
        for n in scales:
            settings = Settings(
                monitors=n,
                servers=max(1, min(args.servers, n)),
                interval_s=args.interval,
                timeout_s=args.timeout,
                failure_threshold=args.failure_threshold,
                window_s=args.window,
                warmup_s=args.warmup,
                ramp_per_s=args.ramp,
                settle_s=args.settle,
                flip_share=args.flip_share,
                baseline_targets=args.baseline_targets,
                baseline_fresh_rounds=args.baseline_fresh_rounds,
                baseline_kept_rounds=args.baseline_kept_rounds,
                profile_s=args.profile,
                workdir=workdir,
                json_response=args.json_response,
                fleet=args.fleet,
            )
            loops = [name.strip() for name in str(args.loop).split(",") if name.strip()]
            servers = start_fleet(settings)
            by_loop: dict[str, list[RunResult]] = {name: [] for name in loops}
            try:
                # Loops take turns run by run, so drift on the machine falls on each alike.
                for index in range(1, args.runs + 1):
                    for name in loops:
                        if index > 1 or name != loops[0]:
                            settings = _without_profile(settings)
                        run = Run(replace(settings, loop=name), plane, servers, index)
                        by_loop[name].append(asyncio.run(run.execute()))
            finally:
                for server in servers:
                    server.stop()
            texts = [report(replace(settings, loop=name), by_loop[name]) for name in loops]
            if len(loops) > 1:
                texts.append(loop_ratios(loops, by_loop))
            text = "\n\n".join(texts)
            profiles = [r.profile for rs in by_loop.values() for r in rs if r.profile is not None]
            if profiles:
                text += "\n\nOperator profile (py-spy, run 1, after the window):\n\n"
                text += summarize_profile(profiles[0])
            reports.append(text)
            print("\n" + text + "\n", flush=True)
            runs_dump = [
                {
                    "loop": name,
                    "figures": r.figures,
                    "requests": r.requests,
                    "start_requests": r.start_requests,
                    "profile": str(r.profile or ""),
                }
                for name in loops
                for r in by_loop[name]
            ]
            dump[str(n)] = runs_dump
            if args.json:
                args.json.write_text(json.dumps(dump, indent=2))
    finally:
        plane.stop()
        # Keep the logs and profiles, not etcd's data.
        shutil.rmtree(plane.workdir / "etcd", ignore_errors=True)
    if len(reports) > 1:
        print("\n\n".join(reports))
    return 0


def loop_ratios(loops: list[str], by_loop: dict[str, list[RunResult]]) -> str:
    """Each figure's median per loop and its ratio to the first loop's, runs taken in turns."""
    first = loops[0]
    head = " | ".join(loops)
    ratios = " | ".join(f"{name} / {first}" for name in loops[1:])
    lines = [
        f"### Event loops side by side (runs in turns; ratios of medians to {first})",
        "",
        f"| metric | {head} | {ratios} |",
        "|---|" + "---:|" * (len(loops) * 2 - 1),
    ]
    for row in ROWS:
        medians = []
        for name in loops:
            values = [r.figures.get(row.key, math.nan) for r in by_loop[name]]
            present = [v for v in values if not math.isnan(v)]
            medians.append(statistics.median(present) if present else math.nan)
        cells = [_fmt(row.fmt, m) for m in medians]
        base = medians[0]
        for m in medians[1:]:
            cells.append(f"{m / base:.2f}" if base and not math.isnan(base) else "")
        lines.append(f"| {row.label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _without_profile(settings: Settings) -> Settings:
    return replace(settings, profile_s=0.0)


if __name__ == "__main__":
    sys.exit(main())
