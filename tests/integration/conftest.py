"""Fixtures shared by the probe's integration tests."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator

import pytest

from mcp_health_testbed import _procs
from tests.conftest import HOSTILE

ServerFactory = Callable[..., str]


@pytest.fixture(scope="module")
def server() -> Iterator[ServerFactory]:
    """Hostile server processes, one per argument list, shared by the module's tests."""
    started: dict[tuple[str, ...], tuple[subprocess.Popen[bytes], str]] = {}

    def get(*args: str) -> str:
        if args not in started:
            port = _procs.free_port()
            proc = subprocess.Popen(
                [sys.executable, str(HOSTILE), *args, "--port", str(port)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
            _procs.wait_for_port("127.0.0.1", port, timeout=30, proc=proc)
            started[args] = (proc, f"http://127.0.0.1:{port}")
        return started[args][1]

    yield get
    for proc, _ in started.values():
        _procs.stop(proc)
