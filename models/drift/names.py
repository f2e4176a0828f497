"""The drift measures' names and constants, and the error they raise."""

from __future__ import annotations

import numpy as np

from models.schema import GoodbooksError

REFERENCE_FILE = "reference_stats.npz"
STARS = np.arange(1, 6)
PSI_FLOOR = 1e-4  # share given to an empty rating bucket, so PSI stays finite
POPULARITY_MIN_EXPECTED = 20.0  # expected new ratings per pooled group of books

RATING_MIX_PSI = "rating_mix_psi"
READER_ACTIVITY_KS = "reader_activity_ks"
BOOK_POPULARITY_JS = "book_popularity_js"
UNSEEN_READERS = "unseen_readers_share"
UNSEEN_BOOKS = "unseen_books_share"
HIT_RATE_DROP = "hit_rate_drop"
PRECISION = "precision_at_k"


class DriftError(GoodbooksError):
    """Drift statistics cannot be computed from what was given."""
