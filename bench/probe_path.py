"""Benchmark: the operator's CPU per steady probe, without the API server.

``MonitorWorker``s (the operator's own probe loop: probe, judge, conclude,
metrics, outbox) probe the Go fleet (``bench/fleet``) at URL targets, on one
event loop in this process; the API server is replaced by an object that
accepts the first status write of each monitor and nothing more happens
afterwards (a steady fleet writes nothing). After a warm-up, the process's
CPU time over a window is divided by the probes made in it.

It measures what ``bench/scale.py`` measures per probe, without the API
server, the watch and the fleet's Services: a quick figure for
comparing two versions of the probe path (runs of each taken in turn).

    python bench/probe_path.py --monitors 2000 --interval 2 --window 30 --runs 3
    python bench/probe_path.py --profile 20      # py-spy over the window's start
    python bench/probe_path.py --rehandshake-after 300,10 --runs 3   # a re-handshake's cost

With several ``--rehandshake-after`` values the runs take them in turn; each
run counts the sessions made in its window, and the CPU a session made (a
re-handshake: ``server/discover`` and a ``resources/list`` page) is the
difference of CPU between the pairs over the difference of sessions.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: the repository, not bench/, on the path
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from typing import Any

from bench.scale import server_of, start_servers
from mcp_health_operator.controller.monitor import MonitorObject, MonitorWorker
from mcp_health_operator.core import events
from mcp_health_operator.core.config import Config
from mcp_health_operator.kube.api import ObjectRef
from mcp_health_operator.probing.session import Session
from mcp_health_operator.runtime import heap
from mcp_health_operator.runtime.cli import event_loop_factory


class AcceptingKube:
    """Accepts every status write and Event; nothing else is asked in a steady fleet."""

    instance = "probe-path-bench"

    def __init__(self) -> None:
        self.writes = 0

    async def patch_status(self, ref: ObjectRef, status: dict[str, Any]) -> bool:
        self.writes += 1
        return True

    async def post_event(self, *args: Any, **kwargs: Any) -> None:
        return None


def _monitor(tid: int, url: str, interval: float) -> MonitorObject:
    spec = {
        "target": {"url": url, "transport": "streamable-http"},
        "probe": {"interval": f"{interval:g}s", "timeout": "1s", "failureThreshold": 3},
    }
    return MonitorObject(ObjectRef("bench", f"mcp-{tid}", f"uid-{tid}"), 1, spec)


class SessionCount:
    """Counts the sessions made (each re-handshake makes one) while installed."""

    def __init__(self) -> None:
        self.made = 0
        self._original = Session._connected

    def __enter__(self) -> SessionCount:
        original = self._original

        def counted(session: Session, now: float) -> None:
            self.made += 1
            original(session, now)

        Session._connected = counted  # type: ignore[method-assign, assignment]
        return self

    def __exit__(self, *exc: object) -> None:
        Session._connected = self._original  # type: ignore[method-assign]


async def _run(args: argparse.Namespace, urls: list[str], rehandshake_s: float) -> dict[str, float]:
    kube = AcceptingKube()
    config = Config(
        allow_url_targets=True,
        url_allow_list=("http://127.0.0.1:*",),
        rehandshake_s=rehandshake_s,
    )
    sessions = SessionCount()
    aggregator = events.Aggregator()
    workers = [
        MonitorWorker(
            _monitor(i, url, args.interval),
            kube=kube,  # type: ignore[arg-type]
            config=config,
            aggregator=aggregator,
        )
        for i, url in enumerate(urls)
    ]
    tasks = [asyncio.create_task(w.run()) for w in workers]
    # As the operator runs: long-lived objects frozen out of full collections.
    tasks.append(asyncio.create_task(heap.Freezer().run()))
    await asyncio.sleep(args.warmup)
    healthy = sum(w.history.health.value == "Healthy" for w in workers)
    probes0, cpu0, wall0 = sum(w.probes for w in workers), time.process_time(), time.monotonic()
    profiler = _profile(args) if args.profile else None
    latencies: list[float] = []
    with sessions:
        # Each second, every monitor's last probe latency: what grouping
        # probes into ticks adds to it shows here.
        end = time.monotonic() + args.window
        while (left := end - time.monotonic()) > 0:
            await asyncio.sleep(min(1.0, left))
            latencies += [
                w.figures.probe_latency_ms
                for w in workers
                if w.figures.probe_latency_ms is not None
            ]
    probes1, cpu1, wall1 = sum(w.probes for w in workers), time.process_time(), time.monotonic()
    if profiler is not None:
        await asyncio.to_thread(profiler.wait)
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    probes = probes1 - probes0
    return {
        "healthy": healthy,
        "probes": probes,
        "cpu_per_probe_ms": (cpu1 - cpu0) / probes * 1000 if probes else float("nan"),
        "cpu_s": cpu1 - cpu0,
        "sessions": sessions.made,
        "share_of_core": (cpu1 - cpu0) / (wall1 - wall0),
        "writes": kube.writes,
        "latency_p50_ms": _quantile(latencies, 0.5),
        "latency_p99_ms": _quantile(latencies, 0.99),
    }


def _quantile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _session_cost(a: list[dict[str, float]], b: list[dict[str, float]]) -> None:
    """The CPU a session made, from runs of two lifetimes taken in turn, pair by pair."""
    costs = []
    for x, y in zip(a, b, strict=True):
        # The same probes in each run's window: the CPU beyond the probes' is the sessions'.
        extra_cpu = y["cpu_s"] - x["cpu_s"] * y["probes"] / x["probes"]
        extra_sessions = y["sessions"] - x["sessions"] * y["probes"] / x["probes"]
        if extra_sessions > 0:
            costs.append(extra_cpu / extra_sessions * 1000)
    if costs:
        shown = " / ".join(f"{c:.3f}" for c in costs)
        print(f"CPU a session made: median {statistics.median(costs):.3f} ms (pairs: {shown})")


def _profile(args: argparse.Namespace) -> subprocess.Popen[bytes]:
    spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    if spy is None:
        raise SystemExit("--profile needs py-spy (pip install py-spy)")
    out = Path(tempfile.gettempdir()) / "probe-path-profile.txt"
    print(f"profiling {args.profile:g}s into {out}", file=sys.stderr)
    cmd = [spy, "record", "--pid", str(os.getpid()), "--duration", f"{args.profile:g}"]
    cmd += ["--rate", "200", "--format", "raw", "--output", str(out), "--nonblocking"]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--monitors", type=int, default=2000)
    parser.add_argument("--interval", type=float, default=2.0)
    parser.add_argument("--servers", type=int, default=2)
    parser.add_argument("--warmup", type=float, default=15.0)
    parser.add_argument("--window", type=float, default=30.0)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--loop", default="auto", choices=["auto", "uvloop", "asyncio"])
    parser.add_argument("--profile", type=float, default=0.0)
    parser.add_argument(
        "--rehandshake-after",
        default="300",
        help="seconds a session lives at most (the operator's default 300); "
        "several, comma-separated, are taken in turn",
    )
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="probe-path-"))
    servers = start_servers(args.monitors, args.servers, workdir)
    try:
        urls = [f"{server_of(servers, i).base_url}/t/{i}/mcp" for i in range(args.monitors)]
        lifetimes = [float(s) for s in args.rehandshake_after.split(",")]
        figures: dict[float, list[dict[str, float]]] = {s: [] for s in lifetimes}
        for run in range(args.runs):
            for lifetime in lifetimes:
                with asyncio.Runner(loop_factory=event_loop_factory(args.loop)) as runner:
                    result = runner.run(_run(args, urls, lifetime))
                figures[lifetime].append(result)
                print(
                    f"run {run + 1} (sessions live {lifetime:g} s): {result['probes']:.0f} probes,"
                    f" {result['sessions']:.0f} sessions made, healthy {result['healthy']:.0f},"
                    f" {result['cpu_per_probe_ms']:.3f} ms CPU/probe,"
                    f" {result['share_of_core'] * 100:.1f}% of a core,"
                    f" probe latency p50 {result['latency_p50_ms']:.2f} ms"
                    f" p99 {result['latency_p99_ms']:.2f} ms",
                    flush=True,
                )
        for lifetime, runs in figures.items():
            cpu = [f["cpu_per_probe_ms"] for f in runs]
            print(
                f"sessions live {lifetime:g} s: median {statistics.median(cpu):.3f} ms CPU/probe"
                f" (min {min(cpu):.3f}, max {max(cpu):.3f})"
            )
        if len(lifetimes) == 2:
            _session_cost(*(figures[s] for s in lifetimes))
    finally:
        for server in servers:
            server.stop()


if __name__ == "__main__":
    main()
