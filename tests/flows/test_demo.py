"""The demo's A/B experiment and drift check run on the pipeline's own results."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from mlflow import MlflowClient

import demo
import serving
from models.snapshot import open_snapshot
from settings import get_settings

pytestmark = pytest.mark.usefixtures("prefect_harness")


def table_rows(text: str, names: tuple[str, ...]) -> dict[str, list[str]]:
    """The printed table's rows whose first cell is one of names."""
    rows = {}
    for line in text.splitlines():
        cells = line.split()
        if cells and cells[0] in names:
            rows[cells[0]] = cells[1:]
    return rows


def test_demo_experiment_serves_every_reader_and_shows_a_verdict(
    first_run: dict[str, object], live_store: serving.RecStore
) -> None:
    settings = get_settings()
    out = demo.run_demo_experiment(settings, Path(str(first_run["snapshot"])))

    rows = table_rows(out, ("control", "treatment"))
    assert set(rows) == {"control", "treatment"}
    exposures = {name: int(cells[0].replace(",", "")) for name, cells in rows.items()}
    conversions = {name: int(cells[1].replace(",", "")) for name, cells in rows.items()}
    # Every reader of the snapshot visited as often as the demo says and was shown the same
    # ten books each time: an exposure is a (reader, book) pair, however many visits.
    readers = open_snapshot(Path(str(first_run["snapshot"]))).read(
        "ratings", columns=["user_id"])["user_id"].nunique()
    visits = int(re.search(r"(\d+) visit\(s\) each", out).group(1))  # type: ignore[union-attr]
    assert visits == -(-demo.DEMO_MIN_VISITS // readers)
    assert sum(exposures.values()) == readers * 10
    assert sum(int(cells[3].replace(",", "")) for cells in rows.values()) == readers
    # The planted lift favours the challenger's readers: its observed rate is higher.
    rate = {name: conversions[name] / exposures[name] for name in rows}
    assert rate["treatment"] > rate["control"]
    effect = float(re.search(r"effect ([+-]\d\.\d+)", out).group(1))  # type: ignore[union-attr]
    assert effect == pytest.approx(rate["treatment"] - rate["control"], abs=1e-4)

    verdict = re.search(r"verdict: (\w+)", out).group(1)  # type: ignore[union-attr]
    assert verdict in ("promote", "continue")  # never judged worse than the champion
    aliases = MlflowClient(settings.tracking_uri).get_registered_model(
        settings.model_name).aliases
    if verdict == "promote":
        assert "challenger" not in aliases and "previous" in aliases
        assert "champion is now model version" in out
    else:
        assert "challenger" in aliases
    assert Path(out.rsplit("running estimate: ", 1)[1].strip()).is_file()


def test_demo_drift_check_flags_the_planted_rating_inflation(
    first_run: dict[str, object],
) -> None:
    out = demo.run_demo_drift_check(get_settings(), Path(str(first_run["snapshot"])))

    rows = table_rows(out, ("rating_mix_psi", "unseen_readers_share", "unseen_books_share"))
    value, threshold, status = rows["rating_mix_psi"]
    assert status == "drift" and float(value) > float(threshold)
    # Rating inflation brings no new readers or books.
    assert rows["unseen_readers_share"][0] == rows["unseen_books_share"][0] == "0"
    assert "verdict: drift in 5000 new ratings" in out
    assert "emitted goodbooks.drift.detected" in out
    assert Path(out.rsplit("plot: ", 1)[1].strip()).is_file()


def test_demo_next_night_learns_from_the_readers_day(first_run: dict[str, object]) -> None:
    settings = get_settings()
    out = demo.run_demo_next_night(settings, Path(str(first_run["snapshot"])),
                                  {"n_trials": 1, "max_epochs": 4})

    assert "rated 5 of their recommendations" in out
    assert "the 5 books they rated are gone from the list" in out
    drained = int(re.search(r"drain: +([\d,]+) events", out).group(1).replace(",", ""))  # type: ignore[union-attr]
    assert drained >= 5
    assert re.search(r"ingest: snapshot snap-\w+ = snap-\w+ \+ .*[\d,]+ ratings from log", out)
    assert "fitted on all" in out
