"""Discovery on the real API server: monitors nobody wrote.

An annotated Service gets a monitor, labelled and owned by the Service, kept
in sync with its annotations and deleted with the annotation; a bad
annotation is a Warning Event on the Service and no monitor; a hand-written
monitor always wins. The MCPServers of ToolHive, kmcp and the
mcp-lifecycle-operator (their CRDs installed as fixtures, the operators not)
get monitors of the Service those operators make, owned by the MCPServer; a
Service that appears later is followed; CRDs absent at start are no error and
are followed once installed.

The plain control plane runs no kube-controller-manager: the owner
references are asserted everywhere, and one test starts the controller
manager's garbage collector alone (the binary the cluster suite builds) to
see it delete generated monitors with their Service and their MCPServer.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mcp_health_testbed import _procs, controlplane
from mcp_health_testbed.postgres import Postgres
from tests.conftest import HostileFactory, SampleFactory
from tests.e2e.conftest import Kubectl, Operator, OperatorFactory, monitor, wait_for
from tests.e2e.test_remediation import health, resolve
from tests.e2e.test_security import conditions

THIRD_PARTY = Path(__file__).resolve().parent / "thirdparty"
GROUPS = ("toolhive.stacklok.dev", "kagent.dev", "mcp.x-k8s.io")
LABEL = "mcphealth.dev/generated-by"
MONITOR = "mcphealth.dev/monitor"
INTERVAL = "mcphealth.dev/interval"
# A change at the source shows on the monitor within this (events, not the re-check).
CONVERGES_S = 30


def discovering(
    *, services: bool = True, groups: tuple[str, ...] = (), recheck: float | None = None
) -> dict[str, str]:
    """The environment the chart sets for its ``discovery`` values."""
    env = {"MCP_HEALTH_DISCOVER_SERVICES": "true" if services else "false"}
    if groups:
        env["MCP_HEALTH_DISCOVER_GROUPS"] = ",".join(groups)
    if recheck is not None:
        env["MCP_HEALTH_DISCOVER_RECHECK"] = str(recheck)
    return env


def annotated(
    name: str, annotations: dict[str, str], ports: list[dict[str, Any]] | None = None
) -> str:
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": name, "annotations": annotations},
            "spec": {"ports": ports or [{"name": "mcp", "port": 8000}]},
        }
    )


def get(kubectl: Kubectl, kind: str, name: str) -> dict[str, Any] | None:
    done = kubectl("get", kind, name, "-o", "json", check=False)
    if done.returncode != 0:
        assert "NotFound" in done.stderr, done.stderr
        return None
    found: dict[str, Any] = json.loads(done.stdout)
    return found


def generated(kubectl: Kubectl, name: str) -> dict[str, Any] | None:
    return get(kubectl, "mcphealth", name)


def rows(kubectl: Kubectl, *selector: str) -> list[str]:
    """``kubectl get mcphealth``'s names (one row each)."""
    return sorted(kubectl("get", "mcphealth", *selector, "-o", "name").stdout.split())


def events(kubectl: Kubectl, name: str, reason: str) -> list[dict[str, Any]]:
    return [e for e in kubectl.events(name) if e["reason"] == reason]


def no_traceback(op: Operator) -> None:
    log = op.log.read_text()
    assert "Traceback" not in log, log[-3000:]


def install_third_party_crds(kubectl: Kubectl) -> None:
    kubectl("apply", "-f", str(THIRD_PARTY), namespaced=False)
    for group in GROUPS:
        kubectl(
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            f"crd/mcpservers.{group}",
            namespaced=False,
        )


@pytest.fixture
def third_party_crds(kubectl: Kubectl) -> Kubectl:
    install_third_party_crds(kubectl)
    return kubectl


# -- annotated Services ----------------------------------------------------------------


def test_an_annotated_service_gets_a_monitor_that_follows_its_annotations(
    kubectl: Kubectl, operator: OperatorFactory, sample_server: SampleFactory, pg: Postgres
) -> None:
    server = sample_server("codebase-mcp", dsn=pg.dsn)
    op = operator(*resolve(kubectl, "codebase-mcp", server), env=discovering())
    kubectl.apply(annotated("codebase-mcp", {MONITOR: "true", INTERVAL: "2s"}))
    created = wait_for(
        lambda: generated(kubectl, "codebase-mcp"), timeout=CONVERGES_S, what="generated"
    )
    svc = kubectl.json("service", "codebase-mcp")
    meta = created["metadata"]
    assert meta["labels"] == {LABEL: "service"}
    assert meta["ownerReferences"] == [
        {
            "apiVersion": "v1",
            "kind": "Service",
            "name": "codebase-mcp",
            "uid": svc["metadata"]["uid"],
            "controller": True,
        }
    ]
    assert created["spec"]["target"]["service"] == {"name": "codebase-mcp", "port": "mcp"}
    assert created["spec"]["target"]["transport"] == "streamable-http"
    assert created["spec"]["probe"]["interval"] == "2s"
    # A monitor like any other: probed, and Healthy.
    wait_for(lambda: health(kubectl, "codebase-mcp") == "Healthy", timeout=30, what="Healthy")
    assert rows(kubectl, "-l", f"{LABEL}=service") == [
        "mcphealthmonitor.mcphealth.dev/codebase-mcp"
    ]
    [told] = events(kubectl, "codebase-mcp", "MonitorGenerated")
    assert told["involvedObject"]["kind"] == "Service" and told["type"] == "Normal"

    # Annotations changed: the same monitor, updated.
    kubectl(
        "annotate", "service", "codebase-mcp", "--overwrite", f"{INTERVAL}=3s",
        "mcphealth.dev/path=/mcp", "mcphealth.dev/method=healthResource",
    )  # fmt: skip

    def spec() -> dict[str, Any]:
        return (generated(kubectl, "codebase-mcp") or {}).get("spec") or {}

    wait_for(
        lambda: (
            spec().get("probe", {}).get("interval") == "3s"
            and spec()["target"].get("path") == "/mcp"
            and spec()["probe"].get("method") == "healthResource"
        ),
        timeout=CONVERGES_S,
        what="the monitor updated",
    )
    assert (generated(kubectl, "codebase-mcp") or {})["metadata"]["uid"] == meta["uid"]
    # A setting removed at the source is removed from the monitor.
    kubectl("annotate", "service", "codebase-mcp", "mcphealth.dev/path-")
    wait_for(lambda: "path" not in spec().get("target", {}), timeout=CONVERGES_S, what="no path")
    wait_for(lambda: health(kubectl, "codebase-mcp") == "Healthy", timeout=30, what="Healthy")

    # Anything but "true": the monitor goes; "true" again: back; annotation removed: gone.
    kubectl("annotate", "service", "codebase-mcp", "--overwrite", f"{MONITOR}=false")
    wait_for(
        lambda: generated(kubectl, "codebase-mcp") is None, timeout=CONVERGES_S, what="deleted"
    )
    kubectl("annotate", "service", "codebase-mcp", "--overwrite", f"{MONITOR}=true")
    wait_for(lambda: generated(kubectl, "codebase-mcp"), timeout=CONVERGES_S, what="back")
    kubectl("annotate", "service", "codebase-mcp", f"{MONITOR}-")
    wait_for(
        lambda: generated(kubectl, "codebase-mcp") is None,
        timeout=CONVERGES_S,
        what="deleted with the annotation",
    )
    no_traceback(op)


def test_a_bad_annotation_is_a_warning_event_on_the_service_and_no_monitor(
    kubectl: Kubectl, operator: OperatorFactory
) -> None:
    op = operator(env=discovering())
    kubectl.apply(annotated("api", {MONITOR: "true", INTERVAL: "soon"}))
    [event] = wait_for(
        lambda: events(kubectl, "api", "InvalidMonitorAnnotation"),
        timeout=CONVERGES_S,
        what="the Event on the Service",
    )
    assert event["type"] == "Warning"
    assert event["involvedObject"]["kind"] == "Service"
    assert event["involvedObject"]["uid"] == kubectl.json("service", "api")["metadata"]["uid"]
    assert 'mcphealth.dev/interval="soon"' in event["message"], event["message"]
    assert "not a duration" in event["message"], event["message"]
    # The Event is posted as the namespace is planned: no monitor was made.
    assert rows(kubectl) == []
    kubectl.apply(
        annotated("ports", {MONITOR: "true"}, [{"name": "a", "port": 1}, {"name": "b", "port": 2}])
    )
    [event] = wait_for(
        lambda: events(kubectl, "ports", "InvalidMonitorAnnotation"),
        timeout=CONVERGES_S,
        what="the Event naming mcphealth.dev/port",
    )
    assert "mcphealth.dev/port is needed" in event["message"], event["message"]
    assert rows(kubectl) == []

    # A Service whose monitor exists: a bad value keeps the monitor as it was.
    kubectl.apply(annotated("ok", {MONITOR: "true"}))
    wait_for(lambda: generated(kubectl, "ok"), timeout=CONVERGES_S, what="generated")
    kubectl("annotate", "service", "ok", "mcphealth.dev/transport=websocket")
    [event] = wait_for(
        lambda: events(kubectl, "ok", "InvalidMonitorAnnotation"),
        timeout=CONVERGES_S,
        what="the Event naming mcphealth.dev/transport",
    )
    assert 'mcphealth.dev/transport="websocket"' in event["message"], event["message"]
    assert (generated(kubectl, "ok") or {})["spec"]["target"]["transport"] == "streamable-http"
    # Fixed: followed.
    kubectl("annotate", "service", "ok", "--overwrite", "mcphealth.dev/transport=sse")
    wait_for(
        lambda: (generated(kubectl, "ok") or {})["spec"]["target"]["transport"] == "sse",
        timeout=CONVERGES_S,
        what="sse",
    )
    assert rows(kubectl) == ["mcphealthmonitor.mcphealth.dev/ok"]
    assert op.proc.poll() is None
    no_traceback(op)


def test_a_hand_written_monitor_always_wins(kubectl: Kubectl, operator: OperatorFactory) -> None:
    op = operator(env=discovering())
    # Written first: the annotation makes no second monitor, and says why.
    kubectl.apply(monitor("mine", service="api"))
    kubectl.apply(annotated("api", {MONITOR: "true"}))
    [event] = wait_for(
        lambda: events(kubectl, "api", "MonitorNotGenerated"),
        timeout=CONVERGES_S,
        what="MonitorNotGenerated on the Service",
    )
    assert "hand-written MCPHealthMonitor mine" in event["message"], event["message"]
    assert generated(kubectl, "api") is None

    # Written after: the generated monitor goes.
    kubectl.apply(annotated("web", {MONITOR: "true"}))
    wait_for(lambda: generated(kubectl, "web"), timeout=CONVERGES_S, what="generated for web")
    kubectl.apply(monitor("mine-web", service="web"))
    wait_for(
        lambda: generated(kubectl, "web") is None,
        timeout=CONVERGES_S,
        what="the generated monitor removed",
    )

    # Same name, another target: never touched, and no monitor generated.
    kubectl.apply(monitor("db", service="elsewhere"))
    before = kubectl.json("mcphealth", "db")
    kubectl.apply(annotated("db", {MONITOR: "true"}))
    [event] = wait_for(
        lambda: events(kubectl, "db", "MonitorNotGenerated"),
        timeout=CONVERGES_S,
        what="MonitorNotGenerated for the name taken",
    )
    assert event["type"] == "Warning" and "was not generated" in event["message"]
    after = kubectl.json("mcphealth", "db")
    assert after["metadata"]["uid"] == before["metadata"]["uid"]
    assert after["metadata"]["generation"] == before["metadata"]["generation"]
    assert LABEL not in (after["metadata"].get("labels") or {})
    assert "ownerReferences" not in after["metadata"]
    assert after["spec"]["target"]["service"]["name"] == "elsewhere"
    # One row per server.
    assert rows(kubectl) == [
        f"mcphealthmonitor.mcphealth.dev/{n}" for n in ("db", "mine", "mine-web")
    ]
    assert rows(kubectl, "-l", LABEL) == []
    no_traceback(op)


# -- other operators' MCPServers ---------------------------------------------------------

SERVERS: dict[str, tuple[str, str, dict[str, Any], str, int, str, str]] = {
    # source: (group, version served newest, spec, Service, port, transport, path)
    "toolhive": (
        "toolhive.stacklok.dev",
        "v1beta1",
        {"image": "ghcr.io/stackloklabs/fetch:latest", "transport": "sse", "proxyPort": 8081},
        "mcp-fetch-proxy",
        8081,
        "sse",
        "/sse",
    ),
    "kmcp": (
        "kagent.dev",
        "v1alpha1",
        {"deployment": {"image": "fetch:latest", "port": 3001}, "transportType": "stdio"},
        "fetch",
        3001,
        "streamable-http",
        "/mcp",
    ),
    "mcp-lifecycle-operator": (
        "mcp.x-k8s.io",
        "v1beta1",
        {
            "source": {"type": "ContainerImage", "containerImage": {"ref": "x.io/fetch:1"}},
            "config": {"port": 8080, "path": "/api/mcp"},
        },
        "fetch",
        8080,
        "streamable-http",
        "/api/mcp",
    ),
}


def mcp_server(group: str, version: str, name: str, spec: dict[str, Any]) -> str:
    return json.dumps(
        {
            "apiVersion": f"{group}/{version}",
            "kind": "MCPServer",
            "metadata": {"name": name},
            "spec": spec,
        }
    )


@pytest.mark.parametrize("source", list(SERVERS))
def test_an_mcp_server_of_each_operator_gets_a_monitor_of_its_service(
    third_party_crds: Kubectl, operator: OperatorFactory, source: str
) -> None:
    kubectl = third_party_crds
    group, version, spec, service, port, transport, path = SERVERS[source]
    op = operator(env=discovering(services=False, groups=GROUPS))
    kubectl.apply(mcp_server(group, version, "fetch", spec))
    uid = kubectl.json(f"mcpservers.{group}", "fetch")["metadata"]["uid"]
    created = wait_for(lambda: generated(kubectl, service), timeout=CONVERGES_S, what="generated")
    meta = created["metadata"]
    assert meta["labels"] == {LABEL: source}
    assert meta["ownerReferences"] == [
        {
            "apiVersion": f"{group}/{version}",
            "kind": "MCPServer",
            "name": "fetch",
            "uid": uid,
            "controller": True,
        }
    ]
    target = created["spec"]["target"]
    assert target["service"] == {"name": service, "port": port}
    assert (target["transport"], target["path"]) == (transport, path)
    assert rows(kubectl, "-l", f"{LABEL}={source}") == [f"mcphealthmonitor.mcphealth.dev/{service}"]
    # The operator that would make the Service is not here: the monitor says so.
    wait_for(
        lambda: (
            conditions(kubectl, service).get("Reachable", {}).get("reason") == "ServiceNotFound"
        ),
        timeout=30,
        what="ServiceNotFound",
    )
    # Deleted with its MCPServer (garbage collection, on a cluster; here: by the operator).
    kubectl("delete", f"mcpservers.{group}", "fetch")
    wait_for(lambda: generated(kubectl, service) is None, timeout=CONVERGES_S, what="deleted")
    no_traceback(op)


def test_an_mcp_server_whose_service_appears_later_converges(
    third_party_crds: Kubectl,
    operator: OperatorFactory,
    sample_server: SampleFactory,
    pg: Postgres,
) -> None:
    kubectl = third_party_crds
    server = sample_server("codebase-mcp", dsn=pg.dsn)
    operator(*resolve(kubectl, "fetch", server), env=discovering(services=False, groups=GROUPS))
    spec = {"deployment": {"image": "fetch:latest", "port": 8000}, "transportType": "http"}
    kubectl.apply(mcp_server("kagent.dev", "v1alpha1", "fetch", spec))
    wait_for(
        lambda: (
            generated(kubectl, "fetch")
            and conditions(kubectl, "fetch").get("Reachable", {}).get("reason") == "ServiceNotFound"
        ),
        timeout=CONVERGES_S,
        what="the monitor, ServiceNotFound",
    )
    # The Service kmcp would make (named after the MCPServer, port "http").
    kubectl.apply(annotated("fetch", {}, [{"name": "http", "port": 8000}]))
    wait_for(lambda: health(kubectl, "fetch") == "Healthy", timeout=30, what="Healthy")


def test_absent_crds_are_no_error_and_a_crd_installed_later_is_followed(
    kubectl: Kubectl, operator: OperatorFactory
) -> None:
    kubectl("delete", "-f", str(THIRD_PARTY), "--ignore-not-found", "--wait=true", namespaced=False)
    try:
        op = operator(env=discovering(groups=GROUPS, recheck=2))
        # Discovery of Services works meanwhile.
        kubectl.apply(annotated("api", {MONITOR: "true"}))
        wait_for(lambda: generated(kubectl, "api"), timeout=CONVERGES_S, what="generated")
        wait_for(
            lambda: op.log.read_text().count("not served (CRD not installed)") == len(GROUPS),
            timeout=CONVERGES_S,
            what="each absent CRD noted once",
        )
        install_third_party_crds(kubectl)
        kubectl.apply(
            mcp_server("toolhive.stacklok.dev", "v1beta1", "fetch", {"transport": "stdio"})
        )
        created = wait_for(
            lambda: generated(kubectl, "mcp-fetch-proxy"),
            timeout=CONVERGES_S,
            what="the MCPServer followed within the re-check period",
        )
        assert created["metadata"]["labels"] == {LABEL: "toolhive"}
        target = created["spec"]["target"]
        assert target["service"] == {"name": "mcp-fetch-proxy", "port": 8080}
        assert (target["transport"], target["path"]) == ("streamable-http", "/mcp")
        log = op.log.read_text()
        assert "following MCPServers of toolhive.stacklok.dev/v1beta1" in log, log[-3000:]
        assert op.proc.poll() is None
        assert " ERROR " not in log, log[-3000:]
        no_traceback(op)
    finally:
        install_third_party_crds(kubectl)


@pytest.fixture
def garbage_collector(kubectl: Kubectl, tmp_path: Path) -> Iterator[Path]:
    """kube-controller-manager running only its garbage collector, against this API server."""
    binary = controlplane.node_binary("kube-controller-manager")
    kubeconfig = str(kubectl.plane.kubeconfig)
    log = tmp_path / "kube-controller-manager.log"
    proc = subprocess.Popen(
        [
            str(binary),
            f"--kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
            "--controllers=garbagecollector",
            "--leader-elect=false",
            "--secure-port=0",
        ],
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    yield log
    _procs.stop(proc)


def test_the_garbage_collector_deletes_generated_monitors_with_their_owner(
    third_party_crds: Kubectl, operator: OperatorFactory, garbage_collector: Path
) -> None:
    kubectl = third_party_crds
    op = operator(env=discovering(groups=GROUPS))
    kubectl.apply(annotated("api", {MONITOR: "true"}))
    kubectl.apply(mcp_server("kagent.dev", "v1alpha1", "fetch", {"deployment": {"port": 3000}}))
    wait_for(
        lambda: generated(kubectl, "api") and generated(kubectl, "fetch"),
        timeout=CONVERGES_S,
        what="both monitors generated",
    )
    # The operator stopped: whatever deletes the monitors now is the collector.
    op.stop()
    kubectl("delete", "service", "api")
    kubectl("delete", "mcpservers.kagent.dev", "fetch")
    wait_for(
        lambda: generated(kubectl, "api") is None and generated(kubectl, "fetch") is None,
        timeout=120,
        what="garbage collection of both monitors",
    )


def test_a_mixed_fleet_shows_true_without_a_hand_written_monitor(
    kubectl: Kubectl,
    operator: OperatorFactory,
    sample_server: SampleFactory,
    hostile_server: HostileFactory,
    pg: Postgres,
) -> None:
    # Two annotated Services: one server publishes the health document, the
    # other (a low-level SDK server with a tool) serves no resources at all.
    publishing = sample_server("codebase-mcp", dsn=pg.dsn)
    bare_port = int(hostile_server("tools-only").rsplit(":", 1)[1])
    ns = kubectl.namespace
    operator(
        "--discover-services",
        "--resolve",
        f"codebase-mcp.{ns}.svc:8000=127.0.0.1:{publishing.port}",
        "--resolve",
        f"search-mcp.{ns}.svc:8000=127.0.0.1:{bare_port}",
    )
    for name in ("codebase-mcp", "search-mcp"):
        kubectl.apply(annotated(name, {MONITOR: "true", INTERVAL: "1s"}))

    def settled() -> dict[str, list[str]] | None:
        rows = {
            line.split()[0]: line.split()
            for line in kubectl("get", "mcphealth").stdout.splitlines()[1:]
        }
        ready = set(rows) == {"codebase-mcp", "search-mcp"} and all(
            "Healthy" in r and ("healthResource" in r or "handshake" in r) for r in rows.values()
        )
        return rows if ready else None

    rows = wait_for(settled, timeout=60, what="both generated monitors Healthy")
    assert "healthResource" in rows["codebase-mcp"] and "connected" in rows["codebase-mcp"]
    assert "handshake" in rows["search-mcp"]
    items = kubectl.json("mcphealth")["items"]
    assert {i["metadata"]["labels"][LABEL] for i in items} == {"service"}
    bare = next(i for i in items if i["metadata"]["name"] == "search-mcp")["status"]
    assert [c["reason"] for c in bare["conditions"] if c["type"] == "HealthResource"] == [
        "HealthResourceNotListed"
    ]
