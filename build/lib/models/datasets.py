"""A goodbooks-10k dataset in a local directory: which files it has, and whether they fit."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from models.schema import (
    ALL_FILES,
    BOOK_ID,
    BOOK_TAGS_COLUMNS,
    BOOK_TAGS_FILE,
    BOOKS_FILE,
    RATING,
    RATINGS_COLUMNS,
    RATINGS_FILE,
    REQUIRED_FILES,
    TAGS_COLUMNS,
    TAGS_FILE,
    TO_READ_COLUMNS,
    TO_READ_FILE,
    DatasetError,
)
from models.snapshot import read_csv

# Columns each file's header must name (books.csv needs only its key: the other
# metadata columns are features, and features of a missing column are simply absent).
KEY_COLUMNS: dict[str, tuple[str, ...]] = {
    RATINGS_FILE: RATINGS_COLUMNS,
    BOOKS_FILE: (BOOK_ID,),
    TAGS_FILE: TAGS_COLUMNS,
    BOOK_TAGS_FILE: BOOK_TAGS_COLUMNS,
    TO_READ_FILE: TO_READ_COLUMNS,
}


@dataclass(frozen=True)
class SourceLayout:
    """How a directory's files map onto goodbooks names (the default: goodbooks itself).

    ``columns`` renames source columns to goodbooks ones in every file (``userId`` →
    ``user_id``, ``movieId`` → ``book_id``, ...); ``books_file`` is the catalogue's file
    name; ``half_stars`` reads ratings given in half stars (0.5–5) as whole stars, rounded
    up (3.5 → 4; 0.5 → 1). Ids need not be dense: any positive whole numbers work.
    """

    columns: Mapping[str, str] = field(default_factory=dict)
    books_file: str = BOOKS_FILE
    half_stars: bool = False

    def __post_init__(self) -> None:
        """Refuse a mapping that would give two source columns one name."""
        targets = list(self.columns.values())
        doubled = sorted({t for t in targets if targets.count(t) > 1})
        if doubled:
            raise DatasetError(f"the column mapping gives several source columns the name(s) "
                               f"{doubled}: {dict(self.columns)}")
        if not self.books_file or "/" in self.books_file:
            raise DatasetError(f"the books file must be a file name in the dataset "
                               f"directory, not {self.books_file!r}")

    @property
    def is_default(self) -> bool:
        return not self.columns and self.books_file == BOOKS_FILE and not self.half_stars

    def file_name(self, name: str) -> str:
        """The source's file for a goodbooks file name."""
        return self.books_file if name == BOOKS_FILE else name

    def describe(self) -> str:
        """A stable text of the layout (part of what identifies a source)."""
        mapped = ",".join(f"{k}={v}" for k, v in sorted(self.columns.items()))
        return f"columns[{mapped}] books[{self.books_file}] half_stars[{self.half_stars}]"

    def rename(self, frame: pd.DataFrame) -> pd.DataFrame:
        """The frame with source column names mapped to goodbooks names."""
        mapping = {k: v for k, v in self.columns.items() if k in frame.columns}
        return frame.rename(columns=mapping) if mapping else frame

    def ratings(self, frame: pd.DataFrame) -> pd.DataFrame:
        """A ratings frame as goodbooks stars (half stars rounded up when asked).

        A rating column holding text is left as it is: validation names its rows.
        """
        if self.half_stars and RATING in frame and pd.api.types.is_numeric_dtype(frame[RATING]):
            stars = pd.Series(np.ceil(frame[RATING].to_numpy(dtype=np.float64)), index=frame.index)
            whole = stars.astype("Int64" if stars.isna().any() else np.int64)
            frame = frame.assign(**{RATING: whole})
        return frame


GOODBOOKS_LAYOUT = SourceLayout()


@dataclass(frozen=True)
class DatasetFiles:
    """The goodbooks files found in one directory; optional files may be None."""

    directory: Path
    ratings: Path
    books: Path
    tags: Path | None
    book_tags: Path | None
    to_read: Path | None
    layout: SourceLayout = GOODBOOKS_LAYOUT
    ignored: Mapping[str, str] = field(default_factory=dict)  # file name -> why it is left out

    @property
    def present(self) -> dict[str, Path]:
        """File name -> path of every goodbooks file found."""
        paths = {
            RATINGS_FILE: self.ratings,
            BOOKS_FILE: self.books,
            TAGS_FILE: self.tags,
            BOOK_TAGS_FILE: self.book_tags,
            TO_READ_FILE: self.to_read,
        }
        return {name: path for name, path in paths.items() if path is not None}

    @property
    def absent(self) -> tuple[str, ...]:
        """Names of the optional files the directory lacks."""
        return tuple(name for name in ALL_FILES if name not in self.present)


def locate_dataset(directory: Path, layout: SourceLayout = GOODBOOKS_LAYOUT) -> DatasetFiles:
    """Find the goodbooks files in directory; raise DatasetError naming what is wrong."""
    directory = Path(directory).expanduser()
    if not directory.is_dir():
        raise DatasetError(
            f"dataset directory {directory} does not exist or is not a directory; point it at "
            f"a directory holding {' and '.join(REQUIRED_FILES)}"
        )
    found: dict[str, Path | None] = {}
    ignored: dict[str, str] = {}
    for name in ALL_FILES:
        path = directory / layout.file_name(name)
        if not path.is_file():
            if name in REQUIRED_FILES:
                wanted = " and ".join(layout.file_name(n) for n in REQUIRED_FILES)
                raise DatasetError(
                    f"dataset directory {directory} has no {path.name}; a goodbooks dataset "
                    f"needs {wanted} (the other files are optional)"
                )
            found[name] = None
            continue
        try:
            _check_header(path, KEY_COLUMNS[name], layout)
        except DatasetError as exc:
            # A mapped source (another dataset's export) may hold a file of the same name
            # and another shape (MovieLens' tags.csv is tags by readers): an optional file
            # that does not fit is left out and said so; a goodbooks source must fit.
            if layout.is_default or name in REQUIRED_FILES:
                raise
            found[name] = None
            ignored[name] = str(exc)
            continue
        found[name] = path
    return DatasetFiles(
        directory=directory,
        ratings=found[RATINGS_FILE],  # type: ignore[arg-type]
        books=found[BOOKS_FILE],  # type: ignore[arg-type]
        tags=found[TAGS_FILE],
        book_tags=found[BOOK_TAGS_FILE],
        to_read=found[TO_READ_FILE],
        layout=layout,
        ignored=ignored,
    )


def read_dataset_table(files: DatasetFiles, name: str) -> pd.DataFrame | None:
    """One goodbooks file of a dataset in goodbooks names (None when the file is absent)."""
    path = files.present.get(name)
    if path is None:
        return None
    frame = files.layout.rename(read_csv(path))
    return files.layout.ratings(frame) if name == RATINGS_FILE else frame


def read_header(path: Path) -> list[str]:
    """Column names on the first line of a CSV file (BOM, quotes and CR tolerated)."""
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:
            line = f.readline()
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"cannot read {path}: {exc}") from exc
    if not line:
        return []
    return [name.strip().strip('"') for name in line.rstrip("\r\n").split(",")]


def _check_header(path: Path, required: tuple[str, ...], layout: SourceLayout) -> None:
    """Raise DatasetError unless the file is non-empty and its header names the columns."""
    header = read_header(path)
    if not header:
        raise DatasetError(f"{path} is empty; expected a CSV header with {list(required)}")
    mapped = [layout.columns.get(name, name) for name in header]
    absent = [c for c in required if c not in mapped]
    if absent:
        hint = (f" (after the column mapping {dict(layout.columns)})" if layout.columns else
                "; map other names with GOODBOOKS_LOCAL_COLUMNS, e.g. userId=user_id")
        raise DatasetError(
            f"{path} lacks the column(s) {absent}; its header is {header}{hint}, and a "
            f"goodbooks {path.name} needs {list(required)}"
        )
