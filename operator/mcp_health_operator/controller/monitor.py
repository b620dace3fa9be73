"""One monitor's loop: probe → judge → conclude (pure) → outbox.

The loop probes (one address, or each ready endpoint of a Service in one
round, ``fanout``), takes the verdict from the core's judge, and hands it to
``conclude``, which returns one report: the status (when the write budget
says it is due), the Events, what remediation decides from. The outbox sends the
report beside the probing: the loop never waits on the API server.

What to probe comes from ``kube.resolver``, read again when the spec changes
or the fleet's shared watches see a Service, Secret or EndpointSlice the
monitor depends on change (``requeue``).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from mcp_health_operator.controller import fanout, outbox
from mcp_health_operator.controller.metrics import EndpointFigures, MonitorFigures
from mcp_health_operator.controller.remediator import Remediator
from mcp_health_operator.controller.spool import EventSpool
from mcp_health_operator.core import endpoints, events, judge, remediation, status
from mcp_health_operator.core import spec as specs
from mcp_health_operator.core.conclude import Evidence, Memory, Report, StepInput, conclude
from mcp_health_operator.core.config import Config
from mcp_health_operator.core.targets import Refused
from mcp_health_operator.kube import resolver
from mcp_health_operator.kube.api import Kube, ObjectRef
from mcp_health_operator.probing import probe, stalls

log = logging.getLogger(__name__)


# What a worker reads back of its monitor's status: its memory over an
# operator restart, the remediation ledger, the endpoints, which replica
# probes it. The rest (checks, server, pool, messages: ~5 KB a monitor as
# decoded JSON) is the operator's own writing, not kept.
STATUS_READ = frozenset(
    {
        "health",
        "consecutiveFailures",
        "consecutiveSuccesses",
        "conditions",
        "remediation",
        "unhealthySince",
        "probedBy",
        "endpoints",
    }
)


@dataclass(frozen=True)
class MonitorObject:
    """What the watch delivered about one MCPHealthMonitor."""

    ref: ObjectRef
    generation: int
    spec: dict[str, Any]
    status: dict[str, Any] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_body(cls, body: Any) -> MonitorObject:
        meta = body.get("metadata", {})
        return cls(
            ref=ObjectRef(meta.get("namespace", ""), meta.get("name", ""), meta.get("uid", "")),
            generation=int(meta.get("generation") or 0),
            spec=dict(body.get("spec") or {}),
            status={k: v for k, v in (body.get("status") or {}).items() if k in STATUS_READ},
            annotations=dict(meta.get("annotations") or {}),
        )


@dataclass(frozen=True, slots=True)
class _Probed:
    """One probe's evidence, and what the remediation step acts through."""

    evidence: Evidence
    prober: probe.Prober | None
    pods: tuple[remediation.PodSignal, ...] = ()
    group: fanout.EndpointGroup | None = None


class MonitorWorker:
    def __init__(
        self,
        obj: MonitorObject,
        *,
        kube: Kube,
        config: Config,
        aggregator: events.Aggregator,
        fleet_state: Callable[[], remediation.FleetState] | None = None,
        on_gone: Callable[[MonitorObject], None] | None = None,
        on_deps: Callable[[MonitorWorker, frozenset[resolver.Dependency]], None] | None = None,
    ) -> None:
        self.obj = obj
        self.on_gone = on_gone
        self.on_deps = on_deps
        self.kube = kube
        self.config = config
        self.resolver = resolver.Resolver(kube, config)
        self.figures = MonitorFigures(obj.ref.namespace, obj.ref.name, "")
        self.budget = status.WriteBudget(config.heartbeat_s)
        self._prober: probe.Prober | None = None
        self._group: fanout.EndpointGroup | None = None
        self._spec: specs.MonitorSpec | None = None
        self._interval_s = 5.0  # the spec's, parsed once per generation
        self._configured_generation: int | None = None
        # The Services, Secrets and EndpointSlices the spec reads: a change to
        # one requeues this monitor (see Fleet.dependency_changed).
        self.deps: frozenset[resolver.Dependency] = frozenset()
        self._refusal: Refused | None = None
        # Carry the verdict over an operator restart: no repeated transition
        # Events, no reset of the failure count.
        self.memory = Memory.from_status(obj.status)
        self.remediator = Remediator(
            kube=kube,
            config=config,
            figures=self.figures,
            fleet_state=fleet_state or (lambda: remediation.FleetState(1, 0, 0)),
            status=obj.status,
        )
        self.spool = EventSpool(kube=kube, aggregator=aggregator, figures=self.figures, ref=obj.ref)
        self.outbox: outbox.Outbox[_Status] = outbox.Outbox(
            write=self._send_status, post=self.spool.post, label=_key(obj.ref)
        )
        # The sleep between probes, which a requeue ends early.
        self._waiter: asyncio.Future[None] | None = None
        self._next_delay: float | None = None
        self.probes = 0
        # The server identity of the session last probed, as the status names it.
        self._server: probe.ServerIdentity | None = None
        self._identity: status.Identity | None = None

    @property
    def history(self) -> judge.History:
        return self.memory.history

    @property
    def refused(self) -> bool:
        """The target was refused (not found, not allowed): nothing is probed."""
        return self._refusal is not None

    # -- lifecycle ------------------------------------------------------------

    def update(self, obj: MonitorObject) -> None:
        """A new version of the object; a spec change takes effect at the next probe."""
        self.obj = obj
        written_by = obj.status.get("probedBy")
        if written_by is not None and written_by != self.kube.instance:
            # Another replica's write landed after ours (a hand-over seen at
            # different moments): the status must name its owner again, so
            # the next probe writes whatever the budget says.
            self.budget.forget()

    def requeue(self, kind: str = "Service") -> None:
        """A dependency changed: new endpoints are listed again; else the target is read again."""
        if kind == "EndpointSlice" and self._group is not None:
            self._group.relist_soon()
        else:
            self._configured_generation = None
        _wake(self._waiter)

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            await self._configure()
            interval = self._interval()
            # Jittered start: a thousand monitors must not fire at once.
            await self._sleep(random.uniform(0, interval))
            while True:
                started = loop.time()
                await self.probe_once()
                delay = self._next_delay if self._next_delay is not None else self._interval()
                self._next_delay = None
                await self._sleep(max(0.0, started + delay - loop.time()))
        finally:
            await self.outbox.aclose()
            await self.close()

    async def close(self) -> None:
        if self._prober is not None:
            prober, self._prober = self._prober, None
            await prober.aclose()
        if self._group is not None:
            group, self._group = self._group, None
            await group.aclose()

    async def _sleep(self, seconds: float) -> None:
        # A future woken on the coarse clock: no task per sleep (wait_for), no
        # cancellation raised through the loop at each timeout
        # (asyncio.timeout), no loop timer of its own -- at thousands of
        # monitors each costs. A requeue wakes it early; the tick finds it done.
        loop = asyncio.get_running_loop()
        waiter = self._waiter = loop.create_future()
        stalls.clock().at_tick(loop.time() + seconds, functools.partial(_wake, waiter))
        try:
            await waiter
        finally:
            self._waiter = None

    def _spec_generation(self) -> int:
        """The generation of the spec in use: a newer object may have arrived
        mid-probe, but this verdict was reached under the spec configured."""
        if self._configured_generation is not None:
            return self._configured_generation
        return self.obj.generation

    def _interval(self) -> float:
        return self._interval_s

    # -- one probe: probe → judge → conclude → outbox ---------------------------

    async def probe_once(self) -> None:
        if self.obj.generation != self._configured_generation:
            await self._configure()
        spec = self._spec
        if self._refusal is not None or spec is None:
            return
        thresholds = spec.thresholds.to_thresholds()
        if self._group is not None:
            probed = await self._probe_endpoints(spec, self._group, thresholds)
        elif self._prober is not None:
            probed = await self._probe_one(spec, self._prober, thresholds)
        else:
            return
        if probed is None:
            return
        self.probes += 1
        ev = probed.evidence
        self.figures.observe(ev.obs, ev.verdict)
        pool = ev.obs.document.connection_pool if ev.obs.document else None
        self.remediator.observe(ev.verdict, pool.pool_utilization if pool else None, thresholds)
        report = conclude(
            ev,
            self.memory,
            thresholds=thresholds,
            remediation=spec.remediation,
            fields=self.remediator.status_fields(spec.remediation, ledger=False),
            target=self.figures.target,
            generation=self._spec_generation(),
            due=functools.partial(self.budget.due, now=asyncio.get_running_loop().time()),
            now=datetime.now(UTC),
        )
        self._send(report, thresholds, probed)

    async def _probe_one(
        self, spec: specs.MonitorSpec, prober: probe.Prober, thresholds: judge.Thresholds
    ) -> _Probed:
        result = await prober.probe()
        obs = result.observation()
        verdict = judge.judge(
            obs,
            thresholds,
            self.memory.history,
            failure_threshold=spec.probe.failure_threshold,
            success_threshold=spec.probe.success_threshold,
        )
        if result.retry_after_s is not None:
            # 429: honour Retry-After rather than hammering the server.
            self._next_delay = max(self._interval(), result.retry_after_s)
        evidence = Evidence(obs, verdict, self._identity_of(result), endpoint=prober.url)
        return _Probed(evidence, prober)

    def _identity_of(self, result: probe.ProbeResult) -> status.Identity | None:
        """The status's server identity: made again only when the session's changed."""
        if result.server is not self._server:
            self._server, self._identity = result.server, _identity(result)
        return self._identity

    async def _probe_endpoints(
        self, spec: specs.MonitorSpec, group: fanout.EndpointGroup, thresholds: judge.Thresholds
    ) -> _Probed | None:
        policy = spec.target.endpoint_policy
        assert policy is not None
        round_ = await group.probe_round(
            thresholds,
            failure_threshold=spec.probe.failure_threshold,
            success_threshold=spec.probe.success_threshold,
        )
        if round_ is None:
            return None
        verdict, obs, shown = endpoints.combine(round_.results, policy, self.memory.history)
        self.figures.endpoints = tuple(
            EndpointFigures(
                r.endpoint.authority,
                r.endpoint.pod or "",
                r.verdict.health,
                r.obs.latency_ms,
                r.verdict.consecutive_failures,
            )
            for r in round_.results
        )
        prober = group.prober(shown.endpoint if shown else None)
        evidence = Evidence(
            obs,
            verdict,
            _identity(round_.results_by_key.get(shown.endpoint.key) if shown else None),
            endpoint=prober.url if prober is not None else "",
            fields={
                "endpoints": endpoints.status_entries(round_.results, round_.probed_at),
                "endpointSummary": endpoints.summary(round_.results, policy),
            },
            events=tuple(
                e
                for r in round_.results
                for e in endpoints.transitions(round_.previous[r.endpoint.key], r)
            ),
        )
        return _Probed(evidence, prober, group.pods(self.obj.ref.namespace), group)

    def _send(self, report: Report, thresholds: judge.Thresholds, probed: _Probed) -> None:
        """The report to the outbox: nothing here waits on the API server."""
        self.memory = Memory(report.history, report.reachable, self.memory.conditions)
        for event in report.events:
            self.spool.add(event)
        step: outbox.Step | None = None
        if report.step is not None:
            step = functools.partial(self._remediate, report.step, self.obj, probed)
        self.outbox.submit(
            status=_Status(report.status, report.key, report.step is not None)
            if report.status is not None
            else None,
            events=bool(self.spool),
            step=step,
        )

    async def _remediate(self, given: StepInput, obj: MonitorObject, probed: _Probed) -> None:
        """The remediation step of the latest verdict (run by the outbox)."""
        self.remediator.acted = None
        await self.remediator.step(
            spec=given.spec,
            ref=obj.ref,
            annotations=obj.annotations,
            health=given.health,
            pool_size=given.pool_size,
            prober=probed.prober,
            write=self._patch_now,
            post=self._remediation_event,
            pods=probed.pods,
        )
        acted, self.remediator.acted = self.remediator.acted, None
        group = probed.group
        if (
            group is not None
            and group is self._group  # not a group a new spec has replaced
            and acted is not None
            and acted.action is remediation.Action.DELETE_POD
            and acted.pod
        ):
            group.pod_deleted(acted.pod)

    # -- what the outbox sends ---------------------------------------------------

    async def _send_status(self, report: _Status) -> None:
        now = asyncio.get_running_loop().time()
        if report.key and not self.budget.due(report.key, now):
            # Concluded while an equal one was still on its way (a queue at
            # the API server: a cold start of thousands): that one wrote it.
            return
        new_status = report.status
        if report.remediation:
            # Only what this replica's probing decides (a hold) goes with an
            # ordinary status write; the ledger itself is written by the
            # remediation steps alone (the claim is a compare-and-swap), so a
            # merge patch carrying a stale copy cannot erase another replica's
            # newer record.
            new_status["remediation"] = self.remediator.hold_status()
        # Which replica probes this monitor: with several, the one that owns it.
        new_status["probedBy"] = self.kube.instance
        try:
            found = await self.kube.patch_status(self.obj.ref, new_status)
        except Exception as exc:  # the API server may be away; try again next probe
            log.warning("status write for %s failed: %s", _key(self.obj.ref), exc)
            self.budget.forget()
            return
        if not found:  # 404: deleted while no DELETED event reached us
            if self.on_gone is not None:
                self.on_gone(self.obj)
            return
        self.budget.written(report.key, now)
        m = self.memory
        self.memory = Memory(m.history, m.reachable, new_status["conditions"])

    async def _patch_now(self, fields: dict[str, Any]) -> bool:
        """A write that must land now (the remediation ledger); False if it did not."""
        try:
            return await self.kube.patch_status(self.obj.ref, fields)
        except Exception as exc:
            log.warning("status write for %s failed: %s", _key(self.obj.ref), exc)
            return False

    async def _remediation_event(self, event: events.EventSpec) -> None:
        """An Event of remediation: a record of what was done or held, never dropped."""
        self.spool.add(event, spam_exempt=True)
        await self.spool.post()

    # -- configuration --------------------------------------------------------

    async def _configure(self) -> None:
        """(Re)read the spec and resolve its target. Runs on each generation change
        and when a dependency changed."""
        obj = self.obj
        self._configured_generation = obj.generation
        self.outbox.clear()  # reports of the old spec: the new one's follow
        await self.close()
        self._refusal = None
        self.figures.endpoints = ()
        try:
            self._spec = specs.parse(obj.spec)
            self._interval_s = self._spec.probe.interval_s
        except specs.SpecError as exc:
            await self._refuse(Refused("InvalidSpec", str(exc)), display=self.figures.target)
            return
        before, self.deps = self.deps, resolver.dependencies(self._spec, obj.ref.namespace)
        if self.on_deps is not None and before != self.deps:
            self.on_deps(self, before)
        try:
            resolved = await self.resolver.resolve(self._spec, obj.ref.namespace)
        except Refused as refusal:
            await self._refuse(refusal, display=resolver.display(self._spec))
            return
        self.figures.target = resolver.display(self._spec)
        self._prober, self._group = _probing(
            resolved, self._spec, self.config, self.kube, self.obj.status
        )
        self.budget.forget()  # a new generation must reach the status at once

    async def _refuse(self, refusal: Refused, *, display: str) -> None:
        first = self._refusal is None
        self._refusal = refusal
        self.figures.target = display
        self.figures.health = judge.Health.UNKNOWN
        new_status = status.refused_status(
            reason=refusal.reason,
            message=refusal.message,
            target=display,
            generation=self._spec_generation(),
            previous_conditions=self.memory.conditions,
            now=datetime.now(UTC),
        )
        self.budget.forget()
        if first:
            self.spool.add(events.EventSpec(events.WARNING, "TargetRefused", refusal.message))
        self.outbox.submit(status=_Status(new_status, (), False), events=True, step=None)


@dataclass(frozen=True)
class _Status:
    """A status concluded by the probe loop, for the outbox to write."""

    status: dict[str, Any]
    key: tuple[Any, ...]  # the write budget's key of it
    remediation: bool  # the monitor remediates: the hold goes with the write


def _probing(
    resolved: resolver.Single | resolver.PerEndpoint,
    spec: specs.MonitorSpec,
    config: Config,
    kube: Kube,
    previous: dict[str, Any],
) -> tuple[probe.Prober | None, fanout.EndpointGroup | None]:
    """What probes a resolved target: one Prober, or a group of one per endpoint."""
    timeout = spec.probe.timeout_s
    if isinstance(resolved, resolver.Single):
        prober = probe.Prober(
            resolved.target,
            timeout=timeout,
            max_bytes=config.max_document_bytes,
            rehandshake_after=config.rehandshake_s,
        )
        return prober, None
    group = fanout.EndpointGroup(
        kube=kube,
        config=config,
        namespace=resolved.namespace,
        service=resolved.service,
        port_name=resolved.port_name,
        template=resolved.template,
        path=spec.target.path,
        scheme=spec.target.scheme,
        timeout=timeout,
        previous=previous.get("endpoints") or [],
    )
    return None, group


def _identity(result: probe.ProbeResult | None) -> status.Identity | None:
    if result is None or result.server is None:
        return None
    s = result.server
    return status.Identity(s.name, s.version, s.protocol_version, s.transport.value)


def _wake(waiter: asyncio.Future[None] | None) -> None:
    if waiter is not None and not waiter.done():
        waiter.set_result(None)


def _key(ref: ObjectRef) -> str:
    return f"{ref.namespace}/{ref.name}"
