"""The outbox: a monitor's API calls sent beside its probing, latest first, in order."""

from __future__ import annotations

import asyncio

from mcp_health_operator.controller.outbox import Outbox, Step


class Api:
    """Records the calls in order; ``hang`` holds every call until released (a frozen server)."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.hang = asyncio.Event()
        self.hang.set()
        self.fail_writes = False

    async def write(self, status: str) -> None:
        await self.hang.wait()
        if self.fail_writes:
            raise RuntimeError("boom")
        self.calls.append(f"status {status}")

    async def post(self) -> None:
        await self.hang.wait()
        self.calls.append("events")

    def step(self, name: str) -> Step:
        async def run() -> None:
            await self.hang.wait()
            self.calls.append(f"step {name}")

        return run


def outbox(api: Api) -> Outbox[str]:
    return Outbox(write=api.write, post=api.post, label="ns/m")


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def test_one_report_is_sent_status_then_events_then_step() -> None:
    async def scenario() -> list[str]:
        api = Api()
        box = outbox(api)
        box.submit(status="1", events=True, step=api.step("1"))
        await box.drain()
        await box.aclose()
        return api.calls

    assert asyncio.run(scenario()) == ["status 1", "events", "step 1"]


def test_a_hung_api_server_does_not_hold_the_submitter_and_only_the_latest_is_sent() -> None:
    async def scenario() -> list[str]:
        api = Api()
        box = outbox(api)
        api.hang.clear()
        box.submit(status="1", events=False, step=api.step("1"))
        await settle()  # the sender is now stuck writing status 1
        for i in range(2, 6):  # the probes go on: submit never waits
            box.submit(status=str(i), events=False, step=api.step(str(i)))
        assert api.calls == []
        api.hang.set()
        await box.drain()
        await box.aclose()
        return api.calls

    # Status 1 was in flight; statuses 2-4 and steps 1-4 were superseded;
    # the latest step runs after its own status.
    assert asyncio.run(scenario()) == ["status 1", "status 5", "step 5"]


def test_a_probe_with_no_new_status_keeps_the_unsent_one_but_replaces_the_step() -> None:
    async def scenario() -> list[str]:
        api = Api()
        box = outbox(api)
        api.hang.clear()
        box.submit(status="0", events=False, step=None)
        await settle()
        box.submit(status="1", events=False, step=api.step("1"))
        box.submit(status=None, events=False, step=None)  # remediation no longer due
        api.hang.set()
        await box.drain()
        await box.aclose()
        return api.calls

    assert asyncio.run(scenario()) == ["status 0", "status 1"]


def test_a_failed_call_does_not_stop_the_reports_to_come() -> None:
    async def scenario() -> list[str]:
        api = Api()
        box = outbox(api)
        api.fail_writes = True
        box.submit(status="1", events=True, step=api.step("1"))
        await box.drain()
        api.fail_writes = False
        box.submit(status="2", events=False, step=None)
        await box.drain()
        await box.aclose()
        return api.calls

    assert asyncio.run(scenario()) == ["events", "step 1", "status 2"]


def test_nothing_to_send_starts_no_task() -> None:
    async def scenario() -> bool:
        api = Api()
        box = outbox(api)
        box.submit(status=None, events=False, step=None)
        await box.drain()
        return box._task is None

    assert asyncio.run(scenario())


def test_closing_stops_the_sender_and_drops_what_is_unsent() -> None:
    async def scenario() -> tuple[list[str], bool]:
        api = Api()
        box = outbox(api)
        api.hang.clear()
        box.submit(status="1", events=True, step=api.step("1"))
        await settle()
        task = box._task
        assert task is not None
        await asyncio.wait_for(box.aclose(), timeout=1)
        api.hang.set()
        await settle()
        return api.calls, task.done() and not box.pending

    calls, stopped = asyncio.run(scenario())
    assert calls == [] and stopped


def test_clear_drops_the_unsent_status_and_step_of_an_old_spec() -> None:
    async def scenario() -> list[str]:
        api = Api()
        box = outbox(api)
        api.hang.clear()
        box.submit(status="old", events=False, step=None)
        await settle()
        box.submit(status="old2", events=False, step=api.step("old"))
        box.clear()
        box.submit(status="new", events=False, step=None)
        api.hang.set()
        await box.drain()
        await box.aclose()
        return api.calls

    assert asyncio.run(scenario()) == ["status old", "status new"]


def test_an_idle_outbox_holds_no_task_and_the_next_report_starts_one() -> None:
    """Thousands of monitors are idle nearly all the time: none may keep a task waiting."""

    async def scenario() -> tuple[int, int, list[str]]:
        api = Api()
        box = outbox(api)
        before = len(asyncio.all_tasks())
        box.submit(status="1", events=False, step=None)
        during = len(asyncio.all_tasks())
        await box.drain()
        await settle()
        after = len(asyncio.all_tasks())
        box.submit(status="2", events=True, step=None)  # a later report still goes out
        await box.drain()
        await box.aclose()
        return during - before, after - before, api.calls

    during, after, calls = asyncio.run(scenario())
    assert (during, after) == (1, 0)
    assert calls == ["status 1", "status 2", "events"]
