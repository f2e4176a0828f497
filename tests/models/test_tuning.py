"""The Optuna objective, its observer hooks, the reader sample and the registry gate."""

import time

import numpy as np
import optuna
import pandas as pd
import pytest

from models.features import FeatureConfig
from models.gate import BacktestScore, decide_alias
from models.interactions import temporal_split
from models.recommender import FitResult
from models.study import OVER_BUDGET, TrialBudget, join_study, open_storage, ran_trials
from models.tuning import (
    KNOWN_GOOD,
    SEARCH_SPACE,
    KeptFit,
    candidate_from_params,
    create_study,
    in_search_space,
    kept_best_fit,
    make_objective,
    params_from_logged,
    sample_readers,
)


@pytest.fixture(scope="module")
def split():
    rng = np.random.default_rng(0)
    rows = [(u, int(b), 4) for u in range(1, 121)
            for b in rng.choice(np.arange(1 + u % 2, 81, 2), size=15, replace=False)]
    return temporal_split(pd.DataFrame(rows, columns=["user_id", "book_id", "rating"]),
                          book_ids=np.arange(1, 81))


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple] = []

    def started(self, number, params):  # noqa: ANN001, ANN201
        self.events.append(("started", number))

    def epoch(self, number, epoch, value):  # noqa: ANN001, ANN201
        self.events.append(("epoch", number, epoch))

    def finished(self, number, state, value):  # noqa: ANN001, ANN201
        self.events.append(("finished", number, state))


def test_study_starts_from_the_known_good_trials_and_reports_every_epoch(split) -> None:
    recorder = Recorder()
    study = create_study(None, "t", seed=1)
    objective = make_objective(split, lambda config: None, 5, 1, 0, max_epochs=3,
                               patience=3, observer=recorder)
    study.optimize(objective, n_trials=2)
    assert study.trials[0].params == KNOWN_GOOD and study.trials[1].params != KNOWN_GOOD
    assert [e for e in recorder.events if e[0] != "epoch"] == [
        ("started", 0), ("finished", 0, "COMPLETE"), ("started", 1), ("finished", 1, "COMPLETE")]
    epochs = [e for e in recorder.events if e[0] == "epoch" and e[1] == 0]
    assert [e[2] for e in epochs] == [0, 1, 2]
    assert len(study.trials[0].user_attrs["curve"]) == 3
    assert study.best_value == max(t.value for t in study.trials)


def test_a_warm_start_runs_the_given_parameters_first_then_the_known_good_ones(
    split, tmp_path
) -> None:
    champion = {**KNOWN_GOOD, "loss": "bpr", "no_components": 20, "use_tags": True}
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    study = create_study(storage, "warm", seed=1, starts=[champion, KNOWN_GOOD, champion])
    study.optimize(make_objective(split, lambda config: None, 5, 1, 0, 2, 2), n_trials=3)
    assert study.trials[0].params == champion
    assert study.trials[1].params == KNOWN_GOOD
    assert study.trials[2].params not in (champion, KNOWN_GOOD)  # each start runs once
    # A resumed study goes on from where it was: nothing is enqueued again.
    resumed = create_study(storage, "warm", seed=1, starts=[KNOWN_GOOD])
    assert len(resumed.trials) == 3 and not resumed.get_trials(
        states=(optuna.trial.TrialState.WAITING,))


def test_only_the_creator_enqueues_the_starts_and_a_joiner_draws_with_its_own_seed(
    split, tmp_path
) -> None:
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    creator = join_study(storage, "shared", seed=7, starts=[KNOWN_GOOD])
    joiners = [join_study(storage, "shared", seed=7) for _ in range(2)]
    assert creator.created and creator.sampler_seed == 7
    assert [j.created for j in joiners] == [False, False]
    assert len({7, *(j.sampler_seed for j in joiners)}) == 3  # nobody replays the draws
    assert [t.state for t in creator.study.trials] == [optuna.trial.TrialState.WAITING]
    objective = make_objective(split, lambda config: None, 5, 1, 0, 1, 1)
    for joined in (creator, *joiners):
        joined.study.optimize(objective, n_trials=2)
    trials = creator.study.trials
    assert trials[0].params == KNOWN_GOOD and len(trials) == 6  # the start ran once
    # The others are random draws of three seeds (the same seed would repeat its draws).
    assert len({tuple(sorted(t.params.items())) for t in trials}) == 6


def test_a_joiner_waits_until_the_creator_has_enqueued_the_starts(split, tmp_path) -> None:
    import threading

    from models.study import STARTS_ENQUEUED

    storage = f"sqlite:///{tmp_path / 'study.db'}"
    # The creator's two steps, with a joiner arriving between them.
    created = optuna.create_study(study_name="between", storage=storage, direction="maximize")
    joined: list = []
    joiner = threading.Thread(target=lambda: joined.append(
        join_study(storage, "between", seed=7, wait_s=30)))
    joiner.start()
    time.sleep(0.5)
    assert joiner.is_alive()  # still waiting: nothing is enqueued yet
    created.enqueue_trial(dict(KNOWN_GOOD))
    created.set_user_attr(STARTS_ENQUEUED, 1)
    joiner.join(timeout=10)
    assert not joiner.is_alive() and not joined[0].created
    joined[0].study.optimize(make_objective(split, lambda config: None, 5, 1, 0, 1, 1),
                             n_trials=1)
    assert joined[0].study.trials[0].params == KNOWN_GOOD  # the start ran first


def test_a_joiner_does_not_wait_for_a_creator_that_died_or_a_study_that_ran(
        split, tmp_path, caplog: pytest.LogCaptureFixture) -> None:
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    optuna.create_study(study_name="orphan", storage=storage, direction="maximize")
    began = time.monotonic()
    join_study(storage, "orphan", seed=7, wait_s=0.3)
    assert 0.3 <= time.monotonic() - began < 5
    assert "has not enqueued its starts after 0 s" in caplog.text
    ran = optuna.create_study(study_name="ran", storage=storage, direction="maximize")
    ran.optimize(lambda trial: trial.suggest_float("x", 0, 1), n_trials=1)
    began = time.monotonic()
    join_study(storage, "ran", seed=7, wait_s=30)  # a study that ran a trial: no wait
    assert time.monotonic() - began < 5


def test_a_shared_budget_counts_every_workers_trials_and_turns_away_the_extra(
    split, tmp_path
) -> None:
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    budget = TrialBudget(3)
    objective = make_objective(split, lambda config: None, 5, 1, 0, 1, 1, budget=budget)
    first = create_study(storage, "budget", seed=1)  # the start waits: it counts
    assert budget.counted(first) == 1
    first.optimize(objective, n_trials=2, callbacks=[budget])
    second = create_study(storage, "budget", seed=1)
    second.optimize(objective, n_trials=5, callbacks=[budget])  # one left for it
    assert len(ran_trials(second)) == 3 and budget.counted(second) == 3
    # Two workers finishing at once would both see room for a trial: the one numbered past
    # the budget (here: a worker without the stopping callback) ends before fitting.
    second.optimize(objective, n_trials=5)
    extra = second.trials[-1]
    assert (extra.number, extra.state, extra.params) == (3, optuna.trial.TrialState.PRUNED, {})
    assert extra.user_attrs[OVER_BUDGET] is True
    assert len(ran_trials(second)) == 3 and budget.counted(second) == 3
    with pytest.raises(ValueError, match="at least 1"):
        TrialBudget(0)


def test_sqlite_and_memory_storages_pass_through_unchanged(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'study.db'}"
    assert open_storage(url) == url and open_storage(None) is None


def test_parameters_come_back_from_their_logged_text() -> None:
    logged = {name: str(value) for name, value in KNOWN_GOOD.items()}
    read = params_from_logged({**logged, "max_epochs": "30"})
    assert read == KNOWN_GOOD
    assert {name: type(value) for name, value in read.items()} == {
        name: type(value) for name, value in KNOWN_GOOD.items()}
    assert all(in_search_space(name, value) for name, value in KNOWN_GOOD.items())
    assert set(KNOWN_GOOD) == set(SEARCH_SPACE)
    with pytest.raises(ValueError, match="missing: max_sampled, use_tags"):
        params_from_logged({k: v for k, v in logged.items()
                            if k not in ("use_tags", "max_sampled")})
    with pytest.raises(ValueError, match="outside the search space: loss='logistic', "
                                         "no_components=512"):
        params_from_logged({**logged, "loss": "logistic", "no_components": "512"})
    with pytest.raises(ValueError, match="'yes' is not True or False"):
        params_from_logged({**logged, "use_authors": "yes"})
    with pytest.raises(ValueError, match="unreadable"):
        params_from_logged({**logged, "learning_rate": "fast"})


def test_the_deadline_ends_the_running_trial_and_starts_no_other(split, tmp_path) -> None:
    def slow_features(config):  # noqa: ANN001, ANN202 - the first trial passes the deadline
        time.sleep(0.3)

    storage = f"sqlite:///{tmp_path / 'study.db'}"
    second = {**KNOWN_GOOD, "no_components": 16}
    study = create_study(storage, "t", seed=1, starts=[KNOWN_GOOD, second])
    objective = make_objective(split, slow_features, 5, 1, 0, max_epochs=5, patience=5,
                               deadline=time.monotonic() + 0.1)
    study.optimize(objective, n_trials=5)
    running, waiting = study.trials  # the first ended past the deadline and stopped it
    assert running.state == optuna.trial.TrialState.COMPLETE
    assert running.params == KNOWN_GOOD
    assert running.user_attrs["curve"] == [running.value]  # ended after its first epoch
    assert running.user_attrs["stopped_by_deadline"] is True
    # The second start was not taken: it waits for the study's next run, which runs it.
    assert waiting.state == optuna.trial.TrialState.WAITING
    resumed = create_study(storage, "t", seed=1)
    resumed.optimize(make_objective(split, lambda config: None, 5, 1, 0, 1, 1), n_trials=1)
    assert resumed.trials[1].params == second
    assert resumed.trials[1].state == optuna.trial.TrialState.COMPLETE


def fit_scoring(score: float) -> FitResult:
    return FitResult(model=None, best_epoch=0, best_score=score, curve=[score])  # type: ignore[arg-type]


def test_kept_fit_holds_the_best_offer() -> None:
    keep = KeptFit()
    keep.offer(0, fit_scoring(0.2))
    keep.offer(1, fit_scoring(0.1))
    keep.offer(2, fit_scoring(0.2))  # a tie keeps the first, as study.best_trial does
    assert keep.number == 0
    keep.offer(3, fit_scoring(0.3))
    assert keep.number == 3 and keep.fit.best_score == 0.3


def test_a_best_trial_from_another_process_is_not_kept(split) -> None:
    keep = KeptFit()
    study = create_study(None, "t", seed=3)
    study.optimize(make_objective(split, lambda config: None, 5, 1, 0, max_epochs=2,
                                  patience=2, keep=keep), n_trials=2)
    assert kept_best_fit(study, keep) is keep.fit
    # Another worker (or an earlier run of the study) records a better trial.
    ours = study.trials[0]
    study.add_trial(optuna.trial.create_trial(params=ours.params, value=0.99,
                                              distributions=ours.distributions))
    assert study.best_trial.number == 2
    assert kept_best_fit(study, keep) is None  # its fit is not here: refit it
    assert kept_best_fit(study, None) is None


def test_the_best_trials_fit_is_kept(split) -> None:
    keep = KeptFit()
    study = create_study(None, "t", seed=3)
    study.optimize(make_objective(split, lambda config: None, 5, 1, 0, max_epochs=3,
                                  patience=3, keep=keep), n_trials=4)
    assert keep.number == study.best_trial.number
    assert keep.fit.best_score == study.best_value
    assert keep.fit.curve == study.best_trial.user_attrs["curve"]


def test_pruned_trials_are_reported_as_pruned(split) -> None:
    recorder = Recorder()
    study = optuna.create_study(direction="maximize",
                                pruner=optuna.pruners.ThresholdPruner(lower=2.0))
    objective = make_objective(split, lambda config: None, 5, 1, 0, 3, 3, recorder)
    study.optimize(objective, n_trials=1)
    assert study.trials[0].state == optuna.trial.TrialState.PRUNED
    assert recorder.events[-1] == ("finished", 0, "PRUNED")


def test_candidate_round_trips_through_params() -> None:
    candidate = candidate_from_params(KNOWN_GOOD, max_epochs=9, patience=2)
    assert candidate.params.loss == "warp" and candidate.params.max_epochs == 9
    assert candidate.features == FeatureConfig(tags=False, decade=False)


def test_reader_sample_keeps_the_catalogue(split) -> None:
    sample = sample_readers(split, 0.25, seed=3)
    assert sample.ids.n_users == 30 and sample.ids.n_books == split.ids.n_books
    rows = split.ids.user_index(sample.ids.user_ids)
    assert (sample.test != split.test[rows]).nnz == 0
    assert sample_readers(split, 1.0, 0) is split
    with pytest.raises(ValueError):
        sample_readers(split, 0.0, 0)


@pytest.mark.parametrize("candidate, popularity, champion, alias", [
    (0.10, 0.12, None, None),            # must beat popularity
    (0.20, 0.12, None, "champion"),      # first model
    (0.20, 0.12, 0.21, "challenger"),    # within 2% of the champion
    (0.20, 0.12, 0.25, None),            # worse by more than the margin
    (0.30, 0.12, 0.25, "challenger"),    # better: the A/B test decides
])
def test_registry_gate(candidate, popularity, champion, alias) -> None:  # noqa: ANN001
    decision = decide_alias(candidate, popularity, champion, margin=0.05)
    assert decision.alias == alias
    assert decision.reason


@pytest.mark.parametrize("served, popular, champion, alias, said", [
    (0.100, 0.098, 0.25, "challenger", None),           # level with recent popularity
    (0.090, 0.100, 0.25, None, "behind by more than 5%"),  # loses what serving faces
    (0.090, 0.100, None, "champion", "behind by more than 5%"),  # the first still serves
])
def test_registry_gate_weighs_the_backtest(served, popular, champion, alias,  # noqa: ANN001
                                           said) -> None:  # noqa: ANN001
    score = BacktestScore(served, "popularity (last 28d)", popular)
    decision = decide_alias(0.30, 0.12, champion, margin=0.05, backtest=score)
    assert decision.alias == alias
    if said:
        assert said in decision.reason and "popularity (last 28d)" in decision.reason
