"""Top-k selection over the whole catalogue, excluding what each reader has already read.

Factor models rank with implicit's multithreaded top-k (a GEMM per block plus a heap
selection that skips filtered items), so no full row is ever sorted. Item biases ride along
as one extra factor: score(u, i) = [p_u, 1] · [q_i, b_i].
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import scipy.sparse as sp
from implicit.cpu.topk import topk

from models.schema import TrainingError


def with_bias(user_factors: np.ndarray, item_factors: np.ndarray, item_bias: np.ndarray
              ) -> tuple[np.ndarray, np.ndarray]:
    """Append the item bias as a factor (and a constant 1 on the reader side)."""
    query = np.hstack([user_factors, np.ones((len(user_factors), 1), dtype=np.float32)])
    items = np.hstack([item_factors, item_bias.reshape(-1, 1)])
    return np.ascontiguousarray(query, np.float32), np.ascontiguousarray(items, np.float32)


def top_k_factors(
    query: np.ndarray,
    items: np.ndarray,
    k: int,
    exclude: sp.csr_matrix | None = None,
    num_threads: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Best k item indices (and scores) per query row, excluded items never returned.

    Returns int32 ids [n, k'] and float32 scores [n, k'] with k' = min(k, n_items); a slot
    that cannot be filled (the reader has read nearly everything) holds id -1.
    """
    if k < 1:
        raise TrainingError(f"k must be at least 1, not {k}")
    n_items = items.shape[0]
    k_eff = min(k, n_items)
    if exclude is not None and exclude.shape != (query.shape[0], n_items):
        raise TrainingError(
            f"exclusion matrix shape {exclude.shape} does not match "
            f"{query.shape[0]} readers × {n_items} books"
        )
    filt = None
    if exclude is not None:
        filt = exclude.tocsr().astype(np.float32, copy=False)
    ids, scores = topk(
        np.ascontiguousarray(items, np.float32),
        np.ascontiguousarray(query, np.float32),
        k_eff,
        filter_query_items=filt,
        num_threads=num_threads,
    )
    ids = np.asarray(ids)
    scores = np.asarray(scores)
    # implicit marks unfillable slots with the lowest float32 (and arbitrary ids).
    ids[scores <= np.finfo(np.float32).min] = -1
    return ids, scores


def top_k_scores(
    score_rows: Callable[[np.ndarray], np.ndarray],
    rows: np.ndarray,
    k: int,
    exclude: sp.csr_matrix | None = None,
    chunk: int = 2048,
) -> np.ndarray:
    """Top-k for scores that are not a factor product (e.g. the planted oracle).

    ``score_rows(row_indices)`` returns dense float scores [len(rows), n_items].
    """
    out: list[np.ndarray] = []
    for start in range(0, len(rows), chunk):
        block = rows[start : start + chunk]
        scores = np.array(score_rows(block), dtype=np.float64, copy=True)
        if exclude is not None:
            sub = exclude[start : start + len(block)].tocoo()
            scores[sub.row, sub.col] = -np.inf
        k_eff = min(k, scores.shape[1])
        part = np.argpartition(-scores, k_eff - 1, axis=1)[:, :k_eff]
        part_scores = np.take_along_axis(scores, part, axis=1)
        order = np.argsort(-part_scores, axis=1, kind="stable")
        best = np.take_along_axis(part, order, axis=1)
        best[~np.isfinite(np.take_along_axis(part_scores, order, axis=1))] = -1
        out.append(best)
    return np.vstack(out) if out else np.empty((0, k), dtype=np.int64)


def popularity_top_k(
    counts: np.ndarray, n_readers: int, k: int, exclude: sp.csr_matrix | None = None
) -> np.ndarray:
    """The most popular unread books for every reader."""
    query = np.ones((n_readers, 1), dtype=np.float32)
    # Score by popularity rank (ties broken by book index) so float32 cannot reorder them.
    order = np.lexsort((np.arange(len(counts)), -np.asarray(counts)))
    rank_score = np.empty(len(counts), dtype=np.float32)
    rank_score[order] = np.arange(len(counts), 0, -1, dtype=np.float32)
    items = rank_score.reshape(-1, 1)
    ids, _ = top_k_factors(query, items, k, exclude)
    return ids
