"""The local redis-server helper against a real redis-server."""

from __future__ import annotations

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
