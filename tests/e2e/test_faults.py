"""Faults on real parts: the API server away for a minute, PostgreSQL flapping,
the operator killed mid-remediation.

Each test prints the figures it measured (``pytest -s``); docs/reliability.md
records them.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import shutil
import signal
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

import pytest

from mcp_health_testbed import postgres
from mcp_health_testbed.controlplane import ControlPlane
from mcp_health_testbed.postgres import Postgres
from mcp_health_testbed.samples import SampleServer
from tests.conftest import SampleFactory
from tests.e2e.conftest import (
    REPO,
    Kubectl,
    Operator,
    OperatorFactory,
    service,
    start_operator,
    wait_for,
)
from tests.e2e.test_remediation import (
    _pool_total,
    _saturate,
    deployment,
    event,
    finish_rollout,
    health,
    is_healthy,
    remediated_monitor,
    remediation_status,
    restarted_at,
)

OUTAGE_S = 60.0


def resolve(namespace: str, svc: str, server: SampleServer) -> list[str]:
    return ["--resolve", f"{svc}.{namespace}.svc:8000=127.0.0.1:{server.port}"]


def probes(op: Operator, monitor: str) -> float:
    """Every probe of ``monitor`` so far, whatever its outcome (from the operator's /metrics)."""
    return sum(
        value
        for labels, value in op.metrics().get("mcp_probe_total", [])
        if labels.get("monitor") == monitor
    )


def event_figures(kubectl: Kubectl, name: str) -> tuple[int, int, dict[str, int]]:
    """(Event objects, occurrences counted in them, occurrences by reason)."""
    items = kubectl.events(name)
    by_reason: dict[str, int] = {}
    for e in items:
        by_reason[e["reason"]] = by_reason.get(e["reason"], 0) + int(e.get("count") or 1)
    return len(items), sum(by_reason.values()), by_reason


@pytest.fixture
def own_plane(tmp_path: Path) -> Iterator[Kubectl]:
    """A control plane of the test's own (its API server will be stopped), CRD installed."""
    workdir = Path(tempfile.mkdtemp(prefix="mcp-health-cp-outage-"))
    plane = ControlPlane(workdir=workdir).start()
    try:
        k = Kubectl(plane, f"t-{uuid.uuid4().hex[:8]}")
        k("apply", "-f", str(REPO / "crds"), namespaced=False)
        k(
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            "crd/mcphealthmonitors.mcphealth.dev",
            namespaced=False,
        )
        k("create", "namespace", k.namespace, namespaced=False)
        yield k
    finally:
        plane.stop()
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture
def second_pg() -> Iterator[Postgres]:
    server = postgres.temporary().start()
    yield server
    server.stop()
    shutil.rmtree(server.workdir, ignore_errors=True)


SLOW_SCALE_S = 6.0
SCALE_BY_TOOL = """    cooldown: 10m
    poolScaling: {after: 2s, step: 5, max: 50, method: mcpTool}
"""


RESTART_SOON = """    cooldown: 10m
    workload: {{name: {workload}}}
    restart: {{after: 3s}}
"""


def test_api_server_away_for_a_minute_probing_goes_on_and_nothing_is_lost_or_doubled(
    own_plane: Kubectl,
    sample_server: SampleFactory,
    own_pg: Postgres,
    second_pg: Postgres,
    tmp_path: Path,
) -> None:
    """Three targets change state while kube-apiserver is stopped for 60 s.

    ``a`` turns Unhealthy, recovers and turns Unhealthy again (restart due
    during the outage); ``b`` turns Unhealthy (restart due) and recovers;
    ``c``'s pool is exhausted (scaling by its MCP tool due: an action that
    needs no API call, held only by the ledger write). Afterwards: the
    statuses right, the transitions' Events there, ``a`` restarted and ``c``
    scaled exactly once after the API returned, ``b`` never touched.
    """
    kubectl = own_plane
    plane = kubectl.plane
    ns = kubectl.namespace
    server_a = sample_server("codebase-mcp", dsn=own_pg.dsn)
    server_b = sample_server("workflow-mcp", dsn=second_pg.dsn)
    server_c = sample_server("codebase-mcp", dsn=second_pg.dsn, pool_size=10)
    # Three monitors failing at once would trip the mass-failure breaker
    # (tested on its own); here every due action must go through.
    flags = ["--breaker-min-monitors", "10"]
    for name, server in (("a", server_a), ("b", server_b)):
        kubectl.apply(service(name))
        kubectl.apply(deployment(name))
        finish_rollout(kubectl, name)
        flags += resolve(ns, name, server)
        kubectl.apply(remediated_monitor(name, name, RESTART_SOON.format(workload=name)))
    kubectl.apply(service("c"))
    flags += resolve(ns, "c", server_c)
    kubectl.apply(remediated_monitor("c", "c", SCALE_BY_TOOL))
    op = start_operator(ns, plane.kubeconfig, tmp_path / "operator.log", *flags)
    try:
        for name in ("a", "b", "c"):
            wait_for(partial(is_healthy, kubectl, name), timeout=30, what=f"{name} Healthy")
        plane.stop_apiserver()
        down = time.monotonic()
        before = {name: probes(op, name) for name in ("a", "b", "c")}

        def at(second: float) -> None:
            time.sleep(max(0.0, down + second - time.monotonic()))

        at(3)
        own_pg.stop()
        second_pg.stop()
        at(20)  # both Unhealthy for > restart.after: a restart is due for both
        own_pg.start()
        second_pg.start()
        at(25)
        asyncio.run(_saturate(server_c, 10))  # c: pool exhausted, scaling due from ~28 s
        at(35)
        own_pg.stop()  # a: Unhealthy again; b stays recovered
        at(OUTAGE_S)
        during = {name: probes(op, name) - before[name] for name in ("a", "b", "c")}
        # No ledger write, no action: c's pool was not touched during the outage.
        assert _pool_total(server_c) == 10
        outage = time.monotonic() - down
        assert op.proc.poll() is None, "the operator died while the API server was away"
        plane.start_apiserver()
        back = time.monotonic()

        wait_for(lambda: health(kubectl, "a") == "Unhealthy", timeout=60, what="a Unhealthy")
        caught_a = time.monotonic() - back
        wait_for(lambda: health(kubectl, "b") == "Healthy", timeout=60, what="b Healthy")
        status_b = kubectl.json("mcphealth", "b")["status"]
        caught_b = time.monotonic() - back

        # The transitions of the outage reach the Events; the last of each is there.
        wait_for(
            lambda: (
                event(kubectl, "a", "HealthUnhealthy") and event(kubectl, "a", "HealthRecovered")
            ),
            timeout=60,
            what="a's transition Events",
        )
        wait_for(lambda: event(kubectl, "b", "HealthRecovered"), timeout=60, what="b recovered")
        events_caught = time.monotonic() - back
        assert event(kubectl, "b", "HealthUnhealthy")

        # a: exactly one restart, after the API returned; b: none (it recovered).
        stamp = wait_for(lambda: restarted_at(kubectl, "a"), timeout=60, what="a restarted")
        restart_after = time.monotonic() - back
        time.sleep(10)  # a stays Unhealthy: any second restart would come now
        assert restarted_at(kubectl, "a") == stamp
        ledger = remediation_status(kubectl, "a")
        assert ledger["actionsInWindow"] == 1, ledger
        assert ledger["lastResult"] == "success", ledger
        assert len(event(kubectl, "a", "RestartTriggered")) == 1
        labels = {"namespace": ns, "monitor": "a", "action": "restart"}
        assert op.value("mcp_remediation_actions_total", **labels, result="success") == 1.0
        assert restarted_at(kubectl, "b") is None
        ledger_b = remediation_status(kubectl, "b")
        assert not ledger_b.get("actionTimes"), ledger_b  # a failed ledger write is no action
        assert status_b["consecutiveFailures"] == 0

        # c: scaled once by its tool after the API returned, not before, not twice.
        scaled = wait_for(lambda: event(kubectl, "c", "PoolScaled"), timeout=30, what="c scaled")
        assert len(scaled) == 1 and "size 10 -> 15" in scaled[0]["message"]
        assert _pool_total(server_c) == 15
        ledger_c = remediation_status(kubectl, "c")
        assert ledger_c["actionsInWindow"] == 1 and ledger_c["lastResult"] == "success", ledger_c
        assert op.proc.poll() is None
    finally:
        op.stop()

    # Probing went on through the outage: one probe a second, give or take.
    assert min(during.values()) >= 0.8 * OUTAGE_S, during
    print(
        f"\nAPI outage {outage:.1f}s: probes during it {during}; status caught up in "
        f"a={caught_a:.1f}s b={caught_b:.1f}s; Events in {events_caught:.1f}s; "
        f"restart {restart_after:.1f}s after the API returned; "
        f"Events a={event_figures(kubectl, 'a')} b={event_figures(kubectl, 'b')}"
    )


FREEZE_S = 30.0


def test_api_server_hung_probing_keeps_its_pace_and_acts_once_it_answers(
    own_plane: Kubectl, sample_server: SampleFactory, own_pg: Postgres, tmp_path: Path
) -> None:
    """kube-apiserver frozen (SIGSTOP) for 30 s: every API call waits out its timeout.

    The probes must not wait with them (probed every second: about 30 probes);
    the status and Events are sent beside the probing, and the restart due
    during the freeze happens, once, when the API server answers again.
    """
    kubectl = own_plane
    plane = kubectl.plane
    ns = kubectl.namespace
    server = sample_server("codebase-mcp", dsn=own_pg.dsn)
    kubectl.apply(service("a"))
    kubectl.apply(deployment("a"))
    finish_rollout(kubectl, "a")
    kubectl.apply(remediated_monitor("a", "a", RESTART_SOON.format(workload="a")))
    op = start_operator(ns, plane.kubeconfig, tmp_path / "operator.log", *resolve(ns, "a", server))
    try:
        wait_for(partial(is_healthy, kubectl, "a"), timeout=30, what="Healthy")
        plane.freeze_apiserver()
        frozen = time.monotonic()
        try:
            before = probes(op, "a")
            time.sleep(3)
            own_pg.stop()  # Unhealthy, and a restart due, while every API call hangs
            time.sleep(max(0.0, frozen + FREEZE_S - time.monotonic()))
            during = probes(op, "a") - before
            assert op.proc.poll() is None, "the operator died while the API server was frozen"
        finally:
            plane.thaw_apiserver()
        back = time.monotonic()
        wait_for(lambda: health(kubectl, "a") == "Unhealthy", timeout=60, what="Unhealthy")
        caught = time.monotonic() - back
        wait_for(lambda: event(kubectl, "a", "HealthUnhealthy"), timeout=60, what="the Event")
        stamp = wait_for(lambda: restarted_at(kubectl, "a"), timeout=60, what="restarted")
        restart_after = time.monotonic() - back
        time.sleep(5)  # still Unhealthy: a second restart would come now
        assert restarted_at(kubectl, "a") == stamp
        ledger = remediation_status(kubectl, "a")
        assert ledger["actionsInWindow"] == 1 and ledger["lastResult"] == "success", ledger
        assert len(event(kubectl, "a", "RestartTriggered")) == 1
        assert kubectl.json("mcphealth", "a")["status"]["probedBy"]
    finally:
        op.stop()
    # One probe a second, give or take, though every API call hung meanwhile.
    assert during >= 20, during
    print(
        f"\nAPI server frozen {FREEZE_S:.0f}s: {during:.0f} probes during it; status caught "
        f"up in {caught:.1f}s; restart {restart_after:.1f}s after it answered again"
    )


FLAP_DOWN_S, FLAP_UP_S, FLAPPING_S = 5.0, 3.0, 60.0
FLAP_COOLDOWN_S, FLAP_MAX_PER_HOUR = 20, 3
FLAPPY = f"""    cooldown: {FLAP_COOLDOWN_S}s
    maxPerHour: {FLAP_MAX_PER_HOUR}
    workload: {{name: codebase-mcp}}
    restart: {{after: 1s}}
"""


def test_postgres_flapping_aggregates_events_and_restarts_stay_within_cooldown_and_budget(
    kubectl: Kubectl, operator: OperatorFactory, sample_server: SampleFactory, own_pg: Postgres
) -> None:
    server = sample_server("codebase-mcp", dsn=own_pg.dsn)
    kubectl.apply(service("codebase-mcp"))
    kubectl.apply(deployment("codebase-mcp"))
    finish_rollout(kubectl, "codebase-mcp")
    op = operator(*resolve(kubectl.namespace, "codebase-mcp", server))
    kubectl.apply(remediated_monitor("m", "codebase-mcp", FLAPPY))
    wait_for(partial(is_healthy, kubectl, "m"), timeout=30, what="Healthy")

    started = time.monotonic()
    flaps = 0
    while time.monotonic() - started < FLAPPING_S:
        own_pg.stop()
        flaps += 1
        time.sleep(FLAP_DOWN_S)
        own_pg.start()
        # Play the Deployment controller, so only cooldown and budget hold restarts.
        finish_rollout(kubectl, "codebase-mcp")
        time.sleep(FLAP_UP_S)
    wait_for(partial(is_healthy, kubectl, "m"), timeout=30, what="Healthy at the end")
    time.sleep(3)  # the last Events land

    labels = {"namespace": kubectl.namespace, "monitor": "m", "action": "restart"}
    restarts = op.value("mcp_remediation_actions_total", **labels, result="success") or 0.0
    generation = kubectl.json("deployment", "codebase-mcp")["metadata"]["generation"]
    ledger = remediation_status(kubectl, "m")
    times = [t["time"] for t in ledger["actionTimes"]]
    objects, occurrences, by_reason = event_figures(kubectl, "m")
    per_reason_objects: dict[str, int] = {}
    for e in kubectl.events("m"):
        per_reason_objects[e["reason"]] = per_reason_objects.get(e["reason"], 0) + 1
    print(
        f"\nPostgreSQL flapping {flaps}x ({FLAP_DOWN_S:.0f}s down / {FLAP_UP_S:.0f}s up, "
        f"{FLAPPING_S:.0f}s): restarts {restarts:.0f} at {times}; Event objects {objects} "
        f"for {occurrences} occurrences {by_reason}; objects by reason {per_reason_objects}"
    )

    # Restarts: at least one (a spell lasted past restart.after), never more than the
    # cooldown and the hourly budget allow; every one a real patch of the workload.
    bound = min(FLAP_MAX_PER_HOUR, 1 + int(FLAPPING_S // FLAP_COOLDOWN_S))
    assert 1 <= restarts <= bound, (restarts, bound)
    assert generation - 1 == restarts
    assert len(times) == restarts
    assert by_reason.get("RestartTriggered") == restarts
    stamps = [
        datetime.strptime(t, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp() for t in times
    ]
    assert all(b - a >= FLAP_COOLDOWN_S for a, b in itertools.pairwise(stamps)), times
    # Events: every spell counted, few objects (repeats bump `count`, floods fold).
    assert by_reason["HealthUnhealthy"] >= flaps - 1, by_reason
    assert by_reason["HealthRecovered"] >= flaps - 1, by_reason
    assert all(n <= 5 for n in per_reason_objects.values()), per_reason_objects
    assert objects < occurrences / 2, (objects, occurrences)


def test_operator_killed_mid_remediation_does_not_repeat_it_inside_the_cooldown(
    kubectl: Kubectl, operator: OperatorFactory, sample_server: SampleFactory, pg: Postgres
) -> None:
    server = sample_server(
        "codebase-mcp",
        dsn=pg.dsn,
        pool_size=10,
        extra_args=("--scale-pool-delay", str(SLOW_SCALE_S)),
    )
    kubectl.apply(service("codebase-mcp"))
    flags = resolve(kubectl.namespace, "codebase-mcp", server)
    first = operator(*flags)
    kubectl.apply(remediated_monitor("m", "codebase-mcp", SCALE_BY_TOOL))
    wait_for(partial(is_healthy, kubectl, "m"), timeout=30, what="Healthy")
    asyncio.run(_saturate(server, 10))

    # The ledger says 'pending' while the slow scale_pool call is under way: kill then.
    pending = wait_for(
        lambda: remediation_status(kubectl, "m").get("lastResult") == "pending",
        timeout=40,
        what="a pending action in the ledger",
    )
    assert pending
    os.killpg(first.proc.pid, signal.SIGKILL)
    first.proc.wait(timeout=10)
    killed_ledger = remediation_status(kubectl, "m")
    assert killed_ledger["lastResult"] == "pending"  # killed before the result was written
    assert not event(kubectl, "m", "PoolScaled")

    # The server finishes (or drops) the resize by itself; then exhaust whatever
    # pool it has, so scaling is due again as soon as the new operator looks.
    time.sleep(SLOW_SCALE_S + 1)
    size = _pool_total(server)
    asyncio.run(_saturate(server, size))
    second = operator(*flags)
    held = wait_for(
        lambda: event(kubectl, "m", "PoolScaleSuppressed"), timeout=40, what="the cooldown hold"
    )
    assert held[0]["message"].startswith("Cooldown"), held[0]["message"]
    time.sleep(5)  # scaling stays due; any second action would come now
    assert _pool_total(server) == size
    ledger = remediation_status(kubectl, "m")
    assert ledger["actionsInWindow"] == 1, ledger
    assert ledger["actionTimes"] == killed_ledger["actionTimes"]
    assert not event(kubectl, "m", "PoolScaled")
    labels = {"namespace": kubectl.namespace, "monitor": "m", "action": "scale-pool"}
    assert second.value("mcp_remediation_actions_total", **labels, result="success") is None
    assert second.value("mcp_remediation_actions_total", **labels, result="suppressed") == 1.0
    print(
        f"\nkilled with the ledger at 'pending'; the killed call left the pool at {size}; "
        f"the restarted operator held: {held[0]['message']!r}"
    )
