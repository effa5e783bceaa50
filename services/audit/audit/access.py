"""Which trail a caller may read or append to.

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

from aerie import errors
from aerie.auth.principal import PLATFORM_ADMIN, Principal
from aerie.redis import RedisProvider
from aerie.tenant_directory import WriteGuard
from audit.trail import Trail

__all__ = ["Trails"]


class Trails:
    def __init__(self, redis_provider: RedisProvider, guard: WriteGuard) -> None:
        self._redis = redis_provider
        self._guard = guard

    def for_reading(self, principal: Principal, requested: str | None) -> Trail:
        if principal.is_platform:
            if PLATFORM_ADMIN not in principal.scopes:
                raise errors.Problem(
                    403, "tenant_required", "Use a tenant-bound token; only platform:admin reads any trail."
                )
            return Trail(self._redis, requested)
        if requested is not None and requested != principal.tenant_id:
            raise errors.forbidden("Only platform:admin may read another tenant's trail.")
        return Trail(self._redis, principal.tenant_id)

    def for_writing(self, principal: Principal, requested: str | None) -> Trail:
        if principal.is_platform:
            return Trail(self._redis, requested)
        if requested is not None and requested != principal.tenant_id:
            raise errors.forbidden("A tenant token appends to its own tenant's trail only.")
        assert principal.tenant_id is not None
        self._guard.require_active(principal.tenant_id)
        return Trail(self._redis, principal.tenant_id)
