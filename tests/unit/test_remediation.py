"""The remediation policy: what is due, what holds it back (in order), the ledger and its clock.

Every time here is an epoch float from a fake clock: ``T0`` plus offsets in seconds.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, NoReturn, cast

import pytest

from mcp_health_operator.controller.metrics import MonitorFigures
from mcp_health_operator.controller.remediator import Remediator, _epoch, _iso, ledger_from_status
from mcp_health_operator.core.config import Config
from mcp_health_operator.core.judge import Health, Thresholds, Verdict
from mcp_health_operator.core.remediation import (
    HOUR,
    Action,
    Breaker,
    Decision,
    FleetState,
    Hold,
    Intent,
    Ledger,
    PodDeletionPolicy,
    PodSignal,
    Policy,
    Record,
    RestartPolicy,
    ScalingPolicy,
    Signals,
    Workload,
    decide,
    due,
    next_allowed,
    record,
    workload_state,
)
from mcp_health_operator.kube.api import Kube

H, D, U = Health.HEALTHY, Health.DEGRADED, Health.UNHEALTHY
RESTART, SCALE_UP, SCALE_DOWN = Action.RESTART, Action.SCALE_UP, Action.SCALE_DOWN
DELETE_POD = Action.DELETE_POD

# The fake clock's origin: 2023-11-14T22:13:20Z, a whole second.
T0 = 1_700_000_000.0

RESTART_ONLY = Policy(restart=RestartPolicy(enabled=True))
SCALING_ONLY = Policy(scaling=ScalingPolicy(enabled=True))
BOTH = Policy(restart=RestartPolicy(enabled=True), scaling=ScalingPolicy(enabled=True))
SCALE_DOWN_ON = Policy(scaling=ScalingPolicy(enabled=True, scale_down=True))


def ledger(*offsets: float, result: str = "success", original: int | None = None) -> Ledger:
    """Restarts at T0 + each offset, oldest first."""
    return Ledger(tuple(Record(RESTART, T0 + o, result) for o in offsets), original)


# -- due: what the monitor's own signals call for -------------------------------------------

# id -> (policy, signals, original pool size, now - T0, expected (action, size, at_maximum))
DUE: dict[
    str, tuple[Policy, Signals, int | None, float, tuple[Action, int | None, bool] | None]
] = {
    "healthy: nothing due": (BOTH, Signals(H, pool_size=10), 10, 3600.0, None),
    "healthy with every signal old: nothing due (no restart while not Unhealthy)": (
        RESTART_ONLY,
        Signals(H, unhealthy_since=T0),
        None,
        3600.0,
        None,
    ),
    "degraded with a stale unhealthy_since: no restart": (
        RESTART_ONLY,
        Signals(D, unhealthy_since=T0),
        None,
        120.0,
        None,
    ),
    "unhealthy 29 s: restart not yet due": (
        RESTART_ONLY,
        Signals(U, unhealthy_since=T0),
        None,
        29.0,
        None,
    ),
    "unhealthy 29.9 s: restart not yet due": (
        RESTART_ONLY,
        Signals(U, unhealthy_since=T0),
        None,
        29.9,
        None,
    ),
    "unhealthy exactly 30 s: restart due": (
        RESTART_ONLY,
        Signals(U, unhealthy_since=T0),
        None,
        30.0,
        (RESTART, None, False),
    ),
    "unhealthy an hour: restart due": (
        RESTART_ONLY,
        Signals(U, unhealthy_since=T0),
        None,
        3600.0,
        (RESTART, None, False),
    ),
    "unhealthy without a start time: nothing due": (
        RESTART_ONLY,
        Signals(U),
        None,
        3600.0,
        None,
    ),
    "restart after 2m: 119 s not due": (
        Policy(restart=RestartPolicy(enabled=True, after_s=120.0)),
        Signals(U, unhealthy_since=T0),
        None,
        119.0,
        None,
    ),
    "restart after 2m: 120 s due": (
        Policy(restart=RestartPolicy(enabled=True, after_s=120.0)),
        Signals(U, unhealthy_since=T0),
        None,
        120.0,
        (RESTART, None, False),
    ),
    "restart disabled: unhealthy an hour, nothing due": (
        SCALING_ONLY,
        Signals(U, unhealthy_since=T0),
        None,
        3600.0,
        None,
    ),
    "exhausted 29 s: scaling not yet due": (
        SCALING_ONLY,
        Signals(U, pool_size=10, exhausted_since=T0),
        10,
        29.0,
        None,
    ),
    "exhausted 30 s: pool 10 -> 15": (
        SCALING_ONLY,
        Signals(U, pool_size=10, exhausted_since=T0),
        10,
        30.0,
        (SCALE_UP, 15, False),
    ),
    "exhausted while merely Degraded: scaling still due": (
        SCALING_ONLY,
        Signals(D, pool_size=10, exhausted_since=T0),
        10,
        30.0,
        (SCALE_UP, 15, False),
    ),
    "exhausted 30 s, step 3, after 1m: 59 s not due": (
        Policy(scaling=ScalingPolicy(enabled=True, after_s=60.0, step=3)),
        Signals(U, pool_size=10, exhausted_since=T0),
        10,
        59.0,
        None,
    ),
    "exhausted 1m, step 3: pool 10 -> 13": (
        Policy(scaling=ScalingPolicy(enabled=True, after_s=60.0, step=3)),
        Signals(U, pool_size=10, exhausted_since=T0),
        10,
        60.0,
        (SCALE_UP, 13, False),
    ),
    "exhausted near the maximum: 48 -> 50, not 53": (
        SCALING_ONLY,
        Signals(U, pool_size=48, exhausted_since=T0),
        10,
        30.0,
        (SCALE_UP, 50, False),
    ),
    "exhausted one below the maximum: 49 -> 50": (
        SCALING_ONLY,
        Signals(U, pool_size=49, exhausted_since=T0),
        10,
        30.0,
        (SCALE_UP, 50, False),
    ),
    "exhausted at the maximum: at_maximum intent, size unchanged": (
        SCALING_ONLY,
        Signals(U, pool_size=50, exhausted_since=T0),
        10,
        30.0,
        (SCALE_UP, 50, True),
    ),
    "exhausted above the maximum (set by hand): at_maximum, never shrunk": (
        SCALING_ONLY,
        Signals(U, pool_size=60, exhausted_since=T0),
        10,
        30.0,
        (SCALE_UP, 60, True),
    ),
    "at the maximum, restart enabled but not yet due: at_maximum": (
        BOTH,
        Signals(U, unhealthy_since=T0 + 10.0, pool_size=50, exhausted_since=T0),
        10,
        30.0,
        (SCALE_UP, 50, True),
    ),
    "at the maximum and restart due: restart": (
        BOTH,
        Signals(U, unhealthy_since=T0, pool_size=50, exhausted_since=T0),
        10,
        30.0,
        (RESTART, None, False),
    ),
    "exhausted and unhealthy, both due: pool scaling preferred": (
        BOTH,
        Signals(U, unhealthy_since=T0, pool_size=10, exhausted_since=T0),
        10,
        300.0,
        (SCALE_UP, 15, False),
    ),
    "restart due, exhaustion too recent: restart": (
        BOTH,
        Signals(U, unhealthy_since=T0, pool_size=10, exhausted_since=T0 + 290.0),
        10,
        300.0,
        (RESTART, None, False),
    ),
    "scaling disabled, exhausted and healthy: nothing due": (
        RESTART_ONLY,
        Signals(H, pool_size=10, exhausted_since=T0),
        10,
        3600.0,
        None,
    ),
    "no pool size reported: no scaling": (
        SCALING_ONLY,
        Signals(U, exhausted_since=T0),
        None,
        3600.0,
        None,
    ),
    "calm 29m59s: scale-down not yet due": (
        SCALE_DOWN_ON,
        Signals(H, pool_size=20, calm_since=T0),
        10,
        1799.0,
        None,
    ),
    "calm 30m: scale down 20 -> 15": (
        SCALE_DOWN_ON,
        Signals(H, pool_size=20, calm_since=T0),
        10,
        1800.0,
        (SCALE_DOWN, 15, False),
    ),
    "calm 30m, 12 over an original 10: down to 10, never below": (
        SCALE_DOWN_ON,
        Signals(H, pool_size=12, calm_since=T0),
        10,
        1800.0,
        (SCALE_DOWN, 10, False),
    ),
    "calm 30m at the original size: nothing due": (
        SCALE_DOWN_ON,
        Signals(H, pool_size=10, calm_since=T0),
        10,
        1800.0,
        None,
    ),
    "calm 30m below the original size: nothing due (never scaled up past it)": (
        SCALE_DOWN_ON,
        Signals(H, pool_size=8, calm_since=T0),
        10,
        1800.0,
        None,
    ),
    "calm 30m, original size unknown: nothing due": (
        SCALE_DOWN_ON,
        Signals(H, pool_size=20, calm_since=T0),
        None,
        1800.0,
        None,
    ),
    "calm 30m, scaleDown disabled: nothing due": (
        SCALING_ONLY,
        Signals(H, pool_size=20, calm_since=T0),
        10,
        1800.0,
        None,
    ),
    "calm 5m with scaleDown.after 5m, step 2: 20 -> 18": (
        Policy(
            scaling=ScalingPolicy(enabled=True, step=2, scale_down=True, scale_down_after_s=300.0)
        ),
        Signals(H, pool_size=20, calm_since=T0),
        10,
        300.0,
        (SCALE_DOWN, 18, False),
    ),
}


@pytest.mark.parametrize(
    ("policy", "signals", "original", "elapsed", "expected"), DUE.values(), ids=DUE.keys()
)
def test_due(
    policy: Policy,
    signals: Signals,
    original: int | None,
    elapsed: float,
    expected: tuple[Action, int | None, bool] | None,
) -> None:
    intent = due(policy, signals, Ledger(original_pool_size=original), T0 + elapsed)
    got = None if intent is None else (intent.action, intent.pool_size, intent.at_maximum)
    assert got == expected


# id -> (policy, signals, original, now - T0, the intent's message)
DUE_MESSAGES: dict[str, tuple[Policy, Signals, int | None, float, str]] = {
    "restart": (RESTART_ONLY, Signals(U, unhealthy_since=T0), None, 45.0, "Unhealthy for 45s"),
    "scale up": (
        SCALING_ONLY,
        Signals(U, pool_size=10, exhausted_since=T0),
        10,
        31.0,
        "pool exhausted for 31s: size 10 -> 15",
    ),
    "at maximum": (
        SCALING_ONLY,
        Signals(U, pool_size=50, exhausted_since=T0),
        10,
        31.0,
        "pool exhausted, but already at its maximum 50",
    ),
    "scale down": (
        SCALE_DOWN_ON,
        Signals(H, pool_size=20, calm_since=T0),
        10,
        1800.0,
        "pool below the degraded band for 1800s: size 20 -> 15",
    ),
}


@pytest.mark.parametrize(
    ("policy", "signals", "original", "elapsed", "message"),
    DUE_MESSAGES.values(),
    ids=DUE_MESSAGES.keys(),
)
def test_due_messages_carry_the_figures(
    policy: Policy, signals: Signals, original: int | None, elapsed: float, message: str
) -> None:
    intent = due(policy, signals, Ledger(original_pool_size=original), T0 + elapsed)
    assert intent is not None and intent.message == message


def test_an_unhealthy_server_due_a_restart_is_restarted_not_scaled_down() -> None:
    # Memory critical (Unhealthy) for a minute while the pool has been idle for an hour,
    # 20 connections over an original 10: the restart is what is due.
    policy = Policy(
        restart=RestartPolicy(enabled=True),
        scaling=ScalingPolicy(enabled=True, scale_down=True),
    )
    signals = Signals(U, unhealthy_since=T0 - 60.0, pool_size=20, calm_since=T0 - HOUR)
    intent = due(policy, signals, Ledger(original_pool_size=10), T0)
    assert intent is not None and intent.action is RESTART


# -- the mass-failure breaker -----------------------------------------------------------------

# id -> (fleet, breaker, tripped)
BREAKER: dict[str, tuple[FleetState, Breaker, bool]] = {
    "calm fleet": (FleetState(10, 0, 0), Breaker(), False),
    "5 of 10 unhealthy: exactly half is not more than half": (
        FleetState(10, 5, 0),
        Breaker(),
        False,
    ),
    "6 of 10 unhealthy": (FleetState(10, 6, 0), Breaker(), True),
    "5 of 10 turned unhealthy recently": (FleetState(10, 5, 5), Breaker(), False),
    "6 of 10 turned unhealthy recently (count of unhealthy lagging)": (
        FleetState(10, 0, 6),
        Breaker(),
        True,
    ),
    "2 of 3 unhealthy: at min_monitors, trips": (FleetState(3, 2, 0), Breaker(), True),
    "1 of 3 unhealthy": (FleetState(3, 1, 1), Breaker(), False),
    "2 of 2 unhealthy: below min_monitors never trips": (FleetState(2, 2, 2), Breaker(), False),
    "1 of 1 unhealthy: below min_monitors never trips": (FleetState(1, 1, 1), Breaker(), False),
    "no monitors at all, min_monitors 0": (FleetState(0, 0, 0), Breaker(0.5, 0), False),
    "share 0.25: 3 of 8 unhealthy": (FleetState(8, 3, 0), Breaker(0.25, 3), True),
    "share 0.25: 2 of 8 unhealthy": (FleetState(8, 2, 0), Breaker(0.25, 3), False),
    "min_monitors 10: 9 of 9 unhealthy never trips": (
        FleetState(9, 9, 9),
        Breaker(0.5, 10),
        False,
    ),
}


@pytest.mark.parametrize(("fleet", "breaker", "tripped"), BREAKER.values(), ids=BREAKER.keys())
def test_mass_failure_breaker(fleet: FleetState, breaker: Breaker, tripped: bool) -> None:
    assert breaker.tripped(fleet) is tripped


# -- decide: the holds, in their documented order ---------------------------------------------

RESTART_INTENT = Intent(RESTART, "Unhealthy for 45s")
SCALE_UP_INTENT = Intent(SCALE_UP, "pool exhausted for 31s: size 10 -> 15", 15)
AT_MAXIMUM = Intent(SCALE_UP, "pool exhausted, but already at its maximum 50", 50, at_maximum=True)
CALM_FLEET = FleetState(10, 1, 1)
SICK_FLEET = FleetState(10, 6, 6)
FOUND = Workload(found=True)
BUSY = ledger(-3000.0, -2400.0, -1200.0)  # three actions this hour, the last 20 minutes ago


@dataclass(frozen=True)
class Situation:
    """Everything ``decide`` reads; the defaults let a restart happen."""

    intent: Intent = RESTART_INTENT
    policy: Policy = RESTART_ONLY
    ledger: Ledger = field(default_factory=Ledger)
    now: float = T0
    fleet: FleetState = CALM_FLEET
    breaker: Breaker = field(default_factory=Breaker)
    paused: bool = False
    workload: Workload | None = FOUND

    def decide(self) -> Decision:
        return decide(
            self.intent,
            self.policy,
            self.ledger,
            self.now,
            fleet=self.fleet,
            breaker=self.breaker,
            paused=self.paused,
            workload=self.workload,
        )


CLEAR = Situation()
# Everything wrong at once: each hold below is peeled off in turn to show the order.
ALL_WRONG = Situation(
    intent=AT_MAXIMUM,
    ledger=ledger(-3000.0, -2000.0, -10.0),
    fleet=SICK_FLEET,
    paused=True,
    workload=Workload(found=True, paused=True, rollout_in_progress=True),
    policy=replace(RESTART_ONLY, dry_run=True),
)

# id -> (situation, expected hold, act, dry_run, a part of the message)
DECISIONS: dict[str, tuple[Situation, Hold | None, bool, bool, str]] = {
    "clear: act": (CLEAR, None, True, False, "Unhealthy for 45s"),
    # 1. paused (operator flag or monitor annotation; the caller folds both into paused)
    "paused": (replace(CLEAR, paused=True), Hold.PAUSED, False, False, "remediation is paused"),
    "paused beats every other hold and dry run": (ALL_WRONG, Hold.PAUSED, False, False, ""),
    # 2. mass failure
    "mass failure: 6 of 10 unhealthy": (
        replace(CLEAR, fleet=FleetState(10, 6, 0)),
        Hold.MASS_FAILURE,
        False,
        False,
        "6 of 10 monitors are Unhealthy; holding all remediation",
    ),
    "mass failure: 7 of 10 turned unhealthy recently": (
        replace(CLEAR, fleet=FleetState(10, 2, 7)),
        Hold.MASS_FAILURE,
        False,
        False,
        "7 of 10 monitors are Unhealthy",
    ),
    "mass failure: holds scaling too": (
        replace(CLEAR, intent=SCALE_UP_INTENT, workload=None, fleet=SICK_FLEET),
        Hold.MASS_FAILURE,
        False,
        False,
        "",
    ),
    "mass failure beats pool at maximum, cooldown, budget, workload": (
        replace(ALL_WRONG, paused=False),
        Hold.MASS_FAILURE,
        False,
        False,
        "",
    ),
    "5 of 10 unhealthy: the breaker does not trip, act": (
        replace(CLEAR, fleet=FleetState(10, 5, 5)),
        None,
        True,
        False,
        "",
    ),
    "2 of 2 unhealthy, below min_monitors: act": (
        replace(CLEAR, fleet=FleetState(2, 2, 2)),
        None,
        True,
        False,
        "",
    ),
    # 3. pool at its maximum
    "pool at maximum": (
        replace(CLEAR, intent=AT_MAXIMUM, workload=None),
        Hold.POOL_AT_MAXIMUM,
        False,
        False,
        "already at its maximum 50",
    ),
    "pool at maximum beats cooldown, budget, workload": (
        replace(ALL_WRONG, paused=False, fleet=CALM_FLEET),
        Hold.POOL_AT_MAXIMUM,
        False,
        False,
        "",
    ),
    # 4. cooldown (default 10m) since the last action, whatever its result
    "cooldown: last action 599 s ago": (
        replace(CLEAR, ledger=ledger(-599.0)),
        Hold.COOLDOWN,
        False,
        False,
        "last action 599s ago; 1s to go",
    ),
    "cooldown: last action 300 s ago": (
        replace(CLEAR, ledger=ledger(-300.0)),
        Hold.COOLDOWN,
        False,
        False,
        "last action 300s ago; 300s to go",
    ),
    "cooldown over: last action exactly 600 s ago": (
        replace(CLEAR, ledger=ledger(-600.0)),
        None,
        True,
        False,
        "",
    ),
    "cooldown counts a failed action": (
        replace(CLEAR, ledger=ledger(-10.0, result="failed")),
        Hold.COOLDOWN,
        False,
        False,
        "",
    ),
    "cooldown counts a pending action (operator died mid-action)": (
        replace(CLEAR, ledger=ledger(-10.0, result="pending")),
        Hold.COOLDOWN,
        False,
        False,
        "",
    ),
    "cooldown 1m: 59 s ago holds": (
        replace(CLEAR, policy=replace(RESTART_ONLY, cooldown_s=60.0), ledger=ledger(-59.0)),
        Hold.COOLDOWN,
        False,
        False,
        "",
    ),
    "cooldown 1m: 60 s ago acts": (
        replace(CLEAR, policy=replace(RESTART_ONLY, cooldown_s=60.0), ledger=ledger(-60.0)),
        None,
        True,
        False,
        "",
    ),
    "cooldown applies to scaling as well": (
        replace(CLEAR, intent=SCALE_UP_INTENT, workload=None, ledger=ledger(-60.0)),
        Hold.COOLDOWN,
        False,
        False,
        "",
    ),
    "cooldown beats budget and workload": (
        replace(ALL_WRONG, paused=False, fleet=CALM_FLEET, intent=RESTART_INTENT),
        Hold.COOLDOWN,
        False,
        False,
        "",
    ),
    # 5. budget: maxPerHour (default 3) over a sliding hour
    "budget: 3 this hour, the last 20 min ago": (
        replace(CLEAR, ledger=BUSY),
        Hold.BUDGET,
        False,
        False,
        "3 actions in the last hour (max 3)",
    ),
    "budget: the oldest exactly an hour ago has left the window": (
        replace(CLEAR, ledger=ledger(-3600.0, -2400.0, -1200.0)),
        None,
        True,
        False,
        "",
    ),
    "budget: the oldest 3599 s ago is still in the window": (
        replace(CLEAR, ledger=ledger(-3599.0, -2400.0, -1200.0)),
        Hold.BUDGET,
        False,
        False,
        "",
    ),
    "budget: maxPerHour 5 with 3 used": (
        replace(CLEAR, policy=replace(RESTART_ONLY, max_per_hour=5), ledger=BUSY),
        None,
        True,
        False,
        "",
    ),
    "budget: maxPerHour 1 with 1 used 20 min ago": (
        replace(CLEAR, policy=replace(RESTART_ONLY, max_per_hour=1), ledger=ledger(-1200.0)),
        Hold.BUDGET,
        False,
        False,
        "1 actions in the last hour (max 1)",
    ),
    "budget counts failed and dry-run actions": (
        replace(
            CLEAR,
            ledger=Ledger(
                (
                    Record(RESTART, T0 - 3000.0, "failed"),
                    Record(SCALE_UP, T0 - 2000.0, "dry-run"),
                    Record(RESTART, T0 - 1000.0, "success"),
                )
            ),
        ),
        Hold.BUDGET,
        False,
        False,
        "",
    ),
    "budget beats a missing workload and dry run": (
        replace(
            CLEAR,
            ledger=BUSY,
            workload=Workload(found=False),
            policy=replace(RESTART_ONLY, dry_run=True),
        ),
        Hold.BUDGET,
        False,
        False,
        "",
    ),
    # 6. workload not found
    "restart: workload not found": (
        replace(CLEAR, workload=Workload(found=False)),
        Hold.WORKLOAD_NOT_FOUND,
        False,
        False,
        "the workload was not found in this namespace",
    ),
    "restart: no workload read at all": (
        replace(CLEAR, workload=None),
        Hold.WORKLOAD_NOT_FOUND,
        False,
        False,
        "",
    ),
    "env scaling: workload not found": (
        replace(CLEAR, intent=SCALE_UP_INTENT, workload=Workload(found=False)),
        Hold.WORKLOAD_NOT_FOUND,
        False,
        False,
        "",
    ),
    "MCP-tool scaling needs no workload: act": (
        replace(CLEAR, intent=SCALE_UP_INTENT, workload=None),
        None,
        True,
        False,
        "size 10 -> 15",
    ),
    # 7. workload paused
    "workload paused": (
        replace(CLEAR, workload=Workload(found=True, paused=True)),
        Hold.WORKLOAD_PAUSED,
        False,
        False,
        "the workload's rollout is paused",
    ),
    "workload paused beats rollout in progress and dry run": (
        replace(ALL_WRONG, paused=False, fleet=CALM_FLEET, intent=RESTART_INTENT, ledger=Ledger()),
        Hold.WORKLOAD_PAUSED,
        False,
        False,
        "",
    ),
    # 8. rollout in progress
    "rollout in progress": (
        replace(CLEAR, workload=Workload(found=True, rollout_in_progress=True)),
        Hold.ROLLOUT_IN_PROGRESS,
        False,
        False,
        "a rollout of the workload is in progress",
    ),
    "env scaling mid-rollout": (
        replace(
            CLEAR,
            intent=SCALE_UP_INTENT,
            workload=Workload(found=True, rollout_in_progress=True),
        ),
        Hold.ROLLOUT_IN_PROGRESS,
        False,
        False,
        "",
    ),
    "rollout in progress beats dry run": (
        replace(
            CLEAR,
            workload=Workload(found=True, rollout_in_progress=True),
            policy=replace(RESTART_ONLY, dry_run=True),
        ),
        Hold.ROLLOUT_IN_PROGRESS,
        False,
        False,
        "",
    ),
    # then dry run: decided and recorded, not done
    "dry run": (
        replace(CLEAR, policy=replace(RESTART_ONLY, dry_run=True)),
        None,
        False,
        True,
        "dry run: Unhealthy for 45s",
    ),
    "dry run of a pool scale-up": (
        replace(CLEAR, intent=SCALE_UP_INTENT, workload=None, policy=replace(BOTH, dry_run=True)),
        None,
        False,
        True,
        "dry run: pool exhausted for 31s: size 10 -> 15",
    ),
}


@pytest.mark.parametrize(
    ("situation", "hold", "act", "dry_run", "message"), DECISIONS.values(), ids=DECISIONS.keys()
)
def test_decide(
    situation: Situation, hold: Hold | None, act: bool, dry_run: bool, message: str
) -> None:
    decision = situation.decide()
    assert (decision.hold, decision.act, decision.dry_run) == (hold, act, dry_run)
    assert decision.intent == situation.intent
    assert message in decision.message


def test_holds_peel_off_in_the_documented_order() -> None:
    """Remove the holds one by one from a situation where everything is wrong."""
    peel: list[tuple[Hold | None, Callable[[Situation], Situation]]] = [
        (Hold.PAUSED, lambda s: replace(s, paused=False)),
        (Hold.MASS_FAILURE, lambda s: replace(s, fleet=CALM_FLEET)),
        (Hold.POOL_AT_MAXIMUM, lambda s: replace(s, intent=RESTART_INTENT)),
        (Hold.COOLDOWN, lambda s: replace(s, ledger=ledger(-3000.0, -2000.0, -1000.0))),
        (Hold.BUDGET, lambda s: replace(s, ledger=Ledger())),
        (Hold.WORKLOAD_NOT_FOUND, lambda s: replace(s, workload=Workload(True, True, True))),
        (Hold.WORKLOAD_PAUSED, lambda s: replace(s, workload=Workload(True, False, True))),
        (Hold.ROLLOUT_IN_PROGRESS, lambda s: replace(s, workload=FOUND)),
    ]
    situation = replace(ALL_WRONG, workload=Workload(found=False))
    seen: list[Hold | None] = []
    for _, fix in peel:
        seen.append(situation.decide().hold)
        situation = fix(situation)
    assert seen == [h for h, _ in peel]
    last = situation.decide()
    assert (last.hold, last.act, last.dry_run) == (None, False, True)
    assert replace(situation, policy=RESTART_ONLY).decide().act


# -- record and next_allowed ------------------------------------------------------------------

# id -> (ledger, action, now - T0, expected (action, offset, result) records, original size)
RECORDS: dict[str, tuple[Ledger, Action, float, list[tuple[Action, float, str]], int | None]] = {
    "first action": (Ledger(), RESTART, 0.0, [(RESTART, 0.0, "success")], None),
    "appended after the last hour's": (
        ledger(-3000.0, -100.0, original=10),
        SCALE_UP,
        0.0,
        [(RESTART, -3000.0, "success"), (RESTART, -100.0, "success"), (SCALE_UP, 0.0, "success")],
        10,
    ),
    "actions an hour old and more are dropped": (
        ledger(-7200.0, -3600.0, -3599.0, original=20),
        SCALE_DOWN,
        0.0,
        [(RESTART, -3599.0, "success"), (SCALE_DOWN, 0.0, "success")],
        20,
    ),
}


@pytest.mark.parametrize(
    ("before", "action", "elapsed", "expected", "original"), RECORDS.values(), ids=RECORDS.keys()
)
def test_record_keeps_the_last_hour_and_the_original_size(
    before: Ledger,
    action: Action,
    elapsed: float,
    expected: list[tuple[Action, float, str]],
    original: int | None,
) -> None:
    after = record(before, action, T0 + elapsed, "success")
    assert [(r.action, r.time - T0, r.result) for r in after.records] == expected
    assert after.original_pool_size == original
    assert after.last == Record(action, T0 + elapsed, "success")


def test_record_keeps_the_result() -> None:
    assert record(Ledger(), RESTART, T0, "dry-run").records == (Record(RESTART, T0, "dry-run"),)


# id -> (policy, ledger, now - T0, expected next allowed - T0 or None)
NEXT_ALLOWED: dict[str, tuple[Policy, Ledger, float, float | None]] = {
    "nothing done: free": (RESTART_ONLY, Ledger(), 0.0, None),
    "cooldown: last 100 s ago -> its end": (RESTART_ONLY, ledger(-100.0), 0.0, 500.0),
    "cooldown over exactly: free": (RESTART_ONLY, ledger(-600.0), 0.0, None),
    "cooldown 1m: last 10 s ago": (
        replace(RESTART_ONLY, cooldown_s=60.0),
        ledger(-10.0),
        0.0,
        50.0,
    ),
    "budget: oldest in window + 1 h": (RESTART_ONLY, BUSY, 0.0, 600.0),
    "budget and cooldown: the budget ends later": (
        RESTART_ONLY,
        ledger(-3000.0, -2000.0, -100.0),
        0.0,
        600.0,
    ),
    "budget and cooldown: the cooldown ends later": (
        replace(RESTART_ONLY, cooldown_s=1200.0),
        ledger(-3500.0, -2000.0, -100.0),
        0.0,
        1100.0,
    ),
    "budget lowered below the actions in window: the one that brings it under": (
        replace(RESTART_ONLY, max_per_hour=2),
        ledger(-3000.0, -2000.0, -1500.0, -1000.0),
        0.0,
        2100.0,
    ),
    "two of three used, cooldown over: free": (RESTART_ONLY, ledger(-2000.0, -1000.0), 0.0, None),
    "only actions older than an hour: free": (RESTART_ONLY, ledger(-7200.0, -3600.0), 0.0, None),
}


@pytest.mark.parametrize(
    ("policy", "before", "elapsed", "expected"), NEXT_ALLOWED.values(), ids=NEXT_ALLOWED.keys()
)
def test_next_allowed(
    policy: Policy, before: Ledger, elapsed: float, expected: float | None
) -> None:
    got = next_allowed(policy, before, T0 + elapsed)
    assert (None if got is None else got - T0) == expected
    # decide agrees: held by cooldown or budget exactly until then, acting from then on.
    held = replace(CLEAR, policy=policy, ledger=before, now=T0 + elapsed).decide()
    if expected is None:
        assert held.act
    else:
        assert held.hold in (Hold.COOLDOWN, Hold.BUDGET)
        free = replace(CLEAR, policy=policy, ledger=before, now=T0 + expected).decide()
        assert free.act and next_allowed(policy, before, T0 + expected) is None
        just_before = replace(CLEAR, policy=policy, ledger=before, now=T0 + expected - 0.5)
        assert just_before.decide().hold in (Hold.COOLDOWN, Hold.BUDGET)


# -- a flapping server over simulated hours ---------------------------------------------------


@dataclass
class Simulation:
    actions: list[float] = field(default_factory=list)  # offsets from T0
    holds: dict[Hold, int] = field(default_factory=dict)


def flap(
    policy: Policy,
    *,
    hours: float,
    unhealthy_s: float = 40.0,
    healthy_s: float = 20.0,
    probe_s: float = 5.0,
) -> Simulation:
    """Unhealthy for ``unhealthy_s``, Healthy for ``healthy_s``, repeated; every action taken."""
    sim = Simulation()
    book = Ledger()
    unhealthy_since: float | None = None
    steps = int(hours * HOUR / probe_s)
    for i in range(steps):
        offset = i * probe_s
        now = T0 + offset
        health = U if offset % (unhealthy_s + healthy_s) < unhealthy_s else H
        unhealthy_since = (unhealthy_since or now) if health is U else None
        intent = due(policy, Signals(health, unhealthy_since=unhealthy_since), book, now)
        if intent is None:
            continue
        decision = decide(
            intent,
            policy,
            book,
            now,
            fleet=CALM_FLEET,
            breaker=Breaker(),
            paused=False,
            workload=FOUND,
        )
        if decision.hold is not None:
            sim.holds[decision.hold] = sim.holds.get(decision.hold, 0) + 1
            when = next_allowed(policy, book, now)
            assert when is not None and when > now, "a held action has a next allowed time"
            continue
        assert decision.act != decision.dry_run
        assert next_allowed(policy, book, now) is None, "an allowed action has no wait"
        book = record(book, intent.action, now, "dry-run" if decision.dry_run else "success")
        sim.actions.append(offset)
    return sim


def with_(cooldown_s: float = 600.0, max_per_hour: int = 3, **restart: Any) -> Policy:
    return Policy(
        restart=RestartPolicy(enabled=True, **restart),
        cooldown_s=cooldown_s,
        max_per_hour=max_per_hour,
    )


# id -> (policy, simulated hours, flap pattern (unhealthy s, healthy s), the action offsets)
FLAPPING: dict[str, tuple[Policy, float, tuple[float, float], list[float]]] = {
    "defaults (cooldown 10m, 3/h), 2 h: cooldown then budget": (
        with_(),
        2.0,
        (40.0, 20.0),
        [30.0, 630.0, 1230.0, 3630.0, 4230.0, 4830.0],
    ),
    "defaults, 3 h": (
        with_(),
        3.0,
        (40.0, 20.0),
        [30.0, 630.0, 1230.0, 3630.0, 4230.0, 4830.0, 7230.0, 7830.0, 8430.0],
    ),
    "cooldown 1m, 3/h, 2 h: the budget binds": (
        with_(cooldown_s=60.0),
        2.0,
        (40.0, 20.0),
        [30.0, 90.0, 150.0, 3630.0, 3690.0, 3750.0],
    ),
    "no cooldown, 3/h, 2 h: the budget alone": (
        with_(cooldown_s=0.0),
        2.0,
        (40.0, 20.0),
        [30.0, 35.0, 90.0, 3630.0, 3635.0, 3690.0],
    ),
    "cooldown 5m, 5/h, 2 h": (
        with_(cooldown_s=300.0, max_per_hour=5),
        2.0,
        (40.0, 20.0),
        [30.0, 330.0, 630.0, 930.0, 1230.0, 3630.0, 3930.0, 4230.0, 4530.0, 4830.0],
    ),
    "dry run: recorded, so paced the same": (
        replace(with_(), dry_run=True),
        2.0,
        (40.0, 20.0),
        [30.0, 630.0, 1230.0, 3630.0, 4230.0, 4830.0],
    ),
    "spells shorter than restart.after never trigger": (
        with_(after_s=45.0),
        2.0,
        (40.0, 20.0),
        [],
    ),
    "long spells (5m unhealthy, 1m healthy), 1 h": (
        with_(),
        1.0,
        (300.0, 60.0),
        [30.0, 630.0, 1230.0],
    ),
}


@pytest.mark.parametrize(
    ("policy", "hours", "pattern", "expected"), FLAPPING.values(), ids=FLAPPING.keys()
)
def test_a_flapping_server_is_paced_by_cooldown_and_budget(
    policy: Policy, hours: float, pattern: tuple[float, float], expected: list[float]
) -> None:
    sim = flap(policy, hours=hours, unhealthy_s=pattern[0], healthy_s=pattern[1])
    assert sim.actions == expected
    # Never more than maxPerHour in any sliding hour (a window ending at each action)...
    for t in sim.actions:
        in_hour = [a for a in sim.actions if t - HOUR < a <= t]
        assert len(in_hour) <= policy.max_per_hour, f"{len(in_hour)} actions in the hour to {t}"
    # ...and never within cooldown of the previous action.
    for earlier, later in zip(sim.actions, sim.actions[1:], strict=False):
        assert later - earlier >= policy.cooldown_s
    # Each action came after restart.after of Unhealthy.
    period = pattern[0] + pattern[1]
    for t in sim.actions:
        assert t % period >= policy.restart.after_s
    if expected:
        assert sim.holds, "a flapping server keeps asking; the rails must have held it"


def test_flapping_for_an_hour_with_defaults_acts_exactly_three_times() -> None:
    sim = flap(Policy(restart=RestartPolicy(enabled=True)), hours=1.0)
    assert len(sim.actions) == 3
    assert Hold.COOLDOWN in sim.holds and Hold.BUDGET in sim.holds


# -- operator restart mid-cooldown: the ledger survives the status round trip ------------------


class Clock:
    """A fake clock: epoch floats, moved by hand."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class _NoKube:
    """Any use of the Kubernetes client is a test failure: these paths are pure."""

    def __getattr__(self, name: str) -> NoReturn:
        raise AssertionError(f"Kube.{name} used in a pure path")


def remediator(status: dict[str, Any], clock: Clock) -> Remediator:
    return Remediator(
        kube=cast(Kube, _NoKube()),
        config=Config(),
        figures=MonitorFigures("default", "codebase", "codebase-mcp"),
        fleet_state=lambda: CALM_FLEET,
        status=status,
        clock=clock,
    )


def persisted(book: Ledger, policy: Policy, clock: Clock) -> dict[str, Any]:
    """The status an operator writes, as the API server hands it back (JSON)."""
    before = remediator({}, clock)
    before.ledger = book
    before.last_message = "Unhealthy for 31s; restarted Deployment/codebase"
    status = {"remediation": before.ledger_status(policy)}
    loaded: dict[str, Any] = json.loads(json.dumps(status))
    return loaded


# A clock with a fraction: the status keeps whole seconds.
TF = T0 + 0.75

# id -> (policy, actions as (offset from TF, result), restart at offset, hold, next allowed offset)
RESTARTS: dict[str, tuple[Policy, list[tuple[float, str]], float, Hold | None, float | None]] = {
    "mid-cooldown after a success": (RESTART_ONLY, [(0.0, "success")], 300.0, Hold.COOLDOWN, 600.0),
    "mid-cooldown, one second before its end": (
        RESTART_ONLY,
        [(0.0, "success")],
        598.0,
        Hold.COOLDOWN,
        600.0,
    ),
    "mid-cooldown after a pending action (died mid-action): not repeated": (
        RESTART_ONLY,
        [(0.0, "pending")],
        5.0,
        Hold.COOLDOWN,
        600.0,
    ),
    "mid-cooldown after a dry run": (
        replace(RESTART_ONLY, dry_run=True),
        [(0.0, "dry-run")],
        60.0,
        Hold.COOLDOWN,
        600.0,
    ),
    "cooldown 30m, 25m in": (
        replace(RESTART_ONLY, cooldown_s=1800.0),
        [(0.0, "success")],
        1500.0,
        Hold.COOLDOWN,
        1800.0,
    ),
    "budget spent: 3 this hour": (
        RESTART_ONLY,
        [(0.0, "success"), (700.0, "failed"), (1400.0, "success")],
        2100.0,
        Hold.BUDGET,
        3600.0,
    ),
    "cooldown and budget: the later end": (
        replace(RESTART_ONLY, max_per_hour=2),
        [(0.0, "success"), (3300.0, "success")],
        3400.0,
        Hold.COOLDOWN,
        3900.0,
    ),
    "cooldown over before the restart: free": (
        RESTART_ONLY,
        [(0.0, "success")],
        700.0,
        None,
        None,
    ),
}


@pytest.mark.parametrize(
    ("policy", "actions", "restart_at", "hold", "next_at"), RESTARTS.values(), ids=RESTARTS.keys()
)
def test_an_operator_restart_keeps_cooldown_and_budget(
    policy: Policy,
    actions: list[tuple[float, str]],
    restart_at: float,
    hold: Hold | None,
    next_at: float | None,
) -> None:
    book = Ledger(tuple(Record(RESTART, TF + o, r) for o, r in actions), original_pool_size=10)
    clock = Clock(TF + restart_at)
    status = persisted(book, policy, clock)

    # A new operator process reads the status back.
    after = remediator(status, clock)
    restored = after.ledger
    assert [(r.action, r.result) for r in restored.records] == [(RESTART, r) for _, r in actions]
    assert all(
        abs(a.time - b.time) < 1.0 for a, b in zip(restored.records, book.records, strict=True)
    )
    assert restored.original_pool_size == 10

    now = clock()
    before_restart = replace(CLEAR, policy=policy, ledger=book, now=now).decide()
    after_restart = replace(CLEAR, policy=policy, ledger=restored, now=now).decide()
    assert before_restart.hold == after_restart.hold == hold
    expected = None if next_at is None else TF + next_at
    for got in (next_allowed(policy, book, now), next_allowed(policy, restored, now)):
        assert (got is None) == (expected is None)
        if got is not None and expected is not None:
            assert got == pytest.approx(expected, abs=1.0)
    written = _epoch(status["remediation"]["nextAllowedTime"])
    assert (written is None) == (expected is None)
    if written is not None and expected is not None:
        assert written == pytest.approx(expected, abs=1.0)
    # And the restored Remediator writes the same state again.
    assert after.ledger_status(policy) == status["remediation"]


def test_the_persisted_ledger_reads_as_a_person_would() -> None:
    book = Ledger(
        (Record(RESTART, T0 - 4000.0, "success"), Record(SCALE_UP, T0 - 100.0, "pending")),
        original_pool_size=10,
    )
    status = persisted(book, SCALING_ONLY, Clock(T0))["remediation"]
    assert status == {
        "lastAction": "scale-pool",
        "lastActionTime": "2023-11-14T22:11:40Z",
        "lastResult": "pending",
        "lastMessage": "Unhealthy for 31s; restarted Deployment/codebase",
        "actionsInWindow": 1,  # the restart is over an hour old
        "actionTimes": [
            {"action": "scale-pool", "time": "2023-11-14T22:11:40Z", "result": "pending"}
        ],
        "nextAllowedTime": "2023-11-14T22:21:40Z",
        "originalPoolSize": 10,
        "suppressed": None,
    }


def test_a_cooldown_longer_than_an_hour_survives_an_operator_restart() -> None:
    policy = replace(RESTART_ONLY, cooldown_s=2 * HOUR)
    book = ledger(0.0)
    clock = Clock(T0 + 1.5 * HOUR)
    assert replace(CLEAR, policy=policy, ledger=book, now=clock()).decide().hold is Hold.COOLDOWN
    restored = remediator(persisted(book, policy, clock), clock).ledger
    after = replace(CLEAR, policy=policy, ledger=restored, now=clock()).decide()
    assert after.hold is Hold.COOLDOWN
    assert next_allowed(policy, restored, clock()) == pytest.approx(T0 + 2 * HOUR, abs=1.0)


# id -> (status.remediation, expected records as (action, time, result), original size)
FROM_STATUS: dict[str, tuple[dict[str, Any], list[tuple[Action, float, str]], int | None]] = {
    "empty status": ({}, [], None),
    "nulls": ({"actionTimes": None, "originalPoolSize": None}, [], None),
    "records and original size": (
        {
            "actionTimes": [
                {"action": "restart", "time": "2023-11-14T22:13:20Z", "result": "success"},
                {"action": "scale-pool", "time": "2023-11-14T22:23:20Z", "result": "failed"},
            ],
            "originalPoolSize": 10,
        },
        [(RESTART, T0, "success"), (SCALE_UP, T0 + 600.0, "failed")],
        10,
    ),
    "out of order: sorted, so the last is the latest": (
        {
            "actionTimes": [
                {"action": "scale-pool-down", "time": "2023-11-14T22:23:20Z", "result": "x"},
                {"action": "restart", "time": "2023-11-14T22:13:20Z", "result": "y"},
            ]
        },
        [(RESTART, T0, "y"), (SCALE_DOWN, T0 + 600.0, "x")],
        None,
    ),
    "unknown action dropped": (
        {
            "actionTimes": [
                {"action": "reboot-node", "time": "2023-11-14T22:13:20Z", "result": "success"},
                {"action": "restart", "time": "2023-11-14T22:13:20Z", "result": "success"},
            ]
        },
        [(RESTART, T0, "success")],
        None,
    ),
    "unreadable time dropped": (
        {
            "actionTimes": [
                {"action": "restart", "time": "yesterday", "result": "success"},
                {"action": "restart", "result": "success"},
                {"action": "restart", "time": "2023-11-14T22:13:20Z"},
            ]
        },
        [(RESTART, T0, "")],
        None,
    ),
    "original size not an integer: unknown": ({"originalPoolSize": "10"}, [], None),
}


@pytest.mark.parametrize(
    ("raw", "expected", "original"), FROM_STATUS.values(), ids=FROM_STATUS.keys()
)
def test_ledger_from_status(
    raw: dict[str, Any], expected: list[tuple[Action, float, str]], original: int | None
) -> None:
    got = ledger_from_status(raw)
    assert [(r.action, r.time, r.result) for r in got.records] == expected
    assert got.original_pool_size == original


# id -> (text, epoch)
EPOCHS: dict[str, tuple[object, float | None]] = {
    "RFC 3339 with Z": ("2023-11-14T22:13:20Z", T0),
    "one second later": ("2023-11-14T22:13:21Z", T0 + 1.0),
    "None": (None, None),
    "empty": ("", None),
    "not a string": (T0, None),
    "not a time": ("soon", None),
    "with an offset instead of Z": ("2023-11-14T22:13:20+00:00", None),
}


@pytest.mark.parametrize(("text", "epoch"), EPOCHS.values(), ids=EPOCHS.keys())
def test_epoch(text: object, epoch: float | None) -> None:
    assert _epoch(text) == epoch


@pytest.mark.parametrize(
    ("epoch", "text"),
    [
        (T0, "2023-11-14T22:13:20Z"),
        (T0 + 0.999, "2023-11-14T22:13:20Z"),
        (0.0, "1970-01-01T00:00:00Z"),
    ],
    ids=["whole second", "fraction truncated", "epoch zero"],
)
def test_iso(epoch: float, text: str) -> None:
    assert _iso(epoch) == text
    parsed = _epoch(text)
    assert parsed is not None and 0.0 <= epoch - parsed < 1.0


# -- observe: since when each signal has held ------------------------------------------------

# A probe: (seconds since T0, health, pool utilization)
Probe = tuple[float, Health, float | None]

# id -> (probes, expected after the last: (unhealthy since, exhausted since, calm since) - T0)
OBSERVE: dict[str, tuple[list[Probe], tuple[float | None, float | None, float | None]]] = {
    "healthy, calm": ([(0.0, H, 0.1), (5.0, H, 0.2)], (None, None, 0.0)),
    "unhealthy since the first unhealthy probe": (
        [(0.0, H, 0.5), (5.0, U, 0.5), (10.0, U, 0.5)],
        (5.0, None, 0.0),
    ),
    "unhealthy spell ended": ([(0.0, U, None), (5.0, U, None), (10.0, D, None)], (None,) * 3),
    "unhealthy again: a new start": (
        [(0.0, U, None), (5.0, H, None), (10.0, U, None)],
        (10.0, None, None),
    ),
    "exhausted at 0.95 (the boundary)": ([(0.0, U, 0.95), (5.0, U, 0.99)], (0.0, 0.0, None)),
    "exhausted interrupted by 0.94": (
        [(0.0, U, 0.96), (5.0, D, 0.94), (10.0, U, 0.97)],
        (10.0, 10.0, None),
    ),
    "calm is below 0.80; 0.80 itself is not calm": (
        [(0.0, H, 0.5), (5.0, D, 0.8), (10.0, H, 0.79)],
        (None, None, 10.0),
    ),
    "no pool figure clears the pool signals": ([(0.0, U, 0.99), (5.0, U, None)], (0.0, None, None)),
}


@pytest.mark.parametrize(("probes", "expected"), OBSERVE.values(), ids=OBSERVE.keys())
def test_observe_tracks_since_when(
    probes: list[Probe], expected: tuple[float | None, float | None, float | None]
) -> None:
    clock = Clock(T0)
    r = remediator({}, clock)
    for offset, health, utilization in probes:
        clock.now = T0 + offset
        r.observe(Verdict(health, (), 0, 0, True), utilization, Thresholds())
    got = tuple(
        None if t is None else t - T0 for t in (r.unhealthy_since, r.exhausted_since, r.calm_since)
    )
    assert got == expected


def test_unhealthy_since_survives_an_operator_restart() -> None:
    clock = Clock(T0)
    first = remediator({}, clock)
    first.observe(Verdict(U, (), 3, 0, True), None, Thresholds())
    status = json.loads(json.dumps(first.status_fields(None)))
    assert status == {"unhealthySince": "2023-11-14T22:13:20Z"}
    clock.now = T0 + 25.0
    second = remediator(status, clock)
    second.observe(Verdict(U, (), 4, 0, True), None, Thresholds())
    assert second.unhealthy_since == T0
    clock.now = T0 + 30.0
    signals = Signals(U, unhealthy_since=second.unhealthy_since)
    intent = due(RESTART_ONLY, signals, second.ledger, clock())
    assert intent is not None and intent.action is RESTART


# -- workload_state: read as `kubectl rollout status` reads it --------------------------------


def deployment(
    *,
    generation: int = 2,
    observed: int = 2,
    replicas: int | None = 3,
    status_replicas: int = 3,
    updated: int = 3,
    available: int = 3,
    paused: bool | None = None,
    progressing: tuple[str, str] | None = None,
) -> dict[str, object]:
    spec: dict[str, object] = {}
    if replicas is not None:
        spec["replicas"] = replicas
    if paused is not None:
        spec["paused"] = paused
    status: dict[str, object] = {
        "observedGeneration": observed,
        "replicas": status_replicas,
        "updatedReplicas": updated,
        "readyReplicas": available,
        "availableReplicas": available,
    }
    if progressing is not None:
        state, reason = progressing
        status["conditions"] = [
            {"type": "Available", "status": "True" if available else "False"},
            {"type": "Progressing", "status": state, "reason": reason},
        ]
    return {
        "metadata": {"name": "codebase", "generation": generation},
        "spec": spec,
        "status": status,
    }


def statefulset(
    *,
    generation: int = 2,
    observed: int = 2,
    replicas: int = 3,
    updated: int = 3,
    ready: int = 3,
    current: str = "codebase-7d4f",
    update: str | None = "codebase-7d4f",
) -> dict[str, object]:
    status: dict[str, object] = {
        "observedGeneration": observed,
        "replicas": replicas,
        "updatedReplicas": updated,
        "readyReplicas": ready,
        "currentRevision": current,
    }
    if update is not None:
        status["updateRevision"] = update
    return {
        "metadata": {"name": "codebase", "generation": generation},
        "spec": {"replicas": replicas},
        "status": status,
    }


# id -> (kind, object, expected workload)
WORKLOADS: dict[str, tuple[str, dict[str, object] | None, Workload]] = {
    "not found": ("Deployment", None, Workload(found=False)),
    "StatefulSet not found": ("StatefulSet", None, Workload(found=False)),
    "Deployment complete": ("Deployment", deployment(), Workload(True, False, False)),
    "Deployment: observedGeneration < generation": (
        "Deployment",
        deployment(generation=3),
        Workload(True, False, True),
    ),
    "Deployment: updatedReplicas < replicas": (
        "Deployment",
        deployment(updated=2, available=2, status_replicas=3),
        Workload(True, False, True),
    ),
    "Deployment: old replicas still present": (
        "Deployment",
        deployment(status_replicas=4),
        Workload(True, False, True),
    ),
    # Readiness is not rollout state: pods unready because the server reports
    # itself unhealthy must not hold the restart that would heal them.
    "Deployment: pods unready after a complete rollout (no condition)": (
        "Deployment",
        deployment(available=0),
        Workload(True, False, False),
    ),
    "Deployment: pods unready, Progressing NewReplicaSetAvailable": (
        "Deployment",
        deployment(available=0, progressing=("True", "NewReplicaSetAvailable")),
        Workload(True, False, False),
    ),
    "Deployment: new ReplicaSet's pods not yet available (ReplicaSetUpdated)": (
        "Deployment",
        deployment(available=0, progressing=("True", "ReplicaSetUpdated")),
        Workload(True, False, True),
    ),
    "Deployment: new ReplicaSet created": (
        "Deployment",
        deployment(updated=0, available=3, progressing=("True", "NewReplicaSetCreated")),
        Workload(True, False, True),
    ),
    "Deployment: rollout stalled (ProgressDeadlineExceeded) no longer progresses": (
        "Deployment",
        deployment(
            status_replicas=4, available=0, progressing=("False", "ProgressDeadlineExceeded")
        ),
        Workload(True, False, False),
    ),
    "Deployment: the condition wins over counts that lag": (
        "Deployment",
        deployment(status_replicas=4, progressing=("True", "NewReplicaSetAvailable")),
        Workload(True, False, False),
    ),
    "Deployment paused mid-rollout: counts decide": (
        "Deployment",
        deployment(paused=True, updated=1, progressing=("Unknown", "DeploymentPaused")),
        Workload(True, True, True),
    ),
    "Deployment paused, rolled out": (
        "Deployment",
        deployment(paused=True),
        Workload(True, True, False),
    ),
    "Deployment paused with an unobserved change": (
        "Deployment",
        deployment(paused=True, generation=3),
        Workload(True, True, True),
    ),
    "Deployment paused: false": (
        "Deployment",
        deployment(paused=False),
        Workload(True, False, False),
    ),
    "Deployment without spec.replicas: 1 is meant": (
        "Deployment",
        deployment(replicas=None, status_replicas=1, updated=1, available=1),
        Workload(True, False, False),
    ),
    "Deployment without spec.replicas, none updated yet": (
        "Deployment",
        deployment(replicas=None, status_replicas=0, updated=0, available=0),
        Workload(True, False, True),
    ),
    "Deployment scaled to zero": (
        "Deployment",
        deployment(replicas=0, status_replicas=0, updated=0, available=0),
        Workload(True, False, False),
    ),
    "Deployment never seen by a controller (no status)": (
        "Deployment",
        {"metadata": {"name": "codebase", "generation": 1}, "spec": {"replicas": 1}},
        Workload(True, False, True),
    ),
    "StatefulSet complete": ("StatefulSet", statefulset(), Workload(True, False, False)),
    "StatefulSet: revisions differ": (
        "StatefulSet",
        statefulset(update="codebase-9a1b"),
        Workload(True, False, True),
    ),
    "StatefulSet: no updateRevision yet, otherwise complete": (
        "StatefulSet",
        statefulset(update=None),
        Workload(True, False, False),
    ),
    "StatefulSet: pods unready, revisions equal: not a rollout": (
        "StatefulSet",
        statefulset(ready=0),
        Workload(True, False, False),
    ),
    "StatefulSet: pods unready mid-rollout": (
        "StatefulSet",
        statefulset(ready=0, update="codebase-9a1b"),
        Workload(True, False, True),
    ),
    "StatefulSet: updatedReplicas < replicas": (
        "StatefulSet",
        statefulset(updated=2),
        Workload(True, False, True),
    ),
    "StatefulSet: observedGeneration < generation": (
        "StatefulSet",
        statefulset(generation=5, observed=4),
        Workload(True, False, True),
    ),
}


@pytest.mark.parametrize(("kind", "obj", "expected"), WORKLOADS.values(), ids=WORKLOADS.keys())
def test_workload_state(kind: str, obj: dict[str, object] | None, expected: Workload) -> None:
    assert workload_state(kind, obj) == expected


# -- pod deletion (per-endpoint monitors) -----------------------------------------------------

PODS_ONLY = Policy(pod_deletion=PodDeletionPolicy(enabled=True, after_s=30.0))
PODS_AND_RESTART = replace(PODS_ONLY, restart=RestartPolicy(enabled=True, after_s=30.0))


def pods(*since: float | None) -> tuple[PodSignal, ...]:
    """Pods a, b, c, ... Unhealthy since T0 + each offset (None: not Unhealthy)."""
    return tuple(
        PodSignal(chr(ord("a") + i), f"uid-{i}", None if s is None else T0 + s)
        for i, s in enumerate(since)
    )


# id -> (policy, signals, now - T0, expected (action, pod) or None)
POD_DUE: dict[str, tuple[Policy, Signals, float, tuple[Action, str | None] | None]] = {
    "one bad pod past after: delete it": (
        PODS_ONLY,
        Signals(H, pods=pods(None, 0.0, None)),
        30.0,
        (DELETE_POD, "b"),
    ),
    "one bad pod not yet past after": (PODS_ONLY, Signals(H, pods=pods(None, 0.0)), 29.0, None),
    "all healthy": (PODS_ONLY, Signals(H, pods=pods(None, None)), 600.0, None),
    "two bad: the one Unhealthy longest first": (
        PODS_ONLY,
        Signals(U, unhealthy_since=T0, pods=pods(10.0, 0.0, None)),
        60.0,
        (DELETE_POD, "b"),
    ),
    "pod deletion off": (Policy(), Signals(H, pods=pods(0.0, None)), 60.0, None),
    "the monitor Unhealthy too (policy all): still only the pod": (
        PODS_AND_RESTART,
        Signals(U, unhealthy_since=T0, pods=pods(0.0, None, None)),
        60.0,
        (DELETE_POD, "a"),
    ),
    "every endpoint Unhealthy, restart enabled: the workload is restarted": (
        PODS_AND_RESTART,
        Signals(U, unhealthy_since=T0, pods=pods(0.0, 0.0)),
        60.0,
        (RESTART, None),
    ),
    "every endpoint Unhealthy, no restart: pods one at a time": (
        PODS_ONLY,
        Signals(U, unhealthy_since=T0, pods=pods(0.0, 5.0)),
        60.0,
        (DELETE_POD, "a"),
    ),
    "a pool exhausted comes first (the narrower fix)": (
        replace(PODS_ONLY, scaling=ScalingPolicy(enabled=True)),
        Signals(U, pool_size=10, exhausted_since=T0, pods=pods(0.0, None)),
        60.0,
        (SCALE_UP, None),
    ),
}


@pytest.mark.parametrize(
    ("policy", "signals", "elapsed", "expected"), POD_DUE.values(), ids=POD_DUE.keys()
)
def test_pod_deletion_due(
    policy: Policy, signals: Signals, elapsed: float, expected: tuple[Action, str | None] | None
) -> None:
    intent = due(policy, signals, Ledger(), T0 + elapsed)
    assert (None if intent is None else (intent.action, intent.pod)) == expected


def test_pod_deletion_intent_names_the_pod_and_its_uid() -> None:
    intent = due(PODS_ONLY, Signals(H, pods=pods(None, 0.0, None)), Ledger(), T0 + 42.0)
    assert intent is not None
    assert (intent.pod, intent.pod_uid) == ("b", "uid-1")
    assert intent.message == "endpoint of pod b Unhealthy for 42s (1 of 3 endpoints Unhealthy)"


POD_INTENT = Intent(DELETE_POD, "endpoint of pod b Unhealthy for 42s", pod="b", pod_uid="uid-1")

# id -> (situation, expected hold, act, dry_run)
POD_DECISIONS: dict[str, tuple[Situation, Hold | None, bool, bool]] = {
    "clear, no workload named: act": (
        Situation(intent=POD_INTENT, policy=PODS_ONLY, workload=None),
        None,
        True,
        False,
    ),
    "paused": (
        Situation(intent=POD_INTENT, policy=PODS_ONLY, workload=None, paused=True),
        Hold.PAUSED,
        False,
        False,
    ),
    "mass failure": (
        Situation(intent=POD_INTENT, policy=PODS_ONLY, workload=None, fleet=SICK_FLEET),
        Hold.MASS_FAILURE,
        False,
        False,
    ),
    "cooldown after a restart": (
        Situation(intent=POD_INTENT, policy=PODS_ONLY, workload=None, ledger=ledger(-60.0)),
        Hold.COOLDOWN,
        False,
        False,
    ),
    "budget": (
        Situation(intent=POD_INTENT, policy=PODS_ONLY, workload=None, ledger=BUSY),
        Hold.BUDGET,
        False,
        False,
    ),
    "a named workload rolling out": (
        Situation(
            intent=POD_INTENT,
            policy=PODS_ONLY,
            workload=Workload(found=True, rollout_in_progress=True),
        ),
        Hold.ROLLOUT_IN_PROGRESS,
        False,
        False,
    ),
    "dry run": (
        Situation(intent=POD_INTENT, policy=replace(PODS_ONLY, dry_run=True), workload=None),
        None,
        False,
        True,
    ),
}


@pytest.mark.parametrize(
    ("situation", "hold", "act", "dry_run"), POD_DECISIONS.values(), ids=POD_DECISIONS.keys()
)
def test_pod_deletion_has_the_same_rails(
    situation: Situation, hold: Hold | None, act: bool, dry_run: bool
) -> None:
    decision = situation.decide()
    assert (decision.hold, decision.act, decision.dry_run) == (hold, act, dry_run)


def test_a_deleted_pod_counts_toward_cooldown_and_budget() -> None:
    book = record(Ledger(), DELETE_POD, T0, "success")
    again = Situation(intent=POD_INTENT, policy=PODS_ONLY, workload=None, ledger=book, now=T0 + 60)
    assert again.decide().hold is Hold.COOLDOWN
    # ... and it survives an operator restart like any other action.
    clock = Clock(T0 + 60)
    reloaded = ledger_from_status(persisted(book, PODS_ONLY, clock)["remediation"])
    assert [r.action for r in reloaded.records] == [DELETE_POD]
