"""The nightly composition: ingest → train → score (the A/B evaluation joins later)."""

from __future__ import annotations

from prefect import flow

from flows.ingest import ingest_flow
from flows.score import score_flow
from flows.train import train_flow


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
) -> dict[str, object]:
    """Re-ingest, retrain and publish; a failure anywhere leaves what is served untouched.

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
    """
    snapshot = ingest_flow(source=source, n_users=n_users, local_dir=local_dir)
    trained = train_flow(snapshot=snapshot, n_trials=n_trials, max_epochs=max_epochs,
                         sample_fraction=sample_fraction, timeout_s=timeout_s,
                         refit_timeout_s=refit_timeout_s, warm_start=warm_start)
    published = score_flow()
    return {"snapshot": snapshot, "trained": trained, "published": published}
