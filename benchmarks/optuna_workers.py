"""Optuna 1 vs 2 workers: time to the same best value on one PostgreSQL study.

    .venv/bin/python benchmarks/optuna_workers.py [--users 2000] [--trials 12]
        [--max-epochs 6] [--repeats 3] [--url postgresql+psycopg://postgres@127.0.0.1:5432/test]

Each repeat runs one study with 1 worker process, then one with 2 worker processes, each
worker with one LightFM thread (on 2 cores the two workers use the machine fairly), on the
same trial budget in all, the train flow's objective (TPE, median pruning, per-epoch
validation NDCG@10 with early stopping) and generated data (seed 42). Both studies live in
a database the script creates on the server (and drops at the end). The first worker of
a study samples with the repeat's seed, so the 1-worker study and the 2-worker study's
creator start from the same draws; the second worker draws with a seed of its own.

Figures per repeat: the 1-worker best value and the time it first reached it; the time the
2-worker study first reached that value (or, when it never did, its closest: its own best,
and when); the ratio of those times and of the whole studies' wall times. The medians over
repeats are the result (benchmarks/results/optuna-workers.json).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import uuid
from datetime import datetime
from pathlib import Path

import optuna
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.train import dataset as train_dataset  # noqa: E402
from models.study import TrialBudget, join_study, open_storage, ran_trials  # noqa: E402
from models.tuning import KNOWN_GOOD, make_objective  # noqa: E402

K = 10
RESULTS = ROOT / "benchmarks" / "results"
DATA_SEED = 42
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def dataset(users: int):  # noqa: ANN201 - the split and a cached feature builder
    """The generated data of benchmarks/train.py (seed 42), cached in the temp directory."""
    _, split, features_for = train_dataset(users, DATA_SEED)
    return split, features_for


def worker(config: dict) -> None:
    """One worker process: load the data, say "ready", wait for "go", tune, exit."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    split, features_for = dataset(config["users"])
    print("ready", flush=True)
    sys.stdin.readline()
    joined = join_study(open_storage(config["url"]), config["study"], seed=config["seed"],
                        starts=[KNOWN_GOOD])
    budget = TrialBudget(config["trials"])
    objective = make_objective(split, features_for, K, 1, 0, config["max_epochs"], 3,
                               budget=budget)
    joined.study.optimize(objective, n_trials=budget.trials, callbacks=[budget])
    print(json.dumps({"created": joined.created, "seed": joined.sampler_seed}), flush=True)


def run_study(url: str, study: str, workers: int, args: argparse.Namespace, seed: int
              ) -> dict:
    """One study with ``workers`` processes started together; its curve and wall time."""
    config = {"url": url, "study": study, "users": args.users, "trials": args.trials,
              "max_epochs": args.max_epochs, "seed": seed}
    # One thread per worker, BLAS and OpenMP included: two workers then use two cores.
    env = {**os.environ, **{name: "1" for name in THREAD_VARIABLES}}
    processes = [subprocess.Popen(
        [sys.executable, __file__, "worker", "--config", json.dumps(config)],
        cwd=ROOT, text=True, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env,
    ) for _ in range(workers)]
    for process in processes:
        if process.stdout is None or process.stdout.readline().strip() != "ready":
            raise RuntimeError(f"a worker of {study} did not start")
    began = datetime.now()
    for process in processes:
        assert process.stdin is not None
        process.stdin.write("go\n")
        process.stdin.flush()
    seeds = []
    for process in processes:
        out, _ = process.communicate()
        if process.returncode != 0:
            raise RuntimeError(f"a worker of {study} failed ({process.returncode})")
        seeds.append(json.loads(out.strip().splitlines()[-1])["seed"])
    trials = ran_trials(optuna.load_study(study_name=study, storage=url))
    ends = sorted(((t.datetime_complete - began).total_seconds(), t.value, t.state.name)
                  for t in trials if t.datetime_complete is not None)
    curve, best = [], float("-inf")
    for at, value, state in ends:
        if state == "COMPLETE" and value is not None and value > best:
            best = value
            curve.append((at, best))
    return {"workers": workers, "seeds": seeds, "trials": len(trials),
            "pruned": sum(state == "PRUNED" for _, _, state in ends),
            "best": best, "seconds_to_best": curve[-1][0], "seconds": ends[-1][0],
            "curve": curve}


def first_reaching(curve: list[tuple[float, float]], value: float) -> float | None:
    return next((at for at, best in curve if best >= value), None)


def repeat(url: str, args: argparse.Namespace, number: int) -> dict:
    tag = uuid.uuid4().hex[:6]
    one = run_study(url, f"w1-{tag}", 1, args, seed=number)
    two = run_study(url, f"w2-{tag}", 2, args, seed=number)
    reached = first_reaching(two["curve"], one["best"])
    # The value both studies reach (the lower of their bests) and when each first did: the
    # same best value, whichever study's draws happened to go a little higher.
    common = min(one["best"], two["best"])
    one_at, two_at = first_reaching(one["curve"], common), first_reaching(two["curve"], common)
    row = {"one": one, "two": two, "reached": reached is not None,
           "common_value": common, "seconds_to_common": [one_at, two_at],
           "time_to_common_ratio": two_at / one_at,
           "seconds_to_same_best": reached,
           "time_to_same_best_ratio": (None if reached is None
                                       else reached / one["seconds_to_best"]),
           # Not reached: how close the 2-worker study came, and when, against the 1-worker
           # time to its best.
           "closest_gap": 1 - two["best"] / one["best"],
           "time_to_closest_ratio": two["seconds_to_best"] / one["seconds_to_best"],
           "wall_ratio": two["seconds"] / one["seconds"]}
    same = (f"reached at {reached:.0f} s: {row['time_to_same_best_ratio']:.2f}x"
            if reached is not None else
            f"not reached; closest {two['best']:.4f} ({-row['closest_gap']:+.2%}) at "
            f"{two['seconds_to_best']:.0f} s: {row['time_to_closest_ratio']:.2f}x")
    same += (f"; the common value {common:.4f} at {one_at:.0f} s vs {two_at:.0f} s: "
             f"{row['time_to_common_ratio']:.2f}x")
    print(f"repeat {number}: 1 worker best {one['best']:.4f} at {one['seconds_to_best']:.0f} "
          f"s of {one['seconds']:.0f} s; 2 workers {same}; whole study "
          f"{two['seconds']:.0f} s: {row['wall_ratio']:.2f}x", flush=True)
    return row


def median(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return statistics.median(known) if known else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", nargs="?", default="run", choices=["run", "worker"])
    parser.add_argument("--config", help="a worker's configuration (JSON)")
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--max-epochs", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--url", default="postgresql+psycopg://postgres@127.0.0.1:5432/test",
                        help="a database on the server; the benchmark's own is created beside it")
    args = parser.parse_args()
    if args.what == "worker":
        worker(json.loads(args.config))
        return

    dataset(args.users)  # generated once, before any study is timed
    server = sa.make_url(args.url)
    name = f"gbbench_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        url = server.set(database=name).render_as_string(hide_password=False)
        open_storage(url).engine.dispose()  # the tables exist before the first timed study
        rows = [repeat(url, args, number) for number in range(args.repeats)]
    finally:
        with admin.connect() as connection:
            connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    summary = {
        "setup": (f"2 cores; 1 worker process, then 2 worker processes, 1 LightFM thread "
                  f"each; PostgreSQL {server.host}:{server.port}"),
        "users": args.users, "trials": args.trials, "max_epochs": args.max_epochs,
        "repeats": rows,
        "reached_in": sum(row["reached"] for row in rows),
        "median_time_to_same_best_ratio": median([r["time_to_same_best_ratio"] for r in rows]),
        "median_time_to_closest_ratio": median([r["time_to_closest_ratio"] for r in rows]),
        "median_wall_ratio": median([r["wall_ratio"] for r in rows]),
        "median_time_to_common_ratio": median([r["time_to_common_ratio"] for r in rows]),
        "median_one_worker_best": median([r["one"]["best"] for r in rows]),
        "median_closest_gap": median([r["closest_gap"] for r in rows]),
    }
    print(f"median of {len(rows)}: time to the same best "
          f"{summary['median_time_to_same_best_ratio']} (reached in {summary['reached_in']} "
          f"of {len(rows)}), to the common value "
          f"{summary['median_time_to_common_ratio']:.2f}x, whole study "
          f"{summary['median_wall_ratio']:.2f}x")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "optuna-workers.json").write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
