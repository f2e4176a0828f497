"""The served fit on everything against the train-only fit, judged on what readers do next.

    .venv/bin/python benchmarks/full_fit.py [--seeds 3] [--users 6000] [--ml DIR]
        [--period-days 28] [--cutoffs 12]

Same parameters for both fits (the project's known-good start: WARP, 64 components; with
author and language features on goodbooks data, identity features on the ratings log).
For each cut-off in time:

1. history = every interaction before it; the project's per-reader split of the history
   (last 20% test, 10% before validation, rest train);
2. **train-only**: fitted on the train part, stopped on validation (what was served
   before);
3. **everything**: the same parameters fitted on all of the history for the epoch count
   the train-only fit chose (what is served now); **everything ×1/0.7**: the same with the
   epoch count scaled by the growth of the data (the question of epoch scaling);
4. each fit publishes a top-10 for every returning reader (their whole history excluded)
   and is scored on what they read in the next period: NDCG@10 and hit rate@10.

Data: generated goodbooks (the next period is a continuation of the planted process, 5
new ratings per reader) and, when present, the real, time-stamped ratings log
``../shared/data/ml-latest-small`` (rolling cut-offs, one per period at the end of the
log, reader-periods pooled). Prints each figure per seed, the medians and the ratio
everything / train-only; writes benchmarks/results/full_fit-<only>.json (full_fit-all.json by
default).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from models.features import build_item_features  # noqa: E402
from models.generator import generate_continuation, generate_goodbooks  # noqa: E402
from models.interactions import IdMap, everything, temporal_split, to_matrix  # noqa: E402
from models.metrics import hit_matrix  # noqa: E402
from models.ranking import top_k_factors, with_bias  # noqa: E402
from models.recommender import FactorModel  # noqa: E402
from models.tuning import KNOWN_GOOD, candidate_from_params, fit_candidate, fit_everything  # noqa: E402

K = 10
THREADS = 2
ML_DEFAULT = REPO.parent / "shared" / "data" / "ml-latest-small"
GROWTH = 1 / 0.7  # everything / train part of a per-reader split


@dataclass
class Period:
    """One cut-off: the history before it and what returning readers did after it."""

    history: pd.DataFrame  # user_id, book_id in time order
    following: pd.DataFrame  # user_id, book_id
    book_ids: np.ndarray
    books: pd.DataFrame | None = None  # metadata for item features (goodbooks only)


def per_reader_scores(model: FactorModel, ids: IdMap, seen: sp.csr_matrix,
                      following: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """NDCG@K and hit@K of each returning reader's top-K on what they read next."""
    users = following["user_id"].to_numpy(dtype=np.int64)
    books = following["book_id"].to_numpy(dtype=np.int64)
    known = np.isin(users, ids.user_ids) & np.isin(books, ids.book_ids)
    rows, cols = ids.user_index(users[known]), ids.book_index(books[known])
    relevant = to_matrix(rows, cols, (ids.n_users, ids.n_books))
    relevant = relevant - relevant.multiply(seen)  # only what is new to them
    relevant.eliminate_zeros()
    readers = np.flatnonzero(np.diff(relevant.indptr) > 0)
    query, items = with_bias(model.user_factors[readers], model.item_factors, model.item_bias)
    top, _ = top_k_factors(query, items, K, seen[readers], num_threads=THREADS)
    hits = hit_matrix(top, relevant[readers]).astype(np.float64)
    discounts = 1.0 / np.log2(np.arange(2, K + 2))
    n_rel = np.minimum(np.diff(relevant[readers].indptr), K)
    ideal = np.cumsum(discounts)[n_rel - 1]
    return (hits @ discounts) / ideal, hits.any(axis=1).astype(np.float64)


def fits(period: Period, params: dict[str, object], seed: int, max_epochs: int
         ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Both fits (and the scaled one) of one period, scored per reader."""
    split = temporal_split(period.history, book_ids=period.book_ids)
    candidate = candidate_from_params(params, max_epochs, patience=3)

    def features_for(config):  # noqa: ANN001, ANN202
        if period.books is None:
            return None
        return build_item_features(split.ids, period.books, None, None, config)

    trained = fit_candidate(split, candidate, features_for, K, THREADS, seed)
    seen = everything(split)
    out = {"train-only": per_reader_scores(trained.model, split.ids, seen, period.following)}
    epochs = trained.best_epoch + 1
    for name, count in (("everything", epochs),
                        ("everything x1/0.7", max(1, round(epochs * GROWTH)))):
        model = fit_everything(split, candidate, features_for, count, THREADS, seed)
        out[name] = per_reader_scores(model, split.ids, seen, period.following)
    out["_epochs"] = (np.array([epochs]), np.array([0.0]))
    return out


def generated_periods(users: int, seed: int) -> list[Period]:
    """One generated dataset and its continuation (5 new ratings per reader on average)."""
    root = REPO / "data" / "bench" / f"full-fit-u{users}-s{seed}"
    if not (root / "base" / "ratings.csv").exists():
        generate_goodbooks(root / "base", n_users=users, n_books=10_000, seed=seed)
    if not (root / "next" / "ratings.csv").exists():
        generate_continuation(root / "base", root / "next", "none", 0.0, 5 * users, seed=seed)
    base = pd.read_csv(root / "base" / "ratings.csv", engine="pyarrow")
    books = pd.read_csv(root / "base" / "books.csv", engine="pyarrow")
    following = pd.read_csv(root / "next" / "ratings.csv", engine="pyarrow")
    return [Period(history=base[["user_id", "book_id"]], following=following,
                   book_ids=books["book_id"].to_numpy(), books=books)]


def ml_periods(directory: Path, period_days: int, cutoffs: int) -> list[Period]:
    """Rolling cut-offs over the last ``cutoffs`` periods of a time-stamped ratings log."""
    log = pd.read_csv(directory / "ratings.csv").sort_values("timestamp", kind="stable")
    log = log.rename(columns={"userId": "user_id", "movieId": "book_id"})
    end = int(log["timestamp"].max()) + 1
    period = period_days * 86_400
    periods = []
    for i in range(cutoffs, 0, -1):
        start = end - i * period
        history = log[log["timestamp"] < start]
        following = log[(log["timestamp"] >= start) & (log["timestamp"] < start + period)]
        following = following[following["user_id"].isin(history["user_id"])]
        if len(following) == 0:
            continue
        periods.append(Period(history=history[["user_id", "book_id"]].reset_index(drop=True),
                              following=following[["user_id", "book_id"]],
                              book_ids=np.unique(history["book_id"].to_numpy())))
    return periods


def summarise(name: str, runs: list[dict[str, tuple[np.ndarray, np.ndarray]]]) -> dict:
    """Pool reader-periods per seed; medians over seeds and the ratio to train-only."""
    per_seed: dict[str, list[dict[str, float]]] = {}
    for run in runs:
        base_ndcg = run["train-only"][0]
        for fit_name, (ndcg, hit) in run.items():
            if fit_name.startswith("_"):
                continue
            # Paired over the same reader-periods: the difference and its standard error.
            delta = ndcg - base_ndcg
            per_seed.setdefault(fit_name, []).append({
                "ndcg": float(ndcg.mean()), "hit": float(hit.mean()),
                "ndcg_se": float(ndcg.std(ddof=1) / np.sqrt(len(ndcg))),
                "delta": float(delta.mean()),
                "delta_se": float(delta.std(ddof=1) / np.sqrt(len(delta))),
                "readers": int(len(ndcg))})
    result = {"data": name, "fits": {}}
    base = statistics.median(s["ndcg"] for s in per_seed["train-only"])
    base_hit = statistics.median(s["hit"] for s in per_seed["train-only"])
    print(f"\n{name}: {per_seed['train-only'][0]['readers']:,} reader-periods per seed")
    print(f"  {'fit':<20} {'NDCG@10 per seed':<30} {'median':>8} {'x train':>8} "
          f"{'hit@10':>8} {'x train':>8}  paired NDCG difference per seed (± se)")
    for fit_name, seeds in per_seed.items():
        ndcg = statistics.median(s["ndcg"] for s in seeds)
        hit = statistics.median(s["hit"] for s in seeds)
        result["fits"][fit_name] = {"seeds": seeds, "ndcg": ndcg, "hit": hit,
                                    "ndcg_ratio": ndcg / base, "hit_ratio": hit / base_hit}
        listed = ", ".join(f"{s['ndcg']:.4f}" for s in seeds)
        deltas = ", ".join(f"{s['delta']:+.4f} ± {s['delta_se']:.4f}" for s in seeds)
        print(f"  {fit_name:<20} {listed:<30} {ndcg:>8.4f} {ndcg / base:>7.3f}x "
              f"{hit:>8.4f} {hit / base_hit:>7.3f}x  {deltas}")
    return result


def run(name: str, periods_for_seed, params: dict[str, object], seeds: int,  # noqa: ANN001
        max_epochs: int) -> dict:
    runs = []
    for seed in range(seeds):
        started = time.perf_counter()
        pooled: dict[str, list[np.ndarray]] = {}
        for period in periods_for_seed(seed):
            for fit_name, (ndcg, hit) in fits(period, params, seed, max_epochs).items():
                pooled.setdefault(fit_name, [[], []])
                pooled[fit_name][0].append(ndcg)
                pooled[fit_name][1].append(hit)
        runs.append({k: (np.concatenate(v[0]), np.concatenate(v[1])) for k, v in pooled.items()})
        epochs = runs[-1]["_epochs"][0].tolist()
        print(f"{name} seed {seed}: {time.perf_counter() - started:.0f} s, "
              f"epochs chosen {epochs}")
    return summarise(name, runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--users", type=int, default=6000, help="generated readers")
    parser.add_argument("--ml", type=Path, default=ML_DEFAULT,
                        help="a time-stamped ratings log (userId, movieId, rating, timestamp)")
    parser.add_argument("--period-days", type=int, default=28)
    parser.add_argument("--cutoffs", type=int, default=12)
    parser.add_argument("--max-epochs", type=int, default=20)
    parser.add_argument("--only", choices=("all", "generated", "real"), default="all")
    args = parser.parse_args()

    results = []
    if args.only in ("all", "generated"):
        generated = generated_periods(args.users, 42)
        results.append(run(f"generated goodbooks ({args.users:,} readers)",
                           lambda seed: generated, dict(KNOWN_GOOD), args.seeds,
                           args.max_epochs))
    if args.only == "generated":
        pass
    elif (args.ml / "ratings.csv").exists():
        periods = ml_periods(args.ml, args.period_days, args.cutoffs)
        identity = {**KNOWN_GOOD, "use_authors": False, "use_language": False}
        results.append(run(f"{args.ml.name} ({len(periods)} cut-offs, {args.period_days}-day "
                           "periods)", lambda seed: periods, identity, args.seeds,
                           args.max_epochs))
    else:
        print(f"\n{args.ml} not found: the real-log figure is skipped")
    out = REPO / "benchmarks" / "results" / f"full_fit-{args.only}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    # Paths relative to the project, so the summary names no machine's directories.
    settings = {k: os.path.relpath(v, REPO) if isinstance(v, Path) else str(v)
                for k, v in vars(args).items()}
    out.write_text(json.dumps({"args": settings,
                               "results": results}, indent=2))
    print(f"\nwritten to {out}")


if __name__ == "__main__":
    with tempfile.TemporaryDirectory():
        main()
