"""LightFM from a wheel? lightfm-next (manylinux wheels) against rectools-lightfm (the sdist
the project installs), on this machine.

    .venv/bin/python benchmarks/lightfm_wheel.py [--version 1.18.7] [--users 53424] [--epochs 3]

Installs ``lightfm-next`` (wheels only: no compiler may take part) into a fresh virtualenv
beside numpy and scipy, and checks that its compiled module loads. When it does, both builds
fit the same interactions with the same seed (are the factors the same?) and the epoch time
is measured at 1 and 2 threads, medians of the epochs. Writes
benchmarks/results/lightfm-wheel.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CHILD = """
import json, sys, time
import numpy as np, scipy.sparse as sp
from lightfm import LightFM
users, books, per, epochs, threads = (int(a) for a in sys.argv[1:6])
rng = np.random.default_rng(0)
rows = np.repeat(np.arange(users), per)
cols = np.minimum(rng.zipf(1.3, size=users * per) - 1, books - 1)
m = sp.coo_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(users, books)).tocsr()
m.data[:] = 1
model = LightFM(no_components=64, loss="warp", random_state=7)
times = []
for _ in range(epochs):
    t = time.perf_counter()
    model.fit_partial(m, epochs=1, num_threads=threads)
    times.append(time.perf_counter() - t)
print(json.dumps({"epoch_s": times, "checksum": float(np.abs(model.item_embeddings).sum())}))
"""


def child(python: Path, users: int, books: int, per: int, epochs: int, threads: int) -> dict:
    out = subprocess.run([str(python), "-c", CHILD, str(users), str(books), str(per),
                          str(epochs), str(threads)], capture_output=True, text=True)
    if out.returncode != 0:
        return {"error": out.stderr.strip().splitlines()[-1] if out.stderr else "failed"}
    return json.loads(out.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--version", default="", help="lightfm-next version (default: newest "
                        "with a wheel for this Python)")
    parser.add_argument("--users", type=int, default=53_424)
    parser.add_argument("--books", type=int, default=10_000)
    parser.add_argument("--per-reader", type=int, default=112)
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()

    result: dict[str, object] = {"args": vars(args)}
    with tempfile.TemporaryDirectory(prefix="lightfm-wheel-") as work:
        venv = Path(work) / "venv"
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        python = venv / "bin" / "python"
        started = time.perf_counter()
        wanted = f"lightfm-next=={args.version}" if args.version else "lightfm-next"
        install = subprocess.run([str(python), "-m", "pip", "install", "--quiet",
                                  "--only-binary", ":all:", wanted, "numpy", "scipy"],
                                 capture_output=True, text=True)
        result["install_s"] = round(time.perf_counter() - started, 1)
        if install.returncode != 0:
            result["install_error"] = install.stderr.strip().splitlines()[-1]
        else:
            version = subprocess.run([str(python), "-m", "pip", "show", "lightfm-next"],
                                     capture_output=True, text=True).stdout
            result["installed"] = next((line.split(": ")[1] for line in version.splitlines()
                                        if line.startswith("Version")), "?")
            loads = subprocess.run([str(python), "-c", "from lightfm import LightFM"],
                                   capture_output=True, text=True)
            result["loads"] = loads.returncode == 0
            if not result["loads"]:
                result["load_error"] = [line.replace(str(venv), "<venv>")
                                        for line in loads.stderr.splitlines()
                                        if "Error" in line]
        if result.get("loads"):
            for threads in (1, 2):
                ours = child(Path(sys.executable), args.users, args.books, args.per_reader,
                             args.epochs, threads)
                wheel = child(python, args.users, args.books, args.per_reader, args.epochs,
                              threads)
                result[f"threads_{threads}"] = {
                    "rectools_epoch_s": statistics.median(ours["epoch_s"]),
                    "wheel_epoch_s": statistics.median(wheel["epoch_s"]),
                    "same_factors": ours["checksum"] == wheel["checksum"] if threads == 1
                    else None}
    print(json.dumps(result, indent=2))
    out = REPO / "benchmarks" / "results" / "lightfm-wheel.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
