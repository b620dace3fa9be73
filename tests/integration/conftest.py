from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from mcp_health_operator.testing import _procs

HOSTILE = Path(__file__).resolve().parents[1] / "servers" / "hostile.py"

HostileFactory = Callable[..., str]


@pytest.fixture
def hostile_server() -> Iterator[HostileFactory]:
    """Start a misbehaving server process; returns its base URL."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(mode: str, *args: str) -> str:
        port = _procs.free_port()
        proc = subprocess.Popen(
            [sys.executable, str(HOSTILE), mode, "--port", str(port), *args],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        procs.append(proc)
        _procs.wait_for_port("127.0.0.1", port, timeout=15, proc=proc)
        return f"http://127.0.0.1:{port}"

    yield start
    for proc in procs:
        _procs.stop(proc)
