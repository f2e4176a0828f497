"""Prometheus metrics of one API instance, in a registry of its own.

A registry per app (not the global one) keeps apps built in one process, tests above all,
from colliding. Each worker process exposes its own counters; scrape every worker (or sum
in the query) when running several.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from serving.handler import ServiceStats

__all__ = ["FALLBACK_REASONS", "ApiMetrics"]

# Reported even at zero so that dashboards and alerts see every series from the start.
FALLBACK_REASONS = ("popular-fallback", "degraded", "variant-unavailable", "experiment-invalid")
# Sub-millisecond resolution: the API's answers are expected well under 2 ms.
LATENCY_BUCKETS = (
    0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
)  # fmt: skip


class _ServiceCollector(Collector):
    """Reads the service's own counters at scrape time (nothing added on the request path)."""

    def __init__(self, stats: Callable[[], ServiceStats | None]) -> None:
        self._stats = stats

    def collect(self) -> Iterator[Metric]:
        stats = self._stats()
        cache = stats.cache if stats is not None else None
        hits = CounterMetricFamily(
            "goodbooks_cache_hits", "In-process cache lookups that found an entry."
        )
        hits.add_metric([], cache.hits if cache else 0)
        misses = CounterMetricFamily(
            "goodbooks_cache_misses", "In-process cache lookups that went to Redis."
        )
        misses.add_metric([], cache.misses if cache else 0)
        entries = GaugeMetricFamily("goodbooks_cache_entries", "Entries in the in-process cache.")
        entries.add_metric([], cache.entries if cache else 0)
        fallbacks = CounterMetricFamily(
            "goodbooks_serving_fallbacks",
            "Answers not served from the reader's own list, by reason.",
            labels=["reason"],
        )
        counts = stats.fallbacks if stats is not None else {}
        for reason in sorted(set(FALLBACK_REASONS) | set(counts)):
            fallbacks.add_metric([reason], counts.get(reason, 0))
        errors = CounterMetricFamily(
            "goodbooks_redis_errors", "Redis connection errors and timeouts met while serving."
        )
        errors.add_metric([], stats.redis_errors if stats is not None else 0)
        yield from (hits, misses, entries, fallbacks, errors)


class ApiMetrics:
    """Request counts and latencies by route and status, plus the service's counters."""

    def __init__(self, service_stats: Callable[[], ServiceStats | None]) -> None:
        self.registry = CollectorRegistry()
        self._requests = Counter(
            "goodbooks_http_requests",
            "HTTP requests answered, by route template, method and status.",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self._latency = Histogram(
            "goodbooks_http_request_duration_seconds",
            "Time from request to the end of the response, by route template, method, status.",
            ["route", "method", "status"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self._events = Counter(
            "goodbooks_events_written",
            "Events appended to the event stream, by type.",
            ["type"],
            registry=self.registry,
        )
        self.registry.register(_ServiceCollector(service_stats))
        # labels() takes a lock and builds a key on every call; the label sets are few.
        self._request_children: dict[tuple[str, str, int], Counter] = {}
        self._latency_children: dict[tuple[str, str, int], Histogram] = {}

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        key = (route, method, status)
        counter = self._request_children.get(key)
        if counter is None:
            counter = self._requests.labels(route, method, str(status))
            self._request_children[key] = counter
        counter.inc()
        histogram = self._latency_children.get(key)
        if histogram is None:
            histogram = self._latency.labels(route, method, str(status))
            self._latency_children[key] = histogram
        histogram.observe(seconds)

    def count_events(self, event_types: list[str]) -> None:
        for event_type in event_types:
            self._events.labels(event_type).inc()

    def render(self) -> tuple[bytes, str]:
        """The exposition text and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
