"""What a worker keeps of its monitor's status: what it reads back, and nothing else."""

from __future__ import annotations

from typing import Any

from mcp_health_operator.controller.monitor import STATUS_READ, MonitorObject, MonitorWorker
from mcp_health_operator.core import events
from mcp_health_operator.core.config import Config
from mcp_health_operator.core.judge import Health
from mcp_health_operator.core.targets import Transport
from mcp_health_operator.probing.probe import Outcome, ProbeResult, ServerIdentity

# A status as the operator writes it, with a remediation record and endpoints.
WRITTEN: dict[str, Any] = {
    "health": "Unhealthy",
    "reason": "DatabaseDisconnected",
    "reasons": ["DatabaseDisconnected"],
    "message": "database disconnected",
    "target": "mcp-db:8080",
    "endpoint": "http://mcp-db.ns.svc:8080/mcp",
    "lastProbeTime": "2026-11-30T20:00:00Z",
    "lastProbeOutcome": "Ok",
    "latencyMs": 3.2,
    "latency": "3ms",
    "consecutiveFailures": 4,
    "consecutiveSuccesses": 0,
    "observedGeneration": 2,
    "probeMethod": "HealthResource",
    "reportedStatus": "unhealthy",
    "databaseStatus": "disconnected",
    "checks": {"database": {"status": "fail", "message": "unreachable"}},
    "server": {"name": "db", "version": "1.0", "transport": "streamable-http"},
    "pool": {"total": 10, "active": 10, "idle": 0, "utilization": 1.0, "percent": "100%"},
    "unhealthySince": "2026-11-30T19:58:00Z",
    "probedBy": "operator-0",
    "remediation": {
        "actionTimes": [
            {"action": "RestartWorkload", "time": "2026-11-30T19:59:00Z", "result": "restarted"}
        ],
        "originalPoolSize": 10,
        "lastMessage": "restarted Deployment mcp-db",
    },
    "endpoints": [{"address": "10.0.0.7", "port": 8080, "pod": "mcp-db-1", "health": "Unhealthy"}],
    "conditions": [
        {
            "type": "Healthy",
            "status": "False",
            "reason": "DatabaseDisconnected",
            "message": "database disconnected",
            "lastTransitionTime": "2026-11-30T19:58:00Z",
        },
        {
            "type": "Reachable",
            "status": "True",
            "reason": "Answered",
            "message": "",
            "lastTransitionTime": "2026-11-30T19:00:00Z",
        },
    ],
}


def _body(status: dict[str, Any]) -> dict[str, Any]:
    return {
        "metadata": {"namespace": "ns", "name": "m", "uid": "u-1", "generation": 2},
        "spec": {"target": {"service": {"name": "mcp-db", "port": 8080}}},
        "status": status,
    }


def _worker(obj: MonitorObject) -> MonitorWorker:
    return MonitorWorker(
        obj,
        kube=object(),  # type: ignore[arg-type]  # not called while constructing
        config=Config(),
        aggregator=events.Aggregator(),
    )


def test_only_the_fields_a_worker_reads_back_are_kept() -> None:
    obj = MonitorObject.from_body(_body(WRITTEN))
    # What the worker reads: its memory, the remediation record, the
    # endpoints at a reconfiguration, and which replica wrote last.
    assert (
        set(obj.status)
        == STATUS_READ
        == {
            "health",
            "consecutiveFailures",
            "consecutiveSuccesses",
            "conditions",
            "remediation",
            "unhealthySince",
            "probedBy",
            "endpoints",
        }
    )
    assert all(obj.status[k] == WRITTEN[k] for k in STATUS_READ)
    assert "checks" not in obj.status and "server" not in obj.status


def test_a_worker_remembers_the_same_from_the_kept_fields_as_from_the_whole_status() -> None:
    kept = _worker(MonitorObject.from_body(_body(WRITTEN)))
    full = MonitorObject.from_body(_body(WRITTEN))
    whole = _worker(MonitorObject(full.ref, full.generation, full.spec, status=WRITTEN))
    assert kept.memory == whole.memory
    assert kept.memory.history.health is Health.UNHEALTHY
    assert kept.memory.history.consecutive_failures == 4
    assert kept.memory.reachable is True
    assert kept.remediator.ledger == whole.remediator.ledger
    assert kept.remediator.ledger.original_pool_size == 10
    assert kept.remediator.unhealthy_since == whole.remediator.unhealthy_since is not None
    assert kept.remediator.last_message == "restarted Deployment mcp-db"


def test_the_status_names_the_server_of_the_session_probed_last() -> None:
    worker = _worker(MonitorObject.from_body(_body(WRITTEN)))
    old = ServerIdentity("db", "1.0", "2025-11-25", Transport.STREAMABLE_HTTP)
    new = ServerIdentity("db", "1.1", "2025-11-25", Transport.STREAMABLE_HTTP)
    first = worker._identity_of(ProbeResult(Outcome.OK, 1.0, server=old))
    assert first is not None and first.version == "1.0"
    assert worker._identity_of(ProbeResult(Outcome.OK, 1.0, server=old)) is first
    # A new session (the server was upgraded and restarted): its identity.
    upgraded = worker._identity_of(ProbeResult(Outcome.OK, 1.0, server=new))
    assert upgraded is not None and upgraded.version == "1.1"
    assert worker._identity_of(ProbeResult(Outcome.UNREACHABLE, 1.0)) is None
