"""Redis Cluster key placement and the cluster settings, without a server."""

from __future__ import annotations

import random

import pytest
from redis.crc import key_slot

from feature_engine.online.redis_layout import colocated_key
from fraud_platform.settings import Settings, feast_environment, redis_cluster_nodes


@pytest.mark.parametrize("seed", range(3))
def test_colocated_key_lands_in_the_anchors_slot(seed: int) -> None:
    rng = random.Random(seed)
    anchors = [rng.randbytes(rng.randint(1, 60)) for _ in range(2000)]
    anchors += [b"a{b}c", b"{}x", b"x{", b"}{y}", b"{" + rng.randbytes(8) + b"}z"]  # hash tags
    for anchor in anchors:
        key = colocated_key(anchor, "fraud_platform:label_seen:t1")
        assert key_slot(key) == key_slot(anchor), anchor
        assert key.endswith(b"fraud_platform:label_seen:t1")


def test_cluster_mode_reaches_feast_as_redis_cluster_with_startup_nodes() -> None:
    settings = Settings(
        redis_mode="cluster", redis_url="redis://:s3cret@10.0.0.1:7000,10.0.0.2:7001"
    )
    env = feast_environment(settings)
    assert env["REDIS_TYPE"] == "redis_cluster"
    assert env["REDIS_CONNECTION_STRING"] == "10.0.0.1:7000,10.0.0.2:7001,password=s3cret"
    single = feast_environment(Settings(redis_url="redis://127.0.0.1:6390/2"))
    assert single["REDIS_TYPE"] == "redis"
    assert single["REDIS_CONNECTION_STRING"] == "127.0.0.1:6390,db=2"


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("http://h:1", "must look like"),
        ("redis://h:1/3", "only database 0"),
        ("redis://h:1,nohost", "is not host:port"),
        ("redis://h:x", "is not host:port"),
    ],
)
def test_bad_cluster_urls_are_refused_naming_the_problem(url: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        redis_cluster_nodes(url)
