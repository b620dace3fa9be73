"""A monitor's Events waiting to be posted: counted when they happen, posted when they can.

The aggregator (the core's correlator) counts an Event at the moment the
verdict changes; the post may fail (an API outage), so the Event waits here
under its name, holding only its latest count, and goes out before the next
ones. Health transitions over the monitor's Event budget (the spam filter)
are dropped and counted; remediation's Events are the audit trail of its
actions and pass whatever the budget says.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime

from mcp_health_operator.controller.metrics import MonitorFigures
from mcp_health_operator.core import events
from mcp_health_operator.kube.api import Kube, ObjectRef

log = logging.getLogger(__name__)

MAX_UNPOSTED_EVENTS = 50


class EventSpool:
    def __init__(
        self,
        *,
        kube: Kube,
        aggregator: events.Aggregator,
        figures: MonitorFigures,
        ref: ObjectRef,
    ) -> None:
        self.kube = kube
        self.aggregator = aggregator
        self.figures = figures
        self.ref = ref
        self._unposted: dict[str, tuple[events.EventSpec, events.Post, datetime]] = {}

    def __bool__(self) -> bool:
        return bool(self._unposted)

    def __len__(self) -> int:
        return len(self._unposted)

    def add(self, event: events.EventSpec, *, spam_exempt: bool = False) -> None:
        """Count the Event now (the aggregator's clock); it is posted with the ones waiting."""
        ref = self.ref
        post = self.aggregator.post(
            uid=ref.uid,
            object_name=ref.name,
            event=event,
            now=asyncio.get_running_loop().time(),
        )
        if post.dropped and not spam_exempt:  # over this monitor's Event budget
            self.figures.count_event_dropped(event.reason)
            return
        self._unposted.pop(post.name, None)
        self._unposted[post.name] = (event, post, datetime.now(UTC))
        while len(self._unposted) > MAX_UNPOSTED_EVENTS:  # a long outage: keep the newest
            del self._unposted[next(iter(self._unposted))]

    async def post(self) -> None:
        """Post the Events not yet posted, oldest first; stop at the first failure."""
        ref = self.ref
        for name, (event, post, when) in list(self._unposted.items()):
            try:
                await self.kube.post_event(ref, event, post, when=when)
            except Exception as exc:
                log.warning(
                    "event %s for %s/%s failed (%d waiting): %s",
                    event.reason,
                    ref.namespace,
                    ref.name,
                    len(self._unposted),
                    exc,
                )
                return
            del self._unposted[name]
