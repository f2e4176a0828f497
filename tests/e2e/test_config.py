"""The operations files hold together without starting anything (fast; no e2e marker)."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from settings import PROJECT_DIR, Settings

PREFECT_YAML = PROJECT_DIR / "prefect.yaml"
COMPOSE = PROJECT_DIR / "infra" / "docker-compose.yml"


def load(path: Path) -> dict:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def test_every_flow_has_a_deployment_on_the_process_pool() -> None:
    deployments = {d["name"]: d for d in load(PREFECT_YAML)["deployments"]}
    assert set(deployments) == {"ingest", "train", "score", "ab-evaluate", "monitor",
                                "nightly", "retrain-on-drift"}
    for name, deployment in deployments.items():
        pool = deployment["work_pool"]
        assert pool["name"] == "goodbooks", name
        # job_variables at deployment level are dropped by `prefect deploy` without a word.
        assert "job_variables" not in deployment, name
        env = pool["job_variables"]["env"]
        for variable in ("GOODBOOKS_DATA_DIR", "GOODBOOKS_STATE_DIR", "REDIS_URL",
                         "GOODBOOKS_MLFLOW_TRACKING_URI", "GOODBOOKS_REDIS_PREFIX"):
            assert variable in env, (name, variable)
        path, function = deployment["entrypoint"].split(":")
        assert path.startswith("flows/") and function.endswith("_flow")


def test_nightly_schedule_and_drift_trigger() -> None:
    deployments = {d["name"]: d for d in load(PREFECT_YAML)["deployments"]}
    [schedule] = deployments["nightly"]["schedules"]
    assert schedule["cron"] == "0 2 * * *"
    assert schedule["timezone"] == "{{ $GOODBOOKS_SCHEDULE_TIMEZONE }}"
    [trigger] = deployments["retrain-on-drift"]["triggers"]
    assert trigger["expect"] == ["goodbooks.drift.detected"]
    assert trigger["match"] == {"prefect.resource.id": "goodbooks.dataset.*"}
    assert deployments["retrain-on-drift"]["entrypoint"] == "flows/nightly.py:nightly_flow"
    # Templated from the event: the run takes in (and checks it took in) what was judged.
    assert trigger["parameters"] == {
        "reason": "{{ event.payload.summary | default('drift detected', true) }}",
        "drift_through": "{{ event.payload.judged.through | default('', true) }}"}
    from flows.nightly import nightly_flow

    assert set(trigger["parameters"]) <= set(nightly_flow.parameters.properties)


def test_no_machine_paths_in_committed_operations_files() -> None:
    files = [PREFECT_YAML, COMPOSE, *sorted((PROJECT_DIR / "infra").glob("*.py")),
             PROJECT_DIR / "infra" / "README.md", PROJECT_DIR / "infra" / "Dockerfile"]
    for path in files:
        text = path.read_text(encoding="utf-8")
        assert str(PROJECT_DIR) not in text, path
        assert not re.search(r"(?<![\w.])/(work|home|root|Users)/", text), path


def test_stack_sets_every_variable_prefect_yaml_reads() -> None:
    from infra.stack import stack_environment, template_variables

    env = stack_environment(Settings(_env_file=None))
    assert template_variables() <= set(env)
    assert env["GOODBOOKS_PROJECT_DIR"] == str(PROJECT_DIR)
    assert env["GOODBOOKS_SCHEDULE_TIMEZONE"] == "UTC"


def test_compose_services_depend_on_services_that_exist() -> None:
    compose = load(COMPOSE)
    services = compose["services"]
    assert set(services) >= {"postgres", "redis", "prefect-server", "mlflow", "worker", "api",
                             "deploy"}
    for name, service in services.items():
        for dependency in service.get("depends_on") or {}:
            assert dependency in services, (name, dependency)
        for port in service.get("ports") or []:
            assert port.startswith("127.0.0.1:"), (name, port)  # loopback only
        assert "image" in service or "build" in service, name
    assert (PROJECT_DIR / "infra" / "postgres-init.sql").exists()
