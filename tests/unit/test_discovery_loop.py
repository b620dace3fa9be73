"""Discovery's loop against a fake API: what it writes, what it posts, and when not."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from mcp_health_operator.controller import discovery as loop
from mcp_health_operator.controller.discovery import Cache, Discoverer
from mcp_health_operator.core import discovery as d

NS = "team-a"


class FakeApi:
    """The calls ``kube.discovery.Discovery`` makes, recorded; monitors kept in a dict."""

    def __init__(self) -> None:
        self.monitors: dict[str, dict[str, Any]] = {}
        self.calls: list[tuple[str, str]] = []
        self.events: list[tuple[str, str, str]] = []

    async def create_monitor(self, body: dict[str, Any]) -> bool:
        name = body["metadata"]["name"]
        self.calls.append(("create", name))
        if name in self.monitors:
            return False
        self.monitors[name] = {**body, "metadata": {**body["metadata"], "uid": f"m-{name}"}}
        return True

    async def patch_monitor(self, namespace: str, name: str, ops: list[dict[str, Any]]) -> bool:
        self.calls.append(("patch", name))
        return name in self.monitors

    async def delete_monitor(self, namespace: str, name: str) -> bool:
        self.calls.append(("delete", name))
        return self.monitors.pop(name, None) is not None

    async def post_event(
        self, namespace: str, owner: d.Owner, type: str, reason: str, message: str
    ) -> None:
        self.events.append((owner.name, reason, message))


def service(name: str, **annotations: str) -> dict[str, Any]:
    return {
        "metadata": {
            "name": name,
            "namespace": NS,
            "uid": f"{name}-uid",
            "annotations": {d.MONITOR_ANNOTATION: "true", **annotations},
        },
        "spec": {"ports": [{"name": "mcp", "port": 8000}]},
    }


def discoverer(api: FakeApi) -> Discoverer:
    found = Discoverer(api, d.Settings(services=True))  # type: ignore[arg-type]
    found.listed.add(d.SERVICE_SOURCE)
    return found


async def test_an_annotated_service_gets_its_monitor_once_and_loses_it_with_the_annotation() -> (
    None
):
    api = FakeApi()
    disc = discoverer(api)
    disc.service_event(None, service("api"))
    assert disc.dirty == {NS}
    await disc.reconcile_dirty()
    assert api.calls == [("create", "api")]
    assert [e[1] for e in api.events] == ["MonitorGenerated"]
    # The monitor watch brings it back: nothing more to do.
    disc.monitor_event("ADDED", api.monitors["api"])
    await disc.reconcile_dirty()
    assert api.calls == [("create", "api")]
    # The annotation removed: the monitor is deleted (after checking it is still ours).
    plain = service("api")
    del plain["metadata"]["annotations"][d.MONITOR_ANNOTATION]
    disc.service_event("MODIFIED", plain)
    await disc.reconcile_dirty()
    assert api.calls[1:] == [("patch", "api"), ("delete", "api")]


async def test_a_standing_problem_is_posted_once_and_again_after_it_was_fixed() -> None:
    api = FakeApi()
    disc = discoverer(api)
    bad = service("api", **{d.INTERVAL_ANNOTATION: "soon"})
    disc.service_event(None, bad)
    await disc.reconcile_dirty()
    disc._mark([NS])  # the periodic re-plan: the same problem, not posted again
    await disc.reconcile_dirty()
    assert [(e[0], e[1]) for e in api.events] == [("api", "InvalidMonitorAnnotation")]
    assert 'mcphealth.dev/interval="soon"' in api.events[0][2]
    assert api.calls == []
    disc.service_event("MODIFIED", service("api"))  # fixed
    await disc.reconcile_dirty()
    disc.service_event("MODIFIED", bad)  # broken again: news again
    await disc.reconcile_dirty()
    assert [e[1] for e in api.events] == [
        "InvalidMonitorAnnotation",
        "MonitorGenerated",
        "InvalidMonitorAnnotation",
    ]


async def test_a_follower_replica_writes_nothing_until_it_leads() -> None:
    api = FakeApi()
    disc = discoverer(api)
    disc.active = False
    disc.service_event(None, service("api"))
    await disc.reconcile_dirty()
    assert api.calls == []
    disc.set_active(True)
    await disc.reconcile_dirty()
    assert api.calls == [("create", "api")]


async def test_a_failed_write_plans_the_namespace_again(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(loop, "RETRY_S", 0.01)

    class Failing(FakeApi):
        async def create_monitor(self, body: dict[str, Any]) -> bool:
            raise ConnectionError("API server away")

    disc = discoverer(Failing())
    disc.service_event(None, service("api"))
    await disc.reconcile_dirty()  # logged, not raised; planned again a little later
    assert disc.dirty == set()
    await asyncio.sleep(0.1)
    assert disc.dirty == {NS}


def test_a_listing_does_not_undo_what_events_brought_while_it_ran() -> None:
    cache: Cache[str] = Cache()
    cache.put((NS, "old"), "v1")
    cache.put((NS, "gone"), "v1")
    started = time.monotonic() + 1  # events before this are older than the listing
    assert cache.replace({(NS, "old"): "v2", (NS, "new"): "v1"}, started) == {NS}
    assert cache.items == {(NS, "old"): "v2", (NS, "new"): "v1"}
    started = time.monotonic()
    cache.put((NS, "fresh"), "v1")  # created while the listing ran
    cache.pop((NS, "new"))  # deleted while it ran
    assert cache.replace({(NS, "old"): "v2", (NS, "new"): "v1"}, started) == set()
    assert cache.items == {(NS, "old"): "v2", (NS, "fresh"): "v1"}


def test_discovery_is_off_unless_asked_and_a_bad_setting_stops_the_start(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from typing import cast

    from lightkube import AsyncClient

    from mcp_health_operator.core.config import Config
    from mcp_health_operator.runtime import app

    client = cast(AsyncClient, None)  # not called while deciding
    for var in (d.ENV_SERVICES, d.ENV_GROUPS, d.ENV_RECHECK):
        monkeypatch.delenv(var, raising=False)
    assert app.discoverer_of(Config(), client, "op-0") is None
    monkeypatch.setenv(d.ENV_SERVICES, "true")
    found = app.discoverer_of(Config(namespaces=("a", "b")), client, "op-0")
    assert found is not None and found.scopes == ["a", "b"] and found.settings.services
    # Flags (Config.discovery), when given, win over the environment.
    assert app.discoverer_of(Config(discovery=d.Settings()), client, "op-0") is None
    monkeypatch.setenv(d.ENV_GROUPS, "example.com")
    with pytest.raises(SystemExit, match="unknown MCPServer API group"):
        app.discoverer_of(Config(), client, "op-0")
