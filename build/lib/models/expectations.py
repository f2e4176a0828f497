"""The goodbooks expectation suites and the engine that runs them with Great Expectations.

Every file has a suite of rules; a rule is one GX expectation with a severity:

- ``critical``: validation fails and the caller writes nothing (``raise_for_critical``);
- ``warning``: reported, ingestion continues.

Column rules (columns present, ranges, uniqueness, patterns, row counts) are plain GX
expectations. Checks that span columns, rows or tables (types, nulls and id ranges per table,
duplicate pairs, references) are computed with vectorised pandas into derived boolean
columns, and aggregates (ratings per reader, rating mix) into small derived tables; GX then
checks those, so every result is a GX validation result and shows in Data Docs. Row-level
critical rules marked ``quarantine`` drop their failing rows instead of failing, as long as
those rows are at most ``ValidationConfig.quarantine_max_ratio`` of the table.

Tables come in as pandas read them from CSV (default RangeIndex), so a row's line in the file
is its index + 2 (one header line, one-based numbering).
"""

from __future__ import annotations

import html
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

import great_expectations as gx
import great_expectations.expectations as gxe
import numpy as np
import pandas as pd
from great_expectations.core import ExpectationSuiteValidationResult
from great_expectations.core.batch_definition import BatchDefinition
from great_expectations.data_context import AbstractDataContext
from great_expectations.data_context.types.base import ProgressBarsConfig
from great_expectations.expectations.metadata_types import FailureSeverity
from great_expectations.validator.v1_validator import Validator

from models.schema import (
    BOOK_ID,
    BOOK_TAGS_COLUMNS,
    BOOKS_COLUMNS,
    GOODREADS_BOOK_ID,
    RATING,
    RATINGS_COLUMNS,
    TAG_COUNT,
    TAG_ID,
    TAG_NAME,
    TAGS_COLUMNS,
    TIMESTAMP,
    TO_READ_COLUMNS,
    USER_ID,
    DataValidationError,
)

Severity = Literal["critical", "warning"]
Status = Literal["passed", "failed", "quarantined", "skipped", "absent"]
CRITICAL: Severity = "critical"
WARNING: Severity = "warning"

# Validation order: reference tables first, so the tables that point at them can use them.
TABLES = ("books", "tags", "ratings", "to_read", "book_tags")
REQUIRED_TABLES = ("ratings", "books")

TITLE = "title"
AUTHORS = "authors"
YEAR = "original_publication_year"
LANGUAGE = "language_code"
# A catalogue needs its key and a title to show; the rest are joins (book_tags) and features
# (authors, decade, language), absent from other sources' catalogues (MovieLens' movies.csv).
BOOKS_REQUIRED = (BOOK_ID, TITLE)
BOOKS_FEATURES = (GOODREADS_BOOK_ID, AUTHORS, YEAR, LANGUAGE)
# Clocks drift a little; a timestamp further ahead than this is a bug, not a clock.
FUTURE_SLACK_S = 86_400

# The Epic of Gilgamesh, the oldest work in the real books.csv, is dated -1750.
MIN_PUBLICATION_YEAR = -1750
# ISO 639 code, optionally with a region: eng, en, en-US, fre, ...
LANGUAGE_CODE_PATTERN = r"^[a-z]{2,3}(?:-[A-Z]{2})?$"

EXAMPLES = 5
DOCS_SITE = "goodbooks"  # an ephemeral context already owns "local_site"

# Columns shown in example rows for context, besides the rule's own columns.
KEY_COLUMNS: Mapping[str, tuple[str, ...]] = MappingProxyType({
    "ratings": RATINGS_COLUMNS,
    "books": (BOOK_ID, TITLE),
    "tags": TAGS_COLUMNS,
    "book_tags": BOOK_TAGS_COLUMNS,
    "to_read": TO_READ_COLUMNS,
})

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


DeriveColumn = Callable[[pd.DataFrame, Mapping[str, pd.DataFrame]], pd.Series]
BuildView = Callable[[pd.DataFrame], pd.DataFrame]
TypeCheck = Callable[[pd.Series], pd.Series]


@dataclass(frozen=True)
class Rule:
    """One expectation of a suite, its severity and what it needs in order to run.

    ``derive`` computes the boolean column (named after the rule) that the expectation checks;
    ``view`` builds the aggregate table it checks instead of the rows. ``types`` holds the
    per-column checks of a type rule: rules reading a column that fails its check are skipped.
    ``needs`` names (table, key column) pairs of other tables the rule reads; ``complete``
    means the rule's columns must have no nulls (keys of joins and pairs); ``typed`` means
    the rule reads its columns as numbers, so it is skipped when one fails its type check.
    """

    name: str
    severity: Severity
    expectation: gxe.Expectation
    columns: tuple[str, ...] = ()
    derive: DeriveColumn | None = None
    view: BuildView | None = None
    needs: tuple[tuple[str, str], ...] = ()
    complete: bool = False
    quarantine: bool = False
    types: tuple[tuple[str, TypeCheck], ...] = ()
    typed: bool = True
    unit: str = "rows"
    # The rule is about an optional column: when the column is absent the rule is left out
    # of the report (a missing required column is reported by columns_present).
    optional: bool = False


# --- rule constructors --------------------------------------------------------------------


def _gx(expectation: type[gxe.Expectation], name: str, severity: Severity, description: str,
        **kwargs: Any) -> Any:
    """A GX expectation tagged with its rule; Data Docs show severity, rule and description."""
    return expectation(meta={"rule": name}, severity=FailureSeverity(severity),
                       description=f"{severity} · {name}: {description}", **kwargs)


def _derived_check(name: str, severity: Severity, description: str) -> gxe.Expectation:
    """The expectation every derived column gets: all its values are True."""
    return _gx(gxe.ExpectColumnValuesToBeInSet, name, severity, description, column=name,
               value_set=[True])


def _listed(columns: tuple[str, ...]) -> str:
    """'**a**, **b**' (Data Docs render Markdown)."""
    return ", ".join(f"**{c}**" for c in columns)


def columns_present(
    columns: tuple[str, ...], name: str = "columns_present", severity: Severity = CRITICAL
) -> Rule:
    """The table has at least these columns."""
    return Rule(name, severity, _gx(gxe.ExpectTableColumnsToMatchSet, name, severity,
                                    f"columns include {_listed(columns)}",
                                    column_set=list(columns), exact_match=False))


def column_types(whole: tuple[str, ...], numeric: tuple[str, ...] = (),
                 severity: Severity = CRITICAL) -> Rule:
    """Non-null values are whole numbers (`whole`) or numbers (`numeric`), not text."""
    name = "column_types"
    types = tuple((c, _whole_or_null) for c in whole) + tuple((c, _number_or_null) for c in numeric)
    kinds = [f"{_listed(whole)} hold whole numbers"] + (
        [f"{_listed(numeric)} hold numbers"] if numeric else [])
    return Rule(name, severity, _derived_check(name, severity, "; ".join(kinds)),
                columns=whole + numeric, types=types, typed=False)


def values_present(columns: tuple[str, ...], severity: Severity = CRITICAL) -> Rule:
    """None of these columns has a null."""
    name = "required_values_present"
    return Rule(name, severity, _derived_check(name, severity, f"{_listed(columns)}: no nulls"),
                columns=columns, typed=False,
                derive=lambda frame, _: frame[list(columns)].notna().all(axis=1))


def ids_in_range(lowest: Mapping[str, int], severity: Severity = CRITICAL,
                 name: str = "ids_in_range") -> Rule:
    """Non-null ids are at least their column's lowest id."""
    listed = ", ".join(f"**{c}** ≥ {low}" for c, low in lowest.items())
    return Rule(name, severity, _derived_check(name, severity, listed),
                columns=tuple(lowest), derive=lambda frame, _: _at_least(frame, lowest))


def not_null(column: str, severity: Severity = CRITICAL) -> Rule:
    """The column has no nulls."""
    name = f"{column}_not_null"
    return Rule(name, severity, _gx(gxe.ExpectColumnValuesToNotBeNull, name, severity,
                                    f"**{column}**: no nulls", column=column),
                columns=(column,), typed=False)


def between(column: str, low: float | None, high: float | None, name: str,
            severity: Severity = CRITICAL) -> Rule:
    """Non-null values lie in low..high (None: unbounded on that side)."""
    span = (f"{low}..{high}" if low is not None and high is not None
            else f"≥ {low}" if low is not None else f"≤ {high}")
    return Rule(name, severity, _gx(gxe.ExpectColumnValuesToBeBetween, name, severity,
                                    f"**{column}** {span}", column=column,
                                    min_value=low, max_value=high),
                columns=(column,))


def optional(rule: Rule) -> Rule:
    """The same rule, left out of the report when its column is absent."""
    return replace(rule, optional=True)


def in_order(column: str, severity: Severity = CRITICAL) -> Rule:
    """Non-null values never go back: each is at least every value on the lines before it."""
    name = f"{column}_in_order"
    return Rule(name, severity,
                _derived_check(name, severity, f"**{column}** never decreases down the file"),
                columns=(column,),
                derive=lambda frame, _: _not_before_previous(frame[column]))


def unique(column: str, severity: Severity = CRITICAL) -> Rule:
    """No value of the column appears twice."""
    name = f"{column}_unique"
    return Rule(name, severity, _gx(gxe.ExpectColumnValuesToBeUnique, name, severity,
                                    f"**{column}** values are unique", column=column),
                columns=(column,))


def matches(column: str, pattern: str, name: str, severity: Severity = CRITICAL) -> Rule:
    """Non-null values match the regular expression."""
    return Rule(name, severity, _gx(gxe.ExpectColumnValuesToMatchRegex, name, severity,
                                    f"**{column}** matches `{pattern}`",
                                    column=column, regex=pattern),
                columns=(column,))


def row_count(bounds: tuple[int, int], severity: Severity = CRITICAL) -> Rule:
    """The table has low..high rows."""
    name = "row_count_in_bounds"
    return Rule(name, severity, _gx(gxe.ExpectTableRowCountToBeBetween, name, severity,
                                    f"{bounds[0]:,}..{bounds[1]:,} rows",
                                    min_value=bounds[0], max_value=bounds[1]))


def pairs_unique(first: str, second: str, severity: Severity = CRITICAL,
                 quarantine: bool = False) -> Rule:
    """No (first, second) pair appears twice; repeats after the first occurrence fail."""
    name = f"{first.removesuffix('_id')}_{second.removesuffix('_id')}_pair_unique"
    return Rule(name, severity,
                _derived_check(name, severity,
                               f"({_listed((first, second))}) pairs are unique "
                               "(the first occurrence of a repeated pair passes)"),
                columns=(first, second), complete=True, quarantine=quarantine,
                derive=lambda frame, _: ~_repeats(frame[first], frame[second]))


def references(column: str, table: str, key: str, severity: Severity = CRITICAL,
               quarantine: bool = False) -> Rule:
    """Every value of the column exists in table.key."""
    name = f"{column}_in_{table}"
    return Rule(name, severity,
                _derived_check(name, severity, f"every **{column}** exists in {table}.{key}"),
                columns=(column,), needs=((table, key),), complete=True,
                quarantine=quarantine,
                derive=lambda frame, tables: frame[column].isin(
                    pd.to_numeric(tables[table][key])))


def ratings_per_user(minimum: int, severity: Severity = CRITICAL) -> Rule:
    """Every reader has at least `minimum` ratings (checked on a per-reader table)."""
    name = "ratings_per_user_at_least_min"
    return Rule(name, severity, _gx(gxe.ExpectColumnValuesToBeBetween, name, severity,
                                    f"every reader has at least {minimum} ratings",
                                    column="ratings", min_value=minimum),
                columns=(USER_ID,), complete=True, view=_ratings_per_user, unit="readers")


def rating_mix(bands: Mapping[int, tuple[float, float]], severity: Severity = CRITICAL) -> Rule:
    """The share of each rating value lies in its band (checked on a per-value table)."""
    name = "rating_mix_within_bands"
    listed = ", ".join(f"{v}: {low:.1%}..{high:.1%}" for v, (low, high) in sorted(bands.items()))
    return Rule(name, severity,
                _derived_check(name, severity, f"share of each **rating** value in its band "
                                               f"({listed})"),
                columns=(RATING,), view=lambda frame: _rating_mix(frame[RATING], bands, name),
                unit="rating values")


# --- the suites: one per goodbooks file ---------------------------------------------------


def ratings_suite(config: ValidationConfig) -> list[Rule]:
    """The rules ratings.csv must meet."""
    rules = [
        # Training reads exactly these columns.
        columns_present(RATINGS_COLUMNS),
        # Ids index the interaction matrix and the scale has whole stars: no text, no fractions.
        column_types(whole=(*RATINGS_COLUMNS, TIMESTAMP)),
        # A rating needs its reader, its book and its value; a hole is a truncated line.
        values_present(RATINGS_COLUMNS),
        # Optional time (seconds since 1970): whole numbers, no holes, not ahead of the
        # clock. Out of order is allowed (a merged export) but said: the snapshot sorts.
        optional(not_null(TIMESTAMP)),
        optional(between(TIMESTAMP, 0, int(datetime.now(UTC).timestamp()) + FUTURE_SLACK_S,
                         name="timestamp_not_in_future")),
        optional(in_order(TIMESTAMP, severity=WARNING)),
        # goodbooks ids start at 1; 0 or negative ids are an off-by-one or a sentinel.
        ids_in_range({USER_ID: 1, BOOK_ID: 1}),
        # The goodbooks scale is 1..5 stars; anything else is a re-scaled or corrupt column.
        between(RATING, 1, 5, name="rating_1_to_5"),
        # One rating per reader and book; a repeat would count the interaction twice.
        pairs_unique(USER_ID, BOOK_ID, quarantine=True),
    ]
    if config.cross_table:
        # A rating of a book missing from books.csv means the two files do not belong
        # together (a stale books.csv, a shifted id column): never drop those silently.
        # New ratings may arrive before their book's metadata: then they are held back.
        rules.append(references(BOOK_ID, "books", BOOK_ID, severity=(
            WARNING if config.unknown_books == "hold" else CRITICAL)))
    if "ratings" in config.row_bounds:
        # A truncated download or a file appended to itself changes the volume.
        rules.append(row_count(config.row_bounds["ratings"]))
    if config.min_ratings_per_user is not None:
        # The per-reader split (70/10/20) needs enough ratings from every reader.
        rules.append(ratings_per_user(config.min_ratings_per_user))
    if config.rating_share_bands is not None:
        # Catches a silently reversed, shifted or re-scaled rating column.
        rules.append(rating_mix(config.rating_share_bands))
    return rules


def books_suite(config: ValidationConfig) -> list[Rule]:
    """The rules books.csv must meet."""
    rules = [
        # The key and the title shown to readers.
        columns_present(BOOKS_REQUIRED),
        # The join to book_tags and the features (authors, decade, language): without them
        # the model learns from ratings alone; rules on an absent column are skipped.
        columns_present(BOOKS_FEATURES, name="feature_columns_present", severity=WARNING),
        # The remaining goodbooks columns are extras: tell when a source drops them.
        columns_present(BOOKS_COLUMNS, name="standard_columns_present", severity=WARNING),
        # Keys must be whole numbers to be joined; the year is a numeric feature.
        column_types(whole=(BOOK_ID, GOODREADS_BOOK_ID), numeric=(YEAR,)),
        # Keys join ratings and tags; recommendations show title and authors (also a feature).
        values_present((BOOK_ID, TITLE)),
        optional(not_null(GOODREADS_BOOK_ID)),
        optional(not_null(AUTHORS)),
        # goodbooks ids start at 1; 0 or negative ids are an off-by-one or a sentinel.
        ids_in_range({BOOK_ID: 1}),
        optional(ids_in_range({GOODREADS_BOOK_ID: 1}, name="goodreads_ids_in_range")),
        # A repeated key would give one book two sets of metadata.
        unique(BOOK_ID),
        # Each book_tags row must attach to exactly one book.
        optional(unique(GOODREADS_BOOK_ID)),
        # A year outside this range is a typo or a sentinel; unknown years are allowed.
        optional(between(YEAR, MIN_PUBLICATION_YEAR, datetime.now(UTC).year + 1,
                         name="publication_year_plausible", severity=WARNING)),
        # The language feature groups by code; a malformed code becomes a language of its own.
        optional(matches(LANGUAGE, LANGUAGE_CODE_PATTERN, name="language_code_well_formed",
                         severity=WARNING)),
    ]
    if "books" in config.row_bounds:
        # A truncated download or a file appended to itself changes the volume.
        rules.append(row_count(config.row_bounds["books"]))
    return rules


def tags_suite(config: ValidationConfig) -> list[Rule]:
    """The rules tags.csv must meet."""
    rules = [
        # Tag features join book_tags to these names.
        columns_present(TAGS_COLUMNS),
        # tag_id is the key book_tags points at: a whole number.
        column_types(whole=(TAG_ID,)),
        # A tag without its key cannot be attached to any book.
        values_present((TAG_ID,)),
        # Tag ids are non-negative: the real file starts at 0 (the tag "-").
        ids_in_range({TAG_ID: 0}),
        # A repeated key would give one tag two names.
        unique(TAG_ID),
        # A nameless tag still works as a feature but cannot be explained to anyone.
        not_null(TAG_NAME, severity=WARNING),
        # Two ids with one name split what readers see as one tag.
        unique(TAG_NAME, severity=WARNING),
    ]
    if "tags" in config.row_bounds:
        # A truncated download or a file appended to itself changes the volume.
        rules.append(row_count(config.row_bounds["tags"]))
    return rules


def book_tags_suite(config: ValidationConfig) -> list[Rule]:
    """The rules book_tags.csv must meet."""
    rules = [
        # Tag features read exactly these columns.
        columns_present(BOOK_TAGS_COLUMNS),
        # Keys must be whole numbers to join books and tags; counts are tallies.
        column_types(whole=BOOK_TAGS_COLUMNS),
        # A row without its book or tag attaches nothing; a missing count is a truncated line.
        values_present(BOOK_TAGS_COLUMNS),
        # Book ids start at 1 and tag ids at 0, as in books.csv and tags.csv.
        ids_in_range({GOODREADS_BOOK_ID: 1, TAG_ID: 0}),
        # A negative count is odd but only weakens one tag weight.
        between(TAG_COUNT, 0, None, name="count_non_negative", severity=WARNING),
        # A repeated (book, tag) pair double-counts that tag's weight.
        pairs_unique(GOODREADS_BOOK_ID, TAG_ID, severity=WARNING),
    ]
    if config.cross_table:
        # A tag on a book missing from books.csv attaches to nothing.
        rules.append(references(GOODREADS_BOOK_ID, "books", GOODREADS_BOOK_ID, quarantine=True))
        # A tag id missing from tags.csv has no name.
        rules.append(references(TAG_ID, "tags", TAG_ID, quarantine=True))
    if "book_tags" in config.row_bounds:
        # A truncated download or a file appended to itself changes the volume.
        rules.append(row_count(config.row_bounds["book_tags"]))
    return rules


def to_read_suite(config: ValidationConfig) -> list[Rule]:
    """The rules to_read.csv must meet."""
    rules = [
        # The to-read features read exactly these columns.
        columns_present(TO_READ_COLUMNS),
        # Ids index the interaction matrix: whole numbers, no text.
        column_types(whole=TO_READ_COLUMNS),
        # A to-read entry without its reader or book says nothing.
        values_present(TO_READ_COLUMNS),
        # goodbooks ids start at 1; 0 or negative ids are an off-by-one or a sentinel.
        ids_in_range({USER_ID: 1, BOOK_ID: 1}),
        # A shelf holds a book once; a repeat double-counts the intent.
        pairs_unique(USER_ID, BOOK_ID, quarantine=True),
    ]
    if config.cross_table:
        # A shelved book missing from books.csv cannot be recommended or excluded.
        rules.append(references(BOOK_ID, "books", BOOK_ID, quarantine=True))
    if "to_read" in config.row_bounds:
        # A truncated download or a file appended to itself changes the volume.
        rules.append(row_count(config.row_bounds["to_read"]))
    return rules


SUITES: Mapping[str, Callable[[ValidationConfig], list[Rule]]] = MappingProxyType({
    "ratings": ratings_suite,
    "books": books_suite,
    "tags": tags_suite,
    "book_tags": book_tags_suite,
    "to_read": to_read_suite,
})


# --- derived columns and tables (vectorised pandas) ---------------------------------------


def _whole_or_null(values: pd.Series) -> pd.Series:
    """True where the value is null or a finite whole number (text and fractions are False)."""
    if pd.api.types.is_integer_dtype(values.dtype):
        return pd.Series(True, index=values.index)
    numeric = pd.to_numeric(values, errors="coerce").astype("float64")
    whole = np.isfinite(numeric) & (numeric == np.floor(numeric))
    return values.isna() | whole


def _number_or_null(values: pd.Series) -> pd.Series:
    """True where the value is null or a number."""
    if pd.api.types.is_numeric_dtype(values.dtype) and not pd.api.types.is_bool_dtype(values):
        return pd.Series(True, index=values.index)
    return values.isna() | pd.to_numeric(values, errors="coerce").notna()


def _not_before_previous(values: pd.Series) -> pd.Series:
    """True where the value is null or at least the largest value on the lines before it."""
    numbers = values.to_numpy(dtype=np.float64, na_value=np.nan)
    before = np.fmax.accumulate(np.r_[-np.inf, numbers[:-1]]) if len(numbers) else numbers
    return pd.Series(np.isnan(numbers) | (numbers >= before), index=values.index)


def _at_least(frame: pd.DataFrame, lowest: Mapping[str, int]) -> pd.Series:
    """True where every listed column is null or at least its lowest value."""
    ok = pd.Series(True, index=frame.index)
    for column, low in lowest.items():
        ok &= frame[column].isna() | (frame[column] >= low)
    return ok


def _repeats(first: pd.Series, second: pd.Series) -> pd.Series:
    """True on every occurrence of a (first, second) pair after its first one."""
    a = first.to_numpy(dtype=np.int64)
    b = second.to_numpy(dtype=np.int64)
    repeat = np.zeros(len(a), dtype=bool)
    if len(a) < 2:
        return pd.Series(repeat, index=first.index)
    a_low, b_low = int(a.min()), int(b.min())
    a_span, b_span = int(a.max()) - a_low + 1, int(b.max()) - b_low + 1
    if a_span * b_span >= 2**62:
        # Ids too sparse to pack into one int64 key: let pandas hash the pairs.
        both = pd.DataFrame({"a": a, "b": b})
        return pd.Series(both.duplicated(keep="first").to_numpy(), index=first.index)
    # One int64 key per pair and a sort: several times faster than hashing 6M pairs.
    key = (a - a_low) * b_span + (b - b_low)
    ordered = np.sort(key)
    repeated_keys = ordered[1:][ordered[1:] == ordered[:-1]]
    if repeated_keys.size:
        suspects = np.isin(key, repeated_keys)
        repeat[suspects] = pd.Series(key[suspects]).duplicated(keep="first").to_numpy()
    return pd.Series(repeat, index=first.index)


def _ratings_per_user(ratings: pd.DataFrame) -> pd.DataFrame:
    """One row per reader: user_id, ratings."""
    counts = ratings[USER_ID].value_counts(sort=False).sort_index()
    return pd.DataFrame({USER_ID: counts.index.to_numpy(), "ratings": counts.to_numpy()})


def _rating_mix(ratings: pd.Series, bands: Mapping[int, tuple[float, float]],
                flag: str) -> pd.DataFrame:
    """One row per banded rating value: share, band, and in column `flag` whether it fits."""
    shares = ratings.value_counts(normalize=True)
    values = sorted(bands)
    share = np.array([float(shares.get(v, 0.0)) for v in values])
    low = np.array([bands[v][0] for v in values])
    high = np.array([bands[v][1] for v in values])
    return pd.DataFrame({
        RATING: values,
        "share": share.round(4),
        "band_low": low,
        "band_high": high,
        flag: (share >= low) & (share <= high),
    })


# --- the report ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ExampleRow:
    """One offending row: its line in the CSV (None for aggregate tables) and its values."""

    line: int | None
    values: Mapping[str, object]

    def __str__(self) -> str:
        """'line 7: user_id=1, rating=9' (values only for aggregate tables)."""
        values = ", ".join(f"{k}={_plain(v)!r}" for k, v in self.values.items())
        return f"line {self.line}: {values}" if self.line is not None else values


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one rule on one table.

    ``success`` is what GX said; ``status`` is the verdict after quarantine, skips and
    absent files: passed, failed, quarantined (rows dropped), skipped or absent.
    """

    table: str
    rule: str
    expectation: str
    columns: tuple[str, ...]
    severity: Severity
    status: Status
    success: bool | None = None
    unexpected_count: int | None = None
    element_count: int | None = None
    examples: tuple[ExampleRow, ...] = ()
    detail: str = ""
    unit: str = "rows"

    @property
    def file(self) -> str:
        """The CSV file the rule checked."""
        return f"{self.table}.csv"

    def describe(self) -> str:
        """One line: file, rule, expectation, columns, count and detail."""
        on = f" on {', '.join(self.columns)}" if self.columns else ""
        what = f"{self.file}: {self.rule} ({self.expectation or 'file check'}{on})"
        if self.unexpected_count is not None and self.element_count:
            what += f": {self.unexpected_count:,} of {self.element_count:,} {self.unit}"
        return f"{what}: {self.detail}" if self.detail else what


@dataclass(frozen=True)
class ValidationReport:
    """Every check of one validation run and where its Data Docs are."""

    checks: tuple[CheckResult, ...]
    data_docs_index: Path | None = None

    @property
    def failures(self) -> list[CheckResult]:
        """Failed critical checks: any of them fails the validation."""
        return [c for c in self.checks if c.status == "failed" and c.severity == CRITICAL]

    @property
    def warnings(self) -> list[CheckResult]:
        """Failed warning checks: reported, not blocking."""
        return [c for c in self.checks if c.status == "failed" and c.severity == WARNING]

    @property
    def passed(self) -> bool:
        """True when no critical check failed."""
        return not self.failures

    @property
    def absent(self) -> list[str]:
        """Tables whose file was not given."""
        return [c.table for c in self.checks if c.status == "absent"]

    @property
    def quarantined(self) -> dict[str, int]:
        """Rows dropped per table, counted per rule (the quarantine frames hold each row once)."""
        counts: dict[str, int] = {}
        for check in self.checks:
            if check.status == "quarantined":
                counts[check.table] = counts.get(check.table, 0) + int(check.unexpected_count or 0)
        return counts

    def summary(self) -> dict[str, object]:
        """A JSON-ready digest for a snapshot manifest."""
        return {
            "passed": self.passed,
            "checks": len(self.checks),
            "failures": [c.describe() for c in self.failures],
            "warnings": [c.describe() for c in self.warnings],
            "quarantined_rows": self.quarantined,
            "absent_tables": self.absent,
            "skipped": [c.describe() for c in self.checks if c.status == "skipped"],
            "data_docs": str(self.data_docs_index) if self.data_docs_index else None,
        }

    def to_markdown(self) -> str:
        """The report as Markdown: a verdict line, then one table row per check, problems first."""
        verdict = "passed" if self.passed else "FAILED"
        quarantined = sum(self.quarantined.values())
        lines = [
            f"## Data validation {verdict}",
            "",
            f"{len(self.failures)} critical failure(s), {len(self.warnings)} warning(s), "
            f"{quarantined:,} row(s) quarantined, {len(self.checks)} check(s).",
        ]
        if self.absent:
            lines.append(f"Absent files: {', '.join(f'{t}.csv' for t in self.absent)}.")
        if self.data_docs_index is not None:
            lines.append(f"Data Docs: [{self.data_docs_index}]({self.data_docs_index.as_uri()})")
        lines += [
            "",
            "| file | rule | expectation | column(s) | severity | status | unexpected | "
            "examples / detail |",
            "|---|---|---|---|---|---|---|---|",
        ]
        order = {"failed": 0, "quarantined": 1, "skipped": 2, "absent": 3, "passed": 4}
        ranked = sorted(self.checks, key=lambda c: (order[c.status], c.severity != CRITICAL))
        for c in ranked:
            count = (f"{c.unexpected_count:,} / {c.element_count:,}"
                     if c.unexpected_count is not None and c.element_count is not None else "")
            notes = [c.detail] if c.detail else []
            notes += [str(e) for e in c.examples]
            status = f"**{c.status}**" if c.status == "failed" else c.status
            cells = [c.file, c.rule, c.expectation, ", ".join(c.columns), c.severity, status,
                     count]
            lines.append("| " + " | ".join(_cell(x) for x in cells) + " | "
                         + "<br>".join(_cell(n) for n in notes) + " |")
        return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class ValidationOutcome:
    """The report, the cleaned tables and the quarantined rows of each table.

    ``tables`` is empty when a critical check failed, so nothing can be written by mistake.
    Cleaned tables have quarantined rows dropped, a fresh index and whole-number columns as
    int64. Quarantine frames hold the dropped rows with their CSV ``line`` and failed ``rule``.
    """

    report: ValidationReport
    tables: dict[str, pd.DataFrame]
    quarantine: dict[str, pd.DataFrame]


def raise_for_critical(report: ValidationReport) -> None:
    """Raise DataValidationError naming every failed critical rule, its file and example rows."""
    if report.passed:
        return
    lines = [f"data validation failed: {len(report.failures)} critical rule(s) broken"]
    for check in report.failures:
        lines.append(check.describe())
        lines += [f"    {example}" for example in check.examples]
    if report.data_docs_index is not None:
        lines.append(f"Data Docs: {report.data_docs_index}")
    raise DataValidationError("\n".join(lines))


# --- the engine ---------------------------------------------------------------------------


def validate_tables(
    tables: Mapping[str, pd.DataFrame | None],
    config: ValidationConfig,
    reference_tables: Mapping[str, pd.DataFrame] | None = None,
) -> ValidationOutcome:
    """Run each given table's suite (ratings, books, tags, book_tags, to_read; None = absent).

    ``reference_tables`` are what references point at instead of the given table of that
    name (the catalogue a snapshot already holds plus a file's new books, when the file's
    ratings are judged); they are not validated here.
    """
    unknown = set(tables) - set(TABLES)
    if unknown:
        raise ValueError(f"unknown table(s) {sorted(unknown)}; expected some of {TABLES}")
    given = {name: frame for name, frame in tables.items() if frame is not None}
    present = {**given, **(reference_tables or {})}
    context = _context(config.data_docs_dir)
    # One asset serves every frame (each run passes its own): adding assets re-saves the
    # context's configuration each time, a cost per run that buys nothing here.
    batch = (context.data_sources.add_pandas("goodbooks").add_dataframe_asset("goodbooks")
             .add_batch_definition_whole_dataframe("whole table"))
    checks: list[CheckResult] = []
    cleaned: dict[str, pd.DataFrame] = {}
    quarantine: dict[str, pd.DataFrame] = {}
    for name in TABLES:
        if name not in given:
            if name in config.required_tables or reference_tables is None:
                checks.append(_absent(name, required=name in config.required_tables))
            continue
        run = _TableRun(name, given[name], present, SUITES[name](config), config)
        table_checks = run.execute(context, batch)
        checks += table_checks
        cleaned[name], dropped = run.cleaned(table_checks)
        if dropped is not None:
            quarantine[name] = dropped
    index = None
    if config.data_docs_dir is not None:
        context.build_data_docs(site_names=[DOCS_SITE])
        index = Path(config.data_docs_dir).resolve() / "index.html"
    report = ValidationReport(checks=tuple(checks), data_docs_index=index)
    return ValidationOutcome(report=report, tables=cleaned if report.passed else {},
                             quarantine=quarantine)


def _context(docs_dir: Path | None) -> AbstractDataContext:
    """A fresh in-memory GX context, writing Data Docs only under docs_dir."""
    context = gx.get_context(mode="ephemeral")
    # Progress bars would flood the flow's logs with one line per metric.
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    if docs_dir is not None:
        context.add_data_docs_site(DOCS_SITE, {
            "class_name": "SiteBuilder",
            "store_backend": {"class_name": "TupleFilesystemStoreBackend",
                              "base_directory": str(Path(docs_dir).resolve())},
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
            # Validation pages show every expectation with its result; the suite pages would
            # repeat them and take half the build time.
            "site_section_builders": {"expectations": "0", "profiling": "0"},
        })
    return context


def _absent(table: str, required: bool) -> CheckResult:
    """The report row of a file that was not given."""
    if required:
        return CheckResult(table, "file_present", "", (), CRITICAL, "failed",
                           detail="required file is missing")
    return CheckResult(table, "file_present", "", (), WARNING, "absent",
                       detail="file not given; rules needing it are skipped")


class _TableRun:
    """One table's suite: decide what can run, derive columns, run GX, read the results."""

    def __init__(self, name: str, frame: pd.DataFrame, tables: Mapping[str, pd.DataFrame],
                 rules: list[Rule], config: ValidationConfig) -> None:
        """The table `name`, its frame, every given table (for references) and its rules."""
        self.name = name
        self.frame = frame
        self.tables = tables
        self.rules = rules
        self.config = config
        self.derived: dict[str, pd.Series] = {}
        self.keep = config.data_docs_dir is not None

    def execute(self, context: AbstractDataContext, batch: BatchDefinition) -> list[CheckResult]:
        """Run the suite; returns one CheckResult per rule, in suite order."""
        bad_types = self._type_failures()
        typed = self._typed_frame(bad_types)
        skipped: dict[str, str] = {}
        for rule in self.rules:
            reason = self._skip_reason(rule, bad_types)
            if reason:
                skipped[rule.name] = reason
            elif rule.derive is not None and rule.name not in self.derived:
                self.derived[rule.name] = rule.derive(typed, self.tables)
        results: dict[str, tuple[Any, pd.DataFrame]] = {}
        row_rules = [r for r in self.rules if r.name not in skipped and r.view is None]
        if row_rules:
            checked = typed.assign(**{r.name: self.derived[r.name] for r in row_rules
                                      if r.name in self.derived})
            outcome = _run_gx(context, batch, self.name, row_rules, checked, self.keep)
            results.update({rule: (result, self.frame) for rule, result in outcome.items()})
        for rule in self.rules:
            if rule.name not in skipped and rule.view is not None:
                view = rule.view(typed)
                outcome = _run_gx(context, batch, f"{self.name}.{rule.name}", [rule], view,
                                  self.keep)
                results[rule.name] = (outcome[rule.name], view)
        return [self._check(rule, skipped.get(rule.name), results.get(rule.name))
                for rule in self.rules if not self._left_out(rule)]

    def _left_out(self, rule: Rule) -> bool:
        """An optional rule whose column the table does not have."""
        return rule.optional and any(c not in self.frame.columns for c in rule.columns)

    def _type_failures(self) -> set[str]:
        """Columns failing their type check; stores each type rule's derived column."""
        failed = set()
        for rule in self.rules:
            if not rule.types:
                continue
            ok = pd.Series(True, index=self.frame.index)
            for column, check in rule.types:
                if column in self.frame.columns:
                    column_ok = check(self.frame[column])
                    if not bool(column_ok.all()):
                        failed.add(column)
                        ok &= column_ok
            self.derived[rule.name] = ok
        return failed

    def _typed_frame(self, bad_types: set[str]) -> pd.DataFrame:
        """The frame with well-typed text columns of numbers converted to numbers."""
        converted = {
            column: pd.to_numeric(self.frame[column])
            for rule in self.rules for column, _ in rule.types
            if column in self.frame.columns and column not in bad_types
            and not pd.api.types.is_numeric_dtype(self.frame[column].dtype)
        }
        return self.frame.assign(**converted) if converted else self.frame

    def _skip_reason(self, rule: Rule, bad_types: set[str]) -> str | None:
        """Why the rule cannot run on this data, or None when it can."""
        missing = [c for c in rule.columns if c not in self.frame.columns]
        if missing and not rule.types:
            return f"column(s) absent: {', '.join(missing)}"
        if rule.typed:
            wrong = [c for c in rule.columns if c in bad_types]
            if wrong:
                return f"column(s) hold values of the wrong type: {', '.join(wrong)}"
        if rule.complete:
            holed = [c for c in rule.columns if bool(self.frame[c].isna().any())]
            if holed:
                return f"column(s) have nulls: {', '.join(holed)}"
        for table, column in rule.needs:
            if table not in self.tables:
                return f"{table}.csv absent"
            problem = _key_problem(self.tables[table], column)
            if problem:
                return f"{table}.{column} {problem}"
        return None

    def _check(self, rule: Rule, skipped: str | None,
               run: tuple[Any, pd.DataFrame] | None) -> CheckResult:
        """The CheckResult of one rule from its GX result (or its skip reason)."""
        base = {"table": self.name, "rule": rule.name, "severity": rule.severity,
                "expectation": rule.expectation.expectation_type, "columns": rule.columns,
                "unit": rule.unit}
        if skipped is not None or run is None:
            return CheckResult(**base, status="skipped", detail=skipped or "not run")
        result, source = run
        error = _gx_error(result.exception_info)
        if error:
            return CheckResult(**base, status="failed", success=False, detail=f"GX raised: {error}")
        details = result.result or {}
        unexpected = details.get("unexpected_count")
        elements = details.get("element_count")
        examples = _examples(source, details.get("partial_unexpected_index_list") or [],
                             rule, self.name, aggregate=rule.view is not None)
        detail = _observed(rule, details, self.frame)
        if result.success:
            status: Status = "passed"
        elif rule.quarantine and self._within_quarantine(unexpected):
            status = "quarantined"
            detail = f"rows dropped (at most {self.config.quarantine_max_ratio:.2%} allowed)"
        else:
            status = "failed"
        return CheckResult(**base, status=status, success=bool(result.success),
                           unexpected_count=unexpected, element_count=elements,
                           examples=examples, detail=detail)

    def _within_quarantine(self, unexpected: int | None) -> bool:
        """Whether that many failing rows may be dropped instead of failing the table."""
        rows = len(self.frame)
        return unexpected is not None and rows > 0 and (
            unexpected / rows <= self.config.quarantine_max_ratio)

    def cleaned(self, checks: list[CheckResult]) -> tuple[pd.DataFrame, pd.DataFrame | None]:
        """The table without quarantined rows (whole numbers as int64), and those rows."""
        frame, dropped = self.frame, None
        failing = {c.rule: ~self.derived[c.rule].to_numpy(dtype=bool)
                   for c in checks if c.status == "quarantined"}
        if failing:
            mask = np.logical_or.reduce(list(failing.values()))
            rows = np.flatnonzero(mask)
            dropped = frame.iloc[rows].copy()
            dropped.insert(0, "line", dropped.index.to_numpy() + 2)
            dropped["rule"] = [",".join(r for r, bad in failing.items() if bad[i]) for i in rows]
            frame = frame[~mask].reset_index(drop=True)
        whole = [column for rule in self.rules for column, check in rule.types
                 if check is _whole_or_null and column in frame.columns]
        casts = {c: frame[c].astype(np.int64) for c in whole
                 if frame[c].dtype != np.int64 and bool(frame[c].notna().all())
                 and bool(_whole_or_null(frame[c]).all())}
        return (frame.assign(**casts) if casts else frame), dropped


def _key_problem(frame: pd.DataFrame, column: str) -> str | None:
    """Why a referenced key column cannot be used, or None."""
    if column not in frame.columns:
        return "is absent"
    if not bool(_whole_or_null(frame[column]).all()):
        return "holds values that are not whole numbers"
    if bool(frame[column].isna().any()):
        return "has nulls"
    return None


def _run_gx(context: AbstractDataContext, batch: BatchDefinition, name: str,
            rules: list[Rule], frame: pd.DataFrame, keep: bool) -> dict[str, Any]:
    """Validate one frame against the rules' expectations; results by rule name."""
    suite = gx.ExpectationSuite(name=name, expectations=[rule.expectation for rule in rules])
    # SUMMARY with 5 examples: counts and a few indices, never the full unexpected lists
    # (nor the query text GX would otherwise build from them).
    result_format = {"result_format": "SUMMARY", "partial_unexpected_count": EXAMPLES,
                     "return_unexpected_index_query": False}
    parameters = {"dataframe": frame}
    run: ExpectationSuiteValidationResult
    # Data Docs render what the stores hold; without them, skip serialising into the stores.
    if keep:
        definition = context.validation_definitions.add(gx.ValidationDefinition(
            name=name, data=batch, suite=context.suites.add(suite)))
        run = definition.run(batch_parameters=parameters, result_format=result_format)
    else:
        run = Validator(batch_definition=batch, batch_parameters=parameters,
                        result_format=result_format).validate_expectation_suite(suite)
    return {result.expectation_config.meta["rule"]: result for result in run.results}


def _gx_error(info: Mapping[str, Any] | None) -> str:
    """The message of an exception GX caught ('' when none); it nests one dict per metric."""
    if not info:
        return ""
    if "raised_exception" in info:
        return str(info["exception_message"]) if info["raised_exception"] else ""
    return "; ".join(_gx_error(nested) for nested in info.values()
                     if isinstance(nested, Mapping) and _gx_error(nested))


def _examples(frame: pd.DataFrame, index: list[Any], rule: Rule, table: str,
              aggregate: bool) -> tuple[ExampleRow, ...]:
    """Up to EXAMPLES offending rows with their CSV line (index + 2)."""
    if not index:
        return ()
    if aggregate:
        # The rule's own flag column says nothing the failure has not said already.
        rows = frame.loc[list(index)[:EXAMPLES], [c for c in frame.columns if c != rule.name]]
        return tuple(ExampleRow(None, row) for row in rows.to_dict("records"))
    columns = [c for c in dict.fromkeys(KEY_COLUMNS[table] + rule.columns) if c in frame.columns]
    rows = frame.loc[list(index)[:EXAMPLES], columns]
    return tuple(ExampleRow(int(i) + 2, row)
                 for i, row in zip(rows.index, rows.to_dict("records"), strict=True))


def _observed(rule: Rule, details: Mapping[str, Any], frame: pd.DataFrame) -> str:
    """A short text of what a table-level expectation saw."""
    if "observed_value" not in details:
        return ""
    observed = details["observed_value"]
    if rule.expectation.expectation_type == "expect_table_columns_to_match_set":
        wanted = rule.expectation.column_set or []
        missing = [c for c in wanted if c not in frame.columns]
        return f"missing column(s): {', '.join(missing)}" if missing else ""
    return f"observed {observed:,}" if isinstance(observed, int) else f"observed {observed}"


def _plain(value: object) -> object:
    """numpy scalars as Python ones, so examples print as 1 rather than np.int64(1)."""
    return value.item() if isinstance(value, np.generic) else value


def _cell(text: str) -> str:
    """Text safe inside a Markdown table cell."""
    return html.escape(str(text), quote=False).replace("|", "\\|").replace("\n", " ")
