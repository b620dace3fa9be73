"""Benchmark: latency of the sample servers' health check (the guide's SC-010: p95 < 50 ms).

Starts a real PostgreSQL and one sample server per transport, then reads the
health resource repeatedly over one persistent MCP session (and the plain
``GET /health/status``), several runs each, and prints per-run p50/p95/p99 and
the median of the runs' p95.

    python bench/health_endpoint.py [--reads 500] [--runs 5]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import time
from collections.abc import Callable, Coroutine
from typing import Any

import httpx2
from mcp import Client
from mcp.client.sse import sse_client

from mcp_health_testbed import postgres, samples


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(round(q / 100 * (len(ordered) - 1)), len(ordered) - 1)
    return ordered[index]


async def mcp_reads(url: str, transport: str, reads: int) -> list[float]:
    server = sse_client(url) if transport == "sse" else url
    latencies = []
    async with Client(server, cache=None) as client:
        await client.read_resource("health://status")  # warm-up: handshake, first connect
        for _ in range(reads):
            started = time.perf_counter()
            await client.read_resource("health://status")
            latencies.append((time.perf_counter() - started) * 1000)
    return latencies


async def http_reads(url: str, reads: int) -> list[float]:
    latencies = []
    async with httpx2.AsyncClient() as http:
        await http.get(url)
        for _ in range(reads):
            started = time.perf_counter()
            (await http.get(url)).raise_for_status()
            latencies.append((time.perf_counter() - started) * 1000)
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reads", type=int, default=500)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()

    pg = postgres.temporary().start()
    streamable = samples.SampleServer("codebase-mcp", dsn=pg.dsn).start()
    sse = samples.SampleServer("workflow-mcp", dsn=pg.dsn, transport="sse").start()
    cases: dict[str, Callable[[], Coroutine[Any, Any, list[float]]]] = {
        "streamable-http (codebase-mcp)": lambda: mcp_reads(streamable.url, "http", args.reads),
        "sse (workflow-mcp)": lambda: mcp_reads(sse.url, "sse", args.reads),
        "GET /health/status": lambda: http_reads(
            streamable.base_url + "/health/status", args.reads
        ),
    }
    try:
        print(f"{args.runs} runs x {args.reads} reads each; latency in ms (wall, client side)")
        print(f"{'case':34} {'run':>3} {'p50':>7} {'p95':>7} {'p99':>7}")
        for name, case in cases.items():
            p95s = []
            for run in range(1, args.runs + 1):
                latencies = asyncio.run(case())
                p50, p95, p99 = (percentile(latencies, q) for q in (50, 95, 99))
                p95s.append(p95)
                print(f"{name:34} {run:>3} {p50:7.2f} {p95:7.2f} {p99:7.2f}")
            verdict = "meets" if statistics.median(p95s) < 50 else "MISSES"
            print(f"{name:34} median p95 {statistics.median(p95s):.2f} ms ({verdict} < 50 ms)")
    finally:
        streamable.stop()
        sse.stop()
        pg.stop()
        shutil.rmtree(pg.workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
