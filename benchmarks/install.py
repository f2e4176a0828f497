"""The serving install against the full install: time and size in a clean virtualenv.

    .venv/bin/python benchmarks/install.py [--repeats 3] [--full-repeats 1]

Each repeat makes a fresh virtualenv, installs a copy of the project's sources — the base
package (the API alone) or ``.[pipeline]`` (everything the flows need) — and measures the
wall time of ``pip install``, the size of the environment's site-packages and the number of
distributions in it. pip's download cache is shared between runs (as on any machine that
installed once): the times are install times, not download times. Writes
benchmarks/results/install.json.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SOURCES = ("pyproject.toml", "README.md", "LICENSE", "settings.py", "demo.py")
PACKAGES = ("models", "tasks", "flows", "serving", "cli")
KINDS = {"serving": "", "full": "[pipeline]"}


def size_of(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())


def copy_sources(source: Path) -> Path:
    """Copy what the package is built from into ``source`` (building in the checkout would
    leave build/ behind in it)."""
    source.mkdir(parents=True)
    for name in SOURCES:
        shutil.copy2(REPO / name, source / name)
    for package in PACKAGES:
        shutil.copytree(REPO / package, source / package,
                        ignore=shutil.ignore_patterns("__pycache__"))
    return source


def install(kind: str) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="goodbooks-install-") as work:
        source = copy_sources(Path(work) / "source")
        venv = Path(work) / "venv"
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        python = venv / "bin" / "python"
        started = time.perf_counter()
        subprocess.run([str(python), "-m", "pip", "install", "--quiet",
                        "--disable-pip-version-check", f"{source}{KINDS[kind]}"], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        seconds = time.perf_counter() - started
        listed = subprocess.run([str(python), "-m", "pip", "list", "--format=json"],
                                capture_output=True, text=True, check=True).stdout
        site = next((venv / "lib").glob("python3*/site-packages"))
        return {"seconds": round(seconds, 1), "mib": round(size_of(site) / 2**20, 1),
                "distributions": len(json.loads(listed))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="serving installs")
    parser.add_argument("--full-repeats", type=int, default=1, help="full installs (slow)")
    args = parser.parse_args()
    runs = {"serving": [install("serving") for _ in range(args.repeats)],
            "full": [install("full") for _ in range(args.full_repeats)]}
    summary = {kind: {key: statistics.median(r[key] for r in rs) for key in rs[0]}
               for kind, rs in runs.items()}
    serving, full = summary["serving"], summary["full"]
    print(f"{'install':<10}{'time (s)':>10}{'size (MiB)':>12}{'packages':>10}")
    for kind, row in summary.items():
        print(f"{kind:<10}{row['seconds']:>10.1f}{row['mib']:>12.1f}{row['distributions']:>10.0f}")
    print(f"serving / full: time {serving['seconds'] / full['seconds']:.2f}x, "
          f"size {serving['mib'] / full['mib']:.2f}x")
    out = REPO / "benchmarks" / "results" / "install.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"runs": runs, "median": summary}, indent=2) + "\n")


if __name__ == "__main__":
    main()
