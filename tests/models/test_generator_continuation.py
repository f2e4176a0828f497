"""Continuations of a generated dataset: the same process, or one part of it drifted."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from models.generator import (
    CONTINUATION_FILE,
    DRIFT_KINDS,
    Continuation,
    generate_continuation,
    generate_goodbooks,
    load_truth,
)
from models.schema import BOOKS_COLUMNS, RATINGS_COLUMNS, DatasetError

N_USERS = 600
N_BOOKS = 800
N_NEW = 3000


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small generated dataset to continue."""
    out = tmp_path_factory.mktemp("base")
    generate_goodbooks(out, n_users=N_USERS, n_books=N_BOOKS, seed=21)
    return out


@pytest.fixture(scope="module")
def base_ratings(base: Path) -> pd.DataFrame:
    return pd.read_csv(base / "ratings.csv")


def continue_(base: Path, out: Path, kind: str, magnitude: float = 0.0, seed: int = 1,
              n: int = N_NEW) -> tuple[Continuation, pd.DataFrame]:
    result = generate_continuation(base, out, kind, magnitude, n, seed)  # type: ignore[arg-type]
    return result, pd.read_csv(out / "ratings.csv")


def pairs(frame: pd.DataFrame) -> set[tuple[int, int]]:
    return set(zip(frame.user_id.tolist(), frame.book_id.tolist(), strict=True))


def test_no_drift_goes_on_with_the_same_readers_books_and_mix(
    base: Path, base_ratings: pd.DataFrame, tmp_path: Path
) -> None:
    result, new = continue_(base, tmp_path / "none", "none")
    assert list(new.columns) == list(RATINGS_COLUMNS)
    assert len(new) == result.n_ratings == N_NEW
    assert result.n_new_readers == result.n_new_books == 0
    assert new.user_id.between(1, N_USERS).all() and new.book_id.between(1, N_BOOKS).all()
    # Nobody rates a book twice: not one already rated, not one twice in the window.
    assert not pairs(new) & pairs(base_ratings)
    assert len(pairs(new)) == len(new)
    # Readers come back in proportion to how active they were.
    before = base_ratings.groupby("user_id").size()
    after = new.groupby("user_id").size().reindex(before.index, fill_value=0)
    assert np.corrcoef(before, after)[0, 1] > 0.3
    assert after.sum() / before.sum() == pytest.approx(N_NEW / len(base_ratings))
    # Same rating model: the star mix stays close (later books are liked a little less).
    old_mix = base_ratings.rating.value_counts(normalize=True).sort_index()
    new_mix = new.rating.value_counts(normalize=True).reindex(old_mix.index, fill_value=0)
    assert np.abs(old_mix - new_mix).max() < 0.06
    # Popular books stay popular.
    base_rank = base_ratings.book_id.value_counts()
    new_rank = new.book_id.value_counts().reindex(base_rank.index, fill_value=0)
    assert np.corrcoef(base_rank, new_rank)[0, 1] > 0.8
    manifest = json.loads((tmp_path / "none" / CONTINUATION_FILE).read_text())
    assert manifest["kind"] == "none" and manifest["counts"]["ratings"] == N_NEW
    assert manifest["base"]["directory"] == base.name  # no absolute path
    assert (tmp_path / "none" / "books.csv").read_bytes() == (base / "books.csv").read_bytes()


def test_same_arguments_give_the_same_bytes(base: Path, tmp_path: Path) -> None:
    for out in ("a", "b"):
        generate_continuation(base, tmp_path / out, "new_popular_books", 0.1, 500, seed=9)
    for name in ("ratings.csv", "books.csv", "truth.npz", CONTINUATION_FILE):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    generate_continuation(base, tmp_path / "c", "new_popular_books", 0.1, 500, seed=10)
    assert (tmp_path / "a" / "ratings.csv").read_bytes() != \
        (tmp_path / "c" / "ratings.csv").read_bytes()


def test_zero_magnitude_is_no_drift(base: Path, tmp_path: Path) -> None:
    _, none = continue_(base, tmp_path / "none", "none", seed=4)
    for kind in DRIFT_KINDS[1:]:
        _, same = continue_(base, tmp_path / kind, kind, 0.0, seed=4)
        pd.testing.assert_frame_equal(none, same, obj=kind)


def test_rating_inflation_lifts_every_rating_of_the_same_pairs(
    base: Path, tmp_path: Path
) -> None:
    _, none = continue_(base, tmp_path / "none", "none", seed=5)
    _, inflated = continue_(base, tmp_path / "up", "rating_inflation", 0.5, seed=5)
    # Independent random streams: the same pairs and noise, only the latent rating moves.
    assert (inflated[["user_id", "book_id"]] == none[["user_id", "book_id"]]).all().all()
    assert (inflated.rating >= none.rating).all()
    assert inflated.rating.mean() - none.rating.mean() == pytest.approx(0.4, abs=0.15)


def test_taste_shift_moves_tastes_and_what_is_read(base: Path, tmp_path: Path) -> None:
    _, none = continue_(base, tmp_path / "none", "none", seed=6)
    result, shifted = continue_(base, tmp_path / "shift", "taste_shift", 1.0, seed=6)
    before, after = load_truth(base), load_truth(result.directory)
    assert after.taste.shape == before.taste.shape
    np.testing.assert_allclose(after.taste.sum(axis=1), 1.0, rtol=1e-5)
    assert np.abs(after.taste - before.taste).sum(axis=1).mean() > 0.5
    # The same readers, as active as before, but reading other books.
    assert (shifted.groupby("user_id").size() == none.groupby("user_id").size()).all()
    assert len(pairs(shifted) & pairs(none)) < 0.5 * len(none)
    # What they read now fits the new taste better than the old one.
    users, books = shifted.user_id.to_numpy() - 1, shifted.book_id.to_numpy() - 1
    new_fit = np.einsum("ij,ij->i", after.taste[users], after.genre_mix[books]).mean()
    old_fit = np.einsum("ij,ij->i", before.taste[users], before.genre_mix[books]).mean()
    assert new_fit > 1.5 * old_fit


def test_new_readers_make_the_given_share_of_ratings(base: Path, tmp_path: Path) -> None:
    result, new = continue_(base, tmp_path / "wave", "new_readers", 0.2, seed=7)
    newcomers = new[new.user_id > N_USERS]
    assert len(newcomers) == result.ratings_by_new_readers == round(0.2 * N_NEW)
    assert newcomers.user_id.nunique() == result.n_new_readers
    assert sorted(newcomers.user_id.unique()) == list(
        range(N_USERS + 1, N_USERS + result.n_new_readers + 1))
    # Each newcomer rates as much as a base reader would (the wave's last is cut short).
    counts = newcomers.groupby("user_id").size()
    assert (counts.iloc[:-1] >= 19).all() and (counts <= N_BOOKS // 2).all()
    truth = load_truth(result.directory)
    assert truth.n_users == N_USERS + result.n_new_readers


def test_new_popular_books_take_the_given_share(base: Path, tmp_path: Path) -> None:
    result, new = continue_(base, tmp_path / "titles", "new_popular_books", 0.1, seed=8)
    on_new = new[new.book_id > N_BOOKS]
    assert result.n_new_books == 8  # 1% of the catalogue, at least 5
    assert len(on_new) == result.ratings_on_new_books
    assert len(on_new) / len(new) == pytest.approx(0.1, abs=0.02)
    assert on_new.book_id.between(N_BOOKS + 1, N_BOOKS + 8).all()
    # Each new title reaches the readership of a popular book.
    assert on_new.book_id.value_counts().median() > new[new.book_id <= N_BOOKS].book_id \
        .value_counts().quantile(0.9)
    books = pd.read_csv(result.directory / "books.csv")
    assert list(books.columns) == list(BOOKS_COLUMNS)
    assert books.book_id.tolist() == list(range(1, N_BOOKS + 9))
    assert books.goodreads_book_id.is_unique
    assert load_truth(result.directory).n_books == N_BOOKS + 8


def test_bad_arguments_are_refused(base: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="kind must be one of"):
        generate_continuation(base, tmp_path, "sideways", 0.1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="share in"):
        generate_continuation(base, tmp_path, "new_readers", 1.5)
    with pytest.raises(ValueError, match=">= 0"):
        generate_continuation(base, tmp_path, "rating_inflation", -0.1)
    with pytest.raises(ValueError, match="n_ratings"):
        generate_continuation(base, tmp_path, "none", 0.0, n_ratings=0)
    with pytest.raises(DatasetError, match="planted truth"):
        generate_continuation(tmp_path, tmp_path / "out", "none")
