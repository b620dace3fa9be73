"""Destinations the operator never probes, whatever its configuration allows."""

from __future__ import annotations

import pytest

from mcp_health_operator.core import targets

API = ("10.96.0.1", 443)

REFUSED = {
    "cloud metadata IPv4": ("169.254.169.254", 80, [], "169.254.0.0/16"),
    "link-local by name": ("metadata.internal", 80, ["169.254.169.254"], "169.254.0.0/16"),
    "IPv6 metadata": ("fd00:ec2::254", 80, [], "fd00:ec2::254"),
    "IPv6 link-local": ("fe80::1", 80, [], "fe80::/10"),
    "IPv4-mapped metadata": ("::ffff:169.254.169.254", 80, [], "169.254.0.0/16"),
    "unspecified": ("0.0.0.0", 80, [], "0.0.0.0/8"),
    "one bad address among good ones": ("mixed.example", 80, ["10.1.2.3", "169.254.0.9"], "169"),
    "kubernetes service name": ("kubernetes.default.svc", 8080, [], "API server"),
    "kubernetes FQDN": ("kubernetes.default.svc.cluster.local", 443, [], "API server"),
    "API server address and port": ("10.96.0.1", 443, [], "API server"),
    "name resolving to the API server": ("api.example", 443, ["10.96.0.1"], "API server"),
}


@pytest.mark.parametrize(("host", "port", "resolved", "why"), REFUSED.values(), ids=REFUSED.keys())
def test_refused(host: str, port: int, resolved: list[str], why: str) -> None:
    reason = targets.refusal(host=host, port=port, resolved=resolved, api_server=API)
    assert reason is not None and why in reason


ALLOWED = {
    "a pod address": ("10.1.2.3", 8000, []),
    "loopback (tests, sidecars)": ("127.0.0.1", 8000, []),
    "API server address, other port": ("10.96.0.1", 8000, []),
    "public name": ("mcp.example.com", 443, ["203.0.113.7"]),
    "IPv6 unique local, not metadata": ("fd00:ec2::253", 80, []),
}


@pytest.mark.parametrize(("host", "port", "resolved"), ALLOWED.values(), ids=ALLOWED.keys())
def test_allowed(host: str, port: int, resolved: list[str]) -> None:
    assert targets.refusal(host=host, port=port, resolved=resolved, api_server=API) is None
