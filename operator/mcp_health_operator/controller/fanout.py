"""Probing each ready endpoint of a Service (``spec.target.perEndpoint``): the I/O side.

One ``Prober`` per endpoint, all probed concurrently in one round; each
endpoint judged on its own history by ``judge``; what that makes of the
monitor is ``endpoints.combine`` (pure). Endpoint addresses are checked
like any other destination (``targets``): a slice can be written by hand,
so an endpoint at a metadata, link-local or API-server address is listed
but never probed.

The endpoints are re-listed (one ``list`` of the Service's EndpointSlices by
label) when the operator's one shared EndpointSlice watch sees the Service's
slices change (``relist_soon``), at once after a pod was deleted, and at
least every ``Config.endpoints_refresh_s`` seconds in case a change was
missed in a watch gap.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from mcp_health_operator.core import endpoints, judge, remediation, targets
from mcp_health_operator.core.conditions import timestamp
from mcp_health_operator.core.config import Config
from mcp_health_operator.core.endpoints import Endpoint, EndpointVerdict
from mcp_health_operator.kube import resolver
from mcp_health_operator.kube.api import Kube
from mcp_health_operator.probing import probe

log = logging.getLogger(__name__)


@dataclass(slots=True)
class _State:
    endpoint: Endpoint
    prober: probe.Prober | None
    refused: str | None = None
    history: judge.History = field(default_factory=judge.History)
    unhealthy_since: float | None = None
    probed_at: str | None = None
    result: probe.ProbeResult | None = None


@dataclass(frozen=True, slots=True)
class Round:
    """One probe round: every endpoint's verdict, and the health each had before it."""

    results: list[EndpointVerdict]
    previous: dict[tuple[str, int], judge.Health]
    probed_at: dict[tuple[str, int], str]
    results_by_key: dict[tuple[str, int], probe.ProbeResult]


class EndpointGroup:
    def __init__(
        self,
        *,
        kube: Kube,
        config: Config,
        namespace: str,
        service: str,
        port_name: str,
        template: targets.Target,
        path: str | None,
        scheme: str,
        timeout: float,
        previous: Iterable[Mapping[str, Any]] = (),
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.kube = kube
        self.config = config
        self.namespace = namespace
        self.service = service
        self.port_name = port_name
        self.template = template
        self.path = path
        self.scheme = scheme
        self.timeout = timeout
        self.clock = clock
        self.states: dict[tuple[str, int], _State] = {}
        self._listed_at: float | None = None
        self._relist = False
        self._api_ips: list[str] | None = None
        # What status said about the endpoints before an operator restart:
        # their verdicts carry over (no repeated Events, no reset counts).
        self._carried: dict[tuple[str, int], judge.History] = {}
        for entry in previous:
            try:
                key = (str(entry["address"]), int(entry["port"]))
                health = judge.Health(str(entry.get("health")))
            except (KeyError, TypeError, ValueError):
                continue
            failures = entry.get("consecutiveFailures")
            self._carried[key] = judge.History(
                health, failures if isinstance(failures, int) else 0, 0
            )

    # -- discovery -------------------------------------------------------------

    async def refresh(self) -> None:
        """Re-list the endpoints if the last list is older than the refresh period."""
        now = asyncio.get_running_loop().time()
        due = (
            self._relist
            or self._listed_at is None
            or now - self._listed_at >= self.config.endpoints_refresh_s
        )
        if not due:
            return
        try:
            slices = await self.kube.endpoint_slices(self.namespace, self.service)
        except Exception as exc:  # the API server may be away: probe what we know
            log.warning("listing endpoints of %s/%s failed: %s", self.namespace, self.service, exc)
            return
        self._listed_at, self._relist = now, False
        await self._update(endpoints.from_slices(slices, self.port_name))

    def relist_soon(self) -> None:
        self._relist = True

    async def _update(self, found: list[Endpoint]) -> None:
        wanted = {e.key: e for e in found}
        for key in [k for k in self.states if k not in wanted]:
            gone = self.states.pop(key)
            if gone.prober is not None:
                await gone.prober.aclose()
        for key, endpoint in wanted.items():
            state = self.states.get(key)
            if state is not None and state.endpoint == endpoint:
                continue
            if state is not None:  # same address, another pod: start over
                if state.prober is not None:
                    await state.prober.aclose()
                history = judge.History()
            else:
                history = self._carried.pop(key, judge.History())
            refused = await self._refusal(endpoint)
            prober = None if refused else self._prober(endpoint)
            self.states[key] = _State(endpoint, prober, refused, history)

    async def _refusal(self, endpoint: Endpoint) -> str | None:
        api = self.config.api_server
        if api is not None and self._api_ips is None:
            self._api_ips = await resolver.addresses(api[0])
        reason = targets.refusal(
            host=endpoint.address,
            port=endpoint.port,
            resolved=[],
            api_server=api,
            api_server_ips=self._api_ips or [],
            cluster_domain=self.config.cluster_domain,
        )
        return None if reason is None else f"{reason}; the operator never probes it"

    def _prober(self, endpoint: Endpoint) -> probe.Prober:
        url = f"{self.scheme}://{endpoint.authority}"
        if self.path:
            url += "/" + self.path.lstrip("/")
        return probe.Prober(
            replace(self.template, url=url),
            timeout=self.timeout,
            max_bytes=self.config.max_document_bytes,
            rehandshake_after=self.config.rehandshake_s,
        )

    # -- probing ---------------------------------------------------------------

    async def probe_round(
        self,
        thresholds: judge.Thresholds,
        *,
        failure_threshold: int,
        success_threshold: int,
    ) -> Round | None:
        """Every endpoint probed and judged; None until the endpoints could be listed once
        (an API server that is away must not read as a Service without endpoints)."""
        await self.refresh()
        if self._listed_at is None:
            return None
        states = list(self.states.values())
        results = await asyncio.gather(*(self._probe(s) for s in states))
        now = self.clock()
        stamp = timestamp(datetime.now(UTC))
        out, previous, probed_at, raw = [], {}, {}, {}
        for state, result in zip(states, results, strict=True):
            key = state.endpoint.key
            previous[key] = state.history.health
            if result is None:  # refused: never probed, never judged
                verdict = endpoints.refused(state.refused or "refused")
                obs = judge.Observation("Refused", 0.0, None, state.refused or "")
            else:
                obs = result.observation()
                verdict = judge.judge(
                    obs,
                    thresholds,
                    state.history,
                    failure_threshold=failure_threshold,
                    success_threshold=success_threshold,
                )
                state.history = verdict.history()
                state.result = result
                state.probed_at = stamp
                raw[key] = result
            if verdict.health is judge.Health.UNHEALTHY:
                state.unhealthy_since = state.unhealthy_since or now
            else:
                state.unhealthy_since = None
            if state.probed_at is not None:
                probed_at[key] = state.probed_at
            out.append(EndpointVerdict(state.endpoint, verdict, obs, state.refused))
        return Round(out, previous, probed_at, raw)

    async def _probe(self, state: _State) -> probe.ProbeResult | None:
        if state.prober is None:
            return None
        return await state.prober.probe()

    def prober(self, endpoint: Endpoint | None) -> probe.Prober | None:
        state = self.states.get(endpoint.key) if endpoint is not None else None
        return state.prober if state is not None else None

    # -- remediation -----------------------------------------------------------

    def pods(self, namespace: str) -> tuple[remediation.PodSignal, ...]:
        """Every endpoint's pod that remediation may touch: in ``namespace`` only."""
        out = []
        for state in self.states.values():
            ep = state.endpoint
            if ep.pod is None or (ep.pod_namespace or self.namespace) != namespace:
                continue
            out.append(remediation.PodSignal(ep.pod, ep.pod_uid, state.unhealthy_since))
        return tuple(out)

    def pod_deleted(self, pod: str) -> None:
        """The pod is going: its Unhealthy spell starts over, and the list is refreshed soon."""
        for state in self.states.values():
            if state.endpoint.pod == pod:
                state.unhealthy_since = None
        self.relist_soon()

    async def aclose(self) -> None:
        states, self.states = list(self.states.values()), {}
        for state in states:
            if state.prober is not None:
                await state.prober.aclose()
