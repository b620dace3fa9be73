"""Discovery's loop: keep the generated MCPHealthMonitors as ``core.discovery.plan`` says.

Level-triggered, per namespace. What may ask for a monitor is kept in
memory: annotated Services (from the operator's one Service watch, kopf's),
the MCPServers of each followed operator (a watch of our own, started once
its CRD is served), and every monitor (from the monitor watch). A change
marks its namespace dirty; the loop plans each dirty namespace again and
applies the plan.

Every ``recheck_s`` seconds everything is listed again (a watch gap can hide
a deletion), and each followed CRD not installed yet is looked for again: an
operator started before the CRD follows it within one period. A generated
monitor is deleted only when its source's objects are all known (listed);
with several replicas only the leader writes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable, Mapping
from typing import Any, Generic, TypeVar

from mcp_health_operator.core import discovery as core
from mcp_health_operator.kube.discovery import Discovery, Scope

log = logging.getLogger(__name__)

Key = tuple[str, str]  # (namespace, name)
V = TypeVar("V")
DEBOUNCE_S = 0.2  # a burst of events (a relist) is planned once
RETRY_S = 5.0  # a namespace whose writes failed is planned again after this


class Cache(Generic[V]):
    """Objects by namespace and name, fed by watch events and replaced by listings.

    A listing is older than the events delivered while it ran: what changed
    or went since it started is kept as the events left it.
    """

    def __init__(self) -> None:
        self._by_ns: dict[str, dict[str, V]] = {}
        self._touched: dict[Key, float] = {}

    @property
    def items(self) -> dict[Key, V]:
        return {(ns, name): v for ns, objs in self._by_ns.items() for name, v in objs.items()}

    def get(self, key: Key) -> V | None:
        return self._by_ns.get(key[0], {}).get(key[1])

    def _set(self, key: Key, value: V | None) -> None:
        ns, name = key
        if value is not None:
            self._by_ns.setdefault(ns, {})[name] = value
            return
        objs = self._by_ns.get(ns, {})
        objs.pop(name, None)
        if not objs:
            self._by_ns.pop(ns, None)

    def put(self, key: Key, value: V) -> bool:
        self._touched[key] = time.monotonic()
        changed = self.get(key) != value
        self._set(key, value)
        return changed

    def pop(self, key: Key) -> bool:
        self._touched[key] = time.monotonic()
        known = self.get(key) is not None
        self._set(key, None)
        return known

    def clear(self) -> None:
        self._by_ns.clear()

    def replace(self, listed: Mapping[Key, V], started: float) -> set[str]:
        """The listing (begun at ``started``) as the new content; the namespaces changed."""
        changed: set[str] = set()
        for key in set(self.items) | set(listed):
            if self._touched.get(key, 0.0) >= started:
                continue  # an event since the listing began knows better
            old, new = self.get(key), listed.get(key)
            if old != new:
                changed.add(key[0])
                self._set(key, new)
        self._touched = {k: t for k, t in self._touched.items() if t >= started}
        return changed

    def namespace(self, namespace: str) -> list[V]:
        return list(self._by_ns.get(namespace, {}).values())

    def namespaces(self) -> set[str]:
        return set(self._by_ns)


def _key(obj: Mapping[str, Any]) -> Key:
    meta = obj.get("metadata") or {}
    return str(meta.get("namespace") or ""), str(meta.get("name") or "")


def _service(obj: Mapping[str, Any]) -> dict[str, Any]:
    """What of a Service discovery reads (annotations, ports): a change of anything else
    is no news."""
    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    return dict(
        metadata={
            "namespace": meta.get("namespace"),
            "name": meta.get("name"),
            "uid": meta.get("uid"),
            "annotations": {
                k: v
                for k, v in (meta.get("annotations") or {}).items()
                if str(k).startswith("mcphealth.dev/")
            },
        },
        spec={
            "ports": [
                {"name": p.get("name") or "", "port": p.get("port")}
                for p in spec.get("ports") or ()
                if isinstance(p, Mapping)
            ]
        },
    )


def _server(obj: Mapping[str, Any]) -> dict[str, Any]:
    meta = obj.get("metadata") or {}
    return dict(
        metadata={
            "namespace": meta.get("namespace"),
            "name": meta.get("name"),
            "uid": meta.get("uid"),
        },
        spec=core._plain(obj.get("spec") or {}),
    )


class Discoverer:
    def __init__(
        self,
        kube: Discovery,
        settings: core.Settings,
        *,
        namespaces: tuple[str, ...] = (),
    ) -> None:
        self.kube = kube
        self.settings = settings
        self.patterns = namespaces
        exact = core.exact_names(tuple(namespaces))
        self.scopes: list[Scope] = list(namespaces) if exact else [None]
        self.services: Cache[dict[str, Any]] = Cache()
        self.monitors: Cache[core.Existing] = Cache()
        self.servers: dict[str, Cache[dict[str, Any]]] = {s.name: Cache() for s in settings.sources}
        self.versions: dict[str, str] = {}  # source name -> the version listed and watched
        self.listed: set[str] = set()  # sources whose objects are all known
        self.active = True  # with several replicas, only the leader writes
        self.dirty: set[str] = set()
        self._wake = asyncio.Event()
        self._posted: dict[str, tuple[str, str, str]] = {}  # owner uid -> (ns, reason, message)
        self._absent_logged: set[str] = set()
        self._failures: dict[str, int] = {}  # namespace -> reconciles failed in a row

    # -- fed by the watches ----------------------------------------------------------

    def _mark(self, namespaces: Iterable[str]) -> None:
        fresh = {ns for ns in namespaces if core.in_scope(ns, self.patterns)}
        if fresh:
            self.dirty |= fresh
            self._wake.set()

    def service_event(self, type: str | None, body: Mapping[str, Any]) -> None:
        key = _key(body)
        if type == "DELETED" or not core.wants_monitor(body):
            if self.services.pop(key):
                self._mark([key[0]])
        elif self.services.put(key, _service(body)):
            self._mark([key[0]])

    def monitor_event(self, type: str | None, body: Mapping[str, Any]) -> None:
        key = _key(body)
        if type == "DELETED":
            changed = self.monitors.pop(key)
        else:
            changed = self.monitors.put(key, core.existing(body))
        if changed:
            self._mark([key[0]])

    def server_event(self, source: core.Source, type: str | None, obj: Mapping[str, Any]) -> None:
        cache, key = self.servers[source.name], _key(obj)
        changed = cache.pop(key) if type == "DELETED" else cache.put(key, _server(obj))
        if changed:
            self._mark([key[0]])

    def set_active(self, active: bool) -> None:
        if active and not self.active:
            log.info("discovery: this replica leads; generated monitors are kept here")
            self._mark(self._known_namespaces())
        self.active = active

    def _known_namespaces(self) -> set[str]:
        out = self.services.namespaces() | self.monitors.namespaces()
        for cache in self.servers.values():
            out |= cache.namespaces()
        return out

    # -- the loop ----------------------------------------------------------------------

    async def run(self) -> None:
        followers = [
            asyncio.create_task(self._follow(s), name=f"discovery {s.name}")
            for s in self.settings.sources
        ]
        what = ["annotated Services"] if self.settings.services else []
        what += [f"{s.kind}s of {s.group}" for s in self.settings.sources]
        log.info("discovery: generating monitors for %s", ", ".join(what))
        try:
            while True:
                try:
                    await self._loop()
                except asyncio.CancelledError:
                    raise
                except Exception:
                    # A bug must not end discovery (nor the operator): again, after a pause.
                    log.exception("discovery crashed; starting it again in %gs", RETRY_S)
                    await asyncio.sleep(RETRY_S)
        finally:
            for task in followers:
                task.cancel()
            await asyncio.gather(*followers, return_exceptions=True)

    async def _loop(self) -> None:
        # Nothing is written before the monitors (and Services) are all known.
        primed = await self._resync()
        while not primed:
            await asyncio.sleep(RETRY_S)
            primed = await self._resync()
        next_resync = time.monotonic() + self.settings.recheck_s
        while True:
            wait = max(0.0, next_resync - time.monotonic())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=wait)
            if time.monotonic() >= next_resync:
                await self._resync()
                next_resync = time.monotonic() + self.settings.recheck_s
            self._wake.clear()
            await asyncio.sleep(DEBOUNCE_S)
            await self.reconcile_dirty()

    def _backoff(self, failures: int) -> float:
        """RETRY_S, doubling with each failure in a row, at most one re-check period."""
        return float(min(RETRY_S * 2 ** max(0, failures - 1), self.settings.recheck_s))

    async def _resync(self) -> bool:
        """List the monitors (and annotated Services) again; False if the listing failed."""
        started = time.monotonic()
        try:
            monitors = await self.kube.monitors(self.scopes)
            services = await self.kube.services(self.scopes) if self.settings.services else []
        except Exception as exc:  # the API server may be away: the next period
            log.warning("discovery: listing monitors and Services failed: %s", exc)
            return False
        changed = self.monitors.replace(
            {
                _key(m): core.existing(m)
                for m in monitors
                if core.in_scope(_key(m)[0], self.patterns)
            },
            started,
        )
        changed |= self.services.replace(
            {
                _key(s): _service(s)
                for s in services
                if core.wants_monitor(s) and core.in_scope(_key(s)[0], self.patterns)
            },
            started,
        )
        if self.settings.services:
            self.listed.add(core.SERVICE_SOURCE)
        # Everything known is planned again once per period, changed or not: a
        # monitor edited by hand, or a write that failed, converges here too.
        self._mark(changed | self._known_namespaces())
        return True

    async def _follow(self, source: core.Source) -> None:
        """List the source's MCPServers, watch them, list again every period; look for
        the CRD again every period while it is not served."""
        failures = 0
        while True:
            started = time.monotonic()
            try:
                found = await self.kube.servers(source, self.scopes)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # away, or refused (RBAC): again, less and less often
                failures += 1
                log.warning(
                    "discovery: listing %ss of %s failed (again in %gs): %s",
                    source.kind,
                    source.group,
                    self._backoff(failures),
                    exc,
                )
                await asyncio.sleep(self._backoff(failures))
                continue
            failures = 0
            if found is None:
                self._absent(source)
                await asyncio.sleep(self.settings.recheck_s)
                continue
            version, items = found
            if self.versions.get(source.name) != version:
                log.info(
                    "discovery: following %ss of %s/%s (%d now)",
                    source.kind,
                    source.group,
                    version,
                    len(items),
                )
            self.versions[source.name] = version
            self._absent_logged.discard(source.name)
            cache = self.servers[source.name]
            changed = cache.replace(
                {_key(o): _server(o) for o in items if core.in_scope(_key(o)[0], self.patterns)},
                started,
            )
            self.listed.add(source.name)
            self._mark(changed)
            await self._watch(source, version)

    def _absent(self, source: core.Source) -> None:
        if source.name in self.versions:
            # The CRD went (and with it every MCPServer: their monitors go by
            # garbage collection). Nothing of it is known any more.
            log.info("discovery: %s of %s is no longer served", source.plural, source.group)
            self.versions.pop(source.name, None)
            self.listed.discard(source.name)
            cache = self.servers[source.name]
            gone = cache.namespaces()
            cache.clear()
            self._mark(gone)
        if source.name not in self._absent_logged:
            self._absent_logged.add(source.name)
            log.info(
                "discovery: %s.%s is not served (CRD not installed); looking again every %gs",
                source.plural,
                source.group,
                self.settings.recheck_s,
            )

    async def _watch(self, source: core.Source, version: str) -> None:
        """Follow the source's changes for one period (then it is listed again)."""

        async def one(scope: Scope) -> None:
            async for op, obj in self.kube.watch_servers(source, version, scope):
                if core.in_scope(_key(obj)[0], self.patterns):
                    self.server_event(source, op, obj)

        tasks = [asyncio.create_task(one(scope)) for scope in self.scopes]
        try:
            done, _ = await asyncio.wait(
                tasks, timeout=self.settings.recheck_s, return_when=asyncio.FIRST_EXCEPTION
            )
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        for task in done:
            if not task.cancelled() and task.exception() is not None:
                log.info(
                    "discovery: watch of %s.%s ended (%s); listing again",
                    source.plural,
                    source.group,
                    task.exception(),
                )
                await asyncio.sleep(min(RETRY_S, self.settings.recheck_s))
                return

    async def reconcile_dirty(self) -> None:
        if not self.active:
            return
        todo, self.dirty = self.dirty, set()
        for namespace in sorted(todo):
            try:
                await self.reconcile(namespace)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # away, or refused (RBAC): again, less and less often
                failures = self._failures[namespace] = self._failures.get(namespace, 0) + 1
                delay = self._backoff(failures)
                log.warning(
                    "discovery: namespace %s not reconciled (again in %gs): %s",
                    namespace,
                    delay,
                    exc,
                )
                asyncio.get_running_loop().call_later(delay, self._mark, [namespace])
            else:
                self._failures.pop(namespace, None)

    def decide(self, namespace: str) -> core.Plan:
        """The plan for ``namespace`` from what is known now."""
        candidates: list[core.Candidate] = []
        problems: list[core.Problem] = []

        def take(found: core.Candidate | core.Problem | None) -> None:
            if isinstance(found, core.Candidate):
                found = core.validate(found)
            if isinstance(found, core.Candidate):
                candidates.append(found)
            elif isinstance(found, core.Problem):
                problems.append(found)

        if self.settings.services:
            for svc in self.services.namespace(namespace):
                take(core.from_service(svc))
        for source in self.settings.sources:
            version = self.versions.get(source.name)
            if version is None:
                continue
            for obj in self.servers[source.name].namespace(namespace):
                take(core.from_mcp_server(source, version, obj))
        return core.plan(
            namespace, candidates, problems, self.monitors.namespace(namespace), self.listed
        )

    async def reconcile(self, namespace: str) -> None:
        plan = self.decide(namespace)
        notices = list(plan.notices)
        for c in plan.creates:
            if await self.kube.create_monitor(core.monitor_body(c)):
                log.info(
                    "discovery: generated MCPHealthMonitor %s/%s from %s",
                    namespace,
                    c.name,
                    c.owner.describe(),
                )
                notices.append(
                    core.Notice(
                        namespace,
                        c.owner,
                        core.NORMAL,
                        core.GENERATED,
                        f"generated MCPHealthMonitor {c.name} (label "
                        f"{core.GENERATED_LABEL}={c.source})",
                    )
                )
        for current, c in plan.updates:
            if await self.kube.patch_monitor(
                namespace, current.name, core.update_patch(current, c)
            ):
                log.info("discovery: updated MCPHealthMonitor %s/%s", namespace, current.name)
        for current in plan.deletes:
            # Still the generated monitor known (not replaced by a hand-written one)?
            ops = core.still_generated_patch(current)
            if await self.kube.patch_monitor(namespace, current.name, ops) and (
                await self.kube.delete_monitor(namespace, current.name)
            ):
                log.info(
                    "discovery: deleted generated MCPHealthMonitor %s/%s", namespace, current.name
                )
        await self._post(namespace, notices)

    async def _post(self, namespace: str, notices: list[core.Notice]) -> None:
        """Each notice once, until it changes: a standing problem is not reposted every period."""
        now = {n.owner.uid: n for n in notices if n.reason != core.GENERATED}
        for uid, (ns, _, _) in list(self._posted.items()):
            if ns == namespace and uid not in now:
                del self._posted[uid]  # resolved: a recurrence is news again
        for n in notices:
            seen = (n.namespace, n.reason, n.message)
            if n.reason != core.GENERATED and self._posted.get(n.owner.uid) == seen:
                continue
            if n.type == core.WARNING:
                log.warning(
                    "discovery: %s %s/%s: %s", n.owner.kind, namespace, n.owner.name, n.message
                )
            try:
                await self.kube.post_event(namespace, n.owner, n.type, n.reason, n.message)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("discovery: Event %s on %s not posted: %s", n.reason, n.owner.name, exc)
                continue
            if n.reason != core.GENERATED:
                self._posted[n.owner.uid] = seen
