"""Vectorised ranking metrics at k over the full catalogue.

Every function takes the top-k book indices per reader (``top_k``: int array [n_readers, k],
best first, -1 for "no item") and the relevant interactions (``relevant``: CSR
[n_readers, n_books]). Readers with no relevant item are left out of the averages, as is
usual; catalogue coverage counts every reader's list.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from models.schema import TrainingError


@dataclass(frozen=True)
class RankingMetrics:
    """Averages over readers with at least one relevant item."""

    k: int
    precision: float
    recall: float
    ndcg: float
    map: float
    mrr: float
    coverage: float
    readers: int

    def as_dict(self, prefix: str = "") -> dict[str, float]:
        k = self.k
        return {
            f"{prefix}precision_at_{k}": self.precision,
            f"{prefix}recall_at_{k}": self.recall,
            f"{prefix}ndcg_at_{k}": self.ndcg,
            f"{prefix}map_at_{k}": self.map,
            f"{prefix}mrr_at_{k}": self.mrr,
            f"{prefix}coverage_at_{k}": self.coverage,
        }


def hit_matrix(top_k: np.ndarray, relevant: sp.csr_matrix) -> np.ndarray:
    """Boolean [n_readers, k]: whether the book at each rank is relevant to the reader."""
    n_readers, k = top_k.shape
    if relevant.shape[0] != n_readers:
        raise TrainingError(
            f"top_k has {n_readers} readers but the relevant matrix has {relevant.shape[0]}"
        )
    rows = np.repeat(np.arange(n_readers), k)
    cols = top_k.ravel()
    valid = cols >= 0
    hits = np.zeros(n_readers * k, dtype=bool)
    if valid.any():
        csr = relevant.tocsr()
        csr.sort_indices()
        hits[valid] = _csr_contains(csr, rows[valid], cols[valid])
    return hits.reshape(n_readers, k)


def _csr_contains(csr: sp.csr_matrix, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Whether csr[rows[i], cols[i]] is stored, by binary search in each row's indices."""
    # Encode (row, col) as one sorted key space: row * n_cols + col.
    n_cols = csr.shape[1]
    row_of_entry = np.repeat(np.arange(csr.shape[0], dtype=np.int64), np.diff(csr.indptr))
    keys = row_of_entry * n_cols + csr.indices.astype(np.int64)
    queries = rows.astype(np.int64) * n_cols + cols.astype(np.int64)
    pos = np.searchsorted(keys, queries)
    pos = np.minimum(pos, max(len(keys) - 1, 0))
    if len(keys) == 0:
        return np.zeros(len(queries), dtype=bool)
    return keys[pos] == queries


def ranking_metrics(top_k: np.ndarray, relevant: sp.csr_matrix, n_books: int) -> RankingMetrics:
    """Precision, recall, NDCG, MAP, MRR at k and catalogue coverage of the lists."""
    top_k = np.asarray(top_k)
    if top_k.ndim != 2 or top_k.shape[1] == 0:
        raise TrainingError("top_k must be a 2-D array with at least one column")
    k = top_k.shape[1]
    n_relevant = np.diff(relevant.tocsr().indptr)
    active = n_relevant > 0
    if not active.any():
        raise TrainingError("no reader has a relevant item: the evaluation split is empty")
    hits = hit_matrix(top_k, relevant)[active].astype(np.float64)
    n_rel = n_relevant[active].astype(np.float64)

    ranks = np.arange(1, k + 1, dtype=np.float64)
    discounts = 1.0 / np.log2(ranks + 1.0)
    dcg = hits @ discounts
    ideal_discounts = np.cumsum(discounts)
    idcg = ideal_discounts[np.minimum(n_rel, k).astype(int) - 1]

    cum_hits = np.cumsum(hits, axis=1)
    ap = (hits * cum_hits / ranks).sum(axis=1) / np.minimum(n_rel, k)
    first_hit = np.where(hits.any(axis=1), hits.argmax(axis=1) + 1, np.inf)

    listed = top_k[top_k >= 0]
    return RankingMetrics(
        k=k,
        precision=float((hits.sum(axis=1) / k).mean()),
        recall=float((hits.sum(axis=1) / n_rel).mean()),
        ndcg=float((dcg / idcg).mean()),
        map=float(ap.mean()),
        mrr=float((1.0 / first_hit).mean()),
        coverage=float(len(np.unique(listed)) / n_books) if n_books else 0.0,
        readers=int(active.sum()),
    )


def row_spread(scores: np.ndarray) -> float:
    """Root mean variance of scores within each row (a reader's scores over the books): what
    reorders a reader's list, the unit of the served terms' weights. 1 when there are no
    rows or every row is flat."""
    spread = float(np.sqrt(np.mean(np.var(scores, axis=1)))) if len(scores) else 0.0
    return spread if spread > 0 else 1.0
