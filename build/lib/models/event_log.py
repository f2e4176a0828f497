"""The interaction log: app events kept on disk as append-only Parquet, partitioned by day.

The event stream in Redis is a buffer; this log is where events live. The drain
(``tasks.events``) copies stream entries here in stream order, makes each file durable
(written under a temporary name, fsync'd, renamed, directory fsync'd, read back) and only
then acknowledges the entries, so a crash between any two steps loses nothing. Appends are
idempotent: an entry whose stream id is already in the log is skipped, so entries delivered
twice (a crash after the write but before the acknowledgement) are written once.

Layout under the log's root::

    day=2026-12-04/events-1733270400000-0_1733274000123-7.parquet
    damaged/                      files that could not be read back, set aside
    malformed/                    stream entries with no reader, book or type (JSON lines)
    .lock                         held by the one drain that writes

A file holds entries of one UTC day (the day of the stream id, i.e. when Redis accepted
the event) and is named by its first and last stream id, so the files in order of their
first id are the log in stream order, and the newest id is known without opening a file.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from models.schema import BOOK_ID, RATING, USER_ID, DatasetError

ENTRY_ID = "entry_id"
ENTRY_MS = "entry_ms"
ENTRY_SEQ = "entry_seq"
EVENT_TYPE = "type"
TS_MS = "ts_ms"

# One column per field of a stream entry (serving.events), plus the entry id split in two.
SCHEMA = pa.schema([
    pa.field(ENTRY_ID, pa.string(), nullable=False),
    pa.field(ENTRY_MS, pa.int64(), nullable=False),
    pa.field(ENTRY_SEQ, pa.int64(), nullable=False),
    pa.field(EVENT_TYPE, pa.string(), nullable=False),
    pa.field(USER_ID, pa.int64(), nullable=False),
    pa.field(BOOK_ID, pa.int64(), nullable=False),
    pa.field("variant", pa.string()),
    pa.field("version", pa.string()),
    pa.field(TS_MS, pa.int64()),
    pa.field("experiment", pa.string()),
    pa.field("position", pa.int64()),
    pa.field(RATING, pa.int64()),
    pa.field("request_id", pa.string()),
])
COLUMNS = tuple(SCHEMA.names)
INT_COLUMNS = tuple(f.name for f in SCHEMA if pa.types.is_integer(f.type))

DAMAGED_DIR = "damaged"
MALFORMED_DIR = "malformed"
_FILE = re.compile(r"^events-(\d+)-(\d+)_(\d+)-(\d+)\.parquet$")
_SEQ_MAX = 2**64 - 1


class LogDamagedError(DatasetError):
    """A log file cannot be read; the message names it and the entries it held."""


@dataclass(frozen=True, order=True)
class EntryId:
    """A Redis stream id ``<ms>-<seq>``; ordered as the stream orders entries."""

    ms: int
    seq: int

    @classmethod
    def parse(cls, text: str | bytes) -> EntryId:
        raw = text.decode() if isinstance(text, bytes) else str(text)
        try:
            ms, seq = raw.split("-")
            return cls(int(ms), int(seq))
        except ValueError:
            raise ValueError(f"{raw!r} is not a stream entry id (<ms>-<seq>)") from None

    def __str__(self) -> str:
        return f"{self.ms}-{self.seq}"

    def before(self) -> EntryId:
        """The greatest id below this one (where a reader must start to get this one)."""
        if self.seq > 0:
            return EntryId(self.ms, self.seq - 1)
        if self.ms == 0:
            return EntryId(0, 0)
        return EntryId(self.ms - 1, _SEQ_MAX)

    def after(self) -> EntryId:
        """The smallest id above this one."""
        return EntryId(self.ms, self.seq + 1)


def parse_optional(text: str | None) -> EntryId | None:
    return EntryId.parse(text) if text else None


@dataclass(frozen=True)
class LogFile:
    """One durable file of the log and the range of stream ids it holds."""

    path: Path
    first: EntryId
    last: EntryId
    rows: int | None = None  # known for files just written

    @property
    def day(self) -> str:
        return self.path.parent.name.removeprefix("day=")


@dataclass(frozen=True)
class DamagedFile:
    """A file set aside because it could not be read back."""

    original: Path
    moved_to: Path
    first: EntryId
    last: EntryId
    error: str


@dataclass(frozen=True)
class LogRead:
    """Events read from the log and where the read stopped."""

    events: pd.DataFrame
    files: int
    through: EntryId | None  # last entry id of the last file read (None: nothing read)
    stopped_at: LogFile | None  # the unreadable file the read stopped before, if any
    error: str | None = None


def file_name(first: EntryId, last: EntryId) -> str:
    return f"events-{first.ms}-{first.seq}_{last.ms}-{last.seq}.parquet"


def day_of(entry_ms: int) -> str:
    return datetime.fromtimestamp(entry_ms / 1000, UTC).strftime("%Y-%m-%d")


def empty_events() -> pd.DataFrame:
    """A frame with the log's columns and no rows."""
    return SCHEMA.empty_table().to_pandas(types_mapper=_pandas_type)


def _pandas_type(arrow_type: pa.DataType) -> object:
    """Nullable integers stay integers in pandas (Int64), not floats."""
    if pa.types.is_integer(arrow_type):
        return pd.Int64Dtype()
    return None


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class InteractionLog:
    """The append-only, day-partitioned Parquet log under ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    # --- what is there -------------------------------------------------------------------
    def files(self) -> list[LogFile]:
        """Every durable file, in stream order (unfinished temporary files are not listed)."""
        found = []
        if not self.root.is_dir():
            return found
        for day in self.root.glob("day=*"):
            for path in day.glob("events-*.parquet"):
                match = _FILE.match(path.name)
                if match:
                    a, b, c, d = (int(g) for g in match.groups())
                    found.append(LogFile(path, EntryId(a, b), EntryId(c, d)))
        return sorted(found, key=lambda f: (f.first, f.last))

    def high_water_mark(self) -> EntryId | None:
        """The newest stream id the log holds (None when it is empty)."""
        files = self.files()
        return max(f.last for f in files) if files else None

    def unfinished(self) -> list[Path]:
        """Temporary files of writes a crash interrupted."""
        return sorted(self.root.glob("day=*/.*.tmp")) if self.root.is_dir() else []

    # --- writing ---------------------------------------------------------------------------
    @contextmanager
    def lock(self) -> Iterator[None]:
        """Exclusive right to write (one drain at a time); blocks until it is free."""
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".lock", "a+b") as handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)

    def remove_unfinished(self) -> list[Path]:
        """Delete what interrupted writes left behind; their entries were never acknowledged."""
        removed = self.unfinished()
        for path in removed:
            path.unlink(missing_ok=True)
        return removed

    def append(self, events: pd.DataFrame) -> list[LogFile]:
        """Write events (with the log's columns) durably; entries already logged are skipped.

        Rows may come in any order: they are sorted by stream id, split by day, and each
        day's rows become one file. Returns the files written (none when all were there).
        The caller holds ``lock()``.
        """
        if events.empty:
            return []
        frame = self._conform(events)
        frame = frame.sort_values([ENTRY_MS, ENTRY_SEQ], kind="stable")
        frame = frame.drop_duplicates(ENTRY_ID, keep="first")
        frame = frame[~frame[ENTRY_ID].isin(self._logged_ids(frame))]
        written = []
        days = frame[ENTRY_MS].map(day_of)
        for day, rows in frame.groupby(days, sort=True):
            written.append(self._write_file(rows, str(day)))
        return written

    def _conform(self, events: pd.DataFrame) -> pd.DataFrame:
        missing = [c for c in (ENTRY_ID, EVENT_TYPE, USER_ID, BOOK_ID) if c not in events]
        if missing:
            raise ValueError(f"events lack the column(s) {missing}")
        frame = events.copy()
        if ENTRY_MS not in frame or ENTRY_SEQ not in frame:
            parts = frame[ENTRY_ID].astype(str).str.split("-", n=1, expand=True)
            frame[ENTRY_MS] = parts[0].astype(np.int64)
            frame[ENTRY_SEQ] = parts[1].astype(np.int64)
        for column in COLUMNS:
            if column not in frame:
                frame[column] = None
        return frame[list(COLUMNS)]

    def _logged_ids(self, frame: pd.DataFrame) -> set[str]:
        """Ids of the frame's range that files already hold (usually none, or one file's)."""
        first = EntryId(int(frame[ENTRY_MS].iloc[0]), int(frame[ENTRY_SEQ].iloc[0]))
        last = EntryId(int(frame[ENTRY_MS].iloc[-1]), int(frame[ENTRY_SEQ].iloc[-1]))
        ids: set[str] = set()
        for logged in self.files():
            if logged.last >= first and logged.first <= last:
                ids.update(pq.read_table(logged.path, columns=[ENTRY_ID])[ENTRY_ID].to_pylist())
        return ids

    def _write_file(self, rows: pd.DataFrame, day: str) -> LogFile:
        first = EntryId(int(rows[ENTRY_MS].iloc[0]), int(rows[ENTRY_SEQ].iloc[0]))
        last = EntryId(int(rows[ENTRY_MS].iloc[-1]), int(rows[ENTRY_SEQ].iloc[-1]))
        directory = self.root / f"day={day}"
        new_directory = not directory.exists()
        directory.mkdir(parents=True, exist_ok=True)
        if new_directory:
            _fsync_dir(self.root)
        final = directory / file_name(first, last)
        temporary = directory / f".{final.name}.{os.getpid()}.tmp"
        table = pa.Table.from_pandas(rows, schema=SCHEMA, preserve_index=False)
        with open(temporary, "wb") as handle:
            pq.write_table(table, handle, compression="zstd")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, final)
        _fsync_dir(directory)
        # Read it back before anyone acknowledges what it holds.
        if pq.read_metadata(final).num_rows != len(rows):
            raise OSError(f"{final} did not read back with its {len(rows)} rows")
        return LogFile(final, first, last, len(rows))

    def set_aside(self, entries: list[tuple[str, dict[str, str]]]) -> Path:
        """Keep entries that are not events (no reader, book or type) as JSON lines."""
        first, last = EntryId.parse(entries[0][0]), EntryId.parse(entries[-1][0])
        directory = self.root / MALFORMED_DIR
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / file_name(first, last).replace(".parquet", ".jsonl")
        temporary = path.with_name(f".{path.name}.tmp")
        with open(temporary, "w", encoding="utf-8") as handle:
            for entry_id, fields in entries:
                handle.write(json.dumps({"entry_id": entry_id, **fields}) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
        _fsync_dir(directory)
        return path

    # --- checking ------------------------------------------------------------------------
    def check(self, after: EntryId | None = None) -> list[DamagedFile]:
        """Set aside (under damaged/) every file past ``after`` whose footer cannot be read."""
        damaged = []
        for logged in self.files():
            if after is not None and logged.last <= after:
                continue
            error = _read_error(logged.path)
            if error is None:
                continue
            target = self.root / DAMAGED_DIR / logged.day / logged.path.name
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(logged.path, target)
            damaged.append(DamagedFile(logged.path, target, logged.first, logged.last, error))
        return damaged

    # --- reading -------------------------------------------------------------------------
    def read(
        self,
        after: EntryId | None = None,
        through: EntryId | None = None,
        types: tuple[str, ...] | None = None,
        since_ms: int | None = None,
        columns: list[str] | None = None,
        strict: bool = True,
    ) -> LogRead:
        """Events with stream id in (after, through], oldest first.

        ``types`` keeps only those event types; ``since_ms`` skips whole days before it (and
        events whose stream time is earlier). An unreadable file raises LogDamagedError
        when ``strict``; otherwise the read stops before it and says so, so a caller can
        take what lies before it and come back for the rest.
        """
        wanted = list(dict.fromkeys([*(columns or COLUMNS), ENTRY_MS, ENTRY_SEQ]))
        since_day = day_of(since_ms) if since_ms is not None else None
        frames, count, last = [], 0, None
        for logged in self.files():
            if after is not None and logged.last <= after:
                continue
            if through is not None and logged.first > through:
                break
            if since_day is not None and logged.day < since_day:
                continue
            try:
                table = pq.read_table(logged.path, columns=wanted)
            except (OSError, pa.ArrowException) as exc:
                message = (f"interaction log file {logged.path} cannot be read ({exc}); it "
                           f"held stream entries {logged.first}..{logged.last}. The next "
                           "`goodbooks events drain` sets it aside and drains those entries "
                           "again while the stream still holds them")
                if strict:
                    raise LogDamagedError(message) from exc
                return LogRead(_concat(frames, wanted), count, last, logged, message)
            frame = table.to_pandas(types_mapper=_pandas_type)
            keep = np.ones(len(frame), dtype=bool)
            if after is not None and logged.first <= after:
                keep &= _ids_above(frame, after)
            if through is not None and logged.last > through:
                keep &= ~_ids_above(frame, through)
            if since_ms is not None:
                keep &= (frame[ENTRY_MS] >= since_ms).to_numpy()
            if types is not None:
                keep &= frame[EVENT_TYPE].isin(types).to_numpy()
            frames.append(frame[keep])
            count += 1
            last = logged.last if through is None else min(logged.last, through)
        return LogRead(_concat(frames, wanted), count, last, None)

    def __repr__(self) -> str:
        return f"InteractionLog({str(self.root)!r})"


def _ids_above(frame: pd.DataFrame, bound: EntryId) -> np.ndarray:
    ms = frame[ENTRY_MS].to_numpy(dtype=np.int64)
    seq = frame[ENTRY_SEQ].to_numpy(dtype=np.int64)
    return (ms > bound.ms) | ((ms == bound.ms) & (seq > bound.seq))


def _concat(frames: list[pd.DataFrame], columns: list[str]) -> pd.DataFrame:
    if not frames:
        return empty_events()[columns]
    return pd.concat(frames, ignore_index=True)[columns]


def _read_error(path: Path) -> str | None:
    """Why a log file cannot be read (its footer and row groups), or None."""
    try:
        metadata = pq.read_metadata(path)
        if metadata.num_rows < 1:
            return "it holds no rows"
    except (OSError, pa.ArrowException) as exc:
        return str(exc)
    return None
