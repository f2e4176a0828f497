"""New ratings that follow a generated dataset, with or without a planted drift."""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv
import scipy.sparse as sp

from models.generator.catalogue import _Catalogue, _dirichlet_rows
from models.generator.constants import (
    BOOK_GENRE_CONCENTRATION,
    CHUNK_READERS,
    GENERATOR_VERSION,
    GENRE_WEIGHTS,
    MANIFEST_FILE,
    RATING_AFFINITY_WEIGHT,
    READER_COUNT_RANGE,
    READER_COUNT_T,
    READER_TASTE_CONCENTRATION,
    TASTE_STRENGTH,
    TRUTH_FILE,
)
from models.generator.metadata import _ADJECTIVES, _NOUNS, _plural
from models.generator.sampling import _base_thresholds, _Draws, _rate
from models.generator.streams import _rng, _top_sorted
from models.generator.truth import PlantedTruth, _index_of, _write_truth, load_truth
from models.generator.writing import _write_ints, _write_text
from models.schema import (
    BOOK_ID,
    BOOKS_FILE,
    GOODREADS_BOOK_ID,
    RATINGS_COLUMNS,
    RATINGS_FILE,
    DatasetError,
)

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
