"""A synthetic published version for the serving benchmarks: every reader's top-N in Redis."""

from __future__ import annotations

import random
import time

from serving.store import RecStore, encode_items

READERS = 53_424
BOOKS = 10_000
TOP_N = 100


def publish_synthetic(
    store: RecStore,
    readers: int = READERS,
    top_n: int = TOP_N,
    books: int = BOOKS,
    seed: int = 7,
    alias: str = "champion",
) -> str:
    """Write and commit ``readers`` lists of ``top_n`` book ids, point ``alias`` at them."""
    rng = random.Random(seed)
    started = time.perf_counter()
    version = store.new_version()
    rows = (
        (user, encode_items(rng.sample(range(1, books + 1), top_n)))
        for user in range(1, readers + 1)
    )
    receipts = [
        store.write_recs(version, rows),
        store.write_similar(
            version,
            (
                (book, encode_items(rng.sample(range(1, books + 1), 20)))
                for book in range(1, books + 1)
            ),
        ),
        store.write_popular(version, encode_items(range(1, top_n + 1))),
    ]
    store.commit_version(version, receipts, {"n": top_n, "source": "benchmark"})
    store.set_alias(alias, version)
    print(
        f"published {readers:,} readers x {top_n} books as {version} "
        f"in {time.perf_counter() - started:.1f} s"
    )
    return version


def delete_prefix(store: RecStore) -> None:
    """Remove every key under the store's prefix (SCAN + UNLINK), control keys included."""
    for pattern in store.key_patterns():
        batch: list[bytes] = []
        for key in store.client.scan_iter(match=pattern, count=1000):
            batch.append(key)
            if len(batch) == 1000:
                store.client.unlink(*batch)
                batch = []
        if batch:
            store.client.unlink(*batch)
