"""``/v1/audit/events``: list and append; ``/v1/audit/events/{id}``: one entry. Thin."""

from __future__ import annotations

import falcon

from aerie.endpoints import endpoint
from aerie.pagination import page_schema
from audit import schemas
from audit.access import TrailAccess
from audit.append import append_entry
from audit.page_cache import TrailPageCache
from audit.query import Filters, newest_first_page

READ = ("audit:read",)
WRITE = ("audit:write",)


class AuditEvents:
    def __init__(self, trails: TrailAccess, pages: TrailPageCache | None = None) -> None:
        self._trails = trails
        self._pages = pages

    @endpoint(
        "List the caller tenant's audit entries, newest first",
        scopes=READ,
        query=schemas.LIST_EVENTS_QUERY,
        response=page_schema(schemas.ENTRY),
        description="Filters: `action` (exact, or a prefix such as `project.*`), `actor_id`, `target_type`, "
        "`target_id`, `since` (inclusive) and `until` (exclusive) on `occurred_at`. A filtered page examines "
        "at most 5,000 entries; when that runs out first the page is short (even empty) and `next_cursor` "
        "continues the scan. platform:admin may pass `tenant_id`, or omit it for the platform trail.",
        responses={403: "Another tenant's trail, or a platform token without platform:admin"},
    )
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        q = req.context.query
        trail = self._trails.for_reading(req.context.principal, q.get("tenant_id"))
        resp.data = newest_first_page(trail, Filters.from_query(q), q["limit"], q.get("cursor"), self._pages)

    @endpoint(
        "Append an audit entry (idempotent by its id)",
        scopes=WRITE,
        body=schemas.APPEND,
        status=201,
        response=schemas.ENTRY,
        idempotent=True,
        description="201 with the recorded entry; the same `id` again answers 200 with the stored entry, or 409 "
        "when the body differs. A platform token names the trail with `tenant_id` (none: the platform trail); a "
        "tenant token appends to its own. `actor.client_id` is the appending client, from its token (another "
        "is 422). `metadata` is at most 16 KiB of JSON, nested at most 32 levels. Ids starting with `evt_` (in "
        "any case) are refused (422): they are the ingested events' ids. The entry's `source` is `api`.",
        responses={
            200: "The id is already recorded, with this content: the stored entry",
            403: "Another tenant's trail",
            409: "The id is recorded with different content",
        },
    )
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        body = req.context.body
        trail = self._trails.for_writing(req.context.principal, body.get("tenant_id"))
        entry, created = append_entry(trail, body, req.context.request_id, req.context.principal.client_id)
        resp.status = 201 if created else 200
        resp.location = f"/v1/audit/events/{entry['id']}"
        resp.media = entry


class AuditEvent:
    def __init__(self, trails: TrailAccess) -> None:
        self._trails = trails

    @endpoint("Get one audit entry by id", scopes=READ, query=schemas.TRAIL_QUERY, response=schemas.ENTRY)
    def on_get(self, req: falcon.Request, resp: falcon.Response, entry_id: str) -> None:
        trail = self._trails.for_reading(req.context.principal, req.context.query.get("tenant_id"))
        entry = trail.get(entry_id)
        if entry is None:
            raise falcon.HTTPNotFound()
        resp.media = entry
