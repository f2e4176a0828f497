"""The monitor flow: new data against the served model's training snapshot; drift → event."""

from __future__ import annotations

import shutil
import tempfile
from datetime import UTC, datetime

from prefect import flow
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from models.drift import DriftThresholds
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
    unjudged_data,
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
    """Judge data no served model was trained on against the served model's training data.

    By default the new data is what lies past the served models' snapshots: rating events
    of the interaction log and of the stream's undrained tail past the newest watermark,
    and inbox files none of them took in. The emitted event says what was judged, so the
    retraining it starts (retrain-on-drift) takes exactly that data in.

    Args:
        current: judge this instead: a snapshot directory (the pairs the model has not seen
            are the new ratings) or a directory whose ratings.csv holds new ratings (e.g. a
            generated continuation); the rating events since the version went live are
            added unless include_events is off.
        alias: the Redis alias whose served lists are judged (default GOODBOOKS_MONITOR_ALIAS).
        include_events: take the rating events (interaction log and stream) into account.
        emit: emit goodbooks.drift.detected (about resource goodbooks.dataset.<source>) when
            a measure crosses its threshold; a deployment trigger turns it into retraining.

    Returns the report: every measure with its threshold and whether it fired, `drifted`,
    what was judged, the plot and metrics paths and the emitted event's id.
    """
    s = get_settings()
    target = RedisTarget(url=s.redis_url, embedded_db_path=str(s.redis_db_path),
                         prefix=s.redis_prefix)
    served = served_version(target, alias or s.monitor_alias)
    # The downloaded model lives only as long as this run.
    work = tempfile.mkdtemp(prefix="goodbooks-monitor-")
    try:
        model = fetch_model_version(s.tracking_uri, s.model_name, served["model_version"],
                                    work)
        snapshot_id = served.get("snapshot") or model["snapshot"]
        reference = reference_stats(model["bundle_dir"], str(s.processed_dir / snapshot_id),
                                    s.eval_k, s.num_threads)
        if current is None:
            unjudged, judged = unjudged_data(target, str(s.processed_dir), str(s.event_log_path),
                                             str(s.inbox_path), include_events)
            event_counts = judged["events"]
            name = "+".join(filter(None, ["log" if include_events else "",
                                          *judged["inbox"]])) or "nothing"  # type: ignore[misc]
            new_ratings, source = read_new_ratings(None, model["bundle_dir"], unjudged, name)
        else:
            events, event_counts = (read_rating_events(target, str(s.event_log_path),
                                                       version_timestamp_ms(served.get("created_at")))
                                    if include_events else (None, {}))
            judged = {"current": current}
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
        event_id = emit_drift_event(report, served, judged) if report.drifted and emit else None
        return {**report.as_dict(), "served_version": served["version"],
                "model_version": served["model_version"], "events": event_counts,
                "judged": judged, "plot": str(plot), "metrics_file": metrics,
                "event_id": event_id, "current": current}
    finally:
        shutil.rmtree(work, ignore_errors=True)
