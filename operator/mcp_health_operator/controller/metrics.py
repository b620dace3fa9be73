"""Prometheus metrics, collected from the monitors' in-memory figures at scrape time.

Every series of a monitor carries ``namespace``, ``monitor`` and ``target``.
A monitor's series disappear with the monitor: they are produced from the
live set of monitors on each scrape, not kept in a registry.

The guide's names and meanings are kept exactly:

- ``mcp_health_status``: 1 healthy, 0.5 degraded, 0 unhealthy (the
  operator's effective verdict; absent while Unknown).
- ``mcp_pool_utilization``: connection pool utilization, 0..1.
- ``mcp_database_latency_ms``: the database check's latency in ms.

Beside them:

- ``mcp_server_reported_status``: the server's own ``status``, same scale.
- ``mcp_database_connected``: 1 connected, 0.5 degraded, 0 disconnected.
- ``mcp_memory_utilization``: memory use, 0..1.
- ``mcp_pool_connections{state}``: ``total``, ``active`` and ``idle`` connections.
- ``mcp_pool_waiting_requests``: requests waiting for a connection.
- ``mcp_server_uptime_seconds``: the server's uptime as it reports it.
- ``mcp_probe_latency_ms``: the last probe's response time.
- ``mcp_probe_duration_seconds``: histogram of probe durations.
- ``mcp_probe_total{outcome}``: probes by outcome (``Ok``, ``Timeout``, ...).
- ``mcp_probe_consecutive_failures``: consecutive failed probes.
- ``mcp_remediation_actions_total{action,result}``: remediation actions.
- ``mcp_events_dropped_total{reason}``: Events the spam filter dropped
  (over the monitor's budget: a burst of 25, then one per 5 minutes).
- ``mcp_monitors{health}``: monitors by effective health (no monitor labels).

Per-endpoint monitors (``spec.target.perEndpoint``) add, with the extra
labels ``endpoint`` (``address:port``) and ``pod``; an endpoint's series
disappear when it leaves the Service:

- ``mcp_endpoint_health_status``: each endpoint's verdict, 1 / 0.5 / 0 (absent while Unknown).
- ``mcp_endpoint_probe_latency_ms``: each endpoint's last probe response time.
- ``mcp_endpoint_probe_consecutive_failures``: each endpoint's consecutive failed probes.
- ``mcp_endpoints{health}`` (monitor labels and ``health``): endpoints by health.
- ``mcp_operator_info{version}``: 1, while the operator runs.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector, CollectorRegistry

from mcp_health_operator import __version__
from mcp_health_operator.core.judge import Health, Observation, Verdict

LABELS = ["namespace", "monitor", "target"]
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_LEVEL = {"healthy": 1.0, "degraded": 0.5, "unhealthy": 0.0}
_DB_LEVEL = {"connected": 1.0, "degraded": 0.5, "disconnected": 0.0}
_HEALTH_LEVEL = {Health.HEALTHY: 1.0, Health.DEGRADED: 0.5, Health.UNHEALTHY: 0.0}


ENDPOINT_LABELS = [*LABELS, "endpoint", "pod"]


@dataclass(frozen=True, slots=True)
class EndpointFigures:
    endpoint: str
    pod: str
    health: Health
    probe_latency_ms: float
    consecutive_failures: int


@dataclass(slots=True)
class MonitorFigures:
    """A monitor's latest figures; updated per probe, read per scrape."""

    namespace: str
    monitor: str
    target: str
    health: Health = Health.UNKNOWN
    reported: float | None = None
    database: float | None = None
    database_latency_ms: float | None = None
    pool_utilization: float | None = None
    memory_utilization: float | None = None
    pool_total: int | None = None
    pool_active: int | None = None
    pool_idle: int | None = None
    pool_waiting: int | None = None
    uptime_s: float | None = None
    probe_latency_ms: float | None = None
    consecutive_failures: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    bucket_counts: list[int] = field(default_factory=lambda: [0] * (len(BUCKETS) + 1))
    duration_sum: float = 0.0
    remediations: dict[tuple[str, str], int] = field(default_factory=dict)
    events_dropped: dict[str, int] = field(default_factory=dict)  # by Event reason
    # Per-endpoint monitors only; replaced after each probe round.
    endpoints: tuple[EndpointFigures, ...] = ()

    @property
    def labels(self) -> list[str]:
        return [self.namespace, self.monitor, self.target]

    def observe(self, obs: Observation, verdict: Verdict) -> None:
        self.health = verdict.health
        self.consecutive_failures = verdict.consecutive_failures
        self.probe_latency_ms = obs.latency_ms
        self.outcomes[obs.outcome] = self.outcomes.get(obs.outcome, 0) + 1
        seconds = obs.latency_ms / 1000.0
        self.bucket_counts[bisect.bisect_left(BUCKETS, seconds)] += 1
        self.duration_sum += seconds
        doc = obs.document
        if doc is None:
            # No document, no figures: stale numbers must not look current.
            self.reported = self.database = self.database_latency_ms = None
            self.pool_utilization = self.memory_utilization = self.uptime_s = None
            self.pool_total = self.pool_active = self.pool_idle = self.pool_waiting = None
            return
        self.reported = _LEVEL.get(doc.status)
        self.database = _DB_LEVEL.get(doc.database_status or "")
        self.database_latency_ms = doc.database_latency_ms()
        self.memory_utilization = doc.memory_fraction()
        self.uptime_s = doc.uptime_seconds
        pool = doc.connection_pool
        if pool is None:
            self.pool_utilization = None
            self.pool_total = self.pool_active = self.pool_idle = self.pool_waiting = None
        else:
            self.pool_utilization = pool.pool_utilization
            self.pool_total = pool.total_connections
            self.pool_active = pool.active_connections
            self.pool_idle = pool.idle_connections
            self.pool_waiting = pool.waiting_requests

    def count_remediation(self, action: str, result: str) -> None:
        key = (action, result)
        self.remediations[key] = self.remediations.get(key, 0) + 1

    def count_event_dropped(self, reason: str) -> None:
        self.events_dropped[reason] = self.events_dropped.get(reason, 0) + 1


class FleetCollector(Collector):
    """Turns the live monitors' figures into metric families on each scrape."""

    def __init__(self, figures: Callable[[], Iterable[MonitorFigures]]) -> None:
        self._figures = figures

    def collect(self) -> Iterator[Metric]:
        monitors = list(self._figures())
        gauges = {
            name: GaugeMetricFamily(name, doc, labels=LABELS)
            for name, doc in (
                ("mcp_health_status", "Health status (1=healthy, 0.5=degraded, 0=unhealthy)"),
                ("mcp_server_reported_status", "Status the server reports (same scale)"),
                ("mcp_pool_utilization", "Connection pool utilization (0-1)"),
                ("mcp_database_latency_ms", "Database response time in milliseconds"),
                ("mcp_database_connected", "Database (1=connected, 0.5=degraded, 0=disconnected)"),
                ("mcp_memory_utilization", "Memory utilization (0-1)"),
                ("mcp_pool_waiting_requests", "Requests waiting for a pool connection"),
                ("mcp_server_uptime_seconds", "Server uptime as reported"),
                ("mcp_probe_latency_ms", "Response time of the last probe in milliseconds"),
                ("mcp_probe_consecutive_failures", "Consecutive failed probes"),
            )
        }
        connections = GaugeMetricFamily(
            "mcp_pool_connections", "Pool connections by state", labels=[*LABELS, "state"]
        )
        probes = CounterMetricFamily("mcp_probe", "Probes by outcome", labels=[*LABELS, "outcome"])
        remediations = CounterMetricFamily(
            "mcp_remediation_actions",
            "Remediation actions by action and result",
            labels=[*LABELS, "action", "result"],
        )
        dropped = CounterMetricFamily(
            "mcp_events_dropped",
            "Events dropped by the spam filter, by reason",
            labels=[*LABELS, "reason"],
        )
        durations = HistogramMetricFamily(
            "mcp_probe_duration_seconds", "Probe duration in seconds", labels=LABELS
        )
        endpoint_gauges = {
            name: GaugeMetricFamily(name, doc, labels=ENDPOINT_LABELS)
            for name, doc in (
                (
                    "mcp_endpoint_health_status",
                    "Endpoint health (1=healthy, 0.5=degraded, 0=unhealthy)",
                ),
                (
                    "mcp_endpoint_probe_latency_ms",
                    "Response time of the endpoint's last probe in ms",
                ),
                ("mcp_endpoint_probe_consecutive_failures", "Endpoint's consecutive failed probes"),
            )
        }
        endpoint_counts = GaugeMetricFamily(
            "mcp_endpoints",
            "A per-endpoint monitor's endpoints by health",
            labels=[*LABELS, "health"],
        )
        by_health = {h: 0 for h in Health}
        for m in monitors:
            labels = m.labels
            by_health[m.health] += 1
            level = _HEALTH_LEVEL.get(m.health)
            for name, value in (
                ("mcp_health_status", level),
                ("mcp_server_reported_status", m.reported),
                ("mcp_pool_utilization", m.pool_utilization),
                ("mcp_database_latency_ms", m.database_latency_ms),
                ("mcp_database_connected", m.database),
                ("mcp_memory_utilization", m.memory_utilization),
                ("mcp_pool_waiting_requests", m.pool_waiting),
                ("mcp_server_uptime_seconds", m.uptime_s),
                ("mcp_probe_latency_ms", m.probe_latency_ms),
                ("mcp_probe_consecutive_failures", m.consecutive_failures),
            ):
                if value is not None:
                    gauges[name].add_metric(labels, value)
            for state, count in (
                ("total", m.pool_total),
                ("active", m.pool_active),
                ("idle", m.pool_idle),
            ):
                if count is not None:
                    connections.add_metric([*labels, state], count)
            for outcome, count in m.outcomes.items():
                probes.add_metric([*labels, outcome], count)
            for (action, result), count in m.remediations.items():
                remediations.add_metric([*labels, action, result], count)
            for reason, count in m.events_dropped.items():
                dropped.add_metric([*labels, reason], count)
            if m.outcomes:
                cumulative, buckets = 0, []
                for bound, count in zip((*BUCKETS, float("inf")), m.bucket_counts, strict=True):
                    cumulative += count
                    buckets.append((_le(bound), cumulative))
                durations.add_metric(labels, buckets, m.duration_sum)
            if m.endpoints:
                counts = {h: 0 for h in Health}
                for e in m.endpoints:
                    counts[e.health] += 1
                    ep_labels = [*labels, e.endpoint, e.pod]
                    level = _HEALTH_LEVEL.get(e.health)
                    if level is not None:
                        endpoint_gauges["mcp_endpoint_health_status"].add_metric(ep_labels, level)
                    endpoint_gauges["mcp_endpoint_probe_latency_ms"].add_metric(
                        ep_labels, e.probe_latency_ms
                    )
                    endpoint_gauges["mcp_endpoint_probe_consecutive_failures"].add_metric(
                        ep_labels, e.consecutive_failures
                    )
                for health, count in counts.items():
                    endpoint_counts.add_metric([*labels, health.value], count)
        yield from gauges.values()
        yield from endpoint_gauges.values()
        yield endpoint_counts
        yield connections
        yield probes
        yield durations
        yield remediations
        yield dropped
        fleet = GaugeMetricFamily("mcp_monitors", "Monitors by effective health", labels=["health"])
        for health, count in by_health.items():
            fleet.add_metric([health.value], count)
        yield fleet
        info = GaugeMetricFamily("mcp_operator_info", "The operator is running", labels=["version"])
        info.add_metric([__version__], 1)
        yield info


def _le(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(bound)


def registry(figures: Callable[[], Iterable[MonitorFigures]]) -> CollectorRegistry:
    reg = CollectorRegistry(auto_describe=False)
    reg.register(FleetCollector(figures))
    return reg
