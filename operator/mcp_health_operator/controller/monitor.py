"""One monitor's probing loop: probe → judge → metrics → status (on budget) → Events.

The API calls (status, Events, remediation) are sent beside the probing by
the monitor's ``outbox``: the probe loop never waits on the API server.

A per-endpoint monitor (``spec.target.perEndpoint``) probes each ready
endpoint of its Service in one round (``fanout``), judges each, and takes
the monitor's verdict by policy (``endpoints.combine``); the rest of the
sequence is the same.

The decisions are the pure modules' (``judge``, ``status``, ``events``); the
I/O is ``probe`` and ``kube``. This module only sequences them on a clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from mcp_health_operator.controller import fanout, outbox
from mcp_health_operator.controller.metrics import EndpointFigures, MonitorFigures
from mcp_health_operator.controller.remediator import Remediator
from mcp_health_operator.core import endpoints, events, judge, remediation, status, targets
from mcp_health_operator.core import spec as specs
from mcp_health_operator.core.config import Config
from mcp_health_operator.kube.api import Kube, NotFound, ObjectRef
from mcp_health_operator.probing import probe

log = logging.getLogger(__name__)

MAX_UNPOSTED_EVENTS = 50


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
            status=dict(body.get("status") or {}),
            annotations=dict(meta.get("annotations") or {}),
        )


class Refused(Exception):
    """The operator will not probe this target; ``reason`` goes to the conditions."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


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
    ) -> None:
        self.obj = obj
        self.on_gone = on_gone
        self.kube = kube
        self.config = config
        self.aggregator = aggregator
        self.figures = MonitorFigures(obj.ref.namespace, obj.ref.name, "")
        self.budget = status.WriteBudget(config.heartbeat_s)
        self._prober: probe.Prober | None = None
        self._group: fanout.EndpointGroup | None = None
        self._spec: specs.MonitorSpec | None = None
        self._configured_generation: int | None = None
        # The Services and Secrets the spec names: a change to one reconfigures
        # this monitor (see Fleet.dependency_changed).
        self.deps: frozenset[tuple[str, str, str]] = frozenset()
        self._refusal: Refused | None = None
        self._conditions: list[dict[str, Any]] = list(obj.status.get("conditions") or [])
        # Carry the verdict over an operator restart: no repeated transition
        # Events, no reset of the failure count.
        self.history = judge.History(
            health=_health(obj.status.get("health")),
            consecutive_failures=int(obj.status.get("consecutiveFailures") or 0),
            consecutive_successes=int(obj.status.get("consecutiveSuccesses") or 0),
        )
        reachable = next(
            (c for c in self._conditions if c.get("type") == "Reachable"),
            None,
        )
        self.reachable: bool | None = (
            None if reachable is None else reachable.get("status") == "True"
        )
        self.remediator = Remediator(
            kube=kube,
            config=config,
            figures=self.figures,
            fleet_state=fleet_state or (lambda: remediation.FleetState(1, 0, 0)),
            status=obj.status,
        )
        # Events the API server refused or never saw (an outage), by Event
        # name, to post again before the next ones: the aggregator has
        # already counted them, so a name holds only its latest count.
        self._unposted: dict[str, tuple[events.EventSpec, events.Post, datetime]] = {}
        self.outbox: outbox.Outbox[_Status] = outbox.Outbox(
            write=self._send_status, post=self._post_unposted, label=_key(obj.ref)
        )
        self._wake = asyncio.Event()
        self._next_delay: float | None = None
        self.probes = 0

    # -- lifecycle ------------------------------------------------------------

    def update(self, obj: MonitorObject) -> None:
        """A new version of the object; a spec change takes effect at the next probe."""
        self.obj = obj

    def requeue(self) -> None:
        """A Service or Secret the monitor uses changed: read the target again, now."""
        self._configured_generation = None
        self._wake.set()

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
        self._wake.clear()
        # asyncio.timeout, not wait_for: no task per sleep.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._wake.wait()

    def _spec_generation(self) -> int:
        """The generation of the spec in use: a newer object may have arrived
        mid-probe, but this verdict was reached under the spec configured."""
        if self._configured_generation is not None:
            return self._configured_generation
        return self.obj.generation

    def _interval(self) -> float:
        return self._spec.probe.interval_s if self._spec is not None else 5.0

    # -- one probe ------------------------------------------------------------

    async def probe_once(self) -> None:
        if self.obj.generation != self._configured_generation:
            await self._configure()
        if self._refusal is not None or self._spec is None:
            return
        if self._group is not None:
            await self._probe_endpoints(self._spec, self._group)
            return
        if self._prober is None:
            return
        spec = self._spec
        result = await self._prober.probe()
        self.probes += 1
        obs = judge.Observation(
            outcome=result.outcome.value,
            latency_ms=result.latency_ms,
            document=result.document,
            message=result.message,
        )
        thresholds = spec.thresholds.to_thresholds()
        verdict = judge.judge(
            obs,
            thresholds,
            self.history,
            failure_threshold=spec.probe.failure_threshold,
            success_threshold=spec.probe.success_threshold,
        )
        if result.retry_after_s is not None:
            # 429: honour Retry-After rather than hammering the server.
            self._next_delay = max(self._interval(), result.retry_after_s)
        await self._conclude(spec, obs, verdict, thresholds, result=result, prober=self._prober)

    async def _probe_endpoints(self, spec: specs.MonitorSpec, group: fanout.EndpointGroup) -> None:
        policy = spec.target.endpoint_policy
        assert policy is not None
        thresholds = spec.thresholds.to_thresholds()
        round_ = await group.probe_round(
            thresholds,
            failure_threshold=spec.probe.failure_threshold,
            success_threshold=spec.probe.success_threshold,
        )
        if round_ is None:
            return
        self.probes += 1
        verdict, obs, shown = endpoints.combine(round_.results, policy, self.history)
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
        extra = {
            "endpoints": endpoints.status_entries(round_.results, round_.probed_at),
            "endpointSummary": endpoints.summary(round_.results, policy),
        }
        endpoint_events = [
            e
            for r in round_.results
            for e in endpoints.transitions(round_.previous[r.endpoint.key], r)
        ]
        await self._conclude(
            spec,
            obs,
            verdict,
            thresholds,
            result=round_.results_by_key.get(shown.endpoint.key) if shown else None,
            prober=group.prober(shown.endpoint if shown else None),
            extra=extra,
            more_events=endpoint_events,
            pods=group.pods(self.obj.ref.namespace),
            group=group,
        )

    async def _conclude(
        self,
        spec: specs.MonitorSpec,
        obs: judge.Observation,
        verdict: judge.Verdict,
        thresholds: judge.Thresholds,
        *,
        result: probe.ProbeResult | None,
        prober: probe.Prober | None,
        extra: dict[str, Any] | None = None,
        more_events: list[events.EventSpec] | None = None,
        pods: tuple[remediation.PodSignal, ...] = (),
        group: fanout.EndpointGroup | None = None,
    ) -> None:
        """Metrics, status (on budget), Events and remediation for one verdict.

        Decided here, sent by the outbox: nothing in this method waits on the API server.
        """
        self.figures.observe(obs, verdict)
        pool = obs.document.connection_pool if obs.document else None
        self.remediator.observe(verdict, pool.pool_utilization if pool else None, thresholds)

        transitions = events.transitions(self.history.health, self.reachable, verdict)
        identity = None
        if result is not None and result.server is not None:
            identity = status.Identity(
                result.server.name,
                result.server.version,
                result.server.protocol_version,
                result.server.transport.value,
            )
        fields = dict(extra or {})
        fields.update(self.remediator.status_fields(spec.remediation, ledger=False))
        key = status.key(
            verdict=verdict,
            obs=obs,
            thresholds=thresholds,
            identity=identity,
            generation=self._spec_generation(),
            extra=fields,
        )
        self.history = verdict.history()
        self.reachable = verdict.reachable
        # Nearly every probe writes nothing: build the status only when it may be written.
        new_status: dict[str, Any] | None = None
        if self.budget.due(key, asyncio.get_running_loop().time()):
            new_status = status.build(
                verdict=verdict,
                obs=obs,
                thresholds=thresholds,
                identity=identity,
                target=self.figures.target,
                endpoint=prober.url if prober is not None else "",
                generation=self._spec_generation(),
                previous_conditions=self._conditions,
                now=datetime.now(UTC),
            )
            new_status.update(fields)
        for spec_event in [*transitions, *(more_events or [])]:
            self._queue_event(spec_event)
        step: outbox.Step | None = None
        if spec.remediation is not None:
            step = functools.partial(
                self._remediate,
                spec.remediation,
                self.obj,
                verdict.health,
                pool.total_connections if pool else None,
                prober,
                pods,
                group,
            )
        self.outbox.submit(
            status=_Status(new_status, thresholds, spec.remediation)
            if new_status is not None
            else None,
            events=bool(self._unposted),
            step=step,
        )

    async def _remediate(
        self,
        spec: specs.RemediationSpec,
        obj: MonitorObject,
        health: judge.Health,
        pool_size: int | None,
        prober: probe.Prober | None,
        pods: tuple[remediation.PodSignal, ...],
        group: fanout.EndpointGroup | None,
    ) -> None:
        """The remediation step of the latest verdict (run by the outbox)."""
        self.remediator.acted = None
        await self.remediator.step(
            spec=spec,
            ref=obj.ref,
            annotations=obj.annotations,
            health=health,
            pool_size=pool_size,
            prober=prober,
            write=self._patch_now,
            post=self._event,
            pods=pods,
        )
        acted, self.remediator.acted = self.remediator.acted, None
        if (
            group is not None
            and group is self._group  # not a group a new spec has replaced
            and acted is not None
            and acted.action is remediation.Action.DELETE_POD
            and acted.pod
        ):
            group.pod_deleted(acted.pod)

    async def _send_status(self, report: _Status) -> None:
        if report.remediation is not None:
            # Only what this replica's probing decides (a hold) goes with an
            # ordinary status write; the ledger itself is written by the
            # remediation steps alone (the claim is a compare-and-swap), so a
            # merge patch carrying a stale copy cannot erase another replica's
            # newer record.
            report.status["remediation"] = self.remediator.hold_status()
        await self._write(report.status, report.thresholds)

    async def _patch_now(self, fields: dict[str, Any]) -> bool:
        """A write that must land now (the remediation ledger); False if it did not."""
        try:
            return await self.kube.patch_status(self.obj.ref, fields)
        except Exception as exc:
            log.warning("status write for %s failed: %s", _key(self.obj.ref), exc)
            return False

    async def _write(self, new_status: dict[str, Any], thresholds: judge.Thresholds) -> None:
        key = status.significant(new_status, thresholds)
        now = asyncio.get_running_loop().time()
        if not self.budget.due(key, now):
            return
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
        self.budget.written(key, now)
        self._conditions = new_status["conditions"]

    async def _event(self, spec_event: events.EventSpec) -> None:
        """An Event of remediation: a record of what was done or held, never dropped."""
        self._queue_event(spec_event, spam_exempt=True)
        await self._post_unposted()

    def _queue_event(self, spec_event: events.EventSpec, *, spam_exempt: bool = False) -> None:
        """Count the Event now (the aggregator's clock); it is posted with the ones waiting.

        Health transitions over the monitor's Event budget (the spam filter) are
        dropped and counted; remediation's Events are the audit trail of its
        actions, so they pass whatever the budget says.
        """
        ref = self.obj.ref
        post = self.aggregator.post(
            uid=ref.uid,
            object_name=ref.name,
            event=spec_event,
            now=asyncio.get_running_loop().time(),
        )
        if post.dropped and not spam_exempt:  # over this monitor's Event budget
            self.figures.count_event_dropped(spec_event.reason)
            return
        self._unposted.pop(post.name, None)
        self._unposted[post.name] = (spec_event, post, datetime.now(UTC))
        while len(self._unposted) > MAX_UNPOSTED_EVENTS:  # a long outage: keep the newest
            del self._unposted[next(iter(self._unposted))]

    async def _post_unposted(self) -> None:
        """Post the Events not yet posted, oldest first; stop at the first failure."""
        ref = self.obj.ref
        for name, (spec_event, post, when) in list(self._unposted.items()):
            try:
                await self.kube.post_event(ref, spec_event, post, when=when)
            except Exception as exc:
                log.warning(
                    "event %s for %s failed (%d waiting): %s",
                    spec_event.reason,
                    _key(ref),
                    len(self._unposted),
                    exc,
                )
                return
            del self._unposted[name]

    # -- configuration --------------------------------------------------------

    async def _configure(self) -> None:
        """(Re)read the spec: target, thresholds, timings. Runs on each generation change."""
        obj = self.obj
        self._configured_generation = obj.generation
        self.outbox.clear()  # reports of the old spec: the new one's follow
        await self.close()
        self._refusal = None
        self.figures.endpoints = ()
        target: probe.Target | None = None
        try:
            self._spec = specs.parse(obj.spec)
            self.deps = _dependencies(self._spec, obj.ref.namespace)
            if self._spec.target.endpoint_policy is not None:
                self._group = await self._endpoint_group(self._spec)
                display = _display(self._spec)
            else:
                target, display = await self._target(self._spec)
        except specs.SpecError as exc:
            await self._refuse(Refused("InvalidSpec", str(exc)), display=self.figures.target)
            return
        except Refused as refusal:
            await self._refuse(refusal, display=_display(self._spec))
            return
        self.figures.target = display
        if target is not None:
            self._prober = probe.Prober(
                target,
                timeout=self._spec.probe.timeout_s,
                max_bytes=self.config.max_document_bytes,
                rehandshake_after=self.config.rehandshake_s,
            )
        self.budget.forget()  # a new generation must reach the status at once

    async def _target(self, spec: specs.MonitorSpec) -> tuple[probe.Target, str]:
        t = spec.target
        ns = self.obj.ref.namespace
        transport = probe.Transport(t.transport)
        if t.url is not None:
            if not self.config.url_allowed(t.url):
                raise Refused(
                    "TargetNotAllowed",
                    f"URL targets are not allowed by the operator's configuration "
                    f"(spec.target.url {probe.endpoint(t.url, transport)})",
                )
            url = t.url
        else:
            assert t.service is not None
            svc_ns = self._service_namespace(t.service)
            try:
                port = await self.kube.service_port(svc_ns, t.service.name, t.service.port)
            except NotFound as exc:
                raise Refused("ServiceNotFound", str(exc)) from None
            host = f"{t.service.name}.{svc_ns}.svc.{self.config.cluster_domain}"
            authority = self._resolve(f"{host}:{port}", short=f"{t.service.name}.{svc_ns}.svc")
            url = f"{t.scheme}://{authority}"
        if t.path:
            url = url.rstrip("/") + "/" + t.path.lstrip("/")
        await self._guard(url, service=t.service is not None)
        headers, ca_data = await self._credentials(spec, ns)
        target = probe.Target(
            url=url,
            transport=transport,
            resource_uri=t.resource_uri,
            headers=headers,
            ca_data=ca_data,
            insecure_skip_verify=bool(t.tls and t.tls.insecure_skip_verify),
        )
        return target, _display(spec)

    def _service_namespace(self, service: specs.ServiceRef) -> str:
        ns = self.obj.ref.namespace
        svc_ns = service.namespace or ns
        if svc_ns != ns and not self.config.allow_cross_namespace:
            raise Refused(
                "TargetNotAllowed",
                f"spec.target.service.namespace {svc_ns!r} differs from the monitor's "
                f"namespace {ns!r}; the operator allows only its own namespace",
            )
        return svc_ns

    async def _endpoint_group(self, spec: specs.MonitorSpec) -> fanout.EndpointGroup:
        """Probing each ready endpoint of the Service (each address is checked as it is found)."""
        t = spec.target
        assert t.service is not None
        svc_ns = self._service_namespace(t.service)
        try:
            _, port_name = await self.kube.service_port_and_name(
                svc_ns, t.service.name, t.service.port
            )
        except NotFound as exc:
            raise Refused("ServiceNotFound", str(exc)) from None
        headers, ca_data = await self._credentials(spec, self.obj.ref.namespace)
        template = probe.Target(
            url="",
            transport=probe.Transport(t.transport),
            resource_uri=t.resource_uri,
            headers=headers,
            ca_data=ca_data,
            insecure_skip_verify=bool(t.tls and t.tls.insecure_skip_verify),
        )
        return fanout.EndpointGroup(
            kube=self.kube,
            config=self.config,
            namespace=svc_ns,
            service=t.service.name,
            port_name=port_name,
            template=template,
            path=t.path,
            scheme=t.scheme,
            timeout=spec.probe.timeout_s,
            previous=self.obj.status.get("endpoints") or [],
        )

    async def _guard(self, url: str, *, service: bool) -> None:
        """Refuse metadata, link-local and API-server destinations, whatever the config says."""
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port or (443 if parts.scheme == "https" else 80)
        resolved: list[str] = []
        if not service:
            # Service names resolve only inside the cluster; URL hosts must
            # resolve here, and every address they resolve to is checked.
            resolved = await probe.addresses(host)
        api_ips: list[str] = []
        if self.config.api_server is not None:
            api_ips = await probe.addresses(self.config.api_server[0])
        reason = targets.refusal(
            host=host,
            port=port,
            resolved=resolved,
            api_server=self.config.api_server,
            api_server_ips=api_ips,
            cluster_domain=self.config.cluster_domain,
        )
        if reason is not None:
            raise Refused("TargetNotAllowed", f"{reason}; the operator never probes it")

    def _resolve(self, authority: str, *, short: str) -> str:
        port = authority.rsplit(":", 1)[1]
        return (
            self.config.resolve.get(authority)
            or self.config.resolve.get(f"{short}:{port}")
            or authority
        )

    async def _credentials(
        self, spec: specs.MonitorSpec, ns: str
    ) -> tuple[dict[str, str], str | None]:
        headers: dict[str, str] = {}
        ca_data: str | None = None
        auth, tls = spec.target.auth, spec.target.tls
        try:
            if auth is not None and auth.headers_secret_ref is not None:
                headers.update(await self.kube.secret_data(ns, auth.headers_secret_ref.name))
            if auth is not None and auth.bearer_token_secret_ref is not None:
                token = await self._secret_key(ns, auth.bearer_token_secret_ref)
                headers["Authorization"] = f"Bearer {token.strip()}"
            if tls is not None and tls.ca_secret_ref is not None:
                ca_data = await self._secret_key(ns, tls.ca_secret_ref)
        except NotFound as exc:
            raise Refused("SecretNotFound", str(exc)) from None
        return headers, ca_data

    async def _secret_key(self, ns: str, ref: specs.SecretKeyRef) -> str:
        data = await self.kube.secret_data(ns, ref.name)
        if ref.key not in data:
            raise Refused("SecretKeyNotFound", f"Secret {ns}/{ref.name} has no key {ref.key}")
        return data[ref.key]

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
            previous_conditions=self._conditions,
            now=datetime.now(UTC),
        )
        self.budget.forget()
        if first:
            self._queue_event(events.EventSpec(events.WARNING, "TargetRefused", refusal.message))
        self.outbox.submit(
            status=_Status(new_status, judge.Thresholds(), None), events=True, step=None
        )


@dataclass(frozen=True)
class _Status:
    """A status built by the probe loop, for the outbox to write."""

    status: dict[str, Any]
    thresholds: judge.Thresholds
    remediation: specs.RemediationSpec | None


def _display(spec: specs.MonitorSpec | None) -> str:
    if spec is None:
        return ""
    t = spec.target
    if t.service is not None:
        ns = f"{t.service.namespace}/" if t.service.namespace else ""
        return f"svc/{ns}{t.service.name}:{t.service.port}"
    return t.url or ""


def _health(value: object) -> judge.Health:
    try:
        return judge.Health(str(value))
    except ValueError:
        return judge.Health.UNKNOWN


def _key(ref: ObjectRef) -> str:
    return f"{ref.namespace}/{ref.name}"


def _dependencies(spec: specs.MonitorSpec, namespace: str) -> frozenset[tuple[str, str, str]]:
    """(kind, namespace, name) of each Service and Secret the spec names."""
    deps: set[tuple[str, str, str]] = set()
    t = spec.target
    if t.service is not None:
        deps.add(("Service", t.service.namespace or namespace, t.service.name))
    refs = []
    if t.auth is not None:
        refs += [t.auth.headers_secret_ref, t.auth.bearer_token_secret_ref]
    if t.tls is not None:
        refs.append(t.tls.ca_secret_ref)
    deps.update(("Secret", namespace, ref.name) for ref in refs if ref is not None)
    return frozenset(deps)
