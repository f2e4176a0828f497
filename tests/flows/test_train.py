"""Train-flow options beyond what the nightly run uses."""

from __future__ import annotations

import pytest

from flows.train import train_flow

pytestmark = pytest.mark.usefixtures("prefect_harness")


def test_refit_time_limit_ends_the_refit_after_one_epoch(first_run: dict) -> None:
    # A zero limit: the refit stops after its first epoch, which is the one it keeps; the
    # run still evaluates, registers and reports it.
    result = train_flow(snapshot=str(first_run["snapshot"]), n_trials=1, max_epochs=4,
                        sample_fraction=0.5, refit_timeout_s=0, study_name="refit-time-limit")
    assert result["refit"]["epochs"] == 1 and result["refit"]["best_epoch"] == 0
    assert result["refit"]["kept_from_trial"] is None  # the study tuned on a sample
    assert result["study"]["trials"] == 1
    assert {row["ranker"] for row in result["metrics"]} >= {"lightfm", "popularity"}


def test_tuning_on_every_reader_keeps_the_best_trials_fit(first_run: dict) -> None:
    # No sample, so the best trial already fitted every reader: its fit is the model (no
    # refit ran: the flow names the trial it kept) with the study's best value.
    result = train_flow(snapshot=str(first_run["snapshot"]), n_trials=2, max_epochs=3,
                        sample_fraction=1.0, study_name="keep-best-fit")
    assert result["refit"]["kept_from_trial"] == result["study"]["best_trial"]
    assert result["refit"]["valid_ndcg"] == result["study"]["best_value"]
