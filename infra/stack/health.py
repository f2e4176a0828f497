"""Whether a started service is healthy, and waiting until it is."""

from __future__ import annotations

import socket
import time

import httpx

from infra.stack.prefect_file import work_pool_name
from infra.stack.processes import Record, is_alive
from infra.stack.reporting import StackError, log_tail
from infra.stack.rest import answers, http_client
from infra.stack.services import endpoints
from settings import Settings

POLL_S = 0.5


def worker_online(settings: Settings, worker_name: str) -> bool:
    api = endpoints(settings).prefect_api
    try:
        with http_client() as client:
            found = client.post(f"{api}/work_pools/{work_pool_name()}/workers/filter", json={})
    except httpx.HTTPError:
        return False
    if found.status_code != 200:
        return False
    return any(w.get("name") == worker_name and w.get("status") == "ONLINE"
               for w in found.json())


def healthy(settings: Settings, record: Record) -> bool:
    if record.name == "prefect-server":
        return answers(f"{record.url}/api/health")
    if record.name == "worker":
        return worker_online(settings, record.worker_name or "")
    return answers(f"{record.url}/health")


def wait_healthy(settings: Settings, record: Record, timeout_s: float) -> float:
    """Poll until the service answers; raise with its log when it dies or times out."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        if healthy(settings, record):
            return time.monotonic() - started
        if not is_alive(record):
            raise StackError(f"{record.name} exited while starting; the end of "
                             f"{record.log}:\n{log_tail(record.log)}")
        time.sleep(POLL_S)
    raise StackError(f"{record.name} did not answer within {timeout_s:.0f} s "
                     f"(GOODBOOKS_STACK_TIMEOUT_S); the end of {record.log}:\n"
                     f"{log_tail(record.log)}")


def port_in_use(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False
