"""On a Dask cluster of worker processes the score flow publishes what the thread pool does."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

import serving
from flows.score import dask_score_flow, score_flow
from tests.flows.test_score import all_recs

pytestmark = [pytest.mark.usefixtures("prefect_harness"), pytest.mark.slow]


@pytest.fixture
def dask_cluster(monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    """Two worker processes of one thread each, as the flow's own local cluster starts them."""
    from distributed import LocalCluster
    from prefect.settings import PREFECT_API_URL

    # Workers are separate processes and inherit the environment when they start: point
    # them at the test server so none of them starts a temporary server of its own.
    monkeypatch.setitem(os.environ, "PREFECT_API_URL", str(PREFECT_API_URL.value()))
    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                           dashboard_address=None)
    try:
        yield cluster
    finally:
        cluster.close()


def test_worker_processes_publish_the_same_lists_as_the_thread_pool(
    live_store: serving.RecStore, dask_cluster: object
) -> None:
    from distributed import Client

    threads = score_flow(aliases=["champion"])[0]["version"]
    thread_lists = all_recs(live_store, threads)
    assert len(thread_lists) == int(live_store.get_manifest(threads)["readers"]) > 0

    dask = dask_score_flow(address=dask_cluster.scheduler_address)(aliases=["champion"])
    version = dask[0]["version"]
    assert version != threads
    assert live_store.get_alias("champion") == version
    assert thread_lists == all_recs(live_store, version)
    assert live_store.get_popular(version) == live_store.get_popular(threads)
    # Neighbour lists come from one GEMM each; BLAS may sum in another order in another
    # process, so a near-tie can swap two neighbours. Demand the same lists almost always.
    books = int(dask[0]["books"])
    same = [live_store.get_similar(threads, b) == live_store.get_similar(version, b)
            for b in range(1, books + 1)]
    assert sum(same) >= 0.98 * len(same)
    # The shards ran in the worker processes, each of which read the book side once.
    with Client(dask_cluster.scheduler_address) as client:
        cached = client.run(_book_sides_held)
    assert len(cached) == 2 and sum(held for held, _ in cached.values()) >= 1
    # A worker that scored read the book side once (one miss), however many shards it ran.
    assert all(held <= 1 and loads == held for held, loads in cached.values())


def _book_sides_held() -> tuple[int, int]:
    """Book sides the calling worker process holds, and how often it loaded one."""
    import tasks.publish

    info = tasks.publish._books.cache_info()
    return info.currsize, info.misses
