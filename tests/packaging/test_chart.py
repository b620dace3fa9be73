"""The Helm chart: lint, rendering in both RBAC modes, schema and early failures,
the generated copies, and the real API server (server-side dry run, helm install).
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from mcp_health_testbed.controlplane import ControlPlane
from tests.e2e.conftest import Kubectl
from tests.packaging.conftest import CHART, REPO

RULES = REPO / "deploy" / "prometheus" / "mcp-health-rules.yaml"
DASHBOARD = REPO / "deploy" / "grafana" / "mcp-health-dashboard.json"
NAMESPACED = {"rbac": {"scope": "namespaced"}, "watchNamespaces": ["team-a", "team-b"]}
EVERYTHING = {
    "prometheusRule": {"enabled": True},
    "metrics": {"serviceMonitor": {"enabled": True}},
    "discovery": {
        "services": {"enabled": True},
        "mcpServers": {"groups": ["toolhive.stacklok.dev", "kagent.dev", "mcp.x-k8s.io"]},
    },
}


class Helm:
    def __init__(self, binary: Path, home: Path, kubeconfig: Path | None = None) -> None:
        self.binary = binary
        self.env = {
            **os.environ,
            "HELM_CACHE_HOME": str(home / "cache"),
            "HELM_CONFIG_HOME": str(home / "config"),
            "HELM_DATA_HOME": str(home / "data"),
        }
        if kubeconfig is not None:
            self.env["KUBECONFIG"] = str(kubeconfig)
        self.home = home

    def __call__(
        self, *args: str, values: dict[str, Any] | None = None
    ) -> subprocess.CompletedProcess[str]:
        argv = [str(self.binary), *args]
        if values is not None:
            path = self.home / f"values-{uuid.uuid4().hex[:8]}.json"
            path.write_text(json.dumps(values))  # JSON is YAML
            argv += ["--values", str(path)]
        return subprocess.run(argv, capture_output=True, text=True, env=self.env, timeout=120)

    def template(
        self, values: dict[str, Any] | None = None, *args: str, namespace: str = "mcp-health"
    ) -> str:
        done = self("template", "rel", str(CHART), "--namespace", namespace, *args, values=values)
        assert done.returncode == 0, done.stderr
        return done.stdout

    def render(self, values: dict[str, Any] | None = None, *args: str) -> list[dict[str, Any]]:
        return [doc for doc in yaml.safe_load_all(self.template(values, *args)) if doc]


@pytest.fixture
def helm_cli(helm: Path, tmp_path: Path) -> Helm:
    return Helm(helm, tmp_path)


def kinds(docs: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for doc in docs:
        out.setdefault(doc["kind"], []).append(doc)
    return out


def one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = kinds(docs).get(kind, [])
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


def grants(rules: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    """RBAC rules as a set of (apiGroup, resource, verb)."""
    return {
        (group, resource, verb)
        for rule in rules
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


def expand(group: str, resources: str, verbs: str) -> set[tuple[str, str, str]]:
    return {(group, r, v) for r in resources.split() for v in verbs.split()}


# Monitoring only: what the default install grants (tests/e2e/test_rbac_audit.py
# holds each verb to an API call the operator makes).
BASE_GRANTS = (
    expand("mcphealth.dev", "mcphealthmonitors", "list watch")
    | expand("mcphealth.dev", "mcphealthmonitors/status", "patch")
    | expand("", "events", "create patch")
    | expand("", "services", "get list watch")
    | expand("discovery.k8s.io", "endpointslices", "list watch")
)
SECRET_GRANTS = expand("", "secrets", "get list watch")
REMEDIATION_GRANTS = (
    expand("mcphealth.dev", "mcphealthmonitors", "get")
    | expand("apps", "deployments statefulsets", "get patch")
    | expand("", "configmaps", "get patch")
    | expand("", "pods", "get delete")
)
CRD_GRANTS = expand("apiextensions.k8s.io", "customresourcedefinitions", "list watch")
# discovery: the monitors it generates, and the MCPServers of each followed group.
DISCOVERY_GRANTS = expand("mcphealth.dev", "mcphealthmonitors", "create patch delete")
THIRD_PARTY = ("toolhive.stacklok.dev", "kagent.dev", "mcp.x-k8s.io")
LEASE_GRANTS = expand("coordination.k8s.io", "leases", "list create patch delete")
# What the default install must never grant: no Secret, ConfigMap, workload or Pod verb.
SENSITIVE = {"secrets", "configmaps", "deployments", "statefulsets", "pods"}


# -- the generated copies -------------------------------------------------------------


def test_chart_copies_are_identical_to_their_sources() -> None:
    done = subprocess.run(
        ["bash", str(REPO / "hack" / "sync-chart.sh"), "--check"], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    sources = sorted(p.name for p in (REPO / "crds").glob("*.yaml"))
    assert sources and sorted(p.name for p in (CHART / "crds").glob("*.yaml")) == sources
    for name in sources:
        assert (CHART / "crds" / name).read_bytes() == (REPO / "crds" / name).read_bytes()
    assert (CHART / "files" / RULES.name).read_bytes() == RULES.read_bytes()
    assert (CHART / "files" / DASHBOARD.name).read_bytes() == DASHBOARD.read_bytes()


# -- values ---------------------------------------------------------------------------


def test_every_value_is_commented_and_in_the_schema() -> None:
    """Each key of values.yaml has a comment line above it and a place in the schema.

    Keys inside a free-form map (resources, securityContext, labels...) are the
    map's content: the map itself is commented, its entries need not be.
    """
    lines = (CHART / "values.yaml").read_text().splitlines()
    schema = json.loads((CHART / "values.schema.json").read_text())
    uncommented, unknown = [], []
    path: list[tuple[int, str]] = []
    for i, line in enumerate(lines):
        stripped = line.strip()
        if not stripped or stripped.startswith(("#", "- ")):
            continue
        indent = len(line) - len(line.lstrip())
        path = [(d, k) for d, k in path if d < indent]
        path.append((indent, stripped.split(":", 1)[0]))
        keys = [k for _, k in path]
        node: dict[str, Any] = schema
        for key in keys[:-1]:
            node = node.get("properties", {}).get(key, {})
        if node is not schema and "properties" not in node:
            continue  # content of a free-form map
        if keys[-1] not in node.get("properties", {}):
            unknown.append(".".join(keys))
        if not lines[i - 1].strip().startswith("#"):
            uncommented.append(".".join(keys))
    assert uncommented == [], f"values without a comment: {uncommented}"
    assert unknown == [], f"values missing from values.schema.json: {unknown}"


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            {"operator": {"metricsPort": "abc"}},
            "at '/operator/metricsPort': got string, want integer",
        ),
        ({"watchNamespaces": "team-a"}, "at '/watchNamespaces': got string, want array"),
        (
            {"remediation": {"enabled": "yes"}},
            "at '/remediation/enabled': got string, want boolean",
        ),
        (
            {"rbac": {"scope": "global"}},
            "at '/rbac/scope': value must be one of 'cluster', 'namespaced'",
        ),
        ({"remediation": {"workloadKinds": ["DaemonSet"]}}, "/remediation/workloadKinds/0"),
        ({"targets": {"allowUrls": ["example.com"]}}, "/targets/allowUrls/0"),
        ({"metricz": {}}, "additional properties 'metricz' not allowed"),
        (
            {"discovery": {"mcpServers": {"groups": ["example.com"]}}},
            "/discovery/mcpServers/groups/0",
        ),
        ({"discovery": {"services": {"enabled": "yes"}}}, "/discovery/services/enabled"),
    ],
)
def test_a_wrong_value_fails_with_the_schemas_message(
    helm_cli: Helm, values: dict[str, Any], message: str
) -> None:
    done = helm_cli("template", "rel", str(CHART), values=values)
    assert done.returncode != 0
    assert "values don't meet the specifications of the schema" in done.stderr
    assert message in done.stderr, done.stderr


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"rbac": {"scope": "namespaced"}}, "rbac.scope=namespaced needs watchNamespaces"),
        (
            {"rbac": {"scope": "namespaced"}, "watchNamespaces": ["team-*"]},
            "rbac.scope=namespaced needs exact namespace names",
        ),
        (
            {"metrics": {"service": {"enabled": False}, "serviceMonitor": {"enabled": True}}},
            "metrics.serviceMonitor.enabled=true needs metrics.service.enabled=true",
        ),
        (
            {"remediation": {"enabled": True, "clusterWide": True, "workloadKinds": []}},
            "remediation.enabled=true needs at least one",
        ),
        (
            {"targets": {"readSecrets": True}},
            "targets.readSecrets=true with rbac.scope=cluster needs targets.secretNamespaces",
        ),
        (
            {"remediation": {"enabled": True}},
            "remediation.enabled=true with rbac.scope=cluster needs remediation.namespaces",
        ),
        (
            {"targets": {"secretNamespaces": ["team-a"]}},
            "targets.secretNamespaces / targets.secretsClusterWide need targets.readSecrets=true",
        ),
        (
            {"remediation": {"clusterWide": True}},
            "remediation.namespaces / remediation.clusterWide need remediation.enabled=true",
        ),
        (
            {**NAMESPACED, "remediation": {"enabled": True, "clusterWide": True}},
            "targets.secretsClusterWide and remediation.clusterWide need rbac.scope=cluster",
        ),
        (
            {**NAMESPACED, "targets": {"readSecrets": True, "secretNamespaces": ["team-z"]}},
            'namespace "team-z" of targets.secretNamespaces / remediation.namespaces is not in',
        ),
        (
            {"replicaCount": 2, "membership": {"mode": "off"}},
            "replicaCount > 1 needs membership.mode shard or leader",
        ),
        (
            {"membership": {"renewSeconds": 15, "leaseDurationSeconds": 15}},
            "membership.renewSeconds must be less than leaseDurationSeconds",
        ),
        (
            {"serviceAccount": {"create": False}},
            "serviceAccount.name is required when serviceAccount.create is false",
        ),
    ],
)
def test_contradictory_values_fail_early(
    helm_cli: Helm, values: dict[str, Any], message: str
) -> None:
    done = helm_cli("template", "rel", str(CHART), values=values)
    assert done.returncode != 0
    assert message in done.stderr, done.stderr


# -- lint and rendering -----------------------------------------------------------------


@pytest.mark.parametrize(
    "values", [{}, NAMESPACED, EVERYTHING], ids=["cluster", "namespaced", "all"]
)
def test_helm_lint(helm_cli: Helm, values: dict[str, Any]) -> None:
    done = helm_cli("lint", "--strict", str(CHART), values=values)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 chart(s) failed" in done.stdout


def test_cluster_scope_renders_a_least_privilege_cluster_role(helm_cli: Helm) -> None:
    docs = helm_cli.render()
    by_kind = kinds(docs)
    assert sorted(by_kind) == [
        "ClusterRole",
        "ClusterRoleBinding",
        "ConfigMap",
        "Deployment",
        "Role",
        "RoleBinding",
        "Service",
        "ServiceAccount",
    ]
    # Membership Leases: in the release namespace only.
    members = one(docs, "Role")
    assert members["metadata"]["namespace"] == "mcp-health"
    assert grants(members["rules"]) == LEASE_GRANTS
    assert one(docs, "RoleBinding")["roleRef"]["name"] == members["metadata"]["name"]
    off = kinds(helm_cli.render({"membership": {"mode": "off"}}))
    assert "Role" not in off and "RoleBinding" not in off
    role = one(docs, "ClusterRole")
    assert grants(role["rules"]) == BASE_GRANTS | CRD_GRANTS
    binding = one(docs, "ClusterRoleBinding")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": role["metadata"]["name"],
    }
    sa = one(docs, "ServiceAccount")
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": sa["metadata"]["name"], "namespace": "mcp-health"}
    ]


def test_namespace_globs_add_namespace_listing_to_the_cluster_role(helm_cli: Helm) -> None:
    role = one(helm_cli.render({"watchNamespaces": ["team-*"]}), "ClusterRole")
    assert expand("", "namespaces", "list watch") | CRD_GRANTS <= grants(role["rules"])
    plain = one(helm_cli.render({"watchNamespaces": ["team-a"]}), "ClusterRole")
    # Exact names: kopf scans nothing, so neither namespaces nor CRDs are granted.
    assert grants(plain["rules"]) == BASE_GRANTS
    no_crds = one(helm_cli.render({"rbac": {"watchCRDs": False}}), "ClusterRole")
    assert grants(no_crds["rules"]) == BASE_GRANTS


def test_namespaced_scope_renders_a_role_per_watched_namespace(helm_cli: Helm) -> None:
    docs = helm_cli.render(NAMESPACED)
    by_kind = kinds(docs)
    lease_roles = [r for r in by_kind["Role"] if r["metadata"]["name"].endswith("-members")]
    assert [(r["metadata"]["namespace"], grants(r["rules"])) for r in lease_roles] == [
        ("mcp-health", LEASE_GRANTS)
    ]
    roles = {r["metadata"]["namespace"]: r for r in by_kind["Role"] if r not in lease_roles}
    bindings = {
        b["metadata"]["namespace"]: b
        for b in by_kind["RoleBinding"]
        if not b["metadata"]["name"].endswith("-members")
    }
    assert set(roles) == set(bindings) == {"team-a", "team-b"}
    for ns, role in roles.items():
        assert grants(role["rules"]) == BASE_GRANTS, ns
        assert bindings[ns]["subjects"][0]["namespace"] == "mcp-health"
    # No cluster-scoped grant at all: with exact namespace names kopf reads the
    # CRD by discovery and watches no CRDs (the audit test shows it calls none).
    assert not {"ClusterRole", "ClusterRoleBinding"} & set(by_kind)
    args = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--namespace=team-a" in args and "--namespace=team-b" in args


def every_grant(docs: list[dict[str, Any]]) -> set[tuple[str, str, str, str]]:
    """(namespace or "*", apiGroup, resource, verb) of every Role and ClusterRole."""
    return {
        (doc["metadata"].get("namespace", "*"), *grant)
        for doc in docs
        if doc["kind"] in ("Role", "ClusterRole")
        for grant in grants(doc["rules"])
    }


def args_of(docs: list[dict[str, Any]]) -> list[str]:
    return list(one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"])


@pytest.mark.parametrize("values", [{}, NAMESPACED], ids=["cluster", "namespaced"])
def test_the_default_install_monitors_only(helm_cli: Helm, values: dict[str, Any]) -> None:
    docs = helm_cli.render(values)
    assert not {g for g in every_grant(docs) if g[2] in SENSITIVE}
    args = args_of(docs)
    # No Secret is read, no action taken: the operator knows, and says so in status.
    assert "--no-secrets" in args and "--pause-remediation" in args
    assert "--cluster-domain=cluster.local" in args


def test_secrets_opt_in_grants_a_role_in_each_listed_namespace_only(helm_cli: Helm) -> None:
    docs = helm_cli.render({"targets": {"readSecrets": True, "secretNamespaces": ["a", "b"]}})
    added = every_grant(docs) - every_grant(helm_cli.render())
    assert added == {(ns, *g) for ns in ("a", "b") for g in SECRET_GRANTS}
    args = args_of(docs)
    assert "--secret-namespace=a" in args and "--secret-namespace=b" in args
    assert "--no-secrets" not in args
    wide = helm_cli.render({"targets": {"readSecrets": True, "secretsClusterWide": True}})
    assert every_grant(wide) - every_grant(helm_cli.render()) == {("*", *g) for g in SECRET_GRANTS}
    assert not [a for a in args_of(wide) if a.startswith(("--secret-namespace", "--no-secrets"))]
    namespaced = helm_cli.render({**NAMESPACED, "targets": {"readSecrets": True}})
    assert every_grant(namespaced) - every_grant(helm_cli.render(NAMESPACED)) == {
        (ns, *g) for ns in ("team-a", "team-b") for g in SECRET_GRANTS
    }


def test_remediation_opt_in_grants_a_role_in_each_listed_namespace_only(helm_cli: Helm) -> None:
    docs = helm_cli.render({"remediation": {"enabled": True, "namespaces": ["a"]}})
    added = every_grant(docs) - every_grant(helm_cli.render())
    assert added == {("a", *g) for g in REMEDIATION_GRANTS}
    args = args_of(docs)
    assert "--remediation-namespace=a" in args and "--pause-remediation" not in args
    wide = helm_cli.render({"remediation": {"enabled": True, "clusterWide": True}})
    assert every_grant(wide) - every_grant(helm_cli.render()) == {
        ("*", *g) for g in REMEDIATION_GRANTS
    }
    assert not [a for a in args_of(wide) if a.startswith("--remediation-namespace")]
    only_deployments = helm_cli.render(
        {"remediation": {"enabled": True, "namespaces": ["a"], "workloadKinds": ["Deployment"]}}
    )
    apps = {g for g in every_grant(only_deployments) if g[1] == "apps"}
    assert apps == {("a", "apps", "deployments", "get"), ("a", "apps", "deployments", "patch")}
    paused = helm_cli.render(
        {"remediation": {"enabled": True, "namespaces": ["a"], "paused": True}}
    )
    assert "--pause-remediation" in args_of(paused)


def discovery_of(docs: list[dict[str, Any]]) -> Any:
    """What ``mcp-health run`` makes of the Deployment's args: its discovery settings."""
    from mcp_health_operator.runtime import cli, discovery_flags

    args = cli.build_parser().parse_args(["run", *args_of(docs)])
    return discovery_flags.settings_of(args)


def test_discovery_opt_in_grants_monitor_writes_and_mcpserver_reads_only(
    helm_cli: Helm, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("MCP_HEALTH_DISCOVER_SERVICES", "MCP_HEALTH_DISCOVER_GROUPS"):
        monkeypatch.delenv(name, raising=False)  # the args alone decide here
    default = helm_cli.render()
    assert not [a for a in args_of(default) if a.startswith("--discover")]
    assert not discovery_of(default).enabled
    services = helm_cli.render({"discovery": {"services": {"enabled": True}}})
    assert every_grant(services) - every_grant(default) == {("*", *g) for g in DISCOVERY_GRANTS}
    settings = discovery_of(services)
    assert settings.services and settings.groups == () and settings.recheck_s == 60
    groups = helm_cli.render(
        {"discovery": {"mcpServers": {"groups": list(THIRD_PARTY)}, "recheckSeconds": 30}}
    )
    assert every_grant(groups) - every_grant(default) == {
        ("*", *g)
        for g in DISCOVERY_GRANTS
        | {(group, "mcpservers", verb) for group in THIRD_PARTY for verb in ("list", "watch")}
    }
    settings = discovery_of(groups)
    assert not settings.services and settings.recheck_s == 30
    assert set(settings.groups) == set(THIRD_PARTY)
    # Namespaced: in each watched namespace's Role, nothing cluster-wide.
    namespaced = helm_cli.render(
        {
            **NAMESPACED,
            "discovery": {"services": {"enabled": True}, "mcpServers": {"groups": ["kagent.dev"]}},
        }
    )
    assert every_grant(namespaced) - every_grant(helm_cli.render(NAMESPACED)) == {
        (ns, *g)
        for ns in ("team-a", "team-b")
        for g in DISCOVERY_GRANTS | expand("kagent.dev", "mcpservers", "list watch")
    }
    # Never a Secret, workload or Pod verb, never update, never get on MCPServers.
    for docs in (services, groups, namespaced):
        grants_ = every_grant(docs)
        assert not {g for g in grants_ if g[2] in SENSITIVE}
        assert not {
            g for g in grants_ if g[3] == "update" or (g[2] == "mcpservers" and g[3] == "get")
        }


def test_deployment_is_hardened_and_maps_values_to_flags(helm_cli: Helm) -> None:
    docs = helm_cli.render(
        {
            "watchNamespaces": ["team-a"],
            "operator": {"metricsPort": 9191, "heartbeatSeconds": 60},
            "targets": {
                "allowCrossNamespace": True,
                "allowUrls": ["https://*.example.com:443", "http://10.0.0.1:8000"],
            },
            "remediation": {"paused": True},
            "replicaCount": 3,
            "membership": {"mode": "leader", "leaseDurationSeconds": 10, "renewSeconds": 2.5},
        }
    )
    deploy = one(docs, "Deployment")
    spec = deploy["spec"]
    assert spec["replicas"] == 3
    assert spec["strategy"] == {"type": "RollingUpdate"}
    pod = spec["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    (container,) = pod["containers"]
    sc = container["securityContext"]
    assert sc["runAsNonRoot"] is True
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["args"] == [
        "--metrics-port=9191",
        "--heartbeat=60",
        "--namespace=team-a",
        "--no-secrets",
        "--cluster-domain=cluster.local",
        "--allow-cross-namespace",
        "--allow-url=https://*.example.com:443",
        "--allow-url=http://10.0.0.1:8000",
        "--pause-remediation",
        "--membership=leader",
        "--lease-duration=10",
        "--lease-renew=2.5",
    ]
    env = {e["name"]: e for e in container["env"]}
    assert env["POD_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert env["POD_NAMESPACE"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    assert env["MCP_HEALTH_MEMBER_GROUP"]["value"] == "rel-mcp-health-operator"
    single = one(helm_cli.render({"membership": {"mode": "off"}}), "Deployment")
    assert single["spec"]["replicas"] == 1
    assert single["spec"]["strategy"] == {"type": "Recreate"}
    single_args = single["spec"]["template"]["spec"]["containers"][0]["args"]
    assert not [a for a in single_args if a.startswith(("--membership", "--lease"))]
    assert container["ports"] == [{"name": "metrics", "containerPort": 9191, "protocol": "TCP"}]
    for probe in ("livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert container["resources"]["limits"]["memory"]
    assert container["resources"]["requests"]["cpu"]
    assert container["image"] == "mcp-health-operator:0.1.0"
    assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]


def test_the_flags_exist_in_the_cli(helm_cli: Helm) -> None:
    """Every flag the chart can pass is one `mcp-health run` accepts."""
    from mcp_health_operator.runtime.cli import build_parser

    docs = helm_cli.render(
        {
            "watchNamespaces": ["a"],
            "targets": {"allowCrossNamespace": True, "allowUrls": ["https://x:443"]},
            "remediation": {"enabled": False},
            "operator": {"verbose": True},
            "membership": {"mode": "leader", "leaseDurationSeconds": 9, "renewSeconds": 3},
        }
    )
    args = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
    parsed = build_parser().parse_args(["run", *args])
    assert parsed.membership == "leader"
    assert parsed.lease_duration == 9 and parsed.lease_renew == 3
    assert parsed.namespaces == ["a"]
    assert parsed.allow_cross_namespace and parsed.pause_remediation and parsed.verbose
    assert parsed.allow_url == ["https://x:443"]
    assert parsed.metrics_port == 9090 and parsed.heartbeat == 300
    assert parsed.no_secrets and parsed.cluster_domain == "cluster.local"
    opted_in = helm_cli.render(
        {
            "targets": {"readSecrets": True, "secretNamespaces": ["a"], "clusterDomain": "corp"},
            "remediation": {"enabled": True, "namespaces": ["b"]},
        }
    )
    parsed = build_parser().parse_args(["run", *args_of(opted_in)])
    assert parsed.secret_namespaces == ["a"] and parsed.remediation_namespaces == ["b"]
    assert parsed.cluster_domain == "corp" and not parsed.no_secrets


def test_metrics_service_has_prometheus_and_datadog_annotations(helm_cli: Helm) -> None:
    service = one(helm_cli.render(), "Service")
    annotations = service["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == "9090"
    assert annotations["prometheus.io/path"] == "/metrics"
    check = json.loads(annotations["ad.datadoghq.com/endpoints.checks"])
    (instance,) = check["openmetrics"]["instances"]
    assert instance["namespace"] == "mcp"
    assert instance["metrics"] == ["mcp_.*"]
    assert instance["openmetrics_endpoint"].endswith("/metrics")
    assert service["spec"]["ports"] == [
        {"name": "metrics", "port": 9090, "targetPort": "metrics", "protocol": "TCP"}
    ]


def test_prometheus_rule_carries_the_rules_file(helm_cli: Helm) -> None:
    docs = helm_cli.render(EVERYTHING)
    rule = one(docs, "PrometheusRule")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["spec"] == yaml.safe_load(RULES.read_text())

    custom = helm_cli.render(
        {
            **EVERYTHING,
            "prometheusRule": {"enabled": True, "runbookBaseUrl": "https://runbooks.example/mcp/"},
        }
    )
    urls = [
        r["annotations"]["runbook_url"]
        for g in one(custom, "PrometheusRule")["spec"]["groups"]
        for r in g["rules"]
    ]
    assert urls and all(u.startswith("https://runbooks.example/mcp/") for u in urls)
    assert "https://runbooks.example/mcp/mcp-unhealthy.md" in urls


def test_service_monitor_selects_the_metrics_service(helm_cli: Helm) -> None:
    docs = helm_cli.render(EVERYTHING)
    monitor = one(docs, "ServiceMonitor")
    service = one(docs, "Service")
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["endpoints"] == [
        {"port": "metrics", "path": "/metrics", "interval": "15s", "scrapeTimeout": "10s"}
    ]
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": ["mcp-health"]}


def test_grafana_dashboard_configmap_carries_the_dashboard(helm_cli: Helm) -> None:
    cm = one(helm_cli.render(), "ConfigMap")
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(cm["data"]["mcp-health-dashboard.json"]) == json.loads(DASHBOARD.read_text())
    off = helm_cli.render({"grafanaDashboard": {"enabled": False}})
    assert "ConfigMap" not in kinds(off)


# -- the real API server ---------------------------------------------------------------


@pytest.fixture
def cluster_helm(helm: Path, tmp_path: Path, control_plane: ControlPlane) -> Helm:
    return Helm(helm, tmp_path, control_plane.kubeconfig)


@pytest.fixture
def namespaces(control_plane: ControlPlane) -> Callable[[int], list[str]]:
    """Make fresh namespaces: ``namespaces(n)`` -> names."""

    def make(count: int) -> list[str]:
        names = [f"p-{uuid.uuid4().hex[:8]}" for _ in range(count)]
        for name in names:
            Kubectl(control_plane, name)("create", "namespace", name, namespaced=False)
        return names

    return make


@pytest.mark.controlplane
@pytest.mark.parametrize("mode", ["cluster", "namespaced"])
def test_rendered_chart_passes_server_side_dry_run(
    cluster_helm: Helm,
    control_plane: ControlPlane,
    namespaces: Callable[[int], list[str]],
    mode: str,
) -> None:
    release_ns, team_a, team_b = namespaces(3)
    values: dict[str, Any] = {"watchNamespaces": [team_a, team_b]}
    if mode == "namespaced":
        values["rbac"] = {"scope": "namespaced"}
    # ServiceMonitor and PrometheusRule stay off: their CRDs are not in this API server.
    manifest = cluster_helm.template(values, "--include-crds", namespace=release_ns)
    kubectl = Kubectl(control_plane, release_ns)
    # Objects name their namespaces (Roles live in the watched ones): no -n.
    done = kubectl(
        "apply", "--dry-run=server", "-f", "-", stdin=manifest, check=False, namespaced=False
    )
    assert done.returncode == 0, done.stderr
    applied = done.stdout
    assert (
        "customresourcedefinition.apiextensions.k8s.io/mcphealthmonitors.mcphealth.dev" in applied
    )
    assert "deployment.apps/rel-mcp-health-operator" in applied
    role_kind = "clusterrole" if mode == "cluster" else "role"
    assert f"{role_kind}.rbac.authorization.k8s.io/rel-mcp-health-operator" in applied


@pytest.mark.controlplane
@pytest.mark.timeout(240)
@pytest.mark.parametrize("mode", ["cluster", "namespaced"])
def test_helm_install_creates_the_objects(
    cluster_helm: Helm,
    control_plane: ControlPlane,
    namespaces: Callable[[int], list[str]],
    mode: str,
) -> None:
    release_ns, watched = namespaces(2)
    release = f"mho-{uuid.uuid4().hex[:6]}"
    # Both opt-ins, in the watched namespace only.
    values: dict[str, Any] = {
        "watchNamespaces": [watched],
        "targets": {"readSecrets": True, "secretNamespaces": [watched]},
        "remediation": {"enabled": True, "namespaces": [watched]},
    }
    if mode == "namespaced":
        values["rbac"] = {"scope": "namespaced"}
    done = cluster_helm("install", release, str(CHART), "--namespace", release_ns, values=values)
    assert done.returncode == 0, done.stderr
    try:
        kubectl = Kubectl(control_plane, release_ns)
        name = f"{release}-mcp-health-operator"
        deploy = kubectl.json("deployment", name)
        assert deploy["spec"]["replicas"] == 1
        assert deploy["spec"]["strategy"]["type"] == "RollingUpdate"
        kubectl.json("serviceaccount", name)
        service = kubectl.json("service", f"{name}-metrics")
        assert service["metadata"]["annotations"]["prometheus.io/scrape"] == "true"
        cm = kubectl.json("configmap", f"{name}-dashboard")
        assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
        kubectl.json("crd", "mcphealthmonitors.mcphealth.dev")

        sa = f"system:serviceaccount:{release_ns}:{name}"

        def can(verb: str, resource: str, namespace: str, *extra: str) -> bool:
            out = kubectl(
                "auth",
                "can-i",
                verb,
                resource,
                *extra,
                "--as",
                sa,
                "-n",
                namespace,
                namespaced=False,
                check=False,
            )
            return out.stdout.strip() == "yes"

        if mode == "cluster":
            kubectl.json("clusterrole", name)
            kubectl.json("clusterrolebinding", name)
        else:
            Kubectl(control_plane, watched).json("role", name)
            Kubectl(control_plane, watched).json("rolebinding", name)
            # No cluster-scoped RBAC at all.
            missing = kubectl("get", "clusterrole", name, namespaced=False, check=False)
            assert missing.returncode != 0
            assert not can("list", "mcphealthmonitors.mcphealth.dev", release_ns)
        # The ServiceAccount may do what the operator needs in the watched namespace...
        assert can("watch", "mcphealthmonitors.mcphealth.dev", watched)
        assert can("patch", "mcphealthmonitors.mcphealth.dev", watched, "--subresource=status")
        assert can("create", "events", watched)
        assert can("get", "secrets", watched)
        assert can("watch", "secrets", watched)  # a rotated token is read within seconds
        assert can("patch", "deployments.apps", watched)
        # Membership Leases in the release namespace...
        for verb in ("list", "create", "patch", "delete"):
            assert can(verb, "leases.coordination.k8s.io", release_ns), verb
        # ...and no more.
        for verb in ("get", "watch", "update"):
            assert not can(verb, "leases.coordination.k8s.io", release_ns), verb
        assert not can("get", "secrets", release_ns)
        assert not can("patch", "deployments.apps", release_ns)
        assert not can("create", "leases.coordination.k8s.io", watched)
        assert not can("create", "secrets", watched)
        assert not can("update", "secrets", watched)
        assert not can("delete", "deployments.apps", watched)
        assert not can("update", "mcphealthmonitors.mcphealth.dev", watched)
        assert not can("create", "pods", watched)
    finally:
        done = cluster_helm("uninstall", release, "--namespace", release_ns)
        assert done.returncode == 0, done.stderr


@pytest.mark.controlplane
def test_helm_install_refuses_a_wrong_value_type(
    cluster_helm: Helm, control_plane: ControlPlane, namespaces: Any
) -> None:
    (release_ns,) = namespaces(1)
    done = cluster_helm(
        "install",
        "bad",
        str(CHART),
        "--namespace",
        release_ns,
        values={"operator": {"heartbeatSeconds": "five minutes"}},
    )
    assert done.returncode != 0
    assert "at '/operator/heartbeatSeconds': got string, want number" in done.stderr
    listed = cluster_helm("list", "--namespace", release_ns, "--short")
    assert listed.stdout.strip() == ""
