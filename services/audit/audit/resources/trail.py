"""``/v1/audit/export`` (streamed) and ``/v1/audit/verify``. Thin."""

from __future__ import annotations

import falcon

from aerie.endpoints import endpoint
from audit import schemas
from audit.access import TrailAccess
from audit.export import FORMATS
from audit.query import Filters, chain_order
from audit.resources.events import READ
from audit.verify import verify


class AuditExport:
    def __init__(self, trails: TrailAccess) -> None:
        self._trails = trails

    @endpoint(
        "Export the caller tenant's filtered trail as NDJSON or CSV (streamed)",
        scopes=READ,
        query=schemas.EXPORT_QUERY,
        description="`application/x-ndjson` (one entry per line, exactly as the API returns it) or `text/csv`. "
        "Oldest first (chain order), so an NDJSON export can be verified line by line. Streams in constant memory "
        "whatever the trail's size. CSV cells starting with `=`, `+`, `-`, `@`, tab or CR get a leading `'`. "
        "Same filters as the list; platform:admin may pass `tenant_id`.",
        responses={403: "Another tenant's trail, or a platform token without platform:admin"},
    )
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        q = req.context.query
        trail = self._trails.for_reading(req.context.principal, q.get("tenant_id"))
        filters = Filters.from_query(q)
        content_type, extension, produce = FORMATS[q["format"]]
        resp.content_type = content_type
        resp.downloadable_as = f"audit-{trail.name.lstrip('@')}.{extension}"
        resp.stream = produce(chain_order(trail, filters))


class AuditVerify:
    def __init__(self, trails: TrailAccess) -> None:
        self._trails = trails

    @endpoint(
        "Recompute the caller tenant's hash chain",
        scopes=READ,
        query=schemas.TRAIL_QUERY,
        response=schemas.VERIFY_RESULT,
        description="`first_invalid_seq` is the first entry that was changed, removed or reordered, and "
        "`reason` (only when `valid` is false) says what failed. After retention trimmed a trail, the chain "
        "starts from `checkpoint` (the last removed entry's seq and hash). A trail whose head or entries were "
        "lost as a whole (an evicting Redis) is not valid either.",
    )
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        trail = self._trails.for_reading(req.context.principal, req.context.query.get("tenant_id"))
        resp.media = verify(trail)
