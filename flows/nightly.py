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
) -> dict[str, object]:
    """Re-ingest, retrain and publish; a failure anywhere leaves what is served untouched."""
    snapshot = ingest_flow(source=source, n_users=n_users, local_dir=local_dir)
    trained = train_flow(snapshot=snapshot, n_trials=n_trials, max_epochs=max_epochs)
    published = score_flow()
    return {"snapshot": snapshot, "trained": trained, "published": published}
