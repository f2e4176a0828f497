"""The score flow: every reader's top-N from the registered model into Redis, then cutover."""

from __future__ import annotations

import tempfile

from prefect import flow, unmapped
from prefect.artifacts import create_table_artifact

from models.scoring import shard_bounds
from settings import get_settings
from tasks.publish import (
    RedisTarget,
    commit_and_switch,
    discard_version,
    load_bundle,
    rollback_alias,
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


@flow(name="score", log_prints=True)
def score_flow(
    aliases: list[str] | None = None,
    top_n: int | None = None,
    rollback_alias_name: str | None = None,
    rollback_to: str | None = None,
) -> list[dict[str, object]]:
    """Publish top-N lists for each registry alias; or roll an alias back.

    Args:
        aliases: registry aliases to score (default: every one of champion/challenger).
        top_n: books per reader (default: GOODBOOKS_TOP_N).
        rollback_alias_name: when set, re-point this Redis alias instead of scoring.
        rollback_to: the version to roll back to (default: the previous retained one).
    """
    s = get_settings()
    target = redis_target()
    if rollback_alias_name:
        version = rollback_alias(rollback_alias_name, rollback_to, target)
        return [{"alias": rollback_alias_name, "version": version, "rollback": True}]
    n = top_n or s.top_n
    known = registry_aliases(s.tracking_uri, s.model_name)
    wanted = [a for a in (aliases or ["champion", "challenger"]) if a in known]
    if not wanted:
        raise ValueError(f"no registered model {s.model_name!r} has an alias to score; "
                         "run the train flow first")
    published = []
    for alias in wanted:
        meta = fetch_bundle(s.tracking_uri, s.model_name, alias, tempfile.mkdtemp())
        bundle = load_bundle(meta["bundle_dir"])
        version = start_version(target)
        try:
            readers = shard_bounds(bundle.ids.n_users, s.score_shard_size)
            books = shard_bounds(bundle.ids.n_books, s.score_shard_size)
            recs = score_shard.map(unmapped(bundle), [a for a, _ in readers],
                                   [b for _, b in readers], n, version, unmapped(target))
            similar = similar_shard.map(unmapped(bundle), [a for a, _ in books],
                                        [b for _, b in books], n, version, unmapped(target))
            popular = write_popular(bundle, n, version, target)
            receipts = [*recs.result(), *similar.result(), popular]
            fields = {
                "model_name": s.model_name, "model_version": meta["model_version"],
                "run_id": meta["run_id"], "snapshot": meta["snapshot"], "alias": alias,
                "n": n, "books": bundle.ids.n_books,
            }
            result = commit_and_switch(version, receipts, fields, alias, s.retention, target)
        except BaseException:
            discard_version(version, target)
            raise
        published.append(result)
    create_table_artifact(
        key="score-publish",
        table=[{"alias": p["alias"], "version": p["version"]} for p in published],
        description="Versions published to Redis by this run",
    )
    return published
