"""Drift statistics: the data and the served model at training time against new ratings.

The **reference** is taken from a training snapshot (and the model trained on it): the rating
mix, ratings per reader, ratings per book, the known readers and books, and the hit rate of
the lists the model serves, at training time. **Current** statistics describe new ratings
only (a continuation directory, the pairs of a newer snapshot the model has not seen, rating
events). The measures compare the two:

- ``rating_mix_psi``: population stability index of the 1..5 star shares.
- ``reader_activity_ks``: Kolmogorov-Smirnov distance between the new ratings per active
  reader and what the reference predicts for a window of that size, if new ratings come
  from readers in proportion to their past activity (each reader's count is binomial).
  Comparing raw counts would be meaningless: a window holds a fraction of a history.
- ``book_popularity_js``: Jensen-Shannon divergence (bits, 0..1) between the reference and
  the new ratings' spread over books. Books are pooled in reference popularity order into
  groups that expect at least ``POPULARITY_MIN_EXPECTED`` new ratings, so a small window
  over a large catalogue measures drift rather than sampling noise; new books form a group
  of their own, with no reference mass.
- ``unseen_readers_share`` / ``unseen_books_share``: share of the new ratings made by
  readers, or given to books, that the model has never seen (it can only serve the
  popular fallback to those readers, and never recommends those books).
- ``hit_rate_drop``: relative fall of the served lists' hit rate (share of new interactions
  whose book was in the reader's top k) from the same lists' hit rate at training time on
  the readers' to-read shelves (what they meant to read next). It fires only when the drop
  is past its threshold with 95% confidence (a Wilson bound on the new hit rate), so small
  windows do not alarm on chance. Without shelves the training-time figure is the test
  split's, which is not comparable (held-out ratings are part of what was already read),
  so the drop is then reported but not judged.

Every measure has a threshold; a ``DriftReport`` says which fired. No Prefect here.

One module per idea: ``names`` (names, constants, the error), ``performance`` (hit rates
of the served lists), ``statistics`` (reference and current), ``measures``, ``report`` and
``plot``; everything is importable from ``models.drift``.
"""

from __future__ import annotations

from models.drift.measures import (
    activity_ks,
    expected_activity_cdf,
    js_divergence,
    pooled_popularity,
    popularity_groups,
    popularity_js,
    psi,
    unseen_share,
)
from models.drift.names import (
    BOOK_POPULARITY_JS,
    HIT_RATE_DROP,
    POPULARITY_MIN_EXPECTED,
    PRECISION,
    PSI_FLOOR,
    RATING_MIX_PSI,
    READER_ACTIVITY_KS,
    REFERENCE_FILE,
    STARS,
    UNSEEN_BOOKS,
    UNSEEN_READERS,
    DriftError,
)
from models.drift.performance import (
    NEW_RATINGS,
    SHELF,
    TEST_SPLIT,
    Performance,
    served_lists,
    served_performance,
    training_performance,
)
from models.drift.plot import (
    plot_drift,
)
from models.drift.report import (
    DriftReport,
    DriftThresholds,
    Measure,
    detect_drift,
)
from models.drift.statistics import (
    CurrentStats,
    ReferenceStats,
    compute_current,
    compute_reference,
    load_reference,
    rating_counts,
    reference_from_ratings,
    unseen_pairs,
    write_reference,
)

__all__ = [
    "BOOK_POPULARITY_JS",
    "CurrentStats",
    "DriftError",
    "DriftReport",
    "DriftThresholds",
    "HIT_RATE_DROP",
    "Measure",
    "NEW_RATINGS",
    "POPULARITY_MIN_EXPECTED",
    "PRECISION",
    "PSI_FLOOR",
    "Performance",
    "RATING_MIX_PSI",
    "READER_ACTIVITY_KS",
    "REFERENCE_FILE",
    "ReferenceStats",
    "SHELF",
    "STARS",
    "TEST_SPLIT",
    "UNSEEN_BOOKS",
    "UNSEEN_READERS",
    "activity_ks",
    "compute_current",
    "compute_reference",
    "detect_drift",
    "expected_activity_cdf",
    "js_divergence",
    "load_reference",
    "plot_drift",
    "pooled_popularity",
    "popularity_groups",
    "popularity_js",
    "psi",
    "rating_counts",
    "reference_from_ratings",
    "served_lists",
    "served_performance",
    "training_performance",
    "unseen_pairs",
    "unseen_share",
    "write_reference",
]
