"""Tasks that acquire a goodbooks dataset, check it and write the validated snapshot."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pandas as pd
from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from models.datasets import locate_dataset
from models.download import download_goodbooks
from models.expectations import (
    ValidationConfig,
    ValidationOutcome,
    raise_for_critical,
    validate_tables,
)
from models.generator import TRUTH_FILE, generate_goodbooks
from models.schema import ALL_FILES
from models.snapshot import file_sha256, read_csv, table_name, write_snapshot


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
def read_tables(dataset_dir: str) -> dict[str, pd.DataFrame | None]:
    """Read every goodbooks file of a directory (None for an absent optional file)."""
    logger = get_run_logger()
    files = locate_dataset(Path(dataset_dir))
    tables: dict[str, pd.DataFrame | None] = {}
    for file_name in ALL_FILES:
        path = files.present.get(file_name)
        tables[table_name(file_name)] = read_csv(path) if path is not None else None
        if path is not None:
            logger.info("read %s: %d rows", file_name, len(tables[table_name(file_name)]))
        else:
            logger.info("%s is absent (optional)", file_name)
    return tables


@task(cache_policy=NO_CACHE)
def validate_tables_task(
    tables: dict[str, pd.DataFrame | None],
    data_docs_dir: str,
    quarantine_max_ratio: float,
    min_ratings_per_user: int,
) -> ValidationOutcome:
    """Run the expectation suites; publish the report as an artifact; raise if critical."""
    config = ValidationConfig(
        data_docs_dir=Path(data_docs_dir),
        quarantine_max_ratio=quarantine_max_ratio,
        min_ratings_per_user=min_ratings_per_user,
    )
    outcome = validate_tables(tables, config)
    report = outcome.report
    create_markdown_artifact(
        key="data-validation",
        markdown=report.to_markdown(),
        description="Great Expectations results for every goodbooks file",
    )
    logger = get_run_logger()
    logger.info("validation: %d checks, %d failed, %d warnings, %d quarantined rows; "
                "Data Docs: %s", len(report.checks), len(report.failures),
                len(report.warnings), sum(report.quarantined.values()), report.data_docs_index)
    raise_for_critical(report)
    return outcome


@task(cache_policy=NO_CACHE)
def write_validated_snapshot(
    outcome: ValidationOutcome, dataset_dir: str, processed_dir: str, source: dict[str, object]
) -> str:
    """Write the cleaned tables (and quarantined rows) as a snapshot; returns its path."""
    directory = Path(dataset_dir)
    files = locate_dataset(directory)
    checksums = {name: file_sha256(path) for name, path in files.present.items()}
    snapshot = write_snapshot(
        outcome.tables,
        Path(processed_dir),
        source={**source, "directory": str(directory)},
        checksums=checksums,
        validation=outcome.report.summary(),
        quarantine={name: frame for name, frame in outcome.quarantine.items()
                    if frame is not None and len(frame)},
        attachments=[p for p in (directory / TRUTH_FILE,) if p.exists()],
    )
    get_run_logger().info("snapshot %s written to %s", snapshot.snapshot_id, snapshot.path)
    return str(snapshot.path)
