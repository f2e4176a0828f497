"""The train flow: snapshot → split → Optuna study (MLflow) → test → fit on everything →
registry gate."""

from __future__ import annotations

from pathlib import Path

from prefect import flow
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from flows.score import redis_target
from models.backtest import SERVED
from models.bundle import SIMILAR_COLUMNS
from models.gate import BacktestScore, decide_alias
from models.interactions import Split
from models.recommender import FitResult
from models.snapshot import latest_snapshot, open_snapshot
from models.terms import ScoreTerms
from models.tuning import Candidate, candidate_from_params, full_fit_epochs
from settings import get_settings
from tasks.backtest import backtest_configuration, served_with_terms
from tasks.monitor import save_reference_stats
from tasks.registry import (
    WarmStart,
    champion_parameters,
    log_and_register,
    record_gate,
    start_child_run,
)
from tasks.train import (
    Catalogue,
    build_bundle,
    compare_on_test,
    discard_bundle,
    fit_champion_configuration,
    fit_on_everything,
    load_catalogue,
    load_split,
    refit_best,
    run_study,
    start_parent_run,
)


@flow(name="train", log_prints=True)
def train_flow(
    snapshot: str | None = None,
    n_trials: int | None = None,
    timeout_s: float | None = None,
    refit_timeout_s: float | None = None,
    sample_fraction: float | None = None,
    margin: float | None = None,
    max_epochs: int | None = None,
    study_name: str | None = None,
    pruning: bool = True,
    warm_start: bool = True,
    study_trials: int | None = None,
) -> dict[str, object]:
    """Tune and evaluate LightFM on a snapshot's split, then register it fitted on everything.

    The study and the test table use the temporal split; the model registered (and
    served) is the chosen configuration refitted on every interaction of the snapshot.
    The gate picks its alias by the test table.

    Args:
        snapshot: snapshot directory (default: the newest under data/processed).
        n_trials: Optuna trials (default GOODBOOKS_N_TRIALS).
        timeout_s: tuning time: no trial starts after it, and a trial still running ends
            after its current epoch with its best epoch so far (default
            GOODBOOKS_TUNING_TIMEOUT_S, else no limit).
        refit_timeout_s: end the refit after the epoch that passes this many seconds,
            keeping its best epoch (default GOODBOOKS_REFIT_TIMEOUT_S, else no limit).
            With timeout_s, tuning and refit keep to a time budget.
        sample_fraction: share of readers to tune on, the best then refit on all (default
            GOODBOOKS_TUNING_SAMPLE_FRACTION, 1: the best trial's own fit is the model).
        margin: relative NDCG@10 drop vs the champion still accepted as challenger.
        max_epochs: upper bound on epochs per fit (early stopping on validation NDCG@10).
        study_name: Optuna study to create or resume (default lightfm-<snapshot>); workers
            sharing a PostgreSQL storage and this name tune one study together.
        pruning: stop unpromising trials early (median rule on per-epoch validation).
        warm_start: a new study's first trial is the current champion's parameters (then
            the known-good start, then TPE), so a short nightly budget starts from
            what earlier studies found; a resumed study goes on where it was.
        study_trials: the study's trial budget in all, shared by every worker on it
            (default GOODBOOKS_STUDY_TRIALS; unset, this run adds n_trials).

    Returns the registered version, the alias it earned (or None), the split's sizes and
    kind (``split``), the test table, the
    study's figures (``started_from``: the champion version it was warm-started from, or
    None), the validation-stopped fit the table measures (``refit``: epochs, best epoch,
    validation NDCG, and the trial whose fit it is when there was no refit) and the served
    fit on everything (``full_fit``: epochs, interactions, seconds).
    """
    s = get_settings()
    snapshot_path = snapshot or str(latest_snapshot(s.processed_dir).path)
    opened = open_snapshot(Path(snapshot_path))
    snapshot_id, watermark = opened.snapshot_id, opened.log_watermark
    n_trials = n_trials or s.n_trials
    timeout_s = s.tuning_timeout_s if timeout_s is None else timeout_s
    refit_timeout_s = s.refit_timeout_s if refit_timeout_s is None else refit_timeout_s
    epochs = max_epochs or s.max_epochs
    fraction = sample_fraction or s.tuning_sample_fraction
    margin = s.registry_margin if margin is None else margin
    study = study_name or f"lightfm-{snapshot_id}"
    study_trials = study_trials or s.study_trials

    split = load_split(snapshot_path, list(s.interaction_types), s.tuning_split,
                       s.backtest_period)
    catalogue = load_catalogue(snapshot_path)
    parent = start_parent_run(
        s.tracking_uri, s.mlflow_experiment, str(s.mlflow_artifacts_dir), snapshot_id,
        {"n_trials": n_trials, "timeout_s": timeout_s, "sample_fraction": fraction,
         "refit_timeout_s": refit_timeout_s, "max_epochs": epochs, "study": study,
         "pruning": pruning, "seed": s.seed, "warm_start": warm_start,
         "study_trials": study_trials},
    )
    champion = champion_parameters(s.tracking_uri, s.model_name)
    found = run_study(split, catalogue, parent, s.tracking_uri, s.optuna_storage, study,
                      n_trials, timeout_s, fraction, s.eval_k, epochs, s.patience,
                      s.num_threads, s.seed, pruning, champion if warm_start else None,
                      study_trials, s.optuna_heartbeat_s, s.optuna_grace_s)
    if found["started_from"] is not None:
        print(f"the study started from the champion's parameters (version "
              f"{found['started_from']})")
    kept = found.pop("best_fit")
    champion_fit = found.pop("champion_fit")
    if kept is not None:
        print(f"the best trial ({found['best_trial']}) fitted every reader: it is the model")
        fit, candidate = kept, candidate_from_params(found["best_params"], epochs, s.patience)
    else:
        fit, candidate = refit_best(split, catalogue, found["best_params"], s.eval_k, epochs,
                                    s.patience, s.num_threads, s.seed, refit_timeout_s)

    # The study's winner may be the champion's configuration itself (its warm start won).
    same = champion is not None and found["best_params"] == champion.params
    if same and champion_fit is None:
        champion_fit = fit
    if champion_fit is None and champion is not None:
        champion_fit = fit_champion_configuration(split, catalogue, champion.params, s.eval_k,
                                                  epochs, s.patience, s.num_threads, s.seed)
    table = compare_on_test(split, fit, snapshot_path, champion_fit, s.eval_k,
                            s.num_threads, s.seed)
    lineage = {"snapshot_id": snapshot_id, "snapshot_path": snapshot_path,
               "log_watermark": watermark}
    backtest = None
    if s.backtest_period:
        # What serving faces: the configuration fitted before the last period, judged on
        # what readers did in it beside recent popularity; it chooses the served terms
        # (the recency prior, and where the catalogue names genres the taste side).
        backtest = backtest_configuration(
            snapshot_path, catalogue, found["best_params"], full_fit_epochs(fit.best_epoch),
            s.backtest_period, list(s.backtest_windows), s.tracking_uri, parent, s.eval_k,
            s.num_threads, s.seed, s.backtest_min_readers)
    terms = backtest.terms if backtest is not None else None
    registered, full_fit = register_fit_on_everything(
        split, catalogue, candidate, fit, table, parent, lineage, terms)

    ndcg = {str(row["ranker"]): float(row[f"ndcg_at_{s.eval_k}"]) for row in table}
    score = None
    if backtest is not None:
        name, value = backtest.best_popularity
        score = BacktestScore(backtest.ndcg[SERVED], name, value)
    decision = decide_alias(ndcg["lightfm"], ndcg["popularity"], ndcg.get("champion"), margin,
                            refresh=same, backtest=score)
    refreshed = None
    if champion is not None and champion_fit is not None and not same:
        # Another configuration won the study: it goes to the A/B test as challenger (or
        # nowhere), while the champion's own configuration is refitted on today's data, so
        # the readers it serves get tonight's lists all the same.
        refreshed = refresh_champion(split, catalogue, champion, champion_fit, table, parent,
                                     lineage, ndcg["popularity"], terms)
    given = record_gate(s.tracking_uri, parent, s.model_name, registered["version"],
                        decision.alias, decision.reason, redis_target())

    create_table_artifact(key="test-metrics", table=table,
                          description=f"Test metrics at k={s.eval_k}, snapshot {snapshot_id}")
    create_markdown_artifact(
        key="registry-gate",
        markdown=(f"### Registry gate\n\nVersion **{registered['version']}** of "
                  f"`{s.model_name}` → **{given or 'no alias'}**\n\n{decision.reason}"
                  + (f"\n\n`{decision.alias}` is pinned (an experiment or a rollback): "
                     f"the version waits as `{given}` until the pin is lifted."
                     if given != decision.alias else "")
                  + f"\n\nStudy `{study}`: {found['trials']} trials ({found['pruned']} pruned), "
                  f"best validation NDCG@{s.eval_k} {found['best_value']:.4f}"
                  + (f"\n\nChampion refreshed: version **{refreshed['version']}**, the "
                     f"champion's configuration (version {refreshed['refresh_of']}) fitted "
                     f"on this snapshot." if refreshed else "")),
    )
    return {**registered, "alias": given, "reason": decision.reason,
            "snapshot": snapshot_id, "metrics": table, "study": found,
            "refit": {"epochs": len(fit.curve), "best_epoch": fit.best_epoch,
                      "valid_ndcg": fit.best_score,
                      "kept_from_trial": found["best_trial"] if kept is not None else None},
            "full_fit": full_fit, "log_watermark": watermark, "split": split.summary(),
            "champion_refresh": refreshed,
            "backtest": None if backtest is None else {
                "period": backtest.period, "readers": backtest.readers,
                "ndcg": backtest.ndcg, "hit": backtest.hit, "served": backtest.served,
                "terms": backtest.terms.as_params()}}


def register_fit_on_everything(
    split: Split, catalogue: Catalogue, candidate: Candidate, fit: FitResult,
    table: list[dict[str, object]], run_id: str, lineage: dict[str, str | None],
    terms: ScoreTerms | None = None,
) -> tuple[dict[str, str], dict[str, object]]:
    """Fit a configuration on every interaction, add the backtest's terms (the recency
    prior, the genre taste side), bundle and register it from run_id."""
    s = get_settings()
    served, full_fit = fit_on_everything(split, catalogue, candidate, fit.best_epoch,
                                         s.num_threads, s.seed)
    fitted_columns = served.item_factors.shape[1]
    served = served_with_terms(served, split.ids, str(lineage["snapshot_path"]), catalogue,
                               terms)
    served_terms = terms.as_params() if terms else {}
    bundle_dir = build_bundle(split, served, {
        "snapshot": lineage["snapshot_id"], "log_watermark": lineage["log_watermark"],
        "fit": "everything", "epochs": full_fit["epochs"], "best_epoch": fit.best_epoch,
        SIMILAR_COLUMNS: fitted_columns, **served_terms})
    try:
        save_reference_stats(str(lineage["snapshot_path"]), bundle_dir, s.eval_k,
                             s.num_threads)
        params = {**candidate.params.as_dict(), **{f"feature.{k}": v for k, v in
                                                    candidate.features.as_dict().items()}}
        registered = log_and_register(s.tracking_uri, run_id, s.model_name, bundle_dir, params,
                                      table, str(lineage["snapshot_id"]), fit.curve, full_fit,
                                      lineage["log_watermark"])
    finally:
        discard_bundle(bundle_dir)  # the registry holds its copy (or the run failed)
    return registered, full_fit


def refresh_champion(
    split: Split, catalogue: Catalogue, champion: WarmStart, champion_fit: FitResult,
    table: list[dict[str, object]], parent: str, lineage: dict[str, str | None],
    popularity_ndcg: float, terms: ScoreTerms | None = None,
) -> dict[str, object] | None:
    """Register the champion's configuration fitted on everything as the new champion."""
    s = get_settings()
    row = next(r for r in table if r["ranker"] == "champion")
    if float(row[f"ndcg_at_{s.eval_k}"]) <= popularity_ndcg:  # type: ignore[arg-type]
        print("the champion's configuration no longer beats popularity: not refreshed")
        return None
    candidate = candidate_from_params(champion.params, s.max_epochs, s.patience)
    child = start_child_run(s.tracking_uri, parent, "champion-refresh", {
        **{f"best.{k}": v for k, v in champion.params.items()},
        "refresh_of": champion.version})
    # Its own test table: the champion's configuration is the model of this run.
    own = [{**r, "ranker": "lightfm"} if r["ranker"] == "champion" else r for r in table
           if r["ranker"] != "lightfm"]
    registered, full_fit = register_fit_on_everything(
        split, catalogue, candidate, champion_fit, own, child, lineage, terms)
    reason = (f"the champion's configuration (version {champion.version}) on newer data")
    record_gate(s.tracking_uri, child, s.model_name, registered["version"], "champion", reason,
                redis_target())
    return {**registered, "refresh_of": champion.version, "full_fit": full_fit}
