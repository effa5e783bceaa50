"""The tenants service, wired: ``create_app(settings, deps)`` and ``get_app()``."""

from __future__ import annotations

from dataclasses import dataclass

import falcon

from aerie.app import Infrastructure, Route, create_service_app, exit_on_config_error
from aerie.auth.tokens import StaticKeySource
from aerie.config import Settings, int_setting
from aerie.events import EventPublisher
from tenants.issuer import Issuer, PlatformClient, platform_clients_from_env
from tenants.resources.clients import ClientCollection, ClientItem
from tenants.resources.oauth import TokenResource
from tenants.resources.tenants import TenantAction, TenantCollection, TenantItem
from tenants.resources.wellknown import AuthorizationServerMetadata, JWKSResource
from tenants.signing import SigningKeys
from tenants.storage import ClientStore, TenantStore

__all__ = ["TenantsConfig", "create_app", "get_app"]


@dataclass(frozen=True)
class TenantsConfig:
    keys: SigningKeys
    platform_clients: dict[str, PlatformClient]
    token_ttl_s: int

    @classmethod
    def from_settings(cls, settings: Settings) -> TenantsConfig:
        return cls(
            keys=SigningKeys.from_env_value(settings.require("AERIE_SIGNING_KEYS")),
            platform_clients=platform_clients_from_env(settings.extra),
            token_ttl_s=int_setting(settings.extra, "AERIE_TOKEN_TTL", 900, 60, 86_400),
        )


def create_app(settings: Settings, config: TenantsConfig, infra: Infrastructure | None = None) -> falcon.App:
    # The issuer verifies its own tokens with its own keys: no HTTP call to itself.
    infra = infra or Infrastructure.from_settings(settings, keys=StaticKeySource(config.keys.jwks()))
    events = EventPublisher()
    tenants = TenantStore(infra.redis, events)
    clients = ClientStore(infra.redis, events, token_ttl_s=config.token_ttl_s)
    issuer = Issuer(
        keys=config.keys,
        issuer=settings.issuer,
        audience=settings.audience,
        ttl_s=config.token_ttl_s,
        platform_clients=config.platform_clients,
        clients=clients,
        tenants=tenants,
    )
    routes: list[Route] = [
        ("/v1/oauth/token", TokenResource(issuer, events, infra.redis)),
        ("/.well-known/jwks.json", JWKSResource(config.keys.jwks())),
        ("/.well-known/oauth-authorization-server", AuthorizationServerMetadata(settings.issuer)),
        ("/v1/tenants", TenantCollection(tenants)),
        ("/v1/tenants/{tenant_id}", TenantItem(tenants, clients)),
        ("/v1/tenants/{tenant_id}/suspend", TenantAction(tenants, "suspend")),
        ("/v1/tenants/{tenant_id}/reactivate", TenantAction(tenants, "reactivate")),
        ("/v1/tenants/{tenant_id}/clients", ClientCollection(tenants, clients)),
        ("/v1/tenants/{tenant_id}/clients/{client_id}", ClientItem(tenants, clients)),
    ]
    return create_service_app(
        infra,
        routes,
        description="Tenant lifecycle, API clients, and the OAuth2 token endpoint and JWKS every service trusts.",
    )


def get_app() -> falcon.App | None:
    return exit_on_config_error("tenants", lambda s: create_app(s, TenantsConfig.from_settings(s)))
