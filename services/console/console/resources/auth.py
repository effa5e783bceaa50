"""Home, sign-in (the provider round trip and the token exchange) and sign-out."""

from __future__ import annotations

import falcon

from aerie.i18n import msg
from console.oidc import SignInFailed, SignInFlow
from console.redirects import safe_next
from console.session import SignIn
from console.web import NotSignedIn, Pages


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
        sign_in = SignIn.new(safe_next(req.get_param("next")))
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
                raise SignInFailed(msg("This sign-in was not started here, or took too long. Start again."))
            if req.get_param("error"):
                raise SignInFailed(msg("The provider did not sign you in (%(error)s).", error=req.get_param("error")))
            code = req.get_param("code")
            if not code:
                raise SignInFailed(msg("The provider sent no authorization code. Start again."))
            exchanged = self._flow.finish(sign_in, code)
        except SignInFailed as exc:
            self._pages.render(
                req, resp, "error.html", None, 400, title=msg("Sign-in failed"), detail=exc.detail, retry=True
            )
            return
        cookies.start_session(resp, exchanged.access_token, exchanged.expires_in)
        resp.status = falcon.HTTP_303
        resp.location = safe_next(sign_in.next)


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
        resp.status = falcon.HTTP_303
        resp.location = "/?signed_out=1"
