"""Pool figures from common PostgreSQL pools, and a database check outside the pool.

Typed structurally (Protocols): nothing here imports asyncpg or psycopg_pool,
and psycopg is imported only when a ``PsycopgDatabaseCheck`` first connects.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Protocol

from mcp_health_operator.server.report import PoolFigures, PoolSource

if TYPE_CHECKING:
    from psycopg import AsyncConnection


class StatsPool(Protocol):
    """What ``psycopg_pool.AsyncConnectionPool`` (or ``ConnectionPool``) offers."""

    def get_stats(self) -> dict[str, int]: ...


class SizedPool(Protocol):
    """What ``asyncpg.Pool`` offers."""

    def get_size(self) -> int: ...
    def get_idle_size(self) -> int: ...
    def get_max_size(self) -> int: ...


def figures(total: int, open_: int, idle: int, waiting: int = 0) -> PoolFigures:
    """Figures for a pool of capacity ``total`` with ``open_`` connections, ``idle`` of them free.

    Utilization is against the capacity, not the connections open now: a
    pool that may still grow is not exhausted.
    """
    active = max(open_ - idle, 0)
    return PoolFigures(
        total=total,
        active=active,
        idle=max(idle, 0),
        waiting=max(waiting, 0),
        utilization=min(active / total, 1.0) if total > 0 else 0.0,
    )


def psycopg_pool_figures(pool: StatsPool) -> PoolSource:
    """A ``PoolSource`` for a psycopg pool, from ``get_stats()``.

    psycopg counts connections still being opened in ``pool_size``, so they
    read as active until they are ready: open the pool with ``wait=True``.
    """

    def read() -> PoolFigures:
        stats = pool.get_stats()
        return figures(
            stats.get("pool_max", 0),
            stats.get("pool_size", 0),
            stats.get("pool_available", 0),
            stats.get("requests_waiting", 0),
        )

    return read


def asyncpg_pool_figures(pool: SizedPool) -> PoolSource:
    """A ``PoolSource`` for an ``asyncpg.Pool``, from its sizes."""

    def read() -> PoolFigures:
        return figures(pool.get_max_size(), pool.get_size(), pool.get_idle_size())

    return read


class PsycopgDatabaseCheck:
    """``SELECT 1`` on a connection of its own, outside the pool (a ``DatabaseCheck``).

    An exhausted pool is a pool problem and must not read as a lost database,
    so the check never borrows from the pool. The connection is made on first
    use and again after any failure. (With asyncpg: ``conn.fetchval("SELECT 1")``
    on a connection from ``asyncpg.connect`` serves the same purpose.)
    """

    def __init__(self, dsn: str, *, connect_timeout: int = 2) -> None:
        self.dsn = dsn
        self.connect_timeout = connect_timeout
        self._conn: AsyncConnection | None = None
        # One read at a time: concurrent health reads share the connection.
        self._lock = asyncio.Lock()

    async def __call__(self) -> None:
        from psycopg import AsyncConnection

        async with self._lock:
            try:
                if self._conn is None or self._conn.closed:
                    self._conn = await AsyncConnection.connect(
                        self.dsn, autocommit=True, connect_timeout=self.connect_timeout
                    )
                await self._conn.execute("SELECT 1")
            except BaseException:
                # Cancelled mid-query or failed: the connection's state is unknown.
                conn, self._conn = self._conn, None
                if conn is not None:
                    await conn.close()
                raise

    async def aclose(self) -> None:
        async with self._lock:
            conn, self._conn = self._conn, None
            if conn is not None:
                await conn.close()
