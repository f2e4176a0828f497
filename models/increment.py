"""What is new since a snapshot, judged and merged into the next one (the inbox's items
are found, read, archived and refused by ``models.inbox``).

New data comes from two places:

- **the inbox** (``data/inbox/`` by default): a directory holding ``ratings.csv`` (and
  optionally ``books.csv`` with new titles, and the generator's ``truth.npz``), as
  ``goodbooks data continue`` writes, or a lone ``*.csv`` of ratings (a user's export).
  Items are taken in name order; each is judged on its own by the ratings (and books)
  suite, so a bad one is refused (moved to ``rejected/`` beside its report) and never
  blocks the ones after it. Taken items are archived under ``archive/<base>/`` once the
  snapshot holding them is written; an item whose checksum the lineage already holds is
  only archived (a crash between writing and archiving ingests nothing twice).
- **the interaction log**: events past the previous snapshot's watermark. Rating events
  become ratings; the other interactions (add-to-shelf, click) become rows of the
  ``interactions`` table, which training merges into each reader's history in time order
  for the types the settings count (``interaction_types``), so changing that setting
  applies to everything already taken in. Impressions are not interactions.

What happens to rows that do not fit:

- a rating of a **book the catalogue does not know** is held back (table ``held``) and
  offered again at every ingest, entering as soon as a books.csv brings that book;
- a rating by a **reader the catalogue does not know** is a new reader: taken in;
- a rating of a **pair the snapshot already holds** keeps the first one (the interaction
  keeps its place in time); the later one is kept in ``quarantine_ratings`` with rule
  ``already_rated``, not lost.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from models.event_log import ENTRY_MS, ENTRY_SEQ, EVENT_TYPE, TS_MS
from models.inbox import InboxItem
from models.interactions import sorted_distinct
from models.schema import (
    BOOK_ID,
    RATING,
    RATINGS_COLUMNS,
    TIMESTAMP,
    USER_ID,
)
from models.snapshot import Snapshot, TablePart

INTERACTIONS = "interactions"  # table of implicit interactions from the log
HELD = "held"  # rows waiting for their book to enter the catalogue
ALREADY_RATED = "already_rated"
# Columns of the interactions table; `after` counts the ratings rows that precede the event,
# so training can put both tables into one time order.
INTERACTION_COLUMNS = (USER_ID, BOOK_ID, EVENT_TYPE, TS_MS, "after")
HELD_COLUMNS = (USER_ID, BOOK_ID, RATING, EVENT_TYPE, TS_MS, "origin")


def new_books(books: pd.DataFrame, catalogue: pd.DataFrame) -> pd.DataFrame:
    """Rows of ``books`` whose book_id the catalogue lacks, shaped like the catalogue.

    Known books keep their metadata (a changed author or language would silently change
    every model's features: a full re-ingest is the way to revise the catalogue).
    """
    known = set(catalogue[BOOK_ID].to_numpy(dtype=np.int64).tolist())
    fresh = books[~books[BOOK_ID].isin(known)]
    aligned = fresh.reindex(columns=catalogue.columns)
    for column in catalogue.columns:
        try:
            aligned[column] = aligned[column].astype(catalogue[column].dtype)
        except (TypeError, ValueError):
            aligned[column] = aligned[column].astype(object)
    return aligned.reset_index(drop=True)


# --- log events into rows -----------------------------------------------------------------


@dataclass(frozen=True)
class LogRows:
    """The log's events split into what they become."""

    ratings: pd.DataFrame  # user_id, book_id, rating, ts_ms, entry order
    interactions: pd.DataFrame  # user_id, book_id, type, ts_ms, entry order
    ignored: dict[str, int]  # event type → events that do not count (impressions, ...)
    invalid: pd.DataFrame  # rating events without 1-5 stars (only a direct XADD makes them)


def log_rows(events: pd.DataFrame) -> LogRows:
    """Rating events (with 1-5 stars) and the other interactions, in stream order."""
    ordered = events.sort_values([ENTRY_MS, ENTRY_SEQ], kind="stable").reset_index(drop=True)
    ordered = ordered.assign(order=np.arange(len(ordered), dtype=np.int64))
    is_rating = (ordered[EVENT_TYPE] == "rating").to_numpy()
    stars = ordered[RATING].between(1, 5).fillna(False).to_numpy(dtype=bool)
    invalid = ordered.loc[is_rating & ~stars, [USER_ID, BOOK_ID, RATING]]
    ratings = ordered.loc[is_rating & stars, [USER_ID, BOOK_ID, RATING, TS_MS, "order"]]
    implicit = ~is_rating & (ordered[EVENT_TYPE] != "impression").to_numpy()
    interactions = ordered.loc[implicit, [USER_ID, BOOK_ID, EVENT_TYPE, TS_MS, "order"]]
    ignored = ordered.loc[~is_rating & ~implicit, EVENT_TYPE].value_counts().to_dict()
    return LogRows(
        ratings=ratings.astype({USER_ID: np.int64, BOOK_ID: np.int64, RATING: np.int64})
        .reset_index(drop=True),
        interactions=interactions.astype({USER_ID: np.int64, BOOK_ID: np.int64})
        .reset_index(drop=True),
        ignored={str(k): int(v) for k, v in ignored.items()},
        invalid=invalid.assign(line=pd.NA, rule="rating_1_to_5", origin="log"),
    )


# --- merging ------------------------------------------------------------------------------


def pair_keys(users: np.ndarray, books: np.ndarray) -> np.ndarray:
    """One int64 per (reader, book) pair (ids are below 2^31), as in the pair index."""
    return (np.asarray(users, dtype=np.int64) << 31) | np.asarray(books, dtype=np.int64)


def in_sorted(keys: np.ndarray, ordered: np.ndarray) -> np.ndarray:
    """Which keys occur in the sorted array (a binary search each: no hashing of millions)."""
    if len(ordered) == 0:
        return np.zeros(len(keys), dtype=bool)
    at = np.minimum(np.searchsorted(ordered, keys), len(ordered) - 1)
    return ordered[at] == keys


@dataclass
class Merge:
    """The rows an increment adds, built up source by source (held rows, inbox, log)."""

    known_books: set[int]
    rated: np.ndarray  # sorted pair keys the snapshot already holds
    ratings_before: int  # rows of the snapshot's ratings table
    ratings: list[pd.DataFrame] = field(default_factory=list)
    interactions: list[pd.DataFrame] = field(default_factory=list)
    held: list[pd.DataFrame] = field(default_factory=list)
    already_rated: list[pd.DataFrame] = field(default_factory=list)
    new_pairs: set[int] = field(default_factory=set)
    counts: dict[str, int] = field(default_factory=dict)
    # A snapshot whose ratings have timestamps: new ratings keep theirs (a file's column,
    # an event's time) and one without gets this, the latest time the snapshot knows.
    stamp_s: int | None = None

    @property
    def columns(self) -> list[str]:
        return [*RATINGS_COLUMNS, TIMESTAMP] if self.stamp_s is not None else list(
            RATINGS_COLUMNS)

    def _count(self, key: str, n: int) -> None:
        self.counts[key] = self.counts.get(key, 0) + int(n)

    def _split_unknown(self, frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
        known = frame[BOOK_ID].isin(self.known_books).to_numpy()
        return frame[known], frame[~known]

    def add_ratings(self, frame: pd.DataFrame, origin: str, ts: pd.Series | None = None,
                    implicit_after: bool = False) -> pd.DataFrame:
        """Take ratings rows (user_id, book_id, rating); returns the rows taken in."""
        stamps = frame[TIMESTAMP] if TIMESTAMP in frame.columns else None
        frame = frame[list(RATINGS_COLUMNS)].astype(np.int64).assign(
            **{TS_MS: ts.to_numpy() if ts is not None else pd.NA})
        frame = frame.astype({TS_MS: "Int64"})
        if self.stamp_s is not None:
            seconds = (pd.to_numeric(stamps, errors="coerce") if stamps is not None
                       else frame[TS_MS] // 1000)
            frame = frame.assign(**{TIMESTAMP: pd.Series(seconds, index=frame.index).astype(
                "Float64").fillna(self.stamp_s).astype(np.int64)})
        known, unknown = self._split_unknown(frame)
        self.hold(unknown.assign(**{EVENT_TYPE: "rating"}), origin)
        keys = pair_keys(known[USER_ID].to_numpy(), known[BOOK_ID].to_numpy())
        repeat = in_sorted(keys, self.rated) | np.array(
            [k in self.new_pairs for k in keys.tolist()], dtype=bool)
        # A pair repeated inside the new rows: the first one counts.
        repeat |= pd.Series(keys).duplicated(keep="first").to_numpy()
        if repeat.any():
            self.already_rated.append(known[repeat][list(RATINGS_COLUMNS)].assign(
                line=pd.NA, rule=ALREADY_RATED, origin=origin))
            self._count("already_rated", int(repeat.sum()))
        taken = known[~repeat]
        self.new_pairs.update(keys[~repeat].tolist())
        self.ratings.append(taken[self.columns])
        self._count(f"ratings from {origin}", len(taken))
        return taken

    def add_interactions(self, frame: pd.DataFrame, origin: str) -> None:
        """Take implicit interactions (user_id, book_id, type, ts_ms, after)."""
        known, unknown = self._split_unknown(frame)
        self.hold(unknown.assign(**{RATING: pd.NA}), origin)
        fresh = known.drop_duplicates([USER_ID, BOOK_ID, EVENT_TYPE], keep="first")
        self.interactions.append(fresh[list(INTERACTION_COLUMNS)])
        self._count(f"interactions from {origin}", len(fresh))

    def hold(self, frame: pd.DataFrame, origin: str) -> None:
        if len(frame):
            held = frame.assign(origin=origin).reindex(columns=list(HELD_COLUMNS))
            self.held.append(held)
            self._count("held (unknown book)", len(held))

    @property
    def ratings_taken(self) -> int:
        return sum(len(f) for f in self.ratings)

    def add_log(self, rows: LogRows) -> None:
        """Log ratings and interactions, placing each interaction after the ratings before it."""
        offset = self.ratings_before + self.ratings_taken
        taken = self.add_ratings(rows.ratings, "log", ts=rows.ratings[TS_MS])
        taken_order = rows.ratings.loc[taken.index, "order"].to_numpy(dtype=np.int64)
        implicit = rows.interactions
        before = np.searchsorted(np.sort(taken_order), implicit["order"].to_numpy(), "left")
        self.add_interactions(implicit.assign(after=offset + before).astype(
            {"after": np.int64, TS_MS: "Int64"}), "log")

    def readmit(self, held: pd.DataFrame) -> None:
        """Offer held rows again: those whose book is now known enter, the rest stay held."""
        if held.empty:
            return
        ratings = held[held[EVENT_TYPE] == "rating"]
        if len(ratings):
            for origin, rows in ratings.groupby("origin", sort=False):
                self.add_ratings(rows.astype({RATING: np.int64}), str(origin),
                                 ts=rows[TS_MS])
        implicit = held[held[EVENT_TYPE] != "rating"]
        if len(implicit):
            after = self.ratings_before + self.ratings_taken
            self.add_interactions(implicit.assign(after=after).astype(
                {USER_ID: np.int64, BOOK_ID: np.int64, "after": np.int64, TS_MS: "Int64"}),
                "held")

    def frames(self) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
        """(ratings, interactions, held, already rated) added, each possibly empty."""
        ratings = (pd.concat(self.ratings, ignore_index=True) if self.ratings
                   else pd.DataFrame({c: pd.Series(dtype=np.int64) for c in self.columns}))
        interactions = (pd.concat(self.interactions, ignore_index=True) if self.interactions
                        else empty_interactions())
        held = (pd.concat(self.held, ignore_index=True) if self.held else empty_held())
        repeated = (pd.concat(self.already_rated, ignore_index=True) if self.already_rated
                    else pd.DataFrame())
        return (ratings.astype(np.int64), interactions, held.astype(
            {USER_ID: np.int64, BOOK_ID: np.int64, RATING: "Int64", TS_MS: "Int64"}), repeated)


def empty_interactions() -> pd.DataFrame:
    return pd.DataFrame({USER_ID: pd.Series(dtype=np.int64), BOOK_ID: pd.Series(dtype=np.int64),
                         EVENT_TYPE: pd.Series(dtype=object), TS_MS: pd.Series(dtype="Int64"),
                         "after": pd.Series(dtype=np.int64)})


def empty_held() -> pd.DataFrame:
    return pd.DataFrame({USER_ID: pd.Series(dtype=np.int64), BOOK_ID: pd.Series(dtype=np.int64),
                         RATING: pd.Series(dtype="Int64"), EVENT_TYPE: pd.Series(dtype=object),
                         TS_MS: pd.Series(dtype="Int64"), "origin": pd.Series(dtype=object)})


# --- the next snapshot --------------------------------------------------------------------


@dataclass(frozen=True)
class AcceptedItem:
    """An inbox item that passed its suites: its cleaned rows and what it brings."""

    item: InboxItem
    ratings: pd.DataFrame
    books: pd.DataFrame | None = None
    quarantine: pd.DataFrame | None = None
    truth: Path | None = None


@dataclass
class NextSnapshot:
    """The parts of the snapshot that follows ``parent`` (see models.snapshot.commit)."""

    tables: dict[str, list[TablePart] | None]
    attachments: list[Path]
    counts: dict[str, int]
    new_books: int
    new_readers: int
    truth_note: str | None = None
    pairs: np.ndarray | None = None  # the next snapshot's pair index

    @property
    def adds_rows(self) -> bool:
        return any(self.counts.get(key, 0) for key in self.counts
                   if not key.startswith("held") and key != "already_rated")


def plan_next_snapshot(
    parent: Snapshot,
    items: Sequence[AcceptedItem],
    events: pd.DataFrame,
) -> NextSnapshot:
    """Merge held rows, accepted inbox items and log events onto ``parent``.

    Row order (time order for training): the parent's rows, then held rows whose book is
    now known, then each item's ratings in name order, then the log's events in stream
    order. Unknown books are held; repeated pairs are kept in quarantine_ratings. When the
    parent's ratings carry timestamps, new ones carry theirs (the file's ``timestamp``,
    the event's time; else the parent's latest time); when it has none, row order is time
    and a file's timestamp column is not kept.
    """
    catalogue = parent.read("books")
    book_frames: list[pd.DataFrame] = []
    for accepted in items:
        if accepted.books is not None:
            fresh = new_books(accepted.books, pd.concat([catalogue, *book_frames],
                                                        ignore_index=True))
            if len(fresh):
                book_frames.append(fresh)
    known_books = set(catalogue[BOOK_ID].to_numpy(dtype=np.int64).tolist())
    for frame in book_frames:
        known_books.update(frame[BOOK_ID].to_numpy(dtype=np.int64).tolist())
    rated = parent.pair_index()
    owners = np.asarray(rated >> 31)  # sorted too: its distinct values are the readers
    readers = owners[np.r_[True, owners[1:] != owners[:-1]]] if len(owners) else owners
    stamp = None
    if TIMESTAMP in parent.columns("ratings"):
        stamps = parent.read("ratings", columns=[TIMESTAMP])[TIMESTAMP]
        stamp = int(stamps.max()) if len(stamps) else 0
    merge = Merge(known_books=known_books, rated=rated, ratings_before=parent.rows("ratings"),
                  stamp_s=stamp)
    if parent.has(HELD):
        merge.readmit(parent.read(HELD))
    quarantine: list[pd.DataFrame] = []
    for accepted in items:
        merge.add_ratings(accepted.ratings, accepted.item.name)
        if accepted.quarantine is not None and len(accepted.quarantine):
            quarantine.append(accepted.quarantine.assign(origin=accepted.item.name))
    if len(events):
        rows = log_rows(events)
        merge.add_log(rows)
        if len(rows.invalid):
            quarantine.append(rows.invalid)
            merge.counts["invalid rating events"] = len(rows.invalid)
    ratings, interactions, held, repeated = merge.frames()
    if len(repeated):
        quarantine.append(repeated)

    tables: dict[str, list[TablePart] | None] = {
        name: list(parent.segments(name)) or None for name in parent.table_names()}
    tables.setdefault(INTERACTIONS, None)
    _extend(tables, "ratings", ratings)
    _extend(tables, "books", pd.concat(book_frames, ignore_index=True) if book_frames else None)
    _extend(tables, INTERACTIONS, interactions)
    _extend(tables, "quarantine_ratings", pd.concat(quarantine, ignore_index=True)
            if quarantine else None)
    tables[HELD] = [held] if len(held) else None  # held rows are offered anew each time

    new_ids = sorted_distinct(np.concatenate([
        ratings[USER_ID].to_numpy(dtype=np.int64),
        interactions[USER_ID].to_numpy(dtype=np.int64)]))
    attachments, note = _truth(parent, items, readers, new_ids, known_books)
    counts = dict(merge.counts)
    counts["new_books"] = sum(len(f) for f in book_frames)
    added = np.sort(pair_keys(ratings[USER_ID].to_numpy(), ratings[BOOK_ID].to_numpy()))
    return NextSnapshot(tables=tables, attachments=attachments, counts=counts,
                        new_books=counts["new_books"],
                        new_readers=int((~in_sorted(new_ids, readers)).sum()),
                        truth_note=note,
                        pairs=np.insert(rated, np.searchsorted(rated, added), added))


def _extend(tables: dict[str, list[TablePart] | None], name: str,
            frame: pd.DataFrame | None) -> None:
    if frame is not None and len(frame):
        tables[name] = [*(tables.get(name) or []), frame]


def _truth(parent: Snapshot, items: Sequence[AcceptedItem], readers: np.ndarray,
           new_ids: np.ndarray, books: set[int]) -> tuple[list[Path], str | None]:
    """The planted truth to carry (generated data only), if it still covers every id."""
    from models.generator import TRUTH_FILE, load_truth

    candidates = [a.truth for a in items if a.truth is not None]
    current = parent.path / TRUTH_FILE
    chosen = candidates[-1] if candidates else (current if current.exists() else None)
    if chosen is None:
        return [], None
    truth = load_truth(chosen.parent)
    top_reader = int(max(readers.max(initial=0), new_ids.max(initial=0)))
    if top_reader > truth.n_users or max(books, default=0) > truth.n_books:
        return [], (f"the planted truth ({truth.n_users} readers, {truth.n_books} books) "
                    "does not cover the new readers or books: the oracle is left out")
    return [chosen], None
