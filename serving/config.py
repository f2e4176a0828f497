"""What a serving process needs from the settings, read once by an entry point."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from serving.cache import RecCache
from serving.connection import connect_redis
from serving.events import EventWriter
from serving.handler import RecommendationService
from serving.store import RecStore

if TYPE_CHECKING:
    from settings import Settings

__all__ = ["ServingConfig", "store_for"]


@dataclass(frozen=True)
class ServingConfig:
    """Serving options; the defaults mirror the settings' defaults."""

    redis_url: str | None = None
    redis_db_path: Path | None = None
    redis_prefix: str = "gb:"
    # Short on purpose: Redis answers in well under a millisecond, so a read that takes
    # 100 ms means the server is hung, and the reader is better served degraded at once.
    socket_timeout_s: float = 0.1
    connect_timeout_s: float = 0.25
    alias: str = "champion"
    experiment: str | None = "default"
    max_k: int = 100
    cache_size: int = 20_000
    cache_ttl_s: float = 300.0
    pointer_ttl_s: float = 1.0
    outage_backoff_s: float = 1.0
    events_api_key: str | None = None
    events_max_batch: int = 500
    # Long on purpose: past it a write may still land, so a 503 could not say "nothing was
    # recorded". A retry with the same event ids is safe either way (counted once).
    events_write_timeout_s: float = 5.0
    events_dedupe_window_s: float = 3600.0
    ready_max_age_s: float = 2 * 86400.0
    access_log: bool = True
    json_logs: bool = True

    @classmethod
    def from_settings(cls, settings: Settings) -> ServingConfig:
        return cls(
            redis_url=settings.redis_url,
            redis_db_path=settings.redis_db_path,
            redis_prefix=settings.redis_prefix,
            socket_timeout_s=settings.serving_socket_timeout_s,
            connect_timeout_s=settings.serving_connect_timeout_s,
            experiment=settings.experiment_name,
            max_k=settings.top_n,
            cache_size=settings.serving_cache_size,
            cache_ttl_s=settings.serving_cache_ttl_s,
            pointer_ttl_s=settings.pointer_ttl_s,
            outage_backoff_s=settings.outage_backoff_s,
            events_api_key=settings.events_api_key,
            events_max_batch=settings.events_max_batch,
            events_write_timeout_s=settings.events_write_timeout_s,
            events_dedupe_window_s=settings.ab_attribution_window_s,
            ready_max_age_s=settings.ready_max_version_age_s,
            access_log=settings.api_access_log,
        )

    @property
    def events_max_body_bytes(self) -> int:
        """Request body bound of POST /events: a full batch of the largest events fits."""
        # A maximal event (every field at its longest, event id included) is under 700
        # bytes of JSON.
        return 1024 + 768 * self.events_max_batch

    def connect_store(self, socket_timeout_s: float | None = None) -> RecStore:
        """A store on the configured Redis, with the serving timeouts (or this read one)."""
        if self.redis_url is None and self.redis_db_path is None:
            raise ValueError("set redis_url, or redis_db_path for the embedded server")
        client = connect_redis(
            self.redis_url,
            self.redis_db_path or Path("unused"),
            socket_timeout_s=socket_timeout_s or self.socket_timeout_s,
            connect_timeout_s=self.connect_timeout_s,
        )
        return RecStore(client, self.redis_prefix)

    def connect_event_store(self) -> RecStore:
        """A store for event writes: its own connections, with the write timeout."""
        return self.connect_store(self.events_write_timeout_s)

    def build_service(self, store: RecStore) -> RecommendationService:
        return RecommendationService(
            store,
            self.alias,
            experiment=self.experiment,
            cache=RecCache(self.cache_size, self.cache_ttl_s),
            pointer_ttl_s=self.pointer_ttl_s,
            max_k=self.max_k,
            outage_backoff_s=self.outage_backoff_s,
        )

    def build_event_writer(self, store: RecStore) -> EventWriter:
        return EventWriter(
            store, max_batch=self.events_max_batch, dedupe_window_s=self.events_dedupe_window_s
        )


def store_for(settings: Settings) -> RecStore:
    """A store on the settings' Redis with the client's default timeouts (commands and the
    demo, which may wait longer than a request would)."""
    return RecStore(connect_redis(settings.redis_url, settings.redis_db_path),
                    settings.redis_prefix)

