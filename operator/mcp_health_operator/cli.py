"""``mcp-health``: the command line.

``mcp-health check URL`` is the guide's one-shot ``health_check.py``: it reads
the health resource once, prints the guide's fields, and exits 0 when the
server reports ``healthy``, 1 when it reports ``degraded`` or ``unhealthy``,
and 2 when no health document could be had (unreachable, timeout, invalid
document, missing resource, refused credentials).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import re
import sys
from collections.abc import Sequence
from datetime import datetime
from typing import Any, TextIO

from mcp_health_operator import __version__, probe

EXIT_HEALTHY, EXIT_NOT_HEALTHY, EXIT_ERROR = 0, 1, 2


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
        description="Read an MCP server's health resource once. "
        "Exit 0 healthy, 1 degraded or unhealthy, 2 error.",
    )
    check.add_argument(
        "url",
        help="server URL, e.g. http://localhost:8000 (the transport's "
        "default path /mcp, /sse or /health/status is added when "
        "the URL has none)",
    )
    check.add_argument(
        "--transport",
        choices=[t.value for t in probe.Transport],
        default=probe.Transport.STREAMABLE_HTTP.value,
    )
    check.add_argument(
        "--timeout",
        type=float,
        default=5.0,
        help="seconds for the whole check, handshake included (default 5)",
    )
    check.add_argument(
        "--resource", default=probe.DEFAULT_RESOURCE, help="resource URI (default health://status)"
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
        "--heartbeat",
        type=float,
        default=float(os.environ.get("MCP_HEALTH_HEARTBEAT", "300")),
        help="seconds between status writes when nothing changed (default 300)",
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
        default=10.0,
        help="per-endpoint monitors: re-list a Service's EndpointSlices at most this often, "
        "in seconds (default 10)",
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
        help="seconds between renewals and member listings (default 5)",
    )
    run.add_argument("--verbose", "-v", action="store_true")
    return parser


def _env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, str(default)))


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "check":
        return check(args, out=sys.stdout)
    if args.command == "run":
        return run_operator(args)
    return EXIT_ERROR  # pragma: no cover - argparse requires a command


def run_operator(args: argparse.Namespace) -> int:
    from mcp_health_operator import app, config, leases

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
    except ValueError as exc:
        print(f"mcp-health run: {exc}", file=sys.stderr)
        return EXIT_ERROR
    settings = config.Config(
        namespaces=tuple(args.namespaces),
        metrics_port=args.metrics_port,
        metrics_host=args.metrics_host,
        heartbeat_s=args.heartbeat,
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
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(app.run(settings))
    return 0


def check(args: argparse.Namespace, *, out: TextIO) -> int:
    headers = dict(args.header)
    if args.token_env:
        token = os.environ.get(args.token_env)
        if not token:
            print(f"ERROR: environment variable {args.token_env} is empty or unset", file=out)
            return EXIT_ERROR
        headers["Authorization"] = f"Bearer {token}"
    target = probe.Target(
        url=args.url,
        transport=probe.Transport(args.transport),
        resource_uri=args.resource,
        headers=headers,
        ca_file=args.ca_file,
        insecure_skip_verify=args.insecure,
    )
    result = asyncio.run(_probe_once(target, args.timeout))
    if args.output == "json":
        json.dump(as_json(target, result), out, indent=2)
        out.write("\n")
    else:
        write_table(target, result, out)
    return exit_code(result)


async def _probe_once(target: probe.Target, timeout: float) -> probe.ProbeResult:
    prober = probe.Prober(target, timeout=timeout)
    try:
        return await prober.probe()
    finally:
        await prober.aclose()


def exit_code(result: probe.ProbeResult) -> int:
    if result.document is None:
        return EXIT_ERROR
    return EXIT_HEALTHY if result.document.status == "healthy" else EXIT_NOT_HEALTHY


def as_json(target: probe.Target, result: probe.ProbeResult) -> dict[str, Any]:
    doc = result.document
    server = result.server
    return {
        "url": probe.endpoint(target.url, target.transport),
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
    }


def write_table(target: probe.Target, result: probe.ProbeResult, out: TextIO) -> None:
    doc = result.document
    url = probe.endpoint(target.url, target.transport)
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


if __name__ == "__main__":
    sys.exit(main())
