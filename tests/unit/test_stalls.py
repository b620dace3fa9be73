"""The loop's own stalls are not the server's: not its latency, not a timeout."""

from __future__ import annotations

import asyncio
import time

import pytest

from mcp_health_operator.probing import stalls


def block(seconds: float) -> None:
    """The process holds the loop (as when it waits for a core on a loaded node)."""
    time.sleep(seconds)


def test_the_clock_counts_a_blocked_loop_and_not_an_idle_one() -> None:
    async def scenario() -> tuple[float, float]:
        clock = stalls.clock()
        t0 = clock.total()
        await asyncio.sleep(0.3)  # idle: every sentinel on time
        idle = clock.total() - t0
        t1 = clock.total()
        block(0.3)
        blocked = clock.total() - t1  # counted at once: the sentinel is overdue
        return idle, blocked

    idle, blocked = asyncio.run(scenario())
    assert idle < 0.05
    assert 0.2 < blocked < 0.45


def test_an_answer_that_waited_out_a_stall_is_no_timeout() -> None:
    """The answer is ready before the deadline, but the loop is blocked past it."""

    async def scenario() -> str:
        answer: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        asyncio.get_running_loop().call_later(0.05, answer.set_result, "ok")
        asyncio.get_running_loop().call_later(0.02, block, 0.4)  # past the 0.2 s deadline
        async with stalls.Timeout(0.2):
            return await answer

    assert asyncio.run(scenario()) == "ok"


def test_the_same_wait_under_a_plain_timeout_fails() -> None:
    """What the stall-aware timeout is for: asyncio's own reads the stall as a timeout."""

    async def scenario() -> str:
        answer: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        asyncio.get_running_loop().call_later(0.05, answer.set_result, "ok")
        asyncio.get_running_loop().call_later(0.02, block, 0.4)
        async with asyncio.timeout(0.2):
            return await answer

    with pytest.raises(TimeoutError):
        asyncio.run(scenario())


def test_a_silent_server_still_times_out_within_twice_the_budget() -> None:
    async def scenario() -> float:
        never: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        asyncio.get_running_loop().call_later(0.02, block, 0.15)
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            async with stalls.Timeout(0.2):
                await never
        return time.monotonic() - started

    took = asyncio.run(scenario())
    assert 0.2 <= took < 0.4 + 0.3  # the budget, plus the stall (at most another budget)


def test_without_stalls_the_timeout_is_the_budget() -> None:
    async def scenario() -> float:
        never: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            async with stalls.Timeout(0.2):
                await never
        return time.monotonic() - started

    assert 0.19 <= asyncio.run(scenario()) < 0.2 + 0.15


def test_each_loop_has_its_own_clock_and_keeps_it() -> None:
    """The clock of the last loop asked about is remembered; another loop never gets it."""

    async def ask() -> tuple[stalls.Clock, stalls.Clock]:
        return stalls.clock(), stalls.clock()

    first_loop, second_loop = asyncio.new_event_loop(), asyncio.new_event_loop()
    try:
        a1, a2 = first_loop.run_until_complete(ask())
        b1, b2 = second_loop.run_until_complete(ask())
        a3, _ = first_loop.run_until_complete(ask())
    finally:
        first_loop.close()
        second_loop.close()
    assert a1 is a2 is a3
    assert b1 is b2
    assert a1 is not b1


def test_callbacks_due_in_one_tick_run_together_near_their_time() -> None:
    """One loop timer a tick: every callback due in it runs in the same pass."""

    async def scenario() -> tuple[list[str], list[float]]:
        loop = asyncio.get_running_loop()
        clock = stalls.clock()
        ran: list[str] = []
        lateness: list[float] = []
        start = loop.time()
        due = (round(start / stalls.TICK_S) + 10) * stalls.TICK_S  # a tick's own time

        def first() -> None:
            ran.append("first")
            lateness.append(loop.time() - due)
            # Runs after this pass: after every callback of the tick, if they share it.
            loop.call_soon(ran.append, "after the tick")

        clock.at_tick(due, first)
        for offset in (-0.4, 0.0, 0.4):  # all nearest to the same tick
            clock.at_tick(due + offset * stalls.TICK_S, lambda: ran.append("same tick"))
        clock.at_tick(due + 5 * stalls.TICK_S, lambda: lateness.append(loop.time() - due))
        await asyncio.sleep(due - start + 6 * stalls.TICK_S)
        return ran, lateness

    ran, lateness = asyncio.run(scenario())
    assert ran == ["first", "same tick", "same tick", "same tick", "after the tick"]
    assert -0.001 <= lateness[0] < 0.1  # at its tick, not before (a wide margin after)
    assert 5 * stalls.TICK_S - 0.001 <= lateness[1] < 5 * stalls.TICK_S + 0.1


def test_a_failing_callback_is_reported_and_the_rest_of_its_tick_still_run() -> None:
    async def scenario() -> tuple[list[str], list[dict[str, object]]]:
        loop = asyncio.get_running_loop()
        reported: list[dict[str, object]] = []
        loop.set_exception_handler(lambda _loop, context: reported.append(context))
        ran: list[str] = []

        def fails() -> None:
            raise RuntimeError("boom")

        when = loop.time() + 0.05
        stalls.clock().at_tick(when, fails)
        stalls.clock().at_tick(when, lambda: ran.append("still ran"))
        await asyncio.sleep(0.05 + 2 * stalls.TICK_S)
        return ran, reported

    ran, reported = asyncio.run(scenario())
    assert ran == ["still ran"]
    assert [str(c["exception"]) for c in reported] == ["boom"]


def test_a_timeout_that_ended_in_time_does_not_fire_later() -> None:
    """The deadline's tick comes after the read has ended: it must cancel nothing."""

    async def scenario() -> tuple[str, list[dict[str, object]]]:
        reported: list[dict[str, object]] = []
        asyncio.get_running_loop().set_exception_handler(lambda _l, c: reported.append(c))
        async with stalls.Timeout(0.05):
            await asyncio.sleep(0)
        # Past the deadline's tick, in the same task: a stale check would
        # cancel this sleep, or fail on the timeout already left.
        await asyncio.sleep(0.05 + 3 * stalls.TICK_S)
        return "not cancelled", reported

    assert asyncio.run(scenario()) == ("not cancelled", [])
