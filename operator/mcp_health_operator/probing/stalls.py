"""Time the operator's own event loop could not run, which a probe must not blame on its server.

On a loaded node (an API server's burst of writes, a neighbour's CPU) the
operator's process waits for a core, and an answer that arrived meanwhile is
read only when it runs again. Counted as the server's, that wait makes a slow
probe and, past the timeout, a failed one: ProbeFailed Events and status
writes that load the API server further, so the operator waits longer still
(5,000 monitors on two cores never settled that way).

A sentinel callback runs every ``PERIOD_S``; how late it runs is a stall.
``Clock.total()`` is the stall time so far, with a sentinel overdue right now
counted too; a probe reads it when it starts and when it ends, and
``Timeout`` moves a deadline back by the stall since it was set.

The same clock keeps the probes' coarse timers (``Clock.at_tick``): each
probe sleeps until its turn and reads under a deadline, and at 5,000
monitors a loop timer apiece was a thousand made and cancelled a second and
a wake-up of the process for nearly every probe. Rounded to ``TICK_S``, the
callbacks due in one tick share one loop timer and run together, the probes
they start write their requests together, and the process wakes once for
many: 0.89-0.91 times the CPU a probe at 5,000 monitors, side by side
(docs/benchmarks.md).

Plain asyncio.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable
from types import TracebackType

PERIOD_S = 0.05
# Lateness below this is the loop's ordinary jitter, not a stall.
JITTER_S = 0.005
# The coarse timers' grain: at 1,000 probes a second, ~20 start together;
# a probe's turn moves by at most half of it.
TICK_S = 0.02


class Clock:
    """The stall time of one event loop; made by ``clock()``, runs while its loop does."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        # No reference to the loop: the loop's timer holds this object, and
        # the registry below must let a closed loop go.
        self._total = 0.0
        self._due = loop.time() + PERIOD_S
        loop.call_at(self._due, self._tick)
        # The coarse timers: callbacks by the tick they are due in.
        self._ticks: dict[int, list[Callable[[], object]]] = {}

    def _tick(self) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        late = now - self._due
        if late > JITTER_S:
            self._total += late
        self._due = now + PERIOD_S
        loop.call_at(self._due, self._tick)

    def at_tick(self, when: float, callback: Callable[[], object]) -> None:
        """Run ``callback`` at the tick nearest ``when`` (loop time): up to half a
        tick early or late. There is no cancelling: a callback that may come
        too late to matter checks that itself."""
        tick = round(when / TICK_S)
        due = self._ticks.get(tick)
        if due is None:
            due = self._ticks[tick] = []
            asyncio.get_running_loop().call_at(tick * TICK_S, self._run_tick, tick)
        due.append(callback)

    def _run_tick(self, tick: int) -> None:
        for callback in self._ticks.pop(tick):
            try:
                callback()
            except Exception as exc:  # as the loop treats a failing callback: the rest still run
                asyncio.get_running_loop().call_exception_handler(
                    {"message": "a tick's callback failed", "exception": exc}
                )

    def total(self) -> float:
        """Seconds of stall so far (never decreases)."""
        late = asyncio.get_running_loop().time() - self._due
        return self._total + late if late > JITTER_S else self._total


_clocks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Clock] = weakref.WeakKeyDictionary()
# The last loop asked about and its clock: a probe asks several times, and a
# lookup in _clocks makes a weak reference each time.
_last: tuple[weakref.ref[asyncio.AbstractEventLoop], Clock] | None = None


def clock() -> Clock:
    """The running loop's clock, started on first use."""
    global _last
    loop = asyncio.get_running_loop()
    last = _last
    if last is not None and last[0]() is loop:
        return last[1]
    found = _clocks.get(loop)
    if found is None:
        found = _clocks[loop] = Clock(loop)
    _last = (weakref.ref(loop), found)
    return found


class Timeout:
    """``asyncio.timeout(budget)``, less the loop's stalls since entry (up to another budget).

    A deadline reached during a stall moves back by the stall time, so an
    answer waiting unread gets read; a server that does not answer still
    fails, after at most twice the budget, and only while the operator stalls.
    """

    __slots__ = ("_at_entry", "_budget", "_clock", "_deadline", "_handle", "_inner", "_open")

    def __init__(self, budget: float) -> None:
        self._budget = budget
        self._inner = asyncio.timeout(None)
        self._handle: asyncio.TimerHandle | None = None
        self._open = False

    async def __aenter__(self) -> Timeout:
        self._clock = clock()
        self._at_entry = self._clock.total()
        self._deadline = asyncio.get_running_loop().time() + self._budget
        await self._inner.__aenter__()
        self._open = True
        # First looked at on the coarse clock: nearly every read ends well
        # before, and then its deadline costs no loop timer at all. Half a
        # tick on: the nearest tick is never before the deadline.
        self._clock.at_tick(self._deadline + TICK_S / 2, self._check)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._open = False
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        await self._inner.__aexit__(exc_type, exc, tb)  # raises TimeoutError when it expired

    def _check(self) -> None:
        if not self._open:
            return  # the read ended before its deadline's tick
        loop = asyncio.get_running_loop()
        now = loop.time()
        stalled = min(self._clock.total() - self._at_entry, self._budget)
        due = self._deadline + stalled
        if now < due - JITTER_S:
            self._handle = loop.call_at(due, self._check)
        else:
            self._handle = None
            self._inner.reschedule(now)  # expires now: the task is cancelled
