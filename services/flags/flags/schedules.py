"""Scheduled flag changes: a change to a flag's definition, applied at a given time.

A schedule names a flag, a time (``at``) and ``changes``, any of ``enabled``, ``rollout``,
``rules``, ``default`` and ``variants``. At its time the changes are merged into the flag's
definition *as it is then*, checked as a PUT would be, and written as a new version through
:func:`flags.storage.stage_definition`, so the ``flag.updated`` event, the snapshot and the
audit trail see an ordinary change, recorded with the person or client who scheduled it. A
step-by-step rollout is several schedules of ``rollout``.

Every worker of every instance runs a :class:`ScheduleRunner`; each change is applied once
because the apply is one ``WATCH``/``MULTI`` transaction that also removes the schedule from
the due set: a second runner finds it gone. Schedules live in Redis, so restarts lose none,
and one due while every instance was down is applied by the first runner up. A change that
no longer fits the flag (its variants changed meanwhile, say) is not applied: the schedule
becomes ``failed`` with the reasons, and ``flag.schedule.failed`` is published.

Keys (see :mod:`flags.storage`): ``flags:schedules`` (id -> schedule), ``flags:schedules:due``
(pending ids by time) and ``flags:schedules:of:<key>`` (one flag's ids by time).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import redis
from ulid import ULID

from aerie import errors
from aerie.background import Periodic
from aerie.events import EventContext, EventPublisher, new_event, utcnow
from aerie.redis import RedisProvider
from aerie_client.flags.operators import parse_timestamp
from flags.domain import definition_problems
from flags.keys import FlagKeys
from flags.storage import read_revision, stage_definition

__all__ = [
    "CHANGEABLE",
    "MAX_AHEAD",
    "MAX_KEPT_DONE",
    "MAX_PENDING",
    "ScheduleRunner",
    "Schedules",
]

log = logging.getLogger("flags.schedules")

#: The fields a schedule may change (docs/api.md); the rest of the definition is kept as it is then.
CHANGEABLE = ("enabled", "rollout", "rules", "default", "variants")
#: Pending schedules per flag.
MAX_PENDING = 100
#: Applied, failed or cancelled schedules kept per flag (oldest go first), for the history.
MAX_KEPT_DONE = 100
#: How far ahead a change may be scheduled.
MAX_AHEAD = timedelta(days=366)

PENDING, APPLIED, FAILED = "pending", "applied", "failed"


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def _dump(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _prefixed(problems: list[dict[str, str]], changes: Mapping[str, Any]) -> list[dict[str, str]]:
    """Problems of a merged definition, named as the request names them (``changes.rules.0.serve``)."""
    return [{**p, "field": f"changes.{p['field']}"} if p["field"].split(".", 1)[0] in changes else p for p in problems]


class Schedules:
    """The schedules of every flag, and their application; the platform admin's view."""

    def __init__(
        self,
        redis_provider: RedisProvider,
        events: EventPublisher,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._redis = redis_provider
        self._events = events
        self._keys = FlagKeys(redis_provider.keyspace)
        self._clock = clock

    @property
    def _client(self) -> redis.Redis:
        return self._redis.client

    def create(self, key: str, at: str, changes: Mapping[str, Any], ctx: EventContext) -> dict[str, Any]:
        """Schedule ``changes`` of flag ``key`` for ``at``; the schedule (status ``pending``).

        404 without such a flag; 422 when ``at`` is past or too far ahead, when the changes
        would make the current definition invalid, or when the flag has too many pending.
        """
        moment = parse_timestamp(at)
        if moment is None:  # the schema checked the shape; a time zone is still required
            raise errors.validation_error([{"field": "at", "message": "must be an RFC 3339 time with a time zone"}])
        now = self._clock()
        if moment <= now:
            raise errors.validation_error([{"field": "at", "message": f"must be in the future (now is {_iso(now)})"}])
        if moment - now > MAX_AHEAD:
            raise errors.validation_error([{"field": "at", "message": "must be at most 366 days ahead"}])
        schedule = {
            "id": f"sch_{ULID()}",
            "key": key,
            "at": _iso(moment),
            "changes": dict(changes),
            "status": PENDING,
            "created_at": utcnow(),
            "created_by": dict(ctx.actor) if ctx.actor else None,
            "context": {"request_id": ctx.request_id, "ip": ctx.ip, "user_agent": ctx.user_agent},
        }
        of_key = self._keys.schedules_of(key)

        def write(pipe: Any) -> None:
            raw = pipe.hget(self._keys.definitions, key)
            if raw is None:
                raise errors.not_found(f"There is no flag {key!r}.")
            problems = definition_problems(key, {**json.loads(raw), **changes})
            if problems:
                raise errors.validation_error(
                    _prefixed(problems, changes), detail="The flag with these changes would be invalid."
                )
            ids = pipe.zrange(of_key, 0, -1)
            stored = [json.loads(s) for s in pipe.hmget(self._keys.schedules, ids) if s] if ids else []
            if sum(1 for s in stored if s["status"] == PENDING) >= MAX_PENDING:
                raise errors.validation_error(
                    [{"field": "at", "message": f"the flag already has {MAX_PENDING} pending changes"}]
                )
            done = [s["id"] for s in stored if s["status"] != PENDING]
            dropped = done[: max(0, len(done) - MAX_KEPT_DONE + 1)]
            pipe.multi()
            if dropped:
                pipe.hdel(self._keys.schedules, *dropped)
                pipe.zrem(of_key, *dropped)
            pipe.hset(self._keys.schedules, schedule["id"], _dump(schedule))
            pipe.zadd(self._keys.schedules_due, {schedule["id"]: _ms(moment)})
            pipe.zadd(of_key, {schedule["id"]: _ms(moment)})
            self._events.add(pipe, new_event("flag.schedule.created", None, {"key": key, "schedule": schedule}, ctx))

        self._redis.transaction(write, self._keys.definitions, of_key)
        return schedule

    def list(self, key: str) -> list[dict[str, Any]]:
        """The flag's schedules by time, pending and done (404 without such a flag)."""
        if not self._client.hexists(self._keys.definitions, key):
            raise errors.not_found(f"There is no flag {key!r}.")
        ids = self._client.zrange(self._keys.schedules_of(key), 0, -1)
        return [json.loads(s) for s in self._client.hmget(self._keys.schedules, ids) if s] if ids else []

    def cancel(self, key: str, schedule_id: str, ctx: EventContext) -> None:
        """Cancel a pending schedule: 404 when the flag has none of that id, 409 when it is done."""
        of_key = self._keys.schedules_of(key)

        def write(pipe: Any) -> None:
            raw = pipe.hget(self._keys.schedules, schedule_id)
            schedule = json.loads(raw) if raw else None
            if schedule is None or schedule["key"] != key:
                raise errors.not_found(f"The flag {key!r} has no scheduled change {schedule_id!r}.")
            if schedule["status"] != PENDING:
                raise errors.conflict(f"The change was {schedule['status']}; only a pending change can be cancelled.")
            pipe.multi()
            pipe.hdel(self._keys.schedules, schedule_id)
            pipe.zrem(self._keys.schedules_due, schedule_id)
            pipe.zrem(of_key, schedule_id)
            data = {"key": key, "schedule_id": schedule_id, "at": schedule["at"]}
            self._events.add(pipe, new_event("flag.schedule.cancelled", None, data, ctx))

        self._redis.transaction(write, self._keys.schedules, self._keys.schedules_due)

    def due(self, limit: int = 20) -> list[str]:
        """Ids of pending schedules whose time has come, oldest first."""
        return list(
            self._client.zrangebyscore(self._keys.schedules_due, "-inf", _ms(self._clock()), start=0, num=limit)
        )

    def apply(self, schedule_id: str) -> dict[str, Any] | None:
        """Apply one due schedule, unless another process did; the ``flag.*`` event written, if any."""
        now_ms = _ms(self._clock())
        result: dict[str, Any] = {}

        def write(pipe: Any) -> None:
            result.clear()
            score = pipe.zscore(self._keys.schedules_due, schedule_id)
            if score is None or score > now_ms:
                return  # applied or cancelled meanwhile, or not due
            raw = pipe.hget(self._keys.schedules, schedule_id)
            schedule = json.loads(raw) if raw else None
            doc_raw = pipe.hget(self._keys.definitions, schedule["key"]) if schedule else None
            if schedule is None or doc_raw is None:  # its flag was deleted meanwhile
                pipe.multi()
                pipe.zrem(self._keys.schedules_due, schedule_id)
                return
            key, changes = schedule["key"], schedule["changes"]
            old = json.loads(doc_raw)
            merged = {**old, **changes}
            problems = definition_problems(key, merged)
            saved = schedule.get("context") or {}
            ctx = EventContext(
                actor=schedule.get("created_by"),
                request_id=saved.get("request_id"),
                ip=saved.get("ip"),
                user_agent=saved.get("user_agent"),
            )
            revision = read_revision(pipe, self._keys) + 1
            pipe.multi()
            pipe.zrem(self._keys.schedules_due, schedule_id)
            if problems:
                schedule.update(status=FAILED, failed_at=utcnow(), errors=problems)
                data = {"key": key, "schedule_id": schedule_id, "errors": problems}
                event = new_event("flag.schedule.failed", None, data, ctx)
                self._events.add(pipe, event)
            else:
                extra = {"schedule_id": schedule_id, "scheduled_at": schedule["at"]}
                doc, event = stage_definition(pipe, self._keys, self._events, key, old, merged, ctx, revision, extra)
                schedule.update(status=APPLIED, applied_at=doc["updated_at"], version=doc["version"])
            pipe.hset(self._keys.schedules, schedule_id, _dump(schedule))
            result["event"] = event

        self._redis.transaction(
            write, self._keys.schedules_due, self._keys.schedules, self._keys.definitions, self._keys.revision
        )
        return result.get("event")


class ScheduleRunner(Periodic):
    """This process's thread that applies due schedules, ``interval_s`` apart.

    ``applied`` receives each ``flag.*`` event written (the process's snapshot applies it at
    once, as it does its own PUTs). While Redis is down it waits and tries again: nothing is
    lost, since the schedules stay due until one runner applies them.
    """

    thread_name = "flags-schedules"

    def __init__(
        self,
        schedules: Schedules,
        applied: Callable[[Mapping[str, Any]], None],
        *,
        interval_s: float = 0.25,
    ) -> None:
        super().__init__(interval_s, log)
        self._schedules = schedules
        self._applied = applied

    def run_once(self) -> int:
        """Apply what is due now; how many flag changes (or failures) were written."""
        written = 0
        for schedule_id in self._schedules.due():
            event = self._schedules.apply(schedule_id)
            if event is not None:
                written += 1
                if event["type"] == "flag.updated":
                    self._applied(event)
                    log.info("scheduled flag change applied", extra={"schedule_id": schedule_id})
                else:
                    log.warning("scheduled flag change failed", extra={"schedule_id": schedule_id})
        return written

    tick = run_once
