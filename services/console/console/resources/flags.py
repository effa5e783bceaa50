"""Flag definitions for platform people: list (live), create, edit, the kill switch, the rollout,
schedules and a preview.

Reading needs ``platform:read`` (platform-viewer) and changing needs ``platform:admin``; the
flags service decides with the person's token, and the console only hides what would be
refused anyway. The editor (:mod:`console.flag_editor`) is one plain form: its row buttons
re-render it, and "Save" puts the definition back with ``If-Match`` at the version the page
showed, so a change made meanwhile is a 412 the page explains instead of an overwrite.

The list follows the flags service's change stream through ``/flags/stream`` (:class:`FlagStream`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import falcon
import requests
import urllib3.exceptions

from aerie.i18n import msg
from console.api import ServiceProblem, segment
from console.domain import FormError, flag_from_form, preview_context, with_kill_switch, with_rollout
from console.flag_editor import (
    MAX_FIELDS,
    OPS,
    EditorErrors,
    apply_action,
    definition_from_editor,
    editor_from_flag,
    editor_from_form,
    schedule_from_form,
    service_errors,
)
from console.i18n import PageLanguage
from console.rows import flag_rows
from console.session import Session
from console.web import Forbidden, Pages

PLATFORM_ONLY = msg("Flag definitions are for platform people; your sign-in is a tenant's.")
#: How long one relay of the change stream lasts in a worker (the stream mule serves them
#: under uWSGI; a worker only without it): under harakiri (30 s). The page's script then
#: reconnects.
RELAY_SECONDS = 10.0
#: In the stream mule, which has no harakiri: as long as the flags service keeps its stream
#: open (``AERIE_SSE_MAX_SECONDS``, 5 minutes), and never past the person's token.
MULE_RELAY_SECONDS = 300.0
#: Past the flags service's heartbeat (15 s): a silent upstream is a dead one.
RELAY_READ_TIMEOUT_S = 17.0
#: Open relays per worker: each holds one of its few threads (base.ini: 2), so one is left
#: for pages. A relay over the cap is 503; the script retries later.
RELAYS_PER_PROCESS = 1
#: Definitions a page of the list shows, in key order; "Next page" shows the following ones.
FLAGS_PAGE_SIZE = 50


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


def _flag_values(pages: Pages, session: Session, req: falcon.Request, key: str) -> dict[str, Any]:
    """What the flag page shows besides the editor: the flag, tenants, schedules, a preview."""
    flag = pages.call(session, req, "GET", "flags", f"/v1/flags/{segment(key)}")
    tenants = pages.call(session, req, "GET", "tenants", "/v1/tenants", params={"limit": 100})["items"]
    values: dict[str, Any] = {"flag": flag, "tenants": tenants, "ops": OPS, "errors": {}, "schedule_errors": {}}
    if session.can("platform:admin"):
        values["schedules"] = pages.call(session, req, "GET", "flags", f"/v1/flags/{segment(key)}/schedule")["items"]
    values["editor"] = editor_from_flag(flag)
    return values


class FlagList:
    """``GET /flags``: a page of definitions by key (``?cursor=`` for the next), ``POST``: create one."""

    def __init__(self, pages: Pages) -> None:
        self._pages = pages

    def _page(self, session: Session, req: falcon.Request, cursor: str | None = None) -> dict[str, Any]:
        """The values of the list: the page's rows, the next page's cursor, whether this is a later page."""
        params: dict[str, Any] = {"limit": FLAGS_PAGE_SIZE}
        if cursor:
            params["cursor"] = cursor
        page = self._pages.call(session, req, "GET", "flags", "/v1/flags", params=params)
        rows = flag_rows(page["items"], self._pages.language.of(req, session))
        return {"rows": rows, "next_cursor": page.get("next_cursor"), "paged": bool(cursor)}

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        session = _platform(self._pages, req)
        values = self._page(session, req, req.get_param("cursor") or None)
        self._pages.render(req, resp, "flags.html", session, notice=req.get_param("notice"), **values)

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        session, form = _admin(self._pages, req)
        try:
            key, doc = flag_from_form(form)
        except FormError as exc:
            values = self._page(session, req)
            self._pages.render(req, resp, "flags.html", session, 422, error=exc.message, form=form, **values)
            return
        try:
            self._pages.call(session, req, "GET", "flags", f"/v1/flags/{segment(key)}")
        except ServiceProblem as exc:
            if exc.status != 404:
                raise
        else:
            # PUT creates or replaces: "Create" must not replace a flag someone else made.
            error = msg("There is already a flag %(key)s; open it to change it.", key=key)
            values = self._page(session, req)
            self._pages.render(req, resp, "flags.html", session, 409, error=error, form=form, **values)
            return
        self._pages.call(session, req, "PUT", "flags", f"/v1/flags/{segment(key)}", json=doc)
        self._pages.see_other(req, session, f"/flags/{segment(key)}", msg("Flag %(key)s saved.", key=key))


class FlagPage:
    def __init__(self, pages: Pages) -> None:
        self._pages = pages

    def on_get(self, req: falcon.Request, resp: falcon.Response, key: str) -> None:
        session = _platform(self._pages, req)
        values = _flag_values(self._pages, session, req, key)
        values["notice"] = req.get_param("notice")
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


def _render_flag(
    pages: Pages, req: falcon.Request, resp: falcon.Response, session: Session, key: str, status: int, **over: Any
) -> None:
    values = _flag_values(pages, session, req, key)
    values["query"] = {k: "" for k in ("tenant_id", "user_id", "session_id", "ip")}
    values.update(over)
    # The problems by field are messages inside a dict: in the page's language here.
    translations = pages.language.of(req, session)
    for name in ("errors", "schedule_errors"):
        values[name] = {field: PageLanguage.text(text, translations) for field, text in values[name].items()}
    pages.render(req, resp, "flag.html", session, status, **values)


class FlagDefinition:
    """``POST /flags/{key}/definition``: the editor's row buttons, and "Save"."""

    def __init__(self, pages: Pages) -> None:
        self._pages = pages

    def on_post(self, req: falcon.Request, resp: falcon.Response, key: str) -> None:
        session = _platform(self._pages, req)
        form = self._pages.form(req, session, MAX_FIELDS)
        if not session.can("platform:admin"):
            raise Forbidden(msg("Your role reads flags; changing them takes platform-admin."))
        editor = editor_from_form(form)
        action = form.get("action", "save")
        if action != "save":
            apply_action(editor, action)
            _render_flag(self._pages, req, resp, session, key, 200, editor=editor, editing=True)
            return
        doc, errors = definition_from_editor(editor)
        if editor.version is None:
            errors["version"] = msg("This form is out of date. Reload the page and try again.")
        if errors:
            _render_flag(
                self._pages,
                req,
                resp,
                session,
                key,
                422,
                editor=editor,
                errors=errors,
                editing=True,
                error=msg("Nothing was saved: see the fields marked below."),
            )
            return
        current = self._pages.call(session, req, "GET", "flags", f"/v1/flags/{segment(key)}")
        # What the editor does not show stays as it is now; If-Match decides whether "now" is what they saw.
        body = {"key": key, "enabled": current.get("enabled", True), "rollout": current.get("rollout"), **doc}
        try:
            self._pages.call(
                session, req, "PUT", "flags", f"/v1/flags/{segment(key)}", json=body, if_match=editor.version
            )
        except ServiceProblem as exc:
            if exc.status == 412:
                stale = msg(
                    "Someone changed this flag after you opened it (it is at version %(version)s now), so nothing "
                    "was saved. Your edits are still below: open the flag again to see the change, then make yours.",
                    version=current.get("version"),
                )
                _render_flag(self._pages, req, resp, session, key, 412, editor=editor, editing=True, error=stale)
                return
            if exc.status == 422:
                found: EditorErrors = service_errors(exc.errors)
                _render_flag(
                    self._pages,
                    req,
                    resp,
                    session,
                    key,
                    422,
                    editor=editor,
                    errors=found,
                    editing=True,
                    error=exc.detail,
                )
                return
            raise
        self._pages.see_other(req, session, f"/flags/{segment(key)}", msg("Flag %(key)s saved.", key=key))


class Schedules:
    """``POST /flags/{key}/schedules``: a change at a time."""

    def __init__(self, pages: Pages) -> None:
        self._pages = pages

    def on_post(self, req: falcon.Request, resp: falcon.Response, key: str) -> None:
        session, form = _admin(self._pages, req)
        body, errors = schedule_from_form(form)
        if not errors:
            try:
                self._pages.call(session, req, "POST", "flags", f"/v1/flags/{segment(key)}/schedule", json=body)
            except ServiceProblem as exc:
                if exc.status != 422:
                    raise
                errors = service_errors(exc.errors) or {"changes": exc.detail}
            else:
                notice = msg("Change of %(key)s scheduled for %(at)s.", key=key, at=body["at"])
                self._pages.see_other(req, session, f"/flags/{segment(key)}#schedules", notice)
        _render_flag(
            self._pages,
            req,
            resp,
            session,
            key,
            422,
            schedule_errors=errors,
            schedule_form=form,
            error=msg("Nothing was scheduled: see the fields marked below."),
        )


class CancelSchedule:
    """``POST /flags/{key}/schedules/{schedule_id}/cancel``."""

    def __init__(self, pages: Pages) -> None:
        self._pages = pages

    def on_post(self, req: falcon.Request, resp: falcon.Response, key: str, schedule_id: str) -> None:
        session, _ = _admin(self._pages, req)
        path = f"/v1/flags/{segment(key)}/schedule/{segment(schedule_id)}"
        try:
            self._pages.call(session, req, "DELETE", "flags", path)
        except ServiceProblem as exc:
            if exc.status != 409:
                raise
            notice = msg("That change was already applied; it cannot be cancelled.")
        else:
            notice = msg("Scheduled change cancelled.")
        self._pages.see_other(req, session, f"/flags/{segment(key)}#schedules", notice)


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


class _Relay:
    """The flags service's stream, passed on as it arrives until :data:`RELAY_SECONDS` are up.

    An iterable with ``close`` (WSGI calls it whether or not the body was read), so the
    upstream connection and the relay's slot are given back however the response ends.
    """

    def __init__(self, upstream: requests.Response, until: float, release: threading.Semaphore) -> None:
        self._upstream = upstream
        self._until = until
        self._release: threading.Semaphore | None = release

    def __iter__(self) -> Iterator[bytes]:
        # A reconnect in about a second; the script also refetches the list on each (re)connect,
        # since the stream does not replay what changed while it was down.
        yield b"retry: 1000\n\n"
        raw = self._upstream.raw
        try:
            while time.monotonic() < self._until:
                data = raw.read1(65536)  # what one read got: an event is not held back
                if not data:
                    return
                yield data
        except (requests.RequestException, OSError, urllib3.exceptions.HTTPError):
            return  # a read timeout or a dropped connection: the script reconnects
        finally:
            self.close()

    def close(self) -> None:
        self._upstream.close()
        release, self._release = self._release, None
        if release is not None:
            release.release()


class FlagStream:
    """``GET /flags/stream``: the flags service's change stream, relayed with the person's token.

    The browser's ``EventSource`` sends the session cookie (``HttpOnly``, same origin), and
    the console calls the flags service with the token from it, in the ``Authorization``
    header: the token never reaches script, storage or a URL. Another site cannot read the
    stream (no CORS header), and it changes nothing, so it needs no CSRF token.
    """

    def __init__(self, pages: Pages, *, relays: int = RELAYS_PER_PROCESS, relay_seconds: float = RELAY_SECONDS) -> None:
        self._pages = pages
        self._slots = threading.BoundedSemaphore(max(1, relays))
        self._relay_seconds = relay_seconds

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        session = _platform(self._pages, req)
        if not self._slots.acquire(blocking=False):
            resp.status = 503
            resp.set_header("Retry-After", "3")
            resp.content_type = "text/plain; charset=utf-8"
            resp.text = "busy"
            return
        try:
            upstream = self._pages.api.event_stream(
                session.access_token, "flags", "/v1/flags/stream", read_timeout=RELAY_READ_TIMEOUT_S
            )
        except BaseException:
            self._slots.release()
            raise
        seconds = max(1.0, min(self._relay_seconds, session.expires_at - time.time() - 5))
        resp.content_type = "text/event-stream; charset=utf-8"
        resp.set_header("X-Accel-Buffering", "no")
        resp.stream = _Relay(upstream, time.monotonic() + seconds, self._slots)
