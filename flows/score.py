"""The score flow: every reader's top-N from the registered model into Redis, then cutover."""

from __future__ import annotations

import tempfile
import time

from prefect import flow, get_run_logger, unmapped
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.futures import PrefectFuture, as_completed, wait
from prefect.task_runners import ThreadPoolTaskRunner

from models.scoring import shard_bounds
from settings import get_settings
from tasks.aliases import pinned_aliases, rollback_both
from tasks.publish import (
    Lease,
    RedisTarget,
    commit_and_switch,
    describe_bundle,
    discard_abandoned,
    discard_version,
    score_shard,
    similar_shard,
    start_version,
    write_popular,
)
from tasks.registry import fetch_bundle, registry_aliases


def redis_target() -> RedisTarget:
    s = get_settings()
    return RedisTarget(url=s.redis_url, embedded_db_path=str(s.redis_db_path),
                       prefix=s.redis_prefix)


def publish_alias(alias: str, n: int) -> dict[str, object]:
    """Score every reader and book for one registry alias, then switch the Redis alias."""
    s = get_settings()
    target = redis_target()
    began = time.perf_counter()
    # The downloaded bundle lives only as long as this publish: nothing piles up in the
    # temp directory night after night.
    with tempfile.TemporaryDirectory(prefix="goodbooks-score-") as work:
        return _publish_bundle(alias, n, fetch_bundle(s.tracking_uri, s.model_name, alias, work),
                               target, began)


def _publish_bundle(alias: str, n: int, meta: dict[str, object], target: RedisTarget,
                    began: float) -> dict[str, object]:
    """Publish a downloaded bundle's lists under a new version and switch the alias."""
    s = get_settings()
    log = get_run_logger()
    bundle_dir = meta["bundle_dir"]
    sizes = describe_bundle(bundle_dir)
    discard_abandoned(target)
    # What the alias holds now: the switch at the end happens only if it still does.
    started_from = target.store().get_alias(alias)
    version = start_version(target)
    lease = Lease(target, version)
    shards: list[PrefectFuture] = []
    try:
        readers = shard_bounds(sizes["readers"], s.score_shard_size)
        books = shard_bounds(sizes["books"], s.score_shard_size)
        recs = score_shard.map(unmapped(bundle_dir), [a for a, _ in readers],
                               [b for _, b in readers], n, version, unmapped(target))
        shards += recs
        similar = similar_shard.map(unmapped(bundle_dir), [a for a, _ in books],
                                    [b for _, b in books], n, version, unmapped(target))
        shards += similar
        popular = write_popular(bundle_dir, n, version, target)
        receipts = [popular]
        scored = 0
        for done, future in enumerate(as_completed(list(recs)), 1):
            receipt = future.result()
            receipts.append(receipt)
            scored += receipt.count
            elapsed = time.perf_counter() - began
            log.info("%s: shard %d/%d done, %d readers, %.0f readers/s", alias, done,
                     len(readers), scored, scored / max(elapsed, 1e-9))
        receipts += [future.result() for future in similar]
        fields = {
            "model_name": s.model_name, "model_version": meta["model_version"],
            "run_id": meta["run_id"], "snapshot": meta["snapshot"], "alias": alias,
            "n": n, "books": sizes["books"],
        }
        result = commit_and_switch(version, receipts, fields, alias, s.retention, target,
                                   started_from, (s.tracking_uri, s.model_name))
    except BaseException as exc:
        # Drop the half-written keys so they never linger. Shards still running would write
        # after the discard, so let them finish first, unless the run is being interrupted
        # or cancelled (then its lease expires and the next run discards the version).
        if isinstance(exc, Exception):
            wait(shards)
        discard_version(version, target)
        raise
    finally:
        lease.close()
    seconds = time.perf_counter() - began
    return {**result, "readers": sizes["readers"], "books": sizes["books"],
            "shards": len(readers) + len(books), "seconds": round(seconds, 2),
            "readers_per_s": round(sizes["readers"] / max(seconds, 1e-9)),
            "model_version": meta["model_version"]}


@flow(name="score", log_prints=True, task_runner=ThreadPoolTaskRunner(max_workers=2))
def score_flow(
    aliases: list[str] | None = None,
    top_n: int | None = None,
    rollback_alias_name: str | None = None,
    rollback_to: str | None = None,
) -> list[dict[str, object]]:
    """Publish top-N lists for each registry alias; or roll an alias back.

    Args:
        aliases: registry aliases to score (default: champion and challenger, when present).
        top_n: books per reader (default GOODBOOKS_TOP_N).
        rollback_alias_name: when set, re-point this Redis alias instead of scoring.
        rollback_to: the version to roll back to (default: the previous retained one).
    """
    s = get_settings()
    if rollback_alias_name:
        rolled = rollback_both(s.tracking_uri, s.model_name, rollback_alias_name, rollback_to,
                               redis_target())
        return [{**rolled, "rollback": True}]
    known = registry_aliases(s.tracking_uri, s.model_name)
    wanted = [a for a in (aliases or ["champion", "challenger"]) if a in known]
    if not wanted:
        raise ValueError(f"no registered model {s.model_name!r} has an alias to score "
                         f"(asked for {aliases or ['champion', 'challenger']}); "
                         "run the train flow first")
    held = pinned_aliases(redis_target(), wanted)
    published = [publish_alias(alias, top_n or s.top_n) for alias in wanted if alias not in held]
    if held:
        create_markdown_artifact(
            key="score-pinned",
            markdown="### Pinned aliases, not republished\n\n" + "\n".join(
                f"* {text}" for text in held.values()),
            description="Aliases this run left alone: an experiment or a rollback holds them")
    pinned = [{"alias": alias, "pinned": text} for alias, text in held.items()]
    if not published:
        return pinned
    create_table_artifact(
        key="score-publish",
        table=[{key: p[key] for key in ("alias", "version", "model_version", "readers",
                                         "books", "shards", "seconds", "readers_per_s")}
               for p in published],
        description="Versions published to Redis by this run (switched live atomically)",
    )
    return published + pinned


def dask_score_flow(address: str | None = None, n_workers: int = 2):  # noqa: ANN201
    """The score flow on a Dask cluster (an existing one at `address`, or a local one).

    The scale-out path: shards run on Dask workers through Prefect's Dask task runner.
    Each worker reads the bundle's book side once and, per shard, only that shard's readers
    from the path (use shared storage across machines), so its memory does not grow with
    the number of readers.
    """
    from prefect_dask import DaskTaskRunner

    runner = (DaskTaskRunner(address=address) if address else DaskTaskRunner(
        cluster_kwargs={"n_workers": n_workers, "threads_per_worker": 1,
                        "dashboard_address": None}))
    return score_flow.with_options(task_runner=runner)
