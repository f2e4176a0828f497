"""Reading the store: the GETs behind a request, and what the writer and operators look up.

The service (``serving.handler``) reads an alias's version (``get_alias``) and the experiment
(``get_experiment``) once per ``pointer_ttl_s`` (1 s by default) and a version's popular list
(``get_popular``) once, so a request costs at most one GET: ``get_recs`` for a reader,
``get_similar`` for a book.
Listing aliases and checking a version against its manifest walk the keyspace with SCAN,
never KEYS, so the server never blocks. On a Redis Cluster the same reads work unchanged:
SCAN runs on every master, and reads of several data keys (``get_many``) go one MGET per
slot.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import redis

from serving.connection import RedisClient, is_cluster
from serving.experiments import Experiment
from serving.keys import (
    Manifest,
    RecKeys,
    as_text,
    check_name,
    checksum_term,
    decode_items,
)

__all__ = ["RecReader"]

_SCAN_COUNT = 1000


class RecReader(RecKeys):
    """Reads versioned recommendation lists, aliases and experiments under one key prefix."""

    def __init__(self, client: RedisClient, prefix: str = "gb:") -> None:
        # The key layout follows the client: a cluster client gets the tagged control keys.
        super().__init__(prefix, cluster=is_cluster(client))
        self._client = client

    @property
    def client(self) -> RedisClient:
        return self._client

    def get_many(self, keys: Sequence[str]) -> list[bytes | str | None]:
        """The raw values of ``keys`` in order (None where missing): one MGET, or on a
        cluster one MGET per slot (not atomic across slots; committed versions never
        change, so it does not need to be)."""
        if not keys:
            return []
        if self._cluster:
            return self._client.mget_nonatomic(list(keys))  # type: ignore[union-attr]
        return self._client.mget(list(keys))  # type: ignore[no-any-return]

    def get_recs(self, version: str, user_id: int) -> list[int] | None:
        """The reader's stored book ids in rank order, or None for an unknown reader."""
        raw = self._client.get(self.recs_key(version, user_id))
        return None if raw is None else decode_items(raw)

    def get_popular(self, version: str) -> list[int] | None:
        """The version's fallback list, or None when the version has none."""
        raw = self._client.get(self.popular_key(version))
        return None if raw is None else decode_items(raw)

    def get_similar(self, version: str, book_id: int) -> list[int] | None:
        """Books similar to ``book_id``, or None for a book the version does not know."""
        raw = self._client.get(self.similar_key(version, book_id))
        return None if raw is None else decode_items(raw)

    def get_manifest(self, version: str) -> dict[str, str] | None:
        """The version's manifest hash, or None when the version is not committed."""
        raw = self._client.hgetall(self.manifest_key(version))
        return {as_text(k): as_text(v) for k, v in raw.items()} if raw else None

    def persistence_warning(self) -> str | None:
        """What a restart of this Redis would lose, or None when it keeps an append-only file.

        Accepted events wait in the stream until the nightly drain: without an append-only
        file a crash loses those since the last snapshot, or all of them without snapshots.
        """
        if self._cluster:
            return self._cluster_persistence_warning()
        if int(self._client.info("persistence").get("aof_enabled", 0)):
            return None
        try:
            save = as_text(self._client.config_get("save").get("save", "") or "")
        except redis.ResponseError:  # CONFIG refused (a managed Redis): snapshots unknown
            save = "unknown"
        if not save.strip():
            return ("Redis persists nothing (no append-only file, no snapshots): events not "
                    "yet drained are lost when it restarts; set appendonly yes")
        return (f"Redis keeps snapshots only (save {save}): events accepted since the last "
                "one are lost if it crashes; set appendonly yes (appendfsync everysec)")

    def _cluster_persistence_warning(self) -> str | None:
        """The stream lives on the master of the control keys' slot: its persistence counts."""
        node = self._client.get_node_from_key(self.events_key)  # type: ignore[union-attr]
        info = self._client.info("persistence", target_nodes=node)  # type: ignore[call-arg]
        if int(info.get("aof_enabled", 0)):
            return None
        where = f"the cluster master {node.host}:{node.port} holding {self.events_key}"
        return (f"{where} keeps no append-only file: events not yet drained are lost if it "
                "fails before its replica has them; set appendonly yes on every node")

    def get_alias(self, alias: str) -> str | None:
        """The version ``alias`` points at, or None."""
        raw = self._client.get(self.alias_key(alias))
        return None if raw is None else as_text(raw)

    def aliases(self) -> dict[str, str]:
        """Every alias and the version it points at."""
        keys = list(self._scan(f"{self._glob_control}alias:*"))
        if not keys:
            return {}
        start = len(self._control) + len("alias:")
        values = self.get_many(keys)  # control keys: one slot on a cluster, so one MGET
        return {key[start:]: as_text(v) for key, v in zip(keys, values, strict=True)
                if v is not None}

    def alias_history(self, alias: str) -> list[str]:
        """Versions the alias pointed at, newest first (each switch adds one)."""
        check_name(alias, "alias")
        return [as_text(v) for v in self._client.lrange(self.history_key(alias), 0, -1)]

    def committed_versions(self) -> list[str]:
        """Committed versions, oldest first."""
        return [as_text(v) for v in self._client.zrange(self.versions_key, 0, -1)]

    def verify_version(self, version: str) -> bool:
        """Recompute the version's key count and checksum from Redis and compare (O(keys))."""
        raw = self.get_manifest(version)
        if raw is None:
            return False
        manifest = Manifest.from_hash(raw)
        digest, count = 0, 0
        popular = self._client.get(self.popular_key(version))
        if popular is not None:
            digest ^= checksum_term("popular", as_text(popular))
            count += 1
        for keys in self._data_key_batches(version, _SCAN_COUNT):
            for key, value in zip(keys, self.get_many(keys), strict=True):
                if value is None:
                    continue
                kind, _, item_id = key[len(self._prefix) :].split(":", 2)
                digest ^= checksum_term(f"{kind}:{item_id}", as_text(value))
                count += 1
        return count == manifest.keys and f"{digest:040x}" == manifest.checksum

    def get_experiment(self, name: str) -> Experiment | None:
        """The stored experiment, None if absent; InvalidExperimentError if it is malformed."""
        check_name(name, "experiment name")
        raw = self._client.get(self.experiment_key(name))
        return None if raw is None else Experiment.from_json(raw)

    def _scan(self, pattern: str) -> Iterator[str]:
        for key in self._client.scan_iter(match=pattern, count=_SCAN_COUNT):
            yield as_text(key)

    def _data_key_batches(self, version: str, size: int) -> Iterator[list[str]]:
        """Every recs and similar key of ``version``, found with SCAN, ``size`` at a time."""
        bases = (f"{self._prefix}recs:{version}:", f"{self._prefix}similar:{version}:")
        batch: list[str] = []
        # One SCAN for both kinds; the exact prefix test drops anything else the glob matched.
        for key in self._scan(f"{self._glob_prefix}*:{version}:*"):
            if key.startswith(bases):
                batch.append(key)
                if len(batch) == size:
                    yield batch
                    batch = []
        if batch:
            yield batch
