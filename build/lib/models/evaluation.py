"""The evaluation protocol: rank the full catalogue minus what a reader has read, score at k.

Validation rankings exclude train interactions; test rankings exclude train + validation.
Baselines (popularity, and the planted oracle on generated data) are always ranked on the
same split and cut-off as the model.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import scipy.sparse as sp

from models.interactions import Split, popularity, scored_readers, seen_matrix
from models.metrics import RankingMetrics, ranking_metrics
from models.ranking import popularity_top_k, top_k_factors, top_k_scores, with_bias
from models.recommender import FactorModel


def readers_with_items(relevant: sp.csr_matrix) -> np.ndarray:
    """Row indices of readers that have at least one relevant interaction."""
    return np.flatnonzero(np.diff(relevant.indptr) > 0)


def evaluate_factors(
    model: FactorModel,
    split: Split,
    stage: str,
    k: int,
    rows: np.ndarray | None = None,
    num_threads: int = 0,
) -> RankingMetrics:
    """Metrics of a factor model on 'valid' or 'test' (optionally on a subset of readers)."""
    relevant = split.valid if stage == "valid" else split.test
    seen = seen_matrix(split, stage)
    if rows is None:
        rows = scored_readers(split, stage)
    query, items = with_bias(model.user_factors[rows], model.item_factors, model.item_bias)
    top, _ = top_k_factors(query, items, k, seen[rows], num_threads=num_threads)
    return ranking_metrics(top, relevant[rows], split.ids.n_books)


def validation_scorer(
    split: Split, k: int, max_readers: int | None = 5000, seed: int = 0, num_threads: int = 0
) -> Callable[[FactorModel], float]:
    """NDCG@k on validation, over a fixed reader sample so each epoch costs the same."""
    rows = scored_readers(split, "valid")
    if max_readers is not None and len(rows) > max_readers:
        rows = np.sort(np.random.default_rng(seed).choice(rows, max_readers, replace=False))

    def score(model: FactorModel) -> float:
        return evaluate_factors(model, split, "valid", k, rows, num_threads).ndcg

    return score


def evaluate_popularity(split: Split, stage: str, k: int) -> RankingMetrics:
    """Most-read books (counted on what precedes the stage) that the reader has not read."""
    relevant = split.valid if stage == "valid" else split.test
    seen = seen_matrix(split, stage)
    rows = scored_readers(split, stage)
    top = popularity_top_k(popularity(seen), len(rows), k, seen[rows])
    return ranking_metrics(top, relevant[rows], split.ids.n_books)


def evaluate_oracle(
    split: Split,
    stage: str,
    k: int,
    true_scores: Callable[[np.ndarray, np.ndarray], np.ndarray],
) -> RankingMetrics:
    """The planted model's own ranking: the ceiling on generated data.

    ``true_scores(user_ids, book_ids)`` returns the planted affinity [n_users, n_books] for
    dataset ids.
    """
    relevant = split.valid if stage == "valid" else split.test
    seen = seen_matrix(split, stage)
    rows = scored_readers(split, stage)
    book_ids = split.ids.book_ids

    def score_rows(block: np.ndarray) -> np.ndarray:
        return true_scores(split.ids.user_ids[block], book_ids)

    top = top_k_scores(score_rows, rows, k, seen[rows])
    return ranking_metrics(top, relevant[rows], split.ids.n_books)
