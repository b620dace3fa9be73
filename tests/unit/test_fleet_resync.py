"""The fleet forgets monitors deleted while unwatched: by resync and by a 404 on write."""

from __future__ import annotations

import asyncio
import time
from typing import cast

from mcp_health_operator.controller.fleet import Fleet
from mcp_health_operator.controller.monitor import MonitorObject
from mcp_health_operator.core.config import Config
from mcp_health_operator.kube.api import Kube, ObjectRef


class Listing:
    def __init__(self, fleet: Fleet | None = None) -> None:
        self.uids: set[str] = set()
        self.fleet = fleet
        self.created_meanwhile: MonitorObject | None = None

    async def monitor_uids(self, namespaces: tuple[str, ...]) -> set[str]:
        # A monitor delivered by the watch while the listing is under way.
        if self.fleet is not None and self.created_meanwhile is not None:
            self.fleet.upsert(self.created_meanwhile)
        return set(self.uids)


def obj(name: str, uid: str) -> MonitorObject:
    return MonitorObject(ref=ObjectRef("default", name, uid), generation=1, spec={})


def fleet_with(listing: Listing) -> Fleet:
    fleet = Fleet(kube=cast(Kube, listing), config=Config())
    fleet.owns = lambda uid: False  # keep the objects, start no worker
    listing.fleet = fleet
    return fleet


def test_resync_forgets_only_what_the_listing_lacks() -> None:
    listing = Listing()
    fleet = fleet_with(listing)
    fleet.upsert(obj("kept", "u1"))
    fleet.upsert(obj("doomed", "u2"))
    listing.uids = {"u1"}
    time.sleep(0.01)
    assert asyncio.run(fleet.resync()) == 1
    assert set(fleet.objects) == {("default", "kept")}


def test_resync_keeps_a_monitor_created_while_it_listed() -> None:
    listing = Listing()
    fleet = fleet_with(listing)
    listing.created_meanwhile = obj("new", "u3")
    assert asyncio.run(fleet.resync()) == 0
    assert ("default", "new") in fleet.objects


def test_a_404_forgets_the_monitor_but_not_a_namesake() -> None:
    fleet = fleet_with(Listing())
    old, new = obj("m", "u1"), obj("m", "u2")
    fleet.upsert(old)
    fleet.upsert(new)  # deleted and created again under the same name
    fleet.gone(old)
    assert fleet.objects[("default", "m")] is new
    fleet.gone(new)
    assert ("default", "m") not in fleet.objects
