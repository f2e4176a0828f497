"""Reader × book interaction matrices, their id mappings and the temporal per-reader split.

The evaluation protocol (README, "Evaluation protocol") is fixed: implicit feedback (any
rating is an interaction); per reader, in time order (row order of ratings.csv), the last
20% are the test set, the 10% before them the validation set, the rest train.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

from models.schema import BOOK_ID, TIMESTAMP, USER_ID, TrainingError

VALID_FRACTION = 0.1
TEST_FRACTION = 0.2


@dataclass(frozen=True)
class IdMap:
    """Dense 0-based indices for the dataset's reader and book ids (both sorted ascending)."""

    user_ids: np.ndarray  # int64 [n_users], user_ids[i] is the dataset id of row i
    book_ids: np.ndarray  # int64 [n_books], book_ids[j] is the dataset id of column j

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_books(self) -> int:
        return len(self.book_ids)

    def user_index(self, user_ids: np.ndarray) -> np.ndarray:
        """Row indices of dataset user ids; raises TrainingError naming unknown ids."""
        return _lookup(self.user_ids, np.asarray(user_ids, dtype=np.int64), "reader")

    def book_index(self, book_ids: np.ndarray) -> np.ndarray:
        """Column indices of dataset book ids; raises TrainingError naming unknown ids."""
        return _lookup(self.book_ids, np.asarray(book_ids, dtype=np.int64), "book")


def _lookup(sorted_ids: np.ndarray, ids: np.ndarray, what: str) -> np.ndarray:
    pos = np.searchsorted(sorted_ids, ids)
    pos_clipped = np.minimum(pos, len(sorted_ids) - 1)
    unknown = (pos >= len(sorted_ids)) | (sorted_ids[pos_clipped] != ids)
    if unknown.any():
        examples = ", ".join(str(i) for i in ids[unknown][:5])
        raise TrainingError(
            f"{int(unknown.sum())} {what} id(s) are not in the model's mapping "
            f"(e.g. {examples}); score only ids seen in training or use the popular fallback"
        )
    return pos


@dataclass(frozen=True)
class Split:
    """Train / validation / test interaction matrices over one IdMap (float32 CSR)."""

    ids: IdMap
    train: sp.csr_matrix
    valid: sp.csr_matrix
    test: sp.csr_matrix
    by: str = "reader"  # "reader": each reader's latest are held out; "time": the last periods
    test_from: int | None = None  # by time: when the test period starts (the log's unit)

    def summary(self) -> dict[str, int | str]:
        return {
            "by": self.by,
            "readers": self.ids.n_users,
            "books": self.ids.n_books,
            "train": int(self.train.nnz),
            "valid": int(self.valid.nnz),
            "test": int(self.test.nnz),
        }


def interaction_history(
    ratings: pd.DataFrame,
    implicit: pd.DataFrame | None = None,
    types: tuple[str, ...] | list[str] = (),
) -> pd.DataFrame:
    """Every interaction (user_id, book_id) in time order, each pair once (its first time).

    A ``timestamp`` column comes along when the ratings (and the implicit rows) have one.

    ``ratings`` are in time order (row order); ``implicit`` rows (a snapshot's
    ``interactions`` table: user_id, book_id, type, after) of the given ``types`` go in
    after the first ``after`` ratings rows.
    """
    timed = TIMESTAMP in ratings.columns and (
        implicit is None or not len(types) or TIMESTAMP in implicit.columns)
    columns = [USER_ID, BOOK_ID, *([TIMESTAMP] if timed else [])]
    rows = ratings[columns]
    if implicit is not None and len(types) and len(implicit):
        chosen = implicit[implicit["type"].isin(list(types))]
        if len(chosen):
            order = np.concatenate([2 * np.arange(len(rows), dtype=np.int64) + 1,
                                    2 * chosen["after"].to_numpy(dtype=np.int64)])
            both = pd.concat([rows, chosen[columns]], ignore_index=True)
            rows = both.iloc[np.argsort(order, kind="stable")]
    repeated = rows.duplicated([USER_ID, BOOK_ID], keep="first").to_numpy()
    return rows[~repeated].reset_index(drop=True) if repeated.any() else rows.reset_index(
        drop=True)


def in_time_order(ratings: pd.DataFrame) -> pd.DataFrame:
    """Ratings sorted by their timestamp when they have one (ties keep their order)."""
    if TIMESTAMP not in ratings.columns or len(ratings) < 2:
        return ratings
    stamps = ratings[TIMESTAMP].to_numpy()
    if bool((stamps[1:] >= stamps[:-1]).all()):
        return ratings
    return ratings.iloc[np.argsort(stamps, kind="stable")].reset_index(drop=True)


def sorted_distinct(values: np.ndarray) -> np.ndarray:
    """The distinct values, ascending (np.unique hashes: on millions a sort is faster)."""
    ordered = np.sort(np.asarray(values))
    return ordered[np.r_[True, ordered[1:] != ordered[:-1]]] if len(ordered) else ordered


def build_id_map(ratings: pd.DataFrame, book_ids: np.ndarray | None = None) -> IdMap:
    """Map readers that have ratings and every catalogue book (from books.csv when given)."""
    users = sorted_distinct(ratings[USER_ID].to_numpy(dtype=np.int64))
    books = sorted_distinct(
        ratings[BOOK_ID].to_numpy(dtype=np.int64)
        if book_ids is None
        else np.asarray(book_ids, dtype=np.int64)
    )
    return IdMap(user_ids=users, book_ids=books)


def to_matrix(rows: np.ndarray, cols: np.ndarray, shape: tuple[int, int]) -> sp.csr_matrix:
    """A binary CSR matrix with ones at (rows, cols); duplicates collapse to one."""
    data = np.ones(len(rows), dtype=np.float32)
    matrix = sp.csr_matrix((data, (rows, cols)), shape=shape, dtype=np.float32)
    matrix.sum_duplicates()
    matrix.data[:] = 1.0
    return matrix


def temporal_split(
    ratings: pd.DataFrame,
    book_ids: np.ndarray | None = None,
    valid_fraction: float = VALID_FRACTION,
    test_fraction: float = TEST_FRACTION,
) -> Split:
    """Split each reader's interactions by row order into train / validation / test.

    A reader with n interactions gives floor(n * test_fraction) to test and
    floor(n * valid_fraction) to validation; the rest (at least one) stays in train.
    """
    if ratings.empty:
        raise TrainingError("ratings are empty: there is nothing to split or train on")
    if not 0 <= valid_fraction < 1 or not 0 < test_fraction < 1:
        raise TrainingError("split fractions must lie in [0, 1) and sum to less than 1")
    if valid_fraction + test_fraction >= 1:
        raise TrainingError("validation and test fractions must leave room for training")
    ids = build_id_map(ratings, book_ids)
    rows = ids.user_index(ratings[USER_ID].to_numpy())
    cols = ids.book_index(ratings[BOOK_ID].to_numpy())

    # Position of each interaction within its reader's history, in row (time) order.
    order = np.argsort(rows, kind="stable")
    sorted_rows = rows[order]
    counts = np.bincount(rows, minlength=ids.n_users)
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    position = np.empty(len(rows), dtype=np.int64)
    position[order] = np.arange(len(rows)) - starts[sorted_rows]

    n = counts[rows]
    n_test = np.floor(n * test_fraction).astype(np.int64)
    n_valid = np.floor(n * valid_fraction).astype(np.int64)
    # Never leave a reader with an empty training history.
    n_test = np.minimum(n_test, n - 1)
    n_valid = np.minimum(n_valid, n - 1 - n_test)
    in_test = position >= n - n_test
    in_valid = ~in_test & (position >= n - n_test - n_valid)
    in_train = ~in_test & ~in_valid

    shape = (ids.n_users, ids.n_books)
    split = Split(
        ids=ids,
        train=to_matrix(rows[in_train], cols[in_train], shape),
        valid=to_matrix(rows[in_valid], cols[in_valid], shape),
        test=to_matrix(rows[in_test], cols[in_test], shape),
    )
    if split.test.nnz == 0:
        raise TrainingError(
            "the test split is empty: every reader has fewer than "
            f"{int(np.ceil(1 / test_fraction))} interactions; provide more ratings per reader"
        )
    return split


def time_split(
    ratings: pd.DataFrame,
    valid_from: int,
    test_from: int | None = None,
    book_ids: np.ndarray | None = None,
) -> Split:
    """Split by global time: train before ``valid_from``, validation up to ``test_from``,
    test after.

    Time is the ``timestamp`` column when there is one, else the row position. What a
    stopping rule sees is then what serving faces: a model fitted on the past, judged on
    what its readers did next, with nobody's later reading in training. Validation and
    test keep every interaction of their period (so a fit on everything has them all),
    but only readers with training history are scored (``scored_readers``): the model
    scored is fitted on the training part alone.
    """
    if ratings.empty:
        raise TrainingError("ratings are empty: there is nothing to split or train on")
    time = (ratings[TIMESTAMP].to_numpy(np.int64) if TIMESTAMP in ratings.columns
            else np.arange(len(ratings), dtype=np.int64))
    end = test_from if test_from is not None else int(time.max()) + 1
    if not valid_from < end:
        raise TrainingError(f"the validation period is empty: it starts at {valid_from} "
                            f"and the test period at {end}")
    ids = build_id_map(ratings, book_ids)
    rows = ids.user_index(ratings[USER_ID].to_numpy())
    cols = ids.book_index(ratings[BOOK_ID].to_numpy())
    in_train, in_test = time < valid_from, time >= end
    in_valid = ~in_train & ~in_test
    shape = (ids.n_users, ids.n_books)
    split = Split(ids=ids, train=to_matrix(rows[in_train], cols[in_train], shape),
                  valid=to_matrix(rows[in_valid], cols[in_valid], shape),
                  test=to_matrix(rows[in_test], cols[in_test], shape), by="time",
                  test_from=test_from)
    if split.train.nnz == 0:
        raise TrainingError(f"nothing precedes the validation period (time {valid_from}): "
                            "there is nothing to train on")
    if len(scored_readers(split, "valid")) == 0:
        raise TrainingError("no reader of the validation period has read anything before "
                            "it: there is nothing to validate on; choose a longer period")
    if test_from is not None and len(scored_readers(split, "test")) == 0:
        raise TrainingError("no reader of the test period has read anything before the "
                            "validation period: there is nothing to test on")
    return split


def scored_readers(split: Split, stage: str) -> np.ndarray:
    """Readers with something to predict in ``stage`` and a history the scored model
    learnt from: before the stage per reader; the training part when split by time (the
    model is fitted on it alone)."""
    relevant = split.valid if stage == "valid" else split.test
    seen = split.train if split.by == "time" else seen_matrix(split, stage)
    return np.flatnonzero((np.diff(relevant.indptr) > 0) & (np.diff(seen.indptr) > 0))


def everything(split: Split) -> sp.csr_matrix:
    """Every interaction of the split (train + validation + test) as one binary matrix."""
    matrix = (split.train + split.valid + split.test).tocsr()
    matrix.data[:] = 1.0
    return matrix


def seen_matrix(split: Split, upto: str) -> sp.csr_matrix:
    """Interactions a ranking must exclude: 'valid' → train; 'test' → train + validation."""
    if upto == "valid":
        return split.train
    if upto == "test":
        return (split.train + split.valid).tocsr()
    raise ValueError(f"upto must be 'valid' or 'test', not {upto!r}")


def popularity(matrix: sp.csr_matrix) -> np.ndarray:
    """Interaction count per book column (float64)."""
    return np.asarray(matrix.sum(axis=0)).ravel().astype(np.float64)

