"""Reader events (impressions and interactions) into the Redis Stream of the key contract.

The HTTP API's ``POST /events`` and any other producer (a traffic simulator, a batch import)
write through ``EventWriter``, so every entry of ``{p}events`` has the same shape. Each
event carries the variant and version the reader was served (returned by the
recommendation response), which is what lets the A/B evaluation attribute it.

A stream entry is a flat map of strings: ``type``, ``user_id``, ``book_id``, ``variant``,
``version``, ``ts_ms`` (server time, Unix milliseconds), and when present ``experiment``,
``position`` (0-based rank shown), ``rating`` (1-5, rating events only), ``event_id`` and
``request_id``. ``StoredEvent.from_entry`` reads one back.

**Counted once.** An event may carry an ``event_id`` chosen by its producer (the API
derives ``<X-Request-ID>:<index in the batch>`` when the caller sent a request id and the
event none). The first write of an id appends the event and counts it; the same id again
within the dedupe window (the A/B attribution window by default) is accepted and answered
with the first write's stream id, but neither appended nor counted again — so a client
that retries a POST whose answer it never saw cannot double a click. The check, the append
and the counters run in one Lua script: a batch is all written or not at all, and a crash
cannot record an id without its event. Each id costs one small key
(``{p}event-id:<id>``, about 100 bytes) for the window.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    StringConstraints,
    model_validator,
)

from serving.analytics import HOUR_TTL_S, MINUTE_TTL_S, counter_field
from serving.experiments import NAME_PATTERN
from serving.keys import as_text
from serving.store import RecStore

__all__ = [
    "EVENT_ID_PATTERN",
    "EVENT_TYPES",
    "MAX_EVENT_ID",
    "MAX_ID",
    "BatchTooLargeError",
    "Event",
    "EventBatch",
    "EventType",
    "EventWriter",
    "StoredEvent",
    "Written",
]

EventType = Literal["impression", "click", "add_to_shelf", "rating"]
EVENT_TYPES: tuple[str, ...] = get_args(EventType)
# Ids are positive 32-bit integers: every language and database holds them as plain ints.
MAX_ID = 2**31 - 1
MAX_POSITION = 9_999
# The characters of a plain X-Request-ID, so that a derived id ("<request id>:<n>") is one.
MAX_EVENT_ID = 128
EVENT_ID_PATTERN = rf"[0-9A-Za-z._:-]{{1,{MAX_EVENT_ID}}}"


def _whole_number(value: object) -> object:
    """Accept integral JSON numbers written as floats (JSON Schema counts 7.0 as an integer)."""
    if type(value) is float and value.is_integer():
        return int(value)
    return value


# Strict after the conversion: "7", true and 7.5 are refused, not coerced. The bounds sit
# before the validator so that the JSON schema shows them as minimum / maximum.
Id = Annotated[int, Strict(), Field(ge=1, le=MAX_ID), BeforeValidator(_whole_number)]
Position = Annotated[int, Strict(), Field(ge=0, le=MAX_POSITION), BeforeValidator(_whole_number)]
Stars = Annotated[int, Strict(), Field(ge=1, le=5), BeforeValidator(_whole_number)]
Name = Annotated[str, StringConstraints(pattern=f"^{NAME_PATTERN}$")]
EventId = Annotated[str, StringConstraints(pattern=f"^{EVENT_ID_PATTERN}$")]
# The rating rule in JSON Schema terms, so that the published schema is the whole contract.
_RATING_RULE: dict[str, Any] = {
    "if": {"properties": {"type": {"const": "rating"}}, "required": ["type"]},
    "then": {"required": ["rating"], "properties": {"rating": {"type": "integer"}}},
    "else": {"properties": {"rating": {"type": "null"}}},
}


class BatchTooLargeError(ValueError):
    """More events in one batch than the writer accepts."""


class Event(BaseModel):
    """One thing a reader did with a book they were shown, and which arm showed it."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        json_schema_extra={
            "allOf": [_RATING_RULE],
            "examples": [
                {
                    "type": "click",
                    "user_id": 42,
                    "book_id": 2767,
                    "variant": "treatment",
                    "version": "20261128T213000123456Z-a1b2",
                    "experiment": "lightfm-vs-champion",
                    "position": 3,
                }
            ],
        },
    )

    type: EventType = Field(
        description="impression: the book was shown; the others are interactions with it."
    )
    user_id: Id = Field(description="The reader.")
    book_id: Id = Field(description="The book shown or acted on.")
    variant: Name = Field(description="`variant` of the recommendation response.")
    version: Name = Field(description="`version` of the recommendation response.")
    experiment: Name | None = Field(
        None, description="`experiment` of the recommendation response (null outside one)."
    )
    position: Position | None = Field(
        None, description="0-based rank of the book in the list shown."
    )
    rating: Stars | None = Field(
        None, description="Stars given; required for, and only for, rating events."
    )
    event_id: EventId | None = Field(
        None,
        description="The producer's id of this event (1-128 of A-Z a-z 0-9 . _ : -). "
        "Sent again within the dedupe window, the event is accepted but not counted "
        "twice: retrying a batch whose answer was lost is safe.",
    )

    @model_validator(mode="after")
    def _rating_matches_type(self) -> Event:
        if (self.type == "rating") != (self.rating is not None):
            raise ValueError("'rating' (1-5) is required for rating events and only for them")
        return self

    def stream_fields(self, ts_ms: int, request_id: str | None = None) -> dict[str, str]:
        """The flat string map stored as one stream entry."""
        fields = {
            "type": self.type,
            "user_id": str(self.user_id),
            "book_id": str(self.book_id),
            "variant": self.variant,
            "version": self.version,
            "ts_ms": str(ts_ms),
        }
        if self.experiment is not None:
            fields["experiment"] = self.experiment
        if self.position is not None:
            fields["position"] = str(self.position)
        if self.rating is not None:
            fields["rating"] = str(self.rating)
        if self.event_id is not None:
            fields["event_id"] = self.event_id
        if request_id:
            fields["request_id"] = request_id
        return fields


class EventBatch(BaseModel):
    """Events sent together; the API bounds how many (events_max_batch)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    events: list[Event] = Field(min_length=1)


@dataclass(frozen=True)
class StoredEvent:
    """An event as read back from the stream."""

    entry_id: str
    type: str
    user_id: int
    book_id: int
    variant: str
    version: str
    ts_ms: int
    experiment: str | None = None
    position: int | None = None
    rating: int | None = None
    request_id: str | None = None
    event_id: str | None = None

    @classmethod
    def from_entry(
        cls, entry_id: bytes | str, fields: Mapping[bytes | str, bytes | str]
    ) -> StoredEvent:
        """Decode one XRANGE / XREAD entry (bytes or text clients alike)."""
        text = {as_text(k): as_text(v) for k, v in fields.items()}

        def number(name: str) -> int | None:
            return int(text[name]) if name in text else None

        return cls(
            entry_id=as_text(entry_id),
            type=text["type"],
            user_id=int(text["user_id"]),
            book_id=int(text["book_id"]),
            variant=text["variant"],
            version=text["version"],
            ts_ms=int(text["ts_ms"]),
            experiment=text.get("experiment"),
            position=number("position"),
            rating=number("rating"),
            request_id=text.get("request_id"),
            event_id=text.get("event_id"),
        )


@dataclass(frozen=True)
class Written:
    """What a write did: each event's stream id (a duplicate's is its first write's)."""

    ids: list[str]
    duplicates: int = 0

    @property
    def recorded(self) -> int:
        """Events appended and counted by this write."""
        return len(self.ids) - self.duplicates


# KEYS: the stream, the minute and hour counter hashes, then the id key of each event that
# has an id, in order. ARGV: the minute and hour TTLs, the id TTL, the number of events,
# then per event: 1 if it has an id, its counter field, the number of stream field values
# (names and values), and those values. Returns the number of duplicates, then the ids.
_WRITE_EVENTS = """
local ttl_minute, ttl_hour, ttl_id = ARGV[1], ARGV[2], ARGV[3]
local n = tonumber(ARGV[4])
local pos, key, written, duplicates = 5, 4, 0, 0
local ids = {}
for i = 1, n do
  local has_id = ARGV[pos] == '1'
  local field = ARGV[pos + 1]
  local count = tonumber(ARGV[pos + 2])
  local first = false
  if has_id then first = redis.call('GET', KEYS[key]) end
  if first then
    ids[#ids + 1] = first
    duplicates = duplicates + 1
  else
    local values = {}
    for j = 1, count do values[j] = ARGV[pos + 2 + j] end
    local id = redis.call('XADD', KEYS[1], '*', unpack(values))
    if has_id then redis.call('SET', KEYS[key], id, 'EX', ttl_id) end
    redis.call('HINCRBY', KEYS[2], field, 1)
    redis.call('HINCRBY', KEYS[3], field, 1)
    ids[#ids + 1] = id
    written = written + 1
  end
  if has_id then key = key + 1 end
  pos = pos + 3 + count
end
if written > 0 then
  redis.call('EXPIRE', KEYS[2], ttl_minute)
  redis.call('EXPIRE', KEYS[3], ttl_hour)
end
table.insert(ids, 1, duplicates)
return ids
"""


class EventWriter:
    """Append validated events to ``{p}events`` and count them, all-or-nothing per batch,
    each event id once per dedupe window."""

    def __init__(
        self,
        store: RecStore,
        *,
        max_batch: int = 500,
        dedupe_window_s: float = 3600.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        if dedupe_window_s < 1:
            raise ValueError(f"dedupe_window_s must be >= 1 s, got {dedupe_window_s}")
        self._store = store
        self._max_batch = max_batch
        self._dedupe_window_s = int(dedupe_window_s)
        self._clock = clock
        self._script = store.client.register_script(_WRITE_EVENTS)

    @property
    def max_batch(self) -> int:
        return self._max_batch

    @property
    def store(self) -> RecStore:
        return self._store

    def write(self, events: Sequence[Event], request_id: str | None = None) -> Written:
        """Append the events (in order) and bump their counters, skipping ids already seen."""
        if len(events) > self._max_batch:
            raise BatchTooLargeError(
                f"{len(events)} events in one batch; send at most {self._max_batch} at a time"
            )
        if not events:
            return Written([])
        now = self._clock()
        ts_ms = int(now * 1000)
        minute = time.strftime("%Y%m%d%H%M", time.gmtime(now))
        keys = [
            self._store.events_key,
            self._store.stats_key("m", minute),
            self._store.stats_key("h", minute[:10]),
        ]
        args: list[str | int] = [MINUTE_TTL_S, HOUR_TTL_S, self._dedupe_window_s, len(events)]
        for event in events:
            if event.event_id is not None:
                keys.append(self._store.event_id_key(event.event_id))
            # No MAXLEN: the stream is trimmed only by the drain, below what it has
            # written to the interaction log (tasks.events), so nothing accepted is lost.
            values = [v for pair in event.stream_fields(ts_ms, request_id).items() for v in pair]
            field = counter_field(event.experiment, event.variant, event.version, event.type)
            args += [int(event.event_id is not None), field, len(values), *values]
        duplicates, *ids = self._script(keys=keys, args=args)
        return Written([as_text(entry_id) for entry_id in ids], int(duplicates))

