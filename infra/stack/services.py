"""The services the stack runs, where they answer, and the environment every one of them gets."""

from __future__ import annotations

import os
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from infra.stack.prefect_file import template_variables, work_pool_name
from infra.stack.reporting import StackError
from settings import PROJECT_DIR, Settings

START_ORDER = ("prefect-server", "mlflow", "api", "worker")
HEARTBEAT_S = 60  # seconds between a flow run's heartbeats (see the zombie automation)


@dataclass(frozen=True)
class Endpoints:
    """Base URLs of the services the stack runs."""

    prefect: str
    mlflow: str | None  # None when the tracking URI already names an outside server
    api: str

    @property
    def prefect_api(self) -> str:
        return f"{self.prefect}/api"


def endpoints(settings: Settings) -> Endpoints:
    host = settings.stack_host
    managed = mlflow_backend_store(settings) is not None
    return Endpoints(
        prefect=f"http://{host}:{settings.prefect_port}",
        mlflow=f"http://{host}:{settings.mlflow_port}" if managed else None,
        api=f"http://{settings.api_host}:{settings.api_port}",
    )


def mlflow_backend_store(settings: Settings) -> str | None:
    """The store the stack's MLflow server serves, or None when it runs no MLflow server."""
    if settings.mlflow_backend_store_uri:
        return settings.mlflow_backend_store_uri
    uri = settings.tracking_uri
    return None if uri.startswith(("http://", "https://", "databricks")) else uri


def flow_tracking_uri(settings: Settings) -> str:
    """The MLflow tracking URI of flow runs under the stack: its server when it runs one."""
    return endpoints(settings).mlflow or settings.tracking_uri


def stack_dir(settings: Settings) -> Path:
    return settings.state_dir / "stack"


def schedule_timezone(settings: Settings) -> str:
    try:
        ZoneInfo(settings.schedule_timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise StackError(
            f"GOODBOOKS_SCHEDULE_TIMEZONE={settings.schedule_timezone!r} is not a time zone; "
            "use an IANA name such as UTC or Europe/Berlin"
        ) from None
    return settings.schedule_timezone


def stack_environment(settings: Settings) -> dict[str, str]:
    """The environment of every process of the stack, and the values prefect.yaml reads."""
    env = dict(os.environ)
    env.update(settings.tool_environment())
    tracking = flow_tracking_uri(settings)
    env.update({
        "PREFECT_API_URL": endpoints(settings).prefect_api,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_WORKER_QUERY_SECONDS": f"{settings.worker_poll_s:g}",
        "GOODBOOKS_PROJECT_DIR": str(PROJECT_DIR),
        "GOODBOOKS_DATA_DIR": str(settings.data_dir.resolve()),
        "GOODBOOKS_STATE_DIR": str(settings.state_dir.resolve()),
        "GOODBOOKS_MLFLOW_TRACKING_URI": tracking,
        "MLFLOW_TRACKING_URI": tracking,
        "GOODBOOKS_REDIS_PREFIX": settings.redis_prefix,
        # Empty means the embedded server; both names, so neither overrides the other.
        "REDIS_URL": settings.redis_url or "",
        "GOODBOOKS_REDIS_URL": settings.redis_url or "",
        "GOODBOOKS_SCHEDULE_TIMEZONE": schedule_timezone(settings),
        "PYTHONUNBUFFERED": "1",
        # A heartbeat a minute: the zombie automation marks a run Crashed after three missed.
        "PREFECT_FLOWS_HEARTBEAT_FREQUENCY": str(HEARTBEAT_S),
    })
    # Only the server opens the database; nothing else needs its password.
    for name in ("PREFECT_API_DATABASE_CONNECTION_URL", "GOODBOOKS_PREFECT_DATABASE_URL"):
        env.pop(name, None)
    return env


def executable(name: str) -> str:
    """A console script of this virtualenv (prefect, mlflow, goodbooks)."""
    path = Path(sys.executable).parent / name
    if not path.exists():
        raise StackError(f"{path} not found; run `make install` first")
    return str(path)


@dataclass(frozen=True)
class Service:
    """A process the stack runs: how to start it and how to tell it is healthy."""

    name: str
    command: list[str]
    port: int | None
    url: str | None
    setting: str  # the setting that moves its port, for error messages
    env: dict[str, str] = field(default_factory=dict)  # on top of the stack's environment


def services(settings: Settings, worker_name: str) -> dict[str, Service]:
    """The processes `up` starts, by name (no MLflow when the tracking URI is a server)."""
    ep = endpoints(settings)
    pool = work_pool_name()
    server_env = {"PREFECT_API_LOG_RETRYABLE_ERRORS": "true"}
    if settings.prefect_database_url:
        server_env["PREFECT_API_DATABASE_CONNECTION_URL"] = settings.prefect_database_url
    found = {
        "prefect-server": Service(
            "prefect-server",
            [executable("prefect"), "server", "start", "--host", settings.stack_host,
             "--port", str(settings.prefect_port)],
            settings.prefect_port, ep.prefect, "GOODBOOKS_PREFECT_PORT", server_env,
        ),
        "api": Service(
            "api",
            [executable("goodbooks"), "serve", "--host", settings.api_host,
             "--port", str(settings.api_port)],
            settings.api_port, ep.api, "GOODBOOKS_API_PORT",
        ),
        "worker": Service(
            "worker",
            [executable("prefect"), "worker", "start", "--pool", pool, "--type", "process",
             "--limit", str(settings.worker_limit), "--name", worker_name],
            None, f"{ep.prefect}/work-pools/work-pool/{pool}", "",
        ),
    }
    backend = mlflow_backend_store(settings)
    if backend is not None:
        artifacts = settings.mlflow_artifacts_destination or str(settings.mlflow_artifacts_dir)
        found["mlflow"] = Service(
            "mlflow",
            [executable("mlflow"), "server", "--host", settings.stack_host,
             "--port", str(settings.mlflow_port), "--backend-store-uri", backend,
             "--artifacts-destination", artifacts, "--workers", "1"],
            settings.mlflow_port, ep.mlflow, "GOODBOOKS_MLFLOW_PORT",
            # The GenAI job runner (a pool of huey consumers, ~1 GB) serves nothing here.
            {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
        )
    return found


def shell_exports(settings: Settings) -> str:
    env = stack_environment(settings)
    names = ["PREFECT_API_URL", "PREFECT_HOME", "PREFECT_SERVER_ANALYTICS_ENABLED",
             "MLFLOW_TRACKING_URI",
             *sorted(template_variables()), "GOODBOOKS_REDIS_URL"]
    seen: dict[str, str] = {}
    for name in names:
        seen.setdefault(name, env[name])
    return "\n".join(f"export {k}={shlex.quote(v)}" for k, v in seen.items())
