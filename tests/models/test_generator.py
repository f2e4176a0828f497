"""The generator reproduces goodbooks-10k's shape, and its planted truth is recoverable."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from models.generator import (
    GENRES,
    MANIFEST_FILE,
    N_TAGS,
    TRUTH_FILE,
    GeneratedDataset,
    book_count_targets,
    calibration,
    constants,
    generate_goodbooks,
    load_truth,
    oracle_top_k,
    streams,
)
from models.generator import catalogue as catalogue_module
from models.schema import (
    ALL_FILES,
    BOOK_TAGS_COLUMNS,
    BOOK_TAGS_FILE,
    BOOKS_COLUMNS,
    BOOKS_FILE,
    RATINGS_COLUMNS,
    RATINGS_FILE,
    TAGS_COLUMNS,
    TAGS_FILE,
    TO_READ_COLUMNS,
    TO_READ_FILE,
    DatasetError,
)

N_USERS = 2500
# The full catalogue, so that readers spread over books as thinly as in the real data
# (each rates ~1% of the books); per-book counts then scale down with the readers.
N_BOOKS = 10_000


@dataclass(frozen=True)
class Generated:
    """One generated dataset, its tables and the progress it reported."""

    dataset: GeneratedDataset
    ratings: pd.DataFrame
    to_read: pd.DataFrame
    books: pd.DataFrame
    tags: pd.DataFrame
    book_tags: pd.DataFrame
    progress: list[tuple[str, float]]


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Generated:
    """A reduced dataset, generated once for the module."""
    calls: list[tuple[str, float]] = []
    out = tmp_path_factory.mktemp("generated")
    dataset = generate_goodbooks(
        out, n_users=N_USERS, n_books=N_BOOKS, seed=11,
        progress=lambda stage, fraction: calls.append((stage, fraction)),
    )
    return Generated(
        dataset=dataset,
        ratings=pd.read_csv(out / RATINGS_FILE),
        to_read=pd.read_csv(out / TO_READ_FILE),
        books=pd.read_csv(out / BOOKS_FILE),
        tags=pd.read_csv(out / TAGS_FILE, keep_default_na=False),
        book_tags=pd.read_csv(out / BOOK_TAGS_FILE),
        progress=calls,
    )


def _header(path: Path) -> str:
    with open(path, encoding="utf-8") as f:
        return f.readline().rstrip("\n")


def test_files_carry_the_goodbooks_headers(generated: Generated) -> None:
    directory = generated.dataset.directory
    expected = {
        RATINGS_FILE: RATINGS_COLUMNS,
        BOOKS_FILE: BOOKS_COLUMNS,
        TAGS_FILE: TAGS_COLUMNS,
        BOOK_TAGS_FILE: BOOK_TAGS_COLUMNS,
        TO_READ_FILE: TO_READ_COLUMNS,
    }
    for name, columns in expected.items():
        assert _header(directory / name) == ",".join(columns), name
    assert set(generated.dataset.files) == set(ALL_FILES)
    assert len(generated.books.columns) == 23
    assert (directory / TRUTH_FILE).is_file()


def test_ratings_per_reader_follow_the_real_distribution(generated: Generated) -> None:
    per_user = generated.ratings.groupby("user_id").size()
    assert len(per_user) == N_USERS
    assert per_user.index.min() == 1 and per_user.index.max() == N_USERS
    assert per_user.min() >= 19 and per_user.max() <= 200
    # Real: mean 111.9, sd 26.1, quartiles 96 / 111 / 128.
    assert per_user.mean() == pytest.approx(111.9, abs=2.5)
    assert per_user.std() == pytest.approx(26.1, abs=2.5)
    q1, q2, q3 = per_user.quantile([0.25, 0.5, 0.75])
    assert q1 == pytest.approx(96, abs=4)
    assert q2 == pytest.approx(111, abs=4)
    assert q3 == pytest.approx(128, abs=4)


def test_rating_mix_matches_the_real_one(generated: Generated) -> None:
    share = generated.ratings["rating"].value_counts(normalize=True).sort_index()
    assert share.index.tolist() == [1, 2, 3, 4, 5]
    for stars, real in zip(range(1, 6), (0.02, 0.06, 0.23, 0.36, 0.33), strict=True):
        assert share[stars] == pytest.approx(real, abs=0.02), stars
    assert generated.ratings["rating"].mean() == pytest.approx(3.9, abs=0.1)


def test_ratings_per_book_are_skewed_towards_low_book_ids(generated: Generated) -> None:
    per_book = generated.ratings.groupby("book_id").size().reindex(
        range(1, N_BOOKS + 1), fill_value=0
    )
    assert generated.ratings["book_id"].between(1, N_BOOKS).all()
    # book_id 1 is the most popular (as the real books.csv is sorted by popularity).
    assert per_book.iloc[0] >= 0.97 * per_book.max()
    assert per_book.iloc[0] >= 30 * per_book.median()
    # Real: median / mean = 248 / 597.6 = 0.41, and the quartiles 155 / 503 around it.
    assert 0.3 < per_book.median() / per_book.mean() < 0.55
    q1, q3 = per_book.quantile([0.25, 0.75])
    assert 2.0 < q3 / q1 < 5.0
    # The first tenth of the catalogue carries most of the ratings.
    assert per_book.iloc[: N_BOOKS // 10].sum() > 0.4 * per_book.sum()


def test_per_book_targets_scale_with_the_number_of_readers() -> None:
    full = book_count_targets(10_000, 5_976_480, 53_424)
    assert full.max() == pytest.approx(22_806, rel=0.01)
    assert np.median(full) == pytest.approx(248, rel=0.01)
    assert full.mean() == pytest.approx(597.6, rel=0.001)
    tenth = book_count_targets(10_000, 597_648, 5_342)
    np.testing.assert_allclose(tenth, full / 10, rtol=1e-9)


def test_pairs_are_unique_and_shelves_are_not_ratings(generated: Generated) -> None:
    ratings, to_read = generated.ratings, generated.to_read
    assert not ratings.duplicated(["user_id", "book_id"]).any()
    assert not to_read.duplicated(["user_id", "book_id"]).any()
    both = ratings.merge(to_read, on=["user_id", "book_id"])
    assert both.empty
    # Real: 48,871 of 53,424 readers (91.5%) shelve 18.7 books on average.
    shelving = to_read["user_id"].nunique()
    assert shelving / N_USERS == pytest.approx(0.915, abs=0.03)
    assert len(to_read) / shelving == pytest.approx(18.7, abs=2.0)
    assert to_read["book_id"].between(1, N_BOOKS).all()


def test_rows_are_in_global_time_order_with_readers_interleaved(generated: Generated) -> None:
    users = generated.ratings["user_id"].to_numpy()
    assert users[0] == 1
    # Readers are numbered by their first rating, as in the real file...
    first_seen = pd.unique(users)
    np.testing.assert_array_equal(first_seen, np.arange(1, N_USERS + 1))
    # ...and their ratings are spread over the file, not stored reader by reader.
    runs = 1 + np.count_nonzero(users[1:] != users[:-1])
    assert runs > 3 * N_USERS


def test_books_and_tags_are_consistent(generated: Generated) -> None:
    books, tags, book_tags = generated.books, generated.tags, generated.book_tags
    assert books["book_id"].tolist() == list(range(1, N_BOOKS + 1))
    assert books["goodreads_book_id"].is_unique
    assert len(tags) == N_TAGS and tags["tag_id"].is_unique and tags["tag_name"].is_unique
    assert tags["tag_name"].head(len(GENRES)).tolist() == list(GENRES)
    assert book_tags["goodreads_book_id"].isin(books["goodreads_book_id"]).all()
    assert book_tags["tag_id"].isin(tags["tag_id"]).all()
    assert not book_tags.duplicated(["goodreads_book_id", "tag_id"]).any()
    assert (book_tags["count"] > 0).all()
    per_book = book_tags.groupby("goodreads_book_id").size()
    assert len(per_book) == N_BOOKS
    assert per_book.mean() == pytest.approx(100, abs=5)
    # One author writes several books; titles and years look like the real ones.
    assert books["authors"].str.split(",").str[0].value_counts().max() >= 5
    assert books["title"].str.len().gt(0).all()
    assert books["original_publication_year"].dropna().between(1700, 2017).all()
    assert {"eng", "en-US"} <= set(books["language_code"].dropna())


def test_genre_tags_lead_each_books_tags(generated: Generated) -> None:
    truth = load_truth(generated.dataset.directory)
    book_tags = generated.book_tags.merge(
        generated.books[["book_id", "goodreads_book_id"]], on="goodreads_book_id"
    )
    # Synthetic tags list the genres first, so a genre's tag id is its index.
    main_genre = pd.DataFrame(
        {"book_id": np.arange(1, N_BOOKS + 1), "tag_id": truth.genre_mix.argmax(axis=1)}
    )
    tagged = main_genre.merge(book_tags, on=["book_id", "tag_id"])
    assert len(tagged) > 0.99 * N_BOOKS
    # Within a book, the genre tags come before the long tail (counts sorted descending).
    first = book_tags.groupby("book_id")["tag_id"].first()
    assert first.isin(range(len(GENRES) + 1)).mean() > 0.5


def test_manifest_and_truth_describe_the_files(generated: Generated) -> None:
    directory = generated.dataset.directory
    manifest = json.loads((directory / MANIFEST_FILE).read_text())
    assert manifest["seed"] == 11
    assert manifest["counts"]["ratings"] == len(generated.ratings)
    assert manifest["counts"]["to_read"] == len(generated.to_read)
    assert manifest["counts"]["book_tags"] == len(generated.book_tags)
    assert generated.dataset.n_ratings == len(generated.ratings)
    truth = load_truth(directory)
    assert truth.n_users == N_USERS and truth.n_books == N_BOOKS
    assert truth.genres == GENRES
    np.testing.assert_allclose(truth.taste.sum(axis=1), 1.0, rtol=1e-4)
    users = np.array([1, 7, N_USERS])
    books = np.array([1, 5000, N_BOOKS])
    full = truth.scores(users)
    assert full.shape == (3, N_BOOKS) and full.dtype == np.float32
    np.testing.assert_allclose(truth.scores(users, books), full[:, books - 1], rtol=1e-6)
    with pytest.raises(ValueError, match="user_id"):
        truth.scores(np.array([0]))


def test_readers_rate_what_they_are_drawn_to(generated: Generated) -> None:
    truth = load_truth(generated.dataset.directory)
    ratings = generated.ratings
    users = ratings["user_id"].to_numpy()
    books = ratings["book_id"].to_numpy()
    affinity = np.einsum("ij,ij->i", truth.taste[users - 1], truth.genre_mix[books - 1])
    by_stars = pd.Series(affinity).groupby(ratings["rating"].to_numpy()).mean()
    # Higher affinity, higher rating.
    assert by_stars.is_monotonic_increasing


def _split_by_time(ratings: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per reader, in row order: the last 20% of ratings are held out."""
    position = ratings.groupby("user_id").cumcount()
    size = ratings.groupby("user_id")["user_id"].transform("size")
    held_out = position >= np.ceil(0.8 * size)
    return ratings[~held_out], ratings[held_out]


def _precision_at(top: np.ndarray, held_out: sp.csr_matrix) -> float:
    """Mean share of each reader's top-k book ids (1-based) found in their held-out row."""
    rows = np.repeat(np.arange(top.shape[0]), top.shape[1])
    hits = np.asarray(held_out[rows, top.ravel() - 1]).reshape(top.shape)
    return float(hits.sum(axis=1).mean() / top.shape[1])


def test_oracle_beats_popularity_on_held_out_ratings(generated: Generated) -> None:
    train, test = _split_by_time(generated.ratings)
    shape = (N_USERS, N_BOOKS)

    def matrix(frame: pd.DataFrame) -> sp.csr_matrix:
        return sp.csr_matrix(
            (np.ones(len(frame)), (frame["user_id"] - 1, frame["book_id"] - 1)), shape=shape
        )

    seen, held_out = matrix(train), matrix(test)
    users = np.arange(1, N_USERS + 1)
    oracle = oracle_top_k(load_truth(generated.dataset.directory), users, seen, k=10)
    assert oracle.shape == (N_USERS, 10)
    assert not np.asarray(seen[np.repeat(users - 1, 10), oracle.ravel() - 1]).any()

    # Popularity: the most-rated training books each reader has not rated yet. A reader
    # has at most 200 ratings, so the 210 most popular books always hold ten candidates.
    counts = np.asarray(seen.sum(axis=0)).ravel()
    candidates = np.argsort(-counts, kind="stable")[:210]
    already = seen[:, candidates].toarray() > 0
    first_unseen = np.argsort(already, axis=1, kind="stable")[:, :10]
    popular = candidates[first_unseen] + 1

    oracle_precision = _precision_at(oracle, held_out)
    popular_precision = _precision_at(popular, held_out)
    assert popular_precision > 0.02  # the baseline is not a straw man
    assert oracle_precision >= 1.5 * popular_precision


def test_oracle_top_k_checks_its_exclusions(generated: Generated) -> None:
    truth = load_truth(generated.dataset.directory)
    users = np.array([3, 4])
    best = oracle_top_k(truth, users, None, k=5)
    np.testing.assert_array_equal(best[:, 0], truth.scores(users).argmax(axis=1) + 1)
    exclude = sp.csr_matrix(
        (np.ones(2), ([0, 1], best[:, 0] - 1)), shape=(2, N_BOOKS)
    )
    after = oracle_top_k(truth, users, exclude, k=5)
    np.testing.assert_array_equal(after[:, :4], best[:, 1:])
    with pytest.raises(ValueError, match="one row per reader"):
        oracle_top_k(truth, users, sp.csr_matrix((3, N_BOOKS)), k=5)


def test_reranking_the_shortlist_equals_drawing_again() -> None:
    # The final pass re-ranks the calibration round's shortlist instead of drawing anew;
    # the reference here draws anew with the same noise and the moved popularity.
    root = np.random.SeedSequence(4)
    catalogue = catalogue_module._build_catalogue(3000, streams._rng(root, 1), None)
    readers = catalogue_module._draw_readers(1500, 3000, streams._rng(root, 2))
    popularity = np.log(book_count_targets(3000, int(readers.n_rated.sum()), 1500))
    popularity = popularity.astype(np.float32)
    _, shortlist = calibration._count_rated(catalogue, readers, popularity, root)
    step = np.random.default_rng(0).uniform(-0.3, 0.3, 3000).astype(np.float32)
    moved = popularity + step
    need = readers.n_rated + readers.n_to_read
    for i, (start, stop) in enumerate(streams._chunks(1500)):
        reranked = calibration._rerank(shortlist, i, moved, need[start:stop])
        assert reranked is not None
        keys = streams._keys(
            readers.taste[start:stop], catalogue, moved + catalogue.quality,
            streams._rng(root, constants._STREAM_DRAWS, i),
        )
        drawn = streams._top_sorted(keys, reranked.shape[1])
        for row, n in enumerate(need[start:stop]):
            assert set(reranked[row, :n]) == set(drawn[row, :n])


def test_progress_reports_each_stage_up_to_completion(generated: Generated) -> None:
    stages = [stage for stage, _ in generated.progress]
    assert {"calibration", "readers", "writing"} <= set(stages)
    assert all(0.0 <= fraction <= 1.0 for _, fraction in generated.progress)
    assert generated.progress[-1] == ("writing", 1.0)


def _file_bytes(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


def test_same_seed_gives_the_same_bytes(tmp_path: Path) -> None:
    first = generate_goodbooks(tmp_path / "a", n_users=300, n_books=400, seed=5)
    again = generate_goodbooks(tmp_path / "b", n_users=300, n_books=400, seed=5)
    other = generate_goodbooks(tmp_path / "c", n_users=300, n_books=400, seed=6)
    same = _file_bytes(first.directory)
    assert set(same) == set(ALL_FILES) | {TRUTH_FILE, MANIFEST_FILE}
    assert same == _file_bytes(again.directory)
    different = _file_bytes(other.directory)
    for name in (RATINGS_FILE, TO_READ_FILE, BOOKS_FILE, BOOK_TAGS_FILE, TRUTH_FILE):
        assert same[name] != different[name], name


def test_a_small_catalogue_keeps_ids_in_range(tmp_path: Path) -> None:
    dataset = generate_goodbooks(tmp_path, n_users=200, n_books=60, seed=1)
    ratings = pd.read_csv(dataset.files[RATINGS_FILE])
    assert ratings["book_id"].between(1, 60).all()
    assert ratings.groupby("user_id").size().max() <= 30  # half the catalogue at most
    assert not ratings.duplicated(["user_id", "book_id"]).any()


def test_bad_sizes_and_missing_truth_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="n_users"):
        generate_goodbooks(tmp_path, n_users=0)
    with pytest.raises(ValueError, match="n_books"):
        generate_goodbooks(tmp_path, n_users=10, n_books=5)
    with pytest.raises(DatasetError, match="truth.npz"):
        load_truth(tmp_path)


@pytest.mark.real_data
def test_real_books_and_tags_are_used_when_given(tmp_path: Path, shared_goodbooks) -> None:  # noqa: ANN001
    shared = shared_goodbooks(BOOKS_FILE, TAGS_FILE)
    books_csv, tags_csv = shared / BOOKS_FILE, shared / TAGS_FILE
    n_books = 500
    dataset = generate_goodbooks(
        tmp_path, n_users=400, n_books=n_books, seed=3, books_csv=books_csv, tags_csv=tags_csv
    )
    real_books = pd.read_csv(books_csv, dtype=str, keep_default_na=False).head(n_books)
    books = pd.read_csv(dataset.files[BOOKS_FILE], dtype=str, keep_default_na=False)
    pd.testing.assert_frame_equal(books, real_books)
    real_tags = pd.read_csv(tags_csv, keep_default_na=False)
    tags = pd.read_csv(dataset.files[TAGS_FILE], keep_default_na=False)
    pd.testing.assert_frame_equal(tags, real_tags)
    book_tags = pd.read_csv(dataset.files[BOOK_TAGS_FILE])
    assert book_tags["goodreads_book_id"].isin(real_books["goodreads_book_id"].astype(int)).all()
    assert book_tags["tag_id"].isin(real_tags["tag_id"]).all()
    # Genres map onto the real tags of the same name ('fantasy' is tag 11305 there).
    fantasy = int(real_tags.loc[real_tags["tag_name"] == "fantasy", "tag_id"].iloc[0])
    assert (book_tags["tag_id"] == fantasy).sum() > 10
    # Popularity follows the real book_id order.
    ratings = pd.read_csv(dataset.files[RATINGS_FILE])
    per_book = ratings["book_id"].value_counts().reindex(range(1, n_books + 1), fill_value=0)
    assert per_book.iloc[:50].mean() > 3 * per_book.iloc[-50:].mean()
    manifest = json.loads((tmp_path / MANIFEST_FILE).read_text())
    assert manifest["parameters"]["books_source"] == "books.csv"
    assert manifest["parameters"]["tags_source"] == "tags.csv"


@pytest.mark.real_data
def test_a_real_books_file_too_short_is_refused(tmp_path: Path, shared_goodbooks) -> None:  # noqa: ANN001
    books_csv = shared_goodbooks(BOOKS_FILE) / BOOKS_FILE
    with pytest.raises(DatasetError, match="10000 books"):
        generate_goodbooks(tmp_path, n_users=10, n_books=10_001, books_csv=books_csv)
