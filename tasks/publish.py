"""Tasks that score readers in shards and publish the lists to Redis under a new version."""

from __future__ import annotations

import itertools
import threading
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import redis
from mlflow import MlflowClient
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from models.bundle import ScoringBundle, bundle_sizes
from models.scoring import encode_lists, score_readers, similar_books
from serving.connection import RedisClient, connect_redis
from serving.pins import get_pin
from serving.store import (
    AliasChangedError,
    RecStore,
    ShardReceipt,
    SwitchNotReplicatedError,
    VersionCommittedError,
    decode_items,
    encode_items,
)
from tasks.aliases import mlflow_alias


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


# A score run holds a lease on the version it writes and renews it every LEASE_S / 3: a
# pending version whose lease has expired belongs to a run that died, and the next run
# discards it at once. A pending version without a lease (written by an older release) is
# discarded once it is this old.
LEASE_S = 30.0
ABANDONED_AFTER_S = 3600.0
# Lists read back from a new version before the alias switches to it.
VERIFY_SAMPLE = 200


class PublishError(RuntimeError):
    """A batch that must not go live: its alias moved, its model changed, or it reads wrong."""


class Lease:
    """Renew the writer's lease on a pending version from a daemon thread until closed."""

    def __init__(self, target: RedisTarget, version: str, lease_s: float = LEASE_S) -> None:
        self._target, self._version, self._lease_s = target, version, lease_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._renew, name=f"lease-{version}",
                                        daemon=True)
        self._thread.start()

    def _renew(self) -> None:
        while not self._stop.wait(self._lease_s / 3):
            try:
                self._target.store().renew_lease(self._version, self._lease_s)
            except redis.RedisError:
                pass  # Redis away for a moment: the next renewal tries again

    def close(self) -> None:
        """Stop renewing and let go: a version left committed but not switched to is then
        retention's to remove."""
        self._stop.set()
        self._thread.join(timeout=5)
        try:
            self._target.store().release_lease(self._version)
        except redis.RedisError:
            pass  # it expires by itself within LEASE_S


@lru_cache(maxsize=8)
def _client(url: str | None, embedded_db_path: str, socket_timeout_s: float) -> RedisClient:
    """One pooled client per target and process (tasks in threads share it safely)."""
    return connect_redis(url, Path(embedded_db_path), socket_timeout_s=socket_timeout_s)


@lru_cache(maxsize=2)
def _books(bundle_dir: str) -> ScoringBundle:
    """The book side of a bundle, read once per process (thread-pool flow run or Dask worker).

    Reader rows are read per shard (``ScoringBundle.load_readers``), so a process holds the
    books plus the shards it is scoring, however many readers the bundle has.
    """
    return ScoringBundle.load_books(Path(bundle_dir))


@task(cache_policy=NO_CACHE)
def describe_bundle(bundle_dir: str) -> dict[str, int]:
    """The sizes of a scoring bundle downloaded from the registry, from its array headers."""
    sizes = bundle_sizes(Path(bundle_dir))
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
def start_version(target: RedisTarget, lease_s: float = LEASE_S) -> str:
    """A fresh version id to write a batch under (nothing is visible until committed),
    leased to this run (see ``Lease``)."""
    return target.store().new_version(lease_s=lease_s)


@task(retries=2, retry_delay_seconds=[1, 5], cache_policy=NO_CACHE)
def score_shard(
    bundle_dir: str, start: int, stop: int, n: int, version: str, target: RedisTarget,
    num_threads: int = 1,
) -> ShardReceipt:
    """Score reader rows [start, stop) and write their lists under `version`.

    Rewriting a shard is idempotent (same keys, same values), so a retry is safe.
    """
    shard = ScoringBundle.load_readers(Path(bundle_dir), start, stop, books=_books(bundle_dir))
    user_ids, books = score_readers(shard, 0, stop - start, n, num_threads=num_threads)
    return target.store().write_recs(version, encode_lists(user_ids, books))


@task(retries=2, retry_delay_seconds=[1, 5], cache_policy=NO_CACHE)
def similar_shard(
    bundle_dir: str, start: int, stop: int, n: int, version: str, target: RedisTarget,
    num_threads: int = 1,
) -> ShardReceipt:
    """Nearest books of book rows [start, stop) written under `version`."""
    book_ids, neighbours = similar_books(_books(bundle_dir), start, stop, n,
                                         num_threads=num_threads)
    return target.store().write_similar(version, encode_lists(book_ids, neighbours))


@task(cache_policy=NO_CACHE)
def write_popular(bundle_dir: str, n: int, version: str, target: RedisTarget) -> ShardReceipt:
    """The fallback list (most read books of the training snapshot) for unknown readers."""
    payload = encode_items(int(b) for b in _books(bundle_dir).popular[:n])
    return target.store().write_popular(version, payload)


@task(cache_policy=NO_CACHE)
def commit_and_switch(
    version: str,
    receipts: list[ShardReceipt],
    fields: dict[str, object],
    alias: str,
    retention: int,
    target: RedisTarget,
    started_from: str | None = None,
    registry: tuple[str, str] | None = None,
) -> dict[str, object]:
    """Manifest last, a sample read back, then the alias switched compare-and-set, then
    old versions pruned.

    On a cluster the switch counts as done once the replicas hold it; if they do not
    confirm it in time, the version stays live and the task fails saying so (nothing is
    pruned).

    The switch succeeds only if the alias still points at ``started_from`` (what it held
    when this run began): a slower or older run fails loudly instead of overwriting a newer
    switch. With ``registry`` (tracking URI, model name) the registry's alias must still name
    the model version this batch was scored from; if not, or if the alias was pinned
    meanwhile, the batch is committed but not switched to (retention removes it).
    ``retention`` counts earlier batches kept per alias for rollback, besides the live ones.
    """
    store = target.store()
    manifest = store.commit_version(version, receipts, fields)
    problems = read_back(store, version, int(fields.get("n", 0)), manifest.readers)
    if problems:
        raise PublishError(f"version {version} reads back wrong, not switched: {problems}")
    pin = get_pin(store, alias)
    if pin is not None:
        raise PublishError(f"not switched: {pin.describe()}")
    if registry is not None:
        now = mlflow_alias(MlflowClient(registry[0]), registry[1], alias)
        if now != str(fields.get("model_version")):
            raise PublishError(
                f"not switched: the registry's {alias} moved to model version {now} while "
                f"this run scored version {fields.get('model_version')}; the next run "
                "publishes the new one")
    switch_to(store, alias, version, started_from)
    removed = store.prune(retention + 1)
    logger = get_run_logger()
    logger.info("published version %s as %s", version, alias)
    if removed:
        logger.info("pruned versions: %s", ", ".join(removed))
    return {"version": version, "alias": alias, "pruned": removed,
            "manifest": manifest.to_hash()}


def switch_to(store: RecStore, alias: str, version: str, started_from: str | None,
              replication_timeout_s: float = 10.0) -> None:
    """Switch ``alias`` to the committed ``version`` if it still holds ``started_from``, and
    let the version's writer lease go.

    PublishError when another run switched it meanwhile (nothing changed), and when, on a
    cluster, the control slot's replica does not confirm the switch in time: the version
    is then live and served, and the run fails so that someone looks at the replica before
    a failover quietly puts the alias back.
    """
    try:
        store.set_alias(alias, version, expected=started_from,
                        expect_unset=started_from is None,
                        replication_timeout_s=replication_timeout_s)
    except AliasChangedError as exc:
        raise PublishError(f"not switched: {exc} (another run published {alias} meanwhile)"
                           ) from None
    except SwitchNotReplicatedError as exc:
        store.release_lease(version)
        raise PublishError(str(exc)) from None
    store.release_lease(version)


def read_back(store: RecStore, version: str, n: int, readers: int,
              sample: int = VERIFY_SAMPLE) -> list[str]:
    """Problems found reading a committed version's lists back (empty: it reads right)."""
    problems = []
    popular = store.get_popular(version)
    if not popular:
        problems.append("no popular list")
    keys = list(itertools.islice(
        store.client.scan_iter(match=f"{store.prefix}recs:{version}:*", count=1000), sample))
    if readers and not keys:
        problems.append(f"none of its {readers} readers' lists found")
    for key, raw in zip(keys, store.get_many(keys), strict=True):
        items = decode_items(raw)
        if not items or (n and len(items) > n) or len(set(items)) != len(items):
            problems.append(f"{key!r} holds {str(raw)[:60]}")
            break
    return problems


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
