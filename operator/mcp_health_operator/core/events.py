"""Which Events a verdict deserves, and how repeats are aggregated.

``transitions`` is pure: Events only on transitions of health or
reachability, never once per probe. ``Aggregator`` is pure too: like
client-go's event correlator it turns an identical repeat into a count bump
on the existing Event, after a few similar Events (same reason) within a
window it folds the rest into one combined Event, and a spam filter (a token
bucket per involved object) marks what goes over an object's budget to be
dropped. Every map it keeps is an LRU of at most ``max_entries`` entries
(client-go's ``maxLruCacheEntries``), so its memory is bounded however many
monitors, reasons and messages pass through. The I/O lives in ``kube``.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass, replace
from typing import Any, Generic, TypeVar

from mcp_health_operator.core.judge import Health, Verdict

NORMAL, WARNING = "Normal", "Warning"


@dataclass(frozen=True, slots=True)
class EventSpec:
    type: str
    reason: str
    message: str


def transitions(
    previous_health: Health | None,
    previous_reachable: bool | None,
    verdict: Verdict,
) -> list[EventSpec]:
    """Events for the change from the previous verdict (``None``: first probe) to this one."""
    out: list[EventSpec] = []
    # The message is made only for an Event: nearly every verdict has none.
    if previous_reachable is not False and not verdict.reachable:
        out.append(EventSpec(WARNING, "ProbeFailed", f"probe failed: {verdict.message}"))
    elif previous_reachable is False and verdict.reachable:
        out.append(EventSpec(NORMAL, "ProbeRecovered", "probe succeeded again"))

    health = verdict.health
    if health != previous_health:
        if health is Health.UNHEALTHY:
            out.append(
                EventSpec(
                    WARNING,
                    "HealthUnhealthy",
                    f"Unhealthy after {verdict.consecutive_failures} consecutive failed "
                    f"probes: {verdict.message}",
                )
            )
        elif health is Health.DEGRADED:
            out.append(EventSpec(WARNING, "HealthDegraded", f"Degraded: {verdict.message}"))
        elif health is Health.HEALTHY and previous_health in (Health.DEGRADED, Health.UNHEALTHY):
            out.append(
                EventSpec(NORMAL, "HealthRecovered", f"Healthy again (was {previous_health})")
            )
    return out


@dataclass(frozen=True, slots=True)
class Post:
    """What to do for an event: create a new Event object or bump an existing one.

    ``dropped``: the event is over its object's budget (the spam filter;
    client-go's ``Skip``): post nothing.
    """

    name: str
    create: bool
    count: int
    message: str
    dropped: bool = False


@dataclass(slots=True)
class _Seen:
    name: str
    count: int
    last: float


# client-go's defaults (tools/record/events_cache.go): maxLruCacheEntries,
# defaultSpamBurst and defaultSpamQPS (1/300: one more Event every 5 minutes).
MAX_ENTRIES = 4096
SPAM_BURST = 25
SPAM_REFILL_S = 300.0

_K = TypeVar("_K")
_V = TypeVar("_V")


class _LRU(Generic[_K, _V]):
    """A map of at most ``size`` entries; a new one evicts the least recently used."""

    __slots__ = ("_by_first", "_data", "size")

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError(f"an LRU needs room for one entry at least, not {size}")
        self.size = size
        self._data: OrderedDict[_K, _V] = OrderedDict()
        # Tuple keys by their first item (the object's UID): forgetting one
        # object must not walk every entry (a stop of N monitors was N x N).
        self._by_first: dict[Any, set[_K]] = {}

    def __len__(self) -> int:
        return len(self._data)

    def get(self, key: _K) -> _V | None:
        """The value, if kept; a hit counts as a use."""
        value = self._data.get(key)
        if value is not None:
            self._data.move_to_end(key)
        return value

    def put(self, key: _K, value: _V) -> None:
        if key not in self._data and isinstance(key, tuple):
            self._by_first.setdefault(key[0], set()).add(key)
        self._data[key] = value
        self._data.move_to_end(key)
        if len(self._data) > self.size:
            old, _ = self._data.popitem(last=False)
            self._unindex(old)

    def discard_first(self, first: Any) -> None:
        """Drop every tuple key whose first item is ``first``."""
        for key in self._by_first.pop(first, ()):
            self._data.pop(key, None)

    def _unindex(self, key: _K) -> None:
        if isinstance(key, tuple):
            keys = self._by_first.get(key[0])
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self._by_first[key[0]]


class Aggregator:
    """Per involved object: exact repeats and floods of similar events become count bumps,
    and more than the object's budget of Events is dropped.

    The spam filter is client-go's ``EventSourceObjectSpamFilter``: a token
    bucket per object (this operator is the one source), ``spam_burst``
    tokens, one more every ``spam_refill_s``. As there, it judges what the
    aggregation made of the event, so a count bump spends a token too, and a
    dropped event is still counted: the next one that passes carries the
    count. ``dropped`` counts the drops.
    """

    def __init__(
        self,
        *,
        window_s: float = 600.0,
        similar_limit: int = 4,
        max_entries: int = MAX_ENTRIES,
        spam_burst: int = SPAM_BURST,
        spam_refill_s: float = SPAM_REFILL_S,
    ) -> None:
        self.window_s = window_s
        self.similar_limit = similar_limit
        self.spam_burst = spam_burst
        self.spam_refill_s = spam_refill_s
        self.dropped = 0
        self._exact: _LRU[tuple[str, str, str, str], _Seen] = _LRU(max_entries)
        self._similar: _LRU[tuple[str, str, str], list[float]] = _LRU(max_entries)
        self._combined: _LRU[tuple[str, str, str], _Seen] = _LRU(max_entries)
        # Per object: when every token spent so far is back (a token bucket
        # kept as one number: tokens = burst - (spent_until - now) / refill).
        self._spent_until: _LRU[str, float] = _LRU(max_entries)

    def post(self, *, uid: str, object_name: str, event: EventSpec, now: float) -> Post:
        """What to post for ``event`` at ``now`` (nothing if ``dropped``)."""
        post = self._aggregate(uid, object_name, event, now)
        if self._within_budget(uid, now):
            return post
        self.dropped += 1
        return replace(post, dropped=True)

    def _aggregate(self, uid: str, object_name: str, event: EventSpec, now: float) -> Post:
        exact_key = (uid, event.type, event.reason, event.message)
        seen = self._exact.get(exact_key)
        if seen is not None and now - seen.last < self.window_s:
            seen.count += 1
            seen.last = now
            return Post(seen.name, False, seen.count, event.message)

        similar_key = (uid, event.type, event.reason)
        recent = [t for t in self._similar.get(similar_key) or () if now - t < self.window_s]
        recent.append(now)
        # Only whether the limit is passed matters: the newest limit + 1 tell.
        del recent[: -(self.similar_limit + 1)]
        self._similar.put(similar_key, recent)
        if len(recent) > self.similar_limit:
            message = f"(combined from similar events): {event.message}"
            combined = self._combined.get(similar_key)
            if combined is not None and now - combined.last < self.window_s:
                combined.count += 1
                combined.last = now
                return Post(combined.name, False, combined.count, message)
            name = _name(object_name, similar_key, now)
            self._combined.put(similar_key, _Seen(name, 1, now))
            return Post(name, True, 1, message)

        name = _name(object_name, exact_key, now)
        self._exact.put(exact_key, _Seen(name, 1, now))
        return Post(name, True, 1, event.message)

    def _within_budget(self, uid: str, now: float) -> bool:
        stored = self._spent_until.get(uid)
        spent_until = now if stored is None else max(stored, now)
        accepted = spent_until - now <= (self.spam_burst - 1) * self.spam_refill_s
        if accepted:
            spent_until += self.spam_refill_s
        # Stored even when dropping: an object still sending is recently used.
        self._spent_until.put(uid, spent_until)
        return accepted

    def forget(self, uid: str) -> None:
        """Drop the aggregation state of one object (deleted, or probed elsewhere now).

        Its Event budget is kept (it leaves by eviction only, as in client-go):
        a worker that restarts must not get a fresh burst.
        """
        self._exact.discard_first(uid)
        self._similar.discard_first(uid)
        self._combined.discard_first(uid)

    def sizes(self) -> dict[str, int]:
        """Entries per map, for tests and benchmarks."""
        return {
            "exact": len(self._exact),
            "similar": len(self._similar),
            "combined": len(self._combined),
            "spam": len(self._spent_until),
        }


def _name(object_name: str, key: tuple[str, ...], now: float) -> str:
    digest = hashlib.sha1(repr((key, now)).encode(), usedforsecurity=False).hexdigest()[:12]
    return f"{object_name[:200]}.{digest}"
