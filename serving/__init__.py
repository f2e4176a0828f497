"""Serving: precomputed recommendations read from Redis (no Prefect, LightFM or pandas here).

``recommend(user_id, k)`` and ``similar(book_id, k)`` use one service per process, built
from the settings on first call: readers are routed by the experiment named in the settings
(everyone gets the champion while none is active), with an in-process cache in front of
Redis. Applications that need their own client or options build
``RecommendationService(RecStore(connect_redis(...)), ...)`` themselves. The HTTP API is
``serving.api.create_app``; events are written with ``serving.events.EventWriter``.
"""

from __future__ import annotations

import importlib
import threading
from typing import TYPE_CHECKING

from serving.cache import CacheStats, RecCache
from serving.connection import connect_redis, describe_redis
from serving.experiments import (
    Experiment,
    InvalidExperimentError,
    Variant,
    assign_variant,
    bucket_of,
)
from serving.handler import (
    InvalidRequestError,
    NoLiveVersionError,
    Readiness,
    Recommendations,
    RecommendationService,
    ServiceStats,
    ServingError,
    ServingUnavailableError,
    SimilarBooks,
    UnknownBookError,
)
from serving.store import (
    AliasChangedError,
    InvalidNameError,
    InvalidPayloadError,
    Manifest,
    NoRollbackTargetError,
    RecStore,
    ShardReceipt,
    StoreError,
    VersionCommittedError,
    VersionNotCommittedError,
    decode_items,
    encode_items,
)

if TYPE_CHECKING:
    from serving.embedded import EmbeddedRedisError, release_embedded_redis

__all__ = [
    "AliasChangedError",
    "CacheStats",
    "EmbeddedRedisError",
    "Experiment",
    "InvalidExperimentError",
    "InvalidNameError",
    "InvalidPayloadError",
    "InvalidRequestError",
    "Manifest",
    "NoLiveVersionError",
    "NoRollbackTargetError",
    "Readiness",
    "RecCache",
    "RecStore",
    "RecommendationService",
    "Recommendations",
    "ServiceStats",
    "ServingError",
    "ServingUnavailableError",
    "ShardReceipt",
    "SimilarBooks",
    "StoreError",
    "UnknownBookError",
    "Variant",
    "VersionCommittedError",
    "VersionNotCommittedError",
    "assign_variant",
    "bucket_of",
    "connect_redis",
    "decode_items",
    "default_service",
    "describe_redis",
    "encode_items",
    "recommend",
    "release_embedded_redis",
    "similar",
]

_EMBEDDED_NAMES = frozenset({"EmbeddedRedisError", "release_embedded_redis"})

_default_service: RecommendationService | None = None
_default_lock = threading.Lock()


def default_service() -> RecommendationService:
    """The process's service (experiment routing, cache), built from the settings on first use."""
    global _default_service
    service = _default_service
    if service is not None:
        return service
    with _default_lock:
        if _default_service is None:
            # Imported here: importing serving must not read the environment, and the
            # config module pulls in pydantic for the event schema.
            from serving.config import ServingConfig
            from settings import get_settings

            config = ServingConfig.from_settings(get_settings())
            _default_service = config.build_service(config.connect_store())
        return _default_service


def recommend(user_id: int, k: int = 10) -> Recommendations:
    """The reader's top ``k`` books from their experiment arm's precomputed list."""
    return default_service().recommend(user_id, k)


def similar(book_id: int, k: int = 10, user_id: int | None = None) -> SimilarBooks:
    """Books liked by readers who liked ``book_id``, from the version serving ``user_id``."""
    return default_service().similar(book_id, k, user_id)


def __getattr__(name: str) -> object:
    """The embedded development server's names, loaded with ``serving.embedded`` on first
    use: a process given a Redis URL never imports it."""
    if name in _EMBEDDED_NAMES:
        return getattr(importlib.import_module("serving.embedded"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
