"""The person's tenant's projects: list, create, edit (name, slug, description), delete.

The projects service takes the tenant from the token alone, so no URL of these pages names
one: another tenant's project id is the service's 404, exactly as one that does not exist.
A platform sign-in has no tenant and is told so before any service is asked. Reading needs
``projects:read`` (every tenant role), changing ``projects:write`` (not viewers).
"""

from __future__ import annotations

import falcon

from aerie.i18n import msg
from console.api import segment
from console.domain import FormError, project_changes, project_from_form
from console.session import Session
from console.web import Forbidden, Pages

TENANT_ONLY = msg("Projects belong to a tenant; your sign-in is the platform's.")


def _tenant_person(pages: Pages, req: falcon.Request) -> Session:
    session = pages.session(req)
    if session.is_platform:
        raise Forbidden(TENANT_ONLY)
    if not session.can("projects:read"):
        raise Forbidden(msg("Your role does not show the tenant's projects."))
    return session


def _path(project_id: str) -> str:
    return f"/v1/projects/{segment(project_id)}"


class Projects:
    def __init__(self, pages: Pages) -> None:
        self._pages = pages

    def _render(
        self, req: falcon.Request, resp: falcon.Response, session: Session, status: int = 200, **kw: object
    ) -> None:
        page = self._pages.call(session, req, "GET", "projects", "/v1/projects", params={"limit": 100})
        can_write = session.can("projects:write")
        self._pages.render(
            req, resp, "projects.html", session, status, projects=page["items"], can_write=can_write, **kw
        )

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        session = _tenant_person(self._pages, req)
        self._render(req, resp, session, notice=req.get_param("notice"))

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        session = _tenant_person(self._pages, req)
        form = self._pages.form(req, session)
        try:
            body = project_from_form(form)
        except FormError as exc:
            self._render(req, resp, session, 422, error=exc.message, form=form)
            return
        project = self._pages.call(session, req, "POST", "projects", "/v1/projects", json=body)
        self._pages.see_other(
            req, session, f"/projects/{segment(project['id'])}", msg("Project %(name)s created.", name=project["name"])
        )


class Project:
    def __init__(self, pages: Pages) -> None:
        self._pages = pages

    def on_get(self, req: falcon.Request, resp: falcon.Response, project_id: str) -> None:
        session = _tenant_person(self._pages, req)
        project = self._pages.call(session, req, "GET", "projects", _path(project_id))
        self._pages.render(
            req,
            resp,
            "project.html",
            session,
            project=project,
            can_write=session.can("projects:write"),
            notice=req.get_param("notice"),
        )

    def on_post(self, req: falcon.Request, resp: falcon.Response, project_id: str) -> None:
        """The edit form: a PATCH at the version the form was read at (a change since is 412)."""
        session = _tenant_person(self._pages, req)
        form = self._pages.form(req, session)
        try:
            changes, version = project_changes(form)
        except FormError as exc:
            project = self._pages.call(session, req, "GET", "projects", _path(project_id))
            self._pages.render(
                req, resp, "project.html", session, 422, project=project, can_write=True, error=exc.message, form=form
            )
            return
        project = self._pages.call(session, req, "PATCH", "projects", _path(project_id), json=changes, if_match=version)
        self._pages.see_other(
            req, session, f"/projects/{segment(project_id)}", msg("Project %(name)s saved.", name=project["name"])
        )


class DeleteProject:
    """``POST /projects/{id}/delete``: first the confirmation, then (``confirm=yes``) the deletion."""

    def __init__(self, pages: Pages) -> None:
        self._pages = pages

    def on_post(self, req: falcon.Request, resp: falcon.Response, project_id: str) -> None:
        session = _tenant_person(self._pages, req)
        form = self._pages.form(req, session)
        raw = form.get("version", "").strip()
        version = int(raw) if raw.isdigit() else None
        if form.get("confirm") != "yes":
            name = form.get("name", "")[:200]
            self._pages.render(
                req, resp, "project_delete.html", session, project_id=project_id, name=name, version=version
            )
            return
        self._pages.call(session, req, "DELETE", "projects", _path(project_id), if_match=version)
        self._pages.see_other(req, session, "/projects", msg("Project deleted."))
