"""The Prefect side of ``up``: the work pool, the deployments of prefect.yaml, the zombie
automation, and ``undeploy`` (which also deletes the trigger automations Prefect leaves behind).
"""

from __future__ import annotations

import shlex
import subprocess
import time
from collections.abc import Iterable

import httpx

from infra.stack.prefect_file import deployment_specs, template_variables, work_pool_name
from infra.stack.reporting import Echo, StackError, log_tail, say
from infra.stack.rest import REST_TIMEOUT_S, call, http_client
from infra.stack.services import HEARTBEAT_S, endpoints, executable, stack_dir, stack_environment
from settings import PROJECT_DIR, Settings


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
