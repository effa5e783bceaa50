"""Flag definitions (global) and overrides (per tenant) in Redis, with their events.

Redis is the record; evaluation never reads it (see :mod:`flags.snapshot`). Every write
bumps one global revision in the same ``MULTI`` as the data and its event, and the event
carries that revision in ``data.revision``. Writes are serialized by ``WATCH``-ing the
revision, so revisions are gapless and in commit order: a process that has applied
revision ``n`` knows the next event must be ``n + 1``, and anything else means it missed
one and must reload.

Key layout (a tenant's keys carry its id as a hash tag, like projects'):

- ``flags:definitions``           hash: flag key -> the flag document (JSON, the API's representation)
- ``flags:index``                 sorted set of flag keys, score 0, for paging by key
- ``flags:revision``              the revision of the last write
- ``flags:override-tenants``      set of tenant ids that have (or had) overrides
- ``flags:{<tenant>}:keys``       set of the flag keys that tenant overrides
- ``flags:{<tenant>}:o:<key>``    hash: ``tenant`` -> value, ``user:<user_id>`` -> value (JSON)
- ``flags:last-evaluated``        hash: flag key -> when it was last evaluated (RFC 3339, :mod:`flags.usage`)
- ``flags:schedules``             hash: schedule id -> the scheduled change (JSON, :mod:`flags.schedules`)
- ``flags:schedules:due``         sorted set of pending schedule ids, score their time (epoch ms)
- ``flags:schedules:of:<key>``    sorted set of one flag's schedule ids, score their time

Overrides are only reachable through :class:`TenantOverrides`, built with the tenant id of
the verified token, so one tenant can never name another's keys. Deleting a flag removes
its overrides in every tenant: a flag created again later under the same key starts clean.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import redis

from aerie import errors
from aerie.events import EventContext, EventPublisher, new_event, utcnow
from aerie.pagination import Page, decode_cursor, encode_cursor
from aerie.redis import RedisProvider
from flags.domain import check_override_value
from flags.keys import DEFINITIONS, LAST_EVALUATED, REVISION, SCHEDULES, SCHEDULES_DUE, FlagKeys

__all__ = [
    "DEFINITIONS",
    "LAST_EVALUATED",
    "REVISION",
    "SCHEDULES",
    "SCHEDULES_DUE",
    "FlagStore",
    "Loaded",
    "TenantOverrides",
    "TenantState",
    "read_revision",
    "stage_definition",
]

USER_PREFIX = "user:"
TENANT_FIELD = "tenant"

_TENANT_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
#: Fields of a stored document that a PUT body may carry but that the service owns.
_READ_ONLY = ("key", "version", "created_at", "updated_at", "last_evaluated_at")


def _tenant_id(tenant_id: str) -> str:
    if not _TENANT_ID.match(tenant_id):
        raise ValueError("not a tenant id")
    return tenant_id


def _dump(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def read_revision(pipe: Any, keys: FlagKeys) -> int:
    return int(pipe.get(keys.revision) or 0)


def stage_definition(
    pipe: Any,
    keys: FlagKeys,
    events: EventPublisher,
    key: str,
    old: Mapping[str, Any] | None,
    fields: Mapping[str, Any],
    ctx: EventContext,
    revision: int,
    extra: Mapping[str, Any] | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Queue the write of a flag's new document and its event on ``pipe``, already in ``MULTI``
    with ``DEFINITIONS`` and ``REVISION`` watched; (the document, the event).

    The one way a definition changes, an admin's PUT or a scheduled change: the version goes
    up by one, the global revision becomes ``revision`` (read before ``MULTI``: the last one
    plus one), and ``extra`` joins the event's data.
    """
    now = utcnow()
    doc = {k: v for k, v in fields.items() if k not in _READ_ONLY}
    doc = {
        "key": key,
        **doc,
        "version": old["version"] + 1 if old else 1,
        "created_at": old["created_at"] if old else now,
        "updated_at": now,
    }
    kind = "flag.updated" if old else "flag.created"
    pipe.hset(keys.definitions, key, _dump(doc))
    pipe.zadd(keys.index, {key: 0})
    pipe.set(keys.revision, revision)
    # ``version`` is what evaluations of this document answer as their ``revision``; the
    # event's own ``revision`` orders the whole snapshot (every flag and override).
    data = {"flag": doc, "version": doc["version"], "revision": revision, **(extra or {})}
    event = new_event(kind, None, data, ctx)
    events.add(pipe, event)
    return doc, event


@dataclass
class TenantState:
    """One tenant's overrides: ``tenant`` by flag key, ``users`` by flag key then user id."""

    tenant: dict[str, Any] = field(default_factory=dict)
    users: dict[str, dict[str, Any]] = field(default_factory=dict)

    def put(self, key: str, scope_field: str, value: Any) -> None:
        if scope_field == TENANT_FIELD:
            self.tenant[key] = value
        elif scope_field.startswith(USER_PREFIX):
            self.users.setdefault(key, {})[scope_field[len(USER_PREFIX) :]] = value

    def as_body(self) -> dict[str, Any]:
        return {"tenant": dict(self.tenant), "users": {k: dict(v) for k, v in self.users.items()}}


@dataclass(frozen=True)
class Loaded:
    """Everything, as of (at least) ``revision``: what a process reloads its snapshot from."""

    revision: int
    definitions: dict[str, dict[str, Any]]
    overrides: dict[str, TenantState]


class FlagStore:
    """Definitions, and the reload of everything; the admin's view."""

    def __init__(self, redis_provider: RedisProvider, events: EventPublisher) -> None:
        self._redis = redis_provider
        self._events = events
        self._keys = FlagKeys(redis_provider.keyspace)

    @property
    def _client(self) -> redis.Redis:
        return self._redis.client

    def get(self, key: str) -> dict[str, Any] | None:
        raw = self._client.hget(self._keys.definitions, key)
        return json.loads(raw) if raw else None

    def require(self, key: str) -> dict[str, Any]:
        doc = self.get(key)
        if doc is None:
            raise errors.not_found(f"There is no flag {key!r}.")
        return doc

    def list(self, *, limit: int, cursor: str | None, unused_since: str | None = None) -> Page:
        """A page of definitions by key, each with its ``last_evaluated_at``.

        With ``unused_since`` (RFC 3339 UTC, as :func:`aerie.events.utcnow` writes it) only
        flags not evaluated since then: keys are read in batches until the page is full, so a
        page may have read past many used flags, and its cursor resumes after the last read.
        """
        after = decode_cursor(cursor, "after") if cursor else None
        items: list[dict[str, Any]] = []
        more = False
        while True:
            want = limit + 1 - len(items)
            keys = self._client.zrangebylex(self._keys.index, f"({after}" if after else "-", "+", start=0, num=want)
            if not keys:
                break
            pipe = self._client.pipeline(transaction=False)
            pipe.hmget(self._keys.definitions, keys)
            pipe.hmget(self._keys.last_evaluated, keys)
            docs, used = pipe.execute()
            for raw, last in zip(docs, used, strict=True):
                if raw and (unused_since is None or last is None or last < unused_since):
                    items.append({**json.loads(raw), "last_evaluated_at": last})
            after = keys[-1]
            if len(items) > limit:
                more = True
                break
            if len(keys) < want:
                break
        items = items[:limit]
        return Page(items, encode_cursor({"after": items[-1]["key"]}) if more and items else None)

    def last_evaluated(self, key: str) -> str | None:
        value: str | None = self._client.hget(self._keys.last_evaluated, key)
        return value

    def record_evaluated(self, marks: Mapping[str, str]) -> None:
        """Write ``{key: time}`` as the flags' ``last_evaluated_at`` (:class:`flags.usage.UsageFlusher`)."""
        self._client.hset(self._keys.last_evaluated, mapping=dict(marks))

    def put(
        self, key: str, fields: Mapping[str, Any], ctx: EventContext, *, if_match: int | None = None
    ) -> tuple[dict[str, Any], bool, dict[str, Any]]:
        """Create or replace a flag; (document, created, event). 412 on a stale ``if_match``."""
        result: dict[str, Any] = {}

        def write(pipe: Any) -> None:
            raw = pipe.hget(self._keys.definitions, key)
            old = json.loads(raw) if raw else None
            if if_match is not None and (old is None or old["version"] != if_match):
                raise errors.precondition_failed()
            revision = read_revision(pipe, self._keys) + 1
            pipe.multi()
            doc, event = stage_definition(pipe, self._keys, self._events, key, old, fields, ctx, revision)
            result.update(doc=doc, created=old is None, event=event)

        self._redis.transaction(write, self._keys.definitions, self._keys.revision)
        return result["doc"], result["created"], result["event"]

    def delete(self, key: str, ctx: EventContext, *, if_match: int | None = None) -> dict[str, Any]:
        """Remove a flag and every tenant's overrides of it; the ``flag.deleted`` event."""
        result: dict[str, Any] = {}

        def write(pipe: Any) -> None:
            raw = pipe.hget(self._keys.definitions, key)
            if raw is None:
                raise errors.not_found(f"There is no flag {key!r}.")
            doc = json.loads(raw)
            if if_match is not None and doc["version"] != if_match:
                raise errors.precondition_failed()
            tenants = sorted(pipe.smembers(self._keys.override_tenants))
            scheduled = pipe.zrange(self._keys.schedules_of(key), 0, -1)
            revision = read_revision(pipe, self._keys) + 1
            pipe.multi()
            pipe.hdel(self._keys.definitions, key)
            pipe.hdel(self._keys.last_evaluated, key)
            pipe.zrem(self._keys.index, key)
            if scheduled:  # a flag created again later under this key starts without them
                pipe.hdel(self._keys.schedules, *scheduled)
                pipe.zrem(self._keys.schedules_due, *scheduled)
                pipe.delete(self._keys.schedules_of(key))
            for tenant_id in tenants:
                prefix = self._keys.tenant_prefix(tenant_id)
                pipe.delete(f"{prefix}o:{key}")
                pipe.srem(f"{prefix}keys", key)
            pipe.set(self._keys.revision, revision)
            event = new_event("flag.deleted", None, {"flag": doc, "revision": revision}, ctx)
            self._events.add(pipe, event)
            result["event"] = event

        self._redis.transaction(
            write,
            self._keys.definitions,
            self._keys.revision,
            self._keys.override_tenants,
            self._keys.schedules_of(key),
        )
        return result["event"]

    def load(self) -> Loaded:
        """Everything, for a snapshot reload.

        The revision is read first and the data after, so the data is at least that recent;
        replaying events newer than the revision over it is harmless, because each event
        carries the whole new state of what it changed.
        """
        r = self._client
        revision = int(r.get(self._keys.revision) or 0)
        definitions = {k: json.loads(v) for k, v in r.hgetall(self._keys.definitions).items()}
        tenants = sorted(r.smembers(self._keys.override_tenants))
        pipe = r.pipeline(transaction=False)
        for tenant_id in tenants:
            pipe.smembers(f"{self._keys.tenant_prefix(tenant_id)}keys")
        key_sets = pipe.execute() if tenants else []
        pipe = r.pipeline(transaction=False)
        wanted: list[tuple[str, str]] = []
        for tenant_id, keys in zip(tenants, key_sets, strict=True):
            for key in sorted(keys):
                wanted.append((tenant_id, key))
                pipe.hgetall(f"{self._keys.tenant_prefix(tenant_id)}o:{key}")
        overrides: dict[str, TenantState] = {}
        for (tenant_id, key), stored in zip(wanted, pipe.execute() if wanted else [], strict=True):
            state = overrides.setdefault(tenant_id, TenantState())
            for scope_field, raw in stored.items():
                state.put(key, scope_field, json.loads(raw))
        return Loaded(revision, definitions, overrides)

    def purge_tenant(self, tenant_id: str, ctx: EventContext, cause: Mapping[str, Any]) -> int:
        """Remove a deleted tenant's overrides, each with its ``flag.override.removed`` event.

        The events (in the same transaction, with consecutive revisions) are how every
        process's snapshot forgets the overrides, and how audit records the removal. A
        redelivered ``tenant.deleted`` finds nothing left and publishes nothing.
        """
        prefix = self._keys.tenant_prefix(_tenant_id(tenant_id))
        removed: list[int] = [0]

        def write(pipe: Any) -> None:
            keys = sorted(pipe.smembers(f"{prefix}keys"))
            fields = [(key, field) for key in keys for field in sorted(pipe.hkeys(f"{prefix}o:{key}"))]
            revision = read_revision(pipe, self._keys)
            pipe.multi()
            for key, scope_field in fields:
                revision += 1
                user = scope_field[len(USER_PREFIX) :] if scope_field.startswith(USER_PREFIX) else None
                data = {
                    "key": key,
                    "scope": "tenant" if user is None else "user",
                    **({"user_id": user} if user is not None else {}),
                    "revision": revision,
                    "cause": dict(cause),
                }
                self._events.add(pipe, new_event("flag.override.removed", tenant_id, data, ctx))
            for key in keys:
                pipe.delete(f"{prefix}o:{key}")
            pipe.delete(f"{prefix}keys")
            pipe.srem(self._keys.override_tenants, tenant_id)
            if fields:
                pipe.set(self._keys.revision, revision)
            removed[0] = len(fields)

        self._redis.transaction(write, self._keys.revision, f"{prefix}keys")
        return removed[0]


class TenantOverrides:
    """One tenant's overrides. The tenant id is fixed at construction, from the token."""

    def __init__(self, redis_provider: RedisProvider, tenant_id: str, events: EventPublisher) -> None:
        self._redis = redis_provider
        self.tenant_id = tenant_id
        self._keys = FlagKeys(redis_provider.keyspace)
        self._prefix = self._keys.tenant_prefix(_tenant_id(tenant_id))
        self._events = events

    def set(
        self, key: str, user_id: str | None, value: Any, ctx: EventContext
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """Set the tenant's (``user_id`` None) or one user's override; (the override, event).

        404 when the flag does not exist, 403 when its ``allow_overrides`` does not admit
        this kind of override, 422 when the value is not one the flag can serve.
        """
        scope = "tenant" if user_id is None else "user"
        override = {"key": key, "scope": scope, **({"user_id": user_id} if user_id else {}), "value": value}
        result: dict[str, Any] = {}
        hash_key = f"{self._prefix}o:{key}"

        def write(pipe: Any) -> None:
            raw = pipe.hget(self._keys.definitions, key)
            if raw is None:
                raise errors.not_found(f"There is no flag {key!r}.")
            doc = json.loads(raw)
            allowed = ("user",) if scope == "user" else ("tenant", "user")
            if doc.get("allow_overrides") not in allowed:
                raise errors.forbidden(
                    f"The flag {key!r} allows overrides by: {doc.get('allow_overrides')}; not {scope} overrides."
                )
            check_override_value(value, doc)
            revision = read_revision(pipe, self._keys) + 1
            pipe.multi()
            pipe.hset(hash_key, TENANT_FIELD if user_id is None else USER_PREFIX + user_id, _dump(value))
            pipe.sadd(f"{self._prefix}keys", key)
            pipe.sadd(self._keys.override_tenants, self.tenant_id)
            pipe.set(self._keys.revision, revision)
            event = new_event("flag.override.set", self.tenant_id, {**override, "revision": revision}, ctx)
            self._events.add(pipe, event)
            result["event"] = event

        self._redis.transaction(write, self._keys.definitions, self._keys.revision, hash_key)
        return override, result["event"]

    def remove(self, key: str, user_id: str | None, ctx: EventContext) -> dict[str, Any] | None:
        """Remove an override; its event, or None when there was none to remove (404 if no such flag)."""
        scope_field = TENANT_FIELD if user_id is None else USER_PREFIX + user_id
        hash_key = f"{self._prefix}o:{key}"
        result: dict[str, dict[str, Any] | None] = {"event": None}

        def write(pipe: Any) -> None:
            if not pipe.hexists(self._keys.definitions, key):
                raise errors.not_found(f"There is no flag {key!r}.")
            result["event"] = None
            if not pipe.hexists(hash_key, scope_field):
                return
            revision = read_revision(pipe, self._keys) + 1
            last = pipe.hlen(hash_key) == 1
            pipe.multi()
            pipe.hdel(hash_key, scope_field)
            if last:
                pipe.srem(f"{self._prefix}keys", key)
            pipe.set(self._keys.revision, revision)
            data = {
                "key": key,
                "scope": "tenant" if user_id is None else "user",
                **({"user_id": user_id} if user_id else {}),
                "revision": revision,
            }
            event = new_event("flag.override.removed", self.tenant_id, data, ctx)
            self._events.add(pipe, event)
            result["event"] = event

        self._redis.transaction(write, self._keys.definitions, self._keys.revision, hash_key)
        return result["event"]

    @property
    def _client(self) -> redis.Redis:
        return self._redis.client
