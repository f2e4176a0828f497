"""The nightly loop: drain → incremental ingest → train → score → monitor."""

from __future__ import annotations

from prefect import flow, get_run_logger

from flows.ingest import ingest_flow
from flows.monitor import monitor_flow
from flows.score import redis_target, score_flow
from flows.train import train_flow
from settings import get_settings
from tasks.data import covers_judged
from tasks.events import drain_events


@flow(name="nightly", log_prints=True)
def nightly_flow(
    source: str | None = None,
    n_users: int | None = None,
    local_dir: str | None = None,
    n_trials: int | None = None,
    max_epochs: int | None = None,
    sample_fraction: float | None = None,
    timeout_s: float | None = None,
    refit_timeout_s: float | None = None,
    warm_start: bool = True,
    monitor: bool = True,
    reason: str | None = None,
    drift_through: str | None = None,
) -> dict[str, object]:
    """Learn from yesterday: drain events, take in new data, retrain, publish, check drift.

    A failure anywhere leaves what is served untouched.

    Args:
        source: "generate", "download" or "local" (default GOODBOOKS_DATASET_SOURCE).
        n_users: readers to generate (source "generate"; 53424 is full size).
        local_dir: directory with ratings.csv and books.csv (source "local").
        n_trials: Optuna trials (default GOODBOOKS_N_TRIALS).
        max_epochs: upper bound on epochs per fit (default GOODBOOKS_MAX_EPOCHS).
        sample_fraction: share of readers to tune on; below 1 the best is refit on all.
        timeout_s: tuning seconds (default GOODBOOKS_TUNING_TIMEOUT_S); a trial running
            then ends after its current epoch.
        refit_timeout_s: refit seconds (default GOODBOOKS_REFIT_TIMEOUT_S).
        warm_start: start the new study from the champion's parameters.
        monitor: end with a drift check of what arrived during the run.
        reason: why the run was started (set by the drift trigger: the monitor's summary).
        drift_through: the newest stream entry id a drift verdict judged (set by the drift
            trigger); the run checks that its snapshot takes that data in.
    """
    s = get_settings()
    log = get_run_logger()
    if reason:
        log.info("started because: %s", reason)
    drained = drain_events(redis_target(), str(s.event_log_path), s.events_keep_s)
    snapshot = ingest_flow(source=source, n_users=n_users, local_dir=local_dir)
    covers = covers_judged(snapshot, drift_through)
    if covers is False:
        log.warning("snapshot %s does not reach stream entry %s that the drift verdict "
                    "judged (the log stopped before a damaged file?)", snapshot, drift_through)
    trained = train_flow(snapshot=snapshot, n_trials=n_trials, max_epochs=max_epochs,
                         sample_fraction=sample_fraction, timeout_s=timeout_s,
                         refit_timeout_s=refit_timeout_s, warm_start=warm_start)
    published = score_flow()
    checked = monitor_flow() if monitor else None
    return {"drained": drained, "snapshot": snapshot, "covers_drift": covers,
            "trained": trained, "published": published, "monitor": checked}
