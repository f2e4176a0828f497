"""Serving: precomputed recommendations read from Redis (no Prefect, LightFM or pandas here).

``recommend(user_id, k)`` and ``similar(book_id, k)`` use one service per process, built
from the settings on first call. Applications that need several aliases or their own client
build ``RecommendationService(RecStore(connect_redis(...)), alias=...)`` themselves.
"""

from __future__ import annotations

import threading

from serving.connection import (
    EmbeddedRedisError,
    connect_redis,
    describe_redis,
    release_embedded_redis,
)
from serving.handler import (
    InvalidRequestError,
    NoLiveVersionError,
    Recommendations,
    RecommendationService,
    ServingError,
    ServingUnavailableError,
    SimilarBooks,
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

__all__ = [
    "AliasChangedError",
    "EmbeddedRedisError",
    "InvalidNameError",
    "InvalidPayloadError",
    "InvalidRequestError",
    "Manifest",
    "NoLiveVersionError",
    "NoRollbackTargetError",
    "RecStore",
    "RecommendationService",
    "Recommendations",
    "ServingError",
    "ServingUnavailableError",
    "ShardReceipt",
    "SimilarBooks",
    "StoreError",
    "VersionCommittedError",
    "VersionNotCommittedError",
    "connect_redis",
    "decode_items",
    "default_service",
    "describe_redis",
    "encode_items",
    "recommend",
    "release_embedded_redis",
    "similar",
]

_default_service: RecommendationService | None = None
_default_lock = threading.Lock()


def default_service() -> RecommendationService:
    """The process's service for the champion alias, built from the settings on first use."""
    global _default_service
    service = _default_service
    if service is not None:
        return service
    with _default_lock:
        if _default_service is None:
            # Imported here: importing serving must not read the environment.
            from settings import get_settings

            settings = get_settings()
            client = connect_redis(
                settings.redis_url,
                settings.redis_db_path,
                socket_timeout_s=settings.redis_socket_timeout_s,
                connect_timeout_s=settings.redis_connect_timeout_s,
            )
            _default_service = RecommendationService(
                RecStore(client, settings.redis_prefix), max_k=settings.top_n
            )
        return _default_service


def recommend(user_id: int, k: int = 10) -> Recommendations:
    """The reader's top ``k`` books from the champion's precomputed list."""
    return default_service().recommend(user_id, k)


def similar(book_id: int, k: int = 10) -> SimilarBooks:
    """Books liked by readers who liked ``book_id``, from the champion's version."""
    return default_service().similar(book_id, k)
