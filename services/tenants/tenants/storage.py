"""Tenants and clients in Redis, each write in one transaction with its event.

Key layout (all JSON documents are the API representation plus private fields):

- ``tenants:t:{id}``             the tenant document
- ``tenants:slug:{slug}``        the id owning a slug (slugs stay reserved after deletion)
- ``tenants:index``              sorted set of every tenant id (score 0: ordered by id, and
  ids are ULIDs, so by creation time)
- ``tenants:status:{status}``    the same, per status, for the ``?status=`` filter
- ``tenants:c:{client_id}``      a client document, with ``secret_hash``
- ``tenants:clients:{tenant}``   sorted set of a tenant's client ids

Check-and-set writes (unique slug, version match, status transition) WATCH what they read,
so a concurrent writer makes the transaction fail and it is retried on fresh data.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import orjson
import redis
from ulid import ULID

from aerie import errors
from aerie.auth.revocation import record_revocation
from aerie.events import EventContext, EventPublisher, new_event, utcnow
from aerie.pagination import Page, decode_cursor, encode_cursor
from aerie.redis import RedisProvider
from tenants.domain import CLIENT_CREDENTIALS, hash_secret, new_secret, transition
from tenants.keys import TenantKeys

__all__ = ["ClientStore", "TenantStore"]


def _dump(doc: dict[str, Any]) -> str:
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False)


class TenantStore:
    def __init__(self, redis_provider: RedisProvider, events: EventPublisher) -> None:
        self._redis = redis_provider
        self._events = events
        self._keys = TenantKeys(redis_provider.keyspace)

    def key(self, tenant_id: str) -> str:
        """The tenant document's key, for writes elsewhere that must WATCH the tenant's status."""
        return self._keys.tenant(tenant_id)

    @property
    def _client(self) -> redis.Redis:
        return self._redis.client

    def get(self, tenant_id: str) -> dict[str, Any] | None:
        raw = self._client.get(self._keys.tenant(tenant_id))
        return orjson.loads(raw) if raw else None

    def require(self, tenant_id: str) -> dict[str, Any]:
        tenant = self.get(tenant_id)
        if tenant is None:
            raise errors.not_found()
        return tenant

    def create(self, fields: dict[str, Any], ctx: EventContext) -> dict[str, Any]:
        now = utcnow()
        tenant = {
            "id": f"ten_{ULID()}",
            "slug": fields["slug"],
            "name": fields["name"],
            "plan": fields.get("plan", "free"),
            "status": "active",
            "language": fields.get("language", "en"),
            "created_at": now,
            "updated_at": now,
            "version": 1,
        }
        slug_key = self._keys.slug(tenant["slug"])

        def write(pipe: Any) -> None:
            if pipe.exists(slug_key):
                raise errors.conflict(f"The slug {tenant['slug']!r} is taken.")
            pipe.multi()
            pipe.set(slug_key, tenant["id"])
            pipe.set(self._keys.tenant(tenant["id"]), _dump(tenant))
            pipe.zadd(self._keys.index, {tenant["id"]: 0})
            pipe.zadd(self._keys.status("active"), {tenant["id"]: 0})
            self._events.add(pipe, new_event("tenant.created", tenant["id"], {"tenant": tenant}, ctx), self._keys.shard)

        self._redis.transaction(write, slug_key)
        return tenant

    def list(self, *, status: str | None, limit: int, cursor: str | None) -> Page:
        index = self._keys.status(status) if status else self._keys.index
        after = decode_cursor(cursor, "after") if cursor else None
        start = f"({after}" if after else "-"
        ids = self._client.zrangebylex(index, start, "+", start=0, num=limit + 1)
        more = len(ids) > limit
        ids = ids[:limit]
        docs = self._client.mget([self._keys.tenant(i) for i in ids]) if ids else []
        items = [orjson.loads(d) for d in docs if d]
        next_cursor = encode_cursor({"after": ids[-1]}) if more and ids else None
        return Page(items, next_cursor)

    def update(
        self,
        tenant_id: str,
        changes: dict[str, Any],
        ctx: EventContext,
        *,
        if_match: int | None = None,
        check: Callable[[dict[str, Any]], None] | None = None,
    ) -> dict[str, Any]:
        """Apply ``changes`` if the tenant is at version ``if_match`` (when given)."""
        key = self._keys.tenant(tenant_id)
        result: dict[str, Any] = {}

        def write(pipe: Any) -> None:
            raw = pipe.get(key)
            if raw is None:
                raise errors.not_found()
            tenant = orjson.loads(raw)
            if check:
                check(tenant)
            if tenant["status"] == "deleted":
                raise errors.conflict("A deleted tenant cannot be changed.")
            if if_match is not None and tenant["version"] != if_match:
                raise errors.precondition_failed()
            changed = {k: v for k, v in changes.items() if tenant.get(k) != v}
            if changed:
                tenant.update(changed)
                tenant["version"] += 1
                tenant["updated_at"] = utcnow()
                pipe.multi()
                pipe.set(key, _dump(tenant))
                data = {"tenant": tenant, "changes": sorted(changed)}
                self._events.add(pipe, new_event("tenant.updated", tenant_id, data, ctx), self._keys.shard)
            result.update(tenant)

        self._redis.transaction(write, key)
        return result

    def change_status(
        self, tenant_id: str, action: str, ctx: EventContext, *, on_delete: Callable[[Any, str], None] | None = None
    ) -> dict[str, Any]:
        """Suspend, reactivate or delete; a no-op when already there (no event)."""
        key = self._keys.tenant(tenant_id)
        result: dict[str, Any] = {}
        event_type = {"suspend": "tenant.suspended", "reactivate": "tenant.reactivated", "delete": "tenant.deleted"}[
            action
        ]

        def write(pipe: Any) -> None:
            raw = pipe.get(key)
            if raw is None:
                raise errors.not_found()
            tenant = orjson.loads(raw)
            old = tenant["status"]
            new = transition(action, tenant)
            if new != old:
                tenant.update(status=new, version=tenant["version"] + 1, updated_at=utcnow())
                pipe.multi()
                pipe.set(key, _dump(tenant))
                pipe.zrem(self._keys.status(old), tenant_id)
                pipe.zadd(self._keys.status(new), {tenant_id: 0})
                if on_delete is not None and new == "deleted":
                    on_delete(pipe, tenant_id)
                self._events.add(
                    pipe, new_event(event_type, tenant_id, {"tenant": tenant, "previous": old}, ctx), self._keys.shard
                )
            result.update(tenant)

        watched = [key, self._keys.clients(tenant_id)]
        self._redis.transaction(write, *watched)
        return result


class ClientStore:
    """A tenant's API clients. Secrets are returned once, at creation, and kept only hashed."""

    def __init__(self, redis_provider: RedisProvider, events: EventPublisher, token_ttl_s: int) -> None:
        self._redis = redis_provider
        self._events = events
        self._keys = TenantKeys(redis_provider.keyspace)
        self._revoke_for_s = token_ttl_s + 60

    @property
    def _client(self) -> redis.Redis:
        return self._redis.client

    def get(self, client_id: str) -> dict[str, Any] | None:
        raw = self._client.get(self._keys.client(client_id))
        return orjson.loads(raw) if raw else None

    def create(
        self,
        tenant_id: str,
        name: str,
        scopes: list[str],
        ctx: EventContext,
        grants: list[str] | None = None,
    ) -> tuple[dict[str, Any], str]:
        secret = new_secret()
        client = {
            "client_id": f"cli_{ULID()}",
            "tenant_id": tenant_id,
            "name": name,
            "scopes": sorted(set(scopes)),
            "grants": sorted(set(grants or [CLIENT_CREDENTIALS])),
            "status": "active",
            "created_at": utcnow(),
        }
        stored = {**client, "secret_hash": hash_secret(secret)}
        tenant_key = self._keys.tenant(tenant_id)

        def write(pipe: Any) -> None:
            raw = pipe.get(tenant_key)
            if raw is None:
                raise errors.not_found()
            if orjson.loads(raw)["status"] == "deleted":
                raise errors.conflict("A deleted tenant cannot get new clients.")
            pipe.multi()
            pipe.set(self._keys.client(client["client_id"]), _dump(stored))
            pipe.zadd(self._keys.clients(tenant_id), {client["client_id"]: 0})
            self._events.add(pipe, new_event("client.created", tenant_id, {"client": client}, ctx), self._keys.shard)

        self._redis.transaction(write, tenant_key)
        return client, secret

    def list(self, tenant_id: str, *, limit: int, cursor: str | None) -> Page:
        after = decode_cursor(cursor, "after") if cursor else None
        start = f"({after}" if after else "-"
        ids = self._client.zrangebylex(self._keys.clients(tenant_id), start, "+", start=0, num=limit + 1)
        more = len(ids) > limit
        ids = ids[:limit]
        docs = self._client.mget([self._keys.client(i) for i in ids]) if ids else []
        items = [public_client(orjson.loads(d)) for d in docs if d]
        return Page(items, encode_cursor({"after": ids[-1]}) if more and ids else None)

    def revoke(self, tenant_id: str, client_id: str, ctx: EventContext) -> None:
        key = self._keys.client(client_id)

        def write(pipe: Any) -> None:
            raw = pipe.get(key)
            client = orjson.loads(raw) if raw else None
            if client is None or client["tenant_id"] != tenant_id:
                raise errors.not_found()
            if client["status"] == "revoked":
                return
            pipe.multi()
            self._queue_revocation(pipe, client, ctx)

        self._redis.transaction(write, key)

    def revoke_all_queued(self, pipe: Any, tenant_id: str, ctx: EventContext) -> None:
        """Queue the revocation of every client of a tenant on ``pipe`` (already in MULTI).

        Reads happen on a separate connection: the tenant's client set is WATCHed by the
        caller, so a client created meanwhile aborts the transaction and it is retried.
        """
        ids = self._client.zrange(self._keys.clients(tenant_id), 0, -1)
        docs = self._client.mget([self._keys.client(i) for i in ids]) if ids else []
        for raw in docs:
            if raw:
                client = orjson.loads(raw)
                if client["status"] != "revoked":
                    self._queue_revocation(pipe, client, ctx)

    def _queue_revocation(self, pipe: Any, client: dict[str, Any], ctx: EventContext) -> None:
        client = {**client, "status": "revoked", "revoked_at": utcnow()}
        pipe.set(self._keys.client(client["client_id"]), _dump(client))
        record_revocation(pipe, client["client_id"], time.time() + self._revoke_for_s, self._redis.keyspace)
        data = {"client_id": client["client_id"], "client": public_client(client)}
        self._events.add(pipe, new_event("client.revoked", client["tenant_id"], data, ctx), self._keys.shard)


def public_client(client: dict[str, Any]) -> dict[str, Any]:
    # Clients made before grants existed hold client credentials only.
    return {"grants": [CLIENT_CREDENTIALS], **{k: v for k, v in client.items() if k != "secret_hash"}}
