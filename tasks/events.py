"""The event stream into the interaction log (the drain), and reading both back together.

The drain reads ``{p}events`` through a Redis consumer group, appends what it read to the
on-disk log (``models.event_log``), makes it durable, then acknowledges it, and trims the
stream only below what every consumer group has acknowledged (``XTRIM MINID``). A crash
between any two of those steps loses nothing (unacknowledged entries are delivered again)
and duplicates nothing (the log skips entries it already holds).

Readers that need every event (the A/B evaluation, the monitor) read the log, then the
stream's tail past the log's newest entry: the part not drained yet.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import redis
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from models.event_log import (
    COLUMNS,
    ENTRY_ID,
    ENTRY_MS,
    ENTRY_SEQ,
    EVENT_TYPE,
    INT_COLUMNS,
    DamagedFile,
    EntryId,
    InteractionLog,
    empty_events,
)
from models.schema import BOOK_ID, USER_ID
from serving.connection import RedisClient, is_cluster
from serving.store import RecStore
from tasks.publish import RedisTarget

GROUP = "interaction-log"
CONSUMER = "drain"
READ_COUNT = 10_000  # entries per XREADGROUP
FILE_ROWS = 100_000  # entries per log file (and per acknowledgement)
_ACK_CHUNK = 10_000


@dataclass
class DrainResult:
    """What one drain did."""

    drained: int = 0  # entries newly written to the log
    duplicates: int = 0  # delivered again but already in the log (a crash before the ack)
    missing: int = 0  # pending entries the stream no longer held (nothing to write)
    malformed: int = 0  # entries no reader or book could be read from, kept in malformed/
    acknowledged: int = 0
    files: list[str] = field(default_factory=list)
    removed_unfinished: int = 0
    damaged: list[dict[str, str]] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)  # ranges neither the log nor stream holds
    trimmed: int = 0
    backlog: int = 0  # stream length after the drain
    high_water_mark: str | None = None
    seconds: float = 0.0

    def as_dict(self) -> dict[str, object]:
        return dict(self.__dict__)

    def summary(self) -> str:
        rate = self.drained / self.seconds if self.seconds > 0 else 0.0
        text = (f"drained {self.drained:,} events into {len(self.files)} file(s) in "
                f"{self.seconds:.1f} s ({rate:,.0f}/s); log through {self.high_water_mark}; "
                f"{self.backlog:,} entries left in the stream")
        if self.duplicates:
            text += f"; {self.duplicates:,} delivered again and already logged"
        if self.malformed:
            text += f"; {self.malformed:,} malformed entries kept aside under malformed/"
        if self.damaged:
            text += f"; {len(self.damaged)} damaged file(s) set aside"
        if self.lost:
            text += f"; LOST (no longer in the stream): {', '.join(self.lost)}"
        return text


def ensure_group(client: redis.Redis, stream: str, group: str = GROUP) -> None:
    """Create the drain's consumer group (from the stream's first entry) if it is missing."""
    try:
        client.xgroup_create(stream, group, id="0", mkstream=True)
    except redis.ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


def drain_stream(
    client: redis.Redis,
    stream: str,
    log: InteractionLog,
    *,
    group: str = GROUP,
    consumer: str = CONSUMER,
    read_count: int = READ_COUNT,
    file_rows: int = FILE_ROWS,
    max_entries: int | None = None,
    keep_s: float = 0.0,
) -> DrainResult:
    """Move the stream's entries into the log; returns counts (see DrainResult).

    Entries the drain was given before but never acknowledged (a crash) come first, then
    new ones up to the stream's newest entry when the drain started, so a drain ends even
    while events keep arriving. ``max_entries`` stops after about that many. The stream
    keeps acknowledged entries younger than ``keep_s``: a log file damaged after it was
    written is drained again from them.
    """
    started = time.perf_counter()
    result = DrainResult()
    client = decoded(client)
    ensure_group(client, stream, group)
    with log.lock():
        result.removed_unfinished = len(log.remove_unfinished())
        for damaged in log.check():
            _recover(client, stream, group, damaged, result)
        _claim_others(client, stream, group, consumer)
        until = _newest_id(client, stream)
        buffer: list[tuple[str, dict[str, str] | None]] = []
        cursor = "0"  # our pending entries first; then ">" for new ones
        while max_entries is None or result.acknowledged + len(buffer) < max_entries:
            count = read_count if max_entries is None else min(
                read_count, max_entries - result.acknowledged - len(buffer))
            entries = _entries(client.xreadgroup(group, consumer, {stream: cursor},
                                                 count=count))
            if not entries:
                if cursor == ">":
                    break
                cursor = ">"
                continue
            buffer.extend(entries)
            if cursor != ">":
                cursor = entries[-1][0]  # the next page of pending entries
            if len(buffer) >= file_rows:
                _flush(client, stream, group, log, buffer, result)
                result.trimmed += trim_acknowledged(client, stream, keep_s)
                buffer = []
            if cursor == ">" and until is not None and EntryId.parse(entries[-1][0]) >= until:
                break
        _flush(client, stream, group, log, buffer, result)
        result.trimmed += trim_acknowledged(client, stream, keep_s)
    hwm = log.high_water_mark()
    result.high_water_mark = str(hwm) if hwm else None
    result.backlog = int(client.xlen(stream))
    result.seconds = time.perf_counter() - started
    return result


def _flush(client: redis.Redis, stream: str, group: str, log: InteractionLog,
           buffer: list[tuple[str, dict[str, str] | None]], result: DrainResult) -> None:
    """Write the buffer durably, then acknowledge every entry in it (and only then)."""
    if not buffer:
        return
    present = [(entry_id, fields) for entry_id, fields in buffer if fields]
    result.missing += len(buffer) - len(present)
    frame = entries_frame(present)
    malformed = malformed_entries(present, frame)
    if malformed:
        log.set_aside(malformed)
        result.malformed += len(malformed)
    already = len(frame)
    written = log.append(frame)
    rows = sum(f.rows or 0 for f in written)
    result.drained += rows
    result.duplicates += already - rows
    result.files += [str(f.path) for f in written]
    ids = [entry_id for entry_id, _ in buffer]
    for start in range(0, len(ids), _ACK_CHUNK):
        result.acknowledged += int(client.xack(stream, group, *ids[start:start + _ACK_CHUNK]))


def _recover(client: redis.Redis, stream: str, group: str, damaged: DamagedFile,
             result: DrainResult) -> None:
    """Have the stream deliver a damaged file's entries again, as far as it still holds them."""
    result.damaged.append({"file": str(damaged.original), "moved_to": str(damaged.moved_to),
                           "entries": f"{damaged.first}..{damaged.last}",
                           "error": damaged.error})
    oldest = client.xrange(stream, min="-", max="+", count=1)
    first_kept = EntryId.parse(_text(oldest[0][0])) if oldest else None
    if first_kept is None or first_kept > damaged.last:
        result.lost.append(f"{damaged.first}..{damaged.last}")
        return
    if first_kept > damaged.first:
        result.lost.append(f"{damaged.first}..{first_kept.before()}")
    current = _group_info(client, stream, group)
    delivered = EntryId.parse(str(current.get("last-delivered-id", "0-0")))
    target = damaged.first.before()
    if delivered > target:
        client.xgroup_setid(stream, group, id=str(target))


def _claim_others(client: redis.Redis, stream: str, group: str, consumer: str) -> None:
    """Take over entries other consumers of the group were given and never acknowledged."""
    start = "0-0"
    while True:
        # (With justid, redis-py drops the cursor: take the entries and ignore them.)
        reply = client.xautoclaim(stream, group, consumer, min_idle_time=0, start_id=start,
                                  count=_ACK_CHUNK)
        start = _text(reply[0])
        if start == "0-0":
            return


def _newest_id(client: redis.Redis, stream: str) -> EntryId | None:
    newest = client.xrevrange(stream, max="+", min="-", count=1)
    return EntryId.parse(_text(newest[0][0])) if newest else None


def _group_info(client: redis.Redis, stream: str, group: str) -> dict[str, Any]:
    for info in client.xinfo_groups(stream):
        info = {_text(k): v for k, v in info.items()}
        if _text(info["name"]) == group:
            return {k: _text(v) if isinstance(v, bytes) else v for k, v in info.items()}
    return {}


def acknowledged_below(client: redis.Redis, stream: str) -> EntryId | None:
    """The smallest id some consumer group still needs (None: no group reads the stream)."""
    needed: list[EntryId] = []
    for info in client.xinfo_groups(stream):
        info = {_text(k): v for k, v in info.items()}
        name = _text(info["name"])
        if int(info.get("pending", 0)):
            summary = client.xpending(stream, name)
            needed.append(EntryId.parse(_text(summary["min"])))
        else:
            needed.append(EntryId.parse(_text(info["last-delivered-id"])).after())
    return min(needed) if needed else None


def trim_acknowledged(client: redis.Redis, stream: str, keep_s: float = 0.0) -> int:
    """XTRIM MINID below what every consumer group has acknowledged and older than keep_s.

    Returns the entries removed.
    """
    minid = acknowledged_below(client, stream)
    if minid is None or minid <= EntryId(0, 1):
        return 0
    if keep_s > 0:
        seconds, micros = client.time()  # the server's clock: the one entry ids come from
        minid = min(minid, EntryId(int(seconds) * 1000 + int(micros) // 1000
                                   - int(keep_s * 1000), 0))
    # Approximate: Redis drops whole nodes below the id, never an entry at or above it,
    # and at most 100 nodes a call (so no call blocks the server for long).
    removed = 0
    while True:
        step = int(client.xtrim(stream, minid=str(minid), approximate=True))
        removed += step
        if step == 0:
            return removed


def decoded(client: RedisClient) -> RedisClient:
    """The same server with replies decoded to text by the parser (hiredis does it in C).

    A cluster client is returned as it is: its connections are per node, and every reply
    the drain reads goes through ``_text``, so bytes work too, only a little slower.
    """
    if is_cluster(client):
        return client
    pool = client.connection_pool  # type: ignore[union-attr]
    if pool.connection_kwargs.get("decode_responses"):
        return client
    kwargs = {**pool.connection_kwargs, "decode_responses": True}
    return redis.Redis(connection_pool=redis.ConnectionPool(
        connection_class=pool.connection_class, **kwargs))


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _entries(reply: Any) -> list[tuple[str, dict[str, str] | None]]:  # noqa: ANN401
    """(id, fields) pairs of an XREADGROUP reply (RESP2 list or RESP3 map alike)."""
    if not reply:
        return []
    streams = reply.items() if isinstance(reply, dict) else reply
    out: list[tuple[str, dict[str, str] | None]] = []
    for _, entries in streams:
        if entries and isinstance(entries[0], list) and entries[0] and isinstance(
                entries[0][0], list | tuple):
            entries = entries[0]  # RESP3 wraps a stream's entries once more
        if entries and isinstance(entries[0][0], str):  # a decoding client: already text
            out.extend((entry_id, fields or None) for entry_id, fields in entries)
            continue
        for entry_id, fields in entries:
            out.append((_text(entry_id), {_text(k): _text(v) for k, v in fields.items()}
                        if fields else None))
    return out


def entries_frame(entries: Sequence[tuple[str, dict[str, str] | None]]) -> pd.DataFrame:
    """Stream entries as a frame with the log's columns (absent fields are null).

    Entries without a type or with a reader or book that is not a positive whole number
    are left out (``malformed_entries`` finds them; the drain keeps them aside).
    """
    if not entries:
        return empty_events()
    data: dict[str, Any] = {ENTRY_ID: [entry_id for entry_id, _ in entries]}
    for column in COLUMNS:
        if column in (ENTRY_ID, ENTRY_MS, ENTRY_SEQ):
            continue
        data[column] = [fields.get(column) if fields else None for _, fields in entries]
    frame = pd.DataFrame(data)
    parts = [entry_id.partition("-") for entry_id in data[ENTRY_ID]]
    frame[ENTRY_MS] = np.fromiter((int(p[0]) for p in parts), np.int64, len(parts))
    frame[ENTRY_SEQ] = np.fromiter((int(p[2]) for p in parts), np.int64, len(parts))
    for column in INT_COLUMNS:
        if column not in (ENTRY_MS, ENTRY_SEQ):
            numbers = pd.to_numeric(frame[column], errors="coerce")
            whole = numbers.notna() & (numbers == numbers.round())
            frame[column] = numbers.where(whole).astype("Int64")
    well_formed = (frame[EVENT_TYPE].notna() & (frame[USER_ID] >= 1).fillna(False)
                   & (frame[BOOK_ID] >= 1).fillna(False)).to_numpy(dtype=bool)
    return frame.loc[well_formed, list(COLUMNS)].reset_index(drop=True)


def malformed_entries(entries: Sequence[tuple[str, dict[str, str] | None]],
                      frame: pd.DataFrame) -> list[tuple[str, dict[str, str]]]:
    """The entries ``entries_frame`` left out, as they were."""
    kept = set(frame[ENTRY_ID].tolist())
    return [(entry_id, fields) for entry_id, fields in entries
            if fields and entry_id not in kept]


def stream_tail(store: RecStore, after: EntryId | None, page: int = 10_000
                ) -> Iterator[pd.DataFrame]:
    """The stream's entries past ``after`` (the part the log does not hold yet), in pages."""
    start = "-" if after is None else f"({after}"
    while True:
        entries = store.client.xrange(store.events_key, min=start, max="+", count=page)
        if not entries:
            return
        decoded = [(_text(entry_id), {_text(k): _text(v) for k, v in fields.items()})
                   for entry_id, fields in entries]
        yield entries_frame(decoded)
        start = f"({decoded[-1][0]}"
        if len(entries) < page:
            return


def read_all_events(
    log: InteractionLog,
    store: RecStore,
    after: EntryId | None = None,
    since_ms: int | None = None,
    types: tuple[str, ...] | None = None,
) -> tuple[pd.DataFrame, EntryId | None]:
    """Events past ``after`` from the log, then the stream's undrained tail, oldest first.

    Returns the events and the newest stream id read. ``since_ms`` skips log days before it
    and events accepted before it; ``types`` keeps only those event types.
    """
    logged = log.read(after=after, since_ms=since_ms, types=types)
    frames = [logged.events]
    tail_after = max(filter(None, [after, log.high_water_mark()]), default=None)
    for page in stream_tail(store, tail_after):
        keep = np.ones(len(page), dtype=bool)
        if since_ms is not None:
            keep &= (page[ENTRY_MS] >= since_ms).to_numpy()
        if types is not None:
            keep &= page["type"].isin(types).to_numpy()
        frames.append(page[keep])
    events = pd.concat([f for f in frames if len(f)], ignore_index=True) if any(
        len(f) for f in frames) else empty_events()
    newest = (EntryId(int(events[ENTRY_MS].iloc[-1]), int(events[ENTRY_SEQ].iloc[-1]))
              if len(events) else None)
    return events, newest


def event_records(events: pd.DataFrame) -> Iterator[Any]:
    """Rows as objects with one attribute per column, nulls as None (models.ab EventLike)."""
    plain = events.astype(object).where(events.notna(), None)
    plain["ts_ms"] = events["ts_ms"].fillna(0).astype(np.int64)
    return plain.itertuples(index=False)


# --- the Prefect task ---------------------------------------------------------------------


def event_log(log_dir: str | Path) -> InteractionLog:
    return InteractionLog(Path(log_dir))


@task(retries=2, retry_delay_seconds=[2, 10], cache_policy=NO_CACHE)
def drain_events(target: RedisTarget, log_dir: str, keep_s: float = 0.0) -> dict[str, object]:
    """Drain the event stream into the interaction log (durable first, then acknowledged)."""
    store = target.store()
    result = drain_stream(store.client, store.events_key, event_log(log_dir), keep_s=keep_s)
    log = get_run_logger()
    for damaged in result.damaged:
        log.warning("log file %s could not be read (%s): set aside as %s; its entries %s "
                    "are drained again from the stream where it still holds them",
                    damaged["file"], damaged["error"], damaged["moved_to"], damaged["entries"])
    if result.lost:
        log.error("events lost: entries %s were in a damaged log file and the stream no "
                  "longer holds them", ", ".join(result.lost))
    log.info(result.summary())
    return result.as_dict()
