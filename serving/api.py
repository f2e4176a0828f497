"""The HTTP API around the serving function: it only reads Redis, no model is loaded.

``create_app()`` with no arguments reads the settings and connects to Redis on the first
request that needs it; ``goodbooks serve`` starts it with ``uvicorn --factory``. Tests and
embedding applications pass a ``ServingConfig`` and a ``RecStore`` instead.

The recommendation routes are ``async`` and call the (blocking) service directly on the
event loop: an answer costs at most one Redis GET (~0.1 ms), less than handing the request
to a worker thread would, and a hung Redis blocks the loop for at most the serving socket
timeout once per outage backoff, after which answers come from memory. Routes doing
heavier Redis work (events, analytics, readiness) run in the thread pool.

What the routes answer (the response models of the OpenAPI contract) is in
``serving.responses``; POST /events and its API key check in ``serving.events_endpoint``;
the Prometheus metrics in ``serving.metrics``. ``main`` is the ``goodbooks-api`` command.
"""

# No "from __future__ import annotations": FastAPI reads the route signatures at runtime,
# and their bounds (k <= max_k) are local to create_app.
import asyncio
import logging
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated

import redis
from fastapi import FastAPI, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from serving.analytics import summarise
from serving.config import ServingConfig
from serving.connection import OUTAGE_ERRORS
from serving.events import MAX_ID, EventWriter
from serving.events_endpoint import (
    EVENTS_PATH,
    add_events_route,
    openapi_with_event_schemas,
)
from serving.fastpath import ROUTE_PATH, RecommendationsFastPath, recommendations_body
from serving.handler import (
    InvalidRequestError,
    NoLiveVersionError,
    RecommendationService,
    ServiceStats,
    ServingUnavailableError,
    UnknownBookError,
)
from serving.metrics import ApiMetrics
from serving.middleware import RequestTelemetry, configure_json_logging
from serving.responses import (
    HealthOut,
    ReadyOut,
    RecommendationsOut,
    SimilarOut,
    SummaryOut,
    error_responses,
    json_response,
    readiness_payload,
    window_payload,
)
from serving.store import RecStore

__all__ = ["create_app"]

_log = logging.getLogger("goodbooks.serving.api")


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
        responses=error_responses(503),
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
        responses=error_responses(404, 503),
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
        return json_response(
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

    add_events_route(app, config, backend.writer, metrics)

    @app.get(
        "/analytics/summary",
        response_model=SummaryOut,
        responses=error_responses(503),
        tags=["events"],
        summary="Exposures, interactions and CTR per arm",
    )
    def analytics_summary() -> Response:
        """Counts per experiment, variant and version over the last hour and the last day."""
        windows = summarise(backend.service().store)
        return json_response({name: window_payload(w) for name, w in windows.items()})

    @app.get("/health", response_model=HealthOut, tags=["operations"], summary="Liveness")
    async def health() -> Response:
        """The process answers (an external Redis is not consulted)."""
        problem = await run_in_threadpool(backend.revive_redis) if backend.embedded else None
        if problem is not None:
            return json_response({"status": "unhealthy", "detail": problem}, status=503)
        return json_response({"status": "ok"})

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
        return json_response(readiness_payload(state), status=200 if state.ready else 503)

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
    app.openapi = openapi_with_event_schemas(app)  # type: ignore[method-assign]
    return app


async def _watch_embedded_redis(backend: _Backend, every_s: float) -> None:
    """Start the embedded Redis again whenever its process dies (a cheap pid check)."""
    if not backend.embedded:
        return
    while True:
        await asyncio.sleep(every_s)
        await run_in_threadpool(backend.revive_redis)


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
        if request.url.path == EVENTS_PATH and isinstance(exc, redis.TimeoutError):
            # Past the (long) write timeout the batch may still land: say so, and how to
            # retry safely.
            detail = (f"Redis did not answer in time ({exc}); the events may or may not "
                      "have been recorded: retry with the same event ids (or X-Request-ID) "
                      "and they are counted once")
        else:
            detail = f"Redis is unreachable ({exc}); nothing was recorded, retry later"
        return JSONResponse({"detail": detail}, status_code=503)

    # Only outages (a cluster failover among them): any other Redis error is a bug and
    # stays a 500.
    for error in OUTAGE_ERRORS:
        app.add_exception_handler(error, redis_unreachable)


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
