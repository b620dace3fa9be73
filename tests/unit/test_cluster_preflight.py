"""A machine that cannot run the cluster gets one error naming everything it lacks."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from mcp_health_testbed import cluster


def test_preflight_names_each_missing_command_and_plugin(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    real_which = shutil.which
    gone = {"containerd", "runc", "conntrack"}
    monkeypatch.setattr(
        shutil, "which", lambda name: None if name in gone else real_which(name) or name
    )
    monkeypatch.setattr(cluster, "CNI_BIN", tmp_path)  # an empty plugin folder
    with pytest.raises(cluster.ClusterError) as refused:
        cluster.preflight()
    message = str(refused.value)
    assert "the command containerd (Debian package containerd)" in message
    assert "the command runc (Debian package runc)" in message
    assert "the command conntrack (Debian package conntrack)" in message
    for plugin in cluster.CNI_PLUGINS:
        assert f"the CNI plugin {tmp_path / plugin}" in message
    assert "hack/system-deps.sh" in message


def test_preflight_wants_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(cluster.ClusterError, match="root"):
        cluster.preflight()
