"""Training figures: model quality beside baselines, epoch time, and what pruning saves.

    .venv/bin/python benchmarks/train.py quality [--users 6000] [--trials 8]
    .venv/bin/python benchmarks/train.py epochs  [--users 53424]
    .venv/bin/python benchmarks/train.py pruning [--users 6000] [--trials 30]
    .venv/bin/python benchmarks/train.py budget  [--budget-min 15] [--long-trials 40]

quality  tunes LightFM on generated data of demo size and prints test NDCG@10 of the tuned
         model beside popularity, implicit ALS, LightFM with default parameters and the
         planted oracle (ratios against popularity and the oracle).
epochs   one WARP epoch at num_threads 1 and 2 (median of 3) on full-size data.
pruning  the same seeded study with and without median pruning: wall time to reach the best
         value, and the best values (ratio of times, difference of values).
budget   a long study on every reader (the reference best validation NDCG@10) and a
         budgeted one (tune on a share of readers with fewer epochs, refit the best on all,
         everything inside the budget); both curves of best-so-far validation NDCG@10 over
         wall time, and the budgeted result as a share of the long study's best.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import optuna
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from models.baselines import fit_als  # noqa: E402
from models.evaluation import (  # noqa: E402
    evaluate_factors,
    evaluate_oracle,
    evaluate_popularity,
    validation_scorer,
)
from models.features import FeatureConfig, build_item_features  # noqa: E402
from models.generator import generate_goodbooks, load_truth  # noqa: E402
from models.interactions import temporal_split  # noqa: E402
from models.recommender import LightFMParams, fit_lightfm  # noqa: E402
from models.tuning import (  # noqa: E402
    candidate_from_params,
    create_study,
    fit_candidate,
    make_objective,
    sample_readers,
)

K = 10
RESULTS = ROOT / "benchmarks" / "results"


def dataset(users: int, seed: int = 42):  # noqa: ANN201
    out = Path(tempfile.gettempdir()) / f"goodbooks-bench-u{users}-s{seed}"
    if not (out / "ratings.csv").exists():
        generate_goodbooks(out, n_users=users, n_books=10_000, seed=seed)
    ratings = pd.read_csv(out / "ratings.csv")
    books = pd.read_csv(out / "books.csv")
    split = temporal_split(ratings, book_ids=books["book_id"].to_numpy())
    tags = pd.read_csv(out / "tags.csv")
    book_tags = pd.read_csv(out / "book_tags.csv")
    cache: dict = {}

    def features_for(config: FeatureConfig):  # noqa: ANN202
        if config not in cache:
            cache[config] = build_item_features(split.ids, books, book_tags, tags, config)
        return cache[config]

    return out, split, features_for


def quality(args: argparse.Namespace) -> dict:
    out, split, features_for = dataset(args.users)
    tuning = sample_readers(split, 0.5, 0)
    study = create_study(None, "bench-quality", seed=0)
    study.optimize(make_objective(tuning, features_for, K, 2, 0, 15, 3), n_trials=args.trials)
    best = candidate_from_params(study.best_params, 20, 3)
    tuned = fit_candidate(split, best, features_for, K, 2, 0)
    default = fit_lightfm(split.train, LightFMParams(), validation_scorer(split, K),
                          num_threads=2, seed=0)
    als = fit_als((split.train + split.valid).tocsr(), factors=32, num_threads=2)
    rows = {
        "lightfm tuned": evaluate_factors(tuned.model, split, "test", K).ndcg,
        "lightfm default": evaluate_factors(default.model, split, "test", K).ndcg,
        "als": evaluate_factors(als, split, "test", K).ndcg,
        "popularity": evaluate_popularity(split, "test", K).ndcg,
        "oracle": evaluate_oracle(split, "test", K, load_truth(out).scores).ndcg,
    }
    for name, value in rows.items():
        print(f"{name:<16} NDCG@10 {value:.4f}  ×popularity {value / rows['popularity']:.2f}"
              f"  ×oracle {value / rows['oracle']:.2f}")
    return {"users": args.users, "trials": args.trials, "ndcg": rows,
            "best_params": study.best_params}


def epochs(args: argparse.Namespace) -> dict:
    _, split, features_for = dataset(args.users)
    every_family = features_for(FeatureConfig())
    result: dict[str, dict[int, float]] = {}
    # Identity embeddings only, then every feature family on; 3 repeats each.
    for label, features, repeats in (("no item features", None, 3),
                                     ("every feature family", every_family, 3)):
        matrix = features.matrix if features is not None else None
        width = (f", {matrix.nnz / matrix.shape[0]:.1f} features per book"
                 if matrix is not None else "")
        times = {}
        for threads in (1, 2):
            runs = []
            for _ in range(repeats):
                began = time.perf_counter()
                fit_lightfm(split.train, LightFMParams(max_epochs=1, patience=1),
                            lambda model: 0.0, item_features=matrix, num_threads=threads,
                            seed=0)
                runs.append(time.perf_counter() - began)
            times[threads] = statistics.median(runs)
            print(f"WARP epoch, {label}{width}, {split.train.nnz:,} interactions, "
                  f"num_threads={threads}: {times[threads]:.1f} s "
                  f"(runs {', '.join(f'{r:.1f}' for r in runs)})", flush=True)
        print(f"{label}: speed-up with 2 threads {times[1] / times[2]:.2f}×")
        result[label] = times
    ratio = result["every feature family"][2] / result["no item features"][2]
    print(f"every feature family costs {ratio:.1f}× an identity-only epoch (2 threads)")
    return {"users": args.users, "epoch_s": result}


def pruning(args: argparse.Namespace) -> dict:
    _, split, features_for = dataset(args.users)
    tuning = sample_readers(split, 0.5, 0)
    result = {}
    for pruned in (False, True):
        study = create_study(None, f"bench-pruning-{pruned}", seed=0, pruning=pruned)
        began = time.perf_counter()
        reached: list[tuple[float, float]] = []

        def track(study, trial, reached=reached, began=began) -> None:  # noqa: ANN001
            reached.append((time.perf_counter() - began, study.best_value))

        study.optimize(make_objective(tuning, features_for, K, 2, 0, 15, 3),
                       n_trials=args.trials, callbacks=[track])
        best = study.best_value
        first_best = next(t for t, v in reached if v >= best)
        result["pruned" if pruned else "full"] = {
            "best": best, "seconds_to_best": first_best, "seconds": reached[-1][0]}
        print(f"pruning={pruned}: best {best:.4f} reached at {first_best:.0f} s of "
              f"{reached[-1][0]:.0f} s")
    ratio = result["pruned"]["seconds_to_best"] / result["full"]["seconds_to_best"]
    gap = 1 - result["pruned"]["best"] / result["full"]["best"]
    print(f"time to best with pruning: {ratio:.2f}× of without; value gap {gap:+.2%}")
    return result


def _study_curve(split, features_for, minutes: float, max_epochs: int, name: str,  # noqa: ANN001
                 began: float, n_trials: int | None = None,
                 ) -> tuple[optuna.Study, list[tuple[float, float]]]:
    """Run a pruned TPE study for `minutes` (or `n_trials`); best-so-far after each trial."""
    curve: list[tuple[float, float]] = []

    def track(study, trial) -> None:  # noqa: ANN001
        try:
            best = study.best_value
        except ValueError:  # nothing completed yet
            return
        curve.append((time.perf_counter() - began, best))
        print(f"  {name}: trial {trial.number} {trial.state.name.lower()} at "
              f"{curve[-1][0] / 60:5.1f} min, best {best:.4f}", flush=True)

    study = create_study(None, name, seed=0)
    study.optimize(make_objective(split, features_for, K, 2, 0, max_epochs, 3),
                   n_trials=n_trials, timeout=minutes * 60, callbacks=[track])
    return study, curve


def budget(args: argparse.Namespace) -> dict:
    _, split, features_for = dataset(args.users)
    # The validation readers are the same 5,000 for every fit on the full split, so the
    # long study's values and the budgeted refit's value are comparable.
    began = time.perf_counter()
    tuning = sample_readers(split, args.fraction, 0)
    study, budget_curve = _study_curve(tuning, features_for, args.budget_min * args.tune_share,
                                       args.budget_epochs, "budget", began)
    refit = fit_candidate(split, candidate_from_params(study.best_params, 30, 3),
                          features_for, K, 2, 0)
    budget_s = time.perf_counter() - began
    print(f"budgeted: tuned {len(study.trials)} trials on {args.fraction:.0%} of readers, "
          f"refit on all → validation NDCG@10 {refit.best_score:.4f} after {budget_s / 60:.1f} min")

    began = time.perf_counter()
    # The long study is bounded by trials (a time cap only as a safety net), so its best
    # value does not depend on how busy the machine is; only the budgeted one races a clock.
    long_study, long_curve = _study_curve(split, features_for, args.long_min, 30, "long", began,
                                          n_trials=args.long_trials)
    long_best = long_study.best_value
    share = refit.best_score / long_best
    print(f"long: {len(long_study.trials)} trials on every reader, best validation NDCG@10 "
          f"{long_best:.4f} after {long_curve[-1][0] / 60:.1f} min")
    print(f"budgeted result = {share:.3f}× the long study's best ({share - 1:+.1%}) in "
          f"{budget_s / 60:.1f} min (aim: within 2% in ≤ 15 min)")
    return {
        "users": args.users, "interactions": int(split.train.nnz),
        "budget": {"minutes": budget_s / 60, "tune_fraction": args.fraction,
                   "tune_minutes": args.budget_min * args.tune_share,
                   "trials": len(study.trials), "best_params": study.best_params,
                   "refit_valid_ndcg": refit.best_score, "refit_best_epoch": refit.best_epoch,
                   "curve": budget_curve},
        "long": {"minutes": long_curve[-1][0] / 60 if long_curve else None,
                 "trials": len(long_study.trials), "best_valid_ndcg": long_best,
                 "best_params": long_study.best_params, "curve": long_curve},
        "budget_over_long": share,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["quality", "epochs", "pruning", "budget"])
    parser.add_argument("--users", type=int, default=None)
    parser.add_argument("--trials", type=int, default=None)
    parser.add_argument("--budget-min", type=float, default=15.0)
    parser.add_argument("--tune-share", type=float, default=0.7,
                        help="share of the budget spent tuning; the rest is the refit")
    parser.add_argument("--fraction", type=float, default=0.25,
                        help="share of readers the budgeted study tunes on")
    parser.add_argument("--budget-epochs", type=int, default=15)
    parser.add_argument("--long-trials", type=int, default=40)
    parser.add_argument("--long-min", type=float, default=90.0)
    args = parser.parse_args()
    defaults = {"quality": (6000, 8), "epochs": (53_424, 0), "pruning": (6000, 30),
                "budget": (53_424, 0)}
    args.users = args.users or defaults[args.what][0]
    args.trials = args.trials or defaults[args.what][1]
    np.random.seed(0)
    run = {"quality": quality, "epochs": epochs, "pruning": pruning, "budget": budget}
    result = run[args.what](args)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"train-{args.what}.json").write_text(json.dumps(result, indent=2, default=str))


if __name__ == "__main__":
    main()
