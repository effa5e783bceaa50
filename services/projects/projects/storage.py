"""Projects in Redis, reachable only through a repository bound to one tenant.

Tenant isolation is structural: :class:`ProjectRepository` is built with the tenant id
taken from the verified token and every key it touches is derived from that id, so another
tenant's project id, slug or cursor position simply names a key that does not exist and
behaves exactly like a missing one. The one way to act across tenants is
:class:`UnsafeAllTenants` (grep for ``Unsafe``), used only by the tenant-deletion cascade.

Key layout (the tenant id sits in a hash tag, so one tenant's keys share a slot and its
multi-key transactions stay legal; on a sharded deployment every key also starts with the
tag of the tenant's event stream shard, ``{e<k>.<n>}``, which then decides the slot, so
each write's event joins its ``MULTI``: :mod:`aerie.keyspace`):

- ``projects:{<tenant>}:p:<id>``         the project document (JSON, the API representation)
- ``projects:{<tenant>}:slug:<slug>``    the id owning a slug (freed when renamed or deleted)
- ``projects:{<tenant>}:index``          sorted set of the tenant's project ids, score 0:
  ordered by id, and ids are ULIDs, so by creation time; cursors hold the last id seen
- ``projects:{<tenant>}:status:<status>`` the same, per status, for ``?status=``
- ``projects:{<tenant>}:lists``          the version of the tenant's lists: the id of the last
  write's event, set in that write's MULTI; pages cached at another version are not served
- ``projects:{<tenant>}:events``         the tenant's newest event ids, scored by stream
  position, for resuming event streams (written by :mod:`projects.event_positions`)
- ``projects:{<tenant>}:deleted``        tombstone of a deleted tenant, set before its other
  keys are removed; creates WATCH and check it, so none can slip in during or after a purge

Check-and-set writes (unique slug, If-Match version) WATCH what they read; a concurrent
writer makes ``EXEC`` fail, the transaction is retried on fresh data and then sees the
conflict. Every write queues its ``project.*`` event on the same MULTI pipeline.
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Mapping
from typing import Any

import orjson
import redis
from ulid import ULID

from aerie import errors
from aerie.events import EventContext, EventPublisher, new_event, utcnow
from aerie.keyspace import UNSHARDED, Keyspace
from aerie.pagination import decode_cursor, encode_cursor
from aerie.redis import RedisProvider
from projects.domain import slugify
from projects.pages import JsonPage, ProjectPageCache

__all__ = ["ProjectRepository", "UnsafeAllTenants", "tenant_prefix"]

TOMBSTONE = "deleted"

#: What a tenant id may look like before it is put in a key (and in a SCAN pattern).
_TENANT_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


@functools.lru_cache(maxsize=4096)  # per request; a refused id raises and is not kept
def tenant_prefix(tenant_id: str, keyspace: Keyspace = UNSHARDED) -> str:
    """Where ``tenant_id``'s keys start: in its event stream shard's slot when sharded."""
    if not _TENANT_ID.match(tenant_id):
        raise ValueError("not a tenant id")
    return keyspace.of_tenant(tenant_id).key(f"projects:{{{tenant_id}}}:")


class ProjectRepository:
    """One tenant's projects. The tenant id is fixed at construction and never a parameter."""

    def __init__(
        self,
        redis_provider: RedisProvider,
        tenant_id: str,
        events: EventPublisher,
        pages: ProjectPageCache | None = None,
    ) -> None:
        self._redis = redis_provider
        self.tenant_id = tenant_id
        self._prefix = tenant_prefix(tenant_id, redis_provider.keyspace)
        self._events = events
        self._pages = pages

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
    def _lists_version(self) -> str:
        return f"{self._prefix}lists"

    @property
    def _client(self) -> redis.Redis:
        return self._redis.client

    # -- reads ------------------------------------------------------------------------

    def get(self, project_id: str) -> dict[str, Any] | None:
        raw = self._client.get(self._doc_key(project_id))
        return orjson.loads(raw) if raw else None

    def require(self, project_id: str) -> dict[str, Any]:
        project = self.get(project_id)
        if project is None:
            raise errors.not_found()
        return project

    def require_json(self, project_id: str) -> tuple[str, int]:
        """The stored document as it is (the API representation, written by orjson) and its version.

        For ``GET /v1/projects/{id}``: the same body ``require`` would give once encoded
        again, without the decode and encode (404 when absent, as ``require``).
        """
        raw = self._client.get(self._doc_key(project_id))
        if not raw:
            raise errors.not_found()
        return raw, orjson.loads(raw)["version"]

    def list(self, *, status: str | None, limit: int, cursor: str | None) -> JsonPage:
        """A page by id; the cursor is only a position inside this tenant's own index.

        One round trip (a script reads the index and the documents), and the documents stay
        the JSON they are stored as: a page of 50 is the hot path, and decoding 50 documents
        only to encode them again cost as much as the rest of the request. With a
        :class:`~projects.pages.ProjectPageCache`, a page this process already holds at the
        tenant's current lists version comes back without its documents (:mod:`projects.pages`).
        """
        index = self._status_index(status) if status else self._index
        after = decode_cursor(cursor, "after") if cursor else None
        start = f"({after}" if after else "-"
        key = (index, start, limit)
        held = self._pages.get(key) if self._pages is not None else None
        reply = _PAGE(
            self._client, [index, self._lists_version], [start, limit + 1, self._doc_key(""), held[0] if held else ""]
        )
        if held is not None and len(reply) == 1:
            return held[1]  # the lists are at the version this copy was read at
        version, ids, docs = reply
        more = len(ids) > limit
        page = JsonPage([d for d in docs[:limit] if d], encode_cursor({"after": ids[limit - 1]}) if more else None)
        if self._pages is not None:
            self._pages.put(key, version, page)
        return page

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
            self._publish(pipe, new_event("project.created", self.tenant_id, {"project": project}, ctx))

        self._redis.transaction(write, slug_key, self._tombstone)
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
                self._publish(pipe, new_event("project.updated", self.tenant_id, data, ctx))
            result.clear()
            result.update(project)

        self._redis.transaction(write, *watched)
        return result

    def delete(self, project_id: str, ctx: EventContext, *, if_match: int | None = None) -> None:
        key = self._doc_key(project_id)

        def write(pipe: Any) -> None:
            project = _load_at_version(pipe, key, if_match)
            pipe.multi()
            self._queue_removal(pipe, project, ctx)

        self._redis.transaction(write, key)

    def delete_many(self, ids: list[str], ctx: EventContext, cause: Mapping[str, Any]) -> int:
        """Remove these projects in one transaction, each with its ``project.deleted`` event.

        For the tenant-deletion cascade: ids whose project is already gone only leave the
        index, without an event, so running it again after a crash publishes nothing twice.
        Returns how many projects were removed.
        """
        keys = [self._doc_key(i) for i in ids]
        removed = 0

        def write(pipe: Any) -> None:
            nonlocal removed
            # As a command: redis-py's cluster pipeline refuses its mget() although all the keys
            # share this tenant's slot.
            docs = pipe.execute_command("MGET", *keys)
            pipe.multi()
            removed = 0
            for project_id, raw in zip(ids, docs, strict=True):
                pipe.zrem(self._index, project_id)
                if raw is not None:
                    self._queue_removal(pipe, orjson.loads(raw), ctx, cause=cause)
                    removed += 1
            pipe.set(self._lists_version, f"evt_{ULID()}")  # index entries may go without an event

        self._redis.transaction(write, *keys)
        return removed

    def _queue_removal(
        self, pipe: Any, project: dict[str, Any], ctx: EventContext, cause: Mapping[str, Any] | None = None
    ) -> None:
        """Queue a project's removal and its event on a ``MULTI`` pipeline."""
        pipe.delete(self._doc_key(project["id"]), self._slug_key(project["slug"]))
        pipe.zrem(self._index, project["id"])
        pipe.zrem(self._status_index(project["status"]), project["id"])
        data: dict[str, Any] = {"project": project}
        if cause is not None:
            data["cause"] = dict(cause)
        self._publish(pipe, new_event("project.deleted", self.tenant_id, data, ctx))

    def _publish(self, pipe: Any, event: dict[str, Any]) -> None:
        """Queue a write's event, and a new lists version, on its ``MULTI`` (every write does).

        The version is the event's id, never used before: a page cached at any earlier
        version can no longer be served (:mod:`projects.pages`).
        """
        pipe.set(self._lists_version, event["id"])
        self._events.add(pipe, event)

    def ids(self, count: int) -> list[str]:
        """The first ``count`` project ids of this tenant, by id."""
        return self._client.zrange(self._index, 0, count - 1)

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

    def __init__(self, redis_provider: RedisProvider, events: EventPublisher, batch: int = 100) -> None:
        self._redis = redis_provider
        self._events = events
        self._batch = batch

    def purge_tenant(self, tenant_id: str, ctx: EventContext, cause: Mapping[str, Any]) -> int:
        """Remove every project of ``tenant_id``, each with its ``project.deleted`` event.

        Idempotent: projects already gone publish nothing. Returns how many were removed.

        The tombstone goes first: a create racing the purge (a worker that has not yet heard
        of the deletion) either committed before it, and its project is in the index, or
        has the tombstone it WATCHes change under it and is retried into a refusal. The
        projects go in batches, each batch and its events one transaction; then whatever
        else the tenant left (slugs, indexes, event positions) is swept away.
        """
        r = self._redis.client
        prefix = tenant_prefix(tenant_id, self._redis.keyspace)
        tombstone = prefix + TOMBSTONE
        r.set(tombstone, "1")
        repo = ProjectRepository(self._redis, tenant_id, self._events)
        removed = 0
        while ids := repo.ids(self._batch):
            removed += repo.delete_many(ids, ctx, cause)
        leftovers = [key for key in r.scan_iter(match=prefix + "*", count=500) if key != tombstone]
        for start in range(0, len(leftovers), 500):
            r.unlink(*leftovers[start : start + 500])
        return removed


def _load_at_version(pipe: Any, key: str, if_match: int | None) -> dict[str, Any]:
    """The project at ``key`` (read on a WATCHing pipeline): 404 if absent, 412 if stale."""
    raw = pipe.get(key)
    if raw is None:
        raise errors.not_found()
    project: dict[str, Any] = orjson.loads(raw)
    if if_match is not None and project["version"] != if_match:
        raise errors.precondition_failed()
    return project


def _dump(doc: Mapping[str, Any]) -> str:
    return orjson.dumps(doc).decode()


class _Script:
    """A Lua script run by its SHA, loaded on first use (and again after a Redis restart)."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()  # what Redis names scripts by

    def __call__(self, r: redis.Redis, keys: list[str], args: list[Any]) -> Any:
        try:
            return r.evalsha(self.sha, len(keys), *keys, *args)
        except redis.exceptions.NoScriptError:
            return r.eval(self.source, len(keys), *keys, *args)


#: A page: the tenant's lists version (KEYS[2]) and, unless it is the version the caller
#: holds a copy at (ARGV[4], '' for none), the ids from the index (KEYS[1]) after ARGV[1],
#: at most ARGV[2], and their documents (ARGV[3] is the tenant's document key prefix). All
#: keys are in the tenant's hash slot.
_PAGE = _Script("""
local version = redis.call('GET', KEYS[2]) or ''
if version ~= '' and version == ARGV[4] then return {version} end
local ids = redis.call('ZRANGEBYLEX', KEYS[1], ARGV[1], '+', 'LIMIT', 0, ARGV[2])
if #ids == 0 then return {version, ids, {}} end
local keys = {}
for i, id in ipairs(ids) do keys[i] = ARGV[3] .. id end
return {version, ids, redis.call('MGET', unpack(keys))}
""")
