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
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from models.metrics import row_spread
from models.recommender import FactorModel
from models.schema import TrainingError

SCORE_SAMPLE_READERS = 2000


@dataclass(frozen=True)
class RecencyPrior:
    """How much of the recent-popularity prior to add (weight 0: none), over what window,
    and whether the model's learned item bias stays beside it.

    ``window`` is in the log's unit of time: seconds with timestamps, rows without.
    """

    weight: float = 0.0
    window: int = 28 * 86_400
    keep_bias: bool = True

    def __post_init__(self) -> None:
        if self.weight < 0:
            raise TrainingError(f"the recency weight must be at least 0, not {self.weight}")
        if self.window <= 0:
            raise TrainingError(f"the recency window must be positive, not {self.window}")

    @property
    def active(self) -> bool:
        return self.weight > 0


def recent_counts(books: np.ndarray, times: np.ndarray, now: int, window: int,
                  n_books: int) -> np.ndarray:
    """Interactions per book (indices 0..n_books-1) in [now - window, now)."""
    recent = (times >= now - window) & (times < now)
    return np.bincount(books[recent], minlength=n_books).astype(np.float64)


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
