"""``mcp-health``: the command line.

``mcp-health check URL`` is the guide's one-shot ``health_check.py``: it reads
the health resource once, prints the guide's fields, and judges the document
as a monitor would, with the operator's judge and a monitor's default
thresholds (each settable by a flag): it exits 0 when the verdict is Healthy,
1 when it is Degraded or Unhealthy, and 2 when no health document could be had
(unreachable, timeout, invalid document, missing resource, refused
credentials, rate limited). ``--server-status-only`` is exactly the guide's
script: 0 when the server reports ``healthy``, else 1 (2 on error).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import math
import os
import re
import ssl
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TextIO

from mcp_health_operator import __version__
from mcp_health_operator.core import judge, targets
from mcp_health_operator.core.spec import ThresholdsSpec
from mcp_health_operator.probing import probe, session
from mcp_health_operator.runtime import discovery_flags

EXIT_HEALTHY, EXIT_NOT_HEALTHY, EXIT_ERROR = 0, 1, 2


@dataclass(frozen=True, slots=True)
class ThresholdFlag:
    """One of ``spec.thresholds``' numbers as a ``check`` flag, named after its field."""

    field: str  # a ThresholdsSpec alias, i.e. the CRD's field name
    band: str  # "degraded" | "unhealthy"
    fraction: bool  # a utilization in 0..1, else milliseconds (>= 0)

    @property
    def flag(self) -> str:
        kebab = re.sub(r"(?<!^)(?=[A-Z])", "-", self.field).lower()
        return f"--{kebab}-{self.band}"

    @property
    def dest(self) -> str:
        return self.flag[2:].replace("-", "_")

    @property
    def default(self) -> float:
        # A monitor's own default: what the API server fills in when
        # spec.thresholds leaves the field out.
        return float(_SPEC_DEFAULTS[self.field][self.band])


_SPEC_DEFAULTS: dict[str, dict[str, float]] = ThresholdsSpec.model_validate({}).model_dump(
    by_alias=True
)
THRESHOLD_FLAGS = (
    ThresholdFlag("poolUtilization", "degraded", fraction=True),
    ThresholdFlag("poolUtilization", "unhealthy", fraction=True),
    ThresholdFlag("memoryUtilization", "degraded", fraction=True),
    ThresholdFlag("memoryUtilization", "unhealthy", fraction=True),
    ThresholdFlag("databaseLatencyMs", "degraded", fraction=False),
    ThresholdFlag("probeLatencyMs", "degraded", fraction=False),
)


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def _fraction(text: str) -> float:
    value = _number(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a fraction from 0 to 1, got {text!r}")
    return value


def _milliseconds(text: str) -> float:
    value = _number(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected milliseconds >= 0, got {text!r}")
    return value


def _header(value: str) -> tuple[str, str]:
    name, sep, content = value.partition(":")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"expected 'Name: value', got {value!r}")
    return name.strip(), content.strip()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mcp-health", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"mcp-health {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    check = sub.add_parser(
        "check",
        help="read a server's health resource once",
        description="Read an MCP server's health resource once and judge it as the "
        "operator does. Exit 0 Healthy, 1 Degraded or Unhealthy, 2 error.",
    )
    check.add_argument(
        "url",
        help="server URL, e.g. http://localhost:8000 (the transport's "
        "default path /mcp, /sse or /health/status is added when "
        "the URL has none)",
    )
    check.add_argument(
        "--transport",
        choices=[t.value for t in targets.Transport],
        default=targets.Transport.STREAMABLE_HTTP.value,
    )
    check.add_argument(
        "--timeout",
        type=float,
        default=5.0,
        help="seconds for the whole check, handshake included (default 5)",
    )
    check.add_argument(
        "--resource",
        default=targets.DEFAULT_RESOURCE,
        help="resource URI (default health://status)",
    )
    check.add_argument(
        "--method",
        choices=[m.value for m in targets.Method],
        default=targets.Method.HEALTH_RESOURCE.value,
        help="spec.probe.method: healthResource (default: the guide's document; a server "
        "without one exits 2), auto (the document when the server lists it, else the "
        "handshake), handshake (the protocol's own handshake)",
    )
    check.add_argument(
        "--header",
        type=_header,
        action="append",
        default=[],
        metavar="'NAME: VALUE'",
        help="extra HTTP header (repeatable)",
    )
    check.add_argument(
        "--token-env",
        metavar="VAR",
        help="send 'Authorization: Bearer $VAR' (read from the environment, "
        "so the token stays out of shell history)",
    )
    check.add_argument("--ca-file", help="CA bundle to verify the server's TLS certificate")
    check.add_argument("--insecure", action="store_true", help="do not verify TLS certificates")
    check.add_argument("--output", "-o", choices=["table", "json"], default="table")
    check.add_argument(
        "--server-status-only",
        action="store_true",
        help="the guide's script exactly: exit 0 if the document's own status is "
        "'healthy', else 1 (2 on error); no thresholds, no verdict",
    )
    bands = check.add_argument_group(
        "thresholds",
        "A monitor's spec.thresholds, with its defaults: pool and memory utilization "
        "are fractions (0..1), degraded not above unhealthy; latencies are in ms.",
    )
    for t in THRESHOLD_FLAGS:
        bands.add_argument(
            t.flag,
            type=_fraction if t.fraction else _milliseconds,
            # None: not given (the spec's default applies), so that a flag
            # --server-status-only would ignore can be refused.
            default=None,
            metavar="FRACTION" if t.fraction else "MS",
            help=f"spec.thresholds.{t.field}.{t.band} (default {t.default:g})",
        )
    # Kept so that main() can refuse contradictory flags as argparse does.
    check.set_defaults(check_parser=check)

    run = sub.add_parser(
        "run",
        help="run the operator",
        description="Watch MCPHealthMonitor resources and probe their targets. Uses "
        "KUBECONFIG, ~/.kube/config or the in-cluster ServiceAccount.",
    )
    scope = run.add_mutually_exclusive_group()
    scope.add_argument(
        "--namespace",
        "-n",
        action="append",
        default=[],
        dest="namespaces",
        help="watch this namespace (repeatable; default: all namespaces)",
    )
    scope.add_argument("--all-namespaces", "-A", action="store_true", help="watch all (default)")
    run.add_argument("--metrics-port", type=int, default=_env_int("MCP_HEALTH_METRICS_PORT", 9090))
    run.add_argument("--metrics-host", default="0.0.0.0")
    run.add_argument(
        "--loop",
        choices=("auto", "uvloop", "asyncio"),
        default=os.environ.get("MCP_HEALTH_LOOP", "auto"),
        help="event loop: uvloop (libuv; less CPU a probe), asyncio (the standard "
        "library's), or auto: uvloop when it is installed (default auto)",
    )
    run.add_argument(
        "--heartbeat",
        type=float,
        default=float(os.environ.get("MCP_HEALTH_HEARTBEAT", "300")),
        help="seconds between status writes when nothing changed (default 300)",
    )
    run.add_argument(
        "--rehandshake-after",
        type=float,
        default=float(os.environ.get("MCP_HEALTH_REHANDSHAKE_AFTER", "300")),
        help="longest a probe's MCP session is kept before it is ended and made anew, "
        "so a broken accept path on a server is noticed; each session's lifetime is "
        "drawn between 75%% and 100%% of it (default 300)",
    )
    run.add_argument(
        "--resync",
        type=float,
        default=float(os.environ.get("MCP_HEALTH_RESYNC", "60")),
        help="seconds between listings of the monitors, which forget those deleted "
        "while the watch was away (default 60)",
    )
    run.add_argument(
        "--no-watch-secrets",
        dest="watch_secrets",
        action="store_false",
        help="do not watch Secrets (no list/watch RBAC on them): a Secret a monitor "
        "uses is then read again only when its spec changes",
    )
    run.add_argument(
        "--no-secrets",
        action="store_true",
        help="never read Secrets (no RBAC on them): monitors that name one are refused "
        "with SecretNotAllowed",
    )
    run.add_argument(
        "--secret-namespace",
        action="append",
        default=[],
        metavar="NS",
        dest="secret_namespaces",
        help="read and watch Secrets only in this namespace (repeatable; the RBAC is a Role "
        "in each); monitors elsewhere that name a Secret are refused with SecretNotAllowed "
        "(default: every namespace)",
    )
    run.add_argument(
        "--remediation-namespace",
        action="append",
        default=[],
        metavar="NS",
        dest="remediation_namespaces",
        help="remediate only in this namespace (repeatable; the RBAC is a Role in each); "
        "elsewhere a due action is held as RemediationNotPermitted (default: every namespace)",
    )
    run.add_argument(
        "--cluster-domain",
        default="cluster.local",
        help="the cluster's DNS domain: a Service target is dialled as "
        "<svc>.<ns>.svc.<domain>. (default cluster.local)",
    )
    run.add_argument(
        "--allow-cross-namespace",
        action="store_true",
        help="let monitors target Services in other namespaces",
    )
    run.add_argument(
        "--allow-url",
        action="append",
        default=[],
        metavar="PATTERN",
        help="allow URL targets whose scheme://host:port matches this shell pattern "
        "(repeatable), e.g. 'https://*.example.com:443'",
    )
    run.add_argument(
        "--resolve",
        action="append",
        default=[],
        metavar="HOST:PORT=ADDR:PORT",
        help="probe a Service's cluster DNS name at another address, for running outside "
        "the cluster network (like curl --resolve); repeatable",
    )
    run.add_argument(
        "--pause-remediation",
        action="store_true",
        default=os.environ.get("MCP_HEALTH_PAUSE_REMEDIATION", "") == "true",
        help="decide and report, but take no remediation action (a global pause)",
    )
    run.add_argument(
        "--breaker-share",
        type=float,
        default=0.5,
        help="hold all remediation when more than this share of monitors is Unhealthy "
        "(default 0.5)",
    )
    run.add_argument(
        "--breaker-min-monitors",
        type=int,
        default=3,
        help="the breaker only applies to fleets of at least this many monitors (default 3)",
    )
    run.add_argument(
        "--breaker-window",
        type=float,
        default=60.0,
        help="seconds within which monitors turning Unhealthy count together (default 60)",
    )
    run.add_argument(
        "--endpoints-refresh",
        type=float,
        default=60.0,
        help="per-endpoint monitors: re-list a Service's EndpointSlices at least this often, "
        "in seconds, besides when the EndpointSlice watch sees them change (default 60)",
    )
    members = run.add_argument_group(
        "replicas",
        "Several replicas share the monitors through one Lease each in --lease-namespace. "
        "A replica killed without a goodbye is taken over within "
        "--lease-duration + 2 x --lease-renew + the monitor's probe interval.",
    )
    members.add_argument(
        "--membership",
        nargs="?",
        const="shard",
        choices=["off", "shard", "leader"],
        default=os.environ.get("MCP_HEALTH_MEMBERSHIP", "off"),
        help="off (default): this process probes every monitor. shard: the live replicas "
        "split the monitors (rendezvous hashing of each monitor's UID). leader: one live "
        "replica probes all, the others stand by",
    )
    members.add_argument(
        "--identity",
        default=None,
        help="this replica's name among the members, unique per replica "
        "(default: $POD_NAME, else hostname-pid)",
    )
    members.add_argument(
        "--lease-namespace",
        default=os.environ.get("POD_NAMESPACE"),
        help="namespace of the member Leases (default: $POD_NAMESPACE, else the first "
        "--namespace, else default)",
    )
    members.add_argument(
        "--member-group",
        default=os.environ.get("MCP_HEALTH_MEMBER_GROUP", "mcp-health-operator"),
        help="replicas with the same group share the monitors (one group per install)",
    )
    members.add_argument(
        "--lease-duration",
        type=int,
        default=15,
        help="seconds a replica's Lease holds without renewal (default 15)",
    )
    members.add_argument(
        "--lease-renew",
        type=float,
        default=5.0,
        help="seconds between renewals and member listings (default 5); a replica "
        "that has just joined claims its share after 1.5 of them",
    )
    discovery_flags.add_arguments(run)
    run.add_argument("--verbose", "-v", action="store_true")
    return parser


def _env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, str(default)))


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "check":
        problem = check_arguments_problem(args)
        if problem is not None:
            args.check_parser.error(problem)  # exits 2, with the check's usage
        return check(args, out=sys.stdout)
    if args.command == "run":
        return run_operator(args)
    return EXIT_ERROR  # pragma: no cover - argparse requires a command


def run_operator(args: argparse.Namespace) -> int:
    from mcp_health_operator.core import config
    from mcp_health_operator.kube import leases
    from mcp_health_operator.runtime import app

    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not args.verbose:
        # Per-request and per-handler lines would log every probe and every
        # status write; transitions are in Events and numbers in metrics.
        for noisy in ("httpx", "httpx2", "mcp", "kopf.objects", "aiohttp.access"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        resolve = config.parse_resolve(args.resolve)
        discovery = discovery_flags.settings_of(args)
    except ValueError as exc:
        print(f"mcp-health run: {exc}", file=sys.stderr)
        return EXIT_ERROR
    settings = config.Config(
        namespaces=tuple(args.namespaces),
        metrics_port=args.metrics_port,
        metrics_host=args.metrics_host,
        heartbeat_s=args.heartbeat,
        rehandshake_s=args.rehandshake_after,
        discovery=discovery,
        resync_s=args.resync,
        watch_secrets=args.watch_secrets,
        secret_namespaces=()
        if args.no_secrets
        else (tuple(args.secret_namespaces) if args.secret_namespaces else None),
        remediation_namespaces=tuple(args.remediation_namespaces) or None,
        cluster_domain=args.cluster_domain.strip(".").lower(),
        allow_cross_namespace=args.allow_cross_namespace,
        allow_url_targets=bool(args.allow_url),
        url_allow_list=tuple(args.allow_url),
        resolve=resolve,
        pause_remediation=args.pause_remediation,
        breaker_share=args.breaker_share,
        breaker_min_monitors=args.breaker_min_monitors,
        breaker_window_s=args.breaker_window,
        endpoints_refresh_s=args.endpoints_refresh,
        membership=None if args.membership == "off" else args.membership,
        identity=args.identity or leases.default_identity(),
        lease_namespace=args.lease_namespace
        or (args.namespaces[0] if args.namespaces else "default"),
        member_group=args.member_group,
        lease_duration_s=args.lease_duration,
        lease_renew_s=args.lease_renew,
    )
    if not re.fullmatch(r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?", args.member_group):
        print(
            "mcp-health run: --member-group must be a label value "
            "(letters, digits, '-', '_', '.'; at most 63)",
            file=sys.stderr,
        )
        return EXIT_ERROR
    if args.lease_renew >= args.lease_duration:
        print(
            "mcp-health run: --lease-renew must be shorter than --lease-duration", file=sys.stderr
        )
        return EXIT_ERROR
    try:
        loop_factory = event_loop_factory(args.loop)
    except ImportError:
        print("mcp-health run: --loop uvloop needs the uvloop package", file=sys.stderr)
        return EXIT_ERROR
    logging.getLogger(__name__).info("event loop: %s", loop_factory.__module__.split(".")[0])
    with (
        contextlib.suppress(KeyboardInterrupt),
        asyncio.Runner(loop_factory=loop_factory) as runner,
    ):
        runner.run(app.run(settings))
    return 0


def event_loop_factory(choice: str) -> Callable[[], asyncio.AbstractEventLoop]:
    """The loop ``mcp-health run`` runs on; ``auto`` is uvloop when installed."""
    if choice != "asyncio":
        try:
            import uvloop
        except ImportError:
            if choice == "uvloop":
                raise
        else:
            return uvloop.new_event_loop
    return asyncio.new_event_loop


def check_arguments_problem(args: argparse.Namespace) -> str | None:
    """What is wrong with the check's flags together (each alone was checked by its type)."""
    given = [t.flag for t in THRESHOLD_FLAGS if getattr(args, t.dest) is not None]
    if args.server_status_only and given:
        return f"{given[0]} has no effect with --server-status-only (no thresholds apply)"
    method = targets.Method(args.method)
    if args.server_status_only and method is not targets.Method.HEALTH_RESOURCE:
        return f"--server-status-only reads the health document: --method {method.value} has none"
    if method is targets.Method.HANDSHAKE and args.transport == targets.Transport.HTTP.value:
        # As the CRD refuses spec.probe.method handshake with transport http.
        return "--method handshake needs an MCP transport, not --transport http"
    bands: dict[str, dict[str, ThresholdFlag]] = {}
    for t in THRESHOLD_FLAGS:
        bands.setdefault(t.field, {})[t.band] = t
    for band in bands.values():
        low, high = band.get("degraded"), band.get("unhealthy")
        if low is None or high is None:
            continue
        # The CRD's rule (self.degraded <= self.unhealthy): equal is allowed.
        low_value, high_value = threshold_value(args, low), threshold_value(args, high)
        if low_value > high_value:
            return (
                f"{low.flag} {low_value:g}{_defaulted(args, low)} must not exceed "
                f"{high.flag} {high_value:g}{_defaulted(args, high)}"
            )
    return None


def _defaulted(args: argparse.Namespace, t: ThresholdFlag) -> str:
    return " (the default)" if getattr(args, t.dest) is None else ""


def threshold_value(args: argparse.Namespace, t: ThresholdFlag) -> float:
    given = getattr(args, t.dest)
    return t.default if given is None else float(given)


def thresholds_of(args: argparse.Namespace) -> judge.Thresholds:
    """The flags as a monitor's ``spec.thresholds``, read the way the operator reads it."""
    raw: dict[str, dict[str, float]] = {}
    for t in THRESHOLD_FLAGS:
        raw.setdefault(t.field, {})[t.band] = threshold_value(args, t)
    return ThresholdsSpec.model_validate(raw).to_thresholds()


def check(args: argparse.Namespace, *, out: TextIO) -> int:
    headers = dict(args.header)
    if args.token_env:
        token = os.environ.get(args.token_env)
        if not token:
            print(f"ERROR: environment variable {args.token_env} is empty or unset", file=out)
            return EXIT_ERROR
        headers["Authorization"] = f"Bearer {token}"
    target = targets.Target(
        url=args.url,
        transport=targets.Transport(args.transport),
        resource_uri=args.resource,
        headers=headers,
        ca_file=args.ca_file,
        insecure_skip_verify=args.insecure,
        # By default the guide's script: the document; a server without one exits 2.
        method=targets.Method(args.method),
    )
    result = asyncio.run(_probe_once(target, args.timeout))
    return report(args, target, result, out=out)


def report(
    args: argparse.Namespace, target: targets.Target, result: probe.ProbeResult, *, out: TextIO
) -> int:
    """Print one probe's result (and verdict, unless --server-status-only); the exit code."""
    verdict = None if args.server_status_only else verdict_of(result, thresholds_of(args))
    if args.output == "json":
        json.dump(as_json(target, result, verdict), out, indent=2)
        out.write("\n")
    else:
        write_table(target, result, out, verdict)
    return exit_code(result, verdict)


def verdict_of(result: probe.ProbeResult, thresholds: judge.Thresholds) -> judge.Verdict:
    """One probe judged as a monitor judges each of its probes."""
    obs = result.observation()
    # No history, and thresholds of 1: this probe alone decides, so a
    # document's verdict is the judge's reading of it (Verdict.instant), and a
    # rate-limited probe stays Unknown rather than reading as Healthy.
    return judge.judge(obs, thresholds, judge.History(), failure_threshold=1, success_threshold=1)


async def _probe_once(target: targets.Target, timeout: float) -> probe.ProbeResult:
    _warm_up(target)
    prober = probe.Prober(target, timeout=timeout)
    try:
        return await prober.probe()
    finally:
        await prober.aclose()


def _warm_up(target: targets.Target) -> None:
    """Pay the HTTP client's one-time costs before the probe's clock starts.

    The latency is judged (probeLatencyMs): a monitor pays these once per
    process, and a one-shot check would otherwise add some 100-300 ms of its
    own start-up to the server's time.
    """
    import httpcore2  # noqa: F401  (httpx2 imports it on its first client)

    if not target.insecure_skip_verify:
        # Cached per CA bundle; an unreadable bundle is the probe's to report.
        with contextlib.suppress(OSError, ssl.SSLError):
            session.ssl_context(target.ca_file, target.ca_data)


def exit_code(result: probe.ProbeResult, verdict: judge.Verdict | None = None) -> int:
    """2 without a document; else by the verdict, or without one (--server-status-only)
    by the server's own status, as the guide's script does."""
    if result.document is None and not _by_handshake(result):
        return EXIT_ERROR
    if verdict is None:  # --server-status-only, which reads the document
        healthy = result.document is not None and result.document.status == "healthy"
        return EXIT_HEALTHY if healthy else EXIT_NOT_HEALTHY
    return EXIT_HEALTHY if verdict.health is judge.Health.HEALTHY else EXIT_NOT_HEALTHY


def _by_handshake(result: probe.ProbeResult) -> bool:
    """The server was judged by its handshake (--method handshake, or auto without a document)."""
    return result.ok and result.method is targets.Method.HANDSHAKE


def as_json(
    target: targets.Target, result: probe.ProbeResult, verdict: judge.Verdict | None = None
) -> dict[str, Any]:
    doc = result.document
    server = result.server
    return {
        "url": targets.endpoint(target.url, target.transport),
        "transport": target.transport.value,
        "outcome": result.outcome.value,
        "message": result.message or None,
        "latency_ms": round(result.latency_ms, 2),
        "status": doc.status if doc else None,
        "database_status": doc.database_status if doc else None,
        "pool_utilization": doc.connection_pool.pool_utilization
        if doc and doc.connection_pool
        else None,
        "connection_pool": doc.connection_pool.model_dump()
        if doc and doc.connection_pool
        else None,
        "checks": {name: c.model_dump(exclude_none=True) for name, c in doc.checks.items()}
        if doc
        else None,
        "uptime_seconds": doc.uptime_seconds if doc else None,
        "metadata": doc.metadata if doc else None,
        "server": {
            "name": server.name,
            "version": server.version,
            "protocol_version": server.protocol_version,
        }
        if server
        else None,
        "retry_after_seconds": result.retry_after_s,
        # How the server was judged: healthResource or handshake (None: the probe
        # failed first); fell_back: --method auto found no health resource.
        "method": result.method.value if result.method else None,
        "fell_back": result.fell_back,
        # As in a monitor's status.health and status.reasons; None when not
        # judged (--server-status-only).
        "verdict": verdict.health.value if verdict else None,
        "reasons": list(verdict.reasons) if verdict else None,
    }


def write_table(
    target: targets.Target,
    result: probe.ProbeResult,
    out: TextIO,
    verdict: judge.Verdict | None = None,
) -> None:
    doc = result.document
    url = targets.endpoint(target.url, target.transport)
    if doc is None and _by_handshake(result):
        _write_handshake(url, result, out, verdict)
        return
    if doc is None:
        print(
            f"ERROR: Health check failed - {result.outcome.value}: {result.message} ({url})",
            file=out,
        )
        return
    print(f"[{datetime.now().isoformat()}] Health Check {url}", file=out)
    print(f"  Status: {doc.status.upper()}", file=out)
    print(f"  Database: {doc.database_status or 'n/a'}", file=out)
    if doc.connection_pool is not None:
        pool = doc.connection_pool
        print(
            f"  Pool Utilization: {pool.pool_utilization:.1%} ({pool.active_connections} active"
            f", {pool.idle_connections} idle of {pool.total_connections}, "
            f"{pool.waiting_requests} waiting)",
            file=out,
        )
    else:
        print("  Pool Utilization: n/a", file=out)
    for name, item in sorted(doc.checks.items()):
        figures = [
            f"{key}={value}"
            for key, value in item.model_dump(exclude_none=True).items()
            if key not in ("status", "message")
        ]
        detail = f" ({', '.join(figures)})" if figures else ""
        print(f"  Check {name}: {item.status}{detail}", file=out)
    print(f"  Latency: {result.latency_ms:.1f} ms", file=out)
    _write_verdict(verdict, out)


def _write_verdict(verdict: judge.Verdict | None, out: TextIO) -> None:
    if verdict is not None:
        print(f"  Verdict: {verdict.health.value.upper()}", file=out)
        for finding in verdict.findings:
            print(f"  Reason {finding.reason.value}: {finding.message}", file=out)


def _write_handshake(
    url: str, result: probe.ProbeResult, out: TextIO, verdict: judge.Verdict | None
) -> None:
    """A server judged by its handshake: who answered, and the verdict."""
    print(f"[{datetime.now().isoformat()}] Health Check {url}", file=out)
    why = " (the server lists no health resource)" if result.fell_back else ""
    print(f"  Method: handshake{why}", file=out)
    server = result.server
    if server is not None:
        named = " ".join(part for part in (server.name, server.version) if part) or "(unnamed)"
        print(f"  Server: {named}, protocol {server.protocol_version or 'n/a'}", file=out)
    print(f"  Latency: {result.latency_ms:.1f} ms", file=out)
    _write_verdict(verdict, out)


if __name__ == "__main__":
    sys.exit(main())
