"""The operator process: kopf watching, the fleet probing, metrics served."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import threading
from urllib.parse import urlsplit

import kopf
from aiohttp import web
from lightkube import AsyncClient, KubeConfig
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from mcp_health_operator import handlers, metrics
from mcp_health_operator.config import Config
from mcp_health_operator.fleet import Fleet
from mcp_health_operator.kube import Kube

log = logging.getLogger(__name__)


async def serve_metrics(config: Config, fleet: Fleet) -> web.AppRunner:
    """``/metrics`` and ``/healthz`` on the metrics port, on the operator's own loop."""
    registry = metrics.registry(fleet.figures)

    async def scrape(_: web.Request) -> web.Response:
        body = generate_latest(registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthz(_: web.Request) -> web.Response:
        # Answered by the event loop that runs the probes: a wedged loop fails it.
        return web.json_response({"status": "ok", "monitors": len(fleet.workers)})

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
    exact = config.namespaces and not any(set("*?[!") & set(n) for n in config.namespaces)
    s.scanning.disabled = bool(exact)
    return s


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
    client = AsyncClient(config=kubeconfig, field_manager="mcp-health-operator")
    kube = Kube(client)
    fleet = Fleet(kube=kube, config=config)
    registry = kopf.OperatorRegistry()
    handlers.register(registry, fleet)
    runner = await serve_metrics(config, fleet)
    try:
        await kopf.operator(
            registry=registry,
            settings=settings(config),
            clusterwide=not config.namespaces,
            namespaces=list(config.namespaces),
            standalone=True,
            stop_flag=stop,
            ready_flag=ready,
        )
    finally:
        await fleet.stop()
        await runner.cleanup()
        await client.close()
