"""The ingest flow: the next snapshot = the newest one of the source + what is new."""

from __future__ import annotations

from prefect import flow

from models.datasets import GOODBOOKS_LAYOUT, SourceLayout
from settings import get_settings
from tasks.data import (
    archive_inbox,
    download_dataset,
    find_parent,
    generate_dataset,
    locate_local_dataset,
    prune_old_snapshots,
    read_tables,
    source_checksums,
    take_inbox,
    take_log,
    validate_tables_task,
    write_next_snapshot,
    write_validated_snapshot,
)


@flow(name="ingest", log_prints=True)
def ingest_flow(
    source: str | None = None,
    n_users: int | None = None,
    n_books: int | None = None,
    local_dir: str | None = None,
    full: bool = False,
) -> str:
    """Build the next snapshot: the source's newest snapshot plus inbox files and new events.

    The first ingest of a source validates it whole and starts its lineage; later ones
    take in what is new (inbox items, each judged by the same suites; interaction-log
    events past the watermark) without copying what the previous snapshot holds.

    Args:
        source: "generate", "download" or "local" (default: GOODBOOKS_DATASET_SOURCE).
        n_users: readers to generate (default: GOODBOOKS_DEMO_USERS; 53424 is full size).
        n_books: books to generate (default: GOODBOOKS_DEMO_BOOKS).
        local_dir: directory with ratings.csv and books.csv for source "local" (other
            names through GOODBOOKS_LOCAL_COLUMNS, GOODBOOKS_LOCAL_BOOKS_FILE,
            GOODBOOKS_LOCAL_HALF_STARS).
        full: validate the source whole and start its lineage again (then take in the
            whole interaction log and the inbox).

    Returns the snapshot directory. A source that breaks a critical expectation fails the
    run and writes nothing (the report is an artifact); a bad inbox item is refused and
    moved aside with its report while the good ones go in.
    """
    s = get_settings()
    source = source or s.dataset_source
    layout = GOODBOOKS_LAYOUT
    if source == "generate":
        users, books = n_users or s.demo_users, n_books or s.demo_books
        dataset_dir = generate_dataset(
            str(s.generated_dir / (f"u{users}-b{books}-s{s.seed}"
                                   + ("-moving" if s.generated_moving else ""))),
            users, books, s.seed,
            str(s.books_csv) if s.books_csv else None,
            str(s.tags_csv) if s.tags_csv else None,
            s.generated_moving,
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
        layout = SourceLayout(columns=s.local_columns, books_file=s.local_books_file,
                              half_stars=s.local_half_stars)
        dataset_dir = locate_local_dataset(directory, layout)
        details = {"kind": "local"}
        if not layout.is_default:
            details["layout"] = layout.describe()
    else:
        raise ValueError(f"source must be generate, download or local, not {source!r}")
    details["directory"] = str(dataset_dir)  # where a continuation can build on
    checksums = source_checksums(dataset_dir, layout)
    parent = None if full else find_parent(str(s.processed_dir), checksums)
    if parent is None:
        tables = read_tables(dataset_dir, layout)
        outcome = validate_tables_task(tables, str(s.data_docs_dir), s.quarantine_max_ratio,
                                       s.min_ratings_per_user)
        parent = write_validated_snapshot(outcome, dataset_dir, str(s.processed_dir), details,
                                          layout)
    inbox = take_inbox(parent, str(s.inbox_path), str(s.data_docs_dir), s.quarantine_max_ratio)
    events = take_log(parent, str(s.event_log_path), str(s.data_docs_dir))
    snapshot = write_next_snapshot(parent, inbox, events, str(s.processed_dir))
    archive_inbox(inbox, str(s.inbox_path), snapshot)
    prune_old_snapshots(str(s.processed_dir), s.snapshot_retention, s.tracking_uri,
                        s.model_name)
    return snapshot
