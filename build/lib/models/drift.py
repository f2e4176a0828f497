"""Drift statistics: the data and the served model at training time against new ratings.

The **reference** is taken from a training snapshot (and the model trained on it): the rating
mix, ratings per reader, ratings per book, the known readers and books, and the hit rate of
the lists the model serves, at training time. **Current** statistics describe new ratings
only (a continuation directory, the pairs of a newer snapshot the model has not seen, rating
events). The measures compare the two:

- ``rating_mix_psi``: population stability index of the 1..5 star shares.
- ``reader_activity_ks``: Kolmogorov-Smirnov distance between the new ratings per active
  reader and what the reference predicts for a window of that size, if new ratings come
  from readers in proportion to their past activity (each reader's count is binomial).
  Comparing raw counts would be meaningless: a window holds a fraction of a history.
- ``book_popularity_js``: Jensen-Shannon divergence (bits, 0..1) between the reference and
  the new ratings' spread over books. Books are pooled in reference popularity order into
  groups that expect at least ``POPULARITY_MIN_EXPECTED`` new ratings, so a small window
  over a large catalogue measures drift rather than sampling noise; new books form a group
  of their own, with no reference mass.
- ``unseen_readers_share`` / ``unseen_books_share``: share of the new ratings made by
  readers, or given to books, that the model has never seen (it can only serve the
  popular fallback to those readers, and never recommends those books).
- ``hit_rate_drop``: relative fall of the served lists' hit rate (share of new interactions
  whose book was in the reader's top k) from the same lists' hit rate at training time on
  the readers' to-read shelves (what they meant to read next). It fires only when the drop
  is past its threshold with 95% confidence (a Wilson bound on the new hit rate), so small
  windows do not alarm on chance. Without shelves the training-time figure is the test
  split's, which is not comparable (held-out ratings are part of what was already read),
  so the drop is then reported but not judged.

Every measure has a threshold; a ``DriftReport`` says which fired. No Prefect here.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy import stats

from models.bundle import ScoringBundle
from models.evaluation import readers_with_items
from models.interactions import seen_matrix, temporal_split
from models.intervals import wilson_interval
from models.metrics import hit_matrix
from models.ranking import top_k_factors, with_bias
from models.schema import BOOK_ID, RATING, USER_ID, GoodbooksError
from models.snapshot import Snapshot, open_snapshot

REFERENCE_FILE = "reference_stats.npz"
STARS = np.arange(1, 6)
PSI_FLOOR = 1e-4  # share given to an empty rating bucket, so PSI stays finite
POPULARITY_MIN_EXPECTED = 20.0  # expected new ratings per pooled group of books

RATING_MIX_PSI = "rating_mix_psi"
READER_ACTIVITY_KS = "reader_activity_ks"
BOOK_POPULARITY_JS = "book_popularity_js"
UNSEEN_READERS = "unseen_readers_share"
UNSEEN_BOOKS = "unseen_books_share"
HIT_RATE_DROP = "hit_rate_drop"
PRECISION = "precision_at_k"


class DriftError(GoodbooksError):
    """Drift statistics cannot be computed from what was given."""


# --- model performance -------------------------------------------------------------------


SHELF = "to_read"  # basis of a training-time hit rate measured on to-read shelves
TEST_SPLIT = "test_split"  # ... measured on the temporal test split
NEW_RATINGS = "new_ratings"  # ... measured on new interactions


@dataclass(frozen=True)
class Performance:
    """How well top-k lists matched interactions that came after them."""

    k: int
    hit_rate: float  # share of the interactions whose book was in the reader's top k
    precision: float  # mean over readers of (hits in the top k) / k
    interactions: int
    readers: int
    basis: str = NEW_RATINGS  # what the interactions were: SHELF, TEST_SPLIT, NEW_RATINGS

    def as_dict(self) -> dict[str, float | int | str]:
        return {"k": self.k, "hit_rate": self.hit_rate, "precision": self.precision,
                "interactions": self.interactions, "readers": self.readers,
                "basis": self.basis}


def training_performance(
    bundle: ScoringBundle,
    ratings: pd.DataFrame,
    book_ids: np.ndarray,
    k: int,
    to_read: pd.DataFrame | None = None,
    num_threads: int = 1,
) -> Performance:
    """The served lists' hit rate at training time.

    With to-read shelves: the lists the model serves (everything a reader rated excluded)
    against the books on their shelf, i.e. what they meant to read next; this is what new
    ratings are later compared with. Without shelves: the model's hit rate on the temporal
    test split (train + validation excluded), which is optimistic, because held-out ratings
    are part of what a reader has already read, so it is only reported.
    """
    if to_read is not None and not to_read.empty:
        known = np.isin(to_read[USER_ID].to_numpy(dtype=np.int64), bundle.ids.user_ids)
        shelf = to_read.loc[known, [USER_ID, BOOK_ID]]
        if not shelf.empty:
            served = served_lists(bundle, np.unique(shelf[USER_ID].to_numpy(np.int64)), k,
                                  num_threads)
            measured = served_performance(shelf, served, k)
            if measured is not None:
                return Performance(measured.k, measured.hit_rate, measured.precision,
                                   measured.interactions, measured.readers, SHELF)
    split = temporal_split(ratings, book_ids=book_ids)
    factors = bundle.factors_for(split.ids)
    rows = readers_with_items(split.test)
    query, items = with_bias(factors.user_factors[rows], factors.item_factors,
                             factors.item_bias)
    top, _ = top_k_factors(query, items, k, seen_matrix(split, "test")[rows],
                           num_threads=num_threads)
    hits = hit_matrix(top, split.test[rows]).sum(axis=1)
    relevant = int(split.test[rows].nnz)
    return Performance(
        k=k,
        hit_rate=float(hits.sum() / relevant),
        precision=float((hits / k).mean()),
        interactions=relevant,
        readers=len(rows),
        basis=TEST_SPLIT,
    )


def served_lists(bundle: ScoringBundle, user_ids: np.ndarray, k: int, num_threads: int = 1
                 ) -> dict[int, list[int]]:
    """The top-k lists the bundle's model serves these readers (what batch scoring writes)."""
    rows = bundle.ids.user_index(np.asarray(user_ids, dtype=np.int64))
    f = bundle.factors
    query, items = with_bias(f.user_factors[rows], f.item_factors, f.item_bias)
    top, _ = top_k_factors(query, items, k, bundle.seen[rows], num_threads=num_threads)
    books = np.where(top >= 0, bundle.ids.book_ids[np.maximum(top, 0)], -1)
    return {int(u): [int(b) for b in row if b >= 0]
            for u, row in zip(bundle.ids.user_ids[rows].tolist(), books.tolist(), strict=True)}


def served_performance(
    interactions: pd.DataFrame, served: Mapping[int, Sequence[int]], k: int
) -> Performance | None:
    """Hit rate and precision at k of served lists on new interactions.

    ``served`` maps a reader to their stored list (best first; only the first k count).
    Readers without a list are left out (they get the popular fallback; the unseen-readers
    share covers them). None when no interaction belongs to a reader with a list.
    """
    if k < 1:
        raise DriftError(f"k must be at least 1, not {k}")
    users = interactions[USER_ID].to_numpy(dtype=np.int64)
    books = interactions[BOOK_ID].to_numpy(dtype=np.int64)
    listed = np.isin(users, np.fromiter(served.keys(), dtype=np.int64, count=len(served)))
    if not listed.any():
        return None
    pairs = pd.DataFrame({USER_ID: users[listed], BOOK_ID: books[listed]}).drop_duplicates()
    top = pd.DataFrame(
        [(u, b) for u in pairs[USER_ID].unique().tolist() for b in list(served[u])[:k]],
        columns=[USER_ID, BOOK_ID],
    ).drop_duplicates()
    merged = pairs.merge(top.assign(hit=True), on=[USER_ID, BOOK_ID], how="left")
    hit = merged["hit"].notna().to_numpy()
    per_reader = pd.Series(hit, index=pairs[USER_ID].to_numpy()).groupby(level=0).sum()
    return Performance(
        k=k,
        hit_rate=float(hit.mean()),
        precision=float((per_reader / k).mean()),
        interactions=len(pairs),
        readers=len(per_reader),
    )


# --- reference and current statistics ----------------------------------------------------


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


# --- measures ----------------------------------------------------------------------------


def psi(expected: np.ndarray, actual: np.ndarray, floor: float = PSI_FLOOR) -> float:
    """Population stability index between two count (or share) vectors over one set of bins."""
    p = np.maximum(np.asarray(expected, np.float64) / max(np.sum(expected), 1e-300), floor)
    q = np.maximum(np.asarray(actual, np.float64) / max(np.sum(actual), 1e-300), floor)
    return float(np.sum((q - p) * np.log(q / p)))


def expected_activity_cdf(reference_counts: np.ndarray, n_new: int, x: np.ndarray) -> np.ndarray:
    """P(X <= x) for the new ratings X of an active reader, under proportional activity.

    A reader with c of the reference's N ratings makes Binomial(n_new, c / N) of n_new new
    ratings; "active" readers are those with at least one, so X is conditioned on X >= 1.
    """
    values, multiplicity = np.unique(np.asarray(reference_counts, np.int64), return_counts=True)
    p = values / float(np.sum(reference_counts))
    x = np.asarray(x, dtype=np.float64)
    zero = stats.binom.pmf(0, n_new, p)
    cdf = stats.binom.cdf(x[None, :], n_new, p[:, None]) - zero[:, None]
    active = float(np.sum(multiplicity * (1.0 - zero)))
    out = np.clip((multiplicity @ np.maximum(cdf, 0.0)) / max(active, 1e-300), 0.0, 1.0)
    return np.where(x < 1, 0.0, out)


def activity_ks(reference_counts: np.ndarray, current_counts: np.ndarray) -> float:
    """Largest gap between the empirical and the expected CDF of new ratings per reader."""
    current = np.sort(np.asarray(current_counts, np.int64))
    if current.size == 0:
        return 0.0
    n_new = int(current.sum())
    values = np.unique(current)
    # Both CDFs are step functions on the integers and the expected one only rises, so the
    # largest gap sits at a value of the sample or just below one.
    points = np.unique(np.concatenate([values, values - 1]))
    empirical = np.searchsorted(current, points, side="right") / current.size
    expected = expected_activity_cdf(reference_counts, n_new, points)
    return float(np.max(np.abs(empirical - expected)))


def popularity_groups(reference_counts: np.ndarray, n_new: int,
                      min_expected: float = POPULARITY_MIN_EXPECTED) -> np.ndarray:
    """Group index of each reference book: popularity order, >= min_expected new ratings each."""
    counts = np.asarray(reference_counts, np.float64)
    order = np.lexsort((np.arange(len(counts)), -counts))
    expected = (counts[order] * (n_new / max(counts.sum(), 1e-300))).tolist()
    group_of_sorted = np.empty(len(counts), dtype=np.int64)
    group, filled = 0, 0.0
    for i, value in enumerate(expected):
        group_of_sorted[i] = group
        filled += value
        if filled >= min_expected:
            group, filled = group + 1, 0.0
    # The last group, short of min_expected (the least read and unread books), joins the
    # one before it.
    if 0.0 < filled < min_expected or filled == 0.0 and group > 0:
        group_of_sorted[group_of_sorted == group] = max(group - 1, 0)
    groups = np.empty(len(counts), dtype=np.int64)
    groups[order] = group_of_sorted
    return groups


def js_divergence(p: np.ndarray, q: np.ndarray) -> float:
    """Jensen-Shannon divergence in bits (0 = identical, 1 = disjoint) of two count vectors."""
    p = np.asarray(p, np.float64) / max(np.sum(p), 1e-300)
    q = np.asarray(q, np.float64) / max(np.sum(q), 1e-300)
    m = (p + q) / 2.0

    def kl(a: np.ndarray) -> float:
        mask = a > 0
        return float(np.sum(a[mask] * np.log2(a[mask] / m[mask])))

    return max(0.0, 0.5 * kl(p) + 0.5 * kl(q))


def popularity_js(reference: ReferenceStats, current: CurrentStats,
                  min_expected: float = POPULARITY_MIN_EXPECTED) -> float:
    """JS divergence of the spread of ratings over (pooled) books; new books pooled apart."""
    ref_p, cur_p = pooled_popularity(reference, current, min_expected)
    return js_divergence(ref_p, cur_p)


def pooled_popularity(reference: ReferenceStats, current: CurrentStats,
                      min_expected: float = POPULARITY_MIN_EXPECTED
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Reference and current ratings per pooled group; the last group holds new books."""
    groups = popularity_groups(reference.book_counts, current.n_ratings, min_expected)
    n_groups = int(groups.max(initial=-1)) + 2
    ref = np.bincount(groups, weights=reference.book_counts, minlength=n_groups)
    pos = np.minimum(np.searchsorted(reference.book_ids, current.book_ids),
                     max(len(reference.book_ids) - 1, 0))
    known = reference.book_ids[pos] == current.book_ids
    cur = np.bincount(groups[pos[known]], weights=current.book_counts[known],
                      minlength=n_groups)
    cur[-1] += current.book_counts[~known].sum()
    return ref, cur


def unseen_share(known_ids: np.ndarray, ids: np.ndarray, counts: np.ndarray) -> float:
    """Share of the new ratings whose id (reader or book) is not among known_ids."""
    total = counts.sum()
    if total == 0:
        return 0.0
    return float(counts[~np.isin(ids, known_ids)].sum() / total)


# --- the report --------------------------------------------------------------------------


@dataclass(frozen=True)
class DriftThresholds:
    """Past these a measure fires (settings.py documents each default)."""

    rating_mix_psi: float = 0.1
    reader_activity_ks: float = 0.1
    book_popularity_js: float = 0.05
    unseen_readers_share: float = 0.05
    unseen_books_share: float = 0.02
    hit_rate_drop: float = 0.15  # fires only when past it with 95% confidence
    min_ratings: int = 500  # fewer new ratings are reported but not judged
    min_interactions: int = 200  # fewer evaluated interactions: the hit rate is not judged

    @classmethod
    def from_settings(cls, s: Any) -> DriftThresholds:  # noqa: ANN401
        """The thresholds a settings object (``settings.Settings``) configures."""
        return cls(
            rating_mix_psi=s.drift_psi_threshold,
            reader_activity_ks=s.drift_ks_threshold,
            book_popularity_js=s.drift_js_threshold,
            unseen_readers_share=s.drift_unseen_readers_threshold,
            unseen_books_share=s.drift_unseen_books_threshold,
            hit_rate_drop=s.drift_hit_rate_drop_threshold,
            min_ratings=s.drift_min_ratings,
            min_interactions=s.drift_min_interactions,
        )


@dataclass(frozen=True)
class Measure:
    """One comparison of reference and current, and whether it crossed its threshold."""

    name: str
    value: float | None  # None when it could not be measured
    threshold: float | None  # None: reported only
    fired: bool
    judged: bool  # False when there was too little data to act on the value
    description: str
    reference: float | None = None
    current: float | None = None

    @property
    def status(self) -> str:
        if self.value is None:
            return "unavailable"
        if self.fired:
            return "drift"
        if self.threshold is None:
            return "reported"
        return "ok" if self.judged else "not judged (too little data)"

    def as_dict(self) -> dict[str, object]:
        return {"measure": self.name, "value": _round(self.value),
                "threshold": self.threshold, "fired": self.fired, "status": self.status,
                "reference": _round(self.reference), "current": _round(self.current),
                "description": self.description}


def _round(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else round(float(value), 6)


@dataclass(frozen=True)
class DriftReport:
    """Every measure, its threshold, whether it fired, and the verdict."""

    reference_snapshot: str
    source: str
    n_ratings: int
    n_readers: int
    n_books: int
    measures: tuple[Measure, ...]
    notes: tuple[str, ...] = ()

    @property
    def drifted(self) -> bool:
        return any(m.fired for m in self.measures)

    @property
    def fired(self) -> list[str]:
        return [m.name for m in self.measures if m.fired]

    def measure(self, name: str) -> Measure:
        for m in self.measures:
            if m.name == name:
                return m
        raise KeyError(name)

    def values(self) -> dict[str, float | None]:
        return {m.name: _round(m.value) for m in self.measures}

    def summary(self) -> str:
        """One line: the verdict and the measures that fired, with their thresholds."""
        if not self.drifted:
            return f"no drift in {self.n_ratings} new ratings from {self.source}"
        parts = [f"{m.name} {m.value:.4g} > {m.threshold:g}" for m in self.measures if m.fired]
        return f"drift in {self.n_ratings} new ratings from {self.source}: " + "; ".join(parts)

    def as_dict(self) -> dict[str, object]:
        """JSON-safe: the verdict, every measure and the notes."""
        return {
            "drifted": self.drifted,
            "fired": self.fired,
            "summary": self.summary(),
            "reference_snapshot": self.reference_snapshot,
            "source": self.source,
            "n_ratings": self.n_ratings,
            "n_readers": self.n_readers,
            "n_books": self.n_books,
            "measures": [m.as_dict() for m in self.measures],
            "notes": list(self.notes),
        }

    def table(self) -> list[dict[str, object]]:
        """One row per measure (for a table artifact)."""
        return [{k: v for k, v in m.as_dict().items() if k != "description"}
                for m in self.measures]

    def to_markdown(self, plot_path: str | None = None) -> str:
        """The report as markdown: verdict, measures with thresholds, notes, plot."""
        verdict = "**Drift detected**" if self.drifted else "No drift"
        lines = [
            "### Drift report", "",
            f"{verdict}: {self.summary()}.", "",
            f"Reference snapshot `{self.reference_snapshot}`; current data `{self.source}`: "
            f"{self.n_ratings} new ratings by {self.n_readers} readers on {self.n_books} books.",
            "",
            "| measure | value | threshold | status | reference | current | what it compares |",
            "|---|---|---|---|---|---|---|",
        ]
        for m in self.measures:
            lines.append(
                f"| {m.name} | {_fmt(m.value)} | {_fmt(m.threshold)} | {m.status} | "
                f"{_fmt(m.reference)} | {_fmt(m.current)} | {m.description} |"
            )
        if self.notes:
            lines += ["", *[f"- {note}" for note in self.notes]]
        if plot_path:
            lines += ["", f"Reference and current distributions: `{plot_path}`", "",
                      f"![reference vs current]({Path(plot_path).as_uri()})"]
        return "\n".join(lines)


def _fmt(value: float | None) -> str:
    return "—" if value is None else f"{value:.4g}"


def detect_drift(
    reference: ReferenceStats,
    current: CurrentStats,
    performance: Performance | None = None,
    thresholds: DriftThresholds | None = None,
) -> DriftReport:
    """Compare new ratings (and the served lists' performance on them) with the reference."""
    t = thresholds or DriftThresholds()
    n = current.n_ratings
    judged = n >= t.min_ratings
    notes: list[str] = []
    if not judged:
        notes.append(f"only {n} new ratings (< {t.min_ratings}): data measures are reported "
                     "but not judged")

    def data_measure(name: str, value: float | None, threshold: float, description: str,
                     ref: float | None = None, cur: float | None = None) -> Measure:
        fired = judged and value is not None and value > threshold
        return Measure(name, value, threshold, fired, judged, description, ref, cur)

    has_data = n > 0
    ref_mean = float(reference.rating_counts @ STARS / max(reference.n_ratings, 1))
    cur_mean = float(current.rating_counts @ STARS / n) if has_data else None
    measures = [
        data_measure(RATING_MIX_PSI,
                     psi(reference.rating_counts, current.rating_counts) if has_data else None,
                     t.rating_mix_psi, "PSI of the 1-5 star shares (reference/current: mean "
                     "rating)", ref_mean, cur_mean),
        data_measure(READER_ACTIVITY_KS,
                     activity_ks(reference.reader_counts, current.reader_counts)
                     if has_data else None, t.reader_activity_ks,
                     "KS distance of new ratings per reader from proportional activity "
                     "(reference/current: mean per active reader)",
                     _expected_mean_activity(reference, n) if has_data else None,
                     float(current.reader_counts.mean()) if has_data else None),
        data_measure(BOOK_POPULARITY_JS, popularity_js(reference, current) if has_data else None,
                     t.book_popularity_js, "Jensen-Shannon divergence (bits) of ratings over "
                     "books pooled by reference popularity"),
        data_measure(UNSEEN_READERS,
                     unseen_share(reference.user_ids, current.user_ids, current.reader_counts)
                     if has_data else None, t.unseen_readers_share,
                     "share of new ratings by readers the model does not know"),
        data_measure(UNSEEN_BOOKS,
                     unseen_share(reference.book_ids, current.book_ids, current.book_counts)
                     if has_data else None, t.unseen_books_share,
                     "share of new ratings on books the model does not know"),
    ]
    measures += _performance_measures(reference.performance, performance, t, notes)
    if n == 0:
        notes.append("no new ratings: nothing to compare")
    return DriftReport(
        reference_snapshot=reference.snapshot_id,
        source=current.source,
        n_ratings=n,
        n_readers=len(current.user_ids),
        n_books=len(current.book_ids),
        measures=tuple(measures),
        notes=tuple(notes),
    )


def _expected_mean_activity(reference: ReferenceStats, n_new: int) -> float:
    """Mean new ratings per active reader under proportional activity."""
    p = reference.reader_counts / float(reference.reader_counts.sum())
    active = float(np.sum(1.0 - (1.0 - p) ** n_new))
    return n_new / max(active, 1e-300)


def _performance_measures(
    reference: Performance | None, current: Performance | None, t: DriftThresholds,
    notes: list[str],
) -> list[Measure]:
    """The hit-rate drop (judged) and precision at k (reported beside its reference)."""
    k = (current or reference).k if (current or reference) else None
    precision = Measure(
        PRECISION if k is None else f"precision_at_{k}",
        None if current is None else current.precision, None, False, False,
        "served lists' precision on new interactions (reference: at training time); it "
        "grows with how many new interactions a reader has, so it is reported, not judged",
        None if reference is None else reference.precision,
        None if current is None else current.precision,
    )
    if reference is None or current is None:
        notes.append("hit rate not compared: " + (
            "the reference has no training-time performance" if reference is None
            else "no new interaction belongs to a reader with a served list"))
        drop = Measure(HIT_RATE_DROP, None, t.hit_rate_drop, False, False,
                       "relative fall of the served lists' hit rate from training time",
                       None if reference is None else reference.hit_rate,
                       None if current is None else current.hit_rate)
        return [drop, precision]
    if current.k != reference.k:
        raise DriftError(f"hit rates at different k cannot be compared: {current.k} (served) "
                         f"vs {reference.k} (reference)")
    judged = current.interactions >= t.min_interactions
    if not judged:
        notes.append(f"only {current.interactions} new interactions of readers with a served "
                     f"list (< {t.min_interactions}): the hit rate is not judged")
    if reference.basis != SHELF:
        judged = False
        notes.append("the snapshot has no to-read shelves, so the training-time hit rate is "
                     "the test split's, which held-out ratings make optimistic: reported, "
                     "not judged")
    value = 1.0 - current.hit_rate / reference.hit_rate if reference.hit_rate > 0 else None
    if judged and value is not None and value > t.hit_rate_drop:
        # Fire only when the drop is past the threshold with 95% confidence: a few hundred
        # interactions hold a few dozen hits, whose chance swings alone exceed 15%.
        # The upper end of the 90% interval: the one-sided 95% bound.
        upper = wilson_interval(round(current.hit_rate * current.interactions),
                                current.interactions, level=0.90)[1]
        if 1.0 - upper / reference.hit_rate <= t.hit_rate_drop:
            judged = False
            notes.append(f"hit_rate_drop {value:.3g} is past {t.hit_rate_drop:g} but not with "
                         f"95% confidence on {current.interactions} new interactions")
    fired = judged and value is not None and value > t.hit_rate_drop
    basis = "to-read shelves" if reference.basis == SHELF else "the test split"
    drop = Measure(HIT_RATE_DROP, value, t.hit_rate_drop, fired, judged,
                   f"relative fall of the served lists' hit rate at {current.k} (share of new "
                   f"interactions in the reader's list) from training time (on {basis})",
                   reference.hit_rate, current.hit_rate)
    return [drop, precision]


# --- the plot ----------------------------------------------------------------------------


def plot_drift(reference: ReferenceStats, current: CurrentStats, report: DriftReport,
               path: Path) -> Path:
    """A PNG of reference vs current: star mix, activity CDF, popularity, the measures."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(2, 2, figsize=(11, 8))
    ax = axes[0, 0]
    width = 0.4
    ref_share = reference.rating_counts / max(reference.n_ratings, 1)
    cur_share = current.rating_counts / max(current.n_ratings, 1)
    ax.bar(STARS - width / 2, ref_share, width, label="reference")
    ax.bar(STARS + width / 2, cur_share, width, label="current")
    ax.set(title=f"Rating mix (PSI {_fmt(report.measure(RATING_MIX_PSI).value)})",
           xlabel="stars", ylabel="share of ratings")
    ax.legend()

    ax = axes[0, 1]
    if current.n_ratings:
        x = np.arange(1, int(current.reader_counts.max()) + 2)
        cur_cdf = np.searchsorted(np.sort(current.reader_counts), x, side="right")
        ax.step(x, expected_activity_cdf(reference.reader_counts, current.n_ratings, x),
                where="post", label="expected from reference")
        ax.step(x, cur_cdf / len(current.reader_counts), where="post", label="current")
        ax.set_xscale("log")
        ax.legend()
    ax.set(title=f"New ratings per reader (KS {_fmt(report.measure(READER_ACTIVITY_KS).value)})",
           xlabel="new ratings", ylabel="share of active readers (CDF)")

    ax = axes[1, 0]
    if current.n_ratings:
        ref_groups, cur_groups = pooled_popularity(reference, current)
        rank = np.arange(1, len(ref_groups) + 1)
        ax.plot(rank[:-1], np.cumsum(ref_groups[:-1]) / ref_groups.sum(), label="reference")
        ax.plot(rank[:-1], np.cumsum(cur_groups[:-1]) / cur_groups.sum(), label="current")
        ax.axhline(1 - cur_groups[-1] / cur_groups.sum(), color="grey", linestyle=":",
                   label="current: share on known books")
        ax.set_xscale("log")
        ax.legend()
    ax.set(title=f"Book popularity (JS {_fmt(report.measure(BOOK_POPULARITY_JS).value)})",
           xlabel="book group, most read first", ylabel="cumulative share of ratings")

    ax = axes[1, 1]
    judged = [m for m in report.measures if m.threshold is not None and m.value is not None]
    ratios = [m.value / m.threshold if m.threshold else 0.0 for m in judged]
    colours = ["tab:red" if m.fired else "tab:green" for m in judged]
    ax.barh([m.name for m in judged], ratios, color=colours)
    ax.axvline(1.0, color="black", linestyle="--")
    ax.set(title="Measures relative to their thresholds", xlabel="value / threshold")
    fig.suptitle(f"{report.source} vs snapshot {report.reference_snapshot}: "
                 f"{'DRIFT' if report.drifted else 'no drift'}")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
