"""The whole stack for real: `python -m infra.stack up` on free ports in a temp dir, then down.

The stack runs a Prefect server (SQLite in the temp dir), a process worker, an MLflow server
and the HTTP API, with the deployments of prefect.yaml; flows run on tiny generated data.
Redis is REDIS_URL when set (CI) under a key prefix of this test run, else the embedded server.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from serving.connection import connect_redis
from serving.embedded import release_embedded_redis
from serving.store import RecStore
from settings import PROJECT_DIR, Settings

FINAL_STATES = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}
EVENTS_KEY = "e2e-events-key"
UP_TIMEOUT_S = 420
RUN_TIMEOUT_S = 360


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run_stack(command: str, env: dict[str, str], timeout_s: float) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "infra.stack", command], cwd=PROJECT_DIR,
                          env=env, capture_output=True, text=True, timeout=timeout_s,
                          check=False)


@dataclass
class Stack:
    """A running stack: its URLs, its environment and a view of its Redis store."""

    root: Path
    env: dict[str, str]
    prefect_api: str
    api: str
    mlflow: str
    settings: Settings
    store: RecStore
    up_seconds: float

    def run(self, command: str, timeout_s: float) -> subprocess.CompletedProcess:
        """`python -m infra.stack COMMAND` on this stack, as `make COMMAND` runs it."""
        return run_stack(command, self.env, timeout_s)

    def client(self) -> httpx.Client:
        return httpx.Client(timeout=30.0, trust_env=False)

    def request(self, method: str, url: str, **kwargs: object) -> httpx.Response:
        """A REST call; like Prefect's own client, repeated while the server says 503."""
        from infra.stack import call  # the same retrying call the stack's commands use

        with self.client() as client:
            return call(client, method, url, **kwargs)

    def prefect(self, method: str, path: str, **kwargs: object) -> httpx.Response:
        return self.request(method, f"{self.prefect_api}{path}", **kwargs)

    def deployment(self, flow: str, name: str) -> dict:
        found = self.prefect("GET", f"/deployments/name/{flow}/{name}")
        found.raise_for_status()
        return found.json()

    def trigger(self, flow: str, name: str, parameters: dict[str, object]) -> str:
        """Start a run the way the UI's "Quick run"/"Custom run" does; return its id."""
        deployment_id = self.deployment(flow, name)["id"]
        created = self.prefect("POST", f"/deployments/{deployment_id}/create_flow_run",
                               json={"parameters": parameters})
        created.raise_for_status()
        return created.json()["id"]

    def wait(self, run_id: str, timeout_s: float = RUN_TIMEOUT_S) -> dict:
        """Poll the flow run until it reaches a final state; return it."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            found = self.prefect("GET", f"/flow_runs/{run_id}")
            if found.status_code == 200 and found.json()["state_type"] in FINAL_STATES:
                return found.json()
            time.sleep(1.0)
        raise AssertionError(f"flow run {run_id} not finished after {timeout_s:.0f} s; "
                             f"worker log:\n{self.log_tail('worker')}")

    def log_tail(self, name: str, lines: int = 40) -> str:
        path = self.root / "state" / "stack" / "logs" / f"{name}.log"
        text = path.read_text(errors="replace").splitlines() if path.exists() else []
        return "\n".join(text[-lines:])

    def records(self) -> dict[str, dict]:
        directory = self.root / "state" / "stack"
        return {p.stem: json.loads(p.read_text()) for p in directory.glob("*.json")}


def stack_env(root: Path, redis_prefix: str) -> dict[str, str]:
    env = dict(os.environ)
    # The stack's own state only: no outside servers, stores or real book metadata.
    for name in ("PREFECT_API_URL", "PREFECT_HOME", "PREFECT_PROFILE", "MLFLOW_TRACKING_URI",
                 "GOODBOOKS_MLFLOW_TRACKING_URI", "PREFECT_API_DATABASE_CONNECTION_URL",
                 "GOODBOOKS_PREFECT_DATABASE_URL", "GOODBOOKS_MLFLOW_BACKEND_STORE_URI",
                 "GOODBOOKS_MLFLOW_ARTIFACTS_DESTINATION", "GOODBOOKS_REDIS_URL",
                 "GOODBOOKS_OPTUNA_STORAGE_URL", "GOODBOOKS_DATASET_SOURCE",
                 "GOODBOOKS_LOCAL_DATASET_DIR"):
        env.pop(name, None)
    env.update({
        "GOODBOOKS_DATA_DIR": str(root / "data"),
        "GOODBOOKS_STATE_DIR": str(root / "state"),
        "GOODBOOKS_PREFECT_PORT": str(free_port()),
        "GOODBOOKS_MLFLOW_PORT": str(free_port()),
        "GOODBOOKS_API_PORT": str(free_port()),
        "GOODBOOKS_REDIS_PREFIX": redis_prefix,
        "GOODBOOKS_DEMO_USERS": "600",
        "GOODBOOKS_DEMO_BOOKS": "800",
        "GOODBOOKS_N_TRIALS": "1",
        "GOODBOOKS_MAX_EPOCHS": "4",
        "GOODBOOKS_TOP_N": "20",
        "GOODBOOKS_BOOKS_CSV": "",
        "GOODBOOKS_TAGS_CSV": "",
        "GOODBOOKS_WORKER_POLL_S": "1",
        "GOODBOOKS_EVENTS_API_KEY": EVENTS_KEY,
        "GOODBOOKS_SCHEDULE_TIMEZONE": "UTC",
    })
    return env


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("stack")
    prefix = f"gbe2e:{uuid.uuid4().hex[:8]}:"
    env = stack_env(root, prefix)
    # REDIS_URL (CI: the machine's server) or the embedded one the stack's processes share.
    redis_url = Settings(_env_file=None).redis_url
    settings = Settings(_env_file=None, data_dir=root / "data", state_dir=root / "state",
                        redis_prefix=prefix)
    started = time.monotonic()
    try:
        up = run_stack("up", env, UP_TIMEOUT_S)
        up_seconds = time.monotonic() - started
        if up.returncode != 0:
            pytest.fail(f"stack up failed:\n{up.stdout}\n{up.stderr}")
        client = connect_redis(redis_url, settings.redis_db_path)
        yield Stack(
            root=root, env=env,
            prefect_api=f"http://127.0.0.1:{env['GOODBOOKS_PREFECT_PORT']}/api",
            api=f"http://127.0.0.1:{env['GOODBOOKS_API_PORT']}",
            mlflow=f"http://127.0.0.1:{env['GOODBOOKS_MLFLOW_PORT']}",
            settings=settings, store=RecStore(client, prefix), up_seconds=up_seconds,
        )
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        for start in range(0, len(keys), 1000):
            client.unlink(*keys[start:start + 1000])
        client.close()
        if redis_url is None:
            release_embedded_redis(settings.redis_db_path)
    finally:
        records = {
            p.stem: json.loads(p.read_text()) for p in (root / "state" / "stack").glob("*.json")
        }
        down = run_stack("down", env, 120)
        assert down.returncode == 0, down.stderr
        for name, record in records.items():
            assert not process_running(record["pid"]), f"{name} still runs after down"


def process_running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
