"""The HTTP API around the serving function: it only reads Redis, no model is loaded.

``create_app()`` with no arguments reads the settings and connects to Redis on the first
request that needs it; ``goodbooks serve`` starts it with ``uvicorn --factory``. Tests and
embedding applications pass a ``ServingConfig`` and a ``RecStore`` instead.

The recommendation routes are ``async`` and call the (blocking) service directly on the
event loop: an answer costs at most one Redis GET (~0.1 ms), less than handing the request
to a worker thread would, and a hung Redis blocks the loop for at most the serving socket
timeout once per outage backoff, after which answers come from memory. Routes doing
heavier Redis work (events, analytics, readiness) run in the thread pool.
"""

# No "from __future__ import annotations": FastAPI reads the route signatures at runtime,
# and their bounds (k <= max_k) are local to create_app.
import asyncio
import hmac
import json
import logging
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import redis
from fastapi import FastAPI, HTTPException, Path, Query, Request, Security
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from fastapi.security import APIKeyHeader
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from serving.analytics import WindowSummary, summarise
from serving.config import ServingConfig
from serving.events import MAX_EVENT_ID, MAX_ID, Event, EventBatch, EventWriter
from serving.fastpath import ROUTE_PATH, RecommendationsFastPath, recommendations_body
from serving.handler import (
    InvalidRequestError,
    NoLiveVersionError,
    Readiness,
    RecommendationService,
    ServiceStats,
    ServingUnavailableError,
    UnknownBookError,
)
from serving.metrics import ApiMetrics
from serving.middleware import (
    RequestTelemetry,
    caller_request_id,
    configure_json_logging,
    request_id_var,
)
from serving.store import RecStore

__all__ = ["create_app"]

_log = logging.getLogger("goodbooks.serving.api")

API_KEY_HEADER = "X-API-Key"
VERSION_EXAMPLE = "20261128T213000123456Z-a1b2"


# --- response models (the OpenAPI contract) ------------------------------------------------
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


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    descriptions = {
        401: "No API key sent (X-API-Key).",
        403: "Wrong API key.",
        404: "Unknown book.",
        413: "Batch or body too large.",
        503: "Redis unreachable before anything was cached, nothing published, or the "
        "feature is not configured.",
    }
    return {code: {"model": ErrorOut, "description": descriptions[code]} for code in codes}


# --- the app ------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Parts:
    service: RecommendationService
    writer: EventWriter


class _Backend:
    """The service and event writer, built on first use (connecting to Redis lazily)."""

    def __init__(self, config: ServingConfig, store: RecStore | None) -> None:
        self._config = config
        self._store = store
        self._parts: _Parts | None = None
        self._lock = threading.Lock()

    def service(self) -> RecommendationService:
        return self._built().service

    def writer(self) -> EventWriter:
        return self._built().writer

    def stats(self) -> ServiceStats | None:
        parts = self._parts
        return parts.service.stats() if parts is not None else None

    def close(self) -> None:
        """Close the Redis client this backend connected itself (not one it was given)."""
        parts = self._parts
        if parts is not None and self._store is None:
            parts.service.store.client.close()
            parts.writer.store.client.close()
            if self._config.redis_url is None and self._config.redis_db_path is not None:
                # uvicorn re-raises SIGTERM after shutting down, which skips exit hooks:
                # release the embedded server here so it does not outlive the API.
                from serving.embedded import release_embedded_redis

                release_embedded_redis(self._config.redis_db_path)

    @property
    def embedded(self) -> bool:
        """True when this process connected the embedded Redis itself (and supervises it)."""
        return (self._store is None and self._config.redis_url is None
                and self._config.redis_db_path is not None)

    def revive_redis(self) -> str | None:
        """Restart the embedded server if it died; why it cannot be, or None when it is up."""
        if not self.embedded or self._parts is None:
            return None
        assert self._config.redis_db_path is not None
        # Only here, with no Redis URL: the production path never loads the embedded server.
        from serving.embedded import EmbeddedRedisError, revive_embedded_redis

        try:
            if revive_embedded_redis(self._config.redis_db_path):
                _log.warning("the embedded Redis at %s had died: started it again from its "
                             "append-only file", self._config.redis_db_path)
        except EmbeddedRedisError as exc:
            return str(exc)
        return None

    def _built(self) -> _Parts:
        parts = self._parts
        if parts is None:
            with self._lock:
                parts = self._parts
                if parts is None:
                    store = self._store or self._config.connect_store()
                    # Writes wait longer than reads (see ServingConfig): their own client.
                    writes = self._store or self._config.connect_event_store()
                    parts = _Parts(
                        self._config.build_service(store), self._config.build_event_writer(writes)
                    )
                    self._parts = parts
        return parts


def create_app(config: ServingConfig | None = None, store: RecStore | None = None) -> FastAPI:
    """Build the API; without arguments it is configured from the settings."""
    own_backend = store is None
    if config is None:
        # Imported here: importing serving must not read the environment.
        from settings import get_settings

        config = ServingConfig.from_settings(get_settings())
    if config.json_logs:
        configure_json_logging(access_log=config.access_log)
    backend = _Backend(config, store)
    metrics = ApiMetrics(backend.stats)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Built before the first request rather than during it (starting an embedded Redis
        # takes a while); connecting to a Redis URL does not touch the network yet, so a
        # Redis that is down does not stop the API from starting.
        await run_in_threadpool(backend.service)
        watchdog = asyncio.create_task(_watch_embedded_redis(backend, config.outage_backoff_s))
        yield
        watchdog.cancel()
        if own_backend:
            backend.close()

    app = FastAPI(
        title="GoodBooks Recommender",
        description=(
            "Precomputed book recommendations read from Redis, A/B experiment routing, and "
            "reader events for judging experiments. Every response carries an `X-Request-ID` "
            "header (the caller's, when it sent a plain one)."
        ),
        version="0.2.0",
        lifespan=lifespan,
    )
    _add_error_handlers(app)
    max_k = config.max_k

    @app.get(
        ROUTE_PATH,
        response_model=RecommendationsOut,
        responses=_errors(503),
        tags=["recommendations"],
        summary="A reader's recommendations",
    )
    async def recommendations(
        user_id: Annotated[int, Path(ge=1, le=MAX_ID, description="Reader id.", examples=[42])],
        k: Annotated[int, Query(ge=1, le=max_k, description="How many books.")] = 10,
    ) -> Response:
        """The reader's top `k` books from their experiment arm's published version."""
        # Plain valid requests are answered by RecommendationsFastPath before reaching here;
        # this route documents the endpoint and answers the rest.
        result = backend.service().recommend(user_id, k)
        body = recommendations_body(
            result.user_id,
            result.items,
            result.source,
            result.variant,
            result.alias,
            result.version,
            result.experiment,
        )
        return Response(body, media_type="application/json")

    @app.get(
        "/books/{book_id}/similar",
        response_model=SimilarOut,
        responses=_errors(404, 503),
        tags=["recommendations"],
        summary="Books similar to a book",
    )
    async def similar(
        book_id: Annotated[int, Path(ge=1, le=MAX_ID, description="Book id.", examples=[2767])],
        k: Annotated[int, Query(ge=1, le=max_k, description="How many books.")] = 10,
        user_id: Annotated[
            int | None,
            Query(ge=1, le=MAX_ID, description="The reader asking: picks their experiment arm."),
        ] = None,
    ) -> Response:
        """Books liked by readers who liked `book_id`, best first."""
        result = backend.service().similar(book_id, k, user_id)
        return _json_response(
            {
                "book_id": result.book_id,
                "items": result.items,
                "source": result.source,
                "variant": result.variant,
                "alias": result.alias,
                "version": result.version,
                "experiment": result.experiment,
            }
        )

    api_key = APIKeyHeader(
        name=API_KEY_HEADER,
        scheme_name="ApiKey",
        auto_error=False,
        description="The key configured as GOODBOOKS_EVENTS_API_KEY.",
    )

    async def require_events_key(key: Annotated[str | None, Security(api_key)]) -> None:
        expected = config.events_api_key
        if not expected:
            raise HTTPException(
                503,
                "event ingestion is disabled: no API key is configured; set "
                "GOODBOOKS_EVENTS_API_KEY on the server",
            )
        if not key:
            raise HTTPException(
                401,
                f"send the events API key in the {API_KEY_HEADER} header",
                headers={"WWW-Authenticate": "ApiKey"},
            )
        if not hmac.compare_digest(key.encode(), expected.encode()):
            raise HTTPException(403, "the API key is not valid")

    @app.post(
        "/events",
        status_code=202,
        response_model=EventsAccepted,
        dependencies=[Security(require_events_key)],
        responses={
            **_errors(401, 403, 413, 503),
            # Declared by hand: the body is parsed by hand (auth first, then size, then schema).
            422: {
                "description": "Invalid events: unknown type, non-integer ids, missing "
                "variant or version, ...",
                "content": {
                    "application/json": {
                        "schema": {"$ref": "#/components/schemas/HTTPValidationError"}
                    }
                },
            },
        },
        openapi_extra={"requestBody": _events_body_spec(config.events_max_batch)},
        tags=["events"],
        summary="Record impressions and interactions",
    )
    async def post_events(request: Request) -> Response:
        """Append a batch of events to the event stream; all are recorded or none."""
        body = await _read_body(request, config.events_max_body_bytes)
        batch = _parse_batch(body, config.events_max_batch)
        events = _with_event_ids(batch.events, caller_request_id(request.scope))
        written = await run_in_threadpool(backend.writer().write, events, request_id_var.get())
        if written.recorded:
            metrics.count_events([event.type for event in events])
        return _json_response(
            {"accepted": len(written.ids), "duplicates": written.duplicates, "ids": written.ids},
            status=202,
        )

    @app.get(
        "/analytics/summary",
        response_model=SummaryOut,
        responses=_errors(503),
        tags=["events"],
        summary="Exposures, interactions and CTR per arm",
    )
    def analytics_summary() -> Response:
        """Counts per experiment, variant and version over the last hour and the last day."""
        windows = summarise(backend.service().store)
        return _json_response({name: _window(w) for name, w in windows.items()})

    @app.get("/health", response_model=HealthOut, tags=["operations"], summary="Liveness")
    async def health() -> Response:
        """The process answers (an external Redis is not consulted)."""
        problem = await run_in_threadpool(backend.revive_redis) if backend.embedded else None
        if problem is not None:
            return _json_response({"status": "unhealthy", "detail": problem}, status=503)
        return _json_response({"status": "ok"})

    @app.get(
        "/ready",
        response_model=ReadyOut,
        responses={503: {"model": ReadyOut, "description": "Not ready; the body says why."}},
        tags=["operations"],
        summary="Readiness",
    )
    def ready() -> Response:
        """Redis answers and every alias served has a live version younger than the limit."""
        state = backend.service().readiness(config.ready_max_age_s)
        return _json_response(_readiness(state), status=200 if state.ready else 503)

    @app.get(
        "/metrics",
        response_class=PlainTextResponse,
        tags=["operations"],
        summary="Prometheus metrics",
    )
    async def prometheus_metrics() -> Response:
        """Request counts and latencies, cache hits and misses, fallbacks, Redis errors."""
        body, content_type = metrics.render()
        return Response(body, media_type=content_type)

    # Added before RequestTelemetry, so it runs inside it: fast answers get request ids,
    # metrics and access log lines like every other.
    route = next(r for r in app.routes if getattr(r, "path", None) == ROUTE_PATH)
    app.add_middleware(
        RecommendationsFastPath, service=backend.service, max_k=config.max_k, route=route
    )
    app.add_middleware(RequestTelemetry, metrics=metrics, access_log=config.access_log)
    app.openapi = _openapi_with_event_schemas(app)  # type: ignore[method-assign]
    return app


# --- helpers ------------------------------------------------------------------------------
async def _watch_embedded_redis(backend: _Backend, every_s: float) -> None:
    """Start the embedded Redis again whenever its process dies (a cheap pid check)."""
    if not backend.embedded:
        return
    while True:
        await asyncio.sleep(every_s)
        await run_in_threadpool(backend.revive_redis)


def _json_response(payload: dict[str, Any], status: int = 200) -> Response:
    """A JSON response without the response-model round trip (the payload is built exact)."""
    body = json.dumps(payload, separators=(",", ":")).encode()
    return Response(body, status_code=status, media_type="application/json")


def _add_error_handlers(app: FastAPI) -> None:
    # Async handlers: Starlette runs plain functions in the thread pool.
    def handler(status: int) -> Callable[[Request, Exception], Awaitable[Response]]:
        async def respond(request: Request, exc: Exception) -> Response:
            return JSONResponse({"detail": str(exc)}, status_code=status)

        return respond

    app.add_exception_handler(InvalidRequestError, handler(422))
    app.add_exception_handler(UnknownBookError, handler(404))
    app.add_exception_handler(NoLiveVersionError, handler(503))
    app.add_exception_handler(ServingUnavailableError, handler(503))

    async def redis_unreachable(request: Request, exc: Exception) -> Response:
        if request.url.path == "/events" and isinstance(exc, redis.TimeoutError):
            # Past the (long) write timeout the batch may still land: say so, and how to
            # retry safely.
            detail = (f"Redis did not answer in time ({exc}); the events may or may not "
                      "have been recorded: retry with the same event ids (or X-Request-ID) "
                      "and they are counted once")
        else:
            detail = f"Redis is unreachable ({exc}); nothing was recorded, retry later"
        return JSONResponse({"detail": detail}, status_code=503)

    # Only outages: any other Redis error is a bug and stays a 500.
    app.add_exception_handler(redis.ConnectionError, redis_unreachable)
    app.add_exception_handler(redis.TimeoutError, redis_unreachable)


async def _read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it is known to exceed ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise HTTPException(413, f"request body over {limit} bytes; send smaller batches")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HTTPException(413, f"request body over {limit} bytes; send smaller batches")
        chunks.append(chunk)
    return b"".join(chunks)


def _parse_batch(body: bytes, max_batch: int) -> EventBatch:
    """Validate a POST /events body: 413 for too many events, 422 for anything invalid."""
    try:
        raw = json.loads(body)
    except ValueError as exc:
        raise RequestValidationError(
            [{"type": "json_invalid", "loc": ("body",), "msg": f"body is not JSON: {exc}"}]
        ) from None
    except RecursionError:
        raise RequestValidationError(
            [{"type": "json_invalid", "loc": ("body",), "msg": "body is nested too deeply"}]
        ) from None
    events = raw.get("events") if isinstance(raw, dict) else None
    if isinstance(events, list) and len(events) > max_batch:
        raise HTTPException(
            413, f"{len(events)} events in one batch; send at most {max_batch} at a time"
        )
    try:
        return EventBatch.model_validate(raw)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_context=False, include_input=False)
        raise RequestValidationError(
            [{**error, "loc": ("body", *error["loc"])} for error in errors]
        ) from None


def _with_event_ids(events: list[Event], request_id: str | None) -> list[Event]:
    """Events without an id get ``<request id>:<index>`` when the caller sent a request id,
    so that a retried request (same X-Request-ID) is counted once."""
    if request_id is None:
        return events
    return [
        event if event.event_id is not None
        else event.model_copy(
            update={"event_id": f"{request_id[: MAX_EVENT_ID - 1 - len(str(index))]}:{index}"}
        )
        for index, event in enumerate(events)
    ]


def _events_body_spec(max_batch: int) -> dict[str, Any]:
    """The OpenAPI request body of POST /events (parsed by hand, so declared by hand)."""
    return {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["events"],
                    "additionalProperties": False,
                    "properties": {
                        "events": {
                            "type": "array",
                            "minItems": 1,
                            "maxItems": max_batch,
                            "items": {"$ref": "#/components/schemas/Event"},
                        }
                    },
                },
                "examples": {
                    "impression and click": {
                        "value": {
                            "events": [
                                {
                                    "type": "impression",
                                    "user_id": 42,
                                    "book_id": 2767,
                                    "variant": "treatment",
                                    "version": VERSION_EXAMPLE,
                                    "experiment": "lightfm-vs-champion",
                                    "position": 0,
                                },
                                {
                                    "type": "click",
                                    "user_id": 42,
                                    "book_id": 2767,
                                    "variant": "treatment",
                                    "version": VERSION_EXAMPLE,
                                    "experiment": "lightfm-vs-champion",
                                    "position": 0,
                                },
                            ]
                        }
                    },
                    "rating": {
                        "value": {
                            "events": [
                                {
                                    "type": "rating",
                                    "user_id": 42,
                                    "book_id": 2767,
                                    "variant": "control",
                                    "version": VERSION_EXAMPLE,
                                    "rating": 5,
                                },
                            ]
                        }
                    },
                },
            }
        },
    }


def _openapi_with_event_schemas(app: FastAPI) -> Callable[[], dict[str, Any]]:
    """FastAPI's schema plus the Event model, which POST /events refers to."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            event = EventBatch.model_json_schema(ref_template="#/components/schemas/{model}")
            schemas = schema.setdefault("components", {}).setdefault("schemas", {})
            schemas.update(event.get("$defs", {}))
            app.openapi_schema = schema
        return app.openapi_schema

    return openapi


def _window(window: WindowSummary) -> dict[str, Any]:
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


def _readiness(state: Readiness) -> dict[str, Any]:
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


def main(host: str | None = None, port: int | None = None) -> None:
    """``goodbooks-api``: serve the API on GOODBOOKS_API_HOST:GOODBOOKS_API_PORT (or the
    host and port given).

    The entry point of a serving-only install (no pipeline libraries); ``goodbooks serve``
    calls it from the full install.
    """
    import uvicorn

    from settings import get_settings

    settings = get_settings()
    uvicorn.run("serving.api:create_app", factory=True, host=host or settings.api_host,
                port=port or settings.api_port, log_level="info")

