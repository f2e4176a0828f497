"""What the serving function answers, and the errors it raises for what it cannot answer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from serving.cache import CacheStats
from serving.experiments import CONTROL

Source = Literal["personalised", "popular-fallback", "degraded"]
SimilarSource = Literal["similar", "degraded"]


class ServingError(Exception):
    """A recommendation request that cannot be answered."""


class InvalidRequestError(ServingError, ValueError):
    """The caller asked for an id or a count that cannot exist."""


class UnknownBookError(ServingError, LookupError):
    """The live version has no similar-books list for the book: it is not in its catalogue."""


class NoLiveVersionError(ServingError):
    """The alias points at no version: nothing has been published for it yet."""


class ServingUnavailableError(ServingError):
    """Redis is unreachable and no fallback list has been read yet."""


# Answers and _Target are built on every request: slotted, not frozen, because a frozen
# dataclass sets each field through object.__setattr__, which costs about as much as the
# rest of an in-process cache hit put together.
@dataclass(slots=True)
class Recommendations:
    """Books for one reader, best first, where they came from and which arm served them."""

    user_id: int
    items: list[int]
    source: Source
    alias: str
    version: str
    variant: str = CONTROL
    experiment: str | None = None


@dataclass(slots=True)
class SimilarBooks:
    """Books liked by readers who liked ``book_id``, best first, and where they came from."""

    book_id: int
    items: list[int]
    source: SimilarSource
    alias: str
    version: str
    variant: str = CONTROL
    experiment: str | None = None


@dataclass(frozen=True)
class AliasHealth:
    """What readiness found for one alias: its version and the version's age."""

    alias: str
    version: str | None
    age_s: float | None
    problem: str | None


@dataclass(frozen=True)
class Readiness:
    """Whether the service can answer from live data, and why not."""

    ready: bool
    redis: str
    experiment: str | None
    aliases: tuple[AliasHealth, ...]
    # Worth knowing, not a reason to stop serving: a Redis that persists nothing, a pinned
    # alias, a Redis alias serving another model version than the registry's.
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class ServiceStats:
    """Counters since the service was built: fallbacks by reason, Redis errors, the cache."""

    fallbacks: dict[str, int]
    redis_errors: int
    cache: CacheStats | None
