"""Batch scoring at full goodbooks size: compute and publish, each beside its floor.

    .venv/bin/python benchmarks/score.py [--readers 53424] [--books 10000] [--n 100] [--repeats 3]

1. Scoring compute: the project's path (bias folded in as a factor, implicit's top-k with the
   read books filtered, ids mapped back) vs implicit's top-k alone on the same embeddings.
2. The whole score flow (model fetched from the MLflow registry, sharded scoring, pipelined
   writes, manifest, alias switch; Prefect thread pool) vs implicit's top-k plus a raw
   pipelined write of the same bytes.
3. Peak RSS of the flow process, and Redis memory per published version.

Redis: REDIS_URL when set, else the embedded server. State goes to a temp directory.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
import scipy.sparse as sp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def synthetic_bundle(readers: int, books: int, dims: int, per_reader: int, seed: int):
    """Embeddings and a seen matrix with goodbooks' shape (≈112 read books per reader)."""
    from models.bundle import ScoringBundle
    from models.interactions import IdMap
    from models.recommender import FactorModel

    rng = np.random.default_rng(seed)
    factors = FactorModel(
        user_factors=rng.standard_normal((readers, dims), dtype=np.float32),
        user_bias=rng.standard_normal(readers, dtype=np.float32),
        item_factors=rng.standard_normal((books, dims), dtype=np.float32),
        item_bias=rng.standard_normal(books, dtype=np.float32),
    )
    cols = rng.integers(0, books, size=readers * per_reader)
    rows = np.repeat(np.arange(readers), per_reader)
    seen = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(readers, books))
    seen.sum_duplicates()
    seen.data[:] = 1
    return ScoringBundle(ids=IdMap(np.arange(1, readers + 1), np.arange(1, books + 1)),
                         factors=factors, seen=seen, popular=np.arange(1, books + 1))


def time_compute(bundle, n: int, threads: int) -> tuple[float, float]:
    from implicit.cpu.topk import topk

    from models.ranking import with_bias
    from models.scoring import score_readers

    f = bundle.factors
    query, items = with_bias(f.user_factors, f.item_factors, f.item_bias)
    began = time.perf_counter()
    topk(items, query, n, filter_query_items=bundle.seen, num_threads=threads)
    floor = time.perf_counter() - began
    began = time.perf_counter()
    score_readers(bundle, 0, bundle.ids.n_users, n, num_threads=threads)
    ours = time.perf_counter() - began
    return ours, floor


def raw_publish(bundle, n: int, client, prefix: str) -> float:
    """Floor of the whole flow: implicit top-k + one pipelined SET per reader, same bytes."""
    from implicit.cpu.topk import topk

    from models.ranking import with_bias

    began = time.perf_counter()
    f = bundle.factors
    query, items = with_bias(f.user_factors, f.item_factors, f.item_bias)
    ids, _ = topk(items, query, n, filter_query_items=bundle.seen, num_threads=2)
    books = bundle.ids.book_ids[ids]
    pipe = client.pipeline(transaction=False)
    for i, (user, row) in enumerate(zip(bundle.ids.user_ids.tolist(), books.tolist(),
                                        strict=True), 1):
        pipe.set(f"{prefix}raw:{user}", ",".join(map(str, row)))
        if i % 2000 == 0:
            pipe.execute()
    pipe.execute()
    return time.perf_counter() - began


def register(bundle_dir: Path, settings) -> None:  # noqa: ANN001
    """Register the synthetic bundle as the champion, as the train flow would."""
    import mlflow
    from mlflow import MlflowClient

    from tasks.registry import MODEL_CODE, use_tracking

    experiment = use_tracking(settings.tracking_uri, settings.mlflow_experiment,
                              str(settings.mlflow_artifacts_dir))
    with mlflow.start_run(experiment_id=experiment, run_name="benchmark"):
        info = mlflow.pyfunc.log_model(name="model", python_model=str(MODEL_CODE),
                                       artifacts={"bundle": str(bundle_dir)},
                                       registered_model_name=settings.model_name)
    MlflowClient(settings.tracking_uri).set_registered_model_alias(
        settings.model_name, "champion", str(info.registered_model_version))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readers", type=int, default=53_424)
    parser.add_argument("--books", type=int, default=10_000)
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--dims", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="goodbooks-bench-score-"))
    prefix = f"gbbench:{uuid.uuid4().hex[:6]}:"
    os.environ.update({"GOODBOOKS_DATA_DIR": str(root / "data"),
                       "GOODBOOKS_STATE_DIR": str(root / "state"),
                       "GOODBOOKS_REDIS_PREFIX": prefix, "GOODBOOKS_TOP_N": str(args.n),
                       "GOODBOOKS_RETENTION": "1"})
    from settings import apply_tool_environment, get_settings

    settings = get_settings()
    apply_tool_environment(settings)

    bundle = synthetic_bundle(args.readers, args.books, args.dims, 112, seed=0)
    bundle_dir = bundle.save(root / "bundle")
    print(f"{args.readers:,} readers × {args.books:,} books, {args.dims} factors, N={args.n}; "
          f"{bundle.seen.nnz:,} read books excluded")

    compute = [time_compute(bundle, args.n, 2) for _ in range(args.repeats)]
    ours = statistics.median(c[0] for c in compute)
    floor = statistics.median(c[1] for c in compute)
    print(f"compute: ours {ours:.2f} s, implicit top-k {floor:.2f} s → {ours / floor:.2f}×")

    from serving.connection import connect_redis, describe_redis

    client = connect_redis(settings.redis_url, settings.redis_db_path, socket_timeout_s=10)
    print(f"redis: {describe_redis(client)}")
    raw = []
    for _ in range(args.repeats):
        raw.append(raw_publish(bundle, args.n, client, prefix))
    keys = list(client.scan_iter(match=f"{prefix}raw:*", count=5000))
    for start in range(0, len(keys), 5000):
        client.unlink(*keys[start:start + 5000])

    register(bundle_dir, settings)
    from flows.score import score_flow

    memory_before = client.info("memory")["used_memory"]
    runs = []
    for _ in range(args.repeats):
        began = time.perf_counter()
        published = score_flow(aliases=["champion"])
        runs.append(time.perf_counter() - began)
    memory_after = client.info("memory")["used_memory"]
    from serving.store import RecStore

    store = RecStore(client, prefix)
    live = store.committed_versions()
    per_version = (memory_after - memory_before) / max(len(live), 1)
    # The first run also starts Prefect's temporary server: not the flow's own cost.
    flow_s, raw_s = statistics.median(runs[1:] or runs), statistics.median(raw)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"whole flow: {flow_s:.2f} s (runs {', '.join(f'{r:.1f}' for r in runs)}), "
          f"top-k + raw pipelined write {raw_s:.2f} s → {flow_s / raw_s:.2f}×")
    print(f"peak RSS {peak:.0f} MiB; Redis memory per version ≈ {per_version / 2**20:.0f} MiB "
          f"({len(live)} versions live)")
    result = {"compute_s": ours, "compute_floor_s": floor, "flow_s": flow_s, "raw_s": raw_s,
              "peak_rss_mib": peak, "redis_mib_per_version": per_version / 2**20,
              "published": published[0]["version"]}
    out = ROOT / "benchmarks" / "results"
    out.mkdir(exist_ok=True)
    (out / "score.json").write_text(json.dumps(result, indent=2))
    keys = list(client.scan_iter(match=f"{prefix}*", count=5000))
    for start in range(0, len(keys), 5000):
        client.unlink(*keys[start:start + 5000])


if __name__ == "__main__":
    main()
