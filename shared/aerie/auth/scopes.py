"""The contract's scopes and role names (docs/api.md, "Scopes" and "People"), in its order.

One vocabulary for the services that grant and check them and for the console, which offers
them in forms; what each role grants is the tenants service's rule (``tenants.roles``).
"""

from __future__ import annotations

from aerie.auth.principal import PLATFORM_ADMIN, PLATFORM_READ

__all__ = ["PLATFORM_ROLE_NAMES", "PLATFORM_SCOPES", "TENANT_ROLE_NAMES", "TENANT_SCOPES"]

#: What a tenant's own API client may hold.
TENANT_SCOPES = (
    "tenants:read",
    "tenants:write",
    "projects:read",
    "projects:write",
    "flags:read",
    "flags:write",
    "audit:read",
    "audit:write",
    "members:read",
    "members:write",
)
PLATFORM_SCOPES = (PLATFORM_READ, PLATFORM_ADMIN)
#: A tenant's roles, from the most to the least it may do.
TENANT_ROLE_NAMES = ("owner", "admin", "developer", "viewer")
PLATFORM_ROLE_NAMES = ("platform-admin", "platform-viewer")
