"""Batch scoring: every reader's top-N unread books, and every book's nearest neighbours."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from models.bundle import SIMILAR_COLUMNS, ScoringBundle
from models.ranking import top_k_factors, with_bias


def shard_bounds(n_readers: int, shard_size: int) -> list[tuple[int, int]]:
    """[start, stop) reader-row ranges of at most shard_size readers each."""
    if shard_size < 1:
        raise ValueError("shard_size must be at least 1")
    return [(s, min(s + shard_size, n_readers)) for s in range(0, n_readers, shard_size)]


def score_readers(
    bundle: ScoringBundle, start: int, stop: int, n: int, num_threads: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Top-n dataset book ids for reader rows [start, stop), read books excluded.

    Returns (user_ids int64 [m], book_ids int64 [m, n'] with -1 for unfillable slots).
    """
    f = bundle.factors
    query, items = with_bias(f.user_factors[start:stop], f.item_factors, f.item_bias)
    idx, _ = top_k_factors(query, items, n, bundle.seen[start:stop], num_threads=num_threads)
    books = np.where(idx >= 0, bundle.ids.book_ids[np.maximum(idx, 0)], -1)
    return bundle.ids.user_ids[start:stop], books


def similar_books(
    bundle: ScoringBundle, start: int, stop: int, n: int, num_threads: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Top-n books by cosine similarity of item factors for book rows [start, stop).

    A book is never its own neighbour; a book with a zero vector gets no neighbours (-1s).
    Only the fitted model's factors count (bundle meta ``similar_columns``, the leading
    columns): a genre taste side beside them (models/genres.py) would tie every book of one
    genre mix.
    """
    columns = int(bundle.meta.get(SIMILAR_COLUMNS, bundle.factors.item_factors.shape[1]))
    vectors = bundle.factors.item_factors[:, :columns].astype(np.float32)
    norms = np.linalg.norm(vectors, axis=1)
    unit = np.divide(vectors, norms[:, None], out=np.zeros_like(vectors),
                     where=norms[:, None] > 0)
    rows = np.arange(start, stop)
    self_filter = sp.csr_matrix(
        (np.ones(len(rows), np.float32), (np.arange(len(rows)), rows)),
        shape=(len(rows), len(vectors)),
    )
    idx, scores = top_k_factors(unit[rows], unit, n, self_filter, num_threads=num_threads)
    idx[(scores <= 0) | (norms[rows, None] == 0)] = -1
    books = np.where(idx >= 0, bundle.ids.book_ids[np.maximum(idx, 0)], -1)
    return bundle.ids.book_ids[rows], books


def encode_lists(keys: np.ndarray, lists: np.ndarray) -> list[tuple[int, str]]:
    """(id, "b1,b2,...") pairs in the store's plain comma-separated encoding, -1s dropped."""
    # Most rows are full: join them directly (map(str) is ~2x a filtering generator) and
    # filter only the rows that hold unfillable slots.
    full = (lists >= 0).all(axis=1).tolist()
    out: list[tuple[int, str]] = []
    for key, row, whole in zip(keys.tolist(), lists.tolist(), full, strict=True):
        out.append((key, ",".join(map(str, row)) if whole
                    else ",".join(str(b) for b in row if b >= 0)))
    return out
