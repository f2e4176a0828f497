"""Time and memory of the ingest validation at full goodbooks size, beside a pandas floor.

    .venv/bin/python benchmarks/validation.py [--data-dir DIR] [--repeats 3] [--no-docs]
        [--baseline-ref REF]

Without --data-dir the project's generator writes a full-size dataset (53,424 readers,
10,000 books, seed 42) under data/bench/ once and later runs reuse it. Each repeat runs
``validate_tables`` (Great Expectations, Data Docs into a temporary directory) and the same
rules written directly in pandas, which is the floor: the ratio is the price of GX. Memory
is the resident set size sampled every 5 ms while the validation runs: its peak, and its
growth over the RSS at the start (the tables are already loaded). Medians are printed and
written to benchmarks/results/validation.json; both sides' failing-row counts are compared.

With --baseline-ref, each repeat also times ``validate_tables`` as it was at that commit, in
the same process on the same tables, alternating which goes first, and the medians' ratio
current / baseline is printed. The baseline is read with ``git show REF:<path>`` (the
module ``models/expectations.py`` or the package ``models/expectations/``) into a temporary
directory and imported under another name; the modules it imports besides itself
(``models.schema``) are the working tree's.
"""

from __future__ import annotations

import argparse
import atexit
import gc
import importlib
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run as a script from anywhere: import this repository's models

from models.expectations import (  # noqa: E402
    BOOKS_REQUIRED,
    LANGUAGE_CODE_PATTERN,
    MIN_PUBLICATION_YEAR,
    TABLES,
    CheckResult,
    ValidationConfig,
    validate_tables,
)
from models.generator import generate_goodbooks  # noqa: E402
from models.schema import (  # noqa: E402
    BOOK_TAGS_COLUMNS,
    RATINGS_COLUMNS,
    TAGS_COLUMNS,
    TO_READ_COLUMNS,
)

FULL_USERS, FULL_BOOKS, SEED = 53_424, 10_000, 42
T = TypeVar("T")

# What the suites require of each table, restated for the floor.
REQUIRED = {"ratings": RATINGS_COLUMNS, "books": BOOKS_REQUIRED, "tags": TAGS_COLUMNS,
            "book_tags": BOOK_TAGS_COLUMNS, "to_read": TO_READ_COLUMNS}
WHOLE = {"ratings": RATINGS_COLUMNS, "books": ("book_id", "goodreads_book_id"),
         "tags": ("tag_id",), "book_tags": BOOK_TAGS_COLUMNS, "to_read": TO_READ_COLUMNS}
NOT_NULL = {**WHOLE, "books": ("book_id", "goodreads_book_id", "title", "authors"),
            "tags": ("tag_id", "tag_name")}
BASELINE_MODULE = "baseline_expectations"


def main() -> None:
    """Parse arguments, load the tables, run the repeats and print the medians."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="an existing goodbooks directory (default: generate under data/)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-docs", action="store_true", help="skip building Data Docs")
    parser.add_argument("--baseline-ref", default=None,
                        help="also time validate_tables as it was at this git commit")
    args = parser.parse_args()

    baseline = load_baseline(args.baseline_ref) if args.baseline_ref else None
    data_dir = args.data_dir or ensure_full_dataset(REPO / "data" / "bench" / "goodbooks-full")
    started = time.perf_counter()
    tables = {name: pd.read_csv(data_dir / f"{name}.csv", engine="pyarrow")
              for name in TABLES if (data_dir / f"{name}.csv").exists()}
    read_s = time.perf_counter() - started
    print(f"read {', '.join(f'{n}={len(f):,}' for n, f in tables.items())} in {read_s:.1f} s")

    loaded = sum(int(f.memory_usage(deep=True).sum()) for f in tables.values())
    gx_s, floor_s, gx_cpu, floor_cpu, gx_growth, floor_growth, gx_peak = ([] for _ in range(7))
    base_s: list[float] = []
    base_cpu: list[float] = []
    for repeat in range(args.repeats):
        # The baseline goes first in even repeats and second in odd ones, so neither side
        # always inherits the other's warm caches or garbage.
        if baseline is not None and repeat % 2 == 0:
            base_s.append(time_baseline(baseline, tables, args.no_docs, base_cpu))
        with tempfile.TemporaryDirectory() as docs:
            config = ValidationConfig(data_docs_dir=None if args.no_docs else Path(docs))
            seconds, cpu, start, peak, outcome = measure(
                lambda c=config: validate_tables(tables, c))
        gx_s.append(seconds)
        gx_cpu.append(cpu)
        gx_growth.append(peak - start)
        gx_peak.append(peak)
        passed, checks = outcome.report.passed, outcome.report.checks
        del outcome  # its cleaned tables are the inputs, but let GX's objects go
        if baseline is not None and repeat % 2 == 1:
            base_s.append(time_baseline(baseline, tables, args.no_docs, base_cpu))
        floor_seconds, floor_cpu_s, floor_start, floor_peak, floor_counts = measure(
            lambda c=config: pandas_floor(tables, c))
        floor_s.append(floor_seconds)
        floor_cpu.append(floor_cpu_s)
        floor_growth.append(floor_peak - floor_start)
        print(f"repeat {repeat + 1}: GX {seconds:.2f} s (CPU {cpu:.2f} s, "
              f"+{(peak - start) / 2**20:,.0f} MiB, peak RSS {peak / 2**20:,.0f} MiB), "
              f"pandas {floor_seconds:.2f} s (CPU {floor_cpu_s:.2f} s, "
              f"+{(floor_peak - floor_start) / 2**20:,.0f} MiB), passed={passed}"
              + (f"; baseline {args.baseline_ref} {base_s[-1]:.2f} s (CPU {base_cpu[-1]:.2f} s)"
                 if baseline is not None else ""))
        compare_counts(checks, floor_counts)

    gx_median, floor_median = statistics.median(gx_s), statistics.median(floor_s)
    results: dict[str, Any] = {
        "dataset": str(data_dir),
        "rows": {n: len(f) for n, f in tables.items()},
        "cpus": os.cpu_count(),
        "repeats": args.repeats,
        "data_docs": not args.no_docs,
        "commit": git("describe", "--always", "--dirty").strip(),
        "read_csv_s": round(read_s, 2),
        "tables_in_memory_mib": round(loaded / 2**20),
        "gx_s": [round(x, 2) for x in gx_s],
        "gx_median_s": round(gx_median, 2),
        "pandas_median_s": round(floor_median, 2),
        "ratio": round(gx_median / floor_median, 2),
        "gx_cpu_median_s": round(statistics.median(gx_cpu), 2),
        "pandas_cpu_median_s": round(statistics.median(floor_cpu), 2),
        "cpu_ratio": round(statistics.median(gx_cpu) / statistics.median(floor_cpu), 2),
        "load_average_1min": round(os.getloadavg()[0], 2),
        "gx_rss_growth_mib": round(statistics.median(gx_growth) / 2**20),
        "gx_peak_rss_mib": round(statistics.median(gx_peak) / 2**20),
        "pandas_rss_growth_mib": round(statistics.median(floor_growth) / 2**20),
    }
    if baseline is not None:
        base_median = statistics.median(base_s)
        results.update({
            "baseline_ref": args.baseline_ref,
            "baseline_s": [round(x, 2) for x in base_s],
            "baseline_median_s": round(base_median, 2),
            "baseline_cpu_median_s": round(statistics.median(base_cpu), 2),
            "ratio_to_baseline": round(gx_median / base_median, 2),
            "cpu_ratio_to_baseline": round(
                statistics.median(gx_cpu) / statistics.median(base_cpu), 2),
        })
        print(f"median: this tree {gx_median:.2f} s, baseline {args.baseline_ref} "
              f"{base_median:.2f} s: ratio {gx_median / base_median:.2f}x")
    print(json.dumps(results, indent=2))
    out = REPO / "benchmarks" / "results" / "validation.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")


def git(*args: str) -> str:
    """The output of a git command run in this repository."""
    return subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True,
                          check=True).stdout


def load_baseline(ref: str) -> ModuleType:
    """models.expectations as it was at `ref`, imported as BASELINE_MODULE.

    Its files are read with ``git show`` into a temporary directory, with every
    ``models.expectations`` in them renamed, so a package's imports of its own modules
    resolve to the baseline's and not to this tree's.
    """
    paths = git("ls-tree", "-r", "--name-only", ref, "--", "models/expectations.py",
                "models/expectations").split()
    sources = [p for p in paths if p.endswith(".py")]
    if not sources:
        raise SystemExit(f"{ref} has no models/expectations.py nor models/expectations/")
    root = Path(tempfile.mkdtemp(prefix="expectations-baseline-"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    for path in sources:
        target = root / (BASELINE_MODULE + path.removeprefix("models/expectations"))
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(git("show", f"{ref}:{path}").replace("models.expectations",
                                                                BASELINE_MODULE))
    sys.path.insert(0, str(root))
    module = importlib.import_module(BASELINE_MODULE)
    print(f"baseline: models.expectations at {ref} "
          f"({git('rev-parse', '--short', ref).strip()}), {len(sources)} file(s)")
    return module


def time_baseline(baseline: ModuleType, tables: Mapping[str, pd.DataFrame], no_docs: bool,
                  cpu_times: list[float]) -> float:
    """Wall time of the baseline's validate_tables on the tables (its CPU time appended)."""
    with tempfile.TemporaryDirectory() as docs:
        config = baseline.ValidationConfig(data_docs_dir=None if no_docs else Path(docs))
        seconds, cpu, _, _, outcome = measure(
            lambda: baseline.validate_tables(tables, config))
    del outcome
    cpu_times.append(cpu)
    return seconds


def ensure_full_dataset(directory: Path) -> Path:
    """Generate the full-size dataset once; later runs reuse it."""
    if not (directory / "generator.json").exists():
        print(f"generating {FULL_USERS:,} readers x {FULL_BOOKS:,} books into {directory} ...")
        generate_goodbooks(directory, n_users=FULL_USERS, n_books=FULL_BOOKS, seed=SEED)
    return directory


def rss_bytes() -> int:
    """Resident set size of this process now (Linux /proc; 0 where unavailable)."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return 0


@contextmanager
def rss_sampler(period_s: float = 0.005) -> Iterator[list[int]]:
    """Sample RSS in a thread while the block runs; yields a list holding the peak."""
    peak = [rss_bytes()]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(period_s):
            peak[0] = max(peak[0], rss_bytes())

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield peak
    finally:
        done.set()
        thread.join()


def measure(run: Callable[[], T]) -> tuple[float, float, int, int, T]:
    """Wall time, CPU time, RSS at the start, peak RSS during, and the result of one call."""
    gc.collect()  # leave earlier repeats' garbage out of this call's peak
    start = rss_bytes()
    with rss_sampler() as peak:
        started, cpu_started = time.perf_counter(), time.process_time()
        result = run()
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    return seconds, cpu, start, max(peak[0], start), result


# --- the floor: the same rules written directly in pandas ---------------------------------


def whole_or_null(values: pd.Series) -> pd.Series:
    """True where null or a whole number."""
    if pd.api.types.is_integer_dtype(values.dtype):
        return pd.Series(True, index=values.index)
    numeric = pd.to_numeric(values, errors="coerce").astype("float64")
    return values.isna() | (np.isfinite(numeric) & (numeric == np.floor(numeric)))


def repeated_pairs(first: pd.Series, second: pd.Series) -> int:
    """How many rows repeat an earlier (first, second) pair (sorted int64 keys)."""
    a, b = first.to_numpy(np.int64), second.to_numpy(np.int64)
    key = (a - a.min()) * (int(b.max()) - int(b.min()) + 1) + (b - b.min())
    ordered = np.sort(key)
    return int(np.count_nonzero(ordered[1:] == ordered[:-1]))


def pandas_floor(tables: Mapping[str, pd.DataFrame], config: ValidationConfig) -> dict[str, int]:
    """Failing-row counts by 'table.rule' for the row-level rules of the suites."""
    counts: dict[str, int] = {}
    books, tags = tables.get("books"), tables.get("tags")
    for name, frame in tables.items():
        counts[f"{name}.columns_present"] = int(not set(REQUIRED[name]) <= set(frame.columns))
        types_ok = pd.Series(True, index=frame.index)
        for column in WHOLE[name]:
            types_ok &= whole_or_null(frame[column])
        if name == "books":
            year = frame["original_publication_year"]
            types_ok &= year.isna() | pd.to_numeric(year, errors="coerce").notna()
        counts[f"{name}.column_types"] = int((~types_ok).sum())
        for column in NOT_NULL[name]:
            counts[f"{name}.{column}_not_null"] = int(frame[column].isna().sum())
        low, high = config.row_bounds.get(name, (0, len(frame)))
        counts[f"{name}.row_count_in_bounds"] = int(not low <= len(frame) <= high)
        if name in ("ratings", "to_read"):
            counts[f"{name}.user_id_positive"] = int((frame["user_id"] < 1).sum())
            counts[f"{name}.book_id_positive"] = int((frame["book_id"] < 1).sum())
            counts[f"{name}.user_book_pair_unique"] = repeated_pairs(frame["user_id"],
                                                                     frame["book_id"])
            if books is not None:
                counts[f"{name}.book_id_in_books"] = int(
                    (~frame["book_id"].isin(books["book_id"])).sum())
        if name == "ratings":
            counts["ratings.rating_1_to_5"] = int((~frame["rating"].between(1, 5)).sum())
            per_user = frame["user_id"].value_counts()
            counts["ratings.ratings_per_user_at_least_min"] = int(
                (per_user < (config.min_ratings_per_user or 0)).sum())
            shares = frame["rating"].value_counts(normalize=True)
            bands = config.rating_share_bands or {}
            counts["ratings.rating_mix_within_bands"] = sum(
                not low <= shares.get(v, 0.0) <= high for v, (low, high) in bands.items())
        if name == "books":
            for column in ("book_id", "goodreads_book_id"):
                counts[f"books.{column}_positive"] = int((frame[column] < 1).sum())
                counts[f"books.{column}_unique"] = int(frame[column].duplicated(keep=False).sum())
            year = frame["original_publication_year"]
            latest = pd.Timestamp.now().year + 1
            counts["books.publication_year_plausible"] = int(
                (year.notna() & ~year.between(MIN_PUBLICATION_YEAR, latest)).sum())
            codes = frame["language_code"].dropna().astype(str)
            pattern = re.compile(LANGUAGE_CODE_PATTERN)
            counts["books.language_code_well_formed"] = int(
                (~codes.str.match(pattern)).sum())
        if name == "tags":
            counts["tags.tag_id_non_negative"] = int((frame["tag_id"] < 0).sum())
            counts["tags.tag_id_unique"] = int(frame["tag_id"].duplicated(keep=False).sum())
            counts["tags.tag_name_unique"] = int(frame["tag_name"].duplicated(keep=False).sum())
        if name == "book_tags":
            counts["book_tags.goodreads_book_id_positive"] = int(
                (frame["goodreads_book_id"] < 1).sum())
            counts["book_tags.tag_id_non_negative"] = int((frame["tag_id"] < 0).sum())
            counts["book_tags.count_non_negative"] = int((frame["count"] < 0).sum())
            counts["book_tags.goodreads_book_tag_pair_unique"] = repeated_pairs(
                frame["goodreads_book_id"], frame["tag_id"])
            if books is not None:
                counts["book_tags.goodreads_book_id_in_books"] = int(
                    (~frame["goodreads_book_id"].isin(books["goodreads_book_id"])).sum())
            if tags is not None:
                counts["book_tags.tag_id_in_tags"] = int(
                    (~frame["tag_id"].isin(tags["tag_id"])).sum())
    return counts


def compare_counts(checks: Iterable[CheckResult], floor: Mapping[str, int]) -> None:
    """Warn where GX and the floor disagree on a rule both ran (a cross-check of both)."""
    for check in checks:
        key = f"{check.table}.{check.rule}"
        gx_count = check.unexpected_count
        if gx_count is None:
            gx_count = int(check.success is False)
        if key in floor and floor[key] != gx_count:
            print(f"  mismatch {key}: GX {gx_count}, pandas {floor[key]}")


if __name__ == "__main__":
    main()
