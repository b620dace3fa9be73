"""Security on real parts: TLS with a CA from a Secret, bearer tokens from Secrets,
destinations that are always refused, and secrets that never leak."""

from __future__ import annotations

import base64
import json
import subprocess
from pathlib import Path

import pytest

from mcp_health_testbed.postgres import Postgres
from tests.conftest import SampleFactory
from tests.e2e.conftest import Kubectl, OperatorFactory, monitor, service, wait_for
from tests.e2e.test_remediation import health, resolve

TOKEN = "tok-4f1c9e0b7d2a-never-print-me"


def make_tls(workdir: Path) -> tuple[Path, Path, Path]:
    """A CA, and a server certificate it signed for 127.0.0.1 / localhost."""

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=workdir, check=True, capture_output=True)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=test-ca",
        "-keyout", "ca.key", "-out", "ca.crt")  # fmt: skip
    run("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=codebase-mcp",
        "-keyout", "server.key", "-out", "server.csr")  # fmt: skip
    (workdir / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
        "-CAcreateserial", "-days", "1", "-extfile", "san.ext", "-out", "server.crt")  # fmt: skip
    return workdir / "ca.crt", workdir / "server.crt", workdir / "server.key"


def secret(name: str, **data: str) -> str:
    encoded = {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}
    return json.dumps(
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "data": encoded}
    )


def with_spec(manifest: str, target_extra: str) -> str:
    return manifest.replace(
        ", transport: streamable-http}", f", transport: streamable-http, {target_extra}}}"
    )


def conditions(kubectl: Kubectl, name: str) -> dict[str, dict[str, str]]:
    st = kubectl.json("mcphealth", name).get("status") or {}
    return {c["type"]: c for c in st.get("conditions") or []}


def test_tls_with_a_ca_from_a_secret_and_a_bearer_token_from_a_secret(
    kubectl: Kubectl,
    operator: OperatorFactory,
    sample_server: SampleFactory,
    pg: Postgres,
    tmp_path: Path,
) -> None:
    ca, cert, key = make_tls(tmp_path)
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    server = sample_server(
        "codebase-mcp",
        dsn=pg.dsn,
        extra_args=(
            "--ssl-certfile", str(cert), "--ssl-keyfile", str(key),
            "--bearer-token-file", str(token_file),
        ),
    )  # fmt: skip
    kubectl.apply(service("codebase-mcp"))
    kubectl.apply(secret("mcp-ca", **{"ca.crt": ca.read_text()}))
    kubectl.apply(secret("mcp-token", token=TOKEN))
    op = operator(*resolve(kubectl, "codebase-mcp", server))

    tls = "scheme: https, tls: {caSecretRef: {name: mcp-ca, key: ca.crt}}"
    auth = "auth: {bearerTokenSecretRef: {name: mcp-token, key: token}}"
    kubectl.apply(with_spec(monitor("good", service="codebase-mcp"), f"{tls}, {auth}"))
    kubectl.apply(with_spec(monitor("no-token", service="codebase-mcp"), tls))
    kubectl.apply(with_spec(monitor("no-ca", service="codebase-mcp"), f"scheme: https, {auth}"))

    st = wait_for(lambda: health(kubectl, "good") == "Healthy", timeout=40, what="Healthy")
    assert st
    assert kubectl.json("mcphealth", "good")["status"]["endpoint"].startswith("https://")

    # A refused credential is a configuration problem: Degraded, never Unhealthy.
    wait_for(lambda: health(kubectl, "no-token") == "Degraded", timeout=30, what="Degraded")
    assert conditions(kubectl, "no-token")["Reachable"]["reason"] == "Unauthorized"
    # An unknown CA fails the TLS handshake.
    wait_for(lambda: health(kubectl, "no-ca") == "Unhealthy", timeout=30, what="Unhealthy")
    assert "CERTIFICATE_VERIFY_FAILED" in conditions(kubectl, "no-ca")["Reachable"]["message"]

    # The token and the CA key never show: status, Events, metrics, log.
    places = {
        "status": kubectl("get", "mcphealth", "-o", "json").stdout,
        "events": kubectl("get", "events", "-o", "json").stdout,
        "metrics": json.dumps(op.metrics()),
        "operator log": op.log.read_text(),
    }
    for where, text in places.items():
        assert TOKEN not in text, where
        assert base64.b64encode(TOKEN.encode()).decode() not in text, where
        assert key.read_text().splitlines()[1] not in text, where


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://[fd00:ec2::254]/",
        "http://metadata.google.internal.invalid/",  # does not resolve: still not reached
    ],
)
def test_metadata_addresses_are_refused_even_when_every_url_is_allowed(
    kubectl: Kubectl, operator: OperatorFactory, url: str
) -> None:
    operator("--allow-url=http://*", "--allow-url=https://*")
    kubectl.apply(monitor("meta", url=url, transport="http"))
    wait_for(lambda: conditions(kubectl, "meta").get("Reachable"), timeout=30, what="status")
    reachable = conditions(kubectl, "meta")["Reachable"]
    assert reachable["status"] == "False"
    if "invalid" in url:
        assert reachable["reason"] in ("TargetUnreachable", "TargetNotAllowed")
    else:
        assert reachable["reason"] == "TargetNotAllowed"
        assert "link-local, metadata" in reachable["message"]


def test_the_api_server_is_refused_even_when_every_url_is_allowed(
    kubectl: Kubectl, operator: OperatorFactory
) -> None:
    operator("--allow-url=https://*", "--allow-url=http://*")
    kubectl.apply(monitor("api", url=f"{kubectl.plane.server}/", transport="http"))
    wait_for(lambda: conditions(kubectl, "api").get("Reachable"), timeout=30, what="status")
    reachable = conditions(kubectl, "api")["Reachable"]
    assert reachable["reason"] == "TargetNotAllowed"
    assert "Kubernetes API server" in reachable["message"]
