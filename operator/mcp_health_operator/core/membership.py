"""Who is a live replica, and which replica owns which monitor. Pure.

Replicas announce themselves with one Lease each (``leases`` does the I/O).
A member is live while its Lease keeps changing: liveness is judged like
client-go's leader election does, by when *this* replica last saw the
member's renew stamp change on its own monotonic clock, never by comparing
the member's clock with ours.

Ownership is a function of the live set only, so every replica that sees the
same members computes the same owners:

- ``shard``: rendezvous (highest-random-weight) hashing of the monitor's UID
  over the live identities. Each monitor has exactly one owner; when a member
  joins or leaves only the monitors it wins or held move (about 1/N).
- ``leader``: every monitor belongs to one member, the one that joined first
  (earliest ``acquired``, then lowest identity): a new replica never takes
  over from a running one.
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field


class Mode(enum.StrEnum):
    SHARD = "shard"
    LEADER = "leader"


@dataclass(frozen=True, slots=True)
class Member:
    """One member Lease as listed: who, its renew stamp, for how long it holds."""

    identity: str
    stamp: str
    duration_s: float
    # Sortable join time (the Lease's acquireTime); the leader is the earliest.
    acquired: str = ""


@dataclass(slots=True)
class _Sighting:
    member: Member
    changed_at: float


@dataclass(slots=True)
class Liveness:
    """The members seen, and when each was last seen to renew (local clock)."""

    _seen: dict[str, _Sighting] = field(default_factory=dict)
    _blind: bool = False

    def outage(self) -> None:
        """A listing failed: we could not see anyone renew, so no one is judged on it.

        The next successful listing restarts every member's clock, as a first
        sighting: members that could not reach the API server either are not
        dropped the moment it is back.
        """
        self._blind = True

    def observe(self, members: Iterable[Member], now: float) -> None:
        """A successful listing: members absent from it are gone (their Lease was deleted).

        Only call this with a listing that succeeded: a failed one says
        nothing about the members, and the last view must be kept.
        """
        seen: dict[str, _Sighting] = {}
        for member in members:
            before = None if self._blind else self._seen.get(member.identity)
            if before is not None and before.member.stamp == member.stamp:
                seen[member.identity] = _Sighting(member, before.changed_at)
            else:
                # First sighting counts as a renewal: a member is given its
                # full duration from when we first see it.
                seen[member.identity] = _Sighting(member, now)
        self._seen = seen
        self._blind = False

    def live(self, now: float) -> list[Member]:
        return [s.member for s in self._seen.values() if now - s.changed_at < s.member.duration_s]

    def expired(self, now: float) -> list[Member]:
        return [s.member for s in self._seen.values() if now - s.changed_at >= s.member.duration_s]


def weight(identity: str, key: str) -> int:
    """A member's random but fixed weight for one monitor."""
    digest = hashlib.blake2b(f"{identity}\0{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


@dataclass(frozen=True, slots=True)
class View:
    """The live members as one replica sees them, and the ownership that follows."""

    mode: Mode
    members: tuple[str, ...]
    leader: str | None

    @classmethod
    def of(cls, mode: Mode, live: Iterable[Member]) -> View:
        members = sorted(live, key=lambda m: m.identity)
        first = min(members, key=lambda m: (m.acquired, m.identity), default=None)
        return cls(mode, tuple(m.identity for m in members), first.identity if first else None)

    def owner(self, key: str) -> str | None:
        """The member that owns the monitor with this key (its UID); None with no members."""
        if not self.members:
            return None
        if self.mode is Mode.LEADER:
            return self.leader
        return max(self.members, key=lambda m: (weight(m, key), m))
