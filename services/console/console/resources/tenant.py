"""The person's own tenant and its API clients: list, create (the secret shown once), revoke.

As for members, the URL names the tenant, so another tenant's pages are 404 before any
service is asked (:func:`tenant_session`); the tenants service then decides with the person's
token. Reading needs ``tenants:read`` (every tenant role), creating and revoking a client
``tenants:write`` (owners and admins); the console hides only what would be refused anyway.

A new client's secret is in the response to the create form and nowhere else: not in a
redirect, a notice, the session or a log line (and ``Cache-Control: no-store``, as every page).
"""

from __future__ import annotations

import falcon

from aerie.i18n import msg
from console.api import segment
from console.domain import CLIENT_SCOPES, FormError, client_from_form
from console.resources.members import tenant_session
from console.session import Session
from console.web import Forbidden, Pages


def _clients_path(tenant_id: str) -> str:
    return f"/v1/tenants/{segment(tenant_id)}/clients"


def _reader(pages: Pages, req: falcon.Request, tenant_id: str) -> Session:
    session = tenant_session(pages, req, tenant_id)
    if not session.can("tenants:read"):
        raise Forbidden(msg("Your role does not show the tenant."))
    return session


class TenantPage:
    """One tenant: its own people's page, and a platform person's (with the lifecycle for admins)."""

    def __init__(self, pages: Pages) -> None:
        self._pages = pages

    def on_get(self, req: falcon.Request, resp: falcon.Response, tenant_id: str) -> None:
        session = self._pages.session(req)
        # A platform-viewer reads any tenant (platform:read), as the tenants service lets them.
        if not (session.is_platform and session.can("platform:read")):
            session = _reader(self._pages, req, tenant_id)
        tenant = self._pages.call(session, req, "GET", "tenants", f"/v1/tenants/{segment(tenant_id)}")
        self._pages.render(
            req,
            resp,
            "tenant.html",
            session,
            tenant=tenant,
            lifecycle=session.is_platform and session.can("platform:admin"),
            notice=req.get_param("notice"),
        )


class Clients:
    def __init__(self, pages: Pages) -> None:
        self._pages = pages

    def _list(self, session: Session, req: falcon.Request, tenant_id: str) -> list[dict[str, object]]:
        page = self._pages.call(session, req, "GET", "tenants", _clients_path(tenant_id), params={"limit": 100})
        return list(page["items"])

    def _render(
        self,
        req: falcon.Request,
        resp: falcon.Response,
        session: Session,
        tenant_id: str,
        clients: list,
        status: int = 200,
        **values: object,
    ) -> None:
        self._pages.render(
            req,
            resp,
            "clients.html",
            session,
            status,
            tenant_id=tenant_id,
            clients=clients,
            can_write=session.can("tenants:write"),
            # A client cannot be granted what the person's own token does not hold.
            scopes=[s for s in CLIENT_SCOPES if session.can(s)],
            **values,
        )

    def on_get(self, req: falcon.Request, resp: falcon.Response, tenant_id: str) -> None:
        session = _reader(self._pages, req, tenant_id)
        self._render(req, resp, session, tenant_id, self._list(session, req, tenant_id), notice=req.get_param("notice"))

    def on_post(self, req: falcon.Request, resp: falcon.Response, tenant_id: str) -> None:
        session = tenant_session(self._pages, req, tenant_id)
        form = self._pages.form(req, session)
        try:
            body = client_from_form(form)
        except FormError as exc:
            clients = self._list(session, req, tenant_id)
            self._render(req, resp, session, tenant_id, clients, 422, error=exc.message, form=form)
            return
        created = self._pages.call(session, req, "POST", "tenants", _clients_path(tenant_id), json=body)
        # Rendered, not redirected: the secret must never be in a URL, and is not kept to show again.
        self._pages.render(req, resp, "client_created.html", session, 201, tenant_id=tenant_id, client=created)


class RevokeClient:
    """``POST .../clients/{client_id}/revoke``: first the confirmation, then (``confirm=yes``) the revocation."""

    def __init__(self, pages: Pages) -> None:
        self._pages = pages

    def on_post(self, req: falcon.Request, resp: falcon.Response, tenant_id: str, client_id: str) -> None:
        session = tenant_session(self._pages, req, tenant_id)
        form = self._pages.form(req, session)
        if form.get("confirm") != "yes":
            # The name is the one the list showed, only to say which client this is.
            name = form.get("name", "")[:200]
            self._pages.render(
                req, resp, "client_revoke.html", session, tenant_id=tenant_id, client_id=client_id, name=name
            )
            return
        self._pages.call(session, req, "DELETE", "tenants", f"{_clients_path(tenant_id)}/{segment(client_id)}")
        self._pages.see_other(
            req,
            session,
            f"/tenants/{segment(tenant_id)}/clients",
            msg("Client %(client)s revoked: its tokens stop working.", client=client_id),
        )
