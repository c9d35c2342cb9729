"""A real, local Redis Cluster (3 masters, 3 replicas) for development, the tests and benchmarks.

The scale-out twin of :mod:`fraud_platform.redis_server`: ``start`` launches six Debian
``redis-server --cluster-enabled yes`` processes on loopback ports, joins them with
``redis-cli --cluster create ... --cluster-replicas 1`` (each master gets one replica, on
another port), waits until every node reports ``cluster_state:ok`` and records the URL in
``.run/redis-cluster/url``, which the settings read when ``REDIS_MODE=cluster``.

Persistence, per node: the same append-only file as the single server
(:data:`~fraud_platform.redis_server.PERSISTENCE_ARGS`, fsync'ed every second), in
``.run/redis-cluster/<port>/`` beside the node's ``nodes.conf`` (the cluster's membership). A
stop and start keeps the data and the topology: the nodes find each other again from their
``nodes.conf``, no ``--cluster create`` needed.

Failover and what it can lose. Replication is asynchronous: a master acknowledges a write
before its replica has it. When a master dies, the other masters mark it failed after
``cluster-node-timeout`` (:data:`NODE_TIMEOUT_MS`, kept low here so that tests and benchmarks
see a failover in seconds) and its replica is promoted. Writes the dead master acknowledged
but had not yet streamed to its replica are lost: in practice the last few milliseconds of
writes to that master's slots (the replication stream is sent on every event-loop turn).
``WAIT`` could make a write wait for a replica; the platform does not use it (see the README).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import redis

from fraud_platform.redis_server import (
    PERSISTENCE_ARGS,
    RedisUnavailableError,
    find_redis_server,
    port_is_free,
    wait_until_exited,
)
from fraud_platform.settings import LOCAL_CLUSTER_URL_FILE, PROJECT_ROOT

NODES = 6  # 3 masters + 3 replicas: the smallest cluster whose every master has a replica
REPLICAS_PER_MASTER = 1
# How long a master may be unreachable before the others mark it failed and its replica takes
# over. Redis's default is 15 s; low here so that a failover takes seconds.
NODE_TIMEOUT_MS = 1500


@dataclass(frozen=True)
class LocalCluster:
    """A running local cluster: its URL (every node), ports, process ids and data folder."""

    url: str
    ports: tuple[int, ...]
    pids: dict[int, int]  # port -> pid
    data_dir: Path


def cluster_dir(root: Path = PROJECT_ROOT) -> Path:
    """Where the nodes' data, pid files and logs live."""
    return root / ".run" / "redis-cluster"


def node_client(port: int, timeout: float = 0.5) -> redis.Redis:
    """A plain (non-cluster) client of one node, for administration."""
    return redis.Redis(
        host="127.0.0.1", port=port, socket_timeout=timeout, socket_connect_timeout=timeout
    )


def cluster_state(port: int) -> str | None:
    """A node's own view of the cluster (``ok`` or ``fail``), ``None`` if it does not answer."""
    try:
        info = node_client(port).cluster("INFO")  # redis-py parses the reply into a dict
    except (redis.RedisError, OSError):
        return None
    state = info.get("cluster_state") if isinstance(info, dict) else None
    return None if state is None else str(state)


def masters(port: int) -> dict[int, int | None]:
    """Master port -> its replica's port (``None`` if it has none), as ``port`` sees it now.

    Nodes flagged failed (``fail`` or ``fail?``) are left out.

    Raises:
        redis.RedisError: If the node does not answer.
    """
    nodes = node_client(port).cluster("NODES")  # parsed: "host:port" -> fields
    alive = {
        info["node_id"]: (int(address.rsplit(":", 1)[1]), info["flags"].split(","), info)
        for address, info in nodes.items()
        if not {"fail", "fail?"} & set(info["flags"].split(","))
    }
    out: dict[int, int | None] = {
        node_port: None for node_port, flags, _ in alive.values() if "master" in flags
    }
    for node_port, flags, info in alive.values():
        if "slave" in flags and info["master_id"] in alive:
            out[alive[info["master_id"]][0]] = node_port
    return out


def _free_ports(count: int) -> list[int]:
    """``count`` ports on loopback whose cluster bus port (port + 10000) is free too."""
    ports: list[int] = []
    candidate = 20_000 + (os.getpid() * 7) % 20_000  # spread concurrent starts apart
    while len(ports) < count:
        candidate += 1
        if candidate >= 55_000:
            candidate = 20_000
        if port_is_free(candidate) and port_is_free(candidate + 10_000):
            ports.append(candidate)
    return ports


def _node_args(binary: str, port: int, node_dir: Path, node_timeout_ms: int) -> list[str]:
    return [
        binary,
        "--port", str(port),
        "--bind", "127.0.0.1",
        "--dir", str(node_dir),
        "--pidfile", str(node_dir / "redis.pid"),
        "--logfile", str(node_dir / "redis.log"),
        "--daemonize", "yes",
        "--cluster-enabled", "yes",
        "--cluster-config-file", "nodes.conf",
        "--cluster-node-timeout", str(node_timeout_ms),
        *PERSISTENCE_ARGS,
    ]  # fmt: skip


def start_node(root: Path, port: int, node_timeout_ms: int = NODE_TIMEOUT_MS) -> int:
    """Start (or restart) one node of the cluster from its folder; return its pid.

    A restarted node rejoins from its ``nodes.conf``; a former master whose replica took over
    comes back as that replica's replica.
    """
    node_dir = cluster_dir(root) / str(port)
    node_dir.mkdir(parents=True, exist_ok=True)
    subprocess.run(_node_args(find_redis_server(), port, node_dir, node_timeout_ms), check=True)
    deadline = time.monotonic() + 10
    while True:
        try:
            node_client(port).ping()
            return int((node_dir / "redis.pid").read_text().strip())
        except (redis.RedisError, OSError, ValueError):
            if time.monotonic() > deadline:
                raise RedisUnavailableError(
                    f"cluster node {port} did not start; see {node_dir}"
                ) from None
            time.sleep(0.05)


def wait_healthy(ports: list[int] | tuple[int, ...], timeout: float = 30.0) -> None:
    """Wait until every answering node says ``cluster_state:ok`` and all of ``ports`` answer.

    Raises:
        RedisUnavailableError: If that does not happen within ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    while True:
        states = {port: cluster_state(port) for port in ports}
        if all(state == "ok" for state in states.values()):
            return
        if time.monotonic() > deadline:
            raise RedisUnavailableError(f"cluster not healthy after {timeout:.0f} s: {states}")
        time.sleep(0.1)


def _url(ports: list[int] | tuple[int, ...]) -> str:
    return "redis://" + ",".join(f"127.0.0.1:{port}" for port in ports)


def start(
    root: Path = PROJECT_ROOT,
    ports: list[int] | None = None,
    node_timeout_ms: int = NODE_TIMEOUT_MS,
    timeout: float = 60.0,
) -> LocalCluster:
    """Start the local cluster (or reuse the running one); create it on first start.

    Args:
        root: Project root; everything goes under ``root/.run/redis-cluster``.
        ports: The six ports; by default the recorded ones, else free ones.
        node_timeout_ms: ``cluster-node-timeout``: how soon a dead master's replica takes over.
        timeout: Seconds to wait for ``cluster_state:ok`` on every node.

    Returns:
        The running cluster.

    Raises:
        RedisUnavailableError: If ``redis-server``/``redis-cli`` are missing, a recorded port is
            taken by another process, or the cluster does not become healthy.
    """
    running = status(root)
    if running is not None:
        return running
    binary = find_redis_server()
    cli = shutil.which("redis-cli") or str(Path(binary).with_name("redis-cli"))
    if not Path(cli).exists():
        raise RedisUnavailableError(
            "redis-cli is not installed (Debian: `sudo apt-get install redis-tools`)."
        )
    data_dir = cluster_dir(root)
    data_dir.mkdir(parents=True, exist_ok=True)
    ports_file = data_dir / "ports"
    if ports is None and ports_file.exists():
        ports = [int(p) for p in ports_file.read_text().split()]
    created = bool(ports) and all(
        (data_dir / str(port) / "nodes.conf").exists() for port in ports or []
    )
    if ports is None:
        ports = _free_ports(NODES)
    if len(ports) != NODES:
        raise RedisUnavailableError(f"a local cluster has {NODES} nodes, got ports {ports}")
    taken = [p for p in ports if not port_is_free(p) and cluster_state(p) is None]
    if taken:
        raise RedisUnavailableError(
            f"ports {taken} (recorded in {ports_file}) are taken by other processes; stop "
            f"them, or delete {data_dir} to create a new cluster on new ports"
        )
    ports_file.write_text(" ".join(map(str, ports)) + "\n")
    if not created:  # a fresh cluster: no node may keep data or membership of an earlier one
        for port in ports:
            shutil.rmtree(data_dir / str(port), ignore_errors=True)
    pids = {port: start_node(root, port, node_timeout_ms) for port in ports}
    if not created:
        result = subprocess.run(
            [
                cli, "--cluster", "create", *(f"127.0.0.1:{p}" for p in ports),
                "--cluster-replicas", str(REPLICAS_PER_MASTER), "--cluster-yes",
            ],
            capture_output=True, text=True, check=False, timeout=120,
        )  # fmt: skip
        if result.returncode != 0:
            stop(root)
            raise RedisUnavailableError(f"redis-cli --cluster create failed:\n{result.stdout}")
    wait_healthy(ports, timeout)
    url = _url(ports)
    (root / LOCAL_CLUSTER_URL_FILE).write_text(url + "\n")
    return LocalCluster(url=url, ports=tuple(ports), pids=pids, data_dir=data_dir)


def _pids(root: Path) -> dict[int, int]:
    data_dir = cluster_dir(root)
    ports_file = data_dir / "ports"
    if not ports_file.exists():
        return {}
    pids = {}
    for port in (int(p) for p in ports_file.read_text().split()):
        pid_file = data_dir / str(port) / "redis.pid"
        if pid_file.exists():
            pids[port] = int(pid_file.read_text().strip())
    return pids


def status(root: Path = PROJECT_ROOT) -> LocalCluster | None:
    """The local cluster :func:`start` launched, if all its nodes answer and it is healthy."""
    data_dir = cluster_dir(root)
    url_file = root / LOCAL_CLUSTER_URL_FILE
    pids = _pids(root)
    if not url_file.exists() or len(pids) != NODES:
        return None
    if not all(cluster_state(port) == "ok" for port in pids):
        return None
    return LocalCluster(
        url=url_file.read_text().strip(), ports=tuple(pids), pids=pids, data_dir=data_dir
    )


def stop(root: Path = PROJECT_ROOT, timeout: float = 10.0) -> bool:
    """Stop the nodes :func:`start` launched (only those, each by its recorded pid).

    SIGTERM: each node fsyncs its append-only file and saves its ``nodes.conf``, so
    the next :func:`start` brings the same cluster back with its data.

    Returns:
        True if any node was stopped.
    """
    stopped = []
    for port, pid in _pids(root).items():
        try:
            os.kill(pid, signal.SIGTERM)
            stopped.append(pid)
        except ProcessLookupError:
            pass
        (cluster_dir(root) / str(port) / "redis.pid").unlink(missing_ok=True)
    wait_until_exited(stopped, time.monotonic() + timeout)
    (root / LOCAL_CLUSTER_URL_FILE).unlink(missing_ok=True)
    return bool(stopped)


def kill_node(root: Path, port: int) -> int:
    """SIGKILL one node (a crash, for failover tests); return the pid killed."""
    pid_file = cluster_dir(root) / str(port) / "redis.pid"
    pid = int(pid_file.read_text().strip())
    os.kill(pid, signal.SIGKILL)
    while True:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.01)
    pid_file.unlink(missing_ok=True)  # a killed node leaves its pid file behind
    return pid


def client_for(url: str, mode: str) -> redis.Redis | redis.RedisCluster:
    """A plain redis-py client of the online store at ``url`` for ``REDIS_MODE`` ``mode``.

    For tools, tests and benchmarks (flush, count keys); the platform itself reads and writes
    through Feast's client (``feature_engine.online.redis_layout``), which follows the same
    settings.
    """
    if mode != "cluster":
        return redis.Redis.from_url(url)
    from redis.cluster import ClusterNode

    from fraud_platform.settings import redis_cluster_nodes

    nodes, options = redis_cluster_nodes(url)
    return redis.RedisCluster(
        startup_nodes=[ClusterNode(host, port) for host, port in nodes],
        password=options.get("password"),
        ssl=options.get("ssl") == "true",
    )
