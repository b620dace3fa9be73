"""The monitor's status: what to write, and whether it is worth a write now.

Purely computational: builds the ``status`` object from a verdict and the
observation behind it, and keeps the write budget. Status is written when the
verdict, reasons, database status, pool band, reachability, server identity
or observed generation change, and for per-endpoint monitors when an
endpoint's health or reason changes or endpoints come and go (an endpoint's
latency alone is not worth a write), and otherwise at most once per
heartbeat; the live numbers between writes go to metrics.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from mcp_health_operator.core import conditions as cond
from mcp_health_operator.core.judge import Health, Observation, Thresholds, Verdict


@dataclass(frozen=True, slots=True)
class Identity:
    name: str | None
    version: str | None
    protocol_version: str | None
    transport: str


def pool_band(utilization: float | None, t: Thresholds) -> str:
    if utilization is None:
        return "none"
    if utilization >= t.pool_unhealthy:
        return "unhealthy"
    if utilization >= t.pool_degraded:
        return "degraded"
    return "ok"


def build(
    *,
    verdict: Verdict,
    obs: Observation,
    thresholds: Thresholds,
    identity: Identity | None,
    target: str,
    endpoint: str,
    generation: int | None,
    previous_conditions: list[dict[str, Any]],
    now: datetime,
) -> dict[str, Any]:
    doc = obs.document
    status: dict[str, Any] = {
        "health": verdict.health.value,
        "reason": ",".join(verdict.reasons) or "AllChecksPassing",
        "reasons": list(verdict.reasons),
        "message": verdict.message or "all checks passing",
        "target": target,
        "endpoint": endpoint,
        "lastProbeTime": cond.timestamp(now),
        "lastProbeOutcome": obs.outcome,
        "latencyMs": round(obs.latency_ms, 1),
        "latency": f"{obs.latency_ms:.0f}ms",
        "consecutiveFailures": verdict.consecutive_failures,
        "consecutiveSuccesses": verdict.consecutive_successes,
        "observedGeneration": generation,
        # How the server was judged; kept from the last probe that could tell.
        "probeMethod": obs.method,
        # Cleared when the probe read no document, so stale figures never
        # sit beside a fresh verdict (merge patch: None removes the field).
        "reportedStatus": None,
        "databaseStatus": None,
        "databaseLatencyMs": None,
        "memoryUtilization": None,
        "pool": None,
        "checks": None,
        # Set by per-endpoint monitors only; cleared otherwise.
        "endpoints": None,
        "endpointSummary": None,
    }
    if doc is not None:
        status["reportedStatus"] = doc.status
        status["databaseStatus"] = doc.database_status
        status["databaseLatencyMs"] = doc.database_latency_ms()
        memory = doc.memory_fraction()
        status["memoryUtilization"] = round(memory, 4) if memory is not None else None
        if doc.connection_pool is not None:
            pool = doc.connection_pool
            status["pool"] = {
                "total": pool.total_connections,
                "active": pool.active_connections,
                "idle": pool.idle_connections,
                "waiting": pool.waiting_requests,
                "utilization": round(pool.pool_utilization, 4),
                "percent": f"{pool.pool_utilization * 100:.0f}%",
            }
        status["checks"] = {
            name: {
                k: v
                for k, v in (
                    ("status", check.status),
                    ("message", check.message),
                    ("latencyMs", check.latency_ms),
                )
                if v is not None
            }
            for name, check in doc.checks.items()
        }
    if identity is not None:
        server: dict[str, Any] = {
            "name": identity.name,
            "version": identity.version,
            "protocolVersion": identity.protocol_version,
            "transport": identity.transport,
        }
        if doc is not None and doc.uptime_seconds is not None:
            server["uptimeSeconds"] = doc.uptime_seconds
        status["server"] = server
    conditions = previous_conditions
    for c in cond.from_verdict(verdict, obs.method):
        conditions = cond.set_condition(conditions, c, now=now, generation=generation)
    method = cond.health_resource(obs)
    if method is not None:
        conditions = cond.set_condition(conditions, method, now=now, generation=generation)
    else:
        del status["probeMethod"]  # a failed probe says nothing of it: the last one stands
    status["conditions"] = conditions
    return status


def refused_status(
    *,
    reason: str,
    message: str,
    target: str,
    generation: int | None,
    previous_conditions: list[dict[str, Any]],
    now: datetime,
) -> dict[str, Any]:
    """Status of a monitor the operator will not probe."""
    conditions = previous_conditions
    for c in cond.refused(reason, message):
        conditions = cond.set_condition(conditions, c, now=now, generation=generation)
    return {
        "health": Health.UNKNOWN.value,
        "reason": reason,
        "reasons": [reason],
        "message": message,
        "target": target,
        "observedGeneration": generation,
        "conditions": conditions,
    }


def significant(status: dict[str, Any], thresholds: Thresholds) -> tuple[Any, ...]:
    """The part of a status whose change must reach the API server at once."""
    pool = status.get("pool") or {}
    server = status.get("server") or {}
    return (
        status.get("health"),
        tuple(status.get("reasons") or ()),
        status.get("reportedStatus"),
        status.get("databaseStatus"),
        pool_band(pool.get("utilization"), thresholds),
        status.get("observedGeneration"),
        status.get("lastProbeOutcome") == "Ok",
        status.get("probeMethod"),
        (
            server.get("name"),
            server.get("version"),
            server.get("protocolVersion"),
            server.get("transport"),
        ),
        tuple(sorted((k, v.get("status")) for k, v in (status.get("checks") or {}).items())),
        *_fields_key(status),
    )


def _fields_key(fields: Mapping[str, Any]) -> tuple[Any, ...]:
    """The key's part from the fields beside what ``build`` makes (remediation, endpoints)."""
    endpoints = fields.get("endpoints")
    return (
        repr(fields.get("remediation")),
        tuple(
            [
                (e.get("address"), e.get("port"), e.get("pod"), e.get("health"), e.get("reason"))
                for e in endpoints
            ]
        )
        if endpoints
        else (),
        repr(fields.get("endpointSummary")),
    )


def key(
    *,
    verdict: Verdict,
    obs: Observation,
    thresholds: Thresholds,
    identity: Identity | None,
    generation: int | None,
    extra: Mapping[str, Any] | None = None,
) -> tuple[Any, ...]:
    """``significant(build(...) | extra)`` from the inputs, without building the status.

    Nearly every probe writes nothing; this lets the probe loop find that out
    for a tenth of what building the status costs. ``extra``: the fields the
    status would carry beside what ``build`` makes (remediation, endpoints).
    """
    doc = obs.document
    reported: str | None = None
    database: str | None = None
    checks: tuple[tuple[str, str], ...] = ()
    pool = None
    if doc is not None:
        reported, database, pool = doc.status, doc.database_status, doc.connection_pool
        checks = tuple(sorted([(k, v.status) for k, v in doc.checks.items()]))
    # build() keeps the utilization rounded to 4 places; the band is of that.
    band = pool_band(round(pool.pool_utilization, 4) if pool is not None else None, thresholds)
    server = (
        (identity.name, identity.version, identity.protocol_version, identity.transport)
        if identity is not None
        else _NO_SERVER
    )
    return (
        verdict.health.value,
        verdict.reasons,
        reported,
        database,
        band,
        generation,
        obs.outcome == "Ok",
        obs.method,
        server,
        checks,
        *_fields_key(extra or {}),
    )


_NO_SERVER = (None, None, None, None)


class WriteBudget:
    """Write on significant change, else at most once per heartbeat."""

    def __init__(self, heartbeat_s: float) -> None:
        self.heartbeat_s = heartbeat_s
        self._last_key: tuple[Any, ...] | None = None
        self._last_write = float("-inf")

    def due(self, key: tuple[Any, ...], now: float) -> bool:
        return key != self._last_key or now - self._last_write >= self.heartbeat_s

    def written(self, key: tuple[Any, ...], now: float) -> None:
        self._last_key, self._last_write = key, now

    def forget(self) -> None:
        """After a failed write: the next probe must try again."""
        self._last_key, self._last_write = None, float("-inf")
