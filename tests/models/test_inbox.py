"""The inbox: items found in name order, archived per lineage, refused with their report."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from models.inbox import archive_item, inbox_items, item_checksum, reject_item, strangers

RATINGS = pd.DataFrame({"user_id": [1, 1, 2], "book_id": [1, 2, 1], "rating": [5, 4, 3]})


def test_inbox_items_in_name_order_with_their_archive(tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    (inbox / "b-continuation").mkdir(parents=True)
    RATINGS.to_csv(inbox / "b-continuation" / "ratings.csv", index=False)
    RATINGS.to_csv(inbox / "a-export.csv", index=False)
    (inbox / "notes.txt").write_text("not an item")
    (inbox / "empty-dir").mkdir()
    take, done = inbox_items(inbox, "base1", set())
    assert [i.name for i in take] == ["a-export.csv", "b-continuation"] and done == []
    assert [p.name for p in strangers(inbox)] == ["empty-dir", "notes.txt"]
    assert take[0].sha256 == item_checksum(inbox / "a-export.csv")

    archived = archive_item(take[0], inbox, "base1")
    assert archived == inbox / "archive" / "base1" / "a-export.csv"
    take, done = inbox_items(inbox, "base1", {take[1].sha256})
    # An archived item the snapshot does not hold (its snapshot was lost) is offered again.
    assert [(i.name, i.archived) for i in take] == [("a-export.csv", True)]
    assert [i.name for i in done] == ["b-continuation"]
    # Another lineage never takes in this lineage's archive.
    assert [i.name for i in inbox_items(inbox, "other-base", set())[0]] == ["b-continuation"]


def test_a_refused_item_is_moved_aside_with_its_report(tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "bad.csv").write_text("user_id,book_id,rating\n1,2,five\n")
    [item], _ = inbox_items(inbox, "b", set())
    report = reject_item(item, inbox, "# refused\n")
    assert report == inbox / "rejected" / "bad.csv.report.md"
    assert report.read_text() == "# refused\n" and (inbox / "rejected" / "bad.csv").exists()
    assert not (inbox / "bad.csv").exists()
    assert inbox_items(inbox, "b", set()) == ([], [])
