"""Fleet.dependency_changed: which watch events requeue which monitors."""

from __future__ import annotations

from typing import Any, cast

from mcp_health_operator.controller.fleet import Fleet
from mcp_health_operator.controller.monitor import MonitorObject, MonitorWorker
from mcp_health_operator.core.config import Config
from mcp_health_operator.kube.api import Kube, ObjectRef


class Worker:
    def __init__(self, *deps: tuple[str, str, str], refused: bool = False) -> None:
        self.deps = frozenset(deps)
        self.refused = refused
        self.requeued: list[str] = []
        self.obj: MonitorObject | None = None

    def requeue(self, kind: str = "Service") -> None:
        self.requeued.append(kind)


def fleet_of(**workers: Worker) -> Fleet:
    fleet = Fleet(kube=cast(Kube, object()), config=Config())
    for name, worker in workers.items():
        worker.obj = MonitorObject(ObjectRef("ns", name, f"uid-{name}"), 1, {})
        fleet.workers[("ns", name)] = cast(MonitorWorker, worker)
        # What a worker's configuration tells the fleet of the objects it reads.
        fleet._deps_changed(cast(MonitorWorker, worker), frozenset())
    return fleet


SECRET = ("Secret", "ns", "token")
SLICES = ("EndpointSlice", "ns", "fleet")


def test_a_change_requeues_the_monitors_using_the_object_and_no_other() -> None:
    user, other = Worker(SECRET), Worker(("Secret", "ns", "else"))
    fleet = fleet_of(user=user, other=other)
    assert fleet.dependency_changed(*SECRET, version="2") == 1
    assert (user.requeued, other.requeued) == (["Secret"], [])


def test_a_listing_requeues_only_news() -> None:
    healthy, refused = Worker(SECRET), Worker(SECRET, refused=True)
    fleet = fleet_of(healthy=healthy, refused=refused)
    listed: dict[str, Any] = {"listed": True}
    # First seen in a listing: what the monitors just read, unless one was
    # refused for want of it (it may have appeared in a watch gap).
    assert fleet.dependency_changed(*SECRET, version="1", **listed) == 2
    refused.refused = False
    healthy.requeued.clear()
    assert fleet.dependency_changed(*SECRET, version="1", **listed) == 0
    assert healthy.requeued == []
    # Listed again at a version not seen: it changed in a gap.
    assert fleet.dependency_changed(*SECRET, version="7", **listed) == 2
    assert healthy.requeued == ["Secret"]


def test_an_endpointslice_change_says_so_to_the_monitor() -> None:
    worker = Worker(SLICES)
    fleet = fleet_of(m=worker)
    fleet.dependency_changed(*SLICES, version="fleet-abc@3")
    assert worker.requeued == ["EndpointSlice"]


def test_a_stopped_monitor_is_requeued_no_more() -> None:
    worker = Worker(SECRET)
    fleet = fleet_of(m=worker)
    fleet._stop(("ns", "m"))
    assert fleet.dependency_changed(*SECRET, version="2") == 0
    assert worker.requeued == []
