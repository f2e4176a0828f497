"""Time from a UI-style trigger to a completed nightly run, on a real stack.

    .venv/bin/python benchmarks/stack_trigger.py [--users 6000] [--repeats 1]
                                                  [--n-trials N] [--max-epochs N]

Brings a stack up in a scratch directory on free ports (``python -m infra.stack up``), then
triggers ``nightly/nightly`` exactly as the Prefect UI does (``POST
/api/deployments/{id}/create_flow_run``) and polls the run until it is final. Reported per
run: the wait until a worker picked it up (trigger → Running: worker polling, process start,
pull step), the run itself (Running → Completed, as the server records it) and the total
(trigger → Completed as seen by the caller). Demo size by default: 6,000 generated readers,
the settings' trials and epochs. The first run also generates the data; later ones reuse
it. Then, with ``--drift``, it posts the event drift monitoring emits
(``goodbooks.drift.detected``) and times the automation: event → a ``retrain-on-drift`` run
created, and → that run picked up by the worker (the run itself is a nightly run, timed
above, and is not waited for). Results go to benchmarks/results/stack_trigger.json
(``stack_trigger-u<readers>.json`` for another size); the stack is stopped at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from stack_up import REPO, scratch_env, stack  # noqa: E402

RESULTS = REPO / "benchmarks" / "results"
DEFAULT_USERS = 6000
FINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


def parse_time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None


def trigger_and_wait(api: str, timeout_s: float) -> dict[str, float]:
    with httpx.Client(timeout=30.0, trust_env=False) as client:
        deployment_id = client.get(f"{api}/deployments/name/nightly/nightly").json()["id"]
        started = time.monotonic()
        run_id = client.post(f"{api}/deployments/{deployment_id}/create_flow_run",
                             json={"parameters": {}}).json()["id"]
        while time.monotonic() - started < timeout_s:
            response = client.get(f"{api}/flow_runs/{run_id}")
            if response.status_code == 200 and response.json()["state_type"] in FINAL:
                break
            time.sleep(1.0)
        total = time.monotonic() - started
        run = response.json()
    if run["state_type"] != "COMPLETED":
        raise SystemExit(f"run {run_id} ended {run['state_type']}: {run['state']['message']}")
    created, begun = parse_time(run["created"]), parse_time(run["start_time"])
    ended = parse_time(run["end_time"])
    return {
        "total_s": round(total, 1),
        "queued_s": round((begun - created).total_seconds(), 1),
        "running_s": round((ended - begun).total_seconds(), 1),
    }


def drift_to_retrain(api: str, timeout_s: float = 120.0) -> dict[str, float]:
    """Post the drift event and time the automation's retrain-on-drift run: created, then
    picked up by the worker (Running or final)."""
    with httpx.Client(timeout=30.0, trust_env=False) as client:
        deployment_id = client.get(f"{api}/deployments/name/nightly/retrain-on-drift").json()["id"]
        runs = {"deployments": {"id": {"any_": [deployment_id]}}}
        known = {r["id"] for r in client.post(f"{api}/flow_runs/filter", json=runs).json()}
        event = {"id": str(uuid.uuid4()), "occurred": datetime.now(UTC).isoformat(),
                 "event": "goodbooks.drift.detected",
                 "resource": {"prefect.resource.id": "goodbooks.dataset.ratings"},
                 "payload": {"reason": "benchmarks/stack_trigger.py"}, "related": []}
        started = time.monotonic()
        client.post(f"{api}/events", json=[event]).raise_for_status()
        created_s = running_s = None
        while time.monotonic() - started < timeout_s and running_s is None:
            fresh = [r for r in client.post(f"{api}/flow_runs/filter", json=runs).json()
                     if r["id"] not in known]
            if fresh and created_s is None:
                created_s = time.monotonic() - started
            if fresh and fresh[0]["state_type"] not in {"SCHEDULED", "PENDING"}:
                running_s = time.monotonic() - started
            time.sleep(0.1)
    if created_s is None or running_s is None:
        raise SystemExit(f"no retrain-on-drift run started within {timeout_s:.0f} s of the event")
    return {"event_to_created_s": round(created_s, 2), "event_to_running_s": round(running_s, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=DEFAULT_USERS)
    parser.add_argument("--n-trials", type=int)
    parser.add_argument("--max-epochs", type=int)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=3600.0)
    parser.add_argument("--drift", action="store_true",
                        help="then time a drift event to its retrain-on-drift run")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="gb-trigger-bench-"))
    env = scratch_env(root)
    env.update({"GOODBOOKS_DEMO_USERS": str(args.users), "GOODBOOKS_WORKER_POLL_S": "10"})
    if args.n_trials:
        env["GOODBOOKS_N_TRIALS"] = str(args.n_trials)
    if args.max_epochs:
        env["GOODBOOKS_MAX_EPOCHS"] = str(args.max_epochs)
    api = f"http://127.0.0.1:{env['GOODBOOKS_PREFECT_PORT']}/api"
    rows, drift = [], None
    try:
        up_s, _ = stack("up", env)
        print(f"stack up in {up_s:.1f} s", flush=True)
        for repeat in range(args.repeats):
            load = os.getloadavg()[0]
            row = {"repeat": repeat, "users": args.users, "load_avg_1m": round(load, 2),
                   **trigger_and_wait(api, args.timeout)}
            rows.append(row)
            print(f"run {repeat}: trigger → completed {row['total_s']:.1f} s "
                  f"(waiting for the worker {row['queued_s']:.1f} s, running "
                  f"{row['running_s']:.1f} s; load average {load:.1f})", flush=True)
        if args.drift:
            drift = drift_to_retrain(api)
            print(f"drift event → retrain-on-drift run created {drift['event_to_created_s']:.2f} s,"
                  f" picked up by the worker {drift['event_to_running_s']:.1f} s", flush=True)
    finally:
        subprocess.run([sys.executable, "-m", "infra.stack", "down"], cwd=REPO, env=env,
                       capture_output=True, timeout=300, check=False)
        shutil.rmtree(root, ignore_errors=True)
    out = RESULTS / ("stack_trigger.json" if args.users == DEFAULT_USERS
                     else f"stack_trigger-u{args.users}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    settings = {"users": args.users, "n_trials": args.n_trials, "max_epochs": args.max_epochs,
                "worker_poll_s": 10}
    out.write_text(json.dumps({"cpus": os.cpu_count(), "settings": settings,
                               "stack_up_s": round(up_s, 1), "runs": rows,
                               "drift": drift}, indent=2))
    print(f"written to {out}")


if __name__ == "__main__":
    main()
