"""runtime.heap: the fleet frozen out of full collections once it settles, thawed hourly."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from mcp_health_operator.runtime.heap import Freezer


@pytest.fixture(autouse=True)
def thawed() -> Iterator[None]:
    gc.unfreeze()
    yield
    gc.unfreeze()


def test_frozen_once_settled_and_again_after_growing() -> None:
    size = [0]
    freezer = Freezer(lambda: size[0], thaw_s=1e9)
    size[0] = 100
    assert freezer.tick(1.0) is None  # grew since the last tick: not settled
    kept = [object() for _ in range(10)]  # what the fleet holds
    assert freezer.tick(2.0) == "freeze"
    assert gc.get_freeze_count() > 0
    assert freezer.tick(3.0) is None  # nothing new to freeze
    size[0] = 150
    assert freezer.tick(4.0) is None
    assert freezer.tick(5.0) == "freeze"
    assert kept


def test_thawed_and_frozen_again_each_period() -> None:
    freezer = Freezer(lambda: 5, thaw_s=100.0)
    freezer.tick(50.0)
    freezer.tick(60.0)
    frozen = gc.get_freeze_count()
    assert frozen > 0
    assert freezer.tick(2e9) == "thaw"
    assert gc.get_freeze_count() > 0
