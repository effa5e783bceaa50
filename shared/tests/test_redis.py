"""The Redis provider: one connection per thread, and what happens to it when Redis goes away."""

from __future__ import annotations

import os
import threading

import redis

from aerie.config import RedisSettings
from aerie.redis import RedisProvider, pool_for_threads


def test_a_thread_keeps_its_own_connection(redis_url: str) -> None:
    provider = RedisProvider(RedisSettings(url=redis_url))
    mine = provider.client
    assert provider.client is mine
    assert mine.client_id() == mine.client_id()  # the same connection, command after command
    theirs: list[redis.Redis] = []
    t = threading.Thread(target=lambda: theirs.append(provider.client))
    t.start()
    t.join()
    assert theirs[0] is not mine and theirs[0].client_id() != mine.client_id()


def test_a_connection_the_server_closed_is_replaced_before_use(redis_url: str) -> None:
    """As after a Redis restart: the thread's next command reconnects instead of failing once."""
    provider = RedisProvider(RedisSettings(url=redis_url))
    provider.client.set("k", "v")
    killer = redis.Redis.from_url(redis_url)
    assert killer.client_kill_filter(_id=provider.client.client_id()) == 1
    assert provider.client.get("k") == "v"


def test_a_forked_child_makes_its_own_pool(redis_url: str) -> None:
    provider = RedisProvider(RedisSettings(url=redis_url))
    parent_id = provider.client.client_id()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: a uWSGI worker after the master's fork
        os.close(read)
        os.write(write, str(provider.client.client_id()).encode())
        os._exit(0)
    os.close(write)
    child_id = int(os.read(read, 64))
    os.waitpid(pid, 0)
    assert child_id != parent_id
    assert provider.client.client_id() == parent_id


def test_the_pool_has_two_connections_per_thread() -> None:
    from aerie.config import Settings

    settings = Settings.from_env("projects", {"REDIS_URL": "redis://127.0.0.1:1/0", "AERIE_ISSUER": "http://t"})
    assert pool_for_threads(settings, 96).redis.max_connections == 2 * 96 + 8
    assert pool_for_threads(settings, 2).redis.max_connections == settings.redis.max_connections  # the default is more
