"""What is new, merged onto a snapshot: accepted items, log events, held and repeated rows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from models.inbox import InboxItem
from models.increment import (
    HELD,
    INTERACTIONS,
    AcceptedItem,
    log_rows,
    plan_next_snapshot,
)
from models.interactions import interaction_history
from models.snapshot import Snapshot, commit_snapshot, write_snapshot

BOOKS = pd.DataFrame({"book_id": [1, 2, 3, 4], "title": ["a", "b", "c", "d"]})
RATINGS = pd.DataFrame({"user_id": [1, 1, 2], "book_id": [1, 2, 1], "rating": [5, 4, 3]})


def parent(root: Path) -> Snapshot:
    return write_snapshot({"ratings": RATINGS, "books": BOOKS}, root / "processed",
                          {"kind": "test"}, {"ratings.csv": "x"}, {"passed": True})


def log_events(rows: list[tuple[str, int, int, int | None]]) -> pd.DataFrame:
    """(type, user, book, rating) in stream order, ids 100-0, 100-1, ..."""
    return pd.DataFrame({
        "entry_id": [f"100-{i}" for i in range(len(rows))],
        "entry_ms": 100, "entry_seq": list(range(len(rows))),
        "type": [r[0] for r in rows], "user_id": [r[1] for r in rows],
        "book_id": [r[2] for r in rows],
        "rating": pd.array([r[3] for r in rows], dtype="Int64"),
        "ts_ms": pd.array([1000 + i for i in range(len(rows))], dtype="Int64"),
    })


def accepted(tmp_path: Path, name: str, ratings: pd.DataFrame,
             books: pd.DataFrame | None = None) -> AcceptedItem:
    return AcceptedItem(item=InboxItem(tmp_path / name, sha256=name), ratings=ratings,
                        books=books)


def test_log_events_split_into_ratings_and_other_interactions() -> None:
    rows = log_rows(log_events([("impression", 1, 3, None), ("click", 1, 3, None),
                                ("rating", 1, 3, 4), ("add_to_shelf", 2, 4, None)]))
    assert rows.ratings[["user_id", "book_id", "rating"]].values.tolist() == [[1, 3, 4]]
    assert rows.interactions[["user_id", "book_id", "type"]].values.tolist() == [
        [1, 3, "click"], [2, 4, "add_to_shelf"]]
    assert rows.ignored == {"impression": 1}


def test_new_rows_go_after_the_parent_held_repeated_or_taken(tmp_path: Path) -> None:
    snapshot = parent(tmp_path)
    inbox = accepted(tmp_path, "a.csv", pd.DataFrame({
        "user_id": [3, 1, 3], "book_id": [2, 1, 9], "rating": [4, 2, 5]}))
    events = log_events([("rating", 2, 3, 1), ("add_to_shelf", 2, 4, None),
                         ("rating", 7, 2, 5), ("add_to_shelf", 1, 99, None)])
    plan = plan_next_snapshot(snapshot, [inbox], events)

    ratings = pd.concat([p if isinstance(p, pd.DataFrame) else pd.read_parquet(p.path)
                         for p in plan.tables["ratings"]], ignore_index=True)
    # Reader 3 is new (taken); (1, 1) was rated already; book 9 is unknown (held).
    assert ratings.values.tolist()[3:] == [[3, 2, 4], [2, 3, 1], [7, 2, 5]]
    [implicit] = plan.tables[INTERACTIONS]
    # The shelf event came after the parent's 3 rows, reader 3's rating and the (2, 3) one.
    assert implicit[["user_id", "book_id", "type", "after"]].values.tolist() == [
        [2, 4, "add_to_shelf", 5]]
    [held] = plan.tables[HELD]
    assert held[["user_id", "book_id", "type", "origin"]].values.tolist() == [
        [3, 9, "rating", "a.csv"], [1, 99, "add_to_shelf", "log"]]
    [repeated] = plan.tables["quarantine_ratings"]
    assert repeated[["user_id", "book_id", "rule", "origin"]].values.tolist() == [
        [1, 1, "already_rated", "a.csv"]]
    assert plan.new_readers == 2 and plan.new_books == 0
    assert plan.counts["held (unknown book)"] == 2


def test_held_rows_enter_once_their_book_is_in_the_catalogue(tmp_path: Path) -> None:
    first = parent(tmp_path)
    plan = plan_next_snapshot(first, [accepted(tmp_path, "a.csv", pd.DataFrame(
        {"user_id": [2], "book_id": [9], "rating": [5]}))], log_events([]))
    second, _ = commit_snapshot(tmp_path / "processed", plan.tables, {},
                                identity={"base": first.base, "n": 2})
    assert second.read(HELD)["book_id"].tolist() == [9]

    # Still unknown: still held, not duplicated.
    again = plan_next_snapshot(second, [], log_events([]))
    assert again.tables[HELD][0]["book_id"].tolist() == [9]

    books = pd.DataFrame({"book_id": [9], "title": ["new"]})
    plan = plan_next_snapshot(second, [accepted(tmp_path, "books", pd.DataFrame(
        {"user_id": [], "book_id": [], "rating": []}, dtype=np.int64), books)],
        log_events([]))
    assert plan.tables[HELD] is None and plan.new_books == 1
    assert plan.tables["ratings"][-1].values.tolist() == [[2, 9, 5]]
    assert plan.tables["books"][-1]["book_id"].tolist() == [9]


def test_history_puts_shelf_events_between_the_ratings_around_them() -> None:
    ratings = pd.DataFrame({"user_id": [1, 1, 1, 2], "book_id": [10, 11, 12, 10]})
    implicit = pd.DataFrame({"user_id": [1, 1, 1], "book_id": [20, 11, 21],
                             "type": ["add_to_shelf", "add_to_shelf", "click"],
                             "after": [1, 3, 4]})
    history = interaction_history(ratings, implicit, ["add_to_shelf"])
    # (1, 20) after the first rating; (1, 11) is a repeat of a rated pair; clicks don't count.
    assert history.values.tolist() == [[1, 10], [1, 20], [1, 11], [1, 12], [2, 10]]
    assert interaction_history(ratings, implicit, []).values.tolist() == ratings.values.tolist()


def test_a_rating_event_without_stars_1_to_5_is_quarantined_not_trained_on(
    tmp_path: Path,
) -> None:
    plan = plan_next_snapshot(parent(tmp_path), [], log_events([
        ("rating", 2, 3, 9), ("rating", 2, 4, 2)]))
    assert plan.tables["ratings"][-1].values.tolist() == [[2, 4, 2]]
    [quarantined] = plan.tables["quarantine_ratings"]
    assert quarantined[["user_id", "book_id", "rating", "rule"]].values.tolist() == [
        [2, 3, 9, "rating_1_to_5"]]


def test_the_pair_index_follows_the_ratings(tmp_path: Path) -> None:
    from models.snapshot import PAIRS_INDEX, pair_index

    first = parent(tmp_path)
    assert (first.path / PAIRS_INDEX).exists()
    plan = plan_next_snapshot(first, [accepted(tmp_path, "a.csv", pd.DataFrame(
        {"user_id": [9, 1, 2], "book_id": [4, 3, 1], "rating": [5, 4, 3]}))], log_events([]))
    second, _ = commit_snapshot(tmp_path / "processed", plan.tables, {},
                                identity={"base": first.base, "n": 2}, pairs=plan.pairs)
    ratings = second.read("ratings")
    assert np.array_equal(second.pair_index(), pair_index(ratings["user_id"].to_numpy(),
                                                          ratings["book_id"].to_numpy()))
    assert len(second.pair_index()) == len(ratings) == 5  # (2, 1) was there already


def test_a_timed_snapshot_gives_every_new_rating_a_time(tmp_path: Path) -> None:
    timed = RATINGS.assign(timestamp=[1_000, 2_000, 3_000])
    latest = 3_000
    snapshot = write_snapshot({"ratings": timed, "books": BOOKS}, tmp_path / "processed",
                              {"kind": "test"}, {"ratings.csv": "y"}, {"passed": True})
    with_time = accepted(tmp_path, "a.csv", pd.DataFrame(
        {"user_id": [5], "book_id": [2], "rating": [4], "timestamp": [1_500]}))
    without = accepted(tmp_path, "b.csv", pd.DataFrame(
        {"user_id": [6], "book_id": [2], "rating": [3]}))
    events = log_events([("rating", 7, 2, 5)])  # ts_ms 1000: one second after 1970
    plan = plan_next_snapshot(snapshot, [with_time, without], events)

    added = plan.tables["ratings"][-1]
    # The file's own time, the parent's latest time for a file without one, the event's.
    assert added.values.tolist() == [[5, 2, 4, 1_500], [6, 2, 3, latest], [7, 2, 5, 1]]


def test_an_untimed_snapshot_keeps_row_order_as_time(tmp_path: Path) -> None:
    plan = plan_next_snapshot(parent(tmp_path), [accepted(tmp_path, "a.csv", pd.DataFrame(
        {"user_id": [5], "book_id": [2], "rating": [4], "timestamp": [1_500]}))],
        log_events([]))
    assert plan.tables["ratings"][-1].columns.tolist() == ["user_id", "book_id", "rating"]
