"""Least privilege, proven: the operator runs as the chart's ServiceAccount.

The chart's RBAC (namespaced mode) is rendered with the real helm and applied
to the real API server (authorization RBAC); the operator then authenticates
with a token of the chart's ServiceAccount and does its whole job: status,
Events, Service lookups, a rollout restart and ConfigMap pool scaling, and
membership through its Lease (create, renew, list, delete on leaving). Verbs
the chart does not grant are refused.
"""

from __future__ import annotations

import asyncio
import functools
import json
import re
import subprocess
import uuid
from pathlib import Path

import yaml

from mcp_health_testbed import controlplane
from mcp_health_testbed.helm import helm_binary
from mcp_health_testbed.postgres import Postgres
from tests.conftest import SampleFactory
from tests.e2e.conftest import Kubectl, OperatorFactory, monitor, service, wait_for
from tests.e2e.test_remediation import (
    RESTART,
    _saturate,
    deployment,
    event,
    finish_rollout,
    health,
    remediated_monitor,
    resolve,
    restarted_at,
)
from tests.e2e.test_security import conditions, secret, with_spec

CHART = Path(__file__).resolve().parents[2] / "helm" / "mcp-health-operator"
AUTH = "auth: {bearerTokenSecretRef: {name: token, key: token}}"


def install_rbac(kubectl: Kubectl, release: str, *values: str) -> str:
    """Apply the chart's ServiceAccount and RBAC for this namespace; return the SA name.

    By default with both opt-ins (Secrets, remediation): the whole job."""
    kubectl("apply", "-f", "-", stdin=render_rbac(kubectl, release, *values))
    return f"{release}-mcp-health-operator"


WHOLE_JOB = (
    "targets.readSecrets=true",
    "remediation.enabled=true",
    # The tests' workloads are Deployments: every kind granted is one exercised.
    "remediation.workloadKinds={Deployment}",
)


def render_rbac(kubectl: Kubectl, release: str, *values: str) -> str:
    """The chart's ServiceAccount and RBAC, namespaced to this test's namespace."""
    scope = ("rbac.scope=namespaced", f"watchNamespaces={{{kubectl.namespace}}}")
    return helm_rbac(kubectl.namespace, release, *scope, *(values or WHOLE_JOB))


def helm_rbac(namespace: str, release: str, *values: str) -> str:
    """``helm template`` of the chart's ServiceAccount and RBAC with these values."""
    return subprocess.run(
        [
            str(helm_binary()),
            "template",
            release,
            str(CHART),
            "--namespace",
            namespace,
            *(arg for value in values for arg in ("--set", value)),
            "--show-only",
            "templates/serviceaccount.yaml",
            "--show-only",
            "templates/rbac.yaml",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout


def rendered_grants(kubectl: Kubectl, release: str, *values: str) -> set[tuple[str, str, str]]:
    """(apiGroup, resource, verb) of every rule the chart renders for this install."""
    return {
        (group, resource, verb)
        for doc in yaml.safe_load_all(render_rbac(kubectl, release, *values))
        if doc and doc["kind"] in ("Role", "ClusterRole")
        for rule in doc["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


def service_account_kubeconfig(kubectl: Kubectl, sa: str, path: Path) -> Path:
    token = kubectl("create", "token", sa, "--duration=1h").stdout.strip()
    path.write_text(
        controlplane.kubeconfig_text(
            server=kubectl.plane.server,
            ca_file=kubectl.plane.ca_file,
            user=sa,
            token=token,
            namespace=kubectl.namespace,
        )
    )
    return path


def as_operator(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(controlplane.kubectl_binary()), "--kubeconfig", str(config), *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_operator_does_its_whole_job_with_the_charts_rbac_and_no_more(
    kubectl: Kubectl,
    operator: OperatorFactory,
    sample_server: SampleFactory,
    own_pg: Postgres,
    tmp_path: Path,
) -> None:
    release = f"r{uuid.uuid4().hex[:6]}"
    sa = install_rbac(kubectl, release)
    config = service_account_kubeconfig(kubectl, sa, tmp_path / "sa.kubeconfig")

    server = sample_server("codebase-mcp", dsn=own_pg.dsn, pool_size=10)
    kubectl.apply(service("codebase-mcp"))
    kubectl.apply(deployment("codebase-mcp"))
    finish_rollout(kubectl, "codebase-mcp")
    kubectl("create", "configmap", "codebase-pool", "--from-literal=pool-size=10")
    kubectl("label", "configmap", "codebase-pool", "mcphealth.dev/allow-remediation=true")
    op = operator(
        "--membership",
        "--identity",
        "op-0",
        "--lease-duration",
        "3",
        "--lease-renew",
        "1",
        *resolve(kubectl, "codebase-mcp", server),
        kubeconfig=config,
    )

    # Status, Events and a rollout restart, as the ServiceAccount.
    kubectl.apply(remediated_monitor("restarts", "codebase-mcp", RESTART))
    scaling = (
        "    poolScaling: {after: 2s, step: 5, max: 50, method: configMap, "
        "configMap: {name: codebase-pool, key: pool-size}}\n"
    )
    kubectl.apply(remediated_monitor("scales", "codebase-mcp", scaling))
    wait_for(lambda: health(kubectl, "restarts") == "Healthy", timeout=30, what="Healthy")
    wait_for(lambda: health(kubectl, "scales") == "Healthy", timeout=30, what="Healthy")

    asyncio.run(_saturate(server, 10))
    wait_for(
        lambda: kubectl.json("configmap", "codebase-pool")["data"]["pool-size"] == "15",
        timeout=40,
        what="ConfigMap scaled by the ServiceAccount",
    )
    asyncio.run(_release(server))
    wait_for(lambda: health(kubectl, "restarts") == "Healthy", timeout=30, what="Healthy again")
    own_pg.stop()
    # The restart may have come already, while the pool was saturated: the
    # outage must be seen before the database comes back.
    wait_for(lambda: _database_down(kubectl), timeout=30, what="the database seen down")
    wait_for(lambda: restarted_at(kubectl, "codebase-mcp"), timeout=40, what="restartedAt")
    assert event(kubectl, "restarts", "RestartTriggered")
    assert event(kubectl, "restarts", "HealthUnhealthy")
    # Healthy again: a recovery that repeats an earlier one exactly bumps the
    # same Event's count (a patch). Its message names the state left ("was
    # Degraded" or "was Unhealthy"), and a recovery may pass through
    # Degraded, so one more outage may be needed: of three recoveries two
    # are alike.
    for outage in range(3):
        if outage:
            own_pg.stop()
            wait_for(lambda: _database_down(kubectl), timeout=30, what="the database seen down")
        before = _recoveries(kubectl)
        own_pg.start()
        wait_for(functools.partial(_recovered_since, kubectl, before), timeout=90, what="recovered")
        if any(e["count"] >= 2 for e in event(kubectl, "restarts", "HealthRecovered")):
            break
    else:
        raise AssertionError(f"no HealthRecovered counted twice: {_recovered(kubectl)}")

    # A monitor naming a Secret: the operator reads it (and watches Secrets).
    # (Added only now: a third Unhealthy monitor would have tripped the breaker.)
    kubectl.apply(secret("token", token="t0k3n"))
    kubectl.apply(with_spec(monitor("authed", service="codebase-mcp"), AUTH))
    wait_for(lambda: health(kubectl, "authed") == "Healthy", timeout=30, what="'authed' Healthy")
    assert conditions(kubectl, "authed")["Reachable"]["status"] == "True"

    # A monitor of a Service that does not exist: the shared watch holds no
    # copy of it, so the operator asks the API server (get services) and
    # refuses the monitor.
    kubectl.apply(monitor("nowhere", service="not-there"))
    wait_for(
        lambda: (
            conditions(kubectl, "nowhere").get("Reachable", {}).get("reason") == "ServiceNotFound"
        ),
        timeout=30,
        what="'nowhere' refused",
    )

    # Its Lease, created and renewed (patched) as the ServiceAccount, and listed.
    lease = kubectl.json("lease", "mcp-health-operator-op-0")
    assert lease["spec"]["holderIdentity"] == "op-0"
    renewed = lease["spec"]["renewTime"]
    wait_for(
        lambda: kubectl.json("lease", "mcp-health-operator-op-0")["spec"]["renewTime"] != renewed,
        timeout=10,
        what="the Lease renewed",
    )

    log = op.log.read_text()
    # Not after a comma: a log timestamp's milliseconds may read 403.
    forbidden = re.search(r"(?<!,)\b403\b", log) or "forbidden" in log.lower()
    assert not forbidden, log[-3000:]
    assert "joined as op-0" in log and "members: op-0" in log, log[-3000:]
    # Leaving deletes the Lease (graceful stop).
    op.stop()
    gone = kubectl("get", "lease", "mcp-health-operator-op-0", check=False)
    assert gone.returncode != 0 and "NotFound" in gone.stderr, gone.stderr
    assert "forbidden" not in op.log.read_text().lower()

    # Every verb the chart grants is a call the operator made (the API server's
    # audit log of the ServiceAccount), but deleting a pod and reading one for
    # its consent label: per-endpoint remediation, whose test under the same
    # RBAC checks those two (test_per_endpoint.py).
    user = f"system:serviceaccount:{kubectl.namespace}:{sa}"
    calls = controlplane.audited_calls(kubectl.plane.audit_log, user)
    granted = rendered_grants(kubectl, release)
    pods = {("", "pods", "get"), ("", "pods", "delete")}
    assert granted - calls - pods == set(), sorted(granted - calls)
    assert calls <= granted, sorted(calls - granted)

    # And nothing more than the chart grants.
    refused = {
        "delete a Deployment": ("delete", "deployment", "codebase-mcp"),
        "read Secrets of another namespace": ("get", "secrets", "-n", "default"),
        "create Pods": ("run", "x", "--image=example.invalid/x", "--restart=Never"),
        "edit a monitor's spec": (
            "patch",
            "mcphealth",
            "restarts",
            "--type=merge",
            "-p",
            '{"spec": {"probe": {"interval": "9s"}}}',
        ),
        "list Nodes": ("get", "nodes"),
        "read Leases of another namespace": ("get", "leases", "-n", "default"),
    }
    for what, args in refused.items():
        done = as_operator(config, *args)
        assert done.returncode != 0, what
        assert "forbidden" in done.stderr.lower(), (what, done.stderr)


def _database_down(kubectl: Kubectl) -> bool:
    """The monitor 'restarts', Healthy before, judged the outage: Unhealthy, whether its
    server answered "disconnected" or did not answer within the probe's 800 ms (the
    server's own database check may wait up to its 2 s connect timeout)."""
    return health(kubectl, "restarts") == "Unhealthy"


def _recovered(kubectl: Kubectl) -> list[tuple[str, int]]:
    return [(e["message"], e["count"]) for e in event(kubectl, "restarts", "HealthRecovered")]


def _recovered_since(kubectl: Kubectl, before: int) -> bool:
    return _recoveries(kubectl) > before


def _recoveries(kubectl: Kubectl) -> int:
    """HealthRecovered Events of the monitor 'restarts', each counted as often as it happened."""
    return sum(count for _, count in _recovered(kubectl))


async def _release(server: object) -> None:
    from mcp import Client

    async with Client(server.url, cache=None) as client:  # type: ignore[attr-defined]
        await client.call_tool("release_pool", {})


DISCOVERY = (
    "discovery.services.enabled=true",
    "discovery.mcpServers.groups={toolhive.stacklok.dev,kagent.dev,mcp.x-k8s.io}",
)


def test_discovery_calls_every_verb_its_values_add_and_nothing_ungranted(
    kubectl: Kubectl,
    operator: OperatorFactory,
    sample_server: SampleFactory,
    pg: Postgres,
    tmp_path: Path,
) -> None:
    """The chart's RBAC with discovery on (and no other opt-in): the operator, as the
    ServiceAccount, generates, updates and deletes a monitor and follows the MCPServers
    of the three operators; the audit log holds every verb discovery adds to a call."""
    from tests.e2e.test_discovery import (
        MONITOR,
        discovering,
        generated,
        install_third_party_crds,
        mcp_server,
    )

    install_third_party_crds(kubectl)
    release = f"r{uuid.uuid4().hex[:6]}"
    sa = install_rbac(kubectl, release, *DISCOVERY)
    config = service_account_kubeconfig(kubectl, sa, tmp_path / "sa.kubeconfig")
    server = sample_server("codebase-mcp", dsn=pg.dsn)
    op = operator(
        # What the chart passes without readSecrets and remediation.
        "--no-secrets",
        "--pause-remediation",
        *resolve(kubectl, "discovered", server),
        kubeconfig=config,
        env=discovering(groups=("toolhive.stacklok.dev", "kagent.dev", "mcp.x-k8s.io")),
    )
    kubectl.apply(service("discovered"))
    kubectl("annotate", "service", "discovered", f"{MONITOR}=true")  # create
    wait_for(lambda: generated(kubectl, "discovered"), timeout=30, what="the monitor generated")
    wait_for(lambda: health(kubectl, "discovered") == "Healthy", timeout=40, what="Healthy")
    kubectl("annotate", "service", "discovered", "mcphealth.dev/interval=2s")  # patch
    wait_for(
        lambda: (generated(kubectl, "discovered") or {})["spec"]["probe"]["interval"] == "2s",
        timeout=30,
        what="the generated monitor patched",
    )
    kubectl.apply(mcp_server("kagent.dev", "v1alpha1", "fetch", {"deployment": {"port": 8000}}))
    wait_for(lambda: generated(kubectl, "fetch"), timeout=30, what="the MCPServer's monitor")
    kubectl("annotate", "service", "discovered", f"{MONITOR}-")  # delete
    wait_for(lambda: generated(kubectl, "discovered") is None, timeout=30, what="deleted")

    log = op.log.read_text()
    forbidden = re.search(r"(?<!,)\b403\b", log) or "forbidden" in log.lower()
    assert not forbidden, log[-3000:]
    user = f"system:serviceaccount:{kubectl.namespace}:{sa}"
    calls = controlplane.audited_calls(kubectl.plane.audit_log, user)
    granted = rendered_grants(kubectl, release, *DISCOVERY)
    added = granted - rendered_grants(kubectl, release, "discovery.services.enabled=false")
    assert added == {
        ("mcphealth.dev", "mcphealthmonitors", "create"),
        ("mcphealth.dev", "mcphealthmonitors", "patch"),
        ("mcphealth.dev", "mcphealthmonitors", "delete"),
        *(
            (group, "mcpservers", verb)
            for group in ("toolhive.stacklok.dev", "kagent.dev", "mcp.x-k8s.io")
            for verb in ("list", "watch")
        ),
    }
    assert added - calls == set(), sorted(added - calls)
    assert calls <= granted, sorted(calls - granted)
    refused = {
        "replace a monitor (update)": ("replace", "-f", "-"),
        "read one MCPServer": ("get", "mcpservers.kagent.dev", "fetch"),
        "delete a Service": ("delete", "service", "discovered"),
    }
    monitor_json = json.dumps(kubectl.json("mcphealth", "fetch"))
    for what, args in refused.items():
        done = subprocess.run(
            [str(controlplane.kubectl_binary()), "--kubeconfig", str(config), *args],
            input=monitor_json if "-" in args else None,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode != 0, what
        assert "forbidden" in done.stderr.lower(), (what, done.stderr)
