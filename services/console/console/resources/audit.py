"""The audit trail: filtered pages of entries, one entry in full, the chain verified with the
answer shown plainly, and the filtered trail exported.

A platform admin reads the platform trail, or a tenant's by ``?tenant_id=``; a tenant's
people with ``audit:read`` read their own tenant's. A tenant person's URL naming another
tenant is 404 before any service is asked (the audit service would refuse it too).

Exports are streamed from the audit service through the console rather than linked to it
directly: a plain link cannot carry an ``Authorization`` header, so a direct download would
need the person's token in its URL, where browser history, proxies' and servers' access
logs and ``Referer`` headers would keep it. Passed through, the token stays in the
``HttpOnly`` session cookie and the console's own call; the bytes are passed on as they
arrive, so a large trail costs the console no memory.
"""

from __future__ import annotations

from typing import Any

import falcon

from aerie.i18n import msg
from console.api import segment
from console.domain import AUDIT_FILTERS, FormError, audit_filters
from console.rows import audit_rows
from console.session import Session
from console.web import Forbidden, Pages

#: A page of entries: the contract's default page size.
PAGE_SIZE = 50
#: Fields an entry page shows in their own rows; any others the service adds follow them.
ENTRY_FIELDS = (
    "id",
    "seq",
    "tenant_id",
    "occurred_at",
    "recorded_at",
    "action",
    "actor",
    "target",
    "ip",
    "user_agent",
    "request_id",
    "message",
    "source",
    "metadata",
    "prev_hash",
    "hash",
)


def audit_reader(pages: Pages, req: falcon.Request) -> tuple[Session, str | None]:
    """The session and the trail's tenant (None: the caller's own, or the platform's).

    Refused before any service is asked: a role without ``audit:read`` (403), a tenant
    person naming another tenant (404, as a tenant that does not exist).
    """
    session = pages.session(req)
    if not session.can("audit:read"):
        raise Forbidden(msg("Your role does not show the audit trail."))
    tenant_id = (req.get_param("tenant_id") or "").strip() or None
    if tenant_id and not session.is_platform:
        if tenant_id != session.tenant_id:
            raise falcon.HTTPNotFound(title=msg("Not found"), description=msg("There is no such tenant."))
        tenant_id = None  # the tenant's own trail: its token says which
    return session, tenant_id


def _typed(req: falcon.Request) -> dict[str, str]:
    """The filters as the person typed them (shown again in the form as they were)."""
    return {name: req.get_param(name) or "" for name in AUDIT_FILTERS}


def _trail(tenant_id: str | None) -> dict[str, str]:
    return {"tenant_id": tenant_id} if tenant_id else {}


class AuditPage:
    """``GET /audit``: filters, a page of entries (``?cursor=`` for older ones), ``?verify=1``."""

    def __init__(self, pages: Pages) -> None:
        self._pages = pages

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        session, tenant_id = audit_reader(self._pages, req)
        shown = _typed(req)
        values: dict[str, Any] = {"tenant_id": tenant_id, "filters": shown, "rows": [], "next_cursor": None}
        try:
            filters = audit_filters(shown)
        except FormError as exc:
            self._pages.render(req, resp, "audit.html", session, 422, error=exc.message, verified=None, **values)
            return
        cursor = req.get_param("cursor") or None
        params: dict[str, Any] = {"limit": PAGE_SIZE, **_trail(tenant_id), **filters}
        if cursor:
            params["cursor"] = cursor
        page = self._pages.call(session, req, "GET", "audit", "/v1/audit/events", params=params)
        verified = None
        if req.get_param("verify") == "1":
            verified = self._pages.call(session, req, "GET", "audit", "/v1/audit/verify", params=_trail(tenant_id))
        # What the links keep: the trail and the filters as typed (the export's in the service's terms).
        kept = {k: v for k, v in {**_trail(tenant_id), **shown}.items() if v}
        rows = audit_rows(page["items"], self._pages.language.of(req, session), tenant_id)
        values |= {"rows": rows, "next_cursor": page.get("next_cursor")}
        self._pages.render(
            req,
            resp,
            "audit.html",
            session,
            verified=verified,
            paged=bool(cursor),
            kept=kept,
            export={**_trail(tenant_id), **filters},
            **values,
        )


class AuditEntry:
    """``GET /audit/{entry_id}``: one entry, every field of it."""

    def __init__(self, pages: Pages) -> None:
        self._pages = pages

    def on_get(self, req: falcon.Request, resp: falcon.Response, entry_id: str) -> None:
        session, tenant_id = audit_reader(self._pages, req)
        entry = self._pages.call(
            session, req, "GET", "audit", f"/v1/audit/events/{segment(entry_id)}", params=_trail(tenant_id) or None
        )
        others = sorted(k for k in entry if k not in ENTRY_FIELDS)
        self._pages.render(req, resp, "audit_entry.html", session, entry=entry, others=others, tenant_id=tenant_id)


class AuditExport:
    """``GET /audit/export?format=ndjson|csv&...``: the filtered trail, streamed from the audit service."""

    FORMATS = ("ndjson", "csv")

    def __init__(self, pages: Pages) -> None:
        self._pages = pages

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        session, tenant_id = audit_reader(self._pages, req)
        fmt = req.get_param("format") or "ndjson"
        if fmt not in self.FORMATS:
            raise falcon.HTTPBadRequest(title=msg("Bad request"), description=msg("Export as ndjson or csv."))
        try:
            filters = audit_filters(_typed(req))
        except FormError as exc:
            raise falcon.HTTPBadRequest(title=msg("Bad request"), description=exc.message) from None
        download = self._pages.stream(
            session, req, "audit", "/v1/audit/export", params={"format": fmt, **_trail(tenant_id), **filters}
        )
        resp.content_type = download.content_type
        resp.set_header("Content-Disposition", download.disposition or f'attachment; filename="audit.{fmt}"')
        resp.stream = download.chunks
