"""Watches of the operator's own, where kopf's cannot be scoped: Secrets in listed namespaces.

kopf watches every resource over the operator's whole scope; with Secrets
readable only in some namespaces (a Role in each), its cluster-wide Secret
watch would be refused. One lightkube watch per namespace instead, feeding
the same ``Fleet.dependency_changed``.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Protocol

from lightkube import AsyncClient

log = logging.getLogger(__name__)


class OnChange(Protocol):
    def __call__(
        self, kind: str, namespace: str, name: str, *, version: str = "", listed: bool = False
    ) -> int: ...


async def follow(
    client: AsyncClient,
    resource: Any,
    kind: str,
    namespace: str,
    on_change: OnChange,
    *,
    retry_s: float = 5.0,
) -> None:
    """Report every change of ``resource`` in ``namespace``, for ever (restarted on errors).

    An ADDED event is reported as ``listed``: a (re)started watch begins
    with one for every object, which must not requeue every monitor using
    one; ``dependency_changed`` still requeues for an object it had not seen
    at that version, or for monitors refused for the want of it.
    """
    while True:
        try:
            async for op, obj in client.watch(resource, namespace=namespace):
                meta = obj.metadata
                on_change(
                    kind,
                    meta.namespace or namespace,
                    meta.name or "",
                    version=str(meta.resourceVersion or ""),
                    listed=op == "ADDED",
                )
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the API server may be away: watch again
            log.warning(
                "watch of %ss in %s failed (again in %gs): %s", kind, namespace, retry_s, exc
            )
        await asyncio.sleep(retry_s)
