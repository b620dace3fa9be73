"""The sample servers' PostgreSQL pool and the figures the health document reports."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from mcp_health_operator.server import PoolFigures, PsycopgDatabaseCheck


class DatabasePool:
    """A psycopg pool of a fixed size that can be resized live and saturated on purpose."""

    def __init__(self, dsn: str, size: int, *, acquire_timeout: float = 0.25) -> None:
        self._size = size
        self._acquire_timeout = acquire_timeout
        # min == max: the pool keeps `size` connections open, as the guide's
        # example (10 total = 3 active + 7 idle) implies.
        self.pool: AsyncConnectionPool[AsyncConnection] = AsyncConnectionPool(
            dsn,
            min_size=size,
            max_size=size,
            open=False,
            timeout=acquire_timeout,
            reconnect_timeout=0,  # keep retrying forever while the database is down
            kwargs={"connect_timeout": 2},
        )
        # The health check has a connection of its own, outside the pool: an
        # exhausted pool is a pool problem, and must not read as a lost database.
        self.ping = PsycopgDatabaseCheck(dsn, connect_timeout=2)
        self._held: list[AsyncConnection] = []
        self._in_use = 0
        self._hold_task: asyncio.Task[None] | None = None

    @property
    def size(self) -> int:
        return self._size

    async def open(self) -> None:
        await self.pool.open(wait=False)

    async def close(self) -> None:
        await self.release()
        await self.ping.aclose()
        await self.pool.close()

    async def resize(self, size: int) -> None:
        """Change the pool size live (no restart)."""
        self._size = size
        await self.pool.resize(min_size=size, max_size=size)

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[AsyncConnection]:
        """A pooled connection, counted as active while it is out."""
        async with self.pool.connection(timeout=self._acquire_timeout) as conn:
            self._in_use += 1
            try:
                yield conn
            finally:
                self._in_use -= 1

    def figures(self) -> PoolFigures:
        # Count checkouts ourselves: psycopg's pool_size includes connections
        # still being opened, which would read as busy while the pool grows.
        stats = self.pool.get_stats()
        active = self._in_use + len(self._held)
        return PoolFigures(
            total=self._size,
            active=active,
            idle=max(self._size - active, 0),
            waiting=stats.get("requests_waiting", 0),
            utilization=min(active / self._size, 1.0) if self._size else 0.0,
        )

    async def hold(self, connections: int, seconds: float) -> int:
        """Check out ``connections`` and keep them for ``seconds`` (saturates the pool)."""
        await self.release()
        for _ in range(connections):
            try:
                self._held.append(await self.pool.getconn(timeout=2))
            except Exception:
                break
        held = len(self._held)
        self._hold_task = asyncio.create_task(self._release_after(seconds))
        return held

    async def _release_after(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
        await self._return_held()

    async def release(self) -> None:
        if self._hold_task is not None:
            self._hold_task.cancel()
            self._hold_task = None
        await self._return_held()

    async def _return_held(self) -> None:
        held, self._held = self._held, []
        for conn in held:
            await self.pool.putconn(conn)
