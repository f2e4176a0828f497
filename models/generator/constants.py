"""The generator's calibrated figures: the real dataset's shape, the planted model's strengths,
block sizes and random-stream numbers.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from models.genres import GENRE_SHELVES

Progress = Callable[[str, float], None]

TRUTH_FILE = "truth.npz"
MANIFEST_FILE = "generator.json"
GENERATOR_VERSION = 1

# --- figures of the real goodbooks-10k that the output reproduces ------------------------
FULL_USERS = 53_424
FULL_BOOKS = 10_000
FULL_RATINGS = 5_976_479
# Ratings per book by popularity rank: the real quartiles, extremes and mean.
BOOK_COUNT_MAX = 22_806
BOOK_COUNT_QUARTILES = (503.0, 248.0, 155.0)  # at rank fractions 0.25, 0.5, 0.75
# The tail eases towards the real minimum of 8 instead of dropping linearly from 155.
BOOK_COUNT_TAIL = ((0.95, 92.0), (0.995, 45.0), (1.0, 8.0))
# Ratings per reader: a Student-t, wider above its centre than below (the real counts lean
# right), fitted to mean 111.9, sd 26.1, quartiles 96/111/128 and clipped to 19..200.
READER_COUNT_T = (7.0, 110.9, 21.5, 23.5)  # degrees of freedom, centre, scale below, above
READER_COUNT_RANGE = (19, 200)
RATING_MIX = (0.0208, 0.0601, 0.2294, 0.3579, 0.3318)  # ones .. fives
TO_READ_SHARE = 48_871 / FULL_USERS  # readers with a to-read shelf
TO_READ_MEAN = 912_705 / 48_871  # shelf size of those readers
TO_READ_MAX = 200
N_TAGS = 34_252
TAGS_PER_BOOK = 100

# --- the planted model -------------------------------------------------------------------
# The planted genres are real goodreads genre shelves, so tags.csv names them.
GENRES = GENRE_SHELVES
# How common each genre is among readers and authors (same order as GENRES).
GENRE_WEIGHTS = np.array(
    [1.8, 1.6, 1.5, 1.3, 1.2, 1.1, 1.1, 1.0, 1.0, 0.9, 0.7, 0.6, 0.6, 0.5, 0.5, 0.5, 0.35,
     0.3, 0.3, 0.3]
)
NON_FICTION = frozenset({"non-fiction", "biography", "philosophy", "self-help"})
GENERIC_TAGS = (
    "to-read",
    "currently-reading",
    "favorites",
    "fiction",
    "owned",
    "books-i-own",
    "kindle",
    "library",
    "ebook",
    "re-read",
    "default",
    "audiobook",
)
TASTE_STRENGTH = 12.0  # beta: log-weight gained by a book exactly matching a reader's taste
READER_TASTE_CONCENTRATION = 0.1  # small: most readers care for one to three genres
AUTHOR_GENRE_CONCENTRATION = 0.15  # small: an author keeps to one or two genres
BOOK_GENRE_CONCENTRATION = 8.0  # how closely a book follows its author's genres
RATING_AFFINITY_WEIGHT = 0.55  # correlation of the latent rating with the affinity
AUTHOR_STRENGTH = 2.0  # log-weight a favourite author's book gains (data that moves)
FAVOURITE_AUTHORS = 3  # books whose authors become a reader's favourites
RATING_QUALITY_SHIFT = 0.35  # how far a synthetic book's quality moves its rating mix

CHUNK_READERS = 1024  # readers drawn at once: 1024 x 10,000 float32 keys are 40 MB
CALIBRATION_READERS = 4096  # the sample the first popularity rounds are fitted on
CALIBRATION_ROUNDS = 4
SAMPLE_PSEUDO_COUNT = 5.0  # added to target and count in the sample rounds (see there)
FULL_CALIBRATION_ROUNDS = 2  # rounds on every reader's real draws
CORRECTION_LIMIT = 0.3  # largest log-popularity change the full-size rounds may make
SHORTLIST_MARGIN = 256  # books kept per reader beyond the most any reader of a block draws

# Independent random streams, one per purpose (and per block of readers).
_STREAM_CATALOGUE, _STREAM_READERS, _STREAM_CALIBRATION, _STREAM_DRAWS = 1, 2, 3, 4
_STREAM_RATINGS, _STREAM_TIMES, _STREAM_TAGS, _STREAM_METADATA = 5, 6, 7, 8
_STREAM_ORDER = 9
_STREAM_TIMELINE, _STREAM_MOMENTS, _STREAM_AUTHORS = 10, 11, 12  # data that moves
