"""The OAuth2 client-credentials grant: who may have a token, with which scopes.

Three kinds of client: the bootstrap platform client and the services' own clients, both
configured in the environment, and tenants' clients, stored in Redis. Every decision is
an :class:`OAuthError` (RFC 6749 section 5.2) or an issued token; both are published as
events by the resource.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aerie.auth.principal import PLATFORM_ADMIN, PLATFORM_READ
from aerie.config import ConfigError
from aerie.logs import truncated
from tenants.domain import (
    CLIENT_CREDENTIALS,
    GRANTS,
    KNOWN_SCOPES,
    READ_SCOPES,
    TENANT_SCOPES,
    hash_secret,
    secret_matches,
)
from tenants.signing import SigningKeys
from tenants.storage import ClientStore, TenantStore

__all__ = [
    "MAX_CLIENT_ID_CHARS",
    "MAX_CLIENT_SECRET_CHARS",
    "MAX_SCOPE_CHARS",
    "MAX_TENANT_ID_CHARS",
    "AuthenticatedClient",
    "IssuedToken",
    "Issuer",
    "OAuthError",
    "PlatformClient",
    "platform_clients_from_env",
]

# Compared against when the client id is unknown, so both paths cost the same.
_DUMMY_HASH = hash_secret("not a real secret")

#: What a token request may bring, checked before anything is looked up. Each is
#: far beyond what a real client sends, and what stays of a refused value in an event is
#: bounded by the same numbers. A client id: ours are 30 characters (``cli_`` and a ULID),
#: the platform clients' come from the environment and are held to it at start-up.
MAX_CLIENT_ID_CHARS = 128
#: Ours are 43 characters (256 random bits); the bootstrap secret is held to it at start-up.
MAX_CLIENT_SECRET_CHARS = 256
#: Every known scope, space-separated, is 130 characters.
MAX_SCOPE_CHARS = 512
#: Ours are 30 characters (``ten_`` and a ULID); no tenant id is longer than 64 (audit's rule).
MAX_TENANT_ID_CHARS = 64
#: How many refused scopes an error names, each cut to ``_SCOPE_NAME_CHARS``.
_LISTED_SCOPES = 5
_SCOPE_NAME_CHARS = 40


class OAuthError(Exception):
    def __init__(
        self,
        error: str,
        description: str,
        status: int = 400,
        tenant_id: str | None = None,
        retry_after: int | None = None,
        candidates: list[dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(description)
        self.error = error
        self.description = description
        self.status = status
        self.tenant_id = tenant_id
        self.retry_after = retry_after
        #: The tenants a verified person may be exchanged for, when they must pick one.
        self.candidates = candidates


@dataclass(frozen=True)
class PlatformClient:
    client_id: str
    secret_hash: str
    scopes: frozenset[str]
    grants: frozenset[str] = frozenset({CLIENT_CREDENTIALS})


@dataclass(frozen=True)
class AuthenticatedClient:
    """A client whose secret matched: what it may hold and which grants it may use."""

    client_id: str
    #: None for the platform's own clients.
    tenant_id: str | None
    scopes: frozenset[str]
    grants: frozenset[str]

    @property
    def platform(self) -> bool:
        return self.tenant_id is None


@dataclass(frozen=True)
class IssuedToken:
    access_token: str
    expires_in: int
    scope: str
    claims: Mapping[str, Any]
    #: Minted for a platform client (on behalf of a tenant when ``tenant_id`` is set).
    platform: bool


def platform_clients_from_env(env: Mapping[str, str]) -> dict[str, PlatformClient]:
    """The bootstrap client (platform:admin) and the services' clients (``AERIE_SERVICE_CLIENTS``)."""
    clients: dict[str, PlatformClient] = {}
    boot_id = env.get("AERIE_BOOTSTRAP_CLIENT_ID")
    boot_secret = env.get("AERIE_BOOTSTRAP_CLIENT_SECRET")
    if not boot_id or not boot_secret:
        raise ConfigError("AERIE_BOOTSTRAP_CLIENT_ID and AERIE_BOOTSTRAP_CLIENT_SECRET must both be set")
    if len(boot_id) > MAX_CLIENT_ID_CHARS:
        raise ConfigError(f"AERIE_BOOTSTRAP_CLIENT_ID must be at most {MAX_CLIENT_ID_CHARS} characters")
    if not 32 <= len(boot_secret) <= MAX_CLIENT_SECRET_CHARS:
        raise ConfigError(f"AERIE_BOOTSTRAP_CLIENT_SECRET must be 32 to {MAX_CLIENT_SECRET_CHARS} characters")
    # The bootstrap client may exchange a platform person's token too (the console, scripts).
    clients[boot_id] = PlatformClient(boot_id, hash_secret(boot_secret), frozenset({PLATFORM_ADMIN}), frozenset(GRANTS))
    raw = env.get("AERIE_SERVICE_CLIENTS")
    if raw:
        try:
            entries = json.loads(raw)
        except ValueError:
            raise ConfigError("AERIE_SERVICE_CLIENTS is not valid JSON") from None
        if not isinstance(entries, list):
            raise ConfigError("AERIE_SERVICE_CLIENTS must be a JSON list")
        for i, entry in enumerate(entries):
            try:
                client_id, digest, scopes = entry["client_id"], entry["secret_sha256"], entry["scopes"]
            except (KeyError, TypeError):
                raise ConfigError(f"AERIE_SERVICE_CLIENTS[{i}] needs client_id, secret_sha256 and scopes") from None
            unknown = set(scopes) - set(KNOWN_SCOPES)
            if unknown:
                raise ConfigError(f"AERIE_SERVICE_CLIENTS[{i}] has unknown scopes: {', '.join(sorted(unknown))}")
            if not isinstance(client_id, str) or not 0 < len(client_id) <= MAX_CLIENT_ID_CHARS:
                raise ConfigError(f"AERIE_SERVICE_CLIENTS[{i}] client_id must be 1 to {MAX_CLIENT_ID_CHARS} characters")
            grants = entry.get("grants", [CLIENT_CREDENTIALS])
            if not isinstance(grants, list) or not grants or set(grants) - set(GRANTS):
                raise ConfigError(f"AERIE_SERVICE_CLIENTS[{i}] grants must be a list of: {', '.join(GRANTS)}")
            clients[client_id] = PlatformClient(client_id, str(digest).lower(), frozenset(scopes), frozenset(grants))
    return clients


class Issuer:
    def __init__(
        self,
        *,
        keys: SigningKeys,
        issuer: str,
        audience: str,
        ttl_s: int,
        platform_clients: Mapping[str, PlatformClient],
        clients: ClientStore,
        tenants: TenantStore,
    ) -> None:
        self._keys = keys
        self._issuer = issuer
        self._audience = audience
        self.ttl_s = ttl_s
        self._platform = dict(platform_clients)
        self._clients = clients
        self._tenants = tenants

    def authenticate(self, client_id: str, secret: str) -> AuthenticatedClient:
        """The client these credentials prove, or ``invalid_client`` (401), in constant time."""
        platform = self._platform.get(client_id)
        if platform is not None:
            if not secret_matches(secret, platform.secret_hash):
                raise OAuthError("invalid_client", "Client authentication failed.", 401)
            return AuthenticatedClient(client_id, None, platform.scopes, platform.grants)
        stored = self._clients.get(client_id)
        matches = secret_matches(secret, stored["secret_hash"] if stored else _DUMMY_HASH)
        if stored is None or not matches:
            # A wrong secret for a tenant's client is an attack on that tenant's credentials:
            # the denial names the tenant, so it reaches the tenant's own trail too. The answer
            # is the same as for an unknown client, so it tells the caller nothing.
            owner = stored["tenant_id"] if stored else None
            raise OAuthError("invalid_client", "Client authentication failed.", 401, tenant_id=owner)
        if stored["status"] != "active":
            raise OAuthError("invalid_client", "Client authentication failed.", 401, tenant_id=stored["tenant_id"])
        grants = frozenset(stored.get("grants") or (CLIENT_CREDENTIALS,))
        return AuthenticatedClient(client_id, stored["tenant_id"], frozenset(stored["scopes"]), grants)

    @staticmethod
    def check_lengths(client_id: str, secret: str, scope: str | None, tenant_id: str | None) -> None:
        """Refuse what no client sends, before anything is looked up."""
        _check_lengths(client_id, secret, scope, tenant_id)

    def issue(self, client_id: str, secret: str, scope: str | None, tenant_id: str | None) -> IssuedToken:
        _check_lengths(client_id, secret, scope, tenant_id)
        client = self.authenticate(client_id, secret)
        if CLIENT_CREDENTIALS not in client.grants:
            raise OAuthError(
                "unauthorized_client", "This client may not use client_credentials.", tenant_id=client.tenant_id
            )
        if client.platform:
            return self._issue_platform(self._platform[client_id], scope, tenant_id)
        if tenant_id is not None:
            raise OAuthError(
                "invalid_request", "Only platform clients may ask for a tenant_id.", tenant_id=client.tenant_id
            )
        granted = self.grant(client.scopes, scope, tenant_id=client.tenant_id)
        return self.mint(client_id, client.tenant_id, granted, platform=False)

    def _issue_platform(self, client: PlatformClient, scope: str | None, tenant_id: str | None) -> IssuedToken:
        if tenant_id is None:
            return self.mint(client.client_id, None, self.grant(client.scopes, scope, tenant_id=None), platform=True)
        tenant = self._tenants.get(tenant_id)
        if tenant is None or tenant["status"] == "deleted":
            raise OAuthError("invalid_request", "The tenant_id names no live tenant.")
        # A tenant-bound token acts as the tenant: it carries tenant scopes only.
        if PLATFORM_ADMIN in client.scopes:
            allowed = frozenset(TENANT_SCOPES)
        elif PLATFORM_READ in client.scopes:
            allowed = frozenset(READ_SCOPES)
        else:
            raise OAuthError("invalid_scope", "This client may not act on behalf of a tenant.", tenant_id=tenant_id)
        granted = self.grant(allowed, scope, tenant_id=tenant_id)
        return self.mint(client.client_id, tenant_id, granted, platform=True)

    @staticmethod
    def grant(allowed: frozenset[str], requested: str | None, *, tenant_id: str | None) -> list[str]:
        if requested is None or not requested.strip():
            return sorted(allowed)
        wanted = set(requested.split())
        unknown = wanted - set(KNOWN_SCOPES)
        if unknown:
            raise OAuthError("invalid_scope", f"Unknown scope: {_listed(unknown)}.", tenant_id=tenant_id)
        if PLATFORM_ADMIN in allowed and tenant_id is None:
            return sorted(wanted)
        refused = wanted - allowed
        if refused:
            raise OAuthError("invalid_scope", f"The client may not have: {_listed(refused)}.", tenant_id=tenant_id)
        return sorted(wanted)

    def mint(
        self,
        client_id: str,
        tenant_id: str | None,
        scopes: list[str],
        *,
        platform: bool,
        subject: str | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> IssuedToken:
        """A signed access token; ``subject`` and ``extra`` claims make it a person's."""
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self._issuer,
            "aud": self._audience,
            "sub": subject or client_id,
            "client_id": client_id,
            "scope": " ".join(scopes),
            "iat": now,
            "nbf": now,
            "exp": now + self.ttl_s,
            "jti": uuid.uuid4().hex,
        }
        if tenant_id is not None:
            claims["tenant_id"] = tenant_id
        if extra:
            claims.update(extra)
        return IssuedToken(self._keys.sign(claims), self.ttl_s, claims["scope"], claims, platform)


def _check_lengths(client_id: str, secret: str, scope: str | None, tenant_id: str | None) -> None:
    """Refuse what no client sends, before anything is looked up (the limits above)."""
    if len(client_id) > MAX_CLIENT_ID_CHARS:
        raise OAuthError("invalid_client", f"No client id is longer than {MAX_CLIENT_ID_CHARS} characters.", 401)
    if len(secret) > MAX_CLIENT_SECRET_CHARS:
        raise OAuthError("invalid_client", f"No secret is longer than {MAX_CLIENT_SECRET_CHARS} characters.", 401)
    if scope is not None and len(scope) > MAX_SCOPE_CHARS:
        raise OAuthError("invalid_request", f"scope is limited to {MAX_SCOPE_CHARS} characters.")
    if tenant_id is not None and len(tenant_id) > MAX_TENANT_ID_CHARS:
        raise OAuthError("invalid_request", f"tenant_id is limited to {MAX_TENANT_ID_CHARS} characters.")


def _listed(scopes: set[str]) -> str:
    """Some of ``scopes`` for an error's description: a few, each cut short, and how many more."""
    names = sorted(scopes)
    shown = " ".join(truncated(name, _SCOPE_NAME_CHARS) for name in names[:_LISTED_SCOPES])
    more = len(names) - _LISTED_SCOPES
    return f"{shown} (and {more} more)" if more > 0 else shown
