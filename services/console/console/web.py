"""What every console page shares: templates, the session, CSRF, forms and error pages.

Every response carries a strict Content-Security-Policy: nothing but the console's own
stylesheet and scripts load (no inline script, no other origin; a script may connect only
back to the console), forms post only to the console, and no other site may frame it.
Every essential action is a plain HTML form, so the console works without JavaScript; a
script only adds to a page (the flag list follows changes live).

Every page is in the person's language (:mod:`console.i18n`): the templates' text, the
messages the console says itself (:func:`aerie.i18n.msg`: notices, form errors, refusals)
and its dates and numbers.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import falcon
from jinja2 import Environment, FileSystemLoader, select_autoescape

from aerie.i18n import Message, msg
from console.api import Api, Download, ServiceProblem
from console.i18n import I18N_VARIABLE, PageLanguage, install
from console.redirects import safe_next
from console.session import Cookies, Session

__all__ = ["CSP", "Forbidden", "NotSignedIn", "Pages", "SecurityHeaders", "form_of"]

log = logging.getLogger("aerie.console")
HERE = Path(__file__).resolve().parent
CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self'; script-src 'self'; connect-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
#: A form of the console is small; anything larger is not one of ours.
MAX_FORM_BYTES = 64 * 1024
#: The title of an error Falcon raises itself ("404 Not Found"), in words the catalog has.
STATUS_TITLES = {
    400: msg("Bad request"),
    403: msg("Forbidden"),
    404: msg("Not found"),
    405: msg("Method not allowed"),
    413: msg("Payload too large"),
    415: msg("Unsupported media type"),
}


class NotSignedIn(Exception):
    """No valid session (or its token expired): the person signs in again, then comes back."""


class Forbidden(Exception):
    """What the person's role does not allow (or a form without its CSRF token)."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class SecurityHeaders:
    def process_response(self, req: falcon.Request, resp: falcon.Response, resource: object, ok: bool) -> None:
        resp.set_header("Content-Security-Policy", CSP)
        resp.set_header("X-Content-Type-Options", "nosniff")
        resp.set_header("Referrer-Policy", "same-origin")
        resp.set_header("X-Frame-Options", "DENY")
        if not req.path.startswith("/static/"):
            resp.set_header("Cache-Control", "no-store")


def form_of(req: falcon.Request, max_fields: int = 100) -> dict[str, str]:
    """An ``application/x-www-form-urlencoded`` body; the last value of a repeated field wins.

    More than ``max_fields`` fields is a 400 (the flag editor posts a few per row).
    """
    if (req.content_type or "").split(";")[0].strip() != "application/x-www-form-urlencoded":
        return {}
    length = req.content_length or 0
    if length > MAX_FORM_BYTES:
        raise falcon.HTTPContentTooLarge(description=msg("A console form is smaller than this."))
    raw = req.bounded_stream.read(length).decode("utf-8", errors="replace")
    try:
        return dict(parse_qsl(raw, keep_blank_values=True, max_num_fields=max_fields))
    except ValueError:
        raise falcon.HTTPBadRequest(description=msg("A console form has fewer fields than this.")) from None


class Pages:
    """Rendering and the session rules, shared by every resource."""

    def __init__(self, cookies: Cookies, api: Api, language: PageLanguage | None = None) -> None:
        self.cookies = cookies
        self.api = api
        self.language = language or PageLanguage()
        self.templates = Environment(
            loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(["html"]), auto_reload=False
        )
        install(self.templates)

    def session(self, req: falcon.Request) -> Session:
        """The signed-in person's live session, or :class:`NotSignedIn`."""
        session = self.cookies.session(req)
        if session is None or session.expired():
            raise NotSignedIn()
        return session

    def form(self, req: falcon.Request, session: Session, max_fields: int = 100) -> dict[str, str]:
        """The posted form, once its CSRF token matches the session's."""
        form = form_of(req, max_fields)
        if not session.csrf_matches(form.get("csrf")):
            raise Forbidden(
                msg("This form is out of date or did not come from the console. Reload the page and try again.")
            )
        return form

    def render(
        self,
        req: falcon.Request,
        resp: falcon.Response,
        template: str,
        session: Session | None = None,
        status: int = 200,
        **values: Any,
    ) -> None:
        """``template`` in the request's language; a :class:`~aerie.i18n.Message` among ``values`` too."""
        translations = self.language.of(req, session)
        resp.status = status
        resp.content_type = "text/html; charset=utf-8"
        resp.set_header("Content-Language", translations.language)
        resp.append_header("Vary", "Accept-Language")
        shown = {name: PageLanguage.text(value, translations) for name, value in values.items()}
        resp.text = self.templates.get_template(template).render(
            session=session, **{I18N_VARIABLE: translations}, **shown
        )

    def call(self, session: Session, req: falcon.Request, method: str, service: str, path: str, **kw: Any) -> Any:
        return self.api.call(
            session.access_token, method, service, path, language=req.get_header("Accept-Language"), **kw
        )

    def stream(
        self, session: Session, req: falcon.Request, service: str, path: str, params: dict[str, Any] | None = None
    ) -> Download:
        """A download from a service, with the person's token, passed on as it arrives."""
        return self.api.stream(
            session.access_token, service, path, params=params, language=req.get_header("Accept-Language")
        )

    def see_other(self, req: falcon.Request, session: Session, location: str, notice: str | None = None) -> None:
        """Post/redirect/get: the page after a change, with what happened in ``?notice=``.

        The notice goes in the language of the form's request, which is the next page's.
        """
        if notice:
            shown = PageLanguage.text(notice, self.language.of(req, session))
            # Before a #fragment, which is the browser's and never reaches the server.
            location, hash_, fragment = location.partition("#")
            location += ("&" if "?" in location else "?") + urlencode({"notice": shown}) + hash_ + fragment
        raise falcon.HTTPSeeOther(location)

    # Error pages ------------------------------------------------------------------------

    def install(self, app: falcon.App) -> None:
        pages = self

        def not_signed_in(req: falcon.Request, resp: falcon.Response, ex: Exception, params: Mapping[str, Any]) -> None:
            # After sign-in a GET comes back to its page; a POST to the page its form was on.
            target = req.relative_uri if req.method in ("GET", "HEAD") else (req.get_header("Referer") or "/")
            query = {"next": safe_next(_path_of(target))}
            lapsed = pages.cookies.session(req)
            if lapsed is not None and lapsed.chose_tenant and lapsed.tenant_id:
                # Back to the tenant the person chose, not to the picker again.
                query["tenant"] = lapsed.tenant_id
            raise falcon.HTTPSeeOther("/sign-in?" + urlencode(query))

        def forbidden(req: falcon.Request, resp: falcon.Response, ex: Exception, params: Mapping[str, Any]) -> None:
            assert isinstance(ex, Forbidden)
            pages.render(
                req, resp, "error.html", pages.cookies.session(req), 403, title=msg("Not allowed"), detail=ex.detail
            )

        def problem(req: falcon.Request, resp: falcon.Response, ex: Exception, params: Mapping[str, Any]) -> None:
            assert isinstance(ex, ServiceProblem)
            if ex.status == 401:
                not_signed_in(req, resp, ex, params)
            status = ex.status if 400 <= ex.status < 600 else 502
            pages.render(
                req,
                resp,
                "error.html",
                pages.cookies.session(req),
                status,
                title=ex.title,
                detail=ex.detail,
                request_id=ex.request_id,
            )

        def http_error(req: falcon.Request, resp: falcon.Response, ex: Exception, params: Mapping[str, Any]) -> None:
            assert isinstance(ex, falcon.HTTPError)
            pages.render(
                req,
                resp,
                "error.html",
                pages.cookies.session(req),
                ex.status_code,
                title=_title(ex),
                detail=ex.description or "",
            )

        def unexpected(req: falcon.Request, resp: falcon.Response, ex: Exception, params: Mapping[str, Any]) -> None:
            if isinstance(ex, falcon.HTTPStatus | falcon.HTTPError):
                raise ex
            log.exception("console page failed", extra={"path": req.path})
            pages.render(
                req,
                resp,
                "error.html",
                None,
                500,
                title=msg("Something went wrong"),
                detail=msg("The console could not show this page. It has been logged; try again."),
                request_id=req.get_header("X-Request-ID"),
            )

        app.add_error_handler(Exception, unexpected)
        app.add_error_handler(falcon.HTTPError, http_error)
        app.add_error_handler(NotSignedIn, not_signed_in)
        app.add_error_handler(Forbidden, forbidden)
        app.add_error_handler(ServiceProblem, problem)


def _title(ex: falcon.HTTPError) -> str:
    """The console's own titles as they are (translated when shown); Falcon's by status, in the catalog's words."""
    if isinstance(ex.title, Message):
        return ex.title
    return STATUS_TITLES.get(ex.status_code) or ex.title or msg("Error")


def _path_of(target: str) -> str:
    """The path (and query) of a Referer, which is a full URL."""
    if target.startswith("/"):
        return target
    parts = urlsplit(target)
    return parts.path + (f"?{parts.query}" if parts.query else "")
