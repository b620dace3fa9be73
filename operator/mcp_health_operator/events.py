"""Which Events a verdict deserves, and how repeats are aggregated.

``transitions`` is pure: Events only on transitions of health or
reachability, never once per probe. ``Aggregator`` is pure too: like
client-go's event correlator it turns an identical repeat into a count bump
on the existing Event, and after a few similar Events (same reason) within a
window it folds the rest into one combined Event. The I/O lives in ``kube``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from mcp_health_operator.judge import Health, Verdict

NORMAL, WARNING = "Normal", "Warning"


@dataclass(frozen=True, slots=True)
class EventSpec:
    type: str
    reason: str
    message: str


def transitions(
    previous_health: Health | None,
    previous_reachable: bool | None,
    verdict: Verdict,
) -> list[EventSpec]:
    """Events for the change from the previous verdict (``None``: first probe) to this one."""
    out: list[EventSpec] = []
    detail = verdict.message
    if previous_reachable is not False and not verdict.reachable:
        out.append(EventSpec(WARNING, "ProbeFailed", f"probe failed: {detail}"))
    elif previous_reachable is False and verdict.reachable:
        out.append(EventSpec(NORMAL, "ProbeRecovered", "probe succeeded again"))

    health = verdict.health
    if health != previous_health:
        if health is Health.UNHEALTHY:
            out.append(
                EventSpec(
                    WARNING,
                    "HealthUnhealthy",
                    f"Unhealthy after {verdict.consecutive_failures} consecutive failed "
                    f"probes: {detail}",
                )
            )
        elif health is Health.DEGRADED:
            out.append(EventSpec(WARNING, "HealthDegraded", f"Degraded: {detail}"))
        elif health is Health.HEALTHY and previous_health in (Health.DEGRADED, Health.UNHEALTHY):
            out.append(
                EventSpec(NORMAL, "HealthRecovered", f"Healthy again (was {previous_health})")
            )
    return out


@dataclass(frozen=True, slots=True)
class Post:
    """What to do for an event: create a new Event object or bump an existing one."""

    name: str
    create: bool
    count: int
    message: str


@dataclass(slots=True)
class _Seen:
    name: str
    count: int
    last: float


class Aggregator:
    """Per involved object: exact repeats and floods of similar events become count bumps."""

    def __init__(self, *, window_s: float = 600.0, similar_limit: int = 4) -> None:
        self.window_s = window_s
        self.similar_limit = similar_limit
        self._exact: dict[tuple[str, str, str, str], _Seen] = {}
        self._similar: dict[tuple[str, str, str], list[float]] = {}
        self._combined: dict[tuple[str, str, str], _Seen] = {}

    def post(self, *, uid: str, object_name: str, event: EventSpec, now: float) -> Post:
        exact_key = (uid, event.type, event.reason, event.message)
        seen = self._exact.get(exact_key)
        if seen is not None and now - seen.last < self.window_s:
            seen.count += 1
            seen.last = now
            return Post(seen.name, False, seen.count, event.message)

        similar_key = (uid, event.type, event.reason)
        recent = [t for t in self._similar.get(similar_key, []) if now - t < self.window_s]
        recent.append(now)
        self._similar[similar_key] = recent
        if len(recent) > self.similar_limit:
            message = f"(combined from similar events): {event.message}"
            combined = self._combined.get(similar_key)
            if combined is not None and now - combined.last < self.window_s:
                combined.count += 1
                combined.last = now
                return Post(combined.name, False, combined.count, message)
            name = _name(object_name, similar_key, now)
            self._combined[similar_key] = _Seen(name, 1, now)
            return Post(name, True, 1, message)

        name = _name(object_name, exact_key, now)
        self._exact[exact_key] = _Seen(name, 1, now)
        return Post(name, True, 1, event.message)

    def forget(self, uid: str) -> None:
        self._exact = {k: v for k, v in self._exact.items() if k[0] != uid}
        self._similar = {k: v for k, v in self._similar.items() if k[0] != uid}
        self._combined = {k: v for k, v in self._combined.items() if k[0] != uid}


def _name(object_name: str, key: tuple[str, ...], now: float) -> str:
    digest = hashlib.sha1(repr((key, now)).encode(), usedforsecurity=False).hexdigest()[:12]
    return f"{object_name[:200]}.{digest}"
