"""The remediator and a monitor's Events when the API server fails them.

No action without a written ledger record, no exception out of a failed
workload read, no Event lost to an outage. The same faults on real parts are
in ``tests/e2e/test_faults.py``.
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from typing import Any, cast

from mcp_health_operator.controller.metrics import MonitorFigures
from mcp_health_operator.controller.monitor import (
    MonitorObject,
    MonitorWorker,
    _Status,
)
from mcp_health_operator.controller.remediator import Remediator
from mcp_health_operator.controller.spool import MAX_UNPOSTED_EVENTS
from mcp_health_operator.core import events, spec
from mcp_health_operator.core.config import CONSENT_LABEL, Config
from mcp_health_operator.core.judge import Health
from mcp_health_operator.core.remediation import Action, FleetState, record
from mcp_health_operator.kube.api import Kube, ObjectRef
from mcp_health_operator.probing.probe import Prober

REF = ObjectRef("default", "codebase", "uid-1")
T0 = 1_790_000_000.0
ROLLED_OUT = {
    "metadata": {"generation": 1},
    "spec": {"replicas": 1},
    "status": {
        "observedGeneration": 1,
        "replicas": 1,
        "updatedReplicas": 1,
        "availableReplicas": 1,
    },
}


class FakeKube:
    """The API server as the remediator and the Event poster use it; it can be 'down'."""

    def __init__(self) -> None:
        self.instance = "operator-0"
        self.down = False
        self.writes_down = False  # reads still answered: the API server going away mid-step
        self.deleted = False  # the monitor is gone: writes answer 404
        self.status: dict[str, Any] = {}
        self.restarts: list[str] = []
        self.posted: list[tuple[str, int, datetime | None]] = []
        # The workload's owner allowed remediation (the consent label).
        self.workload_labels: dict[str, str] = {CONSENT_LABEL: "true"}

    def _check(self) -> None:
        if self.down:
            raise ConnectionError("All connection attempts failed")

    async def monitor(self, ref: ObjectRef) -> dict[str, Any]:
        self._check()
        return {"metadata": {"resourceVersion": "1"}, "status": self.status}

    async def patch_status(
        self, ref: ObjectRef, status: dict[str, Any], *, resource_version: str | None = None
    ) -> bool:
        self._check()
        if self.writes_down:
            raise ConnectionError("All connection attempts failed")
        if self.deleted:
            return False
        self.status = _merge(self.status, status)
        return True

    async def workload(self, namespace: str, kind: str, name: str) -> dict[str, Any]:
        self._check()
        metadata = {**ROLLED_OUT["metadata"], "labels": self.workload_labels}
        return {**ROLLED_OUT, "metadata": metadata}

    async def restart(self, namespace: str, kind: str, name: str, when: datetime) -> None:
        self._check()
        self.restarts.append(name)

    async def post_event(
        self,
        ref: ObjectRef,
        spec_event: events.EventSpec,
        post: events.Post,
        *,
        when: datetime | None = None,
    ) -> None:
        self._check()
        self.posted.append((spec_event.reason, post.count, when))


def _merge(target: Any, patch: Any) -> Any:
    """A JSON merge patch (RFC 7386), as the API server applies ``patch_status``."""
    if not isinstance(patch, dict):
        return patch
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = _merge(out.get(key), value)
    return out


RESTART = spec.parse(
    {
        "target": {"service": {"name": "codebase-mcp", "port": 8000}},
        "remediation": {"workload": {"name": "codebase-mcp"}, "restart": {"after": "30s"}},
    }
).remediation
assert RESTART is not None


class Run:
    """One remediator, Unhealthy for a minute, with writes that succeed unless the API is down."""

    def __init__(self, config: Config | None = None) -> None:
        self.kube = FakeKube()
        self.now = T0
        self.remediator = Remediator(
            kube=cast(Kube, self.kube),
            config=config or Config(),
            figures=MonitorFigures("default", "codebase", "svc/codebase-mcp:8000"),
            fleet_state=lambda: FleetState(1, 1, 0),
            status={},
            clock=lambda: self.now,
        )
        self.remediator.unhealthy_since = T0 - 60
        self.written: list[dict[str, Any]] = []
        self.events: list[str] = []

    async def write(self, fields: dict[str, Any]) -> bool:
        if self.kube.down or self.kube.writes_down:
            return False
        self.written.append(fields)
        return True

    async def post(self, event: events.EventSpec) -> None:
        self.events.append(event.reason)

    def step(self) -> None:
        assert RESTART is not None
        asyncio.run(
            self.remediator.step(
                spec=RESTART,
                ref=REF,
                annotations={},
                health=Health.UNHEALTHY,
                pool_size=None,
                prober=cast(Prober, None),
                write=self.write,
                post=self.post,
            )
        )


def test_a_ledger_write_that_fails_means_no_action_and_no_phantom_record() -> None:
    run = Run()
    run.kube.writes_down = True
    for _ in range(3):  # restart due at every probe of the outage
        run.step()
        run.now += 1
    assert run.kube.restarts == []
    assert not run.remediator.ledger.records
    # The next write (any status write) must not carry an action never taken.
    assert run.remediator.status_fields(RESTART)["remediation"]["actionTimes"] == []

    run.kube.writes_down = False
    run.step()
    run.now += 1
    run.step()  # inside the cooldown now
    assert run.kube.restarts == ["codebase-mcp"]
    assert [r.result for r in run.remediator.ledger.records] == ["success"]
    assert run.events == ["RestartTriggered", "RestartSuppressed"]


def test_a_failed_workload_read_is_no_decision_and_no_exception() -> None:
    run = Run()
    run.kube.down = True
    run.step()
    assert run.kube.restarts == [] and run.written == [] and run.events == []
    assert run.remediator.suppressed is None

    run.kube.down = False
    run.step()
    assert run.kube.restarts == ["codebase-mcp"]


def worker(kube: FakeKube) -> MonitorWorker:
    obj = MonitorObject(ref=REF, generation=1, spec={})
    # Room for every Event these outages queue: the spam filter is tested below.
    aggregator = events.Aggregator(spam_burst=MAX_UNPOSTED_EVENTS + 30)
    return MonitorWorker(obj, kube=cast(Kube, kube), config=Config(), aggregator=aggregator)


def test_events_over_the_budget_are_not_posted_and_are_counted() -> None:
    kube = FakeKube()
    obj = MonitorObject(ref=REF, generation=1, spec={})
    w = MonitorWorker(
        obj, kube=cast(Kube, kube), config=Config(), aggregator=events.Aggregator(spam_burst=2)
    )

    async def scenario() -> None:
        for i in range(3):
            w.spool.add(events.EventSpec(events.WARNING, "ProbeFailed", f"failure {i}"))
        # Remediation's Events are its audit trail: posted whatever the budget says.
        await w._remediation_event(events.EventSpec(events.NORMAL, "RestartTriggered", "restarted"))

    asyncio.run(scenario())
    posted = [reason for reason, _, _ in kube.posted]
    assert posted == ["ProbeFailed", "ProbeFailed", "RestartTriggered"]
    assert w.figures.events_dropped == {"ProbeFailed": 1}


def test_events_of_an_outage_are_posted_in_order_once_the_api_server_is_back() -> None:
    kube = FakeKube()
    w = worker(kube)
    unhealthy = events.EventSpec(events.WARNING, "HealthUnhealthy", "Unhealthy: db down")
    recovered = events.EventSpec(events.NORMAL, "HealthRecovered", "Healthy again")

    async def scenario() -> None:
        kube.down = True
        await w._remediation_event(unhealthy)
        await w._remediation_event(recovered)
        await w._remediation_event(unhealthy)  # the same Event again: one name, count 2
        assert kube.posted == []
        kube.down = False
        await w.spool.post()

    asyncio.run(scenario())
    assert [(reason, count) for reason, count, _ in kube.posted] == [
        ("HealthRecovered", 1),
        ("HealthUnhealthy", 2),
    ]
    times = [when for _, _, when in kube.posted]
    assert all(t is not None for t in times)  # stamped when they happened, not when posted
    assert not w.spool


def test_a_long_outage_keeps_only_the_newest_events() -> None:
    kube = FakeKube()
    w = worker(kube)

    async def scenario() -> None:
        kube.down = True
        for i in range(MAX_UNPOSTED_EVENTS + 30):
            event = events.EventSpec(events.WARNING, f"Reason{i}", f"message {i}")
            await w._remediation_event(event)
        kube.down = False
        await w.spool.post()

    asyncio.run(scenario())
    reasons = [reason for reason, _, _ in kube.posted]
    assert len(reasons) == MAX_UNPOSTED_EVENTS
    assert reasons[-1] == f"Reason{MAX_UNPOSTED_EVENTS + 29}"
    assert reasons[0] == "Reason30"


def test_a_status_built_before_an_action_does_not_undo_the_ledger_written_since() -> None:
    """Sent beside the probing, a status may go out after a step recorded an action."""
    assert RESTART is not None
    kube = FakeKube()
    w = worker(kube)
    built = {"health": "Unhealthy", "conditions": [], **w.remediator.status_fields(RESTART)}
    assert built["remediation"]["actionTimes"] == []
    w.remediator.ledger = record(w.remediator.ledger, Action.RESTART, T0, "success")
    asyncio.run(kube.patch_status(REF, w.remediator.status_fields(RESTART)))  # the step's write
    asyncio.run(w._send_status(_Status(built, (), True)))
    assert [t["result"] for t in kube.status["remediation"]["actionTimes"]] == ["success"]
    assert kube.status["probedBy"] == "operator-0"


def test_an_ordinary_status_write_keeps_a_ledger_another_replica_wrote() -> None:
    """Two replicas around a handover: the one with a stale ledger must not erase the record."""
    assert RESTART is not None
    kube = FakeKube()
    other = Remediator(
        kube=cast(Kube, kube),
        config=Config(),
        figures=MonitorFigures("default", "codebase", ""),
        fleet_state=lambda: FleetState(1, 1, 0),
        status={},
        clock=lambda: T0,
    )
    other.ledger = record(other.ledger, Action.RESTART, T0, "success")
    asyncio.run(kube.patch_status(REF, other.status_fields(RESTART)))
    stale = worker(kube)  # this replica has not seen that action
    status = {"health": "Unhealthy", "conditions": [], **stale.remediator.status_fields(RESTART)}
    asyncio.run(stale._send_status(_Status(status, (), True)))
    ledger = kube.status["remediation"]
    assert [(t["action"], t["result"]) for t in ledger["actionTimes"]] == [("restart", "success")]
    assert ledger["lastAction"] == "restart"


def test_a_failed_status_write_makes_the_next_one_due() -> None:
    kube = FakeKube()
    w = worker(kube)
    healthy, degraded = ("Healthy",), ("Degraded",)

    def send(status: dict[str, Any], key: tuple[Any, ...]) -> None:
        asyncio.run(w._send_status(_Status(dict(status), key, False)))

    send({"health": "Healthy", "conditions": []}, healthy)
    assert not w.budget.due(healthy, time.monotonic())  # written, inside the heartbeat
    kube.down = True
    send({"health": "Degraded", "conditions": []}, degraded)
    # What it last wrote, but a write failed since: the next probe writes.
    assert w.budget.due(healthy, time.monotonic())
    kube.down = False
    send({"health": "Healthy", "conditions": []}, healthy)
    assert kube.status["health"] == "Healthy"


class _ProberMeanwhile:
    """A probe during which the watch delivers a newer generation of the monitor."""

    def __init__(self, w: MonitorWorker, newer: MonitorObject) -> None:
        self.w, self.newer = w, newer
        self.url = "http://codebase-mcp.default.svc:8000/mcp"

    async def probe(self) -> Any:
        from mcp_health_operator.probing.probe import Outcome, ProbeResult

        self.w.update(self.newer)
        return ProbeResult(Outcome.UNREACHABLE, 3.0, message="connection refused")


def test_observed_generation_is_the_generation_the_verdict_was_reached_under() -> None:
    kube = FakeKube()
    w = worker(kube)
    w._spec = spec.parse({"target": {"service": {"name": "codebase-mcp", "port": 8000}}})
    w._configured_generation = 1
    w._prober = cast(Prober, _ProberMeanwhile(w, MonitorObject(ref=REF, generation=2, spec={})))

    async def scenario() -> None:
        await w.probe_once()
        await w.outbox.drain()
        await w.outbox.aclose()

    asyncio.run(scenario())
    assert w.obj.generation == 2  # the newer object arrived mid-probe ...
    assert kube.status["observedGeneration"] == 1  # ... but this verdict is generation 1's
    assert {c["observedGeneration"] for c in kube.status["conditions"]} == {1}


def test_a_status_write_that_finds_the_monitor_deleted_reports_it_gone() -> None:
    kube = FakeKube()
    gone: list[MonitorObject] = []
    obj = MonitorObject(ref=REF, generation=1, spec={})
    w = MonitorWorker(
        obj,
        kube=cast(Kube, kube),
        config=Config(),
        aggregator=events.Aggregator(),
        on_gone=gone.append,
    )
    kube.deleted = True
    asyncio.run(w._send_status(_Status({"health": "Healthy", "conditions": []}, (), False)))
    assert gone == [obj]


def test_a_workload_without_its_owners_consent_is_never_touched() -> None:
    run = Run()
    run.kube.workload_labels = {"app": "codebase-mcp"}  # no consent label
    run.step()
    run.now += 60
    run.step()  # still unlabelled: held, one Event for the hold
    assert run.kube.restarts == []
    assert run.events == ["RemediationNotPermitted"]
    assert run.remediator.hold_status() == {"suppressed": "NotPermitted"}
    run.kube.workload_labels = {CONSENT_LABEL: "true"}  # the owner consents
    run.step()
    assert run.kube.restarts == ["codebase-mcp"]
    assert run.events == ["RemediationNotPermitted", "RestartTriggered"]


def test_a_namespace_without_the_remediation_grant_is_held_whatever_the_labels() -> None:
    run = Run(Config(remediation_namespaces=("team-b",)))
    run.step()
    assert run.kube.restarts == []
    assert run.events == ["RemediationNotPermitted"]
    granted = Run(Config(remediation_namespaces=(REF.namespace,)))
    granted.step()
    assert granted.kube.restarts == ["codebase-mcp"]


def test_a_status_written_by_another_replica_makes_the_next_write_due() -> None:
    """A hand-over seen at different moments: the previous owner's late write is undone."""
    kube = FakeKube()
    w = worker(kube)
    key = ("Healthy",)
    asyncio.run(w._send_status(_Status({"health": "Healthy", "conditions": []}, key, False)))
    assert not w.budget.due(key, time.monotonic())
    w.update(MonitorObject(ref=REF, generation=1, spec={}, status={"probedBy": "operator-0"}))
    assert not w.budget.due(key, time.monotonic())  # our own write, seen by the watch
    w.update(MonitorObject(ref=REF, generation=1, spec={}, status={"probedBy": "operator-1"}))
    assert w.budget.due(key, time.monotonic())


class _QueuedKube(FakeKube):
    """An API server whose status writes wait behind a queue (a cold start of thousands)."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.patches: list[dict[str, Any]] = []

    async def patch_status(
        self, ref: ObjectRef, status: dict[str, Any], *, resource_version: str | None = None
    ) -> bool:
        await self.gate.wait()
        self.patches.append(status)
        return await super().patch_status(ref, status, resource_version=resource_version)


def test_a_status_equal_to_the_one_still_on_its_way_is_not_written_again() -> None:
    async def scenario() -> list[str]:
        kube = _QueuedKube()
        w = worker(kube)
        healthy, degraded = ("Healthy",), ("Degraded",)

        def submit(health: str, key: tuple[Any, ...], probed: str) -> None:
            status = {"health": health, "lastProbeTime": probed, "conditions": []}
            w.outbox.submit(status=_Status(status, key, False), events=False, step=None)

        submit("Healthy", healthy, "t1")
        await asyncio.sleep(0)  # the first write is on its way, held by the queue
        submit("Healthy", healthy, "t2")  # the next probe: the same verdict, not written yet
        kube.gate.set()
        await w.outbox.drain()
        submit("Degraded", degraded, "t3")  # a change is written at once
        await w.outbox.drain()
        return [f"{p['health']}@{p['lastProbeTime']}" for p in kube.patches]

    assert asyncio.run(scenario()) == ["Healthy@t1", "Degraded@t3"]
