"""Home, sign-in (the provider round trip and the token exchange), the tenant picker and sign-out.

A person in several tenants picks one at :data:`~console.session.PICK_PATH` after the
provider's answer. Switching later is signing in again without a tenant: the provider,
whose session is usually still live, answers at once, and the picker follows. A sign-in
that names a tenant (``/sign-in?tenant=``, as when a chosen tenant's session expires) goes
straight to it while the person still belongs there.
"""

from __future__ import annotations

import re

import falcon

from aerie.i18n import msg
from console.oidc import ChooseTenant, Exchanged, SignInFailed, SignInFlow
from console.redirects import safe_next
from console.session import PICK_PATH, Session, SignIn
from console.web import Forbidden, NotSignedIn, Pages, form_of

#: What a tenant id looks like (``ten_`` and a ULID, or a test's shorter one).
TENANT_ID = re.compile(r"ten_[0-9A-Za-z]{1,64}")
_TOO_LONG = msg("This sign-in was not started here, or took too long. Start again.")


def tenant_param(value: str | None) -> str | None:
    return value if value and TENANT_ID.fullmatch(value) else None


class Home:
    def __init__(self, pages: Pages) -> None:
        self._pages = pages

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        session = self._pages.cookies.session(req)
        if session is None or session.expired():
            self._pages.render(req, resp, "home.html", None, signed_out=req.get_param("signed_out") == "1")
            return
        if session.is_platform:
            raise falcon.HTTPSeeOther("/flags")
        if session.can("members:read"):
            raise falcon.HTTPSeeOther(f"/tenants/{session.tenant_id}/members")
        if session.can("audit:read"):
            raise falcon.HTTPSeeOther("/audit")
        if session.can("tenants:read"):
            raise falcon.HTTPSeeOther(f"/tenants/{session.tenant_id}")
        if session.can("projects:read"):
            raise falcon.HTTPSeeOther("/projects")
        self._pages.render(req, resp, "home.html", session)


class SignInStart:
    """``GET /sign-in?next=``: a link, not a form, so the redirect to the provider is not a form action."""

    def __init__(self, pages: Pages, flow: SignInFlow) -> None:
        self._pages = pages
        self._flow = flow

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        sign_in = SignIn.new(safe_next(req.get_param("next")), tenant_param(req.get_param("tenant")))
        try:
            location = self._flow.authorization_url(sign_in)
        except SignInFailed as exc:
            self._pages.render(req, resp, "error.html", None, 503, title=msg("Sign-in unavailable"), detail=exc.detail)
            return
        self._pages.cookies.begin_sign_in(resp, sign_in)
        resp.status = falcon.HTTP_303
        resp.location = location


class Callback:
    """``GET /auth/callback``: the provider's answer, checked against the sign-in this browser began."""

    def __init__(self, pages: Pages, flow: SignInFlow) -> None:
        self._pages = pages
        self._flow = flow

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        cookies = self._pages.cookies
        sign_in = cookies.sign_in(req)
        cookies.end_sign_in(resp)
        try:
            if sign_in is None or req.get_param("state") != sign_in.state:
                raise SignInFailed(_TOO_LONG)
            if req.get_param("error"):
                raise SignInFailed(msg("The provider did not sign you in (%(error)s).", error=req.get_param("error")))
            code = req.get_param("code")
            if not code:
                raise SignInFailed(msg("The provider sent no authorization code. Start again."))
            id_token = self._flow.redeem(sign_in, code)
            exchanged = self._flow.exchange(id_token, sign_in.tenant, fall_back=True)
        except ChooseTenant:
            cookies.begin_pick(resp, id_token, safe_next(sign_in.next))
            raise falcon.HTTPSeeOther(PICK_PATH) from None
        except SignInFailed as exc:
            _failed(self._pages, req, resp, exc)
            return
        chose = sign_in.tenant is not None and _tenant_of(exchanged) == sign_in.tenant
        cookies.start_session(resp, exchanged.access_token, exchanged.expires_in, chose_tenant=chose)
        resp.status = falcon.HTTP_303
        resp.location = safe_next(sign_in.next)


class PickTenant:
    """``GET|POST /sign-in/tenant``: which of their tenants a person signs in to.

    Each tenant is a button of one form, so a choice is one click or key press and works
    without JavaScript; the form carries the pick cookie's CSRF token (there is no session
    yet, or the session is that of the tenant being left).
    """

    def __init__(self, pages: Pages, flow: SignInFlow) -> None:
        self._pages = pages
        self._flow = flow

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        cookies = self._pages.cookies
        pick = cookies.pick(req)
        if pick is None:
            _failed(self._pages, req, resp, SignInFailed(_TOO_LONG))
            return
        try:
            exchanged = self._flow.exchange(pick.id_token)
        except ChooseTenant as choice:
            session = cookies.session(req)
            self._pages.render(
                req,
                resp,
                "pick_tenant.html",
                session,
                choices=choice.choices,
                pick_csrf=pick.csrf,
                current=session.tenant_id if session is not None and not session.expired() else None,
            )
            return
        except SignInFailed as exc:
            cookies.end_pick(resp)
            _failed(self._pages, req, resp, exc)
            return
        # Nothing to choose any more (removed from all but one since): straight in.
        self._start(resp, exchanged, pick.next, chose=False)

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        cookies = self._pages.cookies
        pick = cookies.pick(req)
        if pick is None:
            _failed(self._pages, req, resp, SignInFailed(_TOO_LONG))
            return
        form = form_of(req, max_fields=4)
        if not pick.csrf_matches(form.get("csrf")):
            raise Forbidden(
                msg("This form is out of date or did not come from the console. Reload the page and try again.")
            )
        tenant_id = tenant_param(form.get("tenant_id"))
        if tenant_id is None:
            raise falcon.HTTPBadRequest(description=msg("Choose one of the tenants listed."))
        try:
            exchanged = self._flow.exchange(pick.id_token, tenant_id)
        except SignInFailed as exc:
            cookies.end_pick(resp)
            _failed(self._pages, req, resp, exc)
            return
        self._start(resp, exchanged, pick.next, chose=True)

    def _start(self, resp: falcon.Response, exchanged: Exchanged, next_path: str, *, chose: bool) -> None:
        self._pages.cookies.start_session(resp, exchanged.access_token, exchanged.expires_in, chose_tenant=chose)
        self._pages.cookies.end_pick(resp)
        resp.status = falcon.HTTP_303
        resp.location = safe_next(next_path)


def _failed(pages: Pages, req: falcon.Request, resp: falcon.Response, exc: SignInFailed) -> None:
    pages.render(req, resp, "error.html", None, 400, title=msg("Sign-in failed"), detail=exc.detail, retry=True)


def _tenant_of(exchanged: Exchanged) -> str | None:
    return Session(exchanged.access_token, 0, "").tenant_id


class SignOut:
    def __init__(self, pages: Pages) -> None:
        self._pages = pages

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        try:
            session = self._pages.session(req)
        except NotSignedIn:
            session = None
        if session is not None:
            self._pages.form(req, session)  # a sign-out from another site is refused too
        self._pages.cookies.end_session(resp)
        self._pages.cookies.end_pick(resp)
        resp.status = falcon.HTTP_303
        resp.location = "/?signed_out=1"
