"""``/v1/projects``: the caller tenant's projects. Thin: storage and the write guard decide."""

from __future__ import annotations

import falcon

from aerie.app import JSON_UTF8
from aerie.endpoints import endpoint
from aerie.events import EventContext, EventPublisher
from aerie.pagination import page_schema
from aerie.redis import RedisProvider
from aerie.tenancy import TenantScope
from aerie.versioning import expected_version, set_etag
from projects import schemas
from projects.pages import ProjectPageCache
from projects.storage import ProjectRepository

READ = ("projects:read",)
WRITE = ("projects:write",)


class ProjectAccess:
    """Hands each request the repository of its tenant (:class:`aerie.tenancy.TenantScope`)."""

    def __init__(
        self,
        redis_provider: RedisProvider,
        events: EventPublisher,
        scope: TenantScope,
        pages: ProjectPageCache | None = None,
    ) -> None:
        self._redis = redis_provider
        self._events = events
        self._scope = scope
        self._pages = pages

    def reader(self, req: falcon.Request) -> ProjectRepository:
        return ProjectRepository(self._redis, self._scope.own(req.context.principal), self._events, self._pages)

    def writer(self, req: falcon.Request) -> ProjectRepository:
        tenant_id = self._scope.own_for_writing(req.context.principal)
        return ProjectRepository(self._redis, tenant_id, self._events, self._pages)


class ProjectCollection:
    def __init__(self, projects: ProjectAccess) -> None:
        self._projects = projects

    @endpoint(
        "Create a project",
        scopes=WRITE,
        tenant=True,
        body=schemas.PROJECT_CREATE,
        status=201,
        response=schemas.PROJECT,
        idempotent=True,
        responses={409: "The slug is taken", 403: "The tenant is suspended"},
    )
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        project = self._projects.writer(req).create(req.context.body, EventContext.from_request(req))
        resp.status = 201
        resp.location = f"/v1/projects/{project['id']}"
        set_etag(resp, project["version"])
        resp.media = project

    @endpoint(
        "List the caller tenant's projects",
        scopes=READ,
        tenant=True,
        query=schemas.PROJECT_LIST_QUERY,
        response=page_schema(schemas.PROJECT),
    )
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        q = req.context.query
        page = self._projects.reader(req).list(status=q.get("status"), limit=q["limit"], cursor=q.get("cursor"))
        resp.content_type = JSON_UTF8
        resp.data = page.body()


class ProjectItem:
    def __init__(self, projects: ProjectAccess) -> None:
        self._projects = projects

    @endpoint("Get a project", scopes=READ, tenant=True, response=schemas.PROJECT)
    def on_get(self, req: falcon.Request, resp: falcon.Response, project_id: str) -> None:
        # The stored document is the representation, as orjson wrote it: sent as it is.
        raw, version = self._projects.reader(req).require_json(project_id)
        set_etag(resp, version)
        resp.content_type = JSON_UTF8
        resp.data = raw.encode()

    @endpoint(
        "Change a project's name, slug, description or status",
        scopes=WRITE,
        tenant=True,
        body=schemas.PROJECT_PATCH,
        response=schemas.PROJECT,
        responses={409: "The slug is taken", 412: "If-Match names a stale version"},
    )
    def on_patch(self, req: falcon.Request, resp: falcon.Response, project_id: str) -> None:
        repo = self._projects.writer(req)
        project = repo.update(
            project_id, req.context.body, EventContext.from_request(req), if_match=expected_version(req)
        )
        set_etag(resp, project["version"])
        resp.media = project

    @endpoint(
        "Delete a project",
        scopes=WRITE,
        tenant=True,
        status=204,
        responses={412: "If-Match names a stale version"},
    )
    def on_delete(self, req: falcon.Request, resp: falcon.Response, project_id: str) -> None:
        repo = self._projects.writer(req)
        repo.delete(project_id, EventContext.from_request(req), if_match=expected_version(req))
        resp.status = 204


class ProjectBatchUpdate:
    """``POST /v1/projects/batch-update``: one set of changes, up to 100 projects."""

    def __init__(self, projects: ProjectAccess) -> None:
        self._projects = projects

    @endpoint(
        "Apply the same changes to many projects (each atomically)",
        scopes=WRITE,
        tenant=True,
        body=schemas.BATCH_UPDATE,
        response=schemas.BATCH_RESULT,
        description="`updated` lists the ids of the projects changed, in the order given (each once). Ids "
        "that are not the caller tenant's projects (missing, or another tenant's) are listed in `not_found`. "
        "A slug cannot be batch-changed: it is unique per tenant.",
    )
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        body = req.context.body
        repo = self._projects.writer(req)
        updated, not_found = repo.batch_update(body["ids"], body["changes"], EventContext.from_request(req))
        resp.media = {"updated": [project["id"] for project in updated], "not_found": not_found}
