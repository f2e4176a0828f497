"""Sampling primitives: one random stream per purpose, blocks of readers on a thread pool,
Gumbel-top-k keys.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from models.generator.catalogue import _Catalogue
from models.generator.constants import CHUNK_READERS, TASTE_STRENGTH


def _rng(root: np.random.SeedSequence, *key: int) -> np.random.Generator:
    """A generator for one purpose, independent of every other purpose's stream."""
    # SFC64 fills the large noise blocks about a third faster than the default PCG64.
    sequence = np.random.SeedSequence(root.entropy, spawn_key=tuple(root.spawn_key) + key)
    return np.random.Generator(np.random.SFC64(sequence))


# --- sampling ----------------------------------------------------------------------------


def _chunks(n: int, size: int = CHUNK_READERS) -> list[tuple[int, int]]:
    """Consecutive [start, stop) blocks of at most size readers."""
    return [(start, min(start + size, n)) for start in range(0, n, size)]


def _keys(
    taste: np.ndarray, catalogue: _Catalogue, offset: np.ndarray, rng: np.random.Generator,
    extra: np.ndarray | None = None,
) -> np.ndarray:
    """s(u, b) + Gumbel noise for a block of readers, float32 [readers, books].

    ``extra`` [readers, books] is added to s (time's term, for data that moves).
    """
    keys = (np.float32(TASTE_STRENGTH) * taste) @ catalogue.genre_mix.T
    keys += offset
    if extra is not None:
        keys += extra
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
