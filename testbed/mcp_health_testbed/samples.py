"""Launching the sample MCP servers of ``examples/sample_mcp`` as real processes."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from mcp_health_testbed import _procs


def examples_dir() -> Path:
    """The repository's ``examples/`` (override with ``MCP_HEALTH_EXAMPLES``)."""
    explicit = os.environ.get("MCP_HEALTH_EXAMPLES")
    if explicit:
        return Path(explicit)
    return Path(__file__).resolve().parents[2] / "examples"


@dataclass
class SampleServer:
    """``python -m sample_mcp`` in a subprocess."""

    profile: str
    dsn: str
    transport: str = "streamable-http"
    host: str = "127.0.0.1"
    port: int = 0
    pool_size: int = 10
    extra_args: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    _proc: subprocess.Popen[bytes] | None = None
    _log: Path | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def url(self) -> str:
        """The MCP endpoint for this server's transport."""
        return self.base_url + ("/sse" if self.transport == "sse" else "/mcp")

    @property
    def log(self) -> Path | None:
        return self._log

    def start(self, *, timeout: float = 30) -> SampleServer:
        self.port = self.port or _procs.free_port(self.host)
        fd, name = tempfile.mkstemp(prefix=f"{self.profile}-", suffix=".log")
        os.close(fd)
        self._log = Path(name)
        env = dict(os.environ, PYTHONPATH=str(examples_dir()), **self.env)
        self._proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "sample_mcp",
                "--profile",
                self.profile,
                "--host",
                self.host,
                "--port",
                str(self.port),
                "--transport",
                self.transport,
                "--dsn",
                self.dsn,
                "--pool-size",
                str(self.pool_size),
                *self.extra_args,
            ],
            stdout=self._log.open("ab"),
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        _procs.wait_for_port(self.host, self.port, timeout=timeout, proc=self._proc, log=self._log)
        return self

    def stop(self) -> None:
        _procs.stop(self._proc)
        self._proc = None

    def __enter__(self) -> SampleServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
