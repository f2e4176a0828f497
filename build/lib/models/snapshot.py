"""Validated snapshots: content-addressed, grown night by night, never copied.

A snapshot is validated data under ``<processed>/<snapshot_id>/``: every table as an ordered
list of Parquet segments (``ratings/0000-<sha>.parquet``, ``ratings/0001-<sha>.parquet``,
...) and a ``manifest.json`` (source, row counts, segment checksums, the watermark of the
interaction log and the inbox files it has taken in, validation summary). The next
snapshot is the previous one plus what is new: its existing segments are hard links to the
previous snapshot's files (no bytes copied) and the new rows are one more segment.

The id is a hash of the content (segments, attachments, watermark, ingested files), so the
same inputs give the same id and no second copy. ``HEAD`` names the newest snapshot. A
snapshot directory appears only when complete: it is built under a temporary name and
renamed into place; removing one by hand never breaks another (each holds its own links).
Older snapshots written as one ``<table>.parquet`` file per table are read as well.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from models.interactions import sorted_distinct
from models.schema import DatasetError

MANIFEST = "manifest.json"
HEAD = "HEAD"
# Derived from the ratings (not part of the id): every (reader, book) pair as one sorted
# int64 key, so the next ingest checks new ratings against millions without reading them.
PAIRS_INDEX = "pairs.npy"
FORMAT = 2
EXAMPLES = 5
# Past this many segments a table is rewritten as one (reading hundreds of small files
# costs more than rewriting them once).
MAX_SEGMENTS = 32
_PARTIAL_PREFIX = ".partial-"


def table_name(file_name: str) -> str:
    """'book_tags.csv' → 'book_tags'."""
    return file_name.removesuffix(".csv")


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_csv(path: Path) -> pd.DataFrame:
    """Read one goodbooks CSV as text-typed columns are inferred; errors name the file."""
    try:
        return pd.read_csv(path, engine="pyarrow")
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise DatasetError(f"{path}: cannot be read as CSV ({exc})") from exc


@dataclass(frozen=True)
class Segment:
    """One Parquet file of a table: where it is, its checksum and its rows."""

    path: Path
    sha256: str
    rows: int


@dataclass(frozen=True)
class Snapshot:
    """A validated, immutable copy of a dataset."""

    snapshot_id: str
    path: Path
    manifest: dict[str, object]

    def segments(self, name: str) -> list[Segment]:
        """The table's segments in row order (empty when the table is absent)."""
        info = _tables(self.manifest).get(name)
        if isinstance(info, dict) and "segments" in info:
            return [Segment(self.path / str(s["file"]), str(s["sha256"]), int(s["rows"]))
                    for s in info["segments"]]  # type: ignore[union-attr]
        single = self.path / f"{name}.parquet"  # format 1: one file per table
        if single.exists():
            rows = int(info["rows"]) if isinstance(info, dict) else pq.read_metadata(
                single).num_rows
            return [Segment(single, "", rows)]
        return []

    def table_names(self) -> list[str]:
        """Names of the tables the snapshot holds (and the absent goodbooks ones)."""
        names = list(_tables(self.manifest))
        names += [str(n) for n in self.manifest.get("absent", [])  # type: ignore[union-attr]
                  if n not in names]
        return names

    def has(self, name: str) -> bool:
        return bool(self.segments(name))

    def rows(self, name: str) -> int:
        return sum(s.rows for s in self.segments(name))

    def read(self, name: str, columns: list[str] | None = None) -> pd.DataFrame:
        """The whole table, segments concatenated in order."""
        segments = self.segments(name)
        if not segments:
            raise DatasetError(f"snapshot {self.snapshot_id} has no table {name!r}")
        missing = [s.path for s in segments if not s.path.exists()]
        if missing:
            raise DatasetError(f"snapshot {self.snapshot_id} is damaged: {missing[0]} is gone; "
                               "remove the snapshot directory and ingest again")
        frames = [pd.read_parquet(s.path, columns=columns) for s in segments]
        return frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)

    def columns(self, name: str) -> list[str]:
        """The table's column names (empty when the table is absent)."""
        segments = self.segments(name)
        return list(pq.read_schema(segments[0].path).names) if segments else []

    def pair_index(self) -> np.ndarray:
        """Sorted keys (reader << 31 | book) of the ratings' pairs (memory-mapped)."""
        path = self.path / PAIRS_INDEX
        if path.exists():
            return np.load(path, mmap_mode="r")
        ratings = self.read("ratings", columns=["user_id", "book_id"])  # an older snapshot
        return pair_index(ratings["user_id"].to_numpy(), ratings["book_id"].to_numpy())

    @property
    def log_watermark(self) -> str | None:
        """The newest interaction-log entry this snapshot has taken in."""
        value = self.manifest.get("log_watermark")
        return str(value) if value else None

    @property
    def base(self) -> str:
        """Key of the source data the lineage started from (its files' checksums)."""
        return str(self.manifest.get("base") or base_key(
            self.manifest.get("checksums", {})))  # type: ignore[arg-type]

    @property
    def ingested_files(self) -> dict[str, dict[str, object]]:
        """sha256 → {name, snapshot, rows} of every inbox file the lineage has taken in."""
        return dict(self.manifest.get("ingested_files", {}))  # type: ignore[arg-type]

    @property
    def created_at(self) -> str:
        return str(self.manifest.get("created_at", ""))


def _tables(manifest: Mapping[str, object]) -> dict[str, object]:
    tables = manifest.get("tables", {})
    return tables if isinstance(tables, dict) else {}


def pair_index(users: np.ndarray, books: np.ndarray) -> np.ndarray:
    """Sorted, distinct int64 keys reader << 31 | book (ids are below 2^31)."""
    return sorted_distinct((np.asarray(users, dtype=np.int64) << 31)
                           | np.asarray(books, dtype=np.int64))


def base_key(checksums: Mapping[str, str]) -> str:
    """A short key of a source's file checksums: snapshots with the same key share a base."""
    canonical = json.dumps(dict(sorted(checksums.items())), sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


# --- writing ------------------------------------------------------------------------------

# A table of the next snapshot: its parts in row order, each an existing segment (linked,
# not copied) or a frame of new rows (written as a new segment).
TablePart = Segment | pd.DataFrame


@contextmanager
def writing(processed_dir: Path) -> Iterator[None]:
    """Exclusive right to add snapshots, move HEAD or prune (one writer at a time)."""
    processed_dir.mkdir(parents=True, exist_ok=True)
    with open(processed_dir / ".lock", "a+b") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def commit_snapshot(
    processed_dir: Path,
    tables: Mapping[str, Sequence[TablePart] | None],
    manifest: Mapping[str, object],
    attachments: Sequence[Path] = (),
    identity: Mapping[str, object] | None = None,
    pairs: np.ndarray | None = None,
) -> tuple[Snapshot, bool]:
    """Write a snapshot of ``tables`` (None: absent) and make it HEAD.

    ``manifest`` holds the descriptive fields (source, validation, ...); ``identity`` the
    fields besides the content that make two snapshots different (watermark, ingested
    files); ``pairs`` the ratings' pair index (see ``pair_index``; derived, not part of the
    id). Returns the snapshot and whether it is new: when a snapshot with the same id
    exists, nothing is written and that one becomes HEAD.
    """
    with writing(processed_dir):
        _remove_partials(processed_dir)
        staging = processed_dir / f"{_PARTIAL_PREFIX}{uuid.uuid4().hex[:12]}"
        staging.mkdir()
        try:
            described: dict[str, object] = {}
            for name, parts in tables.items():
                if parts is None:
                    continue
                described[name] = _stage_table(staging, name, list(parts))
            attached = {}
            for attachment in attachments:
                shutil.copy2(attachment, staging / attachment.name)
                attached[attachment.name] = file_sha256(staging / attachment.name)
            content = {
                "tables": {name: [s["sha256"] for s in info["segments"]]  # type: ignore[index]
                           for name, info in sorted(described.items())},
                "attachments": dict(sorted(attached.items())),
                **(identity or {}),
            }
            digest = hashlib.sha256(json.dumps(content, sort_keys=True, default=str).encode())
            snapshot_id = f"snap-{digest.hexdigest()[:16]}"
            final = processed_dir / snapshot_id
            if (final / MANIFEST).exists():
                shutil.rmtree(staging)
                _set_head(processed_dir, snapshot_id)
                return open_snapshot(final), False
            full = {
                "snapshot_id": snapshot_id,
                "format": FORMAT,
                "created_at": datetime.now(UTC).isoformat(),
                **manifest,
                **(identity or {}),
                "tables": described,
                "absent": sorted(name for name, parts in tables.items() if parts is None),
                "attachments": sorted(attached),
            }
            if pairs is not None:
                np.save(staging / PAIRS_INDEX, np.asarray(pairs, dtype=np.int64))
            (staging / MANIFEST).write_text(json.dumps(full, indent=2, default=str))
            if final.exists():  # a directory without a manifest: an earlier crash's debris
                shutil.rmtree(final)
            os.replace(staging, final)
            _fsync_dir(processed_dir)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        _set_head(processed_dir, snapshot_id)
    return Snapshot(snapshot_id=snapshot_id, path=final, manifest=full), True


def _stage_table(staging: Path, name: str, parts: list[TablePart]) -> dict[str, object]:
    """Link or write a table's parts as numbered segments; returns its manifest entry."""
    directory = staging / name
    directory.mkdir()
    existing = [p for p in parts if isinstance(p, Segment)]
    if len(existing) + sum(isinstance(p, pd.DataFrame) for p in parts) > MAX_SEGMENTS:
        frames = [pd.read_parquet(p.path) if isinstance(p, Segment) else p for p in parts]
        parts = [pd.concat(frames, ignore_index=True)]
    segments = []
    for index, part in enumerate(parts):
        temporary = directory / f".{index:04d}.parquet"
        if isinstance(part, Segment):
            _link(part.path, temporary)
            sha, rows = part.sha256 or file_sha256(temporary), part.rows
        else:
            part.to_parquet(temporary, index=False)
            sha, rows = file_sha256(temporary), len(part)
        target = directory / f"{index:04d}-{sha[:16]}.parquet"
        os.replace(temporary, target)
        segments.append({"file": f"{name}/{target.name}", "sha256": sha, "rows": int(rows)})
    return {"rows": sum(int(s["rows"]) for s in segments), "segments": segments}


def _link(source: Path, target: Path) -> None:
    """Hard-link (no bytes copied); copy where the file system cannot link."""
    if not source.exists():
        raise DatasetError(f"{source} is gone: the snapshot it belongs to was damaged; "
                           "remove that snapshot directory and ingest again")
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove_partials(processed_dir: Path) -> None:
    """Delete what interrupted writes left (the caller holds the writing lock)."""
    for debris in processed_dir.glob(f"{_PARTIAL_PREFIX}*"):
        shutil.rmtree(debris, ignore_errors=True)
    for debris in processed_dir.glob(".*.partial"):  # format 1's staging directories
        shutil.rmtree(debris, ignore_errors=True)


def _set_head(processed_dir: Path, snapshot_id: str) -> None:
    temporary = processed_dir / f".{HEAD}.{os.getpid()}"
    temporary.write_text(snapshot_id + "\n")
    os.replace(temporary, processed_dir / HEAD)


def write_snapshot(
    tables: Mapping[str, pd.DataFrame | None],
    processed_dir: Path,
    source: dict[str, object],
    checksums: dict[str, str],
    validation: dict[str, object],
    quarantine: Mapping[str, pd.DataFrame] | None = None,
    attachments: Sequence[Path] = (),
    log_watermark: str | None = None,
) -> Snapshot:
    """A snapshot of whole tables from one source (the first of a lineage)."""
    parts: dict[str, Sequence[TablePart] | None] = {
        name: None if frame is None else [frame] for name, frame in tables.items()}
    for name, frame in (quarantine or {}).items():
        parts[f"quarantine_{name}"] = [frame]
    snapshot, _ = commit_snapshot(
        processed_dir, parts,
        manifest={"source": source, "checksums": checksums, "validation": validation,
                  "quarantined": {name: int(len(f)) for name, f in (quarantine or {}).items()},
                  "parent": None},
        attachments=attachments,
        identity={"base": base_key(checksums), "log_watermark": log_watermark,
                  "ingested_files": {}},
        pairs=(pair_index(tables["ratings"]["user_id"].to_numpy(),
                          tables["ratings"]["book_id"].to_numpy())
               if tables.get("ratings") is not None else None),
    )
    return snapshot


# --- finding ------------------------------------------------------------------------------


def open_snapshot(path: Path) -> Snapshot:
    manifest_path = path / MANIFEST
    if not manifest_path.exists():
        raise DatasetError(f"{path} is not a snapshot (no {MANIFEST}); run the ingest flow")
    manifest = json.loads(manifest_path.read_text())
    return Snapshot(snapshot_id=str(manifest["snapshot_id"]), path=path, manifest=manifest)


def list_snapshots(processed_dir: Path) -> list[Snapshot]:
    """Every complete snapshot, oldest first (by creation time)."""
    if not processed_dir.exists():
        return []
    found = []
    for path in processed_dir.iterdir():
        if path.is_dir() and not path.name.startswith(".") and (path / MANIFEST).exists():
            try:
                found.append(open_snapshot(path))
            except (json.JSONDecodeError, KeyError):
                continue  # a manifest cut short: not a snapshot
    return sorted(found, key=lambda s: (s.created_at, s.snapshot_id))


def head_snapshot(processed_dir: Path) -> tuple[Snapshot, str | None]:
    """The newest snapshot and, when HEAD could not be followed, why another was taken."""
    head = processed_dir / HEAD
    note = None
    if head.exists():
        name = head.read_text().strip()
        if name and (processed_dir / name / MANIFEST).exists():
            return open_snapshot(processed_dir / name), None
        note = (f"HEAD names snapshot {name or '(nothing)'}, which is gone from "
                f"{processed_dir}; taking the newest snapshot left")
    candidates = list_snapshots(processed_dir)
    if not candidates:
        raise DatasetError(f"no snapshot under {processed_dir}; run `goodbooks ingest` first")
    return candidates[-1], note


def latest_snapshot(processed_dir: Path) -> Snapshot:
    """The newest complete snapshot (HEAD, or the newest left when HEAD's is gone)."""
    return head_snapshot(processed_dir)[0]


def prune_snapshots(processed_dir: Path, keep: int, protected: set[str]) -> list[str]:
    """Delete snapshots beyond the newest ``keep``, never HEAD or one in ``protected``.

    Segments shared with kept snapshots stay (they are hard links); returns the ids removed.
    """
    if keep < 1:
        raise ValueError(f"keep must be at least 1; got {keep}")
    removed = []
    with writing(processed_dir):
        snapshots = list_snapshots(processed_dir)
        head = (processed_dir / HEAD).read_text().strip() if (processed_dir / HEAD).exists() \
            else None
        for snapshot in snapshots[:-keep]:
            if snapshot.snapshot_id in protected or snapshot.snapshot_id == head:
                continue
            shutil.rmtree(snapshot.path)
            removed.append(snapshot.snapshot_id)
    return removed
