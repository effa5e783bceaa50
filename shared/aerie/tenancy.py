"""The tenant a request acts on, from its verified principal: the one place that rule lives.

Tenant-bound storage takes a tenant id when it is made and can reach nothing else (the only
way past that is a class named ``Unsafe...``). Every service asks :class:`TenantScope` for
that id, so one rule holds everywhere:

- A tenant token acts on its own tenant. A tenant id the request names as well (a
  ``?tenant_id=``, a body field) may only repeat it: another one is 403.
- A platform token acts on the tenant it names, or on the platform itself when it names
  none, where the route lets platform tokens in (``platform``); elsewhere it is 403
  ``tenant_required``, as the middleware answers on a ``tenant=True`` route.
- A write of a tenant token needs its tenant active (403 ``tenant_suspended``). A platform
  write is not refused: the services record what happens to a suspended tenant.

The tenants service is the directory itself and keeps its own rule (``tenants.access``).
"""

from __future__ import annotations

from aerie import errors
from aerie.auth.principal import Principal
from aerie.i18n import msg
from aerie.tenant_directory import TenantSource, WriteGuard

__all__ = ["ANY_PLATFORM", "TenantScope"]

#: ``platform=ANY_PLATFORM``: every platform token the route's scopes let in.
ANY_PLATFORM = ""


class TenantScope:
    def __init__(self, tenants: TenantSource) -> None:
        self._guard = WriteGuard(tenants)

    def reading(self, principal: Principal, requested: str | None = None, *, platform: str | None = None) -> str | None:
        """The tenant to read, or None for the platform's own data (platform tokens only).

        ``platform`` is the scope a platform token needs here (:data:`ANY_PLATFORM`: none
        beyond the route's); None lets no platform token in.
        """
        if principal.tenant_id is None:
            if platform is None or (platform and not principal.has_scope(platform)):
                detail = (
                    msg("Use a tenant-bound token; only %(scope)s acts on any tenant.", scope=platform)
                    if platform
                    else msg("Use a tenant-bound token.")
                )
                raise errors.Problem(403, "tenant_required", detail)
            return requested
        if requested is not None and requested != principal.tenant_id:
            raise errors.forbidden(msg("A tenant token acts on its own tenant only."))
        return principal.tenant_id

    def writing(self, principal: Principal, requested: str | None = None, *, platform: str | None = None) -> str | None:
        """As :meth:`reading`, and a tenant token's tenant must be active."""
        tenant_id = self.reading(principal, requested, platform=platform)
        if principal.tenant_id is not None:
            self._guard.require_active(principal.tenant_id)
        return tenant_id

    def own(self, principal: Principal) -> str:
        """The caller's tenant, on a route only tenant tokens reach (``tenant=True``)."""
        tenant_id = self.reading(principal)
        assert tenant_id is not None
        return tenant_id

    def own_for_writing(self, principal: Principal) -> str:
        tenant_id = self.writing(principal)
        assert tenant_id is not None
        return tenant_id
