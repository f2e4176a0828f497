"""HTTP API throughput and latency under wrk on loopback, beside a bare ASGI floor.

    .venv/bin/python benchmarks/serving_http.py [--redis-url redis://127.0.0.1:6379/15]

Publishes a synthetic version (53,424 readers x 100 books) under a private key prefix and
starts three servers, each under uvicorn with ``--workers`` processes:

- the API (``serving.api:create_app``, configured through GOODBOOKS_* variables exactly
  as ``goodbooks serve`` would be, JSON access log included),
- the same API without its access log, and
- the floor: a bare ASGI callable (``floor_app`` below) that does what the API does for a
  cache miss minus the framework: one GET, decode, JSON.

Each is measured with wrk (``apt-get install wrk``) asking for random readers' top 10: at a
paced ~1,000 requests/s (connections x per-request pause), and flat out (saturation).
Every run is repeated and the medians are printed. wrk is closed-loop: when the server
stalls, it waits instead of queueing more requests, so tail latency under overload is
understated (no coordinated-omission correction, unlike wrk2). Every run and the medians
are written to benchmarks/results/serving-http.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "serving-http.json"
sys.path.insert(0, str(REPO))

from benchmarks.serving_synthetic import READERS, delete_prefix, publish_synthetic  # noqa: E402
from serving.connection import connect_redis  # noqa: E402
from serving.store import RecStore, decode_items  # noqa: E402

# Random readers' top 10; delay() paces each connection; done() prints one JSON line.
WRK_SCRIPT = """
local readers = %(readers)d
local pause = 0
function init(args)
  pause = tonumber(args[1]) or 0
  math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16))
end
function request()
  return wrk.format("GET", "/recommendations/" .. math.random(1, readers) .. "?k=10")
end
function delay()
  return pause
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests": %%d, "duration_us": %%d, "p50_us": %%d, "p99_us": %%d, "p999_us": %%d, ' ..
    '"max_us": %%d, "errors": %%d, "non_2xx": %%d}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    latency:percentile(99.9), latency.max, e.connect + e.read + e.write + e.timeout,
    e.status))
end
"""

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


def floor_app() -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    """A bare ASGI app: GET the reader's list of the champion's version, decode, JSON."""
    from settings import get_settings

    settings = get_settings()
    client = connect_redis(
        settings.redis_url,
        settings.redis_db_path,
        socket_timeout_s=settings.serving_socket_timeout_s,
        connect_timeout_s=settings.serving_connect_timeout_s,
    )
    store = RecStore(client, settings.redis_prefix)
    version = store.get_alias("champion")
    headers = [(b"content-type", b"application/json")]

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        user_id = int(scope["path"].rsplit("/", 1)[1])
        k = int(scope["query_string"].partition(b"k=")[2] or 10)
        items = decode_items(client.get(store.recs_key(str(version), user_id)))[:k]
        body = json.dumps({"user_id": user_id, "items": items}).encode()
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return app


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def server(target: str, env: dict[str, str], workers: int, log: Path) -> Iterator[str]:
    """uvicorn serving ``target`` (an app factory) until the block ends; yields its URL."""
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        target,
        "--factory",
        "--app-dir",
        str(REPO / "benchmarks"),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--log-level",
        "warning",
        "--no-access-log",
    ]
    with log.open("w") as sink:
        process = subprocess.Popen(
            command, cwd=REPO, env=env, stdout=sink, stderr=subprocess.STDOUT
        )
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    urllib.request.urlopen(f"{url}/recommendations/1?k=1", timeout=1).read()
                    break
                except OSError:
                    if time.monotonic() > deadline or process.poll() is not None:
                        raise RuntimeError(f"{target} did not start; see {log}") from None
                    time.sleep(0.2)
            yield url
        finally:
            process.terminate()
            process.wait(timeout=30)


def wrk(url: str, script: Path, seconds: int, connections: int, pause_ms: int) -> dict[str, Any]:
    command = [
        "wrk",
        "-t2",
        f"-c{connections}",
        f"-d{seconds}s",
        "-s",
        str(script),
        url,
        "--",
        str(pause_ms),
    ]
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    result = json.loads(out.strip().splitlines()[-1])
    result["rps"] = result["requests"] / (result["duration_us"] / 1e6)
    return result


def cache_ratio(url: str) -> str:
    """Hit ratio of the in-process cache, from /metrics (whichever worker answers)."""
    text = urllib.request.urlopen(f"{url}/metrics", timeout=5).read().decode()
    values = {}
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name in ("goodbooks_cache_hits_total", "goodbooks_cache_misses_total"):
            values[name] = float(value)
    hits, misses = values["goodbooks_cache_hits_total"], values["goodbooks_cache_misses_total"]
    return f"{hits:,.0f} hits, {misses:,.0f} misses ({hits / max(hits + misses, 1):.0%} hits)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/15")
    parser.add_argument("--seconds", type=int, default=20, help="Length of each wrk run.")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--soak-seconds", type=int, default=60, help="A final paced run of the API (0: none)."
    )
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed (Debian/Ubuntu: apt-get install wrk)")

    prefix = f"gbbench:{uuid.uuid4().hex[:8]}:"
    store = RecStore(connect_redis(args.redis_url, Path("unused")), prefix)
    workdir = Path(tempfile.mkdtemp(prefix="gbbench-"))
    script = workdir / "readers.lua"
    script.write_text(WRK_SCRIPT % {"readers": READERS})
    env = {
        **os.environ,
        "GOODBOOKS_REDIS_URL": args.redis_url,
        "GOODBOOKS_REDIS_PREFIX": prefix,
        "PYTHONPATH": str(REPO),
    }
    # The API as `goodbooks serve` runs it (JSON access log on), without its access log,
    # and the floor. All three run at once, idle but for the one under test, and each round
    # measures them back to back, so that they share the same background load.
    targets = {
        "api": ("serving.api:create_app", {"GOODBOOKS_API_ACCESS_LOG": "true"}),
        "api-nolog": ("serving.api:create_app", {"GOODBOOKS_API_ACCESS_LOG": "false"}),
        "floor": ("serving_http:floor_app", {}),
    }
    # Paced: 22 connections, each pausing 20 ms before a request that takes 1-2 ms.
    modes = {"1,000 rps": (22, 20), "saturation": (64, 0)}
    results: dict[tuple[str, str], list[dict[str, Any]]] = {}
    try:
        publish_synthetic(store)
        with ExitStack() as servers:
            urls = {
                name: servers.enter_context(
                    server(target, {**env, **extra}, args.workers, workdir / f"{name}.log")
                )
                for name, (target, extra) in targets.items()
            }
            for url in urls.values():
                wrk(url, script, 5, 64, 0)  # warm-up: connections, caches, allocator
            for round_ in range(args.repeats):
                for mode, (connections, pause) in modes.items():
                    for name, url in urls.items():
                        result = wrk(url, script, args.seconds, connections, pause)
                        results.setdefault((name, mode), []).append(result)
                        print(f"round {round_ + 1} {mode:10} {describe(name, result)}", flush=True)
            print(f"api in-process cache, one worker: {cache_ratio(urls['api'])}")
            if args.soak_seconds:
                soak = wrk(urls["api"], script, args.soak_seconds, *modes["1,000 rps"])
                print(f"soak {args.soak_seconds} s, paced: {describe('api', soak)}")
            load = os.getloadavg()
    finally:
        delete_prefix(store)

    def median(name: str, mode: str, key: str) -> float:
        return statistics.median(r[key] for r in results[(name, mode)])

    print(
        f"\nmedians of {args.repeats} runs of {args.seconds} s, {args.workers} uvicorn "
        f"workers each, wrk -t2 on the same machine ({os.cpu_count()} cores, load average "
        f"{load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} at the end):"
    )
    for mode in modes:
        for name in targets:
            errors = sum(r["errors"] + r["non_2xx"] for r in results[(name, mode)])
            print(
                f"  {mode:10} {name:9} {median(name, mode, 'rps'):7.0f} req/s   "
                f"p50 {median(name, mode, 'p50_us') / 1000:6.2f} ms   "
                f"p99 {median(name, mode, 'p99_us') / 1000:6.2f} ms   "
                f"p99.9 {median(name, mode, 'p999_us') / 1000:6.2f} ms   errors {errors}"
            )
        for name in ("api", "api-nolog"):
            print(
                f"  {mode:10} {name}/floor: "
                f"{median(name, mode, 'rps') / median('floor', mode, 'rps'):.2f}x req/s, "
                f"{median(name, mode, 'p50_us') / median('floor', mode, 'p50_us'):.2f}x p50, "
                f"{median(name, mode, 'p99_us') / median('floor', mode, 'p99_us'):.2f}x p99"
            )
    summary = {
        "args": vars(args),
        "cpus": os.cpu_count(),
        "load_average_at_end": [round(x, 2) for x in load],
        "medians": {
            mode: {
                name: {
                    key: median(name, mode, key) for key in ("rps", "p50_us", "p99_us", "p999_us")
                }
                | {"errors": sum(r["errors"] + r["non_2xx"] for r in results[(name, mode)])}
                for name in targets
            }
            for mode in modes
        },
        "runs": {f"{name} / {mode}": runs for (name, mode), runs in results.items()},
        "soak": soak if args.soak_seconds else None,
    }
    RESULTS.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"logs in {workdir}; summary in {RESULTS.relative_to(REPO)}")


def describe(name: str, result: dict[str, Any]) -> str:
    return (
        f"{name:9} {result['rps']:7.0f} req/s  p50 {result['p50_us'] / 1000:6.2f} ms  "
        f"p99 {result['p99_us'] / 1000:6.2f} ms  errors {result['errors']} "
        f"non-2xx {result['non_2xx']}"
    )


if __name__ == "__main__":
    main()
