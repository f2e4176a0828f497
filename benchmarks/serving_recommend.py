"""recommend() latency: an in-process cache miss beside a raw redis-py GET, and a cache hit.

    .venv/bin/python benchmarks/serving_recommend.py [--redis-url redis://127.0.0.1:6379/15]

Publishes a synthetic version (53,424 readers x 100 books) under a private key prefix,
then, in each of ``--repeats`` rounds, times 10,000 calls of each kind over the same
10,000 readers: a raw ``client.get(key)`` (the floor) and ``recommend()`` on a cold cache
(every call misses: one GET + decode + cache insert), taken in turns so that both see the
same background load, then ``recommend()`` again (every call hits). Prints per-round
p50/p99 and the median over rounds; ratios are taken against the raw GET of the same round.
The rounds and the medians are written to benchmarks/results/serving-recommend.json.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "serving-recommend.json"
sys.path.insert(0, str(REPO))

from benchmarks.serving_synthetic import READERS, delete_prefix, publish_synthetic  # noqa: E402
from serving.cache import RecCache  # noqa: E402
from serving.connection import connect_redis  # noqa: E402
from serving.handler import RecommendationService  # noqa: E402
from serving.store import RecStore  # noqa: E402


def timed(call: Callable[[Any], object], arguments: list[Any]) -> list[float]:
    """Microseconds of each ``call(argument)``."""
    clock = time.perf_counter_ns
    samples = []
    for argument in arguments:
        started = clock()
        call(argument)
        samples.append((clock() - started) / 1000)
    return samples


def interleaved(
    first: Callable[[Any], object],
    first_arguments: list[Any],
    second: Callable[[Any], object],
    second_arguments: list[Any],
) -> tuple[list[float], list[float]]:
    """Microseconds of each call of ``first`` and ``second``, taken in turns."""
    # In turns, so both see the same background load: the machine is shared.
    clock = time.perf_counter_ns
    first_samples, second_samples = [], []
    for a, b in zip(first_arguments, second_arguments, strict=True):
        started = clock()
        first(a)
        middle = clock()
        second(b)
        ended = clock()
        first_samples.append((middle - started) / 1000)
        second_samples.append((ended - middle) / 1000)
    return first_samples, second_samples


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/15")
    parser.add_argument("--calls", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--k", type=int, default=10)
    args = parser.parse_args()

    client = connect_redis(
        args.redis_url, Path("unused"), socket_timeout_s=0.1, connect_timeout_s=0.25
    )
    store = RecStore(client, f"gbbench:{uuid.uuid4().hex[:8]}:")
    try:
        version = publish_synthetic(store)
        rounds: dict[str, list[tuple[float, float]]] = {"raw": [], "miss": [], "hit": []}
        for round_ in range(args.repeats):
            users = random.Random(round_).sample(range(1, READERS + 1), args.calls)
            keys = [store.recs_key(version, u) for u in users]
            service = RecommendationService(
                store, experiment="default", cache=RecCache(2 * args.calls, 300.0)
            )
            service.recommend(READERS + 1, args.k)  # warm pointers; unknown reader, no entry
            gc.collect()
            raw, miss = interleaved(client.get, keys, partial(service.recommend, k=args.k), users)
            hit = timed(partial(service.recommend, k=args.k), users)
            stats = service.stats().cache
            if stats is None or stats.hits < args.calls:
                raise RuntimeError(f"expected {args.calls} cache hits, got {stats}")
            for name, samples in (("raw", raw), ("miss", miss), ("hit", hit)):
                rounds[name].append((percentile(samples, 0.5), percentile(samples, 0.99)))
            print(
                f"round {round_ + 1}: "
                + "  ".join(
                    f"{name} p50 {rounds[name][-1][0]:.1f} p99 {rounds[name][-1][1]:.1f} us"
                    for name in rounds
                )
            )

        def median(name: str, index: int) -> float:
            return statistics.median(r[index] for r in rounds[name])

        def ratio(index: int) -> float:
            return statistics.median(
                m[index] / r[index] for m, r in zip(rounds["miss"], rounds["raw"], strict=True)
            )

        print(
            f"\nmedians over {args.repeats} rounds of {args.calls:,} calls "
            f"(N=100 stored, k={args.k}):"
        )
        print(
            f"  raw redis-py GET        p50 {median('raw', 0):7.1f} us   "
            f"p99 {median('raw', 1):7.1f} us"
        )
        print(
            f"  recommend(), L1 miss    p50 {median('miss', 0):7.1f} us   "
            f"p99 {median('miss', 1):7.1f} us   ({ratio(0):.2f}x / {ratio(1):.2f}x raw GET)"
        )
        print(
            f"  recommend(), L1 hit     p50 {median('hit', 0):7.1f} us   "
            f"p99 {median('hit', 1):7.1f} us"
        )
        summary = {
            "args": {k: v for k, v in vars(args).items() if k != "redis_url"},
            "cpus": os.cpu_count(),
            "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
            "medians_us": {
                name: {"p50": median(name, 0), "p99": median(name, 1)} for name in rounds
            },
            "miss_over_raw": {"p50": ratio(0), "p99": ratio(1)},
            "rounds_us": {
                name: [{"p50": p50, "p99": p99} for p50, p99 in samples]
                for name, samples in rounds.items()
            },
        }
        RESULTS.write_text(json.dumps(summary, indent=2) + "\n")
        print(f"summary in {RESULTS.relative_to(REPO)}")
    finally:
        delete_prefix(store)


if __name__ == "__main__":
    main()
