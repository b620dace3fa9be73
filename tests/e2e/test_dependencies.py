"""Dependencies are watched: a monitor follows the Services and Secrets it names.

Applied before its Service, a monitor is ServiceNotFound until the Service
appears, then goes Healthy within seconds, without anyone editing it; the same
for a Secret that appears after the monitor, and for a bearer token rotated in
its Secret (Unauthorized until then). A deleted Service is noticed too, and a
Service whose port moves or that turns ExternalName.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mcp_health_testbed.postgres import Postgres
from tests.conftest import SampleFactory
from tests.e2e.conftest import Kubectl, OperatorFactory, monitor, service, wait_for
from tests.e2e.test_remediation import health, resolve
from tests.e2e.test_security import conditions, secret, with_spec

# Seconds a dependency change may take to show: well under any interval of a
# periodic re-read (there is none: only the watch brings it).
CONVERGES_S = 15


def reason(kubectl: Kubectl, name: str) -> str | None:
    return conditions(kubectl, name).get("Reachable", {}).get("reason")


def test_a_monitor_follows_its_service_appearing_and_going(
    kubectl: Kubectl, operator: OperatorFactory, sample_server: SampleFactory, pg: Postgres
) -> None:
    server = sample_server("codebase-mcp", dsn=pg.dsn)
    operator(*resolve(kubectl, "codebase-mcp", server))
    kubectl.apply(monitor("early", service="codebase-mcp"))
    wait_for(lambda: reason(kubectl, "early") == "ServiceNotFound", timeout=30, what="refused")

    kubectl.apply(service("codebase-mcp"))
    wait_for(lambda: health(kubectl, "early") == "Healthy", timeout=CONVERGES_S, what="Healthy")

    kubectl("delete", "service", "codebase-mcp")
    wait_for(
        lambda: reason(kubectl, "early") == "ServiceNotFound",
        timeout=CONVERGES_S,
        what="ServiceNotFound after the delete",
    )


@pytest.mark.parametrize("scoped", [False, True], ids=["kopf-watch", "secret-namespace"])
def test_a_monitor_follows_its_secret_appearing_and_its_token_rotating(
    kubectl: Kubectl,
    operator: OperatorFactory,
    sample_server: SampleFactory,
    pg: Postgres,
    tmp_path: Path,
    scoped: bool,
) -> None:
    """Scoped: Secrets readable in listed namespaces only, watched by the operator's own
    per-namespace watch instead of kopf's (``--secret-namespace``)."""
    token_file = tmp_path / "token"
    token_file.write_text("the-current-token")
    server = sample_server(
        "codebase-mcp", dsn=pg.dsn, extra_args=("--bearer-token-file", str(token_file))
    )
    kubectl.apply(service("codebase-mcp"))
    scope = ("--secret-namespace", kubectl.namespace) if scoped else ()
    operator(*resolve(kubectl, "codebase-mcp", server), *scope)
    auth = "auth: {bearerTokenSecretRef: {name: mcp-token, key: token}}"
    kubectl.apply(with_spec(monitor("m", service="codebase-mcp"), auth))
    wait_for(lambda: reason(kubectl, "m") == "SecretNotFound", timeout=30, what="SecretNotFound")

    # The Secret appears, holding an old token: read at once, refused by the server.
    kubectl.apply(secret("mcp-token", token="an-old-token"))
    wait_for(
        lambda: reason(kubectl, "m") == "Unauthorized", timeout=CONVERGES_S, what="Unauthorized"
    )
    # The token is rotated in the Secret: read at once, Healthy without editing the monitor.
    kubectl.apply(secret("mcp-token", token="the-current-token"))
    wait_for(lambda: health(kubectl, "m") == "Healthy", timeout=CONVERGES_S, what="Healthy")
    assert kubectl.json("mcphealth", "m")["metadata"]["generation"] == 1


def test_a_monitor_follows_its_service_port_changing(
    kubectl: Kubectl, operator: OperatorFactory, sample_server: SampleFactory, pg: Postgres
) -> None:
    """The monitor names the port by name; the Service moves it: the new number is used."""
    server = sample_server("codebase-mcp", dsn=pg.dsn)
    operator(*resolve(kubectl, "codebase-mcp", server))  # only :8000 reaches the server
    kubectl.apply(service("codebase-mcp", port=9000))
    kubectl.apply(monitor("m", service="codebase-mcp", port="mcp"))
    wait_for(lambda: reason(kubectl, "m") is not None, timeout=30, what="a first verdict")
    assert health(kubectl, "m") != "Healthy"
    assert kubectl.json("mcphealth", "m")["status"]["endpoint"].endswith(":9000/mcp")

    kubectl.apply(service("codebase-mcp", port=8000))
    wait_for(lambda: health(kubectl, "m") == "Healthy", timeout=CONVERGES_S, what="Healthy")
    # :8000 is the port --resolve sends to the server.
    endpoint = kubectl.json("mcphealth", "m")["status"]["endpoint"]
    assert endpoint == f"http://127.0.0.1:{server.port}/mcp", endpoint


def test_a_service_turned_externalname_is_refused_as_an_outside_target(
    kubectl: Kubectl, operator: OperatorFactory, sample_server: SampleFactory, pg: Postgres
) -> None:
    """An ExternalName is an alias of an outside host: without URL targets allowed, refused."""
    server = sample_server("codebase-mcp", dsn=pg.dsn)
    kubectl.apply(service("codebase-mcp"))
    operator(*resolve(kubectl, "codebase-mcp", server))
    kubectl.apply(monitor("m", service="codebase-mcp"))
    wait_for(lambda: health(kubectl, "m") == "Healthy", timeout=30, what="Healthy")

    kubectl(
        "patch",
        "service",
        "codebase-mcp",
        "--type=merge",
        "-p",
        '{"spec": {"type": "ExternalName", "externalName": "metadata.example.invalid",'
        ' "clusterIP": null, "clusterIPs": null}}',
    )
    wait_for(
        lambda: reason(kubectl, "m") == "TargetNotAllowed",
        timeout=CONVERGES_S,
        what="TargetNotAllowed",
    )
    message = conditions(kubectl, "m")["Reachable"]["message"]
    assert "ExternalName" in message and "metadata.example.invalid" in message, message
