"""The one Redis connection factory: a Redis server by URL, or the embedded one by file path.

``connect_redis(url, ...)`` connects to the server the URL names (``redis://``, ``rediss://``
or ``unix://``): the production path. A Redis Cluster is named by its own scheme,
``redis+cluster://host:port[,host:port...]`` (``rediss+cluster://`` with TLS): any reachable
nodes, the client finds the others, and ``connect_redis`` returns a
``redis.cluster.RedisCluster``. The scheme, not a second setting, says it is a cluster, so
the one URL cannot disagree with a flag beside it. ``connect_redis(None, db_path)`` uses the
embedded development server whose data persists at ``db_path`` (``serving.embedded``: its
lifecycle, file locks and shutdown), which is imported only then, so a process given a URL
never loads it. Either way the client gets bounded timeouts and one quick retry on a
dropped connection.

``EmbeddedRedisError``, ``release_embedded_redis`` and ``revive_embedded_redis`` can be
imported from here too; they load ``serving.embedded`` on first use.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

import redis
from redis.backoff import ExponentialBackoff
from redis.cluster import ClusterNode, RedisCluster
from redis.retry import Retry

if TYPE_CHECKING:
    from serving.embedded import (
        EmbeddedRedisError,
        release_embedded_redis,
        revive_embedded_redis,
    )

__all__ = [
    "CLUSTER_SCHEMES",
    "OUTAGE_ERRORS",
    "EmbeddedRedisError",
    "RedisClient",
    "cluster_nodes",
    "connect_redis",
    "describe_redis",
    "is_cluster",
    "release_embedded_redis",
    "revive_embedded_redis",
]

# A client of one server or of a cluster: the store works with both (serving.keys says how
# the keys are laid out on a cluster).
RedisClient = redis.Redis | RedisCluster
CLUSTER_SCHEMES = ("redis+cluster://", "rediss+cluster://")
# What an outage looks like to a client: the server is unreachable or slow, or on a cluster
# a slot has no live master for a moment (a failover) and the client's retries ran out.
# Anything else from Redis (a wrong key type, a script error) is a bug, not an outage.
OUTAGE_ERRORS: tuple[type[Exception], ...] = (
    redis.ConnectionError,
    redis.TimeoutError,
    redis.exceptions.ClusterError,
    redis.exceptions.TryAgainError,
    redis.exceptions.SlotNotCoveredError,
    redis.exceptions.RedisClusterUnreachableError,
)
URL_SCHEMES = ("redis://", "rediss://", "unix://", *CLUSTER_SCHEMES)

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
) -> RedisClient:
    """A client of the server (or cluster) at ``url``, or of the embedded server at
    ``embedded_db_path``."""
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
        if not url.startswith(URL_SCHEMES):
            raise ValueError(
                f"{url!r} is not a Redis URL; use redis://host:port/db, rediss://..., "
                "unix:///path/to/socket or redis+cluster://host:port[,host:port...], or no "
                "URL for the embedded server"
            )
        if url.startswith(CLUSTER_SCHEMES):
            return _connect_cluster(url, options)
        return redis.Redis.from_url(url, **options)
    # The development default: only a process without a URL loads the embedded server.
    from serving.embedded import connect_embedded

    return connect_embedded(Path(embedded_db_path), options)


def cluster_nodes(url: str) -> list[tuple[str, int]]:
    """The (host, port) startup nodes a ``redis+cluster://`` URL names, in order."""
    parts = urlsplit(url)
    hosts = parts.netloc.rpartition("@")[2]
    nodes = []
    for entry in filter(None, hosts.split(",")):
        host, sep, port = entry.rpartition(":")
        if not sep or not port.isdigit() or not host:
            raise ValueError(
                f"{entry!r} in {_without_password(url)!r} is not host:port; name the cluster "
                "as redis+cluster://host:port[,host:port...]"
            )
        nodes.append((host.strip("[]"), int(port)))
    if not nodes:
        raise ValueError(
            f"{_without_password(url)!r} names no node; use redis+cluster://host:port[,...]"
        )
    if parts.path not in ("", "/", "/0"):
        raise ValueError(
            f"{_without_password(url)!r} names database {parts.path[1:]!r}, but a Redis "
            "Cluster has only database 0; drop the path (use a key prefix to share a cluster)"
        )
    return nodes


def _connect_cluster(url: str, options: dict[str, object]) -> RedisCluster:
    """A cluster client from any reachable node of ``url`` (it discovers the others)."""
    parts = urlsplit(url)
    userinfo = parts.netloc.rpartition("@")[0]
    username, _, password = userinfo.partition(":") if userinfo else ("", "", "")
    nodes = [ClusterNode(host, port) for host, port in cluster_nodes(url)]
    # The client's own retry rides out a failover: a command sent to a master that died is
    # sent again once the topology is read again. Kept short (three tries, at most 0.1 s
    # apart) so that a request fails within its timeout budget and is answered degraded,
    # instead of hanging for the whole election.
    retry = Retry(ExponentialBackoff(cap=0.1, base=0.02), 3)
    return RedisCluster(
        startup_nodes=nodes,
        # A MULTI/EXEC (new_version, commit_version) asks for a topology refresh after a
        # connection error only every `reinitialize_steps` errors, counted per pipeline,
        # and each call makes a new pipeline: with the default 5 and 4 attempts a call,
        # transactions kept going to a dead master after its replica had taken over.
        # With 1, every such error (and every MOVED, rare outside a resharding) refreshes.
        reinitialize_steps=1,
        username=unquote(username) or None,
        password=unquote(password) or None,
        ssl=url.startswith("rediss+"),
        socket_timeout=options["socket_timeout"],
        socket_connect_timeout=options["socket_connect_timeout"],
        decode_responses=options["decode_responses"],
        retry=retry,
    )


def is_cluster(client: object) -> bool:
    """True for a Redis Cluster client (its keys are laid out per slot, see serving.keys)."""
    return isinstance(client, RedisCluster)


def describe_redis(client: RedisClient) -> str:
    """Name the server a client talks to, for log lines (never includes a password)."""
    if isinstance(client, RedisCluster):
        primaries = sorted(f"{node.host}:{node.port}" for node in client.get_primaries())
        return f"redis+cluster://{','.join(primaries)}"
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


def _without_password(url: str) -> str:
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return parts._replace(netloc="***@" + parts.netloc.rpartition("@")[2]).geturl()


def __getattr__(name: str) -> object:
    """The embedded server's names, loaded with ``serving.embedded`` on first use."""
    if name in _EMBEDDED_NAMES:
        return getattr(importlib.import_module("serving.embedded"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
