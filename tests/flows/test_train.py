"""Train-flow options beyond what the nightly run uses."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import optuna
import pytest
from mlflow import MlflowClient

from flows.train import train_flow
from models.genres import GENRE_SHELVES
from models.tuning import KNOWN_GOOD, create_study
from settings import get_settings
from tasks.registry import WarmStart, champion_parameters

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


@pytest.fixture
def own_model(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The flows register a model of their own (its first version becomes champion)."""
    import uuid

    monkeypatch.setenv("GOODBOOKS_MODEL_NAME", f"own-lightfm-{uuid.uuid4().hex[:8]}")
    get_settings.cache_clear()
    yield
    monkeypatch.undo()
    get_settings.cache_clear()


@pytest.mark.usefixtures("own_model")
def test_a_new_study_starts_from_the_champions_parameters(first_run: dict) -> None:
    # The champion was tuned from planted parameters (its study was created beforehand
    # with them enqueued, and the flow resumed it): a new study runs those first, then
    # the known-good one; without the warm start, the known-good one alone.
    s = get_settings()
    snapshot = str(first_run["snapshot"])
    planted = {**KNOWN_GOOD, "no_components": 32, "use_language": False}
    create_study(s.optuna_storage, "planted", seed=0, starts=[planted])
    source = train_flow(snapshot=snapshot, n_trials=1, max_epochs=3, study_name="planted")
    assert source["alias"] == "champion" and source["study"]["started_from"] is None

    result = train_flow(snapshot=snapshot, n_trials=2, max_epochs=2, study_name="warm")
    assert result["study"]["started_from"] == source["version"]
    trials = optuna.load_study(study_name="warm", storage=s.optuna_storage).trials
    assert [t.params for t in trials[:2]] == [planted, KNOWN_GOOD]
    resumed = train_flow(snapshot=snapshot, n_trials=1, max_epochs=2, study_name="warm")
    assert resumed["study"]["started_from"] is None  # it goes on where it was
    trials = optuna.load_study(study_name="warm", storage=s.optuna_storage).trials
    assert len(trials) == 3 and trials[2].params not in (planted, KNOWN_GOOD)

    cold = train_flow(snapshot=snapshot, n_trials=1, max_epochs=2, study_name="cold",
                      warm_start=False)
    assert cold["study"]["started_from"] is None
    first = optuna.load_study(study_name="cold", storage=s.optuna_storage).trials[0]
    assert first.params == KNOWN_GOOD


def test_champion_parameters_start_a_study_only_when_they_fit_the_search_space(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # No champion: nothing. A champion from an older search space (a loss since dropped)
    # or registered without a run: nothing, and a warning says why. A champion whose
    # parameters fit: those, typed.
    s = get_settings()
    client = MlflowClient(s.tracking_uri)
    run = client.create_run(client.create_experiment(
        "champion-parameters", artifact_location=tmp_path.as_uri()))
    for name, value in {**KNOWN_GOOD, "loss": "logistic"}.items():
        client.log_param(run.info.run_id, f"best.{name}", value)
    client.create_registered_model("retired-space")
    version = client.create_model_version("retired-space", source=tmp_path.as_uri(),
                                          run_id=run.info.run_id)
    assert champion_parameters(s.tracking_uri, "retired-space") is None
    client.set_registered_model_alias("retired-space", "champion", version.version)
    assert champion_parameters(s.tracking_uri, "retired-space") is None
    assert "outside the search space: loss='logistic'" in caplog.text
    runless = client.create_model_version("retired-space", source=tmp_path.as_uri())
    client.set_registered_model_alias("retired-space", "champion", runless.version)
    assert champion_parameters(s.tracking_uri, "retired-space") is None
    assert f"champion (version {runless.version}) cannot start the study: the version " \
           "names no run" in caplog.text
    ok = client.create_run(run.info.experiment_id)
    for name, value in KNOWN_GOOD.items():
        client.log_param(ok.info.run_id, f"best.{name}", value)
    good = client.create_model_version("retired-space", source=tmp_path.as_uri(),
                                       run_id=ok.info.run_id)
    client.set_registered_model_alias("retired-space", "champion", good.version)
    assert champion_parameters(s.tracking_uri, "retired-space") == WarmStart(
        version=str(good.version), params=KNOWN_GOOD)


@pytest.mark.usefixtures("own_model")
def test_the_served_model_is_fitted_on_everything(first_run: dict, tmp_path: Path) -> None:
    import mlflow

    from models.bundle import ScoringBundle
    from models.snapshot import open_snapshot

    s = get_settings()
    result = train_flow(snapshot=str(first_run["snapshot"]), n_trials=1, max_epochs=3,
                        study_name="fit-on-everything")
    snapshot = open_snapshot(Path(str(first_run["snapshot"])))
    everything = len(snapshot.read("ratings").drop_duplicates(["user_id", "book_id"]))
    assert result["full_fit"]["interactions"] == everything
    assert result["full_fit"]["epochs"] == result["refit"]["best_epoch"] + 1

    client = MlflowClient(s.tracking_uri)
    version = client.get_model_version(s.model_name, result["version"])
    assert version.tags["fit"] == "everything"
    assert version.tags["snapshot"] == snapshot.snapshot_id
    assert version.tags["log_watermark"] == (snapshot.log_watermark or "none")
    run = client.get_run(result["run_id"]).data
    # Both fits are on the run: the one the test table measures, and the served one.
    assert "refit.valid_ndcg" in run.metrics and "full_fit.seconds" in run.metrics
    assert run.params["full_fit.epochs"] == str(result["full_fit"]["epochs"])
    local = mlflow.artifacts.download_artifacts(
        artifact_uri=f"models:/{s.model_name}/{result['version']}", dst_path=str(tmp_path))
    bundle = ScoringBundle.load(Path(local) / "artifacts" / "bundle")
    assert bundle.seen.nnz == everything and bundle.meta["fit"] == "everything"


@pytest.mark.usefixtures("own_model")
def test_when_another_configuration_wins_the_champion_is_refreshed_too(
    first_run: dict,
) -> None:
    # The champion's configuration is refitted on today's data and stays champion (the
    # readers it serves get tonight's lists); the winner goes to the A/B test.
    s = get_settings()
    snapshot = str(first_run["snapshot"])
    planted = {**KNOWN_GOOD, "no_components": 32, "use_language": False}
    create_study(s.optuna_storage, "refresh-source", seed=0, starts=[planted])
    old = train_flow(snapshot=snapshot, n_trials=1, max_epochs=3, study_name="refresh-source")
    assert old["alias"] == "champion"

    result = train_flow(snapshot=snapshot, n_trials=1, max_epochs=3, study_name="refresh",
                        warm_start=False)  # its only trial is KNOWN_GOOD: not the champion's
    refresh = result["champion_refresh"]
    assert refresh is not None and refresh["refresh_of"] == old["version"]
    client = MlflowClient(s.tracking_uri)
    aliases = {k: str(v) for k, v in client.get_registered_model(s.model_name).aliases.items()}
    assert aliases["champion"] == refresh["version"] and aliases["previous"] == old["version"]
    assert result["alias"] in ("challenger", None)
    assert aliases.get("challenger") == (result["version"] if result["alias"] else None)
    assert champion_parameters(s.tracking_uri, s.model_name) == WarmStart(
        version=refresh["version"], params=planted)
    assert client.get_model_version(s.model_name, refresh["version"]).tags["fit"] == \
        "everything"


@pytest.mark.usefixtures("own_model")
def test_the_backtest_judges_the_last_period_and_chooses_the_served_terms(
    first_run: dict, tmp_path: Path
) -> None:
    import mlflow

    from models.bundle import ScoringBundle

    s = get_settings()
    result = train_flow(snapshot=str(first_run["snapshot"]), n_trials=1, max_epochs=3,
                        study_name="backtest")
    backtest = result["backtest"]
    # Generated data has no timestamps: the last 5% of its interactions is the period.
    assert backtest["period"].endswith("rows") and backtest["readers"] > 0
    assert {"lightfm", "served model", "popularity (all time)"} <= set(backtest["ndcg"])
    run = MlflowClient(s.tracking_uri).get_run(result["run_id"]).data
    assert run.metrics["backtest.lightfm.ndcg_at_10"] == pytest.approx(
        backtest["ndcg"]["lightfm"])
    terms = backtest["terms"]
    assert float(run.params["recency.weight"]) == terms["recency_weight"]
    assert run.params["recency.keep_bias"] == str(terms["recency_keep_bias"])
    # Without timestamps there is no time out to count reads over: the plain count.
    assert terms["recency_settling"] is None and run.params["recency.settling"] == "plain"
    assert float(run.params["taste.weight"]) == terms["taste_weight"]
    assert run.params["taste.keep_model"] == str(terms["taste_keep_model"])
    local = mlflow.artifacts.download_artifacts(
        artifact_uri=f"models:/{s.model_name}/{result['version']}", dst_path=str(tmp_path))
    bundle = ScoringBundle.load(Path(local) / "artifacts" / "bundle")
    if terms["recency_weight"] > 0 or terms["taste_weight"] > 0:
        assert {k: bundle.meta[k] for k in terms} == terms
    # The taste side rides in the served factors, one column per genre of the generator,
    # after LightFM's (which similar books read alone, even with the model's readers
    # dropped).
    fitted = result["study"]["best_params"]["no_components"]
    assert bundle.meta["similar_columns"] == fitted
    width = fitted + (len(GENRE_SHELVES) if terms["taste_weight"] > 0 else 0)
    assert bundle.factors.item_factors.shape[1] == width
    assert "last period" in result["reason"]


@pytest.mark.usefixtures("own_model")
def test_too_few_returning_readers_give_no_backtest_and_no_prior(
        first_run: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    # More returning readers asked for than the generated snapshot's 6,000 could hold: the
    # run trains, registers and gates on the test table alone, with no prior in the bundle.
    monkeypatch.setenv("GOODBOOKS_BACKTEST_MIN_READERS", "100000")
    get_settings.cache_clear()
    result = train_flow(snapshot=str(first_run["snapshot"]), n_trials=1, max_epochs=2,
                        study_name="backtest-too-few")
    assert result["backtest"] is None
    assert result["alias"] == "champion" and "last period" not in result["reason"]
    run = MlflowClient(get_settings().tracking_uri).get_run(result["run_id"]).data
    assert not any(name.startswith("backtest.") for name in run.metrics)
    assert "recency.weight" not in run.params


def test_the_study_splits_by_time_test_the_last_period_validation_the_one_before(
        first_run: dict) -> None:
    # The generated snapshot has no timestamps: a period is its last 5% of rows. Test is
    # the last period, validation the one before, training every row before that.
    from prefect.logging import disable_run_logger

    from models.interactions import everything
    from models.snapshot import open_snapshot
    from tasks.train import load_split

    snapshot = str(first_run["snapshot"])
    rows = len(open_snapshot(Path(snapshot)).read("ratings", columns=["user_id"]))
    span = int(rows * 0.05)
    with disable_run_logger():
        by_time = load_split.fn(snapshot, ["rating"], "time", "7d")
        by_reader = load_split.fn(snapshot, ["rating"], "reader", "7d")
    assert by_time.test.nnz == span and by_time.valid.nnz == span
    assert by_time.train.nnz == rows - 2 * span == everything(by_time).nnz - 2 * span
    assert everything(by_reader).nnz == rows
    # Per reader, every reader keeps training history; by time, readers new in the last
    # two periods have none.
    assert (by_reader.train.getnnz(axis=1) > 0).all()


def test_the_served_taste_side_is_every_reader_s_taste_from_all_their_reads(
        first_run: dict) -> None:
    # The terms a backtest may choose, applied at the snapshot's end: the taste side in
    # place of the fitted model ranks by the prior and each reader's genre taste alone.
    from prefect.logging import disable_run_logger

    from models.genres import genre_mix, taste_side
    from models.interactions import to_matrix
    from models.recency import RecencyPrior, prior_values, score_spread
    from models.recommender import FactorModel
    from models.snapshot import open_snapshot
    from models.terms import ScoreTerms
    from tasks.backtest import served_with_terms
    from tasks.train import load_catalogue, load_split

    snapshot = str(first_run["snapshot"])
    with disable_run_logger():
        split = load_split.fn(snapshot, ["rating"], "time", "7d")
        catalogue = load_catalogue.fn(snapshot)
        ids = split.ids
        rng = np.random.default_rng(0)
        model = FactorModel(
            user_factors=rng.normal(size=(ids.n_users, 4)).astype(np.float32),
            user_bias=np.zeros(ids.n_users, np.float32),
            item_factors=rng.normal(size=(ids.n_books, 4)).astype(np.float32),
            item_bias=rng.normal(size=ids.n_books).astype(np.float32))
        terms = ScoreTerms(RecencyPrior(2.0, 1000, settling=50), taste_weight=1.0,
                           keep_model=False)
        served = served_with_terms.fn(model, ids, snapshot, catalogue, terms)
        unchanged = served_with_terms.fn(model, ids, snapshot, catalogue, ScoreTerms())
    assert unchanged is model
    # By hand: every rating of the snapshot; the generator's 20 genre shelves.
    ratings = open_snapshot(Path(snapshot)).read("ratings", columns=["user_id", "book_id"])
    readers = ids.user_index(ratings["user_id"].to_numpy())
    books = ids.book_index(ratings["book_id"].to_numpy())
    genres = genre_mix(ids.book_ids, catalogue.books, catalogue.book_tags, catalogue.tags)
    assert genres is not None and len(genres.names) == len(GENRE_SHELVES)
    side = taste_side(to_matrix(readers, books, (ids.n_users, ids.n_books)), genres)
    # Without timestamps the window counts the last 1000 rows, each book's over the rows
    # since its first read (settling 50 rows), as the terms say.
    order = np.arange(len(ratings))
    prior = prior_values(books, order, len(ratings), 1000, ids.n_books, settling=50)
    # LightFM's book factors stay (similar books read them); its readers' are zero.
    assert served.item_factors.shape == (ids.n_books, 4 + len(GENRE_SHELVES))
    assert not served.user_factors[:, :4].any()
    unit = score_spread(model)
    rows = np.arange(50)
    expected = (2.0 * unit * prior[None, :]
                + unit / side.spread * side.tastes[rows] @ side.mix.T)
    np.testing.assert_allclose(served.scores(rows), expected, rtol=1e-4, atol=1e-4)
