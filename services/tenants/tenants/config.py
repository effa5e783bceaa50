"""The tenants service's own settings, read once from :class:`aerie.config.Settings`."""

from __future__ import annotations

from dataclasses import dataclass, field

from aerie.config import Settings, int_setting
from tenants.auth_failures import PER_ADDRESS, PER_CLIENT
from tenants.identity import IdentityProviders, bootstrap_admin_email
from tenants.issuer import PlatformClient, platform_clients_from_env
from tenants.signing import SigningKeys

__all__ = ["TenantsConfig"]


@dataclass(frozen=True)
class TenantsConfig:
    #: The keys tokens are signed with (the first signs; all are published in the JWKS).
    keys: SigningKeys
    #: The platform's own clients (bootstrap admin, the services), by client id.
    platform_clients: dict[str, PlatformClient]
    token_ttl_s: int
    #: The OpenID Connect providers whose tokens a person may exchange (none: no exchange).
    identity_providers: IdentityProviders = field(default_factory=lambda: IdentityProviders(()))
    #: Who becomes the first platform-admin person on signing in (AERIE_BOOTSTRAP_ADMIN_EMAIL).
    bootstrap_admin_email: str | None = None
    #: Failed client authentications a minute allows per client id and per address (0: no limit).
    auth_failures_per_client: int = PER_CLIENT
    auth_failures_per_address: int = PER_ADDRESS

    @classmethod
    def from_settings(cls, settings: Settings) -> TenantsConfig:
        """Checked and built without touching the network: providers' keys are read on first use."""
        return cls(
            keys=SigningKeys.from_env_value(settings.require("AERIE_SIGNING_KEYS")),
            platform_clients=platform_clients_from_env(settings.extra),
            token_ttl_s=int_setting(settings.extra, "AERIE_TOKEN_TTL", 900, 60, 86_400),
            identity_providers=IdentityProviders.from_settings(settings),
            bootstrap_admin_email=bootstrap_admin_email(settings.extra),
            auth_failures_per_client=int_setting(
                settings.extra, "AERIE_AUTH_FAILURES_PER_CLIENT", PER_CLIENT, 0, 1_000_000
            ),
            auth_failures_per_address=int_setting(
                settings.extra, "AERIE_AUTH_FAILURES_PER_ADDRESS", PER_ADDRESS, 0, 1_000_000
            ),
        )
