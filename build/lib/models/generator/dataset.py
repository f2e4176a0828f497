"""Generate a whole goodbooks-10k-shaped dataset: catalogue, readers, calibrated draws,
ratings, metadata, files.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from models.generator.calibration import _calibrate_popularity, book_count_targets
from models.generator.catalogue import (
    _build_catalogue,
    _draw_readers,
    _read_real_books,
    _Readers,
    _RealBooks,
    favourite_authors,
)
from models.generator.constants import (
    _STREAM_AUTHORS,
    _STREAM_CATALOGUE,
    _STREAM_MOMENTS,
    _STREAM_RATINGS,
    _STREAM_READERS,
    _STREAM_TAGS,
    _STREAM_TIMELINE,
    _STREAM_TIMES,
    AUTHOR_STRENGTH,
    FULL_BOOKS,
    FULL_USERS,
    GENERATOR_VERSION,
    GENRE_WEIGHTS,
    GENRES,
    MANIFEST_FILE,
    READER_TASTE_CONCENTRATION,
    TASTE_STRENGTH,
    TRUTH_FILE,
    Progress,
)
from models.generator.metadata import _book_tags_table, _books_table, _build_tags, _read_real_tags
from models.generator.sampling import _base_thresholds, _draw_all, _rate, _time_order
from models.generator.streams import _rng
from models.generator.timeline import (
    DRIFT_PER_YEAR,
    HYPE_MEDIAN_DAYS,
    HYPE_SHARE,
    LOG_END,
    LOG_START,
    TIMELINE_VERSION,
    Timeline,
    assign_times,
    book_releases,
    reader_windows,
)
from models.generator.truth import PlantedTruth, _write_truth
from models.generator.writing import _write_files


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

# --- entry point -------------------------------------------------------------------------


def generate_goodbooks(
    out_dir: Path,
    n_users: int = FULL_USERS,
    n_books: int = FULL_BOOKS,
    seed: int = 42,
    books_csv: Path | None = None,
    tags_csv: Path | None = None,
    progress: Progress | None = None,
    moving: bool = False,
) -> GeneratedDataset:
    """Write a goodbooks-10k-shaped dataset (five CSVs, truth.npz, generator.json) to out_dir.

    ``moving``: the data moves in time (models/generator/timeline.py) — ratings carry a
    timestamp, books come out over the years, readers are active over windows and their
    tastes drift. Without it the data is static: row order is time, as in the real file.
    """
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
    if moving:
        readers = _with_timeline(readers, n_books, real_books, _rng(root, _STREAM_TIMELINE))
    targets = book_count_targets(n_books, int(readers.n_rated.sum()), n_users)
    if moving:
        readers = replace(readers, favourite_books=favourite_authors(
            readers.taste, catalogue, targets, _rng(root, _STREAM_AUTHORS)))
    report("catalogue", 1.0)

    popularity, shortlist = _calibrate_popularity(catalogue, readers, targets, root, report)
    draws = _draw_all(catalogue, readers, popularity, root, report, shortlist)

    report("ratings", 0.0)
    thresholds = _base_thresholds(catalogue)
    ratings, thresholds = _rate(draws, thresholds, _rng(root, _STREAM_RATINGS))
    times = None
    if readers.timeline is None:
        order = _time_order(readers.n_rated, _rng(root, _STREAM_TIMES))
    else:
        times = assign_times(readers.timeline, draws.user, draws.book, readers.n_rated,
                             catalogue.genre_mix, TASTE_STRENGTH, _rng(root, _STREAM_MOMENTS))
        order = np.argsort(times, kind="stable")
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
        timeline=readers.timeline,
        favourite_books=readers.favourite_books,
    )
    files = _write_files(out_dir, draws, ratings, order, books, tags, book_tags, report,
                         times)
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
            **({"time": {"moving": True, "version": TIMELINE_VERSION,
                         "drift_per_year": DRIFT_PER_YEAR,
                         "hype_share": HYPE_SHARE, "hype_median_days": HYPE_MEDIAN_DAYS,
                         "author_strength": AUTHOR_STRENGTH,
                         "log_start": LOG_START, "log_end": LOG_END}} if moving else {}),
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



def _with_timeline(readers: _Readers, n_books: int, real_books: _RealBooks | None,
                   rng: np.random.Generator) -> _Readers:
    """Readers with windows and a drifting taste, books with releases (data that moves).

    The readers' drawn taste is where they start; where they drift to is drawn the same
    way. The draw of each reader's set uses their taste averaged over their window.
    """
    n_users = len(readers.n_rated)
    start, end = reader_windows(n_users, rng)
    years = None
    if real_books is not None:
        years = pd.to_numeric(real_books.table["original_publication_year"],
                              errors="coerce").to_numpy(np.float64)
    release, tau = book_releases(n_books, rng, years)
    weights = GENRE_WEIGHTS / GENRE_WEIGHTS.mean()
    taste_end = rng.dirichlet(READER_TASTE_CONCENTRATION * weights, size=n_users)
    timeline = Timeline(start=start, end=end, taste_start=readers.taste,
                        taste_end=taste_end.astype(np.float32), release=release, tau=tau)
    return _Readers(taste=timeline.mean_taste(), n_rated=readers.n_rated,
                    n_to_read=readers.n_to_read, timeline=timeline)
