"""The fault matrix of the control loops: each cell a count tried / survived.

    .venv/bin/python benchmarks/faults.py [--kills 10] [--retried 10000] [--publish-kills 20]
        [--races 200] [--seed 0]

1. **kill -9 of the API and its embedded Redis while events arrive.** The HTTP API runs
   (uvicorn, its own process, the embedded Redis with its append-only file) while two
   clients post batches of 50 events, each event with an id, and keep the ids accepted
   (202) with the time of the answer. ``--kills`` times, at a random moment, the API and
   the redis-server are killed with SIGKILL and the API is started again (it starts the
   server from its files). Then every accepted id is looked up in the stream: lost =
   accepted but absent; "beyond the fsync window" = lost although accepted more than 2 s
   before the kill that lost it (Redis's ``appendfsync everysec`` promises at most about
   one to two seconds). The same run with the append-only file turned off (snapshots only,
   the earlier default) is the baseline.
2. **Retried POSTs.** ``--retried`` POSTs of one event each, every one sent twice with the
   same X-Request-ID (a client whose answer was lost): double counts = stream entries and
   counter increments beyond one per event.
3. **A fault at every step of promote and of rollback.** A fresh registered model (MLflow,
   SQLite in a temp dir) and Redis aliases; the k-th change (an MLflow alias move or a Redis
   alias switch or delete) raises; afterwards MLflow and Redis must agree
   (``tasks.aliases.status``) and be exactly as before the call.
4. **kill -9 of a publishing writer at random moments** (new version under a lease, 5,000
   lists written in batches, manifest, compare-and-set switch), then the next run (discard
   what dead writers left, prune): orphan keys = keys of versions neither committed nor
   pending under a live lease.
5. **Score runs racing a promotion.** Two writers start from the live champion, a promotion
   switches it meanwhile, all three switch compare-and-set in a random order: a silent
   overwrite is a switch that succeeded although the alias no longer held what its writer
   started from.

Prints the matrix; writes benchmarks/results/faults.json.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import socket
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

from serving.connection import connect_redis  # noqa: E402
from serving.embedded import release_embedded_redis  # noqa: E402
from serving.events import StoredEvent  # noqa: E402
from serving.store import AliasChangedError, RecStore  # noqa: E402

KEY = "fault-key"
RESULTS = REPO / "benchmarks" / "results"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def redis_servers(directory: Path) -> list[int]:
    """Pids of live redis-server processes working in ``directory``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if (entry / "comm").read_text().strip() != "redis-server":
                continue
            if Path(os.readlink(entry / "cwd")) == directory:
                found.append(int(entry.name))
        except OSError:
            continue
    return found


class Api:
    """The HTTP API on the embedded Redis of a data directory, started and killed at will."""

    def __init__(self, data_dir: Path, append_only: bool) -> None:
        self.data_dir, self.append_only = data_dir, append_only
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {**os.environ, "REDIS_URL": "", "GOODBOOKS_REDIS_URL": "",
               "GOODBOOKS_DATA_DIR": str(self.data_dir), "GOODBOOKS_EVENTS_API_KEY": KEY,
               "GOODBOOKS_API_ACCESS_LOG": "false"}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "serving.api:create_app", "--factory",
             "--port", str(self.port), "--log-level", "critical"], cwd=REPO, env=env)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        else:
            raise RuntimeError("the API did not start")
        if not self.append_only:
            # The baseline: snapshots only, as the embedded server ran before. The file it
            # started with goes too, or the next start would load that stale file.
            client = connect_redis(None, self.db_path)
            client.config_set("appendonly", "no")
            client.close()
            release_embedded_redis(self.db_path)
            (self.db_path.parent / f"{self.db_path.name}.aof").unlink(missing_ok=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def db_path(self) -> Path:
        return self.data_dir / "redis" / "goodbooks.rdb"

    def kill(self) -> None:
        """SIGKILL the API and the redis-server it started."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()
        for pid in redis_servers(self.db_path.parent):
            os.kill(pid, signal.SIGKILL)


def events_under_kills(kills: int, append_only: bool, seed: int) -> dict[str, object]:
    rng = random.Random(seed)
    with tempfile.TemporaryDirectory() as root:
        api = Api(Path(root), append_only)
        api.start()
        accepted: dict[str, float] = {}
        lock, stop = threading.Lock(), threading.Event()

        def post(worker: int) -> None:
            n = 0
            with httpx.Client(timeout=5.0) as client:
                while not stop.is_set():
                    ids = [f"w{worker}-{n}-{i}" for i in range(50)]
                    n += 1
                    body = {"events": [{"type": "click", "user_id": 1 + i, "book_id": 7,
                                        "variant": "control", "version": "v1",
                                        "event_id": event_id}
                                       for i, event_id in enumerate(ids)]}
                    try:
                        answer = client.post(f"{api.url}/events", json=body,
                                             headers={"X-API-Key": KEY})
                    except httpx.HTTPError:
                        time.sleep(0.02)
                        continue
                    if answer.status_code == 202:
                        now = time.monotonic()
                        with lock:
                            accepted.update(dict.fromkeys(ids, now))

        posters = [threading.Thread(target=post, args=(w,)) for w in range(2)]
        for poster in posters:
            poster.start()
        kill_times = []
        for _ in range(kills):
            time.sleep(rng.uniform(1.0, 3.0))
            kill_times.append(time.monotonic())
            api.kill()
            api.start()
        time.sleep(1.0)
        stop.set()
        for poster in posters:
            poster.join()
        api.kill()
        client = connect_redis(None, api.db_path)
        kept = {StoredEvent.from_entry(i, f).event_id
                for i, f in client.xrange("gb:events")}
        release_embedded_redis(api.db_path)
    lost = [t for event_id, t in accepted.items() if event_id not in kept]

    def window(accepted_at: float) -> float:
        later = [k for k in kill_times if k >= accepted_at]
        return (later[0] - accepted_at) if later else 0.0

    beyond = sum(1 for t in lost if window(t) > 2.0)
    return {"kills": kills, "accepted": len(accepted), "kept": len(accepted) - len(lost),
            "lost": len(lost), "lost_beyond_fsync_window": beyond,
            "append_only": append_only}


def retried_posts(count: int) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as root:
        api = Api(Path(root), append_only=True)
        api.start()
        answers = {"duplicates": 0}
        started = time.perf_counter()
        with httpx.Client(timeout=10.0) as client:
            for n in range(count):
                body = {"events": [{"type": "click", "user_id": 1 + n % 5000, "book_id": 3,
                                    "variant": "control", "version": "v1"}]}
                headers = {"X-API-Key": KEY, "X-Request-ID": f"retry-{n}"}
                for _ in range(2):  # the first answer "was lost": the client sends it again
                    answer = client.post(f"{api.url}/events", json=body, headers=headers)
                    assert answer.status_code == 202, answer.text
                    answers["duplicates"] += answer.json()["duplicates"]
            summary = client.get(f"{api.url}/analytics/summary").json()
        seconds = time.perf_counter() - started
        store = connect_redis(None, api.db_path)
        stored = store.xlen("gb:events")
        counted = sum(arm["clicks"] for arm in summary["hour"]["arms"])
        api.kill()
        release_embedded_redis(api.db_path)
    return {"posts": 2 * count, "events": count, "stored": stored, "counted": counted,
            "double_counts": (stored - count) + (counted - count),
            "answered_as_duplicates": answers["duplicates"], "seconds": round(seconds, 1)}


# --- promote and rollback, a fault at every step ------------------------------------------
class Injected(RuntimeError):
    pass


def alias_faults(store: RecStore, tracking_uri: str) -> dict[str, object]:
    from mlflow import MlflowClient

    from tasks import aliases
    from tasks.ab import PromotionError, promote
    from tasks.aliases import AliasError, rollback, status

    client = MlflowClient(tracking_uri)
    results: dict[str, list[int]] = {"promote": [0, 0], "rollback": [0, 0]}

    def fresh() -> str:
        name = f"faults-{uuid.uuid4().hex[:8]}"
        client.create_registered_model(name)
        for _ in range(3):
            client.create_model_version(name, source="file:///tmp/model")
        for alias in ("champion", "challenger"):
            store.client.delete(store.alias_key(alias), store.history_key(alias),
                                f"{store.prefix}pin:{alias}", f"{store.prefix}registry")
        for model_version, alias in (("1", "champion"), ("2", "champion"),
                                     ("3", "challenger")):
            version = store.new_version()
            store.commit_version(version, [store.write_popular(version, "1,2,3")],
                                 {"model_version": model_version})
            store.set_alias(alias, version)
            client.set_registered_model_alias(name, alias, model_version)
        return name

    def snapshot(name: str) -> tuple[object, object]:
        return (dict(client.get_registered_model(name).aliases), store.aliases())

    for operation in ("promote", "rollback"):
        step = 1
        while True:
            name = fresh()
            before = snapshot(name)
            calls = {"n": 0}
            real_switch, real_mlflow = store._switch, MlflowClient.set_registered_model_alias
            real_delete = MlflowClient.delete_registered_model_alias
            real_unset, real_pin = store.client.delete, aliases.pin_alias

            def count(real):  # noqa: ANN001, ANN202 - wraps one mutating call
                def wrapped(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
                    calls["n"] += 1  # noqa: B023
                    if calls["n"] == step:  # noqa: B023
                        raise Injected(f"fault at step {step}")  # noqa: B023
                    return real(*args, **kwargs)
                return wrapped

            # Every change either operation makes: Redis switches, Redis deletes, MLflow
            # alias moves and removals, the rollback's pin.
            store._switch = count(real_switch)  # type: ignore[method-assign]
            store.client.delete = count(real_unset)  # type: ignore[method-assign]
            aliases.pin_alias = count(real_pin)
            MlflowClient.set_registered_model_alias = count(real_mlflow)  # type: ignore[method-assign]
            MlflowClient.delete_registered_model_alias = count(real_delete)  # type: ignore[method-assign]
            try:
                if operation == "promote":
                    promote(tracking_uri, name, store)
                else:
                    rollback(client, name, store, "champion")
                failed = False
            except (PromotionError, AliasError):
                failed = True
            finally:
                store._switch = real_switch  # type: ignore[method-assign]
                store.client.delete = real_unset  # type: ignore[method-assign]
                aliases.pin_alias = real_pin
                MlflowClient.set_registered_model_alias = real_mlflow  # type: ignore[method-assign]
                MlflowClient.delete_registered_model_alias = real_delete  # type: ignore[method-assign]
                store.client.delete(f"{store.prefix}pin:champion")
            if not failed:
                break  # the fault came after the last step: nothing left to break
            agree = not status(client, name, store)["disagreements"]
            results[operation][0] += 1
            results[operation][1] += int(agree and snapshot(name) == before)
            step += 1
    return {op: {"tried": tried, "survived": survived}
            for op, (tried, survived) in results.items()}


# --- publishing writers killed ---------------------------------------------------------------
WRITER = """
import sys, time
from serving.connection import connect_redis
from serving.store import RecStore
url, prefix = sys.argv[1:3]
store = RecStore(connect_redis(url, None), prefix)
started_from = store.get_alias("champion")
version = store.new_version(lease_s=1.0)
print("started", flush=True)
receipts = []
for start in range(1, 5001, 500):
    receipts.append(store.write_recs(version, [(u, "1,2,3") for u in range(start, start + 500)]))
    store.renew_lease(version, 1.0)
receipts.append(store.write_popular(version, "1,2,3"))
store.commit_version(version, receipts, {"model_version": "1"})
store.set_alias("champion", version, expected=started_from, expect_unset=started_from is None)
store.release_lease(version)
store.prune(2)
"""


def publish_kills(store: RecStore, url: str, kills: int, seed: int) -> dict[str, object]:
    rng = random.Random(seed)
    tried = survived = 0
    for _ in range(kills):
        writer = subprocess.Popen([sys.executable, "-c", WRITER, url, store.prefix], cwd=REPO,
                                  stdout=subprocess.PIPE, text=True)
        assert writer.stdout is not None and writer.stdout.readline().strip() == "started"
        time.sleep(rng.uniform(0.0, 0.4))
        writer.send_signal(signal.SIGKILL)
        writer.wait()
        time.sleep(1.2)  # the dead writer's lease runs out
        # The next run: discard what dead writers left, publish, prune.
        store.discard_uncommitted(3600)
        subprocess.run([sys.executable, "-c", WRITER, url, store.prefix], cwd=REPO,
                       stdout=subprocess.DEVNULL, check=True)
        committed = set(store.committed_versions())
        pending = {v.decode() for v in store.client.zrange(store.pending_key, 0, -1)}
        orphans = 0
        for key in store.client.scan_iter(match=f"{store.prefix}recs:*", count=1000):
            version = key.decode()[len(store.prefix) + len("recs:"):].split(":")[0]
            orphans += version not in committed and version not in pending
        tried += 1
        survived += int(orphans == 0 and store.verify_version(str(store.get_alias("champion"))))
    return {"tried": tried, "survived": survived}


def races(store: RecStore, trials: int, seed: int) -> dict[str, object]:
    rng = random.Random(seed)
    outcomes = {"promotion won": 0, "a run won first": 0, "silent overwrite": 0}
    versions = []
    for _ in range(4):
        version = store.new_version()
        store.commit_version(version, [store.write_popular(version, "1")], {})
        versions.append(version)
    old, run_a, run_b, promoted = versions
    for _ in range(trials):
        store.set_alias("champion", old)
        moves = [("promotion", promoted), ("run a", run_a), ("run b", run_b)]
        rng.shuffle(moves)
        won = []
        for who, version in moves:
            try:
                store.set_alias("champion", version, expected=old)  # all started from old
                won.append(who)
            except AliasChangedError:
                pass  # failed loudly
        live = store.get_alias("champion")
        winner = dict(moves)[won[0]] if len(won) == 1 else None
        if len(won) != 1 or live != winner:
            outcomes["silent overwrite"] += 1
        elif won == ["promotion"]:
            outcomes["promotion won"] += 1
        else:
            outcomes["a run won first"] += 1
    return {"tried": trials, **outcomes}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--retried", type=int, default=10_000)
    parser.add_argument("--publish-kills", type=int, default=20)
    parser.add_argument("--races", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    matrix: dict[str, object] = {}
    print("1. kill -9 of the API and its Redis while events arrive", flush=True)
    matrix["events_append_only"] = events_under_kills(args.kills, True, args.seed)
    print("  ", matrix["events_append_only"], flush=True)
    matrix["events_snapshots_only"] = events_under_kills(args.kills, False, args.seed)
    print("  ", matrix["events_snapshots_only"], flush=True)
    print("2. retried POSTs", flush=True)
    matrix["retried_posts"] = retried_posts(args.retried)
    print("  ", matrix["retried_posts"], flush=True)

    url = os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/14"
    store = RecStore(connect_redis(url, None), f"faults:{uuid.uuid4().hex[:8]}:")
    try:
        with tempfile.TemporaryDirectory() as root:
            print("3. a fault at every step of promote and rollback", flush=True)
            matrix["alias_faults"] = alias_faults(store, f"sqlite:///{root}/mlflow.db")
            print("  ", matrix["alias_faults"], flush=True)
        print("4. publishing writers killed", flush=True)
        matrix["publish_kills"] = publish_kills(store, url, args.publish_kills, args.seed)
        print("  ", matrix["publish_kills"], flush=True)
        print("5. score runs racing a promotion", flush=True)
        matrix["races"] = races(store, args.races, args.seed)
        print("  ", matrix["races"], flush=True)
    finally:
        keys = list(store.client.scan_iter(match=f"{store.prefix}*", count=1000))
        for start in range(0, len(keys), 1000):
            store.client.unlink(*keys[start:start + 1000])
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "faults.json").write_text(json.dumps(matrix, indent=2))
    print(f"written to {RESULTS / 'faults.json'}")


if __name__ == "__main__":
    main()
