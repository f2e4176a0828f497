"""Ranking metrics against hand-computed values and a slow, obviously correct reference."""

import math

import numpy as np
import pytest
import scipy.sparse as sp

from models.metrics import hit_matrix, ranking_metrics
from models.schema import TrainingError


def relevant(rows: list[list[int]], n_books: int) -> sp.csr_matrix:
    data, r, c = [], [], []
    for i, items in enumerate(rows):
        for j in items:
            r.append(i)
            c.append(j)
            data.append(1.0)
    return sp.csr_matrix((data, (r, c)), shape=(len(rows), n_books), dtype=np.float32)


def test_hand_computed_single_reader() -> None:
    # Ranked [3, 1, 4, 5], relevant {1, 5, 9}: hits at ranks 2 and 4.
    m = ranking_metrics(np.array([[3, 1, 4, 5]]), relevant([[1, 5, 9]], 10), n_books=10)
    assert m.precision == pytest.approx(2 / 4)
    assert m.recall == pytest.approx(2 / 3)
    dcg = 1 / math.log2(3) + 1 / math.log2(5)
    idcg = 1 + 1 / math.log2(3) + 1 / math.log2(4)
    assert m.ndcg == pytest.approx(dcg / idcg)
    assert m.map == pytest.approx((1 / 2 + 2 / 4) / 3)
    assert m.mrr == pytest.approx(1 / 2)
    assert m.coverage == pytest.approx(4 / 10)


def test_readers_without_relevant_items_are_left_out() -> None:
    top = np.array([[0, 1], [2, 3], [0, 2]])
    rel = relevant([[0], [], [9]], 10)
    m = ranking_metrics(top, rel, n_books=10)
    assert m.readers == 2
    assert m.precision == pytest.approx((1 / 2 + 0) / 2)
    assert m.mrr == pytest.approx((1 + 0) / 2)


def test_padding_slots_never_hit() -> None:
    m = ranking_metrics(np.array([[-1, -1, 4]]), relevant([[4]], 5), n_books=5)
    assert m.precision == pytest.approx(1 / 3)
    assert m.mrr == pytest.approx(1 / 3)
    assert m.coverage == pytest.approx(1 / 5)


def test_empty_evaluation_is_an_error() -> None:
    with pytest.raises(TrainingError, match="no reader has a relevant item"):
        ranking_metrics(np.array([[0, 1]]), relevant([[]], 3), n_books=3)


# Alternative test implementation: loops over readers and ranks, no vectorisation.
def reference(top: np.ndarray, rel: sp.csr_matrix) -> dict[str, float]:
    k = top.shape[1]
    sums = {"precision": 0.0, "recall": 0.0, "ndcg": 0.0, "map": 0.0, "mrr": 0.0}
    readers = 0
    for u in range(top.shape[0]):
        truth = set(rel[u].indices.tolist())
        if not truth:
            continue
        readers += 1
        hits = [1 if int(b) in truth else 0 for b in top[u]]
        sums["precision"] += sum(hits) / k
        sums["recall"] += sum(hits) / len(truth)
        dcg = sum(h / math.log2(i + 2) for i, h in enumerate(hits))
        idcg = sum(1 / math.log2(i + 2) for i in range(min(len(truth), k)))
        sums["ndcg"] += dcg / idcg
        precisions = [sum(hits[: i + 1]) / (i + 1) for i, h in enumerate(hits) if h]
        sums["map"] += sum(precisions) / min(len(truth), k)
        sums["mrr"] += next((1 / (i + 1) for i, h in enumerate(hits) if h), 0.0)
    return {key: value / readers for key, value in sums.items()}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_reference_on_random_rankings(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n_readers, n_books, k = 200, 60, 10
    top = np.stack([rng.permutation(n_books)[:k] for _ in range(n_readers)])
    rel = sp.random(n_readers, n_books, density=0.08, format="csr", random_state=seed)
    rel.data[:] = 1
    fast = ranking_metrics(top, rel, n_books)
    slow = reference(top, rel)
    for key, value in slow.items():
        assert getattr(fast, key) == pytest.approx(value), key


def test_hit_matrix_marks_exactly_the_relevant_positions() -> None:
    top = np.array([[2, 0, 1], [1, 2, 0]])
    hits = hit_matrix(top, relevant([[0], [1, 0]], 3))
    assert hits.tolist() == [[False, True, False], [True, False, True]]
