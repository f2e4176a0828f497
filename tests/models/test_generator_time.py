"""Generated data that moves: releases that rise and fade, tastes that drift, time in the truth."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from models.generator import PlantedTruth, generate_goodbooks, load_truth, oracle_top_k
from models.generator.timeline import (
    DAY,
    LOG_END,
    LOG_START,
    Timeline,
    book_releases,
    reader_windows,
)
from models.rankers import KnownReaders, LearntReaders, Oracle, Popularity
from models.replay import Log, periods, replay
from models.replay import reader_scores as ndcg_of
from models.schema import RATINGS_FILE

N_USERS, N_BOOKS = 3000, 500


@pytest.fixture(scope="module")
def moving(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("moving")
    generate_goodbooks(out, n_users=N_USERS, n_books=N_BOOKS, seed=5, moving=True)
    return out


@pytest.fixture(scope="module")
def ratings(moving: Path) -> pd.DataFrame:
    return pd.read_csv(moving / RATINGS_FILE)


def small_timeline(n_books: int = 40) -> Timeline:
    rng = np.random.default_rng(0)
    start, end = reader_windows(10, rng)
    release, tau = book_releases(n_books, rng)
    return Timeline(start=start, end=end, taste_start=np.zeros((10, 3), np.float32),
                    taste_end=np.zeros((10, 3), np.float32),
                    release=release, tau=tau)


def test_every_book_s_readers_sum_to_one_over_the_log() -> None:
    timeline = small_timeline()
    books = np.arange(40)
    np.testing.assert_allclose(timeline.mass(books, LOG_START, LOG_END), 1.0, rtol=1e-9)
    # The density integrates to the mass (a fine Riemann sum), and is nil before release.
    grid = np.linspace(LOG_START, LOG_END, 200_001)
    step = grid[1] - grid[0]
    for b in books[:8]:
        dens = timeline.density(np.full(len(grid), b), grid)
        assert abs((dens[:-1] * step).sum() - 1.0) < 2e-3
        if timeline.release[b] >= LOG_START:
            assert (dens[grid < timeline.release[b]] == 0).all()


def test_the_generated_log_has_real_timestamps_in_order(ratings: pd.DataFrame) -> None:
    assert list(ratings.columns) == ["user_id", "book_id", "rating", "timestamp"]
    stamps = ratings["timestamp"].to_numpy()
    assert (np.diff(stamps) >= 0).all()
    assert LOG_START <= stamps.min() and stamps.max() < LOG_END
    # User ids follow first appearance, as in the real file.
    first = ratings.drop_duplicates("user_id")["user_id"].to_numpy()
    assert (np.diff(first) > 0).mean() > 0.99


def test_no_book_is_read_before_it_comes_out_and_new_books_rise_and_fade(
        moving: Path, ratings: pd.DataFrame) -> None:
    truth = load_truth(moving)
    release = truth.timeline.release[ratings["book_id"].to_numpy() - 1]
    assert (ratings["timestamp"].to_numpy() >= release).all()
    # New books: their readers crowd into the months after release, then it fades — the
    # first year after release holds over three times the third year's readers.
    new = np.flatnonzero((truth.timeline.release >= LOG_START)
                         & (truth.timeline.release < LOG_END - 3 * 365 * DAY)) + 1
    assert len(new) > 20
    of_new = ratings[ratings["book_id"].isin(new)]
    age = of_new["timestamp"].to_numpy() - truth.timeline.release[of_new["book_id"] - 1]
    first_year = (age < 365 * DAY).mean()
    assert first_year > 0.35
    later = ((age >= 2 * 365 * DAY) & (age < 3 * 365 * DAY)).mean()
    assert later < first_year / 3


def test_readers_move_towards_their_planted_new_taste(moving: Path,
                                                        ratings: pd.DataFrame) -> None:
    truth = load_truth(moving)
    users = ratings["user_id"].to_numpy() - 1
    books = ratings["book_id"].to_numpy() - 1
    towards = np.einsum("ij,ij->i", truth.timeline.taste_end[users]
                        - truth.timeline.taste_start[users],
                        truth.genre_mix[books])
    frame = pd.DataFrame({"u": users, "towards": towards, "t": ratings["timestamp"]})
    # Within long-active readers: later books lean further towards the new taste.
    span = truth.timeline.end - truth.timeline.start
    long = np.flatnonzero(span > 3 * 365 * DAY)
    frame = frame[np.isin(frame["u"], long)]
    frame["late"] = frame.groupby("u")["t"].rank(pct=True) > 0.5
    by = frame.groupby(["u", "late"])["towards"].mean().unstack()
    assert len(by) > 100
    assert (by[True] - by[False]).mean() > 0.02


def test_the_aggregates_hold_as_in_the_static_data(moving: Path,
                                                     ratings: pd.DataFrame) -> None:
    counts = ratings.groupby("book_id").size().sort_index().to_numpy()
    # book_id order is popularity order: the top tenth far above the bottom tenth
    assert counts[: N_BOOKS // 10].mean() > 5 * counts[-N_BOOKS // 10:].mean()
    mix = ratings["rating"].value_counts(normalize=True).sort_index().to_numpy()
    np.testing.assert_allclose(mix, (0.0208, 0.0601, 0.2294, 0.3579, 0.3318), atol=0.01)


def test_the_oracle_knows_the_time(moving: Path) -> None:
    truth = load_truth(moving)
    users = np.arange(1, 201)
    early, late = LOG_START + 200 * DAY, LOG_END - 10 * DAY
    top_early = oracle_top_k(truth, users, None, 10, at=early)
    top_late = oracle_top_k(truth, users, None, 10, at=late)
    # Nothing unreleased is recommended, and the lists change with time.
    assert (truth.timeline.release[top_early - 1] <= early).all()
    assert (top_early != top_late).any(axis=1).mean() > 0.5
    # Without a moment, the static ranking (what the reader's whole window averages).
    assert oracle_top_k(truth, users, None, 10).shape == (200, 10)


def test_the_truth_splits_into_a_reader_side_and_a_book_side(moving: Path) -> None:
    truth = load_truth(moving)
    assert truth.favourite_books.nnz > 0  # the reader side holds favourite authors too
    users = np.arange(1, 101)
    at = LOG_END - 400 * DAY
    whole = truth.scores(users, at=at).astype(np.float64)
    readers = truth.reader_scores(users, at=at).astype(np.float64)
    # What is left is each book's popularity, quality and rate at that moment: the same
    # for every reader, computed here by hand.
    books = np.arange(N_BOOKS)
    book_side = (truth.popularity.astype(np.float64) + truth.quality
                 + truth.timeline.log_density(books, at))
    np.testing.assert_allclose(whole - readers, np.broadcast_to(book_side, whole.shape),
                               atol=1e-4)
    # Without a moment, the static split: the book side is popularity and quality alone.
    static = truth.scores(users).astype(np.float64) - truth.reader_scores(users)
    np.testing.assert_allclose(static, np.broadcast_to(
        truth.popularity.astype(np.float64) + truth.quality, static.shape), atol=1e-4)


def test_the_oracle_s_readers_rank_by_their_side_plus_each_book_s_recent_reads(
        moving: Path, ratings: pd.DataFrame) -> None:
    truth = load_truth(moving)
    log = Log.from_frame(ratings, np.arange(1, N_BOOKS + 1))
    window = 91 * DAY
    last = periods(log, 13 * 7 * DAY, 2)[-1]
    history, readers = last.history, last.readers
    ranker = KnownReaders(truth, [window])
    ranker.fit(history)
    top = ranker.top_k(history, readers, 10)
    # By hand: log(reads in the window before the cut-off + 0.1) beside the reader's side.
    recent = (history.times >= history.cutoff - window) & (history.times < history.cutoff)
    counts = np.bincount(history.cols[recent], minlength=N_BOOKS)
    users = history.ids.user_ids[readers]
    scores = (truth.reader_scores(users, at=history.cutoff).astype(np.float64)
              + np.log(counts + 0.1))
    scores[history.seen[readers].nonzero()] = -np.inf
    expected = np.argsort(-scores, axis=1, kind="stable")[:, :10]
    assert (top == expected).mean() > 0.99  # float32 ties aside
    # Knowing readers beats any popularity list; knowing books' rates too beats it again.
    windows = [7 * DAY, window]
    rankers = [Popularity(window, "popularity"), KnownReaders(truth, windows), Oracle(truth)]
    result = replay(log, rankers, 13 * 7 * DAY, 2)
    summary = result.summary()
    assert (summary["popularity"]["ndcg"] < summary["oracle's readers"]["ndcg"]
            < summary["oracle"]["ndcg"])
    # Each window is chosen by its NDCG pooled over the periods already past (the
    # validation period first), computed here window by window.
    pooled = np.zeros(len(windows))
    expected_choices = []
    for each in periods(log, 13 * 7 * DAY, 2):
        for i, w in enumerate(windows):
            alone = KnownReaders(truth, [w])
            alone.fit(each.history)
            pooled[i] += ndcg_of(alone.top_k(each.history, each.readers, 10),
                                 each.relevant)[0].sum()
        expected_choices.append(f"window {windows[int(np.argmax(pooled))]}")
    assert result.rankers["oracle's readers"].notes == expected_choices


def pure_genre_truth(n_genres: int, books_per_genre: int, beta: float = 12.0,
                     timeline: Timeline | None = None) -> PlantedTruth:
    """Books of one genre each, books_per_genre of every genre, all alike otherwise."""
    n_books = n_genres * books_per_genre
    mix = np.repeat(np.eye(n_genres, dtype=np.float32), books_per_genre, axis=0)
    zeros = np.zeros(n_books, np.float32)
    return PlantedTruth(genres=tuple(f"g{i}" for i in range(n_genres)),
                        taste=np.full((1, n_genres), 1 / n_genres, np.float32), genre_mix=mix,
                        popularity=zeros, quality=zeros, author=np.arange(n_books, dtype=np.int32),
                        beta=beta, timeline=timeline)


def test_a_reader_s_taste_is_learnt_as_the_one_that_makes_their_reads_most_likely() -> None:
    # Two genres of ten books alike but for their genre: a draw picks genre 0 with chance
    # e^(beta t0) / (e^(beta t0) + e^(beta t1)). Three reads in genre 0 and one in genre 1
    # are likeliest when that chance is 3/4: beta (t0 - t1) = ln 3, t0 + t1 = 1.
    truth = pure_genre_truth(2, 10)
    reads = sp.csr_matrix(np.array([[1, 1, 1] + [0] * 7 + [1] + [0] * 9,
                                    [0] * 20]))  # and a reader with no reads
    taste = truth.learnt_taste(reads)
    expected = (1 + np.log(3) / 12.0) / 2
    np.testing.assert_allclose(taste[0], [expected, 1 - expected], atol=1e-4)
    np.testing.assert_allclose(taste[1], [0.5, 0.5])  # nothing read: nothing learnt
    # With beta 6 instead of 12 the same odds need twice the difference in taste.
    np.testing.assert_allclose(truth.learnt_taste(reads, beta=6.0)[0, 0],
                               (1 + np.log(3) / 6.0) / 2, atol=1e-4)
    # A read given twice (duplicate entries) is still one read.
    twice = sp.csr_matrix((np.ones(5), [0, 1, 2, 10, 10], [0, 5]), shape=(1, 20))
    assert twice.nnz == 5
    np.testing.assert_allclose(truth.learnt_taste(twice)[0], taste[0], atol=1e-6)
    # Half the reads in each of two genres out of three: the third gets no taste at all.
    truth = pure_genre_truth(3, 10)
    reads = sp.csr_matrix(np.r_[np.ones(4), np.zeros(6), np.ones(4), np.zeros(16)][None, :])
    np.testing.assert_allclose(truth.learnt_taste(reads)[0], [0.5, 0.5, 0.0], atol=1e-3)
    with pytest.raises(ValueError, match="one column per book"):
        truth.learnt_taste(sp.csr_matrix((1, 7)))


def test_a_genre_with_nothing_out_yet_tells_nothing_of_a_reader_s_taste() -> None:
    # Genre 1's books come out after the moment: reading only genre 0 then was no choice
    # between the two, and the taste stays even; at a later moment it was one.
    later = LOG_START + 1000 * DAY
    release = np.r_[np.full(10, LOG_START - DAY), np.full(10, later)]
    timeline = Timeline(start=np.array([LOG_START]), end=np.array([LOG_END]),
                        taste_start=np.zeros((1, 2), np.float32),
                        taste_end=np.zeros((1, 2), np.float32), release=release,
                        tau=np.full(20, 30 * DAY))
    truth = pure_genre_truth(2, 10, timeline=timeline)
    reads = sp.csr_matrix(np.r_[np.ones(5), np.zeros(15)][None, :])
    np.testing.assert_allclose(truth.learnt_taste(reads, at=later - DAY)[0], [0.5, 0.5])
    assert truth.learnt_taste(reads, at=later + DAY)[0, 0] > 0.9


def test_readers_learnt_from_their_reads_sit_between_popularity_and_readers_known(
        moving: Path, ratings: pd.DataFrame) -> None:
    truth = load_truth(moving)
    log = Log.from_frame(ratings, np.arange(1, N_BOOKS + 1))
    last = periods(log, 13 * 7 * DAY, 2)[-1]
    history, readers = last.history, last.readers
    # The learnt taste finds each reader's planted favourite genre far above chance.
    users = history.ids.user_ids[readers]
    learnt = truth.learnt_taste(history.seen[readers], at=history.cutoff)
    planted = truth.timeline.taste_at(users - 1, history.cutoff)
    assert (learnt.argmax(axis=1) == planted.argmax(axis=1)).mean() > 0.6  # chance: 1/20
    # Ranked by hand: the learnt side, beside the book side the oracle's readers use.
    window = 91 * DAY
    ranker = LearntReaders(truth, [window])
    ranker.fit(history)
    top = ranker.top_k(history, readers, 10)
    recent = (history.times >= history.cutoff - window) & (history.times < history.cutoff)
    scores = (truth.beta * learnt @ truth.genre_mix.T.astype(np.float64)
              + np.log(np.bincount(history.cols[recent], minlength=N_BOOKS) + 0.1))
    scores[history.seen[readers].nonzero()] = -np.inf
    assert (top == np.argsort(-scores, axis=1, kind="stable")[:, :10]).mean() > 0.99
    # Handed the favourite authors too: the truth's 2.0 on their books, added by hand.
    told = LearntReaders(truth, [window], favourites_known=True)
    told.fit(history)
    favourites = 2.0 * truth.favourite_books[users - 1].toarray()
    assert favourites.any()
    expected = np.argsort(-(scores + favourites), axis=1, kind="stable")[:, :10]
    assert (told.top_k(history, readers, 10) == expected).mean() > 0.99
    # Knowing readers beats learning them, which beats knowing nothing of them.
    rankers = [Popularity(window, "popularity"), LearntReaders(truth, [window]),
               KnownReaders(truth, [window])]
    summary = replay(log, rankers, 13 * 7 * DAY, 2).summary()
    assert (summary["popularity"]["ndcg"] < summary["learnt readers, known structure"]["ndcg"]
            < summary["oracle's readers"]["ndcg"])


def test_static_mode_has_no_time(tmp_path: Path) -> None:
    generate_goodbooks(tmp_path, n_users=200, n_books=100, seed=1)
    assert "timestamp" not in pd.read_csv(tmp_path / RATINGS_FILE, nrows=5).columns
    assert load_truth(tmp_path).timeline is None


def test_readers_have_favourite_authors_they_read_and_rate_highly(
        moving: Path, ratings: pd.DataFrame) -> None:
    truth = load_truth(moving)
    assert truth.favourite_books is not None
    favourite = np.asarray(truth.favourite_books[ratings["user_id"] - 1,
                                                 ratings["book_id"] - 1]).ravel() > 0
    # Their books are a small part of the catalogue a reader could meet, a larger part of
    # what they read, and rated about half a star and more above the rest.
    catalogue_share = truth.favourite_books.getnnz(axis=1).mean() / N_BOOKS
    assert favourite.mean() > 2 * catalogue_share
    stars = ratings["rating"].to_numpy()
    assert stars[favourite].mean() > stars[~favourite].mean() + 0.5
    # The truth ranks them up: the static score of a favourite's book gains the bonus.
    u, b = int(ratings["user_id"][favourite].iloc[0]), int(ratings["book_id"][favourite].iloc[0])
    with_bonus = truth.scores(np.array([u]), np.array([b]))[0, 0]
    plain = (truth.beta * truth.taste[u - 1]) @ truth.genre_mix[b - 1] + \
        truth.popularity[b - 1] + truth.quality[b - 1]
    assert with_bonus - plain == pytest.approx(2.0, abs=1e-4)


def test_a_book_published_in_the_log_s_years_comes_out_that_year() -> None:
    from datetime import UTC, datetime

    years = np.array([2012.0, 2005.0, np.nan, 2016.0])
    release, _ = book_releases(4, np.random.default_rng(0), years)
    assert datetime.fromtimestamp(release[0], UTC).year == 2012
    assert datetime.fromtimestamp(release[3], UTC).year == 2016
    assert (release[1:3] < LOG_START).all()  # older or unknown: backlist


def test_a_reader_s_sessions_spread_evenly_over_their_window() -> None:
    from models.generator.timeline import reader_sessions

    rng = np.random.default_rng(1)
    start, end = reader_windows(4000, rng)
    timeline = Timeline(start=start, end=end, taste_start=np.zeros((4000, 2), np.float32),
                        taste_end=np.zeros((4000, 2), np.float32),
                        release=np.zeros(1), tau=np.ones(1))
    sessions = reader_sessions(timeline, np.full(4000, 111), rng)
    where = (sessions - start[:, None]) / (end - start)[:, None]
    assert (where[:, 0] == 0).all()
    middle = np.concatenate([row[1:np.count_nonzero(~np.isnan(row)) - 1] for row in where])
    # Uniform between start and end: mean 1/2, a third in each third.
    assert abs(middle.mean() - 0.5) < 0.02
    assert abs((middle < 1 / 3).mean() - 1 / 3) < 0.03
