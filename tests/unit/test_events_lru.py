"""The Event aggregator's LRU: forgetting one object's entries, evicted ones included."""

from __future__ import annotations

from mcp_health_operator.core.events import _LRU


def test_discard_first_drops_only_that_objects_entries() -> None:
    lru: _LRU[tuple[str, str], int] = _LRU(10)
    lru.put(("a", "x"), 1)
    lru.put(("a", "y"), 2)
    lru.put(("b", "x"), 3)
    lru.discard_first("a")
    assert (lru.get(("a", "x")), lru.get(("a", "y")), lru.get(("b", "x"))) == (None, None, 3)
    assert len(lru) == 1
    lru.discard_first("a")  # nothing left of it: no error
    assert len(lru) == 1


def test_an_evicted_entry_leaves_the_index_too() -> None:
    lru: _LRU[tuple[str, int], int] = _LRU(2)
    for i in range(5):
        lru.put(("a", i), i)
    assert len(lru) == 2 and lru._by_first == {"a": {("a", 3), ("a", 4)}}
    lru.put(("a", 4), 40)  # an update is no new key
    lru.discard_first("a")
    assert len(lru) == 0 and lru._by_first == {}
