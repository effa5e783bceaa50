"""Keeping the durable event stream: trimmed only below what every group has acknowledged.

The stream has no length cap: an event is removed only once every consumer group has had
it delivered and acknowledged, so a consumer that is down for a day (audit during an outage)
finds every event it missed. :meth:`StreamJanitor.sweep` computes that point from Redis (each
group's last delivered id, and its oldest pending entry) and trims with ``XTRIM MINID``; a
stream without any group is left whole, since nobody can say what is safe to drop. A stream
longer than ``warn_length`` is not trimmed further for it: :attr:`StreamJanitor.long` says so
(``/ready`` details, logs) and ``aerie_event_stream_length`` shows it.

Consumers that left a group (an instance scaled away, a crashed worker) are removed once idle
for ``consumer_grace_s`` with nothing pending; what they had pending is claimed by the living
members (:class:`aerie.events.StreamConsumer`) after its ``min_idle_ms`` first.

Every worker of every service runs this thread; a short Redis lock lets one sweep at a time.
A sharded deployment (:mod:`aerie.keyspace`) has each shard's stream swept the same way.
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

from aerie.background import Periodic
from aerie.redis import RedisProvider

__all__ = ["LOCK_KEY", "StreamJanitor", "safe_trim_point"]

log = logging.getLogger("aerie.stream_janitor")

LOCK_KEY = "aerie:events:janitor:lock"


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _id(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def _after(entry_id: str) -> str:
    """The smallest id greater than ``entry_id``."""
    ms, seq = _id(entry_id)
    return f"{ms}-{seq + 1}"


def safe_trim_point(groups: list[dict[str, Any]], oldest_pending: dict[str, str | None]) -> str | None:
    """The id below which every group has acknowledged everything, or None (trim nothing).

    For each group: its oldest pending entry when it has one (that one must stay), else the
    id just after the last one delivered to it. The smallest over the groups is safe for all.
    """
    if not groups:
        return None
    points: list[str] = []
    for group in groups:
        name = _text(group["name"])
        pending = oldest_pending.get(name)
        if pending is not None:
            points.append(pending)
        else:
            last = _text(group.get("last-delivered-id") or "0-0")
            if last == "0-0":
                return None  # a group that has read nothing yet needs everything
            points.append(_after(last))
    return min(points, key=_id)


class StreamJanitor(Periodic):
    thread_name = "stream-janitor"

    def __init__(
        self,
        redis_provider: RedisProvider,
        *,
        stream: str | None = None,
        interval_s: float = 30.0,
        warn_length: int = 1_000_000,
        consumer_grace_s: float = 3600.0,
        min_age_s: float = 3600.0,
    ) -> None:
        super().__init__(interval_s, log)
        self._redis = redis_provider
        self._streams = (stream,) if stream is not None else redis_provider.keyspace.streams
        self._warn_length = warn_length
        self._consumer_grace_ms = int(consumer_grace_s * 1000)
        #: Entries younger than this stay whatever the groups acknowledged (a group that joins
        #: late, an operator looking at what just happened).
        self._min_age_ms = int(min_age_s * 1000)
        #: The stream's length when last seen past ``warn_length``, else None.
        self.long: int | None = None
        self._looked_at = 0.0

    def sweep(self) -> dict[str, int]:
        """Trim what every group acknowledged and drop departed consumers, if no other process
        is sweeping; ``{"trimmed", "consumers_removed", "length"}``."""
        r = self._redis.client
        token = uuid.uuid4().hex
        result = {"trimmed": 0, "consumers_removed": 0, "length": 0}
        if not r.set(LOCK_KEY, token, nx=True, ex=max(int(self._interval_s), 10)):
            return result
        try:
            for stream in self._streams:
                for name, value in self._sweep_one(stream).items():
                    result[name] += value
            self._note_length(result["length"])
        finally:
            if r.get(LOCK_KEY) == token:
                r.delete(LOCK_KEY)
        if result["trimmed"] or result["consumers_removed"]:
            log.info("event stream swept", extra=result)
        return result

    def _sweep_one(self, stream: str) -> dict[str, int]:
        r = self._redis.client
        result = {"trimmed": 0, "consumers_removed": 0, "length": 0}
        if not r.exists(stream):
            return result
        groups = r.xinfo_groups(stream)
        oldest: dict[str, str | None] = {}
        for group in groups:
            name = _text(group["name"])
            summary = r.xpending(stream, name)
            oldest[name] = _text(summary["min"]) if summary and summary.get("pending") else None
            result["consumers_removed"] += self._drop_departed(stream, name)
        point = safe_trim_point(groups, oldest)
        if point is not None:
            floor = f"{int(time.time() * 1000) - self._min_age_ms}-0"
            point = min(point, floor, key=_id)
            result["trimmed"] = int(r.execute_command("XTRIM", stream, "MINID", point))
        result["length"] = int(r.xlen(stream))
        return result

    def _drop_departed(self, stream: str, group: str) -> int:
        r = self._redis.client
        removed = 0
        for consumer in r.xinfo_consumers(stream, group):
            idle = int(consumer.get("inactive", consumer.get("idle", 0)) or 0)
            if int(consumer.get("pending") or 0) == 0 and idle > self._consumer_grace_ms:
                r.xgroup_delconsumer(stream, group, _text(consumer["name"]))
                removed += 1
        return removed

    def _note_length(self, length: int) -> None:
        was = self.long
        self.long = length if length > self._warn_length else None
        if self.long is not None and was is None:
            log.warning(
                "event stream past its threshold: a consumer group is behind, nothing unacknowledged is dropped",
                extra={"length": length, "threshold": self._warn_length},
            )

    def ready_detail(self) -> str | None:
        """For ``/ready``: why the stream is long, or None while it is not.

        Every process answers probes, but one sweeps: each looks at the length itself, at
        most every 10 s (one ``XLEN``), so a probe costs no Redis call in between.
        """
        now = time.monotonic()
        if now - self._looked_at >= 10.0:
            self._looked_at = now
            r = self._redis.client
            self._note_length(sum(int(r.xlen(stream)) for stream in self._streams))
        if self.long is None:
            return None
        return f"event stream holds {self.long} entries (threshold {self._warn_length}): a consumer is behind"

    tick = sweep
