"""Reference statistics (a training snapshot and its model) and current ones (new ratings)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from models.bundle import ScoringBundle
from models.drift.names import REFERENCE_FILE, DriftError
from models.drift.performance import TEST_SPLIT, Performance, training_performance
from models.schema import BOOK_ID, RATING, USER_ID
from models.snapshot import Snapshot, open_snapshot


@dataclass(frozen=True)
class ReferenceStats:
    """The training snapshot as monitoring needs it; arrays are aligned by position."""

    snapshot_id: str
    rating_counts: np.ndarray  # int64 [5]: ratings of 1..5 stars
    user_ids: np.ndarray  # int64 [n_readers], sorted: the readers the model knows
    reader_counts: np.ndarray  # int64 [n_readers]: ratings per reader
    book_ids: np.ndarray  # int64 [n_books], sorted: the catalogue the model knows
    book_counts: np.ndarray  # int64 [n_books]: ratings per book
    performance: Performance | None = None  # the served lists' at training time
    meta: dict[str, object] = field(default_factory=dict)

    @property
    def n_ratings(self) -> int:
        return int(self.rating_counts.sum())

    def with_performance(self, performance: Performance | None) -> ReferenceStats:
        """A copy carrying the model's training-time performance."""
        return ReferenceStats(self.snapshot_id, self.rating_counts, self.user_ids,
                              self.reader_counts, self.book_ids, self.book_counts,
                              performance, dict(self.meta))

    def save(self, directory: Path) -> Path:
        """Write reference_stats.npz into directory (e.g. the model's bundle); returns it."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        header = {
            "snapshot_id": self.snapshot_id,
            "performance": None if self.performance is None else self.performance.as_dict(),
            "meta": self.meta,
        }
        path = directory / REFERENCE_FILE
        np.savez_compressed(
            path,
            header=np.array(json.dumps(header, default=str)),
            rating_counts=self.rating_counts,
            user_ids=self.user_ids,
            reader_counts=self.reader_counts,
            book_ids=self.book_ids,
            book_counts=self.book_counts,
        )
        return path


def load_reference(path: Path) -> ReferenceStats:
    """Read reference statistics from a reference_stats.npz or the directory holding one."""
    path = Path(path)
    if path.is_dir():
        path = path / REFERENCE_FILE
    if not path.is_file():
        raise DriftError(f"{path} does not exist: compute the reference with compute_reference")
    with np.load(path, allow_pickle=False) as data:
        header = json.loads(str(data["header"]))
        perf = header.get("performance")
        return ReferenceStats(
            snapshot_id=str(header["snapshot_id"]),
            rating_counts=data["rating_counts"],
            user_ids=data["user_ids"],
            reader_counts=data["reader_counts"],
            book_ids=data["book_ids"],
            book_counts=data["book_counts"],
            performance=None if perf is None else Performance(
                k=int(perf["k"]), hit_rate=float(perf["hit_rate"]),
                precision=float(perf["precision"]), interactions=int(perf["interactions"]),
                readers=int(perf["readers"]), basis=str(perf.get("basis", TEST_SPLIT))),
            meta=dict(header.get("meta") or {}),
        )


def rating_counts(ratings: pd.Series) -> np.ndarray:
    """How many ratings of 1..5 stars, int64 [5]; other values are refused."""
    values = ratings.to_numpy(dtype=np.int64)
    if values.size and (values.min() < 1 or values.max() > 5):
        raise DriftError(f"ratings must lie in 1..5; got {values.min()}..{values.max()}")
    return np.bincount(values, minlength=6)[1:6].astype(np.int64)


def _counts_by_id(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    unique, counts = np.unique(np.asarray(ids, dtype=np.int64), return_counts=True)
    return unique, counts.astype(np.int64)


def reference_from_ratings(
    snapshot_id: str, ratings: pd.DataFrame, book_ids: np.ndarray | None = None
) -> ReferenceStats:
    """Data statistics of a ratings table; the catalogue is book_ids (default: rated ones)."""
    if ratings.empty:
        raise DriftError(f"snapshot {snapshot_id} has no ratings to take a reference from")
    users, per_user = _counts_by_id(ratings[USER_ID].to_numpy())
    rated, per_book = _counts_by_id(ratings[BOOK_ID].to_numpy())
    catalogue = rated if book_ids is None else np.union1d(np.asarray(book_ids, np.int64), rated)
    book_counts = np.zeros(len(catalogue), dtype=np.int64)
    book_counts[np.searchsorted(catalogue, rated)] = per_book
    return ReferenceStats(
        snapshot_id=snapshot_id,
        rating_counts=rating_counts(ratings[RATING]),
        user_ids=users,
        reader_counts=per_user,
        book_ids=catalogue,
        book_counts=book_counts,
    )


def compute_reference(
    snapshot: Snapshot,
    bundle: ScoringBundle | None = None,
    k: int = 10,
    num_threads: int = 1,
) -> ReferenceStats:
    """Reference statistics of a snapshot; with the model's bundle, its served hit rate too."""
    ratings = snapshot.read("ratings", columns=[USER_ID, BOOK_ID, RATING])
    book_ids = snapshot.read("books", columns=[BOOK_ID])[BOOK_ID].to_numpy(dtype=np.int64)
    reference = reference_from_ratings(snapshot.snapshot_id, ratings, book_ids)
    if bundle is None:
        return reference
    to_read = snapshot.read("to_read", columns=[USER_ID, BOOK_ID]) if snapshot.has("to_read") \
        else None
    performance = training_performance(bundle, ratings, book_ids, k, to_read, num_threads)
    return ReferenceStats(
        reference.snapshot_id, reference.rating_counts, reference.user_ids,
        reference.reader_counts, reference.book_ids, reference.book_counts, performance,
        {key: bundle.meta[key] for key in ("snapshot", "best_epoch") if key in bundle.meta},
    )


def write_reference(snapshot_path: Path, bundle_dir: Path, k: int, num_threads: int = 1
                    ) -> Path:
    """Compute the reference of a snapshot and its freshly trained model into bundle_dir.

    The train flow calls this before the bundle is logged, so the statistics travel with
    the registered model version.
    """
    bundle = ScoringBundle.load(Path(bundle_dir))
    reference = compute_reference(open_snapshot(Path(snapshot_path)), bundle, k, num_threads)
    return reference.save(Path(bundle_dir))


@dataclass(frozen=True)
class CurrentStats:
    """New ratings: their star counts, who made them and which books got them."""

    source: str
    rating_counts: np.ndarray  # int64 [5]
    user_ids: np.ndarray  # int64 sorted, readers with at least one new rating
    reader_counts: np.ndarray  # int64, new ratings per reader
    book_ids: np.ndarray  # int64 sorted, books with at least one new rating
    book_counts: np.ndarray  # int64, new ratings per book

    @property
    def n_ratings(self) -> int:
        return int(self.rating_counts.sum())


def compute_current(ratings: pd.DataFrame, source: str) -> CurrentStats:
    """Statistics of new ratings (columns user_id, book_id, rating)."""
    missing = [c for c in (USER_ID, BOOK_ID, RATING) if c not in ratings.columns]
    if missing:
        raise DriftError(f"new ratings from {source} lack the columns {missing}")
    users, per_user = _counts_by_id(ratings[USER_ID].to_numpy())
    books, per_book = _counts_by_id(ratings[BOOK_ID].to_numpy())
    return CurrentStats(
        source=source,
        rating_counts=rating_counts(ratings[RATING]),
        user_ids=users,
        reader_counts=per_user,
        book_ids=books,
        book_counts=per_book,
    )


def unseen_pairs(ratings: pd.DataFrame, seen_users: np.ndarray, seen_books: np.ndarray,
                 seen: sp.spmatrix) -> pd.DataFrame:
    """The rows of ratings whose (reader, book) pair is not stored in seen.

    ``seen`` is a matrix over (seen_users, seen_books) positions (both sorted), like a
    scoring bundle's; pairs with a reader or book outside them are new by definition.
    """
    users = ratings[USER_ID].to_numpy(dtype=np.int64)
    books = ratings[BOOK_ID].to_numpy(dtype=np.int64)
    old = np.zeros(len(users), dtype=bool)
    if len(seen_users) and len(seen_books) and len(users):
        u_pos = np.minimum(np.searchsorted(seen_users, users), len(seen_users) - 1)
        b_pos = np.minimum(np.searchsorted(seen_books, books), len(seen_books) - 1)
        known = (seen_users[u_pos] == users) & (seen_books[b_pos] == books)
        coo = sp.coo_matrix(seen)
        stored = coo.data != 0
        # Every stored pair as one sorted key, row * n_books + column: a binary search
        # answers millions of lookups without indexing the matrix.
        keys = np.sort(coo.row[stored].astype(np.int64) * len(seen_books)
                       + coo.col[stored].astype(np.int64))
        queries = u_pos[known] * len(seen_books) + b_pos[known]
        pos = np.minimum(np.searchsorted(keys, queries), max(len(keys) - 1, 0))
        old[known] = (keys[pos] == queries) if len(keys) else False
    return ratings.loc[~old].reset_index(drop=True)
