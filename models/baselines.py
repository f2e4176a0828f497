"""Baselines ranked beside LightFM on the same split: implicit ALS (popularity and the
oracle live in models.evaluation)."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from implicit.als import AlternatingLeastSquares

from models.recommender import FactorModel


def fit_als(
    train: sp.csr_matrix,
    factors: int = 64,
    regularization: float = 0.05,
    alpha: float = 20.0,
    iterations: int = 15,
    num_threads: int = 0,
    seed: int = 0,
) -> FactorModel:
    """Implicit-feedback ALS (Hu, Koren & Volinsky) as a FactorModel with zero biases."""
    model = AlternatingLeastSquares(
        factors=factors, regularization=regularization, alpha=alpha, iterations=iterations,
        num_threads=num_threads, random_state=seed,
    )
    model.fit(train.tocsr().astype(np.float32), show_progress=False)
    users = np.ascontiguousarray(model.user_factors, np.float32)
    items = np.ascontiguousarray(model.item_factors, np.float32)
    return FactorModel(
        user_factors=users,
        user_bias=np.zeros(len(users), np.float32),
        item_factors=items,
        item_bias=np.zeros(len(items), np.float32),
    )
