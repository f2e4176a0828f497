"""The train flow on generated data that moves: split by time, backtest, recency prior."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from flows.ingest import ingest_flow
from flows.train import train_flow
from models.snapshot import open_snapshot
from settings import get_settings

pytestmark = pytest.mark.usefixtures("prefect_harness")


@pytest.fixture
def moving_env(project_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
               ) -> Iterator[None]:
    """Data of this test's own that moves, a quarter as the period, a model of its own."""
    monkeypatch.setenv("GOODBOOKS_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("GOODBOOKS_DEMO_USERS", "400")
    monkeypatch.setenv("GOODBOOKS_DEMO_BOOKS", "400")
    monkeypatch.setenv("GOODBOOKS_GENERATED_MOVING", "true")
    monkeypatch.setenv("GOODBOOKS_BACKTEST_PERIOD", "91d")
    monkeypatch.setenv("GOODBOOKS_BACKTEST_WINDOWS", "28d,91d,365d")
    monkeypatch.setenv("GOODBOOKS_MODEL_NAME", f"moving-{uuid.uuid4().hex[:8]}")
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.mark.usefixtures("moving_env")
def test_on_data_that_moves_the_study_stops_on_the_quarter_before_the_last() -> None:
    snapshot = ingest_flow(source="generate")
    stamps = open_snapshot(Path(snapshot)).read("ratings")["timestamp"].to_numpy()
    end, quarter = int(stamps.max()) + 1, 91 * 86_400
    result = train_flow(snapshot=snapshot, n_trials=1, max_epochs=3)
    split = result["split"]
    assert split["by"] == "time"
    # Test holds the ratings of the last quarter, validation those of the one before.
    assert split["test"] == int((stamps >= end - quarter).sum())
    assert split["valid"] == int(((stamps >= end - 2 * quarter) & (stamps < end - quarter)).sum())
    backtest = result["backtest"]
    assert backtest["period"] == "91d" and backtest["readers"] > 0
    assert {"lightfm", "served model", "popularity (all time)"} <= set(backtest["ndcg"])
    assert result["alias"] == "champion"  # the first model of its name


@pytest.mark.usefixtures("moving_env")
def test_after_a_gap_in_time_the_study_splits_per_reader_and_says_so() -> None:
    # Ratings from today after a log that ended in 2017 (an app's events after an old
    # export): the quarter before the last is empty, so there is nothing to stop on by
    # time; the study splits per reader instead, and the run goes on.
    import time

    import pandas as pd

    first = ingest_flow(source="generate")
    old = open_snapshot(Path(first)).read("ratings")
    readers = old["user_id"].drop_duplicates().head(50).to_numpy()
    read = set(zip(old["user_id"], old["book_id"], strict=True))
    rows = [(int(u), b, 5, int(time.time()) - 3600) for u in readers
            for b in range(1, 400) if (u, b) not in read][:200]
    inbox = get_settings().inbox_path
    inbox.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows, columns=["user_id", "book_id", "rating", "timestamp"]).to_csv(
        inbox / "today.csv", index=False)
    grown = ingest_flow(source="generate")
    assert len(open_snapshot(Path(grown)).read("ratings")) == len(old) + 200
    result = train_flow(snapshot=grown, n_trials=1, max_epochs=2)
    assert result["split"]["by"] == "reader"
    assert result["version"]
