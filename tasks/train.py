"""Tasks that turn a snapshot into a trained, evaluated model and its scoring bundle."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from models.bundle import ScoringBundle
from models.evaluation import (
    evaluate_factors,
    evaluate_oracle,
    evaluate_popularity,
    validation_scorer,
)
from models.generator import TRUTH_FILE, load_truth
from models.interactions import Split, popularity, temporal_split
from models.recommender import FitResult, LightFMParams, fit_lightfm
from models.schema import BOOK_ID, USER_ID
from models.snapshot import open_snapshot


@task(cache_policy=NO_CACHE)
def load_split(snapshot_path: str) -> Split:
    """The temporal per-reader split of a snapshot's ratings over its whole catalogue."""
    snapshot = open_snapshot(Path(snapshot_path))
    ratings = snapshot.read("ratings", columns=[USER_ID, BOOK_ID])
    books = snapshot.read("books", columns=[BOOK_ID])
    split = temporal_split(ratings, book_ids=books[BOOK_ID].to_numpy())
    get_run_logger().info("split of %s: %s", snapshot.snapshot_id, split.summary())
    return split


@task(cache_policy=NO_CACHE)
def fit_model(split: Split, params: dict, k: int, num_threads: int, seed: int) -> FitResult:
    """Fit LightFM with early stopping on validation NDCG@k; logs each epoch."""
    logger = get_run_logger()
    lightfm_params = LightFMParams(**params)

    def report(epoch: int, score: float) -> None:
        logger.info("train: epoch %d/%d validation ndcg@%d = %.4f",
                    epoch + 1, lightfm_params.max_epochs, k, score)

    result = fit_lightfm(
        split.train,
        lightfm_params,
        validate=validation_scorer(split, k, seed=seed, num_threads=num_threads),
        num_threads=num_threads,
        seed=seed,
        on_epoch=report,
    )
    logger.info("best epoch %d with validation ndcg@%d = %.4f",
                result.best_epoch + 1, k, result.best_score)
    return result


@task(cache_policy=NO_CACHE)
def evaluate_on_test(
    split: Split, fit: FitResult, snapshot_path: str, k: int, num_threads: int
) -> list[dict[str, object]]:
    """Test metrics of the model beside popularity (and the planted oracle when known)."""
    rows = [{"ranker": "lightfm", **evaluate_factors(
        fit.model, split, "test", k, num_threads=num_threads).as_dict()}]
    rows.append({"ranker": "popularity", **evaluate_popularity(split, "test", k).as_dict()})
    truth_path = Path(snapshot_path) / TRUTH_FILE
    if truth_path.exists():
        truth = load_truth(truth_path.parent)
        rows.append({"ranker": "oracle",
                     **evaluate_oracle(split, "test", k, truth.scores).as_dict()})
    for row in rows:
        get_run_logger().info("test %s", {key: round(v, 4) if isinstance(v, float) else v
                                          for key, v in row.items()})
    return rows


@task(cache_policy=NO_CACHE)
def build_bundle(split: Split, fit: FitResult, snapshot_path: str) -> str:
    """Write the scoring bundle (factors, id maps, seen books, popular order) to a temp dir."""
    seen = (split.train + split.valid + split.test).tocsr()
    seen.data[:] = 1.0
    counts = popularity(seen)
    order = np.lexsort((np.arange(len(counts)), -counts))
    bundle = ScoringBundle(
        ids=split.ids,
        factors=fit.model,
        seen=seen,
        popular=split.ids.book_ids[order],
        meta={"snapshot": open_snapshot(Path(snapshot_path)).snapshot_id,
              "best_epoch": fit.best_epoch},
    )
    return str(bundle.save(Path(tempfile.mkdtemp(prefix="goodbooks-bundle-")) / "bundle"))


