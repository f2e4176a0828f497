"""Tasks that acquire a goodbooks dataset, check it and write validated snapshots.

A lineage starts from a source (generated, downloaded or local files) with a full
validation; every later ingest takes what is new (inbox files, interaction-log events past
the watermark) onto the newest snapshot of that source (models.increment).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from models.datasets import (
    GOODBOOKS_LAYOUT,
    DatasetFiles,
    SourceLayout,
    locate_dataset,
    read_dataset_table,
)
from models.download import download_goodbooks
from models.event_log import EntryId, InteractionLog, parse_optional
from models.expectations import (
    ValidationConfig,
    ValidationOutcome,
    raise_for_critical,
    validate_tables,
)
from models.generator import TRUTH_FILE, generate_goodbooks
from models.generator.timeline import TIMELINE_VERSION
from models.inbox import InboxItem, archive_item, inbox_items, read_item, reject_item, strangers
from models.increment import (
    HELD,
    AcceptedItem,
    new_books,
    plan_next_snapshot,
)
from models.interactions import in_time_order
from models.schema import ALL_FILES, DatasetError, DataValidationError
from models.snapshot import (
    base_key,
    commit_snapshot,
    file_sha256,
    head_snapshot,
    list_snapshots,
    open_snapshot,
    prune_snapshots,
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
    moving: bool = False,
) -> str:
    """Generate goodbooks-shaped data once per parameter set (reused when already there)."""
    target = Path(out_dir)
    params = {"n_users": n_users, "n_books": n_books, "seed": seed,
              "books_csv": books_csv, "tags_csv": tags_csv,
              **({"moving": TIMELINE_VERSION} if moving else {})}
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
        moving=moving,
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
def locate_local_dataset(directory: str, layout: SourceLayout = GOODBOOKS_LAYOUT) -> str:
    """Check that a local directory holds at least the ratings and the catalogue."""
    files = locate_dataset(Path(directory), layout)
    log = get_run_logger()
    log.info("local dataset %s: absent optional files: %s", directory,
             ", ".join(files.absent) or "none")
    for name, why in files.ignored.items():
        log.warning("%s is left out: %s", name, why)
    return directory


@task(cache_policy=NO_CACHE)
def read_tables(dataset_dir: str, layout: SourceLayout = GOODBOOKS_LAYOUT
                ) -> dict[str, pd.DataFrame | None]:
    """Read every goodbooks file of a directory (None for an absent optional file)."""
    logger = get_run_logger()
    files = locate_dataset(Path(dataset_dir), layout)
    tables: dict[str, pd.DataFrame | None] = {}
    for file_name in ALL_FILES:
        frame = read_dataset_table(files, file_name)
        tables[table_name(file_name)] = frame
        if frame is not None:
            logger.info("read %s: %d rows", files.present[file_name].name, len(frame))
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
def source_checksums(dataset_dir: str, layout: SourceLayout = GOODBOOKS_LAYOUT
                     ) -> dict[str, str]:
    """sha256 of every goodbooks file of the source (and its layout): a lineage's base."""
    return _checksums(locate_dataset(Path(dataset_dir), layout))


def _checksums(files: DatasetFiles) -> dict[str, str]:
    sums = {name: file_sha256(path) for name, path in files.present.items()}
    if not files.layout.is_default:  # the same files read another way are another source
        sums["layout"] = files.layout.describe()
    return sums


@task(cache_policy=NO_CACHE)
def find_parent(processed_dir: str, checksums: dict[str, str]) -> str | None:
    """The newest snapshot grown from this source (None: start a lineage from it)."""
    log = get_run_logger()
    base = base_key(checksums)
    try:
        head, note = head_snapshot(Path(processed_dir))
    except DatasetError:
        log.info("no snapshot yet: the source starts a lineage")
        return None
    if note:
        log.warning(note)
    if head.base == base:
        return str(head.path)
    same = [s for s in list_snapshots(Path(processed_dir)) if s.base == base]
    if same:
        log.info("the newest snapshot %s comes from another source; continuing this "
                 "source's lineage from %s", head.snapshot_id, same[-1].snapshot_id)
        return str(same[-1].path)
    log.info("the source differs from every snapshot's (base %s): it starts a lineage", base)
    return None


@task(cache_policy=NO_CACHE)
def write_validated_snapshot(
    outcome: ValidationOutcome, dataset_dir: str, processed_dir: str, source: dict[str, object],
    layout: SourceLayout = GOODBOOKS_LAYOUT,
) -> str:
    """Write the cleaned tables (and quarantined rows) as a snapshot; returns its path.

    Ratings with timestamps are written in time order (ties keep their file order).
    """
    directory = Path(dataset_dir)
    files = locate_dataset(directory, layout)
    checksums = _checksums(files)
    tables = dict(outcome.tables)
    if tables.get("ratings") is not None:
        tables["ratings"] = in_time_order(tables["ratings"])
    snapshot = write_snapshot(
        tables,
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


@dataclass
class InboxIntake:
    """The inbox items judged by one ingest: taken, refused, or taken before."""

    accepted: list[AcceptedItem] = field(default_factory=list)
    rejected: list[dict[str, object]] = field(default_factory=list)
    already: list[InboxItem] = field(default_factory=list)
    reports: dict[str, dict[str, object]] = field(default_factory=dict)


@task(cache_policy=NO_CACHE)
def take_inbox(parent_path: str, inbox_dir: str, data_docs_dir: str,
               quarantine_max_ratio: float) -> InboxIntake:
    """Judge each inbox item on its own; refuse bad ones (moved aside with their report)."""
    log = get_run_logger()
    parent = open_snapshot(Path(parent_path))
    inbox = Path(inbox_dir)
    take, already = inbox_items(inbox, parent.base, set(parent.ingested_files))
    intake = InboxIntake(already=already)
    for stranger in strangers(inbox):
        log.warning("inbox: %s is not taken in: an item is a directory holding ratings.csv "
                    "(and optionally books.csv) or a .csv file of ratings", stranger)
    if not take:
        log.info("inbox %s: nothing new", inbox)
        return intake
    catalogue = parent.read("books")
    config = ValidationConfig.increment(Path(data_docs_dir), quarantine_max_ratio)
    for item in take:
        try:
            tables = read_item(item)
            # The file's ratings may point at the catalogue or at the file's own new books.
            reference = catalogue if tables.books is None else pd.concat(
                [catalogue, new_books(tables.books, catalogue)], ignore_index=True)
            outcome = validate_tables({"ratings": tables.ratings, "books": tables.books},
                                      config, reference_tables={"books": reference})
            raise_for_critical(outcome.report)
            books = outcome.tables.get("books")
        except (DatasetError, DataValidationError) as exc:
            report = reject_item(item, inbox, _rejection_report(item, exc))
            intake.rejected.append({"item": item.name, "report": str(report),
                                    "reason": str(exc).splitlines()[0]})
            log.warning("inbox item %s refused and moved aside; report: %s\n%s", item.name,
                        report, exc)
            continue
        intake.reports[item.name] = outcome.report.summary()
        intake.accepted.append(AcceptedItem(
            item=item, ratings=outcome.tables["ratings"], books=books,
            quarantine=outcome.quarantine.get("ratings"), truth=tables.truth))
        if tables.extra_files:
            log.info("inbox item %s: only ratings.csv and books.csv are taken in; left "
                     "aside: %s", item.name, ", ".join(tables.extra_files))
        log.info("inbox item %s: %d ratings pass their suite", item.name,
                 len(outcome.tables["ratings"]))
    return intake


def _rejection_report(item: InboxItem, error: Exception) -> str:
    return (f"# Inbox item `{item.name}` refused\n\nsha256 `{item.sha256}`\n\n"
            f"```\n{error}\n```\n\nNothing from it was ingested. Fix the file and drop it "
            "in the inbox again (a changed file is a new item).\n")


@dataclass
class LogIntake:
    """Events of the interaction log past the parent's watermark."""

    events: pd.DataFrame
    after: str | None
    through: str | None
    stopped: str | None = None
    report: dict[str, object] | None = None


@task(cache_policy=NO_CACHE)
def take_log(parent_path: str, log_dir: str, data_docs_dir: str) -> LogIntake:
    """Log events past the parent's watermark; stops before a damaged file (said loudly).

    Their rating rows pass the ratings suite as an inbox file would, as a report: the API
    validated each event already, and rows that do not fit (unknown books, repeats, stars
    outside 1-5) are held or quarantined row by row, so the log never blocks an ingest.
    """
    parent = open_snapshot(Path(parent_path))
    after = parse_optional(parent.log_watermark)
    read = InteractionLog(Path(log_dir)).read(after=after, strict=False)
    log = get_run_logger()
    if read.error:
        log.warning("%s. Taking the %d events before it; the rest waits for the next ingest",
                    read.error, len(read.events))
    log.info("interaction log %s: %d events past %s", log_dir, len(read.events),
             parent.log_watermark or "its start")
    rated = read.events[read.events["type"] == "rating"]
    report = None
    if len(rated):
        outcome = validate_tables(
            {"ratings": rated[["user_id", "book_id", "rating"]].reset_index(drop=True)},
            ValidationConfig.increment(Path(data_docs_dir), quarantine_max_ratio=1.0),
            reference_tables={"books": parent.read("books")})
        report = outcome.report.summary()
        for problem in [*outcome.report.failures, *outcome.report.warnings]:
            log.warning("rating events: %s (those rows are held or quarantined)",
                        problem.describe())
    through = read.through or after
    return LogIntake(events=read.events, after=parent.log_watermark,
                     through=str(through) if through else None, stopped=read.error,
                     report=report)


@task(cache_policy=NO_CACHE)
def write_next_snapshot(parent_path: str, inbox: InboxIntake, taken: LogIntake,
                        processed_dir: str) -> str:
    """Merge the new rows onto the parent and commit the next snapshot; returns its path."""
    log = get_run_logger()
    parent = open_snapshot(Path(parent_path))
    if not inbox.accepted and taken.events.empty and not parent.has(HELD):
        # Nothing to merge: the same rows; a new snapshot only if the watermark moved.
        if taken.through == parent.log_watermark:
            log.info("nothing new since snapshot %s", parent.snapshot_id)
            return str(parent.path)
    plan = plan_next_snapshot(parent, inbox.accepted, taken.events)
    ingested = dict(parent.ingested_files)
    for accepted in inbox.accepted:
        ingested[accepted.item.sha256] = {"name": accepted.item.name,
                                          "rows": int(len(accepted.ratings))}
    if plan.truth_note:
        log.warning(plan.truth_note)
    increment = {
        "inbox": [a.item.name for a in inbox.accepted],
        "rejected": inbox.rejected,
        "log": {"after": taken.after, "through": taken.through, "events": len(taken.events),
                "stopped": taken.stopped},
        "counts": plan.counts,
        "new_readers": plan.new_readers,
    }
    snapshot, new = commit_snapshot(
        Path(processed_dir), plan.tables,
        manifest={"source": parent.manifest.get("source"),
                  "checksums": parent.manifest.get("checksums", {}),
                  "parent": parent.snapshot_id,
                  "validation": {"passed": True, "items": inbox.reports,
                                 "log": taken.report},
                  "increment": increment,
                  "quarantined": {name.removeprefix("quarantine_"): snapshot_rows
                                  for name, snapshot_rows in _quarantined(plan).items()}},
        attachments=plan.attachments,
        identity={"base": parent.base, "log_watermark": taken.through,
                  "ingested_files": ingested},
        pairs=plan.pairs,
    )
    summary = ", ".join(f"{key} {value:,}" for key, value in plan.counts.items() if value)
    if new:
        log.info("snapshot %s = %s + %s", snapshot.snapshot_id, parent.snapshot_id,
                 summary or "nothing new (the watermark moved)")
    else:
        log.info("snapshot %s already holds these inputs: nothing written", snapshot.snapshot_id)
    create_markdown_artifact(key="ingest-increment", markdown=_increment_markdown(
        snapshot.snapshot_id, parent.snapshot_id, increment, new),
        description=f"What snapshot {snapshot.snapshot_id} took in")
    return str(snapshot.path)


def _quarantined(plan) -> dict[str, int]:  # noqa: ANN001 - a NextSnapshot
    counts: dict[str, int] = {}
    for name, parts in plan.tables.items():
        if name.startswith("quarantine_") and parts:
            counts[name] = sum(p.rows if hasattr(p, "rows") else len(p) for p in parts)
    return counts


def _increment_markdown(snapshot_id: str, parent_id: str, increment: dict[str, Any],
                        new: bool) -> str:
    log_info = increment["log"]
    lines = [f"# Ingest: snapshot `{snapshot_id}`", "",
             f"{'New snapshot' if new else 'Existing snapshot (same inputs)'}, grown from "
             f"`{parent_id}`.", "",
             f"* interaction log: {log_info['events']:,} events past "
             f"`{log_info['after'] or 'the start'}`, through `{log_info['through']}`"]
    if log_info.get("stopped"):
        lines.append(f"* **log read stopped**: {log_info['stopped']}")
    lines.append(f"* inbox items taken in: {', '.join(increment['inbox']) or 'none'}")
    for rejected in increment["rejected"]:
        lines.append(f"* **refused** `{rejected['item']}`: {rejected['reason']} "
                     f"(report: `{rejected['report']}`)")
    lines += ["", "| what | rows |", "|---|---|"]
    lines += [f"| {key} | {value:,} |" for key, value in increment["counts"].items()]
    return "\n".join(lines) + "\n"


@task(cache_policy=NO_CACHE)
def archive_inbox(inbox: InboxIntake, inbox_dir: str, snapshot_path: str) -> list[str]:
    """Move items the snapshot now holds (and ones held before) into archive/<base>/."""
    snapshot = open_snapshot(Path(snapshot_path))
    held = set(snapshot.ingested_files)
    moved = []
    for item in [*(a.item for a in inbox.accepted), *inbox.already]:
        if item.sha256 in held:
            target = archive_item(item, Path(inbox_dir), snapshot.base)
            if target is not None:
                moved.append(str(target))
    if moved:
        get_run_logger().info("archived %d inbox item(s)", len(moved))
    return moved


@task(cache_policy=NO_CACHE)
def prune_old_snapshots(processed_dir: str, keep: int, tracking_uri: str,
                        model_name: str) -> list[str]:
    """Delete snapshots past the retention, never one a registered model version names."""
    log = get_run_logger()
    if len(list_snapshots(Path(processed_dir))) <= keep:
        return []  # nothing past the retention: no need to ask the registry
    import mlflow

    try:
        versions = mlflow.MlflowClient(tracking_uri).search_model_versions(
            f"name='{model_name}'")
    except mlflow.exceptions.MlflowException as exc:
        log.warning("snapshots not pruned: the registry cannot say which are in use (%s)", exc)
        return []
    protected = {str(v.tags.get("snapshot")) for v in versions if v.tags.get("snapshot")}
    removed = prune_snapshots(Path(processed_dir), keep, protected)
    if removed:
        log.info("pruned %d snapshot(s) past the retention of %d: %s", len(removed), keep,
                 ", ".join(removed))
    return removed


@task(cache_policy=NO_CACHE)
def covers_judged(snapshot_path: str, through: str | None) -> bool | None:
    """Whether the snapshot's log watermark reaches ``through`` (None: nothing to check)."""
    if not through:
        return None
    watermark = open_snapshot(Path(snapshot_path)).log_watermark
    return watermark is not None and EntryId.parse(watermark) >= EntryId.parse(through)
