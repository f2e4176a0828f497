"""Tasks that score readers in shards and publish the lists to Redis under a new version."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import redis
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from models.bundle import ScoringBundle
from models.scoring import encode_lists, score_readers, similar_books
from serving.connection import connect_redis
from serving.store import RecStore, ShardReceipt, VersionCommittedError, encode_items


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


# A version still pending this long after it was started belongs to a run that died before
# it could discard it (a full-size score run takes under a minute, so a live writer is never
# this old). Younger pending versions may be another run's batch in progress: left alone.
ABANDONED_AFTER_S = 3600.0


@lru_cache(maxsize=8)
def _client(url: str | None, embedded_db_path: str, socket_timeout_s: float) -> redis.Redis:
    """One pooled client per target and process (tasks in threads share it safely)."""
    return connect_redis(url, Path(embedded_db_path), socket_timeout_s=socket_timeout_s)


@lru_cache(maxsize=2)
def _bundle(bundle_dir: str) -> ScoringBundle:
    """Each process (thread-pool flow run or Dask worker) loads a bundle once."""
    return ScoringBundle.load(Path(bundle_dir))


@task(cache_policy=NO_CACHE)
def describe_bundle(bundle_dir: str) -> dict[str, int]:
    """Load a scoring bundle downloaded from the registry; return its sizes."""
    bundle = _bundle(bundle_dir)
    sizes = {"readers": bundle.ids.n_users, "books": bundle.ids.n_books,
             "factors": int(bundle.factors.item_factors.shape[1])}
    get_run_logger().info("bundle: %(readers)d readers × %(books)d books, %(factors)d factors",
                          sizes)
    return sizes


@task(cache_policy=NO_CACHE)
def discard_abandoned(target: RedisTarget, older_than_s: float = ABANDONED_AFTER_S) -> list[str]:
    """Remove the keys of versions that earlier runs started, never committed, and left behind."""
    discarded = target.store().discard_uncommitted(older_than_s)
    if discarded:
        get_run_logger().warning("discarded versions abandoned by earlier runs: %s",
                                 ", ".join(discarded))
    return discarded


@task(cache_policy=NO_CACHE)
def start_version(target: RedisTarget) -> str:
    """A fresh version id to write a batch under (nothing is visible until committed)."""
    return target.store().new_version()


@task(retries=2, retry_delay_seconds=[1, 5], cache_policy=NO_CACHE)
def score_shard(
    bundle_dir: str, start: int, stop: int, n: int, version: str, target: RedisTarget,
    num_threads: int = 1,
) -> ShardReceipt:
    """Score reader rows [start, stop) and write their lists under `version`.

    Rewriting a shard is idempotent (same keys, same values), so a retry is safe.
    """
    user_ids, books = score_readers(_bundle(bundle_dir), start, stop, n,
                                    num_threads=num_threads)
    return target.store().write_recs(version, encode_lists(user_ids, books))


@task(retries=2, retry_delay_seconds=[1, 5], cache_policy=NO_CACHE)
def similar_shard(
    bundle_dir: str, start: int, stop: int, n: int, version: str, target: RedisTarget,
    num_threads: int = 1,
) -> ShardReceipt:
    """Nearest books of book rows [start, stop) written under `version`."""
    book_ids, neighbours = similar_books(_bundle(bundle_dir), start, stop, n,
                                         num_threads=num_threads)
    return target.store().write_similar(version, encode_lists(book_ids, neighbours))


@task(cache_policy=NO_CACHE)
def write_popular(bundle_dir: str, n: int, version: str, target: RedisTarget) -> ShardReceipt:
    """The fallback list (most read books of the training snapshot) for unknown readers."""
    payload = encode_items(int(b) for b in _bundle(bundle_dir).popular[:n])
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
def discard_version(version: str, target: RedisTarget) -> int | None:
    """Remove every key of a version that was never committed; None if Redis is unreachable.

    Runs while a failed publish unwinds, often because Redis went away: raising here would
    hide that first error. The version then stays in the pending set, and the first run
    after ``ABANDONED_AFTER_S`` discards it (``discard_abandoned``).
    """
    logger = get_run_logger()
    try:
        removed = target.store().discard_version(version)
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        logger.error("could not discard uncommitted version %s (%s); it stays pending and a "
                     "later run discards it", version, exc)
        return None
    except VersionCommittedError:
        # The failure came after the commit (switching the alias or pruning): the version is
        # complete and immutable; retention prunes it once it is neither live nor recent.
        logger.error("version %s was committed before the failure; it is kept", version)
        return None
    logger.warning("discarded uncommitted version %s (%d keys)", version, removed)
    return removed


@task(cache_policy=NO_CACHE)
def rollback_alias(alias: str, to_version: str | None, target: RedisTarget) -> str:
    """Re-point an alias to an earlier retained version in one step."""
    version = target.store().rollback(alias, to_version)
    get_run_logger().info("alias %s rolled back to %s", alias, version)
    return version
