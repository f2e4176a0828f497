"""The HTTP API on a real Redis: answers, errors, events, auth, readiness, metrics, logs."""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from fastapi.testclient import TestClient

import settings
from serving.api import create_app
from serving.config import ServingConfig
from serving.connection import connect_redis
from serving.embedded import release_embedded_redis
from serving.events import StoredEvent
from serving.experiments import Experiment, Variant, assign_variant
from serving.middleware import JsonLogFormatter
from serving.store import RecStore

KEY = "s3cret-key"
VERSION_FIELDS = {"user_id", "items", "source", "variant", "alias", "version", "experiment"}


def config(**changes: object) -> ServingConfig:
    options: dict[str, object] = {
        "json_logs": False,
        "events_api_key": KEY,
        "events_max_batch": 5,
        "pointer_ttl_s": 0.0,
        "ready_max_age_s": 3600.0,
    }
    return ServingConfig(**{**options, **changes})  # type: ignore[arg-type]


@pytest.fixture
def champion(store: RecStore, publish) -> str:  # type: ignore[no-untyped-def]
    version = publish()
    store.set_alias("champion", version)
    return version


@pytest.fixture
def client(store: RecStore, champion: str) -> Iterator[TestClient]:
    with TestClient(create_app(config(), store), raise_server_exceptions=False) as test_client:
        yield test_client


def click(**changes: object) -> dict[str, object]:
    return {
        "type": "click",
        "user_id": 1,
        "book_id": 11,
        "variant": "control",
        "version": "v1",
        **changes,
    }


# --- recommendations ------------------------------------------------------------------------


def test_recommendations_answer_with_arm_and_version(client: TestClient, champion: str) -> None:
    response = client.get("/recommendations/2", params={"k": 3})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == VERSION_FIELDS
    assert body == {
        "user_id": 2,
        "items": [12, 13, 14],
        "source": "personalised",
        "variant": "control",
        "alias": "champion",
        "version": champion,
        "experiment": None,
    }


def test_unknown_reader_gets_popular_books(client: TestClient, popular_books: list[int]) -> None:
    body = client.get("/recommendations/777?k=2").json()
    assert (body["items"], body["source"]) == (popular_books[:2], "popular-fallback")


def test_experiment_arm_is_reported(store: RecStore, client: TestClient, publish) -> None:  # type: ignore[no-untyped-def]
    store.set_alias("challenger", publish(first_book=500))
    exp = Experiment(
        "default",
        (Variant("control", "champion", 0.5), Variant("treatment", "challenger", 0.5)),
        "salt-9",
    )
    store.put_experiment(exp)
    for user_id in (1, 2, 3):
        body = client.get(f"/recommendations/{user_id}?k=1").json()
        expected = assign_variant(exp, user_id)
        assert (body["variant"], body["alias"], body["experiment"]) == (
            expected.name,
            expected.alias,
            "default",
        )


@pytest.mark.parametrize(
    "path",
    [
        "/recommendations/0",
        "/recommendations/-3",
        "/recommendations/abc",
        "/recommendations/1.5",
        "/recommendations/2147483648",
        "/recommendations/1?k=0",
        "/recommendations/1?k=101",
        "/recommendations/1?k=ten",
        "/books/0/similar",
        "/books/10/similar?k=1000",
        "/books/10/similar?user_id=0",
    ],
)
def test_bad_ids_and_counts_are_422_with_a_message(client: TestClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 422
    assert response.json()["detail"][0]["msg"]


def test_similar_books_and_unknown_book(client: TestClient, champion: str) -> None:
    body = client.get("/books/10/similar?k=2&user_id=1").json()
    assert (body["items"], body["source"], body["version"]) == ([11, 12], "similar", champion)
    missing = client.get("/books/9999/similar")
    assert missing.status_code == 404
    assert "book 9999 is not in the catalogue" in missing.json()["detail"]


def test_nothing_published_is_503(store: RecStore) -> None:
    with TestClient(create_app(config(), store), raise_server_exceptions=False) as client:
        response = client.get("/recommendations/1")
    assert response.status_code == 503
    assert "points at no version" in response.json()["detail"]


def test_redis_down_before_any_read_is_503_quickly(closed_port: int) -> None:
    store = ServingConfig(redis_url=f"redis://127.0.0.1:{closed_port}/0").connect_store()
    with TestClient(create_app(config(), store), raise_server_exceptions=False) as client:
        response = client.get("/recommendations/1")
        assert response.status_code == 503
        assert "unreachable" in response.json()["detail"]
        ready = client.get("/ready")
        assert ready.status_code == 503 and ready.json()["redis"].startswith("unreachable")
        events = client.post("/events", json={"events": [click()]}, headers={"X-API-Key": KEY})
        assert events.status_code == 503 and "nothing was recorded" in events.json()["detail"]


# --- events -----------------------------------------------------------------------------------


def test_events_are_written_with_the_request_id(client: TestClient, store: RecStore) -> None:
    response = client.post(
        "/events",
        json={"events": [click(type="impression", position=0), click(position=0)]},
        headers={"X-API-Key": KEY, "X-Request-ID": "batch-17"},
    )
    assert response.status_code == 202
    body = response.json()
    assert body["accepted"] == 2 and len(body["ids"]) == 2
    stored = [StoredEvent.from_entry(i, f) for i, f in store.client.xrange(store.events_key)]
    assert [(s.type, s.request_id, s.variant, s.version) for s in stored] == [
        ("impression", "batch-17", "control", "v1"),
        ("click", "batch-17", "control", "v1"),
    ]
    summary = client.get("/analytics/summary").json()
    (arm,) = summary["hour"]["arms"]
    assert (arm["exposures"], arm["clicks"], arm["interactions"], arm["ctr"]) == (1, 1, 1, 1.0)
    assert summary["day"]["arms"] == summary["hour"]["arms"]


def test_a_retried_request_is_counted_once(client: TestClient, store: RecStore) -> None:
    # The answer to the first POST was lost; the client sends it again, twice, with the
    # same X-Request-ID: the events are accepted each time and counted once.
    body = {"events": [click(type="impression", position=0), click(position=0)]}
    headers = {"X-API-Key": KEY, "X-Request-ID": "retry-me"}
    answers = [client.post("/events", json=body, headers=headers) for _ in range(3)]
    assert [a.status_code for a in answers] == [202, 202, 202]
    assert [a.json()["duplicates"] for a in answers] == [0, 2, 2]
    assert answers[1].json()["ids"] == answers[0].json()["ids"] == answers[2].json()["ids"]
    stored = [StoredEvent.from_entry(i, f) for i, f in store.client.xrange(store.events_key)]
    assert [s.event_id for s in stored] == ["retry-me:0", "retry-me:1"]
    (arm,) = client.get("/analytics/summary").json()["hour"]["arms"]
    assert (arm["exposures"], arm["clicks"]) == (1, 1)


def test_event_ids_count_once_across_requests(client: TestClient, store: RecStore) -> None:
    first = client.post("/events", json={"events": [click(event_id="e-1")]},
                        headers={"X-API-Key": KEY})
    # A new request (its own request id) holding one old event and one new one.
    second = client.post("/events", json={"events": [click(event_id="e-1"), click(event_id="e-2")]},
                         headers={"X-API-Key": KEY, "X-Request-ID": "other"})
    assert (first.json()["duplicates"], second.json()["duplicates"]) == (0, 1)
    assert second.json()["ids"][0] == first.json()["ids"][0]
    assert store.client.xlen(store.events_key) == 2
    # Without an event id or a request id of the caller's, a resend is a new event.
    for _ in range(2):
        client.post("/events", json={"events": [click()]}, headers={"X-API-Key": KEY})
    assert store.client.xlen(store.events_key) == 4


def test_a_deeply_nested_body_is_422(client: TestClient, store: RecStore) -> None:
    body = b'{"events": ' + b"[" * 2000 + b"]" * 2000 + b"}"  # within the size bound
    response = client.post("/events", content=body, headers={"X-API-Key": KEY})
    assert response.status_code == 422
    assert "nested too deeply" in response.json()["detail"][0]["msg"]
    assert store.client.exists(store.events_key) == 0


def test_event_writes_wait_longer_than_reads() -> None:
    serving = config(redis_url="redis://127.0.0.1:1/0", socket_timeout_s=0.1,
                     events_write_timeout_s=4.0)
    reads, writes = serving.connect_store(), serving.connect_event_store()
    assert reads.client.connection_pool.connection_kwargs["socket_timeout"] == 0.1
    assert writes.client.connection_pool.connection_kwargs["socket_timeout"] == 4.0


@pytest.mark.parametrize(
    ("headers", "status", "message"),
    [
        ({}, 401, "X-API-Key"),
        ({"X-API-Key": ""}, 401, "X-API-Key"),
        ({"X-API-Key": "wrong"}, 403, "not valid"),
    ],
)
def test_events_need_the_key(
    client: TestClient, store: RecStore, headers: dict[str, str], status: int, message: str
) -> None:
    response = client.post("/events", json={"events": [click()]}, headers=headers)
    assert response.status_code == status
    assert message in response.json()["detail"]
    assert store.client.exists(store.events_key) == 0


def test_events_are_refused_when_no_key_is_configured(store: RecStore, champion: str) -> None:
    app = create_app(config(events_api_key=None), store)
    with TestClient(app) as client:
        response = client.post(
            "/events", json={"events": [click()]}, headers={"X-API-Key": "anything"}
        )
    assert response.status_code == 503
    assert "GOODBOOKS_EVENTS_API_KEY" in response.json()["detail"]


def test_auth_comes_before_reading_the_body(client: TestClient) -> None:
    response = client.post("/events", content=b"{not json", headers={"X-API-Key": "wrong"})
    assert response.status_code == 403


def test_too_many_events_is_413(client: TestClient, store: RecStore) -> None:
    response = client.post("/events", json={"events": [click()] * 6}, headers={"X-API-Key": KEY})
    assert response.status_code == 413
    assert "at most 5" in response.json()["detail"]
    assert store.client.exists(store.events_key) == 0


def test_too_large_body_is_413(client: TestClient) -> None:
    body = json.dumps({"events": [click(variant="x" * 64)] * 5, "pad": " " * 10_000})
    response = client.post(
        "/events", content=body, headers={"X-API-Key": KEY, "Content-Type": "application/json"}
    )
    assert response.status_code == 413
    assert "bytes" in response.json()["detail"]


@pytest.mark.parametrize(
    ("body", "where"),
    [
        ({"events": [click(type="purchase")]}, "type"),
        ({"events": [click(user_id="1")]}, "user_id"),
        ({"events": [click(variant=None)]}, "variant"),
        ({"events": []}, "events"),
        ({"events": [click()], "extra": 1}, "extra"),
        ([click()], "body"),
    ],
)
def test_invalid_events_are_422(client: TestClient, body: object, where: str) -> None:
    response = client.post("/events", json=body, headers={"X-API-Key": KEY})
    assert response.status_code == 422
    assert where in json.dumps(response.json()["detail"])


def test_non_json_body_is_422(client: TestClient) -> None:
    response = client.post("/events", content=b"{oops", headers={"X-API-Key": KEY})
    assert response.status_code == 422
    assert "not JSON" in response.json()["detail"][0]["msg"]


# --- operations -------------------------------------------------------------------------------


def test_health_and_ready(client: TestClient, champion: str) -> None:
    assert client.get("/health").json() == {"status": "ok"}
    ready = client.get("/ready")
    assert ready.status_code == 200
    body = ready.json()
    assert body["status"] == "ready" and body["redis"] == "ok"
    assert body["aliases"][0]["alias"] == "champion"
    assert body["aliases"][0]["version"] == champion
    assert 0 <= body["aliases"][0]["age_s"] < 60


def test_ready_warns_of_pins_and_of_registries_that_disagree(
    client: TestClient, store: RecStore, champion: str
) -> None:
    from serving.pins import pin_alias, record_registry_alias

    # The batch was scored from model version 7 (what the score flow writes in a manifest).
    store.client.hset(store.manifest_key(champion), "model_version", "7")
    pin_alias(store, "champion", "rollback", "rolled back by hand", "7", champion)
    record_registry_alias(store, "champion", "99")  # MLflow moved on; Redis did not
    body = client.get("/ready").json()
    assert body["status"] == "ready"  # warnings do not stop serving
    assert any("champion is pinned by rollback" in w for w in body["warnings"])
    assert any("the registry's champion is model version 99" in w for w in body["warnings"])


def test_ready_fails_on_a_stale_version(store: RecStore, champion: str) -> None:
    with TestClient(create_app(config(ready_max_age_s=0.001), store)) as client:
        response = client.get("/ready")
    assert response.status_code == 503
    assert "older than" in response.json()["aliases"][0]["problem"]


def test_request_id_is_echoed_or_made(client: TestClient) -> None:
    assert (
        client.get("/health", headers={"X-Request-ID": "abc-123"}).headers["x-request-id"]
        == "abc-123"
    )
    made = client.get("/health", headers={"X-Request-ID": "bad id\twith spaces"})
    assert made.headers["x-request-id"] != "bad id\twith spaces"
    assert len(made.headers["x-request-id"]) == 32
    assert client.get("/nowhere").headers["x-request-id"]


def test_metrics_count_requests_cache_and_fallbacks(client: TestClient) -> None:
    client.get("/recommendations/1")
    client.get("/recommendations/1")
    client.get("/recommendations/777")
    client.get("/recommendations/0")
    text = client.get("/metrics").text
    assert (
        'goodbooks_http_requests_total{method="GET",route="/recommendations/{user_id}",'
        'status="200"} 3.0'
    ) in text
    assert (
        'goodbooks_http_requests_total{method="GET",route="/recommendations/{user_id}",'
        'status="422"} 1.0'
    ) in text
    assert 'goodbooks_http_request_duration_seconds_bucket{le="0.001",method="GET",' in text
    assert "goodbooks_cache_hits_total 1.0" in text
    assert "goodbooks_cache_misses_total 2.0" in text
    assert 'goodbooks_serving_fallbacks_total{reason="popular-fallback"} 1.0' in text
    assert 'goodbooks_serving_fallbacks_total{reason="degraded"} 0.0' in text
    assert "goodbooks_redis_errors_total 0.0" in text


def test_apps_have_separate_metrics(store: RecStore, champion: str) -> None:
    first = TestClient(create_app(config(), store))
    second = TestClient(create_app(config(), store))
    first.get("/health")
    assert 'route="/health"' in first.get("/metrics").text
    assert 'route="/health"' not in second.get("/metrics").text


def test_access_log_is_json_with_the_request_id(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    formatter = JsonLogFormatter()
    lines: list[dict[str, object]] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(json.loads(formatter.format(record)))

    handler = Collect()
    logger = logging.getLogger("goodbooks.serving.access")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        client.get("/recommendations/1?k=2", headers={"X-Request-ID": "trace-1"})
    finally:
        logger.removeHandler(handler)
        logger.setLevel(logging.NOTSET)
    (line,) = lines
    assert line["request_id"] == "trace-1"
    assert (line["route"], line["status"], line["method"]) == (
        "/recommendations/{user_id}",
        200,
        "GET",
    )
    assert line["level"] == "INFO" and isinstance(line["duration_ms"], float)


def test_openapi_documents_every_route_with_examples(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    assert set(spec["paths"]) == {
        "/recommendations/{user_id}",
        "/books/{book_id}/similar",
        "/events",
        "/analytics/summary",
        "/health",
        "/ready",
        "/metrics",
    }
    for path, operations in spec["paths"].items():
        for operation in operations.values():
            assert operation.get("summary") and operation.get("description"), path
    schemas = spec["components"]["schemas"]
    for name in (
        "RecommendationsOut",
        "SimilarOut",
        "EventsAccepted",
        "SummaryOut",
        "ReadyOut",
        "Event",
    ):
        assert schemas[name].get("examples"), name
    events = spec["paths"]["/events"]["post"]
    assert events["security"] == [{"ApiKey": []}]
    assert set(events["responses"]) >= {"202", "401", "403", "413", "422", "503"}
    body = events["requestBody"]["content"]["application/json"]
    assert body["schema"]["properties"]["events"]["maxItems"] == 5 and body["examples"]
    assert spec["components"]["securitySchemes"]["ApiKey"]["name"] == "X-API-Key"


def test_create_app_without_arguments_reads_the_settings(
    monkeypatch: pytest.MonkeyPatch,
    redis_client: redis.Redis,
    redis_prefix: str,
    tmp_path: Path,
    publish,  # type: ignore[no-untyped-def]
) -> None:
    monkeypatch.setenv("GOODBOOKS_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("GOODBOOKS_REDIS_PREFIX", redis_prefix)
    monkeypatch.setenv("GOODBOOKS_TOP_N", "7")
    settings.get_settings.cache_clear()
    try:
        configured = settings.get_settings()
        store = RecStore(
            connect_redis(configured.redis_url, configured.redis_db_path), redis_prefix
        )
        store.set_alias("champion", publish(into=store))
        with TestClient(create_app()) as client:
            assert client.get("/recommendations/3?k=2").json()["items"] == [13, 14]
            assert client.get("/recommendations/3?k=8").status_code == 422  # k <= top_n
            assert client.post("/events", json={"events": [click()]}).status_code == 503
    finally:
        settings.get_settings.cache_clear()
        release_embedded_redis(tmp_path / "redis" / "goodbooks.rdb")  # no-op on REDIS_URL
        logging.getLogger("goodbooks.serving").handlers.clear()
        logging.getLogger("goodbooks.serving").propagate = True
        logging.getLogger("uvicorn.access").disabled = False


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
def test_the_api_starts_a_killed_embedded_redis_again(
    tmp_path: Path, redis_prefix: str, publish  # type: ignore[no-untyped-def]
) -> None:
    db_path = tmp_path / "redis" / "serving.rdb"
    own = RecStore(connect_redis(None, db_path), redis_prefix)
    own.set_alias("champion", publish(into=own))
    serving = config(redis_db_path=db_path, redis_prefix=redis_prefix, outage_backoff_s=0.2)
    try:
        with TestClient(create_app(serving), raise_server_exceptions=False) as client:
            accepted = client.post("/events", json={"events": [click(event_id="before")]},
                                   headers={"X-API-Key": KEY})
            assert accepted.status_code == 202
            time.sleep(1.5)  # past the append-only file's fsync
            pid = int(own.client.info("server")["process_id"])
            os.kill(pid, 9)
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                if client.get("/ready").status_code == 200:
                    break
                time.sleep(0.2)
            assert client.get("/ready").status_code == 200
            assert client.get("/health").json() == {"status": "ok"}
            assert int(own.client.info("server")["process_id"]) != pid  # followed the new one
            assert client.get("/recommendations/3?k=2").json()["items"] == [13, 14]
            again = client.post("/events", json={"events": [click(event_id="before")]},
                                headers={"X-API-Key": KEY})
            assert again.json()["duplicates"] == 1  # the id came back with the data
    finally:
        release_embedded_redis(db_path)


# --- the fast path ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("plain", "unusual"),
    [
        ("/recommendations/2?k=3", "/recommendations/2?k=03"),
        ("/recommendations/2", "/recommendations/002"),
        ("/recommendations/777?k=4", "/recommendations/777?k=4&unused=1"),
    ],
)
def test_fast_path_answers_exactly_like_the_fastapi_route(
    store: RecStore,
    client: TestClient,
    publish,
    plain: str,
    unusual: str,  # type: ignore[no-untyped-def]
) -> None:
    store.set_alias("challenger", publish(first_book=500))
    store.put_experiment(
        Experiment(
            "default",
            (Variant("control", "champion", 0.5), Variant("treatment", "challenger", 0.5)),
            "salt-3",
        )
    )
    fast, routed = client.get(plain), client.get(unusual)
    assert fast.status_code == routed.status_code == 200
    assert fast.content == routed.content
    for header in ("content-type", "content-length"):
        assert fast.headers[header] == routed.headers[header]


class Inner:
    """Stands in for FastAPI: records what falls through."""

    def __init__(self) -> None:
        self.paths: list[str] = []

    async def __call__(self, scope, receive, send) -> None:  # type: ignore[no-untyped-def]
        self.paths.append(scope["path"] + "?" + scope["query_string"].decode())
        await send({"type": "http.response.start", "status": 299, "headers": []})
        await send({"type": "http.response.body", "body": b""})


@pytest.mark.parametrize(
    ("path", "query", "fast"),
    [
        ("/recommendations/2", b"", True),
        ("/recommendations/2", b"k=100", True),
        ("/recommendations/2", b"k=101", False),  # over max_k: FastAPI's 422
        ("/recommendations/2", b"k=0", False),
        ("/recommendations/2", b"k=-1", False),
        ("/recommendations/2", b"k=1&k=2", False),
        ("/recommendations/0", b"", False),
        ("/recommendations/2147483648", b"", False),  # over MAX_ID
        ("/recommendations/2/", b"", False),
        ("/recommendations/+2", b"", False),
        ("/books/2/similar", b"", False),
    ],
)
def test_only_plain_valid_requests_take_the_fast_path(
    store: RecStore, champion: str, path: str, query: bytes, fast: bool
) -> None:
    import asyncio

    from serving.fastpath import RecommendationsFastPath

    inner = Inner()
    service = ServingConfig(max_k=100).build_service(store)
    app = RecommendationsFastPath(inner, service=lambda: service, max_k=100, route=object())  # type: ignore[arg-type]
    sent: list[dict[str, object]] = []

    async def receive() -> dict[str, object]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "GET",
        "path": path,
        "query_string": query,
        "root_path": "",
        "headers": [],
    }
    asyncio.run(app(scope, receive, send))  # type: ignore[arg-type]
    assert (inner.paths == []) is fast
    assert sent[0]["status"] == (200 if fast else 299)
