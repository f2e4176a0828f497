"""The suites: the rules each goodbooks file must meet, one function per file.

Each rule carries a comment saying why it exists. A suite takes the ``ValidationConfig``:
volumes, aggregates and references enter only when the configuration asks for them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from types import MappingProxyType

from models.expectations.config import CRITICAL, WARNING, ValidationConfig
from models.expectations.rules import (
    Rule,
    between,
    column_types,
    columns_present,
    id_at_least,
    in_order,
    matches,
    not_null,
    optional,
    pairs_unique,
    rating_mix,
    ratings_per_user,
    references,
    row_count,
    unique,
)
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
)

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


def ratings_suite(config: ValidationConfig) -> list[Rule]:
    """The rules ratings.csv must meet."""
    rules = [
        # Training reads exactly these columns.
        columns_present(RATINGS_COLUMNS),
        # Ids index the interaction matrix and the scale has whole stars: no text, no fractions.
        column_types(whole=(*RATINGS_COLUMNS, TIMESTAMP)),
        # A rating needs its reader, its book and its value; a hole is a truncated line.
        *(not_null(column) for column in RATINGS_COLUMNS),
        # Optional time (seconds since 1970): whole numbers, no holes, not ahead of the
        # clock. Out of order is allowed (a merged export) but said: the snapshot sorts.
        optional(not_null(TIMESTAMP)),
        optional(between(TIMESTAMP, 0, int(datetime.now(UTC).timestamp()) + FUTURE_SLACK_S,
                         name="timestamp_not_in_future")),
        optional(in_order(TIMESTAMP, severity=WARNING)),
        # goodbooks ids start at 1; 0 or negative ids are an off-by-one or a sentinel.
        id_at_least(USER_ID, 1),
        id_at_least(BOOK_ID, 1),
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
        not_null(BOOK_ID),
        not_null(TITLE),
        optional(not_null(GOODREADS_BOOK_ID)),
        optional(not_null(AUTHORS)),
        # goodbooks ids start at 1; 0 or negative ids are an off-by-one or a sentinel.
        id_at_least(BOOK_ID, 1),
        optional(id_at_least(GOODREADS_BOOK_ID, 1)),
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
        not_null(TAG_ID),
        # Tag ids are non-negative: the real file starts at 0 (the tag "-").
        id_at_least(TAG_ID, 0),
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
        *(not_null(column) for column in BOOK_TAGS_COLUMNS),
        # Book ids start at 1 and tag ids at 0, as in books.csv and tags.csv.
        id_at_least(GOODREADS_BOOK_ID, 1),
        id_at_least(TAG_ID, 0),
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
        *(not_null(column) for column in TO_READ_COLUMNS),
        # goodbooks ids start at 1; 0 or negative ids are an off-by-one or a sentinel.
        id_at_least(USER_ID, 1),
        id_at_least(BOOK_ID, 1),
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
