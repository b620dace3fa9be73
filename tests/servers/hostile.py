"""Misbehaving servers, as real processes, for probe tests.

python hostile.py status --code 401 --port P     # every request answers 401
python hostile.py status --code 429 --retry-after 7 --port P
python hostile.py tarpit --port P                # accepts, never answers
"""

from __future__ import annotations

import argparse
import asyncio

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route


def status_app(code: int, retry_after: str | None) -> Starlette:
    async def answer(request: Request) -> Response:
        await request.body()
        headers = {"Retry-After": retry_after} if retry_after else {}
        return PlainTextResponse(f"HTTP {code}", status_code=code, headers=headers)

    return Starlette(routes=[Route("/{path:path}", answer, methods=["GET", "POST", "DELETE"])])


HEALTHY = {
    "status": "healthy",
    "database_status": "connected",
    "uptime_seconds": 1.0,
    "connection_pool": {
        "total_connections": 10,
        "active_connections": 1,
        "idle_connections": 9,
        "waiting_requests": 0,
        "pool_utilization": 0.1,
    },
    "checks": {"database": {"status": "pass", "latency_ms": 1.0}},
}


def doc_app() -> Starlette:
    served = {"count": 0}

    async def document(request: Request) -> Response:
        served["count"] += 1
        return JSONResponse(HEALTHY)

    async def count(request: Request) -> Response:
        return JSONResponse(served)

    return Starlette(
        routes=[Route("/__count", count), Route("/{path:path}", document, methods=["GET"])]
    )


async def tarpit(host: str, port: int) -> None:
    held: list[asyncio.StreamWriter] = []

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)  # keep the connection open and say nothing, ever
        await asyncio.Event().wait()

    server = await asyncio.start_server(accept, host, port)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["status", "tarpit", "doc"])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--code", type=int, default=401)
    parser.add_argument("--retry-after")
    args = parser.parse_args()
    if args.mode == "tarpit":
        asyncio.run(tarpit(args.host, args.port))
    elif args.mode == "doc":
        uvicorn.run(doc_app(), host=args.host, port=args.port, log_level="warning")
    else:
        uvicorn.run(
            status_app(args.code, args.retry_after),
            host=args.host,
            port=args.port,
            log_level="warning",
        )


if __name__ == "__main__":
    main()
