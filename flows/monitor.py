"""The monitor flow: new data against the served model's training snapshot; drift → event."""

from __future__ import annotations

import tempfile
from datetime import UTC, datetime

from prefect import flow
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from models.drift import DriftThresholds
from models.schema import DatasetError
from models.snapshot import latest_snapshot
from settings import get_settings
from tasks.monitor import (
    compare_with_reference,
    emit_drift_event,
    fetch_model_version,
    read_new_ratings,
    read_rating_events,
    read_served_lists,
    reference_stats,
    served_version,
    version_timestamp_ms,
    write_drift_metrics,
)
from tasks.publish import RedisTarget


@flow(name="monitor", log_prints=True)
def monitor_flow(
    current: str | None = None,
    alias: str | None = None,
    include_events: bool = True,
    emit: bool = True,
) -> dict[str, object]:
    """Compare new ratings with the served model's training snapshot; emit an event on drift.

    Args:
        current: new data: a snapshot directory newer than the model's (the pairs the model
            has not seen are the new ratings) or a directory whose ratings.csv holds new
            ratings (e.g. a generated continuation). Default: the newest snapshot.
        alias: the Redis alias whose served lists are judged (default GOODBOOKS_MONITOR_ALIAS).
        include_events: add the rating events of the Redis stream since that version went
            live to the new ratings.
        emit: emit goodbooks.drift.detected (about resource goodbooks.dataset.<source>) when
            a measure crosses its threshold; a deployment trigger turns it into retraining.

    Returns the report: every measure with its threshold and whether it fired, `drifted`,
    the plot and metrics paths and the emitted event's id.
    """
    s = get_settings()
    target = RedisTarget(url=s.redis_url, embedded_db_path=str(s.redis_db_path),
                         prefix=s.redis_prefix)
    served = served_version(target, alias or s.monitor_alias)
    model = fetch_model_version(s.tracking_uri, s.model_name, served["model_version"],
                                tempfile.mkdtemp(prefix="goodbooks-monitor-"))
    snapshot_id = served.get("snapshot") or model["snapshot"]
    reference = reference_stats(model["bundle_dir"], str(s.processed_dir / snapshot_id),
                                s.eval_k, s.num_threads)
    if current is None:
        try:
            current = str(latest_snapshot(s.processed_dir).path)
        except DatasetError:
            current = None  # no snapshot at all: only the event stream can say anything
    events, event_counts = (read_rating_events(target, version_timestamp_ms(
        served.get("created_at"))) if include_events else (None, {}))
    new_ratings, source = read_new_ratings(current, model["bundle_dir"], events)
    lists = read_served_lists(target, served["version"], new_ratings, s.eval_k)

    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    plot = s.data_dir / "monitoring" / f"drift-{stamp}.png"
    report = compare_with_reference(reference, new_ratings, source, lists, s.eval_k,
                                    DriftThresholds.from_settings(s), str(plot))
    metrics = write_drift_metrics(report, str(s.drift_metrics_file or s.state_dir / "metrics"
                                              / "goodbooks_drift.prom"))
    create_markdown_artifact(key="drift-report", markdown=report.to_markdown(str(plot)),
                             description=report.summary())
    create_table_artifact(key="drift-measures", table=report.table(),
                          description=f"Drift measures of {source} against snapshot "
                          f"{reference.snapshot_id}")
    event_id = emit_drift_event(report, served) if report.drifted and emit else None
    return {**report.as_dict(), "served_version": served["version"],
            "model_version": served["model_version"], "events": event_counts,
            "plot": str(plot), "metrics_file": metrics, "event_id": event_id,
            "current": current}
