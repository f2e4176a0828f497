"""The on-disk interaction log: stream order, idempotent appends, days, damage set aside."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest

from models.event_log import (
    DAMAGED_DIR,
    EntryId,
    InteractionLog,
    LogDamagedError,
    day_of,
)

DAY1 = int(datetime(2026, 12, 3, 23, 59, tzinfo=UTC).timestamp() * 1000)
DAY2 = int(datetime(2026, 12, 4, 0, 1, tzinfo=UTC).timestamp() * 1000)


def events(ids: list[tuple[int, int]], kind: str = "click") -> pd.DataFrame:
    """Log rows with these stream ids; reader = seq + 1, book = 10 + seq."""
    return pd.DataFrame({
        "entry_id": [f"{ms}-{seq}" for ms, seq in ids],
        "type": kind,
        "user_id": [seq + 1 for _, seq in ids],
        "book_id": [10 + seq for _, seq in ids],
        "variant": "control",
        "version": "v1",
        "ts_ms": [ms for ms, _ in ids],
        "rating": [4 if kind == "rating" else None for _ in ids],
    })


def test_entry_ids_order_as_the_stream_does() -> None:
    ids = [EntryId.parse(t) for t in ("10-2", "9-99", "10-10", "10-0")]
    assert [str(i) for i in sorted(ids)] == ["9-99", "10-0", "10-2", "10-10"]
    assert EntryId.parse(b"5-0").before() == EntryId(4, 2**64 - 1)
    assert EntryId(5, 3).before() == EntryId(5, 2) and EntryId(5, 3).after() == EntryId(5, 4)
    with pytest.raises(ValueError, match="not a stream entry id"):
        EntryId.parse("12")


def test_appends_are_split_by_day_and_read_back_in_stream_order(tmp_path: Path) -> None:
    log = InteractionLog(tmp_path)
    # Out of order on purpose: the log sorts by stream id.
    written = log.append(events([(DAY2, 0), (DAY1, 1), (DAY1, 0), (DAY2, 1)]))
    assert [f.day for f in written] == [day_of(DAY1), day_of(DAY2)] == ["2026-12-03",
                                                                       "2026-12-04"]
    assert [f.rows for f in written] == [2, 2]
    read = log.read()
    assert read.events["entry_id"].tolist() == [f"{DAY1}-0", f"{DAY1}-1", f"{DAY2}-0",
                                                f"{DAY2}-1"]
    assert read.through == EntryId(DAY2, 1) == log.high_water_mark()
    assert read.events["user_id"].dtype == "Int64"


def test_an_entry_already_logged_is_never_written_twice(tmp_path: Path) -> None:
    log = InteractionLog(tmp_path)
    log.append(events([(DAY1, 0), (DAY1, 1)]))
    # Delivered again after a crash, together with a new one.
    again = log.append(events([(DAY1, 1), (DAY1, 2), (DAY1, 2)]))
    assert [f.rows for f in again] == [1]
    assert log.append(events([(DAY1, 0), (DAY1, 1), (DAY1, 2)])) == []
    assert log.read().events["entry_id"].tolist() == [f"{DAY1}-{i}" for i in range(3)]


def test_reads_after_a_watermark_by_type_and_since_a_time(tmp_path: Path) -> None:
    log = InteractionLog(tmp_path)
    log.append(events([(DAY1, i) for i in range(4)]))
    log.append(events([(DAY2, i) for i in range(3)], kind="rating"))
    after = log.read(after=EntryId(DAY1, 2))
    assert after.events["entry_id"].tolist() == [f"{DAY1}-3"] + [f"{DAY2}-{i}" for i in range(3)]
    window = log.read(after=EntryId(DAY1, 2), through=EntryId(DAY2, 0))
    assert window.events["entry_id"].tolist() == [f"{DAY1}-3", f"{DAY2}-0"]
    assert window.through == EntryId(DAY2, 0)
    assert log.read(types=("rating",)).events["rating"].tolist() == [4, 4, 4]
    assert len(log.read(since_ms=DAY2).events) == 3
    assert log.read(after=EntryId(DAY2, 2)).events.empty


def test_a_damaged_file_is_named_set_aside_and_stops_a_lenient_read(tmp_path: Path) -> None:
    log = InteractionLog(tmp_path)
    log.append(events([(DAY1, 0)]))
    [damaged] = log.append(events([(DAY2, 0), (DAY2, 1)]))
    log.append(events([(DAY2 + 5, 0)]))
    damaged.path.write_bytes(damaged.path.read_bytes()[:40])  # cut short

    with pytest.raises(LogDamagedError, match=f"{DAY2}-0..{DAY2}-1"):
        log.read()
    lenient = log.read(strict=False)
    assert lenient.events["entry_id"].tolist() == [f"{DAY1}-0"]
    assert lenient.through == EntryId(DAY1, 0)
    assert lenient.stopped_at is not None and lenient.stopped_at.path == damaged.path
    assert str(damaged.path) in (lenient.error or "")

    [found] = log.check()
    assert found.first == EntryId(DAY2, 0) and found.last == EntryId(DAY2, 1)
    assert found.moved_to.parent.parent.name == DAMAGED_DIR and found.moved_to.exists()
    assert not damaged.path.exists()
    assert log.read().events["entry_id"].tolist() == [f"{DAY1}-0", f"{DAY2 + 5}-0"]
    assert log.check() == []


def test_unfinished_writes_are_removed_and_ignored(tmp_path: Path) -> None:
    log = InteractionLog(tmp_path)
    log.append(events([(DAY1, 0)]))
    leftover = tmp_path / f"day={day_of(DAY1)}" / f".events-{DAY1}-1_{DAY1}-9.parquet.7.tmp"
    leftover.write_bytes(b"half a file")
    assert log.high_water_mark() == EntryId(DAY1, 0)
    assert log.remove_unfinished() == [leftover] and not leftover.exists()


def test_entries_that_are_not_events_are_kept_aside_as_they_were(tmp_path: Path) -> None:
    log = InteractionLog(tmp_path)
    path = log.set_aside([(f"{DAY1}-3", {"type": "click", "user_id": "x"})])
    assert path.read_text() == f'{{"entry_id": "{DAY1}-3", "type": "click", "user_id": "x"}}\n'
    assert log.files() == []
