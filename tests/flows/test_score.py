"""Publishing is all-or-nothing and rollback is one step (Dask: test_score_dask.py)."""

from __future__ import annotations

import itertools
import socket
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis

import flows.score
import serving
import tasks.publish
from flows.score import score_flow
from settings import get_settings

pytestmark = pytest.mark.usefixtures("prefect_harness")

_DATA_KINDS = ("recs", "similar", "popular", "version")
_ADDRESS_KEYS = ("path", "host", "port")


def version_keys(store: serving.RecStore, version: str) -> list[bytes]:
    return list(store.client.scan_iter(match=f"{store.prefix}*{version}*", count=1000))


def all_recs(store: serving.RecStore, version: str) -> dict[int, list[int]]:
    out = {}
    for key in store.client.scan_iter(match=f"{store.prefix}recs:{version}:*", count=1000):
        user = int(key.decode().rsplit(":", 1)[1])
        out[user] = serving.decode_items(store.client.get(key))
    return out


def pending_versions(store: serving.RecStore) -> list[str]:
    return [v.decode() for v in store.client.zrange(store.pending_key, 0, -1)]


def uncommitted_versions(store: serving.RecStore) -> set[str]:
    """Versions that own data or manifest keys but are not committed."""
    found = set()
    for key in store.client.scan_iter(match=f"{store.prefix}*", count=1000):
        kind, _, rest = key.decode()[len(store.prefix) :].partition(":")
        if kind in _DATA_KINDS and rest:
            found.add(rest.split(":", 1)[0])
    return found - set(store.committed_versions())


@pytest.fixture
def quick_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """Shard tasks keep their retries but not the back-off between them: failing runs stay fast."""
    for name in ("score_shard", "similar_shard"):
        task = getattr(tasks.publish, name)
        monkeypatch.setattr(flows.score, name, task.with_options(retry_delay_seconds=0))


@dataclass
class Publisher:
    """The publishing clients made during one test; their connections carry a unique name."""

    name: str
    clients: list[redis.Redis] = field(default_factory=list)

    def connection_ids(self, admin: redis.Redis) -> set[int]:
        """Server-side ids of the publisher's open connections, as CLIENT LIST reports them."""
        return {int(c["id"]) for c in admin.client_list() if c.get("name") == self.name}

    def kill(self, admin: redis.Redis) -> set[int]:
        """Close every publisher connection from the server side (CLIENT KILL ID)."""
        ids = self.connection_ids(admin)
        for client_id in ids:
            admin.client_kill_filter(_id=client_id)
        return ids

    def address(self) -> dict[str, object]:
        kwargs = self.clients[0].connection_pool.connection_kwargs
        return {key: kwargs[key] for key in _ADDRESS_KEYS if key in kwargs}

    def point_at(self, address: dict[str, object]) -> None:
        """Make every connection of the publisher, open or yet to be made, dial ``address``."""
        for client in self.clients:
            pool = client.connection_pool
            with pool._lock:
                pool.connection_kwargs.update(address)
                for connection in [*pool._available_connections, *pool._in_use_connections]:
                    for key, value in address.items():
                        setattr(connection, key, value)


@pytest.fixture
def publisher(monkeypatch: pytest.MonkeyPatch) -> Iterator[Publisher]:
    """Publishing clients built afresh for this test, named so the server can tell them apart."""
    made = Publisher(f"gb-publish-{uuid.uuid4().hex[:8]}")
    real = tasks.publish.connect_redis

    def named(*args: object, **kwargs: object) -> redis.Redis:
        client = real(*args, **kwargs)
        client.connection_pool.connection_kwargs["client_name"] = made.name
        made.clients.append(client)
        return client

    monkeypatch.setattr(tasks.publish, "connect_redis", named)
    tasks.publish._client.cache_clear()
    yield made
    tasks.publish._client.cache_clear()


@pytest.fixture
def dead_port() -> Iterator[int]:
    """A local port held bound but not listening: connecting is refused for the whole test.

    A port merely closed again could be taken by another process, or chosen as the source
    port of the very connection dialling it (a TCP self-connect), and then answer.
    """
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        yield held.getsockname()[1]


def unreachable_address(address: dict[str, object], tmp_path: Path,
                        port: int) -> dict[str, object]:
    """Where no Redis listens: a missing socket file, or a bound port that does not listen."""
    if "path" in address:
        return {"path": str(tmp_path / "no-redis.sock")}
    return {"host": "127.0.0.1", "port": port}


def interrupt_second_recs_shard(
    monkeypatch: pytest.MonkeyPatch, action: Callable[[], None], rows_per_trip: int = 32
) -> None:
    """Run ``action`` once, halfway through writing the second reader shard to start.

    Shards are written ``rows_per_trip`` rows per pipeline round trip, so by then that shard's first
    half is already stored and its second half is still to be sent.
    """
    real = serving.RecStore.write_recs
    calls = itertools.count()

    def rows_with_action(rows: Iterable[tuple[int, str]]) -> Iterator[tuple[int, str]]:
        rows = list(rows)
        yield from rows[: len(rows) // 2]
        action()
        yield from rows[len(rows) // 2 :]

    def write_recs(
        self: serving.RecStore, version: str, rows: Iterable[tuple[int, str]], batch: int = 2000
    ) -> serving.ShardReceipt:
        if next(calls) == 1:
            rows = rows_with_action(rows)
        return real(self, version, rows, batch=min(batch, rows_per_trip))

    monkeypatch.setattr(serving.RecStore, "write_recs", write_recs)


def test_a_failing_shard_keeps_the_live_version_and_leaves_nothing_behind(
    live_store: serving.RecStore, monkeypatch: pytest.MonkeyPatch, quick_retries: None
) -> None:
    before = live_store.aliases()
    committed_before = live_store.committed_versions()
    real = tasks.publish.score_readers
    # Each shard is scored from its own rows (start 0): its first reader tells it apart.
    first_reader = min(all_recs(live_store, before["champion"]))

    def failing(bundle, start, stop, n, num_threads=0):  # noqa: ANN001, ANN202
        if int(bundle.ids.user_ids[start]) != first_reader:
            raise RuntimeError("injected shard failure")
        return real(bundle, start, stop, n, num_threads=num_threads)

    monkeypatch.setattr(tasks.publish, "score_readers", failing)
    with pytest.raises(RuntimeError, match="injected shard failure"):
        score_flow(aliases=["champion"])
    assert live_store.aliases() == before
    assert live_store.committed_versions() == committed_before
    # The half-written version was discarded after its last shard finished: no key of an
    # uncommitted version remains, similar-book shards included.
    assert pending_versions(live_store) == []
    assert uncommitted_versions(live_store) == set()
    assert serving.recommend(1, 3).version == before["champion"]

    monkeypatch.setattr(tasks.publish, "score_readers", real)
    published = score_flow(aliases=["champion"])  # the retried run completes
    assert live_store.get_alias("champion") == published[0]["version"] != before["champion"]


def test_a_connection_dropped_mid_batch_reconnects_and_the_version_completes(
    live_store: serving.RecStore, publisher: Publisher, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = live_store.get_alias("champion")
    admin = live_store.client
    stored_at_drop: list[int] = []
    killed: set[int] = set()

    def drop() -> None:
        (version,) = pending_versions(live_store)
        stored_at_drop.append(len(all_recs(live_store, version)))
        killed.update(publisher.kill(admin))

    interrupt_second_recs_shard(monkeypatch, drop)
    published = score_flow(aliases=["champion"])[0]
    version = published["version"]

    # The drop was real and came mid-batch: the server closed the publisher's open
    # connections while part of the version, but not all of it, was stored.
    assert killed
    assert 0 < stored_at_drop[0] < published["readers"]
    # redis-py noticed the closed sockets and reconnected, so the run completed in full.
    assert live_store.get_alias("champion") == version != before
    assert live_store.verify_version(version)
    assert len(all_recs(live_store, version)) == published["readers"]
    assert int(live_store.get_manifest(version)["readers"]) == published["readers"]
    assert pending_versions(live_store) == []
    assert uncommitted_versions(live_store) == set()
    # One cached client served the whole run: killing its connections did not retire it,
    # and it carries on over new connections.
    assert len(publisher.clients) == 1
    reconnected = publisher.connection_ids(admin)
    assert reconnected and reconnected.isdisjoint(killed)
    assert serving.recommend(1, 3).version == version


def test_a_connection_lost_for_the_rest_of_the_run_fails_it_and_the_next_run_cleans_up(
    live_store: serving.RecStore,
    publisher: Publisher,
    quick_retries: None,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    dead_port: int,
) -> None:
    before = live_store.aliases()
    committed_before = live_store.committed_versions()
    admin = live_store.client
    reachable: dict[str, object] = {}

    def outage() -> None:
        # Redis goes away for the publisher: open connections are closed server-side and
        # every reconnection attempt is refused, for the rest of the run.
        reachable.update(publisher.address())
        publisher.point_at(unreachable_address(reachable, tmp_path, dead_port))
        publisher.kill(admin)

    interrupt_second_recs_shard(monkeypatch, outage)
    with pytest.raises(redis.ConnectionError):
        score_flow(aliases=["champion"])

    assert live_store.aliases() == before
    assert live_store.committed_versions() == committed_before
    assert serving.recommend(1, 3).version == before["champion"]
    # The discard could not reach Redis either: the half-written version stays recorded as
    # pending, never committed, so no alias can be switched onto it.
    (abandoned,) = pending_versions(live_store)
    assert uncommitted_versions(live_store) == {abandoned}
    assert version_keys(live_store, abandoned)
    assert live_store.get_manifest(abandoned) is None

    # Redis is back at the same address, and the failed run's lease has run out (it stopped
    # renewing it; the TTL is tasks.publish.LEASE_S); meanwhile another writer has just
    # started a batch of its own, under a live lease.
    publisher.point_at(reachable)
    assert admin.pttl(live_store.lease_key(abandoned)) <= tasks.publish.LEASE_S * 1000
    admin.delete(live_store.lease_key(abandoned))
    in_progress = live_store.new_version(lease_s=60)
    live_store.write_popular(in_progress, "1,2,3")

    published = score_flow(aliases=["champion"])[0]  # the retried run
    version = published["version"]
    assert live_store.get_alias("champion") == version
    assert version not in committed_before
    assert live_store.verify_version(version)
    assert serving.recommend(1, 3).version == version
    # It discarded the abandoned version and left the other writer's batch alone.
    assert version_keys(live_store, abandoned) == []
    assert pending_versions(live_store) == [in_progress]
    assert live_store.get_popular(in_progress) == [1, 2, 3]
    # The cached client whose connections were killed served the retried run as well.
    assert len(publisher.clients) == 1
    live_store.discard_version(in_progress)
    assert uncommitted_versions(live_store) == set()


def test_rollback_moves_both_registries_and_pins_until_unpinned(
    live_store: serving.RecStore,
) -> None:
    from mlflow import MlflowClient

    from tasks.aliases import mlflow_alias, status, unpin

    s = get_settings()
    client = MlflowClient(s.tracking_uri)
    first = score_flow(aliases=["champion"])[0]["version"]
    second = score_flow(aliases=["champion"])[0]["version"]
    assert live_store.get_alias("champion") == second
    result = score_flow(rollback_alias_name="champion")
    assert result[0]["version"] == first == live_store.get_alias("champion")
    assert live_store.verify_version(first)
    # MLflow's champion is the model version the rolled-back-to batch was scored from.
    assert mlflow_alias(client, s.model_name, "champion") == (
        live_store.get_manifest(first)["model_version"])
    assert status(client, s.model_name, live_store)["disagreements"] == []
    # Pinned: the nightly score leaves it alone until unpinned.
    (skipped,) = score_flow(aliases=["champion"])
    assert "pinned by rollback" in skipped["pinned"]
    assert live_store.get_alias("champion") == first
    assert unpin(client, s.model_name, live_store, "champion") == [
        "champion: pin of rollback lifted"]
    assert score_flow(aliases=["champion"])[0]["version"] not in (first, second)


def test_retention_prunes_old_versions(live_store: serving.RecStore) -> None:
    keep = get_settings().retention + 1
    for _ in range(keep + 2):
        score_flow(aliases=["champion"])
    committed = set(live_store.committed_versions())
    # Per alias: what it serves now and the `retention` batches it served before.
    kept = set(live_store.aliases().values())
    for alias in live_store._aliases_with_history():
        kept |= set(sorted(set(live_store.alias_history(alias)), reverse=True)[:keep])
    assert committed <= kept
    served = sorted(set(live_store.alias_history("champion")), reverse=True)
    assert set(served[:keep]) <= committed  # the rollback targets are there
    assert len(served) > keep and not set(served[keep:]) <= committed  # older ones pruned
    for version in committed:
        assert live_store.get_manifest(version) is not None


def test_the_zombie_automation_is_one_the_prefect_server_accepts() -> None:
    # `make deploy` creates it: a run whose process died (no heartbeat for three beats, no
    # final state) is marked Crashed instead of staying Running for ever.
    import httpx
    from prefect.settings import PREFECT_API_URL

    from infra.stack import HEARTBEAT_S, ZOMBIE_AUTOMATION, zombie_automation

    api = str(PREFECT_API_URL.value())
    created = httpx.post(f"{api}/automations/", json=zombie_automation(), timeout=30)
    assert created.status_code == 201, created.text
    stored = httpx.get(f"{api}/automations/{created.json()['id']}", timeout=30).json()
    try:
        assert stored["name"] == ZOMBIE_AUTOMATION
        assert stored["trigger"]["posture"] == "Proactive"
        assert stored["trigger"]["within"] == 3 * HEARTBEAT_S
        assert stored["actions"][0]["state"] == "CRASHED"
    finally:
        httpx.delete(f"{api}/automations/{created.json()['id']}", timeout=30)
