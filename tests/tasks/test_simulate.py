"""Simulated readers are served through the serving layer and click by their true taste."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from models.ab import ExperimentDesign, measure
from models.event_log import InteractionLog
from models.generator import PlantedTruth
from serving.experiments import Experiment, Variant, assign_variant
from serving.store import RecStore, encode_items
from tasks.events import event_records, read_all_events
from tasks.simulate import ClickModel, simulate_traffic

N_USERS, N_BOOKS, K = 200, 60, 5


def small_truth(seed: int = 0) -> PlantedTruth:
    rng = np.random.default_rng(seed)
    genres = 4
    return PlantedTruth(
        genres=tuple(f"g{i}" for i in range(genres)),
        taste=rng.dirichlet(np.ones(genres), N_USERS).astype(np.float32),
        genre_mix=rng.dirichlet(np.ones(genres) * 0.3, N_BOOKS).astype(np.float32),
        popularity=rng.normal(0, 0.3, N_BOOKS).astype(np.float32),
        quality=rng.normal(0, 0.3, N_BOOKS).astype(np.float32),
        author=np.arange(N_BOOKS, dtype=np.int32),
        beta=4.0,
    )


def publish(store: RecStore, alias: str, lists: dict[int, list[int]]) -> str:
    version = store.new_version()
    receipts = [store.write_recs(version, ((u, encode_items(b)) for u, b in lists.items())),
                store.write_popular(version, encode_items(range(1, K + 1)))]
    store.commit_version(version, receipts, {"model_version": alias})
    store.set_alias(alias, version)
    return version


def test_readers_click_more_on_the_lists_their_true_taste_prefers(
    store: RecStore, tmp_path: Path
) -> None:
    truth = small_truth()
    users = np.arange(1, N_USERS + 1)
    order = np.argsort(-truth.scores(users), axis=1) + 1
    best = {int(u): order[i, :K].tolist() for i, u in enumerate(users)}
    worst = {int(u): order[i, -K:].tolist() for i, u in enumerate(users)}
    champion = publish(store, "champion", worst)
    challenger = publish(store, "challenger", best)
    experiment = Experiment("sim", (Variant("control", "champion", 0.5),
                                    Variant("treatment", "challenger", 0.5)), salt="s1")
    store.put_experiment(experiment)

    summary = simulate_traffic(store, "sim", truth, users.tolist(), k=K, visits_per_reader=2,
                               click_model=ClickModel(intercept=-2.0, slope=1.0), seed=1)

    assert sum(summary.visits.values()) == 2 * N_USERS
    assert sum(summary.impressions.values()) == 2 * N_USERS * K
    assert summary.clicks["treatment"] > 2 * summary.clicks["control"]
    # Nothing drained yet: all of it is the stream's tail.
    events = list(event_records(read_all_events(InteractionLog(tmp_path), store)[0]))
    for event in events:
        assert event.experiment == "sim"
        assert event.variant == assign_variant(experiment, event.user_id).name
        assert event.version == (challenger if event.variant == "treatment" else champion)
    result = measure(events, "sim", ["control", "treatment"],
                     lambda u: assign_variant(experiment, u).name, ExperimentDesign())
    assert result.misassigned == 0
    # Each reader sees the same list twice: one exposure per (reader, book).
    assert sum(a.exposures for a in result.arms.values()) == N_USERS * K
    assert result.arms["treatment"].rate > result.arms["control"].rate


def test_a_planted_lift_separates_identical_lists(store: RecStore) -> None:
    truth = small_truth(1)
    users = np.arange(1, N_USERS + 1)
    same = {int(u): list(range(1, K + 1)) for u in users}
    publish(store, "champion", same)
    publish(store, "challenger", same)
    store.put_experiment(Experiment("lift", (Variant("control", "champion", 0.5),
                                             Variant("treatment", "challenger", 0.5)), "s"))
    summary = simulate_traffic(store, "lift", truth, users.tolist(), k=K, seed=2,
                               click_model=ClickModel(lift={"treatment": 1.5}))
    rate = {v: summary.clicks[v] / summary.impressions[v] for v in summary.impressions}
    assert rate["treatment"] > 1.5 * rate["control"]
