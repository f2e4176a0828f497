"""The commands of ``python -m infra.stack``: ``up`` and ``down`` in dependency order, ``main``."""

from __future__ import annotations

import argparse
import socket
import sys
import threading
import time

import httpx

import infra.stack
from infra.stack.deployments import deploy, ensure_work_pool, undeploy
from infra.stack.health import port_in_use, wait_healthy
from infra.stack.prefect_file import work_pool_name
from infra.stack.processes import Record, is_alive, load_record, record_path, start, stop
from infra.stack.reporting import Echo, StackError, log_tail, say
from infra.stack.rest import answers
from infra.stack.services import services, shell_exports, stack_dir, stack_environment
from infra.stack.status import format_status
from settings import Settings, SettingsError, apply_tool_environment, get_settings


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


def main(argv: list[str] | None = None) -> int:
    summary = (infra.stack.__doc__ or "").split("\n\n")[0]
    parser = argparse.ArgumentParser(prog="python -m infra.stack", description=summary,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
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
