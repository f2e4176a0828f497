"""The in-process level of the two-level cache: decoded lists in front of Redis.

Keys are ``(kind, version, id)``: committed versions are immutable, so an entry can never
be stale, and after a cutover the new version's keys simply miss. Values are the decoded
book ids as tuples (or None for "Redis has no list for this id"), kept as Python objects,
never pickled. Tuples because they cannot be changed by a caller, and because CPython's
garbage collector stops tracking a tuple of ints, so a full cache does not lengthen
collection pauses the way 20,000 lists would. At N=100 an entry costs about 3.7 KB (100 int
objects and the tuple), so 20,000 entries take about 75 MB per process.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Literal

from cachetools import TTLCache

__all__ = ["MISSING", "Books", "CacheStats", "RecCache"]

Kind = Literal["recs", "similar"]
CacheKey = tuple[Kind, str, int]
Books = tuple[int, ...]


class _Missing:
    """The type of ``MISSING``: not in the cache (distinct from a cached None)."""

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Final = _Missing()


@dataclass(frozen=True)
class CacheStats:
    """Counters since the cache was built, and its current size."""

    hits: int
    misses: int
    entries: int
    capacity: int


class RecCache:
    """A thread-safe LRU cache with a time-to-live, counting hits and misses."""

    def __init__(
        self, maxsize: int, ttl_s: float, timer: Callable[[], float] = time.monotonic
    ) -> None:
        if maxsize < 0 or ttl_s <= 0:
            raise ValueError(f"need maxsize >= 0 and ttl_s > 0, got {maxsize} and {ttl_s}")
        self._capacity = maxsize
        # cachetools caches are not thread-safe; uvicorn's thread pool shares this one.
        self._lock = threading.Lock()
        self._cache: TTLCache[CacheKey, Books | None] | None = (
            TTLCache(maxsize, ttl_s, timer) if maxsize else None
        )
        self._hits = 0
        self._misses = 0

    def get(self, key: CacheKey) -> Books | None | _Missing:
        """The cached value (None: known to have no list), or MISSING."""
        with self._lock:
            if self._cache is None:
                self._misses += 1
                return MISSING
            try:
                # Indexing, not .get(): TTLCache.get() tests membership and then indexes,
                # reading the clock and walking the LRU links twice per hit.
                value = self._cache[key]
            except KeyError:
                self._misses += 1
                return MISSING
            self._hits += 1
            return value

    def put(self, key: CacheKey, value: Books | None) -> None:
        """Remember ``value`` (None: Redis has no list for the key)."""
        if self._cache is None:
            return
        with self._lock:
            self._cache[key] = value

    def clear(self) -> None:
        if self._cache is None:
            return
        with self._lock:
            self._cache.clear()

    def stats(self) -> CacheStats:
        with self._lock:
            entries = 0
            if self._cache is not None:
                self._cache.expire()  # len() counts expired entries until they are evicted
                entries = len(self._cache)
            return CacheStats(self._hits, self._misses, entries, self._capacity)
