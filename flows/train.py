"""The train flow: snapshot → split → Optuna study (MLflow) → refit → test → registry gate."""

from __future__ import annotations

import tempfile
from pathlib import Path

from prefect import flow
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from models.gate import decide_alias
from models.snapshot import latest_snapshot, open_snapshot
from models.tuning import candidate_from_params
from settings import get_settings
from tasks.monitor import save_reference_stats
from tasks.registry import (
    champion_parameters,
    fetch_bundle,
    log_and_register,
    record_gate,
    registry_aliases,
)
from tasks.train import (
    build_bundle,
    compare_on_test,
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
) -> dict[str, object]:
    """Tune, refit, evaluate and register LightFM on a snapshot; the gate picks the alias.

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

    Returns the registered version, the alias it earned (or None), the test table, the
    study's figures (``started_from``: the champion version it was warm-started from, or
    None) and how the model was fitted (``refit``: epochs, best epoch, validation
    NDCG, and the trial whose fit it is when there was no refit).
    """
    s = get_settings()
    snapshot_path = snapshot or str(latest_snapshot(s.processed_dir).path)
    snapshot_id = open_snapshot(Path(snapshot_path)).snapshot_id
    n_trials = n_trials or s.n_trials
    timeout_s = s.tuning_timeout_s if timeout_s is None else timeout_s
    refit_timeout_s = s.refit_timeout_s if refit_timeout_s is None else refit_timeout_s
    epochs = max_epochs or s.max_epochs
    fraction = sample_fraction or s.tuning_sample_fraction
    margin = s.registry_margin if margin is None else margin
    study = study_name or f"lightfm-{snapshot_id}"

    split = load_split(snapshot_path)
    catalogue = load_catalogue(snapshot_path)
    parent = start_parent_run(
        s.tracking_uri, s.mlflow_experiment, str(s.mlflow_artifacts_dir), snapshot_id,
        {"n_trials": n_trials, "timeout_s": timeout_s, "sample_fraction": fraction,
         "refit_timeout_s": refit_timeout_s, "max_epochs": epochs, "study": study,
         "pruning": pruning, "seed": s.seed, "warm_start": warm_start},
    )
    champion = champion_parameters(s.tracking_uri, s.model_name) if warm_start else None
    found = run_study(split, catalogue, parent, s.tracking_uri, s.optuna_storage, study,
                      n_trials, timeout_s, fraction, s.eval_k, epochs, s.patience,
                      s.num_threads, s.seed, pruning, champion)
    if found["started_from"] is not None:
        print(f"the study started from the champion's parameters (version "
              f"{found['started_from']})")
    kept = found.pop("best_fit")
    if kept is not None:
        print(f"the best trial ({found['best_trial']}) fitted every reader: it is the model")
        fit, candidate = kept, candidate_from_params(found["best_params"], epochs, s.patience)
    else:
        fit, candidate = refit_best(split, catalogue, found["best_params"], s.eval_k, epochs,
                                    s.patience, s.num_threads, s.seed, refit_timeout_s)

    aliases = registry_aliases(s.tracking_uri, s.model_name)
    champion_dir = None
    if "champion" in aliases:
        champion_dir = fetch_bundle(s.tracking_uri, s.model_name, "champion",
                                    tempfile.mkdtemp())["bundle_dir"]
    table = compare_on_test(split, fit, snapshot_path, champion_dir, s.eval_k,
                            s.num_threads, s.seed)
    bundle_dir = build_bundle(split, fit, {"snapshot": snapshot_id})
    save_reference_stats(snapshot_path, bundle_dir, s.eval_k, s.num_threads)
    params = {**candidate.params.as_dict(), **{f"feature.{k}": v for k, v in
                                                candidate.features.as_dict().items()}}
    registered = log_and_register(s.tracking_uri, parent, s.model_name, bundle_dir, params,
                                  table, snapshot_id, fit.curve)

    ndcg = {str(row["ranker"]): float(row[f"ndcg_at_{s.eval_k}"]) for row in table}
    decision = decide_alias(ndcg["lightfm"], ndcg["popularity"], ndcg.get("champion"), margin)
    record_gate(s.tracking_uri, parent, s.model_name, registered["version"], decision.alias,
                decision.reason)

    create_table_artifact(key="test-metrics", table=table,
                          description=f"Test metrics at k={s.eval_k}, snapshot {snapshot_id}")
    create_markdown_artifact(
        key="registry-gate",
        markdown=(f"### Registry gate\n\nVersion **{registered['version']}** of "
                  f"`{s.model_name}` → **{decision.alias or 'no alias'}**\n\n{decision.reason}"
                  f"\n\nStudy `{study}`: {found['trials']} trials ({found['pruned']} pruned), "
                  f"best validation NDCG@{s.eval_k} {found['best_value']:.4f}"),
    )
    return {**registered, "alias": decision.alias, "reason": decision.reason,
            "snapshot": snapshot_id, "metrics": table, "study": found,
            "refit": {"epochs": len(fit.curve), "best_epoch": fit.best_epoch,
                      "valid_ndcg": fit.best_score,
                      "kept_from_trial": found["best_trial"] if kept is not None else None}}
