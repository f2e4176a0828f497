"""Tasks of the train flow's backtest: the last period before the data's end, and the
recency prior it chooses for the served model."""

from __future__ import annotations

from pathlib import Path

import mlflow
import numpy as np
from prefect import get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE

from models.backtest import Backtest, run_backtest
from models.interactions import IdMap
from models.recency import RecencyPrior, recent_counts, standardised_log, with_prior
from models.recommender import FactorModel
from models.replay import ReplayError
from models.schema import BOOK_ID, TIMESTAMP, USER_ID
from models.snapshot import open_snapshot
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

    Logs ``backtest.<ranker>.ndcg_at_k`` / ``hit_rate_at_k`` and the chosen prior on the
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
    for name, value in {"backtest.period": result.period, "backtest.readers": result.readers,
                        "recency.weight": result.prior.weight,
                        "recency.window": result.prior.window,
                        "recency.keep_bias": result.prior.keep_bias}.items():
        client.log_param(run_id, name, value)
    create_table_artifact(key="backtest", table=result.rows(k), description=(
        f"The last {result.period} before the snapshot's end: {result.readers} returning "
        f"readers; recency prior chosen: weight {result.prior.weight:g}, window "
        f"{result.prior.window}"
        + ("" if result.prior.keep_bias else ", in place of the learned item bias")))
    for name in result.ndcg:
        log.info("backtest %-32s ndcg@%d %.4f  hit %.4f", name, k, result.ndcg[name],
                 result.hit[name])
    return result


@task(cache_policy=NO_CACHE)
def served_with_prior(model: FactorModel, ids: IdMap, snapshot_path: str,
                      prior: RecencyPrior | None) -> FactorModel:
    """The served model with the recency prior at the snapshot's end (unchanged without)."""
    if prior is None or not prior.active:
        return model
    get_run_logger().info("recency prior: weight %g score deviations, window %d, %s",
                          prior.weight, prior.window,
                          "beside the learned item bias" if prior.keep_bias
                          else "in place of the learned item bias")
    ratings = _ratings(snapshot_path)
    times = (ratings[TIMESTAMP].to_numpy(dtype=np.int64) if TIMESTAMP in ratings.columns
             else np.arange(len(ratings), dtype=np.int64))
    books = ids.book_index(ratings[BOOK_ID].to_numpy(dtype=np.int64))
    counts = recent_counts(books, times, int(times.max()) + 1, prior.window, ids.n_books)
    return with_prior(model, standardised_log(counts), prior.weight, keep_bias=prior.keep_bias)
