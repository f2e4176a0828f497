"""Genre tastes: the genre mix read from the metadata, the maximum-likelihood taste, the taste
side in a served model, and the choice between families of served terms."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from models.genres import (
    GenreMix,
    TasteSide,
    fit_tastes,
    genre_mix,
    popularity_offset,
    taste_side,
    with_taste,
)
from models.rankers import (
    FamilyChoice,
    RecencyAware,
    TasteCache,
    served_choice,
    terms_grid,
)
from models.recency import RecencyPrior
from models.recommender import FactorModel
from models.replay import Log, periods, replay
from models.schema import TrainingError
from models.terms import ScoreTerms, with_terms

# --- the genre mix --------------------------------------------------------------------------


def shelves() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    books = pd.DataFrame({"book_id": [1, 2, 3], "goodreads_book_id": [101, 102, 103]})
    tags = pd.DataFrame({"tag_id": [7, 8, 9], "tag_name": ["to-read", "fantasy", "romance"]})
    book_tags = pd.DataFrame({
        "goodreads_book_id": [101, 101, 101, 102, 103, 999],
        "tag_id": [7, 8, 9, 9, 7, 8],
        "count": [500, 30, 10, 4, 80, 5],
    })
    return books, book_tags, tags


def test_a_book_s_genre_mix_is_its_share_of_each_genre_shelf() -> None:
    books, book_tags, tags = shelves()
    mix = genre_mix(np.array([3, 2, 1]), books, book_tags, tags, shelves=("fantasy", "romance"))
    assert mix is not None and mix.names == ("fantasy", "romance")
    # Book 1: fantasy 30 and romance 10 of its genre shelves (to-read is no genre); book 2
    # romance alone; book 3 only to-read, so no genre: it takes the others' mean mix, and
    # no reader's taste lifts or sinks it more than an average book. Rows follow the ids.
    np.testing.assert_allclose(mix.mix, [[0.375, 0.625], [0, 1], [0.75, 0.25]])
    assert mix.covered == pytest.approx(2 / 3)


def test_genre_shelves_come_before_a_genres_column() -> None:
    books, book_tags, tags = shelves()
    listed = books.assign(genres=["Comedy", "Comedy", "Comedy"])
    mix = genre_mix(np.array([1, 2, 3]), listed, book_tags, tags, shelves=("fantasy",))
    assert mix is not None and mix.names == ("fantasy",)
    # Without a shelf of the list, the column is read instead.
    mix = genre_mix(np.array([1, 2, 3]), listed, book_tags, tags, shelves=("horror",))
    assert mix is not None and mix.names == ("Comedy",)


def test_a_catalogue_s_genres_column_gives_each_listed_genre_an_equal_share() -> None:
    movies = pd.DataFrame({"book_id": [10, 20, 30],
                           "genres": ["Comedy|Adventure", "(no genres listed)", "Comedy"]})
    mix = genre_mix(np.array([10, 20, 30]), movies)
    assert mix is not None and mix.names == ("Adventure", "Comedy")
    np.testing.assert_allclose(mix.mix, [[0.5, 0.5], [0.25, 0.75], [0, 1]])


def test_a_catalogue_that_names_no_genre_has_no_mix() -> None:
    books, book_tags, tags = shelves()
    assert genre_mix(np.array([1, 2, 3]), books) is None
    assert genre_mix(np.array([1, 2, 3]), None) is None
    assert genre_mix(np.array([1, 2, 3]), books, book_tags, tags, shelves=("horror",)) is None


# --- the maximum-likelihood taste -----------------------------------------------------------


def four_books() -> np.ndarray:
    """Books 0-2 are all genre 0, book 3 all genre 1."""
    return np.array([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])


@pytest.mark.parametrize("beta", [4.0, 8.0])
def test_the_taste_is_the_one_that_makes_the_reads_likeliest(beta: float) -> None:
    # A reader read two genre-0 books and the genre-1 one. The likelihood is highest where
    # the genre-0 books, three of the four, draw the reads' share of 2/3:
    # 3 e^(b t0) / (3 e^(b t0) + e^(b t1)) = 2/3, so b (t0 - t1) = ln(2/3), t0 + t1 = 1.
    reads = sp.csr_matrix(np.array([[1, 1, 0, 1]], dtype=np.float32))
    taste = fit_tastes(reads, four_books(), np.zeros(4), beta=beta, iterations=200)
    t0 = (1 + math.log(2 / 3) / beta) / 2
    np.testing.assert_allclose(taste, [[t0, 1 - t0]], atol=1e-4)


def test_offsets_weigh_books_before_taste_and_minus_infinity_removes_one() -> None:
    reads = sp.csr_matrix(np.array([[1, 1, 0, 1]], dtype=np.float32))
    # The genre-1 book twice as likely before taste: 3 e^(b t0) = 4 e^(b t1).
    taste = fit_tastes(reads, four_books(), np.array([0, 0, 0, math.log(2)]), beta=8.0,
                       iterations=200)
    np.testing.assert_allclose(taste[0, 0] - taste[0, 1], math.log(4 / 3) / 8, atol=1e-4)
    # Book 2 not out yet: two genre-0 books left, 2 e^(b t0) = 2 e^(b t1), an even taste.
    taste = fit_tastes(reads, four_books(), np.array([0, 0, -np.inf, 0]), beta=8.0,
                       iterations=200)
    np.testing.assert_allclose(taste, [[0.5, 0.5]], atol=1e-4)


def test_a_repeated_read_counts_once_and_a_reader_without_reads_keeps_the_even_taste() -> None:
    once = sp.csr_matrix(np.array([[1, 1, 0, 1], [0, 0, 0, 0]], dtype=np.float32))
    again = sp.csr_matrix(np.array([[3, 1, 0, 2], [0, 0, 0, 0]], dtype=np.float32))
    a = fit_tastes(once, four_books(), np.zeros(4))
    np.testing.assert_array_equal(a, fit_tastes(again, four_books(), np.zeros(4)))
    np.testing.assert_allclose(a[1], [0.5, 0.5])


def test_tastes_need_the_same_books_in_the_reads_the_mix_and_the_offsets() -> None:
    with pytest.raises(TrainingError, match="same books"):
        fit_tastes(sp.csr_matrix((1, 3)), four_books(), np.zeros(4))
    with pytest.raises(TrainingError, match="beta must be positive"):
        fit_tastes(sp.csr_matrix((1, 4)), four_books(), np.zeros(4), beta=0)


# --- the taste side in the served model -----------------------------------------------------


def small_model() -> FactorModel:
    return FactorModel(user_factors=np.array([[1.0], [2.0]], np.float32),
                       user_bias=np.zeros(2, np.float32),
                       item_factors=np.array([[1.0], [0.0], [0.5]], np.float32),
                       item_bias=np.array([0.1, 0.2, 0.3], np.float32))


def small_side() -> TasteSide:
    return TasteSide(tastes=np.array([[1.0, 0.0], [0.25, 0.75]], np.float32),
                     mix=np.array([[0.0, 1.0], [1.0, 0.0], [0.5, 0.5]], np.float32),
                     spread=0.5)


def test_the_taste_side_adds_its_weight_in_the_model_s_score_deviations() -> None:
    model, side = small_model(), small_side()
    served = with_taste(model, side, weight=2.0, spread=3.0)
    # 2 deviations of the model (3 each) per deviation of the side (0.5): 12 × taste·mix.
    expected = model.scores(np.array([0, 1])) + 12.0 * (side.tastes @ side.mix.T)
    np.testing.assert_allclose(served.scores(np.array([0, 1])), expected, rtol=1e-6)
    assert served.item_factors.shape == (3, 3)  # the model's factor and two genres
    assert with_taste(model, side, weight=0.0, spread=3.0) is model


def test_in_place_of_the_model_only_the_prior_and_the_taste_side_rank() -> None:
    model, side = small_model(), small_side()
    prior = np.array([1.0, 0.0, -1.0])
    terms = ScoreTerms(RecencyPrior(weight=1.0, window=10), taste_weight=2.0, keep_model=False)
    served = with_terms(model, terms, prior, side, spread=3.0)
    expected = 3.0 * prior[None, :] + 12.0 * (side.tastes @ side.mix.T)
    np.testing.assert_allclose(served.scores(np.array([0, 1])), expected, rtol=1e-6)
    # The book factors stay, for similar books; the genres ride after them.
    assert served.item_factors.shape == (3, 3)
    np.testing.assert_array_equal(served.item_factors[:, :1], model.item_factors)


def test_terms_say_what_they_need() -> None:
    with pytest.raises(TrainingError, match="at least 0"):
        ScoreTerms(taste_weight=-1.0)
    with pytest.raises(TrainingError, match="needs a taste side"):
        ScoreTerms(keep_model=False)
    with pytest.raises(TrainingError, match="has no genres"):
        with_terms(small_model(), ScoreTerms(taste_weight=1.0), None, None, spread=1.0)
    with pytest.raises(TrainingError, match="covers 2 readers and 3 books, the model 1"):
        with_taste(FactorModel.empty(1, 3), small_side(), weight=1.0, spread=1.0)
    terms = ScoreTerms(RecencyPrior(0.5, 7, keep_bias=False), 2.0, keep_model=False)
    assert terms.as_params() == {"recency_weight": 0.5, "recency_window": 7,
                                 "recency_keep_bias": False, "recency_settling": None,
                                 "taste_weight": 2.0, "taste_keep_model": False}
    assert terms.describe() == ("recency prior weight 0.5, window 7, in place of the learned "
                                "bias; genre taste weight 2, in place of the fitted model")
    settled = ScoreTerms(RecencyPrior(0.5, 7, settling=3))
    assert settled.as_params()["recency_settling"] == 3
    assert settled.describe() == ("recency prior weight 0.5, window 7, counted over each "
                                  "book's time out (settling 3)")


def test_the_grid_holds_the_plain_model_first_and_each_taste_weight_both_ways() -> None:
    grid = terms_grid([1.0, 2.0], [10, 20], (True, False), (0.5, 1.0))
    priors = 1 + 2 * 2 * 2  # no prior, or 2 weights × 2 windows × 2 bias modes
    assert grid[0] == ScoreTerms(RecencyPrior(0.0, 10))
    assert len(grid) == priors + 2 * 2 * priors
    alone = terms_grid([1.0], [10], (True,), (0.5,), keep_model=(False,), plain=False)
    assert [t.keep_model for t in alone] == [False, False] and all(t.tasted for t in alone)


def test_each_family_tries_only_its_own_settings() -> None:
    from models.rankers import FitCache

    tastes = TasteCache(GenreMix(names=("a",), mix=np.ones((3, 1), np.float32), covered=1.0))
    plain, beside, alone = served_choice(FitCache(params={}), [1.0, 2.0], [P], tastes).families
    assert not any(t.tasted for t in plain.grid) and len(plain.grid) == 1 + 2 * 2
    assert all(t.tasted and t.keep_model for t in beside.grid)
    # Without a model only the ratio of the weights orders a list: two taste weights.
    assert all(t.tasted and not t.keep_model for t in alone.grid)
    assert {t.taste_weight for t in alone.grid} == {0.5, 1.0}
    assert {t.prior.keep_bias for t in alone.grid} == {True}


# --- a planted taste the ranker must recover ------------------------------------------------

P = 100


def genre_world() -> tuple[pd.DataFrame, pd.DataFrame]:
    """Books 1-20 are fantasy, 21-40 romance. Readers 1-10 read fantasy, 11-20 romance, one
    new book of their genre in each period; a crowd of 60 reads the romance books 21-25
    just before each period, so the most read books are romance for everyone."""
    books = pd.DataFrame({"book_id": np.arange(1, 41),
                          "genres": ["Fantasy"] * 20 + ["Romance"] * 20})
    rows = [(u, 1 + (u % 4), 1) for u in range(1, 11)]
    rows += [(u, 21 + (u % 4), 1) for u in range(11, 21)]
    for j in range(3):
        start = 2 * P + P * j
        rows += [(1000 + 100 * j + c, b, start - 20) for c in range(60) for b in range(21, 26)]
        rows += [(u, 5 + 3 * j + (u % 3), start + u) for u in range(1, 11)]
        rows += [(u, 26 + 3 * j + (u % 3), start + u) for u in range(11, 21)]
    frame = pd.DataFrame(rows, columns=["user_id", "book_id", "timestamp"])
    return frame.sort_values("timestamp", kind="stable").reset_index(drop=True), books


def test_the_taste_ranker_lists_each_reader_s_genre_where_popularity_lists_the_crowd_s() -> None:
    frame, books = genre_world()
    genres = genre_mix(books["book_id"].to_numpy(), books)
    assert genres is not None
    log = Log.from_frame(frame, catalogue=books["book_id"].to_numpy())
    taste = RecencyAware(None, [1.0], [P], "taste", tastes=TasteCache(genres))
    lists: dict[int, np.ndarray] = {}

    def keep(period, name, top):  # noqa: ANN001 - Period
        if name == "taste":
            lists[period.index] = period.history.ids.book_ids[top[:, :5]]
            users = period.history.ids.user_ids[period.readers]
            lists[-period.index] = users

    replay(log, [taste], P, 2, k=10, on_lists=keep, end=5 * P)
    for index in (1, 2):
        users, top = lists[-index], lists[index]
        fantasy = users <= 10
        assert fantasy.any() and (~fantasy).any()
        # Every one of the first five listed books is of the reader's genre.
        assert (top[fantasy] <= 20).all() and (top[~fantasy] > 20).all()


class FixedFamily:
    """A family that lists one book for everybody and claims a fixed best-in-hindsight
    total at each choice."""

    def __init__(self, name: str, book: int, hindsight: float) -> None:
        self.name, self.book, self.hindsight = name, book, hindsight
        self.totals = np.zeros(1)
        self.setting = ScoreTerms()
        self.chosen = name

    def fit(self, history: object) -> None:
        pass

    def top_k(self, history: object, readers: np.ndarray, k: int) -> np.ndarray:
        return np.full((len(readers), k), self.book)

    def choose(self, period: object, score: object) -> None:
        self.totals += self.hindsight


def test_a_family_is_judged_on_the_periods_after_its_choice() -> None:
    # "wide" tuned itself to a high total on the past; the book it then lists is not read.
    wide, steady = FixedFamily("wide", 1, 10.0), FixedFamily("steady", 0, 1.0)
    choice = FamilyChoice([wide, steady], "served")

    def score(top: np.ndarray) -> np.ndarray:
        return (top[:, 0] == 0).astype(float)  # readers read book 0

    validation = SimpleNamespace(scored=False, history=None, readers=np.arange(3))
    steady.setting = ScoreTerms(taste_weight=1.0)
    choice.choose(validation, score)
    assert choice.current is wide and choice.chosen == "wide: wide"  # nothing judged yet
    assert choice.setting is wide.setting
    choice.choose(SimpleNamespace(scored=True, history=None, readers=np.arange(3)), score)
    # Judged on the period after its choice, "wide" scored 0 and "steady" 3, whatever the
    # totals in hindsight say (20 against 2).
    assert choice.prequential.tolist() == [0.0, 3.0] and choice.judged == 3
    assert choice.current is steady and choice.setting.taste_weight == 1.0


def test_without_genres_the_served_choice_is_the_model_with_the_prior() -> None:
    from models.rankers import FitCache

    cache = FitCache(params={})
    assert isinstance(served_choice(cache, [1.0], [P], None), RecencyAware)
    tastes = TasteCache(GenreMix(names=("a",), mix=np.ones((3, 1), np.float32), covered=1.0))
    choice = served_choice(cache, [1.0], [P], tastes)
    assert isinstance(choice, FamilyChoice)
    assert [f.name for f in choice.families] == [
        "model + recency prior", "model + genre taste + recency prior",
        "genre taste + recency prior"]


def test_a_side_fitted_on_everything_has_one_taste_per_reader() -> None:
    genres = GenreMix(names=("a", "b"), mix=four_books().astype(np.float32), covered=1.0)
    reads = sp.csr_matrix(np.array([[1, 1, 0, 0], [0, 0, 0, 1], [0, 0, 0, 0]], np.float32))
    side = taste_side(reads, genres)
    assert side.tastes.shape == (3, 2) and side.tastes.dtype == np.float32
    # The genre-0 reader leans to genre 0, the genre-1 reader to genre 1.
    assert side.tastes[0, 0] > 0.5 > side.tastes[1, 0] and side.spread > 0


def test_the_taste_cache_learns_once_per_cut_off_and_sets_its_unit_on_every_reader() -> None:
    from models.genres import spread_sample, taste_spread

    frame, books = genre_world()
    genres = genre_mix(books["book_id"].to_numpy(), books)
    log = Log.from_frame(frame, catalogue=books["book_id"].to_numpy())
    first, second = (period.history for period in periods(log, P, 1, end=4 * P))
    cache = TasteCache(genres)
    readers = np.array([3, 0])
    side = cache.of(first, readers)
    # The unit is the served side's: every reader of the history, by the same sample rule.
    everyone = fit_tastes(first.seen, genres.mix, popularity_offset(first.seen))
    sample = spread_sample(first.ids.n_users)
    assert side.spread == pytest.approx(taste_spread(everyone[sample], genres.mix))
    np.testing.assert_allclose(side.tastes, everyone[readers], rtol=1e-6)
    # The same cut-off asked again keeps what it learnt; a later one starts afresh.
    assert cache.of(first, readers).spread == side.spread
    later = cache.of(second, readers)
    again = fit_tastes(second.seen, genres.mix, popularity_offset(second.seen))
    np.testing.assert_allclose(later.tastes, again[readers], rtol=1e-6)
