"""Aliases in both registries: MLflow's model aliases and Redis's live batches, moved together.

``champion`` and ``challenger`` exist twice: as MLflow registered-model aliases (which model
version) and as Redis aliases (which published batch, whose manifest names its model
version). Every operation here moves both, records the MLflow side in Redis for ``/ready``
(``serving.pins.record_registry_alias``), and on failure tries every undo step — one failing
does not stop the others — then says which could not be undone. ``status`` reports where
the two disagree.

Pins (``serving.pins``): a running experiment pins its arms, a rollback pins its alias. The
gate does not move a pinned alias; its new version waits as ``<alias>-next`` and takes the
alias when the pin is lifted (``release``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

import mlflow
import redis
from mlflow import MlflowClient
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from serving.experiments import Experiment
from serving.pins import (
    Pin,
    PinnedError,
    disagreements,
    get_pin,
    pin_alias,
    pins,
    record_registry_alias,
    unpin_alias,
)
from serving.store import NotReplicatedError, RecStore, unconfirmed_switch

if TYPE_CHECKING:
    from tasks.publish import RedisTarget

NEXT = "-next"
ROLLBACK = "rollback"


class AliasError(RuntimeError):
    """An alias operation that could not be done; what was undone (or not) is in the message."""


class SwitchUnconfirmedError(AliasError):
    """The operation is done and served, but the cluster replica of the control slot did not
    confirm its switches in time: a failover before it does would undo them."""


def experiment_owner(name: str) -> str:
    return f"experiment:{name}"


def mlflow_alias(client: MlflowClient, model_name: str, alias: str) -> str | None:
    try:
        return str(client.get_model_version_by_alias(model_name, alias).version)
    except mlflow.exceptions.MlflowException:
        return None


def move_mlflow_alias(client: MlflowClient, model_name: str, store: RecStore | None,
                      alias: str, version: str | None) -> None:
    """Point (or, with None, remove) an MLflow alias, and note it in Redis."""
    if version is None:
        if mlflow_alias(client, model_name, alias) is not None:
            client.delete_registered_model_alias(model_name, alias)
    else:
        client.set_registered_model_alias(model_name, alias, version)
    if store is not None:
        record_registry_alias(store, alias, version)


@dataclass
class Steps:
    """Changes made so far, each with its undo; ``undo`` tries them all, newest first."""

    undos: list[tuple[str, Callable[[], object]]] = field(default_factory=list)

    def done(self, what: str, undo: Callable[[], object]) -> None:
        self.undos.append((what, undo))

    def undo(self) -> list[str]:
        """Undo every step; the ones that failed, with why (empty: all undone)."""
        failed = []
        for what, step in reversed(self.undos):
            try:
                step()
            except Exception as exc:  # noqa: BLE001 - every undo is tried, each failure named
                failed.append(f"{what}: {exc}")
        return failed


def confirm_replicated(store: RecStore, done: str, timeout_s: float = 10.0) -> None:
    """On a cluster, wait until the control slot's replica holds the switches just made
    (a no-op on a single server). They stay made either way: SwitchUnconfirmedError saying
    so when the replica does not confirm them in time."""
    try:
        store.wait_replicated(timeout_s, control_only=True)
    except NotReplicatedError as exc:
        raise SwitchUnconfirmedError(unconfirmed_switch(done, str(exc))) from None


def fail(message: str, steps: Steps, exc: BaseException, store: RecStore | None = None
         ) -> AliasError:
    """An AliasError naming the cause and what could not be undone.

    With ``store`` (on a cluster), the undone switches are then confirmed on the replica
    as the switches were, and the message says if they were not."""
    failed = steps.undo()
    if failed:
        return AliasError(f"{message} ({exc}); and these steps could NOT be undone, so MLflow "
                          f"and Redis may disagree (`goodbooks status`): {'; '.join(failed)}")
    if store is not None:
        try:
            store.wait_replicated(control_only=True)
        except (NotReplicatedError, redis.RedisError) as unconfirmed:
            return AliasError(f"{message} ({exc}); every step was undone, but the replica "
                              f"has not confirmed the undo ({unconfirmed}): check `goodbooks "
                              "status` after a failover")
    return AliasError(f"{message} ({exc}); every step was undone")


# --- experiments -----------------------------------------------------------------------------
def pin_experiment(client: MlflowClient, model_name: str, store: RecStore,
                   experiment: Experiment) -> dict[str, Pin]:
    """Pin each arm's alias at the MLflow version and Redis batch it serves now.

    Refused (nothing pinned) when an arm's alias is unset in either registry, when its Redis
    batch serves another model version than MLflow's alias, or when another owner (a
    rollback) holds it.
    """
    owner = experiment_owner(experiment.name)
    plan = {}
    for variant in experiment.variants:
        model_version = mlflow_alias(client, model_name, variant.alias)
        redis_version = store.get_alias(variant.alias)
        if model_version is None or redis_version is None:
            raise AliasError(
                f"{variant.name}'s alias {variant.alias!r} is "
                f"{'not registered in MLflow' if model_version is None else 'not published'}"
                "; train and score before starting the experiment")
        served = (store.get_manifest(redis_version) or {}).get("model_version")
        if served is not None and served != model_version:
            raise AliasError(
                f"Redis {variant.alias!r} serves model version {served} but MLflow's "
                f"{variant.alias!r} is {model_version}; run the score flow first")
        held = get_pin(store, variant.alias)
        if held is not None and held.owner != owner:
            raise PinnedError(f"{held.describe()}; `goodbooks unpin {variant.alias}` first")
        plan[variant.name] = (variant.alias, model_version, redis_version)
    return {name: pin_alias(store, alias, owner, f"arm {name} of experiment "
                            f"{experiment.name}", model_version, redis_version, replace=True)
            for name, (alias, model_version, redis_version) in plan.items()}


def experiment_pins(store: RecStore, experiment: Experiment) -> dict[str, Pin]:
    """The pins of a running experiment's arms, by variant name (missing arms left out)."""
    owner = experiment_owner(experiment.name)
    found = {}
    for variant in experiment.variants:
        pin = get_pin(store, variant.alias)
        if pin is not None and pin.owner == owner:
            found[variant.name] = pin
    return found


def release(client: MlflowClient, model_name: str, store: RecStore, alias: str,
            owner: str | None = None, drop_waiting: bool = False) -> list[str]:
    """Lift the pin of ``alias`` (only ``owner``'s when given) and let a waiting version in.

    The version the gate registered while the alias was pinned (``<alias>-next``) takes the
    alias (a new champion keeps the old one as ``previous``), and the next score run
    publishes it; with ``drop_waiting`` it is dropped instead. Returns what was done.
    """
    notes = []
    lifted = unpin_alias(store, alias, owner)
    if lifted is not None:
        notes.append(f"{alias}: pin of {lifted.owner} lifted")
    waiting = mlflow_alias(client, model_name, alias + NEXT)
    if waiting is None or get_pin(store, alias) is not None:
        return notes
    if drop_waiting:
        notes.append(f"{alias}: waiting version {waiting} dropped")
    else:
        current = mlflow_alias(client, model_name, alias)
        if alias == "champion" and current is not None and current != waiting:
            move_mlflow_alias(client, model_name, store, "previous", current)
        move_mlflow_alias(client, model_name, store, alias, waiting)
        notes.append(f"{alias}: waiting version {waiting} takes the alias; the next score "
                     "run publishes it")
    move_mlflow_alias(client, model_name, None, alias + NEXT, None)
    return notes


def release_experiment(client: MlflowClient, model_name: str, store: RecStore,
                       experiment: Experiment, promoted: bool) -> list[str]:
    """Unpin a closed experiment's arms. After a promotion the control's waiting version
    (the old champion's configuration refitted) is dropped: the promoted one is champion."""
    owner = experiment_owner(experiment.name)
    notes = []
    for variant in experiment.variants:
        drop = promoted and variant.name == experiment.control.name
        notes += release(client, model_name, store, variant.alias, owner, drop_waiting=drop)
    return notes


# --- rollback ------------------------------------------------------------------------------
@dataclass(frozen=True)
class RollbackResult:
    alias: str
    redis_version: str
    previous_redis_version: str
    model_version: str
    previous_model_version: str | None


def rollback(client: MlflowClient, model_name: str, store: RecStore, alias: str,
             to_version: str | None = None, replication_timeout_s: float = 10.0
             ) -> RollbackResult:
    """Roll ``alias`` back in both registries and pin it there until ``goodbooks unpin``.

    The target is the previous batch this alias served (or ``to_version``); MLflow's alias
    moves to the model version that batch was scored from. All or nothing. On a cluster,
    once both are moved, it waits until the replica holds the switch:
    SwitchUnconfirmedError if it does not in time (the rollback stays made).
    """
    current = store.get_alias(alias)
    if current is None:
        raise AliasError(f"Redis alias {alias!r} is not set: nothing to roll back")
    target = to_version or store.previous_version(alias, current)
    if target is None:
        raise AliasError(f"no earlier batch of {alias!r} than {current} is retained")
    model_version = (store.get_manifest(target) or {}).get("model_version")
    if model_version is None:
        raise AliasError(f"batch {target} names no model version (or is not retained)")
    try:
        client.get_model_version(model_name, model_version)
    except mlflow.exceptions.MlflowException as exc:
        raise AliasError(f"batch {target} was scored from model version {model_version}, "
                         f"which the registry no longer has: {exc}") from None
    held = get_pin(store, alias)
    if held is not None and held.owner != ROLLBACK:
        raise PinnedError(f"{held.describe()}; stop the experiment before rolling back")
    old_model = mlflow_alias(client, model_name, alias)
    steps = Steps()
    try:
        move_mlflow_alias(client, model_name, store, alias, model_version)
        steps.done(f"MLflow {alias} back to {old_model}",
                   lambda: move_mlflow_alias(client, model_name, store, alias, old_model))
        store.rollback(alias, target, replication_timeout_s=None)
        steps.done(f"Redis {alias} back to {current}",
                   lambda: store.set_alias(alias, current, expected=target,
                                           replication_timeout_s=None))
        pin_alias(store, alias, ROLLBACK, f"rolled back from batch {current} (model version "
                  f"{old_model})", model_version, target, replace=True)
    except Exception as exc:
        raise fail(f"rollback of {alias} failed", steps, exc, store) from exc
    confirm_replicated(store, f"{alias} was rolled back to batch {target} (model version "
                              f"{model_version}) and pinned", replication_timeout_s)
    return RollbackResult(alias, target, current, model_version, old_model)


def unpin(client: MlflowClient, model_name: str, store: RecStore, alias: str) -> list[str]:
    """Lift a rollback's pin (an experiment's ends with the experiment)."""
    held = get_pin(store, alias)
    if held is not None and held.owner != ROLLBACK:
        raise PinnedError(f"{held.describe()}; it is lifted when the experiment ends "
                          "(ab-evaluate promotes or stops it)")
    return release(client, model_name, store, alias) or [f"{alias} was not pinned"]


# --- status --------------------------------------------------------------------------------
def status(client: MlflowClient, model_name: str, store: RecStore) -> dict[str, object]:
    """Both registries side by side, the pins, and where MLflow and Redis disagree."""
    try:
        registered = {a: str(v) for a, v in client.get_registered_model(model_name)
                      .aliases.items()}
    except mlflow.exceptions.MlflowException:
        registered = {}
    served = {}
    for alias, version in sorted(store.aliases().items()):
        manifest = store.get_manifest(version) or {}
        served[alias] = {"version": version, "model_version": manifest.get("model_version")}
    live = tuple(sorted({a for a in registered if not a.endswith(NEXT) and a != "previous"}
                        | set(served) - {"previous"}))
    return {
        "mlflow": registered,
        "redis": served,
        "pins": {alias: pin.describe() for alias, pin in pins(store).items()},
        "disagreements": disagreements(registered, store, live, complete=True),
    }


# --- tasks ---------------------------------------------------------------------------------
@task(cache_policy=NO_CACHE)
def pinned_aliases(target: RedisTarget, aliases: list[str]) -> dict[str, str]:
    """The aliases among ``aliases`` that are pinned, each with who holds it and why."""
    store = target.store()
    held = {}
    for alias in aliases:
        pin = get_pin(store, alias)
        if pin is not None:
            held[alias] = pin.describe()
            get_run_logger().warning("not republished: %s", held[alias])
    return held


@task(cache_policy=NO_CACHE)
def rollback_both(tracking_uri: str, model_name: str, alias: str, to_version: str | None,
                  target: RedisTarget) -> dict[str, object]:
    """Roll an alias back in MLflow and Redis together and pin it (see ``rollback``)."""
    result = rollback(MlflowClient(tracking_uri), model_name, target.store(), alias, to_version)
    get_run_logger().info(
        "%s rolled back: Redis %s -> %s, MLflow model version %s -> %s; pinned until "
        "`goodbooks unpin %s`", alias, result.previous_redis_version, result.redis_version,
        result.previous_model_version, result.model_version, alias)
    return {**asdict(result), "version": result.redis_version}
