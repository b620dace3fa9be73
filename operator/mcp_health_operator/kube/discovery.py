"""The Kubernetes I/O of discovery (lightkube, async): list and watch what may ask for
a monitor, write the generated monitors, post Events on Services and MCPServers.

Every call names its scope: an exact namespace, or None for the whole cluster.
The decisions are ``core.discovery``'s; nothing here decides.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

from lightkube import ApiError, AsyncClient
from lightkube.generic_resource import create_namespaced_resource
from lightkube.models.core_v1 import EventSource, ObjectReference
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import Event, Service
from lightkube.types import PatchType

from mcp_health_operator.core.discovery import Owner, Source
from mcp_health_operator.kube.api import COMPONENT, GROUP, Monitor

log = logging.getLogger(__name__)

Scope = str | None  # a namespace, or None: every namespace


def status_of(exc: BaseException) -> int | None:
    """The HTTP status of a failed call: lightkube raises ApiError for a JSON Status
    answer, and the HTTP client's own error otherwise (a 404 for an API group not served
    comes as plain text)."""
    if isinstance(exc, ApiError):
        return int(exc.status.code or 0) or None
    code = getattr(getattr(exc, "response", None), "status_code", None)
    return code if isinstance(code, int) else None


class Discovery:
    def __init__(self, client: AsyncClient, *, instance: str) -> None:
        self.client = client
        self.instance = instance
        self._resources: dict[tuple[str, str], Any] = {}

    def resource(self, source: Source, version: str) -> Any:
        key = (source.group, version)
        if key not in self._resources:
            self._resources[key] = create_namespaced_resource(
                source.group, version, source.kind, source.plural
            )
        return self._resources[key]

    async def _list(self, resource: Any, scopes: list[Scope]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for scope in scopes:
            async for obj in self.client.list(resource, namespace=scope or "*", chunk_size=500):
                out.append(dict(obj.to_dict()))
        return out

    async def services(self, scopes: list[Scope]) -> list[dict[str, Any]]:
        return await self._list(Service, scopes)

    async def monitors(self, scopes: list[Scope]) -> list[dict[str, Any]]:
        return await self._list(Monitor, scopes)

    async def servers(
        self, source: Source, scopes: list[Scope]
    ) -> tuple[str, list[dict[str, Any]]] | None:
        """The source's MCPServers at the newest version the API server serves; None when
        it serves none of them (the CRD is not installed)."""
        for version in source.versions:
            try:
                return version, await self._list(self.resource(source, version), scopes)
            except Exception as exc:
                if status_of(exc) != 404:
                    raise
        return None

    async def watch_servers(
        self, source: Source, version: str, scope: Scope
    ) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        """Changes of the source's MCPServers (ADDED for each at the start)."""
        resource = self.resource(source, version)
        async for op, obj in self.client.watch(resource, namespace=scope or "*"):
            yield op, dict(obj.to_dict())

    async def create_monitor(self, body: dict[str, Any]) -> bool:
        """Create it; False when a monitor of that name exists already."""
        try:
            await self.client.create(Monitor.from_dict(body))
        except ApiError as exc:
            if exc.status.code == 409:
                return False
            raise
        return True

    async def patch_monitor(self, namespace: str, name: str, ops: list[dict[str, Any]]) -> bool:
        """Apply a JSON patch; False when it no longer applies (gone, or a test op failed)."""
        try:
            await self.client.patch(
                Monitor, name, ops, namespace=namespace, patch_type=PatchType.JSON
            )
        except ApiError as exc:
            if exc.status.code in (404, 409, 422):
                log.info("monitor %s/%s changed meanwhile: %s", namespace, name, exc.status.message)
                return False
            raise
        return True

    async def delete_monitor(self, namespace: str, name: str) -> bool:
        try:
            await self.client.delete(Monitor, name, namespace=namespace)
        except ApiError as exc:
            if exc.status.code == 404:
                return False
            raise
        return True

    async def post_event(
        self, namespace: str, owner: Owner, type: str, reason: str, message: str
    ) -> None:
        """A new Event on the Service or MCPServer ``owner`` (posted only on a change)."""
        now = datetime.now(UTC)
        event = Event(
            metadata=ObjectMeta(name=f"{owner.name}.{time.time_ns():x}", namespace=namespace),
            involvedObject=ObjectReference(
                apiVersion=owner.api_version,
                kind=owner.kind,
                name=owner.name,
                namespace=namespace,
                uid=owner.uid,
            ),
            reason=reason,
            message=message[:1024],
            type=type,
            count=1,
            firstTimestamp=now,
            lastTimestamp=now,
            source=EventSource(component=COMPONENT, host=self.instance),
            reportingComponent=f"{GROUP}/operator",
            reportingInstance=self.instance,
        )
        await self.client.create(event)
