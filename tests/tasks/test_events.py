"""The drain on a real Redis: durable first, acknowledged next, trimmed last; crashes lose
nothing and duplicate nothing."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from models.event_log import EntryId, InteractionLog
from serving.events import Event, EventWriter
from serving.store import RecStore
from settings import PROJECT_DIR
from tasks.events import (
    CONSUMER,
    GROUP,
    acknowledged_below,
    drain_stream,
    ensure_group,
    entries_frame,
    read_all_events,
)


def write_events(store: RecStore, n: int, start: int = 0, kind: str = "click") -> list[str]:
    """n events (reader 1 + i % 97, book 1 + i % 89), in batches; returns their stream ids."""
    writer = EventWriter(store, max_batch=500)
    ids: list[str] = []
    for first in range(start, start + n, 500):
        batch = [Event(type=kind, user_id=1 + i % 97, book_id=1 + i % 89, variant="control",
                       version="v1", rating=1 + i % 5 if kind == "rating" else None)
                 for i in range(first, min(first + 500, start + n))]
        ids += writer.write(batch).ids
    return ids


def logged_ids(log: InteractionLog) -> list[str]:
    return log.read().events["entry_id"].tolist()


def test_drain_moves_every_event_to_the_log_and_trims_what_it_wrote(
    store: RecStore, tmp_path: Path
) -> None:
    accepted = write_events(store, 1200)
    log = InteractionLog(tmp_path / "log")
    result = drain_stream(store.client, store.events_key, log, read_count=250, file_rows=500)

    assert logged_ids(log) == accepted  # every event, once, in stream order
    assert result.drained == result.acknowledged == 1200 and result.duplicates == 0
    assert len(result.files) == 3  # 500 + 500 + 200
    assert result.high_water_mark == accepted[-1]
    # Trimmed below what was acknowledged (approximately: whole nodes only), never above.
    assert result.backlog == store.client.xlen(store.events_key) < 1200
    assert store.client.xpending(store.events_key, GROUP)["pending"] == 0

    again = drain_stream(store.client, store.events_key, log)
    assert again.drained == 0 and logged_ids(log) == accepted


def test_fields_become_typed_columns(store: RecStore) -> None:
    event = Event(type="rating", user_id=7, book_id=3, variant="treatment", version="v2",
                  experiment="exp", position=4, rating=5)
    [entry_id] = EventWriter(store).write([event], request_id="req-1").ids
    [(raw_id, fields)] = store.client.xrange(store.events_key)
    frame = entries_frame([(raw_id.decode(), {k.decode(): v.decode() for k, v in
                                             fields.items()})])
    row = frame.iloc[0]
    assert row["entry_id"] == entry_id
    assert (row["user_id"], row["book_id"], row["rating"], row["position"]) == (7, 3, 5, 4)
    assert (row["type"], row["variant"], row["experiment"], row["request_id"]) == (
        "rating", "treatment", "exp", "req-1")


def test_a_crash_after_the_write_before_the_ack_duplicates_nothing(
    store: RecStore, tmp_path: Path
) -> None:
    accepted = write_events(store, 300)
    log = InteractionLog(tmp_path / "log")
    ensure_group(store.client, store.events_key)
    # The drain read 300 entries and wrote them, then died before XACK.
    reply = store.client.xreadgroup(GROUP, CONSUMER, {store.events_key: ">"}, count=300)
    decoded = [(i.decode(), {k.decode(): v.decode() for k, v in f.items()})
               for i, f in reply[0][1]]
    log.append(entries_frame(decoded))
    write_events(store, 50, start=300)

    result = drain_stream(store.client, store.events_key, log)
    assert result.duplicates == 300 and result.drained == 50
    assert len(logged_ids(log)) == 350 == len(set(logged_ids(log)))
    assert logged_ids(log)[:300] == accepted


def test_a_crash_before_the_write_loses_nothing(store: RecStore, tmp_path: Path) -> None:
    accepted = write_events(store, 200)
    log = InteractionLog(tmp_path / "log")
    ensure_group(store.client, store.events_key)
    # Entries handed to a drain (under another consumer name) that died before writing.
    store.client.xreadgroup(GROUP, "drain-on-another-host", {store.events_key: ">"}, count=120)
    (tmp_path / "log" / "day=2026-12-04").mkdir(parents=True)
    unfinished = tmp_path / "log" / "day=2026-12-04" / ".events-1-0_2-0.parquet.9.tmp"
    unfinished.write_bytes(b"torn")

    result = drain_stream(store.client, store.events_key, log)
    assert result.removed_unfinished == 1 and not unfinished.exists()
    assert logged_ids(log) == accepted and result.drained == 200


def test_a_damaged_file_is_drained_again_while_the_stream_holds_it(
    store: RecStore, tmp_path: Path
) -> None:
    accepted = write_events(store, 40)
    log = InteractionLog(tmp_path / "log")
    ensure_group(store.client, store.events_key)
    # Written and acknowledged, but not trimmed yet; then the file is cut short.
    reply = store.client.xreadgroup(GROUP, CONSUMER, {store.events_key: ">"}, count=40)
    decoded = [(i.decode(), {k.decode(): v.decode() for k, v in f.items()})
               for i, f in reply[0][1]]
    [written] = log.append(entries_frame(decoded))
    store.client.xack(store.events_key, GROUP, *accepted)
    written.path.write_bytes(b"PAR1")
    write_events(store, 5, start=40)

    result = drain_stream(store.client, store.events_key, log)
    assert [d["entries"] for d in result.damaged] == [f"{accepted[0]}..{accepted[-1]}"]
    assert result.lost == []
    assert len(logged_ids(log)) == 45 and logged_ids(log)[:40] == accepted


def test_a_damaged_file_the_stream_no_longer_holds_is_reported_lost(
    store: RecStore, tmp_path: Path
) -> None:
    accepted = write_events(store, 30)
    log = InteractionLog(tmp_path / "log")
    drain_stream(store.client, store.events_key, log)
    store.client.xtrim(store.events_key, minid=str(EntryId.parse(accepted[-1]).after()))
    [damaged] = log.files()
    damaged.path.write_bytes(b"")

    result = drain_stream(store.client, store.events_key, log)
    assert result.lost == [f"{accepted[0]}..{accepted[-1]}"]
    assert "LOST" in result.summary()
    assert log.files() == []  # set aside, not read as empty


def test_malformed_entries_are_kept_aside_not_dropped(store: RecStore, tmp_path: Path) -> None:
    store.client.xadd(store.events_key, {"type": "click", "user_id": "abc", "book_id": "3"})
    good = write_events(store, 3)
    log = InteractionLog(tmp_path / "log")
    result = drain_stream(store.client, store.events_key, log)
    assert result.malformed == 1 and logged_ids(log) == good
    [aside] = (tmp_path / "log" / "malformed").glob("*.jsonl")
    assert '"user_id": "abc"' in aside.read_text()


def test_trim_keeps_what_another_consumer_group_still_needs(
    store: RecStore, tmp_path: Path
) -> None:
    accepted = write_events(store, 100)
    store.client.xgroup_create(store.events_key, "analytics", id="0")
    store.client.xreadgroup("analytics", "a", {store.events_key: ">"}, count=10)  # not acked
    drain_stream(store.client, store.events_key, InteractionLog(tmp_path / "log"))
    assert acknowledged_below(store.client, store.events_key) == EntryId.parse(accepted[0])
    assert store.client.xlen(store.events_key) == 100


def test_readers_see_the_log_then_the_undrained_tail_once(
    store: RecStore, tmp_path: Path
) -> None:
    first = write_events(store, 60)
    log = InteractionLog(tmp_path / "log")
    drain_stream(store.client, store.events_key, log)
    tail = write_events(store, 25, start=60, kind="rating")
    events, newest = read_all_events(log, store)
    assert events["entry_id"].tolist() == first + tail
    assert newest == EntryId.parse(tail[-1])
    ratings, _ = read_all_events(log, store, types=("rating",))
    assert ratings["entry_id"].tolist() == tail
    later, _ = read_all_events(log, store, after=EntryId.parse(first[-1]))
    assert later["entry_id"].tolist() == tail


DRAIN_SCRIPT = textwrap.dedent("""
    import sys
    from pathlib import Path
    from serving.connection import connect_redis
    from models.event_log import InteractionLog
    from tasks.events import drain_stream
    url, stream, root = sys.argv[1:4]
    client = connect_redis(url, Path(root) / "unused.rdb", socket_timeout_s=5)
    print("ready", flush=True)
    while True:
        drain_stream(client, stream, InteractionLog(Path(root)), read_count=50, file_rows=100)
""")


@pytest.mark.slow
def test_kill_9_at_random_moments_loses_and_duplicates_nothing(
    store: RecStore, tmp_path: Path
) -> None:
    # The drain runs in a process of its own, on the same server (the embedded one by its
    # socket when REDIS_URL is unset).
    kwargs = store.client.connection_pool.connection_kwargs
    url = os.environ.get("REDIS_URL") or f"unix://{kwargs['path']}?db={kwargs.get('db', 0)}"
    rng = random.Random(7)
    root = tmp_path / "log"
    accepted: list[str] = []
    for _ in range(5):
        drain = subprocess.Popen([sys.executable, "-c", DRAIN_SCRIPT, url, store.events_key,
                                  str(root)], cwd=PROJECT_DIR, env=dict(os.environ),
                                 stdout=subprocess.PIPE, text=True)
        assert drain.stdout is not None and drain.stdout.readline().strip() == "ready"
        deadline = time.monotonic() + rng.uniform(0.1, 1.5)
        while time.monotonic() < deadline:  # events keep arriving while it drains
            accepted += write_events(store, 200, start=len(accepted))
            time.sleep(0.02)
        drain.send_signal(signal.SIGKILL)
        drain.wait()
    result = drain_stream(store.client, store.events_key, InteractionLog(root))
    logged = logged_ids(InteractionLog(root))
    assert len(logged) == len(set(logged)) == len(accepted)  # nothing twice, nothing lost
    assert logged == accepted
    assert result.backlog < len(accepted)


def test_acknowledged_entries_younger_than_keep_stay_in_the_stream(
    store: RecStore, tmp_path: Path
) -> None:
    accepted = write_events(store, 300)
    drain_stream(store.client, store.events_key, InteractionLog(tmp_path / "log"), keep_s=60)
    assert store.client.xlen(store.events_key) == 300  # acknowledged, kept for repairs
    assert store.client.xpending(store.events_key, GROUP)["pending"] == 0
    drain_stream(store.client, store.events_key, InteractionLog(tmp_path / "log"))
    assert store.client.xlen(store.events_key) < 300
    assert logged_ids(InteractionLog(tmp_path / "log")) == accepted
