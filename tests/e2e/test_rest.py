"""The frequent writes' own requests (``kube.rest``) on the real API server: credentials
as a rotated token file, and the answers the callers tell apart."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from lightkube import AsyncClient, KubeConfig

from mcp_health_operator.core.events import EventSpec, Post
from mcp_health_operator.kube.api import Kube, ObjectRef
from mcp_health_operator.kube.rest import RestError
from tests.e2e.conftest import Kubectl, monitor


def _kube(kubectl: Kubectl, token_file: Path) -> Kube:
    plane = kubectl.plane
    config = KubeConfig.from_dict(
        {
            "clusters": [
                {
                    "name": "c",
                    "cluster": {
                        "server": plane.server,
                        "certificate-authority": str(plane.ca_file),
                    },
                }
            ],
            "users": [{"name": "u", "user": {"tokenFile": str(token_file)}}],
            "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
            "current-context": "x",
        }
    )
    return Kube(AsyncClient(config=config), instance="test")


def _ref(kubectl: Kubectl, name: str) -> ObjectRef:
    meta = kubectl.json("mcphealth", name)["metadata"]
    return ObjectRef(meta["namespace"], meta["name"], meta["uid"])


def test_a_rotated_token_file_is_read_again_after_a_401(kubectl: Kubectl, tmp_path: Path) -> None:
    kubectl.apply(monitor("m", url="http://127.0.0.1:9/mcp"))
    ref = _ref(kubectl, "m")
    token = tmp_path / "token"
    token.write_text("not-the-token\n")

    async def go() -> None:
        kube = _kube(kubectl, token)
        try:
            with pytest.raises(RestError, match="HTTP 401"):
                await kube.patch_status(ref, {"message": "before"})
            # The kubelet rotates the projected token: the file changes under us.
            token.write_text(kubectl.plane.token + "\n")
            assert await kube.patch_status(ref, {"message": "after"})
        finally:
            await kube.close()

    asyncio.run(go())
    assert kubectl.json("mcphealth", "m")["status"]["message"] == "after"


def test_gone_monitors_and_repeated_events_are_answers_not_errors(
    kubectl: Kubectl, tmp_path: Path
) -> None:
    kubectl.apply(monitor("m", url="http://127.0.0.1:9/mcp"))
    ref = _ref(kubectl, "m")
    token = tmp_path / "token"
    token.write_text(kubectl.plane.token)
    spec = EventSpec("Warning", "HealthDegraded", "database degraded")

    async def go() -> bool:
        kube = _kube(kubectl, token)
        try:
            await kube.post_event(ref, spec, Post("m.first", True, 1, spec.message))
            # The same Event again (a retry after a lost answer): no error.
            await kube.post_event(ref, spec, Post("m.first", True, 1, spec.message))
            # A bump of an Event that expired is posted anew.
            await kube.post_event(ref, spec, Post("m.expired", False, 3, spec.message))
            await kube.post_event(ref, spec, Post("m.first", False, 2, "again"))
            gone = ObjectRef(ref.namespace, "no-such-monitor", "0")
            return await kube.patch_status(gone, {"message": "x"})
        finally:
            await kube.close()

    assert asyncio.run(go()) is False  # 404: the monitor is gone
    events = {e["metadata"]["name"]: e for e in kubectl.events("m")}
    assert events["m.first"]["count"] == 2 and events["m.first"]["message"] == "again"
    assert events["m.expired"]["count"] == 3
    assert events["m.first"]["involvedObject"]["uid"] == ref.uid


def test_the_status_is_one_field_to_the_api_server_and_patches_keep_the_rest(
    kubectl: Kubectl, tmp_path: Path
) -> None:
    # The CRD declares the status atomic: its writer's managedFields entry is
    # `f:status: {}`, not every leaf again. A merge patch still changes only
    # the fields it names.
    kubectl.apply(monitor("m", url="http://127.0.0.1:9/mcp"))
    ref = _ref(kubectl, "m")
    token = tmp_path / "token"
    token.write_text(kubectl.plane.token)
    conditions = [{"type": "Healthy", "status": "True", "reason": "AllChecksPassing"}]

    async def go() -> None:
        kube = _kube(kubectl, token)
        try:
            first = {"health": "Healthy", "checks": {"database": {"status": "pass"}}}
            assert await kube.patch_status(ref, first | {"conditions": conditions})
            assert await kube.patch_status(ref, {"message": "later", "checks": {"cache": {}}})
        finally:
            await kube.close()

    asyncio.run(go())
    shown = kubectl.json("mcphealth", "m", "--show-managed-fields")
    st = shown["status"]
    assert st["health"] == "Healthy" and st["message"] == "later"
    assert st["checks"] == {"database": {"status": "pass"}, "cache": {}}
    assert st["conditions"] == conditions
    [entry] = [m for m in shown["metadata"]["managedFields"] if m.get("subresource") == "status"]
    assert entry["manager"] == "mcp-health-operator"
    assert entry["fieldsV1"] == {"f:status": {}}
