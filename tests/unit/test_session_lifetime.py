"""A session's lifetime: never past ``rehandshake_after``, and spread, so sessions made
together are not all made again together."""

from __future__ import annotations

from mcp_health_operator.core.targets import Target
from mcp_health_operator.probing.session import Session

AFTER = 300.0
MADE_AT = 1_000.0


def _sessions_made_together(count: int) -> list[Session]:
    target = Target("http://mcp.example:8080/mcp")
    sessions = [
        Session(target, timeout=1.0, max_bytes=1 << 20, rehandshake_after=AFTER)
        for _ in range(count)
    ]
    for s in sessions:
        s._connected(MADE_AT)
    return sessions


def _due_at(sessions: list[Session], age: float) -> int:
    return sum(s.expired(MADE_AT + age) for s in sessions)


def test_no_session_outlives_the_bound_and_none_ends_before_three_quarters_of_it() -> None:
    sessions = _sessions_made_together(500)
    assert _due_at(sessions, 0.74 * AFTER) == 0
    assert _due_at(sessions, AFTER) == 500


def test_sessions_made_together_end_apart() -> None:
    sessions = _sessions_made_together(500)
    # Uniform over the last quarter: about half are due at seven eighths.
    # (Below 150 or above 350 of 500 has a chance under 1e-18.)
    due = _due_at(sessions, 0.875 * AFTER)
    assert 150 < due < 350
    assert _due_at(sessions, 0.80 * AFTER) < due < _due_at(sessions, 0.95 * AFTER)


def test_a_zero_bound_makes_every_probe_a_new_session() -> None:
    target = Target("http://mcp.example:8080/mcp")
    s = Session(target, timeout=1.0, max_bytes=1 << 20, rehandshake_after=0.0)
    s._connected(MADE_AT)
    assert _due_at([s], 0.0) == 1
