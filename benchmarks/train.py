"""Training figures: model quality beside baselines, epoch time, and what pruning saves.

    .venv/bin/python benchmarks/train.py quality [--users 6000] [--trials 8]
    .venv/bin/python benchmarks/train.py epochs  [--users 53424]
    .venv/bin/python benchmarks/train.py pruning [--users 6000] [--trials 30] [--same-load]
    .venv/bin/python benchmarks/train.py budget  [--budget-min 15] [--workers 2] [--long-min 90]
        [--data-seed 42 | --data DIR [--columns userId=user_id,movieId=book_id] [--half-stars]]
        [--repeats 1]

quality  tunes LightFM on generated data of demo size and prints test NDCG@10 of the tuned
         model beside popularity, implicit ALS, LightFM with default parameters and the
         planted oracle (ratios against popularity and the oracle).
epochs   one WARP epoch at num_threads 1 and 2 (median of 3) on full-size data.
pruning  the same seeded study with and without median pruning: wall time to reach the best
         value, and the best values (ratio of times, difference of values).
budget   a budgeted study as the train flow runs it with timeout_s (by default on every
         reader, the best trial's fit kept; with --fraction < 1 on a reader sample, the best
         refit on all in what is left of the budget) and a long study on every reader (the
         reference best validation NDCG@10; two worker processes on one journal-file study,
         read back when its journal exists); both curves of best-so-far validation NDCG@10
         over wall time, and the budgeted result as a share of the long study's best.
         --repeats R runs R budgeted studies (TPE seeds 0..R-1; 100(r+1)+w with --workers)
         against the one long study and reports each share and their median, on the
         validation readers and, the models refitted, on the test part; --data-seed
         generates other data than the seed 42 the known-good start was chosen on, --data
         reads a local dataset in any layout (ml-latest-small: --columns
         userId=user_id,movieId=book_id --half-stars --books-file movies.csv).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import numpy as np
import optuna
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from models.baselines import fit_als_early_stopping  # noqa: E402
from models.datasets import SourceLayout, locate_dataset, read_dataset_table  # noqa: E402
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
from models.schema import BOOK_TAGS_FILE, BOOKS_FILE, RATINGS_FILE, TAGS_FILE  # noqa: E402
from models.tuning import (  # noqa: E402
    KeptFit,
    candidate_from_params,
    create_study,
    fit_candidate,
    kept_best_fit,
    make_objective,
    sample_readers,
)

K = 10
RESULTS = ROOT / "benchmarks" / "results"


# Which data every function below reads: generated goodbooks data of a seed (42, the seed
# the known-good start was chosen on, unless --data-seed) or a local dataset (--data).
SOURCE: dict[str, object] = {"seed": 42, "data": None, "columns": {}, "half_stars": False,
                             "books_file": "books.csv"}


def source_name(users: int) -> str:
    data = SOURCE["data"]
    return Path(str(data)).name if data else f"generated-u{users}-s{SOURCE['seed']}"


def dataset(users: int, seed: int | None = None):  # noqa: ANN201
    seed = int(SOURCE["seed"]) if seed is None else seed  # type: ignore[arg-type]
    book_tags = tags = None
    if SOURCE["data"]:
        layout = SourceLayout(columns=SOURCE["columns"], books_file=SOURCE["books_file"],
                              half_stars=bool(SOURCE["half_stars"]))
        files = locate_dataset(Path(str(SOURCE["data"])), layout)
        out = files.directory
        ratings = read_dataset_table(files, RATINGS_FILE)
        books = read_dataset_table(files, BOOKS_FILE)
        tags = read_dataset_table(files, TAGS_FILE)  # None where the dataset has none
        book_tags = read_dataset_table(files, BOOK_TAGS_FILE)
    else:
        out = Path(tempfile.gettempdir()) / f"goodbooks-bench-u{users}-s{seed}"
        if not (out / "ratings.csv").exists():
            generate_goodbooks(out, n_users=users, n_books=10_000, seed=seed)
        ratings = pd.read_csv(out / "ratings.csv")
        books = pd.read_csv(out / "books.csv")
        tags = pd.read_csv(out / "tags.csv")
        book_tags = pd.read_csv(out / "book_tags.csv")
    split = temporal_split(ratings, book_ids=books["book_id"].to_numpy())
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
    # As the train flow's test table: trained on the train part, stopped on validation.
    als, _ = fit_als_early_stopping(split.train, validation_scorer(split, K), num_threads=2)
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


def _pruning_arm(pruned: bool, users: int, trials: int, threads: int,
                 source: dict[str, object]) -> dict:
    """One study of the pruning comparison: its best value, when reached, how long in all."""
    SOURCE.update(source)
    _, split, features_for = dataset(users)
    tuning = sample_readers(split, 0.5, 0)
    study = create_study(None, f"bench-pruning-{pruned}", seed=0, pruning=pruned)
    began = time.perf_counter()
    reached: list[tuple[float, float]] = []

    def track(study, trial) -> None:  # noqa: ANN001
        reached.append((time.perf_counter() - began, study.best_value))

    study.optimize(make_objective(tuning, features_for, K, threads, 0, 15, 3),
                   n_trials=trials, callbacks=[track])
    best = study.best_value
    first_best = next(t for t, v in reached if v >= best)
    states = [t.state.name.lower() for t in study.trials]
    print(f"pruning={pruned}: best {best:.4f} reached at {first_best:.0f} s of "
          f"{reached[-1][0]:.0f} s ({states.count('pruned')} of {len(states)} pruned)",
          flush=True)
    return {"best": best, "seconds_to_best": first_best, "seconds": reached[-1][0],
            "pruned_trials": states.count("pruned"), "threads": threads}


def _arm_in_process(arm: tuple, out) -> None:  # noqa: ANN001 - a multiprocessing queue
    out.put((arm[0], _pruning_arm(*arm)))


def pruning(args: argparse.Namespace) -> dict:
    result: dict[str, object] = {}
    if args.same_load:
        # Both studies at once, one process and one LightFM thread each: whatever else
        # runs on the machine weighs on both alike.
        context = multiprocessing.get_context("spawn")
        out = context.Queue()
        arms = [context.Process(target=_arm_in_process, args=(
            (pruned, args.users, args.trials, 1, dict(SOURCE)), out)) for pruned in (False, True)]
        for process in arms:
            process.start()
        for _ in arms:
            pruned, arm = out.get()
            result["pruned" if pruned else "full"] = arm
        for process in arms:
            process.join()
        result["layout"] = "both studies at once, 1 process x 1 thread each"
    else:
        for pruned in (False, True):
            result["pruned" if pruned else "full"] = _pruning_arm(
                pruned, args.users, args.trials, 2, dict(SOURCE))
        result["layout"] = "one study after the other, 2 threads"
    ratio = result["pruned"]["seconds_to_best"] / result["full"]["seconds_to_best"]
    gap = 1 - result["pruned"]["best"] / result["full"]["best"]
    print(f"time to best with pruning: {ratio:.2f}× of without; value gap {gap:+.2%}")
    return {**result, "users": args.users, "trials": args.trials,
            "time_to_best_ratio": ratio, "value_gap": gap}


def _best_so_far(study: optuna.Study, began: datetime, ended_s: float | None = None
                 ) -> list[tuple[float, float]]:
    """(seconds since `began`, best value so far) at each trial's end.

    A trial still running when its study was stopped (at `ended_s`) counts with its best
    epoch so far, as a trial ended by the train flow's deadline does.
    """
    points = []
    for t in study.trials:
        if t.state == optuna.trial.TrialState.COMPLETE and t.datetime_complete:
            points.append(((t.datetime_complete - began).total_seconds(), t.value))
        elif (t.state == optuna.trial.TrialState.RUNNING and ended_s is not None
              and t.intermediate_values):
            points.append((ended_s, max(t.intermediate_values.values())))
    curve, best = [], -np.inf
    for at, value in sorted(points):
        best = max(best, value)
        curve.append((at, best))
    return curve


def _progress(name: str, began: float):  # noqa: ANN202
    def show(study, trial) -> None:  # noqa: ANN001
        value = "" if trial.value is None else f" {trial.value:.4f}"
        print(f"  {name}: trial {trial.number} {trial.state.name.lower()}{value} at "
              f"{(time.time() - began) / 60:5.1f} min", flush=True)
    return show


def _journal(path: Path) -> optuna.storages.JournalStorage:
    return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(path)))


def _worker(name: str, seed: int, users: int, journal: str, began: float, deadline: float,
            max_epochs: int, source: dict[str, object]) -> None:
    """One process of a study shared through a journal file: one LightFM thread, its own
    TPE seed, every reader; a trial running at the deadline ends with its best so far."""
    SOURCE.update(source)  # a spawned process starts from the module's defaults
    _, split, features_for = dataset(users)
    study = create_study(_journal(Path(journal)), name, seed=seed)
    study.optimize(make_objective(split, features_for, K, 1, 0, max_epochs, 3,
                                  deadline=time.monotonic() + deadline - time.time()),
                   timeout=max(0.0, deadline - time.time()),
                   callbacks=[_progress(f"{name}/{seed}", began)])


def _run_workers(name: str, journal: Path, seeds: list[int], users: int, began: float,
                 deadline: float, max_epochs: int) -> None:
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_worker, args=(
        name, seed, users, str(journal), began, deadline, max_epochs, dict(SOURCE)))
        for seed in seeds]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    failed = [w.exitcode for w in workers if w.exitcode != 0]
    if failed:
        raise SystemExit(f"a {name}-study worker failed (exit codes {failed})")


def _long_study(args: argparse.Namespace) -> tuple[optuna.Study, datetime, float]:
    """Run the long study into args.long_journal, or read it there if it already ran."""
    journal = Path(args.long_journal)
    if journal.exists():
        study = optuna.load_study(study_name="long", storage=_journal(journal))
        if study.user_attrs.get("users") != args.users:
            raise SystemExit(f"{journal} holds a study on {study.user_attrs.get('users')} "
                             f"readers, not {args.users}: remove it to run the long study")
        print(f"long study read from {journal}")
    else:
        journal.parent.mkdir(parents=True, exist_ok=True)
        study = create_study(_journal(journal), "long", seed=0)  # enqueues the known-good start
        began = time.time()
        study.set_user_attr("began", datetime.now().isoformat())
        study.set_user_attr("minutes", args.long_min)
        study.set_user_attr("users", args.users)
        _run_workers("long", journal, [0, 1], args.users, began, began + args.long_min * 60,
                     30)
    return (study, datetime.fromisoformat(study.user_attrs["began"]),
            float(study.user_attrs["minutes"]) * 60)


def _plot_budget(result: dict, path: Path) -> None:
    """Both studies' best-so-far validation NDCG@10 over wall time, the 2% band shaded."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    long, budgeted = result["long"], result["budget"]
    fig, ax = plt.subplots(figsize=(8, 4.5))
    minutes, values = zip(*((t / 60, v) for t, v in long["curve"]), strict=True)
    ax.step(minutes, values, where="post", label=f"long study ({long['minutes']:.0f} min, "
            f"{long['trials']} trials, 2 workers × 1 thread)")
    if budgeted["tune_fraction"] == 1:
        minutes, values = zip(*((t / 60, v) for t, v in budgeted["tuning_curve"]), strict=True)
        layout = ("1 process × 2 threads" if budgeted["workers"] == 1
                  else f"{budgeted['workers']} workers × 1 thread")
        ax.step(minutes, values, where="post", label=f"budgeted study ({budgeted['trials']} "
                f"trials, {layout})")
    ax.plot([budgeted["minutes"]], [budgeted["valid_ndcg"]], "o", color="black",
            label=f"budgeted model after {budgeted['minutes']:.1f} min")
    best = long["best_valid_ndcg"]
    ax.axhspan(0.98 * best, best, color="green", alpha=0.12, label="within 2% of the long best")
    ax.axvline(result["budget_min"], color="grey", linestyle=":", linewidth=1)
    ax.set_xlabel("wall time (min)")
    ax.set_ylabel("best validation NDCG@10 so far")
    ax.set_ylim(0.97 * best - 0.01, 1.005 * best)
    ax.set_title(f"Budgeted vs long tuning ({result['data']}, "
                 f"{result['interactions']:,} training interactions)")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def budget(args: argparse.Namespace) -> dict:
    _, split, features_for = dataset(args.users)
    for config in {FeatureConfig(a, t, d, g) for a in (True, False) for t in (True, False)
                   for d in (True, False) for g in (True, False)}:
        features_for(config)  # every feature matrix built before the clocks start
    runs = [_budgeted(args, split, features_for, repeat) for repeat in range(args.repeats)]
    return _against_long(args, split, features_for, runs)


def _budgeted(args: argparse.Namespace, split, features_for, repeat: int) -> dict:  # noqa: ANN001
    # Budgeted: what one `train` run does with timeout_s (and refit_timeout_s) set — tune
    # until the deadline (a trial running then ends after its epoch with its best so far);
    # on a reader sample, refit the best on everyone in what is left; on every reader the
    # best trial's own fit is the model.
    began, began_at = time.time(), datetime.now()  # optuna stamps trials in naive local time
    tune_s = args.budget_min * 60 * args.tune_share
    if args.workers > 1:
        # Several train workers on one study (the flow's shared-storage mode), each with
        # one LightFM thread and its own TPE seed (not the long study's); the worker that
        # ran the best trial holds its fit, which is the model.
        if args.fraction != 1:
            raise SystemExit("--workers > 1 tunes on every reader: leave --fraction at 1")
        journal = RESULTS / "budget-study.journal"
        journal.unlink(missing_ok=True)
        RESULTS.mkdir(exist_ok=True)
        create_study(_journal(journal), "budget", seed=0)  # enqueues the known-good start
        _run_workers("budget", journal,
                     [100 * (repeat + 1) + w for w in range(args.workers)], args.users,
                     began, began + tune_s, args.budget_epochs)
        study = optuna.load_study(study_name="budget", storage=_journal(journal))
        tuned_s = time.time() - began
        value, curve = study.best_value, study.best_trial.user_attrs["curve"]
        test = None  # the model lives in a worker process
        how = (f"the best trial ({study.best_trial.number}) fitted every reader in its "
               f"worker: no refit")
    else:
        tuning = sample_readers(split, args.fraction, 0)
        keep = KeptFit() if args.fraction == 1 else None  # as the train flow decides
        study = create_study(None, "budget", seed=repeat)
        study.optimize(make_objective(tuning, features_for, K, 2, 0, args.budget_epochs, 3,
                                      deadline=time.monotonic() + tune_s, keep=keep),
                       timeout=tune_s, callbacks=[_progress("budget", began)])
        tuned_s = time.time() - began
        kept = kept_best_fit(study, keep)
        if kept is not None:
            fit, how = kept, f"the best trial ({keep.number}) fitted every reader: no refit"
        else:
            left = args.budget_min * 60 - tuned_s - args.refit_margin_s
            fit = fit_candidate(split, candidate_from_params(study.best_params, 30, 3),
                                features_for, K, 2, 0, deadline=time.monotonic() + left)
            how = f"refit on every reader for {len(fit.curve)} epochs"
        value, curve = fit.best_score, fit.curve
        test = evaluate_factors(fit.model, split, "test", K).ndcg
    budget_s = time.time() - began
    tuning_curve = _best_so_far(study, began_at)
    states = [t.state.name.lower() for t in study.trials]
    print(f"budgeted: {len(states)} trials ({states.count('pruned')} pruned) on "
          f"{args.fraction:.0%} of readers with {args.workers} worker(s) in "
          f"{tuned_s / 60:.1f} min, {how} → validation NDCG@10 {value:.4f} after "
          f"{budget_s / 60:.1f} min", flush=True)
    return {"minutes": budget_s / 60, "tune_minutes": tuned_s / 60,
            "tune_fraction": args.fraction, "max_epochs": args.budget_epochs,
            "workers": args.workers, "tpe_seed": repeat,
            "trials": len(states), "pruned": states.count("pruned"),
            "best_trial": study.best_trial.number, "best_params": study.best_params,
            "valid_ndcg": value, "test_ndcg": test, "model": how,
            "model_epochs": len(curve), "model_curve": curve,
            # with a reader sample these values are on the sample's validation readers
            # and only the refit's is comparable with the long study
            "tuning_curve": tuning_curve}


def _against_long(args: argparse.Namespace, split, features_for,  # noqa: ANN001
                  runs: list[dict]) -> dict:
    # Long: every reader, up to 30 epochs per trial, for `long_min` minutes, as two worker
    # processes with one LightFM thread each on one journal-file study (feature-rich epochs
    # do not speed up with a second thread; two trials at once do).
    long_study, long_began, long_s = _long_study(args)
    long_curve = _best_so_far(long_study, long_began, long_s)
    if not long_curve:
        raise SystemExit("the long study finished no trial: give it more time (--long-min)")
    long_best = long_curve[-1][1]
    counted = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.RUNNING)
    best_trial = max((t for t in long_study.trials
                      if t.state in counted and t.intermediate_values),
                     key=lambda t: max(t.intermediate_values.values()))
    long_states = [t.state.name.lower() for t in long_study.trials]
    shares = [run["valid_ndcg"] / long_best for run in runs]
    share = statistics.median(shares)
    # The long study's best is the best of many trials on one validation set: on a small
    # log that maximum is inflated by the validation readers' noise. Its parameters refitted
    # and both models judged on the test part (which no trial saw) show what it is worth.
    long_fit = fit_candidate(split, candidate_from_params(best_trial.params, 30, 3),
                             features_for, K, 2, 0)
    long_test = evaluate_factors(long_fit.model, split, "test", K).ndcg
    test_shares = [run["test_ndcg"] / long_test for run in runs if run["test_ndcg"] is not None]
    print(f"long: {len(long_states)} trials ({long_states.count('complete')} complete, "
          f"{long_states.count('pruned')} pruned, {long_states.count('running')} cut off at "
          f"the end) on every reader, best validation NDCG@10 {long_best:.4f} "
          f"(trial {best_trial.number}) in {long_s / 60:.1f} min")
    minutes = max(run["minutes"] for run in runs)
    print(f"budgeted results = {', '.join(f'{x:.3f}' for x in shares)}× the long study's "
          f"best (median {share:.3f}×, {share - 1:+.1%}) in at most {minutes:.1f} min "
          f"(aim: within 2% in the budget, {args.budget_min:g} min)")
    if test_shares:
        print(f"on the test part: the long study's best refitted {long_test:.4f}; budgeted "
              f"{', '.join(f'{x:.3f}' for x in test_shares)}× (median "
              f"{statistics.median(test_shares):.3f}×)")
    return {
        "data": source_name(args.users), "users": args.users,
        "interactions": int(split.train.nnz),
        "budget": runs[0], "budgets": runs, "shares": shares,
        "long_best_refit_test_ndcg": long_test, "test_shares": test_shares,
        "test_share_median": statistics.median(test_shares) if test_shares else None,
        "long": {"minutes": long_s / 60, "trials": len(long_states),
                 "complete": long_states.count("complete"),
                 "pruned": long_states.count("pruned"),
                 "stopped_at_end": long_states.count("running"),
                 "best_valid_ndcg": long_best, "best_trial": best_trial.number,
                 "best_params": best_trial.params,
                 "best_epoch": best_trial.user_attrs.get("best_epoch"),
                 "curve": long_curve},
        "budget_over_long": share,
        "long_over_budget_minutes": long_s / 60 / args.budget_min,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["quality", "epochs", "pruning", "budget"])
    parser.add_argument("--users", type=int, default=None)
    parser.add_argument("--trials", type=int, default=None)
    parser.add_argument("--budget-min", type=float, default=15.0)
    parser.add_argument("--tune-share", type=float, default=0.9,
                        help="share of the budget spent tuning; the rest is the refit "
                             "(or, on every reader, the margin for the last epoch)")
    parser.add_argument("--refit-margin-s", type=float, default=60.0,
                        help="the refit stops after the epoch that ends this long before "
                             "the budget's end, so its last epoch fits inside")
    parser.add_argument("--fraction", type=float, default=1.0,
                        help="share of readers the budgeted study tunes on")
    parser.add_argument("--budget-epochs", type=int, default=15)
    parser.add_argument("--workers", type=int, default=1,
                        help="budgeted study: processes with one LightFM thread each "
                             "(1: one process with two threads)")
    parser.add_argument("--long-min", type=float, default=90.0)
    parser.add_argument("--long-journal", default=None,
                        help="the long study's Optuna journal: read if it exists, else "
                             "written by running it (default: results/long-study[-DATA]"
                             ".journal)")
    parser.add_argument("--repeats", type=int, default=1, help="budgeted studies (budget)")
    parser.add_argument("--same-load", action="store_true",
                        help="pruning: run both studies at once, one thread each")
    parser.add_argument("--data-seed", type=int, default=42,
                        help="seed of the generated data (42: the one the start was chosen on)")
    parser.add_argument("--data", type=Path, default=None, help="a local dataset directory")
    parser.add_argument("--columns", default="", help="source=goodbooks column pairs")
    parser.add_argument("--books-file", default=BOOKS_FILE)
    parser.add_argument("--half-stars", action="store_true",
                        help="ratings in half stars (0.5-5), rounded up to 1-5")
    args = parser.parse_args()
    SOURCE.update(seed=args.data_seed, data=str(args.data) if args.data else None,
                  columns=dict(p.split("=") for p in args.columns.split(",")) if args.columns
                  else {}, half_stars=args.half_stars, books_file=args.books_file)
    defaults = {"quality": (6000, 8), "epochs": (53_424, 0), "pruning": (6000, 30),
                "budget": (53_424, 0)}
    args.users = args.users or defaults[args.what][0]
    args.trials = args.trials or defaults[args.what][1]
    default_data = args.data is None and args.data_seed == 42
    suffix = "" if default_data else f"-{source_name(args.users)}"
    if args.long_journal is None:
        args.long_journal = str(RESULTS / f"long-study{suffix}.journal")
    np.random.seed(0)
    run = {"quality": quality, "epochs": epochs, "pruning": pruning, "budget": budget}
    result = run[args.what](args)
    RESULTS.mkdir(exist_ok=True)
    if args.what == "budget":
        result["budget_min"] = args.budget_min
        _plot_budget(result, RESULTS / f"train-budget{suffix}.png")
    (RESULTS / f"train-{args.what}{suffix}.json").write_text(
        json.dumps(result, indent=2, default=str))


if __name__ == "__main__":
    main()
