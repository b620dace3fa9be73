"""Probe failure messages go to status and Events: they name the place and the cause only."""

from __future__ import annotations

import ssl

from mcp_health_operator.probing import wire
from mcp_health_operator.probing.probe import Outcome, classify


def test_a_refused_connection_names_host_port_and_cause_without_object_reprs() -> None:
    refused = ConnectionRefusedError(111, "Connect call failed ('10.96.4.142', 8000)")
    failure = classify(wire.CannotConnect("codebase-mcp.demo.svc.cluster.local", 8000, refused))
    assert failure.outcome is Outcome.UNREACHABLE
    assert str(failure) == (
        "cannot connect to codebase-mcp.demo.svc.cluster.local:8000: "
        "Connect call failed ('10.96.4.142', 8000)"
    )
    # A TLS failure: the OS error's text, no SSL object's repr.
    bad = ssl.SSLCertVerificationError(1, "certificate verify failed")
    failure = classify(wire.CannotConnect("h", 443, bad))
    assert str(failure) == "cannot connect to h:443: certificate verify failed"
    assert "object at 0x" not in str(failure)
