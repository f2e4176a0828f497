"""Flows run for real: a Prefect test server, MLflow on SQLite in a temp dir, real Redis."""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

import serving
from settings import apply_tool_environment, get_settings

PIPELINE_USERS = 600
PIPELINE_BOOKS = 800


@pytest.fixture(scope="session")
def project_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Settings pointing every piece of state at a session temp dir and a fresh key prefix."""
    root = tmp_path_factory.mktemp("project")
    env = {
        "GOODBOOKS_DATA_DIR": str(root / "data"),
        "GOODBOOKS_STATE_DIR": str(root / "state"),
        "GOODBOOKS_REDIS_PREFIX": f"gbflow:{uuid.uuid4().hex[:8]}:",
        "GOODBOOKS_DEMO_USERS": str(PIPELINE_USERS),
        "GOODBOOKS_DEMO_BOOKS": str(PIPELINE_BOOKS),
        "GOODBOOKS_SCORE_SHARD_SIZE": "128",
        "GOODBOOKS_TOP_N": "20",
        "GOODBOOKS_NUM_THREADS": "1",
        "GOODBOOKS_BOOKS_CSV": "",
        "GOODBOOKS_TAGS_CSV": "",
        # The flow tests plant rows and count them by position: static data (row order is
        # time). Data that moves has tests of its own (they set it back on).
        "GOODBOOKS_GENERATED_MOVING": "false",
    }
    saved = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    # The flows' temp files go to a directory of the session's own, so a test can see
    # what a run leaves behind there.
    saved_tempdir = tempfile.tempdir
    tempfile.tempdir = str(root / "tmp")
    (root / "tmp").mkdir()
    for key in ("MLFLOW_TRACKING_URI", "PREFECT_HOME"):
        os.environ.pop(key, None)
    get_settings.cache_clear()
    apply_tool_environment(get_settings())
    yield root
    settings = get_settings()
    client = serving.connect_redis(settings.redis_url, settings.redis_db_path)
    keys = list(client.scan_iter(match=f"{settings.redis_prefix}*", count=1000))
    for start in range(0, len(keys), 1000):
        client.unlink(*keys[start:start + 1000])
    tempfile.tempdir = saved_tempdir
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    get_settings.cache_clear()


@pytest.fixture(scope="session")
def prefect_harness(project_env: Path) -> Iterator[None]:
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=90):
        yield


@pytest.fixture
def fresh_serving() -> Iterator[None]:
    """Rebuild the process-wide serving function from the current settings."""
    serving._default_service = None
    yield
    serving._default_service = None


@pytest.fixture(scope="session")
def first_run(project_env: Path, prefect_harness: None) -> dict[str, object]:
    """One nightly run on generated data that the flow tests build on."""
    from flows.nightly import nightly_flow

    return nightly_flow(source="generate", n_trials=2, max_epochs=6)


@pytest.fixture
def generated_dataset(first_run: dict[str, object]) -> Path:
    """The generated dataset the first run ingested, as its snapshot's manifest names it."""
    from models.snapshot import open_snapshot

    source = open_snapshot(Path(str(first_run["snapshot"]))).manifest["source"]
    return Path(str(source["directory"]))  # type: ignore[index]


@pytest.fixture
def live_store(first_run: dict[str, object]) -> serving.RecStore:
    settings = get_settings()
    client = serving.connect_redis(settings.redis_url, settings.redis_db_path)
    return serving.RecStore(client, settings.redis_prefix)


def champion_training_data() -> tuple[str, pd.DataFrame]:
    """The served champion's snapshot id and every (reader, book) pair it was trained on.

    Flow tests retrain and republish the champion (other tests' events reach later
    snapshots), so what it has seen is read from what it was trained on, not assumed.
    """
    from models.interactions import interaction_history
    from models.snapshot import open_snapshot

    s = get_settings()
    store = serving.RecStore(serving.connect_redis(s.redis_url, s.redis_db_path),
                             s.redis_prefix)
    snapshot_id = str(store.get_manifest(str(store.get_alias("champion")))["snapshot"])
    snapshot = open_snapshot(s.processed_dir / snapshot_id)
    implicit = snapshot.read("interactions") if snapshot.has("interactions") else None
    history = interaction_history(snapshot.read("ratings"), implicit,
                                  [t for t in s.interaction_types if t != "rating"])
    return snapshot_id, history
