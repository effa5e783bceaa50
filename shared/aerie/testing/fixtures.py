"""Pytest fixtures: a real redis-server per test session, emptied before each test.

Load with ``pytest_plugins = ["aerie.testing.fixtures"]`` in a conftest.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from aerie.config import RedisSettings
from aerie.local.redis_server import RedisServer
from aerie.redis import RedisProvider


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(Path(tmp_path_factory.mktemp("redis")), appendonly=False)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    client.close()
    return redis_server.url


@pytest.fixture
def redis_provider(redis_url: str) -> RedisProvider:
    return RedisProvider(RedisSettings(url=redis_url))
