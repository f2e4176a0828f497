"""Tasks that acquire a goodbooks dataset, check it and write the validated snapshot."""

from __future__ import annotations

import json
import time
from pathlib import Path

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from models.datasets import locate_dataset
from models.download import download_goodbooks
from models.generator import TRUTH_FILE, generate_goodbooks
from models.schema import ALL_FILES, BOOKS_FILE, RATINGS_FILE, DataValidationError
from models.snapshot import (
    check_ratings_values,
    check_structure,
    file_sha256,
    read_csv,
    table_name,
    write_snapshot,
)


class ProgressLog:
    """Turns (stage, fraction) callbacks into a log line every 10% per stage."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.logger = get_run_logger()
        self.marks: dict[str, int] = {}
        self.started = time.perf_counter()

    def __call__(self, stage: str, fraction: float) -> None:
        step = int(min(max(fraction, 0.0), 1.0) * 10)
        if self.marks.get(stage, -1) < step:
            self.marks[stage] = step
            elapsed = time.perf_counter() - self.started
            self.logger.info("%s: %s %3d%% (%.1f s)", self.what, stage, step * 10, elapsed)


@task(retries=2, retry_delay_seconds=[1, 5], cache_policy=NO_CACHE)
def generate_dataset(
    out_dir: str,
    n_users: int,
    n_books: int,
    seed: int,
    books_csv: str | None = None,
    tags_csv: str | None = None,
) -> str:
    """Generate goodbooks-shaped data once per parameter set (reused when already there)."""
    target = Path(out_dir)
    params = {"n_users": n_users, "n_books": n_books, "seed": seed,
              "books_csv": books_csv, "tags_csv": tags_csv}
    stamp = target / "params.json"
    if stamp.exists() and json.loads(stamp.read_text()) == params:
        get_run_logger().info("generated dataset already at %s (same parameters)", target)
        return str(target)
    generate_goodbooks(
        target,
        n_users=n_users,
        n_books=n_books,
        seed=seed,
        books_csv=Path(books_csv) if books_csv else None,
        tags_csv=Path(tags_csv) if tags_csv else None,
        progress=ProgressLog("generate"),
    )
    stamp.write_text(json.dumps(params))
    return str(target)


@task(retries=3, retry_delay_seconds=[2, 10, 30], cache_policy=NO_CACHE)
def download_dataset(raw_dir: str, base_url: str, timeout_s: float) -> str:
    """Fetch the real goodbooks-10k files (cached, resumable, checksummed) into raw_dir."""
    download_goodbooks(
        Path(raw_dir), base_url=base_url, timeout_s=timeout_s, progress=ProgressLog("download")
    )
    return raw_dir


@task(cache_policy=NO_CACHE)
def locate_local_dataset(directory: str) -> str:
    """Check that a local directory holds at least ratings.csv and books.csv."""
    files = locate_dataset(Path(directory))
    get_run_logger().info("local dataset %s: absent optional files: %s", directory,
                          ", ".join(files.absent) or "none")
    return directory


@task(cache_policy=NO_CACHE)
def check_and_snapshot(dataset_dir: str, processed_dir: str, source: dict[str, object]) -> str:
    """Read every present file, check it, and write the Parquet snapshot; returns its path.

    Any broken rule raises DataValidationError before anything is written.
    """
    logger = get_run_logger()
    directory = Path(dataset_dir)
    tables, checksums, absent = {}, {}, []
    for file_name in ALL_FILES:
        path = directory / file_name
        if not path.exists():
            if file_name in (RATINGS_FILE, BOOKS_FILE):
                raise DataValidationError(f"{path}: required file is missing")
            absent.append(file_name)
            continue
        name = table_name(file_name)
        tables[name] = check_structure(name, read_csv(path), path)
        checksums[file_name] = file_sha256(path)
        logger.info("read %s: %d rows", file_name, len(tables[name]))
    check_ratings_values(tables["ratings"], tables["books"])
    snapshot = write_snapshot(
        tables,
        Path(processed_dir),
        source={**source, "directory": str(directory)},
        checksums=checksums,
        validation={"passed": True, "absent_files": absent},
        attachments=[p for p in (directory / TRUTH_FILE,) if p.exists()],
    )
    logger.info("snapshot %s written to %s", snapshot.snapshot_id, snapshot.path)
    return str(snapshot.path)
