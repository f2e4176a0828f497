"""LightFM training with per-epoch validation and early stopping; the only lightfm import.

The trained model is reduced to what scoring needs (``FactorModel``: reader and book
embeddings with biases, already combined with any feature matrices), so nothing downstream
depends on LightFM.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np
import scipy.sparse as sp
from lightfm import LightFM

from models.schema import TrainingError

LOSSES = ("warp", "bpr", "warp-kos", "logistic")


@dataclass(frozen=True)
class LightFMParams:
    """Hyperparameters of one LightFM fit."""

    loss: str = "warp"
    no_components: int = 48
    learning_rate: float = 0.05
    item_alpha: float = 1e-6
    user_alpha: float = 1e-6
    max_sampled: int = 30
    max_epochs: int = 30
    patience: int = 3

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise TrainingError(f"loss must be one of {LOSSES}, not {self.loss!r}")
        if self.no_components < 1 or self.max_epochs < 1:
            raise TrainingError("no_components and max_epochs must be at least 1")

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass
class FactorModel:
    """Scoring view of a trained model: score(u, i) = user_factors[u]·item_factors[i] + biases."""

    user_factors: np.ndarray  # float32 [n_users, d]
    user_bias: np.ndarray  # float32 [n_users]
    item_factors: np.ndarray  # float32 [n_books, d]
    item_bias: np.ndarray  # float32 [n_books]

    @classmethod
    def empty(cls, n_users: int, n_books: int) -> FactorModel:
        """No factors and no biases: every score 0, a base for terms to rank alone."""
        return cls(user_factors=np.zeros((n_users, 0), np.float32),
                   user_bias=np.zeros(n_users, np.float32),
                   item_factors=np.zeros((n_books, 0), np.float32),
                   item_bias=np.zeros(n_books, np.float32))

    def books_only(self) -> FactorModel:
        """The book factors kept (similar books read them), the readers' factors and every
        bias zero: a base that ranks nothing by itself, for terms to rank alone."""
        return FactorModel(user_factors=np.zeros_like(self.user_factors),
                           user_bias=np.zeros_like(self.user_bias),
                           item_factors=self.item_factors,
                           item_bias=np.zeros_like(self.item_bias))

    def scores(self, user_rows: np.ndarray) -> np.ndarray:
        """Dense scores [len(user_rows), n_books] (for tests and small samples)."""
        u = self.user_factors[user_rows]
        return u @ self.item_factors.T + self.item_bias[None, :] + self.user_bias[user_rows, None]


@dataclass
class FitResult:
    """The best epoch's model and the validation curve that chose it."""

    model: FactorModel
    best_epoch: int
    best_score: float
    curve: list[float] = field(default_factory=list)
    lightfm: LightFM | None = None  # the LightFM object of the best epoch
    stopped_by_deadline: bool = False  # a time budget ended it before patience or max_epochs


def factor_model(
    model: LightFM,
    user_features: sp.csr_matrix | None = None,
    item_features: sp.csr_matrix | None = None,
) -> FactorModel:
    """Combine LightFM's feature embeddings into one vector and bias per reader and book."""
    user_bias, user_emb = model.get_user_representations(user_features)
    item_bias, item_emb = model.get_item_representations(item_features)
    return FactorModel(
        user_factors=np.ascontiguousarray(user_emb, np.float32),
        user_bias=np.ascontiguousarray(user_bias, np.float32),
        item_factors=np.ascontiguousarray(item_emb, np.float32),
        item_bias=np.ascontiguousarray(item_bias, np.float32),
    )


def fit_lightfm(
    train: sp.csr_matrix,
    params: LightFMParams,
    validate: Callable[[FactorModel], float],
    item_features: sp.csr_matrix | None = None,
    user_features: sp.csr_matrix | None = None,
    num_threads: int = 1,
    seed: int = 0,
    on_epoch: Callable[[int, float], None] | None = None,
    deadline: float | None = None,
) -> FitResult:
    """Fit epoch by epoch, keep the epoch with the best validation score, stop on patience.

    ``validate`` scores a FactorModel (e.g. validation NDCG@10); ``on_epoch(epoch, score)``
    may raise to stop early (Optuna pruning does). With ``deadline`` (a ``time.monotonic()``
    value) the fit also stops after the first epoch that ends past it, keeping the best
    epoch so far (trials and refits inside a time budget); at least one epoch always runs.
    """
    if train.nnz == 0:
        raise TrainingError("the training matrix is empty: nothing to fit")
    model = LightFM(
        no_components=params.no_components,
        loss=params.loss,
        learning_rate=params.learning_rate,
        item_alpha=params.item_alpha,
        user_alpha=params.user_alpha,
        max_sampled=params.max_sampled,
        random_state=np.random.RandomState(seed),
    )
    coo = train.tocoo()
    best: FactorModel | None = None
    best_lightfm: LightFM | None = None
    best_score, best_epoch, stale = -np.inf, -1, 0
    curve: list[float] = []
    stopped_by_deadline = False
    for epoch in range(params.max_epochs):
        model.fit_partial(
            coo,
            user_features=user_features,
            item_features=item_features,
            epochs=1,
            num_threads=num_threads,
        )
        current = factor_model(model, user_features, item_features)
        score = float(validate(current))
        if not np.isfinite(score):
            raise TrainingError(
                f"validation score is {score} at epoch {epoch}: the fit diverged; "
                "lower the learning rate"
            )
        curve.append(score)
        if score > best_score:
            best, best_score, best_epoch, stale = current, score, epoch, 0
            best_lightfm = copy.deepcopy(model)
        else:
            stale += 1
        if on_epoch is not None:
            on_epoch(epoch, score)
        if stale >= params.patience:
            break
        if deadline is not None and time.monotonic() >= deadline:
            stopped_by_deadline = epoch + 1 < params.max_epochs
            break
    if best is None:
        raise TrainingError("training produced no epoch")
    return FitResult(model=best, best_epoch=best_epoch, best_score=best_score, curve=curve,
                     lightfm=best_lightfm, stopped_by_deadline=stopped_by_deadline)


def fit_lightfm_epochs(
    interactions: sp.csr_matrix,
    params: LightFMParams,
    epochs: int,
    item_features: sp.csr_matrix | None = None,
    num_threads: int = 1,
    seed: int = 0,
    weights: sp.csr_matrix | None = None,
) -> FactorModel:
    """Fit a fixed number of epochs with nothing held out (the model that is served).

    The epoch count comes from a fit that was stopped on validation data; here every
    interaction is training data, so there is nothing left to stop on. ``weights`` (same
    shape; its stored entries are the interactions) weighs each interaction's updates.
    """
    if interactions.nnz == 0:
        raise TrainingError("the interaction matrix is empty: nothing to fit")
    if weights is not None and params.loss == "warp-kos":
        raise ValueError("LightFM's warp-kos loss takes no sample weights: weighted fits "
                         "need warp, bpr or logistic")
    if epochs < 1:
        raise TrainingError(f"epochs must be at least 1; got {epochs}")
    model = LightFM(
        no_components=params.no_components,
        loss=params.loss,
        learning_rate=params.learning_rate,
        item_alpha=params.item_alpha,
        user_alpha=params.user_alpha,
        max_sampled=params.max_sampled,
        random_state=np.random.RandomState(seed),
    )
    if weights is not None:
        # One matrix for both, so LightFM sees the weights in the interactions' order.
        coo = weights.tocoo()
        ones = sp.coo_matrix((np.ones_like(coo.data), (coo.row, coo.col)), shape=coo.shape)
        model.fit(ones, item_features=item_features, epochs=epochs, num_threads=num_threads,
                  sample_weight=coo)
    else:
        model.fit(interactions.tocoo(), item_features=item_features, epochs=epochs,
                  num_threads=num_threads)
    return factor_model(model, None, item_features)
