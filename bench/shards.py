"""Benchmark: several replicas sharing the monitors (``--membership shard``), on real parts.

The goal: 10,000 monitors at a 15 s interval over 3 replicas, each monitor
probed by exactly one replica, and a replica killed with SIGKILL has its
share taken over within the lease bound (``--lease-duration`` + 2 x
``--lease-renew`` + the probe interval).

Starts the real API server (``mcp_health_testbed.controlplane``) with the
CRD and the Go target fleet of ``bench/fleet`` (``bench/scale.py``'s parts,
imported from there), creates N Services and N MCPHealthMonitors in a fresh
namespace, starts R ``mcp-health run --membership shard`` processes (one
``--resolve`` entry per Service, identities ``shard-0`` ..), waits until
every monitor is Healthy and every replica sees all R members, warms up,
and then:

- steady state, over a window: per replica the monitors it probed, from
  the *deltas* of its ``mcp_probe_total`` between the window's two scrapes
  (a replica drops a monitor's series when it hands the monitor over, and
  a worker started anew counts from zero again: the cumulative label set
  says nothing about who probes now); "probed by exactly one replica" is
  the sum over replicas of distinct monitors probed equal to N with no
  monitor in two replicas' sets. Per replica CPU (``/proc/<pid>/stat``) per
  probe, share of one core, RSS (peak over the window). From the fleet's
  read log: overlaps (an inter-read gap under half the interval, as a
  second prober would cause) and missed intervals (a gap over 1.5
  intervals). API requests per second from the API server's own
  ``apiserver_request_total``;
- takeover: SIGKILL one replica (``--victim``). For each monitor it probed
  in the window, the time from the kill to the fleet's next read of that
  target, which can only be a survivor's (reads in the first
  ``IN_FLIGHT_S`` after the kill are counted apart: requests the killed
  replica had already sent). p50 / max against the bound, how many came
  within it and within bound + ``--slack``, and which did not (listed, not
  hidden). Also: when each survivor's ``/healthz`` stopped listing the
  killed member, the API request rate from the kill until every orphan was
  read again, and the survivors' CPU meanwhile;
- after the takeover, over a second window (``--after-window``): the
  survivors together probe all N, each exactly once (counter deltas again);
  each survivor kept what it had (only the killed replica's monitors
  moved); overlaps in the fleet's read log from the kill to the end.

A markdown table of the medians over ``--runs`` runs is printed at the end
(each run: a new namespace and new replicas; the control plane and the
fleet servers are shared), with every run's figures in ``--json``.

    python bench/shards.py --monitors 300 --replicas 3 --interval 5 --window 20 --runs 1
    python bench/shards.py --lease-duration 6 --lease-renew 2 --json /tmp/shards.json
    python bench/shards.py          # the goal: 10,000 monitors, 3 replicas, 15 s, 3 runs
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
import re
import shutil
import signal
import statistics
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import httpx2

from bench import fleet as bench_fleet
from bench.scale import (
    MONITORS_API,
    Api,
    FleetServer,
    api_requests,
    cpu_seconds,
    create_monitors,
    create_services,
    fleet_arrivals,
    follow_healths,
    install_crds,
    memory_mb,
    monitor_manifest,
    operator_command,
    percentile,
    start_servers,
    stop_process,
)
from mcp_health_operator.core.config import Config
from mcp_health_testbed import _procs, controlplane

# Reads of an orphaned target this soon after the kill are the killed
# replica's requests already on the wire, not a takeover: a survivor takes
# over only once the killed Lease went a lease duration without a renewal it
# saw, at the earliest lease duration - renew period after the kill.
IN_FLIGHT_S = 0.5
MONITOR_LABEL = re.compile(r'[{,]monitor="([^"]*)"')


@dataclass(frozen=True)
class Settings:
    monitors: int
    replicas: int
    servers: int
    interval_s: float
    timeout_s: float
    failure_threshold: int
    window_s: float
    after_window_s: float
    warmup_s: float
    settle_s: float
    slack_s: float
    victim: int
    # None: the operator's default, and no flag passed.
    lease_duration_s: int | None
    lease_renew_s: float | None
    workdir: Path
    fleet: bench_fleet.Kind = "go"

    @property
    def duration_s(self) -> int:
        return self.lease_duration_s or Config().lease_duration_s

    @property
    def renew_s(self) -> float:
        return self.lease_renew_s or Config().lease_renew_s

    @property
    def bound_s(self) -> float:
        """The operator's promise for a replica killed without a goodbye."""
        return self.duration_s + 2 * self.renew_s + self.interval_s

    @property
    def in_flight_s(self) -> float:
        return min(IN_FLIGHT_S, max(self.duration_s - self.renew_s, 0.0) / 2)

    def lease_flags(self) -> list[str]:
        flags = []
        if self.lease_duration_s is not None:
            flags += ["--lease-duration", str(self.lease_duration_s)]
        if self.lease_renew_s is not None:
            flags += ["--lease-renew", f"{self.lease_renew_s:g}"]
        return flags


# -- helpers -----------------------------------------------------------------------


def probes_by_monitor(text: str) -> Counter[str]:
    """Probes so far (all outcomes) by monitor name, from a replica's ``mcp_probe_total``.

    A line filter, not the Prometheus parser: a replica's page has tens of
    thousands of lines at this scale and only one family is needed.
    """
    out: Counter[str] = Counter()
    for line in text.splitlines():
        if line.startswith("mcp_probe_total{"):
            match = MONITOR_LABEL.search(line)
            if match is not None:
                out[match.group(1)] += int(float(line.rsplit(" ", 1)[1]))
    return out


def probed_between(before: Counter[str], after: Counter[str]) -> Counter[str]:
    """Probes per monitor between two scrapes; only monitors probed at least once."""
    out: Counter[str] = Counter()
    for name, count in after.items():
        delta = count - before.get(name, 0)
        if delta < 0:  # the series started anew (handed away and back): count from zero
            delta = count
        if delta > 0:
            out[name] = delta
    return out


def tid_of(name: str) -> int:
    return int(name.removeprefix("mcp-"))


@dataclass
class Partition:
    """Who probed which monitors in a window, and whether that is a partition of all."""

    sets: dict[str, set[str]]
    expected: set[str]

    @property
    def sum_distinct(self) -> int:
        return sum(len(s) for s in self.sets.values())

    @property
    def in_two(self) -> set[str]:
        seen = Counter(itertools.chain.from_iterable(self.sets.values()))
        return {name for name, n in seen.items() if n > 1}

    @property
    def missing(self) -> set[str]:
        return self.expected - set().union(*self.sets.values())

    @property
    def exact(self) -> bool:
        return self.sum_distinct == len(self.expected) and not self.in_two and not self.missing


def gaps_in(
    arrivals: dict[int, list[float]], t0: float, t1: float, interval_s: float
) -> tuple[int, int, set[int]]:
    """(overlaps, missed intervals, targets with an overlap) among reads in [t0, t1]."""
    overlaps = misses = 0
    overlapping: set[int] = set()
    for tid, times in arrivals.items():
        inside = [t for t in times if t0 <= t <= t1]
        for a, b in itertools.pairwise(inside):
            if b - a < interval_s / 2:
                overlaps += 1
                overlapping.add(tid)
            elif b - a > interval_s * 1.5:
                misses += 1
    return overlaps, misses, overlapping


def requests_by_key(delta: Counter[tuple[str, str]]) -> dict[str, int]:
    return {f"{verb} {res}": count for (verb, res), count in delta.items()}


# -- the replicas ----------------------------------------------------------------


@dataclass
class Replica:
    name: str
    metrics_port: int
    log: Path
    proc: asyncio.subprocess.Process

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def alive(self) -> bool:
        return self.proc.returncode is None


@dataclass
class Sample:
    """One replica at one moment: its probe counts, its CPU and when that was read."""

    counts: Counter[str]
    cpu_s: float
    at: float


@dataclass
class RunResult:
    figures: dict[str, float] = field(default_factory=dict)
    requests_steady: dict[str, int] = field(default_factory=dict)
    requests_takeover: dict[str, int] = field(default_factory=dict)
    # Orphaned monitors not read again within the bound: (name, seconds or None).
    late: list[tuple[str, float | None]] = field(default_factory=list)
    replica_names: list[str] = field(default_factory=list)


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
        self.namespace = f"shards-{settings.monitors}-{index}-{os.urandom(2).hex()}"
        self.api = Api(plane)
        self.http = httpx2.AsyncClient(timeout=httpx2.Timeout(60.0))
        self.replicas: list[Replica] = []
        self.result = RunResult()
        self.names = {f"mcp-{tid}" for tid in range(settings.monitors)}
        self.started = 0.0  # when the replicas were started (monotonic)
        self.started_at = 0.0  # the same, epoch (as the fleet's read log)
        self.killed = 0.0  # when the victim was killed (epoch, as the fleet's read log)

    def say(self, text: str) -> None:
        s = self.settings
        print(
            f"[{s.monitors} monitors / {s.replicas} replicas, run {self.index}] {text}", flush=True
        )

    def phase(self, key: str, started: float) -> None:
        self.result.figures[f"phase_{key}_s"] = time.monotonic() - started

    async def execute(self) -> RunResult:
        begun = time.monotonic()
        try:
            started = time.monotonic()
            await self.setup()
            self.phase("setup", started)
            started = time.monotonic()
            await self.start_replicas()
            await asyncio.gather(self.wait_all_healthy(), self.wait_members())
            self.phase("start", started)
            self.say(f"warming up {self.settings.warmup_s:g}s")
            started = time.monotonic()
            await asyncio.sleep(self.settings.warmup_s)
            self.phase("warmup", started)
            started = time.monotonic()
            steady = await self.steady_window()
            self.phase("window", started)
            started = time.monotonic()
            await self.takeover(steady)
            self.phase("takeover", started)
            started = time.monotonic()
            await self.after_window(steady)
            self.phase("after_window", started)
        finally:
            started = time.monotonic()
            for replica in self.replicas:
                await stop_process(replica.proc)
            with contextlib.suppress(Exception):
                await self.api.delete_collection(MONITORS_API.format(ns=self.namespace))
            await self.api.aclose()
            await self.http.aclose()
            self.phase("teardown", started)
            self.result.figures["run_wall_s"] = time.monotonic() - begun
        return self.result

    # -- setup ----------------------------------------------------------------

    async def setup(self) -> None:
        s, ns = self.settings, self.namespace
        took = await create_services(self.api, self.http, self.servers, ns, s.monitors)
        self.say(f"{s.monitors} Services created in {took:.1f}s")
        manifests = (
            monitor_manifest(i, s.interval_s, s.timeout_s, s.failure_threshold)
            for i in range(s.monitors)
        )
        took = await create_monitors(self.api, ns, manifests)
        self.say(f"{s.monitors} monitors created in {took:.1f}s")

    async def start_replicas(self) -> None:
        s = self.settings
        self.started, self.started_at = time.monotonic(), time.time()
        for k in range(s.replicas):
            name = f"shard-{k}"
            port = _procs.free_port()
            log = s.workdir / f"replica-{self.namespace}-{name}.log"
            proc = await asyncio.create_subprocess_exec(
                *operator_command(self.namespace, port, self.servers, s.monitors),
                "--membership",
                "shard",
                "--identity",
                name,
                *s.lease_flags(),
                env={**os.environ, "KUBECONFIG": str(self.plane.kubeconfig)},
                stdout=log.open("ab"),
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            self.replicas.append(Replica(name, port, log, proc))
        self.result.replica_names = [r.name for r in self.replicas]
        self.say(
            f"{s.replicas} replicas started (lease {s.duration_s}s, renew {s.renew_s:g}s; "
            f"bound {s.bound_s:g}s)"
        )

    def check_alive(self, replicas: Sequence[Replica]) -> None:
        for r in replicas:
            if not r.alive:
                raise RuntimeError(
                    f"replica {r.name} exited with {r.proc.returncode}{_procs.tail(r.log)}"
                )

    async def wait_all_healthy(self) -> None:
        """Until every monitor is Healthy; past the deadline, measure whatever state it is in.

        Followed on a watch: listing 10,000 monitors again and again loads the
        API server during the very start being measured (and timed out).
        """
        n = self.settings.monitors
        healths: dict[str, str] = {}

        def update(name: str, health: str) -> bool:
            healths[name] = health
            return sum(1 for h in healths.values() if h == "Healthy") == n

        async def alive() -> None:
            while True:
                self.check_alive(self.replicas)
                await asyncio.sleep(2)

        watchdog = asyncio.create_task(alive())
        try:
            await asyncio.wait_for(
                follow_healths(self.api, self.namespace, update),
                timeout=self.settings.settle_s + 0.1 * n,
            )
            took = time.monotonic() - self.started
            self.result.figures["all_healthy_s"] = took
            self.say(f"all {n} monitors Healthy {took:.1f}s after the replicas started")
        except TimeoutError:
            healthy = sum(1 for h in healths.values() if h == "Healthy")
            self.say(f"only {healthy} of {n} monitors Healthy by the deadline; measuring anyway")
        finally:
            watchdog.cancel()
        self.result.figures["healthy_at_start"] = sum(1 for h in healths.values() if h == "Healthy")

    async def healthz(self, replica: Replica) -> dict[str, Any]:
        response = await self.http.get(f"http://127.0.0.1:{replica.metrics_port}/healthz")
        response.raise_for_status()
        return dict(response.json())

    async def views(self, replicas: Sequence[Replica]) -> dict[str, list[str]]:
        return {r.name: list((await self.healthz(r)).get("members") or []) for r in replicas}

    async def wait_members(self) -> None:
        """Until every replica lists all of them: before that, shares are still moving.

        Replicas that never agree are a result too: the windows then show shares moving.
        """
        everyone = sorted(r.name for r in self.replicas)
        deadline = time.monotonic() + self.settings.settle_s + 0.1 * self.settings.monitors
        views: dict[str, list[str]] = {}
        while time.monotonic() < deadline:
            self.check_alive(self.replicas)
            with contextlib.suppress(httpx2.HTTPError):  # not listening yet
                views = await self.views(self.replicas)
            if len(views) == len(everyone) and all(v == everyone for v in views.values()):
                took = time.monotonic() - self.started
                self.result.figures["members_converged_s"] = took
                self.say(f"every replica sees all {len(everyone)} members ({took:.1f}s)")
                return
            await asyncio.sleep(0.5)
        self.say(f"the replicas never agreed on the members: {views}; measuring anyway")

    async def metrics(self, replica: Replica) -> str:
        response = await self.http.get(f"http://127.0.0.1:{replica.metrics_port}/metrics")
        response.raise_for_status()
        return response.text

    async def sample(self, replica: Replica, *, cpu_first: bool) -> Sample:
        # The scrape costs the replica CPU: keep it outside the CPU interval.
        if cpu_first:
            cpu, at = cpu_seconds(replica.pid), time.time()
            counts = probes_by_monitor(await self.metrics(replica))
        else:
            counts = probes_by_monitor(await self.metrics(replica))
            cpu, at = cpu_seconds(replica.pid), time.time()
        return Sample(counts, cpu, at)

    # -- windows ----------------------------------------------------------------

    async def window(
        self, replicas: Sequence[Replica], seconds: float, prefix: str
    ) -> tuple[Partition, float, float, Counter[tuple[str, str]]]:
        """Measure ``replicas`` for ``seconds``: (who probed what, t0, t1, API requests)."""
        figures = self.result.figures
        self.check_alive(replicas)
        views0 = await self.views(replicas)
        api0 = api_requests(await self.api.metrics())
        before = {r.name: await self.sample(r, cpu_first=False) for r in replicas}
        t0 = time.time()
        peak = dict.fromkeys((r.name for r in replicas), 0.0)
        while time.time() < t0 + seconds:
            for r in replicas:
                peak[r.name] = max(peak[r.name], memory_mb(r.pid)[0])
            await asyncio.sleep(min(1.0, max(t0 + seconds - time.time(), 0.0)))
        after = {r.name: await self.sample(r, cpu_first=True) for r in replicas}
        t1 = time.time()
        api1 = api_requests(await self.api.metrics())
        views1 = await self.views(replicas)
        self.check_alive(replicas)

        elapsed = t1 - t0
        figures[f"{prefix}_s"] = elapsed
        # A membership change inside the window would move shares mid-window.
        figures[f"{prefix}_views_stable"] = float(views0 == views1)
        sets: dict[str, set[str]] = {}
        probes_all = cpu_all = rate_all = share_all = 0.0
        for r in replicas:
            probed = probed_between(before[r.name].counts, after[r.name].counts)
            sets[r.name] = set(probed)
            probes = float(sum(probed.values()))
            cpu = after[r.name].cpu_s - before[r.name].cpu_s
            # Each replica's own interval: the scrapes are one after the other.
            own = after[r.name].at - before[r.name].at
            probes_all += probes
            cpu_all += cpu
            rate_all += probes / own
            share_all += cpu / own
            key = f"{prefix}_{r.name}"
            figures[f"{key}_monitors"] = len(probed)
            figures[f"{key}_probes_per_s"] = probes / own
            figures[f"{key}_cpu_ms_per_probe"] = cpu * 1000 / probes if probes else math.nan
            figures[f"{key}_cpu_share"] = cpu / own
            figures[f"{key}_rss_mb"] = max(peak[r.name], memory_mb(r.pid)[0])
        part = Partition(sets, self.names)
        figures[f"{prefix}_probes_per_s"] = rate_all
        figures[f"{prefix}_cpu_ms_per_probe"] = (
            cpu_all * 1000 / probes_all if probes_all else math.nan
        )
        figures[f"{prefix}_cpu_share_sum"] = share_all
        figures[f"{prefix}_monitors_sum"] = part.sum_distinct
        figures[f"{prefix}_monitors_in_two"] = len(part.in_two)
        figures[f"{prefix}_monitors_missing"] = len(part.missing)
        figures[f"{prefix}_exactly_once"] = float(part.exact)
        shares = [len(v) for v in sets.values()]
        figures[f"{prefix}_share_min"] = min(shares)
        figures[f"{prefix}_share_max"] = max(shares)
        requests = api1 - api0
        figures[f"{prefix}_api_per_s"] = sum(requests.values()) / elapsed
        # The replicas' own (the API server PUTs its own identity Lease).
        figures[f"{prefix}_lease_requests_per_s"] = (
            sum(c for (verb, res), c in requests.items() if res == "leases" and verb != "PUT")
            / elapsed
        )
        return part, t0, t1, requests

    async def steady_window(self) -> Partition:
        s, figures = self.settings, self.result.figures
        self.say(f"steady state: measuring for {s.window_s:g}s")
        part, t0, t1, requests = await self.window(self.replicas, s.window_s, "steady")
        self.result.requests_steady = requests_by_key(requests)
        arrivals = await fleet_arrivals(self.http, self.servers, self.started_at)
        overlaps, misses, overlapping = gaps_in(arrivals, t0, t1, s.interval_s)
        figures["steady_overlaps"] = overlaps
        figures["steady_overlapping_monitors"] = len(overlapping)
        figures["steady_missed_intervals"] = misses
        # While the replicas joined: a newcomer starts what it wins at once, the
        # older members stop it only at their next listing.
        joining, _, _ = gaps_in(arrivals, self.started_at, t0, s.interval_s)
        figures["start_overlaps"] = joining
        per = ", ".join(f"{name} {len(v)}" for name, v in part.sets.items())
        self.say(
            f"monitors probed per replica: {per} (sum {part.sum_distinct} of {s.monitors}, "
            f"{len(part.in_two)} by two, {len(part.missing)} by none); "
            f"{overlaps} overlaps in the fleet's reads; "
            f"{figures['steady_api_per_s']:.1f} API requests/s"
        )
        return part

    # -- takeover ---------------------------------------------------------------

    async def takeover(self, steady: Partition) -> None:
        s, figures = self.settings, self.result.figures
        victim = self.replicas[s.victim]
        survivors = [r for r in self.replicas if r is not victim]
        orphans = {tid_of(name) for name in steady.sets[victim.name]}
        figures["orphaned"] = len(orphans)

        dropped: dict[str, float] = {}
        watcher = asyncio.create_task(self.watch_views(survivors, victim.name, dropped))
        api0 = api_requests(await self.api.metrics())
        cpu0 = sum(cpu_seconds(r.pid) for r in survivors)
        killed = time.time()
        os.kill(victim.pid, signal.SIGKILL)
        await victim.proc.wait()
        self.say(f"SIGKILL {victim.name}: {len(orphans)} monitors orphaned; waiting for reads")

        deadline = killed + s.bound_s + s.slack_s
        first: dict[int, float] = {}
        in_flight: set[int] = set()
        while True:
            arrivals = await fleet_arrivals(self.http, self.servers, killed)
            for tid in orphans - first.keys():
                times = arrivals.get(tid, [])
                if any(t <= killed + s.in_flight_s for t in times):
                    in_flight.add(tid)
                later = [t for t in times if t > killed + s.in_flight_s]
                if later:
                    first[tid] = min(later)
            if len(first) == len(orphans) or time.time() >= deadline:
                break
            self.check_alive(survivors)
            await asyncio.sleep(min(2.0, max(deadline - time.time(), 0.0)))
        done = time.time()
        cpu1 = sum(cpu_seconds(r.pid) for r in survivors)
        api1 = api_requests(await self.api.metrics())
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher

        # An orphan never read again counts as infinitely late: percentiles must not hide it.
        times = sorted(first[tid] - killed if tid in first else math.inf for tid in orphans)
        within = sum(1 for t in times if t <= s.bound_s)
        within_slack = sum(1 for t in times if t <= s.bound_s + s.slack_s)
        figures["takeover_bound_s"] = s.bound_s
        figures["takeover_p50_s"] = percentile(times, 50)
        figures["takeover_p99_s"] = percentile(times, 99)
        figures["takeover_max_s"] = max(times, default=math.nan)
        figures["takeover_within_bound"] = within
        figures["takeover_late"] = len(orphans) - within
        figures["takeover_within_bound_slack"] = within_slack
        figures["takeover_unread"] = len(orphans) - len(first)
        figures["takeover_all_within_bound"] = float(within == len(orphans))
        figures["takeover_in_flight_reads"] = len(in_flight)
        # NaN when a survivor never dropped it while we waited.
        figures["takeover_members_dropped_s"] = (
            max(dropped[r.name] - killed for r in survivors)
            if all(r.name in dropped for r in survivors)
            else math.nan
        )
        # Reads of the victim's monitors only arrive once the survivors noticed; the
        # period is from the kill until the last orphan's read was seen (or the deadline).
        period = done - killed
        requests = api1 - api0
        figures["takeover_period_s"] = period
        figures["takeover_api_per_s"] = sum(requests.values()) / period
        figures["takeover_survivors_cpu_share"] = (cpu1 - cpu0) / period
        self.result.requests_takeover = requests_by_key(requests)
        self.result.late = sorted(
            (f"mcp-{tid}", (first[tid] - killed) if tid in first else None)
            for tid in orphans
            if tid not in first or first[tid] - killed > s.bound_s
        )
        self.killed = killed
        self.say(
            f"taken over: {len(first)}/{len(orphans)} read again, p50 "
            f"{figures['takeover_p50_s']:.1f}s, max {figures['takeover_max_s']:.1f}s "
            f"(bound {s.bound_s:g}s); {within} within the bound, "
            f"{len(orphans) - len(first)} not read by bound + {s.slack_s:g}s; "
            f"members dropped after {figures['takeover_members_dropped_s']:.1f}s"
        )

    async def watch_views(self, survivors: list[Replica], gone: str, out: dict[str, float]) -> None:
        """When each survivor's view first lacks the killed member (wall clock)."""
        while len(out) < len(survivors):
            for r in survivors:
                if r.name in out:
                    continue
                with contextlib.suppress(httpx2.HTTPError):
                    if gone not in ((await self.healthz(r)).get("members") or []):
                        out[r.name] = time.time()
            await asyncio.sleep(0.5)

    # -- after the takeover -------------------------------------------------------

    async def after_window(self, steady: Partition) -> None:
        s, figures = self.settings, self.result.figures
        victim = self.replicas[s.victim]
        survivors = [r for r in self.replicas if r is not victim]
        self.say(f"after the takeover: measuring the survivors for {s.after_window_s:g}s")
        part, _, t1, _ = await self.window(survivors, s.after_window_s, "after")
        orphans = steady.sets[victim.name]
        # Rendezvous hashing: the survivors keep their own and only gain the victim's.
        lost = sum(len(steady.sets[name] - mine) for name, mine in part.sets.items())
        gained_other = sum(
            len(mine - steady.sets[name] - orphans) for name, mine in part.sets.items()
        )
        figures["after_moved_other"] = lost + gained_other
        arrivals = await fleet_arrivals(self.http, self.servers, self.killed)
        overlaps, _, overlapping = gaps_in(arrivals, self.killed, t1, s.interval_s)
        figures["after_overlaps"] = overlaps
        figures["after_overlapping_monitors"] = len(overlapping)
        per = ", ".join(f"{name} {len(v)}" for name, v in part.sets.items())
        self.say(
            f"survivors: {per} (sum {part.sum_distinct} of {s.monitors}, "
            f"{len(part.in_two)} by two, {len(part.missing)} by none); "
            f"{lost + gained_other} monitors moved besides the victim's; "
            f"{overlaps} overlaps since the kill"
        )


# -- report ------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    label: str
    key: str
    fmt: str
    goal: Callable[[Settings], str] | None = None
    check: Callable[[float, Settings], bool] | None = None


def _yes(v: float) -> str:
    return "yes" if v >= 1 else "**no**"


def rows(settings: Settings, names: Sequence[str]) -> list[Row]:
    def n(s: Settings) -> str:
        return f"{s.monitors}"

    def zero(s: Settings) -> str:
        return "0"

    def bound(s: Settings) -> str:
        return f"≤ {s.bound_s:g} s"

    def is_zero(v: float, s: Settings) -> bool:
        return v == 0

    def is_n(v: float, s: Settings) -> bool:
        return v == s.monitors

    def in_bound(v: float, s: Settings) -> bool:
        return v <= s.bound_s

    victim = names[settings.victim] if names else ""
    out = [
        Row("time to all Healthy after the replicas started", "all_healthy_s", "{:.1f} s"),
        Row("monitors Healthy when measuring began", "healthy_at_start", "{:.0f}", n, is_n),
        Row("time until every replica saw all members", "members_converged_s", "{:.1f} s"),
        Row("overlaps in the fleet's reads while they joined", "start_overlaps", "{:.0f}"),
        Row("**steady window**", "", ""),
        Row("members' views unchanged over the window", "steady_views_stable", "yes/no"),
        Row(
            "sum over replicas of distinct monitors probed",
            "steady_monitors_sum",
            "{:.0f}",
            n,
            is_n,
        ),
        Row("monitors probed by two replicas", "steady_monitors_in_two", "{:.0f}", zero, is_zero),
        Row("monitors probed by none", "steady_monitors_missing", "{:.0f}", zero, is_zero),
        Row("each monitor probed by exactly one replica", "steady_exactly_once", "yes/no"),
        Row(
            "overlaps in the fleet's reads (gap < interval/2)",
            "steady_overlaps",
            "{:.0f}",
            zero,
            is_zero,
        ),
        Row("missed intervals (gap > 1.5 x interval)", "steady_missed_intervals", "{:.0f}"),
        Row("share per replica, smallest", "steady_share_min", "{:.0f}"),
        Row("share per replica, largest", "steady_share_max", "{:.0f}"),
        Row("probes/s, all replicas", "steady_probes_per_s", "{:.1f}"),
        Row("CPU per probe, all replicas", "steady_cpu_ms_per_probe", "{:.2f} ms"),
        Row("CPU, all replicas, cores", "steady_cpu_share_sum", "{:.2f}"),
    ]
    for name in names:
        key = f"steady_{name}"
        out += [
            Row(f"{name}: monitors probed", f"{key}_monitors", "{:.0f}"),
            Row(f"{name}: CPU per probe", f"{key}_cpu_ms_per_probe", "{:.2f} ms"),
            Row(f"{name}: CPU, share of one core", f"{key}_cpu_share", "{:.1%}"),
            Row(f"{name}: RSS (peak in window)", f"{key}_rss_mb", "{:.0f} MB"),
        ]
    out += [
        Row("API requests/s, steady", "steady_api_per_s", "{:.1f}"),
        Row("of which the replicas' Lease requests/s", "steady_lease_requests_per_s", "{:.2f}"),
        Row(f"**takeover: SIGKILL {victim}**", "", ""),
        Row("monitors orphaned (the killed replica's share)", "orphaned", "{:.0f}"),
        Row(
            "survivors' views without it, after (slowest)", "takeover_members_dropped_s", "{:.1f} s"
        ),
        Row("kill → next read, p50", "takeover_p50_s", "{:.1f} s", bound, in_bound),
        Row("kill → next read, p99", "takeover_p99_s", "{:.1f} s", bound, in_bound),
        Row("kill → next read, max", "takeover_max_s", "{:.1f} s", bound, in_bound),
        Row("orphans read again within the bound", "takeover_within_bound", "{:.0f}"),
        Row("orphans read later than the bound", "takeover_late", "{:.0f}", zero, is_zero),
        Row("orphans not read by bound + slack", "takeover_unread", "{:.0f}", zero, is_zero),
        Row("every orphan read again within the bound", "takeover_all_within_bound", "yes/no"),
        Row(
            "orphans read just after the kill (in flight, ignored)",
            "takeover_in_flight_reads",
            "{:.0f}",
        ),
        Row("takeover period (kill → last orphan read)", "takeover_period_s", "{:.1f} s"),
        Row("API requests/s during the takeover", "takeover_api_per_s", "{:.1f}"),
        Row("survivors' CPU during the takeover, cores", "takeover_survivors_cpu_share", "{:.2f}"),
        Row("**after the takeover**", "", ""),
        Row(
            "sum over survivors of distinct monitors probed",
            "after_monitors_sum",
            "{:.0f}",
            n,
            is_n,
        ),
        Row("monitors probed by two survivors", "after_monitors_in_two", "{:.0f}", zero, is_zero),
        Row("monitors probed by none", "after_monitors_missing", "{:.0f}", zero, is_zero),
        Row("each monitor probed by exactly one survivor", "after_exactly_once", "yes/no"),
        Row(
            "monitors moved besides the killed one's", "after_moved_other", "{:.0f}", zero, is_zero
        ),
        Row(
            "overlaps in the fleet's reads since the kill",
            "after_overlaps",
            "{:.0f}",
            zero,
            is_zero,
        ),
    ]
    for name in names:
        if name != victim:
            out.append(Row(f"{name}: monitors probed", f"after_{name}_monitors", "{:.0f}"))
    out += [
        Row("API requests/s after", "after_api_per_s", "{:.1f}"),
        Row("survivors' CPU per probe", "after_cpu_ms_per_probe", "{:.2f} ms"),
        Row("wall time of the run", "run_wall_s", "{:.0f} s"),
    ]
    return out


def _fmt(fmt: str, value: float) -> str:
    if math.isnan(value):
        return "n/a"
    if fmt == "yes/no":
        return _yes(value)
    return fmt.format(value)


def report(settings: Settings, results: list[RunResult]) -> str:
    s = settings
    names = results[0].replica_names if results else []
    lines = [
        f"### {s.monitors} monitors, {s.replicas} replicas (--membership shard), "
        f"interval {s.interval_s:g}s, lease {s.duration_s}s / renew {s.renew_s:g}s "
        f"(bound {s.bound_s:g}s, slack {s.slack_s:g}s); {len(results)} runs, "
        f"{s.window_s:g}s window, medians",
        "",
        "| metric | median | runs | goal | met |",
        "|---|---:|---|---|---|",
    ]
    for row in rows(s, names):
        if not row.key:
            lines.append(f"| {row.label} | | | | |")
            continue
        values = [r.figures.get(row.key, math.nan) for r in results]
        present = [v for v in values if not math.isnan(v)]
        median = statistics.median(present) if present else math.nan
        runs = " / ".join(_fmt(row.fmt, v) for v in values)
        goal = "yes" if row.fmt == "yes/no" else row.goal(s) if row.goal is not None else ""
        # Met only if every run met it: a median would hide one failing run.
        met = ""
        if present and row.fmt == "yes/no":
            met = "yes" if all(v >= 1 for v in present) else "**no**"
        elif present and row.check is not None:
            met = "yes" if all(row.check(v, s) for v in present) else "**no**"
        lines.append(f"| {row.label} | {_fmt(row.fmt, median)} | {runs} | {goal} | {met} |")
    late = [(i, name, t) for i, r in enumerate(results, 1) for name, t in r.late]
    if late:
        lines += ["", f"Orphans not read again within the bound ({len(late)}; first 20):", ""]
        lines += ["| run | monitor | kill → next read |", "|---:|---|---:|"]
        for i, name, t in late[:20]:
            lines.append(f"| {i} | {name} | {'never' if t is None else f'{t:.1f} s'} |")
    for title, attr in (("steady window", "requests_steady"), ("takeover", "requests_takeover")):
        per_run: list[dict[str, int]] = [getattr(r, attr) for r in results]
        keys = sorted({k for d in per_run for k in d})
        if not keys:
            continue
        lines += ["", f"API requests during the {title}, by verb and resource:", ""]
        lines += ["| request | median | runs |", "|---|---:|---|"]
        counts = {k: [d.get(k, 0) for d in per_run] for k in keys}
        for key, c in sorted(counts.items(), key=lambda kv: -statistics.median(kv[1])):
            lines.append(
                f"| `{key}` | {statistics.median(c):g} | {' / '.join(str(x) for x in c)} |"
            )
    phases = ["setup", "start", "warmup", "window", "takeover", "after_window", "teardown"]
    spent = [
        f"{p} {statistics.median([r.figures.get(f'phase_{p}_s', 0.0) for r in results]):.0f}s"
        for p in phases
    ]
    lines += ["", f"Wall time per run by phase (medians): {', '.join(spent)}"]
    return "\n".join(lines)


# -- main --------------------------------------------------------------------------


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python bench/shards.py",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--monitors", type=int, default=10_000)
    parser.add_argument("--replicas", type=int, default=3)
    parser.add_argument("--servers", type=int, default=2, help="fleet server processes")
    parser.add_argument("--interval", type=float, default=15.0, help="probe interval, seconds")
    parser.add_argument("--timeout", type=float, default=1.0, help="probe timeout, seconds")
    parser.add_argument("--failure-threshold", type=int, default=3)
    parser.add_argument("--window", type=float, default=60.0, help="steady window, seconds")
    parser.add_argument(
        "--after-window",
        type=float,
        default=None,
        help="window after the takeover, seconds (default: 2 x interval, so that every "
        "monitor is probed in it whatever its phase)",
    )
    parser.add_argument(
        "--warmup",
        type=float,
        default=None,
        help="seconds after all monitors are Healthy and the members agree (default: interval)",
    )
    parser.add_argument(
        "--settle",
        type=float,
        default=60.0,
        help="wait at most this long plus 0.1 s per monitor for all monitors to be Healthy",
    )
    parser.add_argument(
        "--lease-duration",
        type=int,
        default=None,
        help="passed to the replicas (default: none passed, the operator's 15)",
    )
    parser.add_argument(
        "--lease-renew",
        type=float,
        default=None,
        help="passed to the replicas (default: none passed, the operator's 5)",
    )
    parser.add_argument(
        "--slack",
        type=float,
        default=10.0,
        help="wait this long past the bound for orphans' reads (reported apart, not as met)",
    )
    parser.add_argument("--victim", type=int, default=0, help="index of the replica killed")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--fleet",
        choices=bench_fleet.KINDS,
        default="go",
        help="the targets: go (bench/fleet; the default) or python (sample_mcp.fleet)",
    )
    parser.add_argument("--json", type=Path, help="also write every run's figures here")
    parser.add_argument("--workdir", type=Path, help="logs (default: a temp dir)")
    args = parser.parse_args(argv)
    if args.replicas < 2:
        parser.error("--replicas must be at least 2: one is killed")
    if not 0 <= args.victim < args.replicas:
        parser.error("--victim must name one of the replicas (0 .. replicas - 1)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="mcp-health-shards-"))
    workdir.mkdir(parents=True, exist_ok=True)
    print(f"logs in {workdir}", flush=True)
    settings = Settings(
        monitors=args.monitors,
        replicas=args.replicas,
        servers=max(1, min(args.servers, args.monitors)),
        interval_s=args.interval,
        timeout_s=args.timeout,
        failure_threshold=args.failure_threshold,
        window_s=args.window,
        after_window_s=args.after_window if args.after_window is not None else 2 * args.interval,
        warmup_s=args.warmup if args.warmup is not None else args.interval,
        settle_s=args.settle,
        slack_s=args.slack,
        victim=args.victim,
        lease_duration_s=args.lease_duration,
        lease_renew_s=args.lease_renew,
        workdir=workdir,
        fleet=args.fleet,
    )
    if settings.renew_s >= settings.duration_s:
        print("--lease-renew must be shorter than --lease-duration", file=sys.stderr)
        return 2
    results: list[RunResult] = []
    plane_dir = workdir / "controlplane"
    try:
        with controlplane.ControlPlane(workdir=plane_dir) as plane:
            install_crds(plane)
            servers = start_servers(settings.monitors, settings.servers, workdir, kind=args.fleet)
            try:
                for index in range(1, args.runs + 1):
                    results.append(asyncio.run(Run(settings, plane, servers, index).execute()))
                    if args.json:
                        write_json(args.json, settings, results)
            finally:
                for server in servers:
                    server.stop()
    finally:
        # Keep the logs, not etcd's data.
        shutil.rmtree(plane_dir / "etcd", ignore_errors=True)
    print("\n" + report(settings, results) + "\n", flush=True)
    return 0


def write_json(path: Path, settings: Settings, results: list[RunResult]) -> None:
    dump = {
        "settings": {
            **asdict(settings),
            "workdir": str(settings.workdir),
            "bound_s": settings.bound_s,
        },
        "runs": [asdict(r) for r in results],
    }
    path.write_text(json.dumps(dump, indent=2, default=str))


if __name__ == "__main__":
    sys.exit(main())
