"""The watches of the monitors and their Services: a list, then a watch from its version.

kopf's watch ran every event through its handler machinery (per-object
memories, loggers, causes, a patch to apply): about a millisecond of CPU an
event, and a cold start of 5,000 monitors brings 15,000 events (each
monitor's ADDED and the echo of its first status write, each Service's
ADDED). Here an event is one ``json.loads`` and the caller's function.

A watch that ends is opened again from the last version seen (bookmarks keep
it fresh); one the API server no longer can resume (410 Gone) starts again
from a list, and a monitor missing from that list is reported deleted.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import quote, urlencode

from mcp_health_operator.kube.api import LIST_PAGE
from mcp_health_operator.kube.rest import Rest, RestError

log = logging.getLogger(__name__)

# The caller's function: the event's type (None for an object seen in a
# list, as kopf names it) and the object.
OnEvent = Callable[[str | None, dict[str, Any]], None]

WATCH_S = 300  # the API server ends each watch after this; it is opened again
RETRY_S = 5.0


class Expired(Exception):
    """The watch's version is older than the API server keeps (410 Gone): list again."""


def path_of(api: str, plural: str, namespace: str | None) -> str:
    """``api``: ``/api/v1`` or ``/apis/GROUP/VERSION``; ``namespace`` None: all namespaces."""
    where = f"/namespaces/{quote(namespace, safe='')}" if namespace else ""
    return f"{api}{where}/{plural}"


class ListWatch:
    """The objects at ``path`` (``path_of``) as events to ``on_event``.

    ``listed`` is set once a first list has been reported in full.
    """

    def __init__(
        self,
        rest: Rest,
        path: str,
        on_event: OnEvent,
        *,
        retry_s: float = RETRY_S,
        watch_s: int = WATCH_S,
    ) -> None:
        self.rest = rest
        self.path = path
        self.on_event = on_event
        self.listed = asyncio.Event()
        self.retry_s = retry_s
        self.watch_s = watch_s
        self.known: dict[str, tuple[str, str]] = {}  # uid -> namespace, name

    async def run(self) -> None:
        failing = False
        while True:
            try:
                version = await self.list()
                while True:
                    version = await self.watch(version)
                    failing = False
            except asyncio.CancelledError:
                raise
            except Expired:
                log.info("watch of %s expired: listing again", self.path)
                continue
            except Exception as exc:  # the API server away, the CRD not installed yet
                # Once per failing spell, not every retry.
                (log.debug if failing else log.warning)(
                    "watch of %s failed (again in %gs): %s",
                    self.path,
                    self.retry_s,
                    exc,
                )
                failing = True
            await asyncio.sleep(self.retry_s)

    async def list(self) -> str:
        """Every object as a listed event, the ones gone since as DELETED; the list's version."""
        seen: dict[str, tuple[str, str]] = {}
        token, version = "", ""
        while True:
            query = {"limit": LIST_PAGE} | ({"continue": token} if token else {})
            code, answer = await self.rest.get(f"{self.path}?{urlencode(query)}")
            if code != 200:
                raise RestError(code, answer)
            page = json.loads(answer)
            del answer
            for obj in page.get("items") or ():
                seen[_uid(obj)] = _name(obj)
                self._report(None, obj)
            meta = page.get("metadata") or {}
            version = meta.get("resourceVersion") or version
            token = meta.get("continue") or ""
            if not token:
                break
        for uid in self.known.keys() - seen.keys():
            namespace, name = self.known[uid]
            self._report(
                "DELETED", {"metadata": {"namespace": namespace, "name": name, "uid": uid}}
            )
        self.known = seen
        self.listed.set()
        return version

    async def watch(self, version: str) -> str:
        """Events from ``version`` until the API server ends the watch; the last version seen."""
        query = {
            "watch": "1",
            "resourceVersion": version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(self.watch_s),
        }
        path = f"{self.path}?{urlencode(query)}"
        # Quiet for as long as nothing changes; bookmarks come about once a minute.
        lines = self.rest.lines(path, read_timeout_s=self.watch_s + 30)
        try:
            async for line in lines:
                version = self._event(line, version)
        except RestError as exc:
            if exc.status == 410:  # said before the stream, not in it
                raise Expired(str(exc)) from None
            raise
        return version

    def _event(self, line: bytes, version: str) -> str:
        event = json.loads(line)
        kind, obj = event.get("type"), event.get("object") or {}
        if kind == "ERROR":
            if obj.get("code") == 410:
                raise Expired(obj.get("message", ""))
            raise RestError(int(obj.get("code") or 500), json.dumps(obj).encode())
        version = (obj.get("metadata") or {}).get("resourceVersion") or version
        if kind == "BOOKMARK":
            return version
        uid = _uid(obj)
        if kind == "DELETED":
            self.known.pop(uid, None)
        else:
            self.known[uid] = _name(obj)
        self._report(kind, obj)
        return version

    def _report(self, kind: str | None, obj: dict[str, Any]) -> None:
        # One monitor's trouble is no reason to drop the watch of all.
        try:
            self.on_event(kind, obj)
        except Exception:
            log.exception(
                "%s %s/%s: %s event not handled", self.path, *_name(obj), kind or "listed"
            )


def _uid(obj: dict[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("uid") or "")


def _name(obj: dict[str, Any]) -> tuple[str, str]:
    meta = obj.get("metadata") or {}
    return str(meta.get("namespace") or ""), str(meta.get("name") or "")
