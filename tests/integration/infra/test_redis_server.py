"""The local redis-server helper against a real redis-server."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import redis

from fraud_platform import redis_server

pytestmark = pytest.mark.integration


def test_start_answers_ping_and_stop_frees_the_port(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("REDIS_URL", raising=False)  # or start() would reuse that server
    server = redis_server.start(root=tmp_path)
    try:
        assert server.url.startswith("redis://127.0.0.1:")
        assert server.pid is not None and server.pid > 0
        client = redis.Redis.from_url(server.url, socket_timeout=2)
        assert client.ping() is True
        assert client.set("infra-test", "1") and client.get("infra-test") == b"1"
        assert (tmp_path / ".run" / "redis" / "url").read_text().strip() == server.url
        again = redis_server.start(root=tmp_path)
        assert again.pid == server.pid, "a second start must reuse the running server"
        assert redis_server.status(root=tmp_path) == server
    finally:
        stopped = redis_server.stop(root=tmp_path)
    assert stopped is True
    assert not redis_server.is_reachable(server.url, timeout=0.5)
    assert redis_server.status(root=tmp_path) is None
    assert not (tmp_path / ".run" / "redis" / "url").exists()
    assert redis_server.stop(root=tmp_path) is False


def test_stop_without_a_server_is_a_no_op(tmp_path: Path) -> None:
    assert redis_server.stop(root=tmp_path) is False
    assert redis_server.status(root=tmp_path) is None


def test_state_survives_a_stop_and_start_on_the_same_port(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("REDIS_URL", raising=False)
    server = redis_server.start(root=tmp_path)
    try:
        client = redis.Redis.from_url(server.url, socket_timeout=2)
        assert client.config_get("appendonly") == {"appendonly": "yes"}
        assert client.config_get("appendfsync") == {"appendfsync": "everysec"}
        client.hset("customer:c1", mapping={"count": 3, "sum": "41.5"})
        client.set("written-last", "just before the stop")
        # An established client connection: after the stop, the server side of it lingers in
        # TIME_WAIT on the server's port (the case that used to push the restart elsewhere).
        assert client.ping()
    finally:
        assert redis_server.stop(root=tmp_path)
    assert not redis_server.is_reachable(server.url)
    again = redis_server.start(root=tmp_path)
    try:
        assert again.url == server.url, "a restart must come back on the recorded port"
        assert again.pid != server.pid
        client = redis.Redis.from_url(again.url, socket_timeout=2)
        assert client.hgetall("customer:c1") == {b"count": b"3", b"sum": b"41.5"}
        assert client.get("written-last") == b"just before the stop"
        assert (tmp_path / ".run" / "redis" / "appendonlydir").is_dir()
    finally:
        redis_server.stop(root=tmp_path)


def test_a_recorded_port_taken_by_someone_else_fails_clearly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("REDIS_URL", raising=False)
    server = redis_server.start(root=tmp_path)
    port = int(server.url.rsplit(":", 1)[1].split("/")[0])
    redis_server.stop(root=tmp_path)
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", port))
        squatter.listen()
        assert not redis_server.port_is_free(port)
        with pytest.raises(redis_server.RedisUnavailableError, match=f"port {port}.*taken"):
            redis_server.start(root=tmp_path)
    assert redis_server.status(root=tmp_path) is None
