"""Where each project event sits in the durable stream, so ``Last-Event-ID`` can resume.

SSE ``id:`` is the event id (``evt_<ULID>``), but resuming reads the durable stream, which
is ordered by entry id (``<ms>-<seq>``, Redis's clock at ``XADD``). The two cannot be
derived from each other: the ULID's time is the writer's clock, taken before its
transaction, and concurrent writers commit out of ULID order.

So every project event also records its position, in the very ``MULTI`` that writes the
project and the event: :class:`PositionedPublisher` queues the shared publisher's ``XADD``
and ``PUBLISH``, then a small script that reads the entry just added (nothing else can run
between the commands of a ``MULTI``, so the stream's last entry is this event's) and puts
the event id into the tenant's sorted set ``projects:{<tenant>}:events`` scored by the
entry's millisecond. A committed event therefore always has its position, and a position
never exists without its event. The set keeps the tenant's newest :data:`KEEP` events;
resuming from an older one is "unknown" (see :mod:`projects.event_stream`).

:class:`EventPositions` answers the reads: the entry id of an event id (the score gives the
millisecond; the few entries of that millisecond are searched for the id), and the stream's
last entry with the tenant's newest event, read atomically.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import redis

from aerie.events import EventPublisher
from aerie.keyspace import UNSHARDED, Keyspace, Shard
from aerie.redis import RedisProvider
from projects.storage import tenant_prefix

__all__ = ["KEEP", "EventPositions", "PositionedPublisher", "Start", "positions_key"]

#: How many of a tenant's newest events can be resumed from.
KEEP = 10_000

_RECORD = """
local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)[1][1]
redis.call('ZADD', KEYS[2], string.match(last, '^(%d+)-'), ARGV[1])
redis.call('ZREMRANGEBYRANK', KEYS[2], 0, -(tonumber(ARGV[2]) + 1))
return last
"""


def positions_key(tenant_id: str, keyspace: Keyspace = UNSHARDED) -> str:
    return f"{tenant_prefix(tenant_id, keyspace)}events"


class PositionedPublisher(EventPublisher):
    """The shared publisher, plus the event's stream position in the same transaction."""

    def __init__(self, keyspace: Keyspace = UNSHARDED, keep: int = KEEP) -> None:
        super().__init__(keyspace)
        self._keep = keep

    def add(self, pipe: Any, event: Mapping[str, Any], shard: Shard | None = None) -> None:
        super().add(pipe, event, shard)
        tenant_id = event.get("tenant_id")
        if tenant_id:
            # EVAL, not EVALSHA: inside MULTI a missing script fails only that command at
            # EXEC, and the write would commit without its position.
            stream = self.keyspace.of_tenant(tenant_id).stream
            pipe.execute_command(
                "EVAL", _RECORD, 2, stream, positions_key(tenant_id, self.keyspace), event["id"], self._keep
            )

    def publish(self, redis_client: Any, event: Mapping[str, Any], shard: Shard | None = None) -> str:
        """The event and its position, in one transaction (two scripts)."""
        pipe = redis_client.pipeline(transaction=True)
        self.add(pipe, event, shard)
        pipe.execute()
        return self.stream_for(event, shard)


@dataclass(frozen=True)
class Start:
    """Where a new stream starts: the stream's end, and the tenant's newest event before it."""

    last_entry: str
    newest_event: str | None


class EventPositions:
    def __init__(self, redis_provider: RedisProvider) -> None:
        self._redis = redis_provider
        self._keyspace = redis_provider.keyspace

    def stream(self, tenant_id: str) -> str:
        """The stream shard holding ``tenant_id``'s events."""
        return self._keyspace.of_tenant(tenant_id).stream

    def _key(self, tenant_id: str) -> str:
        return positions_key(tenant_id, self._keyspace)

    @property
    def client(self) -> redis.Redis:
        return self._redis.client

    def start(self, tenant_id: str) -> Start:
        pipe = self._redis.client.pipeline(transaction=True)
        pipe.xrevrange(self.stream(tenant_id), "+", "-", count=1)
        pipe.zrange(self._key(tenant_id), -1, -1)
        last, newest = pipe.execute()
        return Start(last[0][0] if last else "0-0", newest[0] if newest else None)

    def entry_of(self, tenant_id: str, event_id: str) -> str | None:
        """The stream entry of this tenant's event, or None if unknown or trimmed away."""
        r = self._redis.client
        ms = r.zscore(self._key(tenant_id), event_id)
        if ms is None:
            return None
        for entry_id, fields in r.xrange(self.stream(tenant_id), f"{int(ms)}-0", f"{int(ms)}-18446744073709551615"):
            if fields.get("tenant_id") == tenant_id and _event_id(fields) == event_id:
                return entry_id
        return None

    def recent(self, tenant_id: str, count: int) -> list[str]:
        """The tenant's newest ``count`` event ids."""
        return self._redis.client.zrange(self._key(tenant_id), -count, -1)


def _event_id(fields: Mapping[str, str]) -> str | None:
    try:
        return json.loads(fields["event"])["id"]
    except (KeyError, TypeError, ValueError):
        return None
