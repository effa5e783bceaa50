"""The tenant's overrides of the flags that allow them: set and clear, for the tenant or a user.

The flags service takes the tenant from the token alone (``/v1/flags/{key}/overrides/...``),
so no URL here names one. The page is one call: the tenant's snapshot, which carries every
flag's ``allow_overrides`` and the tenant's current overrides together. Setting and clearing
need ``flags:write`` (owners, admins, developers); with ``flags:read`` alone a person sets and
clears only their own user override, as the service allows.
"""

from __future__ import annotations

from typing import Any

import falcon

from aerie.i18n import msg
from console.api import segment
from console.domain import FormError, override_from_form
from console.session import Session
from console.web import Forbidden, Pages

TENANT_ONLY = msg("Overrides belong to a tenant; your sign-in is the platform's.")


def _tenant_person(pages: Pages, req: falcon.Request) -> Session:
    session = pages.session(req)
    if session.is_platform:
        raise Forbidden(TENANT_ONLY)
    if not session.can("flags:read"):
        raise Forbidden(msg("Your role does not show the tenant's flags."))
    return session


def overridable(snapshot: dict[str, Any]) -> list[dict[str, Any]]:
    """The flags that allow overrides, by key, each with the tenant's overrides of it."""
    overrides = snapshot.get("overrides") or {}
    tenant, users = overrides.get("tenant") or {}, overrides.get("users") or {}
    found = []
    for key, flag in sorted((snapshot.get("flags") or {}).items()):
        if flag.get("allow_overrides") not in ("tenant", "user"):
            continue
        entry = {**flag, "tenant_override": tenant.get(key), "has_tenant_override": key in tenant}
        entry["user_overrides"] = sorted((users.get(key) or {}).items())
        found.append(entry)
    return found


class Overrides:
    def __init__(self, pages: Pages) -> None:
        self._pages = pages

    def render(
        self, req: falcon.Request, resp: falcon.Response, session: Session, status: int = 200, **kw: Any
    ) -> None:
        snapshot = self._pages.call(session, req, "GET", "flags", "/v1/flags/snapshot")
        self._pages.render(
            req,
            resp,
            "overrides.html",
            session,
            status,
            flags=overridable(snapshot),
            can_write=session.can("flags:write"),
            own_user=str(session.claims.get("sub", "")),
            **kw,
        )

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        session = _tenant_person(self._pages, req)
        self.render(req, resp, session, notice=req.get_param("notice"))


class Override:
    """``POST /overrides/{key}``: ``action=set`` (with ``value``) or ``clear``, ``scope=tenant|user``."""

    def __init__(self, pages: Pages, page: Overrides) -> None:
        self._pages = pages
        self._page = page

    def on_post(self, req: falcon.Request, resp: falcon.Response, key: str) -> None:
        session = _tenant_person(self._pages, req)
        form = self._pages.form(req, session)
        try:
            user_id, value = override_from_form(form)
        except FormError as exc:
            self._page.render(req, resp, session, 422, error=exc.message)
            return
        path = f"/v1/flags/{segment(key)}/overrides/" + (f"users/{segment(user_id)}" if user_id else "tenant")
        clear = form.get("action") == "clear"
        if clear:
            self._pages.call(session, req, "DELETE", "flags", path)
        else:
            self._pages.call(session, req, "PUT", "flags", path, json={"value": value})
        # Whole sentences, not "for %(whose)s": the words around a user and a tenant differ by language.
        if user_id:
            notice = (
                msg("Override of %(key)s for user %(user)s cleared.", key=key, user=user_id)
                if clear
                else msg("Override of %(key)s for user %(user)s set.", key=key, user=user_id)
            )
        else:
            notice = (
                msg("Override of %(key)s for the tenant cleared.", key=key)
                if clear
                else msg("Override of %(key)s for the tenant set.", key=key)
            )
        self._pages.see_other(req, session, "/overrides", notice)
