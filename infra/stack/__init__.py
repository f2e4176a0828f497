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

One module per idea, everything importable from ``infra.stack``:

- ``services``: the services, their commands and ports, and the environment they all get;
- ``processes``: process supervision (start, pid records checked against the kernel's
  start time, stop with escalating signals to the process group);
- ``rest``, ``health``: REST calls to the servers, and waiting until a service answers;
- ``prefect_file``, ``deployments``: prefect.yaml, the work pool, deploy and undeploy,
  the zombie automation;
- ``status``: the ``status`` table; ``commands``: ``up``, ``down`` and ``main``;
- ``reporting``: the stack's error, what it prints, the tail of a service's log.
"""

from __future__ import annotations

from infra.stack.commands import (
    down,
    main,
    up,
)
from infra.stack.deployments import (
    ZOMBIE_AUTOMATION,
    deploy,
    ensure_work_pool,
    ensure_zombie_automation,
    undeploy,
    zombie_automation,
)
from infra.stack.health import (
    POLL_S,
    healthy,
    port_in_use,
    wait_healthy,
    worker_online,
)
from infra.stack.prefect_file import (
    PREFECT_FILE,
    TEMPLATE_VARIABLE,
    DeploymentSpec,
    deployment_specs,
    read_prefect_file,
    template_variables,
    work_pool_name,
)
from infra.stack.processes import (
    STOP_SIGNALS,
    Record,
    group_alive,
    is_alive,
    load_record,
    process_identity,
    record_path,
    save_record,
    start,
    stop,
)
from infra.stack.reporting import (
    Echo,
    StackError,
    log_tail,
    say,
)
from infra.stack.rest import (
    PROBE_TIMEOUT_S,
    REST_TIMEOUT_S,
    RETRY_DELAYS_S,
    RETRY_STATUSES,
    answers,
    call,
    http_client,
)
from infra.stack.services import (
    HEARTBEAT_S,
    START_ORDER,
    Endpoints,
    Service,
    endpoints,
    executable,
    flow_tracking_uri,
    mlflow_backend_store,
    schedule_timezone,
    services,
    shell_exports,
    stack_dir,
    stack_environment,
)
from infra.stack.status import (
    Row,
    format_status,
    redact,
    redis_row,
    status_rows,
)

__all__ = [
    "answers",
    "call",
    "deploy",
    "deployment_specs",
    "DeploymentSpec",
    "down",
    "Echo",
    "Endpoints",
    "endpoints",
    "ensure_work_pool",
    "ensure_zombie_automation",
    "executable",
    "flow_tracking_uri",
    "format_status",
    "group_alive",
    "healthy",
    "HEARTBEAT_S",
    "http_client",
    "is_alive",
    "load_record",
    "log_tail",
    "main",
    "mlflow_backend_store",
    "POLL_S",
    "port_in_use",
    "PREFECT_FILE",
    "PROBE_TIMEOUT_S",
    "process_identity",
    "read_prefect_file",
    "Record",
    "record_path",
    "redact",
    "redis_row",
    "REST_TIMEOUT_S",
    "RETRY_DELAYS_S",
    "RETRY_STATUSES",
    "Row",
    "save_record",
    "say",
    "schedule_timezone",
    "Service",
    "services",
    "shell_exports",
    "stack_dir",
    "stack_environment",
    "StackError",
    "start",
    "START_ORDER",
    "status_rows",
    "stop",
    "STOP_SIGNALS",
    "TEMPLATE_VARIABLE",
    "template_variables",
    "undeploy",
    "up",
    "wait_healthy",
    "work_pool_name",
    "worker_online",
    "ZOMBIE_AUTOMATION",
    "zombie_automation",
]
