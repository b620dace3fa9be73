"""Watch events to the fleet: the monitors' and their Services' (``kube.listwatch``) and,
through kopf, the EndpointSlices' and Secrets'. Parse the event, hand it on. Nothing else.

Only raw events are handled: no finalizer and no stored handler state, so
deleting a monitor is never blocked by the operator and its probing stops
on the DELETED event.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import kopf

from mcp_health_operator.controller.discovery import Discoverer
from mcp_health_operator.controller.fleet import Fleet
from mcp_health_operator.controller.monitor import MonitorObject
from mcp_health_operator.kube.listwatch import OnEvent


def register(
    registry: kopf.OperatorRegistry,
    fleet: Fleet,
    on_stop: Callable[[], Awaitable[None]] | None = None,
    *,
    watch_secrets: bool = True,
) -> None:
    @kopf.on.login(registry=registry)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        # In a pod: the ServiceAccount; elsewhere: KUBECONFIG or ~/.kube/config,
        # the same sources lightkube reads, so both clients act as one identity.
        return kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)

    if on_stop is not None:
        # Runs as soon as the operator is told to stop (SIGTERM), before kopf
        # gives its remaining tasks their grace period.
        @kopf.on.cleanup(registry=registry)
        async def stop(**_: Any) -> None:
            await on_stop()

    # Shared watches of what monitors depend on: one per kind for the whole
    # fleet, not a read per monitor; a change requeues the monitors using it.
    def changed(kind: str, type: str | None, body: kopf.Body) -> None:
        _changed(fleet, kind, type, body)

    # The endpoints of per-endpoint monitors: a rollout or a scale shows in a
    # Service's EndpointSlices, named by the service-name label.
    @kopf.on.event("discovery.k8s.io", "v1", "endpointslices", registry=registry)
    async def slice_event(*, type: str | None, body: kopf.Body, **_: Any) -> None:
        service = body.metadata.labels.get("kubernetes.io/service-name")
        if service:
            fleet.dependency_changed(
                "EndpointSlice",
                body.metadata.namespace or "",
                service,
                version=f"{body.metadata.name}@{body.metadata.get('resourceVersion') or ''}",
                listed=type is None,
            )

    if watch_secrets:

        @kopf.on.event("", "v1", "secrets", registry=registry)
        async def secret_event(*, type: str | None, body: kopf.Body, **_: Any) -> None:
            changed("Secret", type, body)


def monitor_events(fleet: Fleet, discoverer: Discoverer | None = None) -> OnEvent:
    """What a monitor's watch event does: the fleet starts, changes or stops its worker."""

    def on_event(type: str | None, body: dict[str, Any]) -> None:
        obj = MonitorObject.from_body(body)
        if discoverer is not None:  # which monitors exist, hand-written or generated
            discoverer.monitor_event(type, body)
        gone = type == "DELETED" or body.get("metadata", {}).get("deletionTimestamp")
        if gone:
            fleet.remove((obj.ref.namespace, obj.ref.name))
        else:
            fleet.upsert(obj)

    return on_event


def service_events(fleet: Fleet, discoverer: Discoverer | None = None) -> OnEvent:
    """What a Service's watch event does: the copy monitors read, their requeue, discovery."""

    def on_event(type: str | None, body: dict[str, Any]) -> None:
        # The copy first: the monitors the change requeues read it.
        meta = body.get("metadata") or {}
        fleet.kube.service_seen(
            meta.get("namespace") or "",
            meta.get("name") or "",
            None if type == "DELETED" else dict(body.get("spec") or {}),
        )
        _changed(fleet, "Service", type, body)
        if discoverer is not None:  # the same watch: annotated Services ask for monitors
            discoverer.service_event(type, body)

    return on_event


def _changed(fleet: Fleet, kind: str, type: str | None, body: Mapping[str, Any]) -> None:
    meta = body.get("metadata") or {}
    fleet.dependency_changed(
        kind,
        meta.get("namespace") or "",
        meta.get("name") or "",
        version=str(meta.get("resourceVersion") or ""),
        listed=type is None,  # a (re)listing, not a watch event
    )
