"""The store and the serving function on a real Redis Cluster, beside a single server.

The publish, cutover, rollback, retention, event, drain, serve and HTTP tests of
test_store, test_handler, test_events, tasks/test_events and test_api run here twice,
through this module's ``store`` fixture: once on the session's single server and once on a
three-master cluster (tests/redis_cluster.py). The
tests below them check what only a cluster can get wrong: where the keys land, that the
cutover is still one compare-and-set on one key, and that a request is still one GET.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import redis
from mlflow import MlflowClient
from redis.cluster import RedisCluster

from serving.connection import cluster_nodes, connect_redis, describe_redis, is_cluster
from serving.handler import RecommendationService
from serving.keys import InvalidNameError
from serving.pins import get_pin
from serving.store import NotReplicatedError, RecStore, SwitchNotReplicatedError, encode_items
from tasks.ab import promote
from tasks.aliases import SwitchUnconfirmedError, rollback
from tasks.publish import PublishError, switch_to
from tests.flows.test_ab_evaluate import aliases as mlflow_aliases
from tests.flows.test_ab_evaluate import publish as ab_publish
from tests.flows.test_ab_evaluate import registry, tracking_uri  # noqa: F401
from tests.redis_cluster import LocalCluster, delete_prefix

# The existing tests, collected again in this module so that they use its `store` fixture.
from tests.serving.test_api import (  # noqa: F401
    champion,
    client,
    test_a_retried_request_is_counted_once,
    test_events_are_written_with_the_request_id,
    test_health_and_ready,
    test_recommendations_answer_with_arm_and_version,
    test_similar_books_and_unknown_book,
    test_unknown_reader_gets_popular_books,
)
from tests.serving.test_events import (  # noqa: F401
    test_a_batch_of_duplicates_only_writes_nothing,
    test_an_event_id_is_written_and_counted_once,
    test_counters_expire,
    test_summary_counts_per_arm_over_the_hour_and_the_day,
    test_writer_appends_entries_that_read_back_the_same,
)
from tests.serving.test_handler import (  # noqa: F401
    live,
    test_challenger_alias_is_served_separately,
    test_known_reader_gets_personalised_top_k,
    test_no_live_version_is_a_typed_error,
    test_pointer_is_cached_until_its_ttl_then_follows_the_switch,
    test_unknown_reader_gets_popular_fallback,
)
from tests.serving.test_handler import (  # noqa: F401
    test_similar_books_and_unknown_book as test_service_similar_books_and_unknown_book,
)
from tests.serving.test_store import (  # noqa: F401
    publish,
    test_a_pending_version_is_discarded_once_its_writer_lease_expires,
    test_a_prune_that_dies_while_deleting_is_finished_by_the_next_run,
    test_a_switch_is_compare_and_set,
    test_alias_switch_is_refused_without_manifest,
    test_aliases_lists_every_alias,
    test_commit_writes_manifest_and_records_version,
    test_committed_version_is_immutable,
    test_discard_removes_a_half_written_version,
    test_new_versions_are_unique_sortable_and_pending,
    test_pipelined_write_in_small_batches_stores_every_row,
    test_prune_keeps_each_alias_recent_batches_and_deletes_exactly_the_rest,
    test_prune_leaves_a_commit_whose_writer_still_holds_its_lease,
    test_readers_see_old_version_until_the_switch,
    test_recs_similar_popular_round_trip,
    test_rollback_never_lands_on_another_alias_batch,
    test_rollback_refuses_what_it_cannot_do,
    test_rollback_steps_back_through_the_versions_the_alias_served,
    test_verify_detects_changed_and_missing_keys,
)
from tests.tasks.test_events import (  # noqa: F401
    test_a_crash_after_the_write_before_the_ack_duplicates_nothing,
    test_drain_moves_every_event_to_the_log_and_trims_what_it_wrote,
)

READERS = 300


@pytest.fixture(params=["single-node", "cluster"])
def store(request: pytest.FixtureRequest) -> Iterator[RecStore]:
    """A store under the test's own prefix, on the single server or on the cluster."""
    fixture = "redis_client" if request.param == "single-node" else "cluster_client"
    connection = request.getfixturevalue(fixture)
    prefix = f"gbtest:{uuid.uuid4().hex[:8]}:"
    yield RecStore(connection, prefix)
    delete_prefix(connection, prefix)


@pytest.fixture
def cluster_store(cluster_client: RedisCluster) -> Iterator[RecStore]:
    """A store on the cluster alone."""
    prefix = f"gbtest:{uuid.uuid4().hex[:8]}:"
    yield RecStore(cluster_client, prefix)
    delete_prefix(cluster_client, prefix)


def publish_readers(store: RecStore, readers: int = READERS, first_book: int = 1) -> str:
    """Commit readers 1..readers, reader u getting [first_book + u, ..., first_book + u + 9]."""
    version = store.new_version()
    rows = [(u, encode_items(range(first_book + u, first_book + u + 10)))
            for u in range(1, readers + 1)]
    receipts = [store.write_recs(version, rows), store.write_popular(version, "1,2,3")]
    store.commit_version(version, receipts, {"n": 10})
    return version


def master_clients(cluster: RedisCluster) -> dict[str, redis.Redis]:
    """A plain client of each master, by "host:port"."""
    return {f"{node.host}:{node.port}": redis.Redis(host=node.host, port=node.port,
                                                    decode_responses=True)
            for node in cluster.get_primaries()}


def command_counts(node: redis.Redis) -> dict[str, int]:
    """Calls per command since the last CONFIG RESETSTAT (commands run by scripts included)."""
    return {name.removeprefix("cmdstat_"): int(stats["calls"])
            for name, stats in node.info("commandstats").items()}


# --- choosing a cluster ---------------------------------------------------------------


def test_a_cluster_url_names_its_startup_nodes() -> None:
    assert cluster_nodes("redis+cluster://10.0.0.1:7000,10.0.0.2:7001") == [
        ("10.0.0.1", 7000), ("10.0.0.2", 7001)]
    assert cluster_nodes("rediss+cluster://user:secret@[::1]:7000/0") == [("::1", 7000)]


@pytest.mark.parametrize(("url", "match"), [
    ("redis+cluster://10.0.0.1:7000/3", "only database 0"),
    ("redis+cluster://10.0.0.1", "not host:port"),
    ("redis+cluster://", "names no node"),
])
def test_a_cluster_url_that_cannot_work_is_refused(url: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        cluster_nodes(url)


def test_a_refused_url_does_not_show_its_password() -> None:
    with pytest.raises(ValueError) as refused:
        cluster_nodes("redis+cluster://user:secret@10.0.0.1:7000/2")
    assert "secret" not in str(refused.value)


def test_the_cluster_url_gives_a_cluster_client(redis_cluster: LocalCluster) -> None:
    connection = connect_redis(redis_cluster.url, Path("unused"))
    try:
        assert isinstance(connection, RedisCluster) and is_cluster(connection)
        masters = sorted(f"127.0.0.1:{port}" for port in redis_cluster.master_ports())
        assert describe_redis(connection) == f"redis+cluster://{','.join(masters)}"
        assert RecStore(connection, "gb:").alias_key("champion") == "{gb:}alias:champion"
    finally:
        connection.close()


def test_a_hash_tag_in_the_prefix_is_refused_on_a_cluster(cluster_client: RedisCluster) -> None:
    with pytest.raises(InvalidNameError, match="one slot"):
        RecStore(cluster_client, "{gb}:")


def test_a_single_server_keeps_the_untagged_key_names(redis_client: redis.Redis) -> None:
    single = RecStore(redis_client, "gb:")
    assert (single.alias_key("champion"), single.recs_key("v1", 7)) == (
        "gb:alias:champion", "gb:recs:v1:7")


# --- where the keys land -----------------------------------------------------------------


def test_reader_keys_spread_over_slots_and_every_master(cluster_store: RecStore) -> None:
    cluster = cluster_store.client
    version = publish_readers(cluster_store)
    slots = {cluster.keyslot(cluster_store.recs_key(version, u)) for u in range(1, READERS + 1)}
    # No hash tag pins them together: 300 keys take hundreds of slots. CRC16 over ids that
    # differ only in their last digits collides more than chance; for some prefixes only
    # about 210 slots are distinct (2,000 random prefixes: 210 to 300), so not 0.9 of them.
    assert len(slots) > READERS * 0.6
    counts = {address: len(list(node.scan_iter(match=f"{cluster_store.prefix}recs:*")))
              for address, node in master_clients(cluster).items()}
    assert len(counts) == 3 and all(count > 0 for count in counts.values())
    assert sum(counts.values()) == READERS  # each list once, on the master of its slot


def test_control_keys_share_one_slot(cluster_store: RecStore) -> None:
    version = publish_readers(cluster_store)
    cluster_store.set_alias("champion", version)
    keys = [cluster_store.alias_key("champion"), cluster_store.history_key("champion"),
            cluster_store.manifest_key(version), cluster_store.versions_key,
            cluster_store.pending_key, cluster_store.lease_key(version),
            cluster_store.leased_key, cluster_store.pin_key("champion"),
            cluster_store.registry_key, cluster_store.experiment_key("default"),
            cluster_store.events_key, cluster_store.event_id_key("r1:0"),
            cluster_store.stats_key("m", "202612052300")]
    assert len({cluster_store.client.keyslot(key) for key in keys}) == 1


def test_prune_leaves_no_key_of_the_version_on_any_master(cluster_store: RecStore) -> None:
    old = publish_readers(cluster_store)
    cluster_store.set_alias("champion", old)
    new = publish_readers(cluster_store, first_book=1000)
    cluster_store.set_alias("champion", new, expected=old)

    assert cluster_store.prune(keep=0) == [old]
    for node in master_clients(cluster_store.client).values():
        assert list(node.scan_iter(match=f"*{old}*")) == []
        assert len(list(node.scan_iter(match=f"*recs:{new}:*"))) > 0
    assert cluster_store.verify_version(new)


def test_a_commit_waits_until_the_replicas_hold_every_list(
    cluster_store: RecStore, redis_cluster: LocalCluster
) -> None:
    version = publish_readers(cluster_store)
    # Read right after the commit, straight from the replicas: a replica promoted now would
    # serve every list of the committed version.
    on_replicas = sum(
        len(list(redis_cluster.node(port).client().scan_iter(
            match=f"{cluster_store.prefix}recs:{version}:*", count=1000)))
        for port in redis_cluster.replica_ports())
    assert on_replicas == READERS


def test_a_commit_is_refused_while_a_replica_lags(
    cluster_store: RecStore, redis_cluster: LocalCluster
) -> None:
    version = cluster_store.new_version()
    replica = redis_cluster.replica_ports()[0]
    redis_cluster.pause(replica)  # shorter than the node timeout: no one marks it failed
    try:
        receipt = cluster_store.write_recs(version, [(u, "1,2") for u in range(1, READERS + 1)])
        with pytest.raises(NotReplicatedError, match="not committed"):
            cluster_store.commit_version(version, [receipt], {}, replication_timeout_s=0.3)
    finally:
        redis_cluster.resume(replica)
    assert cluster_store.get_manifest(version) is None
    cluster_store.commit_version(version, [receipt], {})  # caught up: the commit goes through
    assert cluster_store.verify_version(version)


def on_replicas(redis_cluster: LocalCluster, key: str) -> list[str | None]:
    """``key`` as each replica holds it now (READONLY: a replica answers for its master)."""
    values = []
    for port in redis_cluster.replica_ports():
        with redis_cluster.node(port).client().pipeline(transaction=False) as pipe:
            pipe.execute_command("READONLY")
            pipe.get(key)
            try:
                values.append(pipe.execute()[1])
            except redis.ResponseError:  # MOVED: another master's slot
                continue
    return values


def champion_and_next(store: RecStore) -> tuple[str, str]:
    """Two committed versions, the alias champion on the first."""
    old = publish_readers(store)
    store.set_alias("champion", old)
    return old, publish_readers(store, first_book=1000)


def test_a_switch_returns_once_the_replicas_hold_it(
    cluster_store: RecStore, redis_cluster: LocalCluster
) -> None:
    old, new = champion_and_next(cluster_store)
    assert cluster_store.set_alias("champion", new, expected=old) == old
    # Read at once, straight from the replica: a replica promoted now serves the new one.
    assert on_replicas(redis_cluster, cluster_store.alias_key("champion")) == [new]


def test_a_switch_the_replicas_do_not_confirm_is_made_and_said(
    cluster_store: RecStore, redis_cluster: LocalCluster
) -> None:
    old, new = champion_and_next(cluster_store)
    with control_replica_paused(cluster_store, redis_cluster):
        with pytest.raises(SwitchNotReplicatedError,
                           match=f"now points at {new}, .* puts it back on {old}") as caught:
            cluster_store.set_alias("champion", new, expected=old, replication_timeout_s=0.3)
        assert (caught.value.alias, caught.value.version, caught.value.previous) == (
            "champion", new, old)
        # Made, and served: readers get the new version while the replica catches up.
        assert cluster_store.get_alias("champion") == new
        with pytest.raises(SwitchNotReplicatedError, match="nothing \\(unset\\)"):
            cluster_store.set_alias("challenger", new, replication_timeout_s=0.3)
    cluster_store.wait_replicated()  # back: the switch is confirmed
    assert on_replicas(redis_cluster, cluster_store.alias_key("champion")) == [new]


@contextmanager
def control_replica_paused(store: RecStore, cluster: LocalCluster) -> Iterator[None]:
    """SIGSTOP the replica of the master that holds the control keys (aliases, manifests),
    for less than the node timeout: no one marks it failed, it just does not answer."""
    owner = store.client.get_node_from_key(store.alias_key("champion"))
    replica = next(port for port in cluster.replica_ports()
                   if cluster.node(port).client().info("replication")["master_port"]
                   == owner.port)
    cluster.pause(replica)
    try:
        yield
    finally:
        cluster.resume(replica)


def test_a_publish_the_replica_does_not_confirm_is_live_and_fails_saying_so(
    cluster_store: RecStore, redis_cluster: LocalCluster
) -> None:
    old, new = champion_and_next(cluster_store)
    lease = cluster_store.lease_key(new)
    cluster_store.client.set(lease, "1")
    with control_replica_paused(cluster_store, redis_cluster), pytest.raises(
            PublishError, match=f"'champion' now points at {new}, and is served, but only 0 "
                                f"of the 1 replicas .* puts it back on {old}"):
        switch_to(cluster_store, "champion", new, started_from=old, replication_timeout_s=0.3)
    assert cluster_store.get_alias("champion") == new
    assert not cluster_store.client.exists(lease)  # the writer is done with it


def test_a_rollback_or_promotion_the_replica_does_not_confirm_is_made_and_said(
    cluster_store: RecStore, redis_cluster: LocalCluster,
    registry: tuple[str, str, MlflowClient],  # noqa: F811 - the fixture imported above
) -> None:
    uri, model, registry_client = registry
    store = cluster_store
    old = ab_publish(store, "champion", "1")
    challenger = ab_publish(store, "challenger", "2")
    with control_replica_paused(store, redis_cluster):
        result = promote(uri, model, store, replication_timeout_s=0.3)
    # Made and served in both registries, and said: the caller closes the experiment.
    assert mlflow_aliases(registry_client, model) == {"champion": "2", "previous": "1"}
    assert store.aliases() == {"champion": challenger, "previous": old}
    assert result.unconfirmed is not None
    assert f"model version 2 was promoted to champion (batch {challenger}), and is " \
        "served, but only 0 of the 1 replicas" in result.unconfirmed

    with control_replica_paused(store, redis_cluster), pytest.raises(
            SwitchUnconfirmedError, match=f"champion was rolled back to batch {old} .* and "
                                          "is served, but only 0 of the 1 replicas"):
        rollback(registry_client, model, store, "champion", replication_timeout_s=0.3)
    assert mlflow_aliases(registry_client, model)["champion"] == "1"
    assert store.get_alias("champion") == old  # made, pinned, and served
    assert get_pin(store, "champion") is not None
    store.wait_replicated(control_only=True)  # back: confirmed
    assert on_replicas(redis_cluster, store.alias_key("champion")) == [old]


def test_readiness_names_the_master_that_holds_the_event_stream(cluster_store: RecStore) -> None:
    version = publish_readers(cluster_store)
    cluster_store.set_alias("champion", version)
    ready = RecommendationService(cluster_store).readiness(max_age_s=3600)
    owner = cluster_store.client.get_node_from_key(cluster_store.events_key)
    assert ready.ready and ready.redis == "ok"
    assert [a.version for a in ready.aliases] == [version]
    assert ready.warnings == (
        f"the cluster master {owner.host}:{owner.port} holding {cluster_store.events_key} "
        "keeps no append-only file: events not yet drained are lost if it fails before its "
        "replica has them; set appendonly yes on every node",)


# --- the cutover and a request ---------------------------------------------------------------


def test_the_alias_switch_is_one_set_on_one_key_of_one_master(cluster_store: RecStore) -> None:
    old, new = champion_and_next(cluster_store)
    nodes = master_clients(cluster_store.client)
    for node in nodes.values():
        node.config_resetstat()

    assert cluster_store.set_alias("champion", new, expected=old) == old

    owner = cluster_store.client.get_node_from_key(cluster_store.alias_key("champion"))
    for address, node in nodes.items():
        counts = command_counts(node)
        counts.pop("config|resetstat", None)
        counts.pop("info", None)
        if address == f"{owner.host}:{owner.port}":
            # One script: it reads the manifest's existence and the alias, SETs the alias
            # (the cutover) and records it in the history: the only write to serving state.
            # Then one marker SET and one WAIT for its replica (REPLCONF: the replica's ack).
            assert counts.pop("set") == 2
            assert counts.pop("wait") == 1
            assert counts.pop("evalsha", 0) + counts.pop("eval", 0) == 1
            assert set(counts) <= {"exists", "get", "lpush", "ltrim", "replconf"}
        else:
            assert counts == {}  # no other master takes part in the switch
    assert cluster_store.get_alias("champion") == new


def test_recommend_is_one_get_on_the_master_of_the_reader_key(cluster_store: RecStore) -> None:
    version = publish_readers(cluster_store)
    cluster_store.set_alias("champion", version)
    service = RecommendationService(cluster_store, pointer_ttl_s=60.0)  # no list cache
    assert service.recommend(1, k=3).items == [2, 3, 4]  # the pointer is now cached
    nodes = master_clients(cluster_store.client)
    for node in nodes.values():
        node.config_resetstat()

    answer = service.recommend(7, k=10)

    assert (answer.items, answer.version, answer.source) == (
        list(range(8, 18)), version, "personalised")
    owner = cluster_store.client.get_node_from_key(cluster_store.recs_key(version, 7))
    for address, node in nodes.items():
        counts = command_counts(node)
        counts.pop("config|resetstat", None)
        counts.pop("info", None)
        assert counts == ({"get": 1} if address == f"{owner.host}:{owner.port}" else {})
