"""Live event counters per experiment arm: written with each event batch, summed on request.

Every event written increments, in the same script as its stream entry (serving.events),
one field per (experiment, variant, version, event type) in two hashes: the UTC minute's
``{p}stats:m:{YYYYMMDDHHMM}`` (kept 2 hours) and the UTC hour's ``{p}stats:h:{YYYYMMDDHH}``
(kept 2 days). The last hour is the sum of the last 60 minute hashes (the current one
included), the last day the sum of the last 24 hour hashes: one pipelined round trip, no
matter how many events arrived. The counters are for watching an experiment live; the A/B
evaluation reads the stream itself.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from models.schema import INTERACTION_TYPES
from serving.keys import as_text
from serving.store import RecStore

__all__ = [
    "INTERACTION_TYPES",
    "ArmCounts",
    "WindowSummary",
    "counter_field",
    "summarise",
]

EVENT_TYPES = ("impression", *INTERACTION_TYPES)
# Counter fields have no experiment part when the reader was served outside an experiment.
NO_EXPERIMENT = "-"
# Kept twice as long as the window they serve, so a window is never missing its oldest bucket.
MINUTE_TTL_S = 2 * 3600
HOUR_TTL_S = 2 * 86400

Window = Literal["hour", "day"]


@dataclass(frozen=True)
class ArmCounts:
    """Event counts of one (experiment, variant, version) in a window."""

    experiment: str | None
    variant: str
    version: str
    exposures: int
    clicks: int
    add_to_shelf: int
    ratings: int

    @property
    def interactions(self) -> int:
        return self.clicks + self.add_to_shelf + self.ratings

    @property
    def ctr(self) -> float | None:
        """Clicks per exposure (impression); None before the first exposure."""
        return self.clicks / self.exposures if self.exposures else None


@dataclass(frozen=True)
class WindowSummary:
    """Counts per arm over one window, and the UTC buckets it covers."""

    window: Window
    start: datetime
    end: datetime
    arms: tuple[ArmCounts, ...]


def counter_field(experiment: str | None, variant: str, version: str, event_type: str) -> str:
    """The hash field an event increments; names never contain '|' (see experiments)."""
    return f"{experiment or NO_EXPERIMENT}|{variant}|{version}|{event_type}"


def summarise(store: RecStore, now: float | None = None) -> dict[Window, WindowSummary]:
    """Counts per arm over the last hour and the last day, read in one round trip."""
    now = time.time() if now is None else now
    whole_minute = int(now // 60) * 60
    minutes = [whole_minute - 60 * i for i in range(60)]
    hours = [int(now // 3600) * 3600 - 3600 * i for i in range(24)]
    with store.client.pipeline(transaction=False) as pipe:
        for start in minutes:
            pipe.hgetall(store.stats_key("m", time.strftime("%Y%m%d%H%M", time.gmtime(start))))
        for start in hours:
            pipe.hgetall(store.stats_key("h", time.strftime("%Y%m%d%H", time.gmtime(start))))
        replies = pipe.execute()
    end = datetime.fromtimestamp(whole_minute + 60, UTC)
    return {
        "hour": WindowSummary(
            "hour", datetime.fromtimestamp(minutes[-1], UTC), end, _arms(replies[:60])
        ),
        "day": WindowSummary(
            "day",
            datetime.fromtimestamp(hours[-1], UTC),
            datetime.fromtimestamp(hours[0] + 3600, UTC),
            _arms(replies[60:]),
        ),
    }


def _arms(hashes: list[dict[bytes | str, bytes | str]]) -> tuple[ArmCounts, ...]:
    totals: Counter[tuple[str, str, str, str]] = Counter()
    for counts in hashes:
        for raw_field, raw_value in counts.items():
            field = as_text(raw_field)
            parts = field.split("|")
            if len(parts) != 4 or parts[3] not in EVENT_TYPES:
                continue  # a field this version of the code did not write
            experiment, variant, version, event_type = parts
            totals[(experiment, variant, version, event_type)] += int(raw_value)
    arms: dict[tuple[str, str, str], Counter[str]] = {}
    for (experiment, variant, version, event_type), count in totals.items():
        arms.setdefault((experiment, variant, version), Counter())[event_type] += count
    return tuple(
        ArmCounts(
            experiment=None if experiment == NO_EXPERIMENT else experiment,
            variant=variant,
            version=version,
            exposures=counts.get("impression", 0),
            clicks=counts.get("click", 0),
            add_to_shelf=counts.get("add_to_shelf", 0),
            ratings=counts.get("rating", 0),
        )
        for (experiment, variant, version), counts in sorted(arms.items())
    )
