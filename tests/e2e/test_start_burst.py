"""Three hundred monitors starting at once against healthy servers: no false Degraded.

At creation and again at an operator restart every monitor makes its session
at the same moment on a 2-core machine; that start-up must not read as the
servers being slow (ProbeLatencyHigh), in status or in Events.
"""

from __future__ import annotations

import json
import time

from tests.conftest import FleetFactory
from tests.e2e.conftest import Kubectl, OperatorFactory, service, wait_for

N = 300


def _monitors(n: int) -> str:
    items = [
        {
            "apiVersion": "mcphealth.dev/v1alpha1",
            "kind": "MCPHealthMonitor",
            "metadata": {"name": f"m{i}"},
            "spec": {
                "target": {"service": {"name": "fleet", "port": 8000}, "path": f"/t/{i}/mcp"},
                "probe": {"interval": "5s", "timeout": "1s"},
            },
        }
        for i in range(n)
    ]
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": items})


def _healths(kubectl: Kubectl) -> dict[str, int]:
    counts: dict[str, int] = {}
    for item in kubectl.json("mcphealth")["items"]:
        health = (item.get("status") or {}).get("health") or "None"
        counts[health] = counts.get(health, 0) + 1
    return counts


def _degraded_events(kubectl: Kubectl) -> list[str]:
    items = kubectl.json("events", "--field-selector", "reason=HealthDegraded")["items"]
    return [f"{e['involvedObject']['name']}: {e['message']}" for e in items]


def test_300_monitors_starting_at_once_post_no_degraded(
    kubectl: Kubectl, operator: OperatorFactory, start_fleet: FleetFactory
) -> None:
    base = start_fleet(N)
    resolve = ["--resolve", f"fleet.{kubectl.namespace}.svc:8000={base.removeprefix('http://')}"]
    kubectl.apply(service("fleet"))
    op = operator(*resolve)
    kubectl.apply(_monitors(N))
    wait_for(lambda: _healths(kubectl).get("Healthy") == N, timeout=180, what="all Healthy")
    assert _degraded_events(kubectl) == []

    # An operator restart: every monitor starts again at once.
    op.stop()
    operator(*resolve)
    time.sleep(20)  # four intervals: every monitor's first probes and then some
    assert _healths(kubectl) == {"Healthy": N}
    assert _degraded_events(kubectl) == []
