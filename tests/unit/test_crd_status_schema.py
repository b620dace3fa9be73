"""Every status field the operator writes is declared in the CRD's status schema."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from mcp_health_operator.controller.remediator import Remediator
from mcp_health_operator.core import health, judge, spec, status
from mcp_health_operator.core.config import Config
from mcp_health_operator.core.remediation import Action, FleetState, record
from tests.unit.test_health_document import SEED_EXAMPLE

CRD = Path(__file__).resolve().parents[2] / "crds" / "mcphealth.dev_mcphealthmonitors.yaml"


def _status_schema() -> dict[str, Any]:
    crd = yaml.safe_load(CRD.read_text())
    [version] = [v for v in crd["spec"]["versions"] if v["storage"]]
    schema: dict[str, Any] = version["schema"]["openAPIV3Schema"]["properties"]["status"]
    return schema


def test_every_written_status_field_is_declared() -> None:
    obs = judge.Observation(outcome="Ok", latency_ms=5.0, document=health.parse(SEED_EXAMPLE))
    verdict = judge.judge(obs, judge.Thresholds(), judge.History(health=judge.Health.UNHEALTHY))
    written = status.build(
        verdict=verdict,
        obs=obs,
        thresholds=judge.Thresholds(),
        identity=status.Identity("codebase-mcp", "2.0.0", "2025-06-18", "streamable-http"),
        target="svc/codebase-mcp:8000",
        endpoint="http://codebase-mcp.default.svc:8000/mcp",
        generation=3,
        previous_conditions=[],
        now=datetime.now(UTC),
    )
    remediation = spec.parse(
        {
            "target": {"service": {"name": "codebase-mcp", "port": 8000}},
            "remediation": {"workload": {"name": "codebase-mcp"}, "restart": {"after": "30s"}},
        }
    ).remediation
    remediator = Remediator(
        kube=None,  # type: ignore[arg-type]
        config=Config(),
        figures=None,  # type: ignore[arg-type]
        fleet_state=lambda: FleetState(1, 1, 0),
        status={},
        clock=lambda: 1_790_000_000.0,
    )
    remediator.unhealthy_since = 1_790_000_000.0
    remediator.ledger = record(remediator.ledger, Action.RESTART, 1_790_000_000.0, "success")
    written.update(remediator.status_fields(remediation))
    written["probedBy"] = "operator-0"
    declared = _status_schema()["properties"]
    assert "unhealthySince" in written
    assert set(written) - set(declared) == set()
    assert set(written["remediation"]) - set(declared["remediation"]["properties"]) == set()
