"""The ingest flow: acquire a dataset, check every file, write a validated snapshot."""

from __future__ import annotations

from prefect import flow

from settings import get_settings
from tasks.data import (
    download_dataset,
    generate_dataset,
    locate_local_dataset,
    read_tables,
    validate_tables_task,
    write_validated_snapshot,
)


@flow(name="ingest", log_prints=True)
def ingest_flow(
    source: str | None = None,
    n_users: int | None = None,
    n_books: int | None = None,
    local_dir: str | None = None,
) -> str:
    """Acquire goodbooks data (generate / download / local), validate it, snapshot it.

    Args:
        source: "generate", "download" or "local" (default: GOODBOOKS_DATASET_SOURCE).
        n_users: readers to generate (default: GOODBOOKS_DEMO_USERS; 53424 is full size).
        n_books: books to generate (default: GOODBOOKS_DEMO_BOOKS).
        local_dir: directory with ratings.csv and books.csv for source "local".

    Returns the snapshot directory. A broken critical expectation fails the run, writes
    nothing, and leaves the validation report (with the Data Docs path) as an artifact.
    """
    s = get_settings()
    source = source or s.dataset_source
    if source == "generate":
        users, books = n_users or s.demo_users, n_books or s.demo_books
        dataset_dir = generate_dataset(
            str(s.generated_dir / f"u{users}-b{books}-s{s.seed}"),
            users, books, s.seed,
            str(s.books_csv) if s.books_csv else None,
            str(s.tags_csv) if s.tags_csv else None,
        )
        details: dict[str, object] = {"kind": "generate", "n_users": users, "n_books": books,
                                      "seed": s.seed}
    elif source == "download":
        dataset_dir = download_dataset(str(s.raw_dir), s.dataset_url, s.download_timeout_s)
        details = {"kind": "download", "url": s.dataset_url}
    elif source == "local":
        directory = local_dir or (str(s.local_dataset_dir) if s.local_dataset_dir else None)
        if directory is None:
            raise ValueError("source 'local' needs local_dir or GOODBOOKS_LOCAL_DATASET_DIR")
        dataset_dir = locate_local_dataset(directory)
        details = {"kind": "local"}
    else:
        raise ValueError(f"source must be generate, download or local, not {source!r}")
    details["directory"] = str(dataset_dir)  # where a continuation can build on
    tables = read_tables(dataset_dir)
    outcome = validate_tables_task(tables, str(s.data_docs_dir), s.quarantine_max_ratio,
                                   s.min_ratings_per_user)
    return write_validated_snapshot(outcome, dataset_dir, str(s.processed_dir), details)
