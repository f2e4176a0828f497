"""What the API answers: the response models (its OpenAPI contract) and the documented errors.

Routes answer with JSON they build themselves (``json_response`` here,
``recommendations_body`` in ``serving.fastpath``), not through these models, which describe
the answers in the OpenAPI schema: a body must match its model here. ``window_payload`` and
``readiness_payload`` build the two bodies that come from larger objects.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from serving.analytics import WindowSummary
from serving.handler import Readiness

__all__ = [
    "VERSION_EXAMPLE",
    "AliasOut",
    "ArmOut",
    "ErrorOut",
    "EventsAccepted",
    "HealthOut",
    "ReadyOut",
    "RecommendationsOut",
    "SimilarOut",
    "SummaryOut",
    "WindowOut",
    "error_responses",
    "json_response",
    "readiness_payload",
    "window_payload",
]

VERSION_EXAMPLE = "20261128T213000123456Z-a1b2"


class RecommendationsOut(BaseModel):
    """A reader's books, best first, with the arm and version that produced them."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "user_id": 42,
                    "items": [2767, 4, 1, 18, 27],
                    "source": "personalised",
                    "variant": "treatment",
                    "alias": "challenger",
                    "version": VERSION_EXAMPLE,
                    "experiment": "lightfm-vs-champion",
                }
            ]
        }
    )

    user_id: int
    items: list[int] = Field(description="Book ids, best first.")
    source: Literal["personalised", "popular-fallback", "degraded"] = Field(
        description="personalised: the reader's own list; popular-fallback: the reader is "
        "unknown to the model; degraded: Redis is unreachable, answered from memory."
    )
    variant: str = Field(description="Experiment arm; send it back with events.")
    alias: str = Field(description="Alias the arm serves (champion, challenger).")
    version: str = Field(description="Published version; send it back with events.")
    experiment: str | None = Field(description="Active experiment, null outside one.")


class SimilarOut(BaseModel):
    """Books that readers of `book_id` also liked."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "book_id": 2767,
                    "items": [3, 5, 17],
                    "source": "similar",
                    "variant": "control",
                    "alias": "champion",
                    "version": VERSION_EXAMPLE,
                    "experiment": None,
                }
            ]
        }
    )

    book_id: int
    items: list[int]
    source: Literal["similar", "degraded"] = Field(
        description="degraded: Redis is unreachable, answered from memory or popular books."
    )
    variant: str
    alias: str
    version: str
    experiment: str | None


class EventsAccepted(BaseModel):
    """Events accepted, with their stream ids in the order sent; a duplicate (an event id
    already written within the dedupe window) is accepted with its first write's id and
    not counted again."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"accepted": 2, "duplicates": 0,
                          "ids": ["1764365400000-0", "1764365400000-1"]}]
        }
    )

    accepted: int
    duplicates: int = Field(description="Events of this batch written before (not counted).")
    ids: list[str]


class ArmOut(BaseModel):
    """Event counts of one experiment arm and version in a window."""

    experiment: str | None
    variant: str
    version: str
    exposures: int = Field(description="Impressions.")
    clicks: int
    add_to_shelf: int
    ratings: int
    interactions: int = Field(description="Clicks + add-to-shelf + ratings.")
    ctr: float | None = Field(description="Clicks per impression; null without impressions.")


class WindowOut(BaseModel):
    """Counts over one window (UTC buckets from `start` to `end`)."""

    start: str
    end: str
    arms: list[ArmOut]


class SummaryOut(BaseModel):
    """Live counters per arm over the last hour and the last day."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "hour": {
                        "start": "2026-11-28T20:31:00+00:00",
                        "end": "2026-11-28T21:31:00+00:00",
                        "arms": [
                            {
                                "experiment": "lightfm-vs-champion",
                                "variant": "treatment",
                                "version": VERSION_EXAMPLE,
                                "exposures": 1200,
                                "clicks": 150,
                                "add_to_shelf": 40,
                                "ratings": 12,
                                "interactions": 202,
                                "ctr": 0.125,
                            }
                        ],
                    },
                    "day": {
                        "start": "2026-11-27T22:00:00+00:00",
                        "end": "2026-11-28T22:00:00+00:00",
                        "arms": [],
                    },
                }
            ]
        }
    )

    hour: WindowOut
    day: WindowOut


class AliasOut(BaseModel):
    alias: str
    version: str | None
    age_s: float | None
    problem: str | None


class ReadyOut(BaseModel):
    """Readiness: Redis reachable and every served alias on a recent version."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "status": "ready",
                    "redis": "ok",
                    "experiment": None,
                    "aliases": [
                        {
                            "alias": "champion",
                            "version": VERSION_EXAMPLE,
                            "age_s": 3600.0,
                            "problem": None,
                        }
                    ],
                    "warnings": [],
                }
            ]
        }
    )

    status: Literal["ready", "not-ready"]
    redis: str
    experiment: str | None
    aliases: list[AliasOut]
    warnings: list[str] = Field(
        description="Worth knowing but no reason to stop serving: a Redis that persists "
        "nothing, or only snapshots (accepted events wait there until the nightly drain); a "
        "pinned alias (an experiment, a rollback); a Redis alias serving another model "
        "version than the registry's alias names."
    )


class HealthOut(BaseModel):
    """Liveness. With the embedded Redis (which this process supervises) a server that died
    and cannot be started again makes the process unhealthy; an external Redis that is down
    does not (restarting the API would not bring it back): /ready says so."""

    status: Literal["ok", "unhealthy"]
    detail: str | None = None


class ErrorOut(BaseModel):
    """An error the caller can act on."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"detail": "what went wrong"}]})

    detail: str


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The documented error answers of a route, for its ``responses=``."""
    descriptions = {
        401: "No API key sent (X-API-Key).",
        403: "Wrong API key.",
        404: "Unknown book.",
        413: "Batch or body too large.",
        503: "Redis unreachable before anything was cached, nothing published, or the "
        "feature is not configured.",
    }
    return {code: {"model": ErrorOut, "description": descriptions[code]} for code in codes}


def json_response(payload: dict[str, Any], status: int = 200) -> Response:
    """A JSON response without the response-model round trip (the payload is built exact)."""
    body = json.dumps(payload, separators=(",", ":")).encode()
    return Response(body, status_code=status, media_type="application/json")


def window_payload(window: WindowSummary) -> dict[str, Any]:
    """A ``WindowOut`` body."""
    return {
        "start": window.start.isoformat(),
        "end": window.end.isoformat(),
        "arms": [
            {
                "experiment": arm.experiment,
                "variant": arm.variant,
                "version": arm.version,
                "exposures": arm.exposures,
                "clicks": arm.clicks,
                "add_to_shelf": arm.add_to_shelf,
                "ratings": arm.ratings,
                "interactions": arm.interactions,
                "ctr": arm.ctr,
            }
            for arm in window.arms
        ],
    }


def readiness_payload(state: Readiness) -> dict[str, Any]:
    """A ``ReadyOut`` body."""
    return {
        "status": "ready" if state.ready else "not-ready",
        "redis": state.redis,
        "experiment": state.experiment,
        "aliases": [
            {"alias": a.alias, "version": a.version, "age_s": a.age_s, "problem": a.problem}
            for a in state.aliases
        ],
        "warnings": list(state.warnings),
    }

