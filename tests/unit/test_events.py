"""Events: only on transitions; exact repeats and floods of similar ones are aggregated."""

from __future__ import annotations

import pytest

from mcp_health_operator.core import events
from mcp_health_operator.core.events import Aggregator, EventSpec, Post
from mcp_health_operator.core.judge import (
    Finding,
    Health,
    History,
    Observation,
    Reason,
    Severity,
    Thresholds,
    Verdict,
    judge,
)
from tests.unit.test_judge import ok

H, D, U, UNKNOWN = Health.HEALTHY, Health.DEGRADED, Health.UNHEALTHY, Health.UNKNOWN
POOL_HIGH = Finding(Reason.POOL_UTILIZATION_HIGH, Severity.DEGRADED, "pool utilization 90% >= 80%")
DB_DOWN = Finding(Reason.DATABASE_DISCONNECTED, Severity.UNHEALTHY, "database disconnected")
TIMEOUT = Finding(Reason.PROBE_TIMEOUT, Severity.UNHEALTHY, "no answer within 1s")


def verdict(health: Health, *, reachable: bool = True, failures: int = 0) -> Verdict:
    if not reachable:
        findings: tuple[Finding, ...] = (TIMEOUT,)
    else:
        findings = {H: (), D: (POOL_HIGH,), U: (DB_DOWN,), UNKNOWN: ()}[health]
    return Verdict(health, findings, failures, 0, reachable)


# id -> (previous health, previous reachable, verdict, expected (type, reason, message))
TRANSITIONS: dict[str, tuple[Health | None, bool | None, Verdict, list[tuple[str, str, str]]]] = {
    "Healthy -> Degraded": (
        H,
        True,
        verdict(D),
        [("Warning", "HealthDegraded", "Degraded: pool utilization 90% >= 80%")],
    ),
    "Healthy -> Unhealthy": (
        H,
        True,
        verdict(U, failures=3),
        [
            (
                "Warning",
                "HealthUnhealthy",
                "Unhealthy after 3 consecutive failed probes: database disconnected",
            )
        ],
    ),
    "Degraded -> Unhealthy": (
        D,
        True,
        verdict(U, failures=3),
        [
            (
                "Warning",
                "HealthUnhealthy",
                "Unhealthy after 3 consecutive failed probes: database disconnected",
            )
        ],
    ),
    "Unhealthy -> Degraded": (
        U,
        True,
        verdict(D),
        [("Warning", "HealthDegraded", "Degraded: pool utilization 90% >= 80%")],
    ),
    "Degraded -> Healthy": (
        D,
        True,
        verdict(H),
        [("Normal", "HealthRecovered", "Healthy again (was Degraded)")],
    ),
    "Unhealthy -> Healthy": (
        U,
        True,
        verdict(H),
        [("Normal", "HealthRecovered", "Healthy again (was Unhealthy)")],
    ),
    "Unknown -> Healthy: no event": (UNKNOWN, True, verdict(H), []),
    "first probe Healthy: no event": (None, None, verdict(H), []),
    "first probe Degraded": (
        None,
        None,
        verdict(D),
        [("Warning", "HealthDegraded", "Degraded: pool utilization 90% >= 80%")],
    ),
    "Unknown -> Unknown: no event": (UNKNOWN, True, verdict(UNKNOWN), []),
    "Healthy -> Healthy: no event": (H, True, verdict(H), []),
    "Degraded -> Degraded: no event": (D, True, verdict(D), []),
    "Unhealthy -> Unhealthy: no event": (U, True, verdict(U, failures=9), []),
    "reachable -> unreachable, health held": (
        H,
        True,
        verdict(H, reachable=False, failures=1),
        [("Warning", "ProbeFailed", "probe failed: no answer within 1s")],
    ),
    "first probe unreachable": (
        None,
        None,
        verdict(UNKNOWN, reachable=False, failures=1),
        [("Warning", "ProbeFailed", "probe failed: no answer within 1s")],
    ),
    "unreachable -> unreachable: no event": (H, False, verdict(H, reachable=False, failures=2), []),
    "unreachable -> reachable, health unchanged": (
        U,
        False,
        verdict(U),
        [("Normal", "ProbeRecovered", "probe succeeded again")],
    ),
    "still unreachable, now Unhealthy": (
        H,
        False,
        verdict(U, reachable=False, failures=3),
        [
            (
                "Warning",
                "HealthUnhealthy",
                "Unhealthy after 3 consecutive failed probes: no answer within 1s",
            )
        ],
    ),
    "unreachable and Unhealthy at once: probe event first": (
        H,
        True,
        verdict(U, reachable=False, failures=1),
        [
            ("Warning", "ProbeFailed", "probe failed: no answer within 1s"),
            (
                "Warning",
                "HealthUnhealthy",
                "Unhealthy after 1 consecutive failed probes: no answer within 1s",
            ),
        ],
    ),
    "back reachable and Healthy": (
        U,
        False,
        verdict(H),
        [
            ("Normal", "ProbeRecovered", "probe succeeded again"),
            ("Normal", "HealthRecovered", "Healthy again (was Unhealthy)"),
        ],
    ),
}


@pytest.mark.parametrize(
    ("previous_health", "previous_reachable", "v", "expected"),
    TRANSITIONS.values(),
    ids=TRANSITIONS.keys(),
)
def test_transitions(
    previous_health: Health | None,
    previous_reachable: bool | None,
    v: Verdict,
    expected: list[tuple[str, str, str]],
) -> None:
    out = events.transitions(previous_health, previous_reachable, v)
    assert [(e.type, e.reason, e.message) for e in out] == expected


def test_never_once_per_probe() -> None:
    """A whole story through the judge: events only where something changed."""
    steps = (
        [ok()] * 20
        + [ok({"connection_pool.pool_utilization": 0.9})] * 20
        + [Observation("Timeout", 1000.0, None, "timed out")] * 20
        + [ok()] * 20
    )
    history, reachable = History(), None
    reasons: list[str] = []
    for obs in steps:
        v = judge(obs, Thresholds(), history)
        reasons += [e.reason for e in events.transitions(history.health, reachable, v)]
        history, reachable = v.history(), v.reachable
    assert reasons == [
        "HealthDegraded",
        "ProbeFailed",
        "HealthUnhealthy",
        "ProbeRecovered",
        "HealthRecovered",
    ]


# -- Aggregator -----------------------------------------------------------------------------

UID, OTHER_UID = "uid-1", "uid-2"


def warning(message: str, reason: str = "ProbeFailed") -> EventSpec:
    return EventSpec("Warning", reason, message)


def post(agg: Aggregator, event: EventSpec, now: float, uid: str = UID) -> Post:
    return agg.post(uid=uid, object_name="codebase-mcp", event=event, now=now)


def test_first_event_is_created() -> None:
    p = post(Aggregator(), warning("timed out"), 0.0)
    assert p.create and p.count == 1 and p.message == "timed out"
    assert p.name.startswith("codebase-mcp.")


def test_identical_repeats_bump_the_count_on_the_same_name() -> None:
    agg = Aggregator(window_s=600.0)
    first = post(agg, warning("timed out"), 0.0)
    repeats = [post(agg, warning("timed out"), 5.0 * i) for i in range(1, 6)]
    assert [(p.name, p.create, p.count) for p in repeats] == [
        (first.name, False, n) for n in range(2, 7)
    ]


def test_repeats_keep_an_event_alive_past_the_window_while_they_keep_coming() -> None:
    agg = Aggregator(window_s=600.0)
    first = post(agg, warning("timed out"), 0.0)
    last = first
    for now in (500.0, 1000.0, 1500.0):
        last = post(agg, warning("timed out"), now)
    assert (last.name, last.create, last.count) == (first.name, False, 4)


def test_a_repeat_after_the_window_is_a_new_event() -> None:
    agg = Aggregator(window_s=600.0)
    first = post(agg, warning("timed out"), 0.0)
    later = post(agg, warning("timed out"), 600.0)
    assert later.create and later.count == 1 and later.name != first.name


# id -> (event that differs from Warning/ProbeFailed/"timed out", uid)
NOT_THE_SAME: dict[str, tuple[EventSpec, str]] = {
    "other message": (warning("connection refused"), UID),
    "other reason": (warning("timed out", reason="HealthUnhealthy"), UID),
    "other type": (EventSpec("Normal", "ProbeFailed", "timed out"), UID),
    "other object": (warning("timed out"), OTHER_UID),
}


@pytest.mark.parametrize(("event", "uid"), NOT_THE_SAME.values(), ids=NOT_THE_SAME.keys())
def test_events_that_differ_are_not_bumped(event: EventSpec, uid: str) -> None:
    agg = Aggregator()
    first = post(agg, warning("timed out"), 0.0)
    other = post(agg, event, 1.0, uid=uid)
    assert other.create and other.count == 1 and other.name != first.name


def test_a_flood_of_similar_events_folds_into_one_combined_event() -> None:
    agg = Aggregator(window_s=600.0, similar_limit=4)
    singles = [post(agg, warning(f"timed out after {i}s"), float(i)) for i in range(4)]
    assert all(p.create and p.count == 1 for p in singles)
    assert len({p.name for p in singles}) == 4

    combined = [post(agg, warning(f"timed out after {i}s"), float(i)) for i in range(4, 10)]
    assert combined[0].create and combined[0].count == 1
    assert [(p.name, p.create, p.count) for p in combined[1:]] == [
        (combined[0].name, False, n) for n in range(2, 7)
    ]
    assert combined[0].name not in {p.name for p in singles}
    assert all(p.message.startswith("(combined from similar events): ") for p in combined)
    assert combined[-1].message == "(combined from similar events): timed out after 9s"


def test_an_exact_repeat_of_an_early_event_still_bumps_its_own() -> None:
    agg = Aggregator(similar_limit=2)
    first = post(agg, warning("a"), 0.0)
    post(agg, warning("b"), 1.0)
    post(agg, warning("c"), 2.0)  # combined
    again = post(agg, warning("a"), 3.0)
    assert (again.name, again.create, again.count, again.message) == (first.name, False, 2, "a")


def test_similar_limit_counts_only_within_the_window() -> None:
    agg = Aggregator(window_s=600.0, similar_limit=4)
    for i in range(4):
        post(agg, warning(f"m{i}"), float(i))
    # The first four are older than the window: no flood any more.
    later = post(agg, warning("m4"), 700.0)
    assert later.create and later.message == "m4"


def test_after_the_window_a_flood_starts_a_new_combined_event() -> None:
    agg = Aggregator(window_s=600.0, similar_limit=1)
    post(agg, warning("m0"), 0.0)
    first_combined = post(agg, warning("m1"), 1.0)
    assert first_combined.message.startswith("(combined from similar events)")
    # Much later: m2 is a single again, m3 combined anew under another name.
    single = post(agg, warning("m2"), 1000.0)
    second_combined = post(agg, warning("m3"), 1001.0)
    assert single.create and single.message == "m2"
    assert second_combined.create and second_combined.count == 1
    assert second_combined.name != first_combined.name


def test_floods_are_per_object() -> None:
    agg = Aggregator(similar_limit=1)
    post(agg, warning("m0"), 0.0)
    p = post(agg, warning("m1"), 1.0, uid=OTHER_UID)
    assert p.create and p.message == "m1"


def test_forget_drops_one_object_only() -> None:
    agg = Aggregator()
    mine = post(agg, warning("timed out"), 0.0)
    theirs = post(agg, warning("timed out"), 0.0, uid=OTHER_UID)
    agg.forget(UID)
    again = post(agg, warning("timed out"), 1.0)
    assert again.create and again.count == 1 and again.name != mine.name
    other = post(agg, warning("timed out"), 1.0, uid=OTHER_UID)
    assert (other.name, other.create, other.count) == (theirs.name, False, 2)


def test_forget_clears_the_flood_count() -> None:
    agg = Aggregator(similar_limit=1)
    post(agg, warning("m0"), 0.0)
    agg.forget(UID)
    p = post(agg, warning("m1"), 1.0)
    assert p.create and p.message == "m1"


def test_event_names_stay_valid_for_long_object_names() -> None:
    p = Aggregator().post(uid=UID, object_name="x" * 300, event=warning("m"), now=0.0)
    assert len(p.name) <= 253
    assert p.name.startswith("x" * 200 + ".")


# -- Bounds (LRU) and the spam filter -------------------------------------------------------


def test_the_default_bound_and_budget_are_client_gos() -> None:
    agg = Aggregator()
    assert events.MAX_ENTRIES == 4096
    assert (agg.spam_burst, agg.spam_refill_s) == (25, 300.0)  # burst 25, qps 1/300


def test_every_map_stays_at_the_bound_after_100000_distinct_transitions() -> None:
    agg = Aggregator()
    for i in range(100_000):
        # Ten per monitor (four singles, then a flood), each message its own.
        post(agg, warning(f"timed out, probe {i}"), i * 0.001, uid=f"monitor-{i // 10}")
    assert agg.sizes() == {"exact": 4096, "similar": 4096, "combined": 4096, "spam": 4096}
    assert agg.dropped == 0  # ten Events per object: within every budget

    # Aggregation is intact for what is inside the bound: a new monitor's
    # repeat bumps, and its flood folds into one combined Event.
    now = 100.0
    first = post(agg, warning("timed out"), now, uid="new")
    again = post(agg, warning("timed out"), now + 1, uid="new")
    assert (again.name, again.create, again.count) == (first.name, False, 2)
    # "timed out" and m0..m2 are four singles; m3 starts the combined Event.
    flood = [post(agg, warning(f"m{i}"), now + 2 + i, uid="new") for i in range(6)]
    assert [(p.create, p.count) for p in flood] == [(True, 1)] * 4 + [(False, 2), (False, 3)]
    assert flood[3].message == "(combined from similar events): m3"
    assert {p.name for p in flood[3:]} == {flood[3].name}
    assert agg.sizes() == {"exact": 4096, "similar": 4096, "combined": 4096, "spam": 4096}


def test_an_entry_is_forgotten_once_4096_newer_ones_came() -> None:
    agg = Aggregator()
    first = post(agg, warning("timed out"), 0.0)
    for i in range(4096):
        post(agg, warning("timed out"), 1.0, uid=f"monitor-{i}")
    # Within the window, but evicted: a new Event rather than a bump.
    again = post(agg, warning("timed out"), 2.0)
    assert again.create and again.count == 1 and again.name != first.name


def test_the_least_recently_used_entry_is_evicted_and_a_recently_used_one_survives() -> None:
    agg = Aggregator(max_entries=3)
    firsts = {uid: post(agg, warning("timed out"), t, uid=uid) for t, uid in enumerate("abc")}
    post(agg, warning("timed out"), 3.0, uid="a")  # a used again: b is the oldest now
    post(agg, warning("timed out"), 4.0, uid="d")  # evicts b
    b = post(agg, warning("timed out"), 5.0, uid="b")  # a new Event; evicts c
    a = post(agg, warning("timed out"), 6.0, uid="a")
    c = post(agg, warning("timed out"), 7.0, uid="c")
    assert b.create and b.name != firsts["b"].name
    assert (a.name, a.create, a.count) == (firsts["a"].name, False, 3)
    assert c.create and c.name != firsts["c"].name
    assert agg.sizes()["exact"] == 3


def test_a_flood_survives_eviction_while_it_is_used() -> None:
    agg = Aggregator(max_entries=2, similar_limit=1)
    post(agg, warning("m0"), 0.0)
    post(agg, warning("x0", reason="HealthDegraded"), 1.0, uid=OTHER_UID)
    combined = post(agg, warning("m1"), 2.0)  # the flood is the recently used one now
    post(agg, warning("y0", reason="R0"), 3.0, uid=OTHER_UID)  # evicts HealthDegraded's
    more = post(agg, warning("m2"), 4.0)
    assert (more.name, more.create, more.count) == (combined.name, False, 2)
    for i in (1, 2):  # two other reasons push it out at last
        post(agg, warning(f"y{i}", reason=f"R{i}"), 4.0 + i, uid=OTHER_UID)
    alone = post(agg, warning("m3"), 7.0)
    assert alone.create and alone.message == "m3"  # forgotten: a single again


def test_the_spam_filter_lets_a_burst_of_25_through_then_drops() -> None:
    agg = Aggregator()
    posts = [post(agg, warning(f"failure {i}", reason=f"R{i}"), 0.0) for i in range(30)]
    assert [p.dropped for p in posts] == [False] * 25 + [True] * 5
    assert agg.dropped == 5


def test_the_spam_filter_refills_one_event_every_5_minutes() -> None:
    agg = Aggregator()
    for i in range(25):
        post(agg, warning(f"failure {i}", reason=f"R{i}"), 0.0)
    assert post(agg, warning("x", reason="X"), 299.0).dropped
    assert not post(agg, warning("y", reason="Y"), 300.0).dropped
    assert post(agg, warning("z", reason="Z"), 301.0).dropped
    assert not post(agg, warning("w", reason="W"), 600.0).dropped
    # Quiet for 25 refills: a whole burst again, and no more.
    later = [post(agg, warning(f"l{i}", reason=f"L{i}"), 600.0 + 25 * 300.0) for i in range(26)]
    assert [p.dropped for p in later] == [False] * 25 + [True]
    assert agg.dropped == 3


def test_the_spam_budget_is_per_object() -> None:
    agg = Aggregator(spam_burst=2)
    mine = [post(agg, warning(f"m{i}", reason=f"R{i}"), 0.0) for i in range(3)]
    theirs = [post(agg, warning(f"m{i}", reason=f"R{i}"), 0.0, uid=OTHER_UID) for i in range(3)]
    assert [p.dropped for p in mine] == [p.dropped for p in theirs] == [False, False, True]


def test_a_count_bump_spends_the_budget_and_a_dropped_repeat_is_still_counted() -> None:
    agg = Aggregator(spam_burst=2, spam_refill_s=300.0)
    first = post(agg, warning("timed out"), 0.0)
    bumped = post(agg, warning("timed out"), 1.0)
    dropped = post(agg, warning("timed out"), 2.0)
    assert not bumped.dropped and dropped.dropped
    # The next one through carries the count, the dropped repeat included.
    later = post(agg, warning("timed out"), 301.0)
    assert (later.name, later.create, later.count, later.dropped) == (first.name, False, 4, False)


def test_forget_keeps_the_budget() -> None:
    agg = Aggregator(spam_burst=1)
    post(agg, warning("m0"), 0.0)
    agg.forget(UID)  # say, the worker restarts: no fresh burst
    assert post(agg, warning("m1"), 1.0).dropped
