"""A real, throwaway PostgreSQL cluster on loopback.

``initdb`` refuses to run as root, and CI runs as root, so when the current
user is root every PostgreSQL command runs as the ``postgres`` system user
(``runuser``) and the data directory is handed to that user.

The server can be stopped and started again on the same port and data
directory mid-test, which is how tests drive a sample server's database
``disconnected`` and back.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from mcp_health_testbed import _procs


def pg_bindir() -> Path:
    """Where ``initdb`` and ``postgres`` live (newest installed major first)."""
    explicit = os.environ.get("PG_BINDIR")
    if explicit:
        return Path(explicit)
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name), reverse=True
    )
    for candidate in candidates:
        if Path(candidate, "initdb").exists():
            return Path(candidate)
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    raise RuntimeError("PostgreSQL server binaries not found (apt-get install postgresql)")


def _as_db_user(argv: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return argv
    return ["runuser", "-u", "postgres", "--", *argv]


@dataclass
class Postgres:
    """A PostgreSQL server with trust auth for user ``postgres`` on loopback."""

    workdir: Path
    host: str = "127.0.0.1"
    port: int = 0
    user: str = "postgres"
    database: str = "postgres"
    _proc: subprocess.Popen[bytes] | None = None

    @property
    def datadir(self) -> Path:
        return self.workdir / "data"

    @property
    def dsn(self) -> str:
        return f"postgresql://{self.user}@{self.host}:{self.port}/{self.database}"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def init(self) -> Postgres:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.workdir.chmod(0o755)
        if os.geteuid() == 0:
            pw = pwd.getpwnam("postgres")
            os.chown(self.workdir, pw.pw_uid, pw.pw_gid)
        if not (self.datadir / "PG_VERSION").exists():
            done = subprocess.run(
                _as_db_user(
                    [
                        str(pg_bindir() / "initdb"),
                        "-D",
                        str(self.datadir),
                        "-U",
                        self.user,
                        "--auth=trust",
                        "--no-sync",
                        "-E",
                        "UTF8",
                        "--locale=C",
                    ]
                ),
                check=False,
                capture_output=True,
                text=True,
            )
            if done.returncode != 0:
                raise RuntimeError(
                    f"initdb failed in {self.datadir} (the directory and its parents must be "
                    f"reachable by the postgres user): {done.stderr.strip()}"
                )
        return self

    def start(self, *, timeout: float = 30) -> Postgres:
        if self.running:
            return self
        if not (self.datadir / "PG_VERSION").exists():
            self.init()
        self.port = self.port or _procs.free_port()
        log = self.workdir / "postgres.log"
        if os.geteuid() == 0:
            log.touch()
            pw = pwd.getpwnam("postgres")
            os.chown(log, pw.pw_uid, pw.pw_gid)
        # The socket goes into the (postgres-owned) workdir, not /var/run.
        self._proc = subprocess.Popen(
            _as_db_user(
                [
                    str(pg_bindir() / "postgres"),
                    "-D",
                    str(self.datadir),
                    "-h",
                    self.host,
                    "-p",
                    str(self.port),
                    "-k",
                    str(self.workdir),
                    "-c",
                    "fsync=off",
                    "-c",
                    "max_connections=200",
                ]
            ),
            stdout=log.open("ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        _procs.wait_for_port(self.host, self.port, timeout=timeout, proc=self._proc, log=log)
        self._wait_accepting(timeout=timeout)
        return self

    def _wait_accepting(self, *, timeout: float) -> None:
        # The port opens before recovery ends; pg_isready tells when queries work.
        isready = pg_bindir() / "pg_isready"
        if not isready.exists():
            return
        deadline_runs = int(timeout / 0.1)
        for _ in range(deadline_runs):
            done = subprocess.run(
                [str(isready), "-h", self.host, "-p", str(self.port), "-q"], check=False
            )
            if done.returncode == 0:
                return
            time.sleep(0.1)
        raise TimeoutError(f"PostgreSQL on port {self.port} not accepting connections")

    def stop(self) -> None:
        """Fast shutdown (SIGINT): active connections are cut, as in an outage."""
        _procs.stop(self._proc, sig=signal.SIGINT, timeout=30)
        self._proc = None

    def restart(self) -> Postgres:
        self.stop()
        return self.start()

    def __enter__(self) -> Postgres:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def temporary(prefix: str = "mcp-health-pg-") -> Postgres:
    """A Postgres in a new temporary directory (not yet started)."""
    return Postgres(workdir=Path(tempfile.mkdtemp(prefix=prefix)))
