"""``/v1/tenants/{id}/members`` and ``/v1/platform/members``: people and their roles.

Both routes share one implementation over a :class:`~tenants.members.MemberStore` of the
right scope. A tenant's members are reached like its clients (:func:`tenants.access.authorize`:
its own token with ``members:*``, or the platform); the platform's people by
``platform:admin`` only. An admin (a person whose role is ``admin``) cannot add, change or
remove an owner; the last owner stays (409).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import falcon
import orjson

from aerie import errors
from aerie.auth.principal import Principal
from aerie.endpoints import endpoint
from aerie.events import EventContext, EventPublisher
from aerie.pagination import page_schema
from aerie.redis import RedisProvider
from aerie.validation import LIST_QUERY
from aerie.versioning import expected_version, set_etag
from tenants import schemas
from tenants.access import authorize, refuse_if_suspended
from tenants.members import BootstrapAdmin, MemberStore
from tenants.roles import check_may_manage
from tenants.storage import TenantStore

_TENANT_RESPONSES = {404: "No such tenant or member", 409: "The email is a member already, or the last owner"}
_PLATFORM_RESPONSES = {404: "No such member", 409: "The email is a member already, or the last platform-admin"}


class MemberAccess:
    """Hands each request the member store of the tenant in its path, once it may reach it."""

    def __init__(
        self, redis_provider: RedisProvider, events: EventPublisher, tenants: TenantStore, token_ttl_s: int
    ) -> None:
        self._redis = redis_provider
        self._events = events
        self._tenants = tenants
        self._ttl = token_ttl_s

    def store(self, tenant_id: str | None) -> MemberStore:
        return MemberStore(self._redis, self._events, tenant_id, token_ttl_s=self._ttl)

    def tenant_key(self, tenant_id: str) -> str:
        """The tenant document's key, which member writes WATCH (the tenant must take writes)."""
        return self._tenants.key(tenant_id)

    def for_reading(self, principal: Principal, tenant_id: str) -> MemberStore:
        authorize(principal, tenant_id, tenant_scope="members:read", platform_scope="platform:read")
        self._tenants.require(tenant_id)
        return self.store(tenant_id)

    def for_writing(self, principal: Principal, tenant_id: str) -> tuple[MemberStore, Callable[[Any], None]]:
        """The store and a check, run inside each write's transaction, that the tenant takes writes."""
        authorize(principal, tenant_id, tenant_scope="members:write", platform_scope="platform:admin")

        def tenant_takes_writes(pipe: Any) -> None:
            raw = pipe.get(self._tenants.key(tenant_id))
            if raw is None:
                raise errors.not_found()
            tenant = orjson.loads(raw)
            if tenant["status"] == "deleted":
                raise errors.not_found()
            refuse_if_suspended(principal, tenant)

        return self.store(tenant_id), tenant_takes_writes


def _created(req: falcon.Request, resp: falcon.Response, member: dict[str, Any], base: str) -> None:
    resp.status = 201
    resp.location = f"{base}/{member['id']}"
    set_etag(resp, member["version"])
    resp.media = member


class TenantMemberCollection:
    def __init__(self, access: MemberAccess) -> None:
        self._access = access

    @endpoint(
        "Invite a person to the tenant, by email, with a role",
        scopes=("members:write", "platform:admin"),
        body=schemas.member_create(platform=False),
        status=201,
        response=schemas.member(platform=False),
        idempotent=True,
        description="The member is `invited` until the person's first token exchange with that email, "
        "verified by a trusted provider; it is then `active` and bound to that provider account.",
        responses=_TENANT_RESPONSES,
    )
    def on_post(self, req: falcon.Request, resp: falcon.Response, tenant_id: str) -> None:
        principal = req.context.principal
        store, takes_writes = self._access.for_writing(principal, tenant_id)
        body = req.context.body
        check_may_manage(principal, current=None, new=body["role"])
        member = store.invite(
            body["email"],
            body["role"],
            body.get("language"),
            EventContext.from_request(req),
            before=takes_writes,
            watch=(self._access.tenant_key(tenant_id),),
        )
        _created(req, resp, member, f"/v1/tenants/{tenant_id}/members")

    @endpoint(
        "List the tenant's members",
        scopes=("members:read", "platform:read"),
        query=LIST_QUERY,
        response=page_schema(schemas.member(platform=False)),
        responses={404: "No such tenant"},
    )
    def on_get(self, req: falcon.Request, resp: falcon.Response, tenant_id: str) -> None:
        store = self._access.for_reading(req.context.principal, tenant_id)
        q = req.context.query
        resp.media = store.list(limit=q["limit"], cursor=q.get("cursor")).as_body()


class TenantMemberItem:
    def __init__(self, access: MemberAccess) -> None:
        self._access = access

    @endpoint(
        "Get a member",
        scopes=("members:read", "platform:read"),
        response=schemas.member(platform=False),
        responses=_TENANT_RESPONSES,
    )
    def on_get(self, req: falcon.Request, resp: falcon.Response, tenant_id: str, member_id: str) -> None:
        store = self._access.for_reading(req.context.principal, tenant_id)
        member = store.require(member_id)
        set_etag(resp, member["version"])
        resp.media = {k: v for k, v in member.items() if k != "identity"}

    @endpoint(
        "Change a member's role or language",
        scopes=("members:write", "platform:admin"),
        body=schemas.member_patch(platform=False),
        response=schemas.member(platform=False),
        description="A role change stops the member's current tokens everywhere within a second; their next "
        "token exchange carries the new role.",
        responses={**_TENANT_RESPONSES, 412: "If-Match names a stale version"},
    )
    def on_patch(self, req: falcon.Request, resp: falcon.Response, tenant_id: str, member_id: str) -> None:
        principal = req.context.principal
        store, takes_writes = self._access.for_writing(principal, tenant_id)
        changes = req.context.body
        member = store.update(
            member_id,
            changes,
            EventContext.from_request(req),
            if_match=expected_version(req),
            check=lambda m: check_may_manage(principal, current=m["role"], new=changes.get("role")),
            before=takes_writes,
            watch=(self._access.tenant_key(tenant_id),),
        )
        set_etag(resp, member["version"])
        resp.media = member

    @endpoint(
        "Remove a member: their tokens stop working everywhere",
        scopes=("members:write", "platform:admin"),
        status=204,
        responses=_TENANT_RESPONSES,
    )
    def on_delete(self, req: falcon.Request, resp: falcon.Response, tenant_id: str, member_id: str) -> None:
        principal = req.context.principal
        store, takes_writes = self._access.for_writing(principal, tenant_id)
        store.remove(
            member_id,
            EventContext.from_request(req),
            check=lambda m: check_may_manage(principal, current=m["role"], new=None),
            before=takes_writes,
            watch=(self._access.tenant_key(tenant_id),),
        )
        resp.status = 204


ADMIN = ("platform:admin",)


class PlatformMemberCollection:
    def __init__(self, access: MemberAccess, bootstrap: BootstrapAdmin) -> None:
        self._access = access
        self._bootstrap = bootstrap

    @endpoint(
        "Invite an operator of the whole platform",
        scopes=ADMIN,
        body=schemas.member_create(platform=True),
        status=201,
        response=schemas.member(platform=True),
        idempotent=True,
        responses=_PLATFORM_RESPONSES,
    )
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        body = req.context.body
        member = self._access.store(None).invite(
            body["email"], body["role"], body.get("language"), EventContext.from_request(req)
        )
        _created(req, resp, member, "/v1/platform/members")

    @endpoint("List the platform's people", scopes=ADMIN, query=LIST_QUERY, response=page_schema(schemas.member(True)))
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        self._bootstrap.ensure()
        q = req.context.query
        resp.media = self._access.store(None).list(limit=q["limit"], cursor=q.get("cursor")).as_body()


class PlatformMemberItem:
    def __init__(self, access: MemberAccess) -> None:
        self._access = access

    @endpoint(
        "Get one of the platform's people", scopes=ADMIN, response=schemas.member(True), responses=_PLATFORM_RESPONSES
    )
    def on_get(self, req: falcon.Request, resp: falcon.Response, member_id: str) -> None:
        member = self._access.store(None).require(member_id)
        set_etag(resp, member["version"])
        resp.media = {k: v for k, v in member.items() if k != "identity"}

    @endpoint(
        "Change a platform person's role or language",
        scopes=ADMIN,
        body=schemas.member_patch(platform=True),
        response=schemas.member(platform=True),
        responses={**_PLATFORM_RESPONSES, 412: "If-Match names a stale version"},
    )
    def on_patch(self, req: falcon.Request, resp: falcon.Response, member_id: str) -> None:
        member = self._access.store(None).update(
            member_id, req.context.body, EventContext.from_request(req), if_match=expected_version(req)
        )
        set_etag(resp, member["version"])
        resp.media = member

    @endpoint("Remove a platform person", scopes=ADMIN, status=204, responses=_PLATFORM_RESPONSES)
    def on_delete(self, req: falcon.Request, resp: falcon.Response, member_id: str) -> None:
        self._access.store(None).remove(member_id, EventContext.from_request(req))
        resp.status = 204
