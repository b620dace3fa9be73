"""A monitor's API calls, sent beside its probing: the latest status, the Events, the remediation.

A hung API server makes each call wait out the client's timeout; were the
probe loop to wait with it, a monitor probed every second would probe once
every ten. The probe loop hands its report here and goes on; one task per
monitor sends, while there is something to send (an idle monitor keeps no
task: thousands of them would each hold one), in the order the probe loop
used to (status, then Events, then the remediation step), and only what is
still current: a status or a step superseded by a newer probe before it was
sent is dropped, so a step never acts on a verdict older than the latest.

Plain asyncio: no Kubernetes client, no HTTP (the callables do the I/O).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

S = TypeVar("S")
Step = Callable[[], Awaitable[None]]


class Outbox(Generic[S]):
    def __init__(
        self,
        *,
        write: Callable[[S], Awaitable[None]],
        post: Callable[[], Awaitable[None]],
        label: str,
    ) -> None:
        self._write = write
        self._post = post
        self._label = label
        self._status: S | None = None
        self._step: Step | None = None
        self._events = False
        self._task: asyncio.Task[None] | None = None

    def submit(self, *, status: S | None, events: bool, step: Step | None) -> None:
        """One probe's report. ``status`` None: nothing new to write (an earlier one still
        goes); ``step``: the remediation step of this verdict, replacing any not yet run."""
        if status is not None:
            self._status = status
        self._events = self._events or events
        self._step = step
        if self._status is None and not self._events and self._step is None:
            return  # nearly every probe: nothing to send, no wake-up
        if self._task is None:  # else the running one takes it before it ends
            self._task = asyncio.create_task(self._run(), name=f"outbox {self._label}")

    def clear(self) -> None:
        """Drop what is not sent yet (a new spec: its own reports follow)."""
        self._status = None
        self._step = None

    @property
    def pending(self) -> bool:
        return self._status is not None or self._events or self._step is not None

    async def drain(self) -> None:
        """Until everything submitted so far is sent (or given up on)."""
        if self._task is not None:
            await asyncio.wait([self._task])  # it ends only when nothing is pending

    async def aclose(self) -> None:
        """Stop sending; what is in flight is abandoned (as if the operator stopped)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.clear()
        self._events = False

    async def _run(self) -> None:
        try:
            while self.pending:
                await self._send_once()
        finally:
            # No await between the last look at ``pending`` and here: a report
            # submitted meanwhile either was seen or starts a new task.
            if self._task is asyncio.current_task():
                self._task = None

    async def _send_once(self) -> None:
        status, self._status = self._status, None
        if status is not None:
            await self._guarded(self._write(status), "status write")
        if self._events:
            self._events = False
            await self._guarded(self._post(), "Events")
        if self._status is not None:
            # A newer probe's status came in meanwhile: it goes out before
            # that probe's step, as the probe loop used to send them.
            return
        # Taken only now: a newer verdict that came in while the status was
        # being written replaces the step of the older one.
        step, self._step = self._step, None
        if step is not None:
            await self._guarded(step(), "remediation")

    async def _guarded(self, call: Awaitable[None], what: str) -> None:
        try:
            await call
        except Exception:  # a bug in one report must not stop the ones to come
            log.exception("%s for %s failed", what, self._label)
