"""The inbox: what users drop there, how an item is recognised, read, archived or refused.

An item is a directory holding ``ratings.csv`` (and optionally ``books.csv`` with new titles
and the generator's ``truth.npz``), as ``goodbooks data continue`` writes, or a lone
``*.csv`` of ratings. Items are taken in name order; a taken item is archived under
``archive/<base>/`` once the snapshot holding it is written, a refused one moves to
``rejected/`` beside its report. ``models.increment`` judges and merges what they hold.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from models.schema import BOOKS_FILE, RATINGS_FILE
from models.snapshot import file_sha256, read_csv

ARCHIVE_DIR = "archive"
REJECTED_DIR = "rejected"
TRUTH_NAME = "truth.npz"


@dataclass(frozen=True)
class InboxItem:
    """One thing dropped in the inbox (a directory or a CSV file) and its checksum."""

    path: Path
    sha256: str
    archived: bool = False  # offered again from the archive (its snapshot was lost)

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def ratings_path(self) -> Path:
        return self.path / RATINGS_FILE if self.path.is_dir() else self.path

    @property
    def books_path(self) -> Path | None:
        books = self.path / BOOKS_FILE
        return books if self.path.is_dir() and books.is_file() else None

    @property
    def truth_path(self) -> Path | None:
        truth = self.path / TRUTH_NAME
        return truth if self.path.is_dir() and truth.is_file() else None


def item_checksum(path: Path) -> str:
    """sha256 of a CSV, or of a directory's data files (names and contents)."""
    if path.is_file():
        return file_sha256(path)
    digest = hashlib.sha256()
    for name in (RATINGS_FILE, BOOKS_FILE, TRUTH_NAME):
        member = path / name
        if member.is_file():
            digest.update(f"{name}:{file_sha256(member)}\n".encode())
    return digest.hexdigest()


def _is_item(path: Path) -> bool:
    if path.name.startswith(".") or path.name in (ARCHIVE_DIR, REJECTED_DIR):
        return False
    if path.is_dir():
        return (path / RATINGS_FILE).is_file()
    return path.is_file() and path.suffix == ".csv"


def strangers(inbox: Path) -> list[Path]:
    """What lies in the inbox but is no item (a directory without ratings.csv, a .txt, ...)."""
    if not inbox.is_dir():
        return []
    return sorted(p for p in inbox.iterdir() if not p.name.startswith(".")
                  and p.name not in (ARCHIVE_DIR, REJECTED_DIR) and not _is_item(p)
                  and not p.name.endswith(".report.md"))


def inbox_items(inbox: Path, base: str, ingested: set[str]) -> tuple[list[InboxItem],
                                                                     list[InboxItem]]:
    """(items to take in, items already taken in) of the inbox, in name order.

    Archived items of this lineage (``archive/<base>/``) whose checksum the snapshot does not
    hold come first: their snapshot was removed, and they are taken in again.
    """
    take: list[InboxItem] = []
    done: list[InboxItem] = []
    archive = inbox / ARCHIVE_DIR / base
    if archive.is_dir():
        for path in sorted(archive.iterdir()):
            if _is_item(path):
                sha = item_checksum(path)
                if sha not in ingested:
                    take.append(InboxItem(path, sha, archived=True))
    if inbox.is_dir():
        for path in sorted(inbox.iterdir()):
            if _is_item(path):
                sha = item_checksum(path)
                (done if sha in ingested else take).append(InboxItem(path, sha))
    return take, done


def unique_target(directory: Path, name: str) -> Path:
    """directory/name, or name with a time stamp when that is taken."""
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / name
    if target.exists():
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        target = directory / f"{stamp}-{name}"
    return target


def archive_item(item: InboxItem, inbox: Path, base: str) -> Path | None:
    """Move a taken-in item to archive/<base>/ (items already there stay)."""
    if item.archived or not item.path.exists():
        return None
    target = unique_target(inbox / ARCHIVE_DIR / base, item.name)
    os.replace(item.path, target)
    return target


def reject_item(item: InboxItem, inbox: Path, report: str) -> Path:
    """Move a refused item to rejected/ and write its report beside it."""
    target = unique_target(inbox / REJECTED_DIR, item.name)
    if item.path.is_dir() and not item.archived:
        os.replace(item.path, target)
    else:
        # A file, or an archived item (the archive is the lineage's record: copy it out).
        (shutil.copytree if item.path.is_dir() else shutil.copy2)(item.path, target)
        if not item.archived:
            item.path.unlink()
    report_path = target.with_name(target.name + ".report.md")
    report_path.write_text(report)
    return report_path


@dataclass(frozen=True)
class ItemTables:
    """An inbox item read: its ratings (three columns) and any new catalogue rows."""

    ratings: pd.DataFrame
    books: pd.DataFrame | None
    truth: Path | None
    extra_files: tuple[str, ...] = ()


def read_item(item: InboxItem) -> ItemTables:
    """Read an item's files (DatasetError names an unreadable one)."""
    ratings = read_csv(item.ratings_path)
    books = read_csv(item.books_path) if item.books_path is not None else None
    extra: tuple[str, ...] = ()
    if item.path.is_dir():
        known = {RATINGS_FILE, BOOKS_FILE, TRUTH_NAME, "continuation.json"}
        extra = tuple(sorted(p.name for p in item.path.iterdir() if p.name not in known))
    return ItemTables(ratings=ratings, books=books, truth=item.truth_path, extra_files=extra)
