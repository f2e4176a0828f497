"""RecommendationService with experiments and the in-process cache, on a real Redis."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis

from serving.cache import RecCache
from serving.connection import connect_redis
from serving.experiments import Experiment, Variant, assign_variant
from serving.handler import NoLiveVersionError, RecommendationService
from serving.store import RecStore, encode_items


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def experiment(share: float = 0.5, status: str = "active") -> Experiment:
    return Experiment(
        "default",
        (Variant("control", "champion", 1 - share), Variant("treatment", "challenger", share)),
        "salt-1",
        status,  # type: ignore[arg-type]
    )


@pytest.fixture
def arms(store: RecStore, publish) -> tuple[str, str]:  # type: ignore[no-untyped-def]
    """Champion lists start at book 10+u, challenger lists at 500+u."""
    champion, challenger = publish(), publish(first_book=500)
    store.set_alias("champion", champion)
    store.set_alias("challenger", challenger)
    return champion, challenger


def readers_by_variant(exp: Experiment) -> dict[str, int]:
    found: dict[str, int] = {}
    for user_id in (1, 2, 3):
        found.setdefault(assign_variant(exp, user_id).name, user_id)
    return found


def test_no_experiment_stored_serves_the_champion_as_control(
    store: RecStore, arms: tuple[str, str]
) -> None:
    service = RecommendationService(store, experiment="default")
    result = service.recommend(1, k=2)
    assert (result.variant, result.alias, result.version) == ("control", "champion", arms[0])
    assert result.experiment is None and result.items == [11, 12]


def test_active_experiment_routes_each_reader_to_their_arm(
    store: RecStore, arms: tuple[str, str]
) -> None:
    exp = experiment(share=0.5)
    store.put_experiment(exp)
    service = RecommendationService(store, experiment="default")
    for user_id in (1, 2, 3):
        expected = assign_variant(exp, user_id)
        result = service.recommend(user_id, k=1)
        assert (result.variant, result.alias, result.experiment) == (
            expected.name,
            expected.alias,
            "default",
        )
        first = 500 if expected.alias == "challenger" else 10
        assert result.items == [first + user_id]
        assert result.version == arms[1 if expected.alias == "challenger" else 0]


def test_everyone_gets_the_treatment_at_share_one(store: RecStore, arms: tuple[str, str]) -> None:
    store.put_experiment(experiment(share=1.0))
    service = RecommendationService(store, experiment="default")
    assert {service.recommend(u).alias for u in (1, 2, 3)} == {"challenger"}


def test_stopped_experiment_serves_the_champion(store: RecStore, arms: tuple[str, str]) -> None:
    store.put_experiment(experiment(share=1.0).stopped())
    result = RecommendationService(store, experiment="default").recommend(1)
    assert (result.variant, result.alias, result.experiment) == ("control", "champion", None)


def test_experiment_change_is_seen_after_the_pointer_ttl(
    store: RecStore, arms: tuple[str, str]
) -> None:
    clock = FakeClock()
    service = RecommendationService(store, experiment="default", pointer_ttl_s=1.0, clock=clock)
    assert service.recommend(1).alias == "champion"
    store.put_experiment(experiment(share=1.0))
    clock.now += 0.5
    assert service.recommend(1).alias == "champion"  # cached config
    clock.now += 0.6
    assert service.recommend(1).alias == "challenger"


def test_arm_without_a_published_version_falls_back_to_control(
    store: RecStore,
    publish,
    caplog: pytest.LogCaptureFixture,  # type: ignore[no-untyped-def]
) -> None:
    store.set_alias("champion", publish())
    store.put_experiment(experiment(share=1.0))  # the challenger was never published
    service = RecommendationService(store, experiment="default")
    with caplog.at_level(logging.WARNING, logger="goodbooks.serving"):
        result = service.recommend(2, k=1)
        service.recommend(3, k=1)
    assert (result.variant, result.alias, result.items) == ("control", "champion", [12])
    assert result.experiment == "default"
    assert service.stats().fallbacks["variant-unavailable"] == 2
    assert sum("challenger" in r.getMessage() for r in caplog.records) == 1  # once, not per call


def test_no_champion_is_a_typed_error_even_inside_an_experiment(store: RecStore) -> None:
    store.put_experiment(experiment())
    with pytest.raises(NoLiveVersionError, match="champion"):
        RecommendationService(store, experiment="default").recommend(1)


def test_malformed_experiment_serves_control_and_is_counted(
    store: RecStore, arms: tuple[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    store.client.set(store.experiment_key("default"), b'{"name": "default"')
    service = RecommendationService(store, experiment="default")
    with caplog.at_level(logging.ERROR, logger="goodbooks.serving"):
        assert service.recommend(1).alias == "champion"
    assert service.stats().fallbacks["experiment-invalid"] == 1
    assert "not valid JSON" in caplog.text


def test_similar_uses_the_readers_arm_and_the_control_without_one(
    store: RecStore, arms: tuple[str, str]
) -> None:
    exp = experiment(share=1.0)
    store.put_experiment(exp)
    service = RecommendationService(store, experiment="default")
    mine = service.similar(10, k=2, user_id=1)
    assert (mine.alias, mine.variant, mine.experiment) == ("challenger", "treatment", "default")
    anyone = service.similar(10, k=2)
    assert (anyone.alias, anyone.variant, anyone.experiment) == ("champion", "control", None)
    assert anyone.items == [11, 12]


def test_cache_answers_repeats_without_redis_and_counts(
    store: RecStore, arms: tuple[str, str]
) -> None:
    cache = RecCache(100, 60)
    service = RecommendationService(store, cache=cache, pointer_ttl_s=60)
    assert service.recommend(1, k=3).items == [11, 12, 13]
    store.client.delete(store.recs_key(arms[0], 1))  # only the cache holds it now
    again = service.recommend(1, k=5)
    assert again.items == [11, 12, 13, 14, 15] and again.source == "personalised"
    assert service.recommend(999).source == "popular-fallback"
    assert service.recommend(999).source == "popular-fallback"  # the miss is cached too
    stats = service.stats()
    assert stats.cache is not None
    assert (stats.cache.hits, stats.cache.misses) == (2, 2)
    assert stats.fallbacks["popular-fallback"] == 2


def test_returned_items_are_copies_of_the_cached_list(
    store: RecStore, arms: tuple[str, str]
) -> None:
    service = RecommendationService(store, cache=RecCache(100, 60))
    first = service.recommend(1, k=20)
    first.items.clear()
    assert len(service.recommend(1, k=20).items) == 20


def test_cutover_never_serves_the_old_versions_cached_lists(
    store: RecStore,
    arms: tuple[str, str],
    publish,  # type: ignore[no-untyped-def]
) -> None:
    clock = FakeClock()
    service = RecommendationService(store, cache=RecCache(100, 3600), clock=clock)
    assert service.recommend(1, k=1).items == [11]
    newer = publish(first_book=700)
    store.set_alias("champion", newer)
    clock.now += 1.1  # past the pointer TTL, far inside the cache TTL
    result = service.recommend(1, k=1)
    assert (result.version, result.items) == (newer, [701])


def test_outage_answers_from_the_cache_then_popular_and_recovers(
    redis_process,
    popular_books: list[int],  # type: ignore[no-untyped-def]
) -> None:
    store = RecStore(connect_redis(redis_process.url, Path("unused"), 0.2, 0.2), "gb:")
    version = store.new_version()
    receipts = [
        store.write_recs(version, [(1, encode_items([7, 8, 9]))]),
        store.write_popular(version, encode_items(popular_books)),
    ]
    store.commit_version(version, receipts, {})
    store.set_alias("champion", version)
    clock = FakeClock()
    service = RecommendationService(
        store, cache=RecCache(100, 3600), clock=clock, outage_backoff_s=2.0
    )
    assert service.recommend(1, k=2).source == "personalised"

    redis_process.stop()
    with pytest.raises(redis.ConnectionError):
        store.client.ping()
    clock.now += 1.5  # pointer expired: the next call goes to Redis and fails
    cached = service.recommend(1, k=2)
    assert (cached.items, cached.source, cached.version) == ([7, 8], "degraded", version)
    unknown = service.recommend(2, k=2)
    assert (unknown.items, unknown.source) == (popular_books[:2], "degraded")
    assert service.stats().redis_errors == 1  # the backoff spared Redis the second call
    assert service.stats().fallbacks["degraded"] == 2

    redis_process.start()  # same port, same data
    clock.now += 1.0
    assert service.recommend(2, k=1).source == "degraded"  # still inside the backoff
    clock.now += 1.1
    back = service.recommend(2, k=1)
    assert (back.source, back.version) == ("popular-fallback", version)
    assert service.recommend(1, k=1).source == "personalised"


def test_readiness_checks_every_served_alias_and_its_age(
    store: RecStore, arms: tuple[str, str]
) -> None:
    service = RecommendationService(store, experiment="default")
    ready = service.readiness(max_age_s=60)
    assert ready.ready and ready.redis == "ok" and ready.experiment is None
    assert [h.alias for h in ready.aliases] == ["champion"]

    store.put_experiment(experiment())
    both = service.readiness(max_age_s=60)
    assert both.experiment == "default"
    assert [(h.alias, h.version) for h in both.aliases] == [
        ("champion", arms[0]),
        ("challenger", arms[1]),
    ]
    later = datetime.now(UTC) + timedelta(hours=2)
    stale = service.readiness(max_age_s=3600, now=later)
    assert not stale.ready
    assert all("older than 3600 s" in (h.problem or "") for h in stale.aliases)


def test_readiness_names_an_alias_with_nothing_published(store: RecStore, publish) -> None:  # type: ignore[no-untyped-def]
    store.set_alias("champion", publish())
    store.put_experiment(experiment())
    state = RecommendationService(store, experiment="default").readiness(max_age_s=60)
    assert not state.ready
    assert [(h.alias, h.problem) for h in state.aliases if h.problem] == [
        ("challenger", "points at no version")
    ]
