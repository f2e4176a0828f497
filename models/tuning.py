"""Hyperparameter search for LightFM with Optuna: TPE, per-epoch pruning, multi-fidelity.

The objective fits LightFM epoch by epoch, reports validation NDCG@k to Optuna after each
epoch (so the pruner can stop hopeless trials) and keeps the best epoch (early stopping).
How trials are recorded (MLflow nested runs) is the caller's business: it passes a
``TrialObserver``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import optuna
import scipy.sparse as sp
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from models.evaluation import validation_scorer
from models.features import FeatureConfig, ItemFeatures
from models.interactions import IdMap, Split, everything
from models.recommender import (
    FactorModel,
    FitResult,
    LightFMParams,
    fit_lightfm,
    fit_lightfm_epochs,
)
from models.study import OVER_BUDGET, TrialBudget, join_study

LOSSES = ("warp", "bpr", "warp-kos")


class TrialObserver(Protocol):
    """Receives a trial's life: start, every epoch's validation score, the end."""

    def started(self, number: int, params: dict[str, object]) -> None: ...

    def epoch(self, number: int, epoch: int, value: float) -> None: ...

    def finished(self, number: int, state: str, value: float | None) -> None: ...


@dataclass(frozen=True)
class Candidate:
    """One point of the search space."""

    params: LightFMParams
    features: FeatureConfig


FAMILIES = ("authors", "tags", "decade", "language")

# The search space: loss, size, learning rate, regularisation, sampling, feature families.
SEARCH_SPACE: dict[str, BaseDistribution] = {
    "loss": CategoricalDistribution(LOSSES),
    "no_components": IntDistribution(16, 128, log=True),
    "learning_rate": FloatDistribution(0.01, 0.2, log=True),
    "item_alpha": FloatDistribution(1e-9, 1e-4, log=True),
    "user_alpha": FloatDistribution(1e-9, 1e-4, log=True),
    "max_sampled": IntDistribution(5, 60),
    **{f"use_{family}": CategoricalDistribution((True, False)) for family in FAMILIES},
}


def suggest(trial: optuna.Trial, max_epochs: int, patience: int) -> Candidate:
    """Draw one candidate from SEARCH_SPACE."""
    values: dict[str, object] = {}
    for name, space in SEARCH_SPACE.items():
        if isinstance(space, CategoricalDistribution):
            values[name] = trial.suggest_categorical(name, space.choices)
        elif isinstance(space, IntDistribution):
            values[name] = trial.suggest_int(name, space.low, space.high, log=space.log)
        else:
            assert isinstance(space, FloatDistribution)
            values[name] = trial.suggest_float(name, space.low, space.high, log=space.log)
    return candidate_from_params(values, max_epochs, patience)


def in_search_space(name: str, value: object) -> bool:
    """Whether SEARCH_SPACE could have drawn this value for this parameter."""
    space = SEARCH_SPACE[name]
    if isinstance(space, CategoricalDistribution):
        return value in space.choices
    assert isinstance(space, IntDistribution | FloatDistribution)
    return space.low <= value <= space.high  # type: ignore[operator]


def candidate_from_params(values: dict[str, object], max_epochs: int, patience: int
                          ) -> Candidate:
    """Rebuild a Candidate from a trial's parameter dict (e.g. study.best_params)."""
    params = LightFMParams(
        loss=str(values["loss"]),
        no_components=int(values["no_components"]),
        learning_rate=float(values["learning_rate"]),
        item_alpha=float(values["item_alpha"]),
        user_alpha=float(values["user_alpha"]),
        max_sampled=int(values["max_sampled"]),
        max_epochs=max_epochs,
        patience=patience,
    )
    features = FeatureConfig(
        authors=bool(values["use_authors"]), tags=bool(values["use_tags"]),
        decade=bool(values["use_decade"]), language=bool(values["use_language"]),
    )
    return Candidate(params=params, features=features)


def sample_readers(split: Split, fraction: float, seed: int) -> Split:
    """The split restricted to a random share of readers (same catalogue), for cheap tuning."""
    if not 0 < fraction <= 1:
        raise ValueError(f"sample fraction must lie in (0, 1], not {fraction}")
    if fraction == 1:
        return split
    n = split.ids.n_users
    rows = np.sort(np.random.default_rng(seed).choice(n, max(1, int(n * fraction)),
                                                      replace=False))
    return Split(
        ids=IdMap(user_ids=split.ids.user_ids[rows], book_ids=split.ids.book_ids),
        train=split.train[rows], valid=split.valid[rows], test=split.test[rows], by=split.by,
        test_from=split.test_from,
    )


def fit_candidate(
    split: Split,
    candidate: Candidate,
    features_for: Callable[[FeatureConfig], ItemFeatures | None],
    k: int,
    num_threads: int,
    seed: int,
    on_epoch: Callable[[int, float], None] | None = None,
    validation_readers: int | None = 5000,
    deadline: float | None = None,
) -> FitResult:
    """Fit one candidate with early stopping on validation NDCG@k (and a deadline)."""
    features = features_for(candidate.features)
    return fit_lightfm(
        split.train,
        candidate.params,
        validate=validation_scorer(split, k, max_readers=validation_readers, seed=seed,
                                   num_threads=num_threads),
        item_features=features.matrix if features is not None else None,
        num_threads=num_threads,
        seed=seed,
        on_epoch=on_epoch,
        deadline=deadline,
    )


# Epochs of the fit on everything per epoch the validation-stopped fit chose. An epoch is a
# pass over every interaction, so the larger data (1/0.7 of the training part) already gets
# more updates per epoch. Measured in benchmarks/full_fit.py on what readers did next:
# scaling the count by 1/0.7 as well was no better on generated data (NDCG@10 1.055x of the
# train-only fit against 1.067x unscaled) and less steady on a real ratings log (hit rate
# 0.97x against 1.13x; NDCG 0.95x-1.24x over two runs against 1.22x-1.24x).
FULL_FIT_EPOCH_SCALE = 1.0


def full_fit_epochs(best_epoch: int, scale: float = FULL_FIT_EPOCH_SCALE) -> int:
    """Epochs of the served fit, from the 0-based best epoch of the validation-stopped fit."""
    return max(1, round((best_epoch + 1) * scale))


def fit_everything(
    split: Split,
    candidate: Candidate,
    features_for: Callable[[FeatureConfig], ItemFeatures | None],
    epochs: int,
    num_threads: int,
    seed: int,
    weights: sp.csr_matrix | None = None,
) -> FactorModel:
    """The candidate fitted on every interaction of the split for a fixed epoch count
    (``weights``: one per interaction, as in ``fit_lightfm_epochs``)."""
    features = features_for(candidate.features)
    return fit_lightfm_epochs(everything(split), candidate.params, epochs,
                              item_features=features.matrix if features is not None else None,
                              num_threads=num_threads, seed=seed, weights=weights)


@dataclass
class KeptFit:
    """The best fit of the trials run in this process.

    A study on every reader (no sample) then needs no refit: its best trial's fit is the
    model, unless that trial ran in another worker process or an earlier run of the study.
    """

    number: int | None = None
    fit: FitResult | None = None
    first: tuple[int, FitResult] | None = None  # the lowest-numbered trial's fit

    def offer(self, number: int, fit: FitResult) -> None:
        if self.fit is None or fit.best_score > self.fit.best_score:
            self.number, self.fit = number, fit
        if self.first is None or number < self.first[0]:
            self.first = (number, fit)

    def fit_of(self, number: int) -> FitResult | None:
        """The fit of trial ``number`` if this process kept it (the best or the first)."""
        if self.number == number:
            return self.fit
        if self.first is not None and self.first[0] == number:
            return self.first[1]
        return None


def kept_best_fit(study: optuna.Study, keep: KeptFit | None) -> FitResult | None:
    """The study's best trial's fit if this process kept it, else None (refit it)."""
    if keep is None or keep.fit is None:
        return None
    completed = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not completed or study.best_trial.number != keep.number:
        return None
    return keep.fit


def make_objective(
    split: Split,
    features_for: Callable[[FeatureConfig], ItemFeatures | None],
    k: int,
    num_threads: int,
    seed: int,
    max_epochs: int,
    patience: int,
    observer: TrialObserver | None = None,
    deadline: float | None = None,
    keep: KeptFit | None = None,
    budget: TrialBudget | None = None,
) -> Callable[[optuna.Trial], float]:
    """The Optuna objective: best validation NDCG@k of one candidate, pruned per epoch.

    ``deadline`` (a ``time.monotonic()`` value) ends a trial still running then after its
    current epoch, with its best epoch so far as its value (user attribute
    ``stopped_by_deadline``), and the trial that ends past it stops the study, so no
    further trial is taken (an enqueued start not reached waits for the study's next run).
    With Optuna's ``timeout`` as a second stop, a study ends within one epoch (plus
    building a feature matrix not built before) of its time budget. ``keep`` receives
    every completed trial's fit and holds on to the best. With a ``budget`` shared by
    workers, a trial beyond it ends at once (pruned, marked ``over_budget``) and stops
    its worker.
    """

    def objective(trial: optuna.Trial) -> float:
        try:
            return run(trial)
        finally:
            if deadline is not None and time.monotonic() >= deadline:
                trial.study.stop()

    def run(trial: optuna.Trial) -> float:
        if budget is not None and not budget.admits(trial):
            trial.set_user_attr(OVER_BUDGET, True)
            trial.study.stop()
            raise optuna.TrialPruned("the study's trial budget is spent")
        candidate = suggest(trial, max_epochs, patience)
        if observer is not None:
            observer.started(trial.number, dict(trial.params))

        def report(epoch: int, value: float) -> None:
            if observer is not None:
                observer.epoch(trial.number, epoch, value)
            trial.report(value, epoch)
            if trial.should_prune():
                raise optuna.TrialPruned(f"pruned at epoch {epoch} with {value:.4f}")

        try:
            fit = fit_candidate(split, candidate, features_for, k, num_threads, seed, report,
                                deadline=deadline)
        except optuna.TrialPruned:
            if observer is not None:
                observer.finished(trial.number, "PRUNED", None)
            raise
        except Exception:
            if observer is not None:
                observer.finished(trial.number, "FAILED", None)
            raise
        trial.set_user_attr("best_epoch", fit.best_epoch)
        trial.set_user_attr("curve", fit.curve)
        if fit.stopped_by_deadline:
            trial.set_user_attr("stopped_by_deadline", True)
        if keep is not None:
            keep.offer(trial.number, fit)
        if observer is not None:
            observer.finished(trial.number, "COMPLETE", fit.best_score)
        return fit.best_score

    return objective


# A known-good start: small budgets begin from a sound model and TPE explores around it.
# WARP with authors and language. Every family makes a full-size epoch about 4.4× dearer
# than identity embeddings alone, mostly through the 10 tags per book, for no gain on the
# data measured, and the publication decade (a coarse feature shared by thousands of books)
# cost validation NDCG@10 at full size (0.1392–0.1405 with it, 0.1424–0.1426 without;
# benchmarks/README.md); both are left to the search.
KNOWN_GOOD: dict[str, object] = {
    "loss": "warp", "no_components": 64, "learning_rate": 0.05, "item_alpha": 1e-7,
    "user_alpha": 1e-7, "max_sampled": 30, "use_authors": True, "use_tags": False,
    "use_decade": False, "use_language": True,
}


def params_from_logged(logged: Mapping[str, object]) -> dict[str, object]:
    """A trial's parameters back from where they were logged as text (MLflow params).

    Raises ValueError when one is missing or lies outside today's search space, so a
    study is never started from a point it could not have drawn.
    """
    types = {name: _reader(space) for name, space in SEARCH_SPACE.items()}
    missing = sorted(set(types) - set(logged))
    if missing:
        raise ValueError(f"parameters missing: {', '.join(missing)}")
    try:
        values = {name: cast(logged[name]) for name, cast in types.items()}
    except ValueError as error:
        raise ValueError(f"unreadable parameter: {error}") from None
    outside = [f"{name}={value!r}" for name, value in values.items()
               if not in_search_space(name, value)]
    if outside:
        raise ValueError(f"outside the search space: {', '.join(outside)}")
    return values


def _reader(space: BaseDistribution) -> Callable[[object], object]:
    """Turns a logged value back into what ``space`` draws."""
    if isinstance(space, IntDistribution):
        return int
    if isinstance(space, FloatDistribution):
        return float
    assert isinstance(space, CategoricalDistribution)
    return _boolean if isinstance(space.choices[0], bool) else str


def _boolean(value: object) -> bool:
    text = str(value).strip().lower()
    if text not in ("true", "false"):
        raise ValueError(f"{value!r} is not True or False")
    return text == "true"


def create_study(
    storage: str | optuna.storages.BaseStorage | None,
    study_name: str,
    seed: int,
    pruning: bool = True,
    starts: Sequence[Mapping[str, object]] = (KNOWN_GOOD,),
) -> optuna.Study:
    """The study ``join_study`` creates or joins.

    A new study runs ``starts`` first, in order and each once (by default KNOWN_GOOD; a
    warm start puts the champion's parameters before it); a resumed one continues where
    it was.
    """
    return join_study(storage, study_name, seed, pruning, starts).study
