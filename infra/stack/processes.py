"""Process supervision: start a service in a session of its own, record it in a pid file
checked against the kernel's start time of the pid, and stop its whole process group with
escalating signals.

Kept by hand rather than under supervisord or honcho: measured against both on the stand-in
services and the real ones (``benchmarks/supervisor.py``; benchmarks/README.md, "Operations:
process supervision"), it starts and stops faster, leaves no process behind in any of the
cases tried, needs no daemon whose death would orphan every service, and no dependency.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from infra.stack.reporting import StackError
from infra.stack.services import Service, stack_dir
from settings import PROJECT_DIR, Settings

# A worker once ignored SIGTERM; SIGINT stops it (a second signal makes it exit at once).
STOP_SIGNALS = ((signal.SIGINT, 8.0), (signal.SIGTERM, 8.0), (signal.SIGKILL, 5.0))


@dataclass
class Record:
    """The pid file of a started process (JSON): enough to find, check and stop it."""

    name: str
    pid: int
    identity: str  # the kernel's start time of the process: a reused pid does not match
    port: int | None
    url: str | None
    log: str
    command: list[str]
    started_at: float
    worker_name: str | None = None


def record_path(settings: Settings, name: str) -> Path:
    return stack_dir(settings) / f"{name}.json"


def load_record(settings: Settings, name: str) -> Record | None:
    try:
        data = json.loads(record_path(settings, name).read_text(encoding="utf-8"))
        return Record(**data)
    except (OSError, ValueError, TypeError):
        return None


def save_record(settings: Settings, record: Record) -> None:
    path = record_path(settings, record.name)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(record), indent=2), encoding="utf-8")
    tmp.replace(path)


def process_identity(pid: int) -> str | None:
    """The process's start time as the kernel reports it, or None when it is not running."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
        # fields[0] is the state (Z: exited, waiting to be reaped); fields[19] the start time.
        return None if fields[0] == "Z" else fields[19]
    except FileNotFoundError:
        return None
    except OSError:
        pass
    # No /proc (macOS): ask ps.
    found = subprocess.run(["ps", "-o", "lstart=", "-p", str(pid)], capture_output=True,
                           text=True, check=False)
    return found.stdout.strip() or None


def is_alive(record: Record) -> bool:
    """True while the recorded process runs and is the one that was started."""
    return process_identity(record.pid) == record.identity


def start(settings: Settings, service: Service, env: dict[str, str],
          worker_name: str | None = None) -> Record:
    """Start ``service`` in a session of its own (so its children stop with it); record it."""
    logs = stack_dir(settings) / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    log = logs / f"{service.name}.log"
    with open(log, "ab") as out:
        out.write(f"\n--- {time.strftime('%Y-%m-%d %H:%M:%S')} "
                  f"{shlex.join(service.command)}\n".encode())
        out.flush()
        process = subprocess.Popen(service.command, cwd=PROJECT_DIR, env={**env, **service.env},
                                   stdin=subprocess.DEVNULL, stdout=out,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    identity = process_identity(process.pid)
    if identity is None:
        raise StackError(f"{service.name} exited at once; see {log}")
    record = Record(service.name, process.pid, identity, service.port, service.url, str(log),
                    service.command, time.time(), worker_name)
    save_record(settings, record)
    return record


def stop(record: Record) -> bool:
    """Stop the recorded process and its process group; False if it was not running."""
    if not is_alive(record):
        return False
    for sig, wait_s in STOP_SIGNALS:
        try:
            os.killpg(record.pid, sig)
        except ProcessLookupError:
            return True
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            if not group_alive(record.pid):
                return True
            time.sleep(0.1)
    raise StackError(f"{record.name} (pid {record.pid}) survived SIGKILL")


def group_alive(pgid: int) -> bool:
    """True while any process of the group runs (exited-but-unreaped ones do not count)."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    proc = Path("/proc")
    if not proc.is_dir():
        return True
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text(encoding="ascii").rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[2] == str(pgid) and fields[0] != "Z":
            return True
    return False
