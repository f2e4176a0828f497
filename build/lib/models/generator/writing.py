"""Writing the generated tables as goodbooks CSVs, byte for byte the same for the same seed."""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv

from models.generator.constants import Progress
from models.generator.metadata import _Books, _Tags
from models.generator.sampling import _Draws
from models.schema import (
    ALL_FILES,
    BOOK_TAGS_COLUMNS,
    BOOK_TAGS_FILE,
    BOOKS_COLUMNS,
    BOOKS_FILE,
    RATINGS_COLUMNS,
    RATINGS_FILE,
    TAGS_COLUMNS,
    TAGS_FILE,
    TIMESTAMP,
    TO_READ_COLUMNS,
    TO_READ_FILE,
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
    times: np.ndarray | None = None,
) -> dict[str, Path]:
    """Write the five goodbooks CSVs; ratings in global time order (with ``times``, in a
    timestamp column)."""
    files = {name: out_dir / name for name in ALL_FILES}
    steps: list[Callable[[], None]] = [
        lambda: _write_ints(
            files[RATINGS_FILE],
            RATINGS_COLUMNS + ((TIMESTAMP,) if times is not None else ()),
            (draws.user[order] + 1, draws.book[order] + 1, ratings[order],
             *((times[order],) if times is not None else ())),
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
