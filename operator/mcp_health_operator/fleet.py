"""The set of monitors this operator probes: one worker task per monitor."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterator

from mcp_health_operator import events, remediation
from mcp_health_operator.config import Config
from mcp_health_operator.kube import Kube
from mcp_health_operator.metrics import MonitorFigures
from mcp_health_operator.monitor import MonitorObject, MonitorWorker

log = logging.getLogger(__name__)

Key = tuple[str, str]


class Fleet:
    def __init__(self, *, kube: Kube, config: Config) -> None:
        self.kube = kube
        self.config = config
        self.aggregator = events.Aggregator()
        self.workers: dict[Key, MonitorWorker] = {}
        self._tasks: dict[Key, asyncio.Task[None]] = {}

    def upsert(self, obj: MonitorObject) -> None:
        key = (obj.ref.namespace, obj.ref.name)
        worker = self.workers.get(key)
        if worker is not None and worker.obj.ref.uid == obj.ref.uid:
            worker.update(obj)
            return
        if worker is not None:  # same name, new object: start over
            self.remove(key)
        worker = MonitorWorker(
            obj,
            kube=self.kube,
            config=self.config,
            aggregator=self.aggregator,
            fleet_state=self.state,
        )
        self.workers[key] = worker
        self._tasks[key] = asyncio.create_task(self._run(key, worker), name=f"monitor {key}")

    async def _run(self, key: Key, worker: MonitorWorker) -> None:
        try:
            await worker.run()
        except asyncio.CancelledError:
            raise
        except Exception:
            # A bug must not take the other monitors down; this one restarts.
            log.exception("monitor %s/%s crashed; restarting it", *key)
            if self.workers.get(key) is worker:
                self.remove(key)
                self.upsert(worker.obj)

    def remove(self, key: Key) -> None:
        worker = self.workers.pop(key, None)
        task = self._tasks.pop(key, None)
        if task is not None:
            task.cancel()
        if worker is not None:
            self.aggregator.forget(worker.obj.ref.uid)

    def state(self) -> remediation.FleetState:
        """How many monitors are Unhealthy, and how many turned so just now (for the breaker)."""
        now = time.time()
        window = self.config.breaker_window_s
        unhealthy = recent = 0
        for worker in self.workers.values():
            since = worker.remediator.unhealthy_since
            if since is not None:
                unhealthy += 1
                recent += now - since <= window
        return remediation.FleetState(len(self.workers), unhealthy, recent)

    def figures(self) -> Iterator[MonitorFigures]:
        return (w.figures for w in list(self.workers.values()))

    async def stop(self) -> None:
        tasks = list(self._tasks.values())
        for key in list(self.workers):
            self.remove(key)
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(task, timeout=5)
