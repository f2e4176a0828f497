"""Reader events (impressions and interactions) into the Redis Stream of the key contract.

The HTTP API's ``POST /events`` and any other producer (a traffic simulator, a batch import)
write through ``EventWriter``, so every entry of ``{p}events`` has the same shape. Each
event carries the variant and version the reader was served (returned by the
recommendation response), which is what lets the A/B evaluation attribute it.

A stream entry is a flat map of strings: ``type``, ``user_id``, ``book_id``, ``variant``,
``version``, ``ts_ms`` (server time, Unix milliseconds), and when present ``experiment``,
``position`` (0-based rank shown), ``rating`` (1-5, rating events only) and
``request_id``. ``StoredEvent.from_entry`` reads one back.
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

from serving.analytics import add_counts, counter_field
from serving.experiments import NAME_PATTERN
from serving.store import RecStore

__all__ = [
    "EVENT_TYPES",
    "MAX_ID",
    "BatchTooLargeError",
    "Event",
    "EventBatch",
    "EventType",
    "EventWriter",
    "StoredEvent",
]

EventType = Literal["impression", "click", "add_to_shelf", "rating"]
EVENT_TYPES: tuple[str, ...] = get_args(EventType)
# Ids are positive 32-bit integers: every language and database holds them as plain ints.
MAX_ID = 2**31 - 1
MAX_POSITION = 9_999


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

    @classmethod
    def from_entry(
        cls, entry_id: bytes | str, fields: Mapping[bytes | str, bytes | str]
    ) -> StoredEvent:
        """Decode one XRANGE / XREAD entry (bytes or text clients alike)."""
        text = {_text(k): _text(v) for k, v in fields.items()}

        def number(name: str) -> int | None:
            return int(text[name]) if name in text else None

        return cls(
            entry_id=_text(entry_id),
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
        )


class EventWriter:
    """Append validated events to ``{p}events`` and count them, all-or-nothing per batch."""

    def __init__(
        self,
        store: RecStore,
        *,
        max_batch: int = 500,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        self._store = store
        self._max_batch = max_batch
        self._clock = clock

    @property
    def max_batch(self) -> int:
        return self._max_batch

    def write(self, events: Sequence[Event], request_id: str | None = None) -> list[str]:
        """Append the events (in order) and bump their counters; return the stream ids."""
        if len(events) > self._max_batch:
            raise BatchTooLargeError(
                f"{len(events)} events in one batch; send at most {self._max_batch} at a time"
            )
        if not events:
            return []
        now = self._clock()
        ts_ms = int(now * 1000)
        stream = self._store.events_key
        # MULTI/EXEC: the stream and the live counters never disagree about a batch.
        with self._store.client.pipeline(transaction=True) as pipe:
            for event in events:
                # No MAXLEN: the stream is trimmed only by the drain, below what it has
                # written to the interaction log (tasks.events), so nothing accepted is lost.
                pipe.xadd(stream, event.stream_fields(ts_ms, request_id))  # type: ignore[arg-type]
            add_counts(
                pipe,
                self._store,
                (counter_field(e.experiment, e.variant, e.version, e.type) for e in events),
                now,
            )
            replies = pipe.execute()
        return [_text(entry_id) for entry_id in replies[: len(events)]]


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
