"""The pipeline's commands: the demo, one per flow, aliases, experiments, serving."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from cli.base import app, prepare, reported
from serving.config import store_for


@app.command()
def demo(
    users: Annotated[int | None, typer.Option(
        help="Readers to generate (default GOODBOOKS_DEMO_USERS).")] = None,
    full: Annotated[bool, typer.Option(
        "--full", help="Full goodbooks size: 53,424 readers × 10,000 books.")] = False,
    n_trials: Annotated[int, typer.Option(help="Optuna trials (a small demo budget).")] = 3,
    max_epochs: Annotated[int, typer.Option(help="Upper bound on epochs per fit.")] = 10,
    sample_fraction: Annotated[float, typer.Option(
        help="Share of readers the study tunes on; the best is refit on all.")] = 0.5,
    experiment: Annotated[bool, typer.Option(
        help="Then run a short simulated A/B experiment and show its verdict.")] = True,
    monitor: Annotated[bool, typer.Option(
        help="Then check a drifted continuation of the data and show the drift report.")] = True,
    next_night: Annotated[bool, typer.Option(
        help="Then let the sample reader rate books and run the next night's loop.")] = True,
) -> None:
    """Run the whole pipeline on generated data, then show one reader's recommendations.

    After the pipeline (drain → ingest → train → register → score → monitor), the demo runs
    a short A/B experiment on simulated readers and a drift check on new generated ratings;
    then the sample reader rates some of their recommendations and the next night's loop
    learns from the day, and it ends with one request to the HTTP API.
    """
    settings = prepare()
    from demo import (
        describe_sample_reader,
        metrics_summary,
        run_demo_drift_check,
        run_demo_experiment,
        run_demo_next_night,
        show_api_request,
        where_to_look,
    )
    from flows.nightly import nightly_flow

    started = time.perf_counter()
    n_users = 53_424 if full else users
    night = {"n_users": n_users, "n_trials": n_trials, "max_epochs": max_epochs,
             "sample_fraction": sample_fraction}
    result = nightly_flow(source="generate", **night)
    elapsed = time.perf_counter() - started
    snapshot = Path(str(result["snapshot"]))
    typer.echo(describe_sample_reader(settings, snapshot, k=10))
    typer.echo(metrics_summary(result["trained"]["metrics"], result["trained"].get("split")))
    typer.echo(f"\nPipeline finished in {elapsed:.0f} s.")
    if experiment:
        typer.echo(run_demo_experiment(settings, snapshot))
    if monitor:
        typer.echo(run_demo_drift_check(settings, snapshot))
    if next_night:
        # A nightly refresh: one trial, the champion's configuration (the study's warm
        # start), tuned on every reader so that its own fit is the model.
        typer.echo(run_demo_next_night(settings, snapshot, {
            **night, "n_trials": 1, "sample_fraction": 1.0}))
        snapshot = settings.processed_dir / settings.processed_dir.joinpath("HEAD").read_text(
            ).strip()
    typer.echo(show_api_request(settings, snapshot))
    typer.echo(f"\nDemo finished in {time.perf_counter() - started:.0f} s.")
    typer.echo(where_to_look(settings))


@app.command()
def ingest(
    source: Annotated[str | None, typer.Option(
        help="generate | download | local (default GOODBOOKS_DATASET_SOURCE).")] = None,
    users: Annotated[int | None, typer.Option(help="Readers to generate.")] = None,
    books: Annotated[int | None, typer.Option(help="Books to generate.")] = None,
    local_dir: Annotated[Path | None, typer.Option(
        help="Directory with ratings.csv and books.csv (source local).")] = None,
    full: Annotated[bool, typer.Option(
        "--full", help="Validate the source whole and start its lineage again.")] = False,
) -> None:
    """Build the next snapshot: the source's newest one plus inbox files and new events."""
    prepare()
    from flows.ingest import ingest_flow

    with reported():
        snapshot = ingest_flow(source=source, n_users=users, n_books=books,
                               local_dir=str(local_dir) if local_dir else None, full=full)
    typer.echo(f"snapshot: {snapshot}")


@app.command()
def train(
    snapshot: Annotated[Path | None, typer.Option(
        help="Snapshot directory (default: the newest).")] = None,
    n_trials: Annotated[int | None, typer.Option(help="Optuna trials.")] = None,
    timeout_s: Annotated[float | None, typer.Option(
        min=1, help="Tuning seconds (default GOODBOOKS_TUNING_TIMEOUT_S); a trial running "
        "then ends after its current epoch.")] = None,
    refit_timeout_s: Annotated[float | None, typer.Option(
        min=1, help="Refit seconds (default GOODBOOKS_REFIT_TIMEOUT_S): the refit ends "
        "after the epoch that passes them.")] = None,
    sample_fraction: Annotated[float | None, typer.Option(
        help="Share of readers to tune on; below 1 the best is refit on all.")] = None,
    margin: Annotated[float | None, typer.Option(
        help="Relative NDCG drop vs the champion still accepted as challenger.")] = None,
    max_epochs: Annotated[int | None, typer.Option(help="Upper bound on epochs per fit.")] = None,
    study_name: Annotated[str | None, typer.Option(
        help="Optuna study to create or resume (shared by workers on PostgreSQL).")] = None,
    study_trials: Annotated[int | None, typer.Option(
        min=1, help="The study's trial budget in all, shared by every worker on it "
        "(default GOODBOOKS_STUDY_TRIALS; unset, this run adds --n-trials).")] = None,
    no_pruning: Annotated[bool, typer.Option(
        "--no-pruning", help="Run every trial to the end.")] = False,
    no_warm_start: Annotated[bool, typer.Option(
        "--no-warm-start", help="Do not start a new study from the champion's "
        "parameters.")] = False,
) -> None:
    """Tune, train, evaluate and register a model; the registry gate picks the alias."""
    prepare()
    from flows.train import train_flow

    with reported():
        result = train_flow(snapshot=str(snapshot) if snapshot else None, n_trials=n_trials,
                            timeout_s=timeout_s, refit_timeout_s=refit_timeout_s,
                            sample_fraction=sample_fraction, margin=margin,
                            max_epochs=max_epochs, study_name=study_name,
                            pruning=not no_pruning, warm_start=not no_warm_start,
                            study_trials=study_trials)
    typer.echo(f"registered version {result['version']} → {result['alias'] or 'no alias'}: "
               f"{result['reason']}")
    from demo import metrics_summary

    typer.echo(metrics_summary(result["metrics"], result.get("split")))


@app.command()
def score(
    alias: Annotated[list[str] | None, typer.Option(
        help="Registry alias to publish (repeatable; default champion and challenger).")] = None,
    top_n: Annotated[int | None, typer.Option(help="Books per reader.")] = None,
) -> None:
    """Publish every reader's top-N to Redis for each alias (the score flow)."""
    prepare()
    from flows.score import score_flow

    with reported():
        published_aliases = score_flow(aliases=alias, top_n=top_n)
    for published in published_aliases:
        if "pinned" in published:
            typer.echo(f"{published['alias']} left alone: {published['pinned']}")
        else:
            typer.echo(f"{published['alias']} → version {published['version']}")


@app.command()
def rollback(
    alias: Annotated[str, typer.Argument(help="Alias to roll back, e.g. champion.")],
    to: Annotated[str | None, typer.Option(
        help="Redis version to serve (default: the previous one this alias served).")] = None,
) -> None:
    """Roll an alias back in MLflow and Redis together, and pin it there until unpinned."""
    prepare()
    from flows.score import score_flow
    from serving.pins import PinnedError
    from tasks.aliases import AliasError

    try:
        with reported():
            result = score_flow(rollback_alias_name=alias, rollback_to=to)[0]
    except (AliasError, PinnedError) as exc:
        typer.secho(str(exc), fg="red", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"{alias} → Redis version {result['redis_version']} (was "
               f"{result['previous_redis_version']}), model version {result['model_version']} "
               f"(was {result['previous_model_version']}); pinned: the nightly run leaves it "
               f"alone until `goodbooks unpin {alias}`")


@app.command()
def unpin(
    alias: Annotated[str, typer.Argument(help="Alias a rollback pinned, e.g. champion.")],
) -> None:
    """Let the nightly run move an alias a rollback pinned (a waiting version takes it)."""
    settings = prepare()
    from mlflow import MlflowClient

    from serving.pins import PinnedError
    from tasks.aliases import unpin as lift

    try:
        notes = lift(MlflowClient(settings.tracking_uri), settings.model_name,
                     store_for(settings), alias)
    except PinnedError as exc:
        typer.secho(str(exc), fg="red", err=True)
        raise typer.Exit(1) from None
    for note in notes:
        typer.echo(note)


@app.command()
def status() -> None:
    """MLflow's and Redis's aliases side by side, the pins, and where the two disagree."""
    settings = prepare()
    from mlflow import MlflowClient

    from tasks.aliases import status as both

    found = both(MlflowClient(settings.tracking_uri), settings.model_name, store_for(settings))
    typer.echo("MLflow:  " + (", ".join(f"{a} → model version {v}" for a, v in
                                        sorted(found["mlflow"].items())) or "no aliases"))
    typer.echo("Redis:   " + (", ".join(
        f"{a} → {v['version']} (model version {v['model_version']})"
        for a, v in found["redis"].items()) or "no aliases"))
    for text in found["pins"].values():
        typer.echo(f"pinned:  {text}")
    for text in found["disagreements"]:
        typer.secho(f"DISAGREE: {text}", fg="red")
    if found["disagreements"]:
        raise typer.Exit(3)
    typer.echo("MLflow and Redis agree.")


@app.command("ab-evaluate")
def ab_evaluate(
    experiment: Annotated[str | None, typer.Argument(
        help="Experiment name (default GOODBOOKS_EXPERIMENT_NAME).")] = None,
    start: Annotated[bool, typer.Option(
        "--start", help="Create (or restart) the experiment: champion vs challenger.",
    )] = False,
    share: Annotated[float, typer.Option(help="Challenger's share of readers (--start).")] = 0.5,
    salt: Annotated[str | None, typer.Option(
        help="Assignment salt (--start; default the experiment name and today's date).")] = None,
    min_sample: Annotated[int | None, typer.Option(
        help="Exposures per variant before deciding.")] = None,
    max_days: Annotated[float | None, typer.Option(
        help="Stop an undecided experiment after this many days.")] = None,
    metric: Annotated[list[str] | None, typer.Option(
        help="Primary metric event types (repeatable: click, add_to_shelf, rating).")] = None,
    guardrail: Annotated[list[str] | None, typer.Option(
        help="TYPE=MAX_DROP, e.g. rating=0.2 (repeatable).")] = None,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="Report the decision without promoting or stopping.")] = False,
) -> None:
    """Judge an A/B experiment: promote the challenger, stop, or continue (ab_evaluate flow)."""
    settings = prepare()
    from datetime import UTC, datetime

    from flows.ab_evaluate import ab_evaluate_flow

    config = None
    if start:
        name = experiment or settings.experiment_name
        config = {
            "salt": salt or f"{name}-{datetime.now(UTC):%Y%m%d}",
            "status": "active",
            "started_at": datetime.now(UTC).isoformat(),
            "stopped_at": None,
            "variants": [{"name": "control", "alias": "champion", "share": 1 - share},
                         {"name": "treatment", "alias": "challenger", "share": share}],
        }
    design: dict[str, object] = {}
    if min_sample is not None:
        design["min_sample"] = min_sample
    if max_days is not None:
        design["max_duration_s"] = max_days * 86400
    if metric:
        design["primary_metric"] = metric
    if guardrail:
        design["guardrails"] = [
            {"event_type": g.split("=", 1)[0], "max_relative_drop": float(g.split("=", 1)[1])}
            for g in guardrail
        ]
    with reported():
        result = ab_evaluate_flow(experiment=experiment, config=config,
                                  design=design or None, act=not dry_run)
    typer.echo(f"{result['experiment']}: {result['action']} ({result['reason']})")


@app.command()
def monitor(
    current: Annotated[Path | None, typer.Option(
        exists=True, file_okay=False,
        help="New data: a newer snapshot, or a directory whose ratings.csv holds new ratings "
             "(e.g. from `goodbooks data continue`). Default: the newest snapshot.")] = None,
    alias: Annotated[str | None, typer.Option(
        help="Redis alias whose served lists are judged (GOODBOOKS_MONITOR_ALIAS).")] = None,
    no_events: Annotated[bool, typer.Option(
        "--no-events", help="Leave out the rating events of the Redis stream.")] = False,
    no_emit: Annotated[bool, typer.Option(
        "--no-emit", help="Report drift without emitting goodbooks.drift.detected.")] = False,
) -> None:
    """Compare new ratings with the served model's training data; emit an event on drift."""
    prepare()
    from flows.monitor import monitor_flow
    from models.schema import GoodbooksError
    from tasks.monitor import MonitorError

    try:
        report = monitor_flow(current=str(current) if current else None, alias=alias,
                              include_events=not no_events, emit=not no_emit)
    except (MonitorError, GoodbooksError) as exc:
        typer.secho(str(exc), fg="red", err=True)
        raise typer.Exit(2) from None
    from demo import measure_lines

    for line in measure_lines(report):
        typer.echo(line)
    typer.echo(report["summary"])
    if report["event_id"]:
        typer.echo(f"emitted goodbooks.drift.detected (event {report['event_id']})")


@app.command()
def recommend(
    user_id: Annotated[int, typer.Argument(help="Reader id.")],
    k: Annotated[int, typer.Option(help="How many books.")] = 10,
) -> None:
    """Read a reader's recommendations from Redis (no model loaded)."""
    prepare()
    import serving

    try:
        result = serving.recommend(user_id, k)
    except ValueError as exc:
        typer.secho(str(exc), fg="red", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"reader {user_id} ({result.source}, version {result.version}): {result.items}")


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Bind address (GOODBOOKS_API_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (GOODBOOKS_API_PORT).")] = None,
) -> None:
    """Start the HTTP API (reads Redis only)."""
    prepare()
    from serving.api import main as serve_api

    serve_api(host, port)
