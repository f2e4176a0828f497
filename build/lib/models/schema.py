"""Column names, file names and the errors shared by the whole domain layer."""

from __future__ import annotations

from typing import Literal

USER_ID = "user_id"
BOOK_ID = "book_id"
RATING = "rating"
# Optional: when the interaction happened, in whole seconds since the Unix epoch. Without
# it, the row order of ratings.csv is time.
TIMESTAMP = "timestamp"
GOODREADS_BOOK_ID = "goodreads_book_id"
TAG_ID = "tag_id"
TAG_NAME = "tag_name"
TAG_COUNT = "count"

# What readers do with a recommendation, beside seeing it (an "impression"): the app's
# event vocabulary, counted by A/B evaluation and, as the settings choose, by training.
InteractionType = Literal["click", "add_to_shelf", "rating"]
INTERACTION_TYPES: tuple[InteractionType, ...] = ("click", "add_to_shelf", "rating")

RATINGS_FILE = "ratings.csv"
BOOKS_FILE = "books.csv"
TAGS_FILE = "tags.csv"
BOOK_TAGS_FILE = "book_tags.csv"
TO_READ_FILE = "to_read.csv"

# ratings.csv and books.csv are enough to train; the others only add features.
REQUIRED_FILES = (RATINGS_FILE, BOOKS_FILE)
OPTIONAL_FILES = (TAGS_FILE, BOOK_TAGS_FILE, TO_READ_FILE)
ALL_FILES = REQUIRED_FILES + OPTIONAL_FILES

RATINGS_COLUMNS = (USER_ID, BOOK_ID, RATING)
TO_READ_COLUMNS = (USER_ID, BOOK_ID)
TAGS_COLUMNS = (TAG_ID, TAG_NAME)
BOOK_TAGS_COLUMNS = (GOODREADS_BOOK_ID, TAG_ID, TAG_COUNT)
BOOKS_COLUMNS = (
    BOOK_ID,
    GOODREADS_BOOK_ID,
    "best_book_id",
    "work_id",
    "books_count",
    "isbn",
    "isbn13",
    "authors",
    "original_publication_year",
    "original_title",
    "title",
    "language_code",
    "average_rating",
    "ratings_count",
    "work_ratings_count",
    "work_text_reviews_count",
    "ratings_1",
    "ratings_2",
    "ratings_3",
    "ratings_4",
    "ratings_5",
    "image_url",
    "small_image_url",
)


class GoodbooksError(Exception):
    """Base class of the errors the domain layer raises on purpose."""


class DatasetError(GoodbooksError):
    """A dataset is missing, unreadable or not shaped like goodbooks-10k."""


class DownloadError(DatasetError):
    """The real dataset could not be fetched (offline, HTTP error, bad checksum)."""


class DataValidationError(GoodbooksError):
    """Data broke a rule; the message names the file, the rule and example rows."""


class TrainingError(GoodbooksError):
    """Training or evaluation cannot proceed on the given data (empty split, ...)."""
