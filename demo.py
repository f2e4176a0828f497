"""The demo's story: a sample reader whose taste shows, a short A/B experiment on simulated
readers, a drift check, the next night, one HTTP request, and where to look in the UIs.

``goodbooks demo`` (cli/pipeline.py) runs the nightly loop and then these steps, each of which
returns the text it shows. Heavy imports stay inside the steps, as in the command line.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from serving.config import store_for
from settings import Settings

if TYPE_CHECKING:
    import pandas as pd


def demo_reader(snapshot) -> int:  # noqa: ANN001 - an open Snapshot
    """The reader the demo shows: typical activity, a taste a person can see."""
    from models.taste import book_marks, showing_reader

    return showing_reader(snapshot.read("ratings", columns=["user_id", "book_id", "rating"]),
                          book_marks(snapshot.read("books", columns=["book_id", "title",
                                                                     "authors"])))


def book_line(books: pd.DataFrame, rank: int, book_id: int, note: str = "") -> str:
    """'  3. Title   Author' for a book of the catalogue (indexed by book_id)."""
    if book_id in books.index:
        row = books.loc[book_id]
        return f"  {rank:>2}. {str(row['title'])[:60]:<60} {str(row['authors'])[:30]}{note}"
    return f"  {rank:>2}. book {book_id}{note}"


def describe_sample_reader(settings: Settings, snapshot_dir: Path, k: int = 10) -> str:
    """A reader whose taste shows: their favourite books beside the top-k read back from
    Redis, and how many of those share an author or series with their five-star books
    (beside the most-read list)."""

    import serving
    from models.snapshot import open_snapshot
    from models.taste import book_marks, shared_share, top_rated

    snap = open_snapshot(snapshot_dir)
    ratings = snap.read("ratings", columns=["user_id", "book_id", "rating"])
    books = snap.read("books", columns=["book_id", "title", "authors"])
    marks = book_marks(books)
    books = books.set_index("book_id")
    user_id = demo_reader(snap)
    history = ratings[ratings["user_id"] == user_id].reset_index(drop=True)
    history["order"] = range(len(history))
    favourites = history.sort_values(["rating", "order"], ascending=[False, False]).head(k)

    def line(rank: int, book_id: int, note: str = "") -> str:
        return book_line(books, rank, book_id, note)

    result = serving.recommend(user_id, k)
    read = set(history["book_id"].tolist())
    popular = [int(b) for b in ratings["book_id"].value_counts().index if b not in read][:k]
    loved = top_rated(history)
    out = [f"\nReader {user_id} rated {len(history)} books; their highest rated:"]
    out += [line(i, int(r.book_id), f"  ({int(r.rating)}★)")
            for i, r in enumerate(favourites.itertuples(), 1)]
    out.append(f"\nTop {k} recommendations for reader {user_id} "
               f"(read from Redis: {result.source}, version {result.version}):")
    out += [line(i, int(b)) for i, b in enumerate(result.items, 1)]
    if not loved.empty and result.items:
        mine = shared_share({user_id: list(result.items)}, loved, marks)
        most_read = shared_share({user_id: popular}, loved, marks)
        out.append(f"\n{round(mine * len(result.items))} of {len(result.items)} share an "
                   f"author or a series with their five-star books (the most-read list: "
                   f"{round(most_read * len(popular))} of {len(popular)}).")
    return "\n".join(out)


# The demo's simulated readers: about one shown book in ten is clicked (a plausible
# click-through rate for recommendations), and the challenger's readers get a planted extra
# click logit, so the right verdict is known.
DEMO_CLICKS = {"intercept": -5.5, "lift": 0.3}
# Visits enough for the planted lift to show: at one visit each, a small generated dataset
# (a few hundred readers, under a hundred clicks per arm) would judge the arms on noise. A
# reader sees the same list on each visit; a book clicked on any visit is one conversion.
DEMO_MIN_VISITS = 5000


def run_demo_experiment(settings: Settings, snapshot_dir: Path) -> str:
    """A short A/B experiment on simulated readers: champion vs a challenger, then the verdict.

    The challenger is a copy of the champion's model version, published under the
    `challenger` alias; the simulated readers (the generator's planted taste model) click
    its lists with a planted extra logit (DEMO_CLICKS), so the right verdict is known.
    Events enter through the API's event path; the ab_evaluate flow judges them.
    """
    from datetime import UTC, datetime

    from mlflow import MlflowClient

    from flows.ab_evaluate import ab_evaluate_flow
    from flows.score import score_flow
    from models.generator import load_truth
    from models.snapshot import open_snapshot
    from tasks.simulate import ClickModel, simulate_traffic

    client = MlflowClient(settings.tracking_uri)
    champion = client.get_model_version_by_alias(settings.model_name, "champion")
    copied = client.copy_model_version(
        f"models:/{settings.model_name}@champion", settings.model_name)
    client.set_registered_model_alias(settings.model_name, "challenger", copied.version)
    score_flow(aliases=["challenger"])

    started = datetime.now(UTC)
    name = f"demo-{started:%Y%m%dT%H%M%S}"
    ab_evaluate_flow(experiment=name, config={
        "salt": name, "status": "active", "started_at": started.isoformat(),
        "stopped_at": None,
        "variants": [{"name": "control", "alias": "champion", "share": 0.5},
                     {"name": "treatment", "alias": "challenger", "share": 0.5}],
    }, design={"min_sample": 1000})
    readers = sorted(open_snapshot(snapshot_dir).read("ratings", columns=["user_id"])
                     ["user_id"].unique().tolist())
    store = store_for(settings)
    visits = -(-DEMO_MIN_VISITS // len(readers))
    # Visits at most 10 ms apart, all within 50 s of real time, so the stream and the
    # per-minute counters show no events from the future.
    spacing = min(0.01, 50.0 / (visits * len(readers)))
    simulated = simulate_traffic(store, name, load_truth(snapshot_dir), readers, k=10,
                                 visits_per_reader=visits, seed=settings.seed,
                                 start_time_s=started.timestamp(), seconds_per_visit=spacing,
                                 click_model=ClickModel(
                                     intercept=DEMO_CLICKS["intercept"],
                                     lift={"treatment": DEMO_CLICKS["lift"]}))
    result = ab_evaluate_flow(
        experiment=name, now=datetime.fromtimestamp(simulated.end_time_s, UTC).isoformat())

    exposures, conversions = result["exposures"], result["conversions"]
    low, high = result["ci"]
    lines = [
        f"\nA/B experiment {name} on simulated readers: champion (model version "
        f"{champion.version}) vs challenger (version {copied.version}, a copy whose readers "
        f"are planted to click {DEMO_CLICKS['lift']:+} logit more), "
        f"{len(readers):,} readers split 50/50, {visits} visit(s) each",
        f"  {'variant':<10} {'exposures':>10} {'conversions':>12} {'rate':>8} {'readers':>8}",
    ]
    readers_of = result.get("readers") or {}
    for variant in exposures:
        n, c = int(exposures[variant]), int(conversions[variant])
        lines.append(f"  {variant:<10} {n:>10,} {c:>12,} {c / max(n, 1):>8.2%} "
                     f"{int(readers_of.get(variant) or 0):>8,}")
    lines.append(f"  effect {result['effect']:+.4f} (always-valid 95% interval "
                 f"{low:+.4f} … {high:+.4f}), p = {result['p_value']:.2g}, "
                 f"sample-ratio check (readers) p = {result['srm_p_value']:.2g}")
    lines.append(f"  verdict: {result['action']} — {result['reason']}")
    promotion = result.get("promotion")
    if isinstance(promotion, dict):
        lines.append(f"  champion is now model version {promotion.get('model_version')} in "
                     f"MLflow and Redis version {promotion.get('redis_version')} "
                     f"(previous kept as `previous`)")
    if result["action"] == "continue":
        # An experiment pins its arms while it runs; the demo's next night must refresh the
        # champion, so an undecided demo experiment is stopped here.
        ab_evaluate_flow(experiment=name, config={
            "status": "stopped", "stopped_at": datetime.now(UTC).isoformat()})
        lines.append("  (the demo stops the undecided experiment so that the next night "
                     "may move the aliases it pinned)")
    lines.append(f"  running estimate: {result['plot']}")
    return "\n".join(lines)


def run_demo_drift_check(settings: Settings, snapshot_dir: Path) -> str:
    """New generated ratings with planted rating inflation, judged by the monitor flow."""
    from flows.monitor import monitor_flow
    from models.generator import MANIFEST_FILE, generate_continuation
    from models.snapshot import open_snapshot

    source = open_snapshot(snapshot_dir).manifest.get("source", {})
    directory = source.get("directory") if isinstance(source, dict) else None
    if not directory or not (Path(str(directory)) / MANIFEST_FILE).is_file():
        return "\n(drift check skipped: the snapshot was not made from a generated dataset)"
    kind, magnitude, new_ratings = "rating_inflation", 1.0, 5000
    # Outside generated_dir, which holds only complete generated datasets.
    continuation = generate_continuation(Path(str(directory)),
                                         settings.data_dir / "continuations" / "demo",
                                         kind, magnitude, new_ratings, seed=settings.seed)
    report = monitor_flow(current=str(continuation.directory))
    lines = [
        f"\nDrift check: {new_ratings:,} new ratings with planted {kind.replace('_', ' ')} "
        f"({magnitude:g} sd) against snapshot {report['reference_snapshot']}",
        f"  {'measure':<26} {'value':>8} {'threshold':>10}  status",
        *(f"  {line}" for line in measure_lines(report)),
    ]
    lines.append(f"  verdict: {report['summary']}")
    if report["event_id"]:
        lines.append(f"  emitted goodbooks.drift.detected (event {report['event_id']}); with "
                     "`make up`, the retrain-on-drift deployment turns it into a retraining run")
    lines.append(f"  report: Prefect artifact drift-report; plot: {report['plot']}")
    return "\n".join(lines)


def run_demo_next_night(settings: Settings, snapshot_dir: Path, night: dict[str, object],
                        rated: int = 5) -> str:
    """The loop: the sample reader rates books during the day; the next night learns it.

    The reader gives five stars to their first ``rated`` recommendations (through the
    event path of POST /events); the next nightly run drains the day's events (these and
    the simulated experiment's) into the interaction log, takes them into the next
    snapshot, retrains on everything and publishes: the rated books leave the list.
    """
    import serving
    from flows.nightly import nightly_flow
    from models.snapshot import open_snapshot
    from serving.events import Event, EventWriter

    snap = open_snapshot(snapshot_dir)
    books = snap.read("books", columns=["book_id", "title", "authors"]).set_index("book_id")
    reader = demo_reader(snap)
    service = serving.RecommendationService(store_for(settings), "champion", pointer_ttl_s=0)
    shown = service.recommend(reader, 10)
    chosen = shown.items[:rated]
    EventWriter(service.store).write([
        Event(type="rating", user_id=reader, book_id=book, variant=shown.variant,
              version=shown.version, rating=5) for book in chosen])
    started = time.perf_counter()
    result = nightly_flow(source="generate", **night)  # type: ignore[arg-type]
    elapsed = time.perf_counter() - started
    grown = open_snapshot(Path(str(result["snapshot"])))
    counts = grown.manifest.get("increment", {}).get("counts", {})  # type: ignore[union-attr]
    trained = result["trained"]
    after = service.recommend(reader, 10)
    lines = [f"\nThe next night: reader {reader} rated {rated} of their recommendations "
             "(5 stars) during the day:"]
    lines += [book_line(books, i, int(b)) for i, b in enumerate(chosen, 1)]
    drained = result["drained"]
    lines += [
        f"  drain:  {drained['drained']:,} events of the day into the interaction log "  # type: ignore[index]
        f"({settings.event_log_path})",
        f"  ingest: snapshot {grown.snapshot_id} = {grown.manifest.get('parent')} + "
        + (", ".join(f"{v:,} {k}" for k, v in counts.items() if v) or "nothing new"),
        f"  train:  version {trained['version']} fitted on all "  # type: ignore[index]
        f"{trained['full_fit']['interactions']:,} interactions → "  # type: ignore[index]
        f"{trained['alias'] or 'no alias'}",  # type: ignore[index]
        f"  ({elapsed:.0f} s.) Reader {reader}'s top 10 now (version {after.version}):",
    ]
    lines += [book_line(books, i, int(b)) for i, b in enumerate(after.items, 1)]
    gone = [b for b in chosen if b not in after.items]
    lines.append(f"  the {len(gone)} books they rated are gone from the list; "
                 f"{len(set(after.items) - set(shown.items))} new books entered it")
    return "\n".join(lines)


def show_api_request(settings: Settings, snapshot_dir: Path) -> str:
    """Start the HTTP API briefly, make one request, and show it with its response."""
    import json
    import signal
    import socket
    import subprocess
    import urllib.error
    import urllib.request

    from models.snapshot import open_snapshot

    ratings = open_snapshot(snapshot_dir).read("ratings", columns=["user_id"])
    user_id = int(ratings["user_id"].iloc[0])
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "serving.api:create_app", "--factory",
         "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/recommendations/{user_id}?k=5"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    body = json.loads(response.read())
                    status = response.status
                break
            except (urllib.error.URLError, ConnectionError):
                if time.monotonic() > deadline or server.poll() is not None:
                    return "\n(the HTTP API did not start; try `make serve`)"
                time.sleep(0.3)
    finally:
        # SIGINT, not SIGTERM: uvicorn re-raises the signal after its graceful shutdown, and
        # only SIGINT lets Python run its exit hooks (which release the embedded Redis).
        server.send_signal(signal.SIGINT)
        server.wait(timeout=15)
    return (f"\nThe HTTP API (started briefly on port {port}; `make serve` runs it):\n"
            f"  GET {url}\n  → {status} {json.dumps(body)}")


def where_to_look(settings: Settings) -> str:
    return (
        "\nWhere to look:\n"
        "  Prefect UI (flow runs, task logs, artifacts):  make prefect-ui   → http://127.0.0.1:4200\n"
        "  MLflow UI (runs, metrics, registered model):    make mlflow-ui    → http://127.0.0.1:5000\n"
        f"  Data validation report (Great Expectations Data Docs): "
        f"{settings.data_docs_dir / 'index.html'}\n"
        f"  MLflow store: {settings.tracking_uri}\n"
        f"  Snapshots:    {settings.processed_dir}\n"
        "  Recommendations from Redis:  .venv/bin/goodbooks recommend <user_id>\n"
    )


def measure_lines(report: dict[str, object]) -> list[str]:
    """One line per drift measure of a monitor report: value, threshold, status."""
    lines = []
    for m in report["measures"]:  # type: ignore[attr-defined]
        value = "—" if m["value"] is None else f"{m['value']:.4g}"
        threshold = "—" if m["threshold"] is None else f"{m['threshold']:g}"
        lines.append(f"{m['measure']:<26} {value:>8} {threshold:>10}  {m['status']}")
    return lines


def metrics_summary(table: list[dict[str, object]], split: dict[str, object] | None = None
                    ) -> str:
    by_time = split is not None and split.get("by") == "time"
    where = ("the last period, fitted on everything before the one before it" if by_time
             else "each reader's latest 20%")
    lines = [f"\nTest metrics ({where}; full-catalogue ranking):"]
    for row in table:
        values = "  ".join(f"{key.split('_at_')[0]}={float(val):.4f}"
                           for key, val in row.items() if key != "ranker"
                           and not key.startswith("coverage"))
        lines.append(f"  {row['ranker']:<11} {values}")
    return "\n".join(lines)
