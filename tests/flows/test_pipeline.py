"""The whole pipeline on generated data, and bad input that must publish nothing."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

import serving
from flows.nightly import nightly_flow
from models.schema import DatasetError, DataValidationError
from models.snapshot import open_snapshot
from settings import get_settings

pytestmark = pytest.mark.usefixtures("prefect_harness")


def test_pipeline_publishes_and_serves(
    first_run: dict, fresh_serving: None, live_store: serving.RecStore
) -> None:
    trained = first_run["trained"]
    rankers = {row["ranker"]: row for row in trained["metrics"]}
    assert set(rankers) == {"lightfm", "popularity", "als", "oracle"}
    # On planted data the oracle is the ceiling and beats popularity.
    assert rankers["oracle"]["ndcg_at_10"] > rankers["popularity"]["ndcg_at_10"]
    assert trained["alias"] == "champion"

    published = first_run["published"]
    assert [p["alias"] for p in published] == ["champion"]
    # Other flow tests may have re-published or promoted since (and retention may have
    # pruned this version): serve what is live now, and it is complete.
    version = live_store.get_alias("champion")
    assert live_store.get_manifest(version) is not None

    snapshot = Path(first_run["snapshot"])
    ratings = open_snapshot(snapshot).read("ratings")
    reader = int(ratings["user_id"].iloc[0])
    result = serving.recommend(reader, 10)
    assert result.source == "personalised"
    assert result.version == version
    assert len(result.items) == 10
    # Nothing the reader has already rated is recommended.
    assert not set(result.items) & set(ratings.loc[ratings.user_id == reader, "book_id"])

    unknown = serving.recommend(10_000_000, 5)
    assert unknown.source == "popular-fallback"
    assert len(unknown.items) == 5


def corrupt(source: Path, target: Path, how: str) -> str:
    """Copy a dataset and break ratings.csv one way; returns the expected message part."""
    shutil.copytree(source, target)
    ratings = pd.read_csv(target / "ratings.csv")
    if how == "missing column":
        ratings = ratings.drop(columns=["rating"])
        expected = "['rating']"
    elif how == "non-numeric rating":
        ratings["rating"] = ratings["rating"].astype(object)
        ratings.loc[5, "rating"] = "five"
        expected = "ratings.csv: column_types"
    else:
        ratings.loc[7, "book_id"] = 999_999
        expected = "ratings.csv: book_id_in_books"
    ratings.to_csv(target / "ratings.csv", index=False)
    return expected


@pytest.mark.parametrize("how", ["missing column", "non-numeric rating", "unknown book id"])
def test_bad_ratings_stop_the_run_and_keep_serving(
    first_run: dict, tmp_path: Path, how: str, fresh_serving: None, generated_dataset: Path
) -> None:
    settings = get_settings()
    store = serving.RecStore(
        serving.connect_redis(settings.redis_url, settings.redis_db_path), settings.redis_prefix
    )
    before = store.aliases()
    snapshots_before = sorted(p.name for p in settings.processed_dir.iterdir())
    expected = corrupt(generated_dataset, tmp_path / "bad", how)

    with pytest.raises((DataValidationError, DatasetError)) as failure:
        nightly_flow(source="local", local_dir=str(tmp_path / "bad"))
    message = str(failure.value)
    assert "ratings.csv" in message and expected in message
    if how != "missing column":
        assert "line " in message  # example rows are shown

    assert store.aliases() == before
    assert sorted(p.name for p in settings.processed_dir.iterdir()) == snapshots_before
    assert serving.recommend(1, 3).version == before["champion"]
