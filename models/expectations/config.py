"""What a validation run checks beyond the fixed rules: tables, severities, bounds, quarantine."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Literal

Severity = Literal["critical", "warning"]
CRITICAL: Severity = "critical"
WARNING: Severity = "warning"

# Validation order: reference tables first, so the tables that point at them can use them.
TABLES = ("books", "tags", "ratings", "to_read", "book_tags")
REQUIRED_TABLES = ("ratings", "books")

# Wide enough for every generated size the settings allow and for the real files; the lower
# bounds catch a truncated or header-only file, the upper ones a file appended to itself.
DEFAULT_ROW_BOUNDS: Mapping[str, tuple[int, int]] = MappingProxyType({
    "ratings": (500, 12_000_000),
    "books": (10, 20_000),
    "tags": (1, 100_000),
    "book_tags": (1, 3_000_000),
    "to_read": (1, 3_000_000),
})
# Around the real mix (2% / 6% / 23% / 36% / 33%): a reversed, shifted or re-scaled rating
# column moves at least one share out of its band.
DEFAULT_RATING_SHARE_BANDS: Mapping[int, tuple[float, float]] = MappingProxyType({
    1: (0.005, 0.10),
    2: (0.02, 0.15),
    3: (0.10, 0.40),
    4: (0.20, 0.50),
    5: (0.15, 0.50),
})


@dataclass(frozen=True)
class ValidationConfig:
    """What the suites check beyond the fixed rules; bounds are inclusive.

    A table without row bounds, or a None minimum / bands, leaves that rule out of the suite.
    ``cross_table`` False leaves out references and is meant for excerpts of the files.
    """

    row_bounds: Mapping[str, tuple[int, int]] = field(
        default_factory=lambda: dict(DEFAULT_ROW_BOUNDS)
    )
    min_ratings_per_user: int | None = 10
    rating_share_bands: Mapping[int, tuple[float, float]] | None = field(
        default_factory=lambda: dict(DEFAULT_RATING_SHARE_BANDS)
    )
    quarantine_max_ratio: float = 0.001
    data_docs_dir: Path | None = None
    required_tables: tuple[str, ...] = REQUIRED_TABLES
    cross_table: bool = True
    # "fail": a rating of a book missing from books.csv fails the run (a whole dataset must
    # belong together); "hold": it is a warning, and the caller holds such rows back until
    # the catalogue knows the book (new ratings arriving before their book's metadata).
    unknown_books: Literal["fail", "hold"] = "fail"

    def __post_init__(self) -> None:
        """Refuse values that would make the rules meaningless."""
        if not 0.0 <= self.quarantine_max_ratio <= 1.0:
            raise ValueError(
                f"quarantine_max_ratio must lie in 0..1; got {self.quarantine_max_ratio}"
            )
        for name, (low, high) in self.row_bounds.items():
            if name not in TABLES or low > high:
                raise ValueError(f"row_bounds[{name!r}] = {(low, high)} is not a valid bound")
        for value, (low, high) in (self.rating_share_bands or {}).items():
            if value not in range(1, 6) or not 0.0 <= low <= high <= 1.0:
                raise ValueError(f"rating_share_bands[{value}] = {(low, high)} is not a band")
        if self.min_ratings_per_user is not None and self.min_ratings_per_user < 1:
            raise ValueError(f"min_ratings_per_user must be at least 1 or None; got "
                             f"{self.min_ratings_per_user}")
        unknown = set(self.required_tables) - set(TABLES)
        if unknown:
            raise ValueError(f"required_tables names unknown tables: {sorted(unknown)}")
        if self.unknown_books not in ("fail", "hold"):
            raise ValueError(f"unknown_books must be 'fail' or 'hold'; got {self.unknown_books!r}")

    @classmethod
    def increment(cls, data_docs_dir: Path | None = None, quarantine_max_ratio: float = 0.001
                  ) -> ValidationConfig:
        """New rows on top of a validated snapshot: row rules and references only.

        Volumes, the rating mix and ratings per reader describe a whole dataset: a day's
        new ratings are judged on their rows (a changed mix is drift, the monitor's
        business). Ratings of books the catalogue lacks are held back, not failed.
        """
        return cls(
            row_bounds={},
            min_ratings_per_user=None,
            rating_share_bands=None,
            quarantine_max_ratio=quarantine_max_ratio,
            data_docs_dir=data_docs_dir,
            required_tables=("ratings",),
            unknown_books="hold",
        )

    @classmethod
    def per_file(cls, data_docs_dir: Path | None = None) -> ValidationConfig:
        """Each file on its own terms: no volumes, aggregates, references or required files."""
        return cls(
            row_bounds={},
            min_ratings_per_user=None,
            rating_share_bands=None,
            data_docs_dir=data_docs_dir,
            required_tables=(),
            cross_table=False,
        )
