"""runtime.heap: long-lived objects frozen out of full collections, thawed hourly."""

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


def test_the_oldest_generation_is_frozen_once_a_batch_gathered() -> None:
    freezer = Freezer(thaw_s=1e12, batch=50_000)
    gc.collect()
    gc.freeze()  # what the test process holds already: out of the count
    assert freezer.tick(1.0) is None  # nothing gathered yet
    kept = [[i] for i in range(60_000)]  # lists are tracked; promoted by collections
    gc.collect()
    assert len(gc.get_objects(generation=2)) >= 60_000
    assert freezer.tick(2.0) == "freeze"
    assert len(gc.get_objects(generation=2)) < 50_000
    assert kept[-1] == [59_999]


def test_thawed_collected_and_frozen_again_each_period() -> None:
    freezer = Freezer(thaw_s=100.0)
    assert freezer.tick(2e12) == "thaw"
    assert gc.get_freeze_count() > 0
    assert len(gc.get_objects(generation=2)) < 1_000
