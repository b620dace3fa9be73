"""The Go benchmark fleet (``bench/fleet/*.go``): many MCP targets at little CPU.

The same targets and control API as ``examples/sample_mcp/fleet.py`` (see the
``main.go`` comment for the routes), served by one small Go program instead
of the Python SDK, so that a benchmark's targets cost a small share of a
core and the operator is what gets measured.

``binary()`` builds it with the Go toolchain (standard library only) into the
project's cache (``~/.cache/mcp-health-operator/bench-fleet-<digest>/``), once
per version of its sources; ``command()`` is the command line of either fleet.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Literal

from mcp_health_testbed import samples
from mcp_health_testbed.controlplane import cache_dir

SOURCE = Path(__file__).resolve().parent
Kind = Literal["go", "python"]
KINDS: tuple[Kind, ...] = ("go", "python")


def sources() -> list[Path]:
    """The files the binary is built from (tests excluded)."""
    files = [SOURCE / "go.mod", *sorted(SOURCE.glob("*.go"))]
    return [f for f in files if not f.name.endswith("_test.go")]


def digest() -> str:
    """A digest of the sources: a new one means a new build."""
    h = hashlib.sha256()
    for path in sources():
        h.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def binary() -> Path:
    """The built fleet, building it first if these sources were never built.

    Raises RuntimeError (saying what to install) when Go is missing.
    """
    out = cache_dir() / f"bench-fleet-{digest()}" / "bench-fleet"
    if out.exists():
        return out
    with _lock(out.parent):
        if not out.exists():
            build(out)
    return out


def build(out: Path) -> None:
    go = shutil.which("go")
    if go is None:
        raise RuntimeError(
            "the Go toolchain is needed to build the benchmark fleet (bench/fleet); "
            "install Go (https://go.dev/dl/, or `make system-deps`)"
        )
    print(f"building the benchmark fleet into {out}", file=sys.stderr)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent) as work:
        built = Path(work) / out.name
        subprocess.run(
            [go, "build", "-trimpath", "-ldflags", "-s -w", "-o", str(built), "."],
            cwd=SOURCE,
            env={**os.environ, "CGO_ENABLED": "0"},
            check=True,
        )
        built.replace(out)


@contextlib.contextmanager
def _lock(directory: Path) -> Iterator[None]:
    """One build at a time across processes (parallel tests, a benchmark)."""
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / ".build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def command(
    kind: Kind,
    *,
    targets: int,
    first: int = 0,
    port: int,
    host: str = "127.0.0.1",
    json_response: bool = False,
    extra: Sequence[str] = (),
) -> tuple[list[str], dict[str, str]]:
    """The command line and environment of a fleet of ``kind`` serving ``targets`` targets.

    ``extra``: more flags (the Go fleet's ``--legacy``, ``--event-stream``...).
    """
    flags = ["--targets", str(targets), "--first", str(first), "--host", host, "--port", str(port)]
    if json_response:
        flags.append("--json-response")
    flags += list(extra)
    if kind == "go":
        return [str(binary()), *flags], dict(os.environ)
    env = {**os.environ, "PYTHONPATH": str(samples.examples_dir())}
    return [sys.executable, "-m", "sample_mcp.fleet", *flags], env
