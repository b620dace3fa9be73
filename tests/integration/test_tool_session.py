"""One owner per session: remediation's MCP tool call never goes through the probing session.

The probing loop owns its prober's session; the pool-scaling tool is called on
a client of its own, so tool calls and probes running at once neither race on
one session's state nor disturb the session the probes keep.
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

from mcp_health_operator.controller.metrics import MonitorFigures
from mcp_health_operator.controller.remediator import Remediator
from mcp_health_operator.core import spec
from mcp_health_operator.core.config import Config
from mcp_health_operator.core.remediation import Action, FleetState, Intent
from mcp_health_operator.core.targets import Target
from mcp_health_operator.kube.api import Kube, ObjectRef
from mcp_health_operator.probing.probe import Prober
from mcp_health_testbed.postgres import Postgres
from tests.conftest import SampleFactory

REF = ObjectRef("default", "codebase-mcp", "uid-1")
TOOL = spec.parse(
    {
        "target": {"service": {"name": "codebase-mcp", "port": 8000}},
        "remediation": {"poolScaling": {"method": "mcpTool", "after": "1s", "max": 50}},
    }
).remediation


async def test_tool_calls_and_probes_at_once_keep_the_probing_session(
    sample_server: SampleFactory, pg: Postgres
) -> None:
    assert TOOL is not None
    server = sample_server("codebase-mcp", dsn=pg.dsn, pool_size=10)
    prober = Prober(Target(server.base_url + "/mcp"), timeout=5.0)
    remediator = Remediator(
        kube=cast(Kube, None),  # the tool method reads and writes no API object
        config=Config(),
        figures=MonitorFigures("default", "codebase-mcp", ""),
        fleet_state=lambda: FleetState(1, 1, 0),
        status={},
    )
    try:
        first = await prober.probe()
        assert first.ok, first
        kept: tuple[Any, ...] = (prober._session_holder, prober._mcp_session_id)

        async def probes() -> list[Any]:
            return [await prober.probe() for _ in range(30)]

        async def tools() -> list[str]:
            return [
                await remediator._act(
                    TOOL, REF, Intent(Action.SCALE_UP, "pool exhausted", pool_size=11 + i), prober
                )
                for i in range(5)
            ]

        results, answers = await asyncio.gather(probes(), tools())
        assert all(r.ok for r in results), [r for r in results if not r.ok]
        assert all("scale_pool(size=" in a for a in answers), answers
        # The probing session is the one it was: the tool calls never touched it.
        assert (prober._session_holder, prober._mcp_session_id) == kept
        last = await prober.probe()
        assert last.document is not None and last.document.connection_pool is not None
        assert last.document.connection_pool.total_connections == 15
    finally:
        await prober.aclose()
