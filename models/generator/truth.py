"""The planted truth: the model a generated dataset was drawn from, saved beside it, and the
oracle that ranks by it.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from models.generator.constants import AUTHOR_STRENGTH, CHUNK_READERS, TRUTH_FILE
from models.generator.timeline import Timeline
from models.genres import fit_tastes
from models.schema import (
    DatasetError,
)


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
    # Generated data that moves: releases, reader windows and drift (None: static data,
    # where taste is each reader's one taste; with a timeline, their mean over the window).
    timeline: Timeline | None = None
    # Books by each reader's favourite authors [n_users, n_books] (data that moves): their
    # weight gains AUTHOR_STRENGTH.
    favourite_books: sp.csr_matrix | None = None

    @property
    def n_users(self) -> int:
        """Number of readers."""
        return int(self.taste.shape[0])

    @property
    def n_books(self) -> int:
        """Number of books."""
        return int(self.genre_mix.shape[0])

    def scores(self, user_ids: np.ndarray, book_ids: np.ndarray | None = None,
               at: float | None = None) -> np.ndarray:
        """True log-weights s(u, b), float32 [len(user_ids), n_books or len(book_ids)].

        ``at`` (seconds; data with a timeline): the rate at that moment — each reader's
        taste then, and each book's share of its readers then (never before its release).
        Without it, the static part of the weights the reader's set was drawn with (taste
        averaged over the reader's window; the window's time term left out).
        """
        users = _index_of(user_ids, self.n_users, "user_id")
        books = (np.arange(self.n_books) if book_ids is None
                 else _index_of(book_ids, self.n_books, "book_id"))
        timed = at is not None and self.timeline is not None
        if book_ids is None:
            mix, offset = self.genre_mix, self.popularity + self.quality
        else:
            mix, offset = self.genre_mix[books], (self.popularity + self.quality)[books]
        # Same float32 operations, in the same order, as the sampler.
        out = (np.float32(self.beta) * self._taste(users, at)) @ mix.T
        out += offset
        if timed:
            out += self.timeline.log_density(books, float(at))
        if self.favourite_books is not None:
            out += np.float32(AUTHOR_STRENGTH) * self.favourite_books[users][:, books].toarray()
        return out

    def reader_scores(self, user_ids: np.ndarray, at: float | None = None) -> np.ndarray:
        """The reader's side of the true log-weights, float32 [len(user_ids), n_books]:
        beta · taste(at) · genre mix, plus the favourite authors' books.

        What ``scores`` adds to it — each book's popularity, quality and share of its
        readers at ``at`` — is the book's side, the same for every reader: a ranker that
        knows readers perfectly still has to learn it from the reads it has seen.
        """
        users = _index_of(user_ids, self.n_users, "user_id")
        out = (np.float32(self.beta) * self._taste(users, at)) @ self.genre_mix.T
        if self.favourite_books is not None:
            out += self.favourite_scores(user_ids)
        return out

    def favourite_scores(self, user_ids: np.ndarray) -> np.ndarray:
        """What each reader's favourite authors add to their books' log-weights, float32
        [len(user_ids), n_books] (zeros on data without favourites)."""
        users = _index_of(user_ids, self.n_users, "user_id")
        if self.favourite_books is None:
            return np.zeros((len(users), self.n_books), dtype=np.float32)
        return np.float32(AUTHOR_STRENGTH) * self.favourite_books[users].toarray()

    def learnt_taste(self, reads: sp.csr_matrix, at: float | None = None,
                     iterations: int = 40, beta: float | None = None) -> np.ndarray:
        """Each reader's taste as their reads reveal it, the rest of the truth known,
        float64 [reads.shape[0], n_genres], rows on the simplex.

        ``reads`` holds one row per reader and one column per book (any positive entry is
        a read). The estimate is the maximum-likelihood taste under a simplified draw of
        the truth's: each read picks a book independently, with probability proportional
        to exp(popularity + quality + beta · taste · genre mix), among the books out by
        ``at`` (every book without it). The truth draws a set without replacement and adds
        each reader's window and favourite authors; those are not estimated.
        Exponentiated-gradient ascent on the simplex (the log-likelihood is concave in the
        taste), started from the uniform taste; a reader without reads keeps it.
        ``beta`` replaces the truth's (a smaller one caps the reader's side beta · taste
        where few reads put the taste at the edge of the simplex).
        """
        beta = self.beta if beta is None else float(beta)
        if reads.shape[1] != self.n_books:
            raise ValueError(f"reads must have one column per book ({self.n_books}); "
                             f"got {reads.shape[1]}")
        offset = (self.popularity + self.quality).astype(np.float64)
        if at is not None and self.timeline is not None:
            offset = np.where(self.timeline.release < at, offset, -np.inf)
        return fit_tastes(reads, self.genre_mix, offset, beta, iterations)

    def _taste(self, users: np.ndarray, at: float | None) -> np.ndarray:
        """Each reader's taste at ``at`` (data with a timeline), else their one taste."""
        if at is not None and self.timeline is not None:
            return self.timeline.taste_at(users, at)
        return self.taste[users]


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
            timeline=Timeline.from_table(data) if "release" in data.files else None,
            favourite_books=sp.csr_matrix(
                (np.ones(len(data["favourite_indices"]), np.float32), data["favourite_indices"],
                 data["favourite_indptr"]), shape=(len(data["taste"]), len(data["genre_mix"])))
            if "favourite_indptr" in data.files else None,
        )


def oracle_top_k(
    truth: PlantedTruth, user_ids: np.ndarray, exclude: sp.csr_matrix | None, k: int,
    at: float | None = None,
) -> np.ndarray:
    """The k best book_ids per reader by true score, int64 [len(user_ids), k].

    ``at``: rank by the rate at that moment (data with a timeline; see PlantedTruth.scores).

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
        scores = truth.scores(users[start:stop], at=at)
        if exclude is not None:
            block = exclude[start:stop].tocoo()
            scores[block.row, block.col] = -np.inf
        top = np.argpartition(scores, n_books - k, axis=1)[:, n_books - k :]
        order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1, kind="stable")
        out[start:stop] = np.take_along_axis(top, order, axis=1) + 1
    return out


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
        **(truth.timeline.table() if truth.timeline is not None else {}),
        **({"favourite_indptr": truth.favourite_books.indptr.astype(np.int64),
            "favourite_indices": truth.favourite_books.indices.astype(np.int32)}
           if truth.favourite_books is not None else {}),
    }
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as archive:
        for name, array in arrays.items():
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            with archive.open(info, "w", force_zip64=True) as f:
                np.lib.format.write_array(f, np.asarray(array, order="C"), allow_pickle=False)
