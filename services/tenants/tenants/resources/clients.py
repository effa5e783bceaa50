"""``/v1/tenants/{id}/clients``: a tenant's API clients."""

from __future__ import annotations

import falcon

from aerie import errors
from aerie.endpoints import endpoint
from aerie.events import EventContext
from aerie.pagination import page_schema
from aerie.validation import LIST_QUERY
from tenants import schemas
from tenants.access import authorize, refuse_if_suspended
from tenants.storage import ClientStore, TenantStore


class ClientCollection:
    def __init__(self, tenants: TenantStore, clients: ClientStore) -> None:
        self._tenants = tenants
        self._clients = clients

    @endpoint(
        "Create an API client; its secret is shown once",
        scopes=("tenants:write", "platform:admin"),
        body=schemas.CLIENT_CREATE,
        status=201,
        response=schemas.CLIENT_CREATED,
        idempotent=True,
    )
    def on_post(self, req: falcon.Request, resp: falcon.Response, tenant_id: str) -> None:
        principal = req.context.principal
        authorize(principal, tenant_id, tenant_scope="tenants:write", platform_scope="platform:admin")
        refuse_if_suspended(principal, self._tenants.require(tenant_id))
        scopes = req.context.body["scopes"]
        beyond = [s for s in scopes if not principal.has_scope(s)]
        if beyond:
            raise errors.forbidden(f"A client cannot grant scopes it does not hold: {' '.join(sorted(beyond))}.")
        body = req.context.body
        client, secret = self._clients.create(
            tenant_id, body["name"], scopes, EventContext.from_request(req), grants=body.get("grants")
        )
        resp.status = 201
        resp.location = f"/v1/tenants/{tenant_id}/clients/{client['client_id']}"
        resp.set_header("Cache-Control", "no-store")
        resp.media = {**client, "client_secret": secret}

    @endpoint(
        "List a tenant's API clients",
        scopes=("tenants:read", "platform:read"),
        query=LIST_QUERY,
        response=page_schema(schemas.CLIENT),
    )
    def on_get(self, req: falcon.Request, resp: falcon.Response, tenant_id: str) -> None:
        authorize(req.context.principal, tenant_id, tenant_scope="tenants:read", platform_scope="platform:read")
        self._tenants.require(tenant_id)
        q = req.context.query
        resp.media = self._clients.list(tenant_id, limit=q["limit"], cursor=q.get("cursor")).as_body()


class ClientItem:
    def __init__(self, tenants: TenantStore, clients: ClientStore) -> None:
        self._tenants = tenants
        self._clients = clients

    @endpoint(
        "Revoke an API client: its tokens stop working everywhere",
        scopes=("tenants:write", "platform:admin"),
        status=204,
    )
    def on_delete(self, req: falcon.Request, resp: falcon.Response, tenant_id: str, client_id: str) -> None:
        principal = req.context.principal
        authorize(principal, tenant_id, tenant_scope="tenants:write", platform_scope="platform:admin")
        refuse_if_suspended(principal, self._tenants.require(tenant_id))
        self._clients.revoke(tenant_id, client_id, EventContext.from_request(req))
        resp.status = 204
