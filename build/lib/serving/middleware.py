"""Per-request telemetry: a request id (X-Request-ID in and out), JSON logs and metrics.

A plain ASGI middleware rather than Starlette's BaseHTTPMiddleware, which runs every
request through an extra task and memory stream, costing a sizeable share of the API's
throughput.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import os
import re
import sys
import time
from contextvars import ContextVar
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serving.metrics import ApiMetrics

__all__ = [
    "REQUEST_ID_HEADER",
    "JsonLogFormatter",
    "RequestTelemetry",
    "configure_json_logging",
    "caller_request_id",
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
# json.dumps(payload, default=str) would build this encoder anew for every line.
_JSON_ENCODER = json.JSONEncoder(default=str)


class JsonLogFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request id, extra fields."""

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "ts": _utc_timestamp(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = request_id_var.get()
        if request_id is not None:
            payload["request_id"] = request_id
        payload.update({k: v for k, v in vars(record).items() if k not in _RECORD_FIELDS})
        if record.exc_info:
            payload["exception"] = self.formatException(record.exc_info)
        return _JSON_ENCODER.encode(payload)


def _utc_timestamp(created: float) -> str:
    """``datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds")``, cheaper.

    The text up to the seconds is formatted once per second; the microseconds are rounded
    half to even from the fractional part, as datetime rounds them.
    """
    fraction, seconds = math.modf(created)
    micros = round(fraction * 1e6)
    if micros >= 1_000_000:
        seconds, micros = seconds + 1, micros - 1_000_000
    elif micros < 0:
        seconds, micros = seconds - 1, micros + 1_000_000
    return f"{_utc_second(seconds)}.{micros // 1000:03d}+00:00"


@functools.lru_cache(maxsize=8)
def _utc_second(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))


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
        request_id = caller_request_id(scope) or os.urandom(16).hex()
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
            if self._access_log and _access_log.isEnabledFor(logging.INFO):
                _log_access(method, scope["path"], route, status, elapsed)
            request_id_var.reset(token)


def _log_access(method: str, path: str, route: str, status: int, elapsed: float) -> None:
    """Hand one access line to the access logger's handlers.

    The record is made here rather than by Logger.info, whose caller lookup (a walk up the
    stack), checks on the extra fields and layers of calls cost about as much as the request
    id and the metrics together. It comes from the same record factory, with the same
    attributes and extra fields, so handlers, filters and formatters see what Logger.info
    would have given them (the line number is that of the middleware's ``__call__``, not of
    a line inside it).
    """
    record = logging.getLogRecordFactory()(
        _access_log.name,
        logging.INFO,
        _ACCESS_SOURCE.co_filename,
        _ACCESS_SOURCE.co_firstlineno,
        "%s %s %d",
        (method, path, status),
        None,
        _ACCESS_SOURCE.co_name,
    )
    record.__dict__.update(
        method=method,
        path=path,
        route=route,
        status=status,
        duration_ms=round(elapsed * 1000, 3),
    )
    _access_log.handle(record)


# Where access records say they come from: the middleware's __call__, as with Logger.info.
_ACCESS_SOURCE = RequestTelemetry.__call__.__code__


def caller_request_id(scope: Scope) -> str | None:
    """The X-Request-ID the caller sent, when it is a plain one (not one made up here)."""
    for name, value in scope["headers"]:
        if name == _HEADER_KEY:
            return value.decode() if _REQUEST_ID_RE.fullmatch(value) else None
    return None
