"""``mcp-health run --loop``: which event loop the operator runs on."""

from __future__ import annotations

import asyncio
import sys

import pytest
import uvloop

from mcp_health_operator.runtime import cli


def test_auto_and_uvloop_choose_uvloop_when_installed() -> None:
    assert cli.event_loop_factory("auto") is uvloop.new_event_loop
    assert cli.event_loop_factory("uvloop") is uvloop.new_event_loop
    loop = cli.event_loop_factory("auto")()
    try:
        assert isinstance(loop, uvloop.Loop)
    finally:
        loop.close()


def test_asyncio_is_the_standard_librarys_loop() -> None:
    assert cli.event_loop_factory("asyncio") is asyncio.new_event_loop


def test_without_uvloop_auto_falls_back_and_uvloop_is_an_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # import uvloop now raises ImportError
    assert cli.event_loop_factory("auto") is asyncio.new_event_loop
    with pytest.raises(ImportError):
        cli.event_loop_factory("uvloop")


def test_run_refuses_uvloop_when_it_is_missing(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)
    assert cli.main(["run", "--loop", "uvloop"]) == cli.EXIT_ERROR
    assert "--loop uvloop needs the uvloop package" in capsys.readouterr().err


def test_the_loop_flag_refuses_other_names(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["run", "--loop", "trio"])
    assert exited.value.code == 2
    assert "invalid choice: 'trio'" in capsys.readouterr().err
