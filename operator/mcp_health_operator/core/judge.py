"""The judge: one probe's observation + thresholds + history → a verdict with reasons.

Purely computational: no I/O, no kopf, no Kubernetes, no HTTP.

Effective health is the worst of
  * what the server reports (``status``),
  * the operator's own reading of the figures against the monitor's
    thresholds (pool, memory, database status and latency, probe latency,
    any check that says ``fail`` or ``warn``), and
  * the probe itself failing (unreachable, timeout, invalid document, ...).

Flips follow kubelet probe semantics: ``failureThreshold`` consecutive bad
probes are needed to turn Unhealthy, and ``successThreshold`` consecutive
good ones to leave Unhealthy (or Unknown). Until a threshold is reached the
previous effective health holds, while the reasons already show what the
latest probe saw. Degraded needs no threshold: it is not a failure.

Bands, as the operations guide words them: pool utilization is Degraded at
or above ``pool_degraded`` and Unhealthy at or above ``pool_unhealthy`` (its
``interpret_pool_utilization``); memory is Degraded above ``memory_degraded``
and Unhealthy above ``memory_unhealthy``; latencies are Degraded above their
limits.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum, StrEnum

from mcp_health_operator.core.health import HealthCheckResponse

MESSAGE_LIMIT = 2048
# Observation.method values (targets.Method, as the probe resolved it).
HEALTH_RESOURCE, HANDSHAKE = "healthResource", "handshake"


class Health(StrEnum):
    HEALTHY = "Healthy"
    DEGRADED = "Degraded"
    UNHEALTHY = "Unhealthy"
    UNKNOWN = "Unknown"


class Severity(IntEnum):
    # Ordered so that max() is "worst of".
    OK = 0
    DEGRADED = 1
    UNHEALTHY = 2


class Reason(StrEnum):
    # From the document.
    SERVER_REPORTED_DEGRADED = "ServerReportedDegraded"
    SERVER_REPORTED_UNHEALTHY = "ServerReportedUnhealthy"
    DATABASE_DISCONNECTED = "DatabaseDisconnected"
    DATABASE_DEGRADED = "DatabaseDegraded"
    DATABASE_LATENCY_HIGH = "DatabaseLatencyHigh"
    POOL_UTILIZATION_HIGH = "PoolUtilizationHigh"
    POOL_EXHAUSTED = "PoolExhausted"
    MEMORY_HIGH = "MemoryHigh"
    MEMORY_CRITICAL = "MemoryCritical"
    CHECK_FAILED = "CheckFailed"
    CHECK_WARNING = "CheckWarning"
    PROBE_LATENCY_HIGH = "ProbeLatencyHigh"
    # From the probe.
    PROBE_TIMEOUT = "ProbeTimeout"
    TARGET_UNREACHABLE = "TargetUnreachable"
    INVALID_HEALTH_DOCUMENT = "InvalidHealthDocument"
    HEALTH_RESOURCE_NOT_FOUND = "HealthResourceNotFound"
    UNAUTHORIZED = "Unauthorized"
    RATE_LIMITED = "RateLimited"
    PROTOCOL_ERROR = "ProtocolError"
    # From a handshake probe (spec.probe.method, spec.probe.expectTools).
    EXPECTED_TOOLS_MISSING = "ExpectedToolsMissing"
    # From endpoint discovery (spec.target.perEndpoint).
    NO_READY_ENDPOINTS = "NoReadyEndpoints"
    TARGET_NOT_ALLOWED = "TargetNotAllowed"
    HEALTHY_BY_POLICY = "HealthyByPolicy"


# Probe outcomes (probe.Outcome values) → reason, severity, and whether the
# probe counts as a failure toward failureThreshold. Kept as plain strings so
# this module needs nothing from the probing side.
_PROBE_FAILURES: dict[str, tuple[Reason, Severity, str]] = {
    # A server we cannot reach or read is down as far as its clients know.
    "Timeout": (Reason.PROBE_TIMEOUT, Severity.UNHEALTHY, "failure"),
    "Unreachable": (Reason.TARGET_UNREACHABLE, Severity.UNHEALTHY, "failure"),
    "InvalidDocument": (Reason.INVALID_HEALTH_DOCUMENT, Severity.UNHEALTHY, "failure"),
    "ResourceNotFound": (Reason.HEALTH_RESOURCE_NOT_FOUND, Severity.UNHEALTHY, "failure"),
    "ProtocolError": (Reason.PROTOCOL_ERROR, Severity.UNHEALTHY, "failure"),
    # The server answered, but refused our credentials: a configuration
    # problem, not an outage; restarting the server would not fix it.
    "Unauthorized": (Reason.UNAUTHORIZED, Severity.DEGRADED, "neutral"),
    # The server asked us to back off: says nothing about its health.
    "RateLimited": (Reason.RATE_LIMITED, Severity.OK, "neutral"),
}


@dataclass(frozen=True, slots=True)
class Thresholds:
    pool_degraded: float = 0.80
    pool_unhealthy: float = 0.95
    memory_degraded: float = 0.80
    memory_unhealthy: float = 0.95
    database_latency_ms: float = 100.0
    probe_latency_ms: float = 500.0


@dataclass(frozen=True, slots=True)
class Finding:
    reason: Reason
    severity: Severity
    message: str


@dataclass(frozen=True, slots=True)
class Observation:
    """What one probe saw. ``outcome`` is a ``probe.Outcome`` value."""

    outcome: str
    latency_ms: float
    document: HealthCheckResponse | None = None
    message: str = ""
    # How the server was judged: "healthResource" or "handshake" (None: the
    # probe failed before the server said which it supports).
    method: str | None = None
    # method "auto" fell back to the handshake: the server lists no health resource.
    fell_back: bool = False
    # Of spec.probe.expectTools, those the server did not list.
    missing_tools: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class History:
    health: Health = Health.UNKNOWN
    consecutive_failures: int = 0
    consecutive_successes: int = 0


@dataclass(frozen=True, slots=True)
class Verdict:
    health: Health
    findings: tuple[Finding, ...]
    consecutive_failures: int
    consecutive_successes: int
    reachable: bool
    # What this probe alone says, before thresholds hold it back.
    instant: Health = Health.UNKNOWN

    # The reasons are read on every probe (the write budget's key): a list is
    # built faster than a generator runs, and most verdicts find nothing.
    @property
    def reasons(self) -> tuple[str, ...]:
        if not self.findings:
            return ()
        return tuple([f.reason.value for f in self.findings])

    @property
    def message(self) -> str:
        if not self.findings:
            return ""
        # Bounded: it goes into conditions, status and Events, and a server
        # may report thousands of failing checks.
        text = "; ".join([f.message for f in self.findings])
        return text if len(text) <= MESSAGE_LIMIT else text[: MESSAGE_LIMIT - 3] + "..."

    def history(self) -> History:
        return History(self.health, self.consecutive_failures, self.consecutive_successes)


@dataclass(frozen=True, slots=True)
class Assessment:
    severity: Severity
    findings: tuple[Finding, ...] = field(default_factory=tuple)
    counts_as: str = "success"  # "success" | "failure" | "neutral"
    reachable: bool = True


def assess(obs: Observation, thresholds: Thresholds) -> Assessment:
    """One probe on its own: severity and findings, no history."""
    return Assessment(*_assess(obs, thresholds))


# An assessment's fields, as ``judge`` takes them apart (no object per probe).
_Assessed = tuple[Severity, tuple[Finding, ...], str, bool]


def _assess(obs: Observation, thresholds: Thresholds) -> _Assessed:
    failure = _PROBE_FAILURES.get(obs.outcome)
    if failure is not None:
        reason, severity, counts = failure
        text = obs.message or obs.outcome
        # A server that asks us to back off is reachable, and answering.
        reachable = reason is Reason.RATE_LIMITED
        return severity, (Finding(reason, severity, text),), counts, reachable
    if obs.document is None and obs.method == HANDSHAKE:
        # The server answered the protocol; it publishes no figures to judge.
        found: list[Finding] = []
    elif obs.document is None:  # an "Ok" without a document cannot happen; be safe
        return Severity.UNHEALTHY, (_NO_DOCUMENT,), "failure", False
    else:
        found = _document_findings(obs.document, thresholds)
    if obs.missing_tools:
        found += _tools_findings(obs.missing_tools)
    if obs.latency_ms > thresholds.probe_latency_ms:
        found += _latency_findings(obs.latency_ms, thresholds)
    if not found:
        return Severity.OK, (), "success", True
    severity = max([f.severity for f in found])
    counts = "failure" if severity is Severity.UNHEALTHY else "success"
    return severity, tuple(found), counts, True


# The findings whose message is always the same, made once.
_NO_DOCUMENT = Finding(Reason.INVALID_HEALTH_DOCUMENT, Severity.UNHEALTHY, "no document")
_REPORTED_UNHEALTHY = Finding(
    Reason.SERVER_REPORTED_UNHEALTHY, Severity.UNHEALTHY, "server reports unhealthy"
)
_REPORTED_DEGRADED = Finding(
    Reason.SERVER_REPORTED_DEGRADED, Severity.DEGRADED, "server reports degraded"
)
_DATABASE_DISCONNECTED = Finding(
    Reason.DATABASE_DISCONNECTED, Severity.UNHEALTHY, "database disconnected"
)
_DATABASE_DEGRADED = Finding(Reason.DATABASE_DEGRADED, Severity.DEGRADED, "database degraded")


def _document_findings(doc: HealthCheckResponse, t: Thresholds) -> list[Finding]:
    found: list[Finding] = []
    if doc.status == "unhealthy":
        found.append(_REPORTED_UNHEALTHY)
    elif doc.status == "degraded":
        found.append(_REPORTED_DEGRADED)

    if doc.database_status == "disconnected":
        found.append(_DATABASE_DISCONNECTED)
    elif doc.database_status == "degraded":
        found.append(_DATABASE_DEGRADED)

    latency = doc.database_latency_ms()
    if latency is not None and latency > t.database_latency_ms:
        found.append(
            Finding(
                Reason.DATABASE_LATENCY_HIGH,
                Severity.DEGRADED,
                f"database latency {latency:g} ms > {t.database_latency_ms:g} ms",
            )
        )

    pool = doc.connection_pool
    if pool is not None:
        used = pool.pool_utilization
        if used >= t.pool_unhealthy:
            found.append(
                Finding(
                    Reason.POOL_EXHAUSTED,
                    Severity.UNHEALTHY,
                    f"pool utilization {used:.0%} >= {t.pool_unhealthy:.0%}",
                )
            )
        elif used >= t.pool_degraded:
            found.append(
                Finding(
                    Reason.POOL_UTILIZATION_HIGH,
                    Severity.DEGRADED,
                    f"pool utilization {used:.0%} >= {t.pool_degraded:.0%}",
                )
            )

    memory = doc.memory_fraction()
    if memory is not None:
        if memory > t.memory_unhealthy:
            found.append(
                Finding(
                    Reason.MEMORY_CRITICAL,
                    Severity.UNHEALTHY,
                    f"memory {memory:.0%} > {t.memory_unhealthy:.0%}",
                )
            )
        elif memory > t.memory_degraded:
            found.append(
                Finding(
                    Reason.MEMORY_HIGH,
                    Severity.DEGRADED,
                    f"memory {memory:.0%} > {t.memory_degraded:.0%}",
                )
            )

    checks = doc.checks
    if all(check.status == "pass" for check in checks.values()):
        return found  # the usual case: nothing to sort through
    covered = {"database"} if doc.database_status == "disconnected" else set()
    for name in sorted(checks):
        check = checks[name]
        if name in covered:
            continue  # already said, more precisely, by DatabaseDisconnected
        if check.status == "fail":
            detail = f": {check.message}" if check.message else ""
            found.append(
                Finding(Reason.CHECK_FAILED, Severity.UNHEALTHY, f"check {name} failed{detail}")
            )
        elif check.status == "warn":
            detail = f": {check.message}" if check.message else ""
            found.append(
                Finding(Reason.CHECK_WARNING, Severity.DEGRADED, f"check {name} warns{detail}")
            )
    return found


def _tools_findings(missing: tuple[str, ...]) -> list[Finding]:
    if not missing:
        return []
    # A client that needs these tools cannot work with this server.
    names = ", ".join(missing)
    return [
        Finding(
            Reason.EXPECTED_TOOLS_MISSING,
            Severity.UNHEALTHY,
            f"server does not list the expected tool(s) {names}",
        )
    ]


def _latency_findings(latency_ms: float, t: Thresholds) -> list[Finding]:
    if latency_ms > t.probe_latency_ms:
        return [
            Finding(
                Reason.PROBE_LATENCY_HIGH,
                Severity.DEGRADED,
                f"probe took {latency_ms:.0f} ms > {t.probe_latency_ms:g} ms",
            )
        ]
    return []


_HEALTH_OF = {
    Severity.OK: Health.HEALTHY,
    Severity.DEGRADED: Health.DEGRADED,
    Severity.UNHEALTHY: Health.UNHEALTHY,
}


def judge(
    obs: Observation,
    thresholds: Thresholds,
    history: History,
    *,
    failure_threshold: int = 3,
    success_threshold: int = 1,
) -> Verdict:
    """The effective health after this probe."""
    severity, findings, counts_as, reachable = _assess(obs, thresholds)
    instant = _HEALTH_OF[severity]
    failures, successes = history.consecutive_failures, history.consecutive_successes
    health = history.health

    if counts_as == "failure":
        failures, successes = failures + 1, 0
        if failures >= failure_threshold:
            health = Health.UNHEALTHY
        # Below the threshold the previous verdict holds (kubelet semantics).
    elif counts_as == "success":
        failures, successes = 0, successes + 1
        leaving_bad = history.health in (Health.UNHEALTHY, Health.UNKNOWN)
        if not leaving_bad or successes >= success_threshold:
            health = instant
    else:
        # Neutral (401/403, 429): counters untouched; a refusal of our
        # credentials shows as Degraded unless something worse already holds.
        if severity is Severity.DEGRADED and history.health is not Health.UNHEALTHY:
            health = Health.DEGRADED

    return Verdict(health, findings, failures, successes, reachable, instant)
