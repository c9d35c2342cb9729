"""A real, local ``redis-server`` for development, the demo and the tests.

``REDIS_URL`` overrides all of this: when it is set and reachable, nothing is started.
Otherwise ``start`` launches Debian's ``redis-server`` on a loopback port with its data under
``.run/redis/`` and records the URL in ``.run/redis/url``, which the settings read.

Durable: the server keeps an append-only file (:data:`PERSISTENCE_ARGS`, the same flags as the
compose service), fsync'ed every second, so a stop and start (or a crash) keeps the online
state, ingested transactions included: at most the last second is lost to a machine crash.

Same address: the first start records its port in ``.run/redis/port`` and every later start
uses it again, so a running API keeps its URL and reconnects by itself. The old port's
connections linger in TIME_WAIT after a stop; like ``redis-server`` itself (SO_REUSEADDR), the
check ignores them. If another process really listens on the recorded port, ``start`` fails and
says so rather than silently moving to a port nobody knows.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import redis

from fraud_platform.settings import LOCAL_REDIS_URL_FILE, PROJECT_ROOT

# Append-only file, fsync'ed every second, no RDB snapshots: the one persistence of both the
# local server and the compose service (tests/unit/infra checks that the two agree).
PERSISTENCE_ARGS = ("--appendonly", "yes", "--appendfsync", "everysec", "--save", "")


class RedisUnavailableError(RuntimeError):
    """No usable ``redis-server`` binary and no reachable ``REDIS_URL``."""


@dataclass(frozen=True)
class LocalRedis:
    """A running local Redis: its URL, process id and data folder."""

    url: str
    pid: int | None
    data_dir: Path


def is_reachable(url: str, timeout: float = 0.5) -> bool:
    """Whether a Redis server answers PING at ``url``."""
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
        return bool(client.ping())
    except (redis.RedisError, OSError, ValueError):
        return False


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_is_free(port: int) -> bool:
    """Whether ``redis-server`` could listen on ``127.0.0.1:port`` now.

    Binds with SO_REUSEADDR, as ``redis-server`` does: connections of a stopped server that
    linger in TIME_WAIT do not make the port busy; another process listening on it does.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def find_redis_server(install: bool = True) -> str:
    """Path of ``redis-server``; installs Debian's package when missing and running as root.

    Args:
        install: Whether to try ``apt-get install redis-server`` when the binary is missing.

    Returns:
        The path of the binary.

    Raises:
        RedisUnavailableError: With the command to run when it cannot be installed here.
    """
    found = shutil.which("redis-server")
    if found:
        return found
    if install and hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("apt-get"):
        print("redis-server not found: installing Debian's package redis-server", file=sys.stderr)
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", "redis-server"],
            check=True,
            env=env,
            stdout=subprocess.DEVNULL,
        )
        found = shutil.which("redis-server")
        if found:
            return found
    raise RedisUnavailableError(
        "redis-server is not installed. Install it with `sudo apt-get install redis-server` "
        "(Debian/Ubuntu) or `brew install redis` (macOS), or point REDIS_URL at a running server."
    )


def start(root: Path = PROJECT_ROOT, port: int | None = None, timeout: float = 10.0) -> LocalRedis:
    """Start a local ``redis-server`` (or reuse ``REDIS_URL`` / an already started one).

    Args:
        root: Project root; data, pid file and URL go under ``root/.run/redis``.
        port: Port to listen on; by default the one recorded by the first start, else a free one.
        timeout: Seconds to wait for the server to answer PING (it loads its data first).

    Returns:
        The running server.

    Raises:
        RedisUnavailableError: If no server can be started, or the recorded port is taken.
    """
    env_url = os.environ.get("REDIS_URL")
    data_dir = root / ".run" / "redis"
    if env_url and is_reachable(env_url):
        return LocalRedis(url=env_url, pid=None, data_dir=data_dir)
    running = status(root)
    if running is not None:
        return running
    binary = find_redis_server()
    data_dir.mkdir(parents=True, exist_ok=True)
    # The recorded port again, so that clients holding the old URL reconnect by themselves.
    port_file = data_dir / "port"
    if port is None and port_file.exists():
        port = int(port_file.read_text())
        if not port_is_free(port):
            raise RedisUnavailableError(
                f"port {port}, recorded in {port_file} by an earlier start, is taken by another "
                f"process. Stop that process, or delete {port_file} to start on a new port (then "
                "restart the clients that hold the old URL, such as the API)."
            )
    port = port or free_port()
    port_file.write_text(str(port))
    url = f"redis://127.0.0.1:{port}/0"
    pid_file = data_dir / "redis.pid"
    subprocess.run(
        [
            binary,
            "--port", str(port),
            "--bind", "127.0.0.1",
            "--dir", str(data_dir),
            "--pidfile", str(pid_file),
            "--logfile", str(data_dir / "redis.log"),
            "--daemonize", "yes",
            *PERSISTENCE_ARGS,
        ],
        check=True,
    )  # fmt: skip
    deadline = time.monotonic() + timeout
    while not is_reachable(url):
        if time.monotonic() > deadline:
            raise RedisUnavailableError(f"redis-server did not answer on {url}; see {data_dir}")
        time.sleep(0.05)
    (root / LOCAL_REDIS_URL_FILE).write_text(url + "\n")
    return LocalRedis(url=url, pid=int(pid_file.read_text().strip()), data_dir=data_dir)


def status(root: Path = PROJECT_ROOT) -> LocalRedis | None:
    """The local server started by :func:`start`, if it still answers."""
    data_dir = root / ".run" / "redis"
    url_file = root / LOCAL_REDIS_URL_FILE
    pid_file = data_dir / "redis.pid"
    if not (url_file.exists() and pid_file.exists()):
        return None
    url = url_file.read_text().strip()
    if not is_reachable(url):
        return None
    return LocalRedis(url=url, pid=int(pid_file.read_text().strip()), data_dir=data_dir)


def stop(root: Path = PROJECT_ROOT, timeout: float = 10.0) -> bool:
    """Stop the server :func:`start` launched (only that one, by its pid).

    Returns:
        True if a server was stopped, False if none of ours was running.
    """
    data_dir = root / ".run" / "redis"
    pid_file = data_dir / "redis.pid"
    url_file = root / LOCAL_REDIS_URL_FILE
    if not pid_file.exists():
        url_file.unlink(missing_ok=True)
        return False
    pid = int(pid_file.read_text().strip())
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        pid_file.unlink(missing_ok=True)
        url_file.unlink(missing_ok=True)
        return False
    wait_until_exited([pid], time.monotonic() + timeout)
    pid_file.unlink(missing_ok=True)
    url_file.unlink(missing_ok=True)
    return True


def wait_until_exited(pids: list[int], deadline: float) -> None:
    """Wait until every process has exited, or ``time.monotonic()`` reaches ``deadline``."""
    for pid in pids:
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.05)
