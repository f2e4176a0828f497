"""The score flow publishes to a Redis Cluster exactly what it publishes to one server."""

from __future__ import annotations

import os

import pytest
from redis.cluster import RedisCluster

import serving
import tasks.publish
from flows.score import score_flow
from settings import get_settings
from tests.redis_cluster import LocalCluster, delete_prefix

pytestmark = pytest.mark.usefixtures("prefect_harness")


def test_the_score_flow_publishes_the_same_version_to_a_cluster(
    live_store: serving.RecStore, redis_cluster: LocalCluster, cluster_client: RedisCluster
) -> None:
    single = score_flow(aliases=["champion"])[0]["version"]
    saved = os.environ.get("GOODBOOKS_REDIS_URL")
    os.environ["GOODBOOKS_REDIS_URL"] = redis_cluster.url
    get_settings.cache_clear()
    tasks.publish._client.cache_clear()
    try:
        published = score_flow(aliases=["champion"])[0]
    finally:
        if saved is None:
            os.environ.pop("GOODBOOKS_REDIS_URL")
        else:
            os.environ["GOODBOOKS_REDIS_URL"] = saved
        get_settings.cache_clear()
        tasks.publish._client.cache_clear()
    cluster_store = serving.RecStore(cluster_client, live_store.prefix)
    try:
        on_cluster = str(published["version"])
        assert cluster_store.get_alias("champion") == on_cluster
        assert cluster_store.verify_version(on_cluster)
        # Same model, same readers: the same lists, so the same order-free checksum.
        single_manifest = live_store.get_manifest(single)
        cluster_manifest = cluster_store.get_manifest(on_cluster)
        assert single_manifest is not None and cluster_manifest is not None
        for field in ("readers", "similar_books", "keys", "checksum", "model_version"):
            assert cluster_manifest[field] == single_manifest[field]
        readers = int(cluster_manifest["readers"])
        assert readers > 0
        for user in range(1, readers + 1, max(1, readers // 50)):
            assert cluster_store.get_recs(on_cluster, user) == live_store.get_recs(single, user)
    finally:
        delete_prefix(cluster_client, live_store.prefix)
