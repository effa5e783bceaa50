"""Revoked API clients, known to every process within a second of the revocation.

The durable record is a sorted set in Redis (member: client id, score: when the last token
the client could hold expires, after which the entry is useless). The tenants service adds
to it in the same transaction as the ``client.revoked`` event; every process keeps an
in-memory copy, loaded when its subscriber (re)connects and updated from the event's live
fan-out, so the check on each request is a set lookup.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

from aerie.auth.principal import Principal
from aerie.pubsub import Subscriber
from aerie.redis import RedisProvider

__all__ = ["REVOKED_CLIENTS_KEY", "RevocationList", "record_revocation"]

REVOKED_CLIENTS_KEY = "aerie:revoked-clients"
REVOCATION_PATTERN = "aerie:event:client.revoked"


def record_revocation(pipe: Any, client_id: str, until: float) -> None:
    """Queue the durable revocation on ``pipe`` (a Redis transaction pipeline)."""
    pipe.zadd(REVOKED_CLIENTS_KEY, {client_id: until})
    pipe.zremrangebyscore(REVOKED_CLIENTS_KEY, "-inf", time.time())


class RevocationList:
    def __init__(self, redis: RedisProvider, subscriber: Subscriber) -> None:
        self._redis = redis
        self._revoked: frozenset[str] = frozenset()
        self._loaded = False
        self._lock = threading.Lock()
        subscriber.on(REVOCATION_PATTERN, self._on_event)
        subscriber.on_connect(self.reload)

    def reload(self) -> None:
        # Read under the lock: an event handled while a stale read is in flight must not be
        # overwritten by it (a request thread reloads while the subscriber handles events).
        with self._lock:
            self._read()

    def _read(self) -> None:  # under self._lock
        members = self._redis.client.zrangebyscore(REVOKED_CLIENTS_KEY, time.time(), "+inf")
        self._revoked = frozenset(members)
        self._loaded = True

    def _on_event(self, _channel: str, data: str) -> None:
        client_id = (json.loads(data).get("data") or {}).get("client_id")
        if client_id:
            with self._lock:
                self._revoked = self._revoked | {client_id}

    def is_revoked(self, principal: Principal) -> bool:
        if not self._loaded:  # first requests of this process, before the subscriber caught up
            self._load_once()
        return principal.client_id in self._revoked

    def _load_once(self) -> None:
        """The first load, by one of the threads that ask at once; the others wait for it.

        A stream mule starts with dozens of streams reconnecting together: each would read
        the set again, and keep a Redis connection for it (``RedisProvider.client``).
        """
        with self._lock:
            if not self._loaded:
                self._read()
