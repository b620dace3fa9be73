"""The cluster's life cycle (runs last in the package: it takes the cluster down).

A running cluster is reused; ``down`` leaves no process, mount, bridge, veth,
network namespace, iptables chain, cgroup or path outside its folder; a start
that fails half-way is torn down, not left running.
"""

from __future__ import annotations

import pytest

from mcp_health_testbed import cluster as cluster_mod


def test_reuse_then_down_leaves_nothing_and_a_failed_start_is_torn_down(
    cluster: cluster_mod.Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A second `make cluster` reuses the running one.
    assert cluster_mod.up(build=False).server == cluster.server

    assert cluster_mod.down() == []
    assert cluster_mod.running() is None
    assert cluster_mod.leftovers() == []

    def injected(_: cluster_mod.Cluster) -> None:
        raise cluster_mod.ClusterError("injected failure with every daemon started")

    monkeypatch.setattr(cluster_mod, "_addons", injected)
    with pytest.raises(cluster_mod.ClusterError, match="injected failure"):
        cluster_mod.up(build=False)
    assert cluster_mod.running() is None
    assert cluster_mod.leftovers() == []
