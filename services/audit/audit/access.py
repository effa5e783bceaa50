"""Which trail a caller may read or append to (the rule itself is :class:`aerie.tenancy.TenantScope`'s).

Reading (``audit:read``): a tenant token reads its own tenant's trail (``?tenant_id=`` may
only repeat it); a platform token needs ``platform:admin`` and reads the tenant it names,
or the platform trail when it names none. Appending (``audit:write``): a tenant token
appends to its own trail; a platform token (the services' clients) names the tenant in the
body, or none for the platform trail. A platform token without ``platform:admin`` cannot
read any trail: 403 ``tenant_required``, as on every tenant-scoped route.

A tenant token's append is a write of that tenant, so a suspended (or deleted) tenant gets
403 ``tenant_suspended`` as everywhere else; the services' own platform clients still
record what happens to such a tenant (its suspension is itself an entry).
"""

from __future__ import annotations

from aerie.auth.principal import PLATFORM_ADMIN, Principal
from aerie.redis import RedisProvider
from aerie.tenancy import ANY_PLATFORM, TenantScope
from audit.trail import Trail

__all__ = ["TrailAccess"]


class TrailAccess:
    def __init__(self, redis_provider: RedisProvider, scope: TenantScope) -> None:
        self._redis = redis_provider
        self._scope = scope

    def for_reading(self, principal: Principal, requested: str | None) -> Trail:
        return Trail(self._redis, self._scope.reading(principal, requested, platform=PLATFORM_ADMIN))

    def for_writing(self, principal: Principal, requested: str | None) -> Trail:
        return Trail(self._redis, self._scope.writing(principal, requested, platform=ANY_PLATFORM))
