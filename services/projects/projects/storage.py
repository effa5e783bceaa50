"""Projects in Redis, reachable only through a repository bound to one tenant.

Tenant isolation is structural: :class:`ProjectRepository` is built with the tenant id
taken from the verified token and every key it touches is derived from that id, so another
tenant's project id, slug or cursor position simply names a key that does not exist and
behaves exactly like a missing one. The one way to act across tenants is
:class:`UnsafeAllTenants` (grep for ``Unsafe``), used only by the tenant-deletion cascade.

Key layout (the tenant id sits in a hash tag, so one tenant's keys share a Redis Cluster
slot and its multi-key transactions stay legal):

- ``projects:{<tenant>}:p:<id>``         the project document (JSON, the API representation)
- ``projects:{<tenant>}:slug:<slug>``    the id owning a slug (freed when renamed or deleted)
- ``projects:{<tenant>}:index``          sorted set of the tenant's project ids, score 0:
  ordered by id, and ids are ULIDs, so by creation time; cursors hold the last id seen
- ``projects:{<tenant>}:status:<status>`` the same, per status, for ``?status=``
- ``projects:{<tenant>}:deleted``        tombstone of a deleted tenant, set before its other
  keys are removed; creates WATCH and check it, so none can slip in during or after a purge

Check-and-set writes (unique slug, If-Match version) WATCH what they read; a concurrent
writer makes ``EXEC`` fail, the transaction is retried on fresh data and then sees the
conflict. Every write queues its ``project.*`` event on the same MULTI pipeline.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

import redis
from ulid import ULID

from aerie import errors
from aerie.events import EventContext, EventPublisher, new_event, utcnow
from aerie.pagination import Page, decode_cursor, encode_cursor
from aerie.redis import RedisProvider
from projects.domain import slugify

__all__ = ["ProjectRepository", "UnsafeAllTenants", "tenant_prefix"]

TOMBSTONE = "deleted"

#: What a tenant id may look like before it is put in a key (and in a SCAN pattern).
_TENANT_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def tenant_prefix(tenant_id: str) -> str:
    if not _TENANT_ID.match(tenant_id):
        raise ValueError("not a tenant id")
    return f"projects:{{{tenant_id}}}:"


def _dump(doc: Mapping[str, Any]) -> str:
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False)


class ProjectRepository:
    """One tenant's projects. The tenant id is fixed at construction and never a parameter."""

    def __init__(self, redis_provider: RedisProvider, tenant_id: str, events: EventPublisher) -> None:
        self._redis = redis_provider
        self.tenant_id = tenant_id
        self._prefix = tenant_prefix(tenant_id)
        self._events = events

    # -- keys: private, all derived from the bound tenant ---------------------------

    def _doc_key(self, project_id: str) -> str:
        return f"{self._prefix}p:{project_id}"

    def _slug_key(self, slug: str) -> str:
        return f"{self._prefix}slug:{slug}"

    @property
    def _index(self) -> str:
        return f"{self._prefix}index"

    def _status_index(self, status: str) -> str:
        return f"{self._prefix}status:{status}"

    @property
    def _tombstone(self) -> str:
        return f"{self._prefix}{TOMBSTONE}"

    @property
    def _r(self) -> redis.Redis:
        return self._redis.client

    # -- reads ------------------------------------------------------------------------

    def get(self, project_id: str) -> dict[str, Any] | None:
        raw = self._r.get(self._doc_key(project_id))
        return json.loads(raw) if raw else None

    def require(self, project_id: str) -> dict[str, Any]:
        project = self.get(project_id)
        if project is None:
            raise errors.not_found()
        return project

    def list(self, *, status: str | None, limit: int, cursor: str | None) -> Page:
        """A page by id; the cursor is only a position inside this tenant's own index."""
        index = self._status_index(status) if status else self._index
        after = decode_cursor(cursor, "after") if cursor else None
        start = f"({after}" if after else "-"
        ids = self._r.zrangebylex(index, start, "+", start=0, num=limit + 1)
        more = len(ids) > limit
        ids = ids[:limit]
        docs = self._r.mget([self._doc_key(i) for i in ids]) if ids else []
        items = [json.loads(d) for d in docs if d]
        return Page(items, encode_cursor({"after": ids[-1]}) if more and ids else None)

    # -- writes -----------------------------------------------------------------------

    def create(self, fields: Mapping[str, Any], ctx: EventContext) -> dict[str, Any]:
        now = utcnow()
        project = {
            "id": f"prj_{ULID()}",
            "tenant_id": self.tenant_id,
            "slug": fields.get("slug") or slugify(fields["name"]),
            "name": fields["name"],
            "description": fields.get("description") or "",
            "status": "active",
            "created_at": now,
            "updated_at": now,
            "version": 1,
        }
        slug_key = self._slug_key(project["slug"])

        def write(pipe: Any) -> None:
            if pipe.exists(self._tombstone):
                raise errors.forbidden("The tenant is deleted.", code="tenant_suspended")
            if pipe.exists(slug_key):
                raise errors.conflict(f"The slug {project['slug']!r} is taken.")
            pipe.multi()
            pipe.set(slug_key, project["id"])
            pipe.set(self._doc_key(project["id"]), _dump(project))
            pipe.zadd(self._index, {project["id"]: 0})
            pipe.zadd(self._status_index("active"), {project["id"]: 0})
            self._events.add(pipe, new_event("project.created", self.tenant_id, {"project": project}, ctx))

        self._r.transaction(write, slug_key, self._tombstone)
        return project

    def update(
        self, project_id: str, changes: Mapping[str, Any], ctx: EventContext, *, if_match: int | None = None
    ) -> dict[str, Any]:
        """Apply ``changes`` atomically if the project is at version ``if_match`` (when given).

        Raises 404 when the project is not this tenant's, 412 on a stale version, 409 when
        a new slug is taken. Unchanged fields make no new version and no event.
        """
        key = self._doc_key(project_id)
        watched = [key]
        if "slug" in changes:
            watched.append(self._slug_key(changes["slug"]))
        result: dict[str, Any] = {}

        def write(pipe: Any) -> None:
            project = _load_at_version(pipe, key, if_match)
            changed = {k: v for k, v in changes.items() if project.get(k) != v}
            if "slug" in changed and pipe.exists(self._slug_key(changed["slug"])):
                raise errors.conflict(f"The slug {changed['slug']!r} is taken.")
            if changed:
                old = dict(project)
                project.update(changed)
                project["version"] += 1
                project["updated_at"] = utcnow()
                pipe.multi()
                pipe.set(key, _dump(project))
                if "slug" in changed:
                    pipe.delete(self._slug_key(old["slug"]))
                    pipe.set(self._slug_key(project["slug"]), project_id)
                if "status" in changed:
                    pipe.zrem(self._status_index(old["status"]), project_id)
                    pipe.zadd(self._status_index(project["status"]), {project_id: 0})
                data = {"project": project, "changes": sorted(changed)}
                self._events.add(pipe, new_event("project.updated", self.tenant_id, data, ctx))
            result.clear()
            result.update(project)

        self._r.transaction(write, *watched)
        return result

    def delete(self, project_id: str, ctx: EventContext, *, if_match: int | None = None) -> None:
        key = self._doc_key(project_id)

        def write(pipe: Any) -> None:
            project = _load_at_version(pipe, key, if_match)
            pipe.multi()
            pipe.delete(key, self._slug_key(project["slug"]))
            pipe.zrem(self._index, project_id)
            pipe.zrem(self._status_index(project["status"]), project_id)
            self._events.add(pipe, new_event("project.deleted", self.tenant_id, {"project": project}, ctx))

        self._r.transaction(write, key)

    def batch_update(
        self, ids: list[str], changes: Mapping[str, Any], ctx: EventContext
    ) -> tuple[list[dict[str, Any]], list[str]]:
        """Each project updated in its own transaction; ids not of this tenant are not found.

        Per-project atomicity (not all-or-nothing) is what the contract's result shape
        describes: some ids may be missing while the others are updated.
        """
        updated: list[dict[str, Any]] = []
        not_found: list[str] = []
        for project_id in dict.fromkeys(ids):  # de-duplicated, order kept
            try:
                updated.append(self.update(project_id, changes, ctx))
            except errors.Problem as exc:
                if exc.problem_code != "not_found":
                    raise
                not_found.append(project_id)
        return updated, not_found


class UnsafeAllTenants:
    """Cross-tenant operations. UNSAFE: never reachable from a request's tenant context.

    Only the tenant-deletion cascade uses it, with a tenant id taken from a ``tenant.deleted``
    event on the durable stream (written by the tenants service), never from a request.
    """

    def __init__(self, redis_provider: RedisProvider) -> None:
        self._redis = redis_provider

    def purge_tenant(self, tenant_id: str) -> int:
        """Remove every project key of ``tenant_id``; idempotent. Returns how many were removed.

        The tombstone goes first: a create racing the purge (a worker that has not yet heard
        of the deletion) either committed before it, and its keys are found by the scan, or
        has the tombstone it WATCHes change under it and is retried into a refusal.
        """
        r = self._redis.client
        prefix = tenant_prefix(tenant_id)
        tombstone = prefix + TOMBSTONE
        r.set(tombstone, "1")
        removed = 0
        batch: list[str] = []
        for key in r.scan_iter(match=prefix + "*", count=500):
            if key == tombstone:
                continue
            batch.append(key)
            if len(batch) >= 500:
                removed += r.unlink(*batch)
                batch = []
        if batch:
            removed += r.unlink(*batch)
        return removed


def _load_at_version(pipe: Any, key: str, if_match: int | None) -> dict[str, Any]:
    """The project at ``key`` (read on a WATCHing pipeline): 404 if absent, 412 if stale."""
    raw = pipe.get(key)
    if raw is None:
        raise errors.not_found()
    project: dict[str, Any] = json.loads(raw)
    if if_match is not None and project["version"] != if_match:
        raise errors.precondition_failed()
    return project
