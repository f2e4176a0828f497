"""Baselines ranked beside LightFM on the same split: implicit ALS (popularity and the
oracle live in models.evaluation)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import scipy.sparse as sp
from implicit.als import AlternatingLeastSquares

from models.recommender import FactorModel


def _factors(model: AlternatingLeastSquares) -> FactorModel:
    users = np.ascontiguousarray(model.user_factors, np.float32)
    items = np.ascontiguousarray(model.item_factors, np.float32)
    return FactorModel(
        user_factors=users.copy(),
        user_bias=np.zeros(len(users), np.float32),
        item_factors=items.copy(),
        item_bias=np.zeros(len(items), np.float32),
    )


class _Stop(Exception):
    """Raised from ALS's per-iteration callback to end the fit early."""


def fit_als_early_stopping(
    train: sp.csr_matrix,
    validate: Callable[[FactorModel], float],
    max_iterations: int = 15,
    patience: int = 3,
    factors: int = 64,
    regularization: float = 0.05,
    alpha: float = 20.0,
    num_threads: int = 0,
    seed: int = 0,
) -> tuple[FactorModel, int]:
    """ALS on ``train`` keeping the iteration with the best ``validate`` score.

    The same footing as LightFM's fits: trained on the training part only, stopped on
    the validation part. Returns the best model and its (0-based) iteration.
    """
    model = AlternatingLeastSquares(
        factors=factors, regularization=regularization, alpha=alpha, iterations=max_iterations,
        num_threads=num_threads, random_state=seed,
    )
    best: list[object] = [None, -np.inf, -1]  # model, score, iteration

    def after_iteration(iteration: int, _elapsed: float, _loss: float | None) -> None:
        current = _factors(model)
        score = float(validate(current))
        if score > best[1]:  # type: ignore[operator]
            best[:] = [current, score, iteration]
        elif iteration - int(best[2]) >= patience:  # type: ignore[call-overload]
            raise _Stop

    try:
        model.fit(train.tocsr().astype(np.float32), show_progress=False,
                  callback=after_iteration)
    except _Stop:
        pass
    return best[0], int(best[2])  # type: ignore[return-value]
