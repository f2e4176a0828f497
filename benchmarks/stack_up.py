"""Time from `make up` to a healthy stack, on a fresh state dir and on a warm one.

    .venv/bin/python benchmarks/stack_up.py [--repeats 2] [--keep DIR]

Each repeat runs ``python -m infra.stack up`` (what `make up` runs) as a user would, with its
state in a scratch directory and its services on free ports, and measures the wall time
until the command returns with every service answering: the Prefect server (``/api/health``),
the work pool and the deployments, a worker ONLINE on the pool, the MLflow server and the
API (``/health``). The first repeat starts on an empty state dir (Prefect and MLflow create
their databases); the later ones restart on the state the first left (``down`` between
them is timed too). Results go to benchmarks/results/stack_up.json with the load average,
since the other jobs on a shared machine move these numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "stack_up.json"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def scratch_env(root: Path) -> dict[str, str]:
    env = dict(os.environ)
    for name in ("PREFECT_API_URL", "PREFECT_HOME", "MLFLOW_TRACKING_URI",
                 "GOODBOOKS_MLFLOW_TRACKING_URI", "GOODBOOKS_PREFECT_DATABASE_URL",
                 "PREFECT_API_DATABASE_CONNECTION_URL", "GOODBOOKS_MLFLOW_BACKEND_STORE_URI"):
        env.pop(name, None)
    env.update({
        "GOODBOOKS_DATA_DIR": str(root / "data"),
        "GOODBOOKS_STATE_DIR": str(root / "state"),
        "GOODBOOKS_PREFECT_PORT": str(free_port()),
        "GOODBOOKS_MLFLOW_PORT": str(free_port()),
        "GOODBOOKS_API_PORT": str(free_port()),
        "GOODBOOKS_REDIS_PREFIX": f"gbbench:{os.getpid()}:",
    })
    return env


def stack(command: str, env: dict[str, str]) -> tuple[float, str]:
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "infra.stack", command], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=900, check=False)
    seconds = time.monotonic() - started
    if done.returncode != 0:
        raise SystemExit(f"`infra.stack {command}` failed:\n{done.stdout}\n{done.stderr}")
    return seconds, done.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--keep", type=Path, help="state directory to keep (default: temp)")
    args = parser.parse_args()
    root = args.keep or Path(tempfile.mkdtemp(prefix="gb-stack-bench-"))
    env = scratch_env(root)
    rows = []
    try:
        for repeat in range(args.repeats):
            load_before = os.getloadavg()[0]
            up_s, out = stack("up", env)
            down_s, _ = stack("down", env)
            kind = "fresh state" if repeat == 0 else "warm restart"
            rows.append({"repeat": repeat, "kind": kind, "up_s": round(up_s, 1),
                         "down_s": round(down_s, 1), "load_avg_1m": round(load_before, 2)})
            print(f"{kind:<13} up {up_s:6.1f} s   down {down_s:5.1f} s   "
                  f"(load average {load_before:.1f})", flush=True)
            if repeat == 0:
                print(out)
    finally:
        stack("down", env)
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"cpus": os.cpu_count(), "runs": rows}, indent=2))
    print(f"written to {RESULTS}")


if __name__ == "__main__":
    main()
