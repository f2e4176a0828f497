"""Screenshots of the UIs after a real nightly run: ``python -m infra.screenshots``.

Brings the stack up unless it runs (and stops it again afterwards unless ``--keep-running``),
triggers the nightly deployment the way the Prefect UI does, waits for the run to finish,
then saves headless-Chromium screenshots of

- ``prefect-deployment.png``: the nightly deployment (schedule, parameters, runs),
- ``prefect-flow-run.png``: the completed run (task graph, logs, artifacts tabs),
- ``prefect-automations.png``: the drift automation that starts ``retrain-on-drift``,
- ``mlflow-model.png``: the registered model in MLflow (versions and aliases),

to ``docs/images/`` as palette PNGs small enough to commit. Needs Chromium
(Debian: ``apt-get install chromium``). The run uses the settings as they are
(``GOODBOOKS_DEMO_USERS`` etc.); point ``GOODBOOKS_STATE_DIR`` and ``GOODBOOKS_DATA_DIR``
at a scratch directory to leave the project's own state alone.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from infra.stack import (
    StackError,
    call,
    down,
    endpoints,
    http_client,
    is_alive,
    load_record,
    say,
    up,
)
from settings import PROJECT_DIR, Settings, get_settings

FINAL_STATES = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
WINDOW = (1400, 900)
WIDE_WINDOW = (1800, 900)  # MLflow keeps a side panel open; the versions table needs room


def chromium() -> str:
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    raise StackError("no Chromium found; install it (Debian: apt-get install chromium)")


def screenshot(url: str, target: Path, window: tuple[int, int] = WINDOW,
               budget_ms: int = 15_000) -> None:
    """Render ``url`` headless (JavaScript apps get ``budget_ms`` of virtual time) to PNG."""
    with tempfile.TemporaryDirectory(prefix="gb-chromium-") as profile:
        raw = Path(profile) / "shot.png"
        command = [
            chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
            "--no-first-run", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--hide-scrollbars", f"--user-data-dir={profile}/data",
            f"--window-size={window[0]},{window[1]}", f"--virtual-time-budget={budget_ms}",
            f"--screenshot={raw}", url,
        ]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120,
                              check=False)
        if done.returncode != 0 or not raw.exists():
            raise StackError(f"chromium could not render {url}: {done.stderr[-500:]}")
        shrink(raw, target)


def shrink(source: Path, target: Path) -> None:
    """A 256-colour PNG: UI screenshots have few colours, so it looks the same at ~1/3 size."""
    from PIL import Image

    target.parent.mkdir(parents=True, exist_ok=True)
    with Image.open(source) as image:
        image.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(
            target, optimize=True)


def run_nightly(settings: Settings, timeout_s: float) -> tuple[str, str, float]:
    """Trigger nightly/nightly as the UI does; return (deployment id, run id, seconds)."""
    api = endpoints(settings).prefect_api
    with http_client(30.0) as client:
        deployment = call(client, "GET", f"{api}/deployments/name/nightly/nightly")
        deployment.raise_for_status()
        deployment_id = deployment.json()["id"]
        started = time.monotonic()
        created = call(client, "POST", f"{api}/deployments/{deployment_id}/create_flow_run",
                       json={"parameters": {}})
        created.raise_for_status()
        run_id = created.json()["id"]
        while time.monotonic() - started < timeout_s:
            run = call(client, "GET", f"{api}/flow_runs/{run_id}").json()
            if run["state_type"] in FINAL_STATES:
                break
            time.sleep(2.0)
        else:
            raise StackError(f"nightly run {run_id} did not finish in {timeout_s:.0f} s")
    if run["state_type"] != "COMPLETED":
        raise StackError(f"nightly run {run_id} ended {run['state_type']}: "
                         f"{run['state']['message']}")
    return deployment_id, run_id, time.monotonic() - started


def take_all(settings: Settings, out: Path, timeout_s: float) -> list[Path]:
    deployment_id, run_id, seconds = run_nightly(settings, timeout_s)
    say(f"nightly run completed {seconds:.0f} s after it was triggered")
    ep = endpoints(settings)
    if ep.mlflow is None:
        raise StackError("the MLflow UI is not part of this stack (the tracking URI is a server)")
    shots = {
        "prefect-deployment.png": (f"{ep.prefect}/deployments/deployment/{deployment_id}",
                                   WINDOW),
        "prefect-flow-run.png": (f"{ep.prefect}/runs/flow-run/{run_id}", WINDOW),
        "prefect-automations.png": (f"{ep.prefect}/automations", WINDOW),
        "mlflow-model.png": (f"{ep.mlflow}/#/models/{settings.model_name}", WIDE_WINDOW),
    }
    written = []
    for name, (url, window) in shots.items():
        screenshot(url, out / name, window)
        say(f"  {out / name} ({(out / name).stat().st_size // 1024} KB) <- {url}")
        written.append(out / name)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.screenshots",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=PROJECT_DIR / "docs" / "images")
    parser.add_argument("--timeout", type=float, default=1800.0,
                        help="seconds to wait for the nightly run")
    parser.add_argument("--keep-running", action="store_true",
                        help="leave a stack this command started running")
    args = parser.parse_args(argv)
    settings = get_settings()
    record = load_record(settings, "prefect-server")
    started_here = record is None or not is_alive(record)
    try:
        if started_here:
            say(f"stack up in {up(settings):.0f} s")
        take_all(settings, args.out, args.timeout)
    except StackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        if started_here and not args.keep_running:
            down(settings)
    return 0


if __name__ == "__main__":
    sys.exit(main())
