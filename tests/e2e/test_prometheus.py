"""A real Prometheus scrapes the operator during an outage: the guide's alert fires."""

from __future__ import annotations

from pathlib import Path

from mcp_health_testbed.postgres import Postgres
from tests.conftest import SampleFactory
from tests.e2e.conftest import Kubectl, OperatorFactory, monitor, service, wait_for
from tests.e2e.test_remediation import health, resolve
from tests.packaging.prometheus import RULES, Prometheus


def test_mcp_unhealthy_goes_pending_then_firing_on_a_postgres_outage(
    kubectl: Kubectl,
    operator: OperatorFactory,
    sample_server: SampleFactory,
    own_pg: Postgres,
    tmp_path: Path,
) -> None:
    server = sample_server("codebase-mcp", dsn=own_pg.dsn)
    kubectl.apply(service("codebase-mcp"))
    op = operator(*resolve(kubectl, "codebase-mcp", server))
    kubectl.apply(monitor("shop", service="codebase-mcp", failure_threshold=2))
    wait_for(lambda: health(kubectl, "shop") == "Healthy", timeout=30, what="Healthy")

    target = f"127.0.0.1:{op.metrics_port}"
    with Prometheus(tmp_path / "prom", rule_files=[RULES], scrape_targets=[target]) as prom:
        selector = f'mcp_health_status{{namespace="{kubectl.namespace}",monitor="shop"}}'
        assert prom.wait_for(f"{selector} == 1", timeout=30)
        assert not [a for a in prom.alerts() if a["labels"]["alertname"] == "MCPUnhealthy"]

        own_pg.stop()
        pending = prom.wait_for_alert("MCPUnhealthy", timeout=60)
        assert pending[0]["labels"]["monitor"] == "shop"
        assert pending[0]["labels"]["severity"] == "critical"
        firing = prom.wait_for_alert("MCPUnhealthy", states=("firing",), timeout=60)
        assert firing[0]["labels"]["namespace"] == kubectl.namespace
        assert prom.wait_for_alert("MCPDatabaseDisconnected", timeout=60)
