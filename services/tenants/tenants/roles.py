"""People's roles and what each may do: the rules, without Redis or HTTP.

docs/api.md ("people") fixes the table. A role grants scopes; a person's token carries the
scopes asked for, intersected with the role's and the exchanging client's. ``admin`` is an
owner who cannot touch owners; the last owner (the last ``platform-admin`` on the platform)
cannot be removed or demoted, so no tenant is left without someone who can manage it.
"""

from __future__ import annotations

from typing import Final

from aerie import errors
from aerie.auth.principal import PLATFORM_ADMIN, PLATFORM_READ, Principal
from tenants.domain import TENANT_SCOPES

__all__ = [
    "OWNER_ROLES",
    "PLATFORM_ROLES",
    "TENANT_ROLES",
    "check_may_manage",
    "roles_for",
    "scopes_of",
]

TENANT_ROLES: Final[dict[str, frozenset[str]]] = {
    "owner": frozenset(TENANT_SCOPES),
    "admin": frozenset(TENANT_SCOPES),
    "developer": frozenset(
        {"tenants:read", "projects:read", "projects:write", "flags:read", "flags:write", "audit:read"}
    ),
    "viewer": frozenset({"tenants:read", "projects:read", "flags:read"}),
}
PLATFORM_ROLES: Final[dict[str, frozenset[str]]] = {
    "platform-admin": frozenset({PLATFORM_ADMIN}),
    "platform-viewer": frozenset({PLATFORM_READ}),
}
#: The role a tenant (None: the platform) must always keep one member of.
OWNER_ROLES: Final[dict[bool, str]] = {False: "owner", True: "platform-admin"}


def roles_for(platform: bool) -> dict[str, frozenset[str]]:
    return PLATFORM_ROLES if platform else TENANT_ROLES


def scopes_of(role: str, *, platform: bool) -> frozenset[str]:
    return roles_for(platform).get(role, frozenset())


def check_may_manage(principal: Principal, *, current: str | None, new: str | None) -> None:
    """403 when an ``admin`` would add, change or remove an ``owner`` (``current``/``new`` role).

    Only a person's token has a role; an API client or a platform token with the right scope
    manages any member, owners included.
    """
    if principal.is_user and principal.role == "admin" and "owner" in (current, new):
        raise errors.forbidden("An admin cannot add, change or remove an owner.")
