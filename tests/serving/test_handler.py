"""RecommendationService against a real Redis: hits, fallbacks, bad requests, outages."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

import serving
import settings
from serving.connection import connect_redis
from serving.embedded import release_embedded_redis
from serving.handler import (
    InvalidRequestError,
    NoLiveVersionError,
    RecommendationService,
    ServingUnavailableError,
    UnknownBookError,
)
from serving.store import RecStore, encode_items

POPULAR = [50, 51, 52, 53, 54]


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def publish(store: RecStore, first_book: int = 10) -> str:
    """Readers 1-3 and books 10-12 known; committed but not aliased."""
    version = store.new_version()
    recs = [(u, encode_items(range(first_book + u, first_book + u + 20))) for u in (1, 2, 3)]
    receipts = [
        store.write_recs(version, recs),
        store.write_similar(
            version, [(b, encode_items([b + 1, b + 2, b + 3])) for b in (10, 11, 12)]
        ),
        store.write_popular(version, encode_items(POPULAR)),
    ]
    store.commit_version(version, receipts, {"n": 20})
    return version


@pytest.fixture
def live(store: RecStore) -> str:
    version = publish(store)
    store.set_alias("champion", version)
    return version


def test_known_reader_gets_personalised_top_k(store: RecStore, live: str) -> None:
    result = RecommendationService(store).recommend(2, k=5)
    assert result.items == [12, 13, 14, 15, 16]
    assert result.source == "personalised"
    assert (result.user_id, result.alias, result.version) == (2, "champion", live)


def test_k_larger_than_the_stored_list_returns_the_whole_list(store: RecStore, live: str) -> None:
    assert len(RecommendationService(store).recommend(1, k=100).items) == 20


def test_unknown_reader_gets_popular_fallback(store: RecStore, live: str) -> None:
    result = RecommendationService(store).recommend(999, k=3)
    assert result.items == POPULAR[:3]
    assert result.source == "popular-fallback"
    assert result.version == live


def test_similar_books_and_unknown_book(store: RecStore, live: str) -> None:
    service = RecommendationService(store)
    hit = service.similar(11, k=2)
    assert hit.items == [12, 13] and hit.source == "similar" and hit.version == live
    with pytest.raises(UnknownBookError, match="book 52 is not in the catalogue"):
        service.similar(52, k=3)  # a book the version has no list for


@pytest.mark.parametrize("user_id", [0, -1, "1", 1.0, True, None])
def test_invalid_user_id_is_refused(store: RecStore, live: str, user_id: object) -> None:
    with pytest.raises(InvalidRequestError, match="user_id"):
        RecommendationService(store).recommend(user_id)  # type: ignore[arg-type]


@pytest.mark.parametrize("k", [0, -2, 101, "3", 2.0, True])
def test_k_out_of_range_is_refused(store: RecStore, live: str, k: object) -> None:
    with pytest.raises(InvalidRequestError, match="k must be"):
        RecommendationService(store, max_k=100).recommend(1, k=k)  # type: ignore[arg-type]


def test_invalid_request_is_a_value_error(store: RecStore, live: str) -> None:
    with pytest.raises(ValueError):
        RecommendationService(store).similar(0)


def test_no_live_version_is_a_typed_error(store: RecStore) -> None:
    publish(store)  # committed, but no alias points at it
    with pytest.raises(NoLiveVersionError, match="champion"):
        RecommendationService(store).recommend(1)


def test_pointer_is_cached_until_its_ttl_then_follows_the_switch(
    store: RecStore, live: str
) -> None:
    clock = FakeClock()
    service = RecommendationService(store, pointer_ttl_s=1.0, clock=clock)
    assert service.recommend(1, k=1).version == live

    newer = publish(store, first_book=500)
    store.set_alias("champion", newer)
    clock.now += 0.5
    cached = service.recommend(1, k=1)
    assert (cached.version, cached.items) == (live, [11])  # same version, consistent list
    clock.now += 0.6
    switched = service.recommend(1, k=1)
    assert (switched.version, switched.items) == (newer, [501])


def test_challenger_alias_is_served_separately(store: RecStore, live: str) -> None:
    challenger = publish(store, first_book=500)
    store.set_alias("challenger", challenger)
    assert RecommendationService(store, alias="challenger").recommend(1, k=1).items == [501]
    assert RecommendationService(store).recommend(1, k=1).items == [11]


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[tuple[RecStore, Path]]:
    """A store on an embedded server of its own (which the test may stop), and its db path."""
    db_path = tmp_path / "outage.rdb"
    client = connect_redis(None, db_path, socket_timeout_s=0.2, connect_timeout_s=0.2)
    yield RecStore(client, "gb:"), db_path
    release_embedded_redis(db_path)


def test_outage_after_a_read_serves_last_known_popular_list(
    own_server: tuple[RecStore, Path],
) -> None:
    store, db_path = own_server
    version = publish(store)
    store.set_alias("champion", version)
    clock = FakeClock()
    service = RecommendationService(store, clock=clock, outage_backoff_s=5.0)
    assert service.recommend(1, k=2).source == "personalised"

    assert release_embedded_redis(db_path)  # stops the server: Redis is down from here on
    with pytest.raises(redis.ConnectionError):
        store.client.ping()

    clock.now += 2.0  # past the pointer TTL as well
    started = time.monotonic()
    result = service.recommend(1, k=3)
    assert (result.items, result.source, result.version) == (POPULAR[:3], "degraded", version)
    similar = service.similar(50, k=2)
    assert (similar.items, similar.source) == ([51, 52], "degraded")
    # Inside the backoff Redis is not tried again, so answers come at once.
    assert service.recommend(999, k=1).items == POPULAR[:1]
    assert time.monotonic() - started < 2.0

    clock.now += 5.0  # backoff over: Redis is tried again, and is still down
    assert service.recommend(2, k=1).source == "degraded"


def test_outage_before_any_read_is_service_unavailable(closed_port: int) -> None:
    client = connect_redis(f"redis://127.0.0.1:{closed_port}/0", Path("unused"), 0.2, 0.2)
    service = RecommendationService(RecStore(client))
    started = time.monotonic()
    with pytest.raises(ServingUnavailableError, match="unreachable"):
        service.recommend(1)
    assert time.monotonic() - started < 2.0
    with pytest.raises(ServingUnavailableError):
        service.recommend(1)  # inside the backoff: no second connection attempt


def test_module_level_recommend_uses_the_settings(
    monkeypatch: pytest.MonkeyPatch, redis_client: redis.Redis, redis_prefix: str, tmp_path: Path
) -> None:
    monkeypatch.setenv("GOODBOOKS_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("GOODBOOKS_REDIS_PREFIX", redis_prefix)
    monkeypatch.setattr(serving, "_default_service", None)
    settings.get_settings.cache_clear()
    try:
        configured = settings.get_settings()
        client = connect_redis(configured.redis_url, configured.redis_db_path)
        store = RecStore(client, redis_prefix)
        store.set_alias("champion", publish(store))

        assert serving.recommend(3, k=2).items == [13, 14]
        assert serving.similar(10, k=1).items == [11]
        assert serving.default_service() is serving.default_service()
    finally:
        settings.get_settings.cache_clear()
        release_embedded_redis(tmp_path / "redis" / "goodbooks.rdb")  # no-op on REDIS_URL
