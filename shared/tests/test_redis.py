"""The Redis provider: one connection per thread, and what happens to it when Redis goes away."""

from __future__ import annotations

import os
import threading

import pytest
import redis

from aerie.config import RedisSettings
from aerie.redis import RedisProvider, ThreadClient, pool_for_threads


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


def test_the_thread_client_parses_like_the_library(redis_url: str) -> None:
    """Its own path still runs redis-py's response callbacks and raises its errors."""
    provider = RedisProvider(RedisSettings(url=redis_url))
    r = provider.client
    assert isinstance(r, ThreadClient)
    r.delete("h", "s")
    r.hset("h", mapping={"a": "1", "b": "2"})
    assert r.hgetall("h") == {"a": "1", "b": "2"}  # a callback: a flat reply made a dict
    assert r.set("s", "v", nx=True) is True and r.set("s", "w", nx=True) is None
    r.delete("z")
    r.zadd("z", {"a": 1.5})
    assert r.zrange("z", 0, -1, withscores=True) == [("a", 1.5)]  # the callback gets the options
    assert isinstance(r.dump("s"), bytes)  # NEVER_DECODE: the library's own path
    with pytest.raises(redis.exceptions.ResponseError):
        r.incr("h")  # WRONGTYPE: the whole error reply is read, the connection stays in step
    with pytest.raises(redis.exceptions.NoScriptError):
        r.evalsha("0" * 40, 0)
    assert r.get("s") == "v"


def test_another_thread_takes_the_librarys_locked_path(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A client handed to a second thread by mistake must not interleave replies on its socket."""
    provider = RedisProvider(RedisSettings(url=redis_url))
    mine = provider.client
    mine.set("k", "v")
    locked: list[tuple[object, ...]] = []
    stock = redis.Redis.execute_command

    def spy(self: redis.Redis, *args: object, **options: object) -> object:
        locked.append(args)
        return stock(self, *args, **options)

    monkeypatch.setattr(redis.Redis, "execute_command", spy)
    assert mine.get("k") == "v"
    assert locked == []  # the owner's own path
    seen: list[object] = []
    t = threading.Thread(target=lambda: seen.append(mine.get("k")))
    t.start()
    t.join()
    assert seen == ["v"] and locked == [("GET", "k")]
