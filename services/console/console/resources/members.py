"""A tenant's members, for its owners and admins: invite by email, change a role, remove.

The URL names the tenant, so the console first checks it is the person's own (a platform
admin may open any): another tenant's page is 404, exactly as a tenant that does not exist,
before any service is asked. The tenants service then decides again with the person's token.
"""

from __future__ import annotations

import falcon

from aerie.i18n import msg
from console.api import segment
from console.domain import MEMBER_ROLES
from console.session import Session
from console.web import Forbidden, Pages


def reachable(session: Session, tenant_id: str) -> bool:
    """Whether the person's token may act on ``tenant_id`` at all."""
    if session.is_platform:
        return session.can("platform:admin")
    return session.tenant_id == tenant_id


def tenant_session(pages: Pages, req: falcon.Request, tenant_id: str) -> Session:
    """The session, when ``tenant_id`` is one the person may act on; else 404, before any service is asked."""
    session = pages.session(req)
    if not reachable(session, tenant_id):
        raise falcon.HTTPNotFound(title=msg("Not found"), description=msg("There is no such tenant."))
    return session


class Members:
    def __init__(self, pages: Pages) -> None:
        self._pages = pages

    def on_get(self, req: falcon.Request, resp: falcon.Response, tenant_id: str) -> None:
        session = tenant_session(self._pages, req, tenant_id)
        if not session.can("members:read"):
            raise Forbidden(msg("Your role does not show the tenant's members."))
        page = self._pages.call(
            session, req, "GET", "tenants", f"/v1/tenants/{segment(tenant_id)}/members", params={"limit": 100}
        )
        self._pages.render(
            req,
            resp,
            "members.html",
            session,
            tenant_id=tenant_id,
            members=page["items"],
            roles=MEMBER_ROLES,
            can_write=session.can("members:write"),
            notice=req.get_param("notice"),
        )

    def on_post(self, req: falcon.Request, resp: falcon.Response, tenant_id: str) -> None:
        session = tenant_session(self._pages, req, tenant_id)
        form = self._pages.form(req, session)
        body = {"email": form.get("email", "").strip(), "role": form.get("role", "")}
        self._pages.call(session, req, "POST", "tenants", f"/v1/tenants/{segment(tenant_id)}/members", json=body)
        self._pages.see_other(
            req, session, f"/tenants/{segment(tenant_id)}/members", msg("%(email)s invited.", email=body["email"])
        )


class Member:
    def __init__(self, pages: Pages) -> None:
        self._pages = pages

    def on_post(self, req: falcon.Request, resp: falcon.Response, tenant_id: str, member_id: str) -> None:
        session = tenant_session(self._pages, req, tenant_id)
        form = self._pages.form(req, session)
        path = f"/v1/tenants/{segment(tenant_id)}/members/{segment(member_id)}"
        if form.get("action") == "remove":
            self._pages.call(session, req, "DELETE", "tenants", path)
            notice = msg("Member removed.")
        else:
            self._pages.call(session, req, "PATCH", "tenants", path, json={"role": form.get("role", "")})
            notice = msg("Role changed.")
        self._pages.see_other(req, session, f"/tenants/{segment(tenant_id)}/members", notice)
