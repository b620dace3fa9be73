"""The real control plane: kubectl round trips, CRDs, status subresource, Events, RBAC."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from mcp_health_testbed import controlplane
from mcp_health_testbed.controlplane import ControlPlane

WIDGET_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "widgets.example.mcphealth.dev"},
    "spec": {
        "group": "example.mcphealth.dev",
        "names": {"kind": "Widget", "plural": "widgets", "singular": "widget"},
        "scope": "Namespaced",
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "subresources": {"status": {}},
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {"type": "object", "properties": {"size": {"type": "integer"}}},
                            "status": {
                                "type": "object",
                                "properties": {"phase": {"type": "string"}},
                            },
                        },
                    }
                },
            }
        ],
    },
}


def kubectl(
    plane: ControlPlane, *args: str, stdin: str | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(controlplane.kubectl_binary()), "--kubeconfig", str(plane.kubeconfig), *args],
        input=stdin,
        capture_output=True,
        text=True,
        check=check,
        timeout=60,
    )


def test_kubectl_lists_the_bootstrap_namespaces(control_plane: ControlPlane) -> None:
    names = kubectl(control_plane, "get", "ns", "-o", "name").stdout.split()
    assert {"namespace/default", "namespace/kube-system"} <= set(names)


def test_server_reports_the_pinned_version(control_plane: ControlPlane) -> None:
    version = json.loads(kubectl(control_plane, "version", "-o", "json").stdout)
    assert version["serverVersion"]["gitVersion"] == controlplane.K8S_VERSION


def test_crd_create_get_and_status_subresource_patch(control_plane: ControlPlane) -> None:
    kubectl(control_plane, "apply", "-f", "-", stdin=json.dumps(WIDGET_CRD))
    kubectl(
        control_plane,
        "wait",
        "--for=condition=Established",
        "--timeout=30s",
        "crd/widgets.example.mcphealth.dev",
    )
    widget = {
        "apiVersion": "example.mcphealth.dev/v1",
        "kind": "Widget",
        "metadata": {"name": "w1", "namespace": "default"},
        "spec": {"size": 3},
    }
    kubectl(control_plane, "apply", "-f", "-", stdin=json.dumps(widget))

    # A status written through the main resource is dropped...
    kubectl(
        control_plane,
        "patch",
        "widget",
        "w1",
        "--type=merge",
        "-p",
        '{"status": {"phase": "Ignored"}}',
    )
    got = json.loads(kubectl(control_plane, "get", "widget", "w1", "-o", "json").stdout)
    assert "status" not in got or got["status"].get("phase") != "Ignored"

    # ...and lands through the status subresource.
    kubectl(
        control_plane,
        "patch",
        "widget",
        "w1",
        "--subresource=status",
        "--type=merge",
        "-p",
        '{"status": {"phase": "Ready"}}',
    )
    got = json.loads(kubectl(control_plane, "get", "widget", "w1", "-o", "json").stdout)
    assert got["status"]["phase"] == "Ready"
    assert got["spec"]["size"] == 3


def test_event_create_and_list(control_plane: ControlPlane) -> None:
    event = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": "w1.probe", "namespace": "default"},
        "involvedObject": {
            "kind": "Widget",
            "name": "w1",
            "namespace": "default",
            "apiVersion": "example.mcphealth.dev/v1",
        },
        "reason": "HealthDegraded",
        "message": "pool utilization 0.85",
        "type": "Warning",
        "source": {"component": "mcp-health-operator"},
        "count": 1,
    }
    kubectl(control_plane, "create", "-f", "-", stdin=json.dumps(event))
    listed = json.loads(kubectl(control_plane, "get", "events", "-o", "json").stdout)
    reasons = {(e["reason"], e["involvedObject"]["name"]) for e in listed["items"]}
    assert ("HealthDegraded", "w1") in reasons


def test_rbac_is_enforced_for_a_service_account(
    control_plane: ControlPlane, tmp_path: Path
) -> None:
    kubectl(control_plane, "create", "serviceaccount", "reader", "-n", "default")
    token = kubectl(control_plane, "create", "token", "reader", "-n", "default").stdout.strip()
    config = tmp_path / "reader.kubeconfig"
    config.write_text(
        controlplane.kubeconfig_text(
            server=control_plane.server, ca_file=control_plane.ca_file, user="reader", token=token
        )
    )
    denied = subprocess.run(
        [str(controlplane.kubectl_binary()), "--kubeconfig", str(config), "get", "secrets"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert denied.returncode != 0
    assert "forbidden" in denied.stderr.lower()
    kubectl(
        control_plane,
        "create",
        "role",
        "secret-reader",
        "--verb=list",
        "--resource=secrets",
        "-n",
        "default",
    )
    kubectl(
        control_plane,
        "create",
        "rolebinding",
        "reader-secrets",
        "--role=secret-reader",
        "--serviceaccount=default:reader",
        "-n",
        "default",
    )
    for _ in range(50):  # the RBAC authorizer's cache catches up within moments
        allowed = subprocess.run(
            [str(controlplane.kubectl_binary()), "--kubeconfig", str(config), "get", "secrets"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        if allowed.returncode == 0:
            break
        time.sleep(0.1)
    assert allowed.returncode == 0, allowed.stderr


@pytest.mark.parametrize("binary", [controlplane.apiserver_binary, controlplane.etcd_binary])
def test_second_start_reuses_the_cached_binaries(binary: object) -> None:
    path = binary()  # type: ignore[operator]
    before = path.stat().st_mtime_ns
    started = time.monotonic()
    again = binary()  # type: ignore[operator]
    assert again == path
    assert path.stat().st_mtime_ns == before  # not rebuilt
    assert time.monotonic() - started < 5
    assert str(path).startswith(str(controlplane.cache_dir()))
    assert path.parent.name.endswith(
        controlplane.K8S_VERSION if "apiserver" in path.name else controlplane.ETCD_VERSION
    )


def test_stop_ends_both_processes(tmp_path: Path) -> None:
    plane = ControlPlane(workdir=tmp_path / "cp").start()
    pids = [plane._apiserver.pid, plane._etcd.pid]  # type: ignore[union-attr]
    kubectl(plane, "get", "ns")
    plane.stop()
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
