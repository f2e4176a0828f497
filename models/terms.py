"""What the served model adds to the fitted one: the recency prior (models/recency.py) and
the genre taste side (models/genres.py), each with a weight chosen by measurement.

Both ride in the served factors and biases, so the code of batch scoring and serving is
unchanged; the taste side widens the factors by the number of genres.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from models.genres import TasteSide, with_taste
from models.recency import RecencyPrior, with_prior
from models.recommender import FactorModel
from models.schema import TrainingError


@dataclass(frozen=True)
class ScoreTerms:
    """The recency prior, and ``taste_weight`` score deviations of the taste side beside
    the fitted model or (``keep_model=False``) in its place: then the served scores are
    the taste side and the prior alone (the fitted readers' factors and the learned biases
    are zeroed; the book factors stay for similar books)."""

    prior: RecencyPrior = field(default_factory=RecencyPrior)
    taste_weight: float = 0.0
    keep_model: bool = True

    def __post_init__(self) -> None:
        if self.taste_weight < 0:
            raise TrainingError(f"the taste weight must be at least 0, not {self.taste_weight}")
        if not self.keep_model and self.taste_weight == 0:
            raise TrainingError("dropping the fitted model needs a taste side to rank by")

    @property
    def tasted(self) -> bool:
        return self.taste_weight > 0

    def describe(self) -> str:
        """One line for a log, a table or an artifact."""
        prior = self.prior
        text = ("no recency prior" if not prior.active else
                f"recency prior weight {prior.weight:g}, window {prior.window}"
                + ("" if prior.settling is None
                   else f", counted over each book's time out (settling {prior.settling})")
                + ("" if prior.keep_bias else ", in place of the learned bias"))
        if self.tasted:
            text += (f"; genre taste weight {self.taste_weight:g}"
                     + ("" if self.keep_model else ", in place of the fitted model"))
        return text

    def as_params(self) -> dict[str, object]:
        """The terms as logged and bundled (``recency_*``, ``taste_*``)."""
        return {"recency_weight": self.prior.weight, "recency_window": self.prior.window,
                "recency_keep_bias": self.prior.keep_bias,
                "recency_settling": self.prior.settling, "taste_weight": self.taste_weight,
                "taste_keep_model": self.keep_model}


def with_terms(model: FactorModel, terms: ScoreTerms, prior: np.ndarray | None,
               side: TasteSide | None, spread: float) -> FactorModel:
    """The model with its terms: ``prior`` the standardised recent popularity, ``side`` the
    readers' genre tastes, ``spread`` the model's score deviation (the unit of both)."""
    if not terms.keep_model:
        model = model.books_only()
    if terms.prior.active:
        if prior is None:
            raise TrainingError("the terms ask for a recency prior and none was given")
        model = with_prior(model, prior, terms.prior.weight, spread, terms.prior.keep_bias)
    if terms.tasted:
        if side is None:
            raise TrainingError("the terms ask for a taste side and the catalogue has no "
                                "genres to learn one from")
        model = with_taste(model, side, terms.taste_weight, spread)
    return model
