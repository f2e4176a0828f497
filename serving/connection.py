"""The one Redis connection factory: a Redis server by URL, or the embedded one by file path.

``connect_redis(url, ...)`` connects to the server the URL names (``redis://``, ``rediss://``
or ``unix://``): the production path. ``connect_redis(None, db_path)`` uses the embedded
development server whose data persists at ``db_path`` (``serving.embedded``: its lifecycle,
file locks and shutdown), which is imported only then, so a process given a URL never
loads it. Either way the client gets bounded timeouts and one quick retry on a dropped
connection.

``EmbeddedRedisError``, ``release_embedded_redis`` and ``revive_embedded_redis`` can be
imported from here too; they load ``serving.embedded`` on first use.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

if TYPE_CHECKING:
    from serving.embedded import (
        EmbeddedRedisError,
        release_embedded_redis,
        revive_embedded_redis,
    )

__all__ = [
    "EmbeddedRedisError",
    "connect_redis",
    "describe_redis",
    "release_embedded_redis",
    "revive_embedded_redis",
]

_EMBEDDED_NAMES = frozenset({"EmbeddedRedisError", "release_embedded_redis",
                             "revive_embedded_redis"})


def _retry_policy() -> Retry:
    """One quick retry on a dropped connection, none on a timeout."""
    # redis-py 8 retries every error 3-10 times with backoff by default, so one blocked read
    # can hold a caller for close to a minute. A pooled connection that the server closed (a
    # restart, an idle timeout) fails once with ConnectionError and works on a fresh socket,
    # which the single retry covers; every command the store sends is idempotent, so sending
    # it twice is safe. A timeout means the server is slow or gone: waiting again only doubles
    # the time before a reader gets its fallback, so timeouts are not retried.
    return Retry(
        ExponentialBackoff(cap=0.05, base=0.01), 1, supported_errors=(redis.ConnectionError,)
    )


def connect_redis(
    url: str | None,
    embedded_db_path: Path,
    socket_timeout_s: float = 1.0,
    connect_timeout_s: float = 1.0,
    decode_responses: bool = False,
) -> redis.Redis:
    """A client of the server at ``url``, or of the embedded server at ``embedded_db_path``."""
    if socket_timeout_s <= 0 or connect_timeout_s <= 0:
        raise ValueError(
            f"Redis timeouts must be positive seconds, got socket_timeout_s={socket_timeout_s} "
            f"and connect_timeout_s={connect_timeout_s}"
        )
    options: dict[str, object] = {
        "socket_timeout": socket_timeout_s,
        "socket_connect_timeout": connect_timeout_s,
        "retry": _retry_policy(),
        "decode_responses": decode_responses,
    }
    if url:
        if not url.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError(
                f"{url!r} is not a Redis URL; use redis://host:port/db, rediss://... or "
                "unix:///path/to/socket, or no URL for the embedded server"
            )
        return redis.Redis.from_url(url, **options)
    # The development default: only a process without a URL loads the embedded server.
    from serving.embedded import connect_embedded

    return connect_embedded(Path(embedded_db_path), options)


def describe_redis(client: redis.Redis) -> str:
    """Name the server a client talks to, for log lines (never includes a password)."""
    kwargs = client.connection_pool.connection_kwargs
    db = kwargs.get("db", 0)
    socket_path = kwargs.get("path")
    if socket_path:
        # Only a process that loaded serving.embedded can hold an embedded server; a unix://
        # URL must not load it just to find out.
        embedded = sys.modules.get("serving.embedded")
        described = embedded.describe_embedded(socket_path) if embedded is not None else None
        return described or f"unix://{socket_path}?db={db}"
    is_ssl = issubclass(client.connection_pool.connection_class, redis.SSLConnection)
    scheme = "rediss" if is_ssl else "redis"
    return f"{scheme}://{kwargs.get('host', 'localhost')}:{kwargs.get('port', 6379)}/{db}"


def __getattr__(name: str) -> object:
    """The embedded server's names, loaded with ``serving.embedded`` on first use."""
    if name in _EMBEDDED_NAMES:
        return getattr(importlib.import_module("serving.embedded"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
