"""Revoked API clients and cut member tokens, known to every process within a second.

The durable record is a sorted set in Redis (member: client id, score: when the last token
the client could hold expires, after which the entry is useless). The tenants service adds
to it in the same transaction as the ``client.revoked`` event; every process keeps an
in-memory copy, loaded when its subscriber (re)connects and updated from the event's live
fan-out, so the check on each request is a set lookup.

A person's tokens are cut the same way, by a floor: tokens of member ``usr_...`` minted
at a ``member_version`` below it are refused. Removing a member or changing their role
raises the floor to the member's new version, so tokens minted before the change stop
working and the next exchange (at the new version) works at once. Floors live in a second
sorted set (member: ``"{member_id} {floor}"``, score: until when it matters) and travel
live on ``member.removed`` / ``member.updated`` events whose data carries ``token_floor``.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

from aerie.auth.principal import Principal
from aerie.keyspace import UNSHARDED, Keyspace
from aerie.pubsub import Subscriber
from aerie.redis import RedisProvider

__all__ = ["MEMBER_FLOORS_KEY", "REVOKED_CLIENTS_KEY", "RevocationList", "record_member_floor", "record_revocation"]

REVOKED_CLIENTS_KEY = "aerie:revoked-clients"
MEMBER_FLOORS_KEY = "aerie:member-token-floors"
REVOCATION_PATTERN = "aerie:event:client.revoked"
MEMBER_PATTERNS = ("aerie:event:member.removed", "aerie:event:member.updated")


def record_revocation(pipe: Any, client_id: str, until: float, keyspace: Keyspace = UNSHARDED) -> None:
    """Queue the durable revocation on ``pipe`` (a Redis transaction pipeline).

    The key is in the platform shard's slot, where the tenants service's writes are.
    """
    key = keyspace.platform.key(REVOKED_CLIENTS_KEY)
    pipe.zadd(key, {client_id: until})
    pipe.zremrangebyscore(key, "-inf", time.time())


def record_member_floor(
    pipe: Any, member_id: str, min_version: int, until: float, keyspace: Keyspace = UNSHARDED
) -> None:
    """Queue on ``pipe`` that ``member_id``'s tokens minted below ``min_version`` are refused.

    ``until`` is when the last such token expires; the entry is dropped after it. The
    event of the same transaction must carry ``member_id`` and ``token_floor`` so running
    processes apply it at once.
    """
    key = keyspace.platform.key(MEMBER_FLOORS_KEY)
    pipe.zadd(key, {f"{member_id} {min_version}": until})
    pipe.zremrangebyscore(key, "-inf", time.time())


class RevocationList:
    def __init__(self, redis: RedisProvider, subscriber: Subscriber) -> None:
        self._redis = redis
        self._revoked: frozenset[str] = frozenset()
        self._floors: dict[str, int] = {}
        self._loaded = False
        self._lock = threading.Lock()
        subscriber.on(REVOCATION_PATTERN, self._on_event)
        for pattern in MEMBER_PATTERNS:
            subscriber.on(pattern, self._on_member_event)
        subscriber.on_connect(self.reload)

    def reload(self) -> None:
        # Read under the lock: an event handled while a stale read is in flight must not be
        # overwritten by it (a request thread reloads while the subscriber handles events).
        with self._lock:
            self._read()

    def _read(self) -> None:  # under self._lock
        now = time.time()
        pipe = self._redis.client.pipeline(transaction=False)  # one round trip for both sets
        platform = self._redis.keyspace.platform
        pipe.zrangebyscore(platform.key(REVOKED_CLIENTS_KEY), now, "+inf")
        pipe.zrangebyscore(platform.key(MEMBER_FLOORS_KEY), now, "+inf")
        members, floor_entries = pipe.execute()
        floors: dict[str, int] = {}
        for entry in floor_entries:
            member_id, _, floor = entry.partition(" ")
            if floor.isdigit():
                floors[member_id] = max(int(floor), floors.get(member_id, 0))
        self._revoked = frozenset(members)
        self._floors = floors
        self._loaded = True

    def _on_event(self, _channel: str, data: str) -> None:
        client_id = (json.loads(data).get("data") or {}).get("client_id")
        if client_id:
            with self._lock:
                self._revoked = self._revoked | {client_id}

    def _on_member_event(self, _channel: str, data: str) -> None:
        event_data = json.loads(data).get("data") or {}
        member_id, floor = event_data.get("member_id"), event_data.get("token_floor")
        if isinstance(member_id, str) and isinstance(floor, int):
            with self._lock:
                # A copy, swapped in whole: request threads read the dict without the lock.
                self._floors = {**self._floors, member_id: max(floor, self._floors.get(member_id, 0))}

    def is_revoked(self, principal: Principal) -> bool:
        if not self._loaded:  # first requests of this process, before the subscriber caught up
            self._load_once()
        if principal.client_id in self._revoked:
            return True
        version = principal.member_version
        return version is not None and version < self._floors.get(principal.subject, 0)

    def _load_once(self) -> None:
        """The first load, by one of the threads that ask at once; the others wait for it.

        A stream mule starts with dozens of streams reconnecting together: each would read
        the set again, and keep a Redis connection for it (``RedisProvider.client``).
        """
        with self._lock:
            if not self._loaded:
                self._read()
