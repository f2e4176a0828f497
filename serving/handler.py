"""The thin serving function: the reader's variant, its alias's precomputed list, fallbacks.

No model is loaded here, and a request costs at most one GET (none on a cache hit):

- the experiment config (``{p}experiment:{name}``) and each alias -> version pointer are
  cached in the process for ``pointer_ttl_s``; a version's popular list is read once per
  version (committed versions are immutable);
- the reader's variant is a hash of the experiment's salt and the user id
  (``serving.experiments``), so processes, machines and the A/B evaluation all agree;
- decoded lists are kept in an optional ``RecCache`` keyed by (kind, version, id), so a
  cutover can never serve the old version's lists.

When Redis cannot be reached the service answers from what it already holds, marked
``degraded``: the reader's cached list of the last known version, else that version's
popular list. It does not try Redis again for ``outage_backoff_s``, so an outage costs
callers one timeout per backoff period, not one per request.

What it answers and the errors it raises live in ``serving.answers`` (importable from here
too).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from serving.answers import (
    AliasHealth,
    InvalidRequestError,
    NoLiveVersionError,
    Readiness,
    Recommendations,
    ServiceStats,
    ServingError,
    ServingUnavailableError,
    SimilarBooks,
    SimilarSource,
    Source,
    UnknownBookError,
)
from serving.cache import MISSING, Books, Kind, RecCache
from serving.connection import OUTAGE_ERRORS
from serving.experiments import (
    Experiment,
    InvalidExperimentError,
    Variant,
    assign_variant,
    control_only,
)
from serving.pins import disagreements, get_pin, registry_aliases_seen
from serving.store import RecStore

__all__ = [
    "AliasHealth",
    "InvalidRequestError",
    "NoLiveVersionError",
    "Readiness",
    "RecommendationService",
    "Recommendations",
    "ServiceStats",
    "ServingError",
    "ServingUnavailableError",
    "SimilarBooks",
    "UnknownBookError",
]


# Outage errors (a cluster failover among them): served degraded. Anything else from Redis
# (a wrong key type, a script error) is a bug and is raised.
_OUTAGE_ERRORS = OUTAGE_ERRORS

_log = logging.getLogger("goodbooks.serving")


@dataclass(frozen=True)
class _Pointer:
    """An alias's version when last looked up (None: unset), and that version's popular list."""

    version: str | None
    popular: Books
    expires_at: float


@dataclass(frozen=True)
class _Routing:
    """The experiment in force when last looked up; the default one when none is active."""

    experiment: Experiment
    expires_at: float


@dataclass(slots=True)
class _Target:
    """Where a request is served from: the variant, its experiment, and the alias's version."""

    variant: Variant
    experiment: str | None
    version: str
    popular: Books


class RecommendationService:
    """Answer recommendation requests from the store, routing readers through an experiment."""

    def __init__(
        self,
        store: RecStore,
        alias: str = "champion",
        *,
        experiment: str | None = None,
        cache: RecCache | None = None,
        pointer_ttl_s: float = 1.0,
        max_k: int = 100,
        outage_backoff_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Serve ``alias`` to everyone, or route readers by the experiment named ``experiment``.

        With an experiment name, readers get the control alias (``alias``) while no active
        experiment of that name is stored.
        """
        if pointer_ttl_s < 0 or outage_backoff_s < 0:
            raise ValueError("pointer_ttl_s and outage_backoff_s must be >= 0 seconds")
        if max_k < 1:
            raise ValueError(f"max_k must be at least 1, got {max_k}")
        self._store = store
        self._alias = alias
        self._experiment_name = experiment
        self._cache = cache
        self._pointer_ttl_s = pointer_ttl_s
        self._max_k = max_k
        self._outage_backoff_s = outage_backoff_s
        self._clock = clock
        self._default = control_only(alias)
        # The pointers and the routing are replaced whole, never mutated: threads share the
        # service without a lock on the hot path (a race costs at most one extra lookup).
        self._routing = _Routing(self._default, -math.inf)
        self._pointers: dict[str, _Pointer] = {}
        self._retry_redis_at = 0.0
        self._in_outage = False
        self._counts_lock = threading.Lock()
        self._fallbacks: Counter[str] = Counter()
        self._redis_errors = 0

    @property
    def alias(self) -> str:
        """The control alias: served to everyone when no experiment is active."""
        return self._alias

    @property
    def experiment_name(self) -> str | None:
        return self._experiment_name

    @property
    def max_k(self) -> int:
        return self._max_k

    @property
    def store(self) -> RecStore:
        return self._store

    def recommend(self, user_id: int, k: int = 10) -> Recommendations:
        """The reader's top ``k`` books; popular books for an unknown reader."""
        _check_id(user_id, "user_id")
        self._check_k(k)
        now = self._clock()
        if now >= self._retry_redis_at:
            try:
                target = self._target(user_id, now)
                items = self._lookup("recs", target.version, user_id)
            except _OUTAGE_ERRORS as exc:
                self._note_outage(exc, now)
            else:
                if self._in_outage:
                    self._note_recovery()
                if items is None:
                    self._count("popular-fallback")
                    return self._recs(user_id, target.popular[:k], "popular-fallback", target)
                return self._recs(user_id, items[:k], "personalised", target)
        target = self._last_known(user_id)
        cached = self._cached("recs", target.version, user_id)
        self._count("degraded")
        return self._recs(user_id, (cached or target.popular)[:k], "degraded", target)

    def similar(self, book_id: int, k: int = 10, user_id: int | None = None) -> SimilarBooks:
        """Books similar to ``book_id`` from the version serving ``user_id`` (or the control)."""
        _check_id(book_id, "book_id")
        self._check_k(k)
        if user_id is not None:
            _check_id(user_id, "user_id")
        now = self._clock()
        if now >= self._retry_redis_at:
            try:
                target = self._target(user_id, now)
                items = self._lookup("similar", target.version, book_id)
            except _OUTAGE_ERRORS as exc:
                self._note_outage(exc, now)
            else:
                if self._in_outage:
                    self._note_recovery()
                if items is None:
                    raise UnknownBookError(
                        f"book {book_id} is not in the catalogue of version {target.version} "
                        "(it has no similar-books list there)"
                    )
                return self._similar(book_id, items[:k], "similar", target)
        target = self._last_known(user_id)
        cached = self._cached("similar", target.version, book_id)
        self._count("degraded")
        fallback = cached[:k] if cached else _without(target.popular, book_id, k)
        return self._similar(book_id, fallback, "degraded", target)

    def readiness(self, max_age_s: float, now: datetime | None = None) -> Readiness:
        """Fresh check (no cache): Redis answers and every served alias has a recent version."""
        wall = now or datetime.now(UTC)
        try:
            self._store.client.ping()
            experiment = self._load_experiment()
            aliases = experiment.aliases if experiment.is_active else (self._alias,)
            health = tuple(self._alias_health(alias, max_age_s, wall) for alias in aliases)
            warnings = [self._store.persistence_warning()]
            # One GET per served alias, not a SCAN: /ready is polled, the keyspace is large.
            held = (get_pin(self._store, alias) for alias in dict.fromkeys(aliases))
            warnings += [pin.describe() for pin in held if pin is not None]
            warnings += disagreements(registry_aliases_seen(self._store), self._store, aliases)
        except _OUTAGE_ERRORS as exc:
            self._count_redis_error()
            return Readiness(False, f"unreachable: {exc}", None, ())
        active = experiment.name if experiment.is_active else None
        return Readiness(all(h.problem is None for h in health), "ok", active, health,
                         tuple(w for w in warnings if w))

    def stats(self) -> ServiceStats:
        with self._counts_lock:
            fallbacks, errors = dict(self._fallbacks), self._redis_errors
        return ServiceStats(fallbacks, errors, self._cache.stats() if self._cache else None)

    # --- internals ---------------------------------------------------------------------
    def _target(self, user_id: int | None, now: float) -> _Target:
        """The reader's variant and the live version of its alias (may read Redis)."""
        experiment = self._experiment(now)
        if not experiment.is_active or user_id is None:
            # No experiment running, or no reader to assign (similar books for anyone):
            # the control serves, outside any experiment.
            control = experiment.control
            pointer = self._pointer(control.alias, now)
            if pointer.version is None:
                raise self._no_live_version(control.alias)
            return _Target(control, None, pointer.version, pointer.popular)
        variant = assign_variant(experiment, user_id)
        pointer = self._pointer(variant.alias, now)
        if pointer.version is None:
            # The arm's alias has nothing published: serve the control rather than fail, and
            # say so in the answer; the evaluation sees the mismatch with the assignment.
            self._count("variant-unavailable")
            variant = experiment.control
            pointer = self._pointer(variant.alias, now)
            if pointer.version is None:
                raise self._no_live_version(variant.alias)
        return _Target(variant, experiment.name, pointer.version, pointer.popular)

    def _experiment(self, now: float) -> Experiment:
        """The active experiment (cached for pointer_ttl_s), else the control-only default."""
        routing = self._routing
        if now < routing.expires_at:
            return routing.experiment
        experiment = self._load_experiment()
        self._routing = _Routing(experiment, now + self._pointer_ttl_s)
        return experiment

    def _load_experiment(self) -> Experiment:
        if self._experiment_name is None:
            return self._default
        try:
            stored = self._store.get_experiment(self._experiment_name)
        except InvalidExperimentError as exc:
            # A broken config must not take serving down: everyone gets the control, and
            # the error is logged and counted once per pointer refresh until it is fixed.
            self._count("experiment-invalid")
            _log.error("experiment %r ignored: %s", self._experiment_name, exc)
            return self._default
        if stored is None or not stored.is_active:
            return self._default
        return stored

    def _pointer(self, alias: str, now: float) -> _Pointer:
        """The alias's version (cached for pointer_ttl_s) and its popular list."""
        pointer = self._pointers.get(alias)
        if pointer is not None and now < pointer.expires_at:
            return pointer
        version = self._store.get_alias(alias)
        if version is None:
            popular: Books = ()
            if pointer is None or pointer.version is not None:
                _log.warning("alias %r points at no version", alias)
        elif pointer is not None and pointer.version == version:
            popular = pointer.popular
        else:
            popular = tuple(self._store.get_popular(version) or ())
        pointer = _Pointer(version, popular, now + self._pointer_ttl_s)
        self._pointers = {**self._pointers, alias: pointer}
        return pointer

    def _lookup(self, kind: Kind, version: str, item_id: int) -> Books | None:
        """The stored list: from the cache, else one GET (remembered, None included)."""
        cache = self._cache
        if cache is None:
            return self._fetch(kind, version, item_id)
        key = (kind, version, item_id)
        value = cache.get(key)
        if value is not MISSING:
            return value  # type: ignore[return-value]
        fetched = self._fetch(kind, version, item_id)
        cache.put(key, fetched)
        return fetched

    def _fetch(self, kind: Kind, version: str, item_id: int) -> Books | None:
        if kind == "recs":
            items = self._store.get_recs(version, item_id)
        else:
            items = self._store.get_similar(version, item_id)
        return None if items is None else tuple(items)

    def _cached(self, kind: Kind, version: str, item_id: int) -> Books | None:
        """What the cache holds for the id, without touching Redis (None if nothing)."""
        if self._cache is None:
            return None
        value = self._cache.get((kind, version, item_id))
        return None if value is MISSING else value  # type: ignore[return-value]

    def _last_known(self, user_id: int | None) -> _Target:
        """The reader's target from the last experiment and pointers read, for an outage."""
        experiment = self._routing.experiment
        variant = experiment.control
        if experiment.is_active and user_id is not None:
            variant = assign_variant(experiment, user_id)
        pointer = self._pointers.get(variant.alias)
        if pointer is None or pointer.version is None:
            variant = experiment.control
            pointer = self._pointers.get(variant.alias)
        if pointer is None or pointer.version is None:
            raise ServingUnavailableError(
                "Redis is unreachable and no version was read from it before; check REDIS_URL "
                "and that the server is running"
            )
        name = experiment.name if experiment.is_active and user_id is not None else None
        return _Target(variant, name, pointer.version, pointer.popular)

    def _note_outage(self, exc: Exception, now: float) -> None:
        self._retry_redis_at = now + self._outage_backoff_s
        self._count_redis_error()
        if not self._in_outage:
            self._in_outage = True
            _log.warning(
                "Redis unreachable (%s): answering degraded, retrying every %.1f s",
                exc,
                self._outage_backoff_s,
            )

    def _note_recovery(self) -> None:
        self._in_outage = False
        _log.info("Redis reachable again: answering from live versions")

    def _alias_health(self, alias: str, max_age_s: float, now: datetime) -> AliasHealth:
        version = self._store.get_alias(alias)
        if version is None:
            return AliasHealth(alias, None, None, "points at no version")
        manifest = self._store.get_manifest(version)
        if manifest is None:
            return AliasHealth(alias, version, None, "its version has no manifest")
        created = datetime.fromisoformat(manifest["created_at"])
        age_s = round((now - created).total_seconds(), 3)
        if age_s > max_age_s:
            problem = f"version is {age_s:.0f} s old, older than {max_age_s:.0f} s"
            return AliasHealth(alias, version, age_s, problem)
        return AliasHealth(alias, version, age_s, None)

    def _no_live_version(self, alias: str) -> NoLiveVersionError:
        return NoLiveVersionError(
            f"alias {alias!r} points at no version; run the score flow to publish one, or "
            "serve another alias"
        )

    def _recs(self, user_id: int, items: Books, source: Source, target: _Target) -> Recommendations:
        variant = target.variant
        return Recommendations(
            user_id,
            list(items),
            source,
            variant.alias,
            target.version,
            variant.name,
            target.experiment,
        )

    def _similar(
        self, book_id: int, items: Books, source: SimilarSource, target: _Target
    ) -> SimilarBooks:
        variant = target.variant
        return SimilarBooks(
            book_id,
            list(items),
            source,
            variant.alias,
            target.version,
            variant.name,
            target.experiment,
        )

    def _count(self, reason: str) -> None:
        with self._counts_lock:
            self._fallbacks[reason] += 1

    def _count_redis_error(self) -> None:
        with self._counts_lock:
            self._redis_errors += 1

    def _check_k(self, k: int) -> None:
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= self._max_k:
            raise InvalidRequestError(f"k must be an integer from 1 to {self._max_k}, got {k!r}")


def _check_id(value: int, what: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise InvalidRequestError(f"{what} must be a positive integer, got {value!r}")


def _without(items: Books, book_id: int, k: int) -> Books:
    return tuple(item for item in items if item != book_id)[:k]
