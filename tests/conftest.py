"""Fixtures that start real parts: PostgreSQL, sample MCP servers, a control plane."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from mcp_health_testbed import _procs, controlplane, postgres, samples

HOSTILE = Path(__file__).resolve().parent / "servers" / "hostile.py"


@pytest.fixture(scope="session")
def pg() -> Iterator[postgres.Postgres]:
    """A PostgreSQL shared by the session; never stopped by tests (see ``own_pg``)."""
    server = postgres.temporary().start()
    yield server
    server.stop()
    shutil.rmtree(server.workdir, ignore_errors=True)


@pytest.fixture
def own_pg() -> Iterator[postgres.Postgres]:
    """A PostgreSQL of the test's own, which the test may stop and restart."""
    server = postgres.temporary().start()
    yield server
    server.stop()
    shutil.rmtree(server.workdir, ignore_errors=True)


SampleFactory = Callable[..., samples.SampleServer]


@pytest.fixture
def sample_server() -> Iterator[SampleFactory]:
    """Start sample servers (``profile``, ``dsn``, ``transport``, ...); all stop at teardown."""
    started: list[samples.SampleServer] = []

    def start(profile: str = "codebase-mcp", **kwargs: object) -> samples.SampleServer:
        server = samples.SampleServer(profile=profile, **kwargs)  # type: ignore[arg-type]
        started.append(server)
        return server.start()

    yield start
    for server in started:
        server.stop()


@pytest.fixture(scope="session")
def control_plane() -> Iterator[controlplane.ControlPlane]:
    workdir = Path(tempfile.mkdtemp(prefix="mcp-health-cp-"))
    plane = controlplane.ControlPlane(workdir=workdir, audit=True).start()
    yield plane
    plane.stop()
    shutil.rmtree(workdir, ignore_errors=True)


FleetFactory = Callable[[int], str]


@pytest.fixture
def start_fleet(tmp_path: Path) -> Iterator[FleetFactory]:
    """Start ``python -m sample_mcp.fleet`` with targets 0..n-1; returns its base URL."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(targets: int) -> str:
        port = _procs.free_port()
        log = tmp_path / f"fleet-{len(procs)}.log"
        command = ["-m", "sample_mcp.fleet", "--targets", str(targets), "--port", str(port)]
        proc = subprocess.Popen(
            [sys.executable, *command],
            env={**os.environ, "PYTHONPATH": str(samples.examples_dir())},
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        procs.append(proc)
        _procs.wait_for_port("127.0.0.1", port, timeout=30, proc=proc, log=log)
        return f"http://127.0.0.1:{port}"

    yield start
    for proc in procs:
        _procs.stop(proc)


HostileFactory = Callable[..., str]


@pytest.fixture
def hostile_server() -> Iterator[HostileFactory]:
    """Start a misbehaving (or counting) server process; returns its base URL."""
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
