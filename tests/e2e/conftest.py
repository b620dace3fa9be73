"""The operator as users run it (``mcp-health run``), against the real API server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from mcp_health_testbed import _procs, controlplane
from mcp_health_testbed.controlplane import ControlPlane

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Kubectl:
    plane: ControlPlane
    namespace: str

    def __call__(
        self, *args: str, stdin: str | None = None, check: bool = True, namespaced: bool = True
    ) -> subprocess.CompletedProcess[str]:
        argv = [str(controlplane.kubectl_binary()), "--kubeconfig", str(self.plane.kubeconfig)]
        if namespaced:
            argv += ["-n", self.namespace]
        done = subprocess.run(
            [*argv, *args], input=stdin, capture_output=True, text=True, timeout=60
        )
        if check and done.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed: {done.stderr}")
        return done

    def json(self, *args: str) -> Any:
        return json.loads(self("get", *args, "-o", "json").stdout)

    def apply(self, manifest: str) -> subprocess.CompletedProcess[str]:
        return self("apply", "-f", "-", stdin=manifest)

    def events(self, name: str) -> list[dict[str, Any]]:
        items = self.json("events", "--field-selector", f"involvedObject.name={name}")["items"]
        return [e for e in items if e.get("source", {}).get("component") == "mcp-health-operator"]


@pytest.fixture(scope="session")
def crds(control_plane: ControlPlane) -> ControlPlane:
    kubectl = Kubectl(control_plane, "default")
    kubectl("apply", "-f", str(REPO / "crds"), namespaced=False)
    kubectl(
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        "crd/mcphealthmonitors.mcphealth.dev",
        namespaced=False,
    )
    return control_plane


@pytest.fixture
def kubectl(crds: ControlPlane) -> Kubectl:
    """kubectl bound to a fresh namespace of the test's own."""
    namespace = f"t-{uuid.uuid4().hex[:8]}"
    k = Kubectl(crds, namespace)
    k("create", "namespace", namespace, namespaced=False)
    return k


@dataclass
class Operator:
    proc: subprocess.Popen[bytes]
    metrics_port: int
    log: Path

    def metrics(self) -> dict[str, list[tuple[dict[str, str], float]]]:
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            text = response.read().decode()
        out: dict[str, list[tuple[dict[str, str], float]]] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                out.setdefault(sample.name, []).append((dict(sample.labels), sample.value))
        return out

    def value(self, name: str, **labels: str) -> float | None:
        for sample_labels, value in self.metrics().get(name, []):
            if all(sample_labels.get(k) == v for k, v in labels.items()):
                return value
        return None

    def stop(self) -> None:
        _procs.stop(self.proc)


OperatorFactory = Callable[..., Operator]


def start_operator(
    namespace: str, kubeconfig: Path, log: Path, *flags: str, env: dict[str, str] | None = None
) -> Operator:
    """``mcp-health run`` for ``namespace`` as a subprocess, once its metrics port answers
    (``env``: more environment, e.g. the chart's ``MCP_HEALTH_DISCOVER_*``)."""
    port = _procs.free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mcp_health_operator.runtime.cli",
            "run",
            "--namespace",
            namespace,
            "--metrics-port",
            str(port),
            "--metrics-host",
            "127.0.0.1",
            *flags,
        ],
        env={**os.environ, "KUBECONFIG": str(kubeconfig), **(env or {})},
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    _procs.wait_for_port("127.0.0.1", port, timeout=30, proc=proc, log=log)
    return Operator(proc, port, log)


@pytest.fixture
def operator(kubectl: Kubectl, tmp_path: Path) -> Iterator[OperatorFactory]:
    """Start ``mcp-health run`` for the test's namespace with extra flags."""
    started: list[Operator] = []

    def start(
        *flags: str, kubeconfig: Path | None = None, env: dict[str, str] | None = None
    ) -> Operator:
        op = start_operator(
            kubectl.namespace,
            kubeconfig or kubectl.plane.kubeconfig,
            tmp_path / f"operator-{len(started)}.log",
            *flags,
            env=env,
        )
        started.append(op)
        return op

    yield start
    for op in started:
        op.stop()


def wait_for(predicate: Callable[[], Any], *, timeout: float, what: str) -> Any:
    """Poll until ``predicate()`` is truthy; fail naming ``what`` and the last value."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {last!r}")


def monitor(
    name: str,
    *,
    service: str | None = None,
    port: int | str = 8000,
    url: str | None = None,
    transport: str = "streamable-http",
    interval: str = "1s",
    timeout: str = "500ms",
    failure_threshold: int = 3,
    extra: str = "",
) -> str:
    target = f"service: {{name: {service}, port: {port}}}" if service else f"url: '{url}'"
    return f"""apiVersion: mcphealth.dev/v1alpha1
kind: MCPHealthMonitor
metadata: {{name: {name}}}
spec:
  target: {{{target}, transport: {transport}}}
  probe: {{interval: {interval}, timeout: {timeout}, failureThreshold: {failure_threshold}}}
{extra}"""


def service(name: str, port: int = 8000) -> str:
    return f"""apiVersion: v1
kind: Service
metadata: {{name: {name}}}
spec:
  ports: [{{name: mcp, port: {port}}}]
"""
