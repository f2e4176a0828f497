"""Tasks of the train flow's backtest: the last period before the data's end, and the
terms it chooses for the served model (the recency prior, the genre taste side)."""

from __future__ import annotations

from pathlib import Path

import mlflow
import numpy as np
from prefect import get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE

from models.backtest import Backtest, run_backtest
from models.genres import genre_mix, taste_side
from models.interactions import IdMap, to_matrix
from models.recency import prior_values, score_spread
from models.recommender import FactorModel
from models.replay import ReplayError
from models.schema import BOOK_ID, TIMESTAMP, USER_ID, TrainingError
from models.snapshot import open_snapshot
from models.terms import ScoreTerms, with_terms
from tasks.train import Catalogue


def _ratings(snapshot_path: str):  # noqa: ANN202 - user_id, book_id[, timestamp]
    snapshot = open_snapshot(Path(snapshot_path))
    columns = [USER_ID, BOOK_ID] + ([TIMESTAMP] if TIMESTAMP in snapshot.columns("ratings")
                                    else [])
    return snapshot.read("ratings", columns=columns)


@task(cache_policy=NO_CACHE)
def backtest_configuration(
    snapshot_path: str, catalogue: Catalogue, params: dict[str, object], epochs: int,
    period: str, windows: list[str], tracking_uri: str, run_id: str, k: int,
    num_threads: int, seed: int, min_readers: int = 1,
) -> Backtest | None:
    """Fit the configuration one period before the snapshot's end and score the period.

    Logs ``backtest.<ranker>.ndcg_at_k`` / ``hit_rate_at_k`` and the chosen terms on the
    run and leaves a table artifact. None (with a warning) when the snapshot is too short
    or fewer than ``min_readers`` return in its last period or the one before.
    """
    log = get_run_logger()
    try:
        result = run_backtest(_ratings(snapshot_path), catalogue.books[BOOK_ID].to_numpy(),
                              params, epochs, period, windows, catalogue.books,
                              catalogue.book_tags, catalogue.tags, threads=num_threads,
                              seed=seed, k=k, min_readers=min_readers)
    except ReplayError as exc:
        log.warning("no backtest: %s", exc)
        return None
    slug = {name: name.replace(" + ", "_plus_").replace(" ", "_").replace("(", "")
            .replace(")", "") for name in result.ndcg}
    metrics = {f"backtest.{slug[n]}.ndcg_at_{k}": v for n, v in result.ndcg.items()}
    metrics |= {f"backtest.{slug[n]}.hit_rate_at_{k}": v for n, v in result.hit.items()}
    client = mlflow.MlflowClient(tracking_uri)
    for name, value in metrics.items():
        client.log_metric(run_id, name, value)
    terms = result.terms
    for name, value in {"backtest.period": result.period, "backtest.readers": result.readers,
                        "recency.weight": terms.prior.weight,
                        "recency.window": terms.prior.window,
                        "recency.keep_bias": terms.prior.keep_bias,
                        "recency.settling": ("plain" if terms.prior.settling is None
                                             else terms.prior.settling),
                        "taste.weight": terms.taste_weight,
                        "taste.keep_model": terms.keep_model}.items():
        client.log_param(run_id, name, value)
    create_table_artifact(key="backtest", table=result.rows(k), description=(
        f"The last {result.period} before the snapshot's end: {result.readers} returning "
        f"readers; served: {result.served}"))
    log.info("served: %s", result.served)
    for name in result.ndcg:
        log.info("backtest %-32s ndcg@%d %.4f  hit %.4f", name, k, result.ndcg[name],
                 result.hit[name])
    return result


@task(cache_policy=NO_CACHE)
def served_with_terms(model: FactorModel, ids: IdMap, snapshot_path: str, catalogue: Catalogue,
                      terms: ScoreTerms | None) -> FactorModel:
    """The served model with its terms at the snapshot's end (unchanged without): the
    recency prior of the last window, and every reader's genre taste from all their reads."""
    if terms is None or not (terms.prior.active or terms.tasted):
        return model
    get_run_logger().info("served: %s", terms.describe())
    ratings = _ratings(snapshot_path)
    books = ids.book_index(ratings[BOOK_ID].to_numpy(dtype=np.int64))
    prior = None
    if terms.prior.active:
        times = (ratings[TIMESTAMP].to_numpy(dtype=np.int64) if TIMESTAMP in ratings.columns
                 else np.arange(len(ratings), dtype=np.int64))
        prior = prior_values(books, times, int(times.max()) + 1, terms.prior.window,
                             ids.n_books, terms.prior.settling)
    side = None
    if terms.tasted:
        genres = genre_mix(ids.book_ids, catalogue.books, catalogue.book_tags, catalogue.tags)
        if genres is None:
            raise TrainingError("the backtest chose a genre taste side, and the catalogue "
                                "names no genre to learn it from")
        readers = ids.user_index(ratings[USER_ID].to_numpy(dtype=np.int64))
        side = taste_side(to_matrix(readers, books, (ids.n_users, ids.n_books)), genres)
    return with_terms(model, terms, prior, side, score_spread(model))
