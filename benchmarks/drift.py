"""False alarms and sensitivity of the drift measures at the default thresholds.

    .venv/bin/python benchmarks/drift.py [--users 2000] [--books 2000] [--ratings 20000]
                                         [--null-seeds 50] [--sweep-seeds 5] [--work DIR]

A base dataset is generated once (seed 42) and a LightFM model trained on it once (one
thread, fixed parameters, early stopping on validation NDCG@10), as the train flow would;
its served top-10 lists and the reference statistics (with the lists' hit rate on the
to-read shelves) are computed as the monitor flow does, without Prefect or Redis.

1. False alarms: same-distribution continuations ("none") for --null-seeds seeds, at the
   smallest judged window (drift_min_ratings), a tenth of --ratings and --ratings; the
   share that raised any alarm, and each measure's largest value beside its threshold.
2. Sensitivity: each planted drift kind over a grid of magnitudes, --sweep-seeds seeds each,
   at --ratings; the share of seeds detected, the measures that fired, and the smallest
   magnitude detected at every seed.

Results are printed and written to benchmarks/results/drift.json. The base and model are
kept under --work (default: a temporary directory removed afterwards).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run as a script from anywhere: import this repository's models

from models.bundle import ScoringBundle  # noqa: E402
from models.drift import (  # noqa: E402
    DriftReport,
    DriftThresholds,
    ReferenceStats,
    compute_current,
    detect_drift,
    reference_from_ratings,
    served_lists,
    served_performance,
    training_performance,
)
from models.evaluation import validation_scorer  # noqa: E402
from models.generator import generate_continuation, generate_goodbooks  # noqa: E402
from models.interactions import popularity, temporal_split  # noqa: E402
from models.recommender import LightFMParams, fit_lightfm  # noqa: E402
from settings import Settings  # noqa: E402

K = 10
SWEEP: dict[str, tuple[float, ...]] = {
    "taste_shift": (0.1, 0.2, 0.3, 0.4, 0.45, 0.5, 0.6, 0.8, 1.0),
    "new_popular_books": (0.005, 0.01, 0.015, 0.02, 0.025, 0.03, 0.05),
    "rating_inflation": (0.1, 0.2, 0.3, 0.4, 0.45, 0.5, 0.6, 0.8),
    "new_readers": (0.01, 0.02, 0.03, 0.05, 0.06, 0.07, 0.08, 0.1),
}


def default_thresholds() -> DriftThresholds:
    """The thresholds of the project's default settings (no environment, no .env)."""
    return DriftThresholds.from_settings(Settings(_env_file=None))


def prepare(work: Path, n_users: int, n_books: int
            ) -> tuple[Path, ReferenceStats, dict[int, list[int]], dict[str, float]]:
    """Generate the base, train the model, take the reference and the served lists."""
    base = work / f"base-u{n_users}-b{n_books}"
    started = time.perf_counter()
    if not (base / "truth.npz").exists():
        generate_goodbooks(base, n_users=n_users, n_books=n_books, seed=42)
    generated = time.perf_counter()
    ratings = pd.read_csv(base / "ratings.csv")
    to_read = pd.read_csv(base / "to_read.csv")
    book_ids = pd.read_csv(base / "books.csv", usecols=["book_id"])["book_id"].to_numpy()
    split = temporal_split(ratings, book_ids=book_ids)
    fit = fit_lightfm(split.train, LightFMParams(loss="warp", max_epochs=15),
                      validation_scorer(split, K), num_threads=1, seed=0)
    seen = (split.train + split.valid + split.test).tocsr()
    counts = popularity(seen)
    bundle = ScoringBundle(ids=split.ids, factors=fit.model, seen=seen,
                           popular=split.ids.book_ids[np.lexsort((np.arange(len(counts)),
                                                                   -counts))])
    trained = time.perf_counter()
    performance = training_performance(bundle, ratings, book_ids, K, to_read)
    reference = reference_from_ratings("base", ratings, book_ids).with_performance(performance)
    served = served_lists(bundle, split.ids.user_ids, K)
    timing = {"generate_s": generated - started, "train_s": trained - generated,
              "reference_s": time.perf_counter() - trained, "best_epoch": fit.best_epoch}
    return base, reference, served, timing


def check(base: Path, out: Path, reference: ReferenceStats, served: dict[int, list[int]],
          kind: str, magnitude: float, n_ratings: int, seed: int,
          thresholds: DriftThresholds) -> tuple[DriftReport, float]:
    """One continuation and the monitor's verdict on it; returns the report and check time."""
    generate_continuation(base, out, kind, magnitude, n_ratings, seed)  # type: ignore[arg-type]
    ratings = pd.read_csv(out / "ratings.csv")
    started = time.perf_counter()
    current = compute_current(ratings, f"{kind}-{magnitude}-{seed}")
    report = detect_drift(reference, current, served_performance(ratings, served, K),
                          thresholds)
    return report, time.perf_counter() - started


def false_alarms(base: Path, work: Path, reference: ReferenceStats,
                 served: dict[int, list[int]], n_ratings: int, seeds: int,
                 thresholds: DriftThresholds) -> dict[str, object]:
    """Same-distribution continuations: alarm rate and each measure's worst value."""
    alarms = 0
    worst: dict[str, float] = {}
    fired: dict[str, int] = {}
    seconds: list[float] = []
    for seed in range(seeds):
        report, took = check(base, work / "null", reference, served, "none", 0.0, n_ratings,
                             1000 + seed, thresholds)
        seconds.append(took)
        alarms += report.drifted
        for m in report.measures:
            if m.threshold is not None and m.value is not None:
                worst[m.name] = max(worst.get(m.name, -np.inf), m.value)
            if m.fired:
                fired[m.name] = fired.get(m.name, 0) + 1
    return {
        "ratings": n_ratings,
        "seeds": seeds,
        "alarms": alarms,
        "false_alarm_rate": alarms / seeds,
        "fired": fired,
        "worst": {name: round(value, 4) for name, value in worst.items()},
        "check_ms_median": round(1000 * float(np.median(seconds)), 1),
    }


def sweep(base: Path, work: Path, reference: ReferenceStats, served: dict[int, list[int]],
          n_ratings: int, seeds: int, thresholds: DriftThresholds) -> dict[str, object]:
    """Detection rate of each planted kind by magnitude; smallest detected at every seed."""
    out: dict[str, object] = {}
    for kind, magnitudes in SWEEP.items():
        rows = []
        smallest = None
        for magnitude in magnitudes:
            detected = 0
            fired: dict[str, int] = {}
            values: dict[str, list[float]] = {}
            for seed in range(seeds):
                report, _ = check(base, work / "drift", reference, served, kind, magnitude,
                                  n_ratings, 2000 + seed, thresholds)
                detected += report.drifted
                for m in report.measures:
                    if m.fired:
                        fired[m.name] = fired.get(m.name, 0) + 1
                    if m.value is not None and m.threshold is not None:
                        values.setdefault(m.name, []).append(m.value)
            rate = detected / seeds
            if smallest is None and rate == 1.0:
                smallest = magnitude
            rows.append({"magnitude": magnitude, "detection_rate": rate, "fired": fired,
                         "median": {n: round(float(np.median(v)), 4)
                                    for n, v in values.items()}})
            print(f"  {kind:<18} {magnitude:>6g}: detected {detected}/{seeds}  "
                  f"fired {fired or '-'}", flush=True)
        out[kind] = {"smallest_detected_every_seed": smallest, "magnitudes": rows}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--books", type=int, default=2000)
    parser.add_argument("--ratings", type=int, default=20_000,
                        help="new ratings per continuation (the sweep and the large window)")
    parser.add_argument("--null-seeds", type=int, default=50)
    parser.add_argument("--sweep-seeds", type=int, default=5)
    parser.add_argument("--work", type=Path, default=None)
    args = parser.parse_args()

    work = args.work or Path(tempfile.mkdtemp(prefix="goodbooks-drift-bench-"))
    thresholds = default_thresholds()
    try:
        base, reference, served, timing = prepare(work, args.users, args.books)
        perf = reference.performance
        print(f"base {args.users} readers x {args.books} books, {reference.n_ratings} ratings; "
              f"model best epoch {timing['best_epoch']}", flush=True)
        if perf is not None:
            print(f"served hit rate@{K} at training time {perf.hit_rate:.4f} "
                  f"(on {perf.basis}, {perf.interactions} interactions)", flush=True)
        nulls = []
        for n in sorted({thresholds.min_ratings, max(args.ratings // 10, 1), args.ratings}):
            result = false_alarms(base, work, reference, served, n, args.null_seeds,
                                  thresholds)
            nulls.append(result)
            print(f"no drift, {n} new ratings: {result['alarms']}/{args.null_seeds} alarms; "
                  f"worst {result['worst']}; check {result['check_ms_median']} ms", flush=True)
        print(f"planted drift, {args.ratings} new ratings, {args.sweep_seeds} seeds each:")
        sensitivity = sweep(base, work, reference, served, args.ratings, args.sweep_seeds,
                            thresholds)
        for kind, result in sensitivity.items():
            print(f"  {kind}: smallest magnitude detected at every seed "
                  f"{result['smallest_detected_every_seed']}")
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    results = {
        "base": {"users": args.users, "books": args.books, "ratings": reference.n_ratings,
                 "seed": 42},
        "reference_performance": None if perf is None else perf.as_dict(),
        "thresholds": thresholds.__dict__,
        "timing": {key: round(value, 2) for key, value in timing.items()},
        "false_alarms": nulls,
        "sensitivity": sensitivity,
    }
    target = REPO / "benchmarks" / "results" / "drift.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(results, indent=2) + "\n")
    print(f"written to {target.relative_to(REPO)}")


if __name__ == "__main__":
    main()
