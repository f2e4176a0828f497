"""Tasks that score readers in shards and publish the lists to Redis under a new version."""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import redis
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from models.bundle import ScoringBundle
from models.scoring import encode_lists, score_readers, similar_books
from serving.connection import connect_redis
from serving.store import RecStore, ShardReceipt, encode_items


@dataclass(frozen=True)
class RedisTarget:
    """Plain, picklable description of where to publish (clients are built inside tasks)."""

    url: str | None
    embedded_db_path: str
    prefix: str
    socket_timeout_s: float = 5.0  # bulk writes get more slack than serving reads

    def store(self) -> RecStore:
        return RecStore(_client(self.url, self.embedded_db_path, self.socket_timeout_s),
                        prefix=self.prefix)


@lru_cache(maxsize=8)
def _client(url: str | None, embedded_db_path: str, socket_timeout_s: float) -> redis.Redis:
    """One pooled client per target and process (tasks in threads share it safely)."""
    return connect_redis(url, Path(embedded_db_path), socket_timeout_s=socket_timeout_s)


@task(cache_policy=NO_CACHE)
def load_bundle(bundle_dir: str) -> ScoringBundle:
    """Load a scoring bundle downloaded from the registry."""
    bundle = ScoringBundle.load(Path(bundle_dir))
    get_run_logger().info("bundle: %d readers × %d books, %d factors",
                          bundle.ids.n_users, bundle.ids.n_books,
                          bundle.factors.item_factors.shape[1])
    return bundle


@task(cache_policy=NO_CACHE)
def start_version(target: RedisTarget) -> str:
    """A fresh version id to write a batch under (nothing is visible until committed)."""
    return target.store().new_version()


@task(retries=2, retry_delay_seconds=[1, 5], cache_policy=NO_CACHE)
def score_shard(
    bundle: ScoringBundle, start: int, stop: int, n: int, version: str, target: RedisTarget,
    num_threads: int = 0,
) -> ShardReceipt:
    """Score reader rows [start, stop) and write their lists under `version`."""
    began = time.perf_counter()
    user_ids, books = score_readers(bundle, start, stop, n, num_threads=num_threads)
    receipt = target.store().write_recs(version, encode_lists(user_ids, books))
    elapsed = time.perf_counter() - began
    get_run_logger().info("score: readers %d–%d written (%.0f readers/s)",
                          start, stop - 1, (stop - start) / max(elapsed, 1e-9))
    return receipt


@task(retries=2, retry_delay_seconds=[1, 5], cache_policy=NO_CACHE)
def similar_shard(
    bundle: ScoringBundle, start: int, stop: int, n: int, version: str, target: RedisTarget,
) -> ShardReceipt:
    """Nearest books of book rows [start, stop) written under `version`."""
    book_ids, neighbours = similar_books(bundle, start, stop, n)
    return target.store().write_similar(version, encode_lists(book_ids, neighbours))


@task(cache_policy=NO_CACHE)
def write_popular(bundle: ScoringBundle, n: int, version: str, target: RedisTarget
                  ) -> ShardReceipt:
    """The fallback list for readers the model does not know."""
    payload = encode_items(int(b) for b in bundle.popular[:n])
    return target.store().write_popular(version, payload)


@task(cache_policy=NO_CACHE)
def commit_and_switch(
    version: str,
    receipts: list[ShardReceipt],
    fields: dict[str, object],
    alias: str,
    retention: int,
    target: RedisTarget,
) -> dict[str, object]:
    """Manifest last, then the alias in one atomic SET, then prune old versions.

    ``retention`` counts earlier versions kept for rollback, besides the live ones.
    """
    store = target.store()
    manifest = store.commit_version(version, receipts, fields)
    store.set_alias(alias, version)
    removed = store.prune(retention + 1)
    logger = get_run_logger()
    logger.info("published version %s as %s", version, alias)
    if removed:
        logger.info("pruned versions: %s", ", ".join(removed))
    return {"version": version, "alias": alias, "pruned": removed,
            "manifest": manifest.to_hash()}


@task(cache_policy=NO_CACHE)
def discard_version(version: str, target: RedisTarget) -> int:
    """Remove every key of a version that was never committed."""
    removed = target.store().discard_version(version)
    get_run_logger().warning("discarded uncommitted version %s (%d keys)", version, removed)
    return removed


@task(cache_policy=NO_CACHE)
def rollback_alias(alias: str, to_version: str | None, target: RedisTarget) -> str:
    """Re-point an alias to an earlier retained version in one step."""
    version = target.store().rollback(alias, to_version)
    get_run_logger().info("alias %s rolled back to %s", alias, version)
    return version
