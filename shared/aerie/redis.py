"""One Redis connection pool per process, made lazily after fork."""

from __future__ import annotations

import os
import threading
from dataclasses import replace

import redis

from aerie.config import RedisSettings, Settings

__all__ = ["REDIS_DOWN", "RedisProvider", "pool_for_threads"]

#: The exceptions that mean "Redis is not answering", as opposed to a bad command.
REDIS_DOWN: tuple[type[BaseException], ...] = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)


class RedisProvider:
    """Hands out this process's Redis client, creating it on first use.

    The pool is keyed by the process id, so a provider built in a uWSGI master and used in
    a worker (or any forked child) gets a fresh pool instead of sharing sockets. Clients
    decode responses to ``str``.
    """

    def __init__(self, settings: RedisSettings) -> None:
        self._settings = settings
        self._lock = threading.Lock()
        self._pid: int | None = None
        self._client: redis.Redis | None = None

    @property
    def settings(self) -> RedisSettings:
        return self._settings

    @property
    def client(self) -> redis.Redis:
        client = self._client
        if client is not None and self._pid == os.getpid():
            return client
        with self._lock:
            if self._client is None or self._pid != os.getpid():
                self._client = self._make_client()
                self._pid = os.getpid()
            return self._client

    def _make_client(self) -> redis.Redis:
        s = self._settings
        # A plain pool, not BlockingConnectionPool: each request thread holds at most one
        # connection at a time (subscribers have their own), so with max_connections above
        # uWSGI's threads the pool never runs dry, and the blocking pool's queue and locks
        # cost ~11 us of every command (bench/).
        pool = redis.ConnectionPool.from_url(
            s.url,
            max_connections=s.max_connections,
            socket_connect_timeout=s.connect_timeout,
            socket_timeout=s.read_timeout,
            health_check_interval=30,
            decode_responses=True,
        )
        return redis.Redis(connection_pool=pool)

    def pubsub_client(self) -> redis.Redis:
        """A client for a long-lived subscriber: no read timeout, its own connection."""
        s = self._settings
        return redis.Redis.from_url(
            s.url,
            socket_connect_timeout=s.connect_timeout,
            socket_timeout=None,
            socket_keepalive=True,
            health_check_interval=15,
            decode_responses=True,
        )

    def ping(self) -> bool:
        return bool(self.client.ping())


def pool_for_threads(settings: Settings, threads: int | None) -> Settings:
    """``settings`` with a Redis pool of at least one connection per thread, and some to spare.

    Every uWSGI thread may hold a connection at once (a burst of requests, streams opening
    together); the pool refuses connections beyond its size rather than waiting, which a
    request would see as Redis being down.
    """
    wanted = (threads or 0) + 8
    if settings.redis.max_connections >= wanted:
        return settings
    return replace(settings, redis=replace(settings.redis, max_connections=wanted))
