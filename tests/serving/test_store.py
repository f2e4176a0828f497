"""RecStore against a real Redis: the key contract, versions, aliases, pruning, rollback."""

from __future__ import annotations

import re
import threading
import time

import pytest
import redis
from hypothesis import given, settings
from hypothesis import strategies as st

from serving.store import (
    AliasChangedError,
    InvalidNameError,
    InvalidPayloadError,
    Manifest,
    NoRollbackTargetError,
    RecStore,
    ShardReceipt,
    VersionCommittedError,
    VersionNotCommittedError,
    decode_items,
    encode_items,
)

USERS = 40
BOOKS = 15


def recs_rows(offset: int = 0) -> list[tuple[int, str]]:
    """Readers 1..USERS, each with three distinct book ids (``offset`` changes the content)."""
    return [(u, encode_items([u + offset, u + offset + 1, 1000 + u])) for u in range(1, USERS + 1)]


def similar_rows() -> list[tuple[int, str]]:
    return [(b, encode_items([b + 1, b + 2])) for b in range(1, BOOKS + 1)]


def publish(store: RecStore, offset: int = 0, **fields: str | int) -> str:
    """Write and commit a full version; return it."""
    version = store.new_version()
    receipts = [
        store.write_recs(version, recs_rows(offset)),
        store.write_similar(version, similar_rows()),
        store.write_popular(version, encode_items([7, 8, 9, 10])),
    ]
    store.commit_version(version, receipts, {"model_name": "test", "n": 3, **fields})
    return version


def keys_under(store: RecStore) -> set[str]:
    """Every key of the store: data keys, and control keys (prefixed apart on a cluster)."""
    return {
        key.decode() if isinstance(key, bytes) else key
        for pattern in store.key_patterns()
        for key in store.client.scan_iter(match=pattern, count=1000)
    }


def keys_of(store: RecStore, version: str) -> set[str]:
    return {key for key in keys_under(store) if f":{version}" in key}


# --- encoding ---------------------------------------------------------------------------


@pytest.mark.parametrize(("items", "payload"), [([], ""), ([5], "5"), ([12, 7, 99], "12,7,99")])
def test_encode_decode_round_trip(items: list[int], payload: str) -> None:
    assert encode_items(items) == payload
    assert decode_items(payload) == items
    assert decode_items(payload.encode()) == items


def test_decode_missing_is_empty() -> None:
    assert decode_items(None) == []


def reference_decode(raw: bytes | str) -> list[int]:
    # Alternative test implementation: the plain int() per part that the fast path replaces.
    return [int(part) for part in raw.split(b"," if isinstance(raw, bytes) else ",")]


@settings(max_examples=300, database=None)
@given(st.lists(st.integers(min_value=0, max_value=10**12), min_size=1, max_size=120))
def test_fast_decode_matches_int_per_part(items: list[int]) -> None:
    payload = encode_items(items)
    assert decode_items(payload) == decode_items(payload.encode()) == items


@settings(max_examples=300, database=None)
@given(st.text(alphabet="0123456789,-+_ x", min_size=1, max_size=16))
def test_fast_decode_accepts_and_refuses_what_int_does(raw: str) -> None:
    try:
        expected: list[int] | type[ValueError] = reference_decode(raw)
    except ValueError:
        expected = ValueError
    for value in (raw, raw.encode()):
        if expected is ValueError:
            with pytest.raises(ValueError):
                decode_items(value)
        else:
            assert decode_items(value) == expected


@pytest.mark.parametrize("items", [[1.5], [-3], ["x"], [True, 2]])
def test_encode_rejects_non_ids(items: list[object]) -> None:
    with pytest.raises(InvalidPayloadError):
        encode_items(items)  # type: ignore[arg-type]


# --- versions -----------------------------------------------------------------------------


def test_new_versions_are_unique_sortable_and_pending(store: RecStore) -> None:
    versions = [store.new_version() for _ in range(200)]
    assert len(set(versions)) == 200
    assert all(re.fullmatch(r"\d{8}T\d{12}Z-[0-9a-f]{4}", v) for v in versions)
    stamps = [v.split("-")[0] for v in versions]
    assert stamps == sorted(stamps)  # later calls never sort before earlier ones
    pending = {m.decode() for m in store.client.zrange(store.pending_key, 0, -1)}
    assert pending == set(versions)


def test_recs_similar_popular_round_trip(store: RecStore) -> None:
    version = store.new_version()
    receipt = store.write_recs(version, [(1, "12,7,99"), (2, "")])
    store.write_similar(version, [(12, "7,99")])
    store.write_popular(version, "5,6")

    assert receipt.kind == "recs" and receipt.count == 2
    assert store.get_recs(version, 1) == [12, 7, 99]
    assert store.get_recs(version, 2) == []
    assert store.get_recs(version, 3) is None
    assert store.get_similar(version, 12) == [7, 99]
    assert store.get_similar(version, 13) is None
    assert store.get_popular(version) == [5, 6]
    # The contract: plain strings any application can GET.
    assert store.client.get(f"{store.prefix}recs:{version}:1") == b"12,7,99"
    assert store.client.get(f"{store.prefix}popular:{version}") == b"5,6"


def test_pipelined_write_in_small_batches_stores_every_row(store: RecStore) -> None:
    version = store.new_version()
    receipt = store.write_recs(version, iter(recs_rows()), batch=7)  # 40 rows: 5 full batches + 5
    assert receipt.count == USERS
    assert all(store.get_recs(version, u) == decode_items(p) for u, p in recs_rows())


def test_digests_combine_independently_of_order_and_sharding(store: RecStore) -> None:
    rows = recs_rows()
    whole = store.write_recs(store.new_version(), rows)

    version = store.new_version()
    shards = [rows[i::4] for i in range(4)]
    receipts: list[ShardReceipt] = [None] * 4  # type: ignore[list-item]

    def write(i: int) -> None:
        receipts[i] = store.write_recs(version, reversed(shards[i]), batch=3)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    forward = receipts[0].combine(receipts[1]).combine(receipts[2]).combine(receipts[3])
    backward = receipts[3].combine(receipts[2]).combine(receipts[1]).combine(receipts[0])
    assert forward == backward == whole
    assert whole.count == USERS and whole.digest != 0


def test_receipts_of_different_kinds_do_not_combine(store: RecStore) -> None:
    version = store.new_version()
    with pytest.raises(ValueError, match="cannot combine"):
        store.write_recs(version, [(1, "2")]).combine(store.write_popular(version, "3"))


@pytest.mark.parametrize(
    ("row", "match"),
    [
        ((0, "1"), "positive"),
        ((-4, "1"), "positive"),
        (("5", "1"), "integer"),
        ((1.5, "1"), "integer"),
        ((True, "1"), "positive"),
        ((1, "[1, 2]"), "encode_items"),
        ((1, "1,,2"), "encode_items"),
        ((1, [1, 2]), "encode_items"),
    ],
)
def test_write_rejects_bad_rows(store: RecStore, row: tuple[object, object], match: str) -> None:
    with pytest.raises(InvalidPayloadError, match=match):
        store.write_recs(store.new_version(), [row])  # type: ignore[list-item]


@pytest.mark.parametrize("version", ["", "a:b", "v*", "v?", "[v]", "-v", "x" * 65, 7])
def test_unusable_version_names_are_refused(store: RecStore, version: object) -> None:
    with pytest.raises(InvalidNameError):
        store.write_popular(version, "1")  # type: ignore[arg-type]


def test_commit_writes_manifest_and_records_version(store: RecStore) -> None:
    version = store.new_version()
    receipts = [
        store.write_recs(version, recs_rows()[:25]),
        store.write_recs(version, recs_rows()[25:]),
        store.write_similar(version, similar_rows()),
        store.write_popular(version, "7,8,9"),
    ]
    assert store.get_manifest(version) is None
    assert version not in store.committed_versions()

    manifest = store.commit_version(
        version,
        receipts,
        {
            "model_name": "goodbooks-lightfm",
            "model_version": 4,
            "run_id": "abc123",
            "snapshot": "2026-11-28",
            "n": 3,
        },
    )

    stored = store.get_manifest(version)
    assert stored is not None
    assert Manifest.from_hash(stored) == manifest
    assert manifest.readers == USERS and manifest.similar_books == BOOKS and manifest.popular
    assert manifest.keys == USERS + BOOKS + 1
    assert stored["model_name"] == "goodbooks-lightfm" and stored["model_version"] == "4"
    assert stored["run_id"] == "abc123" and stored["snapshot"] == "2026-11-28"
    assert stored["n"] == "3" and stored["created_at"].endswith("+00:00")
    assert store.committed_versions() == [version]
    assert store.client.zscore(store.pending_key, version) is None
    assert store.verify_version(version)
    # The manifest does not switch any alias.
    assert store.aliases() == {}


def test_same_content_gives_same_checksum_across_versions(store: RecStore) -> None:
    first, second, changed = publish(store), publish(store), publish(store, offset=1)
    checksums = [store.get_manifest(v)["checksum"] for v in (first, second, changed)]  # type: ignore[index]
    assert checksums[0] == checksums[1] != checksums[2]


def test_committed_version_is_immutable(store: RecStore) -> None:
    version = publish(store)
    with pytest.raises(VersionCommittedError):
        store.write_recs(version, [(1, "2")])
    with pytest.raises(VersionCommittedError):
        store.write_popular(version, "2")
    with pytest.raises(VersionCommittedError):
        store.commit_version(version, [], {})
    with pytest.raises(VersionCommittedError):
        store.discard_version(version)


def test_commit_refuses_reserved_field_names(store: RecStore) -> None:
    version = store.new_version()
    with pytest.raises(InvalidNameError, match="checksum"):
        store.commit_version(version, [], {"checksum": "mine"})


def test_verify_detects_changed_and_missing_keys(store: RecStore) -> None:
    version = publish(store)
    assert store.verify_version(version)
    store.client.set(store.recs_key(version, 3), "1,2,3")
    assert not store.verify_version(version)
    store.client.set(store.recs_key(version, 3), recs_rows()[2][1])
    assert store.verify_version(version)
    store.client.delete(store.similar_key(version, 2))
    assert not store.verify_version(version)
    assert not store.verify_version("20000101T000000000000Z-dead")


# --- aliases ------------------------------------------------------------------------------


def test_alias_switch_is_refused_without_manifest(store: RecStore) -> None:
    version = store.new_version()
    store.write_recs(version, recs_rows())
    with pytest.raises(VersionNotCommittedError, match="commit_version"):
        store.set_alias("champion", version)
    assert store.get_alias("champion") is None


def test_readers_see_old_version_until_the_switch(store: RecStore) -> None:
    old = publish(store)
    assert store.set_alias("champion", old) is None

    new = store.new_version()
    store.write_recs(new, recs_rows(offset=100))
    live = store.get_alias("champion")
    assert live == old and store.get_recs(live, 1) == [1, 2, 1001]

    store.commit_version(new, [], {})
    assert store.get_alias("champion") == old  # committing does not switch
    assert store.set_alias("champion", new) == old
    assert store.get_alias("champion") == new
    assert store.get_recs(new, 1) == [101, 102, 1001]
    assert store.get_recs(old, 1) == [1, 2, 1001]  # the old version stays for rollback


def test_aliases_lists_every_alias(store: RecStore) -> None:
    first, second = publish(store), publish(store)
    store.set_alias("champion", first)
    store.set_alias("challenger", second)
    assert store.aliases() == {"champion": first, "challenger": second}
    with pytest.raises(InvalidNameError):
        store.set_alias("champ:ion", first)


# --- rollback -----------------------------------------------------------------------------


def serve(store: RecStore, alias: str, *versions: str) -> None:
    for version in versions:
        store.set_alias(alias, version)


def test_rollback_steps_back_through_the_versions_the_alias_served(store: RecStore) -> None:
    v1, v2, v3 = publish(store), publish(store), publish(store)
    serve(store, "champion", v1, v2, v3)

    assert store.rollback("champion") == v2
    assert store.get_alias("champion") == v2
    assert store.rollback("champion") == v1
    with pytest.raises(NoRollbackTargetError, match="no earlier version"):
        store.rollback("champion")
    assert store.rollback("champion", to_version=v3) == v3
    assert store.get_alias("champion") == v3


def test_rollback_never_lands_on_another_alias_batch(store: RecStore) -> None:
    # A score run publishes champion then challenger, night after night: the champion's
    # previous batch is last night's champion, not last night's challenger.
    champion_1, challenger_1 = publish(store), publish(store)
    serve(store, "champion", champion_1)
    serve(store, "challenger", challenger_1)
    champion_2, challenger_2 = publish(store), publish(store)
    serve(store, "champion", champion_2)
    serve(store, "challenger", challenger_2)
    assert store.previous_version("champion") == champion_1
    assert store.rollback("champion") == champion_1
    assert store.rollback("challenger") == challenger_1
    with pytest.raises(NoRollbackTargetError, match="never served as 'champion'"):
        store.rollback("champion", to_version=challenger_2)


def test_rollback_refuses_what_it_cannot_do(store: RecStore) -> None:
    with pytest.raises(NoRollbackTargetError, match="not set"):
        store.rollback("champion")
    v1 = publish(store)
    store.set_alias("champion", v1)
    half = store.new_version()
    store.write_recs(half, recs_rows())
    with pytest.raises(NoRollbackTargetError, match="not a committed"):
        store.rollback("champion", to_version=half)
    with pytest.raises(NoRollbackTargetError, match="already points"):
        store.rollback("champion", to_version=v1)


def test_rollback_target_must_still_be_retained(store: RecStore) -> None:
    v1, v2, v3 = publish(store), publish(store), publish(store)
    serve(store, "champion", v1, v2, v3)
    assert store.prune(keep=2) == [v1]
    assert store.rollback("champion") == v2
    with pytest.raises(NoRollbackTargetError):
        store.rollback("champion")


def test_a_switch_is_compare_and_set(store: RecStore) -> None:
    v1, v2, v3 = publish(store), publish(store), publish(store)
    store.set_alias("champion", v1, expect_unset=True)
    with pytest.raises(AliasChangedError, match="from nothing"):
        store.set_alias("champion", v2, expect_unset=True)
    # A slower run that started when v1 was live cannot overwrite a newer switch.
    store.set_alias("champion", v2, expected=v1)
    with pytest.raises(AliasChangedError):
        store.set_alias("champion", v3, expected=v1)
    assert store.get_alias("champion") == v2
    assert store.alias_history("champion") == [v2, v1]


def test_alias_switch_checks_the_expected_current_version(store: RecStore) -> None:
    v1, v2 = publish(store), publish(store)
    store.set_alias("champion", v2)
    # What rollback does underneath, when another writer moved the alias meanwhile.
    with pytest.raises(AliasChangedError):
        store._switch("champion", v1, expected=v1)
    assert store.get_alias("champion") == v2


# --- prune and discard --------------------------------------------------------------------


def test_prune_keeps_each_alias_recent_batches_and_deletes_exactly_the_rest(
    store: RecStore,
) -> None:
    versions = [publish(store, offset=i) for i in range(6)]
    half_written = store.new_version()
    store.write_recs(half_written, recs_rows())
    serve(store, "champion", versions[0], versions[3])
    serve(store, "challenger", versions[1], versions[2], versions[4])
    per_version = USERS + BOOKS + 2  # recs, similar, popular, manifest
    before = keys_under(store)
    assert all(len(keys_of(store, v)) == per_version for v in versions)

    # keep=2: each alias's two newest batches stay; versions[5] was never served.
    removed = store.prune(keep=2)

    assert removed == [versions[1], versions[5]]
    after = keys_under(store)
    assert before - after == {key for key in before
                              if f":{versions[1]}" in key or f":{versions[5]}" in key}
    assert len(before) - len(after) == 2 * per_version
    assert store.committed_versions() == [versions[0], versions[2], versions[3], versions[4]]
    for version in (versions[0], versions[2], versions[3], versions[4]):
        assert store.verify_version(version)
    assert store.get_manifest(versions[1]) is None
    assert len(keys_of(store, half_written)) == USERS  # not committed: prune leaves it

    assert store.prune(keep=0) == [versions[0], versions[2]]
    assert store.committed_versions() == [versions[3], versions[4]]
    assert store.prune(keep=0) == []


def test_prune_leaves_a_commit_whose_writer_still_holds_its_lease(store: RecStore) -> None:
    live = publish(store)
    store.set_alias("champion", live)
    leased = store.new_version(lease_s=30)
    store.write_popular(leased, "1,2")
    store.commit_version(leased, [], {})
    assert store.prune(keep=0) == []  # its writer may be about to switch to it
    store.release_lease(leased)
    assert store.prune(keep=0) == [leased]


def test_a_prune_that_dies_while_deleting_is_finished_by_the_next_run(
    store: RecStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    v1, v2 = publish(store), publish(store)
    serve(store, "champion", v1, v2)

    def dies(version: str) -> int:
        raise KeyboardInterrupt("the pruning process was killed")

    monkeypatch.setattr(store, "discard_version", dies)
    with pytest.raises(KeyboardInterrupt):
        store.prune(keep=1)
    monkeypatch.undo()
    assert store.get_manifest(v1) is None and keys_of(store, v1)  # retired, data left
    assert store.discard_uncommitted(older_than_s=3600) == [v1]  # the next run
    assert keys_of(store, v1) == set() and store.verify_version(v2)


def test_prune_with_fewer_versions_than_keep_removes_nothing(store: RecStore) -> None:
    versions = [publish(store, offset=i) for i in range(3)]
    serve(store, "champion", *versions)
    assert store.prune(keep=4) == []
    assert store.committed_versions() == versions


def test_prune_rejects_negative_keep(store: RecStore) -> None:
    with pytest.raises(ValueError):
        store.prune(keep=-1)


def test_discard_removes_a_half_written_version(store: RecStore) -> None:
    kept = publish(store)
    version = store.new_version()
    store.write_recs(version, recs_rows(), batch=10)
    store.write_similar(version, similar_rows())
    store.write_popular(version, "1,2")
    assert len(keys_of(store, version)) == USERS + BOOKS + 1

    assert store.discard_version(version) == USERS + BOOKS + 1

    assert keys_of(store, version) == set()
    assert store.client.zscore(store.pending_key, version) is None
    assert store.verify_version(kept)
    assert store.discard_version(version) == 0


def test_discard_uncommitted_only_touches_stale_pending_versions(store: RecStore) -> None:
    committed = publish(store)
    abandoned = store.new_version()
    store.write_recs(abandoned, recs_rows())
    assert store.discard_uncommitted(older_than_s=3600) == []
    assert store.discard_uncommitted(older_than_s=0) == [abandoned]
    assert keys_of(store, abandoned) == set()
    assert store.verify_version(committed)


def test_a_pending_version_is_discarded_once_its_writer_lease_expires(store: RecStore) -> None:
    alive = store.new_version(lease_s=30)
    dead = store.new_version(lease_s=0.05)
    store.write_recs(alive, recs_rows())
    store.write_recs(dead, recs_rows())
    time.sleep(0.1)  # the dead writer stopped renewing
    assert store.renew_lease(alive, 30) and not store.renew_lease(dead, 30)
    # Not after an hour: at the next run.
    assert store.discard_uncommitted(older_than_s=3600) == [dead]
    assert keys_of(store, dead) == set() and len(keys_of(store, alive)) == USERS + 1  # + lease
    store.commit_version(alive, [], {})
    assert store.client.smembers(store.leased_key) == set()
    assert store.discard_uncommitted(older_than_s=0) == []  # committed: not discarded


def test_deletion_stays_inside_a_prefix_with_glob_characters(
    redis_client: redis.Redis, redis_prefix: str
) -> None:
    odd = RecStore(redis_client, f"{redis_prefix}[a]*?:")
    plain = RecStore(redis_client, f"{redis_prefix}a:")
    odd_version = publish(odd)
    plain_version = publish(plain)
    # A raw glob of the odd prefix would also match the plain one's keys.
    odd.discard_uncommitted(0)
    assert odd.prune(keep=0) == [odd_version]
    assert plain.verify_version(plain_version)
    assert plain.committed_versions() == [plain_version]
    assert odd.aliases() == {} and plain.aliases() == {}


def test_store_reads_through_a_decoding_client(store: RecStore, redis_client: redis.Redis) -> None:
    version = publish(store)
    store.set_alias("champion", version)
    pool = redis_client.connection_pool
    text_client = redis.Redis(
        connection_pool=redis.ConnectionPool(
            connection_class=pool.connection_class,
            **{**pool.connection_kwargs, "decode_responses": True},
        )
    )
    try:
        text_store = RecStore(text_client, store.prefix)
        assert text_store.get_alias("champion") == version
        assert text_store.get_recs(version, 1) == [1, 2, 1001]
        assert text_store.aliases() == {"champion": version}
        assert text_store.committed_versions() == [version]
        assert text_store.verify_version(version)
    finally:
        text_client.close()


def test_prefix_must_be_usable() -> None:
    with pytest.raises(InvalidNameError):
        RecStore(redis.Redis(), "")
    with pytest.raises(InvalidNameError):
        RecStore(redis.Redis(), "gb :")
