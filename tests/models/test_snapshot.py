"""Snapshots: content-addressed ids, segments linked not copied, HEAD, retention."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from models import snapshot as snapshots
from models.schema import DatasetError
from models.snapshot import (
    HEAD,
    MANIFEST,
    commit_snapshot,
    head_snapshot,
    latest_snapshot,
    list_snapshots,
    open_snapshot,
    prune_snapshots,
    write_snapshot,
)


def ratings(start: int, n: int) -> pd.DataFrame:
    return pd.DataFrame({"user_id": [1 + i % 7 for i in range(start, start + n)],
                         "book_id": list(range(start + 1, start + n + 1)),
                         "rating": [1 + i % 5 for i in range(start, start + n)]})


BOOKS = pd.DataFrame({"book_id": range(1, 101), "title": [f"t{i}" for i in range(1, 101)]})


def base(root: Path) -> snapshots.Snapshot:
    return write_snapshot({"ratings": ratings(0, 20), "books": BOOKS, "tags": None},
                          root, {"kind": "test"}, {"ratings.csv": "abc"}, {"passed": True})


def grow(root: Path, parent: snapshots.Snapshot, new: pd.DataFrame, watermark: str
         ) -> tuple[snapshots.Snapshot, bool]:
    return commit_snapshot(
        root, {"ratings": [*parent.segments("ratings"), new],
               "books": parent.segments("books"), "tags": None},
        manifest={"parent": parent.snapshot_id},
        identity={"base": parent.base, "log_watermark": watermark, "ingested_files": {}})


def test_a_snapshot_reads_back_and_names_its_tables(tmp_path: Path) -> None:
    first = base(tmp_path)
    assert first.snapshot_id.startswith("snap-")
    pd.testing.assert_frame_equal(first.read("ratings"), ratings(0, 20))
    assert first.has("books") and not first.has("tags") and first.rows("ratings") == 20
    assert set(first.table_names()) == {"ratings", "books", "tags"}
    assert first.manifest["absent"] == ["tags"]
    assert latest_snapshot(tmp_path).snapshot_id == first.snapshot_id
    with pytest.raises(DatasetError, match="no table 'tags'"):
        first.read("tags")


def test_identical_inputs_give_the_same_id_and_no_copy(tmp_path: Path) -> None:
    first = base(tmp_path)
    again = base(tmp_path)
    assert again.snapshot_id == first.snapshot_id
    assert [s.snapshot_id for s in list_snapshots(tmp_path)] == [first.snapshot_id]
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == [
        HEAD, first.snapshot_id]
    # A different watermark is a different snapshot, even with the same rows.
    moved, new = grow(tmp_path, first, ratings(20, 0), "5-0")
    assert new and moved.snapshot_id != first.snapshot_id
    same, new = grow(tmp_path, first, ratings(20, 0), "5-0")
    assert not new and same.snapshot_id == moved.snapshot_id


def test_the_next_snapshot_links_what_it_shares(tmp_path: Path) -> None:
    first = base(tmp_path)
    second, new = grow(tmp_path, first, ratings(20, 5), "9-0")
    assert new
    old, added = second.segments("ratings")
    # The shared segment is the same file on disk (a hard link): no bytes copied.
    assert old.path.stat().st_ino == first.segments("ratings")[0].path.stat().st_ino
    assert added.rows == 5 and second.rows("ratings") == 25
    pd.testing.assert_frame_equal(second.read("ratings"), ratings(0, 25))
    assert second.log_watermark == "9-0" and second.base == first.base
    assert (tmp_path / HEAD).read_text().strip() == second.snapshot_id

    # Removing the first by hand leaves the second whole.
    shutil.rmtree(first.path)
    pd.testing.assert_frame_equal(open_snapshot(second.path).read("ratings"), ratings(0, 25))


def test_head_falls_back_to_the_newest_left_when_its_snapshot_is_gone(tmp_path: Path) -> None:
    first = base(tmp_path)
    second, _ = grow(tmp_path, first, ratings(20, 5), "9-0")
    shutil.rmtree(second.path)
    found, note = head_snapshot(tmp_path)
    assert found.snapshot_id == first.snapshot_id
    assert note is not None and second.snapshot_id in note and "gone" in note
    shutil.rmtree(first.path)
    with pytest.raises(DatasetError, match="no snapshot under"):
        head_snapshot(tmp_path)


def test_many_segments_are_compacted_into_one(tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.setattr(snapshots, "MAX_SEGMENTS", 3)
    current = base(tmp_path)
    for step in range(4):
        current, _ = grow(tmp_path, current, ratings(20 + 2 * step, 2), f"{step}-1")
    assert len(current.segments("ratings")) <= 3
    pd.testing.assert_frame_equal(current.read("ratings"), ratings(0, 28))


def test_retention_keeps_the_newest_head_and_protected_ones(tmp_path: Path) -> None:
    made = [base(tmp_path)]
    for step in range(4):
        made.append(grow(tmp_path, made[-1], ratings(20 + step, 1), f"{step}-0")[0])
    removed = prune_snapshots(tmp_path, keep=2, protected={made[0].snapshot_id})
    assert removed == [made[1].snapshot_id, made[2].snapshot_id]
    left = [s.snapshot_id for s in list_snapshots(tmp_path)]
    assert left == [made[0].snapshot_id, made[3].snapshot_id, made[4].snapshot_id]
    # What remains still reads whole: segments were shared by links.
    pd.testing.assert_frame_equal(open_snapshot(made[4].path).read("ratings"), ratings(0, 24))


def test_an_interrupted_write_leaves_no_snapshot_and_is_cleaned_up(tmp_path: Path) -> None:
    first = base(tmp_path)
    debris = tmp_path / ".partial-0123456789ab"
    debris.mkdir()
    (debris / "ratings").mkdir()
    assert [s.snapshot_id for s in list_snapshots(tmp_path)] == [first.snapshot_id]
    grow(tmp_path, first, ratings(20, 1), "1-0")
    assert not debris.exists()


def test_a_snapshot_written_as_one_file_per_table_still_reads(tmp_path: Path) -> None:
    legacy = tmp_path / "20261128T213000Z-1a2b3c4d"
    legacy.mkdir()
    ratings(0, 10).to_parquet(legacy / "ratings.parquet", index=False)
    BOOKS.to_parquet(legacy / "books.parquet", index=False)
    (legacy / MANIFEST).write_text(json.dumps({
        "snapshot_id": legacy.name, "created_at": "2026-11-28T21:30:00+00:00",
        "tables": {"ratings": {"rows": 10}, "books": {"rows": 100}}, "absent": [],
        "checksums": {"ratings.csv": "abc"}}))
    old = latest_snapshot(tmp_path)
    assert old.snapshot_id == legacy.name and old.rows("ratings") == 10
    grown, _ = grow(tmp_path, old, ratings(10, 3), "1-0")
    pd.testing.assert_frame_equal(grown.read("ratings"), ratings(0, 13))
    assert grown.base == old.base
