"""The thin serving function: an alias's precomputed lists from Redis, with fallbacks.

No model is loaded here. A request costs one GET: the alias -> version pointer is cached in
the process for ``pointer_ttl_s`` and the version's popular list is read once per version
(committed versions are immutable). When Redis cannot be reached the service answers from
the last popular list it read, marked ``degraded``, and does not try Redis again for
``outage_backoff_s``, so an outage costs callers one timeout, not one per request.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import redis

from serving.store import RecStore

__all__ = [
    "InvalidRequestError",
    "NoLiveVersionError",
    "RecommendationService",
    "Recommendations",
    "ServingError",
    "ServingUnavailableError",
    "SimilarBooks",
]

Source = Literal["personalised", "popular-fallback", "degraded"]
SimilarSource = Literal["similar", "popular-fallback", "degraded"]

# Outage errors: served degraded. Anything else from Redis (a wrong key type, a script
# error) is a bug and is raised.
_OUTAGE_ERRORS = (redis.ConnectionError, redis.TimeoutError)


class ServingError(Exception):
    """A recommendation request that cannot be answered."""


class InvalidRequestError(ServingError, ValueError):
    """The caller asked for an id or a count that cannot exist."""


class NoLiveVersionError(ServingError):
    """The alias points at no version: nothing has been published for it yet."""


class ServingUnavailableError(ServingError):
    """Redis is unreachable and no fallback list has been read yet."""


@dataclass(frozen=True)
class Recommendations:
    """Books for one reader, best first, and where they came from."""

    user_id: int
    items: list[int]
    source: Source
    alias: str
    version: str


@dataclass(frozen=True)
class SimilarBooks:
    """Books liked by readers who liked ``book_id``, best first, and where they came from."""

    book_id: int
    items: list[int]
    source: SimilarSource
    alias: str
    version: str


@dataclass(frozen=True)
class _Live:
    """The version an alias served when last looked up, and that version's popular list."""

    version: str
    popular: list[int]
    expires_at: float


class RecommendationService:
    """Answer recommendation requests for one alias from the store."""

    def __init__(
        self,
        store: RecStore,
        alias: str = "champion",
        pointer_ttl_s: float = 1.0,
        max_k: int = 100,
        outage_backoff_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if pointer_ttl_s < 0 or outage_backoff_s < 0:
            raise ValueError("pointer_ttl_s and outage_backoff_s must be >= 0 seconds")
        if max_k < 1:
            raise ValueError(f"max_k must be at least 1, got {max_k}")
        self._store = store
        self._alias = alias
        self._pointer_ttl_s = pointer_ttl_s
        self._max_k = max_k
        self._outage_backoff_s = outage_backoff_s
        self._clock = clock
        # Replaced whole, never mutated: threads may share the service without a lock (a
        # race costs at most one extra lookup).
        self._live: _Live | None = None
        self._retry_redis_at = 0.0

    @property
    def alias(self) -> str:
        return self._alias

    def recommend(self, user_id: int, k: int = 10) -> Recommendations:
        """The reader's top ``k`` books; popular books for an unknown reader."""
        _check_id(user_id, "user_id")
        self._check_k(k)
        live, items, reachable = self._read(lambda version: self._store.get_recs(version, user_id))
        if not reachable:
            return Recommendations(user_id, live.popular[:k], "degraded", self._alias, live.version)
        if items is None:
            return Recommendations(
                user_id, live.popular[:k], "popular-fallback", self._alias, live.version
            )
        return Recommendations(user_id, items[:k], "personalised", self._alias, live.version)

    def similar(self, book_id: int, k: int = 10) -> SimilarBooks:
        """Books similar to ``book_id``; popular books (without it) for an unknown book."""
        _check_id(book_id, "book_id")
        self._check_k(k)
        live, items, reachable = self._read(
            lambda version: self._store.get_similar(version, book_id)
        )
        if not reachable:
            fallback = _without(live.popular, book_id, k)
            return SimilarBooks(book_id, fallback, "degraded", self._alias, live.version)
        if items is None:
            fallback = _without(live.popular, book_id, k)
            return SimilarBooks(book_id, fallback, "popular-fallback", self._alias, live.version)
        return SimilarBooks(book_id, items[:k], "similar", self._alias, live.version)

    def _read(
        self, fetch: Callable[[str], list[int] | None]
    ) -> tuple[_Live, list[int] | None, bool]:
        """(live version, what ``fetch`` read from it, whether Redis answered)."""
        if self._clock() < self._retry_redis_at:
            # Inside the outage backoff: answer at once instead of waiting for a timeout.
            return self._last_known(None), None, False
        try:
            live = self._live_version()
            return live, fetch(live.version), True
        except _OUTAGE_ERRORS as exc:
            self._retry_redis_at = self._clock() + self._outage_backoff_s
            return self._last_known(exc), None, False

    def _live_version(self) -> _Live:
        """The alias's version (cached for pointer_ttl_s) and its popular list."""
        now = self._clock()
        live = self._live
        if live is not None and now < live.expires_at:
            return live
        version = self._store.get_alias(self._alias)
        if version is None:
            raise NoLiveVersionError(
                f"alias {self._alias!r} points at no version; run the score flow to publish "
                "one, or serve another alias"
            )
        if live is not None and live.version == version:
            popular = live.popular
        else:
            popular = self._store.get_popular(version) or []
        live = _Live(version, popular, now + self._pointer_ttl_s)
        self._live = live
        return live

    def _last_known(self, exc: Exception | None) -> _Live:
        """The last version read and its popular list, for answering during an outage."""
        live = self._live
        if live is None:
            cause = f"({exc})" if exc is not None else "(it failed moments ago)"
            raise ServingUnavailableError(
                f"Redis is unreachable {cause} and no fallback list was read before; check "
                "REDIS_URL and that the server is running"
            ) from exc
        return live

    def _check_k(self, k: int) -> None:
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= self._max_k:
            raise InvalidRequestError(f"k must be an integer from 1 to {self._max_k}, got {k!r}")


def _check_id(value: int, what: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise InvalidRequestError(f"{what} must be a positive integer, got {value!r}")


def _without(items: list[int], book_id: int, k: int) -> list[int]:
    return [item for item in items if item != book_id][:k]
