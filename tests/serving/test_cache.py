"""RecCache: LRU with a time-to-live, None remembered, hits and misses counted."""

from __future__ import annotations

import threading

import pytest

from serving.cache import MISSING, RecCache


class Timer:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_hit_miss_and_none_are_told_apart() -> None:
    cache = RecCache(10, 60)
    assert cache.get(("recs", "v1", 1)) is MISSING
    cache.put(("recs", "v1", 1), (3, 2, 1))
    cache.put(("recs", "v1", 2), None)  # an unknown reader is remembered too
    assert cache.get(("recs", "v1", 1)) == (3, 2, 1)
    assert cache.get(("recs", "v1", 2)) is None
    assert cache.get(("recs", "v2", 1)) is MISSING  # another version is another key
    assert cache.get(("similar", "v1", 1)) is MISSING
    stats = cache.stats()
    assert (stats.hits, stats.misses, stats.entries, stats.capacity) == (2, 3, 2, 10)


def test_entries_expire_after_the_ttl() -> None:
    timer = Timer()
    cache = RecCache(10, ttl_s=5, timer=timer)
    cache.put(("recs", "v1", 1), (1,))
    timer.now = 4.9
    assert cache.get(("recs", "v1", 1)) == (1,)
    timer.now = 5.1
    assert cache.get(("recs", "v1", 1)) is MISSING
    assert cache.stats().entries == 0


def test_least_recently_used_entry_is_evicted() -> None:
    cache = RecCache(2, 60)
    cache.put(("recs", "v", 1), (1,))
    cache.put(("recs", "v", 2), (2,))
    cache.get(("recs", "v", 1))  # 1 is now the most recently used
    cache.put(("recs", "v", 3), (3,))
    assert cache.get(("recs", "v", 2)) is MISSING
    assert cache.get(("recs", "v", 1)) == (1,)


def test_size_zero_disables_the_cache() -> None:
    cache = RecCache(0, 60)
    cache.put(("recs", "v", 1), (1,))
    assert cache.get(("recs", "v", 1)) is MISSING
    assert cache.stats().misses == 1


def test_bad_sizes_are_refused() -> None:
    with pytest.raises(ValueError):
        RecCache(-1, 60)
    with pytest.raises(ValueError):
        RecCache(10, 0)


def test_counters_stay_exact_under_threads() -> None:
    cache = RecCache(100, 60)
    cache.put(("recs", "v", 1), (1,))

    def work() -> None:
        for i in range(2000):
            cache.get(("recs", "v", 1 + i % 2))

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stats = cache.stats()
    assert (stats.hits, stats.misses) == (4000, 4000)
