"""The frequent writes' own requests (``kube.rest``) on the real API server: credentials
as a rotated token file, and the answers the callers tell apart."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from lightkube import AsyncClient, KubeConfig

from mcp_health_operator.core.events import EventSpec, Post
from mcp_health_operator.kube.api import EVENT_SLOTS, Kube, ObjectRef
from mcp_health_operator.kube.rest import JSON, RestError
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


def test_events_go_out_a_few_at_a_time_and_status_writes_are_not_held_behind_them(
    kubectl: Kubectl, tmp_path: Path
) -> None:
    names = [f"burst-{i}" for i in range(40)]
    for name in names:
        kubectl.apply(monitor(name, url="http://127.0.0.1:9/mcp"))
    refs = [_ref(kubectl, name) for name in names]
    token = tmp_path / "token"
    token.write_text(kubectl.plane.token)
    spec = EventSpec("Warning", "HealthUnhealthy", "turned unhealthy")
    in_flight = {"POST": 0, "PATCH": 0}
    most = {"POST": 0, "PATCH": 0}

    async def go() -> None:
        kube = _kube(kubectl, token)
        real_send = kube.rest.send

        async def counted(
            method: str, path: str, body: dict[str, Any], content_type: str = JSON
        ) -> tuple[int, bytes]:
            # The real request, counted while it is in flight.
            in_flight[method] += 1
            most[method] = max(most[method], in_flight[method])
            try:
                return await real_send(method, path, body, content_type)
            finally:
                in_flight[method] -= 1

        kube.rest.send = counted  # type: ignore[method-assign]
        try:
            # A burst of transitions: each monitor's Event and its status at once.
            await asyncio.gather(
                *(
                    kube.post_event(r, spec, Post(f"{r.name}.u", True, 1, spec.message))
                    for r in refs
                ),
                *(kube.patch_status(r, {"message": "turned"}) for r in refs),
            )
        finally:
            await kube.close()

    asyncio.run(go())
    assert most["POST"] == EVENT_SLOTS, most
    assert most["PATCH"] > EVENT_SLOTS, most
    posted = {e["metadata"]["name"] for name in names for e in kubectl.events(name)}
    assert posted == {f"{name}.u" for name in names}
    assert all(kubectl.json("mcphealth", n)["status"]["message"] == "turned" for n in names)
