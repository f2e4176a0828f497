"""Incremental ingest on the real Prefect harness: inbox items, log events, bad input."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

import serving
from flows.ingest import ingest_flow
from models.event_log import InteractionLog
from models.generator import generate_continuation
from models.snapshot import HEAD, list_snapshots, open_snapshot
from serving.events import Event, EventWriter
from settings import get_settings
from tasks.events import drain_stream

pytestmark = pytest.mark.usefixtures("prefect_harness")


@pytest.fixture
def data_dir(project_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
             ) -> Iterator[Path]:
    """A data directory of the test's own (generated data, snapshots, inbox, log)."""
    monkeypatch.setenv("GOODBOOKS_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("GOODBOOKS_DEMO_USERS", "300")
    monkeypatch.setenv("GOODBOOKS_DEMO_BOOKS", "400")
    get_settings.cache_clear()
    yield tmp_path / "data"
    get_settings.cache_clear()


@pytest.fixture
def store(data_dir: Path) -> Iterator[serving.RecStore]:
    """The flows' store under a prefix of this test (its events only)."""
    import uuid

    s = get_settings()
    store = serving.RecStore(serving.connect_redis(s.redis_url, s.redis_db_path),
                             f"{s.redis_prefix}ingest-{uuid.uuid4().hex[:6]}:")
    yield store
    keys = list(store.client.scan_iter(match=f"{store.prefix}*"))
    if keys:
        store.client.unlink(*keys)


def generated_dir(snapshot_path: str) -> Path:
    return Path(str(open_snapshot(Path(snapshot_path)).manifest["source"]["directory"]))


def ratings_of(snapshot_path: str) -> pd.DataFrame:
    return open_snapshot(Path(snapshot_path)).read("ratings")


def post(store: serving.RecStore, *events: tuple[str, int, int, int | None]) -> list[str]:
    return EventWriter(store).write([
        Event(type=kind, user_id=user, book_id=book, variant="control", version="v1",
              rating=stars) for kind, user, book, stars in events]).ids


def test_inbox_items_are_judged_one_by_one_and_archived(data_dir: Path) -> None:
    first = ingest_flow(source="generate")
    s = get_settings()
    inbox = s.inbox_path
    generate_continuation(generated_dir(first), inbox / "a-continuation", "none", 0.0, 300, 1)
    (inbox / "b-bad.csv").write_text("user_id,book_id,rating\n1,5,5\n2,6,five\n3,7,4\n")
    (inbox / "c-not-ratings.csv").write_text("reader,title\n1,Dune\n")
    (inbox / "c2-garbage.csv").write_bytes(bytes(range(256)) * 8)
    pd.DataFrame({"user_id": [1, 2], "book_id": [390, 391], "rating": [5, 3]}).to_csv(
        inbox / "d-export.csv", index=False)
    before = len(ratings_of(first))

    second = ingest_flow(source="generate")

    assert second != first
    snapshot = open_snapshot(Path(second))
    assert snapshot.manifest["parent"] == Path(first).name
    taken = ratings_of(second)
    # a and d went in (in name order, after the parent's rows); b and c were refused.
    continuation = pd.read_csv(s.inbox_path / "archive" / snapshot.base / "a-continuation" /
                               "ratings.csv")
    added = taken.iloc[before:].reset_index(drop=True)
    assert len(added) >= len(continuation) - 5  # a continuation may repeat a rated pair
    assert added.tail(2)[["user_id", "book_id"]].values.tolist() == [[1, 390], [2, 391]]
    assert sorted(v["name"] for v in snapshot.ingested_files.values()) == [
        "a-continuation", "d-export.csv"]
    rejected = inbox / "rejected"
    report_b = (rejected / "b-bad.csv.report.md").read_text()
    assert "column_types" in report_b and "line 3" in report_b and "five" in report_b
    report_c = (rejected / "c-not-ratings.csv.report.md").read_text()
    assert "user_id" in report_c and "book_id" in report_c
    assert "cannot be read as CSV" in (rejected / "c2-garbage.csv.report.md").read_text()
    assert sorted(p.name for p in inbox.iterdir()) == ["archive", "rejected"]

    # Nothing new: the same snapshot id, and no copy written.
    listed = sorted(p.name for p in s.processed_dir.iterdir())
    assert ingest_flow(source="generate") == second
    assert sorted(p.name for p in s.processed_dir.iterdir()) == listed


def test_log_events_go_in_once_with_unknown_ids_handled(
    data_dir: Path, store: serving.RecStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GOODBOOKS_REDIS_PREFIX", store.prefix)
    get_settings.cache_clear()
    first = ingest_flow(source="generate")
    s = get_settings()
    log = InteractionLog(s.event_log_path)
    post(store, ("impression", 1, 399, None), ("rating", 1, 399, 5),
         ("add_to_shelf", 2, 398, None), ("click", 2, 397, None),
         ("rating", 5000, 10, 4),         # a new reader: welcome
         ("rating", 3, 9999, 2))          # a book the catalogue lacks: held
    drain_stream(store.client, store.events_key, log)

    second = open_snapshot(Path(ingest_flow(source="generate")))
    assert second.log_watermark == str(log.high_water_mark())
    new = second.read("ratings").iloc[len(ratings_of(first)):]
    assert new[["user_id", "book_id", "rating"]].values.tolist() == [[1, 399, 5],
                                                                      [5000, 10, 4]]
    assert second.read("interactions")[["user_id", "book_id", "type"]].values.tolist() == [
        [2, 398, "add_to_shelf"], [2, 397, "click"]]
    assert second.read("held")[["user_id", "book_id"]].values.tolist() == [[3, 9999]]
    counts = second.manifest["increment"]["counts"]
    assert counts["held (unknown book)"] == 1 and second.manifest["increment"]["new_readers"] == 1

    # Only what came after the watermark goes into the next one.
    post(store, ("rating", 4, 396, 3))
    drain_stream(store.client, store.events_key, log)
    third = open_snapshot(Path(ingest_flow(source="generate")))
    assert third.read("ratings").iloc[-1:].values.tolist() == [[4, 396, 3]]
    assert len(third.read("ratings")) == len(second.read("ratings")) + 1


def test_a_log_file_cut_short_waits_and_the_next_drain_recovers_it(
    data_dir: Path, store: serving.RecStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GOODBOOKS_REDIS_PREFIX", store.prefix)
    get_settings.cache_clear()
    first = ingest_flow(source="generate")
    log = InteractionLog(get_settings().event_log_path)

    def drain():  # noqa: ANN202 - as the nightly does: the last hour stays in the stream
        return drain_stream(store.client, store.events_key, log,
                            keep_s=get_settings().events_keep_s)

    post(store, ("rating", 1, 390, 4))
    drain()
    post(store, ("rating", 2, 391, 5), ("rating", 3, 392, 1))
    drain()
    good, cut = log.files()
    cut.path.write_bytes(cut.path.read_bytes()[:30])  # a crash cut the partition short

    waiting = open_snapshot(Path(ingest_flow(source="generate")))
    assert waiting.log_watermark == str(good.last)  # took what lies before it, no further
    assert waiting.read("ratings").iloc[-1].tolist() == [1, 390, 4]

    result = drain()  # the nightly's first step
    assert len(result.damaged) == 1 and result.lost == []
    recovered = ingest_flow(source="generate")
    added = ratings_of(recovered).iloc[len(ratings_of(first)):]
    assert added.values.tolist() == [[1, 390, 4], [2, 391, 5], [3, 392, 1]]


def test_a_snapshot_removed_by_hand_is_rebuilt_from_what_was_kept(data_dir: Path) -> None:
    first = ingest_flow(source="generate")
    s = get_settings()
    s.inbox_path.mkdir(parents=True)
    pd.DataFrame({"user_id": [1, 2], "book_id": [390, 391], "rating": [5, 3]}).to_csv(
        s.inbox_path / "export.csv", index=False)
    second = ingest_flow(source="generate")
    shutil.rmtree(second)
    assert (s.processed_dir / HEAD).read_text().strip() == Path(second).name

    rebuilt = ingest_flow(source="generate")
    # The archived file went in again: the same inputs, so the same snapshot id.
    assert rebuilt == second
    assert ratings_of(rebuilt).iloc[-2:].values.tolist() == [[1, 390, 5], [2, 391, 3]]
    assert Path(first).exists()


def test_retention_never_prunes_a_snapshot_a_registered_version_names(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GOODBOOKS_SNAPSHOT_RETENTION", "1")
    get_settings.cache_clear()
    s = get_settings()
    made = [ingest_flow(source="generate")]
    client = MlflowClient(s.tracking_uri)
    name = "retention-test"
    client.create_registered_model(name)
    version = client.create_model_version(name, source=(data_dir / "m").as_uri())
    client.set_model_version_tag(name, version.version, "snapshot", Path(made[0]).name)
    monkeypatch.setenv("GOODBOOKS_MODEL_NAME", name)
    get_settings.cache_clear()
    for step in range(3):
        s.inbox_path.mkdir(parents=True, exist_ok=True)
        pd.DataFrame({"user_id": [1], "book_id": [380 + step], "rating": [4]}).to_csv(
            s.inbox_path / f"step-{step}.csv", index=False)
        made.append(ingest_flow(source="generate"))
    left = [snapshot.path.name for snapshot in list_snapshots(s.processed_dir)]
    assert left == [Path(made[0]).name, Path(made[-1]).name]


def test_a_source_in_another_layout_loads_without_conversion(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """MovieLens names, half stars, sparse ids and timestamps out of file order."""
    rng = np.random.default_rng(3)
    movies = np.array([7, 19, 2_571, 193_609, *range(100, 146)])
    users = np.repeat(np.arange(1, 61), 12)
    picks = np.concatenate([rng.choice(movies, 12, replace=False) for _ in range(60)])
    halves = rng.choice(np.arange(1, 11) / 2, len(users),
                        p=[.01, .02, .03, .05, .09, .18, .2, .2, .12, .1])
    stamps = 1_500_000_000 + rng.permutation(len(users)) * 60
    source = tmp_path / "ml"
    source.mkdir()
    pd.DataFrame({"userId": users, "movieId": picks, "rating": halves,
                  "timestamp": stamps}).to_csv(source / "ratings.csv", index=False)
    pd.DataFrame({"movieId": movies, "title": [f"Movie {m}" for m in movies],
                  "genres": "Drama"}).to_csv(source / "movies.csv", index=False)
    monkeypatch.setenv("GOODBOOKS_LOCAL_COLUMNS", "userId=user_id,movieId=book_id")
    monkeypatch.setenv("GOODBOOKS_LOCAL_BOOKS_FILE", "movies.csv")
    monkeypatch.setenv("GOODBOOKS_LOCAL_HALF_STARS", "true")
    get_settings.cache_clear()

    first = ingest_flow(source="local", local_dir=str(source))
    ratings = ratings_of(first)
    assert ratings.columns.tolist() == ["user_id", "book_id", "rating", "timestamp"]
    assert ratings["timestamp"].tolist() == sorted(stamps.tolist())  # time order
    assert sorted(ratings["rating"].unique().tolist()) == [1, 2, 3, 4, 5]
    assert int(ratings["book_id"].max()) == 193_609
    snap = open_snapshot(Path(first))
    assert snap.manifest["source"]["layout"].startswith("columns[movieId=book_id,userId=user_id]")

    # A day's export without times joins the lineage at its latest time.
    s = get_settings()
    s.inbox_path.mkdir(parents=True)
    pd.DataFrame({"user_id": [61], "book_id": [193_609], "rating": [5]}).to_csv(
        s.inbox_path / "day.csv", index=False)
    second = ingest_flow(source="local", local_dir=str(source))
    assert ratings_of(second).iloc[-1].tolist() == [61, 193_609, 5, int(stamps.max())]


def test_generated_data_that_moves_is_ingested_with_its_time_and_continued_after_it(
        data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GOODBOOKS_GENERATED_MOVING", "true")
    get_settings.cache_clear()
    first = ingest_flow(source="generate")
    assert generated_dir(first).name.endswith("-moving")
    ratings = ratings_of(first)
    assert ratings.columns.tolist() == ["user_id", "book_id", "rating", "timestamp"]
    stamps = ratings["timestamp"].to_numpy()
    assert (stamps[1:] >= stamps[:-1]).all() and stamps.min() > 1_200_000_000
    # A continuation of it lands after the data's end (an increment stamps it).
    generate_continuation(generated_dir(first), get_settings().inbox_path / "more", "none",
                          0.0, 200, 1)
    after = ratings_of(ingest_flow(source="generate"))
    assert len(after) == len(ratings) + 200
    assert (after["timestamp"].to_numpy()[-200:] >= stamps.max()).all()
