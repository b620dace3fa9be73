"""Keep the fleet's long-lived objects out of the garbage collector's full passes.

A full collection walks every tracked object: with thousands of monitors
(their workers, sessions, tasks and metric series, ~100 objects each plus
what the watch keeps) one pass pauses the event loop for up to half a
second, and every probe in flight reads as that much slower. What has
survived into the oldest generation lives, nearly always, as long as its
monitor: once enough of it has gathered it is frozen (``gc.freeze``, no
pause of its own), and full passes walk only what came after. Once an hour
everything is thawed, collected and frozen again, so that cycles among
objects of monitors since deleted are reclaimed, at the cost of one pause
an hour (0.7 s at 3,000 monitors: probes in flight then read as that much
slower).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time

log = logging.getLogger(__name__)

TICK_S = 10.0
THAW_S = 3600.0
# Oldest-generation objects worth freezing: below this a full pass is short.
BATCH = 20_000


class Freezer:
    def __init__(self, *, thaw_s: float = THAW_S, batch: int = BATCH) -> None:
        self.thaw_s = thaw_s
        self.batch = batch
        self._thawed = time.monotonic()

    def tick(self, now: float) -> str | None:
        """What this tick did: "freeze", "thaw" or None."""
        if now - self._thawed >= self.thaw_s:
            self._thawed = now
            started = time.perf_counter()
            gc.unfreeze()
            gc.collect()  # what is frozen is never collected, until the next thaw
            gc.freeze()
            log.info("thawed, collected, frozen again (pause %.3fs)", time.perf_counter() - started)
            return "thaw"
        # A list of references, ~10 ms for a million: cheap once a tick.
        old = len(gc.get_objects(generation=2))
        if old >= self.batch:
            gc.freeze()
            log.info("%d long-lived objects frozen out of full collections", old)
            return "freeze"
        return None

    async def run(self, tick_s: float = TICK_S) -> None:
        while True:
            await asyncio.sleep(tick_s)
            self.tick(time.monotonic())
