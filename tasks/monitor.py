"""Tasks of the monitor flow: what is served, the reference, new ratings, the verdict's outputs.

The served model is the one behind a Redis alias: its version's manifest names the MLflow
model version and the snapshot it was trained on. The reference statistics travel with the
registered model (``reference_stats.npz`` in its bundle, written by the train flow); a
model registered without them gets them computed here from its snapshot.
"""

from __future__ import annotations

import json
import re
import time
from datetime import datetime
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.events import emit_event
from prometheus_client import CollectorRegistry, Gauge, write_to_textfile

from models.bundle import ScoringBundle
from models.drift import (
    REFERENCE_FILE,
    DriftReport,
    DriftThresholds,
    ReferenceStats,
    compute_current,
    compute_reference,
    detect_drift,
    load_reference,
    plot_drift,
    served_performance,
    unseen_pairs,
    write_reference,
)
from models.event_log import InteractionLog, parse_optional
from models.inbox import inbox_items, read_item
from models.schema import BOOK_ID, RATING, RATINGS_FILE, USER_ID, DatasetError
from models.snapshot import MANIFEST, open_snapshot, read_csv
from serving.keys import decode_items
from tasks.events import read_all_events
from tasks.publish import RedisTarget

DRIFT_EVENT = "goodbooks.drift.detected"
DATASET_RESOURCE = "goodbooks.dataset."
_MGET_BATCH = 1000


class MonitorError(RuntimeError):
    """Monitoring cannot run: nothing is served, or the served model cannot be found."""


@task(cache_policy=NO_CACHE)
def save_reference_stats(snapshot_path: str, bundle_dir: str, k: int, num_threads: int = 1
                         ) -> str:
    """Write reference_stats.npz into a freshly built bundle, before it is logged to MLflow."""
    path = write_reference(Path(snapshot_path), Path(bundle_dir), k, num_threads)
    get_run_logger().info("reference statistics written to %s", path)
    return str(path)


@task(cache_policy=NO_CACHE)
def served_version(target: RedisTarget, alias: str) -> dict[str, str]:
    """The version an alias serves and its manifest (model_version, snapshot, created_at)."""
    store = target.store()
    version = store.get_alias(alias)
    if version is None:
        raise MonitorError(f"Redis alias {alias!r} serves nothing under prefix {store.prefix!r}; "
                           "run the score flow first")
    manifest = store.get_manifest(version)
    if manifest is None or not manifest.get("model_version"):
        raise MonitorError(f"version {version} (alias {alias!r}) has no manifest naming its "
                           "model version; republish it with the score flow")
    return {**manifest, "version": version}


@task(retries=2, retry_delay_seconds=[2, 10], cache_policy=NO_CACHE)
def fetch_model_version(tracking_uri: str, model_name: str, version: str, dest: str
                        ) -> dict[str, str]:
    """Download one registered model version's bundle; returns its path and snapshot tag."""
    mlflow.set_tracking_uri(tracking_uri)
    found = mlflow.MlflowClient(tracking_uri).get_model_version(model_name, version)
    local = mlflow.artifacts.download_artifacts(
        artifact_uri=f"models:/{model_name}/{version}", dst_path=dest
    )
    return {"bundle_dir": str(Path(local) / "artifacts" / "bundle"), "model_version": version,
            "snapshot": str(found.tags.get("snapshot", ""))}


@task(cache_policy=NO_CACHE)
def reference_stats(bundle_dir: str, snapshot_dir: str, k: int, num_threads: int = 1
                    ) -> ReferenceStats:
    """The served model's reference: from its bundle, else computed from its snapshot."""
    log = get_run_logger()
    saved = Path(bundle_dir) / REFERENCE_FILE
    if saved.exists():
        reference = load_reference(saved)
        if reference.performance is None or reference.performance.k == k:
            log.info("reference statistics of snapshot %s read from the model",
                     reference.snapshot_id)
            return reference
        log.info("the model's reference is at k=%d, not %d: recomputing",
                 reference.performance.k, k)
    if not (Path(snapshot_dir) / MANIFEST).exists():
        raise MonitorError(f"the served model carries no {REFERENCE_FILE} and its snapshot "
                           f"{snapshot_dir} is gone; retrain to monitor it")
    reference = compute_reference(open_snapshot(Path(snapshot_dir)),
                                  ScoringBundle.load(Path(bundle_dir)), k, num_threads)
    log.info("reference statistics of snapshot %s computed (the model was registered "
             "without them)", reference.snapshot_id)
    return reference


@task(cache_policy=NO_CACHE)
def unjudged_data(target: RedisTarget, processed_dir: str, log_dir: str, inbox_dir: str,
                  include_events: bool = True, aliases: tuple[str, ...] = ("champion",
                                                                          "challenger"),
                  ) -> tuple[pd.DataFrame, dict[str, object]]:
    """Ratings no served model has been trained on, and what was judged.

    Served models are those behind the Redis aliases; each names its snapshot, and a
    snapshot names the interaction-log watermark and the inbox files it took in. New is
    what lies past the newest of those watermarks (the log, then the stream's undrained
    tail) and the inbox items none of them took in (waiting, or ingested since into a
    snapshot no served model was trained on).
    """
    store = target.store()
    log = get_run_logger()
    snapshots = []
    for alias in aliases:
        version = store.get_alias(alias)
        manifest = store.get_manifest(version) if version else None
        snapshot_id = (manifest or {}).get("snapshot")
        path = Path(processed_dir) / str(snapshot_id)
        if snapshot_id and (path / MANIFEST).exists():
            snapshots.append(open_snapshot(path))
        elif snapshot_id:
            log.warning("snapshot %s of the %s version is gone from %s: its watermark is "
                        "unknown", snapshot_id, alias, processed_dir)
    marks = [parse_optional(s.log_watermark) for s in snapshots]
    after = max((m for m in marks if m is not None), default=None)
    ingested: set[str] = set().union(*(set(s.ingested_files) for s in snapshots))
    frames: list[pd.DataFrame] = []
    judged: dict[str, object] = {"log_after": str(after) if after else "", "through": "",
                                 "inbox": [], "events": {}}
    if include_events:
        events, newest = read_all_events(InteractionLog(Path(log_dir)), store, after=after)
        counts = events["type"].value_counts().to_dict() if len(events) else {}
        judged["events"] = {str(k): int(v) for k, v in counts.items()}
        judged["through"] = str(newest) if newest else judged["log_after"]
        rated = events[(events["type"] == "rating") & events[RATING].notna()]
        if len(rated):
            frames.append(rated[[USER_ID, BOOK_ID, RATING]].astype(np.int64))
    base = snapshots[0].base if snapshots else ""
    take, _ = inbox_items(Path(inbox_dir), base, ingested) if base else ([], [])
    for item in take:
        try:
            frames.append(read_item(item).ratings[[USER_ID, BOOK_ID, RATING]])
            judged["inbox"].append(item.name)  # type: ignore[attr-defined]
        except (DatasetError, KeyError) as exc:
            log.warning("inbox item %s is not judged: %s", item.name, exc)
    ratings = (pd.concat(frames, ignore_index=True) if frames else
               pd.DataFrame({c: pd.Series(dtype=np.int64) for c in (USER_ID, BOOK_ID, RATING)}))
    log.info("unjudged data: log past %s through %s (%s), inbox items %s: %d ratings",
             judged["log_after"] or "its start", judged["through"] or "-",
             judged["events"] or "no events", judged["inbox"] or "none", len(ratings))
    return ratings, judged


@task(cache_policy=NO_CACHE)
def read_new_ratings(current: str | None, bundle_dir: str, extra: pd.DataFrame | None,
                     extra_name: str = "events") -> tuple[pd.DataFrame, str]:
    """Ratings the served model has not seen, from ``current`` and ``extra`` ratings.

    ``current`` is a snapshot or a directory of new ratings (or None: ``extra`` only).
    Returns the ratings and a name for their source (the snapshot id or directory name,
    "+<extra_name>" when ``extra`` added some).
    """
    frames: list[pd.DataFrame] = []
    names: list[str] = []
    if current is not None:
        path = Path(current)
        if (path / MANIFEST).exists():
            snapshot = open_snapshot(path)
            frames.append(snapshot.read("ratings", columns=[USER_ID, BOOK_ID, RATING]))
            names.append(snapshot.snapshot_id)
        elif (path / RATINGS_FILE).exists():
            frames.append(read_csv(path / RATINGS_FILE)[[USER_ID, BOOK_ID, RATING]])
            names.append(path.name)
        else:
            raise DatasetError(f"{path} is neither a snapshot nor a directory with "
                               f"{RATINGS_FILE}")
    if extra is not None and len(extra):
        frames.append(extra[[USER_ID, BOOK_ID, RATING]])
        names.append(extra_name)
    ratings = (pd.concat(frames, ignore_index=True) if frames
               else pd.DataFrame({c: pd.Series(dtype=np.int64) for c in (USER_ID, BOOK_ID,
                                                                          RATING)}))
    bundle = ScoringBundle.load(Path(bundle_dir))
    new = unseen_pairs(ratings, bundle.ids.user_ids, bundle.ids.book_ids, bundle.seen)
    # A pair rated twice (a file and an event) counts once, with its latest rating.
    new = new.drop_duplicates([USER_ID, BOOK_ID], keep="last").reset_index(drop=True)
    source = "+".join(names) or "nothing"
    get_run_logger().info("%s: %d ratings, %d of them new to the model", source, len(ratings),
                          len(new))
    return new, source


@task(cache_policy=NO_CACHE)
def read_rating_events(target: RedisTarget, log_dir: str, since_ms: int
                       ) -> tuple[pd.DataFrame, dict[str, int]]:
    """Rating events (log, then the stream's tail) from since_ms on, and counts per type."""
    events, _ = read_all_events(InteractionLog(Path(log_dir)), target.store(),
                                since_ms=since_ms)
    counts = {str(k): int(v) for k, v in events["type"].value_counts().items()}
    rated = events[(events["type"] == "rating") & events[RATING].notna()]
    frame = rated[[USER_ID, BOOK_ID, RATING]].astype(np.int64).reset_index(drop=True)
    get_run_logger().info("events since %d: %s", since_ms, counts or "no events")
    return frame, counts


@task(cache_policy=NO_CACHE)
def read_served_lists(target: RedisTarget, version: str, new_ratings: pd.DataFrame, k: int
                      ) -> dict[int, list[int]]:
    """The first k books of the live list of each reader in the new ratings who has one."""
    store = target.store()
    user_ids = np.unique(new_ratings[USER_ID].to_numpy(dtype=np.int64)).tolist()
    lists: dict[int, list[int]] = {}
    for start in range(0, len(user_ids), _MGET_BATCH):
        batch = user_ids[start:start + _MGET_BATCH]
        values = store.get_many([store.recs_key(version, u) for u in batch])
        for user, raw in zip(batch, values, strict=True):
            if raw is not None:
                lists[int(user)] = decode_items(raw)[:k]
    get_run_logger().info("read %d served lists of version %s", len(lists), version)
    return lists


@task(cache_policy=NO_CACHE)
def compare_with_reference(
    reference: ReferenceStats,
    new_ratings: pd.DataFrame,
    source: str,
    served: dict[int, list[int]],
    k: int,
    thresholds: DriftThresholds,
    plot_path: str,
) -> DriftReport:
    """Current statistics, the served lists' performance, every measure, and the plot."""
    current = compute_current(new_ratings, source)
    performance = served_performance(new_ratings, served, k) if served else None
    report = detect_drift(reference, current, performance, thresholds)
    plot_drift(reference, current, report, Path(plot_path))
    get_run_logger().info(report.summary())
    return report


def drift_registry(report: DriftReport, now: float | None = None) -> CollectorRegistry:
    """Prometheus gauges of a report: each measure, its threshold, whether it fired."""
    registry = CollectorRegistry()
    value = Gauge("goodbooks_drift_measure", "Value of a drift measure (NaN: unavailable)",
                  ["measure"], registry=registry)
    threshold = Gauge("goodbooks_drift_threshold", "Threshold of a drift measure",
                      ["measure"], registry=registry)
    fired = Gauge("goodbooks_drift_fired", "1 when the measure crossed its threshold",
                  ["measure"], registry=registry)
    for m in report.measures:
        value.labels(m.name).set(float("nan") if m.value is None else m.value)
        if m.threshold is not None:
            threshold.labels(m.name).set(m.threshold)
            fired.labels(m.name).set(1.0 if m.fired else 0.0)
    Gauge("goodbooks_drift_detected", "1 when any drift measure fired",
          registry=registry).set(1.0 if report.drifted else 0.0)
    Gauge("goodbooks_drift_new_ratings", "New ratings the last check compared",
          registry=registry).set(report.n_ratings)
    Gauge("goodbooks_drift_last_run_timestamp_seconds", "When drift was last checked",
          registry=registry).set(time.time() if now is None else now)
    return registry


@task(cache_policy=NO_CACHE)
def write_drift_metrics(report: DriftReport, path: str) -> str:
    """Write the gauges in Prometheus text format (atomically) for a textfile collector."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    write_to_textfile(path, drift_registry(report))
    return path


def dataset_resource_id(source: str) -> str:
    """goodbooks.dataset.<source>, the source reduced to characters safe in a resource id."""
    return DATASET_RESOURCE + (re.sub(r"[^0-9A-Za-z_.-]+", "-", source).strip("-") or "unknown")


@task(cache_policy=NO_CACHE)
def emit_drift_event(report: DriftReport, served: dict[str, str],
                     judged: dict[str, object] | None = None) -> str | None:
    """Emit goodbooks.drift.detected about the drifted dataset; returns the event id.

    ``judged`` says what data the verdict is about (interaction log after / through which
    stream id, inbox items): the retraining it triggers must take that data in.
    """
    payload = {
        "judged": {"log_after": "", "through": "", "inbox": [], **(judged or {})},
        "summary": report.summary(),
        "fired": report.fired,
        "measures": report.values(),
        "thresholds": {m.name: m.threshold for m in report.measures
                       if m.threshold is not None},
        "reference_snapshot": report.reference_snapshot,
        "source": report.source,
        "n_ratings": report.n_ratings,
        "model_version": served.get("model_version"),
        "served_version": served.get("version"),
    }
    event = emit_event(
        event=DRIFT_EVENT,
        resource={"prefect.resource.id": dataset_resource_id(report.source),
                  "prefect.resource.name": report.source},
        related=[
            {"prefect.resource.id": f"goodbooks.snapshot.{report.reference_snapshot}",
             "prefect.resource.role": "reference-snapshot"},
            {"prefect.resource.id": f"goodbooks.model-version.{served.get('model_version')}",
             "prefect.resource.role": "served-model"},
        ],
        # Round trip through JSON: the payload must hold plain values only.
        payload=json.loads(json.dumps(payload)),
    )
    log = get_run_logger()
    if event is None:
        log.warning("drift detected but no event was emitted (events are disabled here)")
        return None
    log.warning("emitted %s (%s): %s", DRIFT_EVENT, event.id, report.summary())
    return str(event.id)


def version_timestamp_ms(created_at: str | None) -> int:
    """Unix ms of a manifest's created_at (0 when absent), where its events start."""
    if not created_at:
        return 0
    return int(datetime.fromisoformat(created_at).timestamp() * 1000)

