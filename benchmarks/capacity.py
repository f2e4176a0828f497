"""Per-unit figures for the capacity model, measured here, and the model they give.

    .venv/bin/python benchmarks/capacity.py [--redis redis://127.0.0.1:6379/14]
        [--lists 50000] [--n 100] [--books 10000] [--dims 64] [--repeats 3]

Measured on this machine, medians of ``--repeats``:

- **bytes per stored list**: a version of ``--lists`` readers' top-``n`` lists (random book
  ids below ``--books``, encoded as the store encodes them) written through ``RecStore``;
  Redis's ``used_memory`` before and after, divided by the lists (key, value and the
  server's per-key overhead), beside the payload's own bytes;
- **publish rate**: the same write, timed: lists and payload bytes per second through one
  client's pipelines (``RecStore.write_recs``, 2,000 commands per round trip); on a cluster
  the model counts it 1.88× slower (`benchmarks/redis_cluster.py`);
- **scoring per reader per core**: the project's top-k (``models.ranking.top_k_factors``,
  one thread) over ``--books`` books with ``--dims`` factors, and the floating-point work
  that is: 2 × (dims + 1) × books per reader.

Requests per core of the HTTP API are not measured here: `benchmarks/serving_http.py`
measured 6,788 req/s at saturation on 2 cores shared with the load generator (`wrk`), which
this model counts as 3,394 req/s per core (an under-estimate: wrk took part of the cores).

The model (printed, and in ``benchmarks/results/capacity.json``) puts those units together
for ``--target-readers`` readers × ``--target-n`` books, with the assumptions named in its
output: two versions held at once during a cutover, one replica per master, a memory
budget per Redis node, Dask workers of a given number of cores, and a target request rate.
``infra/README.md`` quotes it.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
import uuid
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from models.ranking import top_k_factors, with_bias  # noqa: E402
from serving.connection import connect_redis  # noqa: E402
from serving.keys import encode_items  # noqa: E402
from serving.store import RecStore  # noqa: E402

RESULT = REPO / "benchmarks" / "results" / "capacity.json"
API_REQUESTS_PER_CORE = 6_788 / 2  # benchmarks/serving_http.py, saturation, 2 cores
# benchmarks/redis_cluster.py: publishing to a cluster took 1.88× the single server's time
# (redis-py routes each key of a cluster pipeline in Python).
CLUSTER_PUBLISH_FACTOR = 1.88


def lists(count: int, n: int, books: int, seed: int) -> list[tuple[int, str]]:
    rng = np.random.default_rng(seed)
    return [(user, encode_items(rng.choice(books, n, replace=False).tolist()))
            for user in range(1, count + 1)]


def measure_store(url: str, count: int, n: int, books: int, seed: int) -> dict[str, float]:
    """One version of `count` lists written and measured, then deleted."""
    client = connect_redis(url, None)
    store = RecStore(client, f"gbcap:{uuid.uuid4().hex[:8]}:")
    rows = lists(count, n, books, seed)
    payload = sum(len(p) for _, p in rows)
    before = int(client.info("memory")["used_memory"])
    version = store.new_version()
    began = time.perf_counter()
    store.write_recs(version, rows)
    seconds = time.perf_counter() - began
    after = int(client.info("memory")["used_memory"])
    sample = [int(client.memory_usage(store.recs_key(version, user)) or 0)
              for user in range(1, min(count, 1000) + 1)]
    store.discard_version(version)
    keys = list(client.scan_iter(match=f"{store.prefix}*", count=1000))
    if keys:
        client.unlink(*keys)
    return {"bytes_per_list": (after - before) / count,
            "memory_usage_per_key": statistics.mean(sample),
            "payload_bytes_per_list": payload / count,
            "lists_per_s": count / seconds, "payload_bytes_per_s": payload / seconds}


def measure_scoring(readers: int, books: int, dims: int, n: int, seed: int) -> dict[str, float]:
    """Seconds per reader of a one-thread top-n over the catalogue, and the work it is."""
    rng = np.random.default_rng(seed)
    users = rng.standard_normal((readers, dims)).astype(np.float32)
    items = rng.standard_normal((books, dims)).astype(np.float32)
    query, catalogue = with_bias(users, items, rng.standard_normal(books).astype(np.float32))
    began = time.perf_counter()
    top_k_factors(query, catalogue, n, num_threads=1)
    seconds = (time.perf_counter() - began) / readers
    flops = 2 * (dims + 1) * books
    return {"seconds_per_reader": seconds, "flops_per_reader": flops,
            "gflops_per_core": flops / seconds / 1e9}


def model(units: dict[str, float], args: argparse.Namespace) -> dict[str, object]:
    """What the target needs, from the measured units and the named assumptions."""
    readers, n = args.target_readers, args.target_n
    # Per-list bytes grow with the list: scale the measured bytes by n / measured n.
    per_list = units["bytes_per_list"] * n / args.n
    data = readers * per_list
    held = data * 2  # the live version and the next one during a cutover
    masters = math.ceil(held / (args.node_memory_gib * 2**30))
    nodes = masters * 2  # one replica each
    per_reader_s = units["seconds_per_reader"] * (args.target_books / args.books)
    cores = args.workers * args.cores_per_worker
    scoring_s = readers * per_reader_s / cores
    publish_bytes_per_s = units["payload_bytes_per_s"] * masters  # one writer per master
    publish_s = (readers * units["payload_bytes_per_list"] * n / args.n / publish_bytes_per_s
                 * CLUSTER_PUBLISH_FACTOR)
    api_cores = math.ceil(args.target_rps / API_REQUESTS_PER_CORE / args.api_utilisation)
    return {
        "assumptions": {
            "readers": readers, "books_per_list": n, "catalogue": args.target_books,
            "versions_held_at_cutover": 2, "replicas_per_master": 1,
            "usable_memory_per_redis_node_gib": args.node_memory_gib,
            "dask_workers": args.workers, "cores_per_worker": args.cores_per_worker,
            "publish_writers": "one per master, each at this machine's measured rate "
                               f"× 1/{CLUSTER_PUBLISH_FACTOR} (cluster pipelines)",
            "target_requests_per_s": args.target_rps,
            "api_requests_per_core": API_REQUESTS_PER_CORE,
            "api_utilisation": args.api_utilisation,
        },
        "redis_data_gib": data / 2**30, "redis_held_gib": held / 2**30,
        "redis_masters": masters, "redis_nodes": nodes,
        "scoring_hours": scoring_s / 3600, "publish_hours": publish_s / 3600,
        "nightly_hours": (scoring_s + publish_s) / 3600,
        "api_cores": api_cores, "api_nodes_of_8_cores": math.ceil(api_cores / 8),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/14")
    parser.add_argument("--lists", type=int, default=50_000)
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--books", type=int, default=10_000)
    parser.add_argument("--dims", type=int, default=64)
    parser.add_argument("--score-readers", type=int, default=8_192)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--target-readers", type=int, default=100_000_000)
    parser.add_argument("--target-n", type=int, default=100)
    parser.add_argument("--target-books", type=int, default=10_000)
    parser.add_argument("--target-rps", type=int, default=50_000)
    parser.add_argument("--node-memory-gib", type=float, default=25.0,
                        help="Redis data per node: e.g. a 64 GiB machine kept under 40%%")
    parser.add_argument("--workers", type=int, default=16, help="Dask workers")
    parser.add_argument("--cores-per-worker", type=int, default=8)
    parser.add_argument("--api-utilisation", type=float, default=0.5,
                        help="share of an API core planned for (headroom for peaks)")
    args = parser.parse_args()

    runs = [{**measure_store(args.redis, args.lists, args.n, args.books, seed),
             **measure_scoring(args.score_readers, args.books, args.dims, args.n, seed)}
            for seed in range(args.repeats)]
    units = {key: statistics.median(run[key] for run in runs) for key in runs[0]}
    print(f"per unit (medians of {args.repeats}):")
    print(f"  a stored list of {args.n}: {units['bytes_per_list']:.0f} bytes of Redis memory "
          f"(MEMORY USAGE {units['memory_usage_per_key']:.0f}; payload "
          f"{units['payload_bytes_per_list']:.0f})")
    print(f"  publish through one client: {units['lists_per_s']:,.0f} lists/s, "
          f"{units['payload_bytes_per_s'] / 2**20:.1f} MiB/s of payload")
    print(f"  scoring: {units['seconds_per_reader'] * 1e6:.0f} µs per reader per core over "
          f"{args.books:,} books × {args.dims} factors ({units['flops_per_reader'] / 1e6:.2f} "
          f"MFLOP: {units['gflops_per_core']:.1f} GFLOP/s per core)")
    print(f"  API: {API_REQUESTS_PER_CORE:,.0f} requests/s per core (benchmarks/serving_http.py)")
    plan = model(units, args)
    print(f"\n{args.target_readers:,} readers × {args.target_n} books:")
    print(f"  Redis: {plan['redis_data_gib']:.0f} GiB per version, {plan['redis_held_gib']:.0f} "
          f"GiB with two versions at a cutover: {plan['redis_masters']} masters of "
          f"{args.node_memory_gib:g} GiB + one replica each = {plan['redis_nodes']} nodes")
    print(f"  scoring on {args.workers} Dask workers × {args.cores_per_worker} cores: "
          f"{plan['scoring_hours']:.2f} h; publishing with one writer per master: "
          f"{plan['publish_hours']:.2f} h; nightly window ≈ {plan['nightly_hours']:.2f} h")
    print(f"  API for {args.target_rps:,} req/s at {args.api_utilisation:.0%} of a core: "
          f"{plan['api_cores']} cores ({plan['api_nodes_of_8_cores']} nodes of 8 cores)")
    RESULT.parent.mkdir(exist_ok=True)
    RESULT.write_text(json.dumps({"args": vars(args), "runs": runs, "units": units,
                                  "model": plan}, indent=2) + "\n")


if __name__ == "__main__":
    main()
