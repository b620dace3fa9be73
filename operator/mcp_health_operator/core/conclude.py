"""One verdict → one report: the status to write (if due), the Events, the remediation step.

Pure: the monitor's loop probes, judges, hands the verdict here, and sends
what comes back through its outbox. Everything the controller does with a
verdict is decided in this one function, so it is tested without a server,
a clock or an API server.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from mcp_health_operator.core import events, status
from mcp_health_operator.core.judge import Health, History, Observation, Thresholds, Verdict
from mcp_health_operator.core.spec import RemediationSpec


@dataclass(frozen=True, slots=True)
class Evidence:
    """What one probe (or one round of endpoint probes) found, and the verdict on it."""

    obs: Observation
    verdict: Verdict
    identity: status.Identity | None = None
    endpoint: str = ""  # the URL the status names
    # Beside what ``status.build`` makes: the endpoints of a per-endpoint monitor.
    fields: Mapping[str, Any] = field(default_factory=dict)
    # Beside the monitor's own transitions: each endpoint's.
    events: tuple[events.EventSpec, ...] = ()


@dataclass(frozen=True, slots=True)
class Memory:
    """What the monitor remembers between verdicts."""

    history: History
    reachable: bool | None
    conditions: list[dict[str, Any]]

    @classmethod
    def from_status(cls, status: Mapping[str, Any]) -> Memory:
        """What a monitor's status says of its last verdicts (after an operator restart)."""
        conditions = list(status.get("conditions") or [])
        reachable = next((c for c in conditions if c.get("type") == "Reachable"), None)
        try:
            health = Health(str(status.get("health")))
        except ValueError:
            health = Health.UNKNOWN
        return cls(
            history=History(
                health=health,
                consecutive_failures=int(status.get("consecutiveFailures") or 0),
                consecutive_successes=int(status.get("consecutiveSuccesses") or 0),
            ),
            reachable=None if reachable is None else reachable.get("status") == "True",
            conditions=conditions,
        )


@dataclass(frozen=True, slots=True)
class StepInput:
    """What the remediation step of this verdict decides from (the policy decides there)."""

    spec: RemediationSpec
    health: Health
    pool_size: int | None


@dataclass(frozen=True, slots=True)
class Report:
    status: dict[str, Any] | None  # None: the budget says nothing is worth a write
    key: tuple[Any, ...]  # what the write budget compares
    events: tuple[events.EventSpec, ...]
    step: StepInput | None  # None: the monitor does not remediate
    history: History  # the memory after this verdict
    reachable: bool | None


def conclude(
    evidence: Evidence,
    memory: Memory,
    *,
    thresholds: Thresholds,
    remediation: RemediationSpec | None,
    fields: Mapping[str, Any],
    target: str,
    generation: int,
    due: Callable[[tuple[Any, ...]], bool],
    now: datetime,
) -> Report:
    """``fields``: the remediation's part of the status; ``due``: the write budget's answer."""
    verdict, obs = evidence.verdict, evidence.obs
    # Only read here: a monitor of one address has no fields of its own to merge.
    extra = {**evidence.fields, **fields} if evidence.fields else fields
    key = status.key(
        verdict=verdict,
        obs=obs,
        thresholds=thresholds,
        identity=evidence.identity,
        generation=generation,
        extra=extra,
    )
    new_status: dict[str, Any] | None = None
    # Nearly every probe writes nothing: the status is built only when due.
    if due(key):
        new_status = status.build(
            verdict=verdict,
            obs=obs,
            thresholds=thresholds,
            identity=evidence.identity,
            target=target,
            endpoint=evidence.endpoint,
            generation=generation,
            previous_conditions=memory.conditions,
            now=now,
        )
        new_status.update(extra)
    transitions = events.transitions(memory.history.health, memory.reachable, verdict)
    step = None
    if remediation is not None:
        pool = obs.document.connection_pool if obs.document else None
        step = StepInput(remediation, verdict.health, pool.total_connections if pool else None)
    return Report(
        status=new_status,
        key=key,
        events=(*transitions, *evidence.events),
        step=step,
        history=verdict.history(),
        reachable=verdict.reachable,
    )
