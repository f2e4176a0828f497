"""Reader taste over genres: each book's genre mix from its metadata, each reader's taste from
what they read, and the taste side a served model can carry.

A reader who read six fantasy novels and a thriller is likely to read fantasy next. LightFM
must learn which books belong together from who read them together; the catalogue already
says it where readers shelve books by genre (goodreads tags such as ``fantasy``) or where
the catalogue lists them (MovieLens' ``genres``). Each reader's taste is the point of the
simplex over genres that makes their reads likeliest, each read a draw from a softmax over
the catalogue with each book's popularity, log(1 + readers), as offset:

    P(book i) ∝ exp(offset_i + beta · taste_u · mix_i)

The log-likelihood is concave in the taste; exponentiated-gradient ascent finds it in a few
dozen steps. The taste side is a factor model as wide as the number of genres (readers'
tastes, books' mixes), so it rides in the served factors: the code of batch scoring and
serving is unchanged, and each dot product grows by that width.
Whether it helps, and how much of it, is chosen by measurement (the replay and the train
flow's backtest), never assumed.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import scipy.sparse as sp

from models.metrics import row_spread
from models.schema import BOOK_ID, GOODREADS_BOOK_ID, TAG_COUNT, TAG_ID, TAG_NAME, TrainingError

if TYPE_CHECKING:  # the generator fits tastes too, and does not load LightFM
    from models.recommender import FactorModel

# Goodreads shelves that name a genre (real tag names of goodbooks-10k's tags.csv): to-read,
# favorites, owned and the like say nothing of what a book is about and are left out.
GENRE_SHELVES = (
    "fantasy", "young-adult", "romance", "mystery", "thriller", "science-fiction",
    "historical-fiction", "contemporary", "classics", "non-fiction", "paranormal", "horror",
    "dystopia", "biography", "humor", "childrens", "philosophy", "poetry", "self-help",
    "graphic-novels",
)
GENRES_COLUMN = "genres"  # a catalogue's own genre list, "Adventure|Comedy" (MovieLens)
NO_GENRE = "(no genres listed)"
# The softmax's sharpness in the fit. How much the side weighs in a list is chosen at
# scoring time, so this only shapes each taste: 8 ranked best of 4, 8 and 16 on generated
# data and on ml-latest-small alike (benchmarks/README.md, "Genre taste").
FIT_BETA = 8.0
ITERATIONS = 40
FIT_CHUNK = 1_000  # readers per block of the fit: 1,000 × 10,000 books × 8 bytes each
SPREAD_SAMPLE = 2_000  # readers whose tastes set the side's unit


@dataclass(frozen=True)
class GenreMix:
    """Each book's share of each genre, float32 [n_books, n_genres], rows summing to 1. A
    book the metadata gives no genre has the catalogue's mean mix: it neither gains nor
    loses by any reader's taste more than an average book does."""

    names: tuple[str, ...]
    mix: np.ndarray
    covered: float  # share of the books the metadata gives a genre


def genre_mix(book_ids: np.ndarray, books: pd.DataFrame | None,
              book_tags: pd.DataFrame | None = None, tags: pd.DataFrame | None = None,
              shelves: tuple[str, ...] = GENRE_SHELVES) -> GenreMix | None:
    """The genre mix of ``book_ids`` (in that order) from the metadata, or None without any.

    Goodreads shelves first: a book's count on each genre shelf, as shares. Else the
    catalogue's ``genres`` column, each listed genre an equal share. None when neither
    names a genre for any book.
    """
    book_ids = np.asarray(book_ids, dtype=np.int64)
    if books is not None and book_tags is not None and tags is not None and len(book_tags):
        mix = _from_shelves(book_ids, books, book_tags, tags, shelves)
        if mix is not None:
            return mix
    if books is not None and GENRES_COLUMN in books.columns:
        return _from_column(book_ids, books)
    return None


def _from_shelves(book_ids: np.ndarray, books: pd.DataFrame, book_tags: pd.DataFrame,
                  tags: pd.DataFrame, shelves: tuple[str, ...]) -> GenreMix | None:
    names = tags.set_index(TAG_ID)[TAG_NAME]
    genre_of = {int(tag): shelves.index(name) for tag, name in names.items() if name in shelves}
    if not genre_of or GOODREADS_BOOK_ID not in books.columns:
        return None
    linked = book_tags[book_tags[TAG_ID].isin(list(genre_of)) & (book_tags[TAG_COUNT] > 0)]
    linked = linked.merge(books[[BOOK_ID, GOODREADS_BOOK_ID]], on=GOODREADS_BOOK_ID)
    row = pd.Index(book_ids).get_indexer(linked[BOOK_ID])
    keep = row >= 0
    if not keep.any():
        return None
    counts = sp.csr_matrix(
        (linked[TAG_COUNT].to_numpy(np.float64)[keep],
         (row[keep], linked[TAG_ID].map(genre_of).to_numpy(np.int64)[keep])),
        shape=(len(book_ids), len(shelves))).toarray()  # duplicates are summed
    return _shares(shelves, counts)


def _from_column(book_ids: np.ndarray, books: pd.DataFrame) -> GenreMix | None:
    listed = books[[BOOK_ID, GENRES_COLUMN]].dropna()
    listed = listed.assign(genre=listed[GENRES_COLUMN].astype(str).str.split("|")).explode("genre")
    listed = listed[(listed["genre"].str.strip() != "") & (listed["genre"] != NO_GENRE)]
    if listed.empty:
        return None
    names = tuple(sorted(listed["genre"].unique()))
    row = pd.Index(book_ids).get_indexer(listed[BOOK_ID])
    keep = row >= 0
    counts = np.zeros((len(book_ids), len(names)))
    np.add.at(counts, (row[keep], pd.Index(names).get_indexer(listed["genre"][keep])), 1.0)
    return _shares(names, counts)


def _shares(names: tuple[str, ...], counts: np.ndarray) -> GenreMix:
    """Counts as each book's shares; books without any take the mean of the others."""
    total = counts.sum(axis=1, keepdims=True)
    has = total[:, 0] > 0
    shares = np.divide(counts, total, out=np.zeros_like(counts), where=total > 0)
    shares[~has] = shares[has].mean(axis=0)
    return GenreMix(names=names, mix=shares.astype(np.float32), covered=float(has.mean()))


def fit_tastes(reads: sp.csr_matrix, mix: np.ndarray, offset: np.ndarray, beta: float = FIT_BETA,
               iterations: int = ITERATIONS) -> np.ndarray:
    """Each reader's maximum-likelihood taste, float64 [reads.shape[0], n_genres] on the simplex.

    ``reads`` has one row per reader and one column per book (any positive entry is one
    read, however often it is repeated); ``mix`` is [n_books, n_genres]; ``offset`` each
    book's log-weight before taste (``-inf``: not a choice, e.g. not yet released). Each read
    is taken as an independent draw with P(i) ∝ exp(offset_i + beta · taste · mix_i).
    Exponentiated-gradient ascent from the even taste; a reader without reads keeps it.
    """
    reads = sp.csr_matrix(reads, dtype=np.float64, copy=True)
    reads.sum_duplicates()
    mix = np.asarray(mix, dtype=np.float64)
    offset = np.asarray(offset, dtype=np.float64)
    if reads.shape[1] != len(mix) or len(offset) != len(mix):
        raise TrainingError(f"reads cover {reads.shape[1]} books, the genre mix {len(mix)} "
                            f"and the offsets {len(offset)}: they must be the same books")
    if beta <= 0:
        raise TrainingError(f"beta must be positive, not {beta}")
    reads.data = (reads.data > 0).astype(np.float64)
    out = np.empty((reads.shape[0], mix.shape[1]))
    for start in range(0, reads.shape[0], FIT_CHUNK):
        block = reads[start:start + FIT_CHUNK]
        out[start:start + block.shape[0]] = _ascend(block, mix, offset, beta, iterations)
    return out


def _ascend(reads: sp.csr_matrix, mix: np.ndarray, offset: np.ndarray, beta: float,
            iterations: int) -> np.ndarray:
    count = np.asarray(reads.sum(axis=1)).ravel()
    observed = np.asarray(reads @ mix)  # summed genre mix of each reader's reads

    def likelihood(taste: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Each reader's log-likelihood (up to a constant) and its gradient."""
        logits = offset + beta * taste @ mix.T
        top = logits.max(axis=1, keepdims=True)
        chance = np.exp(logits - top)
        total = chance.sum(axis=1, keepdims=True)
        value = beta * (observed * taste).sum(axis=1) - count * (top + np.log(total)).ravel()
        return value, beta * (observed - count[:, None] * (chance / total) @ mix)

    taste = np.full((reads.shape[0], mix.shape[1]), 1.0 / mix.shape[1])
    value, gradient = likelihood(taste)
    # The gradient is beta n times a difference of genre means; each reader's step starts
    # at 4 / (beta n), halves when it would lower their likelihood (the step is undone)
    # and grows by half again when it raises it.
    step = 4.0 / (beta * np.maximum(count, 1.0))[:, None]
    for _ in range(iterations):
        trial = taste * np.exp(np.clip(step * gradient, -5.0, 5.0))
        np.maximum(trial, 1e-12, out=trial)
        trial /= trial.sum(axis=1, keepdims=True)
        trial_value, trial_gradient = likelihood(trial)
        better = trial_value >= value
        taste[better], gradient[better] = trial[better], trial_gradient[better]
        value = np.where(better, trial_value, value)
        step *= np.where(better, 1.5, 0.5)[:, None]
    return taste


def popularity_offset(reads: sp.csr_matrix) -> np.ndarray:
    """log(1 + readers of each book): the fit's offset, each book's weight before taste."""
    reads = sp.csr_matrix(reads, copy=True)
    reads.sum_duplicates()
    return np.log1p(np.asarray((reads > 0).sum(axis=0)).ravel().astype(np.float64))


@dataclass(frozen=True)
class TasteSide:
    """Readers' tastes and books' genre mixes: score(u, i) = taste_u · mix_i, with
    ``spread`` the deviation of those scores within a reader's row (its unit)."""

    tastes: np.ndarray  # float32 [n_users, n_genres]
    mix: np.ndarray  # float32 [n_books, n_genres]
    spread: float


def taste_side(reads: sp.csr_matrix, genres: GenreMix, beta: float = FIT_BETA) -> TasteSide:
    """Fit every reader's taste on ``reads`` [n_users, n_books] (books in the mix's order)."""
    tastes = fit_tastes(reads, genres.mix, popularity_offset(reads), beta)
    return TasteSide(tastes=tastes.astype(np.float32), mix=genres.mix,
                     spread=taste_spread(tastes[spread_sample(len(tastes))], genres.mix))


def spread_sample(n_readers: int, size: int = SPREAD_SAMPLE, seed: int = 0) -> np.ndarray:
    """The readers (rows, sorted) whose tastes set the side's unit: the same rule wherever a
    side is built, so a weight chosen in the replay or the backtest means the same when
    served."""
    rows = np.random.default_rng(seed).choice(n_readers, min(n_readers, size), replace=False)
    return np.sort(rows)


def taste_spread(tastes: np.ndarray, mix: np.ndarray) -> float:
    """Deviation of taste · mix within a reader's row, over the readers given (1 when there
    is none, or every reader ranks the books alike)."""
    return row_spread(np.asarray(tastes, dtype=np.float64) @ np.asarray(mix, np.float64).T)


def with_taste(model: FactorModel, side: TasteSide, weight: float, spread: float
               ) -> FactorModel:
    """The model with ``weight`` score deviations (``spread``: the model's) of the taste
    side beside its own factors: [p_u, c·taste_u]·[q_i, mix_i], c = weight · spread /
    side.spread."""
    if weight == 0:
        return model
    if side.tastes.shape[0] != len(model.user_factors) or len(side.mix) != len(model.item_bias):
        raise TrainingError(f"the taste side covers {side.tastes.shape[0]} readers and "
                            f"{len(side.mix)} books, the model {len(model.user_factors)} and "
                            f"{len(model.item_bias)}")
    scale = np.float32(weight * spread / side.spread)
    user = np.hstack([model.user_factors, side.tastes * scale])
    item = np.hstack([model.item_factors, side.mix])
    return replace(model, user_factors=np.ascontiguousarray(user, dtype=np.float32),
                   item_factors=np.ascontiguousarray(item, dtype=np.float32))
