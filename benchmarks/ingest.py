"""Incremental ingest of 1% new ratings on a full-size snapshot, against a full re-ingest.

    .venv/bin/python benchmarks/ingest.py [--repeats 3] [--share 0.01]

Full-size generated goodbooks (53,424 readers, ~6M ratings; generated once under
data/bench/, shared with benchmarks/validation.py) and a continuation of it with 1% new
ratings (the planted process going on, ~60k ratings) are the inputs.

- **Incremental**: the base's snapshot exists; the new ratings lie in the inbox; the ingest
  flow takes them in (judges the file with the ratings suite, merges it, writes the next
  snapshot, archives the file, applies the retention).
- **Full re-ingest (the baseline)**: the same data (base ratings with the new ones appended,
  the same other files) as a local source ingested from scratch: every file read and
  validated whole, every table written.

Each run is one ingest_flow call in a fresh process (Prefect's temporary server started
before the clock runs); its wall time and the process's peak resident memory (sampled)
are reported, with the growth over the RSS before the call. Prefect takes about a second
to run any flow (it finishes a run on a one-second tick); an empty flow is timed in the
same process, and "work" is the wall time less that. Writes
benchmarks/results/ingest.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from validation import ensure_full_dataset  # noqa: E402

FULL_RATINGS = 5_976_479

RUN_ONE = """
import json, os, sys, threading, time
from pathlib import Path
from prefect import flow
from prefect.testing.utilities import prefect_test_harness
sys.path.insert(0, {benchmarks!r})
from validation import rss_bytes
from settings import apply_tool_environment, get_settings

apply_tool_environment(get_settings())
from flows.ingest import ingest_flow

@flow
def warm() -> int:
    return 1

with prefect_test_harness(server_startup_timeout=120):
    warm()
    empty = time.perf_counter()
    warm()  # what any flow run costs Prefect (it finishes runs on a one-second tick)
    empty = time.perf_counter() - empty
    peak, done = [rss_bytes()], threading.Event()
    def sample():
        while not done.wait(0.01):
            peak[0] = max(peak[0], rss_bytes())
    before = rss_bytes()
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started = time.perf_counter()
    snapshot = ingest_flow(source="local", local_dir=sys.argv[1])
    seconds = time.perf_counter() - started
    done.set()
    sampler.join()
print("RESULT " + json.dumps({{"seconds": seconds, "empty_flow_s": empty, "peak_rss": peak[0],
                               "before_rss": before,
                               "snapshot": os.path.basename(str(snapshot))}}))
"""


def run_ingest(data_dir: Path, state_dir: Path, source: Path) -> dict[str, object]:
    env = {**os.environ, "GOODBOOKS_DATA_DIR": str(data_dir),
           "GOODBOOKS_STATE_DIR": str(state_dir), "GOODBOOKS_BOOKS_CSV": "",
           "GOODBOOKS_TAGS_CSV": "", "PREFECT_LOGGING_LEVEL": "WARNING"}
    env.pop("PREFECT_API_URL", None)
    done = subprocess.run([sys.executable, "-c", RUN_ONE.format(
        benchmarks=str(REPO / "benchmarks")), str(source)], cwd=REPO, env=env,
        capture_output=True, text=True, check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"ingest failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return json.loads(lines[-1].removeprefix("RESULT "))


def prepare(work: Path, share: float) -> tuple[Path, Path, Path]:
    """The base source, the 1% continuation, and the base + continuation as one source."""
    from models.generator import generate_continuation

    base = ensure_full_dataset(REPO / "data" / "bench" / "goodbooks-full")
    new = work / "inputs" / "continuation"
    if not (new / "ratings.csv").exists():
        generate_continuation(base, new, "none", 0.0, round(share * FULL_RATINGS), seed=1)
    merged = work / "inputs" / "base-plus-new"
    if not (merged / "ratings.csv").exists():
        merged.mkdir(parents=True)
        for name in ("books.csv", "tags.csv", "book_tags.csv", "to_read.csv"):
            os.link(base / name, merged / name)
        with open(merged / "ratings.csv", "wb") as out:
            out.write((base / "ratings.csv").read_bytes())
            out.write(b"".join((new / "ratings.csv").read_bytes().splitlines(True)[1:]))
    return base, new, merged


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--share", type=float, default=0.01)
    args = parser.parse_args()
    work = REPO / "data" / "bench" / "ingest"
    base, new, merged = prepare(work, args.share)
    state = work / "state"  # one MLflow store for every run (retention asks the registry)
    pristine = work / "base-snapshot"
    if not (pristine / "processed" / "HEAD").exists():
        shutil.rmtree(pristine, ignore_errors=True)
        print("ingesting the base once (the snapshot the increments grow from) ...")
        run_ingest(pristine, state, base)

    runs: dict[str, list[dict[str, object]]] = {"incremental": [], "full re-ingest": []}
    for repeat in range(args.repeats):
        with tempfile.TemporaryDirectory(dir=work) as scratch:
            data = Path(scratch) / "incremental"
            # The base snapshot as it was: hard links, nothing copied.
            shutil.copytree(pristine, data, copy_function=os.link)
            shutil.copytree(new, data / "inbox" / "week-49")
            runs["incremental"].append(run_ingest(data, state, base))
            runs["full re-ingest"].append(run_ingest(Path(scratch) / "full", state, merged))
        for name, found in runs.items():
            r = found[-1]
            growth = (r["peak_rss"] - r["before_rss"]) / 2**30
            print(f"repeat {repeat + 1} {name:<15} {r['seconds']:6.1f} s (work "
                  f"{r['seconds'] - r['empty_flow_s']:4.1f} s), peak RSS "
                  f"{r['peak_rss'] / 2**30:.2f} GiB (+{growth:.2f})")
    summary = {name: {"seconds": statistics.median(r["seconds"] for r in found),
                      "work_s": statistics.median(r["seconds"] - r["empty_flow_s"]
                                                  for r in found),
                      "peak_rss_gib": statistics.median(r["peak_rss"] for r in found) / 2**30,
                      "growth_gib": statistics.median(r["peak_rss"] - r["before_rss"]
                                                      for r in found) / 2**30}
               for name, found in runs.items()}
    inc, full = summary["incremental"], summary["full re-ingest"]
    ratio = inc["seconds"] / full["seconds"]
    work_ratio = inc["work_s"] / full["work_s"]
    new_rows = sum(1 for _ in open(new / "ratings.csv")) - 1
    print(f"\n{new_rows:,} new ratings on {FULL_RATINGS:,}: incremental {inc['seconds']:.1f} s "
          f"vs full re-ingest {full['seconds']:.1f} s = {ratio:.2f}x (aim <= 0.3x); work "
          f"(less an empty flow's {inc['seconds'] - inc['work_s']:.1f} s) {inc['work_s']:.1f} "
          f"vs {full['work_s']:.1f} s = {work_ratio:.2f}x; peak RSS {inc['peak_rss_gib']:.2f} "
          f"vs {full['peak_rss_gib']:.2f} GiB (growth {inc['growth_gib']:.2f} vs "
          f"{full['growth_gib']:.2f})")
    out = REPO / "benchmarks" / "results" / "ingest.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"new_ratings": new_rows, "runs": runs, "summary": summary,
                               "ratio": ratio, "work_ratio": work_ratio}, indent=2))
    print(f"written to {out}")


if __name__ == "__main__":
    main()
