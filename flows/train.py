"""The train flow: snapshot → split → LightFM → test metrics → MLflow run → registry alias."""

from __future__ import annotations

from pathlib import Path

from prefect import flow
from prefect.artifacts import create_table_artifact

from models.recommender import LightFMParams
from models.snapshot import latest_snapshot, open_snapshot
from settings import get_settings
from tasks.registry import log_and_register, registry_aliases, set_registry_alias
from tasks.train import build_bundle, evaluate_on_test, fit_model, load_split


@flow(name="train", log_prints=True)
def train_flow(snapshot: str | None = None, max_epochs: int = 30) -> dict[str, object]:
    """Train on a snapshot, evaluate on its test split, register the model.

    Args:
        snapshot: snapshot directory (default: the newest under data/processed).
        max_epochs: upper bound on LightFM epochs (early stopping on validation NDCG).

    Returns the registered version, its alias and the test table.
    """
    s = get_settings()
    snapshot_path = snapshot or str(latest_snapshot(s.processed_dir).path)
    snapshot_id = open_snapshot(Path(snapshot_path)).snapshot_id
    params = LightFMParams(max_epochs=max_epochs).as_dict()

    split = load_split(snapshot_path)
    fit = fit_model(split, params, s.eval_k, s.num_threads, s.seed)
    table = evaluate_on_test(split, fit, snapshot_path, s.eval_k, s.num_threads)
    bundle_dir = build_bundle(split, fit, snapshot_path)
    registered = log_and_register(
        s.tracking_uri, s.mlflow_experiment, str(s.mlflow_artifacts_dir), s.model_name,
        bundle_dir, params, table, snapshot_id, fit.curve,
    )
    alias = "challenger" if "champion" in registry_aliases(s.tracking_uri, s.model_name) \
        else "champion"
    set_registry_alias(s.tracking_uri, s.model_name, alias, registered["version"])
    create_table_artifact(key="test-metrics", table=table,
                          description=f"Test metrics at k={s.eval_k} on snapshot {snapshot_id}")
    return {**registered, "alias": alias, "snapshot": snapshot_id, "metrics": table}
