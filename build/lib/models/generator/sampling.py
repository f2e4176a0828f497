"""Every reader's draws, their ratings and their time order."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import ndtri

from models.generator.calibration import _rerank, _Shortlist
from models.generator.catalogue import _Catalogue, _Readers
from models.generator.constants import (
    _STREAM_DRAWS,
    _STREAM_ORDER,
    AUTHOR_STRENGTH,
    RATING_AFFINITY_WEIGHT,
    RATING_MIX,
    RATING_QUALITY_SHIFT,
    TASTE_STRENGTH,
    Progress,
)
from models.generator.streams import _chunks, _keys, _map_blocks, _rng, _top_sorted


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
            keys = _keys(readers.taste[start:stop], catalogue, offset,
                         _rng(root, _STREAM_DRAWS, i), readers.window_term(start, stop))
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
        if readers.favourite_books is not None:
            affinity += np.float32(AUTHOR_STRENGTH) * readers.favourite(rows, books)
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
