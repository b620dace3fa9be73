"""``python -m sample_mcp``: run codebase-mcp or workflow-mcp."""

from __future__ import annotations

import argparse
import asyncio
import os
from pathlib import Path

import uvicorn

from sample_mcp import server
from sample_mcp.health_service import HealthService
from sample_mcp.pool import DatabasePool


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m sample_mcp")
    parser.add_argument("--profile", choices=sorted(server.PROFILES), default="codebase-mcp")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, help="default: 8000 codebase-mcp, 8001 workflow-mcp")
    parser.add_argument(
        "--transport", choices=["streamable-http", "sse"], default="streamable-http"
    )
    parser.add_argument(
        "--dsn", default=os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1/postgres")
    )
    parser.add_argument(
        "--pool-size", type=int, default=int(os.environ.get("DB_POOL_MAX_SIZE", "10"))
    )
    parser.add_argument(
        "--pool-size-file",
        default=os.environ.get("DB_POOL_SIZE_FILE"),
        help="a file holding the pool size (e.g. a mounted ConfigMap key); re-read every "
        "second and applied live when it changes",
    )
    parser.add_argument("--memory-limit-mb", type=float, default=2048.0)
    parser.add_argument(
        "--scale-pool-delay",
        type=float,
        default=0.0,
        help="seconds the scale_pool tool waits before resizing (a slow action, for tests)",
    )
    parser.add_argument(
        "--bearer-token-file",
        default=os.environ.get("SAMPLE_BEARER_TOKEN_FILE"),
        help="require 'Authorization: Bearer <contents of this file>' on every request",
    )
    parser.add_argument("--ssl-certfile", help="serve HTTPS with this certificate (PEM)")
    parser.add_argument("--ssl-keyfile", help="the certificate's private key (PEM)")
    parser.add_argument("--environment", default="production")
    parser.add_argument("--region", default="us-west-2")
    return parser.parse_args(argv)


async def run(args: argparse.Namespace) -> None:
    profile = server.PROFILES[args.profile]
    pool = DatabasePool(args.dsn, args.pool_size)
    await pool.open()
    health = HealthService(
        pool,
        version=profile.version,
        environment=args.environment,
        region=args.region,
        memory_limit_mb=args.memory_limit_mb,
        server_name=profile.name,
    )
    mcp = server.build(profile, pool, health, scale_delay_s=args.scale_pool_delay)
    # Read once at start-up, before serving: blocking is harmless here.
    token_file = Path(args.bearer_token_file) if args.bearer_token_file else None
    token = token_file.read_text().strip() if token_file else None
    config = uvicorn.Config(
        server.app(mcp, args.transport, bearer_token=token),
        host=args.host,
        port=args.port or profile.port,
        log_level="warning",
        lifespan="on",
        ssl_certfile=args.ssl_certfile,
        ssl_keyfile=args.ssl_keyfile,
        # Longer than a health probe's interval (5 s by default, uvicorn's own
        # idle timeout too): a monitor's reads then keep one connection.
        timeout_keep_alive=75,
    )
    watcher = (
        asyncio.create_task(watch_pool_size(pool, Path(args.pool_size_file)))
        if args.pool_size_file
        else None
    )
    try:
        await uvicorn.Server(config).serve()
    finally:
        if watcher is not None:
            watcher.cancel()
        await pool.close()


async def watch_pool_size(pool: DatabasePool, path: Path) -> None:
    """Apply the pool size written to ``path`` (how a mounted ConfigMap key changes)."""
    while True:
        try:
            # A few bytes from a local file: not worth a thread.
            wanted = int(path.read_text().strip())  # noqa: ASYNC240
        except (OSError, ValueError):
            wanted = pool.size
        if wanted >= 1 and wanted != pool.size:
            await pool.resize(wanted)
        await asyncio.sleep(1.0)


def main() -> None:
    asyncio.run(run(parse()))


if __name__ == "__main__":
    main()
