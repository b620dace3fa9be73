"""Keep the fleet's long-lived objects out of the garbage collector's full passes.

A full collection walks every tracked object: with thousands of monitors
(their workers, sessions, tasks and metric series, ~100 objects each plus
what the watch keeps) one pass pauses the event loop for up to half a
second, and every probe due or in flight waits that long. What has
survived into the oldest generation lives, nearly always, as long as its
monitor: once enough of it has gathered it is frozen (``gc.freeze``, no
pause of its own), and full passes walk only what came after. Once an hour
everything is thawed, collected and frozen again, so that cycles among
objects of monitors since deleted are reclaimed, at the cost of one pause
an hour (0.7 s at 3,000 monitors; a probe in flight does not count a pause
against its server: ``probing.stalls``).

After each freeze or thaw, the C library is asked to give back the memory
it holds free (glibc's ``malloc_trim``): a cold start of thousands of
monitors (their watch events, handshakes and first writes) leaves the
heap full of freed blocks that glibc keeps mapped; at 5,000 monitors that
was 33 MB of the operator's RSS. Nothing is trimmed where the C library
has no such call (musl, macOS).
"""

from __future__ import annotations

import asyncio
import ctypes
import gc
import logging
import os
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

TICK_S = 10.0
THAW_S = 3600.0
# Oldest-generation objects worth freezing: below this a full pass is short.
BATCH = 20_000


def c_trim() -> Callable[[], object] | None:
    """glibc's ``malloc_trim(0)``, or None where the C library has none."""
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return lambda: trim(0)


def resident_bytes() -> int | None:
    """This process's resident set, or None where /proc has no statm."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


class Freezer:
    def __init__(
        self,
        *,
        thaw_s: float = THAW_S,
        batch: int = BATCH,
        trim: Callable[[], object] | None = None,
    ) -> None:
        self.thaw_s = thaw_s
        self.batch = batch
        self._thawed = time.monotonic()
        self._trim = trim if trim is not None else c_trim()

    def tick(self, now: float) -> str | None:
        """What this tick did: "freeze", "thaw" or None."""
        if now - self._thawed >= self.thaw_s:
            self._thawed = now
            started = time.perf_counter()
            gc.unfreeze()
            gc.collect()  # what is frozen is never collected, until the next thaw
            gc.freeze()
            log.info("thawed, collected, frozen again (pause %.3fs)", time.perf_counter() - started)
            self.give_back()
            return "thaw"
        # A list of references, ~10 ms for a million: cheap once a tick.
        old = len(gc.get_objects(generation=2))
        if old >= self.batch:
            gc.freeze()
            log.info("%d long-lived objects frozen out of full collections", old)
            self.give_back()
            return "freeze"
        return None

    def give_back(self) -> int | None:
        """Return the C library's free memory to the system; the bytes of RSS it gave."""
        if self._trim is None:
            return None
        before = resident_bytes()
        started = time.perf_counter()
        self._trim()
        after = resident_bytes()
        if before is None or after is None:
            return None
        log.info(
            "gave %.1f MB of freed memory back to the system (pause %.3fs)",
            (before - after) / 1e6,
            time.perf_counter() - started,
        )
        return before - after

    async def run(self, tick_s: float = TICK_S) -> None:
        while True:
            await asyncio.sleep(tick_s)
            self.tick(time.monotonic())
