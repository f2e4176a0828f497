"""POST /events: the API key check, the body parsed by hand, and its OpenAPI declaration.

A request is checked in the order that costs least: the key first (401, 403; 503 while no
key is configured), then the size (413: the body's bytes, then the number of events), then
the schema (422). Events sent without an id get one made from the caller's X-Request-ID,
when it sent one, so that a retried request is counted once. A batch is written in a worker
thread, all of it or none.
"""

# No "from __future__ import annotations": FastAPI reads the key check's signature at
# runtime, and the security scheme it names is local to add_events_route.
import hmac
import json
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import FastAPI, HTTPException, Request, Security
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import Response
from fastapi.security import APIKeyHeader
from pydantic import ValidationError

from serving.config import ServingConfig
from serving.events import MAX_EVENT_ID, Event, EventBatch, EventWriter
from serving.metrics import ApiMetrics
from serving.middleware import caller_request_id, request_id_var
from serving.responses import VERSION_EXAMPLE, EventsAccepted, error_responses, json_response

__all__ = ["API_KEY_HEADER", "EVENTS_PATH", "add_events_route", "openapi_with_event_schemas"]

API_KEY_HEADER = "X-API-Key"
EVENTS_PATH = "/events"


def add_events_route(
    app: FastAPI,
    config: ServingConfig,
    writer: Callable[[], EventWriter],
    metrics: ApiMetrics,
) -> None:
    """Add POST /events, guarded by the configured API key, writing through ``writer()``."""
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
        EVENTS_PATH,
        status_code=202,
        response_model=EventsAccepted,
        dependencies=[Security(require_events_key)],
        responses={
            **error_responses(401, 403, 413, 503),
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
        written = await run_in_threadpool(writer().write, events, request_id_var.get())
        if written.recorded:
            metrics.count_events([event.type for event in events])
        return json_response(
            {"accepted": len(written.ids), "duplicates": written.duplicates, "ids": written.ids},
            status=202,
        )


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


def openapi_with_event_schemas(app: FastAPI) -> Callable[[], dict[str, Any]]:
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

