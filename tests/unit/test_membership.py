"""Membership (pure): liveness from observed renewals, rendezvous ownership, the leader."""

from __future__ import annotations

import uuid
from collections import Counter

import pytest

from mcp_health_operator.core.membership import Liveness, Member, Mode, View, weight

KEYS = [str(uuid.UUID(int=i * 7919 + 1)) for i in range(3000)]


def view(*identities: str, mode: Mode = Mode.SHARD) -> View:
    return View.of(
        mode, [Member(i, "1", 15.0, f"2026-01-01T00:00:0{n}Z") for n, i in enumerate(identities)]
    )


def owners(v: View) -> dict[str, str | None]:
    return {key: v.owner(key) for key in KEYS}


@pytest.mark.parametrize("n", [2, 3, 4, 7])
def test_shards_are_balanced_across_n_members(n: int) -> None:
    counts = Counter(owners(view(*(f"op-{i}" for i in range(n)))).values())
    assert set(counts) == {f"op-{i}" for i in range(n)}
    fair = len(KEYS) / n
    for member, count in counts.items():
        assert abs(count - fair) < 0.15 * fair, (member, count, fair)


def test_every_monitor_has_exactly_one_owner_and_none_without_members() -> None:
    v = view("a", "b", "c")
    assert all(v.owner(key) in {"a", "b", "c"} for key in KEYS)
    assert View.of(Mode.SHARD, []).owner(KEYS[0]) is None
    assert View.of(Mode.LEADER, []).owner(KEYS[0]) is None


def test_ownership_depends_on_the_set_only_not_the_order_or_who_computes_it() -> None:
    assert owners(view("c", "a", "b")) == owners(view("a", "b", "c"))


def test_a_joining_member_takes_about_one_nth_and_only_from_the_others() -> None:
    before = owners(view("a", "b", "c"))
    after = owners(view("a", "b", "c", "d"))
    moved = [k for k in KEYS if before[k] != after[k]]
    # Every monitor that moved went to the newcomer: no reshuffle among the others.
    assert all(after[k] == "d" for k in moved)
    assert abs(len(moved) / len(KEYS) - 1 / 4) < 0.04


def test_a_leaving_member_hands_over_only_its_own_share() -> None:
    before = owners(view("a", "b", "c", "d"))
    after = owners(view("a", "b", "d"))
    moved = [k for k in KEYS if before[k] != after[k]]
    assert moved == [k for k in KEYS if before[k] == "c"]
    assert abs(len(moved) / len(KEYS) - 1 / 4) < 0.04
    assert "c" not in after.values()


def test_weights_are_stable_across_processes() -> None:
    # A fixed hash (not Python's salted hash()): every replica computes the same.
    assert weight("op-0", "k") == weight("op-0", "k")
    assert weight("op-0", "k") != weight("op-1", "k")
    assert weight("a", "bc") != weight("ab", "c")


def test_leader_mode_gives_everything_to_the_member_that_joined_first() -> None:
    members = [
        Member("b", "1", 15.0, "2026-01-01T00:00:00.100000Z"),
        Member("a", "1", 15.0, "2026-01-01T00:00:00.200000Z"),
    ]
    v = View.of(Mode.LEADER, members)
    assert v.leader == "b"
    assert set(owners(v).values()) == {"b"}
    # A newcomer, even with a lower name, does not take over.
    v2 = View.of(Mode.LEADER, [*members, Member("0", "1", 15.0, "2026-01-01T00:00:09Z")])
    assert v2.leader == "b"
    # Without the leader, the next oldest.
    assert View.of(Mode.LEADER, members[1:]).leader == "a"


def test_a_member_is_live_while_seen_renewing_on_our_clock() -> None:
    live = Liveness()
    # Its own clock says 1970: irrelevant, only the change of the stamp counts.
    live.observe([Member("a", "rv1", 10.0), Member("b", "rv1", 10.0)], now=100.0)
    live.observe([Member("a", "rv2", 10.0), Member("b", "rv1", 10.0)], now=105.0)
    live.observe([Member("a", "rv3", 10.0), Member("b", "rv1", 10.0)], now=109.9)
    assert {m.identity for m in live.live(109.9)} == {"a", "b"}
    # b was last seen changing at 100: gone at 110; a renewed at 109.9.
    assert {m.identity for m in live.live(110.0)} == {"a"}
    assert {m.identity for m in live.expired(110.0)} == {"b"}
    assert {m.identity for m in live.live(119.8)} == {"a"}
    assert live.live(119.9) == []


def test_a_member_first_seen_gets_its_full_duration() -> None:
    # A replica that starts next to a stale Lease gives it the benefit of the doubt.
    live = Liveness()
    live.observe([Member("stale", "rv9", 15.0)], now=1000.0)
    assert [m.identity for m in live.live(1014.0)] == ["stale"]
    live.observe([Member("stale", "rv9", 15.0)], now=1014.0)
    assert live.live(1015.0) == []


def test_a_deleted_lease_is_gone_at_the_next_listing() -> None:
    live = Liveness()
    live.observe([Member("a", "1", 15.0), Member("b", "1", 15.0)], now=0.0)
    live.observe([Member("a", "2", 15.0)], now=1.0)
    assert [m.identity for m in live.live(1.0)] == ["a"]


def test_an_outage_keeps_the_view_and_restarts_every_clock_when_listings_work_again() -> None:
    live = Liveness()
    live.observe([Member("a", "1", 15.0), Member("b", "1", 15.0)], now=0.0)
    # Listings fail from 5 to 40: the caller keeps the last view and says so.
    live.outage()
    # Back at 40: a has renewed, b not yet (it could not reach the API server
    # either). Nobody is dropped on the spot...
    live.observe([Member("a", "2", 15.0), Member("b", "1", 15.0)], now=40.0)
    assert {m.identity for m in live.live(40.0)} == {"a", "b"}
    # ...but a member that stays silent is gone a full duration later.
    live.observe([Member("a", "3", 15.0), Member("b", "1", 15.0)], now=50.0)
    assert {m.identity for m in live.live(55.0)} == {"a"}


def test_without_an_outage_an_unchanged_stamp_is_not_a_renewal() -> None:
    live = Liveness()
    live.observe([Member("a", "1", 15.0)], now=0.0)
    live.observe([Member("a", "1", 15.0)], now=14.0)
    assert [m.identity for m in live.live(14.9)] == ["a"]
    assert live.live(15.0) == []
