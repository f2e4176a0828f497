"""Dask scoring at 1×, 3× and 10× goodbooks: time, throughput and peak memory per worker.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/score_dask.py [--scales 1 3 10] [--repeats 3]
        [--large-repeats 1] [--whole-load-scale 10] [--redis redis://127.0.0.1:6379/14]

For each scale (×53,424 readers, 10,000 books), a scoring bundle with generated factors of the
production dimension (64) and a seen matrix of goodbooks' density (reads per reader drawn
from goodbooks' mean 111.9 / sd 26.1, clipped to 19–200) is registered in MLflow as the
champion, then published to Redis through the real score flow on a fresh
``distributed.LocalCluster`` of 2 worker processes with 1 thread each
(``dask_score_flow(address)``). LightFM is not trained: at 10× that is out of reach on 2
cores, and scoring cost depends on the shapes alone.

Per run: wall time of the flow call, readers/s, readers/s per core, and each worker's peak
resident memory, read inside the worker from /proc/self/status (VmHWM: the peak of that
process's own address space since it started; ru_maxrss would also carry the peak of the
process it was forked from). At 1× the single-process score flow (thread pool, 2 threads)
runs in the same loop for the ratio. At ``--whole-load-scale`` the shards also run as plain
Dask tasks twice, each on a fresh cluster: once loading the whole bundle per worker (what
shard tasks did before) and once reading one shard at a time (what they do now).

Every key written goes under a private prefix in the given Redis db and is deleted at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

GOODBOOKS_READERS = 53_424
BOOKS = 10_000
DIMS = 64
READS_MEAN, READS_SD, READS_MIN, READS_MAX = 111.9, 26.1, 19, 200
WORKERS = 2


def generated_bundle(readers: int, books: int, dims: int, seed: int):  # noqa: ANN201
    """Factors of the production shape and a seen matrix with goodbooks' reads per reader."""
    import scipy.sparse as sp

    from models.bundle import ScoringBundle
    from models.interactions import IdMap
    from models.recommender import FactorModel

    rng = np.random.default_rng(seed)
    counts = np.clip(np.rint(rng.normal(READS_MEAN, READS_SD, readers)), READS_MIN,
                     READS_MAX).astype(np.int64)
    # One sort of (reader, book) keys puts each row's books in order and shows repeats.
    keys = np.repeat(np.arange(readers, dtype=np.int64) * books, counts)
    keys += rng.integers(0, books, size=len(keys))
    keys.sort()
    keys = keys[np.r_[True, keys[1:] != keys[:-1]]]
    indptr = np.r_[0, np.cumsum(np.bincount(keys // books, minlength=readers))]
    seen = sp.csr_matrix((np.ones(len(keys), np.float32), (keys % books).astype(np.int32),
                          indptr), shape=(readers, books))
    factors = FactorModel(
        user_factors=rng.standard_normal((readers, dims), dtype=np.float32),
        user_bias=rng.standard_normal(readers, dtype=np.float32),
        item_factors=rng.standard_normal((books, dims), dtype=np.float32),
        item_bias=rng.standard_normal(books, dtype=np.float32),
    )
    return ScoringBundle(ids=IdMap(np.arange(1, readers + 1), np.arange(1, books + 1)),
                         factors=factors, seen=seen, popular=np.arange(1, books + 1))


def register(bundle_dir: Path, settings, scale: int) -> str:  # noqa: ANN001
    """Register a bundle as the champion, as the train flow would; return its model version."""
    import mlflow
    from mlflow import MlflowClient

    from tasks.registry import MODEL_CODE, use_tracking

    experiment = use_tracking(settings.tracking_uri, settings.mlflow_experiment,
                              str(settings.mlflow_artifacts_dir))
    with mlflow.start_run(experiment_id=experiment, run_name=f"benchmark-{scale}x"):
        info = mlflow.pyfunc.log_model(name="model", python_model=str(MODEL_CODE),
                                       artifacts={"bundle": str(bundle_dir)},
                                       registered_model_name=settings.model_name)
    version = str(info.registered_model_version)
    MlflowClient(settings.tracking_uri).set_registered_model_alias(
        settings.model_name, "champion", version)
    return version


def process_memory() -> dict[str, float]:
    """Peak and current resident memory of the calling process, MiB (runs inside workers)."""
    fields = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmHWM", "VmRSS"):
            fields[name] = int(value.split()[0]) / 1024
    return {"peak_mib": fields["VmHWM"], "rss_mib": fields["VmRSS"]}


def reset_peak() -> None:
    """Start this process's VmHWM afresh (Linux clear_refs 5)."""
    Path("/proc/self/clear_refs").write_text("5")


def start_cluster():  # noqa: ANN201
    from distributed import Client, LocalCluster

    cluster = LocalCluster(n_workers=WORKERS, threads_per_worker=1, processes=True,
                           dashboard_address=None)
    return cluster, Client(cluster)


def worker_memory(client) -> list[dict[str, float]]:  # noqa: ANN001
    return [client.run(process_memory)[w] for w in sorted(client.scheduler_info()["workers"])]


def dask_flow_run(readers: int) -> dict[str, object]:
    """The score flow on a fresh 2-process LocalCluster: time and each worker's peak."""
    from flows.score import dask_score_flow

    cluster, client = start_cluster()
    try:
        at_start = worker_memory(client)
        began = time.perf_counter()
        published = dask_score_flow(address=cluster.scheduler_address)(aliases=["champion"])[0]
        seconds = time.perf_counter() - began
        after = worker_memory(client)
    finally:
        client.close()
        cluster.close()
    return {"runner": "dask", "readers": readers, "seconds": seconds,
            "flow_publish_seconds": published["seconds"], "version": published["version"],
            "readers_per_s": readers / seconds,
            "readers_per_s_per_core": readers / seconds / WORKERS,
            "worker_peak_mib": [m["peak_mib"] for m in after],
            "worker_rss_at_start_mib": [m["rss_mib"] for m in at_start]}


def single_flow_run(readers: int) -> dict[str, object]:
    """The score flow in this process (thread pool of 2): time and this process's peak."""
    from flows.score import score_flow

    reset_peak()
    began = time.perf_counter()
    published = score_flow(aliases=["champion"])[0]
    seconds = time.perf_counter() - began
    return {"runner": "threads", "readers": readers, "seconds": seconds,
            "flow_publish_seconds": published["seconds"], "version": published["version"],
            "readers_per_s": readers / seconds,
            "readers_per_s_per_core": readers / seconds / WORKERS,
            "process_peak_mib": process_memory()["peak_mib"]}


def score_shard_whole(bundle_dir: str, start: int, stop: int, n: int, version: str,
                      target) -> int:  # noqa: ANN001
    """A shard as shard tasks scored it before: from the whole bundle, loaded once per worker."""
    from distributed import get_worker

    from models.bundle import ScoringBundle
    from models.scoring import encode_lists, score_readers

    worker = get_worker()
    if getattr(worker, "whole_bundle", None) is None:
        worker.whole_bundle = ScoringBundle.load(Path(bundle_dir))
    user_ids, books = score_readers(worker.whole_bundle, start, stop, n, num_threads=1)
    return target.store().write_recs(version, encode_lists(user_ids, books)).count


def score_shard_rows(bundle_dir: str, start: int, stop: int, n: int, version: str,
                     target) -> int:  # noqa: ANN001
    """A shard as shard tasks score it now: its own readers read from disk, books shared."""
    from models.bundle import ScoringBundle
    from models.scoring import encode_lists, score_readers
    from tasks.publish import _books

    shard = ScoringBundle.load_readers(Path(bundle_dir), start, stop, books=_books(bundle_dir))
    user_ids, books = score_readers(shard, 0, stop - start, n, num_threads=1)
    return target.store().write_recs(version, encode_lists(user_ids, books)).count


def plain_dask_run(how: str, bundle_dir: Path, readers: int, n: int, shard_size: int,
                   target) -> dict[str, object]:  # noqa: ANN001
    """Every shard as a plain Dask task on a fresh cluster, loading the bundle ``how``."""
    from models.scoring import shard_bounds

    function = {"whole": score_shard_whole, "rows": score_shard_rows}[how]
    store = target.store()
    version = store.new_version(lease_s=3600)
    cluster, client = start_cluster()
    try:
        bounds = shard_bounds(readers, shard_size)
        began = time.perf_counter()
        futures = client.map(function, [str(bundle_dir)] * len(bounds),
                             [a for a, _ in bounds], [b for _, b in bounds],
                             [n] * len(bounds), [version] * len(bounds),
                             [target] * len(bounds), pure=False)
        written = sum(client.gather(futures))
        seconds = time.perf_counter() - began
        after = worker_memory(client)
    finally:
        client.close()
        cluster.close()
        store.discard_version(version)
    if written != readers:
        raise RuntimeError(f"{how}: wrote {written} lists for {readers} readers")
    return {"runner": f"plain-dask-{how}", "readers": readers, "seconds": seconds,
            "readers_per_s": readers / seconds,
            "worker_peak_mib": [m["peak_mib"] for m in after]}


def delete_prefix(client, prefix: str) -> int:  # noqa: ANN001
    keys = list(client.scan_iter(match=f"{prefix}*", count=5000))
    for start in range(0, len(keys), 5000):
        client.unlink(*keys[start:start + 5000])
    return len(keys)


def summarise(runs: list[dict[str, object]], scale: int, runner: str) -> dict[str, object]:
    chosen = [r for r in runs if r["scale"] == scale and r["runner"] == runner]
    if not chosen:
        return {}
    out: dict[str, object] = {"runs": len(chosen), "readers": chosen[0]["readers"]}
    for key in ("seconds", "readers_per_s", "readers_per_s_per_core"):
        if key in chosen[0]:
            out[key] = statistics.median(float(r[key]) for r in chosen)
    if "worker_peak_mib" in chosen[0]:
        out["worker_peak_mib"] = statistics.median(max(r["worker_peak_mib"]) for r in chosen)
    if "process_peak_mib" in chosen[0]:
        out["process_peak_mib"] = statistics.median(float(r["process_peak_mib"])
                                                    for r in chosen)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scales", type=int, nargs="+", default=[1, 3, 10])
    parser.add_argument("--repeats", type=int, default=3, help="runs at 1×")
    parser.add_argument("--large-repeats", type=int, default=1, help="runs above 1×")
    parser.add_argument("--whole-load-scale", type=int, default=10,
                        help="scale of the whole-bundle vs shard-load comparison (0: none)")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/14")
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--base-readers", type=int, default=GOODBOOKS_READERS,
                        help="readers at 1× (smaller for a quick check of the script)")
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="goodbooks-bench-score-dask-"))
    prefix = f"gbbench:{uuid.uuid4().hex[:6]}:"
    os.environ.update({"GOODBOOKS_DATA_DIR": str(root / "data"),
                       "GOODBOOKS_STATE_DIR": str(root / "state"),
                       "GOODBOOKS_REDIS_URL": args.redis, "GOODBOOKS_REDIS_PREFIX": prefix,
                       "GOODBOOKS_TOP_N": str(args.n), "GOODBOOKS_RETENTION": "1"})
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    from serving.connection import connect_redis
    from settings import apply_tool_environment, get_settings
    from tasks.publish import RedisTarget

    settings = get_settings()
    apply_tool_environment(settings)
    redis_client = connect_redis(settings.redis_url, settings.redis_db_path,
                                 socket_timeout_s=30)
    target = RedisTarget(url=settings.redis_url, embedded_db_path=str(settings.redis_db_path),
                         prefix=prefix, socket_timeout_s=30)
    runs: list[dict[str, object]] = []
    load_before = os.getloadavg()[0]
    try:
        with prefect_test_harness(server_startup_timeout=120):
            # Workers inherit the environment when they start: one Prefect server for all.
            os.environ["PREFECT_API_URL"] = str(PREFECT_API_URL.value())
            for scale in args.scales:
                readers = args.base_readers * scale
                began = time.perf_counter()
                bundle = generated_bundle(readers, BOOKS, DIMS, seed=scale)
                nnz = int(bundle.seen.nnz)
                # MLflow files the artifact under its directory's name; the flow reads "bundle".
                bundle_dir = bundle.save(root / f"{scale}x" / "bundle")
                del bundle  # nothing of it is left for worker processes to inherit
                register(bundle_dir, settings, scale)
                size_mib = sum(p.stat().st_size for p in bundle_dir.iterdir()) / 2**20
                print(f"{scale}×: {readers:,} readers, {nnz:,} reads, bundle {size_mib:.0f} "
                      f"MiB, built in {time.perf_counter() - began:.0f} s", flush=True)
                repeats = args.repeats if scale == 1 else args.large_repeats
                for repeat in range(repeats):
                    batch = [dask_flow_run(readers)]
                    if scale == 1:
                        batch.append(single_flow_run(readers))
                    for run in batch:
                        run.update(scale=scale, repeat=repeat, reads=nnz,
                                   bundle_mib=size_mib, load_avg_1m=os.getloadavg()[0])
                        runs.append(run)
                        peak = run.get("worker_peak_mib", run.get("process_peak_mib"))
                        print(f"  {run['runner']:>8} {run['seconds']:6.1f} s "
                              f"{run['readers_per_s']:8,.0f} readers/s, peak {peak} MiB",
                              flush=True)
                if scale == args.whole_load_scale:
                    for how in ("whole", "rows"):
                        run = plain_dask_run(how, bundle_dir, readers, args.n,
                                             settings.score_shard_size, target)
                        run.update(scale=scale, repeat=0, reads=nnz, bundle_mib=size_mib,
                                   load_avg_1m=os.getloadavg()[0])
                        runs.append(run)
                        print(f"  {run['runner']} {run['seconds']:.1f} s, peak "
                              f"{run['worker_peak_mib']} MiB", flush=True)
                delete_prefix(redis_client, prefix)
    finally:
        deleted = delete_prefix(redis_client, prefix)
        print(f"deleted {deleted} leftover Redis keys under {prefix}")
        shutil.rmtree(root, ignore_errors=True)

    summary = {f"{scale}x": {runner: summarise(runs, scale, runner)
                             for runner in ("dask", "threads", "plain-dask-whole",
                                            "plain-dask-rows")
                             if summarise(runs, scale, runner)}
               for scale in args.scales}
    one = summary.get("1x", {})
    result = {
        "parameters": {"scales": args.scales, "readers_1x": args.base_readers,
                       "books": BOOKS, "dims": DIMS, "n": args.n, "workers": WORKERS,
                       "threads_per_worker": 1, "shard_size": settings.score_shard_size,
                       "repeats_1x": args.repeats, "repeats_larger": args.large_repeats,
                       "redis": args.redis, "cpus": os.cpu_count()},
        "load_avg_1m_before": load_before,
        "load_avg_1m_after": os.getloadavg()[0],
        "summary": summary,
        "ratio_dask_over_single_1x": (one["dask"]["seconds"] / one["threads"]["seconds"]
                                      if "dask" in one and "threads" in one else None),
        "runs": runs,
    }
    out = ROOT / "benchmarks" / "results"
    out.mkdir(exist_ok=True)
    (out / "score-dask.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(summary, indent=2))
    print(f"Dask / single-process at 1×: {result['ratio_dask_over_single_1x']}")


if __name__ == "__main__":
    main()
