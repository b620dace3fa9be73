"""Remediation end to end: rollout restarts and pool scaling on the real API server.

There is no controller manager, so no pod ever runs: tests assert on the
patches the operator makes, and play the Deployment controller's part by
patching the Deployment's status when a rollout should count as finished.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from functools import partial
from pathlib import Path
from typing import Any

from mcp import Client

from mcp_health_operator.core.targets import Target
from mcp_health_operator.probing.probe import Prober
from mcp_health_testbed.postgres import Postgres
from mcp_health_testbed.samples import SampleServer
from tests.conftest import SampleFactory
from tests.e2e.conftest import Kubectl, OperatorFactory, service, wait_for

RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"


def deployment(name: str, pool_size: int = 10) -> str:
    return f"""apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
  # Its owner allows remediation (without it: RemediationNotPermitted).
  labels: {{mcphealth.dev/allow-remediation: "true"}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:
      containers:
        - name: server
          image: example.invalid/{name}:2.0.0
          env: [{{name: DB_POOL_MAX_SIZE, value: "{pool_size}"}}]
"""


def finish_rollout(kubectl: Kubectl, name: str) -> None:
    """Play the Deployment controller: the current generation is rolled out."""
    generation = kubectl.json("deployment", name)["metadata"]["generation"]
    status = {
        "observedGeneration": generation,
        "replicas": 1,
        "updatedReplicas": 1,
        "readyReplicas": 1,
        "availableReplicas": 1,
    }
    kubectl(
        "patch",
        "deployment",
        name,
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps({"status": status}),
    )


def remediated_monitor(name: str, svc: str, remediation: str, *, interval: str = "1s") -> str:
    return f"""apiVersion: mcphealth.dev/v1alpha1
kind: MCPHealthMonitor
metadata: {{name: {name}}}
spec:
  target: {{service: {{name: {svc}, port: 8000}}}}
  probe: {{interval: {interval}, timeout: 800ms, failureThreshold: 2}}
  remediation:
{remediation}"""


RESTART = """    cooldown: 10m
    workload: {name: codebase-mcp}
    restart: {after: 2s}
"""


def restarted_at(kubectl: Kubectl, name: str) -> str | None:
    template = kubectl.json("deployment", name)["spec"]["template"]
    value = (template["metadata"].get("annotations") or {}).get(RESTARTED_AT)
    return str(value) if value else None


def reasons(kubectl: Kubectl, name: str) -> list[str]:
    return [e["reason"] for e in kubectl.events(name)]


def event(kubectl: Kubectl, name: str, reason: str) -> list[dict[str, Any]]:
    return [e for e in kubectl.events(name) if e["reason"] == reason]


def is_healthy(kubectl: Kubectl, name: str) -> bool:
    return health(kubectl, name) == "Healthy"


def health(kubectl: Kubectl, name: str) -> str | None:
    return (kubectl.json("mcphealth", name).get("status") or {}).get("health")


def remediation_status(kubectl: Kubectl, name: str) -> dict[str, Any]:
    return (kubectl.json("mcphealth", name).get("status") or {}).get("remediation") or {}


def resolve(kubectl: Kubectl, svc: str, server: SampleServer) -> list[str]:
    return ["--resolve", f"{svc}.{kubectl.namespace}.svc:8000=127.0.0.1:{server.port}"]


def test_unhealthy_spell_restarts_once_and_the_cooldown_suppresses_the_next(
    kubectl: Kubectl, operator: OperatorFactory, sample_server: SampleFactory, own_pg: Postgres
) -> None:
    server = sample_server("codebase-mcp", dsn=own_pg.dsn)
    kubectl.apply(service("codebase-mcp"))
    kubectl.apply(deployment("codebase-mcp"))
    finish_rollout(kubectl, "codebase-mcp")
    op = operator(*resolve(kubectl, "codebase-mcp", server))
    kubectl.apply(remediated_monitor("m", "codebase-mcp", RESTART))
    wait_for(lambda: health(kubectl, "m") == "Healthy", timeout=30, what="Healthy")
    assert restarted_at(kubectl, "codebase-mcp") is None

    own_pg.stop()
    stamp = wait_for(lambda: restarted_at(kubectl, "codebase-mcp"), timeout=40, what="restartedAt")
    triggered = wait_for(
        lambda: event(kubectl, "m", "RestartTriggered"), timeout=10, what="RestartTriggered"
    )
    assert "Unhealthy for" in triggered[0]["message"]
    ledger = wait_for(
        lambda: (
            remediation_status(kubectl, "m").get("lastResult") == "success"
            and remediation_status(kubectl, "m")
        ),
        timeout=10,
        what="ledger",
    )
    assert ledger["lastAction"] == "restart"
    assert ledger["actionsInWindow"] == 1
    assert ledger["nextAllowedTime"]

    # Recovery, the rollout finishes, then a second spell inside the cooldown.
    own_pg.start()
    wait_for(lambda: health(kubectl, "m") == "Healthy", timeout=30, what="Healthy again")
    finish_rollout(kubectl, "codebase-mcp")
    own_pg.stop()
    suppressed = wait_for(
        lambda: event(kubectl, "m", "RestartSuppressed"), timeout=40, what="RestartSuppressed"
    )
    assert suppressed[0]["message"].startswith("Cooldown")
    assert restarted_at(kubectl, "codebase-mcp") == stamp  # no second patch
    labels = {"namespace": kubectl.namespace, "monitor": "m", "action": "restart"}
    assert op.value("mcp_remediation_actions_total", **labels, result="success") == 1.0
    assert op.value("mcp_remediation_actions_total", **labels, result="suppressed") == 1.0


def test_rollout_in_progress_suppresses_the_restart(
    kubectl: Kubectl, operator: OperatorFactory, sample_server: SampleFactory, own_pg: Postgres
) -> None:
    server = sample_server("codebase-mcp", dsn=own_pg.dsn)
    kubectl.apply(service("codebase-mcp"))
    kubectl.apply(deployment("codebase-mcp"))  # no status: the rollout never finished
    operator(*resolve(kubectl, "codebase-mcp", server))
    kubectl.apply(remediated_monitor("m", "codebase-mcp", RESTART))
    wait_for(lambda: health(kubectl, "m") == "Healthy", timeout=30, what="Healthy")
    own_pg.stop()
    held = wait_for(
        lambda: event(kubectl, "m", "RestartSuppressed"), timeout=40, what="RestartSuppressed"
    )
    assert held[0]["message"].startswith("RolloutInProgress")
    assert restarted_at(kubectl, "codebase-mcp") is None


def test_dry_run_and_pause_record_but_never_patch(
    kubectl: Kubectl, operator: OperatorFactory, sample_server: SampleFactory, own_pg: Postgres
) -> None:
    server = sample_server("codebase-mcp", dsn=own_pg.dsn)
    kubectl.apply(service("codebase-mcp"))
    kubectl.apply(deployment("codebase-mcp"))
    finish_rollout(kubectl, "codebase-mcp")
    operator(*resolve(kubectl, "codebase-mcp", server))
    kubectl.apply(remediated_monitor("dry", "codebase-mcp", "    dryRun: true\n" + RESTART))
    paused = remediated_monitor("paused", "codebase-mcp", RESTART).replace(
        "metadata: {name: paused}",
        "metadata: {name: paused, annotations: {mcphealth.dev/remediation-paused: 'true'}}",
    )
    kubectl.apply(paused)
    wait_for(lambda: health(kubectl, "dry") == "Healthy", timeout=30, what="Healthy")
    own_pg.stop()
    dry = wait_for(
        lambda: event(kubectl, "dry", "RemediationDryRun"), timeout=40, what="RemediationDryRun"
    )
    assert "dry run: Unhealthy for" in dry[0]["message"]
    assert remediation_status(kubectl, "dry")["lastResult"] == "dry-run"
    held = wait_for(
        lambda: event(kubectl, "paused", "RestartSuppressed"), timeout=40, what="paused hold"
    )
    assert held[0]["message"].startswith("RemediationPaused")
    assert restarted_at(kubectl, "codebase-mcp") is None


def test_a_monitor_cannot_touch_a_workload_in_another_namespace(
    kubectl: Kubectl, operator: OperatorFactory, sample_server: SampleFactory, own_pg: Postgres
) -> None:
    other = f"other-{uuid.uuid4().hex[:6]}"
    kubectl("create", "namespace", other, namespaced=False)
    kubectl("apply", "-n", other, "-f", "-", stdin=deployment("codebase-mcp"), namespaced=False)
    server = sample_server("codebase-mcp", dsn=own_pg.dsn)
    kubectl.apply(service("codebase-mcp"))
    operator(*resolve(kubectl, "codebase-mcp", server))

    # The spec has no way to name another namespace: strict validation refuses it.
    sneaky = remediated_monitor(
        "m",
        "codebase-mcp",
        RESTART.replace("{name: codebase-mcp}", f"{{name: codebase-mcp, namespace: {other}}}"),
    )
    refused = kubectl("apply", "--validate=strict", "-f", "-", stdin=sneaky, check=False)
    assert refused.returncode != 0
    assert 'unknown field "spec.remediation.workload.namespace"' in refused.stderr

    kubectl.apply(remediated_monitor("m", "codebase-mcp", RESTART))
    wait_for(lambda: health(kubectl, "m") == "Healthy", timeout=30, what="Healthy")
    own_pg.stop()
    held = wait_for(
        lambda: event(kubectl, "m", "RestartSuppressed"), timeout=40, what="RestartSuppressed"
    )
    assert held[0]["message"].startswith("WorkloadNotFound")
    theirs = json.loads(
        kubectl(
            "get", "deployment", "codebase-mcp", "-n", other, "-o", "json", namespaced=False
        ).stdout
    )
    assert RESTARTED_AT not in (theirs["spec"]["template"]["metadata"].get("annotations") or {})
    assert theirs["metadata"]["generation"] == 1


async def _saturate(server: SampleServer, connections: int) -> None:
    async with Client(server.url, cache=None) as client:
        await client.call_tool("saturate_pool", {"connections": connections, "seconds": 120})


def _pool_total(server: SampleServer) -> int:
    async def read() -> int:
        prober = Prober(Target(server.base_url), timeout=5)
        try:
            result = await prober.probe()
        finally:
            await prober.aclose()
        assert result.document is not None and result.document.connection_pool is not None
        return result.document.connection_pool.total_connections

    return asyncio.run(read())


SCALE = """    workload: {{name: codebase-mcp}}
    poolScaling: {{after: 2s, step: 5, max: 50, method: {method}{extra}}}
"""


def test_pool_exhaustion_raises_the_env_var_by_step(
    kubectl: Kubectl, operator: OperatorFactory, sample_server: SampleFactory, pg: Postgres
) -> None:
    server = sample_server("codebase-mcp", dsn=pg.dsn, pool_size=10)
    kubectl.apply(service("codebase-mcp"))
    kubectl.apply(deployment("codebase-mcp", pool_size=10))
    finish_rollout(kubectl, "codebase-mcp")
    operator(*resolve(kubectl, "codebase-mcp", server))
    kubectl.apply(remediated_monitor("m", "codebase-mcp", SCALE.format(method="env", extra="")))
    wait_for(lambda: health(kubectl, "m") == "Healthy", timeout=30, what="Healthy")
    asyncio.run(_saturate(server, 10))

    def env_value() -> str | None:
        containers = kubectl.json("deployment", "codebase-mcp")["spec"]["template"]["spec"]
        env = {e["name"]: e.get("value") for e in containers["containers"][0].get("env", [])}
        return env.get("DB_POOL_MAX_SIZE") if env.get("DB_POOL_MAX_SIZE") != "10" else None

    assert wait_for(env_value, timeout=40, what="DB_POOL_MAX_SIZE raised") == "15"
    scaled = wait_for(lambda: event(kubectl, "m", "PoolScaled"), timeout=10, what="PoolScaled")
    assert "size 10 -> 15" in scaled[0]["message"]
    assert "DB_POOL_MAX_SIZE=15" in scaled[0]["message"]


def test_pool_exhaustion_raises_the_configmap_key_and_the_server_applies_it(
    kubectl: Kubectl,
    operator: OperatorFactory,
    sample_server: SampleFactory,
    pg: Postgres,
    tmp_path: Path,
) -> None:
    size_file = tmp_path / "pool-size"
    size_file.write_text("10")
    server = sample_server(
        "codebase-mcp", dsn=pg.dsn, pool_size=10, extra_args=("--pool-size-file", str(size_file))
    )
    kubectl.apply(service("codebase-mcp"))
    kubectl("create", "configmap", "codebase-pool", "--from-literal=pool-size=10")
    kubectl("label", "configmap", "codebase-pool", "mcphealth.dev/allow-remediation=true")
    operator(*resolve(kubectl, "codebase-mcp", server))
    extra = ", configMap: {name: codebase-pool, key: pool-size}"
    kubectl.apply(
        remediated_monitor("m", "codebase-mcp", SCALE.format(method="configMap", extra=extra))
    )
    wait_for(lambda: health(kubectl, "m") == "Healthy", timeout=30, what="Healthy")
    asyncio.run(_saturate(server, 10))

    def key() -> str | None:
        value = kubectl.json("configmap", "codebase-pool")["data"]["pool-size"]
        return str(value) if value != "10" else None

    assert wait_for(key, timeout=40, what="ConfigMap key raised") == "15"
    # Play the kubelet: the mounted ConfigMap file takes the new value.
    size_file.write_text(key() or "")
    assert wait_for(lambda: _pool_total(server) == 15, timeout=15, what="live pool of 15")


def test_mcp_tool_method_grows_the_live_pool_and_utilization_falls(
    kubectl: Kubectl, operator: OperatorFactory, sample_server: SampleFactory, pg: Postgres
) -> None:
    server = sample_server("codebase-mcp", dsn=pg.dsn, pool_size=10)
    kubectl.apply(service("codebase-mcp"))
    operator(*resolve(kubectl, "codebase-mcp", server))
    kubectl.apply(
        remediated_monitor(
            "m", "codebase-mcp", "    poolScaling: {after: 2s, step: 5, max: 50, method: mcpTool}\n"
        )
    )
    wait_for(lambda: health(kubectl, "m") == "Healthy", timeout=30, what="Healthy")
    asyncio.run(_saturate(server, 10))
    wait_for(lambda: health(kubectl, "m") == "Unhealthy", timeout=30, what="Unhealthy")

    def pool() -> dict[str, Any] | None:
        st = kubectl.json("mcphealth", "m").get("status") or {}
        p = st.get("pool") or {}
        return p if p.get("total") == 15 else None

    grown = wait_for(pool, timeout=40, what="pool of 15 in status")
    assert grown["utilization"] < 0.95  # 10 busy of 15
    assert _pool_total(server) == 15  # the live server's pool, not just a number
    scaled = wait_for(lambda: event(kubectl, "m", "PoolScaled"), timeout=10, what="PoolScaled")
    assert "tool scale_pool(size=15)" in scaled[0]["message"]
    wait_for(lambda: health(kubectl, "m") != "Unhealthy", timeout=30, what="out of Unhealthy")


def test_mass_failure_breaker_holds_every_remediation(
    kubectl: Kubectl, operator: OperatorFactory, sample_server: SampleFactory, own_pg: Postgres
) -> None:
    server = sample_server("codebase-mcp", dsn=own_pg.dsn)
    kubectl.apply(deployment("codebase-mcp"))
    finish_rollout(kubectl, "codebase-mcp")
    names = [f"svc-{i}" for i in range(4)]
    flags: list[str] = []
    for name in names:
        kubectl.apply(service(name))
        flags += resolve(kubectl, name, server)
        kubectl.apply(remediated_monitor(name, name, RESTART))
    operator(*flags)
    for name in names:
        wait_for(partial(is_healthy, kubectl, name), timeout=30, what=f"{name} Healthy")
    own_pg.stop()
    for name in names:
        held = wait_for(partial(event, kubectl, name, "RestartSuppressed"), timeout=40, what="held")
        assert held[0]["message"].startswith("MassFailure")
    assert restarted_at(kubectl, "codebase-mcp") is None
