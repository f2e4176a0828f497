"""Events: validation, the stream entries and counters they become, the live summary."""

from __future__ import annotations

import time
from typing import Any

import pytest
from pydantic import ValidationError

from serving import analytics
from serving.analytics import summarise
from serving.events import (
    EVENT_TYPES,
    BatchTooLargeError,
    Event,
    EventBatch,
    EventWriter,
    StoredEvent,
)
from serving.store import RecStore

VERSION = "20261128T213000123456Z-a1b2"
NOW = 1_764_365_430.5  # 2025-11-28T21:30:30.5Z


def event(**changes: Any) -> dict[str, Any]:
    base = {
        "type": "click",
        "user_id": 42,
        "book_id": 7,
        "variant": "treatment",
        "version": VERSION,
        "experiment": "default",
        "position": 3,
    }
    return {**base, **changes}


def test_event_types_match_the_counters() -> None:
    assert set(EVENT_TYPES) == set(analytics.EVENT_TYPES)


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"type": "purchase"}, "type"),
        ({"user_id": "42"}, "user_id"),
        ({"user_id": 4.5}, "user_id"),
        ({"user_id": True}, "user_id"),
        ({"user_id": 0}, "user_id"),
        ({"book_id": 2**31}, "book_id"),
        ({"variant": ""}, "variant"),
        ({"variant": "a|b"}, "variant"),
        ({"version": "x" * 65}, "version"),
        ({"position": -1}, "position"),
        ({"type": "rating"}, "rating"),  # a rating needs its stars
        ({"rating": 4}, "rating"),  # and only a rating has them
        ({"type": "rating", "rating": 6}, "rating"),
        ({"shelf": "to-read"}, "shelf"),
    ],
)
def test_invalid_events_are_refused(changes: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as failure:
        Event.model_validate(event(**changes))
    assert field in str(failure.value)


@pytest.mark.parametrize("missing", ["variant", "version", "user_id", "book_id", "type"])
def test_attribution_fields_are_required(missing: str) -> None:
    raw = event()
    del raw[missing]
    with pytest.raises(ValidationError, match=missing):
        Event.model_validate(raw)


def test_batch_needs_at_least_one_event() -> None:
    with pytest.raises(ValidationError):
        EventBatch.model_validate({"events": []})


def test_writer_appends_entries_that_read_back_the_same(store: RecStore) -> None:
    writer = EventWriter(store, clock=lambda: NOW)
    events = [
        Event.model_validate(event(type="impression", position=0)),
        Event.model_validate(event(type="rating", rating=5, position=None, experiment=None)),
    ]
    ids = writer.write(events, request_id="req-1").ids
    assert len(ids) == 2  # ids are the server's; ts_ms is the writer's clock
    entries = store.client.xrange(store.events_key)
    stored = [StoredEvent.from_entry(entry_id, fields) for entry_id, fields in entries]
    assert [s.entry_id for s in stored] == ids
    assert stored[0] == StoredEvent(
        ids[0],
        "impression",
        42,
        7,
        "treatment",
        VERSION,
        int(NOW * 1000),
        "default",
        0,
        None,
        "req-1",
    )
    assert (stored[1].type, stored[1].rating, stored[1].experiment, stored[1].position) == (
        "rating",
        5,
        None,
        None,
    )


def test_an_event_id_is_written_and_counted_once(store: RecStore) -> None:
    writer = EventWriter(store, clock=lambda: NOW, dedupe_window_s=600)
    once = Event.model_validate(event(type="click", event_id="click-1"))
    first = writer.write([once, Event.model_validate(event(type="impression"))])
    assert (first.duplicates, first.recorded) == (0, 2)
    # Sent again, and twice within one batch: accepted, answered with the first id.
    again = writer.write([once, once, Event.model_validate(event(type="click", event_id="c-2"))])
    assert (again.duplicates, again.recorded) == (2, 1)
    assert again.ids[:2] == [first.ids[0], first.ids[0]]
    stored = [StoredEvent.from_entry(i, f) for i, f in store.client.xrange(store.events_key)]
    assert [(s.type, s.event_id) for s in stored] == [
        ("click", "click-1"), ("impression", None), ("click", "c-2")]
    (arm,) = summarise(store, now=NOW)["hour"].arms
    assert (arm.clicks, arm.exposures) == (2, 1)
    # The id is remembered for the dedupe window, then forgotten.
    assert 590 <= store.client.ttl(store.event_id_key("click-1")) <= 600


def test_a_batch_of_duplicates_only_writes_nothing(store: RecStore) -> None:
    writer = EventWriter(store, clock=lambda: NOW)
    once = Event.model_validate(event(event_id="x"))
    writer.write([once])
    entries = store.client.xlen(store.events_key)

    def counters() -> dict[bytes, dict[bytes, bytes]]:
        keys = store.client.scan_iter(f"{store.control_prefix}stats:*")
        return {key: store.client.hgetall(key) for key in keys}

    before = counters()
    assert writer.write([once]).recorded == 0
    assert store.client.xlen(store.events_key) == entries
    assert counters() == before


@pytest.mark.parametrize("bad", ["", "has space", "x" * 129, "é"])
def test_event_ids_are_plain(bad: str) -> None:
    with pytest.raises(ValidationError, match="event_id"):
        Event.model_validate(event(event_id=bad))


def test_writer_refuses_oversized_batches(store: RecStore) -> None:
    writer = EventWriter(store, max_batch=2)
    with pytest.raises(BatchTooLargeError, match="at most 2"):
        writer.write([Event.model_validate(event())] * 3)
    assert store.client.exists(store.events_key) == 0
    assert writer.write([]).ids == []


def test_writer_never_trims_the_stream(store: RecStore) -> None:
    # Only the drain trims, below what the interaction log holds: a blind MAXLEN would
    # drop accepted events that were never written anywhere else.
    writer = EventWriter(store, max_batch=1000)
    batch = [Event.model_validate(event(book_id=b)) for b in range(1, 1001)]
    for _ in range(3):
        writer.write(batch)
    assert store.client.xlen(store.events_key) == 3000


def test_summary_counts_per_arm_over_the_hour_and_the_day(store: RecStore) -> None:
    def write_at(at: float, *events: dict[str, Any]) -> None:
        EventWriter(store, clock=lambda: at).write([Event.model_validate(e) for e in events])

    treatment = {"variant": "treatment", "experiment": "default"}
    control = {"variant": "control", "experiment": "default"}
    for _ in range(4):
        write_at(NOW - 30, event(type="impression", **treatment))
    write_at(NOW - 30, event(type="click", **treatment), event(type="add_to_shelf", **treatment))
    write_at(NOW - 10, event(type="impression", **control), event(type="impression", **control))
    # Two hours ago: in the day, not in the hour.
    write_at(NOW - 7200, event(type="impression", **control), event(type="click", **control))
    # Two days ago: in neither.
    write_at(NOW - 2 * 86400, event(type="click", **control))

    windows = summarise(store, now=NOW)
    hour = {arm.variant: arm for arm in windows["hour"].arms}
    assert (hour["treatment"].exposures, hour["treatment"].clicks) == (4, 1)
    assert hour["treatment"].interactions == 2 and hour["treatment"].ctr == 0.25
    assert (hour["control"].exposures, hour["control"].clicks, hour["control"].ctr) == (2, 0, 0)
    day = {arm.variant: arm for arm in windows["day"].arms}
    assert (day["control"].exposures, day["control"].clicks) == (3, 1)
    assert day["treatment"].version == VERSION and day["treatment"].experiment == "default"
    assert windows["hour"].end.timestamp() - windows["hour"].start.timestamp() == 3600


def test_counters_expire(store: RecStore) -> None:
    EventWriter(store, clock=time.time).write([Event.model_validate(event())])
    keys = list(store.client.scan_iter(match=f"{store.control_prefix}stats:*"))
    assert len(keys) == 2
    ttls = sorted(store.client.ttl(key) for key in keys)
    assert 0 < ttls[0] <= analytics.MINUTE_TTL_S and ttls[1] <= analytics.HOUR_TTL_S


def test_empty_summary_has_no_arms(store: RecStore) -> None:
    windows = summarise(store, now=NOW)
    assert windows["hour"].arms == () and windows["day"].arms == ()


def test_integral_floats_are_integers_as_in_json_schema() -> None:
    parsed = Event.model_validate(event(user_id=42.0, position=3.0))
    assert (parsed.user_id, parsed.position) == (42, 3)
    assert type(parsed.user_id) is int
