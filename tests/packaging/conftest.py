"""Fixtures for the packaging tests: helm, the chart, a real Prometheus.

The Prometheus here scrapes an exporter that serves the operator's own metric
families (``mcp_health_operator.controller.metrics``) for a few made-up monitors, so the
dashboard's queries and the alert rules are checked against the names and
labels the operator really exports, not against a hand-written list.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from mcp_health_operator.controller import metrics
from mcp_health_operator.core.judge import Health
from mcp_health_testbed import helm as helm_build
from tests.packaging.prometheus import RULES, Prometheus

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "helm" / "mcp-health-operator"


@pytest.fixture(scope="session")
def helm() -> Path:
    """The pinned helm (built from the Go module proxy once, then cached)."""
    return helm_build.helm_binary()


class FakeFleet:
    """Figures of four monitors (one per-endpoint) whose counters move on every scrape."""

    def __init__(self) -> None:
        healthy = metrics.MonitorFigures("shop", "codebase-mcp", "svc/codebase-mcp:8000")
        healthy.health = Health.HEALTHY
        healthy.reported = healthy.database = 1.0
        healthy.database_latency_ms = 12.5
        healthy.pool_utilization = 0.3
        healthy.memory_utilization = 0.12
        healthy.pool_total, healthy.pool_active, healthy.pool_idle = 10, 3, 7
        healthy.pool_waiting = 0
        healthy.uptime_s = 7200.0
        healthy.probe_latency_ms = 4.0

        degraded = metrics.MonitorFigures("shop", "workflow-mcp", "svc/workflow-mcp:8001")
        degraded.health = Health.DEGRADED
        degraded.reported = 0.5
        degraded.database = 1.0
        degraded.database_latency_ms = 140.0
        degraded.pool_utilization = 0.85
        degraded.memory_utilization = 0.5
        degraded.pool_total, degraded.pool_active, degraded.pool_idle = 20, 17, 3
        degraded.pool_waiting = 2
        degraded.uptime_s = 600.0
        degraded.probe_latency_ms = 30.0

        unhealthy = metrics.MonitorFigures("billing", "ledger-mcp", "svc/ledger-mcp:8000")
        unhealthy.health = Health.UNHEALTHY
        unhealthy.reported = 0.0
        unhealthy.database = 0.0
        unhealthy.database_latency_ms = 5.0
        unhealthy.pool_utilization = 0.97
        unhealthy.memory_utilization = 0.4
        unhealthy.pool_total, unhealthy.pool_active, unhealthy.pool_idle = 10, 10, 0
        unhealthy.pool_waiting = 9
        unhealthy.uptime_s = 120.0
        unhealthy.probe_latency_ms = 800.0
        unhealthy.consecutive_failures = 5
        unhealthy.remediations[("restart", "Succeeded")] = 1

        # A per-endpoint monitor: two replicas fine, one not.
        replicas = metrics.MonitorFigures("shop", "search-mcp", "svc/search-mcp:mcp")
        replicas.health = Health.HEALTHY
        replicas.endpoints = tuple(
            metrics.EndpointFigures(f"10.1.0.{i}:8000", f"search-mcp-{i}", h, 5.0, f)
            for i, h, f in (
                (7, Health.HEALTHY, 0),
                (8, Health.HEALTHY, 0),
                (9, Health.UNHEALTHY, 4),
            )
        )

        self.monitors = [healthy, degraded, unhealthy, replicas]
        self.lock = threading.Lock()

    def figures(self) -> list[metrics.MonitorFigures]:
        with self.lock:
            for m in self.monitors:
                failing = m.health is Health.UNHEALTHY
                outcome = "Timeout" if failing else "Ok"
                m.outcomes[outcome] = m.outcomes.get(outcome, 0) + 1
                seconds = (m.probe_latency_ms or 0.0) / 1000.0
                index = sum(1 for bound in metrics.BUCKETS if bound < seconds)
                m.bucket_counts[index] += 1
                m.duration_sum += seconds
                if failing:
                    m.remediations[("restart", "Suppressed")] = (
                        m.remediations.get(("restart", "Suppressed"), 0) + 1
                    )
            return list(self.monitors)


@pytest.fixture(scope="session")
def exporter() -> Iterator[str]:
    """``host:port`` of an HTTP server serving the operator's metrics for a fake fleet."""
    fleet = FakeFleet()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = metrics.exposition(fleet.figures())
            self.send_response(200)
            self.send_header("Content-Type", metrics.CONTENT_TYPE)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="session")
def prometheus(exporter: str) -> Iterator[Prometheus]:
    """A real Prometheus scraping the exporter every second, with the alert rules loaded."""
    workdir = Path(tempfile.mkdtemp(prefix="mcp-health-prom-"))
    prom = Prometheus(workdir, rule_files=[RULES], scrape_targets=[exporter]).start()
    try:
        # Two scrapes at least, so rate() and histogram_quantile() have data.
        prom.wait_for("count_over_time(mcp_operator_info[1m]) >= 3", timeout=30)
        yield prom
    finally:
        prom.stop()
        shutil.rmtree(workdir, ignore_errors=True)
