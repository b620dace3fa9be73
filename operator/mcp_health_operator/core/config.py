"""Operator settings (flags and environment); purely data."""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from mcp_health_operator.core.discovery import Settings as DiscoverySettings


@dataclass(frozen=True)
class Config:
    # Where to watch: empty means cluster-wide.
    namespaces: tuple[str, ...] = ()
    metrics_port: int = 9090
    metrics_host: str = "0.0.0.0"
    # Status is written on change, else at most once per heartbeat.
    heartbeat_s: float = 300.0
    # Monitors are listed this often to forget those deleted while the watch
    # was away (a relist after a gap delivers no DELETED event).
    resync_s: float = 60.0
    # Watch Secrets (list/watch RBAC) so a rotated token is read at once.
    watch_secrets: bool = True
    # Where Secrets may be read: None, every namespace; else only these (a
    # Role in each), and () none at all.
    secret_namespaces: tuple[str, ...] | None = None
    # Where remediation may act: None, every namespace; else only these.
    remediation_namespaces: tuple[str, ...] | None = None
    # Monitors may target Services in other namespaces only when allowed.
    allow_cross_namespace: bool = False
    # URL targets are refused unless allowed and matched by the allow-list
    # (shell-style patterns over "scheme://host:port"; empty list = none).
    allow_url_targets: bool = False
    url_allow_list: tuple[str, ...] = ()
    # "host:port=addr:port" overrides for running outside the cluster network
    # (like curl --resolve): a Service's cluster DNS name is probed at addr.
    resolve: dict[str, str] = field(default_factory=dict)
    cluster_domain: str = "cluster.local"
    # A new session handshake at least this often, even when all is well.
    rehandshake_s: float = 300.0
    max_document_bytes: int = 1 << 20
    # Remediation: a global pause, and the mass-failure breaker (hold all
    # remediation when more than `breaker_share` of at least
    # `breaker_min_monitors` monitors are Unhealthy, or turned so within
    # `breaker_window_s`).
    # The API server's host and port, never a probe target (set at start-up).
    api_server: tuple[str, int] | None = None
    pause_remediation: bool = False
    breaker_share: float = 0.5
    breaker_min_monitors: int = 3
    breaker_window_s: float = 60.0
    # Per-endpoint monitors re-list the Service's EndpointSlices at least this often
    # (the EndpointSlice watch brings changes in between).
    endpoints_refresh_s: float = 60.0
    # Several replicas: "shard" (monitors spread over the live members),
    # "leader" (one live member probes all) or None (this process owns every
    # monitor and takes no part in membership).
    membership: str | None = None
    # This replica's name among the members (and in Events and status.probedBy).
    identity: str = ""
    # Where the member Leases live, and the label value that groups one install's.
    lease_namespace: str = "default"
    member_group: str = "mcp-health-operator"
    lease_duration_s: int = 15
    lease_renew_s: float = 5.0
    # Generated monitors (annotated Services, other operators' MCPServers). None:
    # not given as flags; the MCP_HEALTH_DISCOVER_* environment decides (off
    # when unset).
    discovery: DiscoverySettings | None = None

    def secrets_allowed(self, namespace: str) -> bool:
        return self.secret_namespaces is None or namespace in self.secret_namespaces

    def remediation_allowed(self, namespace: str) -> bool:
        return self.remediation_namespaces is None or namespace in self.remediation_namespaces

    def url_allowed(self, url: str) -> bool:
        if not self.allow_url_targets:
            return False
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            return False
        port = parts.port or (443 if parts.scheme == "https" else 80)
        origin = f"{parts.scheme}://{parts.hostname}:{port}"
        return any(fnmatch.fnmatchcase(origin, pattern) for pattern in self.url_allow_list)


PAUSE_ANNOTATION = "mcphealth.dev/remediation-paused"
# Set to "true" by a workload's (or ConfigMap's, or Pod's) owner: remediation
# may act on it. Without it a due action is held as RemediationNotPermitted.
CONSENT_LABEL = "mcphealth.dev/allow-remediation"


def parse_resolve(entries: list[str]) -> dict[str, str]:
    """``["svc.ns.svc:8000=127.0.0.1:18000"]`` → mapping; raises ValueError naming the entry."""
    out: dict[str, str] = {}
    for entry in entries:
        name, sep, addr = entry.partition("=")
        if not sep or ":" not in name or ":" not in addr:
            raise ValueError(f"--resolve {entry!r}: expected HOST:PORT=ADDR:PORT")
        out[name.strip()] = addr.strip()
    return out
