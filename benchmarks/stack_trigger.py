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
it. Results go to benchmarks/results/stack_trigger.json; the stack is stopped at the end.
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
from datetime import datetime
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from stack_up import REPO, scratch_env, stack  # noqa: E402

RESULTS = REPO / "benchmarks" / "results" / "stack_trigger.json"
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=6000)
    parser.add_argument("--n-trials", type=int)
    parser.add_argument("--max-epochs", type=int)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=3600.0)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="gb-trigger-bench-"))
    env = scratch_env(root)
    env.update({"GOODBOOKS_DEMO_USERS": str(args.users), "GOODBOOKS_WORKER_POLL_S": "10"})
    if args.n_trials:
        env["GOODBOOKS_N_TRIALS"] = str(args.n_trials)
    if args.max_epochs:
        env["GOODBOOKS_MAX_EPOCHS"] = str(args.max_epochs)
    api = f"http://127.0.0.1:{env['GOODBOOKS_PREFECT_PORT']}/api"
    rows = []
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
    finally:
        subprocess.run([sys.executable, "-m", "infra.stack", "down"], cwd=REPO, env=env,
                       capture_output=True, timeout=300, check=False)
        shutil.rmtree(root, ignore_errors=True)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"cpus": os.cpu_count(), "stack_up_s": round(up_s, 1),
                                   "runs": rows}, indent=2))
    print(f"written to {RESULTS}")


if __name__ == "__main__":
    main()
