"""Per-request telemetry: a request id (X-Request-ID in and out), JSON logs and metrics.

A plain ASGI middleware rather than Starlette's BaseHTTPMiddleware, which runs every
request through an extra task and memory stream, costing a sizeable share of the API's
throughput.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import time
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serving.metrics import ApiMetrics

__all__ = [
    "REQUEST_ID_HEADER",
    "JsonLogFormatter",
    "RequestTelemetry",
    "configure_json_logging",
    "request_id_var",
]

REQUEST_ID_HEADER = "X-Request-ID"
_HEADER_KEY = REQUEST_ID_HEADER.lower().encode()
# A caller's id is echoed into logs and headers: accept only short, plain tokens.
_REQUEST_ID_RE = re.compile(rb"[A-Za-z0-9._:-]{1,128}")
_UNMATCHED = "unmatched"

request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)

_access_log = logging.getLogger("goodbooks.serving.access")
# Attributes every LogRecord has; anything else was passed with extra= and is logged too.
_RECORD_FIELDS = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class JsonLogFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request id, extra fields."""

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = request_id_var.get()
        if request_id is not None:
            payload["request_id"] = request_id
        for key, value in vars(record).items():
            if key not in _RECORD_FIELDS:
                payload[key] = value
        if record.exc_info:
            payload["exception"] = self.formatException(record.exc_info)
        return json.dumps(payload, default=str)


def configure_json_logging(level: int = logging.INFO, access_log: bool = True) -> None:
    """Send the serving loggers to stderr as JSON lines (an entry point's job, idempotent)."""
    logger = logging.getLogger("goodbooks.serving")
    if not any(isinstance(h.formatter, JsonLogFormatter) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonLogFormatter())
        logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False  # the root logger's plain-text handlers would repeat each line
    if access_log:
        # RequestTelemetry writes the access log (as JSON, with the request id); uvicorn's
        # own plain-text access lines would duplicate every request.
        logging.getLogger("uvicorn.access").disabled = True


class RequestTelemetry:
    """ASGI middleware: request id, latency and count metrics, one access log line."""

    def __init__(self, app: ASGIApp, metrics: ApiMetrics, access_log: bool = True) -> None:
        self._app = app
        self._metrics = metrics
        self._access_log = access_log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = _incoming_request_id(scope) or os.urandom(16).hex()
        header = (_HEADER_KEY, request_id.encode())
        token = request_id_var.set(request_id)
        status = 500  # what the server answers if the app raises before responding

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), header]
            await send(message)

        try:
            await self._app(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            route = getattr(scope.get("route"), "path", None) or _UNMATCHED
            method = scope["method"]
            self._metrics.observe_request(route, method, status, elapsed)
            if self._access_log:
                _access_log.info(
                    "%s %s %d",
                    method,
                    scope["path"],
                    status,
                    extra={
                        "method": method,
                        "path": scope["path"],
                        "route": route,
                        "status": status,
                        "duration_ms": round(elapsed * 1000, 3),
                    },
                )
            request_id_var.reset(token)


def _incoming_request_id(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == _HEADER_KEY:
            return value.decode() if _REQUEST_ID_RE.fullmatch(value) else None
    return None
