"""Flag definitions for platform people: list, create, the kill switch, the rollout, a preview.

Reading needs ``platform:read`` (platform-viewer) and changing needs ``platform:admin``; the
flags service decides with the person's token, and the console only hides what would be
refused anyway.
"""

from __future__ import annotations

from typing import Any

import falcon

from aerie.i18n import msg
from console.api import segment
from console.domain import FormError, flag_from_form, preview_context, with_kill_switch, with_rollout
from console.session import Session
from console.web import Forbidden, Pages

PLATFORM_ONLY = msg("Flag definitions are for platform people; your sign-in is a tenant's.")


def _platform(pages: Pages, req: falcon.Request) -> Session:
    session = pages.session(req)
    if not session.is_platform or not session.can("platform:read"):
        raise Forbidden(PLATFORM_ONLY)
    return session


def _admin(pages: Pages, req: falcon.Request) -> tuple[Session, dict[str, str]]:
    session = _platform(pages, req)
    form = pages.form(req, session)
    if not session.can("platform:admin"):
        raise Forbidden(msg("Your role reads flags; changing them takes platform-admin."))
    return session, form


class FlagList:
    def __init__(self, pages: Pages) -> None:
        self._pages = pages

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        session = _platform(self._pages, req)
        page = self._pages.call(session, req, "GET", "flags", "/v1/flags", params={"limit": 100})
        self._pages.render(req, resp, "flags.html", session, flags=page["items"], notice=req.get_param("notice"))

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        session, form = _admin(self._pages, req)
        try:
            key, doc = flag_from_form(form)
        except FormError as exc:
            page = self._pages.call(session, req, "GET", "flags", "/v1/flags", params={"limit": 100})
            self._pages.render(req, resp, "flags.html", session, 422, flags=page["items"], error=exc.message, form=form)
            return
        self._pages.call(session, req, "PUT", "flags", f"/v1/flags/{segment(key)}", json=doc)
        self._pages.see_other(req, session, f"/flags/{segment(key)}", msg("Flag %(key)s saved.", key=key))


class FlagPage:
    def __init__(self, pages: Pages) -> None:
        self._pages = pages

    def on_get(self, req: falcon.Request, resp: falcon.Response, key: str) -> None:
        session = _platform(self._pages, req)
        flag = self._pages.call(session, req, "GET", "flags", f"/v1/flags/{segment(key)}")
        tenants = self._pages.call(session, req, "GET", "tenants", "/v1/tenants", params={"limit": 100})["items"]
        values: dict[str, Any] = {"flag": flag, "tenants": tenants, "notice": req.get_param("notice")}
        query = {k: req.get_param(k) or "" for k in ("tenant_id", "user_id", "session_id", "ip")}
        values["query"] = query
        if query["tenant_id"]:
            try:
                tenant_id, context = preview_context(query)
            except FormError as exc:
                values["preview_error"] = exc.message
            else:
                answer = self._pages.call(
                    session,
                    req,
                    "POST",
                    "flags",
                    "/v1/evaluate",
                    params={"tenant_id": tenant_id},
                    json={"context": context, "keys": [key]},
                )
                values["preview"] = answer["flags"].get(key)
        self._pages.render(req, resp, "flag.html", session, **values)


class KillSwitch:
    def __init__(self, pages: Pages) -> None:
        self._pages = pages

    def on_post(self, req: falcon.Request, resp: falcon.Response, key: str) -> None:
        session, form = _admin(self._pages, req)
        flag = self._pages.call(session, req, "GET", "flags", f"/v1/flags/{segment(key)}")
        killed = form.get("killed") == "true"
        self._pages.call(session, req, "PUT", "flags", f"/v1/flags/{segment(key)}", json=with_kill_switch(flag, killed))
        notice = (
            msg("Kill switch on: %(key)s serves its off value everywhere.", key=key)
            if killed
            else msg("%(key)s is enabled again.", key=key)
        )
        self._pages.see_other(req, session, f"/flags/{segment(key)}", notice)


class Rollout:
    def __init__(self, pages: Pages) -> None:
        self._pages = pages

    def on_post(self, req: falcon.Request, resp: falcon.Response, key: str) -> None:
        session, form = _admin(self._pages, req)
        flag = self._pages.call(session, req, "GET", "flags", f"/v1/flags/{segment(key)}")
        try:
            body = with_rollout(flag, form)
        except FormError as exc:
            raise Forbidden(exc.message) from None
        self._pages.call(session, req, "PUT", "flags", f"/v1/flags/{segment(key)}", json=body)
        rollout = body["rollout"]
        notice = (
            msg("Rollout of %(key)s: %(percentage)s%%.", key=key, percentage=rollout["percentage"])
            if rollout
            else msg("Rollout of %(key)s removed.", key=key)
        )
        self._pages.see_other(req, session, f"/flags/{segment(key)}", notice)
