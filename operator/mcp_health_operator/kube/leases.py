"""Membership I/O: this replica's own Lease, and the listing of the others' (lightkube, async).

Every replica renews a Lease of its own (``coordination.k8s.io/v1``) in the
operator's namespace, labelled with the install's group, and lists the
group's Leases each renew period. ``membership`` (pure) turns the listings
into the live set and the owners. A failed listing keeps the last view: an
API server that is away must not make a replica drop (or take) monitors.

A replica that has just created its Lease owns nothing for a settle period
(1.5 renew periods): each member lists the Leases once a renew period, so
by then every member has seen the newcomer and handed over what it wins.
Claiming at once would probe those monitors from two replicas until the
others' next listing, and at a start of all replicas together every one of
them would first see only itself and take everything.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import socket
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from lightkube import ApiError, AsyncClient
from lightkube.models.coordination_v1 import LeaseSpec
from lightkube.models.meta_v1 import ObjectMeta, OwnerReference
from lightkube.resources.coordination_v1 import Lease
from lightkube.types import PatchType

from mcp_health_operator.core.membership import Liveness, Member, Mode, View

log = logging.getLogger(__name__)

GROUP_LABEL = "mcphealth.dev/members"


def default_identity() -> str:
    """POD_NAME in a pod (the chart sets it); elsewhere hostname-pid."""
    return os.environ.get("POD_NAME") or f"{socket.gethostname()}-{os.getpid()}"


def pod_owner() -> tuple[str, str] | None:
    """This replica's pod (name, uid) from the downward API, when the chart sets them."""
    name, uid = os.environ.get("POD_NAME"), os.environ.get("POD_UID")
    return (name, uid) if name and uid else None


def lease_name(group: str, identity: str) -> str:
    """A DNS-1123 name for a member's Lease."""
    raw = f"{group}-{identity}".lower()
    return re.sub(r"[^a-z0-9.-]+", "-", raw).strip("-.")[:253]


def micro_time(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Members:
    """Keeps this replica's Lease renewed and the view of the live members current."""

    def __init__(
        self,
        client: AsyncClient,
        *,
        namespace: str,
        group: str,
        identity: str,
        mode: Mode,
        duration_s: int = 15,
        renew_s: float = 5.0,
        settle_s: float | None = None,
        on_change: Callable[[View], None] = lambda view: None,
        clock: Callable[[], float] = time.monotonic,
        owner: tuple[str, str] | None = None,
    ) -> None:
        self.client = client
        self.namespace = namespace
        self.group = group
        self.identity = identity
        self.mode = mode
        self.duration_s = duration_s
        self.renew_s = renew_s
        self.settle_s = 1.5 * renew_s if settle_s is None else settle_s
        self.on_change = on_change
        self.clock = clock
        self.owner = owner
        self.name = lease_name(group, identity)
        self.liveness = Liveness()
        self.view: View | None = None
        self._registered = False
        self._acquired = datetime.now(UTC)
        # Until when (our clock) we claim nothing: set when our Lease is created.
        self._settled_at = 0.0

    async def run(self) -> None:
        while True:
            try:
                await self.tick()
            except Exception:
                # A bug or an unexpected error must not freeze the membership.
                log.exception("membership tick failed; trying again")
            await asyncio.sleep(self.pause())

    def pause(self) -> float:
        """Until the next tick: a renew period, or less to claim as soon as we have settled."""
        left = self._settled_at - self.clock()
        return min(self.renew_s, left) if left > 0 else self.renew_s

    async def tick(self) -> None:
        """One renew period: renew our Lease, list the group, update the view."""
        try:
            await self._renew()
        except Exception as exc:  # the API server may be away; keep going
            log.warning("renewing Lease %s/%s failed: %s", self.namespace, self.name, exc)
        try:
            listed = await self._list()
        except Exception as exc:
            log.warning("listing member Leases failed, keeping the last view: %s", exc)
            self.liveness.outage()
            return
        now = self.clock()
        self.liveness.observe(listed, now)
        live = self.liveness.live(now)
        if self._registered and not any(m.identity == self.identity for m in live):
            # We know we are alive, whatever the listing says (our renewal may have failed).
            live.append(
                Member(self.identity, "", float(self.duration_s), micro_time(self._acquired))
            )
        if not self._registered:
            return  # own nothing before our own Lease is there for the others to see
        if now < self._settled_at:
            # Not every member has listed our Lease yet. Joined again (our
            # Lease was deleted as expired): what we held is the others' now.
            if self.view is not None and self.view.members:
                self._publish(View.of(self.mode, []))
            return
        self._publish(View.of(self.mode, live))
        for gone in self.liveness.expired(now):
            if gone.identity != self.identity:
                await self._forget(gone.identity)

    def _publish(self, view: View) -> None:
        if view == self.view:
            return
        log.info(
            "members: %s (mode %s, leader %s)", ", ".join(view.members), view.mode, view.leader
        )
        self.view = view
        self.on_change(view)

    async def leave(self) -> None:
        """Delete our Lease so the others take over at once (graceful shutdown)."""
        if not self._registered:
            return
        self._registered = False
        with contextlib.suppress(Exception):
            await self.client.delete(Lease, self.name, namespace=self.namespace)
            log.info("left: deleted Lease %s/%s", self.namespace, self.name)

    async def _renew(self) -> None:
        now = micro_time(datetime.now(UTC))
        patch = {"spec": {"renewTime": now, "leaseDurationSeconds": self.duration_s}}
        try:
            await self.client.patch(
                Lease, self.name, patch, namespace=self.namespace, patch_type=PatchType.MERGE
            )
        except ApiError as exc:
            if exc.status.code != 404:
                raise
            await self._create()
        self._registered = True

    async def _create(self) -> None:
        # A Lease made anew (first start, or deleted while we were cut off)
        # joins as the newest member: a returning replica does not take the
        # leadership back from the one that took over.
        self._acquired = datetime.now(UTC)
        self._settled_at = self.clock() + self.settle_s
        # Owned by our pod: when the pod goes without deleting it (killed, or
        # its RBAC removed first, as `helm uninstall` does), the garbage
        # collector removes the Lease with the pod.
        owners = None
        if self.owner is not None:
            owners = [
                OwnerReference(apiVersion="v1", kind="Pod", name=self.owner[0], uid=self.owner[1])
            ]
        lease = Lease(
            metadata=ObjectMeta(
                name=self.name,
                namespace=self.namespace,
                labels={GROUP_LABEL: self.group},
                ownerReferences=owners,
            ),
            spec=LeaseSpec(
                holderIdentity=self.identity,
                leaseDurationSeconds=self.duration_s,
                acquireTime=self._acquired,
                renewTime=datetime.now(UTC),
            ),
        )
        await self.client.create(lease)
        log.info("joined as %s: created Lease %s/%s", self.identity, self.namespace, self.name)

    async def _list(self) -> list[Member]:
        out = []
        async for lease in self.client.list(
            Lease, namespace=self.namespace, labels={GROUP_LABEL: self.group}
        ):
            member = _member(lease)
            if member is not None:
                out.append(member)
        return out

    async def _forget(self, identity: str) -> None:
        """Delete the Lease of a member judged gone (killed, never deleted its own)."""
        name = lease_name(self.group, identity)
        try:
            await self.client.delete(Lease, name, namespace=self.namespace)
            log.info("member %s expired: deleted its Lease", identity)
        except ApiError as exc:
            # Already gone; or a member that is alive after all renews and recreates it.
            if exc.status.code != 404:
                log.warning("deleting expired Lease %s failed: %s", name, exc)


def _member(lease: Any) -> Member | None:
    spec = lease.spec
    if spec is None or not spec.holderIdentity:
        return None
    acquired = micro_time(spec.acquireTime) if spec.acquireTime else ""
    return Member(
        identity=spec.holderIdentity,
        stamp=str(lease.metadata.resourceVersion or ""),
        duration_s=float(spec.leaseDurationSeconds or 15),
        acquired=acquired,
    )
