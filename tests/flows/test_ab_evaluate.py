"""Promotion moves MLflow and Redis aliases together; the flow judges simulated traffic."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from mlflow import MlflowClient

import serving
from flows.ab_evaluate import ab_evaluate_flow
from flows.score import score_flow
from models.event_log import InteractionLog
from models.generator import load_truth
from serving.experiments import Experiment
from serving.pins import get_pin
from serving.store import RecStore
from settings import get_settings
from tasks.ab import PromotionError, promote
from tasks.events import drain_stream
from tasks.simulate import ClickModel, simulate_traffic


# --- promotion: both or neither ---------------------------------------------------------
@pytest.fixture(scope="module")
def tracking_uri(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One SQLite MLflow store for the module (creating its schema takes seconds)."""
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"


@pytest.fixture
def registry(tracking_uri: str, tmp_path: Path) -> tuple[str, str, MlflowClient]:
    """A fresh registered model with versions 1 (champion) and 2 (challenger)."""
    client = MlflowClient(tracking_uri)
    name = f"ab-test-{uuid.uuid4().hex[:8]}"
    client.create_registered_model(name)
    for _ in range(2):
        client.create_model_version(name, source=(tmp_path / "model").as_uri())
    client.set_registered_model_alias(name, "champion", "1")
    client.set_registered_model_alias(name, "challenger", "2")
    return tracking_uri, name, client


def publish(store: RecStore, alias: str, model_version: str) -> str:
    version = store.new_version()
    receipts = [store.write_popular(version, "1,2,3")]
    store.commit_version(version, receipts, {"model_version": model_version})
    store.set_alias(alias, version)
    return version


def aliases(client: MlflowClient, name: str) -> dict[str, str]:
    return {k: str(v) for k, v in client.get_registered_model(name).aliases.items()}


def test_promotion_moves_both_registries(registry: tuple[str, str, MlflowClient],
                                         store: RecStore) -> None:
    uri, model, client = registry
    old, new = publish(store, "champion", "1"), publish(store, "challenger", "2")
    result = promote(uri, model, store)
    assert aliases(client, model) == {"champion": "2", "previous": "1"}
    assert store.aliases() == {"champion": new, "previous": old}
    assert (result.model_version, result.previous_model_version) == ("2", "1")


def test_a_failed_redis_switch_restores_the_mlflow_aliases(
    registry: tuple[str, str, MlflowClient], store: RecStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    uri, model, client = registry
    old, new = publish(store, "champion", "1"), publish(store, "challenger", "2")
    real = store.set_alias

    def failing(alias: str, version: str, **compare: object) -> str | None:
        if alias == "champion":
            raise serving.StoreError("injected Redis failure")
        return real(alias, version, **compare)  # type: ignore[arg-type]

    monkeypatch.setattr(store, "set_alias", failing)
    with pytest.raises(PromotionError, match="injected Redis failure"):
        promote(uri, model, store)
    assert aliases(client, model) == {"champion": "1", "challenger": "2"}
    assert store.aliases() == {"champion": old, "challenger": new}


def test_a_failed_last_redis_step_restores_both(
    registry: tuple[str, str, MlflowClient], store: RecStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    uri, model, client = registry
    old, new = publish(store, "champion", "1"), publish(store, "challenger", "2")
    real_delete = store.client.delete
    calls = {"n": 0}

    def failing_delete(*keys: str) -> int:
        calls["n"] += 1
        if calls["n"] == 1:
            raise ConnectionError("injected failure on the last step")
        return real_delete(*keys)

    monkeypatch.setattr(store.client, "delete", failing_delete)
    with pytest.raises(PromotionError):
        promote(uri, model, store)
    assert aliases(client, model) == {"champion": "1", "challenger": "2"}
    assert store.aliases() == {"champion": old, "challenger": new}


def test_a_failed_mlflow_switch_leaves_redis_untouched(
    registry: tuple[str, str, MlflowClient], store: RecStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    uri, model, client = registry
    old, new = publish(store, "champion", "1"), publish(store, "challenger", "2")
    real = MlflowClient.set_registered_model_alias

    def failing(self: MlflowClient, name: str, alias: str, version: str) -> None:
        if alias == "champion" and version == "2":
            raise RuntimeError("injected MLflow failure")
        real(self, name, alias, version)

    monkeypatch.setattr(MlflowClient, "set_registered_model_alias", failing)
    with pytest.raises(PromotionError, match="injected MLflow failure"):
        promote(uri, model, store)
    monkeypatch.undo()
    assert aliases(client, model) == {"champion": "1", "challenger": "2"}
    assert store.aliases() == {"champion": old, "challenger": new}


def test_every_undo_step_is_tried_and_one_that_fails_is_named(
    registry: tuple[str, str, MlflowClient], store: RecStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    uri, model, client = registry
    old, new = publish(store, "champion", "1"), publish(store, "challenger", "2")
    real_set = store.set_alias

    def failing_delete(*keys: str) -> int:
        raise ConnectionError("injected failure on the last step")

    def failing_undo(alias: str, version: str, **compare: object) -> str | None:
        if alias == "previous" and compare.get("expected") == old:
            raise ConnectionError("injected failure while undoing")
        return real_set(alias, version, **compare)  # type: ignore[arg-type]

    monkeypatch.setattr(store.client, "delete", failing_delete)
    monkeypatch.setattr(store, "set_alias", failing_undo)
    with pytest.raises(PromotionError, match="could NOT be undone.*Redis previous"):
        promote(uri, model, store)
    monkeypatch.undo()
    # The other steps were undone all the same: only Redis 'previous' is left over.
    assert aliases(client, model) == {"champion": "1", "challenger": "2"}
    assert store.get_alias("champion") == old and store.get_alias("challenger") == new


def test_promotion_promotes_exactly_the_tested_version(
    registry: tuple[str, str, MlflowClient], store: RecStore
) -> None:
    from serving.pins import pin_alias

    uri, model, client = registry
    publish(store, "champion", "1")
    tested = publish(store, "challenger", "2")
    pin = pin_alias(store, "challenger", "experiment:x", "arm", "2", tested)
    # The challenger aliases moved after the experiment started (they no longer can while
    # it runs; an experiment from before pins could have seen this).
    client.create_model_version(model, source="file:///tmp/model")
    client.set_registered_model_alias(model, "challenger", "3")
    publish(store, "challenger", "3")
    result = promote(uri, model, store, pin)
    assert (result.model_version, result.redis_version) == ("2", tested)
    assert aliases(client, model)["champion"] == "2"
    assert store.get_alias("champion") == tested


def test_promotion_refuses_a_redis_batch_of_another_model_version(
    registry: tuple[str, str, MlflowClient], store: RecStore
) -> None:
    uri, model, client = registry
    publish(store, "champion", "1")
    publish(store, "challenger", "1")  # stale: the registry's challenger is version 2
    with pytest.raises(PromotionError, match="republish"):
        promote(uri, model, store)
    assert aliases(client, model) == {"champion": "1", "challenger": "2"}


# --- the flow on the nightly run's model ------------------------------------------------
@pytest.fixture(scope="module")
def challenger(first_run: dict[str, object]) -> dict[str, str]:
    """A challenger copied from the champion's model version and published to Redis."""
    s = get_settings()
    client = MlflowClient(s.tracking_uri)
    copied = client.copy_model_version(f"models:/{s.model_name}@champion", s.model_name)
    client.set_registered_model_alias(s.model_name, "challenger", copied.version)
    published = score_flow(aliases=["challenger"])
    return {"model_version": str(copied.version), "run_id": str(copied.run_id),
            "redis_version": str(published[0]["version"])}


def config(salt: str) -> dict[str, object]:
    return {"salt": salt, "variants": [
        {"name": "control", "alias": "champion", "share": 0.5},
        {"name": "treatment", "alias": "challenger", "share": 0.5},
    ]}


@pytest.mark.usefixtures("prefect_harness")
def test_an_undecided_experiment_is_stopped_at_its_maximum_duration(
    first_run: dict[str, object], challenger: dict[str, str], live_store: RecStore
) -> None:
    before = live_store.aliases()
    created = ab_evaluate_flow(experiment="aa-test", config=config("aa"),
                               design={"min_sample": 100, "max_duration_s": 86400.0})
    assert created["action"] == "continue"  # no events yet
    truth = load_truth(Path(str(first_run["snapshot"])))
    simulate_traffic(live_store, "aa-test", truth, list(range(1, 301)), k=5, seed=3)
    started = live_store.get_experiment("aa-test")
    assert started is not None
    later = (datetime.fromisoformat(started.started_at) + timedelta(days=2)).isoformat()
    result = ab_evaluate_flow(experiment="aa-test", now=later)
    assert result["action"] == "stop", result["reason"]
    assert live_store.get_experiment("aa-test").status == "stopped"  # type: ignore[union-attr]
    assert live_store.aliases() == before
    assert Path(str(result["plot"])).is_file()


@pytest.mark.usefixtures("prefect_harness")
def test_a_better_challenger_is_promoted_in_mlflow_and_redis(
    first_run: dict[str, object], challenger: dict[str, str], live_store: RecStore
) -> None:
    s = get_settings()
    client = MlflowClient(s.tracking_uri)
    old_model = str(client.get_model_version_by_alias(s.model_name, "champion").version)
    old_batch = live_store.get_alias("champion")
    ab_evaluate_flow(experiment="ab-test", config=config("ab"), design={"min_sample": 300})
    # Each arm is pinned at what it serves now: the gate and the score flow leave it alone.
    pinned = get_pin(live_store, "challenger")
    assert pinned is not None and pinned.owner == "experiment:ab-test"
    assert (pinned.model_version, pinned.redis_version) == (
        challenger["model_version"], challenger["redis_version"])
    assert get_pin(live_store, "champion").redis_version == old_batch  # type: ignore[union-attr]
    truth = load_truth(Path(str(first_run["snapshot"])))
    simulate_traffic(live_store, "ab-test", truth, list(range(1, 601)), k=10, seed=4,
                     click_model=ClickModel(lift={"treatment": 1.0}))

    result = ab_evaluate_flow(experiment="ab-test")

    assert result["action"] == "promote", result["reason"]
    assert result["effect"] > 0 and result["ci"][0] > 0  # type: ignore[index, operator]
    registry = {k: str(v) for k, v in client.get_registered_model(s.model_name).aliases.items()}
    assert registry["champion"] == challenger["model_version"]
    assert registry["previous"] == old_model
    assert "challenger" not in registry
    assert live_store.get_alias("champion") == challenger["redis_version"]
    assert live_store.get_alias("previous") == old_batch
    assert live_store.get_experiment("ab-test").status == "stopped"  # type: ignore[union-attr]
    assert get_pin(live_store, "champion") is None and get_pin(live_store, "challenger") is None
    logged = client.get_run(challenger["run_id"]).data
    assert logged.tags["ab.ab-test.decision"] == "promote"
    assert logged.metrics["ab.ab-test.effect"] == pytest.approx(result["effect"])


@pytest.mark.usefixtures("prefect_harness")
def test_exposures_drained_out_of_the_stream_still_count(
    first_run: dict[str, object], live_store: RecStore
) -> None:
    s = get_settings()
    both_champion = {"salt": "long", "variants": [
        {"name": "control", "alias": "champion", "share": 0.5},
        {"name": "treatment", "alias": "champion", "share": 0.5}]}
    ab_evaluate_flow(experiment="long-test", config=both_champion,
                     design={"min_sample": 10_000})
    truth = load_truth(Path(str(first_run["snapshot"])))
    early = simulate_traffic(live_store, "long-test", truth, list(range(1, 201)), k=5, seed=5)
    # The nightly drain moves the early weeks to the log and trims them from the stream.
    drained = drain_stream(live_store.client, live_store.events_key,
                           InteractionLog(s.event_log_path))
    assert drained.drained >= sum(early.impressions.values())
    late = simulate_traffic(live_store, "long-test", truth, list(range(201, 401)), k=5, seed=6,
                            start_time_s=early.end_time_s + 1)

    result = ab_evaluate_flow(experiment="long-test", act=False)
    shown = sum(early.impressions.values()) + sum(late.impressions.values())
    assert sum(result["exposures"].values()) == shown  # type: ignore[union-attr]
    assert sum(result["readers"].values()) == 400  # type: ignore[union-attr]
    # Stopped by hand: the champion it pinned is free again.
    assert get_pin(live_store, "champion") is not None
    ab_evaluate_flow(experiment="long-test", config={
        "status": "stopped", "stopped_at": datetime.now(UTC).isoformat()})
    assert get_pin(live_store, "champion") is None


# --- pins: what waits while an experiment runs ---------------------------------------------
class StoreTarget:
    """Where record_gate finds Redis: the test's own store."""

    def __init__(self, store: RecStore) -> None:
        self._store = store

    def store(self) -> RecStore:
        return self._store


def running(name: str) -> Experiment:
    """A champion-vs-challenger experiment started now."""
    return Experiment.from_dict({"name": name, **config(name), "status": "active",
                                 "started_at": datetime.now(UTC).isoformat()})


@pytest.mark.usefixtures("prefect_harness")
def test_a_new_challenger_waits_while_the_experiment_runs(
    registry: tuple[str, str, MlflowClient], store: RecStore, tmp_path: Path
) -> None:
    from serving.pins import disagreements, registry_aliases_seen
    from tasks.aliases import pin_experiment, release_experiment
    from tasks.registry import record_gate

    uri, model, client = registry
    old_batch, tested = publish(store, "champion", "1"), publish(store, "challenger", "2")
    experiment = running("pins")
    pin_experiment(client, model, store, experiment)
    import mlflow

    mlflow.set_tracking_uri(uri)
    # The gate writes on the training run: one in the active experiment, as training's is.
    run_id = client.create_run(mlflow.set_experiment("gate-pins").experiment_id).info.run_id
    client.create_model_version(model, source=(tmp_path / "model").as_uri())  # version 3
    given = record_gate(uri, run_id, model, "3", "challenger", "beats the champion",
                        StoreTarget(store))  # type: ignore[arg-type]
    assert given == "challenger-next"
    assert aliases(client, model) == {"champion": "1", "challenger": "2", "challenger-next": "3"}
    # A new champion refresh waits too, and after a promotion it is dropped.
    client.create_model_version(model, source=(tmp_path / "model").as_uri())  # version 4
    assert record_gate(uri, run_id, model, "4", "champion", "refresh",
                       StoreTarget(store)) == "champion-next"  # type: ignore[arg-type]

    notes = release_experiment(client, model, store, experiment, promoted=True)
    assert aliases(client, model) == {"champion": "1", "challenger": "3"}
    assert "champion: waiting version 4 dropped" in notes
    assert registry_aliases_seen(store)["challenger"] == "3"
    # Until the next score run publishes version 3, Redis still serves version 2's batch:
    # the registry and Redis disagree, and say so.
    assert disagreements(registry_aliases_seen(store), store) == [
        f"the registry's challenger is model version 3 but Redis serves version {tested} of "
        "model version 2"]
    assert store.get_alias("champion") == old_batch


def test_an_experiment_needs_both_arms_published_in_both_registries(
    registry: tuple[str, str, MlflowClient], store: RecStore
) -> None:
    from serving.pins import pins
    from tasks.aliases import AliasError, pin_experiment

    uri, model, client = registry
    publish(store, "champion", "1")
    experiment = running("early")
    with pytest.raises(AliasError, match="'challenger' is not published"):
        pin_experiment(client, model, store, experiment)
    publish(store, "challenger", "1")  # a stale batch: the registry's challenger is 2
    with pytest.raises(AliasError, match="run the score flow first"):
        pin_experiment(client, model, store, experiment)
    assert pins(store) == {}
