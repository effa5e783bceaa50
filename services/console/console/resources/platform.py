"""The platform's tenants, for platform people: list (paged, by status), create, suspend,
reactivate, and delete once the person has typed the tenant's slug.

Reading takes ``platform:read`` (platform-viewer) and changing ``platform:admin``; the
console hides the controls a viewer would be refused, and shows the tenants service's own
403 if a viewer's form reaches it anyway. A tenant's person is refused before any service
is asked: these pages are no tenant's.

Deleting is confirmed by typing the slug: a mismatch is refused on the page without asking
the service anything. A match reads the tenant again and deletes it only if the slug typed
is still that tenant's, so neither a stale confirmation page nor an edited hidden field can
delete another tenant than the one named.
"""

from __future__ import annotations

from typing import Any

import falcon

from aerie.i18n import msg
from console.api import segment
from console.domain import PLANS, TENANT_LANGUAGES, TENANT_STATUSES, FormError, slug_confirmed, tenant_from_form
from console.session import Session
from console.web import Forbidden, Pages

PLATFORM_ONLY = msg("Tenants are managed by platform people; your sign-in is a tenant's.")
#: A page of tenants: the contract's default page size.
PAGE_SIZE = 50


def platform_person(pages: Pages, req: falcon.Request) -> Session:
    """The session of a platform person who may read tenants; else 403 before any service is asked."""
    session = pages.session(req)
    if not session.is_platform:
        raise Forbidden(PLATFORM_ONLY)
    if not session.can("platform:read"):
        raise Forbidden(msg("Your role does not show the platform's tenants."))
    return session


def _path(tenant_id: str) -> str:
    return f"/v1/tenants/{segment(tenant_id)}"


class Tenants:
    """``GET /tenants`` (``?status=``, ``?cursor=``) and ``POST /tenants`` (create)."""

    def __init__(self, pages: Pages) -> None:
        self._pages = pages

    def _render(
        self, req: falcon.Request, resp: falcon.Response, session: Session, status: int = 200, **kw: Any
    ) -> None:
        params: dict[str, Any] = {"limit": PAGE_SIZE}
        shown_status = req.get_param("status") or ""
        if shown_status in TENANT_STATUSES:
            params["status"] = shown_status
        else:
            shown_status = ""
        cursor = req.get_param("cursor") or None
        if cursor:
            params["cursor"] = cursor
        page = self._pages.call(session, req, "GET", "tenants", "/v1/tenants", params=params)
        self._pages.render(
            req,
            resp,
            "tenants.html",
            session,
            status,
            tenants=page["items"],
            next_cursor=page.get("next_cursor"),
            paged=bool(cursor),
            status_filter=shown_status,
            statuses=TENANT_STATUSES,
            plans=PLANS,
            languages=TENANT_LANGUAGES,
            can_write=session.can("platform:admin"),
            **kw,
        )

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        session = platform_person(self._pages, req)
        self._render(req, resp, session, notice=req.get_param("notice"))

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        session = platform_person(self._pages, req)
        form = self._pages.form(req, session)
        try:
            body = tenant_from_form(form)
        except FormError as exc:
            self._render(req, resp, session, 422, error=exc.message, form=form)
            return
        tenant = self._pages.call(session, req, "POST", "tenants", "/v1/tenants", json=body)
        self._pages.see_other(
            req, session, f"/tenants/{segment(tenant['id'])}", msg("Tenant %(name)s created.", name=tenant["name"])
        )


class TenantStatus:
    """``POST /tenants/{id}/suspend`` and ``/reactivate``: the tenants service's own actions."""

    ACTIONS = ("suspend", "reactivate")

    def __init__(self, pages: Pages, action: str) -> None:
        assert action in self.ACTIONS
        self._pages = pages
        self._action = action

    def on_post(self, req: falcon.Request, resp: falcon.Response, tenant_id: str) -> None:
        session = platform_person(self._pages, req)
        self._pages.form(req, session)
        tenant = self._pages.call(session, req, "POST", "tenants", f"{_path(tenant_id)}/{self._action}")
        if self._action == "suspend":
            notice = msg("Tenant %(name)s suspended: its writes are refused, reads still work.", name=tenant["name"])
        else:
            notice = msg("Tenant %(name)s reactivated.", name=tenant["name"])
        self._pages.see_other(req, session, f"/tenants/{segment(tenant_id)}", notice)


class DeleteTenant:
    """``POST /tenants/{id}/delete``: the confirmation (type the slug), then (``confirm=yes``) the deletion."""

    def __init__(self, pages: Pages) -> None:
        self._pages = pages

    def _confirmation(
        self, req: falcon.Request, resp: falcon.Response, session: Session, tenant: dict[str, Any], **kw: Any
    ) -> None:
        self._pages.render(req, resp, "tenant_delete.html", session, kw.pop("status", 200), tenant=tenant, **kw)

    def on_post(self, req: falcon.Request, resp: falcon.Response, tenant_id: str) -> None:
        session = platform_person(self._pages, req)
        form = self._pages.form(req, session)
        if form.get("confirm") != "yes":
            tenant = self._pages.call(session, req, "GET", "tenants", _path(tenant_id))
            self._confirmation(req, resp, session, tenant)
            return
        # What the confirmation page showed, to show it again: never trusted for the deletion.
        shown = {"id": tenant_id, "slug": form.get("slug", "")[:63], "name": form.get("name", "")[:200]}
        if not slug_confirmed(form, shown["slug"]):
            self._confirmation(
                req,
                resp,
                session,
                shown,
                status=422,
                error=msg("Type the tenant's slug exactly to delete it; nothing was deleted."),
            )
            return
        tenant = self._pages.call(session, req, "GET", "tenants", _path(tenant_id))
        if not slug_confirmed(form, str(tenant.get("slug", ""))):
            self._confirmation(
                req,
                resp,
                session,
                tenant,
                status=409,
                error=msg("The slug typed is not this tenant's; nothing was deleted."),
            )
            return
        self._pages.call(session, req, "DELETE", "tenants", _path(tenant_id))
        self._pages.see_other(req, session, "/tenants", msg("Tenant %(slug)s deleted.", slug=tenant["slug"]))
