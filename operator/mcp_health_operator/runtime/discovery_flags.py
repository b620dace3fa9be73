"""The ``mcp-health run`` flags of discovery, each defaulting to its environment variable.

``add_arguments(run_parser)`` adds them; ``settings_of(args)`` reads them back
as ``core.discovery.Settings`` (for ``Config.discovery``). Until the command
line calls these, the operator reads the same environment variables at start
(``runtime.app``), which is what the Helm chart sets.
"""

from __future__ import annotations

import argparse
import os

from mcp_health_operator.core import discovery


def add_arguments(run: argparse.ArgumentParser) -> None:
    group = run.add_argument_group(
        "discovery",
        "Generate MCPHealthMonitors: one per Service annotated mcphealth.dev/monitor=true, "
        "and one per MCPServer of the operators whose API groups are followed "
        f"({', '.join(discovery.SOURCES)}). Generated monitors carry the label "
        f"{discovery.GENERATED_LABEL}; a hand-written monitor always wins.",
    )
    group.add_argument(
        "--discover-services",
        action=argparse.BooleanOptionalAction,
        default=None,
        help=f"annotated Services get monitors (default: ${discovery.ENV_SERVICES}, else off)",
    )
    group.add_argument(
        "--discover-group",
        action="append",
        default=None,
        choices=list(discovery.SOURCES),
        metavar="GROUP",
        help="follow the MCPServers of this API group, repeatable: "
        f"{', '.join(discovery.SOURCES)} (default: ${discovery.ENV_GROUPS}, comma-separated)",
    )
    group.add_argument(
        "--discover-recheck",
        type=float,
        default=None,
        metavar="SECONDS",
        help="list again, and look for CRDs not installed yet, this often "
        f"(default: ${discovery.ENV_RECHECK}, else 60)",
    )


def settings_of(args: argparse.Namespace) -> discovery.Settings:
    """The flags given, else the environment; ValueError names a bad value."""
    env = discovery.settings_from_env(os.environ)
    services = env.services if args.discover_services is None else bool(args.discover_services)
    groups = env.groups if args.discover_group is None else tuple(args.discover_group)
    recheck = env.recheck_s if args.discover_recheck is None else float(args.discover_recheck)
    return discovery.settings(services=services, groups=groups, recheck_s=recheck)
