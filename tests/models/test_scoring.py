"""Batch scoring agrees with LightFM.predict, and its edge cases have defined results."""

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from models.bundle import SIMILAR_COLUMNS, ScoringBundle
from models.interactions import IdMap, temporal_split
from models.recommender import FactorModel, LightFMParams, factor_model, fit_lightfm
from models.scoring import encode_lists, score_readers, shard_bounds, similar_books


@pytest.fixture(scope="module")
def trained():
    rng = np.random.default_rng(4)
    rows = [(u, int(b), 4) for u in range(1, 201)
            for b in rng.choice(np.arange(1, 301), size=int(rng.integers(10, 40)), replace=False)]
    split = temporal_split(pd.DataFrame(rows, columns=["user_id", "book_id", "rating"]),
                           book_ids=np.arange(1, 301))
    fit = fit_lightfm(split.train, LightFMParams(no_components=12, max_epochs=3, patience=3),
                      lambda m: 0.0, num_threads=1, seed=3)
    seen = (split.train + split.valid + split.test).tocsr()
    bundle = ScoringBundle(ids=split.ids, factors=factor_model(fit.lightfm), seen=seen,
                           popular=split.ids.book_ids.copy())
    return fit, bundle


def test_identical_to_naive_per_reader_predict(trained) -> None:
    fit, bundle = trained
    n = 20
    user_ids, books = score_readers(bundle, 0, 50, n)
    for row in range(50):
        scores = fit.lightfm.predict(row, np.arange(bundle.ids.n_books), num_threads=1)
        scores[bundle.seen[row].indices] = -np.inf
        expected = bundle.ids.book_ids[np.argsort(-scores, kind="stable")[:n]]
        assert books[row].tolist() == expected.tolist(), f"reader row {row}"
    assert user_ids.tolist() == bundle.ids.user_ids[:50].tolist()


def tiny_bundle(seen: np.ndarray, item_factors: np.ndarray) -> ScoringBundle:
    n_users, n_books = seen.shape
    factors = FactorModel(
        user_factors=np.ones((n_users, item_factors.shape[1]), np.float32),
        user_bias=np.zeros(n_users, np.float32),
        item_factors=item_factors.astype(np.float32),
        item_bias=np.zeros(n_books, np.float32),
    )
    return ScoringBundle(ids=IdMap(np.arange(1, n_users + 1), np.arange(1, n_books + 1)),
                         factors=factors, seen=sp.csr_matrix(seen.astype(np.float32)),
                         popular=np.arange(1, n_books + 1))


def test_reader_who_read_everything_gets_an_empty_list() -> None:
    seen = np.array([[1, 1, 1], [0, 1, 0]])
    bundle = tiny_bundle(seen, np.array([[3.0], [2.0], [1.0]]))
    user_ids, books = score_readers(bundle, 0, 2, 2)
    assert encode_lists(user_ids, books) == [(1, ""), (2, "1,3")]


def test_n_larger_than_the_catalogue_is_clipped() -> None:
    bundle = tiny_bundle(np.zeros((1, 3)), np.array([[1.0], [3.0], [2.0]]))
    _, books = score_readers(bundle, 0, 1, 50)
    assert books.tolist() == [[2, 3, 1]]


def test_book_without_embedding_has_no_neighbours_and_is_nobodys() -> None:
    items = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 0.0], [0.0, 1.0]])
    bundle = tiny_bundle(np.zeros((1, 4)), items)
    book_ids, neighbours = similar_books(bundle, 0, 4, 3)
    lists = dict(encode_lists(book_ids, neighbours))
    assert lists[3] == ""  # the zero vector has no direction, so no neighbours
    assert lists[1].split(",")[0] == "2"  # nearest by cosine
    assert "3" not in lists[1].split(",") and "1" not in lists[1].split(",")


def test_neighbours_come_from_the_fitted_columns_alone() -> None:
    # Books 1 and 2 point the same way in the fitted factor (the first column); a taste
    # side's genre mix rides after it and would pair book 1 with book 3 instead.
    items = np.array([[1.0, 3.0], [0.9, 0.0], [-0.1, 3.0], [-1.0, 0.0]])
    bundle = tiny_bundle(np.zeros((1, 4)), items)
    assert dict(encode_lists(*similar_books(bundle, 0, 1, 1)))[1] == "3"
    bundle.meta[SIMILAR_COLUMNS] = 1
    assert dict(encode_lists(*similar_books(bundle, 0, 1, 1)))[1] == "2"


def test_shards_cover_every_reader_once() -> None:
    bounds = shard_bounds(10, 4)
    assert bounds == [(0, 4), (4, 8), (8, 10)]
    with pytest.raises(ValueError):
        shard_bounds(10, 0)


@pytest.mark.parametrize("start, stop", [(0, 64), (64, 128), (192, 200), (70, 70)])
def test_a_shard_read_from_disk_scores_like_the_whole_bundle(trained, tmp_path, start, stop
                                                             ) -> None:
    _, bundle = trained
    bundle.save(tmp_path)
    books = ScoringBundle.load_books(tmp_path)
    shard = ScoringBundle.load_readers(tmp_path, start, stop, books=books)
    whole = score_readers(bundle, start, stop, 20)
    sliced = score_readers(shard, 0, stop - start, 20)
    np.testing.assert_array_equal(sliced[0], whole[0])
    np.testing.assert_array_equal(sliced[1], whole[1])
    # The book side alone gives the same neighbours and fallback as the whole bundle.
    for got, expected in zip(similar_books(books, 0, 300, 10), similar_books(bundle, 0, 300, 10),
                             strict=True):
        np.testing.assert_array_equal(got, expected)
