"""The monitor flow on the published first run: quiet on more of the same, loud on drift."""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path
from uuid import UUID

import pandas as pd
import pytest

import serving
from flows.monitor import monitor_flow
from models.generator import generate_continuation
from serving.events import Event, EventWriter
from settings import get_settings
from tasks.monitor import DRIFT_EVENT
from tests.flows.conftest import champion_training_data

pytestmark = pytest.mark.usefixtures("prefect_harness")

NEW_RATINGS = 3000  # ~5 per reader of the 600: a few days of a small service


def read_event(event_id: str, timeout_s: float = 60.0) -> object:
    """The event as the test server stored it (its persister writes in batches)."""
    from prefect.client.orchestration import get_client
    from prefect.events.filters import EventFilter, EventIDFilter

    deadline = time.monotonic() + timeout_s
    while True:
        with get_client(sync_client=True) as client:
            page = client.read_events(EventFilter(id=EventIDFilter(id=[UUID(event_id)])),
                                      limit=5)
        if page.events:
            return page.events[0]
        if time.monotonic() > deadline:
            raise AssertionError(f"event {event_id} never reached the server")
        time.sleep(0.5)


def champion_snapshot() -> str:
    return champion_training_data()[0]


def unseen(*frames: pd.DataFrame) -> int:
    """Distinct (reader, book) pairs of the frames the champion was not trained on."""
    trained = champion_training_data()[1]
    pairs = pd.concat(frames)[["user_id", "book_id"]].drop_duplicates()
    both = pairs.merge(trained.drop_duplicates(), how="left", indicator=True)
    return int((both["_merge"] == "left_only").sum())


def test_same_distribution_raises_no_alarm(first_run: dict, tmp_path: Path,
                                            generated_dataset: Path) -> None:
    continuation = generate_continuation(generated_dataset, tmp_path / "none", "none", 0.0,
                                         NEW_RATINGS, seed=3)
    report = monitor_flow(current=str(continuation.directory))

    assert report["drifted"] is False, report["summary"]
    assert report["fired"] == [] and report["event_id"] is None
    assert report["n_ratings"] == unseen(pd.read_csv(continuation.directory / "ratings.csv"))
    assert report["n_ratings"] > 0.95 * NEW_RATINGS
    assert report["reference_snapshot"] == champion_snapshot()
    measures = {m["measure"]: m for m in report["measures"]}
    judged = ["rating_mix_psi", "reader_activity_ks", "book_popularity_js",
              "unseen_readers_share", "unseen_books_share", "hit_rate_drop"]
    for name in judged:
        assert measures[name]["status"] == "ok", measures[name]
        assert measures[name]["value"] < measures[name]["threshold"]
    # The served lists were read from Redis and compared with the to-read shelves.
    assert measures["hit_rate_drop"]["current"] > 0
    assert measures["hit_rate_drop"]["reference"] > 0
    assert Path(report["plot"]).stat().st_size > 10_000
    metrics = Path(report["metrics_file"]).read_text()
    assert "goodbooks_drift_detected 0.0" in metrics
    assert 'goodbooks_drift_measure{measure="rating_mix_psi"}' in metrics


def test_planted_drift_is_detected_and_announced(first_run: dict, tmp_path: Path,
                                                 generated_dataset: Path) -> None:
    continuation = generate_continuation(generated_dataset, tmp_path / "wave", "new_readers",
                                         0.3, NEW_RATINGS, seed=4)
    report = monitor_flow(current=str(continuation.directory))

    assert report["drifted"] is True
    assert "unseen_readers_share" in report["fired"]
    measures = {m["measure"]: m for m in report["measures"]}
    assert measures["unseen_readers_share"]["value"] == pytest.approx(0.3, abs=0.01)
    assert "goodbooks_drift_detected 1.0" in Path(report["metrics_file"]).read_text()

    event = read_event(report["event_id"])
    assert event.event == DRIFT_EVENT
    assert event.resource.id == f"goodbooks.dataset.{continuation.directory.name}"
    assert event.payload["fired"] == report["fired"]
    assert event.payload["measures"]["unseen_readers_share"] == pytest.approx(0.3, abs=0.01)
    assert event.payload["reference_snapshot"] == report["reference_snapshot"]


def test_rating_events_of_the_stream_count_as_new_ratings(
    first_run: dict, tmp_path: Path, generated_dataset: Path
) -> None:
    settings = get_settings()
    store = serving.RecStore(serving.connect_redis(settings.redis_url, settings.redis_db_path),
                             settings.redis_prefix)
    version = store.get_alias("champion")
    inflated = generate_continuation(generated_dataset, tmp_path / "inflated",
                                     "rating_inflation", 1.5, 800, seed=5)
    rows = pd.read_csv(inflated.directory / "ratings.csv")
    events = [Event(type="rating", user_id=int(r.user_id), book_id=int(r.book_id),
                    variant="champion", version=version, rating=int(r.rating))
              for r in rows.itertuples()]
    writer = EventWriter(store)
    try:
        for start in range(0, len(events), writer.max_batch):
            writer.write(events[start:start + writer.max_batch])
        # The snapshot the model was trained on adds nothing new: only the stream does.
        report = monitor_flow(current=first_run["snapshot"], emit=False)
    finally:
        store.client.delete(store.events_key)

    assert report["source"].endswith("+events")
    assert report["n_ratings"] == unseen(rows)
    assert report["events"]["rating"] == len(rows)
    assert "rating_mix_psi" in report["fired"]
    assert report["event_id"] is None  # emit=False


def test_by_default_what_no_served_model_was_trained_on_is_judged(
    first_run: dict, tmp_path: Path, generated_dataset: Path
) -> None:
    settings = get_settings()
    store = serving.RecStore(serving.connect_redis(settings.redis_url, settings.redis_db_path),
                             settings.redis_prefix)
    inflated = generate_continuation(generated_dataset, tmp_path / "inflated",
                                     "rating_inflation", 1.5, 600, seed=6)
    rows = pd.read_csv(inflated.directory / "ratings.csv")
    writer = EventWriter(store)
    ids: list[str] = []
    for start in range(0, len(rows), writer.max_batch):
        ids += writer.write([Event(type="rating", user_id=int(r.user_id),
                                   book_id=int(r.book_id), variant="control", version="v",
                                   rating=int(r.rating))
                             for r in rows.iloc[start:start + writer.max_batch].itertuples()]).ids
    item = settings.inbox_path / "week-49"
    generate_continuation(generated_dataset, item, "none", 0.0, 400, seed=7)
    week = pd.read_csv(item / "ratings.csv")
    try:
        report = monitor_flow()
    finally:
        store.client.xtrim(store.events_key, maxlen=0)
        shutil.rmtree(item)

    judged = report["judged"]
    assert judged["through"] == ids[-1] and judged["inbox"] == ["week-49"]
    assert judged["events"]["rating"] >= len(rows)
    # Each (reader, book) pair counts once, with its latest rating.
    assert report["n_ratings"] == unseen(rows, week)
    assert "rating_mix_psi" in report["fired"]
    event = read_event(report["event_id"])
    # What the retraining it triggers must take in (prefect.yaml passes it on).
    assert event.payload["judged"]["through"] == ids[-1]
    assert event.payload["judged"]["inbox"] == ["week-49"]


def test_resource_ids_match_the_retraining_trigger() -> None:
    from tasks.monitor import dataset_resource_id

    # prefect.yaml's retrain-on-drift trigger matches goodbooks.dataset.*
    assert dataset_resource_id("20261128T213000Z-1a2b3c4d") == \
        "goodbooks.dataset.20261128T213000Z-1a2b3c4d"
    assert dataset_resource_id("week 48/ratings+events") == \
        "goodbooks.dataset.week-48-ratings-events"
    assert dataset_resource_id("///") == "goodbooks.dataset.unknown"


def test_runs_leave_nothing_behind_in_the_temp_directory(first_run: dict, project_env: Path,
                                                         tmp_path: Path,
                                                         generated_dataset: Path) -> None:
    from flows.score import score_flow

    temp = Path(tempfile.gettempdir())
    assert temp == project_env / "tmp"  # the session's own: every flow run of it wrote here
    continuation = generate_continuation(generated_dataset, tmp_path / "none", "none", 0.0,
                                         300, seed=5)
    monitor_flow(current=str(continuation.directory), emit=False)
    score_flow(aliases=["champion"])
    # Bundles built by training and downloaded by scoring and monitoring are gone once the
    # run that needed them ends: nothing grows there night after night.
    left = sorted(p.name for p in temp.iterdir() if p.name.startswith("goodbooks-"))
    assert left == []

