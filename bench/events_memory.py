"""Benchmark: the Event correlator's memory, without and with its bound.

Feeds the same stream of transitions (by default 100,000 over 20,000
monitors: each monitor in turn fails, turns Unhealthy, recovers, degrades,
with messages that vary as real ones do) through two correlators side by
side in one process: the baseline (``events.py`` as it is at ``--baseline``,
read with ``git show`` and loaded as a separate module) and the current one.
At 10k, 50k and 100k transitions it reports what tracemalloc counts since
the correlator was made (current: what it keeps; peak: the most at once),
the entries in its maps, and current / baseline ratios; then the time per
``post`` (a separate pass without tracemalloc; median and best). Medians over
``--runs`` runs.

    python bench/events_memory.py [--transitions 100000] [--monitors 20000] [--runs 3]
    python bench/events_memory.py --baseline b4fb582   # another revision as the baseline
"""

from __future__ import annotations

import argparse
import gc
import statistics
import subprocess
import sys
import time
import tracemalloc
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from mcp_health_operator.core import events

REPO = Path(__file__).resolve().parents[1]
EVENTS_PATH = "operator/mcp_health_operator/core/events.py"
INTERVAL_S = 0.05  # between transitions, fleet-wide: 100,000 over about 83 minutes


def load_baseline(rev: str) -> ModuleType:
    source = subprocess.run(
        ["git", "-C", str(REPO), "show", f"{rev}:{EVENTS_PATH}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    if source == (REPO / EVENTS_PATH).read_text():
        sys.exit(f"{rev}:{EVENTS_PATH} is the working tree's; pass --baseline with an older one")
    module = ModuleType("events_baseline")
    sys.modules[module.__name__] = module  # dataclasses look their module up
    exec(compile(source, f"{rev}:{EVENTS_PATH}", "exec"), module.__dict__)
    return module


def transition(module: ModuleType, i: int, monitors: int) -> tuple[str, str, Any]:
    """The i-th transition: (uid, object name, EventSpec of ``module``)."""
    m, step = i % monitors, i // monitors
    uid = f"{m:08x}-0000-4000-8000-{m:012x}"
    spec = module.EventSpec
    kind = step % 5
    if kind == 0:
        event = spec("Warning", "ProbeFailed", f"probe failed: no answer within 1s (try {step})")
    elif kind == 1:
        event = spec(
            "Warning",
            "HealthUnhealthy",
            f"Unhealthy after {3 + step} consecutive failed probes: no answer within 1s",
        )
    elif kind == 2:
        event = spec("Normal", "ProbeRecovered", "probe succeeded again")
    elif kind == 3:
        event = spec("Normal", "HealthRecovered", "Healthy again (was Unhealthy)")
    else:
        event = spec(
            "Warning", "HealthDegraded", f"Degraded: pool utilization {80 + step % 20}% >= 80%"
        )
    return uid, f"mcp-server-{m}", event


def entries(aggregator: Any) -> int:
    sizes = getattr(aggregator, "sizes", None)
    if sizes is not None:
        return sum(sizes().values())
    return len(aggregator._exact) + len(aggregator._similar) + len(aggregator._combined)


@dataclass(frozen=True)
class Point:
    transitions: int
    current: int
    peak: int
    entries: int


def measure(module: ModuleType, total: int, monitors: int, at: set[int]) -> list[Point]:
    gc.collect()
    points: list[Point] = []
    tracemalloc.start()
    try:
        aggregator = module.Aggregator()
        for i in range(total):
            uid, name, event = transition(module, i, monitors)
            aggregator.post(uid=uid, object_name=name, event=event, now=i * INTERVAL_S)
            if i + 1 in at:
                current, peak = tracemalloc.get_traced_memory()
                points.append(Point(i + 1, current, peak, entries(aggregator)))
    finally:
        tracemalloc.stop()
    return points


def seconds_per_post(module: ModuleType, total: int, monitors: int) -> float:
    stream = [transition(module, i, monitors) for i in range(total)]
    aggregator = module.Aggregator()
    started = time.perf_counter()
    for i, (uid, name, event) in enumerate(stream):
        aggregator.post(uid=uid, object_name=name, event=event, now=i * INTERVAL_S)
    return (time.perf_counter() - started) / total


def mib(n: float) -> str:
    return f"{n / 2**20:.2f} MiB"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--transitions", type=int, default=100_000)
    parser.add_argument("--monitors", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--baseline", default="HEAD", help="git revision of the unbounded one")
    args = parser.parse_args()

    baseline = load_baseline(args.baseline)
    at = {n for n in (10_000, 50_000, args.transitions) if n <= args.transitions}
    sides = {"baseline": baseline, "bounded": events}
    runs: dict[str, list[list[Point]]] = {side: [] for side in sides}
    timings: dict[str, list[float]] = {side: [] for side in sides}
    print(
        f"{args.transitions:,} transitions over {args.monitors:,} monitors, "
        f"baseline {args.baseline}; {args.runs} runs"
    )
    for run in range(1, args.runs + 1):
        for side, module in sides.items():
            points = measure(module, args.transitions, args.monitors, at)
            runs[side].append(points)
            timings[side].append(seconds_per_post(module, args.transitions, args.monitors))
            last = points[-1]
            print(
                f"run {run} {side:8} current {mib(last.current)} peak {mib(last.peak)} "
                f"entries {last.entries:,} {timings[side][-1] * 1e6:.1f} us/post"
            )

    def median(side: str, k: int, field: str) -> float:
        return statistics.median(float(getattr(points[k], field)) for points in runs[side])

    print()
    print(
        "| transitions | current, baseline | current, bounded | ratio "
        "| peak, baseline | peak, bounded | ratio | entries, baseline | entries, bounded |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for k, n in enumerate(sorted(at)):
        cur = [median(side, k, "current") for side in sides]
        peak = [median(side, k, "peak") for side in sides]
        count = [median(side, k, "entries") for side in sides]
        print(
            f"| {n:,} | {mib(cur[0])} | {mib(cur[1])} | {cur[1] / cur[0]:.3f} "
            f"| {mib(peak[0])} | {mib(peak[1])} | {peak[1] / peak[0]:.3f} "
            f"| {count[0]:,.0f} | {count[1]:,.0f} |"
        )
    print("\ntime per post, no tracemalloc (us; noisy on a shared machine):")
    for name, pick in (("median", statistics.median), ("best", min)):
        before, after = (pick(timings[side]) * 1e6 for side in sides)
        print(f"  {name:6} baseline {before:.1f}, bounded {after:.1f} (ratio {after / before:.2f})")


if __name__ == "__main__":
    main()
