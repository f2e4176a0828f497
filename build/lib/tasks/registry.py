"""Tasks that log a training run to MLflow, register the model and move its aliases."""

from __future__ import annotations

import subprocess
import warnings
from dataclasses import dataclass
from pathlib import Path

import mlflow
import pandas as pd
from mlflow import MlflowClient
from mlflow.models import infer_signature
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

import models.mlflow_model
from models.tuning import params_from_logged
from serving.pins import get_pin
from tasks.aliases import NEXT, move_mlflow_alias
from tasks.publish import RedisTarget

MODEL_CODE = Path(models.mlflow_model.__file__)


def code_version() -> str:
    """The git commit of the project (or 'unknown' outside a checkout)."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
            cwd=MODEL_CODE.parent, timeout=5, check=True,
        )
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def use_tracking(tracking_uri: str, experiment: str, artifacts_dir: str) -> str:
    """Point MLflow at the project's store; create the experiment with a local artifact root."""
    mlflow.set_tracking_uri(tracking_uri)
    client = MlflowClient(tracking_uri)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        Path(artifacts_dir).mkdir(parents=True, exist_ok=True)
        client.create_experiment(experiment, artifact_location=Path(artifacts_dir).as_uri())
    # Nested trial runs take the active experiment, so make it this one in every case.
    return mlflow.set_experiment(experiment).experiment_id


@task(cache_policy=NO_CACHE)
def log_and_register(
    tracking_uri: str,
    parent_run_id: str,
    model_name: str,
    bundle_dir: str,
    params: dict[str, object],
    metrics_table: list[dict[str, object]],
    snapshot_id: str,
    curve: list[float],
    full_fit: dict[str, object] | None = None,
    log_watermark: str | None = None,
) -> dict[str, str]:
    """Log both fits to the parent run and register the served one.

    The run holds the validation-stopped fit (its curve, ``refit.valid_ndcg``, and the
    test table, measured on it) and the fit on everything (``full_fit.*``: epochs,
    interactions, seconds); the bundle registered is the fit on everything, tagged with
    its lineage (snapshot, log watermark). Returns run_id and the new version (no alias
    yet: the gate decides).
    """
    logger = get_run_logger()
    mlflow.set_tracking_uri(tracking_uri)
    lineage = {"snapshot": snapshot_id, "log_watermark": log_watermark or "none",
               "fit": "everything" if full_fit else "train split"}
    with mlflow.start_run(run_id=parent_run_id) as run:
        mlflow.set_tags({**lineage, "code_version": code_version()})
        mlflow.log_params({f"model.{key}": value for key, value in params.items()})
        for epoch, score in enumerate(curve):
            mlflow.log_metric("refit.valid_ndcg", score, step=epoch)
        if full_fit:
            mlflow.log_params({f"full_fit.{key}": value for key, value in full_fit.items()
                               if key != "seconds"})
            mlflow.log_metric("full_fit.seconds", float(full_fit.get("seconds", 0.0)))
        for row in metrics_table:
            ranker = str(row["ranker"])
            mlflow.log_metrics({f"test.{ranker}.{key}": float(value)
                                for key, value in row.items() if key != "ranker"})
        mlflow.log_table(pd.DataFrame(metrics_table), artifact_file="test_metrics.json")
        example = pd.DataFrame({"user_id": [1]})
        with warnings.catch_warnings():
            # Reader ids are never missing, so MLflow's hint about integer columns is noise.
            warnings.simplefilter("ignore", UserWarning)
            signature = infer_signature(
                example, pd.DataFrame({"user_id": [1], "book_ids": [[1, 2]]}),
                params={"k": 10},
            )
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=str(MODEL_CODE),
            artifacts={"bundle": bundle_dir},
            signature=signature,
            registered_model_name=model_name,
        )
    version = str(info.registered_model_version)
    client = MlflowClient(tracking_uri)
    model_row = next(r for r in metrics_table if r["ranker"] == "lightfm")
    tags = {f"test.{key}": f"{float(value):.5f}" for key, value in model_row.items()
            if key != "ranker"}
    tags.update({**lineage, "code_version": code_version()})
    for key, value in tags.items():
        client.set_model_version_tag(model_name, version, key, value)
    logger.info("registered %s version %s (run %s)", model_name, version, run.info.run_id)
    return {"run_id": run.info.run_id, "version": version}


@task(cache_policy=NO_CACHE)
def start_child_run(tracking_uri: str, parent_run_id: str, name: str,
                    params: dict[str, object]) -> str:
    """A run nested under the training run (a second model it registers), with its params."""
    mlflow.set_tracking_uri(tracking_uri)
    with mlflow.start_run(run_id=parent_run_id) as parent, mlflow.start_run(
            run_name=name, nested=True, parent_run_id=parent.info.run_id,
            experiment_id=parent.info.experiment_id) as child:
        mlflow.log_params(params)
    return child.info.run_id


@task(cache_policy=NO_CACHE)
def record_gate(tracking_uri: str, parent_run_id: str, model_name: str, version: str,
                alias: str | None, reason: str, target: RedisTarget | None = None) -> str | None:
    """Write the gate's decision on the run and the model version, and move the alias.

    A new champion keeps the one it replaces as ``previous`` (a rollback target). When the
    alias is pinned (a running experiment's arm, a rollback) the version waits as
    ``<alias>-next`` instead and takes the alias when the pin is lifted. Returns the alias
    given.
    """
    store = target.store() if target is not None else None
    pin = get_pin(store, alias) if store is not None and alias is not None else None
    given = alias if pin is None else alias + NEXT
    if pin is not None:
        reason = f"{reason}; {pin.describe()}, so it waits as {given}"
    mlflow.set_tracking_uri(tracking_uri)
    with mlflow.start_run(run_id=parent_run_id):
        mlflow.set_tags({"gate.alias": given or "none", "gate.reason": reason[:5000]})
    client = MlflowClient(tracking_uri)
    client.set_model_version_tag(model_name, version, "gate", reason[:5000])
    if given == "champion":
        old = registry_aliases(tracking_uri, model_name).get("champion")
        if old is not None and old != version:
            move_mlflow_alias(client, model_name, store, "previous", old)
    if given is not None:
        move_mlflow_alias(client, model_name, store, given, version)
    get_run_logger().info("gate: version %s → %s (%s)", version, given or "no alias", reason)
    return given


def registry_aliases(tracking_uri: str, model_name: str) -> dict[str, str]:
    """alias → version of a registered model ({} when it is not registered yet)."""
    client = MlflowClient(tracking_uri)
    try:
        model = client.get_registered_model(model_name)
    except mlflow.exceptions.MlflowException:
        return {}
    return {alias: str(version) for alias, version in model.aliases.items()}


@dataclass(frozen=True)
class WarmStart:
    """A registered version's search-space parameters, to start a new study from."""

    version: str
    params: dict[str, object]


@task(cache_policy=NO_CACHE)
def champion_parameters(tracking_uri: str, model_name: str) -> WarmStart | None:
    """The parameters the champion's study chose, to start a new study from.

    Read from the ``best.*`` params of the run that registered the champion. None when
    there is no champion, or (with a warning saying why) when its run cannot be read or its
    parameters no longer fit the search space: a warm start only saves time.
    """
    if "champion" not in registry_aliases(tracking_uri, model_name):
        return None
    client = MlflowClient(tracking_uri)
    version = client.get_model_version_by_alias(model_name, "champion")
    try:
        if not version.run_id:
            raise ValueError("the version names no run")
        logged = client.get_run(version.run_id).data.params
        params = params_from_logged({key.removeprefix("best."): value
                                     for key, value in logged.items()
                                     if key.startswith("best.")})
    except (ValueError, mlflow.exceptions.MlflowException) as error:
        get_run_logger().warning("the champion (version %s) cannot start the study: %s",
                                 version.version, error)
        return None
    return WarmStart(version=str(version.version), params=params)


@task(cache_policy=NO_CACHE)
def fetch_bundle(tracking_uri: str, model_name: str, alias: str, dest: str) -> dict[str, str]:
    """Download the bundle of the model version an alias points to; returns its path/meta."""
    mlflow.set_tracking_uri(tracking_uri)
    client = MlflowClient(tracking_uri)
    version = client.get_model_version_by_alias(model_name, alias)
    local = mlflow.artifacts.download_artifacts(
        artifact_uri=f"models:/{model_name}@{alias}", dst_path=dest
    )
    bundle_dir = Path(local) / "artifacts" / "bundle"
    return {
        "bundle_dir": str(bundle_dir),
        "model_version": str(version.version),
        "run_id": str(version.run_id),
        "snapshot": str(version.tags.get("snapshot", "")),
    }
