"""The tenants service's own settings, read once from :class:`aerie.config.Settings`."""

from __future__ import annotations

from dataclasses import dataclass

from aerie.config import Settings, int_setting
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

    @classmethod
    def from_settings(cls, settings: Settings) -> TenantsConfig:
        return cls(
            keys=SigningKeys.from_env_value(settings.require("AERIE_SIGNING_KEYS")),
            platform_clients=platform_clients_from_env(settings.extra),
            token_ttl_s=int_setting(settings.extra, "AERIE_TOKEN_TTL", 900, 60, 86_400),
        )
