"""LightFM recovers a planted checkerboard; same seed and one thread → same model."""

import time

import numpy as np
import pandas as pd
import pytest

from models.evaluation import evaluate_factors, evaluate_popularity, validation_scorer
from models.interactions import temporal_split
from models.recommender import LightFMParams, fit_lightfm
from models.schema import TrainingError


def checkerboard(n_users: int = 120, n_books: int = 80, per_user: int = 20, seed: int = 0
                 ) -> pd.DataFrame:
    """Even readers read only even books, odd readers only odd ones (in random order)."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(1, n_users + 1):
        parity = u % 2
        pool = np.arange(1, n_books + 1)
        pool = pool[pool % 2 == parity]
        for b in rng.choice(pool, size=per_user, replace=False):
            rows.append((u, int(b), 5))
    return pd.DataFrame(rows, columns=["user_id", "book_id", "rating"])


@pytest.fixture(scope="module")
def split():
    return temporal_split(checkerboard(), book_ids=np.arange(1, 81))


def test_recovers_the_checkerboard(split) -> None:
    params = LightFMParams(no_components=8, learning_rate=0.05, max_epochs=15, patience=15)
    fit = fit_lightfm(split.train, params, validation_scorer(split, 5), num_threads=1, seed=1)
    # Every recommended book must have the reader's parity.
    rows = np.arange(split.ids.n_users)
    scores = fit.model.scores(rows)
    scores[split.train.nonzero()] = -np.inf
    top = np.argsort(-scores, axis=1)[:, :5]
    parity_ok = (split.ids.book_ids[top] % 2) == (split.ids.user_ids[:, None] % 2)
    assert parity_ok.mean() > 0.98
    model_ndcg = evaluate_factors(fit.model, split, "test", 5).ndcg
    assert model_ndcg > 1.5 * evaluate_popularity(split, "test", 5).ndcg
    assert len(fit.curve) == 15 and fit.best_score == max(fit.curve)


def test_same_seed_one_thread_is_reproducible(split) -> None:
    params = LightFMParams(no_components=8, max_epochs=3, patience=3)
    a = fit_lightfm(split.train, params, validation_scorer(split, 5), num_threads=1, seed=7)
    b = fit_lightfm(split.train, params, validation_scorer(split, 5), num_threads=1, seed=7)
    assert np.array_equal(a.model.item_factors, b.model.item_factors)
    assert a.curve == b.curve


def test_bad_parameters_and_empty_training_are_errors(split) -> None:
    with pytest.raises(TrainingError, match="loss"):
        LightFMParams(loss="hinge")
    empty = split.train[:0]
    with pytest.raises(TrainingError, match="empty"):
        fit_lightfm(empty, LightFMParams(max_epochs=1), lambda m: 0.0)


def test_deadline_stops_after_the_epoch_that_passes_it_keeping_the_best(split) -> None:
    params = LightFMParams(no_components=8, learning_rate=0.05, max_epochs=10, patience=10)
    validate = validation_scorer(split, 5)
    slow_after_three: list[float] = []

    def slow_validation(model):  # noqa: ANN001, ANN202 - epochs 4+ take 0.4 s each
        if len(slow_after_three) >= 3:
            time.sleep(0.4)
        slow_after_three.append(validate(model))
        return slow_after_three[-1]

    fit = fit_lightfm(split.train, params, slow_validation, seed=1,
                      deadline=time.monotonic() + 1.0)
    assert 4 <= len(fit.curve) < 10 and fit.stopped_by_deadline
    assert fit.best_score == max(fit.curve) and fit.curve[fit.best_epoch] == fit.best_score
    passed = fit_lightfm(split.train, params, validate, deadline=time.monotonic() - 1)
    assert len(passed.curve) == 1 and passed.best_epoch == 0  # one epoch always runs
    unlimited = fit_lightfm(split.train, params, validate, deadline=time.monotonic() + 600)
    assert len(unlimited.curve) == 10 and not unlimited.stopped_by_deadline


def test_a_fit_on_everything_knows_the_latest_interactions(split) -> None:
    # The served fit sees validation and test too: a reader's latest books (held out from
    # the tuned fit) pull their vector as the earlier ones do.
    from models.interactions import everything
    from models.recommender import fit_lightfm_epochs

    params = LightFMParams(no_components=8, learning_rate=0.05)
    full = fit_lightfm_epochs(everything(split), params, epochs=15, num_threads=1, seed=1)
    assert full.user_factors.shape == (split.ids.n_users, 8)
    rows = np.arange(split.ids.n_users)
    scores = full.scores(rows)
    scores[everything(split).nonzero()] = -np.inf
    top = np.argsort(-scores, axis=1)[:, :5]
    assert ((split.ids.book_ids[top] % 2) == (split.ids.user_ids[:, None] % 2)).mean() > 0.98
    with pytest.raises(TrainingError, match="at least 1"):
        fit_lightfm_epochs(everything(split), params, epochs=0)


def test_als_stops_on_validation_and_keeps_its_best_iteration(split) -> None:
    from models.baselines import fit_als_early_stopping

    scores = iter([0.1, 0.3, 0.2, 0.25, 0.2, 0.9, 0.9])
    seen: list[int] = []

    def validate(model) -> float:  # noqa: ANN001
        seen.append(model.user_factors.shape[0])
        return next(scores)

    model, best = fit_als_early_stopping(split.train, validate, max_iterations=7, patience=3,
                                         factors=4, num_threads=1)
    assert best == 1 and len(seen) == 5  # stopped three iterations after its best
    assert model.user_factors.shape == (split.ids.n_users, 4)
    real, _ = fit_als_early_stopping(split.train, validation_scorer(split, 5), factors=8,
                                     num_threads=1)
    assert evaluate_factors(real, split, "test", 5).ndcg > evaluate_popularity(
        split, "test", 5).ndcg


def test_weights_of_one_change_nothing_and_a_weight_near_zero_forgets(split) -> None:
    # Same seed, one thread: unit sample weights give the unweighted model exactly; an
    # interaction weighed ~0 teaches nothing, so the fit matches the fit without it.
    from models.interactions import everything
    from models.recommender import fit_lightfm_epochs

    params = LightFMParams(no_components=8, learning_rate=0.05)
    matrix = everything(split).tocsr()
    plain = fit_lightfm_epochs(matrix, params, epochs=5, num_threads=1, seed=3)
    ones = matrix.copy()
    ones.data[:] = 1.0
    weighted = fit_lightfm_epochs(matrix, params, epochs=5, num_threads=1, seed=3,
                                  weights=ones)
    np.testing.assert_allclose(weighted.item_factors, plain.item_factors, rtol=1e-5)
    # Every odd reader's reading weighed 1e-9: odd books gain (almost) nothing from them,
    # so the odd readers' vectors stay near their random start while even readers learn.
    faded = ones.copy()
    odd_rows = np.flatnonzero(split.ids.user_ids % 2 == 1)
    for r in odd_rows:
        faded.data[faded.indptr[r]:faded.indptr[r + 1]] = 1e-9
    model = fit_lightfm_epochs(matrix, params, epochs=15, num_threads=1, seed=3,
                               weights=faded)
    scores = model.scores(np.arange(split.ids.n_users))
    scores[matrix.nonzero()] = -np.inf
    top = np.argsort(-scores, axis=1)[:, :5]
    same = (split.ids.book_ids[top] % 2) == (split.ids.user_ids[:, None] % 2)
    even = np.flatnonzero(split.ids.user_ids % 2 == 0)
    assert same[even].mean() > 0.95
    assert same[odd_rows].mean() < 0.75
