"""Deployments on a real Prefect server, runs triggered as the UI does, results served.

The tests run in file order on one stack: what is deployed, a nightly run started through
the REST API (POST /api/deployments/{id}/create_flow_run, the UI's call) that publishes a
new version served by the HTTP API, a nightly run on broken data that fails with the reason
and changes nothing, the drift event that starts the next run (which completes), and
`undeploy`, which removes the deployments with their automations.
"""

from __future__ import annotations

import datetime as dt
import shutil
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
import pytest

from settings import PROJECT_DIR

if TYPE_CHECKING:
    from tests.e2e.conftest import Stack

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

DEPLOYED = ("ingest", "train", "score", "nightly", "retrain-on-drift", "monitor")


def flow_exists(relative: str, function: str) -> bool:
    path = PROJECT_DIR / relative
    return path.exists() and f"def {function}(" in path.read_text()


def test_stack_is_up_with_every_service_answering(stack: Stack) -> None:
    status = stack.run("status", 60)
    assert status.returncode == 0, status.stderr
    for name in ("prefect-server", "mlflow", "api", "worker", "redis"):
        line = next(row for row in status.stdout.splitlines() if row.startswith(name))
        assert line.rstrip().endswith("answers"), status.stdout
    assert stack.request("GET", f"{stack.mlflow}/health").status_code == 200
    assert stack.request("GET", f"{stack.api}/health").json() == {"status": "ok"}
    print(f"\nstack healthy {stack.up_seconds:.1f} s after `up` started")


def test_deployments_carry_schedule_parameters_and_state(stack: Stack) -> None:
    flows = {"ingest": "ingest", "train": "train", "score": "score", "nightly": "nightly",
             "retrain-on-drift": "nightly", "monitor": "monitor"}
    for name in DEPLOYED:
        deployment = stack.deployment(flows[name], name)
        assert deployment["work_pool_name"] == "goodbooks"
        env = deployment["job_variables"]["env"]
        # Flow runs use the stack's state, not whatever the worker's cwd would give.
        assert env["GOODBOOKS_DATA_DIR"] == str(stack.root / "data")
        assert env["GOODBOOKS_STATE_DIR"] == str(stack.root / "state")
        assert env["GOODBOOKS_MLFLOW_TRACKING_URI"] == stack.mlflow
        assert env["GOODBOOKS_REDIS_PREFIX"] == stack.settings.redis_prefix
        assert deployment["job_variables"]["working_dir"] == str(PROJECT_DIR)
        assert deployment["pull_steps"] == [{
            "prefect.deployments.steps.set_working_directory": {"directory": str(PROJECT_DIR)}
        }]
        assert "{{" not in str(deployment)

    nightly = stack.deployment("nightly", "nightly")
    [schedule] = nightly["schedules"]
    assert schedule["active"]
    assert schedule["schedule"]["cron"] == "0 2 * * *"
    assert schedule["schedule"]["timezone"] == "UTC"
    assert set(nightly["parameter_openapi_schema"]["properties"]) >= {"source", "local_dir"}

    # The UI shows each parameter's description, parsed from the flow docstring's Args.
    deployed = stack.prefect("POST", "/deployments/filter", json={}).json()
    assert {d["name"] for d in deployed} >= set(DEPLOYED)
    for deployment in deployed:
        properties = deployment["parameter_openapi_schema"]["properties"]
        missing = [p for p, spec in properties.items() if not spec.get("description")]
        assert not missing, f"{deployment['name']}: parameters without a description: {missing}"

    # Deployments of flows that do not exist yet are skipped, not broken.
    for name, relative, function in (("ab-evaluate", "flows/ab_evaluate.py", "ab_evaluate_flow"),
                                     ("monitor", "flows/monitor.py", "monitor_flow")):
        found = stack.prefect("POST", "/deployments/filter",
                              json={"deployments": {"name": {"any_": [name]}}}).json()
        assert bool(found) == flow_exists(relative, function)


def test_drift_automation_targets_retrain_on_drift(stack: Stack) -> None:
    target = stack.deployment("nightly", "retrain-on-drift")["id"]
    automations = stack.prefect("POST", "/automations/filter", json={}).json()
    [automation] = [a for a in automations if a["name"] == "goodbooks-retrain-on-drift"]
    assert automation["enabled"]
    assert automation["trigger"]["expect"] == ["goodbooks.drift.detected"]
    assert automation["trigger"]["match"] == {"prefect.resource.id": "goodbooks.dataset.*"}
    assert [a["deployment_id"] for a in automation["actions"]] == [target]


def test_ui_triggered_nightly_publishes_a_version_that_is_served(stack: Stack) -> None:
    before = stack.store.aliases().get("champion")
    started = time.monotonic()
    run = stack.wait(stack.trigger("nightly", "nightly", {}))
    elapsed = time.monotonic() - started
    assert run["state_type"] == "COMPLETED", (run["state"], stack.log_tail("worker"))
    print(f"\nnightly (600 readers, 1 trial, 4 epochs): trigger to COMPLETED in {elapsed:.1f} s")

    version = stack.store.aliases()["champion"]
    assert version != before
    body = stack.request("GET", f"{stack.api}/recommendations/1", params={"k": 10}).json()
    ready = stack.request("GET", f"{stack.api}/ready")
    assert body["version"] == version
    assert body["source"] == "personalised" and len(body["items"]) == 10
    assert ready.status_code == 200, ready.text


def broken_dataset(stack: Stack, target: Path) -> Path:
    """The stack's generated dataset with one non-numeric rating."""
    generated = next((stack.root / "data" / "generated").iterdir())
    target.mkdir()
    for name in ("ratings.csv", "books.csv"):
        shutil.copy(generated / name, target / name)
    ratings = pd.read_csv(target / "ratings.csv")
    ratings["rating"] = ratings["rating"].astype(object)
    ratings.loc[5, "rating"] = "five"
    ratings.to_csv(target / "ratings.csv", index=False)
    return target


def emit_drift_event(stack: Stack) -> None:
    """What the monitor flow emits when drift passes its threshold."""
    event = {
        "id": str(uuid.uuid4()),
        "occurred": dt.datetime.now(dt.UTC).isoformat(),
        "event": "goodbooks.drift.detected",
        "resource": {"prefect.resource.id": "goodbooks.dataset.ratings"},
        "payload": {"reason": "end-to-end test"},
        "related": [],
    }
    stack.prefect("POST", "/events", json=[event]).raise_for_status()


def runs_of(stack: Stack, deployment_id: str) -> list[dict]:
    return stack.prefect("POST", "/flow_runs/filter", json={
        "deployments": {"id": {"any_": [deployment_id]}}}).json()


def first_run_of(stack: Stack, deployment_id: str, timeout_s: float = 60.0,
                 known: set[str] = frozenset()) -> dict:  # type: ignore[assignment]
    """The first run of the deployment that is not one of ``known``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        runs = [r for r in runs_of(stack, deployment_id) if r["id"] not in known]
        if runs:
            return runs[0]
        time.sleep(1.0)
    raise AssertionError(f"no run of deployment {deployment_id} within {timeout_s:.0f} s")


def test_failed_nightly_keeps_serving_and_the_next_run_starts_cleanly(
    stack: Stack, tmp_path: Path
) -> None:
    served = stack.store.aliases()
    assert "champion" in served, "the previous test publishes a champion"
    bad = broken_dataset(stack, tmp_path / "bad")

    run = stack.wait(stack.trigger("nightly", "nightly",
                                   {"source": "local", "local_dir": str(bad)}))
    assert run["state_type"] == "FAILED"
    message = run["state"]["message"]
    assert "DataValidationError" in message and "ratings.csv" in message
    assert "rating='five'" in message  # the example row is named
    # Nothing was published: yesterday's version keeps serving.
    assert stack.store.aliases() == served
    body = stack.request("GET", f"{stack.api}/recommendations/1").json()
    assert body["version"] == served["champion"]

    # The next run, started by drift monitoring's event, starts from a clean slate.
    emit_drift_event(stack)
    triggered = first_run_of(stack, stack.deployment("nightly", "retrain-on-drift")["id"])
    assert triggered["created_by"]["type"] == "AUTOMATION"
    run = stack.wait(triggered["id"])
    assert run["state_type"] == "COMPLETED", (run["state"], stack.log_tail("worker"))
    assert stack.store.aliases()["champion"] != served["champion"]
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # the API caches the alias pointer for ~1 s
        body = stack.request("GET", f"{stack.api}/recommendations/1").json()
        if body["version"] == stack.store.aliases()["champion"]:
            break
        time.sleep(0.5)
    assert body["version"] == stack.store.aliases()["champion"]


def test_drift_in_the_days_ratings_retrains_on_exactly_those_ratings(stack: Stack) -> None:
    from mlflow import MlflowClient

    from models.snapshot import latest_snapshot, open_snapshot
    from tests.e2e.conftest import EVENTS_KEY

    retrain = stack.deployment("nightly", "retrain-on-drift")["id"]
    known = {r["id"] for r in runs_of(stack, retrain)}
    processed = stack.root / "data" / "processed"
    rated = latest_snapshot(processed).read("ratings")
    seen = set(zip(rated["user_id"], rated["book_id"], strict=True))
    # A day on which readers give one star to books they had not read: the mix drifts.
    pairs = [(u, b) for u in range(1, 121) for b in range(1, 400) if (u, b) not in seen][:600]
    events = [{"type": "rating", "user_id": int(u), "book_id": int(b), "rating": 1,
               "variant": "control", "version": "e2e"} for u, b in pairs]
    ids: list[str] = []
    for start in range(0, len(events), 500):
        posted = stack.request("POST", f"{stack.api}/events", headers={"X-API-Key": EVENTS_KEY},
                               json={"events": events[start:start + 500]})
        assert posted.status_code == 202, posted.text
        ids += posted.json()["ids"]

    # The scheduled monitor, run now: it judges what no served model has seen and emits.
    monitored = stack.wait(stack.trigger("monitor", "monitor", {}))
    assert monitored["state_type"] == "COMPLETED", (monitored["state"], stack.log_tail("worker"))
    run = first_run_of(stack, retrain, timeout_s=90, known=known)
    assert run["created_by"]["type"] == "AUTOMATION"
    # prefect.yaml templates the parameters from the event: what the verdict judged.
    assert run["parameters"]["drift_through"] == ids[-1]
    assert "drift in" in run["parameters"]["reason"]
    run = stack.wait(run["id"])
    assert run["state_type"] == "COMPLETED", (run["state"], stack.log_tail("worker"))

    champion = MlflowClient(stack.mlflow).get_model_version_by_alias(
        stack.settings.model_name, "champion")
    trained_on = open_snapshot(processed / champion.tags["snapshot"])
    assert trained_on.log_watermark is not None
    ratings = trained_on.read("ratings")
    ones = set(zip(ratings.loc[ratings["rating"] == 1, "user_id"],
                   ratings.loc[ratings["rating"] == 1, "book_id"], strict=True))
    assert set(pairs) <= ones  # the retrained model learnt from exactly the drifted ratings


def test_undeploy_removes_deployments_and_their_automations(stack: Stack) -> None:
    result = stack.run("undeploy", 120)
    assert result.returncode == 0, result.stderr
    for flow, name in (("nightly", "nightly"), ("nightly", "retrain-on-drift")):
        assert stack.prefect("GET", f"/deployments/name/{flow}/{name}").status_code == 404
    automations = stack.prefect("POST", "/automations/filter", json={}).json()
    assert not [a for a in automations if a["name"] == "goodbooks-retrain-on-drift"]

