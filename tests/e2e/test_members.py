"""Several operator replicas on the real API server: sharding, leader failover, one remediation.

Replicas are real ``mcp-health run`` processes with short Leases
(``--lease-duration 3 --lease-renew 1``); the targets are one
``sample_mcp.fleet`` process serving many MCP servers at ``/t/<i>/mcp``.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
import urllib.request
from pathlib import Path
from typing import Any, cast

import pytest
from lightkube import AsyncClient, KubeConfig

from mcp_health_operator.controller.metrics import MonitorFigures
from mcp_health_operator.controller.remediator import Remediator
from mcp_health_operator.core import spec as specs
from mcp_health_operator.core.config import Config
from mcp_health_operator.core.judge import Health
from mcp_health_operator.core.membership import Mode
from mcp_health_operator.core.remediation import FleetState
from mcp_health_operator.kube.api import Conflict, Kube, ObjectRef
from mcp_health_operator.kube.leases import Members
from mcp_health_operator.probing.probe import Prober
from tests.conftest import FleetFactory
from tests.e2e.conftest import Kubectl, Operator, OperatorFactory, monitor, wait_for
from tests.e2e.test_remediation import deployment, finish_rollout, restarted_at

LEASE = ["--lease-duration", "3", "--lease-renew", "1"]
# Killed without a goodbye, a replica's monitors are probed again by another
# within lease duration + 2 renew periods + probe interval (3 + 2 + 1 s here);
# the slack is for a loaded machine, not for the design.
FAILOVER_BOUND_S = 3 + 2 * 1 + 1
SLACK_S = 10


@pytest.fixture
def fleet_server(start_fleet: FleetFactory) -> str:
    """``python -m sample_mcp.fleet`` with 40 targets; its base URL."""
    return start_fleet(40)


def _http(url: str, body: dict[str, Any] | None = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method="POST" if body is not None else "GET")
    request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.loads(response.read())


def probed(op: Operator) -> set[str]:
    """The monitors this replica probes, as its /metrics lists them."""
    return {labels["monitor"] for labels, _ in op.metrics().get("mcp_probe_total", [])}


def healthz(op: Operator) -> dict[str, Any]:
    return cast(dict[str, Any], _http(f"http://127.0.0.1:{op.metrics_port}/healthz"))


def probed_by(kubectl: Kubectl) -> dict[str, str | None]:
    items = kubectl.json("mcphealth")["items"]
    return {m["metadata"]["name"]: (m.get("status") or {}).get("probedBy") for m in items}


def holders(kubectl: Kubectl) -> set[str]:
    return {lease["spec"]["holderIdentity"] for lease in kubectl.json("leases")["items"]}


def start_replicas(
    operator: OperatorFactory, fleet: str, names: list[str], *flags: str
) -> dict[str, Operator]:
    return {
        name: operator("--membership", *flags, "--identity", name, *LEASE, f"--allow-url={fleet}")
        for name in names
    }


def shares(ops: dict[str, Operator]) -> dict[str, set[str]]:
    return {name: probed(op) for name, op in ops.items() if op.proc.poll() is None}


def owner_of(share: dict[str, set[str]], monitor: str) -> str:
    return next(name for name, monitors in share.items() if monitor in monitors)


def partition(ops: dict[str, Operator], everything: set[str]) -> dict[str, set[str]] | None:
    """Each monitor probed by exactly one live replica, and by all of them together."""
    seen = shares(ops)
    union: set[str] = set().union(*seen.values())
    if union != everything or sum(len(s) for s in seen.values()) != len(everything):
        return None
    return seen


def test_three_replicas_share_the_monitors_and_take_over_a_killed_ones_share(
    kubectl: Kubectl, operator: OperatorFactory, fleet_server: str
) -> None:
    names = {f"m{i:02d}" for i in range(30)}
    manifests = [
        monitor(f"m{i:02d}", url=f"{fleet_server}/t/{i}/mcp", interval="1s") for i in range(30)
    ]
    kubectl.apply("---\n".join(manifests))
    ops = start_replicas(operator, fleet_server, ["op-a", "op-b", "op-c"])

    # Replicas start one after the other; wait until each has its share.
    first = wait_for(
        lambda: (p := partition(ops, names)) and all(p.values()) and p,
        timeout=60,
        what="a partition over 3",
    )
    # Status names the writer, and it is the replica whose metrics list the monitor.
    owner = {m: name for name, share in first.items() for m in share}
    wait_for(lambda: probed_by(kubectl) == owner, timeout=30, what="status.probedBy = owner")
    assert holders(kubectl) == {"op-a", "op-b", "op-c"}

    # No monitor is read twice: over a window each target is read about once a
    # second, not twice (a double owner would double it).
    since = time.time()
    time.sleep(6)
    arrivals = _http(f"{fleet_server}/control/arrivals?since={since}")["arrivals"]
    reads = {f"m{int(t):02d}": len(v) for t, v in arrivals.items() if int(t) < 30}
    assert max(reads.values()) <= 9, reads
    assert min(reads.values()) >= 2, reads
    assert partition(ops, names) == first  # stable while nobody comes or goes

    # A fourth replica joins: about a quarter moves, all of it to the newcomer.
    ops.update(start_replicas(operator, fleet_server, ["op-d"]))
    joined = wait_for(
        lambda: (p := partition(ops, names)) and p.get("op-d") and p,
        timeout=30,
        what="a partition over the newcomer too",
    )
    # Rendezvous hashing moves only what op-d now wins: with 30 monitors a
    # quarter is 7.5, and 1..15 is the binomial's 99.9% range (the unit tests
    # hold the 1/N share tightly over 3,000 keys).
    moved = {m for m in names if owner_of(first, m) != owner_of(joined, m)}
    assert moved == joined["op-d"], (moved, joined)
    assert 1 <= len(moved) <= 15, len(moved)
    print(f"\na fourth replica took {len(moved)} of 30 monitors")
    first = joined

    # kill -9 one replica: its share moves to the others within the bound.
    victim = "op-b"
    lost = first[victim]
    ops[victim].proc.send_signal(signal.SIGKILL)
    ops[victim].proc.wait(timeout=10)
    killed = time.monotonic()
    after = wait_for(
        lambda: partition(ops, names),
        timeout=FAILOVER_BOUND_S + SLACK_S,
        what="op-b's share taken over",
    )
    took = time.monotonic() - killed
    print(f"\nshard failover after kill -9: {took:.1f}s for {len(lost)} monitors")
    assert set(after) == {"op-a", "op-c", "op-d"}
    # The survivors kept what they had: only op-b's monitors moved.
    assert all(first[n] <= after[n] for n in after)
    assert set().union(*(after[n] - first[n] for n in after)) == lost
    owner = {m: name for name, share in after.items() for m in share}
    wait_for(lambda: probed_by(kubectl) == owner, timeout=30, what="probedBy after failover")
    # The killed replica's Lease is cleaned up by the survivors.
    wait_for(
        lambda: "op-b" not in holders(kubectl),
        timeout=20,
        what="op-b's Lease deleted",
    )

    # A graceful stop (SIGTERM, as in a rolling update) deletes the Lease on the
    # way out: the others take over at their next listing, no lease expiry.
    stopped = time.monotonic()
    ops["op-a"].stop()
    assert "op-a" not in holders(kubectl)
    handed = wait_for(
        lambda: partition(ops, names), timeout=1 + 1 + SLACK_S, what="op-a's share handed over"
    )
    took = time.monotonic() - stopped
    print(f"graceful handover from SIGTERM: {took:.1f}s for {len(after['op-a'])} monitors")
    assert set(handed) == {"op-c", "op-d"}


def test_leader_mode_one_active_replica_and_failover_with_exactly_one_restart(
    kubectl: Kubectl, operator: OperatorFactory, fleet_server: str
) -> None:
    # Two workloads to remediate: "early" is restarted by the first leader
    # before it is killed, "late" becomes due across the switch.
    remediation = (
        "  remediation:\n"
        "    cooldown: 10m\n"
        "    workload: {{name: {name}}}\n"
        "    restart: {{after: {after}}}\n"
    )
    for name, tid, after in (("early", 30, "1s"), ("late", 31, "6s")):
        kubectl.apply(deployment(name))
        finish_rollout(kubectl, name)
        kubectl.apply(
            monitor(
                name,
                url=f"{fleet_server}/t/{tid}/mcp",
                failure_threshold=2,
                extra=remediation.format(name=name, after=after),
            )
        )
    generation = {
        n: kubectl.json("deployment", n)["metadata"]["generation"] for n in ("early", "late")
    }
    ops = start_replicas(operator, fleet_server, ["op-1", "op-2"], "leader")
    both = {"early", "late"}

    # Once both see both, exactly one replica is active; the other probes nothing.
    wait_for(
        lambda: all(healthz(op)["members"] == ["op-1", "op-2"] for op in ops.values()),
        timeout=30,
        what="both replicas see both",
    )
    seen = wait_for(lambda: partition(ops, both), timeout=60, what="one active replica")
    leader = next(n for n, s in seen.items() if s)
    standby = next(n for n in ops if n != leader)
    assert seen[leader] == both and seen[standby] == set()
    assert healthz(ops[standby])["leader"] == leader == healthz(ops[leader])["leader"]
    wait_for(lambda: set(probed_by(kubectl).values()) == {leader}, timeout=30, what="probedBy")

    _http(f"{fleet_server}/control/flip", {"targets": [30, 31], "status": "unhealthy"})
    wait_for(lambda: restarted_at(kubectl, "early"), timeout=30, what="early restarted")
    finish_rollout(kubectl, "early")  # only the ledger may now hold a second restart
    assert restarted_at(kubectl, "late") is None, "late restarted before the switch"

    ops[leader].proc.send_signal(signal.SIGKILL)
    ops[leader].proc.wait(timeout=10)
    killed = time.monotonic()
    wait_for(
        lambda: probed(ops[standby]) == both,
        timeout=FAILOVER_BOUND_S + SLACK_S,
        what="the standby takes over",
    )
    took = time.monotonic() - killed
    print(f"\nleader failover after kill -9: {took:.1f}s")
    wait_for(lambda: restarted_at(kubectl, "late"), timeout=30, what="late restarted")
    finish_rollout(kubectl, "late")
    # Both stay Unhealthy under the new leader; give it time to (wrongly) act again.
    time.sleep(6)
    for name in both:
        deploy = kubectl.json("deployment", name)
        assert deploy["metadata"]["generation"] == generation[name] + 1, name  # one restart
        ledger = kubectl.json("mcphealth", name)["status"]["remediation"]["actionTimes"]
        assert [(r["action"], r["result"]) for r in ledger] == [("restart", "success")], ledger
        triggered = [e for e in kubectl.events(name) if e["reason"] == "RestartTriggered"]
        assert sum(int(e.get("count") or 1) for e in triggered) == 1, triggered
    assert kubectl.json("mcphealth", "late")["status"]["probedBy"] == standby
    # The new leader saw early's restart due again and held it by the ledger.
    held = [
        e
        for e in kubectl.events("early")
        if e["reason"] == "RestartSuppressed"
        and e["message"].startswith("Cooldown")
        and e.get("reportingInstance") == standby
    ]
    assert held, kubectl.events("early")


# -- the ledger as a compare-and-swap, directly on the API server ---------------


async def _remediators(
    kubectl: Kubectl, name: str, count: int
) -> tuple[AsyncClient, Kube, list[Remediator], specs.RemediationSpec, ObjectRef]:
    client = AsyncClient(config=KubeConfig.from_file(str(kubectl.plane.kubeconfig)))
    kube = Kube(client)
    obj = kubectl.json("mcphealth", name)
    meta = obj["metadata"]
    ref = ObjectRef(meta["namespace"], meta["name"], meta["uid"])
    spec = specs.parse(obj["spec"]).remediation
    assert spec is not None
    # Every replica read the same status: Unhealthy for a minute, nothing done yet.
    status = {"unhealthySince": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 60))}
    out = [
        Remediator(
            kube=kube,
            config=Config(),
            figures=MonitorFigures(ref.namespace, ref.name, ""),
            fleet_state=lambda: FleetState(1, 1, 0),
            status=status,
        )
        for _ in range(count)
    ]
    return client, kube, out, spec, ref


async def _step(
    remediator: Remediator, kube: Kube, spec: Any, ref: ObjectRef, posted: list[str]
) -> None:
    async def write(fields: dict[str, Any]) -> bool:
        return await kube.patch_status(ref, fields)

    async def post(event: Any) -> None:
        posted.append(event.reason)

    await remediator.step(
        spec=spec,
        ref=ref,
        annotations={},
        health=Health.UNHEALTHY,
        pool_size=None,
        prober=cast(Prober, None),
        write=write,
        post=post,
    )


def test_two_replicas_deciding_on_the_same_ledger_restart_once(kubectl: Kubectl) -> None:
    kubectl.apply(deployment("codebase-mcp"))
    finish_rollout(kubectl, "codebase-mcp")
    extra = (
        "  remediation:\n    cooldown: 10m\n    workload: {name: codebase-mcp}\n"
        "    restart: {after: 2s}\n"
    )
    kubectl.apply(monitor("m", url="http://127.0.0.1:9/mcp", extra=extra))
    generation = kubectl.json("deployment", "codebase-mcp")["metadata"]["generation"]

    async def race() -> tuple[list[str], list[Remediator]]:
        _, kube, replicas, spec, ref = await _remediators(kubectl, "m", 3)
        posted: list[str] = []
        try:
            await asyncio.gather(*(_step(r, kube, spec, ref, posted) for r in replicas))
            # The rollout is done: from now on only the ledger can hold a restart.
            await asyncio.to_thread(finish_rollout, kubectl, "codebase-mcp")
            # The losers decide again on their next probe: they adopt the ledger.
            for r in replicas:
                await _step(r, kube, spec, ref, posted)
        finally:
            await kube.close()
        return posted, replicas

    posted, replicas = asyncio.run(race())
    assert posted.count("RestartTriggered") == 1, posted
    assert kubectl.json("deployment", "codebase-mcp")["metadata"]["generation"] == generation + 1
    ledger = kubectl.json("mcphealth", "m")["status"]["remediation"]["actionTimes"]
    assert [(r["action"], r["result"]) for r in ledger] == [("restart", "success")]
    # Every replica now knows of the one restart (adopted), so the cooldown holds for all.
    assert all(len(r.ledger.records) == 1 for r in replicas)


def test_a_status_write_on_a_stale_version_is_refused(kubectl: Kubectl) -> None:
    kubectl.apply(monitor("m", url="http://127.0.0.1:9/mcp"))

    async def go() -> None:
        client = AsyncClient(config=KubeConfig.from_file(str(kubectl.plane.kubeconfig)))
        kube = Kube(client)
        obj = kubectl.json("mcphealth", "m")
        meta = obj["metadata"]
        ref = ObjectRef(meta["namespace"], meta["name"], meta["uid"])
        try:
            assert await kube.patch_status(
                ref, {"message": "a"}, resource_version=meta["resourceVersion"]
            )
            with pytest.raises(Conflict):
                await kube.patch_status(
                    ref, {"message": "b"}, resource_version=meta["resourceVersion"]
                )
        finally:
            await kube.close()

    asyncio.run(go())
    assert kubectl.json("mcphealth", "m")["status"]["message"] == "a"


# -- membership I/O when the API server goes away ------------------------------


def shard_member(client: AsyncClient, kubectl: Kubectl, identity: str, **kw: Any) -> Members:
    """One member of group "g" in the test's namespace, driven tick by tick by the test."""
    return Members(
        client, namespace=kubectl.namespace, group="g", identity=identity, mode=Mode.SHARD, **kw
    )


def test_failed_listings_keep_the_view_and_a_silent_member_expires_after_a_full_duration(
    kubectl: Kubectl, tmp_path: Path
) -> None:
    async def go() -> None:
        client = AsyncClient(config=KubeConfig.from_file(str(kubectl.plane.kubeconfig)))
        # Nothing listens here: every request fails as with an API server away.
        text = kubectl.plane.kubeconfig.read_text()
        cut_off = tmp_path / "cut-off.kubeconfig"
        cut_off.write_text(text.replace(kubectl.plane.server, "https://127.0.0.1:9"))
        away = AsyncClient(config=KubeConfig.from_file(str(cut_off)))

        def member(identity: str) -> Members:
            # Settling has a test of its own, below.
            return shard_member(client, kubectl, identity, duration_s=2, renew_s=0.5, settle_s=0)

        def view(m: Members) -> list[str]:
            return list(m.view.members) if m.view else []

        a, b = member("a"), member("b")
        try:
            await a.tick()
            await b.tick()
            await a.tick()
            assert view(a) == ["a", "b"]
            assert await asyncio.to_thread(holders, kubectl) == {"a", "b"}

            # a is cut off for longer than a lease duration; b is killed meanwhile.
            a.client = away
            for _ in range(6):
                await a.tick()
                await asyncio.sleep(0.5)
            assert view(a) == ["a", "b"]  # nobody dropped on failed listings

            # Back: b gets a full duration from now, not from before the outage...
            a.client = client
            await a.tick()
            assert view(a) == ["a", "b"]
            # ...and, silent, is gone after it; a deletes its Lease.
            await asyncio.sleep(2.1)
            await a.tick()
            assert view(a) == ["a"]
            assert await asyncio.to_thread(holders, kubectl) == {"a"}

            # Leaving deletes our own Lease.
            await a.leave()
            assert await asyncio.to_thread(holders, kubectl) == set()
        finally:
            await away.close()
            await client.close()

    asyncio.run(go())


def test_a_newcomer_claims_nothing_until_the_members_have_listed_its_lease(
    kubectl: Kubectl,
) -> None:
    """Settling, on a clock of the test's: renew 2 s, so 3 s without a claim after joining."""

    async def go() -> None:
        client = AsyncClient(config=KubeConfig.from_file(str(kubectl.plane.kubeconfig)))
        now = [0.0]
        views: dict[str, list[list[str]]] = {"a": [], "b": []}

        def member(identity: str) -> Members:
            return shard_member(
                client,
                kubectl,
                identity,
                duration_s=6,
                renew_s=2,
                on_change=lambda v: views[identity].append(list(v.members)),
                clock=lambda: now[0],
            )

        a, b = member("a"), member("b")
        try:
            await a.tick()  # creates its Lease at 0
            assert a.view is None and views["a"] == []
            assert a.pause() == 2  # a renew period first...
            now[0] = 2.0
            await a.tick()
            assert a.view is None
            assert a.pause() == 1  # ...then only until it has settled
            now[0] = 3.0
            await a.tick()
            assert views["a"] == [["a"]]

            # b joins at 4: it sees a at once but claims nothing until 7; a lists
            # b's Lease at its tick of 5 and hands b its share before b claims it.
            now[0] = 4.0
            await b.tick()
            assert b.view is None and views["b"] == []
            now[0] = 5.0
            await a.tick()
            assert views["a"] == [["a"], ["a", "b"]]
            now[0] = 6.0
            await b.tick()
            assert views["b"] == []
            now[0] = 7.0
            await b.tick()
            assert views["b"] == [["a", "b"]]

            # b's Lease deleted (as the others do to a member they judged gone):
            # b joins again and lets go of everything until it has settled anew.
            await asyncio.to_thread(kubectl, "delete", "lease", "g-b")
            now[0] = 9.0
            await b.tick()
            assert views["b"] == [["a", "b"], []]
            now[0] = 10.0
            await a.tick()  # a renews meanwhile, as it would every 2 s
            now[0] = 12.0
            await b.tick()
            assert views["b"] == [["a", "b"], [], ["a", "b"]]
        finally:
            await client.close()

    asyncio.run(go())


def test_replicas_joining_a_running_one_claim_only_what_it_has_handed_over(
    kubectl: Kubectl, operator: OperatorFactory, fleet_server: str
) -> None:
    """Whenever a newcomer probes a share, the running replica already counts it in.

    Renew 3 s: without settling, a newcomer would claim its share at once and
    the running replica hand it over only at its next listing, up to 3 s later.
    """
    names = {f"m{i:02d}" for i in range(20)}
    manifests = [
        monitor(f"m{i:02d}", url=f"{fleet_server}/t/{i}/mcp", interval="1s") for i in range(20)
    ]
    kubectl.apply("---\n".join(manifests))
    lease = ["--lease-duration", "9", "--lease-renew", "3"]

    def start(name: str) -> Operator:
        return operator("--membership", "--identity", name, *lease, f"--allow-url={fleet_server}")

    ops = {"op-a": start("op-a")}
    wait_for(lambda: partition(ops, names), timeout=60, what="op-a probing all")
    ops.update({name: start(name) for name in ("op-b", "op-c")})

    def members(op: Operator) -> list[str] | None:
        try:
            return list(healthz(op).get("members") or [])
        except OSError:  # not listening yet
            return None

    # Poll the views until every replica sees all three; a newcomer that
    # counts itself in (owns a share) before op-a counts it in is a double owner.
    early: list[tuple[str, list[str] | None, list[str] | None]] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        seen_a = members(ops["op-a"])
        for name in ("op-b", "op-c"):
            theirs = members(ops[name])
            if theirs and name in theirs and seen_a is not None and name not in seen_a:
                early.append((name, theirs, seen_a))
        seen = [members(op) for op in ops.values()]
        if all(v == ["op-a", "op-b", "op-c"] for v in seen):
            break
        time.sleep(0.05)
    else:
        raise AssertionError(f"the replicas never agreed: {seen}")
    assert early == [], early
    final = wait_for(
        lambda: (p := partition(ops, names)) and all(p.values()) and p,
        timeout=30,
        what="a partition over 3",
    )
    assert set(final) == {"op-a", "op-b", "op-c"}
