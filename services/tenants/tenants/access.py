"""Who may touch which tenant: the rules shared by the tenant and client resources.

A tenant-bound token reaches only its own tenant, and another tenant's id answers exactly
like a missing one (404). A platform token needs the platform scope the action calls for.

The other services bind their stores through :class:`aerie.tenancy.TenantScope`; this
service differs because here the tenant is the resource in the path, not the caller's
data, and its status is read from the tenant document itself, not from a directory.
"""

from __future__ import annotations

from typing import Any

from aerie import errors
from aerie.auth.principal import Principal

__all__ = ["authorize", "refuse_if_suspended"]


def authorize(principal: Principal, tenant_id: str, *, tenant_scope: str, platform_scope: str) -> None:
    if principal.tenant_id is not None:
        if principal.tenant_id != tenant_id:
            raise errors.not_found()
        if not principal.has_scope(tenant_scope):
            raise errors.Problem(403, "insufficient_scope", f"This action needs the {tenant_scope} scope.")
    elif not principal.has_scope(platform_scope):
        raise errors.Problem(403, "insufficient_scope", f"This action needs the {platform_scope} scope.")


def refuse_if_suspended(principal: Principal, tenant: dict[str, Any]) -> None:
    """Writes of a suspended tenant's own clients are refused; reads and the platform go on."""
    if principal.tenant_id is not None and tenant["status"] == "suspended":
        raise errors.forbidden("The tenant is suspended; only reads are allowed.", code="tenant_suspended")
