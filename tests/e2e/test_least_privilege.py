"""Safe to install cluster-wide, on the real API server with RBAC authorization.

* What the chart's ServiceAccount may do, asked of the API server itself
  (``kubectl auth can-i``) for the default values and for each opt-in.
* The confused deputy: someone who may create monitors but not patch
  Deployments cannot get a Deployment patched through the operator unless
  the Deployment's owner labelled it.
* No SSRF through Services: an ExternalName Service pointing at the metadata
  address or at the API server is refused with a reason on the status, even
  when URL targets are allowed.
"""

from __future__ import annotations

import asyncio
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from mcp_health_testbed import controlplane
from mcp_health_testbed.postgres import Postgres
from tests.conftest import SampleFactory
from tests.e2e.conftest import Kubectl, OperatorFactory, monitor, service, wait_for
from tests.e2e.test_chart_rbac import helm_rbac, install_rbac, service_account_kubeconfig
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
from tests.e2e.test_security import conditions

CONSENT = "mcphealth.dev/allow-remediation"

# What no install may grant (whatever the values): create or delete
# workloads, read Nodes, edit monitors' specs (but discovery's patch, below).
NEVER = [
    ("create", "deployments"),
    ("delete", "deployments"),
    ("create", "pods"),
    ("list", "pods"),
    ("update", "mcphealthmonitors"),
    ("patch", "mcphealthmonitors"),
    ("update", "mcphealthmonitors/status"),
    ("list", "nodes"),
]
MONITORING = [
    ("list", "mcphealthmonitors"),
    ("watch", "mcphealthmonitors"),
    ("patch", "mcphealthmonitors/status"),
    ("create", "events"),
    ("get", "services"),
    ("watch", "endpointslices.discovery.k8s.io"),
]
SECRETS = [("get", "secrets"), ("watch", "secrets")]
REMEDIATION = [
    ("patch", "deployments.apps"),
    ("patch", "statefulsets.apps"),
    ("patch", "configmaps"),
    ("delete", "pods"),
    ("get", "mcphealthmonitors"),
]
# discovery: the monitors it generates (create, a patch that tests first,
# delete) and the MCPServers of the followed groups (never update, never get).
DISCOVERY_MONITORS = [
    ("create", "mcphealthmonitors"),
    ("patch", "mcphealthmonitors"),
    ("delete", "mcphealthmonitors"),
]
DISCOVERY_SERVERS = [
    (verb, f"mcpservers.{group}")
    for group in ("toolhive.stacklok.dev", "kagent.dev", "mcp.x-k8s.io")
    for verb in ("list", "watch")
]
NOT_EVEN_DISCOVERY = [("get", "mcpservers.kagent.dev"), ("update", "mcpservers.kagent.dev")]


@pytest.fixture
def two_namespaces(kubectl: Kubectl) -> Iterator[tuple[str, str]]:
    names = (f"a-{uuid.uuid4().hex[:6]}", f"b-{uuid.uuid4().hex[:6]}")
    for ns in names:
        kubectl("create", "namespace", ns, namespaced=False)
    yield names
    for ns in names:
        kubectl("delete", "namespace", ns, "--wait=false", namespaced=False, check=False)


def install_cluster_wide(kubectl: Kubectl, release: str, *values: str) -> str:
    """The chart's ServiceAccount and RBAC, rbac.scope=cluster; the SA's user name."""
    rendered = helm_rbac(kubectl.namespace, release, "membership.mode=off", *values)
    # The Roles name their namespaces: applied without a default namespace.
    kubectl("apply", "-f", "-", stdin=rendered, namespaced=False)
    return f"system:serviceaccount:{kubectl.namespace}:{release}-mcp-health-operator"


def can_i(kubectl: Kubectl, user: str, verb: str, resource: str, namespace: str) -> bool:
    resource, _, sub = resource.partition("/")
    subresource = [f"--subresource={sub}"] if sub else []
    done = kubectl(
        "auth", "can-i", verb, resource, *subresource, "-n", namespace, "--as", user,
        namespaced=False, check=False,
    )  # fmt: skip
    assert done.stdout.strip() in ("yes", "no"), done.stderr
    return done.stdout.strip() == "yes"


def allowed(
    kubectl: Kubectl, user: str, asks: list[tuple[str, str]], namespace: str
) -> dict[tuple[str, str], bool]:
    return {ask: can_i(kubectl, user, *ask, namespace) for ask in asks}


CASES = {
    # values → (namespace a's extra rights, namespace b's extra rights)
    "default": ((), ((), ())),
    "secrets in a": (("targets.readSecrets=true", "targets.secretNamespaces={A}"), (SECRETS, ())),
    "secrets everywhere": (
        ("targets.readSecrets=true", "targets.secretsClusterWide=true"),
        (SECRETS, SECRETS),
    ),
    "remediation in a": (
        ("remediation.enabled=true", "remediation.namespaces={A}"),
        (REMEDIATION, ()),
    ),
    "remediation everywhere": (
        ("remediation.enabled=true", "remediation.clusterWide=true"),
        (REMEDIATION, REMEDIATION),
    ),
    "discovery of Services": (("discovery.services.enabled=true",), (DISCOVERY_MONITORS,) * 2),
    "discovery of MCPServers": (
        ("discovery.mcpServers.groups={toolhive.stacklok.dev,kagent.dev,mcp.x-k8s.io}",),
        (DISCOVERY_MONITORS + DISCOVERY_SERVERS,) * 2,
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_can_i_matrix_of_the_default_install_and_each_opt_in(
    kubectl: Kubectl, two_namespaces: tuple[str, str], case: str
) -> None:
    a, b = two_namespaces
    values, (extra_a, extra_b) = CASES[case]
    release = f"r{uuid.uuid4().hex[:6]}"
    user = install_cluster_wide(kubectl, release, *(v.replace("{A}", f"{{{a}}}") for v in values))
    try:
        everything = (
            MONITORING
            + SECRETS
            + REMEDIATION
            + NEVER
            + DISCOVERY_MONITORS
            + DISCOVERY_SERVERS
            + NOT_EVEN_DISCOVERY
        )
        for ns, extra in ((a, extra_a), (b, extra_b)):
            expected = {ask: ask in MONITORING or ask in extra for ask in everything}
            assert allowed(kubectl, user, everything, ns) == expected, (case, ns)
    finally:
        for kind in ("clusterrole", "clusterrolebinding"):
            kubectl("delete", kind, f"{release}-mcp-health-operator", namespaced=False, check=False)


def test_a_monitor_author_cannot_get_a_deployment_patched_without_its_owners_consent(
    kubectl: Kubectl,
    operator: OperatorFactory,
    sample_server: SampleFactory,
    own_pg: Postgres,
    tmp_path: Path,
) -> None:
    # The operator, as the chart's ServiceAccount with remediation granted here.
    sa = install_rbac(kubectl, f"r{uuid.uuid4().hex[:6]}")
    op_config = service_account_kubeconfig(kubectl, sa, tmp_path / "operator.kubeconfig")
    # Someone who may create monitors, and read but not patch Deployments.
    kubectl("create", "serviceaccount", "author")
    kubectl("create", "role", "monitor-author", "--verb=get,list,create,delete",
            "--resource=mcphealthmonitors.mcphealth.dev,deployments.apps")  # fmt: skip
    kubectl("create", "rolebinding", "monitor-author", "--role=monitor-author",
            f"--serviceaccount={kubectl.namespace}:author")  # fmt: skip
    author = f"system:serviceaccount:{kubectl.namespace}:author"
    assert can_i(kubectl, author, "create", "mcphealthmonitors", kubectl.namespace)
    assert not can_i(kubectl, author, "patch", "deployments", kubectl.namespace)
    author_config = service_account_kubeconfig(kubectl, "author", tmp_path / "author.kubeconfig")

    server = sample_server("codebase-mcp", dsn=own_pg.dsn)
    kubectl.apply(service("codebase-mcp"))
    kubectl.apply(deployment("codebase-mcp"))
    # Its owner has not consented: the label the test deployment carries is taken off.
    kubectl("label", "deployment", "codebase-mcp", f"{CONSENT}-")
    finish_rollout(kubectl, "codebase-mcp")
    operator(*resolve(kubectl, "codebase-mcp", server), kubeconfig=op_config)

    # The author's monitor asks for a restart of a Deployment the author may not patch.
    created = subprocess.run(
        [
            str(controlplane.kubectl_binary()),
            "--kubeconfig",
            str(author_config),
            "apply",
            "-f",
            "-",
        ],
        input=remediated_monitor("m", "codebase-mcp", RESTART),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert created.returncode == 0, created.stderr
    wait_for(lambda: health(kubectl, "m") == "Healthy", timeout=30, what="Healthy")
    asyncio.run(_saturate(server, 10))
    wait_for(lambda: event(kubectl, "m", "RemediationNotPermitted"), timeout=40, what="held")
    [held] = event(kubectl, "m", "RemediationNotPermitted")
    assert CONSENT in held["message"] and "Deployment codebase-mcp" in held["message"], held
    wait_for(
        lambda: (
            kubectl.json("mcphealth", "m")["status"]["remediation"].get("suppressed")
            == "NotPermitted"
        ),
        timeout=10,
        what="the hold in status",
    )
    assert health(kubectl, "m") == "Unhealthy"
    assert restarted_at(kubectl, "codebase-mcp") is None
    assert not event(kubectl, "m", "RestartTriggered")

    # The owner consents: now the operator acts.
    kubectl("label", "deployment", "codebase-mcp", f"{CONSENT}=true")
    wait_for(lambda: restarted_at(kubectl, "codebase-mcp"), timeout=40, what="restartedAt")
    assert event(kubectl, "m", "RestartTriggered")


def external_name(name: str, target: str) -> str:
    return f"""apiVersion: v1
kind: Service
metadata: {{name: {name}}}
spec:
  type: ExternalName
  externalName: {target}
  ports: [{{name: mcp, port: 8000}}]
"""


def test_externalname_to_the_metadata_address_or_the_api_server_is_refused(
    kubectl: Kubectl, operator: OperatorFactory
) -> None:
    # URL targets allowed to any host: the address rules still refuse these.
    operator("--allow-url", "http://*")
    kubectl.apply(external_name("metadata", "169.254.169.254"))
    kubectl.apply(external_name("apiserver", "kubernetes.default.svc.cluster.local"))
    kubectl.apply(monitor("metadata", service="metadata"))
    kubectl.apply(monitor("apiserver", service="apiserver"))
    for name, says in (("metadata", "169.254.169.254"), ("apiserver", "API server")):
        wait_for(
            lambda n=name: (
                conditions(kubectl, n).get("Reachable", {}).get("reason")  # type: ignore[misc]
                == "TargetNotAllowed"
            ),
            timeout=30,
            what=f"{name} refused",
        )
        message = conditions(kubectl, name)["Reachable"]["message"]
        assert says in message and "never probes it" in message, message
        assert kubectl.json("mcphealth", name)["status"]["reason"] == "TargetNotAllowed"
