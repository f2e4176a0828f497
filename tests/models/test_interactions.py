"""The temporal per-reader split follows row order and the fixed fractions."""

import numpy as np
import pandas as pd
import pytest

from models.interactions import everything, scored_readers, seen_matrix, temporal_split, time_split
from models.schema import TrainingError


def ratings_frame(rows: list[tuple[int, int]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["user_id", "book_id"]).assign(rating=4)


def test_last_twenty_percent_in_row_order_is_test() -> None:
    # Reader 7 reads books 1..10 in that order, interleaved with reader 3's two books.
    rows = [(7, b) for b in range(1, 11)]
    rows.insert(3, (3, 50))
    rows.insert(8, (3, 51))
    split = temporal_split(ratings_frame(rows), book_ids=np.arange(1, 60))
    r7 = split.ids.user_index(np.array([7]))[0]
    books = split.ids.book_ids
    assert sorted(books[split.test[r7].indices]) == [9, 10]
    assert sorted(books[split.valid[r7].indices]) == [8]
    assert sorted(books[split.train[r7].indices]) == list(range(1, 8))


def test_short_histories_keep_at_least_one_training_item() -> None:
    rows = [(1, 1), (1, 2), (2, 3)] + [(3, b) for b in range(1, 11)]
    split = temporal_split(ratings_frame(rows))
    train_counts = np.diff(split.train.indptr)
    assert (train_counts >= 1).all()
    # Readers with one or two interactions give nothing to validation or test.
    r1, r2 = split.ids.user_index(np.array([1, 2]))
    assert split.test[r1].nnz == 0 and split.test[r2].nnz == 0


def test_splits_are_disjoint_and_cover_everything() -> None:
    rng = np.random.default_rng(0)
    rows = [(int(u), int(b)) for u in range(1, 51)
            for b in rng.choice(np.arange(1, 201), size=int(rng.integers(5, 40)), replace=False)]
    split = temporal_split(ratings_frame(rows))
    total = split.train + split.valid + split.test
    assert total.nnz == len(rows)
    assert total.max() == 1
    assert seen_matrix(split, "test").nnz == split.train.nnz + split.valid.nnz


def test_empty_and_tiny_inputs_are_clear_errors() -> None:
    with pytest.raises(TrainingError, match="empty"):
        temporal_split(ratings_frame([]))
    with pytest.raises(TrainingError, match="test split is empty"):
        temporal_split(ratings_frame([(1, 1), (1, 2), (2, 1)]))


def test_unknown_ids_are_named() -> None:
    split = temporal_split(ratings_frame([(1, b) for b in range(1, 11)]))
    with pytest.raises(TrainingError, match="not in the model's mapping"):
        split.ids.book_index(np.array([999]))


def timed() -> pd.DataFrame:
    # Reader 1 reads before, during and after validation; reader 2 only before; reader 3
    # first appears in validation (cold: kept, not scored); reader 4 only in test.
    rows = [(1, 1, 10), (2, 2, 20), (1, 3, 30), (3, 4, 105), (1, 5, 110), (2, 6, 150),
            (1, 7, 210), (4, 8, 220), (3, 9, 230)]
    return pd.DataFrame(rows, columns=["user_id", "book_id", "timestamp"])


def test_a_time_split_cuts_every_reader_at_the_same_moment() -> None:
    split = time_split(timed(), valid_from=100, test_from=200, book_ids=np.arange(1, 11))

    def pairs(m):  # noqa: ANN001, ANN202
        c = m.tocoo()
        return sorted(zip(split.ids.user_ids[c.row].tolist(),
                          split.ids.book_ids[c.col].tolist(), strict=True))
    assert pairs(split.train) == [(1, 1), (1, 3), (2, 2)]
    assert pairs(split.valid) == [(1, 5), (2, 6), (3, 4)]
    assert pairs(split.test) == [(1, 7), (3, 9), (4, 8)]
    # Scored: readers with training history; reader 3, first seen in validation, is not
    # scored on test either (the scored model never learnt them).
    assert split.ids.user_ids[scored_readers(split, "valid")].tolist() == [1, 2]
    assert split.ids.user_ids[scored_readers(split, "test")].tolist() == [1]
    assert split.test_from == 200
    assert everything(split).nnz == 9


def test_a_time_split_without_timestamps_cuts_by_row_and_without_test_is_open_ended() -> None:
    frame = timed().drop(columns="timestamp")
    split = time_split(frame, valid_from=6)
    assert split.train.nnz == 6 and split.valid.nnz == 3 and split.test.nnz == 0


def test_a_time_split_with_nothing_to_train_or_validate_on_is_refused() -> None:
    with pytest.raises(TrainingError, match="nothing to train on"):
        time_split(timed(), valid_from=5)
    with pytest.raises(TrainingError, match="nothing to validate on"):
        time_split(timed().iloc[[0, 7]], valid_from=100)  # reader 4 has no past
    with pytest.raises(TrainingError, match="validation period is empty"):
        time_split(timed(), valid_from=200, test_from=200)
    with pytest.raises(TrainingError, match="nothing to test on"):
        # From 215 only readers 4 (new) and 3 (first seen in validation) read.
        time_split(timed(), valid_from=100, test_from=215)
