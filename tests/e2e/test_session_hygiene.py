"""The operator ends the MCP sessions it opens: at most one per monitor, across restarts.

``mcp-health run --rehandshake-after 2`` probes N monitors on one stateful SDK server
(``mcp_health_testbed.stateful``: legacy Streamable HTTP, sessions held until
their ``DELETE``, no idle timeout), which counts the sessions in the SDK's own
session table:

* while it runs, re-handshaking every few probes, the server never holds
  more than N sessions;
* stopped by SIGTERM, the operator ends all of them (a ``DELETE`` each)
  before it exits; started again, it holds N again, never more.

A SIGKILL'd operator cannot end anything: what it leaves behind is measured
and printed, and only the server's idle timeout ends it (the SDK's default
is 30 minutes); ``test_sigkill_leftovers_are_measured`` shows it with a 5 s
timeout.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator

import pytest

from mcp_health_testbed import _procs
from mcp_health_testbed.stateful import StatefulServer
from tests.e2e.conftest import Kubectl, Operator, OperatorFactory, monitor, wait_for

N = 5
REHANDSHAKE_AFTER = 2.0
REHANDSHAKE = f"--rehandshake-after={REHANDSHAKE_AFTER}"
WINDOW = 10.0  # seconds watched in each phase: five re-handshake periods


@pytest.fixture
def stateful() -> Iterator[Callable[..., StatefulServer]]:
    servers: list[StatefulServer] = []

    def start(**kwargs: object) -> StatefulServer:
        server = StatefulServer(**kwargs)  # type: ignore[arg-type]
        servers.append(server)
        return server.start()

    yield start
    for server in servers:
        server.stop()


def _apply_monitors(kubectl: Kubectl, server: StatefulServer) -> None:
    for i in range(N):
        kubectl.apply(monitor(f"m{i}", url=server.url, interval="1s", timeout="800ms"))


def _all_healthy(kubectl: Kubectl) -> bool:
    items = kubectl.json("mcphealth")["items"]
    healths = [(item.get("status") or {}).get("health") for item in items]
    return len(healths) == N and all(h == "Healthy" for h in healths)


def _watch(server: StatefulServer, seconds: float) -> tuple[int, dict[str, int]]:
    """The most live sessions seen by polling for ``seconds``, and the last figures."""
    deadline = time.monotonic() + seconds
    most, figures = 0, server.sessions()
    while time.monotonic() < deadline:
        figures = server.sessions()
        most = max(most, figures["live"])
        time.sleep(0.1)
    return most, figures


def _signal(op: Operator, sig: int) -> tuple[int | None, float]:
    """Send ``sig`` to the operator's process group; its exit code and seconds to exit."""
    started = time.monotonic()
    os.killpg(op.proc.pid, sig)
    try:
        code: int | None = op.proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        code = None
    return code, time.monotonic() - started


def _live_settled(server: StatefulServer, within: float = 5.0) -> dict[str, int]:
    deadline = time.monotonic() + within
    figures = server.sessions()
    while figures["live"] and time.monotonic() < deadline:
        time.sleep(0.1)
        figures = server.sessions()
    return figures


@pytest.mark.timeout(400)
def test_sessions_stay_one_per_monitor_across_rehandshakes_and_a_sigterm_restart(
    kubectl: Kubectl, operator: OperatorFactory, stateful: Callable[..., StatefulServer]
) -> None:
    server = stateful()
    allow = f"--allow-url=http://127.0.0.1:{server.port}"
    first = operator(allow, REHANDSHAKE)
    _apply_monitors(kubectl, server)
    wait_for(lambda: _all_healthy(kubectl), timeout=90, what="all monitors Healthy")

    # Running, re-handshaking every other probe: never more than N at once.
    polled, running = _watch(server, WINDOW)
    print(f"\n[e2e hygiene] first operator, after {WINDOW}s: polled max={polled} {running}")
    assert running["live_max"] <= N, running
    # Between ending its old session and making the new one a monitor holds
    # none for a moment: one each, once no re-handshake is under way.
    wait_for(lambda: server.sessions()["live"] == N, timeout=10, what="one session a monitor")
    assert running["created"] >= 3 * N, "the window must hold re-handshakes"

    # SIGTERM: a graceful stop ends every session it held.
    code, took = _signal(first, signal.SIGTERM)
    after_term = _live_settled(server)
    print(f"[e2e hygiene] SIGTERM: exit={code} in {took:.1f}s; server then: {after_term}")
    assert code is not None, "the operator did not exit within 30 s of SIGTERM"
    assert after_term["live"] == 0, (after_term, _procs.tail(first.log))
    assert after_term["deletes_ok"] == after_term["created"], after_term

    # Started again: N again, never more (live_max counted from the restart).
    server.sessions(reset=True)
    created_before = after_term["created"]
    second = operator(allow, REHANDSHAKE)
    wait_for(
        lambda: server.sessions()["created"] >= created_before + N,
        timeout=60,
        what="the new operator's sessions",
    )
    polled, restarted = _watch(server, WINDOW)
    print(f"[e2e hygiene] second operator, after {WINDOW}s: polled max={polled} {restarted}")
    assert restarted["live_max"] <= N, restarted
    wait_for(lambda: server.sessions()["live"] == N, timeout=10, what="one session a monitor")
    assert wait_for(lambda: _all_healthy(kubectl), timeout=30, what="Healthy after restart")

    code, took = _signal(second, signal.SIGTERM)
    final = _live_settled(server)
    print(f"[e2e hygiene] second SIGTERM: exit={code} in {took:.1f}s; server then: {final}")
    assert final["live"] == 0, (final, _procs.tail(second.log))
    assert final["ended"] == final["created"] == final["deletes_ok"], final


@pytest.mark.timeout(300)
def test_sigkill_leftovers_are_measured(
    kubectl: Kubectl, operator: OperatorFactory, stateful: Callable[..., StatefulServer]
) -> None:
    """What a SIGKILL'd operator leaves on the server: measured and printed, not judged.

    A killed process sends nothing; its sessions stay on the server until the
    server's idle timeout (the SDK's ``session_idle_timeout``, 30 minutes by
    default; 5 s here) ends them. Asserted only: no more than N were left
    (one per monitor), and a new operator adds its own N, not more.
    """
    idle = 5.0
    server = stateful(idle_timeout=idle)
    allow = f"--allow-url=http://127.0.0.1:{server.port}"
    killed = operator(allow, REHANDSHAKE)
    _apply_monitors(kubectl, server)
    wait_for(lambda: _all_healthy(kubectl), timeout=90, what="all monitors Healthy")
    _, before = _watch(server, 2 * REHANDSHAKE_AFTER)

    code, _ = _signal(killed, signal.SIGKILL)
    killed_at = time.monotonic()
    left = server.sessions()
    print(f"\n[e2e hygiene] SIGKILL: exit={code}; server at once: {left} (before: {before})")

    server.sessions(reset=True)
    successor = operator(allow, REHANDSHAKE)
    wait_for(
        lambda: server.sessions()["created"] >= left["created"] + N,
        timeout=60,
        what="the new operator's sessions",
    )
    overlap = server.sessions()
    print(f"[e2e hygiene] new operator beside the leftovers: {overlap}")

    def at_most_n() -> dict[str, int] | None:
        figures = server.sessions()
        return figures if figures["live"] <= N else None

    reaped = wait_for(
        at_most_n,
        timeout=idle * 6,
        what="the leftovers reaped by the idle timeout",
    )
    print(
        f"[e2e hygiene] leftovers gone {time.monotonic() - killed_at:.1f}s after the kill"
        f" (idle timeout {idle}s): {reaped}"
    )
    assert left["live"] <= N, left
    assert overlap["live_max"] <= left["live"] + N, overlap
    _signal(successor, signal.SIGTERM)
    final = _live_settled(server)
    print(f"[e2e hygiene] successor stopped by SIGTERM: {final}")
