"""The nightly loop through the HTTP API: what readers rate today shapes tonight's lists."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from mlflow import MlflowClient

from flows.monitor import monitor_flow
from flows.nightly import nightly_flow
from models.event_log import InteractionLog
from models.snapshot import open_snapshot
from serving.api import create_app
from serving.store import RecStore
from settings import get_settings
from tasks.events import drain_stream
from tests.flows.conftest import champion_training_data

pytestmark = pytest.mark.usefixtures("prefect_harness")

KEY = "loop-test-key"
READERS = 5  # the readers with the fewest ratings: 15 new ones move them most
NEW_PER_READER = 15


@pytest.fixture
def api(first_run: dict, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("GOODBOOKS_EVENTS_API_KEY", KEY)
    monkeypatch.setenv("GOODBOOKS_POINTER_TTL_S", "0")
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def recommend(reader: int) -> dict:
    with TestClient(create_app()) as client:
        response = client.get(f"/recommendations/{reader}", params={"k": 20})
    assert response.status_code == 200, response.text
    return response.json()


def similar(books: list[int]) -> set[int]:
    with TestClient(create_app()) as client:
        found: set[int] = set()
        for book in books:
            response = client.get(f"/books/{book}/similar", params={"k": 20})
            assert response.status_code == 200, response.text
            found.update(response.json()["items"])
    return found


@pytest.mark.usefixtures("api")
def test_a_readers_ratings_today_are_excluded_from_and_reflected_in_tonights_list(
    first_run: dict, live_store: RecStore
) -> None:
    s = get_settings()
    _, trained = champion_training_data()  # other tests may have retrained it
    popularity = trained["book_id"].value_counts()
    readers = [int(r) for r in trained["user_id"].value_counts().sort_values().index[:READERS]]
    before, rated_today, events = {}, {}, []
    for reader in readers:
        before[reader] = recommend(reader)
        seen = set(trained.loc[trained["user_id"] == reader, "book_id"])
        # Popular books the reader has not read and was not shown: rated five stars today.
        fresh = [int(b) for b in popularity.index
                 if b not in seen and b not in before[reader]["items"]][:NEW_PER_READER]
        rated_today[reader] = fresh
        events += [{"type": "rating", "user_id": reader, "book_id": book, "rating": 5,
                    "variant": before[reader]["variant"], "version": before[reader]["version"]}
                   for book in fresh]
    with TestClient(create_app()) as client:
        for start in range(0, len(events), s.events_max_batch):
            posted = client.post("/events", json={"events": events[start:start + 500]},
                                 headers={"X-API-Key": KEY})
            assert posted.status_code == 202, posted.text

    try:
        # The day's ratings are what no served model has been trained on yet.
        judged = monitor_flow(emit=False)
        assert judged["n_ratings"] == len(events)
        night = nightly_flow(n_trials=1, max_epochs=6, monitor=False)
    finally:
        drain_stream(live_store.client, live_store.events_key, InteractionLog(
            s.event_log_path))  # a failure here must not leave its events to later tests

    assert night["drained"]["drained"] >= len(events)
    champion = MlflowClient(s.tracking_uri).get_model_version_by_alias(s.model_name, "champion")
    assert str(champion.version) in (night["trained"]["version"],
                                (night["trained"]["champion_refresh"] or {}).get("version"))
    assert champion.tags["fit"] == "everything"
    trained_on = open_snapshot(s.processed_dir / champion.tags["snapshot"]).read("ratings")
    for reader, books in rated_today.items():
        mine = trained_on[trained_on["user_id"] == reader]
        assert set(books) <= set(mine["book_id"]), reader
    leaning = {"before": 0, "after": 0}
    for reader, books in rated_today.items():
        after = recommend(reader)
        assert after["version"] != before[reader]["version"]
        assert not set(books) & set(after["items"])  # excluded: already read
        # Reflected: the list leans toward books like the ones rated today.
        alike = similar(books) - set(books)
        leaning["before"] += len(alike & set(before[reader]["items"]))
        leaning["after"] += len(alike & set(after["items"]))
    assert leaning["after"] > leaning["before"], leaning

    # Trained on now: nothing is left for the monitor to judge.
    assert monitor_flow(emit=False)["n_ratings"] == 0
