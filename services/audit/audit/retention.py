"""Retention: entries recorded more than ``AUDIT_RETENTION_DAYS`` ago are removed, oldest first.

Each trim moves the trail's checkpoint to the last removed entry (see
:meth:`audit.trail.Trail.trim_before`), so the retained chain still verifies. Every worker
runs this thread, but a short Redis lock lets one process sweep at a time; a sweep visits
every trail in ``audit:trails``. Trails are never removed whole: a deleted tenant's trail is
the record of its offboarding and ages out like any other.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from aerie.background import Periodic
from aerie.redis import RedisProvider
from audit.trail import TRAILS_KEY, Trail

__all__ = ["Retention"]

log = logging.getLogger("audit.retention")

LOCK_KEY = "audit:retention:lock"


class Retention(Periodic):
    thread_name = "audit-retention"

    def __init__(
        self,
        redis_provider: RedisProvider,
        days: int,
        *,
        interval_s: float = 300.0,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        super().__init__(interval_s, log)
        self._redis = redis_provider
        self._days = days
        self._clock = clock

    def cutoff(self) -> str:
        moment = self._clock() - timedelta(days=self._days)
        return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")

    def sweep(self) -> int:
        """Trim every trail once, if no other process is sweeping; how many entries went."""
        r = self._redis.client
        token = uuid.uuid4().hex
        if not r.set(LOCK_KEY, token, nx=True, ex=max(int(self._interval_s), 60)):
            return 0
        removed = 0
        cutoff = self.cutoff()
        try:
            for name in r.sscan_iter(TRAILS_KEY, count=500):
                removed += Trail.from_name(self._redis, name).trim_before(cutoff)
        finally:
            if r.get(LOCK_KEY) == token:
                r.delete(LOCK_KEY)
        if removed:
            log.info("audit entries past retention removed", extra={"removed": removed, "cutoff": cutoff})
        return removed

    tick = sweep
