"""Kubernetes-style conditions: set, get, and derive them from a verdict.

Purely data-manipulative: no I/O. ``lastTransitionTime`` moves only when a
condition's ``status`` changes; ``reason``, ``message`` and
``observedGeneration`` are refreshed on every set. The clock is a parameter.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from mcp_health_operator.core.judge import HANDSHAKE, Health, Observation, Reason, Verdict
from mcp_health_operator.core.judge import HEALTH_RESOURCE as READ

Status = Literal["True", "False", "Unknown"]

REACHABLE, HEALTHY, DEGRADED = "Reachable", "Healthy", "Degraded"
# Whether the monitor reads the guide's health document, or judges by the
# handshake alone (and so could learn more if the server published it).
HEALTH_RESOURCE = "HealthResource"


@dataclass(frozen=True, slots=True)
class Condition:
    type: str
    status: Status
    reason: str
    message: str


def timestamp(now: datetime) -> str:
    return now.strftime("%Y-%m-%dT%H:%M:%SZ")


def get(conditions: list[dict[str, Any]], type_: str) -> dict[str, Any] | None:
    return next((c for c in conditions if c.get("type") == type_), None)


def set_condition(
    conditions: list[dict[str, Any]],
    new: Condition,
    *,
    now: datetime,
    generation: int | None,
) -> list[dict[str, Any]]:
    """A new list with ``new`` set; the transition time kept if status did not change."""
    old = get(conditions, new.type)
    moved = old is None or old.get("status") != new.status
    entry: dict[str, Any] = {
        "type": new.type,
        "status": new.status,
        "reason": new.reason,
        "message": new.message,
        "lastTransitionTime": timestamp(now)
        if moved or old is None
        else old.get("lastTransitionTime", timestamp(now)),
    }
    if generation is not None:
        entry["observedGeneration"] = generation
    out = [c for c in conditions if c.get("type") != new.type]
    out.append(entry)
    return sorted(out, key=lambda c: _ORDER.get(c["type"], 99))


def remove(conditions: list[dict[str, Any]], type_: str) -> list[dict[str, Any]]:
    return [c for c in conditions if c.get("type") != type_]


_ORDER = {REACHABLE: 0, HEALTHY: 1, DEGRADED: 2, HEALTH_RESOURCE: 3}


def from_verdict(verdict: Verdict, method: str | None = READ) -> list[Condition]:
    """The three conditions of a monitor after a probe (``method``: how it was judged)."""
    first = verdict.findings[0] if verdict.findings else None
    if verdict.reachable and first is not None and first.reason is Reason.RATE_LIMITED:
        reachable = Condition(REACHABLE, "True", first.reason.value, first.message)
    elif verdict.reachable and method == HANDSHAKE:
        reachable = Condition(REACHABLE, "True", "ProbeSucceeded", "server answered the handshake")
    elif verdict.reachable:
        reachable = Condition(REACHABLE, "True", "ProbeSucceeded", "health document read")
    else:
        assert first is not None  # an unreachable verdict always says why
        reachable = Condition(REACHABLE, "False", first.reason.value, first.message)

    message = verdict.message or "all checks passing"
    if verdict.health is Health.HEALTHY and not verdict.findings:
        healthy = Condition(HEALTHY, "True", "AllChecksPassing", message)
    elif verdict.health is Health.HEALTHY:
        # Healthy holds while failures stay below failureThreshold (or the
        # server only asked us to back off); the reason says which.
        held = "FailuresBelowThreshold" if verdict.consecutive_failures else _reason(verdict, "")
        healthy = Condition(HEALTHY, "True", held, message)
    elif verdict.health is Health.UNKNOWN:
        healthy = Condition(HEALTHY, "Unknown", _reason(verdict, "AwaitingVerdict"), message)
    else:
        healthy = Condition(HEALTHY, "False", _reason(verdict, verdict.health.value), message)

    if verdict.health is Health.DEGRADED:
        degraded = Condition(DEGRADED, "True", _reason(verdict, "Degraded"), message)
    elif verdict.health is Health.UNKNOWN:
        degraded = Condition(DEGRADED, "Unknown", _reason(verdict, "AwaitingVerdict"), message)
    else:
        degraded = Condition(DEGRADED, "False", verdict.health.value, message)
    return [reachable, healthy, degraded]


def health_resource(obs: Observation) -> Condition | None:
    """Whether the server's health document was read; None when the probe could not tell."""
    if obs.method == READ:
        return Condition(HEALTH_RESOURCE, "True", "HealthResourceRead", "health document read")
    if obs.method != HANDSHAKE:
        return None
    if obs.fell_back:
        return Condition(
            HEALTH_RESOURCE,
            "False",
            "HealthResourceNotListed",
            "the server lists no health resource: judged by the handshake alone "
            "(reachability, latency, tools); publishing the health document adds pool, "
            "database and memory figures (see mcp_health_operator.server)",
        )
    return Condition(
        HEALTH_RESOURCE,
        "False",
        "HandshakeRequested",
        "spec.probe.method is handshake: the health resource is not read",
    )


def refused(reason: str, message: str) -> list[Condition]:
    """Conditions of a monitor the operator will not probe (e.g. a URL not allowed)."""
    return [
        Condition(REACHABLE, "False", reason, message),
        Condition(HEALTHY, "Unknown", reason, message),
        Condition(DEGRADED, "Unknown", reason, message),
    ]


def _reason(verdict: Verdict, default: str) -> str:
    worst = max(verdict.findings, key=lambda f: f.severity, default=None)
    return worst.reason.value if worst is not None else default
