"""Which addresses a monitor may make the operator reach: pure checks, no I/O.

However the operator is configured, a probe never goes to:
  * link-local addresses (169.254.0.0/16, fe80::/10), where clouds serve
    instance metadata and credentials, nor the IPv6 metadata address
    fd00:ec2::254, nor unspecified addresses (0.0.0.0/8, ::);
  * the Kubernetes API server (its own address and port, or the
    ``kubernetes.default`` Service names): a monitor must not turn the
    operator's credentials and network position into a proxy.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from urllib.parse import urlsplit, urlunsplit

DEFAULT_RESOURCE = "health://status"


class Transport(StrEnum):
    STREAMABLE_HTTP = "streamable-http"
    SSE = "sse"
    HTTP = "http"


class Method(StrEnum):
    """How a probe judges the server (``spec.probe.method``)."""

    # The health resource when the server lists it, else the handshake.
    AUTO = "auto"
    # The guide's document (``resources/read``, or a plain GET on ``http``).
    HEALTH_RESOURCE = "healthResource"
    # The protocol itself: ``server/discover`` (2026-07-28 revision) or the
    # ``initialize`` session, answered ``ping`` by ``ping``.
    HANDSHAKE = "handshake"


# Where each transport lives when a URL names only the server (as the
# guide's `health_check.py http://localhost:8000` does).
DEFAULT_PATHS = {
    Transport.STREAMABLE_HTTP: "/mcp",
    Transport.SSE: "/sse",
    Transport.HTTP: "/health/status",
}


@dataclass(frozen=True, slots=True)
class Target:
    """Where and how to probe. ``url`` is the transport endpoint (see ``endpoint``)."""

    url: str
    transport: Transport = Transport.STREAMABLE_HTTP
    resource_uri: str = DEFAULT_RESOURCE
    headers: Mapping[str, str] = field(default_factory=dict)
    ca_file: str | None = None
    ca_data: str | None = None  # PEM, e.g. from a Secret
    insecure_skip_verify: bool = False
    # The read unless told otherwise (a monitor's spec defaults to AUTO).
    method: Method = Method.HEALTH_RESOURCE
    # Tools the server must list (checked only when it advertises tools).
    expect_tools: tuple[str, ...] = ()


def endpoint(url: str, transport: Transport) -> str:
    """``url`` with the transport's default path when it names only the server."""
    parts = urlsplit(url)
    if parts.path in ("", "/"):
        parts = parts._replace(path=DEFAULT_PATHS[transport])
    return urlunsplit(parts)


class Refused(Exception):
    """The operator will not probe this target; ``reason`` goes to the conditions."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


_BLOCKED = tuple(
    ipaddress.ip_network(net)
    for net in ("169.254.0.0/16", "fe80::/10", "fd00:ec2::254/128", "0.0.0.0/8", "::/128")
)
_API_NAMES = ("kubernetes", "kubernetes.default", "kubernetes.default.svc")


def blocked_address(ip: str) -> str | None:
    """Why ``ip`` may never be probed, or None."""
    try:
        address = ipaddress.ip_address(ip.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    for net in _BLOCKED:
        if address in net:
            return f"{ip} is in {net}, a link-local, metadata or unspecified range"
    return None


def api_server_name(host: str, cluster_domain: str = "cluster.local") -> bool:
    name = host.lower().rstrip(".")
    return name in _API_NAMES or name == f"kubernetes.default.svc.{cluster_domain}"


def refusal(
    *,
    host: str,
    port: int,
    resolved: Iterable[str],
    api_server: tuple[str, int] | None,
    api_server_ips: Iterable[str] = (),
    cluster_domain: str = "cluster.local",
) -> str | None:
    """Why a probe of ``host:port`` (resolving to ``resolved``) is refused, or None."""
    if api_server_name(host, cluster_domain):
        return f"{host} is the Kubernetes API server"
    for ip in [host, *resolved]:
        reason = blocked_address(ip)
        if reason is not None:
            return reason
    if api_server is not None and port == api_server[1]:
        api_hosts = {api_server[0].lower(), *api_server_ips}
        if host.lower() in api_hosts or any(ip in api_hosts for ip in resolved):
            return f"{host}:{port} is the Kubernetes API server"
    return None
