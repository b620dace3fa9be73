"""The monitors this operator probes: one worker task per owned monitor.

Every monitor the watch delivers is kept; a worker runs only for those this
replica owns (all of them, unless several replicas share the work through
``membership``). When the members change, workers for monitors no longer
owned stop and newly owned ones start.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import time
from collections.abc import Callable, Iterator

from mcp_health_operator.controller.metrics import MonitorFigures
from mcp_health_operator.controller.monitor import MonitorObject, MonitorWorker
from mcp_health_operator.core import events, remediation
from mcp_health_operator.core.config import Config
from mcp_health_operator.kube.api import Kube
from mcp_health_operator.kube.resolver import Dependency

log = logging.getLogger(__name__)

Key = tuple[str, str]
CRASH_BACKOFF_S = 5.0


class Fleet:
    def __init__(self, *, kube: Kube, config: Config) -> None:
        self.kube = kube
        self.config = config
        self.aggregator = events.Aggregator()
        self.objects: dict[Key, MonitorObject] = {}
        self.workers: dict[Key, MonitorWorker] = {}
        self._tasks: dict[Key, asyncio.Task[None]] = {}
        # Which monitors (by UID) this replica probes; None: all of them.
        self.owns: Callable[[str], bool] | None = None
        self._stopped = False
        self._seen: dict[Key, float] = {}  # when each monitor was first delivered
        # resourceVersion of each Service/Secret last delivered (for relists).
        self._dep_versions: dict[tuple[str, str, str], str] = {}
        # The workers using each dependency: a watch event finds its monitors
        # without walking them all (a start's listing of N Services was N x N).
        self._users: dict[Dependency, set[MonitorWorker]] = {}

    def upsert(self, obj: MonitorObject) -> None:
        if self._stopped:
            return
        key = (obj.ref.namespace, obj.ref.name)
        known = self.objects.get(key)
        if known is None or known.ref.uid != obj.ref.uid:
            self._seen[key] = time.monotonic()
        self.objects[key] = obj
        worker = self.workers.get(key)
        if worker is not None and worker.obj.ref.uid != obj.ref.uid:
            self._stop(key)  # same name, new object: start over
            worker = None
        if not self._owned(obj):
            if worker is not None:
                self._stop(key)
            return
        if worker is not None:
            worker.update(obj)
            return
        self._start(key, obj)

    def reassign(self, owns: Callable[[str], bool] | None) -> None:
        """New ownership (the members changed): stop what is lost, start what is won."""
        self.owns = owns
        if self._stopped:
            return
        lost = won = 0
        for key, obj in list(self.objects.items()):
            running = key in self.workers
            if running and not self._owned(obj):
                self._stop(key)
                lost += 1
            elif not running and self._owned(obj):
                self._start(key, obj)
                won += 1
        log.info(
            "ownership: %d monitors here (%d won, %d handed over)", len(self.workers), won, lost
        )

    def _owned(self, obj: MonitorObject) -> bool:
        return self.owns is None or self.owns(obj.ref.uid)

    def _start(self, key: Key, obj: MonitorObject) -> None:
        worker = MonitorWorker(
            obj,
            kube=self.kube,
            config=self.config,
            aggregator=self.aggregator,
            fleet_state=self.state,
            on_gone=self.gone,
            on_deps=self._deps_changed,
        )
        self.workers[key] = worker
        # A fresh context: a task copies its creator's, and kopf's handler
        # context holds the whole watch event (managedFields and all), which
        # a monitor would otherwise keep for its lifetime (12 KB each).
        self._tasks[key] = asyncio.create_task(
            self._run(key, worker), name=f"monitor {key}", context=contextvars.Context()
        )

    async def _run(self, key: Key, worker: MonitorWorker) -> None:
        try:
            await worker.run()
        except asyncio.CancelledError:
            raise
        except Exception:
            # A bug must not take the other monitors down; this one restarts,
            # after a pause so that a crash at start-up (say, the API server
            # away while it reads its Service) cannot spin.
            log.exception("monitor %s/%s crashed; restarting it", *key)
            await asyncio.sleep(CRASH_BACKOFF_S)
            if self.workers.get(key) is worker:
                self._stop(key)
                self.upsert(self.objects.get(key, worker.obj))

    def remove(self, key: Key) -> None:
        """The monitor is gone (deleted)."""
        self.objects.pop(key, None)
        self._seen.pop(key, None)
        self._stop(key)

    def dependency_changed(
        self, kind: str, namespace: str, name: str, *, version: str = "", listed: bool = False
    ) -> int:
        """A Service, Secret or EndpointSlice changed (or appeared, or went): requeue the
        monitors using it (an EndpointSlice is named by its Service).

        ``listed``: delivered by a (re)listing, not as a change. Monitors read
        their dependencies when they start, so a listed object requeues them
        only if it differs from the version last seen (it changed in a gap).
        """
        dep = (kind, namespace, name)
        hit = list(self._users.get(dep, ()))
        if not hit:  # versions are kept only of what some monitor here uses
            self._dep_versions.pop(dep, None)
            return 0
        seen = self._dep_versions.get(dep)
        self._dep_versions[dep] = version
        # A listing (a watch's start, or its relist after a gap) repeats what
        # the monitors read when they started; only a version not seen yet is
        # news, or any object at all to a monitor refused for want of it.
        if listed and seen in (None, version) and not any(w.refused for w in hit):
            return 0
        for worker in hit:
            worker.requeue(kind)
        if hit:
            log.info("%s %s/%s changed: %d monitors read their target again", *dep, len(hit))
        return len(hit)

    def gone(self, obj: MonitorObject) -> None:
        """A write found the monitor deleted: forget it, unless a namesake replaced it."""
        key = (obj.ref.namespace, obj.ref.name)
        current = self.objects.get(key)
        if current is not None and current.ref.uid == obj.ref.uid:
            log.info("monitor %s/%s is gone (its status write found no object)", *key)
            self.remove(key)

    async def resync(self) -> int:
        """Forget monitors deleted while the watch was away (no DELETED event
        comes for them after a relist); returns how many were forgotten."""
        started = time.monotonic()
        existing = await self.kube.monitor_uids(self.config.namespaces)
        dropped = 0
        for key, obj in list(self.objects.items()):
            # Only what was known before the listing began: a monitor created
            # since may be missing from it without being gone.
            if obj.ref.uid not in existing and self._seen.get(key, started) < started:
                log.info("monitor %s/%s was deleted while unwatched; forgetting it", *key)
                self.remove(key)
                dropped += 1
        return dropped

    async def resync_forever(self, every_s: float) -> None:
        while True:
            await asyncio.sleep(every_s)
            try:
                await self.resync()
            except Exception as exc:  # the API server may be away: the next one
                log.warning("resync of the monitors failed: %s", exc)

    def _stop(self, key: Key) -> None:
        worker = self.workers.pop(key, None)
        task = self._tasks.pop(key, None)
        if task is not None:
            task.cancel()
        if worker is not None:
            self.aggregator.forget(worker.obj.ref.uid)
            self._deps_changed(worker, worker.deps, gone=True)

    def _deps_changed(
        self, worker: MonitorWorker, before: frozenset[Dependency], *, gone: bool = False
    ) -> None:
        for dep in before:
            users = self._users.get(dep)
            if users is not None:
                users.discard(worker)
                if not users:
                    del self._users[dep]
        ref = worker.obj.ref
        if not gone and self.workers.get((ref.namespace, ref.name)) is worker:
            for dep in worker.deps:
                self._users.setdefault(dep, set()).add(worker)

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
        if self.workers:
            log.info("stopping: %d monitors probed here", len(self.workers))
        self._stopped = True
        tasks = list(self._tasks.values())
        for key in list(self.workers):
            self.remove(key)
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(task, timeout=5)
