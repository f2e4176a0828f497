"""The drain: events per second at 1M events, and kill -9 while events keep arriving.

    .venv/bin/python benchmarks/drain.py [--events 1000000] [--repeats 3] [--kills 20]

Redis is REDIS_URL (a db of its own is advisable) or the embedded server; every key lives
under a fresh prefix and is deleted afterwards.

1. **Throughput.** Each repeat fills the stream with ``--events`` events (through
   ``EventWriter``, the API's write path) and drains them into a fresh log. The baseline,
   measured in the same repeat, is the floor of any drain: reading the same entries back
   with XRANGE into Python, with no decoding, no disk and no acknowledgement.
2. **kill -9.** The HTTP API runs (uvicorn, a process of its own) while a client posts
   event batches as fast as it is answered and keeps the ids of every batch accepted (202).
   A drain process (`drain_stream` in a loop, as `goodbooks events drain` runs it) is
   killed with SIGKILL ``--kills`` times at random moments and started again. Then the
   client stops, one last drain runs, and the log is compared with what the API accepted:
   lost = accepted but not in the log, duplicated = in the log more than once.

Prints medians and ratios; writes benchmarks/results/drain-<part>.json (drain-all.json by
default).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from models.event_log import InteractionLog  # noqa: E402
from serving.connection import connect_redis  # noqa: E402
from serving.events import Event, EventWriter  # noqa: E402
from serving.store import RecStore  # noqa: E402
from tasks.events import GROUP, drain_stream  # noqa: E402

DRAIN_LOOP = """
import sys
from pathlib import Path
from serving.connection import connect_redis
from models.event_log import InteractionLog
from tasks.events import drain_stream
url, stream, root = sys.argv[1:4]
client = connect_redis(url or None, Path(root) / "embedded.rdb", socket_timeout_s=10)
print("ready", flush=True)
while True:
    drain_stream(client, stream, InteractionLog(Path(root)), read_count=2000, file_rows=5000)
"""


def redis_url(store: RecStore) -> str:
    """A URL another process can reach the same server with."""
    kwargs = store.client.connection_pool.connection_kwargs
    if kwargs.get("path"):
        return f"unix://{kwargs['path']}?db={kwargs.get('db', 0)}"
    return f"redis://{kwargs['host']}:{kwargs['port']}/{kwargs.get('db', 0)}"


def cleanup(store: RecStore) -> None:
    keys = list(store.client.scan_iter(match=f"{store.prefix}*", count=1000))
    for start in range(0, len(keys), 1000):
        store.client.unlink(*keys[start:start + 1000])


def fill(store: RecStore, n: int) -> float:
    """n events into the stream; returns seconds."""
    writer = EventWriter(store, max_batch=10_000)
    kinds = ("impression", "impression", "impression", "click", "add_to_shelf", "rating")
    started = time.perf_counter()
    for first in range(0, n, 10_000):
        writer.write([Event(type=kinds[i % 6], user_id=1 + i % 53_424, book_id=1 + i % 10_000,
                            variant="control", version="20261204T020000000000Z-ab12",
                            experiment="default", position=i % 10,
                            rating=1 + i % 5 if kinds[i % 6] == "rating" else None)
                      for i in range(first, min(first + 10_000, n))])
    return time.perf_counter() - started


def read_floor(store: RecStore) -> float:
    """Seconds to read every entry back with XRANGE (no decoding, no disk)."""
    started = time.perf_counter()
    start = "-"
    while True:
        page = store.client.xrange(store.events_key, min=start, count=10_000)
        if not page:
            break
        start = "(" + page[-1][0].decode()
    return time.perf_counter() - started


def throughput(store: RecStore, n: int, repeats: int) -> dict[str, object]:
    runs = []
    for repeat in range(repeats):
        cleanup(store)
        fill_s = fill(store, n)
        floor_s = read_floor(store)
        with tempfile.TemporaryDirectory() as root:
            log = InteractionLog(Path(root))
            started = time.perf_counter()
            result = drain_stream(store.client, store.events_key, log)
            drain_s = time.perf_counter() - started
            size = sum(p.stat().st_size for p in Path(root).rglob("*.parquet"))
        assert result.drained == n, result.summary()
        runs.append({"fill_s": fill_s, "floor_s": floor_s, "drain_s": drain_s,
                     "files": len(result.files), "log_bytes": size,
                     "backlog_after": result.backlog})
        print(f"repeat {repeat + 1}: fill {n / fill_s:,.0f}/s, XRANGE floor {n / floor_s:,.0f}/s, "
              f"drain {n / drain_s:,.0f}/s ({drain_s:.1f} s, {len(result.files)} files, "
              f"{size / n:.1f} bytes/event on disk, {result.backlog} left in the stream)")
    drain = statistics.median(r["drain_s"] for r in runs)
    floor = statistics.median(r["floor_s"] for r in runs)
    print(f"median: drain {n / drain:,.0f} events/s = {floor / drain:.2f}x the XRANGE floor "
          f"({n / floor:,.0f}/s)")
    return {"events": n, "runs": runs, "drain_events_per_s": n / drain,
            "floor_events_per_s": n / floor, "drain_over_floor": floor / drain}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def kill_test(store: RecStore, kills: int, seed: int) -> dict[str, object]:
    cleanup(store)
    rng = random.Random(seed)
    url = redis_url(store)
    key = "bench-key"
    port = free_port()
    env = {**os.environ, "REDIS_URL": url, "GOODBOOKS_REDIS_PREFIX": store.prefix,
           "GOODBOOKS_EVENTS_API_KEY": key, "GOODBOOKS_API_ACCESS_LOG": "false"}
    api = subprocess.Popen([sys.executable, "-m", "uvicorn", "serving.api:create_app",
                            "--factory", "--port", str(port), "--log-level", "warning"],
                           cwd=REPO, env=env)
    accepted: list[str] = []
    errors = {"n": 0}
    stop = threading.Event()

    def post_forever() -> None:
        batch = [{"type": "click", "user_id": 1 + i, "book_id": 1 + i % 500,
                  "variant": "control", "version": "v1"} for i in range(100)]
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10.0) as client:
            while not stop.is_set():
                try:
                    response = client.post("/events", json={"events": batch},
                                           headers={"X-API-Key": key})
                except httpx.HTTPError:
                    errors["n"] += 1
                    time.sleep(0.05)
                    continue
                if response.status_code == 202:
                    accepted.extend(response.json()["ids"])
                else:
                    errors["n"] += 1

    with tempfile.TemporaryDirectory() as root:
        try:
            deadline = time.monotonic() + 60
            while True:  # the API answers
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError("the API did not start")
                time.sleep(0.2)
            started = time.perf_counter()
            posters = [threading.Thread(target=post_forever) for _ in range(2)]
            for poster in posters:
                poster.start()
            moments, in_flight = [], []
            for _ in range(kills):
                drain = subprocess.Popen([sys.executable, "-c", DRAIN_LOOP, url,
                                          store.events_key, root], cwd=REPO, env=env,
                                         stdout=subprocess.PIPE, text=True)
                assert drain.stdout is not None and drain.stdout.readline().strip() == "ready"
                moment = rng.uniform(0.05, 2.0)
                moments.append(moment)
                time.sleep(moment)
                drain.send_signal(signal.SIGKILL)
                drain.wait()
                # Entries the killed drain had been given and not acknowledged: the next
                # drain takes them again (and skips those it had already written).
                in_flight.append(int(store.client.xpending(store.events_key, GROUP)["pending"]))
            stop.set()
            for poster in posters:
                poster.join()
            elapsed = time.perf_counter() - started
            final = drain_stream(store.client, store.events_key, InteractionLog(Path(root)))
            logged = InteractionLog(Path(root)).read().events["entry_id"].tolist()
        finally:
            stop.set()
            api.send_signal(signal.SIGINT)
            api.wait(timeout=30)
    in_log = set(logged)
    lost = len(set(accepted) - in_log)
    duplicated = len(logged) - len(in_log)
    unexpected = len(in_log - set(accepted))
    print(f"kill -9 x{kills} (after {min(moments):.2f}-{max(moments):.2f} s of draining; "
          f"{sum(n > 0 for n in in_flight)} kills left entries in flight, "
          f"{sum(in_flight):,} in all) over "
          f"{elapsed:.0f} s: the API accepted {len(accepted):,} events "
          f"({len(accepted) / elapsed:,.0f}/s, {errors['n']} failed requests); the log holds "
          f"{len(logged):,}: lost {lost}, duplicated {duplicated}, not accepted {unexpected}; "
          f"the last drain took {final.drained:,} and found {final.duplicates:,} already "
          "logged")
    return {"kills": kills, "seconds": elapsed, "accepted": len(accepted), "logged": len(logged),
            "lost": lost, "duplicated": duplicated, "unexpected": unexpected,
            "failed_requests": errors["n"], "kill_moments_s": moments,
            "in_flight_at_kill": in_flight,
            "api_events_per_s": len(accepted) / elapsed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--seed", type=int, default=15)
    parser.add_argument("--part", choices=("all", "throughput", "kill"), default="all")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as embedded:
        client = connect_redis(os.environ.get("REDIS_URL") or None,
                               Path(embedded) / "bench.rdb", socket_timeout_s=30)
        store = RecStore(client, f"gbbench:{uuid.uuid4().hex[:8]}:")
        try:
            results = {}
            if args.part in ("all", "throughput"):
                results["throughput"] = throughput(store, args.events, args.repeats)
            if args.part in ("all", "kill"):
                results["kill"] = kill_test(store, args.kills, args.seed)
        finally:
            cleanup(store)
    out = REPO / "benchmarks" / "results" / f"drain-{args.part}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(f"written to {out}")


if __name__ == "__main__":
    main()
