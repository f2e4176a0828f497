"""How well the served lists did: at training time and on new ratings."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from models.bundle import ScoringBundle
from models.drift.names import DriftError
from models.evaluation import readers_with_items
from models.interactions import seen_matrix, temporal_split
from models.metrics import hit_matrix
from models.ranking import top_k_factors, with_bias
from models.schema import BOOK_ID, USER_ID

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
