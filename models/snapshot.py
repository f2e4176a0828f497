"""Reading goodbooks CSVs, the structural checks every file must pass, and snapshots.

A snapshot is validated data written as Parquet under ``<processed>/<snapshot_id>/`` with a
``manifest.json`` (source, row counts, checksums, validation summary). Training and drift
checks read snapshots, never raw CSVs. A snapshot directory appears only when complete: it
is written under a temporary name and renamed into place.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from models.schema import (
    DatasetError,
)

MANIFEST = "manifest.json"
EXAMPLES = 5

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
class Snapshot:
    """A validated, immutable copy of a dataset."""

    snapshot_id: str
    path: Path
    manifest: dict[str, object]

    def table_path(self, name: str) -> Path:
        return self.path / f"{name}.parquet"

    def has(self, name: str) -> bool:
        return self.table_path(name).exists()

    def read(self, name: str, columns: list[str] | None = None) -> pd.DataFrame:
        path = self.table_path(name)
        if not path.exists():
            raise DatasetError(f"snapshot {self.snapshot_id} has no table {name!r}")
        return pd.read_parquet(path, columns=columns)


def new_snapshot_id(checksums: dict[str, str]) -> str:
    """Time-ordered id with a content hash: 20261128T213000Z-1a2b3c4d."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    content = hashlib.sha256(json.dumps(checksums, sort_keys=True).encode()).hexdigest()[:8]
    return f"{stamp}-{content}"


def write_snapshot(
    tables: dict[str, pd.DataFrame],
    processed_dir: Path,
    source: dict[str, object],
    checksums: dict[str, str],
    validation: dict[str, object],
    quarantine: dict[str, pd.DataFrame] | None = None,
    attachments: list[Path] | None = None,
) -> Snapshot:
    """Write tables as Parquet with a manifest; the directory appears only when complete.

    ``quarantine`` holds rows dropped by validation, written as ``quarantine_<table>``;
    ``attachments`` are copied in as they are (e.g. the generator's planted truth).
    """
    snapshot_id = new_snapshot_id(checksums)
    final = processed_dir / snapshot_id
    staging = processed_dir / f".{snapshot_id}.partial"
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    try:
        for name, frame in tables.items():
            if frame is None:
                continue
            frame.to_parquet(staging / f"{name}.parquet", index=False)
        for name, frame in (quarantine or {}).items():
            frame.to_parquet(staging / f"quarantine_{name}.parquet", index=False)
        for attachment in attachments or []:
            shutil.copy2(attachment, staging / attachment.name)
        manifest = {
            "snapshot_id": snapshot_id,
            "created_at": datetime.now(UTC).isoformat(),
            "source": source,
            "tables": {name: {"rows": int(len(frame))} for name, frame in tables.items()
                       if frame is not None},
            "absent": sorted(name for name, frame in tables.items() if frame is None),
            "quarantined": {name: int(len(f)) for name, f in (quarantine or {}).items()},
            "checksums": checksums,
            "attachments": [p.name for p in attachments or []],
            "validation": validation,
        }
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2, default=str))
        os.replace(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return Snapshot(snapshot_id=snapshot_id, path=final, manifest=manifest)


def open_snapshot(path: Path) -> Snapshot:
    manifest_path = path / MANIFEST
    if not manifest_path.exists():
        raise DatasetError(f"{path} is not a snapshot (no {MANIFEST}); run the ingest flow")
    manifest = json.loads(manifest_path.read_text())
    return Snapshot(snapshot_id=str(manifest["snapshot_id"]), path=path, manifest=manifest)


def latest_snapshot(processed_dir: Path) -> Snapshot:
    """The newest complete snapshot (ids sort by time)."""
    candidates = sorted(
        p for p in processed_dir.glob("*") if p.is_dir() and (p / MANIFEST).exists()
    ) if processed_dir.exists() else []
    if not candidates:
        raise DatasetError(f"no snapshot under {processed_dir}; run `goodbooks ingest` first")
    return open_snapshot(candidates[-1])
