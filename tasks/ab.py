"""Tasks of the A/B evaluation: experiment config, events, promotion, stop and report."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import mlflow
from mlflow import MlflowClient
from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from models.ab import (
    Decision,
    ExperimentDesign,
    Measurement,
    design_key,
    looks_key,
    measure,
    srm_counts,
)
from models.event_log import InteractionLog
from serving.experiments import Experiment, InvalidExperimentError, assign_variant
from serving.pins import Pin
from serving.store import RecStore
from tasks.aliases import (
    Steps,
    SwitchUnconfirmedError,
    confirm_replicated,
    experiment_pins,
    fail,
    mlflow_alias,
    move_mlflow_alias,
    pin_experiment,
    release_experiment,
)
from tasks.events import event_records, read_all_events
from tasks.publish import RedisTarget


class ExperimentNotFoundError(LookupError):
    """No experiment of that name is stored, and no config was given to create it."""


class PromotionError(RuntimeError):
    """The challenger could not be promoted; MLflow and Redis aliases are as they were."""


@dataclass(frozen=True)
class PromotionResult:
    """Versions before and after a promotion (MLflow model versions, Redis batch versions)."""

    model_version: str
    previous_model_version: str | None
    redis_version: str
    previous_redis_version: str | None
    # On a cluster: why the promotion, made and served, is not yet confirmed by the control
    # slot's replica (None: confirmed, or a single server).
    unconfirmed: str | None = None


def load_design(
    store: RecStore, name: str, control: str, treatment: str,
    defaults: dict[str, object] | None = None,
) -> ExperimentDesign:
    """The stored design of an experiment, or ``defaults`` for its two variants."""
    raw = store.client.get(design_key(store.prefix, name))
    if raw is None:
        return ExperimentDesign.from_dict(
            {**(defaults or {}), "control": control, "treatment": treatment}
        )
    return ExperimentDesign.from_json(raw)


@task(cache_policy=NO_CACHE)
def kept_looks(target: RedisTarget, name: str) -> list[list[float]]:
    """The looks earlier evaluations of the experiment took (rows of the test's history)."""
    raw = target.store().client.get(looks_key(target.prefix, name))
    return [] if raw is None else list(json.loads(raw))


@task(cache_policy=NO_CACHE)
def keep_looks(target: RedisTarget, name: str, decision: Decision) -> int:
    """Keep this evaluation's looks (with the earlier ones) for the next evaluation."""
    rows = [list(row) for row in decision.test.history]
    target.store().client.set(looks_key(target.prefix, name), json.dumps(rows))
    return len(rows)


def save_design(store: RecStore, name: str, design: ExperimentDesign) -> None:
    """Store the design beside the experiment config."""
    store.client.set(design_key(store.prefix, name), design.to_json())


@task(cache_policy=NO_CACHE)
def configure_experiment(
    target: RedisTarget, name: str, config: dict[str, object] | None,
    design: dict[str, object] | None, defaults: dict[str, object] | None = None,
    tracking_uri: str | None = None, model_name: str | None = None,
) -> tuple[dict[str, object], dict[str, object]]:
    """Create or edit the experiment (config and design) and return both as stored.

    ``config`` holds serving.experiments.Experiment fields (``name`` defaults to ``name``);
    ``design`` holds ExperimentDesign fields, merged over the stored ones (or ``defaults``).
    Starting (an active config) pins each arm at the MLflow version and Redis batch it
    serves (tasks.aliases.pin_experiment), so the experiment tests what it started with.
    """
    store = target.store()
    current = before = store.get_experiment(name)
    if config is not None:
        raw = {**(current.to_dict() if current else {}), **config, "name": name}
        raw.setdefault("started_at", datetime.now(UTC).isoformat())
        current = Experiment.from_dict(raw)
        if tracking_uri is not None and model_name is not None:
            client = MlflowClient(tracking_uri)
            if current.is_active:
                pinned = pin_experiment(client, model_name, store, current)
                for variant, pin in pinned.items():
                    get_run_logger().info("%s pinned: %s", variant, pin.describe())
            else:  # stopped by hand: its arms are free again
                for note in release_experiment(client, model_name, store, current, False):
                    get_run_logger().info(note)
        if before is None or before.started_at != current.started_at:
            # A new start: the looks of an earlier run of this name do not belong to it.
            store.client.delete(looks_key(store.prefix, name))
        store.put_experiment(current)
    if current is None:
        raise ExperimentNotFoundError(
            f"no experiment {name!r} is stored under {store.experiment_key(name)}; pass a "
            "config (variants, salt) to create one"
        )
    if len(current.variants) != 2:
        raise InvalidExperimentError(
            f"experiment {name!r} has {len(current.variants)} variants; the evaluation "
            "compares exactly two (control first)"
        )
    stored = load_design(store, name, current.variants[0].name, current.variants[1].name,
                         defaults)
    if design is not None:
        stored = ExperimentDesign.from_dict({**_design_dict(stored), **design})
        save_design(store, name, stored)
    get_run_logger().info("experiment %s: %s", name, current.to_json())
    return current.to_dict(), _design_dict(stored)


def _design_dict(design: ExperimentDesign) -> dict[str, object]:
    return dict(json.loads(design.to_json()))


@task(cache_policy=NO_CACHE)
def measure_experiment(
    target: RedisTarget, experiment: dict[str, object], design: dict[str, object],
    log_dir: str,
) -> Measurement:
    """Exposures and conversions per variant: the interaction log, then the stream's tail.

    The log holds what the drain moved out of the stream, so an experiment longer than
    the stream keeps its early exposures.
    """
    exp = Experiment.from_dict(experiment)
    plan = ExperimentDesign.from_dict(design)
    since_ms = int(datetime.fromisoformat(exp.started_at).timestamp() * 1000)
    store = target.store()
    # A day of slack: the log is partitioned by when Redis took an event in, the
    # measurement filters on the event's own time.
    events, _ = read_all_events(InteractionLog(Path(log_dir)), store,
                                since_ms=since_ms - 86_400_000)
    pinned = {variant: pin.redis_version for variant, pin in experiment_pins(store, exp).items()
              if pin.redis_version is not None}
    result = measure(
        event_records(events), exp.name, [v.name for v in exp.variants],
        lambda user: assign_variant(exp, user).name, plan, since_ms=since_ms,
        versions=pinned or None,
    )
    log = get_run_logger()
    if result.other_versions:
        log.warning("%d exposures were served by versions the experiment did not pin: not "
                    "counted", result.other_versions)
    for arm in result.arms.values():
        log.info("%s: %d readers, %d exposures, %d conversions", arm.variant, arm.readers or 0,
                 arm.exposures, arm.conversions)
    if result.misassigned:
        log.warning("%d exposures were logged under a variant the assignment does not give",
                    result.misassigned)
    return result


def promote(
    tracking_uri: str, model_name: str, store: RecStore, tested: Pin | None = None,
    challenger: str = "challenger", champion: str = "champion", previous: str = "previous",
    replication_timeout_s: float = 10.0,
) -> PromotionResult:
    """Make the tested challenger the champion in MLflow and Redis together: both or neither.

    ``tested`` is the treatment arm's pin: exactly the MLflow version and Redis batch the
    experiment measured are promoted, whatever the challenger aliases hold now (without a
    pin, the challenger aliases as they are). MLflow: ``champion`` -> that version,
    ``previous`` -> the old champion, ``challenger`` removed. Redis: the same three aliases
    moved the same way, each switch compare-and-set. If a step fails every step already done
    is undone (each tried, even when one fails) and PromotionError says what, if anything,
    could not be undone. On a cluster, once every step is made, it waits until the control
    slot's replica holds the switches; if it does not in time, the promotion stays made and
    the result's ``unconfirmed`` says why (the caller still closes the experiment).
    """
    client = MlflowClient(tracking_uri)
    if tested is not None:
        new_model, new_batch = tested.model_version, tested.redis_version
    else:
        new_model = mlflow_alias(client, model_name, challenger)
        new_batch = store.get_alias(challenger)
    if new_model is None:
        raise PromotionError(f"no {challenger!r} version of {model_name!r} to promote")
    manifest = store.get_manifest(new_batch) if new_batch else None
    if new_batch is None or manifest is None:
        raise PromotionError(f"Redis batch {new_batch} of {challenger!r} is not published "
                             "(or no longer retained): publish the challenger")
    if manifest.get("model_version") not in (None, str(new_model)):
        raise PromotionError(
            f"Redis batch {new_batch} serves model version {manifest.get('model_version')}, "
            f"but the version to promote is {new_model}; republish it first"
        )
    old_model = mlflow_alias(client, model_name, champion)
    old_model_previous = mlflow_alias(client, model_name, previous)
    old_challenger = mlflow_alias(client, model_name, challenger)
    old_batch = store.get_alias(champion)
    old_batch_previous = store.get_alias(previous)
    old_challenger_batch = store.get_alias(challenger)
    steps = Steps()

    def mlflow_back(alias: str, value: str | None) -> None:
        move_mlflow_alias(client, model_name, store, alias, value)

    def redis_back(alias: str, value: str | None, now: str) -> None:
        if value is None:
            store.client.delete(store.alias_key(alias))
        else:
            store.set_alias(alias, value, expected=now, replication_timeout_s=None)

    try:
        if old_model is not None:
            move_mlflow_alias(client, model_name, store, previous, old_model)
            steps.done(f"MLflow {previous} back to {old_model_previous}",
                       lambda: mlflow_back(previous, old_model_previous))
        move_mlflow_alias(client, model_name, store, champion, str(new_model))
        steps.done(f"MLflow {champion} back to {old_model}",
                   lambda: mlflow_back(champion, old_model))
        move_mlflow_alias(client, model_name, store, challenger, None)
        steps.done(f"MLflow {challenger} back to {old_challenger}",
                   lambda: mlflow_back(challenger, old_challenger))
        if old_batch is not None:
            store.set_alias(previous, old_batch, expected=old_batch_previous,
                            expect_unset=old_batch_previous is None, replication_timeout_s=None)
            steps.done(f"Redis {previous} back to {old_batch_previous}",
                       lambda: redis_back(previous, old_batch_previous, old_batch))
        store.set_alias(champion, new_batch, expected=old_batch, expect_unset=old_batch is None,
                        replication_timeout_s=None)
        steps.done(f"Redis {champion} back to {old_batch}",
                   lambda: redis_back(champion, old_batch, new_batch))
        store.client.delete(store.alias_key(challenger))
        steps.done(f"Redis {challenger} back to {old_challenger_batch}",
                   lambda: old_challenger_batch is not None and store.set_alias(
                       challenger, old_challenger_batch, expect_unset=True,
                       replication_timeout_s=None))
    except Exception as exc:
        raise PromotionError(str(fail("promotion failed", steps, exc, store))) from exc
    # One wait for every switch above, once all are made (a wait per switch could fail
    # between two of them and leave MLflow and Redis apart).
    unconfirmed = None
    try:
        confirm_replicated(store, f"model version {new_model} was promoted to {champion} "
                                  f"(batch {new_batch})", replication_timeout_s)
    except SwitchUnconfirmedError as exc:
        unconfirmed = str(exc)
    return PromotionResult(str(new_model), old_model, new_batch, old_batch, unconfirmed)


@task(cache_policy=NO_CACHE)
def promote_challenger(
    tracking_uri: str, model_name: str, target: RedisTarget, experiment: dict[str, object]
) -> dict[str, str | None]:
    """Promote the version the experiment tested in MLflow and Redis together (both or
    neither)."""
    exp = Experiment.from_dict(experiment)
    store = target.store()
    treatment = exp.variants[1]
    tested = experiment_pins(store, exp).get(treatment.name)
    if tested is None:
        get_run_logger().warning("the treatment arm was not pinned (an experiment started "
                                 "before pins): promoting what %s holds now", treatment.alias)
    result = promote(tracking_uri, model_name, store, tested, challenger=treatment.alias)
    get_run_logger().info(
        "promoted model version %s (was %s); Redis champion -> %s (was %s)",
        result.model_version, result.previous_model_version, result.redis_version,
        result.previous_redis_version,
    )
    if result.unconfirmed:
        get_run_logger().error("%s", result.unconfirmed)
    return result.__dict__.copy()


@task(cache_policy=NO_CACHE)
def close_experiment(target: RedisTarget, experiment: dict[str, object],
                     tracking_uri: str, model_name: str, promoted: bool) -> dict[str, object]:
    """Mark the experiment stopped (every reader gets the control from then on) and unpin
    its arms: versions the gate registered meanwhile take their aliases."""
    store = target.store()
    stopped = Experiment.from_dict(experiment).stopped()
    store.put_experiment(stopped)
    log = get_run_logger()
    log.info("experiment %s stopped", stopped.name)
    for note in release_experiment(MlflowClient(tracking_uri), model_name, store, stopped,
                                   promoted):
        log.info(note)
    return stopped.to_dict()


def report_rows(measurement: Measurement, decision: Decision) -> list[dict[str, object]]:
    """One table row per variant and published version, and the test's verdict."""
    rows: list[dict[str, object]] = []
    test = decision.test
    for arm in measurement.arms.values():
        rows.append({"variant": arm.variant, "version": "all", "readers": arm.readers,
                     "exposures": arm.exposures, "conversions": arm.conversions,
                     "rate": round(arm.rate, 5)})
        for version, (exposures, conversions) in sorted(arm.versions.items()):
            rows.append({"variant": arm.variant, "version": version, "readers": None,
                         "exposures": exposures, "conversions": conversions,
                         "rate": round(conversions / exposures, 5) if exposures else 0.0})
    rows.append({"variant": "effect (treatment - control)", "version": "",
                 "readers": sum(a.readers or 0 for a in measurement.arms.values()),
                 "exposures": sum(a.exposures for a in measurement.arms.values()),
                 "conversions": sum(a.conversions for a in measurement.arms.values()),
                 "rate": f"{test.effect:+.5f} [{_fmt(test.ci_low)}, {_fmt(test.ci_high)}] "
                         f"p={test.p_value:.4g} srm_p={decision.srm.p_value:.3g} "
                         f"-> {decision.action}"})
    return rows


def _fmt(value: float) -> str:
    return f"{value:+.5f}" if math.isfinite(value) else ("-inf" if value < 0 else "inf")


def plot_running_estimate(decision: Decision, path: Path, title: str) -> Path:
    """PNG of the effect estimate and its always-valid interval at each look."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    history = decision.test.history
    fig, ax = plt.subplots(figsize=(7, 3.5))
    if history:
        times = [datetime.fromtimestamp(h[0] / 1000, UTC) for h in history]
        effect = [h[1] for h in history]
        low = [h[3] if math.isfinite(h[3]) else math.nan for h in history]
        high = [h[4] if math.isfinite(h[4]) else math.nan for h in history]
        ax.plot(times, effect, marker="o", label="effect (treatment - control)")
        ax.fill_between(times, low, high, alpha=0.25, label="always-valid interval")
        ax.legend(loc="best")
    ax.axhline(0.0, color="black", linewidth=0.8)
    ax.set_title(title)
    ax.set_ylabel("conversion rate difference")
    fig.autofmt_xdate()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return path


@task(cache_policy=NO_CACHE)
def report_evaluation(
    name: str, measurement: Measurement, decision: Decision, plot_dir: str
) -> str:
    """Table and markdown artifacts (with the running-estimate plot); returns the PNG path."""
    rows = report_rows(measurement, decision)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    png = plot_running_estimate(decision, Path(plot_dir) / f"ab-{name}-{stamp}.png",
                                f"{name}: running estimate")
    key = "ab-" + "".join(c if c.isalnum() else "-" for c in name.lower())
    create_table_artifact(key=key, table=rows, description=f"A/B {name}: {decision.reason}")
    guards = "\n".join(
        f"| {g.event_type} | {g.control_rate:.4f} | {g.treatment_rate:.4f} | "
        f"{g.relative_change:+.1%} | [{_fmt(g.ci_low)}, {_fmt(g.ci_high)}] | {g.bound:+.5f} | "
        f"{g.status} |"
        for g in decision.guardrails
    )
    test = decision.test
    arms = list(measurement.arms.values())
    srm_unit, counts = srm_counts(arms[0], arms[1]) if len(arms) == 2 else ("exposures", [])
    srm_counts_text = " / ".join(f"{a.variant} {n:,}" for a, n in zip(arms, counts, strict=False))
    markdown = (
        f"# A/B evaluation: {name}\n\n**Decision: {decision.action}** — {decision.reason}\n\n"
        f"* effect {test.effect:+.5f}, always-valid interval [{_fmt(test.ci_low)}, "
        f"{_fmt(test.ci_high)}], always-valid p = {test.p_value:.4g}\n"
        f"* sample ratio ({srm_unit}: {srm_counts_text}): chi2 = {decision.srm.chi2:.2f}, "
        f"p = {decision.srm.p_value:.3g}\n"
        f"* misassigned exposures: {measurement.misassigned}\n\n"
        + ("| guardrail | control | treatment | change | always-valid interval of the "
           "difference | allowed drop | verdict |\n|---|---|---|---|---|---|---|\n"
           f"{guards}\n\n" if guards else "")
        + f"![running estimate]({png.as_uri()})\n\nPlot file: `{png}`\n"
    )
    create_markdown_artifact(key=f"{key}-report", markdown=markdown,
                             description=f"A/B {name} verdict")
    return str(png)


@task(cache_policy=NO_CACHE)
def log_to_challenger_run(
    tracking_uri: str, model_name: str, alias: str, name: str, measurement: Measurement,
    decision: Decision, plot_path: str,
) -> str | None:
    """Log the evaluation's numbers (and the plot) on the run of the challenger's version."""
    client = MlflowClient(tracking_uri)
    try:
        run_id = client.get_model_version_by_alias(model_name, alias).run_id
    except mlflow.exceptions.MlflowException:
        run_id = None
    if not run_id:
        get_run_logger().warning("no run behind %s@%s: A/B numbers not logged", model_name, alias)
        return None
    test = decision.test
    metrics = {"effect": test.effect, "p_value": test.p_value, "srm_p_value": decision.srm.p_value,
               "misassigned": float(measurement.misassigned)}
    if math.isfinite(test.ci_low):
        metrics["ci_low"] = test.ci_low
    if math.isfinite(test.ci_high):
        metrics["ci_high"] = test.ci_high
    for arm in measurement.arms.values():
        if arm.readers is not None:
            metrics[f"{arm.variant}.readers"] = float(arm.readers)
        metrics[f"{arm.variant}.exposures"] = float(arm.exposures)
        metrics[f"{arm.variant}.conversions"] = float(arm.conversions)
        metrics[f"{arm.variant}.rate"] = arm.rate
    for key, value in metrics.items():
        client.log_metric(run_id, f"ab.{name}.{key}", value)
    client.set_tag(run_id, f"ab.{name}.decision", decision.action)
    client.set_tag(run_id, f"ab.{name}.reason", decision.reason[:500])
    client.log_artifact(run_id, plot_path, artifact_path=f"ab/{name}")
    return run_id
