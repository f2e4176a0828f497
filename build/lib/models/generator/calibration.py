"""Popularity calibrated so that the ratings per book follow the real dataset's curve by
popularity rank.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import brentq

from models.generator.catalogue import _Catalogue, _Readers
from models.generator.constants import (
    _STREAM_CALIBRATION,
    _STREAM_DRAWS,
    BOOK_COUNT_MAX,
    BOOK_COUNT_QUARTILES,
    BOOK_COUNT_TAIL,
    CALIBRATION_READERS,
    CALIBRATION_ROUNDS,
    CORRECTION_LIMIT,
    FULL_BOOKS,
    FULL_CALIBRATION_ROUNDS,
    FULL_RATINGS,
    SAMPLE_PSEUDO_COUNT,
    SHORTLIST_MARGIN,
    Progress,
)
from models.generator.streams import _chunks, _keys, _map_blocks, _rng, _top_sorted

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
        return _keys(readers.taste[start:stop], catalogue, zero,
                     _rng(root, _STREAM_CALIBRATION, i), readers.window_term(start, stop))

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
        keys = _keys(readers.taste[start:stop], catalogue, offset, _rng(root, _STREAM_DRAWS, i),
                     readers.window_term(start, stop))
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
