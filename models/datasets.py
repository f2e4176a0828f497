"""A goodbooks-10k dataset in a local directory: which files it has, and whether they fit."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from models.schema import (
    ALL_FILES,
    BOOK_ID,
    BOOK_TAGS_COLUMNS,
    BOOK_TAGS_FILE,
    BOOKS_FILE,
    RATINGS_COLUMNS,
    RATINGS_FILE,
    REQUIRED_FILES,
    TAGS_COLUMNS,
    TAGS_FILE,
    TO_READ_COLUMNS,
    TO_READ_FILE,
    DatasetError,
)

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
class DatasetFiles:
    """The goodbooks files found in one directory; optional files may be None."""

    directory: Path
    ratings: Path
    books: Path
    tags: Path | None
    book_tags: Path | None
    to_read: Path | None

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


def locate_dataset(directory: Path) -> DatasetFiles:
    """Find the goodbooks files in directory; raise DatasetError naming what is wrong."""
    directory = Path(directory).expanduser()
    if not directory.is_dir():
        raise DatasetError(
            f"dataset directory {directory} does not exist or is not a directory; point it at "
            f"a directory holding {' and '.join(REQUIRED_FILES)}"
        )
    found: dict[str, Path | None] = {}
    for name in ALL_FILES:
        path = directory / name
        if not path.is_file():
            if name in REQUIRED_FILES:
                raise DatasetError(
                    f"dataset directory {directory} has no {name}; a goodbooks dataset needs "
                    f"{' and '.join(REQUIRED_FILES)} (the other files are optional)"
                )
            found[name] = None
            continue
        _check_header(path, KEY_COLUMNS[name])
        found[name] = path
    return DatasetFiles(
        directory=directory,
        ratings=found[RATINGS_FILE],  # type: ignore[arg-type]
        books=found[BOOKS_FILE],  # type: ignore[arg-type]
        tags=found[TAGS_FILE],
        book_tags=found[BOOK_TAGS_FILE],
        to_read=found[TO_READ_FILE],
    )


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


def _check_header(path: Path, required: tuple[str, ...]) -> None:
    """Raise DatasetError unless the file is non-empty and its header names the columns."""
    header = read_header(path)
    if not header:
        raise DatasetError(f"{path} is empty; expected a CSV header with {list(required)}")
    absent = [c for c in required if c not in header]
    if absent:
        raise DatasetError(
            f"{path} lacks the column(s) {absent}; its header is {header}, and a goodbooks "
            f"{path.name} needs {list(required)}"
        )
