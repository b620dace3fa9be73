"""Carrying out the remediation policy for one monitor: gather, decide, act, record.

The decisions are ``remediation``'s (pure); this module reads the workload
only when an action is due, records the action in the status *before*
acting (so an operator killed mid-action never repeats it inside the
cooldown; as a compare-and-swap, so two replicas never both act), acts,
records the result, and reports with an Event and a metric.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from mcp_health_operator.controller.metrics import MonitorFigures
from mcp_health_operator.core import events, remediation
from mcp_health_operator.core.conditions import timestamp
from mcp_health_operator.core.config import CONSENT_LABEL, PAUSE_ANNOTATION, Config
from mcp_health_operator.core.judge import Health, Thresholds, Verdict
from mcp_health_operator.core.remediation import Action, Hold
from mcp_health_operator.core.spec import RemediationSpec
from mcp_health_operator.kube.api import Conflict, Kube, NotFound, ObjectRef
from mcp_health_operator.probing.probe import Prober

log = logging.getLogger(__name__)

WriteStatus = Callable[[dict[str, Any]], Awaitable[bool]]
PostEvent = Callable[[events.EventSpec], Awaitable[None]]

_DONE_REASON = {
    Action.RESTART: "RestartTriggered",
    Action.DELETE_POD: "PodDeleted",
    Action.SCALE_UP: "PoolScaled",
    Action.SCALE_DOWN: "PoolScaled",
}
_HELD_REASON = {
    Action.RESTART: "RestartSuppressed",
    Action.DELETE_POD: "PodDeletionSuppressed",
    Action.SCALE_UP: "PoolScaleSuppressed",
    Action.SCALE_DOWN: "PoolScaleSuppressed",
}


class Remediator:
    def __init__(
        self,
        *,
        kube: Kube,
        config: Config,
        figures: MonitorFigures,
        fleet_state: Callable[[], remediation.FleetState],
        status: dict[str, Any],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.kube = kube
        self.config = config
        self.figures = figures
        self.fleet_state = fleet_state
        self.clock = clock
        self.ledger = ledger_from_status(status.get("remediation") or {})
        self.unhealthy_since = _epoch(status.get("unhealthySince"))
        self.exhausted_since: float | None = None
        self.calm_since: float | None = None
        self.suppressed: tuple[Action, Hold] | None = None
        # The last action carried out (for the caller: a deleted pod's endpoint starts over).
        self.acted: remediation.Intent | None = None
        self.last_message = str((status.get("remediation") or {}).get("lastMessage") or "")

    def observe(self, verdict: Verdict, pool_utilization: float | None, t: Thresholds) -> None:
        """Track since when each remediation signal has held."""
        now = self.clock()
        if verdict.health is Health.UNHEALTHY:
            self.unhealthy_since = self.unhealthy_since or now
        else:
            self.unhealthy_since = None
        if pool_utilization is None:
            self.exhausted_since = self.calm_since = None
            return
        exhausted = pool_utilization >= t.pool_unhealthy
        calm = pool_utilization < t.pool_degraded
        self.exhausted_since = (self.exhausted_since or now) if exhausted else None
        self.calm_since = (self.calm_since or now) if calm else None

    def status_fields(self, spec: RemediationSpec | None, *, ledger: bool = True) -> dict[str, Any]:
        """Status fields of remediation; without ``ledger`` only what probing decides."""
        out: dict[str, Any] = {
            "unhealthySince": _iso(self.unhealthy_since) if self.unhealthy_since else None
        }
        if spec is not None:
            out["remediation"] = (
                self.ledger_status(spec.to_policy()) if ledger else self.hold_status()
            )
        return out

    def hold_status(self) -> dict[str, Any]:
        """The part of ``status.remediation`` that is not the ledger: the current hold."""
        return {"suppressed": self.suppressed[1].value if self.suppressed else None}

    def ledger_status(self, policy: remediation.Policy) -> dict[str, Any]:
        now = self.clock()
        last = self.ledger.last
        window = self.ledger.in_window(now)
        next_time = remediation.next_allowed(policy, self.ledger, now)
        return {
            "lastAction": last.action.value if last else None,
            "lastActionTime": _iso(last.time) if last else None,
            "lastResult": last.result if last else None,
            "lastMessage": self.last_message or None,
            "actionsInWindow": len(window),
            "actionTimes": [
                {"action": r.action.value, "time": _iso(r.time), "result": r.result}
                for r in self.ledger.kept(now)
            ],
            "nextAllowedTime": _iso(next_time) if next_time else None,
            "originalPoolSize": self.ledger.original_pool_size,
            "suppressed": self.suppressed[1].value if self.suppressed else None,
        }

    async def step(
        self,
        *,
        spec: RemediationSpec,
        ref: ObjectRef,
        annotations: dict[str, str],
        health: Health,
        pool_size: int | None,
        prober: Prober | None,
        write: WriteStatus,
        post: PostEvent,
        pods: tuple[remediation.PodSignal, ...] = (),
    ) -> None:
        policy = spec.to_policy()
        now = self.clock()
        if pool_size is not None and self.ledger.original_pool_size is None:
            self.ledger = remediation.Ledger(self.ledger.records, original_pool_size=pool_size)
        signals = remediation.Signals(
            health=health,
            unhealthy_since=self.unhealthy_since,
            pool_size=pool_size,
            exhausted_since=self.exhausted_since,
            calm_since=self.calm_since,
            pods=pods,
        )
        intent = remediation.due(policy, signals, self.ledger, now)
        if intent is None:
            self.suppressed = None
            return
        try:
            workload, labels = await self._workload(spec, ref, intent)
            not_permitted = await self._permission(spec, ref, intent, labels)
        except Exception as exc:  # the API server may be away: decide at a later probe
            log.warning("reading the workload of %s/%s failed: %s", ref.namespace, ref.name, exc)
            return
        decision = remediation.decide(
            intent,
            policy,
            self.ledger,
            now,
            fleet=self.fleet_state(),
            breaker=remediation.Breaker(
                self.config.breaker_share, self.config.breaker_min_monitors
            ),
            paused=self.config.pause_remediation
            or annotations.get(PAUSE_ANNOTATION, "").lower() == "true",
            workload=workload,
            not_permitted=not_permitted,
        )
        action = intent.action
        if decision.hold is not None:
            # One Event and one sample per (action, reason), not one per probe.
            if self.suppressed != (action, decision.hold):
                self.suppressed = (action, decision.hold)
                self.figures.count_remediation(action.value, "suppressed")
                reason = (
                    "RemediationNotPermitted"
                    if decision.hold is Hold.NOT_PERMITTED
                    else _HELD_REASON[action]
                )
                await post(
                    events.EventSpec(
                        events.WARNING,
                        reason,
                        f"{decision.hold.value}: {decision.message} (due: {intent.message})",
                    )
                )
            return
        self.suppressed = None
        if decision.dry_run:
            self._record(action, now, "dry-run", decision.message)
            await write(self.status_fields(spec))
            self.figures.count_remediation(action.value, "dry-run")
            await post(events.EventSpec(events.NORMAL, "RemediationDryRun", decision.message))
            return

        # Ledger first: if this process dies mid-action, the restarted
        # operator sees the action and keeps the cooldown.
        if not await self._claim(spec, ref, action, now, intent.message):
            return
        try:
            detail = await self._act(spec, ref, intent, prober)
        except Exception as exc:
            self._amend("failed", f"{intent.message}: {exc}")
            await write(self.status_fields(spec))
            self.figures.count_remediation(action.value, "failed")
            await post(
                events.EventSpec(
                    events.WARNING, "RemediationFailed", f"{action.value} failed: {exc}"
                )
            )
            return
        self._amend("success", f"{intent.message}{detail}")
        self.acted = intent
        await write(self.status_fields(spec))
        self.figures.count_remediation(action.value, "success")
        await post(events.EventSpec(events.NORMAL, _DONE_REASON[action], self.last_message))

    async def _claim(
        self, spec: RemediationSpec, ref: ObjectRef, action: Action, now: float, message: str
    ) -> bool:
        """Record 'pending' as a compare-and-swap on the monitor; True: go ahead and act.

        Another replica may have acted since this one read the ledger (a
        failover, a reshard): read the monitor fresh, adopt a newer ledger
        (the next probe decides again on it), and write only onto the version
        read, so of two replicas racing at most one acts.
        """
        try:
            fresh = await self.kube.monitor(ref)
        except Exception as exc:
            log.warning("reading %s/%s before acting failed: %s", ref.namespace, ref.name, exc)
            return False
        if fresh is None:
            return False
        recorded = (fresh.get("status") or {}).get("remediation") or {}
        theirs = ledger_from_status(recorded)
        ours = {(r.action, int(r.time)) for r in self.ledger.records}
        if any((r.action, int(r.time)) not in ours for r in theirs.records):
            log.info("%s/%s: adopting a newer remediation ledger", ref.namespace, ref.name)
            pool = theirs.original_pool_size or self.ledger.original_pool_size
            self.ledger = remediation.Ledger(theirs.records, pool)
            self.last_message = str(recorded.get("lastMessage") or "")
            return False
        before = self.ledger, self.last_message
        self._record(action, now, "pending", message)
        version = str(fresh.get("metadata", {}).get("resourceVersion") or "")
        try:
            if await self.kube.patch_status(
                ref, self.status_fields(spec), resource_version=version
            ):
                return True
        except Conflict:
            log.info(
                "%s/%s: the monitor changed before acting; not this round", ref.namespace, ref.name
            )
        except Exception as exc:
            log.warning(
                "recording %s for %s/%s failed: %s", action.value, ref.namespace, ref.name, exc
            )
        self.ledger, self.last_message = before
        return False

    def _record(self, action: Action, now: float, result: str, message: str) -> None:
        self.ledger = remediation.record(self.ledger, action, now, result)
        self.last_message = message

    def _amend(self, result: str, message: str) -> None:
        records = list(self.ledger.records)
        last = records[-1]
        records[-1] = remediation.Record(last.action, last.time, result)
        self.ledger = remediation.Ledger(tuple(records), self.ledger.original_pool_size)
        self.last_message = message

    async def _workload(
        self, spec: RemediationSpec, ref: ObjectRef, intent: remediation.Intent
    ) -> tuple[remediation.Workload | None, dict[str, str] | None]:
        """The workload's state for the rails, and its labels (None: not read)."""
        scaling = spec.pool_scaling
        needs = intent.action is Action.RESTART or (scaling is not None and scaling.method == "env")
        if intent.action is Action.DELETE_POD and spec.workload is not None:
            # Not needed to delete a pod, but when named, its rails hold
            # (no deletion while it is paused or rolling out).
            needs = True
        if not needs or spec.workload is None:
            return (remediation.Workload(found=False) if needs else None), None
        obj = await self.kube.workload(ref.namespace, spec.workload.kind, spec.workload.name)
        labels = None if obj is None else dict((obj.get("metadata") or {}).get("labels") or {})
        return remediation.workload_state(spec.workload.kind, obj), labels

    async def _permission(
        self,
        spec: RemediationSpec,
        ref: ObjectRef,
        intent: remediation.Intent,
        workload_labels: dict[str, str] | None,
    ) -> str | None:
        """Why the operator may not act here (no grant, no owner's consent), or None."""
        ns = ref.namespace
        if not self.config.remediation_allowed(ns):
            return (
                f"remediation is not granted in namespace {ns} "
                "(the operator's --remediation-namespace, the chart's remediation.namespaces)"
            )
        scaling = spec.pool_scaling
        labels: dict[str, str] | None
        if workload_labels is not None and spec.workload is not None:
            what, labels = f"{spec.workload.kind} {spec.workload.name}", workload_labels
        elif intent.action is Action.DELETE_POD and intent.pod is not None:
            what, labels = f"Pod {intent.pod}", await self.kube.labels("Pod", ns, intent.pod)
        elif scaling is not None and scaling.method == "configMap":
            assert scaling.config_map is not None
            name = scaling.config_map.name
            what, labels = f"ConfigMap {name}", await self.kube.labels("ConfigMap", ns, name)
        else:
            return None  # an MCP tool of the server's own: nothing of the cluster is touched
        if labels is None:
            return None  # gone: nothing to act on (the rails or the action say so)
        if labels.get(CONSENT_LABEL, "").lower() != "true":
            return (
                f"{what} does not carry the label {CONSENT_LABEL}=true, "
                "by which its owner allows remediation"
            )
        return None

    async def _act(
        self,
        spec: RemediationSpec,
        ref: ObjectRef,
        intent: remediation.Intent,
        prober: Prober | None,
    ) -> str:
        ns = ref.namespace
        if intent.action is Action.DELETE_POD:
            assert intent.pod is not None
            await self.kube.delete_pod(ns, intent.pod, uid=intent.pod_uid)
            return f"; deleted pod {intent.pod}"
        if intent.action is Action.RESTART:
            assert spec.workload is not None
            await self.kube.restart(ns, spec.workload.kind, spec.workload.name, datetime.now(UTC))
            return f"; restarted {spec.workload.kind}/{spec.workload.name}"
        scaling = spec.pool_scaling
        assert scaling is not None and intent.pool_size is not None
        size = str(intent.pool_size)
        if scaling.method == "env":
            assert spec.workload is not None
            container = spec.workload.container or await self._first_container(spec, ns)
            await self.kube.set_env(
                ns, spec.workload.kind, spec.workload.name, container, scaling.env_var, size
            )
            return f"; {scaling.env_var}={size} on {spec.workload.name}/{container}"
        if scaling.method == "configMap":
            assert scaling.config_map is not None
            cm = scaling.config_map
            await self.kube.config_value(ns, cm.name, cm.key)  # NotFound names it
            await self.kube.set_config_value(ns, cm.name, cm.key, size)
            return f"; ConfigMap {cm.name} {cm.key}={size}"
        if prober is None:
            raise NotFound("no endpoint to call the pool-scaling tool on")
        # A client of its own: the probing loop owns the prober's session, and
        # a tool call through it would race a probe on that session's state.
        tools = Prober(prober.target, timeout=prober.timeout, max_bytes=prober.max_bytes)
        try:
            answer = await tools.call_tool(
                scaling.tool.name, {scaling.tool.argument: intent.pool_size}, timeout=10.0
            )
        finally:
            await tools.aclose()
        return f"; tool {scaling.tool.name}({scaling.tool.argument}={size}) -> {answer[:100]}"

    async def _first_container(self, spec: RemediationSpec, ns: str) -> str:
        assert spec.workload is not None
        obj = await self.kube.workload(ns, spec.workload.kind, spec.workload.name)
        containers = (((obj or {}).get("spec") or {}).get("template") or {}).get("spec", {})
        names = [c.get("name") for c in containers.get("containers", [])]
        if not names:
            raise NotFound(f"{spec.workload.kind} {spec.workload.name} has no containers")
        return str(names[0])


def ledger_from_status(raw: dict[str, Any]) -> remediation.Ledger:
    records = []
    for item in raw.get("actionTimes") or []:
        when = _epoch(item.get("time"))
        try:
            action = Action(item.get("action"))
        except ValueError:
            continue
        if when is not None:
            records.append(remediation.Record(action, when, str(item.get("result") or "")))
    original = raw.get("originalPoolSize")
    return remediation.Ledger(
        tuple(sorted(records, key=lambda r: r.time)),
        original if isinstance(original, int) else None,
    )


def _iso(epoch: float) -> str:
    return timestamp(datetime.fromtimestamp(epoch, UTC))


def _epoch(value: object) -> float | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()
    except ValueError:
        return None
