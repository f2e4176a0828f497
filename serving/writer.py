"""Writing the store: publishing a version, the alias cutover, rollback and retention.

A batch is written under a fresh version (``new_version``), its manifest written last
(``commit_version``), and only then an alias switched to it with one atomic,
compare-and-set script (``set_alias``): readers never see a half-written batch, and a
writer never overwrites a switch it did not start from. Committed versions are immutable.
``prune`` deletes versions that no alias points to beyond each alias's recent history;
``rollback`` re-points an alias to a retained one it served. Deletion walks the keyspace
with SCAN and removes keys with UNLINK, never KEYS or FLUSHDB, so other data in the same
database is safe and the server never blocks.

On a Redis Cluster (``serving.keys``: control keys share one hash tag) the same code runs:
the scripts and MULTI/EXEC blocks touch only control keys, so each stays in one slot; data
keys are written by a non-transactional cluster pipeline, which sends each master its
commands in one round trip; UNLINK of many keys goes one command per slot. One thing is
added: a master acknowledges a write before its replica has it, and a replica promoted
after a crash lacks what it had not received, so ``commit_version`` first waits until every
master's online replicas have confirmed the writes (``wait_replicated``, WAIT). Without that, a
failover right after a publish could leave a committed manifest over lists that are gone,
and readers of that master would get the popular fallback from a "complete" version. An
alias switch waits the same way after it is made (``SwitchNotReplicatedError`` when the
replicas do not confirm it): a failover before they have it would quietly put the alias
back on the version before.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import redis

from serving.connection import RedisClient
from serving.experiments import Experiment
from serving.keys import (
    MANIFEST_FIELDS,
    InvalidNameError,
    InvalidPayloadError,
    Kind,
    Manifest,
    StoreError,
    as_text,
    check_id,
    check_name,
    checksum_term,
    is_payload,
    version_id,
)
from serving.reader import RecReader
from serving.replication import NotReplicatedError, wait_replicated

__all__ = [
    "AliasChangedError",
    "NoRollbackTargetError",
    "NotReplicatedError",
    "RecWriter",
    "ShardReceipt",
    "SwitchNotReplicatedError",
    "VersionCommittedError",
    "VersionNotCommittedError",
    "unconfirmed_switch",
]

_UNLINK_BATCH = 1000

# Switch an alias only if the version has a manifest and, when ARGV[2] is not empty, only if
# the alias still points at ARGV[2]. Returns {status, previous version}.
# ARGV[2] is '-' for "the alias must be unset". The alias's history (KEYS[3], newest first)
# records every version it pointed at: rollback and retention go by it.
_SWITCH_ALIAS = """
if redis.call('EXISTS', KEYS[1]) == 0 then return {-1, false} end
local previous = redis.call('GET', KEYS[2])
if ARGV[2] == '-' then
  if previous then return {-2, previous} end
elseif ARGV[2] ~= '' and previous ~= ARGV[2] then
  return {-2, previous}
end
redis.call('SET', KEYS[2], ARGV[1])
if previous ~= ARGV[1] then
  redis.call('LPUSH', KEYS[3], ARGV[1])
  redis.call('LTRIM', KEYS[3], 0, 99)
end
return {1, previous}
"""

# Retire a committed version unless one of the alias keys (KEYS[4..]) points at it; the
# manifest goes first, so no alias can be switched onto the version afterwards. The version
# joins the pending set as long abandoned (score 0, no lease): if the pruner dies while it
# deletes the data, the next run's discard_uncommitted finishes the job.
_RETIRE_VERSION = """
for i = 4, #KEYS do
  if redis.call('GET', KEYS[i]) == ARGV[1] then return 0 end
end
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZADD', KEYS[3], 0, ARGV[1])
return 1
"""


class VersionCommittedError(StoreError):
    """The version is committed (immutable) and cannot be written or discarded."""


class VersionNotCommittedError(StoreError):
    """The version has no manifest, so no alias may point at it."""


class NoRollbackTargetError(StoreError):
    """No retained, committed version to roll an alias back to."""


class AliasChangedError(StoreError):
    """The alias moved while a rollback was computed; nothing was changed."""


def unconfirmed_switch(done: str, detail: str, undone: str = "undoes it") -> str:
    """What to tell when a switch is made and served but its replica has not confirmed it."""
    return (f"{done}, and is served, but {detail}: a failover before the replica catches "
            f"up {undone}. Check the replica's link (INFO replication on the control slot's "
            "master) and `goodbooks status`")


class SwitchNotReplicatedError(NotReplicatedError):
    """An alias was switched on its cluster master and is served, but the master's replicas
    did not confirm the switch in time: a failover before they do puts it back."""

    def __init__(self, alias: str, version: str, previous: str | None, detail: str) -> None:
        self.alias, self.version, self.previous = alias, version, previous
        super().__init__(unconfirmed_switch(
            f"alias {alias!r} now points at {version}", detail,
            f"puts it back on {previous or 'nothing (unset)'}, the version before"))


@dataclass(frozen=True)
class ShardReceipt:
    """What one write call stored: how many keys and their order-independent digest."""

    kind: Kind
    count: int
    digest: int

    def combine(self, other: ShardReceipt) -> ShardReceipt:
        """The receipt of both shards together (same kind)."""
        if other.kind != self.kind:
            raise ValueError(f"cannot combine a {self.kind!r} receipt with a {other.kind!r} one")
        return ShardReceipt(self.kind, self.count + other.count, self.digest ^ other.digest)


class RecWriter(RecReader):
    """Publishes, switches, rolls back and prunes versions under one key prefix."""

    def __init__(self, client: RedisClient, prefix: str = "gb:") -> None:
        super().__init__(client, prefix)
        self._switch_alias = client.register_script(_SWITCH_ALIAS)
        self._retire_version = client.register_script(_RETIRE_VERSION)

    # --- publishing a version ----------------------------------------------------------
    def new_version(self, lease_s: float | None = None) -> str:
        """Start a version: a sortable, unique name such as ``20261128T213000123456Z-a1b2``.

        With ``lease_s`` the writer holds a lease on it (``{p}lease:{version}``) that it must
        renew (``renew_lease``) more often than that: a version whose lease has expired
        belongs to a writer that died, and the next run discards it at once.
        """
        while True:
            now = datetime.now(UTC)
            version = version_id(now)
            with self._client.pipeline(transaction=True) as pipe:
                # NX: two writers starting in the same microsecond with the same suffix retry.
                pipe.zadd(self.pending_key, {version: now.timestamp()}, nx=True)
                if lease_s is not None:
                    pipe.set(self.lease_key(version), "1", px=int(lease_s * 1000), nx=True)
                    pipe.sadd(self.leased_key, version)
                added = pipe.execute()[0]
            if added:
                return version

    def release_lease(self, version: str) -> None:
        """The writer is done with the version (switched to it, or gave up on it)."""
        self._client.delete(self.lease_key(version))

    def renew_lease(self, version: str, lease_s: float) -> bool:
        """Extend the writer's lease on a pending version; False when it had already expired."""
        return bool(self._client.set(self.lease_key(version), "1", px=int(lease_s * 1000),
                                     xx=True))

    def write_recs(
        self, version: str, rows: Iterable[tuple[int, str]], batch: int = 2000
    ) -> ShardReceipt:
        """Store (user_id, encoded book ids) rows, pipelined ``batch`` commands per round trip."""
        return self._write_rows("recs", version, rows, batch)

    def write_similar(
        self, version: str, rows: Iterable[tuple[int, str]], batch: int = 2000
    ) -> ShardReceipt:
        """Store each (book_id, encoded book ids) row; pipelined like ``write_recs``."""
        return self._write_rows("similar", version, rows, batch)

    def write_popular(self, version: str, payload: str) -> ShardReceipt:
        """Store the version's fallback list (encoded book ids)."""
        self._check_writable(version)
        self._check_payload(payload, "the popular list")
        self._client.set(self.popular_key(version), payload)
        return ShardReceipt("popular", 1, checksum_term("popular", payload))

    def commit_version(
        self,
        version: str,
        receipts: Sequence[ShardReceipt],
        fields: Mapping[str, str | int | float],
        replication_timeout_s: float = 10.0,
    ) -> Manifest:
        """Write the manifest after every data key and record the version; aliases unchanged.

        On a cluster the data keys must first have reached every master's online replicas
        (``wait_replicated``, at most ``replication_timeout_s``): NotReplicatedError else.
        """
        check_name(version, "version")
        reserved = sorted(set(fields) & set(MANIFEST_FIELDS))
        if reserved:
            raise InvalidNameError(
                f"manifest fields {reserved} are computed by commit_version; rename yours"
            )
        totals: dict[Kind, ShardReceipt] = {}
        for receipt in receipts:
            previous = totals.get(receipt.kind)
            totals[receipt.kind] = previous.combine(receipt) if previous else receipt
        checksum = 0
        for receipt in totals.values():
            checksum ^= receipt.digest
        try:
            self.wait_replicated(replication_timeout_s)
        except NotReplicatedError as exc:
            raise NotReplicatedError(
                f"{exc}; version {version} was not committed (a failover now would lose "
                "lists): check the replicas' links (INFO replication) and publish again"
            ) from None
        now = datetime.now(UTC)
        manifest = Manifest(
            version=version,
            created_at=now.isoformat(timespec="microseconds"),
            readers=totals["recs"].count if "recs" in totals else 0,
            similar_books=totals["similar"].count if "similar" in totals else 0,
            popular="popular" in totals,
            keys=sum(r.count for r in totals.values()),
            checksum=f"{checksum:040x}",
            fields={str(k): str(v) for k, v in fields.items()},
        )
        manifest_key = self.manifest_key(version)
        with self._client.pipeline(transaction=True) as pipe:
            try:
                # WATCH: of two concurrent commits of one version, the second one fails.
                pipe.watch(manifest_key)
                if pipe.exists(manifest_key):
                    raise VersionCommittedError(f"version {version} is already committed")
                pipe.multi()
                pipe.hset(manifest_key, mapping=manifest.to_hash())
                pipe.zadd(self.versions_key, {version: now.timestamp()})
                pipe.zrem(self.pending_key, version)
                # The lease stays until the writer switches an alias onto it (or lets go):
                # retention leaves a leased version alone.
                pipe.srem(self.leased_key, version)
                pipe.execute()
            except redis.WatchError:
                raise VersionCommittedError(
                    f"version {version} was committed by another writer meanwhile"
                ) from None
        return manifest

    def wait_replicated(self, timeout_s: float = 10.0, control_only: bool = False) -> None:
        """On a cluster, wait until each master's online replicas hold every write it had
        acknowledged when called (``serving.replication``); a no-op on a single server.
        ``control_only``: only the master of the control keys (aliases, manifests, pins)."""
        if self._cluster:
            wait_replicated(self._client, self._prefix, timeout_s,  # type: ignore[arg-type]
                            keys=[self.versions_key] if control_only else None)

    # --- cutover and rollback ----------------------------------------------------------
    def set_alias(self, alias: str, version: str, expected: str | None = None,
                  expect_unset: bool = False, replication_timeout_s: float | None = 10.0
                  ) -> str | None:
        """Point ``alias`` at a committed version with one atomic SET; return the previous one.

        Compare-and-set: with ``expected`` (or ``expect_unset``) the switch happens only if
        the alias still points there, else AliasChangedError and nothing changes — so a
        slower or older run cannot overwrite a newer switch.

        On a cluster the call returns once the master's replicas hold the switch (at most
        ``replication_timeout_s``; SwitchNotReplicatedError else, the switch made and
        served). None: no wait, for a caller that switches several aliases and confirms
        them together with ``wait_replicated``.
        """
        return self._switch(alias, version, expected="-" if expect_unset else expected,
                            replication_timeout_s=replication_timeout_s)

    def previous_version(self, alias: str, current: str | None = None) -> str | None:
        """The newest committed version the alias served before ``current`` (default: the
        live one); None when no earlier one is retained."""
        current = current or self.get_alias(alias)
        committed = set(self.committed_versions())
        earlier = [v for v in self._served(alias) if v in committed and current is not None
                   and v < current]
        return max(earlier) if earlier else None

    def rollback(self, alias: str, to_version: str | None = None,
                 replication_timeout_s: float | None = 10.0) -> str:
        """Re-point ``alias`` to an earlier version it served (default: the previous one).

        On a cluster it waits for the replicas as ``set_alias`` does."""
        check_name(alias, "alias")
        current = self.get_alias(alias)
        if current is None:
            raise NoRollbackTargetError(
                f"alias {alias!r} is not set, so there is nothing to roll back"
            )
        served = self._served(alias)
        if to_version is None:
            target = self.previous_version(alias, current)
            if target is None:
                raise NoRollbackTargetError(
                    f"no earlier version of alias {alias!r} than {current} is retained; "
                    "publish one, or raise the retention"
                )
        else:
            committed = self.committed_versions()
            if to_version not in committed:
                raise NoRollbackTargetError(
                    f"{to_version!r} is not a committed, retained version; "
                    f"retained for {alias!r}: {[v for v in served if v in committed][:5]}"
                )
            if to_version == current:
                raise NoRollbackTargetError(f"alias {alias!r} already points at {current}")
            if to_version not in served:
                raise NoRollbackTargetError(
                    f"{to_version!r} was never served as {alias!r}; pass one it served: "
                    f"{[v for v in served if v in committed][:5]}"
                )
            target = to_version
        self._switch(alias, target, expected=current,
                     replication_timeout_s=replication_timeout_s)
        return target

    # --- retention -----------------------------------------------------------------------
    def prune(self, keep: int) -> list[str]:
        """Delete committed versions that no alias points to, beyond the ``keep`` newest each
        alias served (retention per alias); a version still under its writer's lease is left
        alone (the writer may be about to switch an alias onto it)."""
        if isinstance(keep, bool) or not isinstance(keep, int) or keep < 0:
            raise ValueError(f"keep must be a non-negative integer, got {keep!r}")
        committed = self.committed_versions()
        alias_versions = self.aliases()
        protected = set(alias_versions.values())
        known = set(alias_versions) | self._aliases_with_history()
        for alias in known:
            protected.update(sorted(set(self._served(alias)), reverse=True)[:keep])
        alias_keys = [self.alias_key(name) for name in alias_versions]
        removed = []
        for version in committed:
            if version in protected or self._client.exists(self.lease_key(version)):
                continue
            keys = [self.manifest_key(version), self.versions_key, self.pending_key,
                    *alias_keys]
            if not self._retire_version(keys=keys, args=[version]):
                continue  # an alias was switched onto it meanwhile
            self.discard_version(version)
            removed.append(version)
        return removed

    def discard_version(self, version: str) -> int:
        """Delete every key of a version that was never committed; return how many."""
        check_name(version, "version")
        if self._client.exists(self.manifest_key(version)):
            raise VersionCommittedError(
                f"version {version} is committed; prune removes committed versions once no "
                "alias points at them"
            )
        deleted = self._delete_data(version)
        self._client.zrem(self.pending_key, version)
        self._client.srem(self.leased_key, version)
        self._client.delete(self.lease_key(version))
        return deleted

    def discard_uncommitted(self, older_than_s: float) -> list[str]:
        """Discard pending versions whose writer's lease expired (at once), and unleased ones
        started more than ``older_than_s`` ago; committed ones only leave the pending set."""
        if older_than_s < 0:
            raise ValueError(f"older_than_s must be >= 0, got {older_than_s}")
        cutoff = time.time() - older_than_s
        leased = {as_text(v) for v in self._client.smembers(self.leased_key)}
        discarded = []
        for raw, started in self._client.zrange(self.pending_key, 0, -1, withscores=True):
            version = as_text(raw)
            if self._client.exists(self.manifest_key(version)):
                self._client.zrem(self.pending_key, version)
                self._client.srem(self.leased_key, version)
                continue
            if version in leased:
                if self._client.exists(self.lease_key(version)):
                    continue  # its writer is alive
            elif started > cutoff:
                continue  # no lease to judge by: only age tells
            self.discard_version(version)
            discarded.append(version)
        return discarded

    # --- experiments -------------------------------------------------------------------
    def put_experiment(self, experiment: Experiment) -> None:
        """Store (or replace) an experiment's config; serving processes see it within ~1 s."""
        self._client.set(self.experiment_key(experiment.name), experiment.to_json())

    # --- internals ---------------------------------------------------------------------
    def _write_rows(
        self, kind: Kind, version: str, rows: Iterable[tuple[int, str]], batch: int
    ) -> ShardReceipt:
        self._check_writable(version)
        if batch < 1:
            raise ValueError(f"batch must be at least 1, got {batch}")
        base = f"{self._prefix}{kind}:{version}:"
        count, digest, queued = 0, 0, 0
        id_name = "user_id" if kind == "recs" else "book_id"
        with self._client.pipeline(transaction=False) as pipe:
            for item_id, payload in rows:
                number = check_id(item_id, id_name)
                self._check_payload(payload, f"{id_name} {number}")
                pipe.set(f"{base}{number}", payload)
                digest ^= checksum_term(f"{kind}:{number}", payload)
                count += 1
                queued += 1
                if queued == batch:
                    pipe.execute()
                    queued = 0
            if queued:
                pipe.execute()
        return ShardReceipt(kind, count, digest)

    def _check_writable(self, version: str) -> None:
        check_name(version, "version")
        if self._client.exists(self.manifest_key(version)):
            raise VersionCommittedError(
                f"version {version} is committed and immutable; write a new version "
                "(new_version()) instead"
            )

    @staticmethod
    def _check_payload(payload: str, owner: str) -> None:
        if not isinstance(payload, str) or not is_payload(payload):
            raise InvalidPayloadError(
                f"{owner}: payload {str(payload)[:80]!r} is not comma-separated book ids; "
                "build it with encode_items()"
            )

    def _switch(self, alias: str, version: str, expected: str | None,
                replication_timeout_s: float | None = 10.0) -> str | None:
        check_name(alias, "alias")
        check_name(version, "version")
        status, previous = self._switch_alias(
            keys=[self.manifest_key(version), self.alias_key(alias), self.history_key(alias)],
            args=[version, expected or ""],
        )
        if status == -1:
            raise VersionNotCommittedError(
                f"version {version} has no manifest, so alias {alias!r} was not switched; "
                "commit_version() it first (or it was pruned)"
            )
        if status == -2:
            raise AliasChangedError(
                f"alias {alias!r} moved from {'nothing' if expected == '-' else expected} to "
                f"{None if previous is None else as_text(previous)} meanwhile; nothing changed, "
                "look again and retry"
            )
        before = None if previous is None else as_text(previous)
        if replication_timeout_s is not None:
            try:
                self.wait_replicated(replication_timeout_s, control_only=True)
            except NotReplicatedError as exc:
                raise SwitchNotReplicatedError(alias, version, before, str(exc)) from None
        return before

    def _served(self, alias: str) -> list[str]:
        """The alias's history; for data from before histories, the versions published for it."""
        history = self.alias_history(alias)
        if history:
            return history
        committed = self.committed_versions()
        with self._client.pipeline(transaction=False) as pipe:
            for version in committed:
                pipe.hget(self.manifest_key(version), "alias")
            owners = pipe.execute()
        return [v for v, owner in zip(reversed(committed), reversed(owners), strict=True)
                if owner is not None and as_text(owner) == alias]

    def _aliases_with_history(self) -> set[str]:
        start = len(self._control) + len("history:")
        return {key[start:] for key in self._scan(f"{self._glob_control}history:*")}

    def _delete_data(self, version: str) -> int:
        """UNLINK every key of ``version`` in batches; return how many existed (on a
        cluster the client sends one UNLINK per slot of a batch)."""
        deleted = int(self._client.unlink(self.popular_key(version), self.manifest_key(version)))
        for keys in self._data_key_batches(version, _UNLINK_BATCH):
            deleted += int(self._client.unlink(*keys))
        return deleted
