"""The API under load while its Redis stops, hangs and comes back: degraded, never 5xx."""

from __future__ import annotations

import random
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
import uvicorn

from serving.api import create_app
from serving.config import ServingConfig

READERS = 200  # published; readers above it are unknown to the model


@dataclass(frozen=True)
class Answer:
    at: float
    status: int
    source: str | None
    seconds: float


class Load:
    """Client threads requesting recommendations of random readers until stopped."""

    def __init__(self, base_url: str, threads: int = 3) -> None:
        self.answers: list[Answer] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._run, args=(base_url, seed)) for seed in range(threads)
        ]

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=10)

    def timeline(self, origin: float) -> str:
        """Answers relative to ``origin``, for failure messages."""
        with self._lock:
            return "\n".join(
                f"{a.at - origin:+.3f} s  {a.status} {a.source} {a.seconds * 1000:.1f} ms"
                for a in self.answers
            )

    def between(self, start: float, end: float) -> list[Answer]:
        with self._lock:
            return [a for a in self.answers if start <= a.at <= end]

    def _run(self, base_url: str, seed: int) -> None:
        rng = random.Random(seed)
        with httpx.Client(base_url=base_url, timeout=5.0) as client:
            while not self._stop.is_set():
                user_id = rng.randint(1, READERS + 50)
                started = time.monotonic()
                response = client.get(f"/recommendations/{user_id}", params={"k": 5})
                elapsed = time.monotonic() - started
                source = response.json().get("source") if response.status_code == 200 else None
                with self._lock:
                    self.answers.append(
                        Answer(time.monotonic(), response.status_code, source, elapsed)
                    )


@pytest.fixture
def api_url(redis_process, publish) -> Iterator[str]:  # type: ignore[no-untyped-def]
    """The API served by uvicorn on a loopback port, on the test's own redis-server."""
    config = ServingConfig(
        redis_url=redis_process.url,
        json_logs=False,
        access_log=False,
        pointer_ttl_s=0.2,
        outage_backoff_s=0.5,
        socket_timeout_s=0.1,
        connect_timeout_s=0.1,
    )
    store = config.connect_store()
    store.set_alias("champion", publish(into=store, readers=range(1, READERS + 1)))
    # The listening socket is bound here and handed to uvicorn: no port to lose in between.
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    port = int(listener.getsockname()[1])
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(config, store),
            log_level="warning",
            access_log=False,
        )
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            pytest.fail("uvicorn did not start")
        time.sleep(0.01)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)
    listener.close()
    store.client.close()


def test_redis_stopping_degrades_answers_and_restarting_restores_them(
    api_url: str,
    redis_process,  # type: ignore[no-untyped-def]
) -> None:
    with Load(api_url) as load:
        time.sleep(0.6)
        stopped_at = time.monotonic()
        redis_process.stop()
        time.sleep(1.2)
        restarting_at = time.monotonic()
        redis_process.start()  # returns once the server answers (loading takes a while)
        restarted_at = time.monotonic()
        time.sleep(1.6)
        # On a loaded machine the clients may stall for a while: keep the load on until
        # enough answers came past the backoff to judge (or a deadline passes).
        deadline = time.monotonic() + 15
        while (len(load.between(restarted_at + 0.8, time.monotonic())) < 20
               and time.monotonic() < deadline):
            time.sleep(0.1)
        ended_at = time.monotonic()

    answers = load.answers
    assert len(answers) > 100
    assert {a.status for a in answers} == {200}  # no 5xx, no errors at all
    before = load.between(0, stopped_at)
    assert {a.source for a in before} == {"personalised", "popular-fallback"}
    # Past the pointer TTL every answer is degraded, and quick (no timeouts piling up).
    during = load.between(stopped_at + 0.3, restarting_at)
    assert during and {a.source for a in during} == {"degraded"}, load.timeline(stopped_at)
    assert max(a.seconds for a in during) < 0.5
    # Past the outage backoff after the server answers again, live again, without
    # restarting the API.
    after = load.between(restarted_at + 0.8, ended_at)
    assert after, load.timeline(restarted_at)
    assert {a.source for a in after} == {"personalised", "popular-fallback"}


def test_hung_redis_costs_one_short_timeout_per_backoff(
    api_url: str,
    redis_process,  # type: ignore[no-untyped-def]
) -> None:
    with Load(api_url) as load:
        time.sleep(0.4)
        paused_at = time.monotonic()
        redis_process.pause()
        time.sleep(1.0)
        resumed_at = time.monotonic()
        redis_process.resume()
        time.sleep(1.6)
        ended_at = time.monotonic()

    assert {a.status for a in load.answers} == {200}
    during = load.between(paused_at + 0.3, resumed_at)
    assert during and {a.source for a in during} == {"degraded"}
    # A read waits at most the 0.1 s socket timeout; then the backoff answers from memory.
    assert max(a.seconds for a in load.between(paused_at, resumed_at)) < 0.6
    after = load.between(resumed_at + 0.8, ended_at)
    assert after and "degraded" not in {a.source for a in after}, load.timeline(resumed_at)
