"""Probe failure messages go to status and Events: they name the place and the cause only."""

from __future__ import annotations

import ssl

import aiohttp
from aiohttp.client_reqrep import ConnectionKey

from mcp_health_operator.probing.probe import Outcome, classify


def test_a_refused_connection_names_host_port_and_cause_without_object_reprs() -> None:
    key = ConnectionKey(
        "codebase-mcp.demo.svc.cluster.local", 8000, False, ssl.create_default_context(),
        None, None, None, None,
    )  # fmt: skip
    refused = ConnectionRefusedError(111, "Connect call failed ('10.96.4.142', 8000)")
    failure = classify(aiohttp.ClientConnectorError(key, refused))
    assert failure.outcome is Outcome.UNREACHABLE
    assert str(failure) == (
        "cannot connect to codebase-mcp.demo.svc.cluster.local:8000: "
        "Connect call failed ('10.96.4.142', 8000)"
    )
    assert "object at 0x" not in str(failure)
