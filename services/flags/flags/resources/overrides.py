"""Overrides of the caller's tenant: for the whole tenant, or for one of its users."""

from __future__ import annotations

import falcon

from aerie import errors
from aerie.auth.principal import Principal
from aerie.endpoints import endpoint
from aerie.events import EventContext, EventPublisher
from aerie.redis import RedisProvider
from aerie.tenancy import TenantScope
from flags import schemas
from flags.snapshot import FlagReplica
from flags.storage import TenantOverrides

WRITE = ("flags:write",)
#: A person may set and remove their own user override with flags:read alone.
OWN = ("flags:write", "flags:read")
#: A user id as clients send it: printable, no whitespace, bounded.
USER_PATH = {"user_id": {"type": "string", "regex": r"[^\s\x00-\x1f\x7f]{1,256}"}}
_RESPONSES = {
    403: "The flag's allow_overrides does not admit this override, or the tenant is suspended",
    404: "There is no such flag",
}


class OverrideAccess:
    """Hands each request the overrides of its tenant (:class:`aerie.tenancy.TenantScope`),
    and applies its writes to this process's snapshot at once."""

    def __init__(
        self, redis_provider: RedisProvider, events: EventPublisher, scope: TenantScope, snapshot: FlagReplica
    ) -> None:
        self._redis = redis_provider
        self._events = events
        self._scope = scope
        self._snapshot = snapshot

    def writer(self, req: falcon.Request) -> TenantOverrides:
        return TenantOverrides(self._redis, self._scope.own_for_writing(req.context.principal), self._events)

    def set(self, req: falcon.Request, resp: falcon.Response, key: str, user_id: str | None) -> None:
        override, event = self.writer(req).set(key, user_id, req.context.body["value"], EventContext.from_request(req))
        self._snapshot.apply(event, local=True)
        resp.media = override

    def remove(self, req: falcon.Request, resp: falcon.Response, key: str, user_id: str | None) -> None:
        event = self.writer(req).remove(key, user_id, EventContext.from_request(req))
        if event is not None:
            self._snapshot.apply(event, local=True)
        resp.status = 204


class TenantOverride:
    def __init__(self, overrides: OverrideAccess) -> None:
        self._overrides = overrides

    @endpoint(
        "Set the caller tenant's override of a flag",
        scopes=WRITE,
        tenant=True,
        body=schemas.OVERRIDE_PUT,
        response=schemas.OVERRIDE,
        description="Allowed when the flag's `allow_overrides` is `tenant` or `user`. The value must be one "
        "the flag can serve: a variant's name, or a value of the default's type.",
        responses=_RESPONSES,
    )
    def on_put(self, req: falcon.Request, resp: falcon.Response, key: str) -> None:
        self._overrides.set(req, resp, key, None)

    @endpoint(
        "Remove the caller tenant's override of a flag",
        scopes=WRITE,
        tenant=True,
        status=204,
        responses=_RESPONSES,
    )
    def on_delete(self, req: falcon.Request, resp: falcon.Response, key: str) -> None:
        self._overrides.remove(req, resp, key, None)


def _may_override(principal: Principal, user_id: str) -> None:
    """flags:write sets anyone's override; a person with flags:read alone only their own."""
    if principal.has_scope("flags:write"):
        return
    if not (principal.is_user and user_id == principal.subject):
        raise errors.Problem(
            403,
            "insufficient_scope",
            "Another user's override needs the flags:write scope; with flags:read a person sets only their own.",
            headers={"WWW-Authenticate": 'Bearer error="insufficient_scope", scope="flags:write"'},
        )


class UserOverride:
    def __init__(self, overrides: OverrideAccess) -> None:
        self._overrides = overrides

    @endpoint(
        "Set one user's override of a flag, in the caller's tenant",
        scopes=OWN,
        tenant=True,
        body=schemas.OVERRIDE_PUT,
        response=schemas.OVERRIDE,
        description="Allowed when the flag's `allow_overrides` is `user`. It applies to evaluations of the "
        "caller's tenant whose context has this `user_id`. flags:write sets any user's; a person's token with "
        "flags:read sets the person's own (`user_id` = the token's `sub`).",
        path=USER_PATH,
        responses=_RESPONSES,
    )
    def on_put(self, req: falcon.Request, resp: falcon.Response, key: str, user_id: str) -> None:
        _may_override(req.context.principal, user_id)
        self._overrides.set(req, resp, key, user_id)

    @endpoint(
        "Remove one user's override of a flag, in the caller's tenant",
        scopes=OWN,
        tenant=True,
        path=USER_PATH,
        status=204,
        description="flags:write removes any user's; a person's token with flags:read removes the person's own.",
        responses=_RESPONSES,
    )
    def on_delete(self, req: falcon.Request, resp: falcon.Response, key: str, user_id: str) -> None:
        _may_override(req.context.principal, user_id)
        self._overrides.remove(req, resp, key, user_id)
