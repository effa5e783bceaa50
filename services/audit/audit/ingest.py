"""From the durable event stream into the trails: every event becomes exactly one entry.

The audit service reads ``aerie:events`` as consumer group ``audit`` (created from the
stream's beginning, so events published while audit was down, or before it first ran, are
recorded when it starts). :class:`aerie.events.StreamConsumer` in batch mode hands over one
read at a time; the events are split by trail and each trail's share is appended in one
transaction that also dedupes by event id (:meth:`audit.trail.Trail.append`); an event
that belongs in two trails (``token.denied`` of a tenant: :func:`audit.entry.trails_of`)
is in both shares, and each trail dedupes it on its own. Only then
does the consumer acknowledge the read. A crash between commit and ack redelivers events
that are already recorded, and the dedupe skips them; entries a dead consumer left pending
are reclaimed by the survivors after ``reclaim_idle_ms``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aerie.events import StreamConsumer, utcnow
from aerie.redis import RedisProvider
from audit.entry import entry_from_event, trails_of
from audit.trail import Trail

__all__ = ["GROUP", "Ingestor", "consumer"]

GROUP = "audit"


class Ingestor:
    """The batch handler: events of one stream read, appended per trail."""

    def __init__(self, redis_provider: RedisProvider, clock: Callable[[], str] = utcnow) -> None:
        self._redis = redis_provider
        self._clock = clock

    def __call__(self, batch: list[tuple[str, dict[str, Any]]]) -> None:
        now = self._clock()
        by_trail: dict[str | None, list[dict[str, Any]]] = {}
        for _entry_id, event in batch:
            tenant_id, entry = entry_from_event(event, now)
            for trail in trails_of(tenant_id, entry):
                by_trail.setdefault(trail, []).append(entry)
        for tenant_id, entries in by_trail.items():
            Trail(self._redis, tenant_id).append(entries, self._clock)


def consumer(
    redis_provider: RedisProvider, *, batch: int, reclaim_idle_ms: int, block_ms: int = 1000
) -> StreamConsumer:
    return StreamConsumer(
        redis_provider,
        group=GROUP,
        batch_handler=Ingestor(redis_provider),
        batch=batch,
        min_idle_ms=reclaim_idle_ms,
        block_ms=block_ms,
    )
