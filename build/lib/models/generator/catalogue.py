"""Books (authors, genre mixes, qualities, real rating mixes) and readers (tastes, how many
books they rate and shelve).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from models.generator.constants import (
    AUTHOR_GENRE_CONCENTRATION,
    AUTHOR_STRENGTH,
    BOOK_GENRE_CONCENTRATION,
    CHUNK_READERS,
    FAVOURITE_AUTHORS,
    FULL_RATINGS,
    FULL_USERS,
    GENRE_WEIGHTS,
    READER_COUNT_RANGE,
    READER_COUNT_T,
    READER_TASTE_CONCENTRATION,
    TASTE_STRENGTH,
    TO_READ_MAX,
    TO_READ_MEAN,
    TO_READ_SHARE,
)
from models.generator.timeline import Timeline
from models.schema import (
    BOOK_ID,
    BOOKS_COLUMNS,
    DatasetError,
)

# --- catalogue and readers ---------------------------------------------------------------


@dataclass(frozen=True)
class _RealBooks:
    """The columns of a real books.csv the generator reuses, as text, for the first n books."""

    table: pd.DataFrame

    @property
    def first_authors(self) -> np.ndarray:
        """The first name listed in each book's authors column."""
        return self.table["authors"].str.split(",").str[0].str.strip().to_numpy()


@dataclass(frozen=True)
class _Catalogue:
    """Books: their author, genre mix, quality and (from a real books.csv) rating mix."""

    n_books: int
    author: np.ndarray  # int32 [n_books]
    n_authors: int
    genre_mix: np.ndarray  # float32 [n_books, n_genres]
    quality: np.ndarray  # float32 [n_books]
    rating_mix: np.ndarray | None  # float64 [n_books, 5] from a real books.csv


@dataclass(frozen=True)
class _Readers:
    """Readers: taste over genres, how many books they rate and shelve."""

    taste: np.ndarray  # float32 [n_users, n_genres]
    n_rated: np.ndarray  # int64 [n_users]
    n_to_read: np.ndarray  # int64 [n_users]
    # Data that moves: taste is then the mean over each reader's window, and each draw
    # adds the books' share of readers within the window (timeline.log_window_mass).
    timeline: Timeline | None = None
    # Books by each reader's favourite authors, float32 [n_users, n_books] (data that
    # moves): AUTHOR_STRENGTH is added to their keys and to the rating affinity.
    favourite_books: sp.csr_matrix | None = None

    def window_term(self, start: int, stop: int) -> np.ndarray | None:
        """What time and favourite authors add to the keys of readers start..stop (None:
        static data)."""
        if self.timeline is None:
            return None
        term = self.timeline.log_window_mass(np.arange(start, stop))
        if self.favourite_books is not None:
            term += np.float32(AUTHOR_STRENGTH) * self.favourite_books[start:stop].toarray()
        return term

    def favourite(self, rows: np.ndarray, books: np.ndarray) -> np.ndarray:
        """1.0 where the book is by one of the reader's favourite authors, else 0.0."""
        if self.favourite_books is None:
            return np.zeros(len(rows), dtype=np.float32)
        return np.asarray(self.favourite_books[rows, books]).ravel().astype(np.float32)


def _read_real_books(path: Path, n_books: int) -> _RealBooks:
    """Read the first n_books rows of a real books.csv verbatim (as strings)."""
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise DatasetError(f"cannot read books file {path}: {exc}") from exc
    missing = [c for c in BOOKS_COLUMNS if c not in table.columns]
    if missing:
        raise DatasetError(f"{path} lacks the goodbooks columns {missing}")
    if len(table) < n_books:
        raise DatasetError(f"{path} has {len(table)} books; {n_books} were asked for")
    table = table.iloc[:n_books][list(BOOKS_COLUMNS)].reset_index(drop=True)
    expected = [str(i) for i in range(1, n_books + 1)]
    if table[BOOK_ID].tolist() != expected:
        raise DatasetError(f"{path} must list book_id 1..{n_books} in order (popularity order)")
    return _RealBooks(table)


def _build_catalogue(n_books: int, rng: np.random.Generator, real: _RealBooks | None) -> _Catalogue:
    """Assign authors, genre mixes and qualities to the books."""
    if real is None:
        author = _synthetic_authorship(n_books, rng)
    else:
        _, author = np.unique(real.first_authors, return_inverse=True)
    author = author.astype(np.int32)
    n_authors = int(author.max()) + 1
    weights = GENRE_WEIGHTS / GENRE_WEIGHTS.mean()
    author_mix = rng.dirichlet(AUTHOR_GENRE_CONCENTRATION * weights, size=n_authors)
    alphas = BOOK_GENRE_CONCENTRATION * author_mix[author] + 0.02
    genre_mix = _dirichlet_rows(alphas, rng)
    author_quality = rng.normal(0.0, 0.35, n_authors)
    quality = author_quality[author] + rng.normal(0.0, 0.25, n_books)
    rating_mix = None
    if real is not None:
        counts = real.table[[f"ratings_{k}" for k in range(1, 6)]].astype(np.float64).to_numpy()
        rating_mix = (counts + 1.0) / (counts + 1.0).sum(axis=1, keepdims=True)
        # Better-rated books are also the better-liked ones in the planted model.
        stars = rating_mix @ np.arange(1, 6)
        quality = 0.35 * (stars - stars.mean()) / stars.std() + rng.normal(0.0, 0.1, n_books)
    return _Catalogue(
        n_books=n_books,
        author=author,
        n_authors=n_authors,
        genre_mix=genre_mix.astype(np.float32),
        quality=quality.astype(np.float32),
        rating_mix=rating_mix,
    )


def _dirichlet_rows(alphas: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One Dirichlet draw per row of alphas (numpy's dirichlet takes one alpha vector)."""
    gammas = rng.standard_gamma(alphas)
    totals = gammas.sum(axis=1, keepdims=True)
    # A row whose gammas all underflow to zero falls back to its normalised alphas.
    empty = totals[:, 0] <= 0
    gammas[empty] = alphas[empty]
    totals[empty] = alphas[empty].sum(axis=1, keepdims=True)
    return gammas / totals


def _synthetic_authorship(n_books: int, rng: np.random.Generator) -> np.ndarray:
    """Author index per book; a few authors write many books, most write one or two."""
    # A power law truncated at 40 books: like the real first authors (3,888 of them for
    # 10,000 books, median 1, upper quartile 2), with a few dozen prolific ones.
    books = np.arange(1, 41)
    sizes = rng.choice(books, size=n_books, p=_normalised(list(books**-2.0)))
    n_authors = int(np.searchsorted(np.cumsum(sizes), n_books)) + 1
    author = np.repeat(np.arange(n_authors), sizes[:n_authors])[:n_books]
    return rng.permutation(author)


def _draw_readers(n_users: int, n_books: int, rng: np.random.Generator) -> _Readers:
    """Draw every reader's taste, number of ratings and to-read shelf size."""
    weights = GENRE_WEIGHTS / GENRE_WEIGHTS.mean()
    taste = rng.dirichlet(READER_TASTE_CONCENTRATION * weights, size=n_users).astype(np.float32)
    df, centre, below, above = READER_COUNT_T
    low, high = READER_COUNT_RANGE
    t = rng.standard_t(df, n_users)
    n_rated = np.clip(np.rint(centre + np.where(t < 0, below, above) * t), low, high)
    n_rated = n_rated.astype(np.int64)
    if n_books // 2 >= high:
        # Pin the total to the real mean (111.87 per reader) rather than leave it to chance.
        total = round(n_users * FULL_RATINGS / FULL_USERS)
        _nudge_to_total(n_rated, total, np.full(n_users, low), np.full(n_users, high), rng)
    else:
        # A small catalogue cannot hold the real per-reader counts; keep room for the shelf.
        n_rated = np.minimum(n_rated, max(1, n_books // 2))
    has_shelf = rng.random(n_users) < TO_READ_SHARE
    room = np.minimum((n_books - n_rated) // 2, TO_READ_MAX)
    shelf = np.minimum(rng.geometric(1.0 / TO_READ_MEAN, n_users), room)
    n_to_read = np.where(has_shelf, shelf, 0).astype(np.int64)
    if n_books // 2 >= high:
        total = round(n_users * TO_READ_SHARE * TO_READ_MEAN)
        _nudge_to_total(n_to_read, total, np.where(has_shelf, 1, 0), np.where(has_shelf, room, 0),
                        rng)
    return _Readers(taste=taste, n_rated=n_rated, n_to_read=n_to_read)


def _nudge_to_total(
    counts: np.ndarray, total: int, low: np.ndarray, high: np.ndarray, rng: np.random.Generator
) -> None:
    """Add or remove one at random entries (within low..high) until counts sum to total."""
    for _ in range(100):
        gap = total - int(counts.sum())
        if gap == 0:
            return
        movable = np.flatnonzero(counts < high if gap > 0 else counts > low)
        if len(movable) == 0:
            return
        picks = rng.choice(movable, size=min(abs(gap), len(movable)), replace=False)
        counts[picks] += 1 if gap > 0 else -1


def _normalised(weights: list[float]) -> np.ndarray:
    """Weights scaled to sum to one."""
    w = np.asarray(weights, dtype=np.float64)
    return w / w.sum()


def favourite_authors(taste: np.ndarray, catalogue: _Catalogue, targets: np.ndarray,
                      rng: np.random.Generator, per_reader: int = FAVOURITE_AUTHORS
                      ) -> sp.csr_matrix:
    """Books by each reader's favourite authors, float32 [n_users, n_books] of ones.

    A reader's favourites are the authors of ``per_reader`` books drawn (without
    replacement) with weight target_b exp(beta taste . genre_b): authors they are likely
    to meet, in the genres they like. Every book by a favourite author then counts.
    """
    n_users, n_books = len(taste), catalogue.n_books
    by_author = sp.csr_matrix((np.ones(n_books, np.float32),
                               (catalogue.author, np.arange(n_books))),
                              shape=(catalogue.n_authors, n_books))
    chosen = np.empty((n_users, per_reader), dtype=np.int64)
    log_target = np.log(np.maximum(targets, 1e-9)).astype(np.float32)
    for start in range(0, n_users, CHUNK_READERS):
        stop = min(start + CHUNK_READERS, n_users)
        keys = (np.float32(TASTE_STRENGTH) * taste[start:stop]) @ catalogue.genre_mix.T
        keys += log_target
        keys -= np.log(-np.log(rng.random(keys.shape, dtype=np.float32) + 1e-12))
        top = np.argpartition(keys, n_books - per_reader, axis=1)[:, n_books - per_reader:]
        chosen[start:stop] = catalogue.author[top]
    rows = np.repeat(np.arange(n_users), per_reader)
    authors = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, chosen.ravel())),
                            shape=(n_users, catalogue.n_authors))
    authors.data[:] = 1.0
    books = (authors @ by_author).tocsr()
    books.data[:] = 1.0
    return books.astype(np.float32)
