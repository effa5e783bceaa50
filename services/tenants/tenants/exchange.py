"""The token-exchange grant (RFC 8693): a person's provider token for an Aerie token.

An app (an API client holding the ``token-exchange`` grant) sends the ID token its user got
from a provider the platform trusts. Everything is decided here, in this order, and every
refusal is an :class:`~tenants.issuer.OAuthError` the resource answers as RFC 6749 JSON:

1. the request's shape (``subject_token_type``, ``requested_token_type``; ``invalid_request``);
2. the client may exchange (``unauthorized_client``);
3. the subject token verifies against a trusted provider (``invalid_grant``; 503 while a
   provider's keys cannot be had);
4. which membership the token is for: a tenant client's own tenant only; for a platform
   client the ``tenant_id`` asked for, else the platform person, else the one tenant the
   person belongs to (several: ``tenant_id`` is required, and the refusal lists them);
5. that member exists and is this person: bound to this ``(iss, sub)``, or invited with this
   verified email, in which case the first exchange binds it (``member.joined``);
6. scopes: asked (all when none) ∩ the role's ∩ the client's (``invalid_scope``).

The token's ``sub`` is the member id, ``act`` names the client, and it carries the member's
role, email, language and version (:mod:`aerie.auth.tokens` reads them in every service).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aerie.auth.principal import PLATFORM_ADMIN, PLATFORM_READ
from aerie.events import EventContext
from tenants.domain import KNOWN_SCOPES, READ_SCOPES, TENANT_SCOPES, TOKEN_EXCHANGE
from tenants.identity import IdentityProviders, ProvidersUnavailable, UntrustedToken
from tenants.issuer import AuthenticatedClient, IssuedToken, Issuer, OAuthError
from tenants.members import PLATFORM_SCOPE, BootstrapAdmin, Identity, UnsafeMemberDirectory
from tenants.roles import scopes_of
from tenants.storage import TenantStore

__all__ = [
    "ACCESS_TOKEN_TYPE",
    "GRANT_TYPE",
    "SUBJECT_TOKEN_TYPES",
    "Exchanged",
    "ProvidersDown",
    "TokenExchange",
]

GRANT_TYPE = "urn:ietf:params:oauth:grant-type:token-exchange"
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"  # noqa: S105 (a URN)
SUBJECT_TOKEN_TYPES = (
    "urn:ietf:params:oauth:token-type:id_token",
    "urn:ietf:params:oauth:token-type:jwt",
)


#: The most tenants a several-tenants refusal lists (by name); a person in more is unusual.
MAX_CANDIDATES = 100


class ProvidersDown(Exception):
    """A trusted provider's keys cannot be fetched just now: 503, try again."""


@dataclass(frozen=True)
class Exchanged:
    token: IssuedToken
    member: Mapping[str, Any]
    #: The provider that vouched for the person.
    issuer: str


class TokenExchange:
    def __init__(
        self,
        *,
        issuer: Issuer,
        providers: IdentityProviders,
        directory: UnsafeMemberDirectory,
        tenants: TenantStore,
        bootstrap: BootstrapAdmin,
    ) -> None:
        self._issuer = issuer
        self._providers = providers
        self._directory = directory
        self._tenants = tenants
        self._bootstrap = bootstrap

    def exchange(self, client: AuthenticatedClient, form: Mapping[str, str], ctx: EventContext) -> Exchanged:
        owner = client.tenant_id  # the tenant a refusal is reported to, when the client has one
        if TOKEN_EXCHANGE not in client.grants:
            raise OAuthError("unauthorized_client", "This client may not use token exchange.", tenant_id=owner)
        subject_token = form.get("subject_token")
        if not subject_token:
            raise OAuthError("invalid_request", "subject_token is required.", tenant_id=owner)
        if form.get("subject_token_type") not in SUBJECT_TOKEN_TYPES:
            raise OAuthError(
                "invalid_request",
                f"subject_token_type must be one of: {', '.join(SUBJECT_TOKEN_TYPES)}.",
                tenant_id=owner,
            )
        requested = form.get("requested_token_type")
        if requested is not None and requested != ACCESS_TOKEN_TYPE:
            raise OAuthError("invalid_request", f"requested_token_type must be {ACCESS_TOKEN_TYPE}.", tenant_id=owner)
        for unsupported in ("actor_token", "resource", "audience"):
            if form.get(unsupported):
                raise OAuthError("invalid_request", f"{unsupported} is not supported.", tenant_id=owner)
        try:
            person = self._providers.verify(subject_token)
        except UntrustedToken as exc:
            raise OAuthError("invalid_grant", exc.description, tenant_id=owner) from None
        except ProvidersUnavailable as exc:
            raise ProvidersDown(exc.description) from None

        self._bootstrap.ensure()
        identity = Identity(person.issuer, person.subject)
        email = person.email if person.email_verified else None
        memberships = self._directory.memberships(identity, email)
        scope_name = self._membership(client, form.get("tenant_id") or None, memberships)
        member_id = memberships.get(scope_name)
        tenant_id = None if scope_name == PLATFORM_SCOPE else scope_name
        if member_id is None:
            raise OAuthError("invalid_grant", "The person is not a member there.", tenant_id=tenant_id)
        if tenant_id is not None:
            tenant = self._tenants.get(tenant_id)
            if tenant is None or tenant["status"] == "deleted":
                raise OAuthError("invalid_grant", "The person is not a member there.")
        acting = {"type": "user", "id": member_id, "client_id": client.client_id}
        joined_ctx = EventContext(acting, ctx.request_id, ctx.ip, ctx.user_agent)
        platform = tenant_id is None
        scopes: list[Any] = []

        def admit(candidate: dict[str, Any]) -> None:
            # Before the claim writes: a refused scope must not activate an invited member.
            allowed = scopes_of(candidate["role"], platform=platform) & self._client_allows(client, platform=platform)
            scopes[:] = [self._granted(allowed, form.get("scope"), tenant_id)]

        member = self._directory.claim(member_id, identity, joined_ctx, admit)
        if member is None:
            raise OAuthError("invalid_grant", "The person is not a member there.", tenant_id=tenant_id)
        (granted,) = scopes
        claims: dict[str, Any] = {
            "act": {"sub": client.client_id},
            "role": member["role"],
            "email": member["email"],
            "member_version": member["version"],
        }
        language = member.get("language") or person.locale
        if language:
            claims["language"] = language
        token = self._issuer.mint(
            client.client_id, tenant_id, granted, platform=client.platform, subject=member_id, extra=claims
        )
        return Exchanged(token, member, person.issuer)

    def _membership(self, client: AuthenticatedClient, asked: str | None, memberships: Mapping[str, str]) -> str:
        """Which scope (tenant id, or the platform) the token is for."""
        if not client.platform:
            if asked is not None and asked != client.tenant_id:
                raise OAuthError(
                    "invalid_request",
                    "A tenant's client exchanges only for its own tenant.",
                    tenant_id=client.tenant_id,
                )
            return str(client.tenant_id)
        if asked is not None:
            return asked
        if PLATFORM_SCOPE in memberships:
            return PLATFORM_SCOPE
        tenants = sorted(s for s in memberships if s != PLATFORM_SCOPE)
        if len(tenants) > 1:
            candidates = self._candidates(tenants, memberships)
            if len(candidates) > 1:
                raise OAuthError(
                    "invalid_request",
                    "The person belongs to several tenants: tenant_id is required.",
                    candidates=candidates,
                )
            tenants = [c["id"] for c in candidates]
        if not tenants:
            raise OAuthError("invalid_grant", "The person is not a member of any tenant or of the platform.")
        return tenants[0]

    def _candidates(self, tenant_ids: list[str], memberships: Mapping[str, str]) -> list[dict[str, Any]]:
        """The tenants the verified person may pick from (deleted ones and stale entries left out).

        Only ever answered to the client that authenticated and sent this person's verified
        token, which could exchange for each of these tenants anyway: the list tells it
        nothing it could not learn, and spares the person guessing tenant ids.
        """
        members = self._directory.members([memberships[t] for t in tenant_ids])
        found = []
        for tenant_id, member in zip(tenant_ids, members, strict=True):
            tenant = self._tenants.get(tenant_id)
            if member is None or tenant is None or tenant["status"] == "deleted":
                continue
            found.append({"id": tenant_id, "name": tenant["name"], "role": member["role"], "status": tenant["status"]})
        found.sort(key=lambda c: (c["name"].casefold(), c["id"]))
        return found[:MAX_CANDIDATES]

    @staticmethod
    def _client_allows(client: AuthenticatedClient, *, platform: bool) -> frozenset[str]:
        """What the exchanging client can pass on: its own scopes, as it may use them there."""
        if platform:
            return frozenset({PLATFORM_ADMIN, PLATFORM_READ}) if PLATFORM_ADMIN in client.scopes else client.scopes
        if not client.platform:
            return client.scopes
        if PLATFORM_ADMIN in client.scopes:
            return frozenset(TENANT_SCOPES)
        if PLATFORM_READ in client.scopes:
            return frozenset(READ_SCOPES) | (client.scopes & frozenset(TENANT_SCOPES))
        return client.scopes & frozenset(TENANT_SCOPES)

    @staticmethod
    def _granted(allowed: frozenset[str], requested: str | None, tenant_id: str | None) -> list[str]:
        if requested is None or not requested.strip():
            if not allowed:
                raise OAuthError(
                    "invalid_scope", "The role and the client have no scope in common.", tenant_id=tenant_id
                )
            return sorted(allowed)
        wanted = set(requested.split())
        unknown = wanted - set(KNOWN_SCOPES)
        if unknown:
            raise OAuthError("invalid_scope", f"Unknown scope: {' '.join(sorted(unknown)[:5])}.", tenant_id=tenant_id)
        refused = wanted - allowed
        if refused:
            raise OAuthError(
                "invalid_scope",
                f"The role and the client together do not grant: {' '.join(sorted(refused)[:5])}.",
                tenant_id=tenant_id,
            )
        return sorted(wanted)
