"""The remediation policy: signals + spec + ledger + clock + fleet → act, or why not.

Purely computational: no I/O, no kopf, no Kubernetes, no HTTP. Times are
epoch seconds from the caller's clock, so the ledger can be persisted in the
monitor's status and survive an operator restart.

Two steps, so the caller reads a workload only when an action is due:

1. ``due``: is an action due by the monitor's own signals?
   * pool scaling, when pool utilization has been at or above the unhealthy
     band for ``poolScaling.after`` (and the pool is below ``max``);
   * pod deletion (per-endpoint monitors), when an endpoint has been
     Unhealthy for ``podDeletion.after``: its pod alone is deleted, the one
     Unhealthy longest first, one pod per action. It comes before a restart
     (the narrower fix), unless every endpoint is Unhealthy and a restart
     is enabled: then the fault is not one replica's;
   * restart, when the monitor has been Unhealthy for ``restart.after``;
   * scale back down, when enabled and utilization has stayed below the
     degraded band for ``scaleDown.after`` and the pool is above its original size.
   Scaling up comes first (the narrower fix); scaling down comes last (it
   fixes nothing, so it never takes a restart's place).
2. ``decide``: may it happen now? Holds, in order: paused (operator flag or
   monitor annotation), mass failure (too many monitors turned Unhealthy at
   once: the fault is likelier on the operator's side), pool already at its
   maximum, cooldown since the
   last action, hourly budget, workload missing, workload paused, rollout in
   progress. Then dry-run (recorded, not done), or act.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from mcp_health_operator.core.judge import Health

HOUR = 3600.0


class Action(StrEnum):
    RESTART = "restart"
    DELETE_POD = "delete-pod"
    SCALE_UP = "scale-pool"
    SCALE_DOWN = "scale-pool-down"


class Hold(StrEnum):
    PAUSED = "RemediationPaused"
    # The operator is not granted remediation in the namespace, or the
    # object's owner has not consented (the opt-in label).
    NOT_PERMITTED = "NotPermitted"
    MASS_FAILURE = "MassFailure"
    COOLDOWN = "Cooldown"
    BUDGET = "BudgetExhausted"
    WORKLOAD_NOT_FOUND = "WorkloadNotFound"
    WORKLOAD_PAUSED = "WorkloadPaused"
    ROLLOUT_IN_PROGRESS = "RolloutInProgress"
    POOL_AT_MAXIMUM = "PoolAtMaximum"


@dataclass(frozen=True, slots=True)
class RestartPolicy:
    enabled: bool = False
    after_s: float = 30.0


@dataclass(frozen=True, slots=True)
class PodDeletionPolicy:
    enabled: bool = False
    after_s: float = 30.0


@dataclass(frozen=True, slots=True)
class ScalingPolicy:
    enabled: bool = False
    after_s: float = 30.0
    step: int = 5
    maximum: int = 50
    scale_down: bool = False
    scale_down_after_s: float = 1800.0


@dataclass(frozen=True, slots=True)
class Policy:
    restart: RestartPolicy = field(default_factory=RestartPolicy)
    pod_deletion: PodDeletionPolicy = field(default_factory=PodDeletionPolicy)
    scaling: ScalingPolicy = field(default_factory=ScalingPolicy)
    cooldown_s: float = 600.0
    max_per_hour: int = 3
    dry_run: bool = False


@dataclass(frozen=True, slots=True)
class PodSignal:
    """One endpoint's pod, Unhealthy since ``unhealthy_since`` (None: it is not)."""

    name: str
    uid: str | None
    unhealthy_since: float | None


@dataclass(frozen=True, slots=True)
class Signals:
    """What the monitor's recent probes say, with the times things began."""

    health: Health
    unhealthy_since: float | None = None
    pool_size: int | None = None
    # Utilization at/above the unhealthy band since, and below degraded since.
    exhausted_since: float | None = None
    calm_since: float | None = None
    # Per-endpoint monitors: every endpoint's pod (in the monitor's namespace).
    pods: tuple[PodSignal, ...] = ()


@dataclass(frozen=True, slots=True)
class Record:
    action: Action
    time: float
    result: str  # "success" | "failed" | "dry-run"


@dataclass(frozen=True, slots=True)
class Ledger:
    """What was done, persisted in status: the last hour's actions and the pool's first size."""

    records: tuple[Record, ...] = ()
    original_pool_size: int | None = None

    @property
    def last(self) -> Record | None:
        return self.records[-1] if self.records else None

    def in_window(self, now: float) -> tuple[Record, ...]:
        return tuple(r for r in self.records if now - r.time < HOUR)

    def kept(self, now: float) -> tuple[Record, ...]:
        """The last hour's records, and the last record however old (for long cooldowns)."""
        window = self.in_window(now)
        last = self.last
        return window if last is None or last in window else (last, *window)


@dataclass(frozen=True, slots=True)
class FleetState:
    total: int
    unhealthy: int
    turned_unhealthy_recently: int


@dataclass(frozen=True, slots=True)
class Breaker:
    share: float = 0.5
    min_monitors: int = 3

    def tripped(self, fleet: FleetState) -> bool:
        # A single monitor failing is not a "fleet"; below min_monitors the
        # breaker never trips.
        if fleet.total < self.min_monitors or fleet.total == 0:
            return False
        limit = self.share * fleet.total
        return fleet.turned_unhealthy_recently > limit or fleet.unhealthy > limit


@dataclass(frozen=True, slots=True)
class Workload:
    found: bool
    paused: bool = False
    rollout_in_progress: bool = False


@dataclass(frozen=True, slots=True)
class Intent:
    action: Action
    message: str
    pool_size: int | None = None  # the size to set, for scaling
    at_maximum: bool = False  # scaling is due, but the pool is already at its maximum
    pod: str | None = None  # the pod to delete
    pod_uid: str | None = None  # ... only if it is still this pod (not a namesake)


@dataclass(frozen=True, slots=True)
class Decision:
    intent: Intent
    act: bool
    dry_run: bool = False
    hold: Hold | None = None
    message: str = ""


def due(policy: Policy, signals: Signals, ledger: Ledger, now: float) -> Intent | None:
    """An action due by the monitor's signals alone, or None."""
    scaling = policy.scaling
    size = signals.pool_size
    if scaling.enabled and size is not None and signals.exhausted_since is not None:
        lasted = now - signals.exhausted_since
        if lasted >= scaling.after_s:
            if size >= scaling.maximum:
                if not (policy.restart.enabled and _restart_due(policy, signals, now)):
                    return Intent(
                        Action.SCALE_UP,
                        f"pool exhausted, but already at its maximum {scaling.maximum}",
                        size,
                        at_maximum=True,
                    )
            else:
                new = min(size + scaling.step, scaling.maximum)
                return Intent(
                    Action.SCALE_UP,
                    f"pool exhausted for {lasted:.0f}s: size {size} -> {new}",
                    new,
                )
    pod = _pod_due(policy, signals, now)
    if pod is not None:
        return pod
    # An Unhealthy server due a restart is restarted: stepping its pool down
    # would spend the cooldown and budget on the wrong fix.
    if policy.restart.enabled and _restart_due(policy, signals, now):
        assert signals.unhealthy_since is not None
        lasted = now - signals.unhealthy_since
        return Intent(Action.RESTART, f"Unhealthy for {lasted:.0f}s")
    if (
        scaling.enabled
        and scaling.scale_down
        and size is not None
        and ledger.original_pool_size is not None
        and size > ledger.original_pool_size
        and signals.calm_since is not None
        and now - signals.calm_since >= scaling.scale_down_after_s
    ):
        new = max(size - scaling.step, ledger.original_pool_size)
        lasted = now - signals.calm_since
        return Intent(
            Action.SCALE_DOWN,
            f"pool below the degraded band for {lasted:.0f}s: size {size} -> {new}",
            new,
        )
    return None


def _pod_due(policy: Policy, signals: Signals, now: float) -> Intent | None:
    if not policy.pod_deletion.enabled or not signals.pods:
        return None
    bad = [p for p in signals.pods if p.unhealthy_since is not None]
    # Every replica failing points at something they share (a database, a
    # bad release): a restart of the workload, if enabled, is the fix.
    if len(bad) == len(signals.pods) and policy.restart.enabled:
        return None
    due = [
        p
        for p in bad
        if p.unhealthy_since is not None and now - p.unhealthy_since >= policy.pod_deletion.after_s
    ]
    if not due:
        return None
    pod = min(due, key=lambda p: (p.unhealthy_since or now, p.name))
    lasted = now - (pod.unhealthy_since or now)
    return Intent(
        Action.DELETE_POD,
        f"endpoint of pod {pod.name} Unhealthy for {lasted:.0f}s "
        f"({len(bad)} of {len(signals.pods)} endpoints Unhealthy)",
        pod=pod.name,
        pod_uid=pod.uid,
    )


def _restart_due(policy: Policy, signals: Signals, now: float) -> bool:
    return (
        signals.health is Health.UNHEALTHY
        and signals.unhealthy_since is not None
        and now - signals.unhealthy_since >= policy.restart.after_s
    )


def decide(
    intent: Intent,
    policy: Policy,
    ledger: Ledger,
    now: float,
    *,
    fleet: FleetState,
    breaker: Breaker,
    paused: bool,
    workload: Workload | None,
    not_permitted: str | None = None,
) -> Decision:
    """Whether the due ``intent`` may be carried out now, and if not, why.

    ``not_permitted``: why the operator may not act on this object (no grant
    in the namespace, no consent from its owner), or None.
    """

    def hold(reason: Hold, message: str) -> Decision:
        return Decision(intent, act=False, hold=reason, message=message)

    # Each hold's reason: a person asked for quiet.
    if paused:
        return hold(Hold.PAUSED, "remediation is paused")
    # Acting for whoever may create a monitor, on what they may not touch
    # themselves, would make the operator a confused deputy.
    if not_permitted is not None:
        return hold(Hold.NOT_PERMITTED, not_permitted)
    # Many monitors failing together point at the operator or the network.
    if breaker.tripped(fleet):
        return hold(
            Hold.MASS_FAILURE,
            f"{max(fleet.unhealthy, fleet.turned_unhealthy_recently)} of {fleet.total} "
            f"monitors are Unhealthy; holding all remediation",
        )
    if intent.at_maximum:
        return hold(Hold.POOL_AT_MAXIMUM, intent.message)
    last = ledger.last
    # Give the previous action time to work.
    if last is not None and now - last.time < policy.cooldown_s:
        wait = policy.cooldown_s - (now - last.time)
        return hold(Hold.COOLDOWN, f"last action {now - last.time:.0f}s ago; {wait:.0f}s to go")
    # A flapping server must not be restarted without end.
    used = len(ledger.in_window(now))
    if used >= policy.max_per_hour:
        return hold(Hold.BUDGET, f"{used} actions in the last hour (max {policy.max_per_hour})")
    needs_workload = intent.action is Action.RESTART or workload is not None
    if needs_workload and (workload is None or not workload.found):
        return hold(Hold.WORKLOAD_NOT_FOUND, "the workload was not found in this namespace")
    if workload is not None and workload.paused:
        return hold(Hold.WORKLOAD_PAUSED, "the workload's rollout is paused")
    # Restarting mid-rollout would stack rollouts and hide the outcome.
    if workload is not None and workload.rollout_in_progress:
        return hold(Hold.ROLLOUT_IN_PROGRESS, "a rollout of the workload is in progress")
    if policy.dry_run:
        return Decision(intent, act=False, dry_run=True, message=f"dry run: {intent.message}")
    return Decision(intent, act=True, message=intent.message)


def record(ledger: Ledger, action: Action, now: float, result: str) -> Ledger:
    """The ledger after an action (or a dry run): the last hour kept."""
    records = (*ledger.in_window(now), Record(action, now, result))
    # (The newest record is always kept: a cooldown may outlast the hour.)
    return Ledger(records=records, original_pool_size=ledger.original_pool_size)


def next_allowed(policy: Policy, ledger: Ledger, now: float) -> float | None:
    """When the next action may happen (cooldown and budget), or None if now."""
    times = []
    last = ledger.last
    if last is not None and now - last.time < policy.cooldown_s:
        times.append(last.time + policy.cooldown_s)
    window = ledger.in_window(now)
    if len(window) >= policy.max_per_hour:
        times.append(window[len(window) - policy.max_per_hour].time + HOUR)
    return max(times) if times else None


def workload_state(kind: str, obj: dict[str, object] | None) -> Workload:
    """Paused / rollout-in-progress, judged by the workload's own rollout state.

    Readiness is not rollout state: a server whose readiness follows the health
    it reports goes unready exactly when a restart is due, so counting ready or
    available pods would hold the restart forever. A Deployment's rollout is
    read from its ``Progressing`` condition (``NewReplicaSetAvailable`` = done,
    ``ProgressDeadlineExceeded`` = stalled, no longer progressing), with the
    replica counts as a fallback; a StatefulSet's from its revisions.
    """
    if obj is None:
        return Workload(found=False)
    meta = _dict(obj.get("metadata"))
    spec = _dict(obj.get("spec"))
    status = _dict(obj.get("status"))
    paused = bool(spec.get("paused")) if kind == "Deployment" else False
    if _int(status.get("observedGeneration")) < _int(meta.get("generation")):
        return Workload(True, paused=paused, rollout_in_progress=True)
    replicas = _int(spec.get("replicas"), 1)
    updated = _int(status.get("updatedReplicas"))
    if kind == "Deployment":
        progressing = _condition(status, "Progressing")
        reason = progressing.get("reason")
        if reason == "NewReplicaSetAvailable" or progressing.get("status") == "False":
            in_progress = False
        elif reason in ("ReplicaSetUpdated", "NewReplicaSetCreated", "FoundNewReplicaSet"):
            in_progress = True
        else:  # no condition (or paused): the counts `kubectl rollout status` reads
            in_progress = updated < replicas or _int(status.get("replicas")) > updated
        return Workload(True, paused=paused, rollout_in_progress=in_progress)
    revisions_differ = status.get("updateRevision") not in (None, status.get("currentRevision"))
    return Workload(True, rollout_in_progress=revisions_differ or updated < replicas)


def _condition(status: dict[str, object], kind: str) -> dict[str, object]:
    conditions = status.get("conditions")
    for condition in conditions if isinstance(conditions, list) else ():
        if isinstance(condition, dict) and condition.get("type") == kind:
            return condition
    return {}


def _dict(value: object) -> dict[str, object]:
    return value if isinstance(value, dict) else {}


def _int(value: object, default: int = 0) -> int:
    return value if isinstance(value, int) else default
