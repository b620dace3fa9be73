"""runtime.heap: long-lived objects frozen out of full collections, thawed hourly."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from mcp_health_operator.runtime.heap import Freezer, c_trim


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


def test_each_freeze_and_thaw_gives_the_c_librarys_free_memory_back() -> None:
    trims: list[int] = []
    freezer = Freezer(thaw_s=100.0, batch=50_000, trim=lambda: trims.append(1))
    gc.collect()
    gc.freeze()
    assert freezer.tick(1.0) is None
    assert trims == []  # nothing frozen: nothing asked of the C library
    kept = [[i] for i in range(60_000)]
    gc.collect()
    assert freezer.tick(2.0) == "freeze"
    assert trims == [1]
    assert freezer.tick(2e12) == "thaw"
    assert trims == [1, 1]
    assert len(kept) == 60_000


def test_freed_memory_is_given_back_to_the_system() -> None:
    # glibc, as in the operator's image: the call must exist here.
    assert c_trim() is not None
    freezer = Freezer()
    blocks = [bytearray(2000) for _ in range(50_000)]  # 100 MB in 2 KB blocks, from the heap
    last = blocks[-1000:]
    del blocks  # freed, but glibc keeps the pages below the blocks still live
    given = freezer.give_back()
    assert given is not None and given > 50_000_000, given
    assert len(last) == 1000
