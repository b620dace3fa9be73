"""Per-endpoint probing: which endpoints, and what their verdicts make of the monitor.

Purely computational: no I/O, no kopf, no Kubernetes client, no HTTP. The
EndpointSlices arrive as plain dicts (as the API server serves them); the
endpoints' verdicts come from ``judge``; this module turns them into

* the endpoints to probe (``from_slices``): ready endpoints only, the port
  that carries the Service port (matched by port name, as kube-proxy does);
* the monitor's verdict by policy (``combine``): ``any`` endpoint healthy,
  a ``majority``, or ``all`` of them;
* the status entries, summary and Events of the endpoints.

The policy is a quorum over the endpoints ranked best first: the monitor is
as healthy as its k-th best endpoint, with k = 1 (any), n // 2 + 1
(majority) or n (all). So under ``all`` one Unhealthy endpoint makes the
monitor Unhealthy, under ``any`` one Healthy endpoint keeps it Healthy.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

from mcp_health_operator.core.events import NORMAL, WARNING, EventSpec
from mcp_health_operator.core.judge import (
    Finding,
    Health,
    History,
    Observation,
    Reason,
    Severity,
    Verdict,
)

# At most this many endpoints are listed in status (the worst first); the
# summary counts them all. A status object must stay small.
STATUS_LIMIT = 100
MESSAGE_LIMIT = 256


class Policy(StrEnum):
    ANY = "any"
    MAJORITY = "majority"
    ALL = "all"


# Best first. Unknown (not yet judged, or not probed) is better than
# Unhealthy: it is no evidence of a failure.
_RANK = {Health.HEALTHY: 0, Health.DEGRADED: 1, Health.UNKNOWN: 2, Health.UNHEALTHY: 3}


@dataclass(frozen=True, slots=True, order=True)
class Endpoint:
    """One ready endpoint behind the Service: where to probe, and which pod it is."""

    address: str
    port: int
    pod: str | None = None
    pod_namespace: str | None = None
    pod_uid: str | None = None

    @property
    def key(self) -> tuple[str, int]:
        return (self.address, self.port)

    @property
    def authority(self) -> str:
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"{host}:{self.port}"


@dataclass(frozen=True, slots=True)
class EndpointVerdict:
    """One endpoint after one probe round."""

    endpoint: Endpoint
    verdict: Verdict
    obs: Observation
    # Set when the endpoint was not probed (e.g. a refused address).
    refused: str | None = None


def refused(message: str) -> Verdict:
    """The verdict on an endpoint the operator will not probe: Unknown, and why."""
    finding = Finding(Reason.TARGET_NOT_ALLOWED, Severity.DEGRADED, message)
    return Verdict(Health.UNKNOWN, (finding,), 0, 0, reachable=False, instant=Health.UNKNOWN)


def quorum(policy: Policy, n: int) -> int:
    """How many endpoints must be at least as good as the monitor's verdict."""
    if n <= 0:
        return 0
    if policy is Policy.ANY:
        return 1
    if policy is Policy.MAJORITY:
        return n // 2 + 1
    return n


def aggregate(healths: Sequence[Health], policy: Policy) -> Health:
    """The monitor's health from its endpoints' (no endpoints: Unhealthy)."""
    if not healths:
        return Health.UNHEALTHY
    ranked = sorted(healths, key=_RANK.__getitem__)
    return ranked[quorum(policy, len(ranked)) - 1]


def from_slices(slices: Iterable[Mapping[str, Any]], port_name: str) -> list[Endpoint]:
    """Ready endpoints of a Service's EndpointSlices, for the Service port named ``port_name``.

    An endpoint is ready unless its ``conditions.ready`` is false (nil means
    ready, as the API documents it); terminating endpoints are not ready.
    Slices of FQDN addresses are skipped (they would need a DNS lookup, and
    their address type is deprecated). Duplicates (an address in two
    slices) are listed once.
    """
    seen: dict[tuple[str, int], Endpoint] = {}
    for s in slices:
        if s.get("addressType") not in ("IPv4", "IPv6"):
            continue
        port = _slice_port(s.get("ports") or [], port_name)
        if port is None:
            continue
        for ep in s.get("endpoints") or []:
            conditions = ep.get("conditions") or {}
            if conditions.get("ready") is False:
                continue
            addresses = ep.get("addresses") or []
            if not addresses or not _is_ip(str(addresses[0])):
                continue
            ref = ep.get("targetRef") or {}
            if ref.get("kind") != "Pod" or not ref.get("name"):
                ref = {}
            endpoint = Endpoint(
                # Consumers use the first address; the others are fungible.
                address=str(addresses[0]),
                port=port,
                pod=_str(ref.get("name")),
                pod_namespace=_str(ref.get("namespace")),
                pod_uid=_str(ref.get("uid")),
            )
            seen.setdefault(endpoint.key, endpoint)
    return sorted(seen.values())


def _slice_port(ports: Iterable[Mapping[str, Any]], port_name: str) -> int | None:
    # The slice names its ports after the Service's ports ("" for a single
    # unnamed port); the number is the pod's (the Service's targetPort).
    for p in ports:
        if (p.get("name") or "") == port_name and isinstance(p.get("port"), int):
            return int(p["port"])
    return None


def _str(value: object) -> str | None:
    return str(value) if value else None


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def combine(
    results: Sequence[EndpointVerdict],
    policy: Policy,
    previous: History,
) -> tuple[Verdict, Observation, EndpointVerdict | None]:
    """The monitor's verdict and observation from its endpoints', and the endpoint shown.

    The observation shown for the whole monitor (document, outcome) is the
    worst endpoint's that read a document, else the worst endpoint's; the
    latency is the slowest endpoint's (the round took that long).
    """
    if not results:
        finding = Finding(
            Reason.NO_READY_ENDPOINTS, Severity.UNHEALTHY, "the Service has no ready endpoints"
        )
        verdict = Verdict(
            health=Health.UNHEALTHY,
            findings=(finding,),
            consecutive_failures=previous.consecutive_failures + 1,
            consecutive_successes=0,
            reachable=False,
            instant=Health.UNHEALTHY,
        )
        return verdict, Observation("Unreachable", 0.0, None, finding.message), None

    healths = [r.verdict.health for r in results]
    health = aggregate(healths, policy)
    worst_first = sorted(results, key=_worst_first)
    findings: list[Finding] = []
    seen: set[Reason] = set()
    for r in worst_first:
        if r.verdict.health is Health.HEALTHY and not r.verdict.findings:
            continue
        for f in r.verdict.findings:
            if f.reason in seen:
                continue
            seen.add(f.reason)
            findings.append(Finding(f.reason, f.severity, f"{label(r.endpoint)}: {f.message}"))
    healthy = healths.count(Health.HEALTHY)
    summary = f"{healthy}/{len(results)} endpoints healthy (policy {policy.value})"
    if health is Health.HEALTHY and healthy < len(results):
        # Healthy by the policy despite bad endpoints: that comes first (and is
        # the Healthy condition's reason); what the others saw cannot make the
        # monitor worse, so it is kept at severity OK.
        findings = [
            Finding(Reason.HEALTHY_BY_POLICY, Severity.OK, summary),
            *(Finding(f.reason, Severity.OK, f.message) for f in findings),
        ]
    elif health is not Health.HEALTHY and findings:
        # The count first, so the message says at once how many are fine.
        first = findings[0]
        findings[0] = Finding(first.reason, first.severity, f"{summary}; {first.message}")
    with_document = [r for r in worst_first if r.obs.document is not None]
    shown = with_document[0] if with_document else worst_first[0]
    slowest = max(r.obs.latency_ms for r in results)
    obs = replace(shown.obs, latency_ms=slowest)
    # The counters are those of the endpoint that decides the verdict: the
    # k-th best (the worst under "all", the best under "any").
    best_first = sorted(results, key=lambda r: _RANK[r.verdict.health])
    deciding = best_first[quorum(policy, len(results)) - 1].verdict
    verdict = Verdict(
        health=health,
        findings=tuple(findings),
        consecutive_failures=deciding.consecutive_failures,
        consecutive_successes=deciding.consecutive_successes,
        reachable=any(r.verdict.reachable for r in results),
        instant=aggregate([r.verdict.instant for r in results], policy),
    )
    return verdict, obs, shown


def _worst_first(r: EndpointVerdict) -> tuple[int, float, str, int]:
    pool = r.obs.document.connection_pool if r.obs.document else None
    return (
        -_RANK[r.verdict.health],
        -(pool.pool_utilization if pool else 0.0),
        r.endpoint.address,
        r.endpoint.port,
    )


def label(endpoint: Endpoint) -> str:
    return f"{endpoint.authority} ({endpoint.pod})" if endpoint.pod else endpoint.authority


def reason(verdict: Verdict) -> str:
    worst = max(verdict.findings, key=lambda f: f.severity, default=None)
    return worst.reason.value if worst is not None else "AllChecksPassing"


def status_entries(
    results: Sequence[EndpointVerdict], probed_at: Mapping[tuple[str, int], str]
) -> list[dict[str, Any]]:
    """``status.endpoints``: the worst first, at most ``STATUS_LIMIT``."""
    out = []
    for r in sorted(results, key=_worst_first)[:STATUS_LIMIT]:
        message = r.refused or r.verdict.message or "all checks passing"
        entry: dict[str, Any] = {
            "address": r.endpoint.address,
            "port": r.endpoint.port,
            "pod": r.endpoint.pod,
            "health": r.verdict.health.value,
            "reason": reason(r.verdict),
            "message": message[:MESSAGE_LIMIT],
            "latencyMs": round(r.obs.latency_ms, 1),
            "consecutiveFailures": r.verdict.consecutive_failures,
            "lastProbeTime": probed_at.get(r.endpoint.key),
        }
        out.append({k: v for k, v in entry.items() if v is not None})
    return out


def summary(results: Sequence[EndpointVerdict], policy: Policy) -> dict[str, Any]:
    """``status.endpointSummary``: counts by health over all endpoints."""
    counts = {h: 0 for h in Health}
    for r in results:
        counts[r.verdict.health] += 1
    return {
        "policy": policy.value,
        "total": len(results),
        "healthy": counts[Health.HEALTHY],
        "degraded": counts[Health.DEGRADED],
        "unhealthy": counts[Health.UNHEALTHY],
        "unknown": counts[Health.UNKNOWN],
        "shown": min(len(results), STATUS_LIMIT),
        "ratio": f"{counts[Health.HEALTHY]}/{len(results)}",
    }


def transitions(previous: Health, result: EndpointVerdict) -> list[EventSpec]:
    """Events for one endpoint turning Unhealthy, or recovering from it."""
    health = result.verdict.health
    if health is previous:
        return []
    where = label(result.endpoint)
    if health is Health.UNHEALTHY:
        return [
            EventSpec(WARNING, "EndpointUnhealthy", f"{where} Unhealthy: {result.verdict.message}")
        ]
    if previous is Health.UNHEALTHY and health is Health.HEALTHY:
        return [EventSpec(NORMAL, "EndpointRecovered", f"{where} Healthy again")]
    return []
