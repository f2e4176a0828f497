"""Goodbooks-shaped data from a planted taste model, so the true preferences are known.

Every reader u draws books without replacement with probability proportional to exp(s(u, b)),
where s(u, b) = pop_b + beta * taste_u . genre_b + quality_b. Books carry a sparse genre mix
(inherited from their author) and readers a sparse taste over the same genres. The
popularity term is calibrated so that the number of ratings per book follows the skewed
curve of the real dataset by popularity rank (book_id 1 the most popular). The first draws
of a reader are their ratings (in a random time order), the next ones their to-read shelf.
Ratings grow with the affinity and follow each book's rating mix.

Sampling uses the Gumbel-top-k trick: the k largest of s(u, b) + Gumbel noise are a draw of
k books without replacement with those weights, computed for a block of readers over the
whole catalogue at once. Every block has its own random stream, so the output does not
depend on how many threads ran it.
"""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
import zipfile
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv
import scipy.sparse as sp
from scipy.optimize import brentq
from scipy.special import ndtr, ndtri

from models.schema import (
    ALL_FILES,
    BOOK_ID,
    BOOK_TAGS_COLUMNS,
    BOOK_TAGS_FILE,
    BOOKS_COLUMNS,
    BOOKS_FILE,
    GOODREADS_BOOK_ID,
    RATINGS_COLUMNS,
    RATINGS_FILE,
    TAG_ID,
    TAG_NAME,
    TAGS_COLUMNS,
    TAGS_FILE,
    TO_READ_COLUMNS,
    TO_READ_FILE,
    DatasetError,
)

Progress = Callable[[str, float], None]

TRUTH_FILE = "truth.npz"
MANIFEST_FILE = "generator.json"
GENERATOR_VERSION = 1

# --- figures of the real goodbooks-10k that the output reproduces ------------------------
FULL_USERS = 53_424
FULL_BOOKS = 10_000
FULL_RATINGS = 5_976_479
# Ratings per book by popularity rank: the real quartiles, extremes and mean.
BOOK_COUNT_MAX = 22_806
BOOK_COUNT_QUARTILES = (503.0, 248.0, 155.0)  # at rank fractions 0.25, 0.5, 0.75
# The tail eases towards the real minimum of 8 instead of dropping linearly from 155.
BOOK_COUNT_TAIL = ((0.95, 92.0), (0.995, 45.0), (1.0, 8.0))
# Ratings per reader: a Student-t, wider above its centre than below (the real counts lean
# right), fitted to mean 111.9, sd 26.1, quartiles 96/111/128 and clipped to 19..200.
READER_COUNT_T = (7.0, 110.9, 21.5, 23.5)  # degrees of freedom, centre, scale below, above
READER_COUNT_RANGE = (19, 200)
RATING_MIX = (0.0208, 0.0601, 0.2294, 0.3579, 0.3318)  # ones .. fives
TO_READ_SHARE = 48_871 / FULL_USERS  # readers with a to-read shelf
TO_READ_MEAN = 912_705 / 48_871  # shelf size of those readers
TO_READ_MAX = 200
N_TAGS = 34_252
TAGS_PER_BOOK = 100

# --- the planted model -------------------------------------------------------------------
GENRES = (
    "fantasy",
    "young-adult",
    "romance",
    "mystery",
    "thriller",
    "science-fiction",
    "historical-fiction",
    "contemporary",
    "classics",
    "non-fiction",
    "paranormal",
    "horror",
    "dystopia",
    "biography",
    "humor",
    "childrens",
    "philosophy",
    "poetry",
    "self-help",
    "graphic-novels",
)
# How common each genre is among readers and authors (same order as GENRES).
GENRE_WEIGHTS = np.array(
    [1.8, 1.6, 1.5, 1.3, 1.2, 1.1, 1.1, 1.0, 1.0, 0.9, 0.7, 0.6, 0.6, 0.5, 0.5, 0.5, 0.35,
     0.3, 0.3, 0.3]
)
NON_FICTION = frozenset({"non-fiction", "biography", "philosophy", "self-help"})
GENERIC_TAGS = (
    "to-read",
    "currently-reading",
    "favorites",
    "fiction",
    "owned",
    "books-i-own",
    "kindle",
    "library",
    "ebook",
    "re-read",
    "default",
    "audiobook",
)
TASTE_STRENGTH = 12.0  # beta: log-weight gained by a book exactly matching a reader's taste
READER_TASTE_CONCENTRATION = 0.1  # small: most readers care for one to three genres
AUTHOR_GENRE_CONCENTRATION = 0.15  # small: an author keeps to one or two genres
BOOK_GENRE_CONCENTRATION = 8.0  # how closely a book follows its author's genres
RATING_AFFINITY_WEIGHT = 0.55  # correlation of the latent rating with the affinity
RATING_QUALITY_SHIFT = 0.35  # how far a synthetic book's quality moves its rating mix

CHUNK_READERS = 1024  # readers drawn at once: 1024 x 10,000 float32 keys are 40 MB
CALIBRATION_READERS = 4096  # the sample the first popularity rounds are fitted on
CALIBRATION_ROUNDS = 4
SAMPLE_PSEUDO_COUNT = 5.0  # added to target and count in the sample rounds (see there)
FULL_CALIBRATION_ROUNDS = 2  # rounds on every reader's real draws
CORRECTION_LIMIT = 0.3  # largest log-popularity change the full-size rounds may make
SHORTLIST_MARGIN = 256  # books kept per reader beyond the most any reader of a block draws

# Independent random streams, one per purpose (and per block of readers).
_STREAM_CATALOGUE, _STREAM_READERS, _STREAM_CALIBRATION, _STREAM_DRAWS = 1, 2, 3, 4
_STREAM_RATINGS, _STREAM_TIMES, _STREAM_TAGS, _STREAM_METADATA = 5, 6, 7, 8
_STREAM_ORDER = 9


@dataclass(frozen=True)
class GeneratedDataset:
    """Where a generated dataset was written and how big it came out."""

    directory: Path
    files: dict[str, Path]
    n_users: int
    n_books: int
    n_ratings: int
    n_to_read: int
    n_tags: int
    n_book_tags: int

    @property
    def truth_path(self) -> Path:
        """The planted model, readable with load_truth(directory)."""
        return self.directory / TRUTH_FILE


@dataclass(frozen=True)
class PlantedTruth:
    """The model the data was drawn from; arrays are indexed by user_id - 1 and book_id - 1."""

    genres: tuple[str, ...]
    taste: np.ndarray  # float32 [n_users, n_genres], rows sum to 1
    genre_mix: np.ndarray  # float32 [n_books, n_genres], rows sum to 1
    popularity: np.ndarray  # float32 [n_books]
    quality: np.ndarray  # float32 [n_books]
    author: np.ndarray  # int32 [n_books], author index
    beta: float

    @property
    def n_users(self) -> int:
        """Number of readers."""
        return int(self.taste.shape[0])

    @property
    def n_books(self) -> int:
        """Number of books."""
        return int(self.genre_mix.shape[0])

    def scores(self, user_ids: np.ndarray, book_ids: np.ndarray | None = None) -> np.ndarray:
        """True log-weights s(u, b), float32 [len(user_ids), n_books or len(book_ids)]."""
        users = _index_of(user_ids, self.n_users, "user_id")
        if book_ids is None:
            mix, offset = self.genre_mix, self.popularity + self.quality
        else:
            books = _index_of(book_ids, self.n_books, "book_id")
            mix, offset = self.genre_mix[books], (self.popularity + self.quality)[books]
        # Same float32 operations, in the same order, as the sampler.
        out = (np.float32(self.beta) * self.taste[users]) @ mix.T
        out += offset
        return out


def _index_of(ids: np.ndarray, n: int, name: str) -> np.ndarray:
    """Turn 1-based dataset ids into 0-based row indices, rejecting ids outside 1..n."""
    idx = np.asarray(ids, dtype=np.int64).ravel() - 1
    if idx.size and (idx.min() < 0 or idx.max() >= n):
        raise ValueError(f"{name}s must lie in 1..{n}; got {idx.min() + 1}..{idx.max() + 1}")
    return idx


def load_truth(directory: Path) -> PlantedTruth:
    """Read the planted model that generate_goodbooks wrote into directory."""
    path = Path(directory) / TRUTH_FILE
    if not path.is_file():
        raise DatasetError(
            f"{directory} has no {TRUTH_FILE}: only generated datasets carry a planted truth"
        )
    with np.load(path, allow_pickle=False) as data:
        return PlantedTruth(
            genres=tuple(str(g) for g in data["genres"]),
            taste=data["taste"],
            genre_mix=data["genre_mix"],
            popularity=data["popularity"],
            quality=data["quality"],
            author=data["author"],
            beta=float(data["beta"]),
        )


def oracle_top_k(
    truth: PlantedTruth, user_ids: np.ndarray, exclude: sp.csr_matrix | None, k: int
) -> np.ndarray:
    """The k best book_ids per reader by true score, int64 [len(user_ids), k].

    exclude holds one row per entry of user_ids (same order) and one column per book
    (column book_id - 1); its nonzero entries are never recommended.
    """
    users = np.asarray(user_ids, dtype=np.int64).ravel()
    n_books = truth.n_books
    if not 1 <= k <= n_books:
        raise ValueError(f"k must lie in 1..{n_books}; got {k}")
    if exclude is not None:
        exclude = sp.csr_matrix(exclude, copy=True)
        exclude.eliminate_zeros()  # stored zeros are not interactions
        if exclude.shape != (len(users), n_books):
            raise ValueError(
                f"exclude must have one row per reader and one column per book, "
                f"shape {(len(users), n_books)}; got {exclude.shape}"
            )
    out = np.empty((len(users), k), dtype=np.int64)
    for start in range(0, len(users), CHUNK_READERS):
        stop = min(start + CHUNK_READERS, len(users))
        scores = truth.scores(users[start:stop])
        if exclude is not None:
            block = exclude[start:stop].tocoo()
            scores[block.row, block.col] = -np.inf
        top = np.argpartition(scores, n_books - k, axis=1)[:, n_books - k :]
        order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1, kind="stable")
        out[start:stop] = np.take_along_axis(top, order, axis=1) + 1
    return out


# --- entry point -------------------------------------------------------------------------


def generate_goodbooks(
    out_dir: Path,
    n_users: int = FULL_USERS,
    n_books: int = FULL_BOOKS,
    seed: int = 42,
    books_csv: Path | None = None,
    tags_csv: Path | None = None,
    progress: Progress | None = None,
) -> GeneratedDataset:
    """Write a goodbooks-10k-shaped dataset (five CSVs, truth.npz, generator.json) to out_dir."""
    if n_users < 1:
        raise ValueError(f"n_users must be at least 1; got {n_users}")
    if n_books < 10:
        raise ValueError(f"n_books must be at least 10; got {n_books}")
    report = progress or (lambda stage, fraction: None)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    root = np.random.SeedSequence(seed)

    report("catalogue", 0.0)
    real_books = _read_real_books(books_csv, n_books) if books_csv is not None else None
    catalogue = _build_catalogue(n_books, _rng(root, _STREAM_CATALOGUE), real_books)
    readers = _draw_readers(n_users, n_books, _rng(root, _STREAM_READERS))
    targets = book_count_targets(n_books, int(readers.n_rated.sum()), n_users)
    report("catalogue", 1.0)

    popularity, shortlist = _calibrate_popularity(catalogue, readers, targets, root, report)
    draws = _draw_all(catalogue, readers, popularity, root, report, shortlist)

    report("ratings", 0.0)
    thresholds = _base_thresholds(catalogue)
    ratings, thresholds = _rate(draws, thresholds, _rng(root, _STREAM_RATINGS))
    order = _time_order(readers.n_rated, _rng(root, _STREAM_TIMES))
    report("ratings", 1.0)

    report("metadata", 0.0)
    tags = _build_tags(_read_real_tags(tags_csv) if tags_csv is not None else None)
    books = _books_table(catalogue, real_books, targets, thresholds, n_users, root)
    book_tags = _book_tags_table(catalogue, books, tags, _rng(root, _STREAM_TAGS))
    report("metadata", 1.0)

    truth = PlantedTruth(
        genres=GENRES,
        taste=readers.taste,
        genre_mix=catalogue.genre_mix,
        popularity=popularity,
        quality=catalogue.quality,
        author=catalogue.author,
        beta=TASTE_STRENGTH,
    )
    files = _write_files(out_dir, draws, ratings, order, books, tags, book_tags, report)
    _write_truth(out_dir / TRUTH_FILE, truth)
    counts = {
        "users": n_users,
        "books": n_books,
        "ratings": int(len(ratings)),
        "to_read": int(len(draws.to_read_user)),
        "to_read_users": int(np.count_nonzero(readers.n_to_read)),
        "tags": len(tags.ids),
        "book_tags": int(len(book_tags[0])),
    }
    manifest = {
        "generator_version": GENERATOR_VERSION,
        "seed": seed,
        "parameters": {
            "n_users": n_users,
            "n_books": n_books,
            "beta": TASTE_STRENGTH,
            "genres": list(GENRES),
            "books_source": "books.csv" if real_books is not None else "synthetic",
            "tags_source": tags.source,
        },
        "counts": counts,
    }
    # No timestamps or paths: equal seeds must give equal bytes.
    (out_dir / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    report("writing", 1.0)
    return GeneratedDataset(
        directory=out_dir,
        files=files,
        n_users=n_users,
        n_books=n_books,
        n_ratings=counts["ratings"],
        n_to_read=counts["to_read"],
        n_tags=counts["tags"],
        n_book_tags=counts["book_tags"],
    )


def _write_files(
    out_dir: Path,
    draws: _Draws,
    ratings: np.ndarray,
    order: np.ndarray,
    books: _Books,
    tags: _Tags,
    book_tags: tuple[np.ndarray, np.ndarray, np.ndarray],
    report: Progress,
) -> dict[str, Path]:
    """Write the five goodbooks CSVs; ratings in global time order."""
    files = {name: out_dir / name for name in ALL_FILES}
    steps: list[Callable[[], None]] = [
        lambda: _write_ints(
            files[RATINGS_FILE],
            RATINGS_COLUMNS,
            (draws.user[order] + 1, draws.book[order] + 1, ratings[order]),
        ),
        lambda: _write_ints(
            files[TO_READ_FILE], TO_READ_COLUMNS, (draws.to_read_user + 1, draws.to_read_book + 1)
        ),
        lambda: _write_text(files[BOOKS_FILE], BOOKS_COLUMNS, books.rows),
        lambda: _write_text(files[TAGS_FILE], TAGS_COLUMNS, tags.rows()),
        lambda: _write_ints(files[BOOK_TAGS_FILE], BOOK_TAGS_COLUMNS, book_tags),
    ]
    for i, step in enumerate(steps):
        report("writing", i / (len(steps) + 1))
        step()
    return files


def _rng(root: np.random.SeedSequence, *key: int) -> np.random.Generator:
    """A generator for one purpose, independent of every other purpose's stream."""
    # SFC64 fills the large noise blocks about a third faster than the default PCG64.
    sequence = np.random.SeedSequence(root.entropy, spawn_key=tuple(root.spawn_key) + key)
    return np.random.Generator(np.random.SFC64(sequence))


# --- target curves -----------------------------------------------------------------------


def book_count_targets(n_books: int, n_ratings: int, n_users: int) -> np.ndarray:
    """Expected ratings per book (book_id order = popularity order) summing to n_ratings."""
    shape = _full_size_curve((np.arange(n_books) + 0.5) / n_books)
    targets = shape * (n_ratings / shape.sum())
    # In the real data the top book reaches 43% of the readers; a small reader base cannot
    # hold the full-size curve, so cap books at half the readers and spread the excess.
    cap = 0.5 * n_users
    for _ in range(50):
        over = targets > cap
        if not over.any():
            break
        excess = (targets[over] - cap).sum()
        targets[over] = cap
        free = targets < cap
        if not free.any():
            break
        targets[free] += excess * targets[free] / targets[free].sum()
    return targets


def _full_size_curve(x: np.ndarray) -> np.ndarray:
    """Ratings per book at full size as a function of popularity rank fraction x in (0, 1)."""
    q25, q50, q75 = BOOK_COUNT_QUARTILES
    tail_x = np.array([0.25, 0.5, 0.75] + [p for p, _ in BOOK_COUNT_TAIL])
    tail_y = np.log([q25, q50, q75] + [c for _, c in BOOK_COUNT_TAIL])
    n_head = FULL_BOOKS // 4
    full_x = (np.arange(FULL_BOOKS) + 0.5) / FULL_BOOKS
    tail_sum = np.exp(np.interp(full_x[n_head:], tail_x, tail_y)).sum()
    head_sum = FULL_RATINGS - tail_sum
    head_ranks = np.arange(1, n_head + 1)

    # The head is a shifted power law from the top count down to the upper quartile; the
    # shift is chosen so that the whole curve has the real mean.
    def exponent(shift: float) -> float:
        return np.log(BOOK_COUNT_MAX / q25) / np.log((n_head + 0.5 + shift) / (1 + shift))

    def head(rank: np.ndarray, shift: float) -> np.ndarray:
        return q25 * ((rank + shift) / (n_head + 0.5 + shift)) ** (-exponent(shift))

    shift = brentq(lambda s: head(head_ranks, s).sum() - head_sum, 0.0, 5000.0)
    rank = x * FULL_BOOKS + 0.5
    return np.where(
        x < 0.25, head(rank, shift), np.exp(np.interp(x, tail_x, tail_y))
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


# --- sampling ----------------------------------------------------------------------------


def _chunks(n: int, size: int = CHUNK_READERS) -> list[tuple[int, int]]:
    """Consecutive [start, stop) blocks of at most size readers."""
    return [(start, min(start + size, n)) for start in range(0, n, size)]


def _keys(
    taste: np.ndarray, catalogue: _Catalogue, offset: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """s(u, b) + Gumbel noise for a block of readers, float32 [readers, books]."""
    keys = (np.float32(TASTE_STRENGTH) * taste) @ catalogue.genre_mix.T
    keys += offset
    noise = rng.random(keys.shape, dtype=np.float32)
    # Gumbel = -log(-log(U)); U == 0 gives -inf noise, i.e. a book never drawn first.
    with np.errstate(divide="ignore"):
        np.log(noise, out=noise)
        np.negative(noise, out=noise)
        np.log(noise, out=noise)
    keys -= noise
    return keys


def _top_sorted(keys: np.ndarray, k: int) -> np.ndarray:
    """Column indices of the k largest keys per row, largest first, int32 [rows, k]."""
    n = keys.shape[1]
    top = np.argpartition(keys, n - k, axis=1)[:, n - k :]
    order = np.argsort(-np.take_along_axis(keys, top, axis=1), axis=1, kind="stable")
    return np.take_along_axis(top, order, axis=1).astype(np.int32)


def _map_blocks(
    blocks: list[tuple[int, int]],
    work: Callable[[int, int, int], object],
) -> Iterator[object]:
    """Run work(i, start, stop) for each block on a thread pool, yielding results in order."""
    workers = max(1, min(4, os.cpu_count() or 1))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(work, i, a, b) for i, (a, b) in enumerate(blocks)]
        for future in futures:
            yield future.result()


def _calibrate_popularity(
    catalogue: _Catalogue,
    readers: _Readers,
    targets: np.ndarray,
    root: np.random.SeedSequence,
    report: Progress,
) -> tuple[np.ndarray, _Shortlist | None]:
    """Find pop_b so that the ratings per book meet the targets (fixed-point rounds).

    Rounds on a sample of readers get close cheaply. The full-size rounds count the real
    draws (the final pass's noise), so the sample's noise does not smear the curve: the
    first draws everyone and keeps a shortlist of each reader's best books, the others
    re-rank the shortlist, and so does the final pass.
    """
    n_rounds = CALIBRATION_ROUNDS + FULL_CALIBRATION_ROUNDS
    report("calibration", 0.0)
    popularity = _calibrate_on_sample(catalogue, readers, targets, root, report, n_rounds)
    log_target = np.log(targets + 0.5)
    shortlist: _Shortlist | None = None
    for round_ in range(FULL_CALIBRATION_ROUNDS):
        report("calibration", (CALIBRATION_ROUNDS + round_) / n_rounds)
        counts = None if shortlist is None else _count_shortlisted(shortlist, readers, popularity)
        if counts is None:
            counts, shortlist = _count_rated(catalogue, readers, popularity, root)
        step = log_target - np.log(counts + 0.5)
        # Popularity stays within a small step of the shortlist's, so the shortlist stays
        # valid; the sample rounds made the large steps.
        moved = popularity + step - shortlist.popularity
        limit = np.float32(CORRECTION_LIMIT)
        popularity = shortlist.popularity + np.clip(moved, -limit, limit).astype(np.float32)
    report("calibration", 1.0)
    # Popularity is defined up to a constant; centred, the truth is easier to read.
    return (popularity - popularity.mean()).astype(np.float32), shortlist


def _calibrate_on_sample(
    catalogue: _Catalogue,
    readers: _Readers,
    targets: np.ndarray,
    root: np.random.SeedSequence,
    report: Progress,
    n_rounds: int,
) -> np.ndarray:
    """Fixed-point rounds for pop_b on the first readers, with their noise held fixed."""
    n_cal = min(len(readers.n_rated), CALIBRATION_READERS)
    blocks = _chunks(n_cal)
    n_rated = readers.n_rated[:n_cal]
    # A pseudo-count keeps books the sample barely sees from being pushed around by one or
    # two chance draws; the full-size rounds fit those.
    log_target = np.log(targets * (n_rated.sum() / targets.sum()) + SAMPLE_PSEUDO_COUNT)

    # Readers' affinities and noise stay fixed across rounds (common random numbers), so
    # the rounds converge instead of chasing fresh noise; only the offset changes.
    def base(i: int, start: int, stop: int) -> np.ndarray:
        zero = np.zeros(catalogue.n_books, dtype=np.float32)
        return _keys(readers.taste[start:stop], catalogue, zero, _rng(root, _STREAM_CALIBRATION, i))

    bases = list(_map_blocks(blocks, base))
    popularity = (np.log(targets) - catalogue.quality).astype(np.float32)
    for round_ in range(CALIBRATION_ROUNDS):
        report("calibration", round_ / n_rounds)

        def count(
            i: int, start: int, stop: int, offset: np.ndarray = popularity + catalogue.quality
        ) -> np.ndarray:
            keys = bases[i] + offset
            return _rated_histogram(_top_sorted(keys, int(n_rated[start:stop].max())),
                                    n_rated[start:stop], catalogue.n_books)

        counts = np.sum(list(_map_blocks(blocks, count)), axis=0)
        step = log_target - np.log(counts + SAMPLE_PSEUDO_COUNT)
        popularity = (popularity + step).astype(np.float32)
    return (popularity - popularity.mean()).astype(np.float32)


def _rated_histogram(top: np.ndarray, n_rated: np.ndarray, n_books: int) -> np.ndarray:
    """Ratings per book when each reader rates the first n_rated of their ranked draws."""
    taken = np.arange(top.shape[1])[None, :] < n_rated[:, None]
    return np.bincount(top[taken], minlength=n_books)


@dataclass(frozen=True)
class _Shortlist:
    """Per block of readers, each reader's best books under one popularity.

    Every book left out has a key of at most floor, so after popularity moves by delta the
    draw can be redone from the shortlist alone wherever the k-th best shortlisted key still
    beats floor + max(delta).
    """

    popularity: np.ndarray  # float32 [n_books], the popularity the keys were computed with
    books: list[np.ndarray]  # int32 [readers, width], best first
    keys: list[np.ndarray]  # float32 [readers, width]
    floor: list[np.ndarray]  # float32 [readers]


def _count_rated(
    catalogue: _Catalogue, readers: _Readers, popularity: np.ndarray, root: np.random.SeedSequence
) -> tuple[np.ndarray, _Shortlist]:
    """Ratings per book that the final pass would draw with this popularity, and a shortlist."""
    offset = popularity + catalogue.quality
    n_books = catalogue.n_books

    def count(i: int, start: int, stop: int) -> tuple[np.ndarray, ...]:
        keys = _keys(readers.taste[start:stop], catalogue, offset, _rng(root, _STREAM_DRAWS, i))
        n_rated = readers.n_rated[start:stop]
        most = int((n_rated + readers.n_to_read[start:stop]).max())
        width = min(n_books, most + SHORTLIST_MARGIN)
        top = _top_sorted(keys, width)
        best = np.take_along_axis(keys, top, axis=1)
        floor = best[:, -1] if width < n_books else np.full(len(top), -np.inf, np.float32)
        return _rated_histogram(top, n_rated, n_books), top, best, floor

    parts = list(_map_blocks(_chunks(len(readers.n_rated)), count))
    counts = np.sum([p[0] for p in parts], axis=0)
    shortlist = _Shortlist(
        popularity=popularity,
        books=[p[1] for p in parts],  # type: ignore[misc]
        keys=[p[2] for p in parts],  # type: ignore[misc]
        floor=[p[3] for p in parts],  # type: ignore[misc]
    )
    return counts, shortlist


def _count_shortlisted(
    shortlist: _Shortlist, readers: _Readers, popularity: np.ndarray
) -> np.ndarray | None:
    """Ratings per book under a new popularity, from the shortlist; None if not provable."""
    n_books = len(popularity)
    need = readers.n_rated + readers.n_to_read

    def count(i: int, start: int, stop: int) -> np.ndarray | None:
        top = _rerank(shortlist, i, popularity, need[start:stop])
        return None if top is None else _rated_histogram(top, readers.n_rated[start:stop], n_books)

    parts = list(_map_blocks(_chunks(len(need)), count))
    if any(part is None for part in parts):
        return None
    return np.sum(parts, axis=0)


def _rerank(
    shortlist: _Shortlist, i: int, popularity: np.ndarray, need: np.ndarray
) -> np.ndarray | None:
    """Block i's top draws under a new popularity from the shortlist; None if not provable."""
    delta = popularity - shortlist.popularity
    books = shortlist.books[i]
    keys = shortlist.keys[i] + delta[books]
    order = np.argsort(-keys, axis=1, kind="stable")
    books = np.take_along_axis(books, order, axis=1)
    keys = np.take_along_axis(keys, order, axis=1)
    kth = keys[np.arange(len(keys)), need - 1]
    if not np.all(kth > shortlist.floor[i] + delta.max()):
        return None
    return books[:, : int(need.max())]


@dataclass(frozen=True)
class _Draws:
    """Rated pairs (in each reader's time order) with their affinity, and to-read pairs."""

    user: np.ndarray  # int32, 0-based, grouped by reader
    book: np.ndarray  # int32, 0-based
    affinity: np.ndarray  # float32, beta * taste . genre
    to_read_user: np.ndarray
    to_read_book: np.ndarray


def _draw_all(
    catalogue: _Catalogue,
    readers: _Readers,
    popularity: np.ndarray,
    root: np.random.SeedSequence,
    report: Progress,
    shortlist: _Shortlist | None,
) -> _Draws:
    """Draw every reader's rated books and to-read shelf, block by block."""
    offset = popularity + catalogue.quality
    blocks = _chunks(len(readers.n_rated))

    def draw(i: int, start: int, stop: int) -> tuple[np.ndarray, ...]:
        n_rated = readers.n_rated[start:stop]
        n_shelf = readers.n_to_read[start:stop]
        k = int((n_rated + n_shelf).max())
        top = None if shortlist is None else _rerank(shortlist, i, popularity, n_rated + n_shelf)
        if top is None:
            # Same stream as the calibration round: the same noise, drawn again in full.
            keys = _keys(readers.taste[start:stop], catalogue, offset, _rng(root, _STREAM_DRAWS, i))
            top = _top_sorted(keys, k)
        col = np.arange(k)[None, :]
        rated = col < n_rated[:, None]
        # The reader's time order is a random permutation of the drawn set.
        when = np.where(rated, _rng(root, _STREAM_ORDER, i).random(top.shape), np.inf)
        order = np.argsort(when, axis=1, kind="stable")
        top_timed = np.take_along_axis(top, order, axis=1)
        rows = np.repeat(np.arange(start, stop, dtype=np.int32), n_rated)
        books = top_timed[col < n_rated[:, None]]
        affinity = np.einsum(
            "ij,ij->i", np.float32(TASTE_STRENGTH) * readers.taste[rows], catalogue.genre_mix[books]
        ).astype(np.float32)
        shelf = (col >= n_rated[:, None]) & (col < (n_rated + n_shelf)[:, None])
        shelf_rows = np.repeat(np.arange(start, stop, dtype=np.int32), n_shelf)
        return rows, books, affinity, shelf_rows, top[shelf]

    parts: list[tuple[np.ndarray, ...]] = []
    report("readers", 0.0)
    for j, part in enumerate(_map_blocks(blocks, draw)):
        parts.append(part)  # type: ignore[arg-type]
        report("readers", (j + 1) / len(blocks))
    return _Draws(*(np.concatenate([p[f] for p in parts]) for f in range(5)))


# --- ratings and time order --------------------------------------------------------------


def _base_thresholds(catalogue: _Catalogue) -> np.ndarray:
    """Per-book cut points of a standard-normal latent rating, float64 [n_books, 4]."""
    if catalogue.rating_mix is not None:
        cumulative = np.cumsum(catalogue.rating_mix, axis=1)[:, :4]
        return ndtri(np.clip(cumulative, 1e-4, 1 - 1e-4))
    base = ndtri(np.cumsum(RATING_MIX)[:4])
    quality = (catalogue.quality - catalogue.quality.mean()) / catalogue.quality.std()
    return base[None, :] - RATING_QUALITY_SHIFT * quality[:, None]


def _rate(
    draws: _Draws, thresholds: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Ratings 1..5 (int8) of the drawn pairs and the final per-book cut points."""
    affinity = draws.affinity.astype(np.float64)
    affinity = (affinity - affinity.mean()) / max(affinity.std(), 1e-9)
    w = RATING_AFFINITY_WEIGHT
    latent = w * affinity + np.sqrt(1 - w * w) * rng.standard_normal(len(affinity))
    # Shift each cut point by one constant so the overall mix is the real one, whatever
    # the books' own mixes and the readers' affinities add up to.
    target = np.cumsum(RATING_MIX)[:4]
    shift = np.array(
        [np.quantile(latent - thresholds[draws.book, j], target[j]) for j in range(4)]
    )
    thresholds = np.sort(thresholds + shift[None, :], axis=1)
    ratings = np.ones(len(latent), dtype=np.int8)
    for j in range(4):
        ratings += latent > thresholds[draws.book, j]
    return ratings, thresholds


def _time_order(n_rated: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Row order putting every rating in global time order, readers interleaved.

    Reader i starts before reader i + 1 (user ids follow first appearance, as in the real
    file) and rates in sessions: bursts of close ratings separated by long breaks.
    """
    n_users = len(n_rated)
    start = np.sort(rng.random(n_users))
    span = (1.0 - start) * rng.beta(1.5, 1.5, n_users)
    total = int(n_rated.sum())
    # Within a session ratings are a tiny fraction of the reader's span apart, so they come
    # out as consecutive rows, as in the real file.
    gaps = rng.standard_exponential(total) * np.where(rng.random(total) < 0.08, 1.0, 1e-6)
    first = np.concatenate([[0], np.cumsum(n_rated)[:-1]])
    gaps[first] = 0.0  # the first rating of a reader falls at the reader's start
    elapsed = np.cumsum(gaps)
    elapsed -= np.repeat(elapsed[first], n_rated)
    reader_total = np.repeat(np.maximum(elapsed[first + n_rated - 1], 1e-12), n_rated)
    when = np.repeat(start, n_rated) + np.repeat(span, n_rated) * elapsed / reader_total
    return np.argsort(when, kind="stable")


# --- metadata ----------------------------------------------------------------------------

_FIRST_NAMES = (
    "Anna Ben Clara David Elena Frank Grace Henry Iris Jack Karen Leo Maria Nathan Olivia "
    "Peter Quinn Rosa Samuel Tara Umar Vera William Xenia Yusuf Zoe Alice Brian Chloe Daniel "
    "Emma Felix Hannah Isaac Julia Kevin Laura Martin Nora Oscar Paula Ruth Simon Teresa "
    "Victor Wendy Adam Bella Carlos Diana Ethan Fiona George Helen Ivan Jane Louis Mary Neil"
).split()
_LAST_NAMES = (
    "Abbott Baker Carter Dalton Ellis Foster Garcia Hughes Ingram Jensen Keller Lawson "
    "Moreno Nolan Owens Parker Quincy Reyes Sawyer Turner Underwood Vaughn Walsh Young "
    "Zimmer Archer Blake Cole Duncan Everett Fletcher Gibson Harper Irving Jordan Kline "
    "Lambert Mercer Norris Oliver Pierce Ramsey Shelton Thornton Upton Vance Whitaker Yates "
    "Adler Bishop Crane Doyle Emerson Finch Grant Hale Ives Joyce Knox Lowell Marsh Nash "
    "Orwell Price Reed Stone Tate Vale Wilde Wren Brooks Chase Dunn Frost Grey Hart Lane"
).split()
_ADJECTIVES = (
    "Silent Lost Hidden Broken Golden Last Burning Secret Forgotten Wild Dark Bright Quiet "
    "Distant Crimson Winter Summer Endless Fallen Glass Iron Paper Hollow Midnight Little "
    "Stolen Shining Empty Sacred Drowned"
).split()
_NOUNS = (
    "House Garden River Sea Crown Road Night Girl Boy City Light Storm Fire Shadow Star "
    "Heart Mountain Island Letter Song Queen King Forest Door Mirror Bridge Clock Raven "
    "Daughter Promise Kingdom Memory Harbor Orchard Lantern Winter Journey Empire Station"
).split()
_PLACES = (
    "Paris", "Venice", "the North", "the Valley", "Avalon", "Brooklyn", "Kyoto", "Cairo",
    "the Dark", "Ashford", "Meridian", "Eden", "Salem", "Lisbon",
)
_LANGUAGES = (
    ("eng", 0.634), ("en-US", 0.207), ("", 0.108), ("en-GB", 0.026), ("ara", 0.0064),
    ("en-CA", 0.0058), ("fre", 0.0025), ("ind", 0.0021), ("spa", 0.002), ("ger", 0.0013),
    ("jpn", 0.0007), ("per", 0.0007), ("por", 0.0006), ("pol", 0.0006), ("en", 0.0004),
    ("nor", 0.0003), ("dan", 0.0003), ("ita", 0.0002),
)
_NO_PHOTO = "https://s.gr-assets.com/assets/nophoto/book/111x148-bcc042a9c91a29c1d680899eff700a03.png"
_NO_PHOTO_SMALL = "https://s.gr-assets.com/assets/nophoto/book/50x75-a91bf249278a81aabab721ef782c4a74.png"


@dataclass(frozen=True)
class _Books:
    """books.csv as text rows, and each book's goodreads id and audience size."""

    rows: list[list[str]]
    goodreads_id: np.ndarray  # int64 [n_books]
    ratings_count: np.ndarray  # float64 [n_books], goodreads-level audience


def _books_table(
    catalogue: _Catalogue,
    real: _RealBooks | None,
    targets: np.ndarray,
    thresholds: np.ndarray,
    n_users: int,
    root: np.random.SeedSequence,
) -> _Books:
    """The books.csv rows: the real ones verbatim, or plausible synthetic metadata."""
    if real is not None:
        table = real.table
        return _Books(
            rows=table.to_numpy().tolist(),
            goodreads_id=table[GOODREADS_BOOK_ID].astype(np.int64).to_numpy(),
            ratings_count=table["ratings_count"].astype(np.float64).to_numpy(),
        )
    rng = _rng(root, _STREAM_METADATA)
    n = catalogue.n_books
    # Goodreads-level audience: about 90 goodreads ratings per goodbooks rating at full
    # size, sorted so that book_id order is popularity order as in the real file.
    full_targets = targets * (FULL_USERS / n_users)
    work_ratings = np.sort(full_targets * 90 * rng.lognormal(0.0, 0.3, n))[::-1]
    work_ratings = np.maximum(np.rint(work_ratings), 2500)
    mix = np.diff(ndtr(np.column_stack([np.full(n, -np.inf), thresholds, np.full(n, np.inf)])))
    stars = np.rint(work_ratings[:, None] * mix).astype(np.int64)
    work_total = stars.sum(axis=1)
    ratings_count = np.rint(work_total * rng.uniform(0.85, 1.0, n)).astype(np.int64)
    reviews = np.rint(work_total * 0.03 * rng.lognormal(0.0, 0.4, n)).astype(np.int64)
    average = stars @ np.arange(1, 6) / work_total

    goodreads_id = rng.choice(33_288_638, size=n, replace=False) + 1
    work_id = rng.choice(56_399_597, size=n, replace=False) + 87
    books_count = np.maximum(1, np.rint(rng.lognormal(np.log(40), 0.9, n))).astype(np.int64)
    isbn_digits = rng.integers(10_000_000, 9_999_999_999, n)
    has_isbn = rng.random(n) > 0.07
    isbn_x = rng.random(n) < 0.05
    photo_stamp = rng.integers(1_100_000_000, 1_500_000_000, n)
    has_photo = rng.random(n) > 0.033

    names = _author_names(catalogue.n_authors, rng)
    co_author = rng.integers(0, catalogue.n_authors, n)
    has_co_author = rng.random(n) < 0.15
    primary = catalogue.genre_mix.argmax(axis=1)
    years = _years(primary, rng)
    languages = rng.choice(
        [c for c, _ in _LANGUAGES], size=n, p=_normalised([p for _, p in _LANGUAGES])
    )
    titles = _titles(catalogue.author, rng)

    rows: list[list[str]] = []
    for b in range(n):
        gid = int(goodreads_id[b])
        authors = names[catalogue.author[b]]
        if has_co_author[b] and co_author[b] != catalogue.author[b]:
            authors = f"{authors}, {names[co_author[b]]}"
        isbn = ""
        isbn13 = ""
        if has_isbn[b]:
            isbn = str(int(isbn_digits[b]))
            isbn = isbn[:-1] + "X" if isbn_x[b] else isbn
            isbn13 = f"{9_780_000_000_000 + int(isbn_digits[b]) % 1_000_000_000 * 10:.12g}"
        if has_photo[b]:
            image = f"https://images.gr-assets.com/books/{photo_stamp[b]}m/{gid}.jpg"
            small = f"https://images.gr-assets.com/books/{photo_stamp[b]}s/{gid}.jpg"
        else:
            image, small = _NO_PHOTO, _NO_PHOTO_SMALL
        title, original_title = titles[b]
        rows.append([
            str(b + 1),
            str(gid),
            str(gid),
            str(int(work_id[b])),
            str(int(books_count[b])),
            isbn,
            isbn13,
            authors,
            years[b],
            original_title,
            title,
            str(languages[b]),
            f"{average[b]:.2f}",
            str(int(ratings_count[b])),
            str(int(work_total[b])),
            str(int(reviews[b])),
            *(str(int(s)) for s in stars[b]),
            image,
            small,
        ])
    return _Books(rows=rows, goodreads_id=goodreads_id.astype(np.int64),
                  ratings_count=ratings_count.astype(np.float64))


def _normalised(weights: list[float]) -> np.ndarray:
    """Weights scaled to sum to one."""
    w = np.asarray(weights, dtype=np.float64)
    return w / w.sum()


def _author_names(n_authors: int, rng: np.random.Generator) -> list[str]:
    """Distinct author names; about a third carry a middle initial (more when names run out)."""
    n_pairs = len(_FIRST_NAMES) * len(_LAST_NAMES)
    initials = [f" {c}." for c in "ABCDEFGHJKLMNPRSTW"]
    n_plain = min(int(0.7 * n_authors), n_pairs)
    plain = rng.choice(n_pairs, size=n_plain, replace=False)
    # Names with an initial are numbered after the plain ones: pair * len(initials) + initial.
    n_initialled = n_pairs * len(initials)
    initialled = rng.choice(
        n_initialled, size=n_authors - n_plain, replace=n_authors - n_plain > n_initialled
    )
    names = []
    for code in rng.permutation(np.concatenate([plain, n_pairs + initialled])):
        code = int(code)
        pair, initial = (code, None) if code < n_pairs else divmod(code - n_pairs, len(initials))
        first, last = divmod(pair, len(_LAST_NAMES))
        middle = "" if initial is None else initials[initial]
        names.append(f"{_FIRST_NAMES[first]}{middle} {_LAST_NAMES[last]}")
    return names


def _years(primary_genre: np.ndarray, rng: np.random.Generator) -> list[str]:
    """Original publication years as the real file prints them ('2008.0', rarely empty)."""
    n = len(primary_genre)
    recent = 2017 - np.floor(rng.exponential(14.0, n))
    old = rng.integers(1800, 1960, n)
    is_old = np.isin(primary_genre, [GENRES.index("classics"), GENRES.index("poetry"),
                                     GENRES.index("philosophy")])
    year = np.where(is_old & (rng.random(n) < 0.8), old, np.maximum(recent, 1900))
    missing = rng.random(n) < 0.002
    return ["" if m else f"{float(y):.1f}" for y, m in zip(year, missing, strict=True)]


def _titles(author: np.ndarray, rng: np.random.Generator) -> list[tuple[str, str]]:
    """(title, original_title) per book; a third of the authors write series of up to six."""
    n = len(author)
    adjective = rng.integers(0, len(_ADJECTIVES), n)
    noun = rng.integers(0, len(_NOUNS), n)
    noun2 = rng.integers(0, len(_NOUNS), n)
    place = rng.integers(0, len(_PLACES), n)
    pattern = rng.integers(0, 4, n)
    writes_series = rng.random(int(author.max()) + 1) < 0.33
    # Series names for the b-th book of an author: one name per run of six books.
    series_adjective = rng.integers(0, len(_ADJECTIVES), n)
    series_noun = rng.integers(0, len(_NOUNS), n)
    written: dict[int, int] = {}
    series_name: dict[tuple[int, int], str] = {}
    out = []
    for b in range(n):
        first, second = _NOUNS[noun[b]], _NOUNS[noun2[b]]
        if pattern[b] == 0:
            base = f"The {_ADJECTIVES[adjective[b]]} {first}"
        elif pattern[b] == 1:
            base = f"The {first} of {_plural(second)}"
        elif pattern[b] == 2:
            article = "An" if first[0] in "AEIOU" else "A"
            base = f"{article} {first} in {_PLACES[place[b]]}"
        else:
            base = f"{_ADJECTIVES[adjective[b]]} {_plural(first)}"
        a = int(author[b])
        if not writes_series[a]:
            out.append((base, base))
            continue
        count = written.get(a, 0)
        written[a] = count + 1
        series, number = divmod(count, 6)
        name = series_name.setdefault(
            (a, series), f"{_ADJECTIVES[series_adjective[b]]} {_NOUNS[series_noun[b]]}"
        )
        out.append((f"{base} ({name}, #{number + 1})", base))
    return out


def _plural(noun: str) -> str:
    """English plural of the title nouns ('City' -> 'Cities', 'Boy' -> 'Boys')."""
    if noun.endswith("y") and noun[-2] not in "aeiou":
        return noun[:-1] + "ies"
    if noun.endswith(("s", "sh", "ch", "x")):
        return noun + "es"
    return noun + "s"


# --- tags --------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Tags:
    """The tag vocabulary and which ids stand for the genres and the generic shelves."""

    ids: np.ndarray  # int64 [n_tags]
    names: list[str]
    genre_ids: np.ndarray  # int64 [n_genres]
    generic_ids: dict[str, int]
    tail_ids: np.ndarray  # every other tag id
    source: str

    def rows(self) -> Iterator[list[str]]:
        """tags.csv rows as text."""
        for tag_id, name in zip(self.ids.tolist(), self.names, strict=True):
            yield [str(tag_id), name]


def _read_real_tags(path: Path) -> pd.DataFrame:
    """Read a real tags.csv (tag_id, tag_name)."""
    try:
        table = pd.read_csv(path, dtype={TAG_ID: np.int64, TAG_NAME: str}, keep_default_na=False)
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise DatasetError(f"cannot read tags file {path}: {exc}") from exc
    if list(table.columns) != list(TAGS_COLUMNS):
        raise DatasetError(f"{path} must have the columns {list(TAGS_COLUMNS)}")
    return table


def _build_tags(real: pd.DataFrame | None) -> _Tags:
    """Tag vocabulary: the real one when every genre has a tag of its name, else synthetic."""
    if real is not None:
        by_name = dict(zip(real[TAG_NAME], real[TAG_ID].astype(int), strict=True))
        if all(g in by_name for g in GENRES):
            genre_ids = np.array([by_name[g] for g in GENRES], dtype=np.int64)
            generic = {g: by_name[g] for g in GENERIC_TAGS if g in by_name}
            ids = real[TAG_ID].to_numpy(dtype=np.int64)
            special = np.concatenate([genre_ids, list(generic.values())])
            return _Tags(
                ids=ids,
                names=real[TAG_NAME].tolist(),
                genre_ids=genre_ids,
                generic_ids=generic,
                tail_ids=ids[~np.isin(ids, special)],
                source="tags.csv",
            )
    names = list(GENRES) + list(GENERIC_TAGS) + _synthetic_tag_names(
        N_TAGS - len(GENRES) - len(GENERIC_TAGS)
    )
    ids = np.arange(len(names), dtype=np.int64)
    n_special = len(GENRES) + len(GENERIC_TAGS)
    return _Tags(
        ids=ids,
        names=names,
        genre_ids=ids[: len(GENRES)],
        generic_ids={g: len(GENRES) + i for i, g in enumerate(GENERIC_TAGS)},
        tail_ids=ids[n_special:],
        source="synthetic",
    )


def _synthetic_tag_names(n: int) -> list[str]:
    """n distinct shelf-like names ('read-2014', 'summer-reading', 'owned-kindle', ...)."""
    heads = (
        "read owned my to favorite summer winter book-club school kindle audio library "
        "borrowed gift wish series reread adult teen kids classic modern dark cozy epic "
        "short long funny sad beach travel"
    ).split()
    tails = [w.lower() for w in _NOUNS + _ADJECTIVES] + list(GENRES) + [
        "reading", "books", "list", "shelf", "tbr", "faves", "stars", "picks", "club",
        "challenge", "owned", "ebooks", "audiobooks", "paperbacks", "hardcovers",
    ]
    years = [str(y) for y in range(1990, 2018)]
    names: list[str] = []
    seen: set[str] = set()

    def add(name: str) -> None:
        if name not in seen and name not in GENRES and name not in GENERIC_TAGS:
            seen.add(name)
            names.append(name)

    for h in heads:
        for t in tails + years:
            add(f"{h}-{t}")
    for h in heads:
        for t in tails:
            for y in years:
                if len(names) >= n:
                    return names[:n]
                add(f"{h}-{t}-{y}")
    i = 0
    while len(names) < n:
        add(f"shelf-{i}")
        i += 1
    return names[:n]


def _book_tags_table(
    catalogue: _Catalogue, books: _Books, tags: _Tags, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """book_tags columns (goodreads_book_id, tag_id, count), ~100 tags per book.

    Genre tags get high counts, a few generic shelves (to-read above all) come next and a
    long tail of shelf names (popular ones shared by many books) fills the rest.
    """
    n = catalogue.n_books
    audience = books.ratings_count
    gid_parts: list[np.ndarray] = []
    tag_parts: list[np.ndarray] = []
    count_parts: list[np.ndarray] = []

    def add(book: np.ndarray, tag: np.ndarray, count: np.ndarray) -> None:
        gid_parts.append(books.goodreads_id[book])
        tag_parts.append(np.asarray(tag, dtype=np.int64))
        count_parts.append(np.maximum(1, np.rint(count)).astype(np.int64))

    # Genre tags: every genre holding at least 5% of the book's mix.
    book, genre = np.nonzero(catalogue.genre_mix >= 0.05)
    weight = catalogue.genre_mix[book, genre]
    # Real shares of a book's goodreads ratings: a main genre tag ~0.8%, to-read ~3.5%.
    add(book, tags.genre_ids[genre], audience[book] * weight * rng.uniform(0.004, 0.012, len(book)))
    n_used = np.bincount(book, minlength=n)

    # Generic shelves: to-read on every book, the others on some.
    fiction = catalogue.genre_mix[:, [GENRES.index(g) for g in NON_FICTION]].sum(axis=1) < 0.5
    for name, tag_id in tags.generic_ids.items():
        if name == "to-read":
            on = np.ones(n, dtype=bool)
            share = rng.uniform(0.02, 0.06, n)
        elif name == "fiction":
            on = fiction & (rng.random(n) < 0.9)
            share = rng.uniform(0.002, 0.02, n)
        else:
            on = rng.random(n) < 0.6
            share = rng.uniform(0.0005, 0.008, n)
        book = np.flatnonzero(on)
        add(book, np.full(len(book), tag_id), audience[book] * share[book])
        n_used += on

    # Long tail: half the candidates from shelf names popular everywhere, half from names
    # popular with the book's main genre; duplicates are dropped.
    n_tail = np.maximum(TAGS_PER_BOOK - n_used, 0)
    n_candidates = int(1.5 * TAGS_PER_BOOK)
    # Which shelf names are popular is random, not alphabetical (real tag ids are sorted
    # by name).
    tail = rng.permutation(tags.tail_ids)
    global_cdf = np.cumsum(1.0 / (np.arange(len(tail)) + 10.0) ** 1.05)
    global_cdf /= global_cdf[-1]
    half = n_candidates // 2
    candidates = np.empty((n, n_candidates), dtype=np.int64)
    candidates[:, :half] = np.searchsorted(global_cdf, rng.random((n, half)))
    primary = catalogue.genre_mix.argmax(axis=1)
    # Each genre favours its own random ordering of the tail names.
    genre_order = np.stack([rng.permutation(len(tail)) for _ in GENRES])
    local = np.searchsorted(global_cdf, rng.random((n, n_candidates - half)))
    candidates[:, half:] = genre_order[primary[:, None], local]
    candidates = np.minimum(candidates, len(tail) - 1)
    order = np.argsort(candidates, axis=1, kind="stable")
    ordered = np.take_along_axis(candidates, order, axis=1)
    first = np.ones_like(ordered, dtype=bool)
    first[:, 1:] = ordered[:, 1:] != ordered[:, :-1]
    keep = np.empty_like(first)
    np.put_along_axis(keep, order, first, axis=1)
    keep &= np.cumsum(keep, axis=1) <= n_tail[:, None]
    book, slot = np.nonzero(keep)
    rank = np.cumsum(keep, axis=1)[book, slot]
    count = audience[book] * 0.002 * rng.lognormal(0.0, 0.5, len(book)) / rank**0.8
    add(book, tail[candidates[book, slot]], count)

    gid = np.concatenate(gid_parts)
    tag = np.concatenate(tag_parts)
    count = np.concatenate(count_parts)
    # As in the real file: by goodreads_book_id, then by count descending, then tag id.
    order = np.lexsort((tag, -count, gid))
    return gid[order], tag[order], count[order]


# --- writing -----------------------------------------------------------------------------


def _write_ints(path: Path, columns: tuple[str, ...], values: tuple[np.ndarray, ...]) -> None:
    """Write integer columns as CSV with a plain header (pyarrow would quote its names)."""
    table = pa.table({name: np.asarray(v) for name, v in zip(columns, values, strict=True)})
    with open(path, "wb") as f:
        f.write((",".join(columns) + "\n").encode())
        pa_csv.write_csv(table, f, pa_csv.WriteOptions(include_header=False))


def _write_text(path: Path, columns: tuple[str, ...], rows: object) -> None:
    """Write text rows as CSV, quoting only where needed, with Unix line ends."""
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows(rows)  # type: ignore[arg-type]


def _write_truth(path: Path, truth: PlantedTruth) -> None:
    """Save the truth as an .npz with fixed zip timestamps, so equal seeds give equal bytes."""
    arrays = {
        "genres": np.array(truth.genres),
        "taste": truth.taste,
        "genre_mix": truth.genre_mix,
        "popularity": truth.popularity,
        "quality": truth.quality,
        "author": truth.author,
        "beta": np.array(truth.beta, dtype=np.float64),
    }
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as archive:
        for name, array in arrays.items():
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            with archive.open(info, "w", force_zip64=True) as f:
                np.lib.format.write_array(f, np.asarray(array, order="C"), allow_pickle=False)


# --- continuation ------------------------------------------------------------------------
# New ratings that follow a generated dataset, drawn from its planted truth: with no drift
# the same process goes on (each reader draws further books, without replacement, with the
# same weights exp(s(u, b)), at a rate proportional to their past activity); with drift one
# part of the process changes by a given magnitude. Monitoring is tested against these.

DriftKind = Literal["none", "taste_shift", "new_popular_books", "rating_inflation", "new_readers"]
DRIFT_KINDS: tuple[str, ...] = get_args(DriftKind)
CONTINUATION_FILE = "continuation.json"
NEW_BOOKS_SHARE = 0.01  # the new titles of "new_popular_books": 1% of the catalogue (>= 5)
NEW_BOOK_TEMPLATE_SHARE = 0.2  # new titles resemble books of the most popular fifth
_STREAM_CONTINUATION = 20  # continuation streams: 20 + purpose, below
_CONT_ACTIVITY, _CONT_TASTE, _CONT_DRAWS, _CONT_NEW_BOOKS = 0, 1, 2, 3
_CONT_NEW_READERS, _CONT_RATINGS, _CONT_ORDER, _CONT_METADATA = 4, 5, 6, 7


@dataclass(frozen=True)
class Continuation:
    """Where a continuation was written and what it holds."""

    directory: Path
    kind: str
    magnitude: float
    n_ratings: int
    n_new_readers: int
    n_new_books: int
    ratings_by_new_readers: int
    ratings_on_new_books: int


def generate_continuation(
    base_dir: Path,
    out_dir: Path,
    kind: DriftKind = "none",
    magnitude: float = 0.0,
    n_ratings: int = 10_000,
    seed: int = 0,
) -> Continuation:
    """Write n_ratings new ratings that follow the generated dataset in base_dir.

    ``out_dir`` receives ratings.csv (only the new ratings, in time order), books.csv (the
    base catalogue plus any new titles), truth.npz (the planted model the new ratings were
    drawn from) and continuation.json. The magnitude means, per kind:

    - ``none``: ignored; the base process goes on unchanged.
    - ``taste_shift`` (0..1): share of every reader's taste replaced by a fresh one.
    - ``new_popular_books`` (0..1): share of the new ratings that go to new titles.
    - ``rating_inflation`` (>= 0): upward shift of the latent rating, in its standard
      deviations (0.25 lifts the mean rating by about 0.2 stars).
    - ``new_readers`` (0..1): share of the new ratings made by readers never seen before.
    """
    if kind not in DRIFT_KINDS:
        raise ValueError(f"kind must be one of {DRIFT_KINDS}; got {kind!r}")
    if n_ratings < 1:
        raise ValueError(f"n_ratings must be at least 1; got {n_ratings}")
    share_kinds = ("taste_shift", "new_popular_books", "new_readers")
    if kind in share_kinds and not 0.0 <= magnitude <= 1.0:
        raise ValueError(f"the magnitude of {kind} is a share in [0, 1]; got {magnitude}")
    if kind == "rating_inflation" and not 0 <= magnitude < math.inf:
        raise ValueError(f"the magnitude of rating_inflation must be a finite number >= 0; "
                         f"got {magnitude}")
    base_dir, out_dir = Path(base_dir), Path(out_dir)
    truth = load_truth(base_dir)
    base_manifest = _read_base_manifest(base_dir)
    rated = _read_base_ratings(base_dir, truth)
    n_rated = np.diff(rated.indptr)
    root = np.random.SeedSequence([seed, _STREAM_CONTINUATION])

    def rng(purpose: int, *key: int) -> np.random.Generator:
        return _rng(root, purpose, *key)

    catalogue = _catalogue_of(truth, base_dir, base_manifest)
    pairs = rated.tocoo()
    base_affinity = _affinity(truth.taste, truth.genre_mix, pairs.row.astype(np.int64),
                              pairs.col.astype(np.int64), truth.beta)
    thresholds = _continuation_thresholds(catalogue, pairs.col.astype(np.int64),
                                          base_affinity, rng(_CONT_RATINGS, 0))

    # Ratings of new readers, then of new titles, come out of the known readers' budget.
    new_reader_ratings = round(magnitude * n_ratings) if kind == "new_readers" else 0
    known_ratings = n_ratings - new_reader_ratings
    taste = truth.taste
    if kind == "taste_shift" and magnitude > 0:
        fresh = _draw_tastes(truth.n_users, rng(_CONT_TASTE))
        taste = ((1.0 - magnitude) * taste + magnitude * fresh).astype(np.float32)

    books = _BookSet(truth.genre_mix, truth.popularity + truth.quality, thresholds)
    new_books = 0
    templates = np.empty(0, dtype=np.int64)
    if kind == "new_popular_books" and magnitude > 0:
        new_books = max(5, round(NEW_BOOKS_SHARE * truth.n_books))
        books, templates = _add_new_books(books, truth, new_books, rng(_CONT_NEW_BOOKS))

    activity = n_rated.astype(np.float64) / n_rated.sum()
    per_reader = rng(_CONT_ACTIVITY).multinomial(known_ratings, activity)
    per_reader = np.minimum(per_reader, truth.n_books - n_rated)
    on_new = np.zeros_like(per_reader)
    if new_books:
        on_new = np.minimum(rng(_CONT_NEW_BOOKS, 1).binomial(per_reader, magnitude), new_books)

    users, picked = _draw_continuation(
        taste, books, truth.n_books, rated, per_reader - on_new, on_new, rng(_CONT_DRAWS)
    )
    new_readers = 0
    if new_reader_ratings:
        new_users, new_picked, new_taste = _draw_new_readers(
            truth.n_users, books, truth.n_books, new_reader_ratings, rng(_CONT_NEW_READERS)
        )
        new_readers = len(new_taste)
        users = np.concatenate([users, new_users])
        picked = np.concatenate([picked, new_picked])
        taste = np.vstack([taste, new_taste])

    inflation = magnitude if kind == "rating_inflation" else 0.0
    ratings = _rate_continuation(taste, books, users, picked, base_affinity, truth.beta,
                                 inflation, rng(_CONT_RATINGS, 1))
    order = rng(_CONT_ORDER).permutation(len(users))

    out_dir.mkdir(parents=True, exist_ok=True)
    _write_ints(out_dir / RATINGS_FILE, RATINGS_COLUMNS,
                (users[order] + 1, picked[order] + 1, ratings[order]))
    _write_continued_books(base_dir / BOOKS_FILE, out_dir / BOOKS_FILE, templates,
                           rng(_CONT_METADATA))
    _write_truth(out_dir / TRUTH_FILE, PlantedTruth(
        genres=truth.genres,
        taste=taste,
        genre_mix=books.genre_mix,
        popularity=np.concatenate([truth.popularity, truth.popularity[templates]]),
        quality=np.concatenate([truth.quality, truth.quality[templates]]),
        author=np.concatenate([truth.author, truth.author[templates]]),
        beta=truth.beta,
    ))
    result = Continuation(
        directory=out_dir,
        kind=kind,
        magnitude=float(magnitude),
        n_ratings=int(len(users)),
        n_new_readers=new_readers,
        n_new_books=new_books,
        ratings_by_new_readers=int((users >= truth.n_users).sum()),
        ratings_on_new_books=int((picked >= truth.n_books).sum()),
    )
    manifest = {
        "generator_version": GENERATOR_VERSION,
        "kind": kind,
        "magnitude": float(magnitude),
        "seed": seed,
        # The base by name only: equal arguments must give equal bytes wherever they run.
        "base": {"directory": base_dir.name, "seed": base_manifest.get("seed"),
                 "counts": base_manifest.get("counts")},
        "counts": {"ratings": result.n_ratings, "new_readers": new_readers,
                   "new_books": new_books, "ratings_by_new_readers":
                   result.ratings_by_new_readers, "ratings_on_new_books":
                   result.ratings_on_new_books},
    }
    (out_dir / CONTINUATION_FILE).write_text(json.dumps(manifest, indent=2, sort_keys=True)
                                             + "\n")
    return result


@dataclass(frozen=True)
class _BookSet:
    """What drawing and rating need per book (base books first, then any new titles)."""

    genre_mix: np.ndarray  # float32 [n_books, n_genres]
    offset: np.ndarray  # float32 [n_books]: popularity + quality
    thresholds: np.ndarray  # float64 [n_books, 4]: cut points of the latent rating


def _read_base_manifest(base_dir: Path) -> dict[str, object]:
    """The base dataset's generator.json (its parameters say where its books came from)."""
    path = base_dir / MANIFEST_FILE
    if not path.is_file():
        raise DatasetError(f"{base_dir} has no {MANIFEST_FILE}: it is not a generated dataset")
    return dict(json.loads(path.read_text()))


def _read_base_ratings(base_dir: Path, truth: PlantedTruth) -> sp.csr_matrix:
    """Which books each base reader rated, bool CSR [n_users, n_books]."""
    path = base_dir / RATINGS_FILE
    try:
        table = pa_csv.read_csv(path)
    except (OSError, pa.ArrowInvalid) as exc:
        raise DatasetError(f"cannot read {path}: {exc}") from exc
    users = _index_of(table.column("user_id").to_numpy(), truth.n_users, "user_id")
    books = _index_of(table.column("book_id").to_numpy(), truth.n_books, "book_id")
    data = np.ones(len(users), dtype=bool)
    return sp.csr_matrix((data, (users, books)), shape=(truth.n_users, truth.n_books))


def _catalogue_of(truth: PlantedTruth, base_dir: Path, manifest: dict[str, object]
                  ) -> _Catalogue:
    """The base catalogue as the rating step saw it (a real books.csv's rating mix too)."""
    rating_mix = None
    parameters = manifest.get("parameters")
    if isinstance(parameters, dict) and parameters.get("books_source") == "books.csv":
        columns = [f"ratings_{k}" for k in range(1, 6)]
        counts = pd.read_csv(base_dir / BOOKS_FILE, usecols=columns)[columns].to_numpy(
            dtype=np.float64)[: truth.n_books]
        rating_mix = (counts + 1.0) / (counts + 1.0).sum(axis=1, keepdims=True)
    return _Catalogue(
        n_books=truth.n_books,
        author=truth.author,
        n_authors=int(truth.author.max()) + 1,
        genre_mix=truth.genre_mix,
        quality=truth.quality,
        rating_mix=rating_mix,
    )


def _affinity(taste: np.ndarray, genre_mix: np.ndarray, users: np.ndarray, books: np.ndarray,
              beta: float) -> np.ndarray:
    """beta * taste_u . genre_b per pair, computed as the base generator does (float32)."""
    out = np.empty(len(users), dtype=np.float32)
    for start in range(0, len(users), 1 << 20):
        u, b = users[start:start + (1 << 20)], books[start:start + (1 << 20)]
        out[start:start + len(u)] = np.einsum(
            "ij,ij->i", np.float32(beta) * taste[u], genre_mix[b]
        )
    return out


def _continuation_thresholds(
    catalogue: _Catalogue, books: np.ndarray, affinity: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """The base's per-book cut points, refitted on the base pairs with fresh noise.

    The base run shifted every cut point so that its ratings have the real mix; the same
    fit on the same pairs (new noise, hundreds of thousands of draws) gives the same cut
    points to within sampling error, so unchanged readers rate as they did before.
    """
    empty = np.empty(0, np.int32)
    draws = _Draws(user=empty, book=books, affinity=affinity, to_read_user=empty,
                   to_read_book=empty)
    _, thresholds = _rate(draws, _base_thresholds(catalogue), rng)
    return thresholds


def _draw_tastes(n: int, rng: np.random.Generator) -> np.ndarray:
    """Reader tastes from the base population's prior, float32 [n, n_genres]."""
    weights = GENRE_WEIGHTS / GENRE_WEIGHTS.mean()
    return rng.dirichlet(READER_TASTE_CONCENTRATION * weights, size=n).astype(np.float32)


def _add_new_books(books: _BookSet, truth: PlantedTruth, n_new: int, rng: np.random.Generator
                   ) -> tuple[_BookSet, np.ndarray]:
    """Append n_new titles, each like a book of the popular head (same author, close genres)."""
    head = max(n_new, int(NEW_BOOK_TEMPLATE_SHARE * truth.n_books))
    templates = rng.choice(head, size=n_new, replace=False).astype(np.int64)
    alphas = BOOK_GENRE_CONCENTRATION * truth.genre_mix[templates].astype(np.float64) + 0.02
    mix = _dirichlet_rows(alphas, rng).astype(np.float32)
    return _BookSet(
        genre_mix=np.vstack([books.genre_mix, mix]),
        offset=np.concatenate([books.offset, books.offset[templates]]),
        thresholds=np.vstack([books.thresholds, books.thresholds[templates]]),
    ), templates


def _draw_continuation(
    taste: np.ndarray,
    books: _BookSet,
    n_base_books: int,
    rated: sp.csr_matrix,
    n_base: np.ndarray,
    n_new: np.ndarray,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Each reader's next draws: n_base unread base books and n_new new titles, 0-based."""
    users_out: list[np.ndarray] = []
    books_out: list[np.ndarray] = []
    active = np.flatnonzero(n_base + n_new > 0)
    scale = np.float32(TASTE_STRENGTH)
    for start in range(0, len(active), CHUNK_READERS):
        rows = active[start:start + CHUNK_READERS]
        keys = (scale * taste[rows]) @ books.genre_mix.T
        keys += books.offset
        keys -= _gumbel_noise(keys.shape, rng)
        # Books a reader already rated cannot be drawn again.
        seen = rated[rows].tocoo()
        keys[seen.row, seen.col] = -np.inf
        for part, counts, offset in ((slice(0, n_base_books), n_base[rows], 0),
                                     (slice(n_base_books, None), n_new[rows], n_base_books)):
            most = int(counts.max()) if len(counts) else 0
            if most == 0:
                continue
            top = _top_sorted(keys[:, part], most)
            taken = np.arange(most)[None, :] < counts[:, None]
            users_out.append(np.repeat(rows, counts))
            books_out.append(top[taken].astype(np.int64) + offset)
    if not users_out:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    return np.concatenate(users_out).astype(np.int64), np.concatenate(books_out)


def _gumbel_noise(shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """-log(-log(U)) as float32, negated so that keys -= noise adds a Gumbel draw."""
    noise = rng.random(shape, dtype=np.float32)
    with np.errstate(divide="ignore"):
        np.log(noise, out=noise)
        np.negative(noise, out=noise)
        np.log(noise, out=noise)
    return noise


def _draw_new_readers(
    first_id: int, books: _BookSet, n_base_books: int, n_ratings: int,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Readers never seen before, each rating as many books as a base reader would.

    Returns 0-based reader rows (from first_id on), their books and the readers' tastes.
    """
    df, centre, below, above = READER_COUNT_T
    low, high = READER_COUNT_RANGE
    counts: list[int] = []
    while sum(counts) < n_ratings:
        t = rng.standard_t(df)
        counts.append(int(np.clip(np.rint(centre + (below if t < 0 else above) * t), low, high)))
    counts[-1] -= sum(counts) - n_ratings  # the last reader of the wave is cut short
    per_reader = np.minimum(np.array(counts, dtype=np.int64), max(1, n_base_books // 2))
    taste = _draw_tastes(len(per_reader), rng)
    nothing_rated = sp.csr_matrix((len(per_reader), n_base_books), dtype=bool)
    base_only = _BookSet(books.genre_mix[:n_base_books], books.offset[:n_base_books],
                         books.thresholds[:n_base_books])
    rows, picked = _draw_continuation(taste, base_only, n_base_books, nothing_rated,
                                      per_reader, np.zeros_like(per_reader), rng)
    return rows + first_id, picked, taste


def _rate_continuation(
    taste: np.ndarray,
    books: _BookSet,
    users: np.ndarray,
    picked: np.ndarray,
    base_affinity: np.ndarray,
    beta: float,
    inflation: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """Ratings 1..5 (int8) of the new pairs, from the base's rating model.

    The affinity is standardised with the base pairs' mean and spread (not the new pairs'
    own), so that a drifted affinity shows in the ratings instead of being normalised away.
    """
    base = base_affinity.astype(np.float64)
    affinity = _affinity(taste, books.genre_mix, users, picked, beta).astype(np.float64)
    affinity = (affinity - base.mean()) / max(base.std(), 1e-9)
    w = RATING_AFFINITY_WEIGHT
    latent = w * affinity + np.sqrt(1 - w * w) * rng.standard_normal(len(affinity))
    latent += inflation
    ratings = np.ones(len(latent), dtype=np.int8)
    for j in range(4):
        ratings += latent > books.thresholds[picked, j]
    return ratings


def _write_continued_books(base_books: Path, out: Path, templates: np.ndarray,
                           rng: np.random.Generator) -> None:
    """books.csv of the base plus one row per new title (a template row, new ids and title)."""
    if not len(templates):
        shutil.copyfile(base_books, out)
        return
    try:
        table = pd.read_csv(base_books, dtype=str, keep_default_na=False)
    except (OSError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise DatasetError(f"cannot read books file {base_books}: {exc}") from exc
    rows = table.to_numpy().tolist()
    next_id = len(table) + 1
    # New titles get goodreads ids past every existing one.
    first_gid = int(table[GOODREADS_BOOK_ID].astype(np.int64).max()) + 1
    for i, t in enumerate(templates.tolist()):
        row = dict(zip(table.columns, rows[t], strict=True))
        row[BOOK_ID] = str(next_id + i)
        row[GOODREADS_BOOK_ID] = str(first_gid + i)
        if "best_book_id" in row:
            row["best_book_id"] = str(first_gid + i)
        if "work_id" in row:
            row["work_id"] = str(int(rng.integers(60_000_000, 90_000_000)))
        title = (f"{_ADJECTIVES[int(rng.integers(len(_ADJECTIVES)))]} "
                 f"{_plural(_NOUNS[int(rng.integers(len(_NOUNS)))])}")
        row["title"] = row["original_title"] = title
        row["original_publication_year"] = "2017.0"
        rows.append([row[c] for c in table.columns])
    _write_text(out, tuple(table.columns), rows)
