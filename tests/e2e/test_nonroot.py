"""``mcp-health run`` as the image runs it in a pod: uid 65532 with no passwd
entry, no USER or LOGNAME, HOME=/tmp and a read-only root filesystem.

The process starts as root in a mount namespace of its own, where ``/`` is
remounted read-only and directories the uid could not traverse (a Python under
``/root``) are replaced by a tmpfs that exposes only the interpreter; then
``setpriv`` drops to the uid and execs the operator.
"""

from __future__ import annotations

import os
import pwd
import shlex
import shutil
import stat
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from mcp_health_testbed import _procs, controlplane
from tests.e2e.conftest import REPO, Kubectl, monitor, service, wait_for

UID = GID = 65532


def _no_passwd_entry(uid: int) -> bool:
    try:
        pwd.getpwuid(uid)
    except KeyError:
        return True
    return False


@pytest.fixture(autouse=True)
def _can_drop_to_the_uid() -> None:
    """Everything this needs is on the project's machines: fail loudly, never skip."""
    missing = [
        what
        for what, ok in (
            ("root", os.geteuid() == 0),
            (
                "unshare and setpriv (util-linux)",
                shutil.which("unshare") and shutil.which("setpriv"),
            ),
            (f"uid {UID} without a passwd entry", _no_passwd_entry(UID)),
        )
        if not ok
    ]
    if missing:
        pytest.fail("this test needs " + ", ".join(missing))


def _blocked_ancestor(path: Path) -> Path | None:
    """The topmost ancestor of ``path`` that others may not traverse, if any."""
    for parent in reversed(path.parents):
        if not os.stat(parent).st_mode & stat.S_IXOTH:
            return parent
    return None


def sandbox(workdir: Path, command: list[str]) -> list[str]:
    """``command`` as uid 65532 under a read-only ``/`` in a private mount namespace."""
    keeps = [
        (blocked, Path(keep))
        for keep in {sys.base_prefix, sys.prefix, str(REPO)}
        if (blocked := _blocked_ancestor(Path(keep).resolve())) is not None
    ]
    lines = ["set -eu"]
    for i, (_, keep) in enumerate(keeps):
        stage = workdir / f"keep-{i}"
        stage.mkdir()
        lines.append(f"mount --bind {shlex.quote(str(keep))} {shlex.quote(str(stage))}")
    for blocked in sorted({b for b, _ in keeps}):
        lines.append(f"mount -t tmpfs -o mode=0755 tmpfs {shlex.quote(str(blocked))}")
    for i, (_, keep) in enumerate(keeps):
        stage = workdir / f"keep-{i}"
        lines.append(f"mkdir -p {shlex.quote(str(keep))}")
        lines.append(f"mount --move {shlex.quote(str(stage))} {shlex.quote(str(keep))}")
    lines += [
        "mount -o remount,bind,ro /",
        f'exec setpriv --reuid={UID} --regid={GID} --clear-groups -- "$@"',
    ]
    script = "\n".join(lines)
    return [
        "unshare",
        "--mount",
        "--propagation",
        "private",
        "--",
        "sh",
        "-c",
        script,
        "sh",
        *command,
    ]


@pytest.fixture
def workdir() -> Iterator[Path]:
    """A folder uid 65532 may read (pytest's tmp_path is root's only)."""
    path = Path(tempfile.mkdtemp(prefix="mcp-health-nonroot-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def healthz(port: int) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
            return int(response.status)
    except (urllib.error.URLError, OSError):
        return 0


def test_operator_runs_as_a_uid_without_passwd_entry_on_a_read_only_root(
    kubectl: Kubectl, workdir: Path
) -> None:
    plane = kubectl.plane
    ca = workdir / "ca.crt"
    shutil.copy(plane.ca_file, ca)
    kubeconfig = workdir / "kubeconfig"
    kubeconfig.write_text(
        controlplane.kubeconfig_text(
            server=plane.server, ca_file=ca, user="admin", token=plane.token
        )
    )
    for path in (ca, kubeconfig):
        os.chown(path, UID, GID)
        path.chmod(0o600)
    env = {k: v for k, v in os.environ.items() if k not in ("USER", "LOGNAME", "LNAME", "USERNAME")}
    env.update(HOME="/tmp", KUBECONFIG=str(kubeconfig))
    port = _procs.free_port()
    log = workdir / "operator.log"
    command = [sys.executable, "-m", "mcp_health_operator.runtime.cli", "run"]
    command += ["--namespace", kubectl.namespace, "--metrics-host", "127.0.0.1"]
    command += ["--metrics-port", str(port)]
    proc = subprocess.Popen(
        sandbox(workdir, command),
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        _procs.wait_for_port("127.0.0.1", port, timeout=30, proc=proc, log=log)
        wait_for(lambda: healthz(port) == 200, timeout=30, what="/healthz 200")
        # /healthz answers before kopf starts; a monitor's first status shows
        # the watch (and so the identity kopf needs) works.
        kubectl.apply(service("nowhere"))
        kubectl.apply(monitor("nowhere", service="nowhere"))
        wait_for(
            lambda: (
                proc.poll() is None
                and kubectl.json("mcphealth", "nowhere").get("status", {}).get("health")
            ),
            timeout=60,
            what=f"a status written by the operator{_procs.tail(log)}",
        )
        assert proc.poll() is None, _procs.tail(log)
        assert healthz(port) == 200
        owner = os.stat(f"/proc/{proc.pid}").st_uid
        assert owner == UID, f"the operator runs as uid {owner}"
    finally:
        _procs.stop(proc)
    text = log.read_text(errors="replace")
    assert "Traceback" not in text, text
    assert proc.returncode == 0, text
