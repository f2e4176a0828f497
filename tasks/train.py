"""Tasks of the train flow: split, the Optuna study logged to MLflow, refit, baselines.

MLflow's active run is thread-local, so every task re-opens the parent run by id and
creates trial runs with both ``nested=True`` and ``parent_run_id`` (see the ecosystem notes:
nested alone silently creates top-level runs from worker threads).
"""

from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import mlflow
import numpy as np
import optuna
import pandas as pd
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from models.backtest import period_span
from models.baselines import fit_als_early_stopping
from models.bundle import ScoringBundle
from models.evaluation import (
    evaluate_factors,
    evaluate_oracle,
    evaluate_popularity,
    validation_scorer,
)
from models.features import FeatureConfig, ItemFeatures, build_item_features
from models.generator import TRUTH_FILE, load_truth
from models.increment import INTERACTIONS
from models.interactions import (
    Split,
    everything,
    interaction_history,
    popularity,
    temporal_split,
    time_split,
)
from models.recommender import FactorModel, FitResult
from models.replay import Log, ReplayError
from models.schema import BOOK_ID, TIMESTAMP, USER_ID, TrainingError
from models.snapshot import open_snapshot
from models.study import TrialBudget, join_study, open_storage, ran_trials
from models.tuning import (
    KNOWN_GOOD,
    Candidate,
    KeptFit,
    candidate_from_params,
    fit_candidate,
    fit_everything,
    full_fit_epochs,
    kept_best_fit,
    make_objective,
    sample_readers,
)
from tasks.registry import WarmStart, use_tracking

# Where build_bundle writes, under the temp directory; discard_bundle removes it.
BUNDLE_PREFIX = "goodbooks-bundle-"

@dataclass
class Catalogue:
    """Book metadata a snapshot carries for features (tags may be absent)."""

    books: pd.DataFrame
    book_tags: pd.DataFrame | None
    tags: pd.DataFrame | None

    def features_for(self, split: Split):  # noqa: ANN201 - returns a cached builder
        """A builder of item features per FeatureConfig, cached (they cost seconds)."""
        cache: dict[FeatureConfig, ItemFeatures | None] = {}

        def build(config: FeatureConfig) -> ItemFeatures | None:
            if config not in cache:
                cache[config] = build_item_features(split.ids, self.books, self.book_tags,
                                                    self.tags, config)
            return cache[config]

        return build


@task(cache_policy=NO_CACHE)
def load_split(snapshot_path: str, interaction_types: list[str] | None = None,
               split_by: str = "reader", period: str = "") -> Split:
    """The split of a snapshot's interactions over its whole catalogue.

    Interactions are the ratings plus the app's implicit interactions of
    ``interaction_types`` (the snapshot's ``interactions`` table), in time order.
    ``split_by="reader"``: each reader's latest interactions are validation and test.
    ``split_by="time"`` (with a ``period``, 7d or, without timestamps, a share of rows):
    test is the last period, validation the one before it, training everything earlier.
    """
    snapshot = open_snapshot(Path(snapshot_path))
    timed = TIMESTAMP in snapshot.columns("ratings")
    ratings = snapshot.read("ratings", columns=[USER_ID, BOOK_ID, *([TIMESTAMP] if timed
                                                                     else [])])
    implicit_types = [t for t in (interaction_types or []) if t != "rating"]
    implicit = (snapshot.read(INTERACTIONS, columns=[USER_ID, BOOK_ID, "type", "after"])
                if implicit_types and snapshot.has(INTERACTIONS) else None)
    books = snapshot.read("books", columns=[BOOK_ID])[BOOK_ID].to_numpy()
    split = None
    if split_by == "time" and period:
        history = interaction_history(with_time(ratings), _timed_implicit(implicit, ratings),
                                      implicit_types)
        text = period
        try:
            span, text = period_span(Log.from_frame(ratings, books), period)
            test_from = int(history[TIMESTAMP].max()) + 1 - span
            split = time_split(history, test_from - span, test_from, book_ids=books)
            how = f"by time: test the last {text}, validation the {text} before"
        except (TrainingError, ReplayError) as exc:
            # A gap in time (say, today's app events after an old export) can leave the
            # period before the last without returning readers, a period may not fit the
            # log's unit: split per reader then.
            get_run_logger().warning("no split by time on the last two %s: %s; the study "
                                     "splits per reader", text, exc)
    if split is None:
        history = interaction_history(ratings, implicit, implicit_types)
        split = temporal_split(history, book_ids=books)
        how = "per reader"
    get_run_logger().info("split of %s %s: %s (%d implicit interactions)",
                          snapshot.snapshot_id, how, split.summary(),
                          len(history) - len(ratings))
    return split


def with_time(ratings: pd.DataFrame) -> pd.DataFrame:
    """Ratings with their time: the timestamp, or without one the row position."""
    if TIMESTAMP in ratings.columns:
        return ratings
    return ratings.assign(**{TIMESTAMP: np.arange(len(ratings), dtype=np.int64)})


def _timed_implicit(implicit: pd.DataFrame | None, ratings: pd.DataFrame
                    ) -> pd.DataFrame | None:
    """Implicit interactions at the time of the rating they follow."""
    if implicit is None or implicit.empty:
        return implicit
    times = with_time(ratings)[TIMESTAMP].to_numpy(np.int64)
    after = np.clip(implicit["after"].to_numpy(np.int64) - 1, 0, len(times) - 1)
    return implicit.assign(**{TIMESTAMP: times[after]})


@task(cache_policy=NO_CACHE)
def load_catalogue(snapshot_path: str) -> Catalogue:
    """Books, and book_tags + tags when the snapshot has them."""
    snapshot = open_snapshot(Path(snapshot_path))
    has_tags = snapshot.has("book_tags") and snapshot.has("tags")
    if not has_tags:
        get_run_logger().info("snapshot has no tags: tag features are absent")
    return Catalogue(
        books=snapshot.read("books"),
        book_tags=snapshot.read("book_tags") if has_tags else None,
        tags=snapshot.read("tags") if has_tags else None,
    )


@task(cache_policy=NO_CACHE)
def start_parent_run(tracking_uri: str, experiment: str, artifacts_dir: str,
                     snapshot_id: str, settings: dict[str, object]) -> str:
    """Create the MLflow run that represents this training (the study's parent)."""
    experiment_id = use_tracking(tracking_uri, experiment, artifacts_dir)
    with mlflow.start_run(experiment_id=experiment_id, run_name=f"train-{snapshot_id}") as run:
        mlflow.set_tags({"snapshot": snapshot_id, "kind": "study"})
        mlflow.log_params({f"study.{k}": v for k, v in settings.items()})
    return run.info.run_id


class MlflowTrials:
    """Records each Optuna trial as a nested MLflow run with its per-epoch curve."""

    def __init__(self, parent_run_id: str, log) -> None:  # noqa: ANN001 - a logger
        self.parent_run_id = parent_run_id
        self.log = log
        self.started_at = 0.0

    def started(self, number: int, params: dict[str, object]) -> None:
        mlflow.start_run(run_name=f"trial-{number}", nested=True,
                         parent_run_id=self.parent_run_id)
        mlflow.log_params(params)
        mlflow.set_tag("trial", number)
        self.started_at = time.perf_counter()

    def epoch(self, number: int, epoch: int, value: float) -> None:
        mlflow.log_metric("valid_ndcg", value, step=epoch)

    def finished(self, number: int, state: str, value: float | None) -> None:
        mlflow.set_tag("state", state)
        mlflow.log_metric("seconds", time.perf_counter() - self.started_at)
        if value is not None:
            mlflow.log_metric("best_valid_ndcg", value)
        mlflow.end_run(status="FINISHED" if state != "FAILED" else "FAILED")
        self.log.info("trial %d %s%s", number, state.lower(),
                      f" valid ndcg {value:.4f}" if value is not None else "")


@task(cache_policy=NO_CACHE)
def run_study(
    split: Split,
    catalogue: Catalogue,
    parent_run_id: str,
    tracking_uri: str,
    storage: str | None,
    study_name: str,
    n_trials: int,
    timeout_s: float | None,
    sample_fraction: float,
    k: int,
    max_epochs: int,
    patience: int,
    num_threads: int,
    seed: int,
    pruning: bool = True,
    champion: WarmStart | None = None,
    study_trials: int | None = None,
    heartbeat_s: int | None = 60,
    grace_s: int | None = None,
) -> dict[str, object]:
    """Optuna search (trials as nested MLflow runs); returns best params and study stats.

    A new study runs the ``champion``'s parameters first (a warm start), then the
    KNOWN_GOOD trial, then what TPE draws; a resumed study goes on where it was. On every
    reader (sample_fraction 1) the best trial's fit comes back as ``best_fit`` when this
    process ran it, so the flow need not refit.

    ``n_trials`` is what this run adds to the study. With ``study_trials``, the study's
    budget in all is shared instead: every worker on the study (a PostgreSQL ``storage``
    URL and one ``study_name``) takes trials until the study holds that many. On a
    database server a worker's running trial sends a heartbeat every ``heartbeat_s``;
    one silent for ``grace_s`` fails and runs once more elsewhere.
    """
    log = get_run_logger()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    tuning_split = sample_readers(split, sample_fraction, seed)
    mlflow.set_tracking_uri(tracking_uri)
    starts = [KNOWN_GOOD] if champion is None else [champion.params, KNOWN_GOOD]
    joined = join_study(open_storage(storage, heartbeat_s, grace_s), study_name, seed,
                        pruning=pruning, starts=starts)
    study, new = joined.study, joined.created
    started_from = champion.version if new and champion is not None else None
    budget = None if study_trials is None else TrialBudget(study_trials)
    started = time.perf_counter()
    # Tuning on every reader: the best trial's own fit is the model, no refit needed.
    keep = KeptFit() if sample_fraction == 1 else None
    objective = make_objective(
        tuning_split, catalogue.features_for(tuning_split), k, num_threads, seed,
        max_epochs, patience, MlflowTrials(parent_run_id, log),
        deadline=None if timeout_s is None else time.monotonic() + timeout_s, keep=keep,
        budget=budget,
    )
    with mlflow.start_run(run_id=parent_run_id):
        mlflow.set_tags({
            "study.started_from": f"champion version {started_from}" if started_from else
                                  "known-good start" if new else "resumed study",
            # Each worker draws with its own seed: the tag tells which one this run used.
            "study.sampler_seed": joined.sampler_seed,
            "study.worker": "created the study" if new else "joined the study",
        })
        if budget is None:
            study.optimize(objective, n_trials=n_trials, timeout=timeout_s,
                           catch=(ArithmeticError,))
        else:
            # No worker can take more than the whole budget, even if every trial fails.
            study.optimize(objective, n_trials=budget.trials, timeout=timeout_s,
                           catch=(ArithmeticError,), callbacks=[budget])
        elapsed = time.perf_counter() - started
        completed = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
        if not completed:
            raise RuntimeError(
                f"study {study_name} has no completed trial; raise n_trials or the timeout"
            )
        # Starts not reached within n_trials or the timeout wait for the study's next run;
        # trials turned away by a shared budget never ran.
        taken = ran_trials(study)
        ran = len(taken)
        pruned = sum(t.state == optuna.trial.TrialState.PRUNED for t in taken)
        mlflow.log_params({f"best.{key}": value for key, value in study.best_params.items()})
        mlflow.log_metrics({"study.best_valid_ndcg": study.best_value,
                            "study.trials": ran, "study.pruned": pruned,
                            "study.seconds": elapsed})
        log_study_plots(study)
    log.info("study %s: %d trials (%d pruned) in %.0f s, best valid ndcg@%d %.4f",
             study_name, ran, pruned, elapsed, k, study.best_value)
    kept = kept_best_fit(study, keep)
    # The warm start's trial is the champion's configuration on today's data: its fit,
    # when this process kept it whole, is the champion's line in the test table.
    champion_fit = None
    if started_from is not None and keep is not None:
        first = study.trials[0]
        fit = keep.fit_of(first.number)
        if (first.state == optuna.trial.TrialState.COMPLETE and fit is not None
                and not fit.stopped_by_deadline):
            champion_fit = fit
    return {"best_params": dict(study.best_params), "best_value": float(study.best_value),
            "trials": ran, "pruned": pruned, "seconds": elapsed,
            "best_trial": study.best_trial.number, "best_fit": kept,
            "champion_fit": champion_fit, "started_from": started_from}


def log_study_plots(study: optuna.Study) -> None:
    """Optimisation history and parameter importances as images on the active run."""
    import warnings

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as oplt

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the matplotlib backend is marked experimental
        ax = oplt.plot_optimization_history(study)
        mlflow.log_figure(ax.figure, "optuna/history.png")
        plt.close(ax.figure)
        completed = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
        if len(completed) >= 2:
            try:
                ax = oplt.plot_param_importances(study)
                mlflow.log_figure(ax.figure, "optuna/importances.png")
                plt.close(ax.figure)
            except (RuntimeError, ValueError) as exc:  # e.g. every parameter constant
                get_run_logger().info("no importance plot: %s", exc)


@task(cache_policy=NO_CACHE)
def refit_best(
    split: Split, catalogue: Catalogue, best_params: dict[str, object], k: int,
    max_epochs: int, patience: int, num_threads: int, seed: int,
    timeout_s: float | None = None,
) -> tuple[FitResult, Candidate]:
    """Refit the best candidate on every reader (the study used a sample, or its best trial
    ran in another process); with timeout_s it ends after the epoch that passes it."""
    log = get_run_logger()
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    candidate = candidate_from_params(best_params, max_epochs, patience)

    def report(epoch: int, value: float) -> None:
        log.info("refit: epoch %d validation ndcg@%d = %.4f", epoch + 1, k, value)

    fit = fit_candidate(split, candidate, catalogue.features_for(split), k, num_threads, seed,
                        report, deadline=deadline)
    return fit, candidate


@task(cache_policy=NO_CACHE)
def fit_champion_configuration(
    split: Split, catalogue: Catalogue, champion_params: dict[str, object] | None, k: int,
    max_epochs: int, patience: int, num_threads: int, seed: int,
) -> FitResult | None:
    """The champion's parameters fitted on this split's training part, stopped on validation.

    The served champion was fitted on everything of an earlier snapshot, which holds most
    of today's test interactions: its own model would be judged on what it has seen. Its
    configuration, refitted on the same footing as the candidate, is the fair comparison.
    """
    if champion_params is None:
        return None
    candidate = candidate_from_params(champion_params, max_epochs, patience)
    return fit_candidate(split, candidate, catalogue.features_for(split), k, num_threads,
                         seed)


@task(cache_policy=NO_CACHE)
def compare_on_test(
    split: Split,
    fit: FitResult,
    snapshot_path: str,
    champion_fit: FitResult | None,
    k: int,
    num_threads: int,
    seed: int,
) -> list[dict[str, object]]:
    """Test metrics of the model beside popularity, ALS, the champion and (generated) oracle.

    Every fitted ranker learns from the training part and stops on the validation part:
    LightFM (the candidate and the champion's configuration) and ALS alike.
    """
    log = get_run_logger()
    rows = [{"ranker": "lightfm", **evaluate_factors(fit.model, split, "test", k,
                                                     num_threads=num_threads).as_dict()}]
    rows.append({"ranker": "popularity", **evaluate_popularity(split, "test", k).as_dict()})
    als, als_iteration = fit_als_early_stopping(
        split.train, validation_scorer(split, k, seed=seed, num_threads=num_threads),
        num_threads=num_threads, seed=seed)
    log.info("als: best validation at iteration %d", als_iteration + 1)
    rows.append({"ranker": "als", **evaluate_factors(als, split, "test", k,
                                                     num_threads=num_threads).as_dict()})
    if champion_fit is not None:
        rows.append({"ranker": "champion", **evaluate_factors(
            champion_fit.model, split, "test", k, num_threads=num_threads).as_dict()})
    truth_path = Path(snapshot_path) / TRUTH_FILE
    if truth_path.exists():
        truth = load_truth(truth_path.parent)
        # Data that moves: the truth's rate when the test period starts.
        rows.append({"ranker": "oracle", **evaluate_oracle(
            split, "test", k, lambda u, b: truth.scores(u, b, at=split.test_from)
        ).as_dict()})
    for row in rows:
        log.info("test %-10s ndcg@%d %.4f  precision %.4f  recall %.4f", row["ranker"], k,
                 row[f"ndcg_at_{k}"], row[f"precision_at_{k}"], row[f"recall_at_{k}"])
    return rows


@task(cache_policy=NO_CACHE)
def fit_on_everything(
    split: Split, catalogue: Catalogue, candidate: Candidate, best_epoch: int,
    num_threads: int, seed: int,
) -> tuple[FactorModel, dict[str, object]]:
    """The chosen candidate refitted on every interaction: the model that is served.

    Tuning and the test table use the split; serving the train-only fit would throw away
    each reader's latest interactions (validation and test), which say most about what
    they read next. Returns the model and how it was fitted.
    """
    epochs = full_fit_epochs(best_epoch)
    started = time.perf_counter()
    model = fit_everything(split, candidate, catalogue.features_for(split), epochs,
                           num_threads, seed)
    seconds = time.perf_counter() - started
    interactions = int(everything(split).nnz)
    get_run_logger().info("fit on everything: %d interactions, %d epochs, %.1f s",
                          interactions, epochs, seconds)
    return model, {"epochs": epochs, "interactions": interactions, "seconds": seconds}


@task(cache_policy=NO_CACHE)
def build_bundle(split: Split, model: FactorModel, meta: dict[str, object]) -> str:
    """Write the scoring bundle (factors, id maps, seen books, popular order) to a temp dir."""
    seen = everything(split)
    counts = popularity(seen)
    order = np.lexsort((np.arange(len(counts)), -counts))
    bundle = ScoringBundle(
        ids=split.ids, factors=model, seen=seen, popular=split.ids.book_ids[order], meta=meta,
    )
    return str(bundle.save(Path(tempfile.mkdtemp(prefix=BUNDLE_PREFIX)) / "bundle"))


@task(cache_policy=NO_CACHE)
def discard_bundle(bundle_dir: str) -> None:
    """Remove a bundle built by build_bundle once the registry holds its copy."""
    work = Path(bundle_dir).parent
    if work.name.startswith(BUNDLE_PREFIX):
        shutil.rmtree(work, ignore_errors=True)
