"""The operator process: kopf watching, the fleet probing, metrics served."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import logging
import os
import threading
from typing import Any
from urllib.parse import urlsplit

import kopf
from aiohttp import web
from kopf._core.engines.peering import Identity
from lightkube import AsyncClient, KubeConfig
from lightkube.resources.core_v1 import Secret

from mcp_health_operator.controller import metrics
from mcp_health_operator.controller.discovery import Discoverer
from mcp_health_operator.controller.fleet import Fleet
from mcp_health_operator.core import discovery
from mcp_health_operator.core.config import Config
from mcp_health_operator.core.membership import Mode, View
from mcp_health_operator.kube import watch
from mcp_health_operator.kube.api import GROUP, PLURAL, VERSION, Kube
from mcp_health_operator.kube.discovery import Discovery
from mcp_health_operator.kube.leases import Members, default_identity, pod_owner
from mcp_health_operator.kube.listwatch import ListWatch, OnEvent, path_of
from mcp_health_operator.runtime import handlers, heap

log = logging.getLogger(__name__)

MONITORS = f"/apis/{GROUP}/{VERSION}"
# The longest the monitors' list waits for the Services' first (API server slow or away).
SERVICES_FIRST_S = 30.0


async def serve_metrics(
    config: Config, fleet: Fleet, members: Members | None = None
) -> web.AppRunner:
    """``/metrics`` and ``/healthz`` on the metrics port, on the operator's own loop."""

    async def scrape(_: web.Request) -> web.Response:
        body = metrics.exposition(fleet.figures())
        return web.Response(body=body, headers={"Content-Type": metrics.CONTENT_TYPE})

    async def healthz(_: web.Request) -> web.Response:
        # Answered by the event loop that runs the probes: a wedged loop fails it.
        body: dict[str, object] = {"status": "ok", "monitors": len(fleet.workers)}
        if members is not None:
            view = members.view
            body["identity"] = members.identity
            body["members"] = list(view.members) if view else []
            body["leader"] = view.leader if view else None
        return web.json_response(body)

    app = web.Application()
    app.router.add_get("/metrics", scrape)
    app.router.add_get("/healthz", healthz)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, config.metrics_host, config.metrics_port).start()
    log.info("metrics on http://%s:%d/metrics", config.metrics_host, config.metrics_port)
    return runner


def settings(config: Config) -> kopf.OperatorSettings:
    s = kopf.OperatorSettings()
    # The operator posts its own, aggregated Events; kopf would post one per
    # handler run.
    s.posting.enabled = False
    # With exact namespace names there is nothing to discover: skip listing
    # namespaces (a namespaced install has no right to) and watching CRDs.
    exact = discovery.exact_names(tuple(config.namespaces))
    s.scanning.disabled = bool(exact)
    s.persistence.diffbase_storage = _NoDiffBase()
    return s


class _NoDiffBase(kopf.DiffBaseStorage):
    """No diff-base: every handler here is a raw event handler, which needs none.

    kopf builds one per watch event anyway, a deep copy of the whole object
    (its status and managedFields included): at a cold start of thousands
    of monitors, a fifth of the operator's CPU.
    """

    def build(self, *, body: kopf.Body, extra_fields: Any = None) -> kopf.BodyEssence:
        return kopf.BodyEssence()

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        return None

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        pass


async def run(
    config: Config,
    *,
    stop: asyncio.Event | threading.Event | None = None,
    ready: asyncio.Event | threading.Event | None = None,
) -> None:
    kubeconfig = KubeConfig.from_env().get()
    if kubeconfig is None:
        raise RuntimeError("no Kubernetes configuration: set KUBECONFIG or run in a pod")
    server = urlsplit(kubeconfig.cluster.server)
    if server.hostname:
        port = server.port or (443 if server.scheme == "https" else 80)
        config = dataclasses.replace(config, api_server=(server.hostname, port))
    # What is loaded by now (~120,000 objects of modules) lives as long as the
    # process: keep it out of every full garbage collection, each of which
    # would otherwise pause the probing loop ~0.1 s to walk it.
    gc.freeze()
    client = AsyncClient(config=kubeconfig, field_manager="mcp-health-operator")
    kube = Kube(client, instance=config.identity or None)
    fleet = Fleet(kube=kube, config=config)
    discoverer = discoverer_of(config, client, kube.instance)
    members = membership(config, client, fleet, discoverer)
    member_task = asyncio.create_task(members.run(), name="members") if members else None
    resync_task = asyncio.create_task(fleet.resync_forever(config.resync_s), name="resync")
    freezer = asyncio.create_task(heap.Freezer().run(), name="heap")
    discovery_task = (
        asyncio.create_task(discoverer.run(), name="discovery") if discoverer is not None else None
    )
    # The monitors and their Services: watches of our own, not kopf's (``kube.listwatch``).
    watches = own_watches(config, kube, fleet, discoverer)
    # Secrets readable in some namespaces only: a watch of our own in each.
    watches += [
        asyncio.create_task(
            watch.follow(client, Secret, "Secret", ns, fleet.dependency_changed),
            name=f"secrets {ns}",
        )
        for ns in (config.secret_namespaces or ())
        if config.watch_secrets
    ]

    async def shutdown() -> None:
        resync_task.cancel()
        freezer.cancel()
        if discovery_task is not None:
            discovery_task.cancel()
        for task in watches:
            task.cancel()
        if member_task is not None:
            member_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await member_task
        await fleet.stop()
        if members is not None:
            # After our workers stopped: the others take over at their next listing.
            await members.leave()

    registry = kopf.OperatorRegistry()
    handlers.register(
        registry,
        fleet,
        on_stop=shutdown if members is not None else None,
        # kopf's Secret watch spans the operator's whole scope: only when
        # Secrets may be read everywhere in it.
        watch_secrets=config.watch_secrets and config.secret_namespaces is None,
    )
    runner = await serve_metrics(config, fleet, members)
    try:
        await kopf.operator(
            registry=registry,
            settings=settings(config),
            clusterwide=not config.namespaces,
            namespaces=list(config.namespaces),
            standalone=True,
            # Else kopf names itself after getpass.getuser(), which raises
            # under a uid with no passwd entry (the image's 65532).
            identity=Identity(config.identity or default_identity()),
            stop_flag=stop,
            ready_flag=ready,
        )
    finally:
        await shutdown()  # again, if kopf stopped without its cleanup
        await runner.cleanup()
        await kube.close()  # and the lightkube client with it


def own_watches(
    config: Config, kube: Kube, fleet: Fleet, discoverer: Discoverer | None
) -> list[asyncio.Task[None]]:
    """The watches of the monitors and their Services: one per exact namespace, else one of
    all with the globs matched here. The monitors are listed once the Services have been
    (else each monitor would GET its Service at a cold start), or after ``SERVICES_FIRST_S``.
    """
    patterns = tuple(config.namespaces)
    exact = discovery.exact_names(patterns)
    scopes: list[str | None] = list(patterns) if exact else [None]

    def scoped(on_event: OnEvent) -> OnEvent:
        if exact or not patterns:
            return on_event

        def in_scope(type: str | None, body: dict[str, Any]) -> None:
            if discovery.in_scope(body.get("metadata", {}).get("namespace", ""), patterns):
                on_event(type, body)

        return in_scope

    on_service = scoped(handlers.service_events(fleet, discoverer))
    on_monitor = scoped(handlers.monitor_events(fleet, discoverer))
    services = [
        ListWatch(kube.rest, path_of("/api/v1", "services", ns), on_service) for ns in scopes
    ]
    monitors = [ListWatch(kube.rest, path_of(MONITORS, PLURAL, ns), on_monitor) for ns in scopes]

    async def monitors_after_services() -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(SERVICES_FIRST_S):
                await asyncio.gather(*(w.listed.wait() for w in services))
        await asyncio.gather(*(w.run() for w in monitors))

    return [
        *(asyncio.create_task(w.run(), name=f"watch {w.path}") for w in services),
        asyncio.create_task(monitors_after_services(), name="watch monitors"),
    ]


def discoverer_of(config: Config, client: AsyncClient, instance: str) -> Discoverer | None:
    """Generated monitors, if asked for (flags, else ``MCP_HEALTH_DISCOVER_*``)."""
    try:
        settings = (
            config.discovery
            if config.discovery is not None
            else discovery.settings_from_env(os.environ)
        )
    except ValueError as exc:
        raise SystemExit(f"mcp-health run: {exc}") from None
    if not settings.enabled:
        return None
    return Discoverer(Discovery(client, instance=instance), settings, namespaces=config.namespaces)


def membership(
    config: Config, client: AsyncClient, fleet: Fleet, discoverer: Discoverer | None = None
) -> Members | None:
    """With several replicas: own nothing until the members are known, then our share.
    Discovery writes on the leader only."""
    if config.membership is None:
        return None
    identity = config.identity

    def reassign(view: View) -> None:
        fleet.reassign(lambda uid: view.owner(uid) == identity)
        if discoverer is not None:
            discoverer.set_active(view.leader == identity)

    fleet.owns = lambda uid: False
    if discoverer is not None:
        discoverer.active = False
    return Members(
        client,
        namespace=config.lease_namespace,
        group=config.member_group,
        identity=identity,
        mode=Mode(config.membership),
        duration_s=config.lease_duration_s,
        renew_s=config.lease_renew_s,
        on_change=reassign,
        owner=pod_owner(),
    )
