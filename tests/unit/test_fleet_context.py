"""A monitor's task starts with an empty context, not the watch handler's that created it.

kopf's handler context holds the whole watch event (managedFields and all); a
task copies its creator's context, so a monitor started from a handler would
keep that event for as long as it runs.
"""

from __future__ import annotations

import asyncio
import contextvars
from typing import cast

from mcp_health_operator.controller.fleet import Fleet
from mcp_health_operator.controller.monitor import MonitorObject, MonitorWorker
from mcp_health_operator.core.config import Config
from mcp_health_operator.kube.api import Kube, ObjectRef

event_var: contextvars.ContextVar[dict[str, object]] = contextvars.ContextVar("event")


class Recording(Fleet):
    seen: list[dict[str, object] | None]

    async def _run(self, key: tuple[str, str], worker: MonitorWorker) -> None:
        self.seen.append(event_var.get(None))


def test_a_monitor_task_holds_nothing_of_the_handler_context() -> None:
    async def scenario() -> list[dict[str, object] | None]:
        fleet = Recording(kube=cast(Kube, object()), config=Config())
        fleet.seen = []

        def handler() -> None:  # as kopf runs an event handler: its own context
            event_var.set({"metadata": {"managedFields": ["..."]}})
            fleet.upsert(MonitorObject(ObjectRef("ns", "m", "uid-m"), 1, {}))

        contextvars.copy_context().run(handler)
        await asyncio.gather(*fleet._tasks.values())
        return fleet.seen

    assert asyncio.run(scenario()) == [None]
