"""The operator's own watches (``kube.listwatch``) on the real API server: list, then
events; a watch that cannot resume lists again; objects gone meanwhile are reported
deleted."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

import pytest

from mcp_health_operator.kube.api import GROUP, PLURAL, VERSION
from mcp_health_operator.kube.listwatch import Expired, ListWatch, path_of
from tests.e2e.conftest import Kubectl, monitor
from tests.e2e.test_rest import _kube, _ref


def _monitors(kubectl: Kubectl) -> str:
    return path_of(f"/apis/{GROUP}/{VERSION}", PLURAL, kubectl.namespace)


class Recorder:
    """The events a watch reported: (type, monitor name), in order."""

    def __init__(self) -> None:
        self.seen: list[tuple[str | None, str]] = []
        self.changed = asyncio.Event()  # bound to the one loop of its test

    def __call__(self, type: str | None, body: dict[str, Any]) -> None:
        self.seen.append((type, body["metadata"]["name"]))
        self.changed.set()

    async def until(self, wanted: tuple[str | None, str], timeout: float = 20) -> None:
        async with asyncio.timeout(timeout):
            while wanted not in self.seen:
                self.changed.clear()
                await self.changed.wait()


def test_listed_then_added_modified_deleted(kubectl: Kubectl, tmp_path: Path) -> None:
    kubectl.apply(monitor("a", url="http://127.0.0.1:9/mcp"))
    token = tmp_path / "token"
    token.write_text("a-stale-token\n")  # the watch asks the credentials again after a 401
    seen = Recorder()

    async def go() -> None:
        kube = _kube(kubectl, token)
        watch = ListWatch(kube.rest, _monitors(kubectl), seen, retry_s=0.2)
        task = asyncio.create_task(watch.run())
        try:
            await asyncio.sleep(0.5)
            assert seen.seen == []  # refused (401): nothing reported, tried again
            token.write_text(kubectl.plane.token + "\n")
            await seen.until((None, "a"))
            assert watch.listed.is_set()
            await asyncio.to_thread(kubectl.apply, monitor("b", url="http://127.0.0.1:9/mcp"))
            await seen.until(("ADDED", "b"))
            await asyncio.to_thread(
                kubectl.apply, monitor("a", url="http://127.0.0.1:9/mcp", interval="7s")
            )
            await seen.until(("MODIFIED", "a"))
            await asyncio.to_thread(kubectl, "delete", "mcphealth", "b")
            await seen.until(("DELETED", "b"))
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await kube.close()

    asyncio.run(go())
    assert seen.seen == [(None, "a"), ("ADDED", "b"), ("MODIFIED", "a"), ("DELETED", "b")]


def test_a_watch_that_cannot_resume_lists_again_and_reports_the_gone(
    kubectl: Kubectl, tmp_path: Path
) -> None:
    for name in ("keep", "go"):
        kubectl.apply(monitor(name, url="http://127.0.0.1:9/mcp"))
    token = tmp_path / "token"
    token.write_text(kubectl.plane.token)
    seen = Recorder()

    class Stale(ListWatch):
        """Its first list hands the watch a version the API server no longer keeps."""

        lists = 0

        async def list(self) -> str:
            version = await super().list()
            self.lists += 1
            if self.lists == 1:
                # Gone while the watch was away: the next list must say so.
                await asyncio.to_thread(kubectl, "delete", "mcphealth", "go")
                return "1"
            return version

    async def go() -> int:
        kube = _kube(kubectl, token)
        try:
            with pytest.raises(Expired):
                await ListWatch(kube.rest, _monitors(kubectl), lambda *_: None).watch("1")
            watch = Stale(kube.rest, _monitors(kubectl), seen, retry_s=0.2)
            task = asyncio.create_task(watch.run())
            try:
                await seen.until(("DELETED", "go"))
                await asyncio.to_thread(kubectl.apply, monitor("new", url="http://127.0.0.1:9/mcp"))
                await seen.until(("ADDED", "new"))  # and the watch goes on after the list
            finally:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            return watch.lists
        finally:
            await kube.close()

    assert asyncio.run(go()) == 2
    assert seen.seen[:2] == [(None, "go"), (None, "keep")]
    assert seen.seen[2:] == [(None, "keep"), ("DELETED", "go"), ("ADDED", "new")]


def test_watches_never_take_the_writes_connections(kubectl: Kubectl, tmp_path: Path) -> None:
    # More watches than the writes' pool has connections (aiohttp's 100): a
    # namespaced operator holds two a namespace.
    kubectl.apply(monitor("m", url="http://127.0.0.1:9/mcp"))
    ref = _ref(kubectl, "m")
    token = tmp_path / "token"
    token.write_text(kubectl.plane.token)

    async def go() -> None:
        kube = _kube(kubectl, token)
        watches = [ListWatch(kube.rest, _monitors(kubectl), lambda *_: None) for _ in range(120)]
        tasks = [asyncio.create_task(w.run()) for w in watches]
        try:
            async with asyncio.timeout(60):
                await asyncio.gather(*(w.listed.wait() for w in watches))
                await asyncio.sleep(1)  # each watch open and waiting
                assert await kube.patch_status(ref, {"message": "written"})
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await kube.close()

    asyncio.run(go())
    assert kubectl.json("mcphealth", "m")["status"]["message"] == "written"
