"""Benchmark: what the benchmark's own targets cost, the Go fleet beside the Python fleet.

The goal (performance goal 1): MCP targets that answer the operator's
protocol at 2,000 reads/s or more within 30 % of a core in total, so that
``bench/scale.py`` measures the operator and not its targets.

Each measurement starts a fleet (``bench/fleet``, the Go program; or
``examples/sample_mcp/fleet.py``, the Python SDK) with ``--targets`` targets
and a load generator in a process of its own: one ``Prober`` per target (the
operator's own probe: the session is made once, then each read is one
``resources/read`` POST on a kept-alive pool), each target read every
``targets / rate`` seconds, the reads spread evenly over that interval. After
the sessions are made and ``--warmup`` seconds, a window of ``--window``
seconds is measured:

- the fleet's CPU (``/proc/<pid>/stat`` utime + stime) per read and as a
  share of one core, reads counted by the fleet itself (``/control/stats``);
- reads/s achieved against reads/s offered, failed probes, probe latency;
- the load generator's CPU, and how busy the whole machine was.

The Python fleet is offered ``--python-rate`` reads/s: it cannot serve
2,000 on this kind of machine, and a saturated server times out probes,
whose new sessions would cost more than reads. The Go fleet is measured at
that rate too (CPU per read falls as the rate rises: more reads per
wake-up), so the ratio of the two fleets' CPU per read is also given at the
same load. The measurements take turns (Go at ``--rate``, Go and Python at
``--python-rate``, again in the next run), so all see the same machine; the
table gives medians over ``--runs``.

    python bench/fleet_cost.py                   # 1,000 targets, 2,000 reads/s, 3 runs
    python bench/fleet_cost.py --modes modern,legacy,sse --runs 3 --json /tmp/fleet-cost.json
    python bench/fleet_cost.py --python-rate 0   # the Go fleet only
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: the repository, not bench/, on the path
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import argparse
import asyncio
import json
import math
import os
import statistics
import subprocess
import tempfile
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from typing import IO, Any

from bench import fleet
from bench.scale import cpu_seconds, machine_ticks, memory_mb, percentile
from mcp_health_operator.core.targets import Method, Target, Transport
from mcp_health_operator.probing.probe import Prober
from mcp_health_testbed import _procs

GOAL_READS_PER_S = 2000.0
GOAL_CORE_SHARE = 0.30


@dataclass(frozen=True)
class Mode:
    """How the targets are served and probed."""

    name: str
    flags: tuple[str, ...]  # the fleet's
    transport: Transport
    path: str  # /t/<i>/<path>
    kinds: tuple[fleet.Kind, ...]  # the fleets that can serve it


MODES = {
    # What bench/scale.py measures: Streamable HTTP at 2026-07-28, answers as the SDK gives them.
    "modern": Mode("modern", (), Transport.STREAMABLE_HTTP, "mcp", ("go", "python")),
    "json": Mode("json", ("--json-response",), Transport.STREAMABLE_HTTP, "mcp", ("go", "python")),
    "event-stream": Mode(
        "event-stream", ("--event-stream",), Transport.STREAMABLE_HTTP, "mcp", ("go",)
    ),
    # The handshake era: initialize, a session per target, answers as event streams.
    "legacy": Mode("legacy", ("--legacy",), Transport.STREAMABLE_HTTP, "mcp", ("go",)),
    "legacy-json": Mode(
        "legacy-json", ("--legacy", "--json-response"), Transport.STREAMABLE_HTTP, "mcp", ("go",)
    ),
    # The legacy SSE transport: every read through the SDK's client, answers on the stream.
    "sse": Mode("sse", (), Transport.SSE, "sse", ("go",)),
    "http": Mode("http", (), Transport.HTTP, "health/status", ("go", "python")),
}


@dataclass(frozen=True)
class Plan:
    kind: fleet.Kind
    mode: Mode
    targets: int
    rate: float
    window_s: float
    warmup_s: float
    generators: int
    timeout_s: float
    workdir: Path

    @property
    def label(self) -> str:
        return f"{self.kind} fleet, {self.mode.name}, {self.rate:g}/s"


@dataclass
class Measured:
    figures: dict[str, float] = field(default_factory=dict)
    failures: Counter[str] = field(default_factory=Counter)


# -- the load generator (a process of its own) -------------------------------------


async def generate(args: argparse.Namespace) -> None:
    """Read targets ``args.tids`` on schedule until stdin ends; print what happened.

    Protocol on stdout, one JSON object a line: ``{"ready": n}`` once every
    session is made (the schedule then starts), and at the end the summary of
    the probes since the last ``mark`` line read on stdin.
    """
    mode = MODES[args.mode]
    lo, hi = (int(v) for v in args.tids.split("-"))
    tids = range(lo, hi + 1)
    interval = args.total / args.rate
    loop = asyncio.get_running_loop()
    probers = {
        tid: Prober(
            Target(
                f"{args.base}/t/{tid}/{mode.path}", mode.transport, method=Method.HEALTH_RESOURCE
            ),
            timeout=args.timeout,
        )
        for tid in tids
    }
    outcomes: Counter[str] = Counter()
    latencies: list[float] = []
    go = asyncio.Event()
    ready: list[bool] = []

    async def run(tid: int) -> None:
        prober = probers[tid]
        first = await prober.probe(timeout=30.0)  # the session, in the task that keeps it
        ready.append(first.ok)
        if len(ready) == len(probers):
            print(json.dumps({"ready": sum(ready)}), flush=True)
            started[0] = loop.time()
            go.set()
        await go.wait()
        next_at = started[0] + (tid / args.total) * interval
        while True:
            delay = next_at - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            result = await prober.probe()
            outcomes[result.outcome.value] += 1
            latencies.append(result.latency_ms)
            # Late (the generator is behind): no burst to catch up.
            next_at = max(next_at + interval, loop.time())

    started = [0.0]
    tasks = [asyncio.create_task(run(tid)) for tid in tids]
    await go.wait()

    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    cpu0, wall0 = time.process_time(), time.monotonic()
    while line := await reader.readline():
        if line.strip() == b"mark":
            outcomes.clear()
            latencies.clear()
            cpu0, wall0 = time.process_time(), time.monotonic()
    cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    summary = {
        "outcomes": dict(outcomes),
        "latency_p50_ms": percentile(latencies, 50),
        "latency_p99_ms": percentile(latencies, 99),
        "cpu_s": cpu,
        "wall_s": wall,
    }
    print(json.dumps(summary), flush=True)
    await asyncio.gather(*(prober.aclose() for prober in probers.values()))


def parse_generate(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python bench/fleet_cost.py generate")
    parser.add_argument("--base", required=True)
    parser.add_argument("--mode", required=True, choices=sorted(MODES))
    parser.add_argument("--tids", required=True, help="first-last, inclusive")
    parser.add_argument("--total", type=int, required=True, help="targets over all generators")
    parser.add_argument("--rate", type=float, required=True, help="reads/s over all generators")
    parser.add_argument("--timeout", type=float, default=1.0)
    return parser.parse_args(argv)


# -- one measurement ------------------------------------------------------------------


def _get(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=30) as response:
        return dict(json.loads(response.read()))


def _read_line(stream: IO[bytes], what: str) -> dict[str, Any]:
    line = stream.readline()
    if not line:
        raise RuntimeError(f"the load generator ended before {what}")
    return dict(json.loads(line))


def measure(plan: Plan, index: int) -> Measured:
    """One fleet, its generators, one window."""
    port = _procs.free_port()
    log = plan.workdir / f"{plan.kind}-{plan.mode.name}-{plan.rate:g}-{index}.log"
    argv, env = fleet.command(plan.kind, targets=plan.targets, port=port, extra=plan.mode.flags)
    server = subprocess.Popen(
        argv, env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT, start_new_session=True
    )
    generators: list[subprocess.Popen[bytes]] = []
    try:
        _procs.wait_for_port("127.0.0.1", port, timeout=60, proc=server, log=log)
        base = f"http://127.0.0.1:{port}"
        per = math.ceil(plan.targets / plan.generators)
        for k in range(plan.generators):
            lo, hi = k * per, min((k + 1) * per, plan.targets) - 1
            if lo > hi:
                break
            generators.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        str(Path(__file__).resolve()),
                        "generate",
                        f"--base={base}",
                        f"--mode={plan.mode.name}",
                        f"--tids={lo}-{hi}",
                        f"--total={plan.targets}",
                        f"--rate={plan.rate}",
                        f"--timeout={plan.timeout_s}",
                    ],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=(plan.workdir / f"generator-{log.stem}-{k}.log").open("ab"),
                )
            )
        ready = 0
        for gen in generators:
            assert gen.stdout is not None
            ready += int(_read_line(gen.stdout, "its sessions were made")["ready"])
        time.sleep(plan.warmup_s)

        stats0 = _get(f"{base}/control/stats")
        cpu0 = cpu_seconds(server.pid)
        busy0, total0 = machine_ticks()
        for gen in generators:
            assert gen.stdin is not None
            gen.stdin.write(b"mark\n")
            gen.stdin.flush()
        t0 = time.monotonic()
        peak_rss = 0.0
        while (left := t0 + plan.window_s - time.monotonic()) > 0:
            peak_rss = max(peak_rss, memory_mb(server.pid)[0])
            time.sleep(min(1.0, left))
        cpu1 = cpu_seconds(server.pid)
        busy1, total1 = machine_ticks()
        elapsed = time.monotonic() - t0
        stats1 = _get(f"{base}/control/stats")
        summaries = []
        for gen in generators:
            assert gen.stdin is not None and gen.stdout is not None
            gen.stdin.close()
            summaries.append(_read_line(gen.stdout, "its summary"))
    finally:
        for gen in generators:
            if gen.poll() is None:
                gen.terminate()
            try:
                gen.wait(timeout=30)
            except subprocess.TimeoutExpired:
                gen.kill()
                gen.wait()
        _procs.stop(server)

    reads = int(stats1["reads"]) - int(stats0["reads"])
    cpu = cpu1 - cpu0
    out = Measured()
    for summary in summaries:
        out.failures.update({k: v for k, v in summary["outcomes"].items() if k != "Ok"})
    probes = sum(sum(s["outcomes"].values()) for s in summaries)
    ncpu = os.cpu_count() or 1
    out.figures = {
        "sessions_ready": ready,
        "offered_reads_per_s": plan.rate,
        "reads_per_s": reads / elapsed,
        "fleet_cpu_ms_per_read": cpu * 1000 / reads if reads else math.nan,
        "fleet_cpu_share": cpu / elapsed,
        "fleet_reads_per_s_at_goal_share": GOAL_CORE_SHARE * reads / cpu if cpu else math.nan,
        "fleet_rss_mb": peak_rss,
        "failed_probes": float(sum(out.failures.values())),
        "failed_share": sum(out.failures.values()) / probes if probes else math.nan,
        "latency_p50_ms": max(s["latency_p50_ms"] for s in summaries),
        "latency_p99_ms": max(s["latency_p99_ms"] for s in summaries),
        "generator_cpu_share": sum(s["cpu_s"] for s in summaries) / elapsed,
        "machine_busy_cores": (busy1 - busy0) / max(total1 - total0, 1) * ncpu,
    }
    return out


# -- report ---------------------------------------------------------------------------

ROWS = [
    ("offered reads/s", "offered_reads_per_s", "{:.0f}"),
    ("reads/s served (the fleet's count)", "reads_per_s", "{:.0f}"),
    ("fleet CPU per read", "fleet_cpu_ms_per_read", "{:.3f} ms"),
    ("fleet CPU, share of one core", "fleet_cpu_share", "{:.1%}"),
    (
        "reads/s the fleet serves in 30% of a core (extrapolated)",
        "fleet_reads_per_s_at_goal_share",
        "{:.0f}",
    ),
    ("fleet RSS (peak)", "fleet_rss_mb", "{:.0f} MB"),
    ("failed probes in the window", "failed_probes", "{:.0f}"),
    ("probe latency p50 (worst generator)", "latency_p50_ms", "{:.1f} ms"),
    ("probe latency p99 (worst generator)", "latency_p99_ms", "{:.1f} ms"),
    ("load generator CPU, share of one core", "generator_cpu_share", "{:.1%}"),
    ("whole machine busy, cores", "machine_busy_cores", "{:.2f}"),
]


def _fmt(fmt: str, value: float) -> str:
    return "n/a" if math.isnan(value) else fmt.format(value)


def median_of(results: list[Measured], key: str) -> float:
    values = [r.figures.get(key, math.nan) for r in results]
    present = [v for v in values if not math.isnan(v)]
    return statistics.median(present) if present else math.nan


def report(plans: list[Plan], results: dict[str, list[Measured]], targets: int) -> str:
    runs = max((len(v) for v in results.values()), default=0)
    lines = [
        f"### The fleets' own cost: {targets} targets, {runs} runs, "
        "medians (each run's in brackets)",
        "",
        "| figure | " + " | ".join(p.label for p in plans) + " |",
        "|---|" + "---:|" * len(plans),
    ]
    for label, key, fmt in ROWS:
        cells = []
        for plan in plans:
            rs = results[plan.label]
            each = " / ".join(_fmt(fmt, r.figures.get(key, math.nan)) for r in rs)
            cells.append(f"{_fmt(fmt, median_of(rs, key))} ({each})")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    failures: Counter[str] = Counter()
    for rs in results.values():
        for r in rs:
            failures.update(r.failures)
    if failures:
        lines += [
            "",
            "Failed probes by outcome, all runs: "
            + ", ".join(f"{k} {v}" for k, v in failures.items()),
        ]

    def modern(kind: str, rate: float) -> Plan | None:
        found = (p for p in plans if (p.kind, p.mode.name, p.rate) == (kind, "modern", rate))
        return next(found, None)

    go = next((p for p in plans if p.kind == "go" and p.mode.name == "modern"), None)
    py = next((p for p in plans if p.kind == "python" and p.mode.name == "modern"), None)
    lines.append("")
    if go is not None:
        rate = median_of(results[go.label], "reads_per_s")
        share = median_of(results[go.label], "fleet_cpu_share")
        met = rate >= GOAL_READS_PER_S and share <= GOAL_CORE_SHARE
        lines.append(
            f"Goal (≥ {GOAL_READS_PER_S:.0f} reads/s within {GOAL_CORE_SHARE:.0%} of a core), "
            f"Go fleet, modern: {rate:.0f} reads/s at {share:.1%} of a core: "
            + ("met" if met else "**not met**")
        )
    for other in (go, modern("go", py.rate) if py is not None else None):
        if other is None or py is None:
            continue
        ratios = [
            p.figures["fleet_cpu_ms_per_read"] / g.figures["fleet_cpu_ms_per_read"]
            for g, p in zip(results[other.label], results[py.label], strict=False)
        ]
        lines.append(
            f"CPU per read, {py.label} / {other.label}, run by run: "
            + " / ".join(f"x {r:.1f}" for r in ratios)
            + f"; median x {statistics.median(ratios):.1f}"
        )
    return "\n".join(lines)


# -- main -------------------------------------------------------------------------------


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python bench/fleet_cost.py",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--targets", type=int, default=1000)
    parser.add_argument(
        "--rate", type=float, default=2000.0, help="reads/s offered to the Go fleet"
    )
    parser.add_argument(
        "--python-rate",
        type=float,
        default=300.0,
        help="reads/s offered to the Python fleet (0: leave it out)",
    )
    parser.add_argument(
        "--modes",
        default="modern",
        help=f"comma list of {', '.join(MODES)} (default modern); the Python fleet runs "
        "those it can serve",
    )
    parser.add_argument("--window", type=float, default=20.0, help="measured seconds")
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds after the sessions")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--generators",
        type=int,
        default=2,
        help="load generator processes (default 2: one Python process reads ~1,000/s at most)",
    )
    parser.add_argument("--timeout", type=float, default=1.0, help="probe timeout, seconds")
    parser.add_argument("--json", type=Path, help="also write every run's figures here")
    parser.add_argument("--workdir", type=Path, help="logs (default: a temp dir)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["generate"]:
        asyncio.run(generate(parse_generate(argv[1:])))
        return 0
    args = parse(argv)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="mcp-health-fleet-cost-"))
    workdir.mkdir(parents=True, exist_ok=True)
    print(f"logs in {workdir}", flush=True)
    fleet.binary()  # built before anything is timed
    plans: list[Plan] = []
    for name in (m.strip() for m in args.modes.split(",") if m.strip()):
        mode = MODES[name]
        runs: list[tuple[fleet.Kind, float]] = [("go", args.rate)]
        if "python" in mode.kinds and args.python_rate > 0:
            # The Go fleet at the Python fleet's rate too: CPU per read falls
            # as the rate rises (more reads per wake-up), so the fair ratio is
            # at the same load.
            if args.python_rate != args.rate:
                runs.append(("go", args.python_rate))
            runs.append(("python", args.python_rate))
        plans += [
            Plan(
                kind=kind,
                mode=mode,
                targets=args.targets,
                rate=rate,
                window_s=args.window,
                warmup_s=args.warmup,
                generators=args.generators,
                timeout_s=args.timeout,
                workdir=workdir,
            )
            for kind, rate in runs
        ]
    results: dict[str, list[Measured]] = {p.label: [] for p in plans}
    for index in range(1, args.runs + 1):
        for plan in plans:  # alternating: each run has every plan once, in turn
            measured = measure(plan, index)
            results[plan.label].append(measured)
            f = measured.figures
            print(
                f"[run {index}] {plan.label}: {f['reads_per_s']:.0f} reads/s of "
                f"{plan.rate:.0f} offered, fleet {f['fleet_cpu_ms_per_read']:.3f} ms CPU/read, "
                f"{f['fleet_cpu_share']:.1%} of a core; generator {f['generator_cpu_share']:.1%}; "
                f"{f['failed_probes']:.0f} failed",
                flush=True,
            )
            if args.json:
                dump = {
                    label: [{"figures": r.figures, "failures": dict(r.failures)} for r in rs]
                    for label, rs in results.items()
                }
                args.json.write_text(json.dumps(dump, indent=2))
    print("\n" + report(plans, results, args.targets), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
