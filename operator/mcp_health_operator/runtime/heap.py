"""Keep the fleet's long-lived objects out of the garbage collector's full passes.

A full collection walks every tracked object: with thousands of monitors
(their workers, sessions, tasks and metric series, ~100 objects each plus
what the watch keeps) one pass pauses the event loop for up to half a
second, and every probe in flight reads as that much slower. What the fleet
holds once it has settled lives as long as its monitors, so it is frozen
(``gc.freeze``): full passes then walk only what came after. The fleet is
frozen again each time it has grown and settled, and thawed, collected and
frozen once an hour, so that cycles among objects of monitors since deleted
are reclaimed at the cost of one pause an hour.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

TICK_S = 10.0
THAW_S = 3600.0


class Freezer:
    """``size()``: the fleet's size; a change in it since the last tick means not settled."""

    def __init__(self, size: Callable[[], int], *, thaw_s: float = THAW_S) -> None:
        self.size = size
        self.thaw_s = thaw_s
        self._frozen_at_size = 0
        self._last_size = -1
        self._thawed = time.monotonic()

    def tick(self, now: float) -> str | None:
        """What this tick did: "freeze", "thaw" or None."""
        size = self.size()
        settled = size == self._last_size
        self._last_size = size
        if now - self._thawed >= self.thaw_s:
            self._thawed = now
            gc.unfreeze()
            self._freeze(size, collect=True)
            return "thaw"
        if settled and size != self._frozen_at_size:
            self._freeze(size, collect=False)
            return "freeze"
        return None

    def _freeze(self, size: int, *, collect: bool) -> None:
        started = time.perf_counter()
        if collect:  # what is frozen is never collected, until the next thaw
            gc.collect()
        gc.freeze()
        self._frozen_at_size = size
        log.info(
            "%d objects frozen out of full collections (%d monitors; pause %.3fs)",
            gc.get_freeze_count(),
            size,
            time.perf_counter() - started,
        )

    async def run(self, tick_s: float = TICK_S) -> None:
        while True:
            await asyncio.sleep(tick_s)
            self.tick(time.monotonic())
