"""Tenants and their API clients: the rules, independent of HTTP and of Redis."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Any

from aerie import errors
from aerie.auth.scopes import PLATFORM_SCOPES, TENANT_SCOPES

__all__ = [
    "KNOWN_SCOPES",
    "PLANS",
    "SLUG_PATTERN",
    "STATUSES",
    "TENANT_SCOPES",
    "hash_secret",
    "new_secret",
    "secret_matches",
    "transition",
]

SLUG_PATTERN = r"^[a-z0-9][a-z0-9-]{1,62}$"
PLANS = ("free", "team", "enterprise")
STATUSES = ("active", "suspended", "deleted")
LANGUAGE_PATTERN = r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$"

KNOWN_SCOPES = TENANT_SCOPES + PLATFORM_SCOPES
#: The tenant scopes a ``platform:read`` client may take into a tenant-bound token.
READ_SCOPES = ("tenants:read", "projects:read", "flags:read", "audit:read", "members:read")
#: The grants a client may hold (RFC 6749 client credentials, RFC 8693 token exchange).
CLIENT_CREDENTIALS = "client_credentials"
TOKEN_EXCHANGE = "token-exchange"  # noqa: S105 (a grant's name, not a secret)
GRANTS = (CLIENT_CREDENTIALS, TOKEN_EXCHANGE)

#: Which transitions each lifecycle action makes; a status not listed is a 409.
_TRANSITIONS: dict[str, dict[str, str]] = {
    "suspend": {"active": "suspended", "suspended": "suspended"},
    "reactivate": {"suspended": "active", "active": "active"},
    "delete": {"active": "deleted", "suspended": "deleted", "deleted": "deleted"},
}


def transition(action: str, tenant: dict[str, Any]) -> str:
    """The status after ``action``; raises 409 when the tenant's status does not allow it."""
    target = _TRANSITIONS[action].get(tenant["status"])
    if target is None:
        raise errors.conflict(f"A {tenant['status']} tenant cannot be {action}d.")
    return target


def new_secret() -> str:
    """256 random bits, URL-safe."""
    return secrets.token_urlsafe(32)


def hash_secret(secret: str) -> str:
    # Secrets carry 256 bits of entropy, so a fast hash is enough: there is nothing to brute-force.
    return hashlib.sha256(secret.encode()).hexdigest()


def secret_matches(secret: str, stored_hash: str) -> bool:
    return hmac.compare_digest(hash_secret(secret), stored_hash)
