"""Kube.monitor_uids: a metadata-only list of the monitors, page by page, read for UIDs."""

from __future__ import annotations

import asyncio
import json
from typing import Any, cast
from urllib.parse import parse_qs, urlsplit

import pytest
from aiohttp import web
from lightkube import AsyncClient, KubeConfig

from mcp_health_operator.kube.api import METADATA_LIST, Kube
from mcp_health_operator.kube.rest import Rest, RestError

BASE = "/apis/mcphealth.dev/v1alpha1"


def _kube(server: str) -> Kube:
    config = KubeConfig.from_dict(
        {
            "clusters": [{"name": "c", "cluster": {"server": server}}],
            "users": [{"name": "u", "user": {"token": "the-token"}}],
            "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
            "current-context": "x",
        }
    )
    return Kube(AsyncClient(config=config), instance="test")


def _item(uid: str | None, **meta: Any) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": f"m-{uid}", "namespace": "a", **meta}
    if uid is not None:
        metadata["uid"] = uid
    return {"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata", "metadata": metadata}


class FakeRest:
    """Pages of a list by path, of at most ``page`` items (an API server may answer
    fewer than the limit asked); records what was asked."""

    def __init__(self, lists: dict[str, list[dict[str, Any]]], page: int = 2) -> None:
        self.lists = lists
        self.page = page
        self.asked: list[tuple[str, dict[str, list[str]], str]] = []
        self.status = 200

    async def get(self, path: str, *, accept: str = "application/json") -> tuple[int, bytes]:
        url = urlsplit(path)
        query = parse_qs(url.query)
        self.asked.append((url.path, query, accept))
        if self.status != 200:
            return self.status, json.dumps({"message": "nope"}).encode()
        items = self.lists[url.path]
        start = int(query.get("continue", ["0"])[0])
        size = min(int(query["limit"][0]), self.page)
        chunk = items[start : start + size]
        meta: dict[str, Any] = {"resourceVersion": "7"}
        if start + size < len(items):
            meta["continue"] = str(start + size)
        body = {"kind": "PartialObjectMetadataList", "metadata": meta, "items": chunk}
        return 200, json.dumps(body).encode()


def _uids(
    lists: dict[str, list[dict[str, Any]]], namespaces: tuple[str, ...]
) -> tuple[set[str], FakeRest]:
    fake = FakeRest(lists)

    async def go() -> set[str]:
        kube = _kube("http://127.0.0.1:9")  # nothing listens: every request goes to the fake
        kube.rest = cast(Rest, fake)
        try:
            return await kube.monitor_uids(namespaces)
        finally:
            await kube.client.close()

    return asyncio.run(go()), fake


def test_exact_namespaces_are_listed_each_and_every_page_is_read() -> None:
    lists = {
        f"{BASE}/namespaces/a/mcphealthmonitors": [_item(f"a{i}") for i in range(5)],
        f"{BASE}/namespaces/b/mcphealthmonitors": [_item("b0")],
    }
    uids, fake = _uids(lists, ("a", "b"))
    assert uids == {"a0", "a1", "a2", "a3", "a4", "b0"}
    paths = [path for path, _, _ in fake.asked]
    assert paths == [f"{BASE}/namespaces/a/mcphealthmonitors"] * 3 + [
        f"{BASE}/namespaces/b/mcphealthmonitors"
    ]
    # Metadata only, in pages: the first without a token, the next with the one given.
    assert all(accept == METADATA_LIST for _, _, accept in fake.asked)
    assert all(query["limit"] == ["500"] for _, query, _ in fake.asked)
    assert [query.get("continue") for _, query, _ in fake.asked] == [None, ["2"], ["4"], None]


@pytest.mark.parametrize("namespaces", [(), ("team-*",), ("a", "b?")])
def test_no_names_or_a_glob_lists_cluster_wide(namespaces: tuple[str, ...]) -> None:
    lists = {f"{BASE}/mcphealthmonitors": [_item("x"), _item("y"), _item("z")]}
    uids, fake = _uids(lists, namespaces)
    assert uids == {"x", "y", "z"}
    assert {path for path, _, _ in fake.asked} == {f"{BASE}/mcphealthmonitors"}


def test_items_without_a_uid_and_fields_not_read_are_skipped() -> None:
    items = [
        _item("u1", managedFields=[{"manager": "m", "fieldsV1": {"f:spec": {}}}]),
        _item(None),
        _item(""),
        {"kind": "PartialObjectMetadata"},
        _item("u2", ownerReferences=[{"uid": "owner", "kind": "Service", "name": "s"}]),
    ]
    uids, _ = _uids({f"{BASE}/mcphealthmonitors": items}, ())
    assert uids == {"u1", "u2"}


def test_a_refused_list_raises() -> None:
    async def go() -> None:
        kube = _kube("http://127.0.0.1:9")
        fake = FakeRest({})
        fake.status = 403
        kube.rest = cast(Rest, fake)
        try:
            with pytest.raises(RestError, match="HTTP 403: nope"):
                await kube.monitor_uids(())
        finally:
            await kube.client.close()

    asyncio.run(go())


def test_rest_get_sends_the_accept_and_credentials_and_no_body() -> None:
    seen: list[web.Request] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append(request)
        return web.json_response({"items": []})

    async def go() -> tuple[int, bytes]:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handler)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        kube = _kube(f"http://127.0.0.1:{runner.addresses[0][1]}")
        try:
            return await kube.rest.get("/apis/x?limit=5&continue=a%2Bb", accept=METADATA_LIST)
        finally:
            await kube.close()
            await runner.cleanup()

    code, body = asyncio.run(go())
    assert code == 200 and json.loads(body) == {"items": []}
    (request,) = seen
    assert request.method == "GET"
    assert request.path == "/apis/x"
    assert request.query["continue"] == "a+b"
    assert request.headers["Accept"] == METADATA_LIST
    assert request.headers["Authorization"] == "Bearer the-token"
    assert "Content-Type" not in request.headers
    assert not request.body_exists
