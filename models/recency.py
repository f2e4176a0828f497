"""What is read now: a recent-popularity prior added to a factor model's scores.

A nightly list is judged on what readers do tomorrow, and part of that is what everybody is
reading this month. The prior is log(1 + reads in the last ``window``) of each book,
standardised over the catalogue, and added to the model's item bias with a weight counted
in standard deviations of the model's own scores — so one weight means the same on any
dataset and any fit. Riding in the item bias, it costs serving nothing: batch scoring
ranks by [p_u, 1]·[q_i, b_i] as before.

The prior may also *replace* the learned bias rather than add to it (``keep_bias=False``).
The bias a fit learns is each book's popularity averaged over the whole history: a book
out last month has had little time to earn one, and a book whose wave has passed keeps
the bias of its wave. Where books rise and fade, "how much is it read now" is the better
term and the old one only pulls the list back to the past; where nothing moves, the
learned bias is the better estimate. Which one holds is measured, not assumed: the replay
and the train flow's backtest choose it with the weight and the window.

A book out for a week is judged on a window it spent mostly unreleased, unless its reads
are counted over the time it has been out (``exposed_counts``, with a settling time that
keeps one early read from making a best seller). Whether that helps, and how much
settling, depends on the data: on a sparse real log a short settling lets one rating of
an old title top the list, and a month or a quarter is best; where every book's reads
start at its release, the shortest is. So the settling is chosen by measurement too
(models/settling.py, ``Settling``), and ``None`` (the plain count) is always a choice.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from models.metrics import row_spread
from models.recommender import FactorModel
from models.schema import TrainingError

SCORE_SAMPLE_READERS = 2000
DAY = 86_400
# The settling times tried on a log with timestamps (seconds), beside the plain count.
SETTLINGS = (DAY, 7 * DAY, 28 * DAY, 91 * DAY)


@dataclass(frozen=True)
class RecencyPrior:
    """How much of the recent-popularity prior to add (weight 0: none), over what window,
    whether the model's learned item bias stays beside it, and whether each book's reads
    are counted over the time it has been out in the window (``settling``: see
    ``exposed_counts``; None: the plain count).

    ``window`` and ``settling`` are in the log's unit of time: seconds with timestamps,
    rows without.
    """

    weight: float = 0.0
    window: int = 28 * 86_400
    keep_bias: bool = True
    settling: int | None = None

    def __post_init__(self) -> None:
        if self.weight < 0:
            raise TrainingError(f"the recency weight must be at least 0, not {self.weight}")
        if self.window <= 0:
            raise TrainingError(f"the recency window must be positive, not {self.window}")
        if self.settling is not None and self.settling <= 0:
            raise TrainingError(f"the settling time must be positive, not {self.settling}")

    @property
    def active(self) -> bool:
        return self.weight > 0


def recent_counts(books: np.ndarray, times: np.ndarray, now: int, window: int,
                  n_books: int) -> np.ndarray:
    """Interactions per book (indices 0..n_books-1) in [now - window, now)."""
    recent = (times >= now - window) & (times < now)
    return np.bincount(books[recent], minlength=n_books).astype(np.float64)


def exposed_counts(books: np.ndarray, times: np.ndarray, now: int, window: int,
                   n_books: int, settling: int) -> np.ndarray:
    """Reads per book in [now - window, now), counted over the part of the window the book
    has been out: a book first read (as far as the log tells, out) a week ago is judged
    on its week, not on a window it spent mostly unreleased.

    With c reads in the window and e the time since its first read (at most the window),
    a book's count is window × (c + m·settling) / (e + settling): its rate while out,
    shrunk toward m, the mean rate of the books out for the whole window, as if it had
    been read at that rate for ``settling`` more time. One read on a book's first day does
    not make it a best seller, and a book out for the whole window keeps its count's
    order. A book never read before ``now`` counts 0: it is not out yet, as far as
    anyone can tell. ``settling`` is in the log's unit of time, as the window is.
    """
    if settling <= 0:
        raise TrainingError(f"the settling time must be positive, not {settling}")
    before = times < now
    counts = recent_counts(books, times, now, window, n_books)
    first = np.full(n_books, now, dtype=np.int64)
    np.minimum.at(first, books[before], times[before])
    out_for = np.minimum(now - first, window).astype(np.float64)
    whole = out_for >= window
    mean_rate = counts[whole].sum() / (whole.sum() * window) if whole.any() else 0.0
    exposed = window * (counts + mean_rate * settling) / (out_for + settling)
    exposed[first >= now] = 0.0
    return exposed


def book_counts(books: np.ndarray, times: np.ndarray, now: int, window: int,
                n_books: int, settling: int | None = None) -> np.ndarray:
    """Every book's reads in the window at ``now``: plain (``settling`` None) or counted
    over the time it has been out."""
    if settling is None:
        return recent_counts(books, times, now, window, n_books)
    return exposed_counts(books, times, now, window, n_books, settling)


def prior_values(books: np.ndarray, times: np.ndarray, now: int, window: int,
                 n_books: int, settling: int | None = None) -> np.ndarray:
    """The standardised prior of every book at ``now`` (``book_counts``)."""
    return standardised_log(book_counts(books, times, now, window, n_books, settling))


def standardised_log(counts: np.ndarray) -> np.ndarray:
    """log(1 + counts), centred and scaled to unit variance (zeros when all are equal)."""
    values = np.log1p(np.asarray(counts, dtype=np.float64))
    spread = values.std()
    return (values - values.mean()) / spread if spread > 0 else np.zeros_like(values)


def score_spread(model: FactorModel, readers: int = SCORE_SAMPLE_READERS, seed: int = 0
                 ) -> float:
    """Standard deviation of the model's scores over a sample of readers × every book."""
    n = len(model.user_factors)
    if n == 0:
        return 1.0
    rows = np.random.default_rng(seed).choice(n, min(n, readers), replace=False)
    return row_spread(model.user_factors[rows] @ model.item_factors.T
                      + model.item_bias[None, :])


def with_prior(model: FactorModel, prior: np.ndarray, weight: float, spread: float | None = None,
               keep_bias: bool = True) -> FactorModel:
    """The model with ``weight`` score deviations of the (standardised) prior in its bias,
    added to the learned bias or (``keep_bias=False``) in its place."""
    if weight == 0:
        return model
    if len(prior) != len(model.item_bias):
        raise TrainingError(f"the prior covers {len(prior)} books, the model "
                            f"{len(model.item_bias)}")
    scale = weight * (score_spread(model) if spread is None else spread)
    learned = model.item_bias.astype(np.float64) if keep_bias else 0.0
    bias = (learned + scale * prior).astype(np.float32)
    return replace(model, item_bias=np.ascontiguousarray(bias))
