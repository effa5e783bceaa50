"""``/v1/tenants``: tenant lifecycle."""

from __future__ import annotations

import falcon

from aerie import errors
from aerie.app import JSON_UTF8, dumps_json
from aerie.endpoints import endpoint
from aerie.events import EventContext
from aerie.pagination import page_schema
from aerie.versioning import expected_version, set_etag
from tenants import schemas
from tenants.access import authorize, refuse_if_suspended
from tenants.resources.members import MemberAccess
from tenants.storage import ClientStore, TenantStore

ADMIN = ("platform:admin",)


class TenantCollection:
    def __init__(self, tenants: TenantStore) -> None:
        self._tenants = tenants

    @endpoint(
        "Create a tenant",
        scopes=ADMIN,
        body=schemas.TENANT_CREATE,
        status=201,
        response=schemas.TENANT,
        idempotent=True,
        responses={409: "The slug is taken"},
    )
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        tenant = self._tenants.create(req.context.body, EventContext.from_request(req))
        resp.status = 201
        resp.location = f"/v1/tenants/{tenant['id']}"
        set_etag(resp, tenant["version"])
        resp.media = tenant

    @endpoint(
        "List tenants",
        scopes=("platform:read",),
        query=schemas.TENANT_LIST_QUERY,
        response=page_schema(schemas.TENANT),
    )
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        q = req.context.query
        resp.media = self._tenants.list(status=q.get("status"), limit=q["limit"], cursor=q.get("cursor")).as_body()


class TenantItem:
    def __init__(self, tenants: TenantStore, clients: ClientStore, members: MemberAccess) -> None:
        self._tenants = tenants
        self._clients = clients
        self._members = members

    @endpoint("Get a tenant", scopes=("tenants:read", "platform:read"), response=schemas.TENANT)
    def on_get(self, req: falcon.Request, resp: falcon.Response, tenant_id: str) -> None:
        authorize(req.context.principal, tenant_id, tenant_scope="tenants:read", platform_scope="platform:read")
        tenant = self._tenants.require(tenant_id)
        set_etag(resp, tenant["version"])
        resp.content_type = JSON_UTF8
        resp.data = dumps_json(tenant)

    @endpoint(
        "Change a tenant's name, language or (platform:admin) plan",
        scopes=("tenants:write", "platform:admin"),
        body=schemas.TENANT_PATCH,
        response=schemas.TENANT,
        responses={409: "The tenant is deleted", 412: "If-Match names a stale version"},
    )
    def on_patch(self, req: falcon.Request, resp: falcon.Response, tenant_id: str) -> None:
        principal = req.context.principal
        authorize(principal, tenant_id, tenant_scope="tenants:write", platform_scope="platform:admin")
        changes = req.context.body
        if "plan" in changes and not principal.is_platform:
            raise errors.forbidden("Only the platform can change a tenant's plan.")
        tenant = self._tenants.update(
            tenant_id,
            changes,
            EventContext.from_request(req),
            if_match=expected_version(req),
            check=lambda t: refuse_if_suspended(principal, t),
        )
        set_etag(resp, tenant["version"])
        resp.media = tenant

    @endpoint(
        "Delete a tenant: revokes its clients, removes its members; every service removes its data",
        scopes=ADMIN,
        status=204,
    )
    def on_delete(self, req: falcon.Request, resp: falcon.Response, tenant_id: str) -> None:
        ctx = EventContext.from_request(req)

        def revoke_clients_and_members(pipe: object, tid: str) -> None:
            self._clients.revoke_all_queued(pipe, tid, ctx)
            self._members.store(tid).remove_all_queued(pipe, ctx)

        self._tenants.change_status(tenant_id, "delete", ctx, on_delete=revoke_clients_and_members)
        resp.status = 204


class TenantAction:
    """``POST /v1/tenants/{id}/suspend`` and ``/reactivate``."""

    def __init__(self, tenants: TenantStore, action: str) -> None:
        self._tenants = tenants
        self._action = action

    @endpoint("Suspend or reactivate a tenant", scopes=ADMIN, response=schemas.TENANT, responses={409: "Deleted"})
    def on_post(self, req: falcon.Request, resp: falcon.Response, tenant_id: str) -> None:
        tenant = self._tenants.change_status(tenant_id, self._action, EventContext.from_request(req))
        set_etag(resp, tenant["version"])
        resp.media = tenant
