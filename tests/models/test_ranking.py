"""Top-k selection: exclusions, padding, and agreement with a full sort."""

import numpy as np
import scipy.sparse as sp

from models.ranking import popularity_top_k, top_k_factors, top_k_scores, with_bias


def test_matches_full_sort_and_never_returns_excluded_items() -> None:
    rng = np.random.default_rng(3)
    users, items = rng.standard_normal((50, 8)), rng.standard_normal((300, 8))
    bias = rng.standard_normal(300).astype(np.float32)
    seen = sp.random(50, 300, density=0.1, format="csr", random_state=1, dtype=np.float32)
    query, table = with_bias(users.astype(np.float32), items.astype(np.float32), bias)
    ids, _ = top_k_factors(query, table, 10, seen)
    scores = users @ items.T + bias
    scores[seen.nonzero()] = -np.inf
    expected = np.argsort(-scores, axis=1, kind="stable")[:, :10]
    assert (ids == expected).all()


def test_reader_who_read_almost_everything_gets_padding() -> None:
    seen = sp.csr_matrix(np.array([[1, 1, 1, 0, 1]], dtype=np.float32))
    ids, _ = top_k_factors(np.ones((1, 1), np.float32), np.arange(5, dtype=np.float32)[:, None],
                           3, seen)
    assert ids.tolist() == [[3, -1, -1]]


def test_k_larger_than_catalogue_is_clipped() -> None:
    ids, _ = top_k_factors(np.ones((2, 1), np.float32),
                           np.array([[1.0], [3.0], [2.0]], np.float32), 10)
    assert ids.tolist() == [[1, 2, 0], [1, 2, 0]]


def test_dense_scores_path_agrees_with_factor_path() -> None:
    rng = np.random.default_rng(5)
    users, items = rng.standard_normal((30, 4)), rng.standard_normal((100, 4))
    seen = sp.random(30, 100, density=0.2, format="csr", random_state=2, dtype=np.float32)
    dense = top_k_scores(lambda rows: users[rows] @ items.T, np.arange(30), 7, seen, chunk=8)
    fast, _ = top_k_factors(users.astype(np.float32), items.astype(np.float32), 7, seen)
    assert (dense == fast).all()


def test_popularity_ties_break_by_index_and_skip_seen() -> None:
    counts = np.array([5.0, 9.0, 5.0, 1.0])
    seen = sp.csr_matrix(np.array([[0, 1, 0, 0], [0, 0, 0, 0]], dtype=np.float32))
    assert popularity_top_k(counts, 2, 3, seen).tolist() == [[0, 2, 3], [1, 0, 2]]
