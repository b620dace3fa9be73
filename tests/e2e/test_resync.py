"""A monitor deleted while the operator's watch is away stops being probed.

No DELETED event comes for a monitor removed while the watch is away. The
watch lists again after the outage and reports a monitor missing from that
list as deleted (``kube.listwatch``); the periodic resync (``--resync``,
``tests/unit/test_fleet_resync.py``) is the backstop. Either way its worker
stops and its series disappear.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from mcp_health_testbed import controlplane
from mcp_health_testbed.controlplane import ControlPlane
from mcp_health_testbed.postgres import Postgres
from tests.conftest import SampleFactory
from tests.e2e.conftest import Kubectl, monitor, service, start_operator, wait_for
from tests.e2e.test_faults import own_plane, probes, resolve

__all__ = ["own_plane"]  # the fixture, used by name


def _health(k: Kubectl, name: str) -> str | None:
    done = k("get", "mcphealth", name, "-o", "jsonpath={.status.health}", check=False)
    return done.stdout or None


def test_a_monitor_deleted_during_an_api_outage_stops_being_probed(
    own_plane: Kubectl, sample_server: SampleFactory, pg: Postgres, tmp_path: Path
) -> None:
    k = own_plane
    plane = k.plane
    server = sample_server("codebase-mcp", dsn=pg.dsn)
    k.apply(service("codebase-mcp"))
    op = start_operator(
        k.namespace,
        plane.kubeconfig,
        tmp_path / "operator.log",
        *resolve(k.namespace, "codebase-mcp", server),
        "--resync",
        "2",
    )
    try:
        for name in ("kept", "doomed"):
            k.apply(monitor(name, service="codebase-mcp"))
        for name in ("kept", "doomed"):
            wait_for(lambda: _health(k, name) == "Healthy", timeout=30, what=f"{name} Healthy")  # noqa: B023
        assert probes(op, "doomed") > 0

        # The operator's API server goes away; the monitor is deleted through
        # another API server of the same etcd, which the operator does not use.
        plane.stop_apiserver()
        other = ControlPlane(workdir=plane.workdir, etcd_port=plane.etcd_port, token=plane.token)
        other._start_apiserver(controlplane.apiserver_binary(), plane.workdir / "pki", timeout=120)
        kubeconfig = tmp_path / "other-kubeconfig"
        kubeconfig.write_text(
            controlplane.kubeconfig_text(
                server=other.server, ca_file=plane.ca_file, user="admin", token=plane.token
            )
        )
        subprocess.run(
            [str(controlplane.kubectl_binary()), "--kubeconfig", str(kubeconfig), "-n",
             k.namespace, "delete", "mcphealth", "doomed", "--wait=false"],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip
        other.stop_apiserver()
        plane.start_apiserver()

        # No DELETED event came: the list after the outage tells.
        wait_for(
            lambda: probes(op, "doomed") == 0,
            timeout=30,
            what="doomed's series gone",
        )
        kept = probes(op, "kept")
        time.sleep(3)
        assert probes(op, "doomed") == 0
        assert probes(op, "kept") > kept  # the other monitor is probed as before
    finally:
        op.stop()
