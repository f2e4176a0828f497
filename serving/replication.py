"""On a Redis Cluster, waiting until the replicas hold what their masters acknowledged.

A master acknowledges a write before its replica has it, and a replica promoted after a
crash lacks what it had not received; so a version's manifest is written only once every
master's online replicas have confirmed the version's lists, and an alias switch is
reported done only once they have confirmed the switch (``wait_replicated``).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from redis.cluster import ClusterNode, RedisCluster

from serving.keys import StoreError

__all__ = ["NotReplicatedError", "wait_replicated"]


class NotReplicatedError(StoreError):
    """A cluster master's replicas did not confirm the writes in time."""


def wait_replicated(client: RedisCluster, prefix: str, timeout_s: float = 10.0,
                    keys: Sequence[str] | None = None) -> None:
    """Wait until each master's online replicas hold every write it had acknowledged when
    called; NotReplicatedError past ``timeout_s``. With ``keys``, only the masters that
    serve them.

    WAIT counts the writes of the connection it is sent on, and a cluster pipeline writes
    through whichever pooled connection it is given; so each master gets a short marker
    write (``{p}replica-check:{n}``, a key of a slot it serves) followed by WAIT on the same
    connection: the marker comes after our writes in the replication stream, so once a
    replica has the marker it has them too.
    """
    deadline = time.monotonic() + timeout_s
    socket_timeout = client.nodes_manager.connection_kwargs.get("socket_timeout") or 1.0
    masters = client.get_primaries() if keys is None else list(
        {node.name: node for node in map(client.get_node_from_key, keys)}.values())
    for node in masters:
        info = client.info("replication", target_nodes=node)  # type: ignore[call-arg]
        online = sum(1 for key, replica in info.items()
                     if key.startswith("slave") and isinstance(replica, dict)
                     and replica.get("state") == "online")
        if not online:
            continue  # no replica to lose writes to: a failover cannot happen
        node_client = client.get_redis_connection(node)
        marker = marker_key(client, prefix, node)
        while True:
            remaining = deadline - time.monotonic()
            # Each WAIT ends before the socket timeout, so a slow replica is not mistaken
            # for a dead master.
            wait_ms = max(1, int(min(remaining, 0.8 * socket_timeout) * 1000))
            with node_client.pipeline(transaction=False) as pipe:
                pipe.set(marker, "1", px=60_000)
                pipe.execute_command("WAIT", online, wait_ms)
                acked = int(pipe.execute()[1])
            if acked >= online:
                break
            if time.monotonic() >= deadline:
                raise NotReplicatedError(
                    f"only {acked} of the {online} replicas of {node.name} confirmed the "
                    f"writes within {timeout_s} s"
                )


def marker_key(client: RedisCluster, prefix: str, node: ClusterNode) -> str:
    """A replica-check key that the cluster node ``node`` serves."""
    for number in range(100_000):
        key = f"{prefix}replica-check:{number}"
        if client.nodes_manager.get_node_from_slot(client.keyslot(key)).name == node.name:
            return key
    raise StoreError(f"no slot of {node} found; is the cluster's slot map complete?")
