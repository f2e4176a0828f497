"""Time and peak memory of the goodbooks generator at full size, and the figures it reaches.

    .venv/bin/python benchmarks/generate.py [--users 53424] [--books 10000] [--repeats 3]
                                            [--seed 42] [--out DIR]

Each repeat runs generate_goodbooks in a fresh Python process, which reports its wall time,
the time spent in each stage and its own peak resident set size (getrusage ru_maxrss, so
the interpreter and imports are included). The medians are printed; then the files of the
last repeat are read back and their figures printed beside the real goodbooks-10k's. The
results are written to benchmarks/results/generate.json. Without --out the files go to a
temporary directory that is removed afterwards.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run as a script from anywhere: import this repository's models

from models.generator import generate_goodbooks  # noqa: E402
from models.schema import (  # noqa: E402
    BOOK_TAGS_FILE,
    RATINGS_FILE,
    TAGS_FILE,
    TO_READ_FILE,
)

# The real goodbooks-10k figures (the targets), in the order they are printed.
TARGETS: dict[str, float] = {
    "users": 53_424,
    "books": 10_000,
    "ratings": 5_976_479,
    "ratings per user: min": 19,
    "ratings per user: max": 200,
    "ratings per user: mean": 111.9,
    "ratings per user: sd": 26.1,
    "ratings per user: q25": 96,
    "ratings per user: median": 111,
    "ratings per user: q75": 128,
    "ratings per book: min": 8,
    "ratings per book: max": 22_806,
    "ratings per book: mean": 597.6,
    "ratings per book: q25": 155,
    "ratings per book: median": 248,
    "ratings per book: q75": 503,
    "rating 1 (%)": 2,
    "rating 2 (%)": 6,
    "rating 3 (%)": 23,
    "rating 4 (%)": 36,
    "rating 5 (%)": 33,
    "mean rating": 3.9,
    "to_read pairs": 912_705,
    "to_read readers": 48_871,
    "to_read books": 9_986,
    "book_tags rows": 999_912,
    "tags": 34_252,
}
BUDGET_S, BUDGET_RSS_MB = 90.0, 4096.0


def main() -> None:
    """Run the repeats in child processes, print medians and figures, save the results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=53_424)
    parser.add_argument("--books", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None, help="keep the files here")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        run_once(args.out, args.users, args.books, args.seed)
        return

    with tempfile.TemporaryDirectory(prefix="goodbooks-bench-") as scratch:
        out = args.out or Path(scratch) / "generated"
        runs = []
        for i in range(args.repeats):
            runs.append(run_child(out, args.users, args.books, args.seed))
            print(f"run {i + 1}/{args.repeats}: {runs[-1]['seconds']:.1f} s, "
                  f"peak RSS {runs[-1]['peak_rss_mb']:.0f} MB", flush=True)
        seconds = statistics.median(r["seconds"] for r in runs)
        peak = statistics.median(r["peak_rss_mb"] for r in runs)
        cpu = statistics.median(r["cpu_seconds"] for r in runs)
        stages = {name: statistics.median(r["stages"][name] for r in runs)
                  for name in runs[0]["stages"]}
        print(f"\nmedian of {args.repeats}: {seconds:.1f} s wall ({cpu:.1f} s CPU), "
              f"peak RSS {peak:.0f} MB (budget {BUDGET_S:.0f} s, {BUDGET_RSS_MB:.0f} MB)")
        print("stages: " + ", ".join(f"{n} {s:.1f} s" for n, s in stages.items()))
        figures = measure(out)

    full_size = (args.users, args.books) == (53_424, 10_000)
    print(f"\n{'figure':<28}{'generated':>14}{'real':>14}")
    for name, value in figures.items():
        real = _number(TARGETS[name]) if full_size and name in TARGETS else ""
        print(f"{name:<28}{_number(value):>14}{real:>14}")
    results = {
        "parameters": {"users": args.users, "books": args.books, "seed": args.seed,
                       "repeats": args.repeats},
        "median_seconds": round(seconds, 2),
        "median_cpu_seconds": round(cpu, 2),
        "median_peak_rss_mb": round(peak, 1),
        "median_stage_seconds": {n: round(s, 2) for n, s in stages.items()},
        "runs": runs,
        "figures": {n: round(float(v), 4) for n, v in figures.items()},
        "targets": TARGETS if full_size else {},
    }
    path = REPO / "benchmarks" / "results" / "generate.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwritten to {path.relative_to(REPO)}")


def _number(value: float) -> str:
    """Whole numbers with thousands separators, others with two decimals."""
    return f"{int(value):,}" if float(value).is_integer() else f"{value:,.2f}"


def run_child(out: Path, users: int, books: int, seed: int) -> dict:
    """One generation in a fresh interpreter; returns what it measured about itself."""
    command = [sys.executable, str(Path(__file__).resolve()), "--child", "--out", str(out),
               "--users", str(users), "--books", str(books), "--seed", str(seed)]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def run_once(out: Path, users: int, books: int, seed: int) -> None:
    """Generate once and print wall time, CPU time, stage times and peak RSS as JSON."""
    seen: dict[str, list[float]] = {}
    started = time.perf_counter()

    def progress(stage: str, fraction: float) -> None:
        now = time.perf_counter() - started
        seen.setdefault(stage, [now, now])[1] = now

    generate_goodbooks(out, n_users=users, n_books=books, seed=seed, progress=progress)
    seconds = time.perf_counter() - started
    usage = resource.getrusage(resource.RUSAGE_SELF)
    # Each stage lasts from its first report to the next stage's first report.
    starts = sorted((first, name) for name, (first, _) in seen.items())
    stages = {name: (starts[i + 1][0] if i + 1 < len(starts) else seconds) - first
              for i, (first, name) in enumerate(starts)}
    print(json.dumps({
        "seconds": round(seconds, 2),
        "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 2),
        "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),  # ru_maxrss is in KiB on Linux
        "stages": {n: round(s, 2) for n, s in stages.items()},
    }))


def measure(directory: Path) -> dict[str, float]:
    """The figures of a generated directory that the real dataset is known by."""
    ratings = pd.read_csv(directory / RATINGS_FILE, engine="pyarrow")
    to_read = pd.read_csv(directory / TO_READ_FILE, engine="pyarrow")
    book_tags = pd.read_csv(directory / BOOK_TAGS_FILE, engine="pyarrow")
    n_tags = sum(1 for _ in open(directory / TAGS_FILE, encoding="utf-8")) - 1
    per_user = ratings.groupby("user_id").size()
    n_books = int(ratings["book_id"].max())
    per_book = ratings.groupby("book_id").size().reindex(range(1, n_books + 1), fill_value=0)
    share = ratings["rating"].value_counts(normalize=True).sort_index() * 100
    figures: dict[str, float] = {
        "users": per_user.size,
        "books": n_books,
        "ratings": len(ratings),
    }
    for what, counts in (("user", per_user), ("book", per_book)):
        q25, q50, q75 = np.percentile(counts, [25, 50, 75])
        figures |= {
            f"ratings per {what}: min": counts.min(),
            f"ratings per {what}: max": counts.max(),
            f"ratings per {what}: mean": counts.mean(),
        }
        if what == "user":
            figures[f"ratings per {what}: sd"] = counts.std()
        figures |= {
            f"ratings per {what}: q25": q25,
            f"ratings per {what}: median": q50,
            f"ratings per {what}: q75": q75,
        }
    figures["book 1 is the most rated"] = float(per_book.idxmax() == 1)
    for stars in range(1, 6):
        figures[f"rating {stars} (%)"] = share.get(stars, 0.0)
    figures["mean rating"] = ratings["rating"].mean()
    figures |= {
        "to_read pairs": len(to_read),
        "to_read readers": to_read["user_id"].nunique(),
        "to_read books": to_read["book_id"].nunique(),
        "book_tags rows": len(book_tags),
        "tags": n_tags,
    }
    return figures


if __name__ == "__main__":
    main()
